/* parops.c — the one-rank table of parallel operations (see parops.h): with one rank every
 * sum over the group is the value itself and a gather is a copy of the rank's block. */
#include "model/parops.h"

#include <string.h>

static mpt_status same_(void *ctx, float *buf, size_t n, mpt_error *err) {
    (void)ctx, (void)buf, (void)n, (void)err;
    return MPT_OK;
}

static mpt_status gather_one_(void *ctx, const float *local, float *full, size_t n,
                              mpt_error *err) {
    (void)ctx, (void)err;
    if (n && full != local) memmove(full, local, n * sizeof *full);
    return MPT_OK;
}

/* one rank: its slice is the whole vocabulary, so the statistics are final as computed */
static mpt_status vocab_one_(void *ctx, float *st, float *recv, size_t N, size_t ld,
                             mpt_rows_fn fn, mpt_rows_fn done, void *fctx, mpt_error *err) {
    (void)ctx, (void)st, (void)recv, (void)ld, (void)err;
    fn(fctx, 0, N);
    done(fctx, 0, N);
    return MPT_OK;
}

static const mpt_par_ops serial_ = {
    .ctx = NULL,
    .reduce_from_tp = same_,
    .copy_to_tp_backward = same_,
    .gather_seq = gather_one_,
    .scatter_seq = same_,
    .vocab_merge_rows = vocab_one_,
    .ln_grad_sum = same_,
};

const mpt_par_ops *mpt_par_ops_serial(void) { return &serial_; }
