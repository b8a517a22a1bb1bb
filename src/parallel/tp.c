/* tp.c — the tensor- and sequence-parallel operations of the model's table over the tp group,
 * and tensor-parallel shards to and from whole tensors (see tp.h). */
#include "parallel/tp.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- the table's entries: ctx is the tp group; every tp rank calls each, in the same order --- */

/* buf (n) = the sum over tp: g forward, f backward, sp LayerNorm grads. Messages below
 * MPT_TP_OVERLAP_MIN_BYTES are latency-bound: MPI's all-reduce (2 log p steps against the
 * ring's 2 (p - 1)); larger ones take the balanced ring (tp_ring.c). */
static mpt_status sum_(void *ctx, float *buf, size_t n, mpt_error *err) {
    if (n * sizeof *buf < MPT_TP_OVERLAP_MIN_BYTES || !MPT_TP_RING_SUMS)
        return mpt_allreduce_sum((mpt_comm *)ctx, buf, n, err);
    return mpt_tp_ring_sum((mpt_comm *)ctx, buf, n, err);
}

/* full (tp * n) = every rank's block of rows, in rank order */
static mpt_status gather_seq_(void *ctx, const float *local, float *full, size_t n,
                              mpt_error *err) {
    return mpt_allgather((mpt_comm *)ctx, local, full, n, err);
}

/* buf[0 .. n) = the sum over tp of block tp_rank of buf (tp * n), in place */
static mpt_status scatter_seq_(void *ctx, float *buf, size_t n, mpt_error *err) {
    return mpt_reduce_scatter_sum((mpt_comm *)ctx, NULL, buf, n, err);
}

void mpt_tp_ops(mpt_par_ops *ops, mpt_comm *tp) {
    *ops = *mpt_par_ops_serial();
    if (!tp || tp->size <= 1) return;
    ops->ctx = tp;
    ops->reduce_from_tp = sum_;
    ops->row_parallel_matmul = mpt_tp_row_parallel_matmul; /* tp_overlap.c */
    ops->copy_to_tp_backward = sum_;
    ops->rows_reduce_tp = mpt_tp_rows_allreduce;            /* tp_overlap.c */
    ops->gather_seq = gather_seq_;
    ops->scatter_seq = scatter_seq_;
    ops->gather_seq_rows = mpt_tp_gather_seq_rows;   /* tp_overlap_sp.c */
    ops->rows_scatter_seq = mpt_tp_rows_scatter_seq;
    ops->vocab_merge_rows = mpt_tp_vocab_merge_rows; /* tp_vocab.c */
    ops->ln_grad_sum = sum_;
}

/* ---- shards and whole tensors ----------------------------------------------------------------- */

/* Scatters one rank's stored elements of every tensor into the full layout. */
static void place_(const mpt_param_table *local, int rank, const float *local_buf,
                   const mpt_param_table *full, float *full_buf) {
    for (size_t i = 0; i < local->n; i++) {
        const mpt_tensor *t = &local->t[i];
        if (t->is_copy) continue; /* the first stage's wte is the one that counts */
        float *dst = full_buf + full->t[t->full_id].offset;
        const float *src = local_buf + t->offset;
        for (size_t k = 0; k < t->numel; k++) {
            size_t f = mpt_tensor_full_index(t, local->tp, rank, k);
            if (f != SIZE_MAX) dst[f] = src[k];
        }
    }
}

void mpt_tp_extract(const mpt_param_table *local, const mpt_param_table *full,
                    const float *full_buf, float *local_buf) {
    memset(local_buf, 0, local->total * sizeof *local_buf);
    for (size_t i = 0; i < local->n; i++) {
        const mpt_tensor *t = &local->t[i];
        const float *src = full_buf + full->t[t->full_id].offset;
        float *dst = local_buf + t->offset;
#pragma omp parallel for schedule(static)
        for (size_t k = 0; k < t->numel; k++) {
            size_t f = mpt_tensor_full_index(t, local->tp, local->tp_rank, k);
            dst[k] = f == SIZE_MAX ? 0.0f : src[f];
        }
    }
}

mpt_status mpt_tp_assemble(mpt_comm *tp, const mpt_param_table *local, const float *local_buf,
                           const mpt_param_table *full, float *full_buf, mpt_error *err) {
    memset(full_buf, 0, full->total * sizeof *full_buf);
    if (!tp || tp->size == 1) {
        place_(local, 0, local_buf, full, full_buf);
        return MPT_OK;
    }
    size_t n = local->total;
    float *all = malloc((size_t)tp->size * n * sizeof *all);
    if (!all) return mpt_fail(err, MPT_ERR_RUN, "out of memory assembling tensor-parallel shards");
    mpt_status st = mpt_allgather(tp, local_buf, all, n, err);
    for (int r = 0; !st && r < tp->size; r++) place_(local, r, all + (size_t)r * n, full, full_buf);
    free(all);
    return st;
}
