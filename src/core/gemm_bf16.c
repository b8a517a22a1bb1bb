/* gemm_bf16.c — bf16 conversions (round to nearest even) and the bf16 GEMM with fp32
 * accumulation (see gemm_bf16.h): the path chosen from the CPU's flags, and the fallback that
 * rounds K-tiles of the operands into a scratch and calls the fp32 GEMM. */
#include "core/gemm_bf16.h"

#include <cpuid.h>
#include <stdlib.h>
#include <string.h>

/* Conversions this long or longer are split over the OpenMP threads. */
#define PAR_MIN_ 65536

static mpt_dtype gemm_dtype_ = MPT_F32;
static float *ws_;
static size_t ws_n_;

void mpt_gemm_set_dtype(mpt_dtype t) { gemm_dtype_ = t == MPT_BF16 ? MPT_BF16 : MPT_F32; }
mpt_dtype mpt_gemm_dtype(void) { return gemm_dtype_; }

void mpt_gemm_bf16_set_workspace(float *ws, size_t n) {
    ws_ = ws;
    ws_n_ = ws ? n : 0;
}

/* The top 16 bits of x's fp32 pattern after rounding to nearest even; NaN stays quiet NaN. */
static inline uint32_t rne_bits_(uint32_t u) {
    uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    uint32_t nan = (u >> 16) | 0x40u;
    return (u & 0x7fffffffu) > 0x7f800000u ? nan : r;
}

/* The loops move bit patterns with memcpy (no type punning); they vectorise to AVX2 integer
 * ops. Short spans stay on the calling thread: entering an OpenMP region, even a one-thread
 * one, costs more than rounding a row. */
static void encode_span_(mpt_bf16 *dst, const float *src, size_t n) {
#pragma omp simd
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, src + i, sizeof u);
        dst[i] = (mpt_bf16)rne_bits_(u);
    }
}

static void decode_span_(float *dst, const mpt_bf16 *src, size_t n) {
#pragma omp simd
    for (size_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)src[i] << 16;
        memcpy(dst + i, &u, sizeof u);
    }
}

static void round_span_(float *dst, const float *src, size_t n) {
#pragma omp simd
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, src + i, sizeof u);
        u = rne_bits_(u) << 16;
        memcpy(dst + i, &u, sizeof u);
    }
}

/* Spans of PAR_MIN_ values, over the threads. */
#define SPANS_(n) (((n) + PAR_MIN_ - 1) / PAR_MIN_)

void mpt_bf16_encode(mpt_bf16 *dst, const float *src, size_t n) {
    if (n < 2 * PAR_MIN_) {
        encode_span_(dst, src, n);
        return;
    }
#pragma omp parallel for schedule(static)
    for (size_t s = 0; s < SPANS_(n); s++) {
        size_t i = s * PAR_MIN_;
        encode_span_(dst + i, src + i, n - i < PAR_MIN_ ? n - i : PAR_MIN_);
    }
}

void mpt_bf16_decode(float *dst, const mpt_bf16 *src, size_t n) {
    if (n < 2 * PAR_MIN_) {
        decode_span_(dst, src, n);
        return;
    }
#pragma omp parallel for schedule(static)
    for (size_t s = 0; s < SPANS_(n); s++) {
        size_t i = s * PAR_MIN_;
        decode_span_(dst + i, src + i, n - i < PAR_MIN_ ? n - i : PAR_MIN_);
    }
}

void mpt_bf16_round(float *dst, const float *src, size_t n) {
    if (n < 2 * PAR_MIN_) {
        round_span_(dst, src, n);
        return;
    }
#pragma omp parallel for schedule(static)
    for (size_t s = 0; s < SPANS_(n); s++) {
        size_t i = s * PAR_MIN_;
        round_span_(dst + i, src + i, n - i < PAR_MIN_ ? n - i : PAR_MIN_);
    }
}

float mpt_bf16_round1(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    u = rne_bits_(u) << 16;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* ---- which path ------------------------------------------------------------------------------ */

/* CPUID leaf 7: subleaf 1 EAX bit 5 = AVX512_BF16; subleaf 0 EDX bit 22 = AMX_BF16. */
static int cpu_bf16_(int *amx) {
    unsigned a, b, c, d;
    *amx = 0;
    if (__get_cpuid_max(0, NULL) < 7) return 0;
    __cpuid_count(7, 0, a, b, c, d);
    *amx = (d >> 22) & 1u;
    __cpuid_count(7, 1, a, b, c, d);
    return (int)((a >> 5) & 1u) || *amx;
}

int mpt_cpu_has_bf16(void) {
    int amx;
    return cpu_bf16_(&amx);
}

mpt_bf16_path mpt_gemm_bf16_path(void) {
    return MPT_BF16_FALLBACK; /* the oneDNN bf16 matmul is not wired in yet (gemm_bf16.h) */
}

const char *mpt_gemm_bf16_describe(void) {
    int amx;
    if (!cpu_bf16_(&amx)) return "fp32 fallback, this CPU has no bf16 instructions";
    return amx ? "fp32 fallback; this CPU has amx_bf16, not used yet"
               : "fp32 fallback; this CPU has avx512_bf16, not used yet";
}

/* ---- the fallback GEMM ----------------------------------------------------------------------- */

size_t mpt_gemm_bf16_workspace(size_t max_rows, size_t max_cols) {
    return (max_rows + max_cols) * MPT_BF16_KTILE;
}

/* rows strided spans of len values: dst + r*dld = round(src + r*sld), r < rows */
typedef struct spans_ {
    float *dst;
    const float *src;
    size_t dld, sld, len, rows;
} spans_;

/* Rounds both operands' tiles in one OpenMP region (a region costs more than a small tile). */
static void round_tiles_(const spans_ *a, const spans_ *b) {
    size_t n = a->rows + b->rows;
    if ((a->rows * a->len + b->rows * b->len) < 2 * PAR_MIN_) {
        for (size_t r = 0; r < a->rows; r++)
            round_span_(a->dst + r * a->dld, a->src + r * a->sld, a->len);
        for (size_t r = 0; r < b->rows; r++)
            round_span_(b->dst + r * b->dld, b->src + r * b->sld, b->len);
        return;
    }
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        const spans_ *s = i < a->rows ? a : b;
        size_t r = i < a->rows ? i : i - a->rows;
        round_span_(s->dst + r * s->dld, s->src + r * s->sld, s->len);
    }
}

void mpt_gemm_bf16(mpt_sgemm_fn sgemm, char ta, char tb, size_t M, size_t N, size_t K,
                   float alpha, const float *A, size_t lda, const float *B, size_t ldb,
                   float beta, float *C, size_t ldc) {
    if (M == 0 || N == 0) return;
    if (K == 0) { /* nothing to multiply: C = beta C, as BLAS does */
        sgemm(ta, tb, M, N, 0, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    size_t per_k = M + N, want = per_k * (K < MPT_BF16_KTILE ? K : MPT_BF16_KTILE);
    float *ws = ws_, *own = NULL;
    size_t n = ws_n_;
    if (n < per_k) { /* no usable scratch: a temporary of a full tile */
        own = malloc(want * sizeof *own);
        if (!own) { /* cannot round: leave C as an fp32 GEMM would (never silently skip) */
            sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
            return;
        }
        ws = own;
        n = want;
    }
    size_t kt_max = n / per_k;
    if (kt_max > MPT_BF16_KTILE) kt_max = MPT_BF16_KTILE;
    float *As = ws, *Bs = ws + M * kt_max;
    for (size_t k0 = 0; k0 < K; k0 += kt_max) {
        size_t kt = K - k0 < kt_max ? K - k0 : kt_max;
        size_t la, lb;
        spans_ sa, sb;
        /* op(A) is (M, K): 'N' stores it (M, lda), 'T' stores its transpose (K, lda) */
        if (ta == 'N') {
            sa = (spans_){As, A + k0, kt, lda, kt, M};
            la = kt;
        } else {
            sa = (spans_){As, A + k0 * lda, M, lda, M, kt};
            la = M;
        }
        /* op(B) is (K, N): 'N' stores it (K, ldb), 'T' stores its transpose (N, ldb) */
        if (tb == 'N') {
            sb = (spans_){Bs, B + k0 * ldb, N, ldb, N, kt};
            lb = N;
        } else {
            sb = (spans_){Bs, B + k0, kt, ldb, kt, N};
            lb = kt;
        }
        round_tiles_(&sa, &sb);
        sgemm(ta, tb, M, N, kt, alpha, As, la, Bs, lb, k0 == 0 ? beta : 1.0f, C, ldc);
    }
    free(own);
}
