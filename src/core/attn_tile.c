/* attn_tile.c — the AVX2 + FMA tile GEMMs of attn_tile.h.
 *
 * One register block is 6 rows × 16 columns of C: 12 ymm accumulators, two ymm rows of B and
 * one broadcast element of op(A) per step of K (15 of the 16 ymm registers). The element
 * op(A)(i,k) is read at A[i*ars + k*acs], so the same block serves A (ars = lda, acs = 1) and
 * Aᵀ (ars = 1, acs = lda) without packing A. A B walks C column strip by column strip (a strip
 * of B, K × 16 floats, 16 KiB at K 256, stays in L1 while the row blocks stream A); Aᵀ B row
 * block by row block (the block's 6 columns of A and all of B, 64 × 64 floats, stay in L1).
 * A last strip narrower than 16 columns uses masked loads and element-wise stores; the last
 * rows (M mod 6) use a block instantiated for 1..5 rows. The causal masks (attn_tile.h) narrow
 * each block's range of k, or skip the block. Everything here is compiled for AVX2 + FMA by the
 * target attribute; only mpt_attn_tile_usable() decides whether it may run. */
#include "core/attn_tile.h"

#include <immintrin.h>
#include <stdint.h>

#define TARGET_ __attribute__((target("avx2,fma")))
#define INLINE_ static inline __attribute__((always_inline)) TARGET_

static int on_ = 1;
static int cpu_ = -1; /* -1: not yet asked */

int mpt_attn_tile_cpu(void) {
    if (cpu_ < 0) {
        __builtin_cpu_init();
        cpu_ = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    return cpu_;
}

void mpt_attn_tile_set(int on) { on_ = on != 0; }

int mpt_attn_tile_usable(int hs) {
    return on_ && hs >= 16 && hs <= MPT_ATTN_TILE_MAX_HS && hs % 16 == 0 && mpt_attn_tile_cpu();
}

/* lanes [0, n) of a mask set (n clamped to 0..8) */
static const int32_t mask_src_[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
INLINE_ __m256i mask_(int n) {
    n = n < 0 ? 0 : n > 8 ? 8 : n;
    return _mm256_loadu_si256((const __m256i *)(mask_src_ + 8 - n));
}

/* C rows [0, MR), columns [0, nb) (nb <= 16) = alpha Σ_{k0 <= k < k1} op(A)(i,k) B[k][j] + beta C.
 * full: nb == 16 (plain loads and stores). */
INLINE_ void block_(const int MR, const int full, int nb, int k0, int k1, float alpha,
                    const float *A, size_t ars, size_t acs, const float *B, size_t ldb,
                    float beta, float *C, size_t ldc) {
    __m256 c0[6], c1[6];
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) c0[r] = c1[r] = _mm256_setzero_ps();
    __m256i m0 = mask_(nb), m1 = mask_(nb - 8);
#pragma GCC unroll 4
    for (int k = k0; k < k1; k++) {
        const float *b = B + (size_t)k * ldb, *a = A + (size_t)k * acs;
        __m256 b0 = full ? _mm256_loadu_ps(b) : _mm256_maskload_ps(b, m0);
        __m256 b1 = full ? _mm256_loadu_ps(b + 8) : _mm256_maskload_ps(b + 8, m1);
#pragma GCC unroll 6
        for (int r = 0; r < MR; r++) {
            __m256 x = _mm256_broadcast_ss(a + (size_t)r * ars);
            c0[r] = _mm256_fmadd_ps(x, b0, c0[r]);
            c1[r] = _mm256_fmadd_ps(x, b1, c1[r]);
        }
    }
    __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) {
        float *c = C + (size_t)r * ldc;
        __m256 y0 = _mm256_mul_ps(va, c0[r]), y1 = _mm256_mul_ps(va, c1[r]);
        if (full) {
            if (beta != 0.0f) {
                y0 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(c), y0);
                y1 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(c + 8), y1);
            }
            _mm256_storeu_ps(c, y0);
            _mm256_storeu_ps(c + 8, y1);
        } else { /* element by element: masked stores are slow on AMD cores */
            float y[16];
            _mm256_storeu_ps(y, y0);
            _mm256_storeu_ps(y + 8, y1);
            for (int j = 0; j < nb; j++) c[j] = beta != 0.0f ? y[j] + beta * c[j] : y[j];
        }
    }
}

/* Rows [i0, i0+MR) of one column strip (columns [j0, j0+nb)), with the causal shape's range of
 * k (mpt_attn_tile_mask in attn_tile.h), or nothing when the block is not needed. A, C at row
 * 0 and B, C at column j0 of the strip. */
INLINE_ void rows_(const int MR, const int full, int nb, int i0, int j0, int K, int mask,
                   int diag, float alpha, const float *A, size_t ars, size_t acs, const float *B,
                   size_t ldb, float beta, float *C, size_t ldc) {
    int last = i0 + MR - 1, k0 = 0, k1 = K;
    if (mask == MPT_ATTN_TILE_A_LOWER) {
        long e = (long)last + diag + 1;
        k1 = e < 0 ? 0 : e < K ? (int)e : K;
    } else if (mask == MPT_ATTN_TILE_A_UPPER) {
        long b = (long)i0 - diag;
        k0 = b < 0 ? 0 : b < K ? (int)b : K;
    } else if (mask == MPT_ATTN_TILE_C_LOWER && (long)j0 > (long)last + diag) {
        return;
    }
    block_(MR, full, nb, k0, k1, alpha, A + (size_t)i0 * ars, ars, acs, B, ldb, beta,
           C + (size_t)i0 * ldc, ldc);
}

/* One column strip over all M rows: 6-row blocks, then the rest. */
INLINE_ void strip_(const int full, int nb, int j0, int M, int K, int mask, int diag,
                    float alpha, const float *A, size_t ars, size_t acs, const float *B,
                    size_t ldb, float beta, float *C, size_t ldc) {
    int i = 0;
    for (; i + 6 <= M; i += 6)
        rows_(6, full, nb, i, j0, K, mask, diag, alpha, A, ars, acs, B, ldb, beta, C, ldc);
    switch (M - i) {
    case 5:
        rows_(5, full, nb, i, j0, K, mask, diag, alpha, A, ars, acs, B, ldb, beta, C, ldc);
        break;
    case 4:
        rows_(4, full, nb, i, j0, K, mask, diag, alpha, A, ars, acs, B, ldb, beta, C, ldc);
        break;
    case 3:
        rows_(3, full, nb, i, j0, K, mask, diag, alpha, A, ars, acs, B, ldb, beta, C, ldc);
        break;
    case 2:
        rows_(2, full, nb, i, j0, K, mask, diag, alpha, A, ars, acs, B, ldb, beta, C, ldc);
        break;
    case 1:
        rows_(1, full, nb, i, j0, K, mask, diag, alpha, A, ars, acs, B, ldb, beta, C, ldc);
        break;
    default: break;
    }
}

/* Rows [i0, i0+MR) across every column strip. */
INLINE_ void across_(const int MR, int i0, int N, int K, int mask, int diag, float alpha,
                     const float *A, size_t ars, size_t acs, const float *B, size_t ldb,
                     float beta, float *C, size_t ldc) {
    int j = 0;
    for (; j + 16 <= N; j += 16)
        rows_(MR, 1, 16, i0, j, K, mask, diag, alpha, A, ars, acs, B + j, ldb, beta, C + j, ldc);
    if (j < N)
        rows_(MR, 0, N - j, i0, j, K, mask, diag, alpha, A, ars, acs, B + j, ldb, beta, C + j,
              ldc);
}

/* C in column strips, each strip's rows in turn (a strip of B, K × 16 floats, stays in L1
 * while A streams: A B with K up to 256), or, rows_first, in 6-row blocks, each across every
 * strip (the block's rows of op(A) stay in L1 while B, small enough for L1, is re-read:
 * Aᵀ B with K <= 64 and N = 64, B 16 KiB). */
TARGET_ static void gemm_(int M, int N, int K, float alpha, const float *A, size_t ars,
                          size_t acs, const float *B, size_t ldb, float beta, float *C,
                          size_t ldc, int mask, int diag, int rows_first) {
    if (rows_first) {
        int i = 0;
        for (; i + 6 <= M; i += 6)
            across_(6, i, N, K, mask, diag, alpha, A, ars, acs, B, ldb, beta, C, ldc);
        switch (M - i) {
        case 5: across_(5, i, N, K, mask, diag, alpha, A, ars, acs, B, ldb, beta, C, ldc); break;
        case 4: across_(4, i, N, K, mask, diag, alpha, A, ars, acs, B, ldb, beta, C, ldc); break;
        case 3: across_(3, i, N, K, mask, diag, alpha, A, ars, acs, B, ldb, beta, C, ldc); break;
        case 2: across_(2, i, N, K, mask, diag, alpha, A, ars, acs, B, ldb, beta, C, ldc); break;
        case 1: across_(1, i, N, K, mask, diag, alpha, A, ars, acs, B, ldb, beta, C, ldc); break;
        default: break;
        }
        return;
    }
    int j = 0;
    for (; j + 16 <= N; j += 16)
        strip_(1, 16, j, M, K, mask, diag, alpha, A, ars, acs, B + j, ldb, beta, C + j, ldc);
    if (j < N)
        strip_(0, N - j, j, M, K, mask, diag, alpha, A, ars, acs, B + j, ldb, beta, C + j, ldc);
}

void mpt_attn_tile_nn(int M, int N, int K, float alpha, const float *A, size_t lda,
                      const float *B, size_t ldb, float beta, float *C, size_t ldc, int mask,
                      int diag) {
    gemm_(M, N, K, alpha, A, lda, 1, B, ldb, beta, C, ldc, mask, diag, 0);
}

void mpt_attn_tile_tn(int M, int N, int K, float alpha, const float *A, size_t lda,
                      const float *B, size_t ldb, float beta, float *C, size_t ldc, int mask,
                      int diag) {
    gemm_(M, N, K, alpha, A, 1, lda, B, ldb, beta, C, ldc, mask, diag, 1);
}

/* out[c*ldo + r] = in[r*ldi + c] for an 8 × 8 block (unpack, shuffle, lane swap). */
INLINE_ void transpose8_(float *out, size_t ldo, const float *in, size_t ldi) {
    __m256 r[8], t[8], u[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(in + (size_t)i * ldi);
#pragma GCC unroll 4
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
#pragma GCC unroll 2
    for (int i = 0; i < 8; i += 4) {
        u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
        u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        _mm256_storeu_ps(out + (size_t)i * ldo, _mm256_permute2f128_ps(u[i], u[i + 4], 0x20));
        _mm256_storeu_ps(out + (size_t)(i + 4) * ldo,
                         _mm256_permute2f128_ps(u[i], u[i + 4], 0x31));
    }
}

TARGET_ void mpt_attn_tile_pack_t(float *panel, size_t ldp, const float *B, size_t ldb, int N,
                                  int K) {
    int n8 = N / 8 * 8, k8 = K / 8 * 8;
    for (int j = 0; j < n8; j += 8) {
        for (int k = 0; k < k8; k += 8)
            transpose8_(panel + (size_t)k * ldp + j, ldp, B + (size_t)j * ldb + k, ldb);
        for (int jj = j; jj < j + 8; jj++)
            for (int k = k8; k < K; k++) panel[(size_t)k * ldp + jj] = B[(size_t)jj * ldb + k];
    }
    for (int j = n8; j < N; j++)
        for (int k = 0; k < K; k++) panel[(size_t)k * ldp + j] = B[(size_t)j * ldb + k];
}
