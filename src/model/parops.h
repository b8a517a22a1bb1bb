/* parops.h — the seam between the model and parallelism: the table of parallel operations
 * the GPT engine calls (model/gpt_pass.c), with identity defaults for one rank.
 *
 * The model never calls MPI. Where its math has a sum or a gather over the ranks that share a
 * layer, it calls an entry of this table; parallel code fills the table (parallel/tp.c for the
 * tensor- and sequence-parallel entries, later parallel/cp.c and parallel/ep.c) and passes it in
 * mpt_gpt_place with the tensor-parallel size and rank. Without a table (or with
 * mpt_par_ops_serial()) the model is one rank and every entry does nothing.
 *
 *   mpt_par_ops ops;  mpt_tp_ops(&ops, &groups.dim[MPT_DIM_TP]);     // parallel/tp.h
 *   mpt_gpt_place place = {.ops = &ops, .tp = tp_size, .tp_rank = tp_rank, ...};
 *
 * Every entry is a collective over the ranks of the group it names: all of them call it, in
 * the same order, with the same counts (the model's forward and backward are the same code on
 * every rank, so they do). Buffers are fp32, counts in elements; an entry returns a status with
 * the message in err. ctx is the filler's and is passed back unchanged.
 *
 * Megatron's conjugate pair on the tensor group (Shoeybi et al. 2019):
 *   f = copy_to_tp     before a column-parallel layer: forward identity (every rank already
 *                      has the input; nothing to call), backward copy_to_tp_backward = the sum
 *                      over tp of the input gradients each rank computed from its columns;
 *   g = reduce_from_tp after a row-parallel layer: forward reduce_from_tp = the sum over tp of
 *                      the partial outputs; backward identity (nothing to call).
 * Sequence parallelism (Korthikanti et al. 2022) keeps only N/tp of the N token rows outside
 * the tensor-parallel layers and replaces f and g by
 *   gather_seq   before a column-parallel layer (and for the output gradient of a row-parallel
 *                one): all-gather of the ranks' row blocks, in rank order;
 *   scatter_seq  after a row-parallel layer (and for the input gradient of a column-parallel
 *                one): reduce-scatter, leaving this rank's summed row block.
 * The vocabulary-parallel embedding and loss, whose rows of wte are split over tp:
 *   the masked embedding lookup is summed like a row-parallel output (reduce_from_tp, or
 *   scatter_seq under sp); the cross-entropy merges each rank's row maxima, sums of
 *   exponentials and target logits (vocab_merge_rows; full logits never gathered).
 * Under sp each rank's LayerNorm weight gradients cover its rows only: ln_grad_sum adds them
 * over tp.
 *
 * Context parallelism (parallel/cp.c fills these, with their own context cp_ctx; the model
 * calls them instead of the fused attention kernel when mpt_gpt_place.cp > 1):
 *   ring_attention_forward / _backward  attention of this rank's query chunks over the K/V
 *                      chunks passed around the cp ring (every cp rank calls).
 * Expert parallelism (parallel/ep.c fills these, with their own context ep_ctx; model/moe.c
 * calls them in MoE blocks when mpt_gpt_place.ep > 1; NULL means the layout is unsupported):
 *   expert_dispatch / expert_combine    send each kept token assignment to the rank of its
 *                      expert (all-to-all over the ep group) and the outputs back. */
#ifndef MPT_PAROPS_H
#define MPT_PAROPS_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

/* Computes rows [r0, r0 + n) of a layer's GEMM (the model's math), called back by the
 * overlapped sp entries below as the rows' inputs arrive or their sums are due. */
typedef void (*mpt_rows_fn)(void *fctx, size_t r0, size_t n);

typedef struct mpt_par_ops {
    void *ctx;

    /* --- tensor group (every tp rank calls) ------------------------------------------------ */
    /* g forward: buf (n) holds this rank's partial sum; after, the sum over tp. */
    mpt_status (*reduce_from_tp)(void *ctx, float *buf, size_t n, mpt_error *err);
    /* g forward with the GEMM before it (tensor-parallel overlap, parallel/tp_overlap.c):
     * out (N, OC) = the sum over tp of inp (N, C) W (C, OC), no bias, the sum of each row chunk
     * in flight while the next chunk is multiplied. NULL (one rank): the model runs the GEMM
     * and reduce_from_tp. Not used under sp (its g is scatter_seq). epi (may be NULL):
     * epi(ectx, r0, n) on rows of the summed out, every row once, in row order, each as soon
     * as its sum is here (the layer's row-wise bias, residual and LayerNorm, so that only the
     * last chunk's wait for its sum stays exposed). */
    mpt_status (*row_parallel_matmul)(void *ctx, float *out, const float *inp, const float *w,
                                      size_t N, int C, int OC, mpt_rows_fn epi, void *ectx,
                                      mpt_error *err);
    /* f backward: buf (n) holds this rank's part of an input gradient; after, the sum. */
    mpt_status (*copy_to_tp_backward)(void *ctx, float *buf, size_t n, mpt_error *err);
    /* f backward with the GEMMs before it overlapped (parallel/tp_overlap.c), Megatron's
     * async input-gradient all-reduce: buf (N, C) in row chunks; for each chunk [r0, r0+n)
     * fn(fctx, r0, n) computes its rows of this rank's part, then their all-reduce starts;
     * after every chunk's fn, rest(fctx, r0, n) runs for each chunk in row order (may be NULL:
     * work over those rows that needs none of the sums, the weight gradient's share) while
     * the sums travel; after, buf = the sum over tp. NULL (one rank): the model
     * runs the GEMMs and copy_to_tp_backward. Not used under sp (its f backward is
     * rows_scatter_seq). */
    mpt_status (*rows_reduce_tp)(void *ctx, float *buf, size_t N, size_t C, mpt_rows_fn fn,
                                 mpt_rows_fn rest, void *fctx, mpt_error *err);

    /* --- sequence parallelism over the tensor group ---------------------------------------- */
    /* full (tp * n) = the ranks' local blocks (n each) in rank order; local is not in full. */
    mpt_status (*gather_seq)(void *ctx, const float *local, float *full, size_t n,
                             mpt_error *err);
    /* buf (tp * n) holds this rank's partial sums of all blocks; after, buf[0 .. n) = the sum
     * over tp of block tp_rank (the rest of buf is then undefined). */
    mpt_status (*scatter_seq)(void *ctx, float *buf, size_t n, mpt_error *err);
    /* gather_seq with the GEMM after it overlapped (parallel/tp_overlap_sp.c): full (tp * Nl,
     * C) = the ranks' local (Nl, C) blocks in rank order, and fn(fctx, row0, Nl) called for
     * each block's rows as soon as they are in full (the own block first). local may be
     * overwritten by fn. NULL: the model runs gather_seq and then its GEMM. */
    mpt_status (*gather_seq_rows)(void *ctx, const float *local, float *full, size_t Nl,
                                  size_t C, mpt_rows_fn fn, void *fctx, mpt_error *err);
    /* scatter_seq with the GEMM before it overlapped: fn(fctx, row0, Nl) computes this rank's
     * partial sums of each block's rows of buf (tp * Nl, C), the other ranks' blocks first,
     * each sent while the next is computed; then rest(fctx, 0, 0) (may be NULL: work that
     * needs none of the sums); after, buf[0 .. Nl*C) = the sum over tp of block tp_rank.
     * recv: (tp - 1) * Nl * C scratch. With xlocal not NULL, an all-gather travels beside fn:
     * xfull (tp * Nl, xC) = the ranks' xlocal (Nl, xC) blocks in rank order, complete before
     * rest runs (the weight gradient's input, read only by rest). NULL: fn, rest and then
     * scatter_seq (and gather_seq before rest). */
    mpt_status (*rows_scatter_seq)(void *ctx, float *buf, size_t Nl, size_t C, float *recv,
                                   mpt_rows_fn fn, mpt_rows_fn rest, void *fctx,
                                   const float *xlocal, float *xfull, size_t xC,
                                   mpt_error *err);

    /* --- vocabulary-parallel loss and sp LayerNorm gradients ------------------------------- */
    /* The cross-entropy's row statistics over the whole vocabulary, in row chunks
     * (parallel/tp_vocab.c): for each chunk [r0, r0+n) of the N rows, fn(fctx, r0, n)
     * computes the chunk's statistics over this rank's vocabulary slice into st + 3 r0 as
     * [max (n) | sum of exp(logit - max) (n) | target logit, 0 if not here (n)]; then, chunk by
     * chunk, the same block becomes the statistics over every rank's slice (max M = max_i m_i,
     * sum = sum_i s_i exp(m_i - M), target = sum_i t_i) and done(fctx, r0, n) runs. ld (the
     * logits' row width) sizes the chunks. recv: tp * 3N scratch. One rank: fn then done. */
    mpt_status (*vocab_merge_rows)(void *ctx, float *st, float *recv, size_t N, size_t ld,
                                   mpt_rows_fn fn, mpt_rows_fn done, void *fctx,
                                   mpt_error *err);
    /* buf (n) = the sum over tp of this rank's LayerNorm weight and bias gradients (sp). */
    mpt_status (*ln_grad_sum)(void *ctx, float *buf, size_t n, mpt_error *err);

    /* --- context parallelism (cp group; NULL = unsupported) --------------------------------- */
    void *cp_ctx; /* passed to the two ring entries instead of ctx */
    /* out (B, Tl, D) and lse (B, H, Tl) for this rank's Tl = T/cp query positions from its
     * qkv (B, Tl, 3D), attending causally to every earlier position on the cp ring. D and H are
     * this rank's attention width and heads (D/tp, H/tp of the model). */
    mpt_status (*ring_attention_forward)(void *ctx, float *out, float *lse, const float *qkv,
                                         int B, int Tl, int D, int H, mpt_error *err);
    /* dqkv (B, Tl, 3D) += the gradient, from dout, out and lse of the forward. */
    mpt_status (*ring_attention_backward)(void *ctx, float *dqkv, const float *dout,
                                          const float *out, const float *lse, const float *qkv,
                                          int B, int Tl, int D, int H, mpt_error *err);
    /* buf (n) = the elementwise sum over cp (with cp_ctx): the MoE routers' per-expert
     * assignment counts, so that the load-balancing loss of a micro-batch whose sequence is
     * split over cp counts every chunk's tokens (model/moe.h). NULL: cp is 1. */
    mpt_status (*cp_count_sum)(void *ctx, float *buf, size_t n, mpt_error *err);
    /* --- expert parallelism (ep group; NULL = unsupported; parallel/ep.c) ------------------ */
    void *ep_ctx; /* passed to the two expert entries instead of ctx */
    /* Sends row i of x (n, D) to the rank holding expert[i] (model-wide index; rows sorted by
     * expert); recv gets the rows for this rank's experts (*n_recv of them, from ep rank 0's
     * first, recv_expert their local expert index). Every ep rank calls, also with n = 0, with
     * the same max_recv (the rows recv holds): when any rank would receive more, every rank
     * fails with the same MPT_ERR_RUN before any row moves. recv_expert NULL on every rank (the
     * MoE backward, which keeps the order from its forward): the indices are not sent. */
    mpt_status (*expert_dispatch)(void *ctx, const float *x, const int32_t *expert, size_t n,
                                  int D, size_t max_recv, float *recv, int32_t *recv_expert,
                                  size_t *n_recv, mpt_error *err);
    /* The inverse of the last dispatch: y (n, D) row i = the output for the token sent as x[i]. */
    mpt_status (*expert_combine)(void *ctx, const float *out, size_t n_out, float *y, size_t n,
                                 int D, mpt_error *err);
} mpt_par_ops;

/* The one-rank table: every sum and gather is the identity (gather_seq copies its block),
 * the context and expert entries are NULL. Static storage; never freed. */
const mpt_par_ops *mpt_par_ops_serial(void);

#endif
