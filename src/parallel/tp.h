/* tp.h — tensor parallelism (Megatron) and sequence parallelism over the tp group: the
 * communication half of the model's parallel operations, and moving whole tensors in and out
 * of tensor-parallel shards.
 *
 * The math half lives in the model (model/gpt_pass.c), which calls the table of parallel
 * operations (model/parops.h) that mpt_tp_ops fills:
 *   - c_attn (by heads) and c_fc are column-parallel, Y_i = X A_i: f = copy_to_tp is the
 *     identity forward and an all-reduce of the input gradient backward (copy_to_tp_backward);
 *   - the c_proj layers are row-parallel, Y = sum_i X_i A_i: g = reduce_from_tp all-reduces the
 *     partial outputs forward and is the identity backward;
 *   - the embedding and the head are vocabulary-parallel (rows of wte split over tp): the masked
 *     lookup is all-reduced like a row-parallel output; the cross-entropy all-reduces the row
 *     max (vocab_max) and then the sums of exponentials and target logits (vocab_sum);
 *   - sequence parallelism (Korthikanti et al. 2022, --sp): outside those layers each rank keeps
 *     N/tp of the N token rows; an all-gather along the sequence (gather_seq) replaces f before a
 *     column-parallel layer and a reduce-scatter (scatter_seq) replaces g after a row-parallel
 *     one; the LayerNorm weight gradients of each rank's rows are all-reduced (ln_grad_sum).
 *
 * Checkpoints hold full, layout-free tensors (CONTRACT §3); a rank of a tensor-parallel group
 * holds its shard of each (model/params.h, mpt_split). mpt_tp_extract / mpt_tp_assemble
 * translate between a buffer laid out by the full table (tp = 1) and one laid out by this rank's
 * table. */
#ifndef MPT_TP_H
#define MPT_TP_H

#include "comm/comm.h"
#include "model/params.h"
#include "model/parops.h"
#include "parallel/dp_ring.h"

/* Fills *ops with the tensor- and sequence-parallel operations over tp (ctx = tp, which must
 * outlive every use of the table; the model copies the table, not the group). tp NULL or of
 * size 1: the one-rank table. The context and expert entries stay NULL. Local. */
void mpt_tp_ops(mpt_par_ops *ops, mpt_comm *tp);

/* ---- sums over the tp group (tp_ring.c) -----------------------------------------------------
 * With MPT_TP_RING_SUMS (below; off by default) every sum of the tensor-parallel entries (not
 * sp's block messages) is a ring all-reduce (parallel/dp_ring.h, any count): reduce-scatter then all-gather by point-to-point messages,
 * each rank adding (p-1)/p of the buffer, both directions moving at once; every rank ends with
 * the same bits; without it, MPI's non-blocking all-reduce. A set holds up to MPT_TP_OVERLAP_MAX_CHUNKS rings in flight over disjoint
 * buffers (the row chunks of one overlapped GEMM):
 *   mpt_tp_sums s;  mpt_tp_sums_begin(&s, tp, N * C, k, err);    // scratch for k rings
 *   for each chunk: ...GEMM...; mpt_tp_sums_progress(&s, err);
 *                   mpt_tp_sums_start(&s, chunk, n, err);
 *   mpt_tp_sums_end(&s, err);                                    // waits, frees the scratch
 * n_total bounds the sum of the rings' counts. Every tp rank makes the same calls with the same
 * counts in the same order; the buffers stay untouched until end. tp NULL or of size 1: every
 * call does nothing. end is called after begin whatever the statuses in between. */
/* With the per-chunk epilogue (tp_overlap.c), bench/scale_ab.sh -- --tp 2 under load (load 3-7,
 * 2026-12-01): 8 chunks against 4 tokens/s 0.919 (behind in 8 of 8 rounds, 0.60-1.00), blocked
 * 1.07x; 2 chunks against 4 tokens/s 0.998 (rounds 0.91-1.98), blocked 1.22x. So 4. */
#ifndef MPT_TP_OVERLAP_MAX_CHUNKS /* a build may set it (-D...=8) for an A/B of the count */
#define MPT_TP_OVERLAP_MAX_CHUNKS 4
#endif
/* 1: the sums are rings; 0 (the default): MPI's non-blocking all-reduce (libnbc), the same
 * calls. Against MPI (bench/scale_ab.sh, 2026-12-01): tp 2 near idle (load 1-2) tokens/s 0.988
 * (rounds 0.95-1.05), blocked time 0.52x; at load 3-5 0.843 and 0.951 (behind in 12 of 12
 * rounds); dp 2 x tp 2 1.016 near idle, 1.27 at load ~12; tp 2 x pp 2 1.05 at load ~12. No
 * reliable gain, so off; for an idle A/B build with cmake -DCMAKE_C_FLAGS=-DMPT_TP_RING_SUMS=1
 * (t_tp's message counts, which expect MPI's all-reduces, then fail, as they should). */
#ifndef MPT_TP_RING_SUMS
#define MPT_TP_RING_SUMS 0
#endif
typedef struct mpt_tp_sums {
    mpt_comm *tp;  /* not owned */
    float *tmp;    /* (cap) owned: the rings' reduce-phase receive buffers */
    size_t cap, used, k;
    mpt_ring ring[MPT_TP_OVERLAP_MAX_CHUNKS];
    mpt_req req[MPT_TP_OVERLAP_MAX_CHUNKS]; /* MPT_TP_RING_SUMS 0 */
} mpt_tp_sums;
mpt_status mpt_tp_sums_begin(mpt_tp_sums *s, mpt_comm *tp, size_t n_total, size_t k,
                             mpt_error *err);
mpt_status mpt_tp_sums_start(mpt_tp_sums *s, float *buf, size_t n, mpt_error *err);
mpt_status mpt_tp_sums_progress(mpt_tp_sums *s, mpt_error *err); /* never blocks */
mpt_status mpt_tp_sums_end(mpt_tp_sums *s, mpt_error *err);
/* The i-th sum started (0-based) in start order: *done = 1 once it is complete (never blocks;
 * i not started, e.g. tp of one rank: done); wait_one blocks until it is, moving the others.
 * Its buffer is then the sum; end must still be called. */
mpt_status mpt_tp_sums_done(mpt_tp_sums *s, size_t i, int *done, mpt_error *err);
mpt_status mpt_tp_sums_wait_one(mpt_tp_sums *s, size_t i, mpt_error *err);
/* Blocking: buf (n) = the sum over tp (one ring). Every tp rank calls. */
mpt_status mpt_tp_ring_sum(mpt_comm *tp, float *buf, size_t n, mpt_error *err);

/* ---- overlap of the row-parallel all-reduce (tp_overlap.c) --------------------------------
 * The table's row_parallel_matmul entry: out (N, OC) = the sum over tp of inp (N, C) W (C, OC)
 * (no bias), in mpt_tp_overlap_chunks(N, OC) row chunks whose all-reduces overlap the GEMMs
 * of the next chunks. epi (may be NULL) is the layer's row-wise epilogue: called on every row
 * of out exactly once, in row order, in pieces, each piece as soon as its chunk's sum has
 * arrived (between the later chunks' GEMMs, or while the last chunks' sums travel); then only
 * the last chunk's epilogue waits for the last sum. ctx is the tp group; every tp rank calls
 * with the same N, OC. */
#define MPT_TP_OVERLAP_MIN_BYTES ((size_t)64 << 10) /* smallest chunk worth a message */
size_t mpt_tp_overlap_chunks(size_t N, int OC);
mpt_status mpt_tp_row_parallel_matmul(void *ctx, float *out, const float *inp, const float *w,
                                      size_t N, int C, int OC, mpt_rows_fn epi, void *ectx,
                                      mpt_error *err);

/* The table's rows_reduce_tp entry (model/parops.h): buf (N, C) summed over tp in
 * mpt_tp_overlap_chunks(N, C) row chunks, each chunk's all-reduce started as soon as fn has
 * computed it and progressed while the next chunks' fn and then every chunk's rest (in row
 * order, after the last fn) compute; the last is waited for. */
mpt_status mpt_tp_rows_allreduce(void *ctx, float *buf, size_t N, size_t C, mpt_rows_fn fn,
                                 mpt_rows_fn rest, void *fctx, mpt_error *err);

/* ---- the vocabulary-parallel cross-entropy's statistics (tp_vocab.c) -------------------------
 * The table's vocab_merge_rows entry (model/parops.h): each chunk's [max | sum of exponentials
 * | target logit] block of st (3N) all-gathered into recv (tp * 3N) while the next chunk's fn
 * runs, merged over tp (online softmax) as it completes, then done. Chunks:
 * mpt_tp_overlap_chunks(N, ld). ctx is the tp group; every tp rank calls with the same N, ld. */
mpt_status mpt_tp_vocab_merge_rows(void *ctx, float *st, float *recv, size_t N, size_t ld,
                                   mpt_rows_fn fn, mpt_rows_fn done, void *fctx,
                                   mpt_error *err);

/* ---- overlap of the sp all-gather and reduce-scatter (tp_overlap_sp.c) ---------------------
 * The table's gather_seq_rows and rows_scatter_seq entries (model/parops.h): block by block,
 * each block's GEMM beside the other blocks' messages. ctx is the tp group; every tp rank calls
 * with the same Nl, C. Groups larger than MPT_TP_SP_MAX_RANKS take the plain collective. */
#define MPT_TP_SP_MAX_RANKS 16
mpt_status mpt_tp_gather_seq_rows(void *ctx, const float *local, float *full, size_t Nl,
                                  size_t C, mpt_rows_fn fn, void *fctx, mpt_error *err);
mpt_status mpt_tp_rows_scatter_seq(void *ctx, float *buf, size_t Nl, size_t C, float *recv,
                                   mpt_rows_fn fn, mpt_rows_fn rest, void *fctx,
                                   const float *xlocal, float *xfull, size_t xC,
                                   mpt_error *err);

/* local_buf (local->total) = this rank's shard of every tensor of full_buf (full->total),
 * matched by full_id (a pipeline stage's table holds some of the tensors); padding is zero.
 * Local. */
void mpt_tp_extract(const mpt_param_table *local, const mpt_param_table *full,
                    const float *full_buf, float *local_buf);

/* full_buf (full->total) = every tensor of the local table assembled from the shards of all
 * ranks of tp (each passing its local_buf, local->total elements); tensors the local table does
 * not hold, and a pipeline stage's copy of the tied wte, are left zero (so that a sum over the
 * pipeline stages gives the whole model). All ranks of tp call; all get the result. With tp
 * NULL or of size 1 it is a local copy. */
mpt_status mpt_tp_assemble(mpt_comm *tp, const mpt_param_table *local, const float *local_buf,
                           const mpt_param_table *full, float *full_buf, mpt_error *err);

#endif
