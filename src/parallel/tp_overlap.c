/* tp_overlap.c — the row-parallel GEMM with its sum overlapped (see tp.h): the forward g of
 * Megatron's row-parallel layer, out = sum over tp of inp_i W_i, computed in row chunks so
 * that the sum of chunk c travels while chunk c+1 is multiplied (Megatron's
 * tp-comm-overlap, Wang et al. 2022, in its simplest form: split along the token rows, which
 * keeps every chunk of out contiguous and every chunk's sum independent of the others).
 *
 * Progress: no thread is taken from the GEMM's OpenMP team and none is added. The chunk's
 * sum (MPI's non-blocking all-reduce; a ring of point-to-point messages with MPT_TP_RING_SUMS,
 * tp_ring.c) is started from the calling thread after its GEMM and driven by MPI_Test calls
 * between the GEMMs of the following chunks (the OpenMP team is idle at those points).
 *
 * Epilogue: the layer's row-wise work on the summed rows (bias + residual, + ln_2 after
 * attn.c_proj) runs chunk by chunk as each chunk's sum arrives, in row order: between the later
 * chunks' GEMMs when a sum is already in, then after the last GEMM chunk 0's while the later
 * sums travel, and so on; the sums still in flight are progressed between pieces of it. Only
 * the last chunk's wait and its 1/k of the epilogue stay behind the last sum (before, the
 * whole epilogue waited for every sum). Each row gets the arithmetic the whole-matrix kernel
 * gives it, so the bits are the same (bench/tp_epilogue.c checks it and times the site). With
 * shared-memory
 * transport, most of each reduction's copying happens inside those tests, so the overlap is the
 * transfer of chunk c against the compute of chunk c+1 and the waiting for the slower rank of
 * the group, which moves off the critical path for all but the last chunk.
 *
 * Chunks: messages below MPT_TP_OVERLAP_MIN_BYTES gain nothing from splitting (latency-bound),
 * so the count is bytes / that, between 1 and MPT_TP_OVERLAP_MAX_CHUNKS; it depends only on
 * N and OC, which every rank of the group shares, so the ranks issue the same collectives in
 * the same order. One chunk is exactly the GEMM followed by the blocking sum.
 *
 * The backward's f (mpt_tp_rows_allreduce, the table's rows_reduce_tp) is the same pipeline
 * with the caller's work: the input gradient of a column-parallel layer (c_fc, c_attn, the
 * vocabulary-parallel head) by row chunks, each chunk's sum started as soon as its rows
 * are done, and the weight gradient's share of each chunk's rows (dW += X_c^T dY_c, a sum
 * over rows that needs none of the sums) computed after every input-gradient chunk, in row
 * order, as Megatron's async input-gradient all-reduce does. So the last chunk's sum travels
 * beside the whole weight gradient (k GEMMs with a progress call after each, where it had
 * only its own chunk's share), and the earlier sums beside the later chunks too; dW gets
 * the same chunk sums in the same order as before, so the same bits. */
#include "parallel/tp.h"

#include <limits.h>

#include "core/kernels.h"

size_t mpt_tp_overlap_chunks(size_t N, int OC) {
    size_t bytes = N * (size_t)(OC > 0 ? OC : 0) * sizeof(float);
    size_t k = bytes / MPT_TP_OVERLAP_MIN_BYTES;
    if (k > MPT_TP_OVERLAP_MAX_CHUNKS) k = MPT_TP_OVERLAP_MAX_CHUNKS;
    if (k > N) k = N;
    return k ? k : 1;
}

/* Runs the epilogue of the chunks from *next on whose sums are complete, in order (a chunk's
 * epilogue never runs before every earlier chunk's has): each chunk in pieces of about
 * EPI_PIECES_ rows' worth, the sums still in flight progressed between the pieces (MPI moves
 * them only inside its calls). wait: block for each chunk up to the last (the tail after the
 * last GEMM); else stop at the first chunk whose sum has not arrived. */
#define EPI_PIECES_ 4
static mpt_status epilogues_(mpt_tp_sums *s, size_t *next, size_t started, size_t N, size_t k,
                             mpt_rows_fn epi, void *ectx, int wait, mpt_error *err) {
    while (*next < started) {
        size_t c = *next;
        int done = 0;
        mpt_status st = wait ? mpt_tp_sums_wait_one(s, c, err) : mpt_tp_sums_done(s, c, &done, err);
        if (st) return st;
        if (!wait && !done) return MPT_OK;
        size_t r0 = N * c / k, r1 = N * (c + 1) / k;
        for (size_t p = 0; p < EPI_PIECES_; p++) {
            size_t a = r0 + (r1 - r0) * p / EPI_PIECES_, b = r0 + (r1 - r0) * (p + 1) / EPI_PIECES_;
            if (b > a) epi(ectx, a, b - a);
            if ((st = mpt_tp_sums_progress(s, err))) return st;
        }
        (*next)++;
    }
    return MPT_OK;
}

mpt_status mpt_tp_row_parallel_matmul(void *ctx, float *out, const float *inp, const float *w,
                                      size_t N, int C, int OC, mpt_rows_fn epi, void *ectx,
                                      mpt_error *err) {
    mpt_comm *tp = ctx;
    size_t k = mpt_tp_overlap_chunks(N, OC), next = 0; /* next: the first chunk without epi */
    mpt_tp_sums s;
    mpt_status st = mpt_tp_sums_begin(&s, tp, N * (size_t)OC, k, err);
    for (size_t c = 0; c < k && st == MPT_OK; c++) {
        size_t r0 = N * c / k, r1 = N * (c + 1) / k;
        mpt_matmul_forward(out + r0 * (size_t)OC, inp + r0 * (size_t)C, w, NULL, r1 - r0, C, OC);
        st = mpt_tp_sums_progress(&s, err); /* the earlier chunks' sums */
        if (st == MPT_OK)
            st = mpt_tp_sums_start(&s, out + r0 * (size_t)OC, (r1 - r0) * (size_t)OC, err);
        if (st == MPT_OK && epi) /* the earlier chunks whose sums have arrived */
            st = epilogues_(&s, &next, c, N, k, epi, ectx, 0, err);
    }
    if (st == MPT_OK && epi) st = epilogues_(&s, &next, k, N, k, epi, ectx, 1, err);
    mpt_status ws = mpt_tp_sums_end(&s, err);
    return st ? st : ws;
}

mpt_status mpt_tp_rows_allreduce(void *ctx, float *buf, size_t N, size_t C, mpt_rows_fn fn,
                                 mpt_rows_fn rest, void *fctx, mpt_error *err) {
    mpt_comm *tp = ctx;
    size_t k = mpt_tp_overlap_chunks(N, C > (size_t)INT_MAX ? INT_MAX : (int)C);
    mpt_tp_sums s;
    mpt_status st = mpt_tp_sums_begin(&s, tp, N * C, k, err);
    for (size_t c = 0; c < k && st == MPT_OK; c++) { /* every chunk's rows, then its sum */
        size_t r0 = N * c / k, r1 = N * (c + 1) / k;
        fn(fctx, r0, r1 - r0);
        st = mpt_tp_sums_progress(&s, err);
        if (st == MPT_OK) st = mpt_tp_sums_start(&s, buf + r0 * C, (r1 - r0) * C, err);
    }
    for (size_t c = 0; rest && c < k && st == MPT_OK; c++) { /* then rest, the sums moving */
        size_t r0 = N * c / k, r1 = N * (c + 1) / k;
        rest(fctx, r0, r1 - r0);
        st = mpt_tp_sums_progress(&s, err);
    }
    mpt_status ws = mpt_tp_sums_end(&s, err);
    return st ? st : ws;
}
