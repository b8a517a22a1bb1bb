/* gpt_sp.h — the linear layers beside sequence parallelism's all-gathers and reduce-scatters,
 * computed block of rows by block of rows so that the table's overlapped entries
 * (model/parops.h gather_seq_rows, rows_scatter_seq; parallel/tp_overlap_sp.c) move one block
 * while the next is multiplied. model/gpt_pass.c calls these under sp when the table has those
 * entries (mpt_gpt_sp_overlap); every tp rank calls them in the same order.
 *
 * Rows: N = tp * Nl token rows; this rank holds Nl of them (local); the gathered (N, C) rows go
 * to the gather workspace (MPT_WORK_GATHER), the received partial sums to MPT_WORK_SPRECV. The
 * math is the plain layer's, row block by row block: a row of a GEMM's output depends on the
 * same row of its input only, so the results are the unsplit ones up to the GEMM's blocking;
 * the weight gradients (sums over all rows) are one GEMM over all N rows, as before. */
#ifndef MPT_GPT_SP_H
#define MPT_GPT_SP_H

#include "model/gpt.h"

/* 1 when the overlapped sp path is on: sp, and the table has both entries. */
int mpt_gpt_sp_overlap(const mpt_gpt *m);

/* Column-parallel forward: *x = the gathered (N, C) input (the gather workspace) and out (N,
 * OC) = x w + b; with fch not NULL (the MLP's c_fc), fch = x w + b and out = gelu(fch), as
 * mpt_matmul_bias_gelu_forward. local (Nl, C) may be overwritten by the GEMM's output. */
mpt_status mpt_gpt_sp_gather_matmul(mpt_gpt *m, float *out, float *fch, const float *local,
                                    const float *w, const float *b, size_t Nl, int C, int OC,
                                    const float **x, mpt_error *err);

/* The vocabulary-parallel head under sp: logits (N, ldo) columns [0, V) = x w^T, w (V, C),
 * x the all-gathered (N, C) rows of local (Nl, C), each block multiplied as it arrives. */
mpt_status mpt_gpt_sp_gather_lmhead(mpt_gpt *m, float *logits, const float *local,
                                    const float *w, size_t Nl, int C, int V, int ldo,
                                    mpt_error *err);

/* Its backward, as a column-parallel layer's: dinp[0 .. Nl*C) = this rank's rows of the sum
 * over tp of dout w (dinp holds N*C), each block's partial rows sent as they are computed
 * while x is gathered again beside them; then dw (V, C) += dout^T x over all N rows while the
 * last partial sums travel. */
mpt_status mpt_gpt_sp_lmhead_backward(mpt_gpt *m, float *dinp, float *dw, const float *dout,
                                      const float *local, const float *w, size_t Nl, int C,
                                      int V, int ldo, mpt_error *err);

/* The vocabulary-parallel embedding under sp: out[0 .. Nl*D) = this rank's rows of the sum
 * over tp of the wte rows held here (m->v0, m->Vl) of tokens (N ids), each other rank's block
 * looked up and sent first, the own block looked up while they travel (no positions; out
 * holds N*D). */
mpt_status mpt_gpt_sp_embed_forward(mpt_gpt *m, float *out, const int32_t *tokens,
                                    const float *wte, size_t Nl, int D, mpt_error *err);

/* Its backward: *dy = the gathered (N, D) gradient rows (the gather workspace) of dlocal
 * (Nl, D), and dwte += each block's rows of the tokens held here, block by block as they
 * arrive (the own block first). */
mpt_status mpt_gpt_sp_embed_backward(mpt_gpt *m, float *dwte, const float *dlocal,
                                     const int32_t *tokens, size_t Nl, int D, const float **dy,
                                     mpt_error *err);

/* Row-parallel forward without bias: out[0 .. Nl*OC) = this rank's rows of the sum over tp of
 * inp (N, C) w (C, OC); out holds N*OC (the rest is then undefined). */
mpt_status mpt_gpt_sp_matmul_scatter(mpt_gpt *m, float *out, const float *inp, const float *w,
                                     size_t Nl, int C, int OC, mpt_error *err);

/* Row-parallel backward from this rank's output-gradient rows dlocal (Nl, OC): the gathered
 * dy (N, OC) in the gather workspace; dinp (N, C) OVERWRITTEN with dy w^T; then dw += inp^T
 * dy and db += the column sums of dy (each skipped if NULL), and, with stash not NULL, dy
 * copied there (the split backward's W stash). */
mpt_status mpt_gpt_sp_gather_backward(mpt_gpt *m, float *dinp, float *dw, float *db,
                                      float *stash, const float *dlocal, const float *inp,
                                      const float *w, size_t Nl, int C, int OC, mpt_error *err);

/* Column-parallel backward: dinp[0 .. Nl*C) = this rank's rows of the sum over tp of dout (N,
 * OC) w^T (dinp holds N*C); dw += inp^T dout, db += column sums, stash = dout (as above),
 * computed while the sums travel. inp is this rank's (Nl, C) rows: with dw, they are gathered
 * into the gather workspace beside the input gradient's GEMMs (ignored without dw). */
mpt_status mpt_gpt_sp_backward_scatter(mpt_gpt *m, float *dinp, float *dw, float *db,
                                       float *stash, const float *dout, const float *inp,
                                       const float *w, size_t Nl, int C, int OC, mpt_error *err);

#endif
