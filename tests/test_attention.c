/* test_attention.c — checks the fused causal attention of src/core/attention.h:
 *   1. mpt_flash_forward (out and lse) against the double-precision reference of
 *      tests/ref_kernels.c (lse computed here from the reference's scores, in double);
 *   2. mpt_flash_backward against ref_attention_backward, into zeroed and into pre-filled
 *      gradients (it accumulates), on 1, 2 and 3 threads (both ways of sharing out the work);
 *   3. the block routines as ring attention uses them: queries and K/V cut into random chunks
 *      (K/V as separate K‖V buffers, visited in a random order) — block forward + merge equals
 *      the full forward, and the block backward summed over every chunk pair equals the full
 *      backward; fully masked pairs leave o = 0, lse = MPT_FLASH_LSE_EMPTY;
 *   4. the reference backward against central finite differences on two of these odd shapes
 *      (test_kernels.c does it on others), closing the chain flash -> reference -> calculus;
 *   5. the workspace size: linear in T, SIZE_MAX on overflow.
 * All with the tile GEMMs as they run by default (attn_tile.h's AVX2 + FMA micro-kernels for
 * head sizes 16..64 in steps of 16 on a CPU that has them, oneDNN's GEMMs otherwise), then a
 * subset with the micro-kernels switched off, under OpenBLAS's GEMMs and under oneDNN's.
 * Shapes: T 1, 7, 63, 65, 200 (not multiples of the 64-row tile), head sizes 1, 3, 32, 64, 128,
 * one head and several, B 1..3. One line per check with the largest relative difference,
 * measured against max(|ref|, 0.1 · RMS(ref)) as in test_kernels.c.
 */
#include "check.h"
#include "core/attention.h"
#include "core/attn_tile.h"
#include "core/kernels.h"
#include "ref_kernels.h"

#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* CMake links each tests/test_*.c with tests/check.c only, so the reference is compiled into
 * this translation unit. */
#include "ref_kernels.c"

/* Tolerances. test_kernels.c holds attention to 1e-5 / 1e-4 on T <= 64 and hs <= 16; here hs
 * reaches 128 and T 200, where the fp32 rounding of the scores (sums of hs products) and of the
 * outputs (sums over T keys that largely cancel) is larger: on these shapes today's kernel
 * (mpt_attention_forward/backward, probabilities stored) reaches 1.5-1.8e-5 forward and
 * 1.7-3.5e-5 backward against the same reference, the fused one 1.3-2.7e-5 and 1.7-5.8e-5 (it
 * recomputes P from the lse). The bounds below leave a margin of 3 or more over both. */
#define FWD_TOL 1e-4   /* fp32 forward (out, lse) vs double reference */
#define BWD_TOL 2e-4   /* fp32 backward vs double reference */
#define CHUNK_TOL 1e-4 /* chunked (ring) vs whole-sequence fp32: only the summation order differs */
#define FD_TOL 1e-6    /* double reference backward vs central finite differences */
#define FD_H 1e-6
#define FLOOR_FRAC 0.1

/* ---------------------------------------------------------------- helpers */

static uint64_t rng_state_ = 0x9E3779B97F4A7C15ull;

static uint64_t rng_next_(void) {   /* splitmix64 */
    uint64_t z = (rng_state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static double rng_uniform_(double lo, double hi) {
    return lo + (hi - lo) * ((double)(rng_next_() >> 11) * 0x1.0p-53);
}
static int rng_below_(int n) { return (int)(rng_next_() % (uint64_t)n); }

static void *xcalloc_(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size);
    if (!p) {
        fprintf(stderr, "test_attention: out of memory\n");
        exit(1);
    }
    return p;
}

static char case_[96];
static const char *nm_(const char *what) {
    static char s[192];
    snprintf(s, sizeof s, "%s %s", case_, what);
    return s;
}

static double floor_of_(const double *ref, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += ref[i] * ref[i];
    double f = n ? FLOOR_FRAC * sqrt(s / (double)n) : 0.0;
    return f > 1e-30 ? f : 1e-30;
}
/* fp32 result vs double reference */
static double cmp_(const char *what, const float *fast, const double *ref, size_t n, double tol) {
    double *f = xcalloc_(n, sizeof(double));
    for (size_t i = 0; i < n; i++) f[i] = fast[i];
    double r = check_close_d(nm_(what), f, ref, n, tol, floor_of_(ref, n));
    free(f);
    return r;
}
/* fp32 vs fp32 */
static double cmpf_(const char *what, const float *a, const float *b, size_t n, double tol) {
    double *d = xcalloc_(n, sizeof(double));
    for (size_t i = 0; i < n; i++) d[i] = b[i];
    double r = check_close(nm_(what), a, b, n, tol, floor_of_(d, n));
    free(d);
    return r;
}

/* Random fp32 values and the same values in double. */
static void rand_pair_(float *f, double *d, size_t n, double lo, double hi) {
    for (size_t i = 0; i < n; i++) {
        f[i] = (float)rng_uniform_(lo, hi);
        if (d) d[i] = f[i];
    }
}

/* lse (B,H,T) of the reference: log sum_{j<=t} exp(scale q_t·k_j), in double. */
static void ref_lse_(double *lse, const double *qkv, int B, int T, int D, int H) {
    int hs = D / H;
    double scale = 1.0 / sqrt((double)hs);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int t = 0; t < T; t++) {
                const double *q = qkv + ((size_t)b * T + t) * 3 * D + (size_t)h * hs;
                double mx = -INFINITY, *s = xcalloc_((size_t)t + 1, sizeof(double)), sum = 0.0;
                for (int j = 0; j <= t; j++) {
                    const double *k = qkv + ((size_t)b * T + j) * 3 * D + D + (size_t)h * hs;
                    for (int i = 0; i < hs; i++) s[j] += q[i] * k[i];
                    s[j] *= scale;
                    mx = s[j] > mx ? s[j] : mx;
                }
                for (int j = 0; j <= t; j++) sum += exp(s[j] - mx);
                lse[((size_t)b * H + h) * T + t] = mx + log(sum);
                free(s);
            }
}

/* ---------------------------------------------------------------- whole sequence vs reference */

typedef struct {
    int B, T, D, H;
    size_t N3, ND, NL, NA;
    float *qkv, *out, *lse, *g, *dqkv, *pre;
    double *qkv_d, *out_d, *lse_d, *att_d, *datt_d, *g_d, *dqkv_d, *dpre_d;
} fixture_t;

static void fixture_init_(fixture_t *x, int B, int T, int D, int H) {
    memset(x, 0, sizeof *x);
    x->B = B, x->T = T, x->D = D, x->H = H;
    x->N3 = (size_t)B * T * 3 * D, x->ND = (size_t)B * T * D, x->NL = (size_t)B * H * T;
    x->NA = x->NL * T;
    x->qkv = xcalloc_(x->N3, 4), x->out = xcalloc_(x->ND, 4), x->lse = xcalloc_(x->NL, 4);
    x->g = xcalloc_(x->ND, 4), x->dqkv = xcalloc_(x->N3, 4), x->pre = xcalloc_(x->N3, 4);
    x->qkv_d = xcalloc_(x->N3, 8), x->out_d = xcalloc_(x->ND, 8), x->lse_d = xcalloc_(x->NL, 8);
    x->att_d = xcalloc_(x->NA, 8), x->datt_d = xcalloc_(x->NA, 8), x->g_d = xcalloc_(x->ND, 8);
    x->dqkv_d = xcalloc_(x->N3, 8), x->dpre_d = xcalloc_(x->N3, 8);
    rand_pair_(x->qkv, x->qkv_d, x->N3, -2, 2);
    rand_pair_(x->g, x->g_d, x->ND, -1, 1);
    rand_pair_(x->pre, x->dpre_d, x->N3, -1, 1);
    ref_attention_forward(x->out_d, x->att_d, x->qkv_d, B, T, D, H);
    ref_lse_(x->lse_d, x->qkv_d, B, T, D, H);
    ref_attention_backward(x->dqkv_d, x->datt_d, x->g_d, x->qkv_d, x->att_d, B, T, D, H);
    for (size_t i = 0; i < x->N3; i++) x->dpre_d[i] += x->dqkv_d[i];   /* prefilled + grad */
}

static void fixture_free_(fixture_t *x) {
    free(x->qkv), free(x->out), free(x->lse), free(x->g), free(x->dqkv), free(x->pre);
    free(x->qkv_d), free(x->out_d), free(x->lse_d), free(x->att_d), free(x->datt_d);
    free(x->g_d), free(x->dqkv_d), free(x->dpre_d);
}

/* The full backward on `threads` threads, into zeroed and into prefilled gradients. */
static void check_backward_(fixture_t *x, int threads) {
    size_t nw = mpt_flash_workspace(x->B, x->T, x->D, x->H, threads);
    float *work = xcalloc_(nw, 4);
    char what[64];
    for (int prefill = 0; prefill < 2; prefill++) {
        for (size_t i = 0; i < nw; i++) work[i] = 1e3f;   /* junk must not matter */
        if (prefill) memcpy(x->dqkv, x->pre, x->N3 * 4);
        else memset(x->dqkv, 0, x->N3 * 4);
        omp_set_num_threads(threads);
        mpt_flash_backward(x->dqkv, x->g, x->out, x->lse, x->qkv, x->B, x->T, x->D, x->H, work,
                           threads);
        omp_set_num_threads(2);
        snprintf(what, sizeof what, "bwd%s dqkv %dthr", prefill ? "+=" : "", threads);
        cmp_(what, x->dqkv, prefill ? x->dpre_d : x->dqkv_d, x->N3, BWD_TOL);
    }
    /* the overwriting form: junk in dqkv must not matter, and it equals += into zeros bit for
     * bit (the same sums, started from the same zeros) */
    float *want = xcalloc_(x->N3, 4);
    memset(x->dqkv, 0, x->N3 * 4);
    omp_set_num_threads(threads);
    mpt_flash_backward(x->dqkv, x->g, x->out, x->lse, x->qkv, x->B, x->T, x->D, x->H, work,
                       threads);
    memcpy(want, x->dqkv, x->N3 * 4);
    for (size_t i = 0; i < x->N3; i++) x->dqkv[i] = 1e3f;
    mpt_flash_backward_set(x->dqkv, x->g, x->out, x->lse, x->qkv, x->B, x->T, x->D, x->H, work,
                           threads);
    omp_set_num_threads(2);
    snprintf(what, sizeof what, "bwd= dqkv %dthr", threads);
    cmp_(what, x->dqkv, x->dqkv_d, x->N3, BWD_TOL);
    size_t differ = 0;
    for (size_t i = 0; i < x->N3; i++) differ += x->dqkv[i] != want[i];
    CHECK(differ == 0, "%s: bwd= vs zero + bwd+=, %d threads: %zu values differ", case_,
          threads, differ);
    free(want);
    free(work);
}

static int long_t_ = 200; /* the long sequences' T (main: smaller in checking builds) */

static void test_whole_(int B, int T, int D, int H) {
    snprintf(case_, sizeof case_, "flash B%d T%d D%d H%d (hs %d)", B, T, D, H, D / H);
    fixture_t x;
    fixture_init_(&x, B, T, D, H);
    mpt_flash_forward(x.out, x.lse, x.qkv, B, T, D, H);
    cmp_("fwd out", x.out, x.out_d, x.ND, FWD_TOL);
    cmp_("fwd lse", x.lse, x.lse_d, x.NL, FWD_TOL);
    check_backward_(&x, 2);
    if (B * H % 2 == 1 || T == long_t_) {   /* the other threads counts where the split differs */
        check_backward_(&x, 1);
        check_backward_(&x, 3);
    }
    fixture_free_(&x);
}

/* ---------------------------------------------------------------- chunks (ring attention) */

/* Cuts [0, T) into n random non-empty chunks; cut[0..n] are the boundaries. Returns n. */
static int cut_(int *cut, int T, int max_chunks) {
    int n = 1 + rng_below_(max_chunks < T ? max_chunks : T);
    cut[0] = 0, cut[n] = T;
    for (int i = 1; i < n; i++) {   /* distinct sorted interior cuts */
        int c;
        do {
            c = 1 + rng_below_(T - 1);
            int dup = 0;
            for (int j = 1; j < i; j++) dup |= cut[j] == c;
            if (!dup) break;
        } while (1);
        int j = i;
        while (j > 1 && cut[j - 1] > c) cut[j] = cut[j - 1], j--;
        cut[j] = c;
    }
    return n;
}

static void shuffle_(int *a, int n) {
    for (int i = n - 1; i > 0; i--) {
        int j = rng_below_(i + 1), t = a[i];
        a[i] = a[j], a[j] = t;
    }
}

static void test_chunks_(int B, int T, int D, int H, int max_chunks) {
    snprintf(case_, sizeof case_, "chunks B%d T%d D%d H%d (hs %d)", B, T, D, H, D / H);
    int hs = D / H, threads = 2, qcut[72], kcut[72];
    fixture_t x;
    fixture_init_(&x, B, T, D, H);
    int nq = cut_(qcut, T, max_chunks), nk = cut_(kcut, T, max_chunks);
    printf("  %-40s %d query chunks, %d K/V chunks\n", nm_("split"), nq, nk);
    size_t ld3 = 3 * (size_t)D, bs3 = (size_t)T * ld3, bsd = (size_t)T * D;

    /* K‖V chunk c as its own buffer (B, Tk, 2D), as ring attention receives it */
    float **kv = xcalloc_((size_t)nk, sizeof *kv), **dkv = xcalloc_((size_t)nk, sizeof *dkv);
    for (int c = 0; c < nk; c++) {
        int Tk = kcut[c + 1] - kcut[c];
        kv[c] = xcalloc_((size_t)B * Tk * 2 * D, 4), dkv[c] = xcalloc_((size_t)B * Tk * 2 * D, 4);
        for (int b = 0; b < B; b++)
            for (int t = 0; t < Tk; t++)
                memcpy(kv[c] + ((size_t)b * Tk + t) * 2 * D,
                       x.qkv + ((size_t)b * T + kcut[c] + t) * ld3 + D, 2 * (size_t)D * 4);
    }
    int *order = xcalloc_((size_t)nk, sizeof *order);
    for (int c = 0; c < nk; c++) order[c] = c;

    /* forward: per query chunk, running (o, lse) in views of out/lse, partials merged in */
    float *part = xcalloc_(x.ND, 4), *plse = xcalloc_(x.NL, 4), *o = xcalloc_(x.ND, 4);
    float *lse = xcalloc_(x.NL, 4);
    size_t empty_rows = 0, empty_bad = 0;
    for (size_t i = 0; i < x.NL; i++) lse[i] = MPT_FLASH_LSE_EMPTY;
    for (int qc = 0; qc < nq; qc++) {
        int r0 = qcut[qc], Tq = qcut[qc + 1] - r0;
        mpt_flash_in q = {x.qkv + (size_t)r0 * ld3, ld3, bs3};
        mpt_flash_out ov = {o + (size_t)r0 * D, (size_t)D, bsd};
        mpt_flash_out pv = {part, (size_t)D, (size_t)Tq * D};   /* a compact (B,Tq,D) partial */
        shuffle_(order, nk);
        for (int i = 0; i < nk; i++) {
            int c = order[i], Tk = kcut[c + 1] - kcut[c];
            mpt_flash_shape s = {B, H, hs, Tq, r0, Tk, kcut[c]};
            mpt_flash_in k = {kv[c], 2 * (size_t)D, (size_t)Tk * 2 * D};
            mpt_flash_in v = {kv[c] + D, 2 * (size_t)D, (size_t)Tk * 2 * D};
            for (size_t j = 0; j < (size_t)B * Tq * D; j++) part[j] = 1e3f;   /* junk */
            mpt_flash_block_forward(pv, plse, (size_t)Tq, q, k, v, &s);
            /* rows that see no key of this chunk: o = 0, lse = EMPTY */
            for (int b = 0; b < B; b++)
                for (int h = 0; h < H; h++)
                    for (int t = 0; t < Tq; t++) {
                        if (kcut[c] <= r0 + t) continue;
                        empty_rows++;
                        const float *pr = part + ((size_t)b * Tq + t) * D + (size_t)h * hs;
                        int bad = plse[((size_t)b * H + h) * Tq + t] != MPT_FLASH_LSE_EMPTY;
                        for (int e = 0; e < hs; e++) bad |= pr[e] != 0.0f;
                        empty_bad += bad;
                    }
            mpt_flash_in pin = {part, (size_t)D, (size_t)Tq * D};
            mpt_flash_merge(ov, lse + r0, (size_t)T, pin, plse, (size_t)Tq, B, H, hs, Tq);
        }
    }
    printf("  %-40s %zu rows, %zu wrong\n", nm_("fully masked rows"), empty_rows, empty_bad);
    CHECK(empty_bad == 0, "%s: %zu masked rows not (0, EMPTY)", case_, empty_bad);
    mpt_flash_forward(x.out, x.lse, x.qkv, B, T, D, H);
    cmpf_("fwd out chunked vs whole", o, x.out, x.ND, CHUNK_TOL);
    cmpf_("fwd lse chunked vs whole", lse, x.lse, x.NL, CHUNK_TOL);
    cmp_("fwd out chunked vs ref", o, x.out_d, x.ND, FWD_TOL);

    /* backward: drow per query chunk, then every chunk pair in a random order */
    float *drow = xcalloc_(x.NL, 4), *dq = xcalloc_(x.N3, 4);
    for (int qc = 0; qc < nq; qc++) {
        int r0 = qcut[qc], Tq = qcut[qc + 1] - r0;
        mpt_flash_in gv = {x.g + (size_t)r0 * D, (size_t)D, bsd};
        mpt_flash_in yv = {o + (size_t)r0 * D, (size_t)D, bsd};
        mpt_flash_rowdot(drow + r0, (size_t)T, gv, yv, B, H, hs, Tq);
    }
    int *pairs = xcalloc_((size_t)nq * nk, sizeof *pairs);
    for (int i = 0; i < nq * nk; i++) pairs[i] = i;
    shuffle_(pairs, nq * nk);
    for (int i = 0; i < nq * nk; i++) {
        int qc = pairs[i] / nk, c = pairs[i] % nk;
        int r0 = qcut[qc], Tq = qcut[qc + 1] - r0, Tk = kcut[c + 1] - kcut[c];
        mpt_flash_shape s = {B, H, hs, Tq, r0, Tk, kcut[c]};
        size_t nw = mpt_flash_block_workspace(&s, threads);
        float *work = xcalloc_(nw, 4);
        mpt_flash_in q = {x.qkv + (size_t)r0 * ld3, ld3, bs3};
        mpt_flash_in gv = {x.g + (size_t)r0 * D, (size_t)D, bsd};
        mpt_flash_in k = {kv[c], 2 * (size_t)D, (size_t)Tk * 2 * D};
        mpt_flash_in v = {kv[c] + D, 2 * (size_t)D, (size_t)Tk * 2 * D};
        mpt_flash_out dqv = {dq + (size_t)r0 * ld3, ld3, bs3};
        mpt_flash_out dk = {dkv[c], 2 * (size_t)D, (size_t)Tk * 2 * D};
        mpt_flash_out dv = {dkv[c] + D, 2 * (size_t)D, (size_t)Tk * 2 * D};
        mpt_flash_block_backward(dqv, dk, dv, gv, lse + r0, drow + r0, (size_t)T, q, k, v, &s,
                                 work, threads);
        free(work);
    }
    for (int c = 0; c < nk; c++) {   /* dk, dv back into the (B,T,3D) layout */
        int Tk = kcut[c + 1] - kcut[c];
        for (int b = 0; b < B; b++)
            for (int t = 0; t < Tk; t++)
                memcpy(dq + ((size_t)b * T + kcut[c] + t) * ld3 + D,
                       dkv[c] + ((size_t)b * Tk + t) * 2 * D, 2 * (size_t)D * 4);
    }
    size_t nw = mpt_flash_workspace(B, T, D, H, threads);
    float *work = xcalloc_(nw, 4);
    memset(x.dqkv, 0, x.N3 * 4);
    mpt_flash_backward(x.dqkv, x.g, x.out, x.lse, x.qkv, B, T, D, H, work, threads);
    cmpf_("bwd dqkv chunked vs whole", dq, x.dqkv, x.N3, CHUNK_TOL);
    cmp_("bwd dqkv chunked vs ref", dq, x.dqkv_d, x.N3, BWD_TOL);

    free(work), free(pairs), free(drow), free(dq), free(part), free(plse), free(o), free(lse);
    for (int c = 0; c < nk; c++) free(kv[c]), free(dkv[c]);
    free(kv), free(dkv), free(order);
    fixture_free_(&x);
}

/* ---------------------------------------------------------------- reference vs calculus */

typedef struct {
    int B, T, D, H;
    double *qkv, *out, *att;
    const double *g;
} fd_ctx_t;

static double fd_loss_(fd_ctx_t *c) {
    ref_attention_forward(c->out, c->att, c->qkv, c->B, c->T, c->D, c->H);
    long double s = 0.0L;
    for (size_t i = 0; i < (size_t)c->B * c->T * c->D; i++) s += (long double)c->out[i] * c->g[i];
    return (double)s;
}

/* The reference's dqkv vs central differences of L = sum(out ∘ g), `samples` elements. */
static void test_fd_(int B, int T, int D, int H, int samples) {
    snprintf(case_, sizeof case_, "ref B%d T%d D%d H%d (hs %d)", B, T, D, H, D / H);
    fixture_t x;
    fixture_init_(&x, B, T, D, H);
    fd_ctx_t c = {B, T, D, H, x.qkv_d, xcalloc_(x.ND, 8), xcalloc_(x.NA, 8), x.g_d};
    size_t m = (size_t)samples < x.N3 ? (size_t)samples : x.N3;
    double *an = xcalloc_(m, 8), *fd = xcalloc_(m, 8);
    for (size_t s = 0; s < m; s++) {
        size_t i = m == x.N3 ? s : (size_t)rng_below_((int)x.N3);
        double x0 = c.qkv[i], xp = x0 + FD_H, xm = x0 - FD_H;
        c.qkv[i] = xp;
        double lp = fd_loss_(&c);
        c.qkv[i] = xm;
        double lm = fd_loss_(&c);
        c.qkv[i] = x0;
        fd[s] = (lp - lm) / (xp - xm);
        an[s] = x.dqkv_d[i];
    }
    check_close_d(nm_("fd dqkv"), an, fd, m, FD_TOL, floor_of_(x.dqkv_d, x.N3));
    free(an), free(fd), free(c.out), free(c.att);
    fixture_free_(&x);
}

/* ---------------------------------------------------------------- workspace */

static void test_workspace_(void) {
    size_t w1 = mpt_flash_workspace(1, 1024, 768, 12, 2);
    size_t w4 = mpt_flash_workspace(1, 4096, 768, 12, 2);
    printf("  %-40s %zu floats at T 1024, %zu at T 4096\n", "flash workspace", w1, w4);
    CHECK(w4 <= 4 * w1, "workspace grows faster than T: %zu vs %zu", w4, w1);
    CHECK(w1 == 12 * 1024 + 2 * 1024 * 64, "workspace %zu is not drow + 2 dq accumulators", w1);
    CHECK(mpt_flash_workspace(1 << 30, 1 << 30, 1 << 30, 1, 1 << 30) == SIZE_MAX,
          "workspace overflow not reported");
}

int main(void) {
    omp_set_num_threads(2);
    /* checking builds: the long cases at T 130 instead of 200 (3 query tiles of 64, the last a
     * tail of 2, instead of 4 with a tail of 8; still one key tile): the same paths */
    if (check_small()) long_t_ = 130;
    const int TL = long_t_;
    /* pass 0: every shape, the default tile GEMMs (micro-kernels where usable, oneDNN
     * otherwise); passes 1, 2: a few shapes with the micro-kernels off, under OpenBLAS and
     * oneDNN (kernels.h) */
    for (int pass = 0; pass < 3; pass++) {
        int all = pass == 0;
        mpt_kernels_set_gemm(pass == 1 ? MPT_GEMM_OPENBLAS : MPT_GEMM_ONEDNN);
        mpt_attn_tile_set(all);
        printf("tile GEMMs %s\n", all ? (mpt_attn_tile_usable(64) ? "on the micro-kernels "
                                                                   "(hs 16..64), else oneDNN"
                                                                 : "through oneDNN (no AVX2 + FMA)")
                                      : pass == 1 ? "through OpenBLAS" : "through oneDNN");
        printf("whole sequence vs reference\n");
        if (all) test_whole_(1, 1, 64, 1);     /* T 1 */
        test_whole_(2, 7, 3, 1);                /* hs 3, one head */
        if (all) test_whole_(3, 63, 8, 8);     /* hs 1 */
        test_whole_(1, 65, 128, 1);             /* hs 128, one head: K/V tiles shared out */
        if (all) test_whole_(2, 65, 9, 3);
        if (all) test_whole_(2, 65, 64, 2);   /* hs 32 */
        if (all) test_whole_(3, TL, 64, 1);   /* hs 64 */
        test_whole_(2, TL, 192, 3);
        if (all) test_whole_(1, TL, 256, 2);  /* hs 128 */
        printf("chunks (ring attention) vs whole sequence\n");
        if (all) test_chunks_(1, 1, 64, 1, 1);
        if (all) test_chunks_(2, 7, 3, 1, 7);  /* down to one row per chunk */
        test_chunks_(3, 65, 9, 3, 5);
        if (all) test_chunks_(1, TL, 128, 2, 4);
        test_chunks_(2, TL, 64, 1, 9);
    }
    mpt_kernels_set_gemm(MPT_GEMM_ONEDNN);
    mpt_attn_tile_set(1);
    printf("reference backward vs finite differences\n");
    test_fd_(2, 7, 6, 2, 1 << 20);
    test_fd_(1, 65, 3, 1, 300);
    printf("workspace\n");
    test_workspace_();
    return check_finish();
}
