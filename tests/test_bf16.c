/* test_bf16.c — the bf16 conversions and GEMMs of src/core/gemm_bf16.h:
 *   1. rounding to bf16 (encode, round, round1) equals a double-precision model of round to
 *      nearest, ties to even, bit for bit, on hand-picked edge cases (ties, carries into the
 *      exponent, inf, NaN, FLT_MAX, subnormals) and 2^20 random bit patterns; decode is exact;
 *   2. the bf16 GEMM (every transposition, K below, at and above the tile, a scratch too small
 *      for full tiles, no scratch) equals, bit for bit, a double-precision model of "round the
 *      inputs to bf16, multiply and add exactly" on inputs where fp32 accumulation is exact
 *      (multiples of 1/8 below 8 in magnitude: every partial sum fits in 24 bits);
 *   3. on random normal inputs the bf16 GEMM stays within bf16's error bound of the fp32 GEMM:
 *      |C_bf16 - C_f32| <= 2^-8 sum_k |a_ik b_kj| + fp32 slack, element by element, and within
 *      fp32 accumulation error of the double model of the rounded inputs;
 *   4. mpt_matmul_* and mpt_lmhead_* in bf16 mode are those GEMMs (exact inputs, exact result);
 *   5. batch invariance: with oneDNN's sgemm (the fallback's library), a row of C is bit-identical
 *      whatever the row count M (1, 3, 7, 50, 67, 256, 1000), its position in a row block (every
 *      offset 0..MBLK-1 for the small M), 1 or 2 threads, the scratch or none, and called
 *      alone or by two threads of a parallel region at once (MoE experts), for every
 *      transposition and K within, at and past a K-tile. The same rows on OpenBLAS are counted
 *      and printed, not checked: its kernel rounds by a row's position in its tile. Checking
 *      builds (check_small) take every 5th block position (23rd at M >= 256), no OpenBLAS.
 *      (Unlike the cases above, the operands here are random normal: fp32 sums round.)
 *   6. the scratch of mpt_gemm_bf16_workspace_threads(N, 2) takes every GEMM of N columns
 *      whatever M (1 to 1000 rows) and K (within and past a K-tile), every transposition, from
 *      one caller on 1 or 2 threads or from two callers of a parallel region at once (MoE
 *      experts' tasks, each in its half): mpt_gemm_bf16_scratch_allocs does not move, and the
 *      rows equal the no-scratch call's bit for bit; a scratch one float short of it makes the
 *      two callers allocate when K fills a K-tile (the count moves by 2).
 */
#include "check.h"
#include "core/gemm_bf16.h"
#include "core/kernels.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>

static uint32_t bits_(float x) { uint32_t u; memcpy(&u, &x, 4); return u; }
static float float_(uint32_t u) { float x; memcpy(&x, &u, 4); return x; }

/* Reference: the bf16 bit pattern nearest to x (ties to the even pattern), chosen by comparing
 * distances in double; values beyond the largest bf16's rounding boundary go to inf. */
static uint16_t ref_bf16_(float x) {
    uint32_t u = bits_(x);
    if (isnan(x)) return (uint16_t)((u >> 16) | 0x40);
    if (isinf(x)) return (uint16_t)(u >> 16);
    uint16_t lo = (uint16_t)(u >> 16); /* truncation: toward zero */
    uint16_t hi = (uint16_t)(lo + 1);  /* next away from zero (may be inf) */
    double dx = fabs((double)x), dlo = fabs((double)float_((uint32_t)lo << 16));
    double dhi = (hi & 0x7fff) == 0x7f80 ? ldexp(1.0, 128) /* one bf16 ulp past the largest */
                                          : fabs((double)float_((uint32_t)hi << 16));
    double elo = dx - dlo, ehi = dhi - dx;
    if (elo < ehi) return lo;
    if (ehi < elo) return hi;
    return (lo & 1) ? hi : lo;
}

static uint64_t rng_ = 0x9e3779b97f4a7c15ull;
static uint32_t rand32_(void) {
    rng_ ^= rng_ << 13; rng_ ^= rng_ >> 7; rng_ ^= rng_ << 17;
    return (uint32_t)(rng_ >> 11);
}
static float normal_(void) {
    double u1 = (rand32_() + 1.0) / 4294967297.0, u2 = rand32_() / 4294967296.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

static void test_rounding_(void) {
    const uint32_t edge[] = {
        0x3f800000, 0x3f808000 /* tie, even below */, 0x3f818000 /* tie, odd below */,
        0x3f808001, 0x3f807fff, 0x3fffffff /* carries into the exponent */, 0xbf808000,
        0x7f7fffff /* FLT_MAX -> inf */, 0x7f7f7fff, 0x7f7f8000 /* tie at the top -> inf */,
        0x7f800000, 0xff800000, 0x7fc00000, 0x7f800001 /* signalling NaN -> quiet */, 0xffc12345,
        0x00000001, 0x00008000, 0x00018000, 0x807fffff, 0x00000000, 0x80000000, 0x0001ffff};
    size_t ne = sizeof edge / sizeof *edge, n = ((size_t)1 << 20) + 7, bad = 0, badr = 0, badd = 0;
    float *x = malloc((n + ne) * sizeof *x), *r = malloc((n + ne) * sizeof *r);
    float *d = malloc((n + ne) * sizeof *d);
    uint16_t *h = malloc((n + ne) * sizeof *h);
    for (size_t i = 0; i < ne; i++) x[i] = float_(edge[i]);
    for (size_t i = ne; i < n + ne; i++) x[i] = float_(rand32_());
    n += ne;
    mpt_bf16_encode(h, x, n);
    mpt_bf16_round(r, x, n);
    mpt_bf16_decode(d, h, n);
    for (size_t i = 0; i < n; i++) {
        uint16_t want = ref_bf16_(x[i]);
        int same_nan = isnan(x[i]) && isnan(float_((uint32_t)h[i] << 16)) &&
                       (h[i] & 0x40) && (h[i] >> 15) == (bits_(x[i]) >> 31);
        if (h[i] != want && !same_nan) {
            if (bad++ < 5)
                fprintf(stderr, "encode %08x: got %04x want %04x\n", bits_(x[i]), h[i], want);
        }
        if (bits_(r[i]) != (uint32_t)h[i] << 16 || bits_(mpt_bf16_round1(x[i])) != bits_(r[i]))
            badr++;
        if (bits_(d[i]) != (uint32_t)h[i] << 16) badd++;
    }
    CHECK(bad == 0, "encode: %zu of %zu differ from the rne model", bad, n);
    CHECK(badr == 0, "round/round1: %zu differ from encode", badr);
    CHECK(badd == 0, "decode: %zu not exact", badd);
    CHECK(h[1] == 0x3f80 && h[2] == 0x3f82 && h[3] == 0x3f81 && h[5] == 0x4000 && h[7] == 0x7f80,
          "edge cases: %04x %04x %04x %04x %04x", h[1], h[2], h[3], h[5], h[7]);
    printf("rounding: %zu values (%zu edge cases) equal the double rne model\n", n, ne);
    free(x); free(r); free(d); free(h);
}

static void sgemm_blas_(char ta, char tb, size_t M, size_t N, size_t K, float alpha,
                        const float *A, size_t lda, const float *B, size_t ldb, float beta,
                        float *C, size_t ldc) {
    cblas_sgemm(CblasRowMajor, ta == 'T' ? CblasTrans : CblasNoTrans,
                tb == 'T' ? CblasTrans : CblasNoTrans, (int)M, (int)N, (int)K, alpha, A, (int)lda,
                B, (int)ldb, beta, C, (int)ldc);
}

/* op(X)(i,k) of a row-major matrix stored for 'N' as (rows, ld) or for 'T' as its transpose */
static double at_(const float *X, char t, size_t ld, size_t i, size_t k, int round) {
    float v = t == 'N' ? X[i * ld + k] : X[k * ld + i];
    return round ? (double)mpt_bf16_round1(v) : (double)v;
}

/* One GEMM of shape (M,N,K) and transpositions: exact inputs (2) or normal ones (3). */
static void gemm_case_(char ta, char tb, size_t M, size_t N, size_t K, int exact, size_t ws_n,
                       int no_ws) {
    size_t lda = (ta == 'N' ? K : M) + 3, ldb = (tb == 'N' ? N : K) + 1, ldc = N + 2;
    size_t na = (ta == 'N' ? M : K) * lda, nb = (tb == 'N' ? K : N) * ldb;
    float *A = malloc(na * sizeof *A), *B = malloc(nb * sizeof *B);
    float *C = malloc(M * ldc * sizeof *C), *C0 = malloc(M * ldc * sizeof *C0);
    float *ws = ws_n ? malloc(ws_n * sizeof *ws) : NULL;
    for (size_t i = 0; i < na; i++) /* exact: k/8 (|k| <= 24) times 1 + noise below bf16's ulp */
        A[i] = exact ? (float)((int)(rand32_() % 49) - 24) / 8.0f * (1.0f + 1e-3f * (float)(rand32_() % 3) / 1024.0f) : normal_();
    for (size_t i = 0; i < nb; i++)
        B[i] = exact ? (float)((int)(rand32_() % 17) - 8) / 8.0f * (1.0f - 1e-3f * (float)(rand32_() % 3) / 1024.0f) : normal_();
    for (size_t i = 0; i < M * ldc; i++) C0[i] = exact ? (float)((int)(rand32_() % 9) - 4) : normal_();
    memcpy(C, C0, M * ldc * sizeof *C);
    float alpha = 1.0f, beta = exact ? 1.0f : 0.5f;
    mpt_gemm_bf16_set_workspace(no_ws ? NULL : ws, ws_n);
    mpt_gemm_bf16(sgemm_blas_, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    size_t bad = 0, badb = 0, untouched = 0;
    double worst = 0.0, worst_bound = 0.0;
    float *F = malloc(M * ldc * sizeof *F);
    memcpy(F, C0, M * ldc * sizeof *F);
    sgemm_blas_(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, F, ldc);
    for (size_t i = 0; i < M; i++) {
        for (size_t j = 0; j < N; j++) {
            double s = 0.0, sabs = 0.0;
            for (size_t k = 0; k < K; k++) {
                double p = at_(A, ta, lda, i, k, 1) * at_(B, tb, ldb, k, j, 1);
                s += p;
                sabs += fabs(at_(A, ta, lda, i, k, 0) * at_(B, tb, ldb, k, j, 0));
            }
            double want = alpha * s + beta * C0[i * ldc + j], got = C[i * ldc + j];
            double acc = 2.0 * (K + 2) * FLT_EPSILON * (sabs + fabs(C0[i * ldc + j]));
            if (exact ? got != want : fabs(got - want) > acc) bad++;
            /* bf16 vs fp32: each rounded product is within (2^-8 + 2^-16) |a b| of the exact one */
            double bound = 1.01 * ldexp(1.0, -8) * sabs + 2.0 * acc;
            double diff = fabs(got - (double)F[i * ldc + j]);
            if (diff > bound) badb++;
            if (diff / (bound > 0 ? bound : 1) > worst) worst = diff / bound, worst_bound = bound;
        }
        for (size_t j = N; j < ldc; j++) untouched += C[i * ldc + j] != C0[i * ldc + j];
    }
    char name[96];
    snprintf(name, sizeof name, "%c%c M=%zu N=%zu K=%zu %s%s", ta, tb, M, N, K,
             exact ? "exact" : "normal",
             no_ws ? " no-scratch" : ws_n && ws_n < mpt_gemm_bf16_workspace(M, N) ? " small-scratch" : "");
    CHECK(bad == 0, "%s: %zu of %zu elements differ from the double model of rounded inputs",
          name, bad, M * N);
    CHECK(badb == 0 || exact, "%s: %zu elements beyond bf16's bound of the fp32 GEMM", name, badb);
    CHECK(untouched == 0, "%s: %zu elements outside C changed", name, untouched);
    printf("%-46s %s; |bf16 - fp32| at most %.2f of the bf16 bound (%.3g)\n", name,
           exact ? "bit-exact" : "within fp32 accumulation error", worst, worst_bound);
    mpt_gemm_bf16_set_workspace(NULL, 0);
    free(A); free(B); free(C); free(C0); free(F); free(ws);
}

/* mpt_matmul_* / mpt_lmhead_* in bf16 mode: results of exact inputs equal the double model. */
static void test_layers_(void) {
    size_t N = 37, C = 300, OC = 29;
    float *x = malloc(N * C * 4), *w = malloc(C * OC * 4), *b = malloc(OC * 4);
    float *y = malloc(N * OC * 4), *dy = malloc(N * OC * 4), *dx = calloc(N * C, 4);
    float *dw = calloc(C * OC, 4), *db = calloc(OC, 4);
    for (size_t i = 0; i < N * C; i++) x[i] = (float)((int)(rand32_() % 17) - 8) / 4.0f * 1.0001f;
    for (size_t i = 0; i < C * OC; i++) w[i] = (float)((int)(rand32_() % 9) - 4) / 8.0f * 0.9999f;
    for (size_t i = 0; i < N * OC; i++) dy[i] = (float)((int)(rand32_() % 9) - 4) / 2.0f * 1.0002f;
    for (size_t i = 0; i < OC; i++) b[i] = (float)(i % 5) / 8.0f; /* bias stays fp32 */
    mpt_gemm_set_dtype(MPT_BF16);
    CHECK(mpt_gemm_dtype() == MPT_BF16, "dtype set");
    mpt_matmul_forward(y, x, w, b, N, (int)C, (int)OC);
    mpt_matmul_backward(dx, dw, db, dy, x, w, N, (int)C, (int)OC);
    mpt_gemm_set_dtype(MPT_F32);
    size_t bad = 0;
    for (size_t i = 0; i < N; i++)
        for (size_t j = 0; j < OC; j++) {
            double s = 0.0;
            for (size_t k = 0; k < C; k++)
                s += (double)mpt_bf16_round1(x[i * C + k]) * mpt_bf16_round1(w[k * OC + j]);
            bad += (float)(s + b[j]) != y[i * OC + j];
        }
    for (size_t i = 0; i < N; i++)
        for (size_t k = 0; k < C; k++) {
            double s = 0.0;
            for (size_t j = 0; j < OC; j++)
                s += (double)mpt_bf16_round1(dy[i * OC + j]) * mpt_bf16_round1(w[k * OC + j]);
            bad += (float)s != dx[i * C + k];
        }
    for (size_t k = 0; k < C; k++)
        for (size_t j = 0; j < OC; j++) {
            double s = 0.0;
            for (size_t i = 0; i < N; i++)
                s += (double)mpt_bf16_round1(x[i * C + k]) * mpt_bf16_round1(dy[i * OC + j]);
            bad += (float)s != dw[k * OC + j];
        }
    CHECK(bad == 0, "matmul forward/backward in bf16 mode: %zu elements differ", bad);
    /* the head: w (V, C) nn.Linear layout, out (N, ldo) */
    size_t V = 11, ldo = 16;
    float *lo = calloc(N * ldo, 4), *hx = calloc(N * C, 4), *hw = calloc(V * C, 4);
    mpt_gemm_set_dtype(MPT_BF16);
    mpt_lmhead_forward(lo, x, w, N, (int)C, (int)V, (int)ldo); /* first V*C of w as (V, C) */
    for (size_t i = 0; i < N; i++) memcpy(dy + i * ldo, lo + i * ldo, ldo * 4);
    mpt_lmhead_backward(hx, hw, lo, x, w, N, (int)C, (int)V, (int)ldo);
    mpt_gemm_set_dtype(MPT_F32);
    size_t badh = 0;
    for (size_t i = 0; i < N; i++)
        for (size_t v = 0; v < V; v++) {
            double s = 0.0;
            for (size_t k = 0; k < C; k++)
                s += (double)mpt_bf16_round1(x[i * C + k]) * mpt_bf16_round1(w[v * C + k]);
            badh += (float)s != lo[i * ldo + v];
        }
    for (size_t i = 0; i < N; i++)
        for (size_t v = V; v < ldo; v++) badh += lo[i * ldo + v] != 0.0f;
    CHECK(badh == 0, "lmhead forward in bf16 mode: %zu elements differ", badh);
    /* backward from dout = those logits (rounded at the GEMM input like any operand) */
    size_t badb = 0;
    for (size_t i = 0; i < N; i++)
        for (size_t k = 0; k < C; k++) {
            double s = 0.0;
            for (size_t v = 0; v < V; v++)
                s += (double)mpt_bf16_round1(dy[i * ldo + v]) * mpt_bf16_round1(w[v * C + k]);
            badb += (float)s != hx[i * C + k];
        }
    for (size_t v = 0; v < V; v++)
        for (size_t k = 0; k < C; k++) {
            double s = 0.0;
            for (size_t i = 0; i < N; i++)
                s += (double)mpt_bf16_round1(dy[i * ldo + v]) * mpt_bf16_round1(x[i * C + k]);
            badb += (float)s != hw[v * C + k];
        }
    CHECK(badb == 0, "lmhead backward in bf16 mode: %zu elements differ", badb);
    printf("matmul forward/backward and lmhead forward/backward in bf16 mode: bit-exact on exact "
           "inputs\n");
    free(x); free(w); free(b); free(y); free(dy); free(dx); free(dw); free(db);
    free(lo); free(hx); free(hw);
}

static void sgemm_dnnl_(char ta, char tb, size_t M, size_t N, size_t K, float alpha,
                        const float *A, size_t lda, const float *B, size_t ldb, float beta,
                        float *C, size_t ldc) {
    dnnl_sgemm(ta, tb, (dnnl_dim_t)M, (dnnl_dim_t)N, (dnnl_dim_t)K, alpha, A, (dnnl_dim_t)lda, B,
               (dnnl_dim_t)ldb, beta, C, (dnnl_dim_t)ldc);
}

/* Rows [o, o + m) of op(A) times op(B) into C's rows [o, o + m): op(A) of R rows is stored
 * (R, lda) for 'N', (K, lda) for 'T'. */
static void rows_(mpt_sgemm_fn f, char ta, char tb, size_t o, size_t m, size_t N, size_t K,
                  const float *A, size_t lda, const float *B, size_t ldb, float *C, size_t ldc) {
    mpt_gemm_bf16(f, ta, tb, m, N, K, 1.0f, ta == 'N' ? A + o * lda : A + o, lda, B, ldb, 0.5f,
                  C + o * ldc, ldc);
}

/* 5: returns the rows (of those compared) that differ from the one-call reference. */
static size_t invariance_case_(mpt_sgemm_fn f, char ta, char tb, size_t N, size_t K, size_t *rows) {
    const size_t MB = MPT_BF16_MBLK, R = 1000 + MB, Ms[] = {1, 3, 7, 50, 67, 256, 1000};
    size_t lda = (ta == 'N' ? K : R) + 1, ldb = (tb == 'N' ? N : K) + 2, ldc = N + 3;
    size_t na = (ta == 'N' ? R : K) * lda, nb = (tb == 'N' ? K : N) * ldb, wsn = mpt_gemm_bf16_workspace(R, N);
    float *A = malloc(na * 4), *B = malloc(nb * 4), *C0 = malloc(R * ldc * 4);
    float *ref = malloc(R * ldc * 4), *C = malloc(R * ldc * 4), *ws = malloc(wsn * 4);
    for (size_t i = 0; i < na; i++) A[i] = normal_();
    for (size_t i = 0; i < nb; i++) B[i] = normal_();
    for (size_t i = 0; i < R * ldc; i++) C0[i] = normal_();
    memcpy(ref, C0, R * ldc * 4);
    mpt_gemm_bf16_set_workspace(NULL, 0); /* the reference: one call, no scratch, 2 threads */
    omp_set_num_threads(2);
    rows_(f, ta, tb, 0, R, N, K, A, lda, B, ldb, ref, ldc);
    mpt_gemm_bf16_set_workspace(ws, wsn);
    size_t bad = 0, n = 0;
    for (size_t mi = 0; mi < sizeof Ms / sizeof *Ms; mi++) {
        size_t m = Ms[mi], step = check_small() ? (m >= 256 ? 23 : 5) : m >= 256 ? 9 : 1;
        for (size_t o = 0; o + m <= R && o < MB; o += step) {
            memcpy(C, C0, R * ldc * 4);
            omp_set_num_threads(1 + (int)(o % 2));
            if (o % 3 == 2 && m > 1) { /* two threads of a region at once, a part each */
                size_t h = m / 2;
#pragma omp parallel num_threads(2)
                {
                    int t = omp_get_thread_num();
                    rows_(f, ta, tb, t ? o + h : o, t ? m - h : h, N, K, A, lda, B, ldb, C, ldc);
                }
            } else {
                rows_(f, ta, tb, o, m, N, K, A, lda, B, ldb, C, ldc);
            }
            for (size_t i = o; i < o + m; i++, n++) bad += memcmp(C + i * ldc, ref + i * ldc, N * 4) != 0;
        }
    }
    omp_set_num_threads(2);
    mpt_gemm_bf16_set_workspace(NULL, 0);
    free(A); free(B); free(C0); free(ref); free(C); free(ws);
    *rows = n;
    return bad;
}

static void test_invariance_(void) {
    const size_t shapes[][2] = {{37, 45}, {96, 256}, {64, 300}}; /* (N, K) */
    const char t[2] = {'N', 'T'};
    for (int lib = 0; lib < 2 - check_small(); lib++) { /* OpenBLAS: one shape, printed */
        size_t bad = 0, rows = 0;
        for (size_t s = 0; s < (lib ? 1 : sizeof shapes / sizeof *shapes); s++)
            for (int a = 0; a < 2; a++)
                for (int b = 0; b < 2; b++) {
                    size_t n, d = invariance_case_(lib ? sgemm_blas_ : sgemm_dnnl_, t[a], t[b],
                                                   shapes[s][0], shapes[s][1], &n);
                    if (d && !lib)
                        fprintf(stderr, "%c%c N=%zu K=%zu: %zu of %zu rows differ\n", t[a], t[b],
                                shapes[s][0], shapes[s][1], d, n);
                    bad += d, rows += n;
                }
        if (!lib)
            CHECK(bad == 0, "oneDNN: %zu of %zu rows differ from one call of all rows", bad, rows);
        printf("batch invariance, %s: %zu of %zu rows (M 1..1000, every block position, 1-2 "
               "threads, alone or two at once) differ from one call of all rows%s\n",
               lib ? "OpenBLAS" : "oneDNN", bad, rows, lib ? " (counted, not checked)" : "");
    }
}

/* 6: see the header */
static void test_scratch_(void) {
    const size_t N = 64, Ks[] = {45, 300}, Ms[] = {1, 49, 389, 1000}, R = 1000;
    const char t[2] = {'N', 'T'};
    size_t wsn = mpt_gemm_bf16_workspace_threads(N, 2), calls = 0, bad = 0, moved = 0;
    float *ws = malloc(wsn * 4);
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 2; b++)
            for (size_t ki = 0; ki < 2; ki++) {
                char ta = t[a], tb = t[b];
                size_t K = Ks[ki], lda = (ta == 'N' ? K : 2 * R) + 1, ldb = (tb == 'N' ? N : K) + 2;
                size_t na = (ta == 'N' ? 2 * R : K) * lda, nb = (tb == 'N' ? K : N) * ldb;
                float *A = malloc(na * 4), *B = malloc(nb * 4), *ref = malloc(2 * R * N * 4);
                float *C = malloc(2 * R * N * 4);
                for (size_t i = 0; i < na; i++) A[i] = normal_();
                for (size_t i = 0; i < nb; i++) B[i] = normal_();
                omp_set_num_threads(2);
                mpt_gemm_bf16_set_workspace(NULL, 0); /* the reference: no scratch */
                memset(ref, 0, 2 * R * N * 4);
                rows_(sgemm_dnnl_, ta, tb, 0, 2 * R, N, K, A, lda, B, ldb, ref, N);
                for (size_t mi = 0; mi < sizeof Ms / sizeof *Ms; mi++)
                    for (int mode = 0; mode < 4; mode++) { /* 1 thread, 2, 2 callers, short */
                        size_t m = Ms[mi], before = mpt_gemm_bf16_scratch_allocs();
                        mpt_gemm_bf16_set_workspace(ws, mode == 3 ? wsn - 1 : wsn);
                        memset(C, 0, 2 * R * N * 4);
                        omp_set_num_threads(mode == 0 ? 1 : 2);
                        if (mode >= 2) {
#pragma omp parallel num_threads(2)
                            rows_(sgemm_dnnl_, ta, tb, omp_get_thread_num() ? R : 0, m, N, K, A,
                                  lda, B, ldb, C, N);
                        } else {
                            rows_(sgemm_dnnl_, ta, tb, 0, m, N, K, A, lda, B, ldb, C, N);
                        }
                        size_t got = mpt_gemm_bf16_scratch_allocs() - before;
                        moved += got != (mode == 3 && K >= MPT_BF16_KTILE ? 2 : 0);
                        for (size_t i = 0; i < m; i++)
                            for (size_t o = 0; o < (mode >= 2 ? 2 : 1); o++)
                                bad += memcmp(C + (o * R + i) * N, ref + (o * R + i) * N, N * 4) != 0;
                        calls++;
                    }
                mpt_gemm_bf16_set_workspace(NULL, 0);
                free(A); free(B); free(ref); free(C);
            }
    omp_set_num_threads(2);
    free(ws);
    printf("scratch of mpt_gemm_bf16_workspace_threads(%zu, 2) = %zu floats: %zu cases (M 1..1000, "
           "K 45 and 300, 1 thread, 2, two callers at once, one float short), %zu with an "
           "unexpected count of temporaries, %zu rows unlike the no-scratch call\n", N, wsn,
           calls, moved, bad);
    CHECK(moved == 0, "%zu of %zu cases allocated other than expected (0; one float short, 2 "
          "at K 300)",
          moved, calls);
    CHECK(bad == 0, "%zu rows differ from the no-scratch call", bad);
}

int main(void) {
    printf("bf16 GEMMs here: %s\n", mpt_gemm_bf16_describe());
    test_rounding_();
    const char t[2] = {'N', 'T'};
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 2; b++) {
            gemm_case_(t[a], t[b], 33, 17, 45, 1, 0, 0);
            gemm_case_(t[a], t[b], 20, 23, 600, 1, mpt_gemm_bf16_workspace(23, 23), 0);
            gemm_case_(t[a], t[b], 20, 23, 600, 1, 43 * 37, 0); /* tiles of 37 */
            gemm_case_(t[a], t[b], 20, 23, 600, 1, 0, 1);
            gemm_case_(t[a], t[b], 40, 31, 513, 0, mpt_gemm_bf16_workspace(40, 31), 0);
        }
    test_layers_();
    test_invariance_();
    test_scratch_();
    return check_finish();
}
