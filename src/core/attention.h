/* attention.h — fused causal attention with memory linear in T (FlashAttention-style), fp32.
 *
 * No T×T buffer exists: the forward keeps only the output and the per-row log-sum-exp (lse) of
 * the scaled scores; the backward recomputes the scores block by block from q, k and the lse.
 * Same math and layout as mpt_attention_forward/backward in kernels.h: qkv (B,T,3D) = [q | k | v],
 * heads contiguous inside each third (head h = columns h*hs .. h*hs+hs-1, hs = D/H), scale
 * 1/sqrt(hs), row t attends to keys 0..t.
 *
 *   mpt_flash_forward(out, lse, qkv, B, T, D, H);                   out (B,T,D), lse (B,H,T)
 *   float *work = mpt_flash_workspace(B, T, D, H, threads) floats from the arena (a buffer-list
 *                 entry MPT_MEM_WORKSPACE, MPT_F32; it replaces today's two (B,H,T,T) buffers);
 *   mpt_flash_backward(dqkv, dout, out, lse, qkv, B, T, D, H, work, threads);   dqkv +=
 *   mpt_flash_backward_set(...)                                                  dqkv =
 *
 * Ring attention (context parallelism) uses the block routines underneath: the queries of one
 * chunk (global positions q0 .. q0+Tq-1) attend to one K/V chunk (k0 .. k0+Tk-1) with the causal
 * mask evaluated on global positions, giving a partial (out, lse) that mpt_flash_merge folds into
 * a running (out, lse); the backward piece takes the final lse and drow = rowsum(dout ∘ out)
 * (mpt_flash_rowdot) and accumulates dq for the query chunk and dk, dv for the K/V chunk:
 *
 *   running o = 0, lse = MPT_FLASH_LSE_EMPTY;  for each K/V chunk c (any order):
 *       mpt_flash_block_forward(part, part_lse, Tq, q, k_c, v_c, &shape_c);
 *       mpt_flash_merge(o, lse, Tq, part, part_lse, Tq, B, H, hs, Tq);
 *   mpt_flash_rowdot(drow, Tq, dout, o, B, H, hs, Tq);
 *   for each K/V chunk c: mpt_flash_block_backward(dq, dk_c, dv_c, dout, lse, drow, Tq, q, k_c,
 *                                                  v_c, &shape_c, work, threads);
 *
 * Operands are strided views (mpt_flash_in / mpt_flash_out), so a caller passes chunks of qkv,
 * received K‖V buffers or rows of a longer sequence without copying. Per-row vectors (lse, drow)
 * are (B, H, ld): element (b, h, t) at p[(b*H + h)*ld + t].
 *
 * Work is split into 64-query × 256-key tiles (wide key tiles: fewer and larger tile GEMMs,
 * which bench/attention measured faster than 64 × 64 at T 256 and 1024); tiles above the
 * diagonal are skipped, tiles below it run unmasked, diagonal tiles are masked per row. The tile
 * GEMMs run on the AVX2 + FMA micro-kernels of core/attn_tile.h when the head size is 16..64 in
 * steps of 16 (GPT-2's 64) and the CPU has AVX2 + FMA, else on the GEMM back end of kernels.h
 * (oneDNN or OpenBLAS, single-threaded inside our OpenMP loop). Each thread keeps its score
 * tiles (two 64×256 fp32 tiles, 128 KiB) and, with the micro-kernels, the packed Kᵀ and Vᵀ of
 * a key tile (two 64×256 floats, 128 KiB more) on its stack; everything that grows with T
 * comes from the caller's workspace.
 * Threading: every function parallelises internally with OpenMP; call from one thread. */
#ifndef MPT_ATTENTION_H
#define MPT_ATTENTION_H

#include <stddef.h>

/* lse of a row that saw no key (its partial output is 0). Finite, so that merging stays plain
 * arithmetic: exp(MPT_FLASH_LSE_EMPTY - x) is 0 for any real lse x. */
#define MPT_FLASH_LSE_EMPTY (-1e30f)

/* Tile sizes (rows of queries, rows of keys). */
#define MPT_FLASH_BQ 64
#define MPT_FLASH_BK 256

/* A strided (B, rows, H*hs) operand: row t of batch b starts at p + b*bs + t*ld, and head h is
 * its columns [h*hs, (h+1)*hs). */
typedef struct mpt_flash_in {
    const float *p;
    size_t ld, bs;
} mpt_flash_in;
typedef struct mpt_flash_out {
    float *p;
    size_t ld, bs;
} mpt_flash_out;

/* Sizes of one (query chunk, K/V chunk) pair. q0, k0 are the global positions of the chunks'
 * first rows: query q0+i sees key k0+j iff k0+j <= q0+i. */
typedef struct mpt_flash_shape {
    int B, H, hs;   /* batch, heads, head size */
    int Tq, q0;     /* query rows of the chunk, global position of the first */
    int Tk, k0;     /* key/value rows of the chunk, global position of the first */
} mpt_flash_shape;

/* ---- whole causal sequence ----------------------------------------------------------------- */

/* out (B,T,D) overwritten; lse (B,H,T) overwritten with log sum_j exp(scale q_t·k_j), j <= t. */
void mpt_flash_forward(float *out, float *lse, const float *qkv, int B, int T, int D, int H);

/* Workspace of mpt_flash_backward, in floats (linear in T: drow (B,H,T) plus, per thread, a
 * (T, hs) dq accumulator). SIZE_MAX if the size overflows, so that the allocation fails. */
size_t mpt_flash_workspace(int B, int T, int D, int H, int threads);

/* dqkv (B,T,3D) += the gradient of sum(out ∘ dout), given out and lse of mpt_flash_forward.
 * work: mpt_flash_workspace(B, T, D, H, threads) floats (contents ignored, overwritten); the
 * kernel runs on at most `threads` OpenMP threads. */
void mpt_flash_backward(float *dqkv, const float *dout, const float *out, const float *lse,
                        const float *qkv, int B, int T, int D, int H, float *work, int threads);
/* As mpt_flash_backward, but dqkv is OVERWRITTEN with the gradient: no zeroing pass before
 * the kernel (when whole (batch, head) pairs are the tasks, each zeroes its own columns and
 * computes its rows' dout.out in the same parallel region). */
void mpt_flash_backward_set(float *dqkv, const float *dout, const float *out, const float *lse,
                            const float *qkv, int B, int T, int D, int H, float *work,
                            int threads);

/* ---- block routines (ring attention) ------------------------------------------------------- */

/* Partial attention of the Tq queries to the Tk keys of one chunk pair, causal on global
 * positions. o (B,Tq,H*hs) and lse (B,H,ldl) overwritten: rows that see no key of the chunk
 * get o = 0, lse = MPT_FLASH_LSE_EMPTY. A chunk pair that is fully masked costs nothing. */
void mpt_flash_block_forward(mpt_flash_out o, float *lse, size_t ldl, mpt_flash_in q,
                             mpt_flash_in k, mpt_flash_in v, const mpt_flash_shape *s);

/* Folds a partial (o_part, lse_part) into the running (o, lse) of the same Tq rows:
 *   lse' = log(e^lse + e^lse_part),  o' = (e^lse o + e^lse_part o_part) / e^lse'.
 * Start the running state at o = 0, lse = MPT_FLASH_LSE_EMPTY (or copy the first partial). */
void mpt_flash_merge(mpt_flash_out o, float *lse, size_t ldl, mpt_flash_in o_part,
                     const float *lse_part, size_t ldlp, int B, int H, int hs, int Tq);

/* drow (B,H,ldd) overwritten: drow[b,h,t] = sum_i dout[b,t,h*hs+i] * out[b,t,h*hs+i]. */
void mpt_flash_rowdot(float *drow, size_t ldd, mpt_flash_in dout, mpt_flash_in out, int B, int H,
                      int hs, int Tq);

/* Workspace of mpt_flash_block_backward, in floats (a (Tq, hs) dq accumulator per thread);
 * SIZE_MAX on overflow. */
size_t mpt_flash_block_workspace(const mpt_flash_shape *s, int threads);

/* The backward of one chunk pair: dq (the query chunk's rows) +=, dk and dv (the K/V chunk's
 * rows) +=, given the FINAL lse of the query rows (after every chunk was merged) and
 * drow = rowsum(dout ∘ out) of the final out, both (B,H,ldl). Summed over all K/V chunks this is
 * the full gradient. work: mpt_flash_block_workspace(s, threads) floats; at most `threads`
 * OpenMP threads run. */
void mpt_flash_block_backward(mpt_flash_out dq, mpt_flash_out dk, mpt_flash_out dv,
                              mpt_flash_in dout, const float *lse, const float *drow, size_t ldl,
                              mpt_flash_in q, mpt_flash_in k, mpt_flash_in v,
                              const mpt_flash_shape *s, float *work, int threads);

#endif
