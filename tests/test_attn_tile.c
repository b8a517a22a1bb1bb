/* test_attn_tile.c — checks the AVX2 + FMA tile GEMMs of src/core/attn_tile.h against a
 * double-precision reference:
 *   1. mpt_attn_tile_nn (C = alpha A B + beta C), mpt_attn_tile_tn (C = alpha Aᵀ B + beta C)
 *      and A Bᵀ as attention runs it (mpt_attn_tile_pack_t, then _nn on the panel) on odd sizes:
 *      M, N, K from 1 to 256 crossing the 6-row and 16-column blocks and the 8 × 8 transposes,
 *      strides larger than the rows, beta 0 (C filled with NaN first: it must not be read) and
 *      beta 1 (C += into random values), alpha 1 and 0.125 (attention's 1/sqrt(64) scale);
 *      and with each causal shape of attention (attn_tile.h's masks: the terms the mask zeroes
 *      set to 0 in A, so the skipped terms are exact zeros; with MPT_ATTN_TILE_C_LOWER only the
 *      needed elements compared) at diagonals -7, 0, 5 and 40;
 *   2. the packing alone: the panel equals Bᵀ exactly, and columns past N are left untouched;
 *   3. mpt_attn_tile_usable: head sizes 16, 32, 48, 64 (multiples of 16 up to 64) on a CPU with
 *      AVX2 + FMA, never 8, 24, 80, 128, never when switched off.
 * Bound per element: |c - ref| <= (K + 2) u (|alpha| Σ_k |a b| + |beta c0|), u = 2^-24: the
 * worst-case rounding of a K-term fp32 sum plus the scaling (no slack on top). On a CPU without
 * AVX2 + FMA only check 3 runs (the kernels must not). Checking builds (check_small()): N and
 * K up to 64 only. */
#include "check.h"
#include "core/attn_tile.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng_state_ = 0x2545F4914F6CDD1Dull;
static double rng_uniform_(void) { /* splitmix64 -> [-1, 1) */
    uint64_t z = (rng_state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return -1.0 + 2.0 * ((double)(z >> 11) * 0x1.0p-53);
}

static float *rand_(size_t n) {
    float *p = malloc(n * sizeof *p);
    if (!p) abort();
    for (size_t i = 0; i < n; i++) p[i] = (float)rng_uniform_();
    return p;
}

enum { NN, TN, NT };
static const char *op_name_[] = {"A B", "At B", "A Bt"};

/* One product of kind op at M × N × K against the double reference; returns the worst ratio
 * |c - ref| / bound (<= 1 passes). */
static double run_(int op, int M, int N, int K, float alpha, float beta, int mask, int diag) {
    size_t pad = 3; /* strides larger than the rows */
    size_t ar = op == TN ? (size_t)K : (size_t)M, ac = op == TN ? (size_t)M : (size_t)K;
    size_t br = op == NT ? (size_t)N : (size_t)K, bc = op == NT ? (size_t)K : (size_t)N;
    size_t lda = ac + pad, ldb = bc + pad, ldc = (size_t)N + pad, ldp = (size_t)N + 5;
    float *A = rand_(ar * lda + 1), *B = rand_(br * ldb + 1), *C = rand_((size_t)M * ldc + 1);
    float *C0 = malloc(((size_t)M * ldc + 1) * sizeof *C0);
    float *panel = malloc(((size_t)K * ldp + 1) * sizeof *panel);
    if (!C0 || !panel) abort();
    /* the terms the mask says are zero: op(A)(i,k) = 0 */
    for (int i = 0; i < M; i++)
        for (int k = 0; k < K; k++) {
            int zero = (mask == MPT_ATTN_TILE_A_LOWER && k > i + diag) ||
                       (mask == MPT_ATTN_TILE_A_UPPER && k < i - diag);
            if (zero) A[op == TN ? (size_t)k * lda + i : (size_t)i * lda + k] = 0.0f;
        }
    if (beta == 0.0f)
        for (size_t i = 0; i < (size_t)M * ldc + 1; i++) C[i] = NAN;
    memcpy(C0, C, ((size_t)M * ldc + 1) * sizeof *C);
    if (op == NN) mpt_attn_tile_nn(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, mask, diag);
    if (op == TN) mpt_attn_tile_tn(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, mask, diag);
    if (op == NT) {
        mpt_attn_tile_pack_t(panel, ldp, B, ldb, N, K);
        mpt_attn_tile_nn(M, N, K, alpha, A, lda, panel, ldp, beta, C, ldc, mask, diag);
    }
    double worst = 0.0;
    int pad_ok = 1;
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < N; j++) {
            if (mask == MPT_ATTN_TILE_C_LOWER && j > i + diag) continue; /* not needed */
            double s = 0.0, sa = 0.0;
            for (int k = 0; k < K; k++) {
                double a = op == TN ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
                double b = op == NT ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
                s += a * b;
                sa += fabs(a * b);
            }
            double c0 = beta == 0.0f ? 0.0 : C0[(size_t)i * ldc + j];
            double ref = alpha * s + beta * c0;
            double bound = (K + 2) * 0x1.0p-24 * (fabs(alpha) * sa + fabs(beta * c0)) + 1e-30;
            double err = fabs(C[(size_t)i * ldc + j] - ref) / bound;
            if (!(err <= worst)) worst = err; /* NaN propagates */
        }
        for (size_t j = (size_t)N; j < ldc; j++) /* the padding of C is never written */
            if (memcmp(&C[(size_t)i * ldc + j], &C0[(size_t)i * ldc + j], sizeof *C)) pad_ok = 0;
    }
    CHECK(pad_ok, "%s M%d N%d K%d: wrote C past column N", op_name_[op], M, N, K);
    free(A), free(B), free(C), free(C0), free(panel);
    return worst;
}

/* The cases of one product kind: the causal mask attention uses with it at each diagonal
 * (A B: O += P V, dQ += dS K, A_LOWER; Aᵀ B: dV, dK, A_UPPER; A Bᵀ: S, dP, C_LOWER; alpha 1,
 * beta 1 except A Bᵀ's 0), then dense with (alpha 1, beta 0) and (alpha 0.125, beta 1). */
typedef struct { int mask, diag; float alpha, beta; } case_;
static int cases_(int op, case_ *c) {
    static const int diags[] = {-7, 0, 5, 40};
    static const int masks[] = {MPT_ATTN_TILE_A_LOWER, MPT_ATTN_TILE_A_UPPER,
                                MPT_ATTN_TILE_C_LOWER};
    int n = 0;
    for (size_t d = 0; d < sizeof diags / sizeof *diags; d++)
        c[n++] = (case_){masks[op], diags[d], 1.0f, op == NT ? 0.0f : 1.0f};
    c[n++] = (case_){MPT_ATTN_TILE_DENSE, 0, 1.0f, 0.0f};
    c[n++] = (case_){MPT_ATTN_TILE_DENSE, 0, 0.125f, 1.0f};
    return n;
}

static void test_products_(void) {
    const int Ms[] = {1, 5, 6, 7, 13, 64}, Ns[] = {1, 7, 16, 17, 64, 250, 256},
              Ks[] = {1, 3, 8, 17, 64, 256};
    /* checking builds: N and K up to 64 (the same blocks and edges, fewer full tiles) */
    size_t nN = check_small() ? 5 : 7, nK = check_small() ? 5 : 6;
    for (int op = 0; op < 3; op++) {
        case_ cs[8];
        int ncase = cases_(op, cs);
        double worst[2] = {0.0, 0.0}; /* causal, dense */
        int n[2] = {0, 0};
        for (int v = 0; v < ncase; v++)
            for (size_t a = 0; a < sizeof Ms / sizeof *Ms; a++)
                for (size_t b = 0; b < nN; b++)
                    for (size_t c = 0; c < nK; c++) {
                        const case_ *k = &cs[v];
                        int g = k->mask == MPT_ATTN_TILE_DENSE;
                        double w = run_(op, Ms[a], Ns[b], Ks[c], k->alpha, k->beta, k->mask,
                                        k->diag);
                        CHECK(w <= 1.0, "%s M%d N%d K%d mask %d diag %d alpha %g beta %g: "
                              "error %.3g x bound", op_name_[op], Ms[a], Ns[b], Ks[c], k->mask,
                              k->diag, k->alpha, k->beta, w);
                        if (!(w <= worst[g])) worst[g] = w;
                        n[g]++;
                    }
        printf("  %-5s %3d shapes, causal mask %d, worst error %.3f of the bound\n",
               op_name_[op], n[0], cs[0].mask, worst[0]);
        printf("  %-5s %3d shapes, dense, worst error %.3f of the bound\n", op_name_[op], n[1],
               worst[1]);
    }
}

static void test_pack_(void) {
    const int N = 253, K = 61;
    size_t ldb = 67, ldp = 260;
    float *B = rand_((size_t)N * ldb), *panel = malloc((size_t)K * ldp * sizeof *panel);
    if (!panel) abort();
    for (size_t i = 0; i < (size_t)K * ldp; i++) panel[i] = -7.0f;
    mpt_attn_tile_pack_t(panel, ldp, B, ldb, N, K);
    int wrong = 0;
    for (int k = 0; k < K; k++)
        for (size_t j = 0; j < ldp; j++)
            wrong += panel[k * ldp + j] !=
                     ((int)j < N ? B[j * ldb + (size_t)k] : -7.0f);
    CHECK(wrong == 0, "pack N%d K%d: %d elements wrong", N, K, wrong);
    printf("  pack  N%d K%d: %d elements wrong\n", N, K, wrong);
    free(B), free(panel);
}

static void test_usable_(int cpu) {
    const int yes[] = {16, 32, 48, 64}, no[] = {1, 8, 24, 80, 128};
    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++)
        CHECK(mpt_attn_tile_usable(yes[i]) == cpu, "usable(%d) = %d on a CPU with%s AVX2 + FMA",
              yes[i], mpt_attn_tile_usable(yes[i]), cpu ? "" : "out");
    for (size_t i = 0; i < sizeof no / sizeof *no; i++)
        CHECK(!mpt_attn_tile_usable(no[i]), "usable(%d) = 1", no[i]);
    mpt_attn_tile_set(0);
    CHECK(!mpt_attn_tile_usable(64), "usable(64) = 1 when switched off");
    mpt_attn_tile_set(1);
    CHECK(mpt_attn_tile_usable(64) == cpu, "usable(64) != cpu after switching back on");
}

int main(void) {
    int cpu = mpt_attn_tile_cpu();
    printf("CPU with AVX2 + FMA: %s\n", cpu ? "yes" : "no (kernels not run)");
    test_usable_(cpu);
    if (cpu) {
        printf("products vs double reference, bound (K + 2) u (|alpha| sum|ab| + |beta c0|)\n");
        test_products_();
        test_pack_();
    }
    return check_finish();
}
