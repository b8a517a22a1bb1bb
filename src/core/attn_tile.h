/* attn_tile.h — AVX2 + FMA micro-kernels for the small GEMMs of attention.c's 64 × 256 tiles,
 * called directly instead of through oneDNN / OpenBLAS (whose per-call dispatch cost 6-7% of
 * attention's time at head size 64 in the seventh session's profile), and skipping the terms
 * and blocks the causal mask zeroes, which a library GEMM computes.
 *
 * Every product is C(M,N) = alpha op(A) B + beta C, row-major (beta 0: C is written, never
 * read), computed in 6 × 16 register blocks (12 ymm accumulators) over the whole K:
 *   mpt_attn_tile_nn: op(A) = A, A (M,K) at stride lda;
 *   mpt_attn_tile_tn: op(A) = Aᵀ, A (K,M) at stride lda (dV += Pᵀ dO, dK += dSᵀ Q);
 *   A Bᵀ (S = Q Kᵀ, dP = dO Vᵀ): mpt_attn_tile_pack_t transposes B (N,K) into a panel (K,N)
 *   once (8 × 8 register transposes), then mpt_attn_tile_nn with the panel as B.
 * Any M, N, K >= 0 (edges masked); no size limit except the caller's panel buffer.
 *
 * The kernels are compiled for AVX2 + FMA by target attribute (the plain, non -march=native
 * build compiles them too) and may only run where the CPU has both: callers ask
 * mpt_attn_tile_usable(hs) first, and take the library path when it says 0 (no AVX2/FMA,
 * head size not a multiple of 16 or above 64, or switched off by mpt_attn_tile_set(0)).
 * Thread-safe: no state but the switch; call from any thread, one product per call. */
#ifndef MPT_ATTN_TILE_H
#define MPT_ATTN_TILE_H

#include <stddef.h>

/* Largest head size the attention tiles hand to the micro-kernels (the packed panels on each
 * thread's stack are MPT_ATTN_TILE_MAX_HS × MPT_FLASH_BK floats). */
#define MPT_ATTN_TILE_MAX_HS 64

/* 1 when the CPU has AVX2 and FMA (checked once, at the first call; call it first from one
 * thread, e.g. before a parallel region). */
int mpt_attn_tile_cpu(void);
/* Switch for tests and benchmarks: 0 sends every tile GEMM to the library (default 1). Not
 * thread-safe: set it between kernel calls. */
void mpt_attn_tile_set(int on);
/* 1 when attention with head size hs runs its tile GEMMs here: switched on, the CPU has
 * AVX2 + FMA, hs a multiple of 16 in [16, MPT_ATTN_TILE_MAX_HS]. */
int mpt_attn_tile_usable(int hs);

/* panel (K rows, stride ldp >= N) = Bᵀ, B (N rows, K columns, stride ldb). */
void mpt_attn_tile_pack_t(float *panel, size_t ldp, const float *B, size_t ldb, int N, int K);

/* The causal shape of a tile product (the mask argument), with diag = global position of the
 * tile's first query - that of its first key (row i of queries sees key column j iff
 * j <= i + diag):
 *   MPT_ATTN_TILE_DENSE    every term (diag ignored);
 *   MPT_ATTN_TILE_A_LOWER  op(A)(i,k) is 0 for k > i + diag (P, dS against keys: O += P V,
 *                          dQ += dS K): those terms are skipped, a block of 6 rows at a time;
 *   MPT_ATTN_TILE_A_UPPER  op(A)(i,k) is 0 for k < i - diag (Pᵀ, dSᵀ against queries:
 *                          dV += Pᵀ dO, dK += dSᵀ Q): those terms are skipped;
 *   MPT_ATTN_TILE_C_LOWER  only C(i,j) with j <= i + diag is needed (S = Q Kᵀ, dP = dO Vᵀ):
 *                          6 × 16 blocks with no such element are not computed and C there
 *                          is left as it was; other unneeded elements get values.
 * The skipped terms are exact zeros, so the needed results equal the dense product's. */
enum { MPT_ATTN_TILE_DENSE, MPT_ATTN_TILE_A_LOWER, MPT_ATTN_TILE_A_UPPER, MPT_ATTN_TILE_C_LOWER };

/* C (M,N; stride ldc) = alpha A B + beta C; A (M,K; lda), B (K,N; ldb). */
void mpt_attn_tile_nn(int M, int N, int K, float alpha, const float *A, size_t lda,
                      const float *B, size_t ldb, float beta, float *C, size_t ldc, int mask,
                      int diag);

/* C (M,N; stride ldc) = alpha Aᵀ B + beta C; A (K,M; lda), B (K,N; ldb). */
void mpt_attn_tile_tn(int M, int N, int K, float alpha, const float *A, size_t lda,
                      const float *B, size_t ldb, float beta, float *C, size_t ldc, int mask,
                      int diag);

#endif
