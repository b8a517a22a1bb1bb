/* gemm_bf16.c — bf16 conversions (round to nearest even) and the bf16 GEMM with fp32
 * accumulation (see gemm_bf16.h): the path chosen from the CPU's flags, and the fallback that
 * rounds K-tiles of the operands into a scratch and calls the fp32 GEMM on fixed-size row blocks
 * (batch-invariant rows). */
#include "core/gemm_bf16.h"

#include <cpuid.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* Conversions this long or longer are split over the OpenMP threads. */
#define PAR_MIN_ 65536

static mpt_dtype gemm_dtype_ = MPT_F32;
static float *ws_;
static size_t ws_n_;
static size_t scratch_allocs_; /* temporaries the fallback allocated (atomic updates) */

void mpt_gemm_set_dtype(mpt_dtype t) { gemm_dtype_ = t == MPT_BF16 ? MPT_BF16 : MPT_F32; }
mpt_dtype mpt_gemm_dtype(void) { return gemm_dtype_; }

size_t mpt_gemm_bf16_scratch_allocs(void) {
    size_t n;
#pragma omp atomic read
    n = scratch_allocs_;
    return n;
}

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

/* Batch invariance (gemm_bf16.h): every fp32 GEMM the fallback calls has the shape (MBLK, N, kt)
 * for one (N, K), both operands 'N' (rounded into that layout) and one thread. K is cut into tiles of MPT_BF16_KTILE whatever the
 * scratch (the last tile shorter); op(A)'s rows are cut into blocks of MPT_BF16_MBLK rows, the
 * last block padded with zero rows in the scratch and its C rows staged in the scratch; each
 * (block, tile) is one single-threaded call (the blocks run over the OpenMP threads, and both
 * libraries run one thread inside a parallel region). So a row of C sees the same call whatever
 * M, the thread count, or which rows surround it. Measured (tests/test_bf16.c): oneDNN 2.6's
 * rows are then bit-identical at every position of a block and every M; OpenBLAS 0.3.21's are
 * not (its Zen kernel gives the rows at positions 6-11 of each 12 other last bits than 0-5). */

size_t mpt_gemm_bf16_workspace(size_t max_rows, size_t max_cols) {
    size_t s = max_rows + max_cols;
    return (s + MPT_BF16_MBLK) * MPT_BF16_KTILE + MPT_BF16_MBLK * s;
}

/* Scratch floats of one GEMM of N columns and K-tile kt whose row blocks run on `slots`
 * threads at once: the B tile (kt x N), one op(A) block (MBLK x kt) per thread (each rounds
 * its blocks one after the other into its own slot), the staged C rows of a partial last block
 * (MBLK x N). SIZE_MAX on overflow. */
static size_t need_(size_t N, size_t kt, size_t slots) {
    const size_t mb = MPT_BF16_MBLK;
    if (slots > SIZE_MAX / 4 / (mb * kt + 1)) return SIZE_MAX;
    size_t a = slots * mb * kt;
    if (N > (SIZE_MAX / 4 - a) / (kt + mb)) return SIZE_MAX;
    return N * kt + a + mb * N;
}

size_t mpt_gemm_bf16_workspace_threads(size_t max_cols, int threads) {
    size_t t = threads > 1 ? (size_t)threads : 1, one = need_(max_cols, MPT_BF16_KTILE, 1);
    size_t solo = need_(max_cols, MPT_BF16_KTILE, t);
    if (one == SIZE_MAX || solo == SIZE_MAX) return SIZE_MAX;
    one = (one + 15) / 16 * 16; /* a concurrent caller's slice (mpt_gemm_bf16) */
    if (one > SIZE_MAX / t) return SIZE_MAX;
    return t * one > solo ? t * one : solo;
}

/* One GEMM's operands and scratch. */
typedef struct job_ {
    mpt_sgemm_fn sgemm;
    char ta, tb;
    size_t M, N, K, lda, ldb, ldc;
    float alpha, beta;
    const float *A, *B;
    float *C;
    float *Bs, *As, *Cs; /* scratch: B tile, one A block per thread, a partial block's C rows */
} job_;

/* Row r of the B tile from K-row k0, rounded into (kt, N) layout whatever tb ('N': row r is
 * K-row k0 + r; 'T': r is a column, written strided), so every call is 'N','N' (a transposed
 * B packed by oneDNN in every block's call ran at ~60% of the rate). */
static void round_b_row_(const job_ *j, size_t k0, size_t kt, size_t r) {
    if (j->tb == 'N') {
        round_span_(j->Bs + r * j->N, j->B + (k0 + r) * j->ldb, j->N);
        return;
    }
    const float *src = j->B + r * j->ldb + k0;
    for (size_t k = 0; k < kt; k++) j->Bs[k * j->N + r] = mpt_bf16_round1(src[k]);
}

/* Block b of op(A)'s K-tile, rounded into slot `slot` as (MBLK, kt) whatever ta; rows past M
 * are zero. Returns the block's rows. */
static size_t round_a_block_(const job_ *j, size_t b, size_t slot, size_t k0, size_t kt) {
    const size_t mb = MPT_BF16_MBLK;
    size_t r0 = b * mb, m = j->M - r0 < mb ? j->M - r0 : mb;
    float *dst = j->As + slot * mb * kt;
    if (j->ta == 'N') {
        for (size_t r = 0; r < m; r++) round_span_(dst + r * kt, j->A + (r0 + r) * j->lda + k0, kt);
        if (m < mb) memset(dst + m * kt, 0, (mb - m) * kt * sizeof *dst);
    } else { /* transposed into (MBLK, kt) too */
        for (size_t k = 0; k < kt; k++) {
            const float *src = j->A + (k0 + k) * j->lda + r0;
            for (size_t r = 0; r < m; r++) dst[r * kt + k] = mpt_bf16_round1(src[r]);
        }
        if (m < mb) memset(dst + m * kt, 0, (mb - m) * kt * sizeof *dst);
    }
    return m;
}

/* Block b of the K-tile at k0: C rows [b MBLK, +m) (+)= alpha op(A) op(B), one sgemm of
 * MBLK rows, its A block rounded into slot `slot`; a partial block through the staged rows Cs. */
static void block_gemm_(const job_ *j, size_t b, size_t slot, size_t k0, size_t kt) {
    const size_t mb = MPT_BF16_MBLK;
    size_t m = round_a_block_(j, b, slot, k0, kt), r0 = b * mb;
    size_t la = kt, lb = j->N;
    float beta = k0 == 0 ? j->beta : 1.0f, *C = j->C + r0 * j->ldc;
    const float *Ab = j->As + slot * mb * kt;
    if (m == mb) {
        j->sgemm('N', 'N', mb, j->N, kt, j->alpha, Ab, la, j->Bs, lb, beta, C, j->ldc);
        return;
    }
    for (size_t r = 0; r < mb; r++) {
        float *cs = j->Cs + r * j->N;
        if (r < m && beta != 0.0f) memcpy(cs, C + r * j->ldc, j->N * sizeof *cs);
        else memset(cs, 0, j->N * sizeof *cs);
    }
    j->sgemm('N', 'N', mb, j->N, kt, j->alpha, Ab, la, j->Bs, lb, beta, j->Cs, j->N);
    for (size_t r = 0; r < m; r++) memcpy(C + r * j->ldc, j->Cs + r * j->N, j->N * sizeof *C);
}

/* All K-tiles: the B tile rounded over the threads, then the blocks over the threads (one
 * region per tile; one thread inside a parallel region already): min(blocks, threads) groups of
 * consecutive blocks, group g on one thread in A slot g (the scratch holds min(blocks, nth)). */
static void run_tiles_(const job_ *j) {
    size_t blocks = (j->M + MPT_BF16_MBLK - 1) / MPT_BF16_MBLK;
    int nth = omp_in_parallel() ? 1 : omp_get_max_threads();
    for (size_t k0 = 0; k0 < j->K; k0 += MPT_BF16_KTILE) {
        size_t kt = j->K - k0 < MPT_BF16_KTILE ? j->K - k0 : MPT_BF16_KTILE;
        size_t brows = j->tb == 'N' ? kt : j->N;
        int team = nth > 1 && (blocks > 1 || brows * (j->N + kt) >= 2 * PAR_MIN_) ? nth : 1;
#pragma omp parallel num_threads(team) if (team > 1)
        {
#pragma omp for schedule(static)
            for (size_t r = 0; r < brows; r++) round_b_row_(j, k0, kt, r);
            size_t nt = (size_t)omp_get_num_threads(), groups = blocks < nt ? blocks : nt;
            for (size_t g = (size_t)omp_get_thread_num(); g < groups; g += nt)
                for (size_t b = blocks * g / groups; b < blocks * (g + 1) / groups; b++)
                    block_gemm_(j, b, g, k0, kt);
        }
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
    size_t kt = K < MPT_BF16_KTILE ? K : MPT_BF16_KTILE;
    size_t blocks = (M + MPT_BF16_MBLK - 1) / MPT_BF16_MBLK;
    size_t nth = omp_in_parallel() ? 1 : (size_t)omp_get_max_threads(); /* as run_tiles_ */
    size_t slots = blocks < nth ? blocks : nth, want = need_(N, kt, slots);
    float *ws = ws_, *own = NULL;
    size_t n = ws_n_;
    if (omp_in_parallel() && omp_get_num_threads() > 1) { /* concurrent GEMMs (MoE experts):
                                                            * one slice of the scratch each */
        n = n / (size_t)omp_get_num_threads() / 16 * 16;
        ws = ws ? ws + (size_t)omp_get_thread_num() * n : NULL;
    }
    if (!ws || n < want) { /* no usable scratch: a temporary */
#pragma omp atomic update
        scratch_allocs_++;
        own = want < SIZE_MAX / sizeof *own ? malloc(want * sizeof *own) : NULL;
        if (!own) { /* cannot round: leave C as an fp32 GEMM would (never silently skip) */
            sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
            return;
        }
        ws = own;
    }
    job_ j = {sgemm, ta, tb, M, N, K, lda, ldb, ldc, alpha, beta, A, B, C,
              ws, ws + N * kt, ws + N * kt + slots * MPT_BF16_MBLK * kt};
    run_tiles_(&j);
    free(own);
}
