/* test_kernels.c — checks every operator of src/core/kernels.h against the double-precision
 * reference of tests/ref_kernels.c:
 *   1. fast fp32 forward vs reference forward;
 *   2. reference backward vs central finite differences of the reference forward, for the
 *      scalar loss L = sum(out * g) with a fixed random g, for every input and weight;
 *   3. fast fp32 backward vs reference backward, into zeroed gradient buffers and into
 *      pre-filled ones (the kernels accumulate);
 *   4. the fused cross-entropy (losses, gradient, padded columns exactly 0) and softmax_row;
 *   5. a whole GPT block chained from the operators: its reference gradients (input and every
 *      weight) vs finite differences, and the fast fp32 chain's gradients vs the reference's.
 * Sizes include awkward ones (C=12, OC=7, H=3, V=11, Vp=16) and bigger ones (T=64, D=64, H=4)
 * that reach the blocked paths. One line per check: name and largest relative difference.
 * Checking builds (check_small(): valgrind, ASan) run every operator on the same shapes, under
 * both GEMM back ends and on one thread, with the same tolerances: every fast kernel call and
 * every GEMM route is the same as in the full run. Only the finite-difference checks (which
 * evaluate the double reference of tests/ref_kernels.c twice per sample, nearly all of the
 * full run's time: ~32 CPU-s natively, past 16 CPU-minutes under memcheck) draw FD_SMALL random
 * samples where they would draw more of a larger tensor; tensors they check whole stay whole.
 */
#include "check.h"
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

#define FWD_TOL 1e-5   /* fast fp32 forward vs double reference */
#define BWD_TOL 1e-4   /* fast fp32 backward vs double reference */
#define FD_TOL 1e-6    /* double reference backward vs central finite differences */
#define FD_H 1e-6      /* finite-difference step (see test_crossentropy_ for its exception) */
/* Absolute floor of every relative comparison: FLOOR_FRAC times the RMS of the reference array.
 * An element far smaller than its array's typical size comes from cancellation (a dot product
 * of O(rms) terms summing to ~0, gelu(x) for large negative x, a layernorm gradient, ...): its
 * absolute rounding error is set by the size of the terms that cancelled, not by its own size,
 * so dividing by its own size would measure noise. A tenth of the RMS still measures every
 * element of ordinary size relative to itself. */
#define FLOOR_FRAC 0.1
#define FD_ALL ((size_t)1 << 20)   /* "check every element" */
#define FD_SMALL 4                 /* samples of a sampled check in a checking build */
static int small_;                 /* check_small(), read once in main */

/* ---------------------------------------------------------------- helpers */

static uint64_t rng_state_ = 0x2545F4914F6CDD1Dull;

/* splitmix64 */
static uint64_t rng_next_(void) {
    uint64_t z = (rng_state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static double rng_uniform_(double lo, double hi) {
    return lo + (hi - lo) * ((double)(rng_next_() >> 11) * 0x1.0p-53);
}
static size_t rng_below_(size_t n) { return (size_t)(rng_next_() % n); }

static void *xcalloc_(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size);
    if (!p) {
        fprintf(stderr, "test_kernels: out of memory\n");
        exit(1);
    }
    return p;
}

/* The same values in fp32 (for the fast kernels) and in double (for the reference). */
typedef struct {
    size_t n;
    float *f;
    double *d;
} pair_t;

static pair_t pair_(size_t n) {
    pair_t p = {n, xcalloc_(n, sizeof(float)), xcalloc_(n, sizeof(double))};
    return p;
}
static void pair_free_(pair_t *p) {
    free(p->f);
    free(p->d);
}
static void pair_set_(pair_t *p, size_t i, double v) {
    p->f[i] = (float)v;
    p->d[i] = (double)p->f[i];   /* the reference sees exactly the fp32 value */
}
static void pair_rand_(pair_t *p, double lo, double hi) {
    for (size_t i = 0; i < p->n; i++) pair_set_(p, i, rng_uniform_(lo, hi));
}
static void pair_zero_(pair_t *p) {
    memset(p->f, 0, p->n * sizeof(float));
    memset(p->d, 0, p->n * sizeof(double));
}
/* Zeroes the gradient buffers, or fills them with identical random values (prefill != 0). */
static void grads_reset_(pair_t *g, int ng, int prefill) {
    for (int i = 0; i < ng; i++)
        if (prefill) pair_rand_(&g[i], -1.0, 1.0);
        else pair_zero_(&g[i]);
}

static double dot_(const double *a, const double *b, size_t n) {
    long double s = 0.0L;   /* extended accumulator: keeps L's rounding below the FD signal */
    for (size_t i = 0; i < n; i++) s += (long double)a[i] * b[i];
    return (double)s;
}
static double floor_of_(const double *ref, size_t n) {
    double f = n ? FLOOR_FRAC * sqrt(dot_(ref, ref, n) / (double)n) : 0.0;
    return f > 1e-30 ? f : 1e-30;
}

static char case_[64];   /* the operator and sizes under test, prefixed to every check name */
static const char *nm_(const char *what) {
    static char s[160];
    snprintf(s, sizeof s, "%s %s", case_, what);
    return s;
}

/* fast (fp32) vs ref (double) */
static double cmp_(const char *what, const float *fast, const double *ref, size_t n,
                   double tol) {
    double *f = xcalloc_(n, sizeof(double));
    for (size_t i = 0; i < n; i++) f[i] = fast[i];
    double r = check_close_d(nm_(what), f, ref, n, tol, floor_of_(ref, n));
    free(f);
    return r;
}

typedef double (*loss_fn)(void *ctx);

/* Checks analytic(n) = dL/dx against central differences with step h of loss(ctx) with x
 * perturbed in place (every element if n <= samples, else `samples` random ones). */
static void fd_check_h_(const char *what, double *x, size_t n, const double *analytic,
                        loss_fn loss, void *ctx, size_t samples, double h) {
    if (small_ && n > samples && samples > FD_SMALL) samples = FD_SMALL;
    size_t m = n < samples ? n : samples;
    double *an = xcalloc_(m, sizeof(double)), *fd = xcalloc_(m, sizeof(double));
    for (size_t k = 0; k < m; k++) {
        size_t i = n <= samples ? k : rng_below_(n);
        double x0 = x[i], xp = x0 + h, xm = x0 - h;
        x[i] = xp;
        double lp = loss(ctx);
        x[i] = xm;
        double lm = loss(ctx);
        x[i] = x0;
        fd[k] = (lp - lm) / (xp - xm);
        an[k] = analytic[i];
    }
    check_close_d(nm_(what), an, fd, m, FD_TOL, floor_of_(analytic, n));
    free(an);
    free(fd);
}
static void fd_check_(const char *what, double *x, size_t n, const double *analytic,
                      loss_fn loss, void *ctx, size_t samples) {
    fd_check_h_(what, x, n, analytic, loss, ctx, samples, FD_H);
}

/* ---------------------------------------------------------------- encoder */

typedef struct {
    int B, T, D;
    const int32_t *inp;
    double *wte, *wpe, *out;
    const double *g;
} enc_ctx_t;

static double enc_loss_(void *c) {
    enc_ctx_t *e = c;
    ref_encoder_forward(e->out, e->inp, e->wte, e->wpe, e->B, e->T, e->D);
    return dot_(e->out, e->g, (size_t)e->B * e->T * e->D);
}

static void test_encoder_(int B, int T, int D, int rows) {
    snprintf(case_, sizeof case_, "encoder B%d T%d D%d rows%d", B, T, D, rows);
    size_t N = (size_t)B * T, ND = N * D;
    int32_t *inp = xcalloc_(N, sizeof(int32_t));
    for (size_t i = 0; i < N; i++) inp[i] = (int32_t)rng_below_((size_t)rows);
    inp[N - 1] = inp[0];   /* a repeated token: the scatter must add, not overwrite */
    pair_t wte = pair_((size_t)rows * D), wpe = pair_((size_t)T * D), out = pair_(ND),
           g = pair_(ND), grads[2] = {pair_((size_t)rows * D), pair_((size_t)T * D)};
    pair_rand_(&wte, -1, 1);
    pair_rand_(&wpe, -1, 1);
    pair_rand_(&g, -1, 1);

    mpt_encoder_forward(out.f, inp, wte.f, wpe.f, B, T, D);
    ref_encoder_forward(out.d, inp, wte.d, wpe.d, B, T, D);
    cmp_("fwd out", out.f, out.d, ND, FWD_TOL);

    for (int prefill = 0; prefill < 2; prefill++) {
        grads_reset_(grads, 2, prefill);
        mpt_encoder_backward(grads[0].f, grads[1].f, g.f, inp, B, T, D);
        ref_encoder_backward(grads[0].d, grads[1].d, g.d, inp, B, T, D);
        cmp_(prefill ? "bwd+= dwte" : "bwd dwte", grads[0].f, grads[0].d, grads[0].n, BWD_TOL);
        cmp_(prefill ? "bwd+= dwpe" : "bwd dwpe", grads[1].f, grads[1].d, grads[1].n, BWD_TOL);
        if (prefill) break;
        enc_ctx_t c = {B, T, D, inp, wte.d, wpe.d, xcalloc_(ND, sizeof(double)), g.d};
        fd_check_("fd dwte", wte.d, wte.n, grads[0].d, enc_loss_, &c, 400);
        fd_check_("fd dwpe", wpe.d, wpe.n, grads[1].d, enc_loss_, &c, 400);
        free(c.out);
    }
    free(inp);
    pair_free_(&wte), pair_free_(&wpe), pair_free_(&out), pair_free_(&g);
    pair_free_(&grads[0]), pair_free_(&grads[1]);
}

/* ---------------------------------------------------------------- layernorm */

typedef struct {
    size_t N;
    int C;
    double *inp, *w, *b, *out, *mean, *rstd;
    const double *g;
} ln_ctx_t;

static double ln_loss_(void *c) {
    ln_ctx_t *l = c;
    ref_layernorm_forward(l->out, l->mean, l->rstd, l->inp, l->w, l->b, l->N, l->C);
    return dot_(l->out, l->g, l->N * l->C);
}

static void test_layernorm_(size_t N, int C, size_t samples) {
    snprintf(case_, sizeof case_, "layernorm N%zu C%d", N, C);
    size_t NC = N * C;
    pair_t inp = pair_(NC), w = pair_(C), b = pair_(C), out = pair_(NC), mean = pair_(N),
           rstd = pair_(N), g = pair_(NC), grads[3] = {pair_(NC), pair_(C), pair_(C)};
    /* Rows with their own offset and spread, |mean|/std <= ~3.5. The output's rounding error
     * grows with |mean|/std (x - mean cancels): at |mean|/std ~ 10 even a textbook sequential
     * fp32 layernorm misses 1e-5 on elements of a tenth of the RMS. */
    for (size_t n = 0; n < N; n++) {
        double off = rng_uniform_(-1, 1), spread = rng_uniform_(0.5, 2);
        for (int i = 0; i < C; i++) pair_set_(&inp, n * C + i, off + spread * rng_uniform_(-1, 1));
    }
    pair_rand_(&w, 0.5, 1.5);
    pair_rand_(&b, -0.5, 0.5);
    pair_rand_(&g, -1, 1);

    mpt_layernorm_forward(out.f, mean.f, rstd.f, inp.f, w.f, b.f, N, C);
    ref_layernorm_forward(out.d, mean.d, rstd.d, inp.d, w.d, b.d, N, C);
    cmp_("fwd out", out.f, out.d, NC, FWD_TOL);
    cmp_("fwd mean", mean.f, mean.d, N, FWD_TOL);
    cmp_("fwd rstd", rstd.f, rstd.d, N, FWD_TOL);

    static const char *const names[2][3] = {{"bwd dinp", "bwd dw", "bwd db"},
                                            {"bwd+= dinp", "bwd+= dw", "bwd+= db"}};
    for (int prefill = 0; prefill < 2; prefill++) {
        grads_reset_(grads, 3, prefill);
        mpt_layernorm_backward(grads[0].f, grads[1].f, grads[2].f, g.f, inp.f, w.f, mean.f,
                               rstd.f, N, C);
        ref_layernorm_backward(grads[0].d, grads[1].d, grads[2].d, g.d, inp.d, w.d, mean.d,
                               rstd.d, N, C);
        for (int k = 0; k < 3; k++)
            cmp_(names[prefill][k], grads[k].f, grads[k].d, grads[k].n, BWD_TOL);
        if (prefill) break;
        ln_ctx_t c = {N, C, inp.d, w.d, b.d, xcalloc_(NC, sizeof(double)),
                      xcalloc_(N, sizeof(double)), xcalloc_(N, sizeof(double)), g.d};
        fd_check_("fd dinp", inp.d, NC, grads[0].d, ln_loss_, &c, samples);
        fd_check_("fd dw", w.d, (size_t)C, grads[1].d, ln_loss_, &c, samples);
        fd_check_("fd db", b.d, (size_t)C, grads[2].d, ln_loss_, &c, samples);
        free(c.out), free(c.mean), free(c.rstd);
    }
    pair_free_(&inp), pair_free_(&w), pair_free_(&b), pair_free_(&out), pair_free_(&mean);
    pair_free_(&rstd), pair_free_(&g);
    for (int k = 0; k < 3; k++) pair_free_(&grads[k]);
}

/* ---------------------------------------------------------------- matmul */

typedef struct {
    size_t N;
    int C, OC;
    double *inp, *w, *bias, *out;
    const double *g;
} mm_ctx_t;

static double mm_loss_(void *c) {
    mm_ctx_t *m = c;
    ref_matmul_forward(m->out, m->inp, m->w, m->bias, m->N, m->C, m->OC);
    return dot_(m->out, m->g, m->N * m->OC);
}

static void test_matmul_(size_t N, int C, int OC, int with_bias, size_t samples) {
    snprintf(case_, sizeof case_, "matmul N%zu C%d OC%d%s", N, C, OC, with_bias ? "" : " nobias");
    pair_t inp = pair_(N * C), w = pair_((size_t)C * OC), bias = pair_(OC), out = pair_(N * OC),
           g = pair_(N * OC), grads[3] = {pair_(N * C), pair_((size_t)C * OC), pair_(OC)};
    pair_rand_(&inp, -1, 1);
    pair_rand_(&w, -1, 1);
    if (with_bias) pair_rand_(&bias, -1, 1);
    pair_rand_(&g, -1, 1);

    mpt_matmul_forward(out.f, inp.f, w.f, with_bias ? bias.f : NULL, N, C, OC);
    ref_matmul_forward(out.d, inp.d, w.d, with_bias ? bias.d : NULL, N, C, OC);
    cmp_("fwd out", out.f, out.d, N * OC, FWD_TOL);

    /* pass 0: zeroed; 1: pre-filled (accumulates); 2: pre-filled with dinp NULL (skipped) */
    static const char *const names[3][3] = {{"bwd dinp", "bwd dw", "bwd dbias"},
                                            {"bwd+= dinp", "bwd+= dw", "bwd+= dbias"},
                                            {"", "bwd+= dw (no dinp)", "bwd+= dbias (no dinp)"}};
    for (int pass = 0; pass < 3; pass++) {
        grads_reset_(grads, 3, pass > 0);
        mpt_matmul_backward(pass == 2 ? NULL : grads[0].f, grads[1].f, grads[2].f, g.f, inp.f,
                            w.f, N, C, OC);
        ref_matmul_backward(pass == 2 ? NULL : grads[0].d, grads[1].d, grads[2].d, g.d, inp.d,
                            w.d, N, C, OC);
        for (int k = pass == 2 ? 1 : 0; k < 3; k++)
            cmp_(names[pass][k], grads[k].f, grads[k].d, grads[k].n, BWD_TOL);
        if (pass) continue;
        mm_ctx_t c = {N, C, OC, inp.d, w.d, with_bias ? bias.d : NULL,
                      xcalloc_(N * OC, sizeof(double)), g.d};
        fd_check_("fd dinp", inp.d, inp.n, grads[0].d, mm_loss_, &c, samples);
        fd_check_("fd dw", w.d, w.n, grads[1].d, mm_loss_, &c, samples);
        if (with_bias) fd_check_("fd dbias", bias.d, bias.n, grads[2].d, mm_loss_, &c, samples);
        free(c.out);
    }
    pair_free_(&inp), pair_free_(&w), pair_free_(&bias), pair_free_(&out), pair_free_(&g);
    for (int k = 0; k < 3; k++) pair_free_(&grads[k]);
}

/* ---------------------------------------------------------------- lm head */

typedef struct {
    size_t N;
    int C, V, ldo;
    double *inp, *w, *out;
    const double *g;
} lm_ctx_t;

static double lm_loss_(void *c) {
    lm_ctx_t *m = c;
    ref_lmhead_forward(m->out, m->inp, m->w, m->N, m->C, m->V, m->ldo);
    return dot_(m->out, m->g, m->N * m->ldo);   /* g is 0 in the columns >= V */
}

static void test_lmhead_(size_t N, int C, int V, int ldo, size_t samples) {
    snprintf(case_, sizeof case_, "lmhead N%zu C%d V%d ldo%d", N, C, V, ldo);
    size_t NO = N * ldo;
    pair_t inp = pair_(N * C), w = pair_((size_t)V * C), out = pair_(NO), g = pair_(NO),
           grads[2] = {pair_(N * C), pair_((size_t)V * C)};
    pair_rand_(&inp, -1, 1);
    pair_rand_(&w, -1, 1);
    for (size_t n = 0; n < N; n++)
        for (int j = 0; j < ldo; j++) {
            pair_set_(&out, n * ldo + j, -7.0);   /* sentinel: columns >= V must stay */
            pair_set_(&g, n * ldo + j, j < V ? rng_uniform_(-1, 1) : 0.0);
        }

    mpt_lmhead_forward(out.f, inp.f, w.f, N, C, V, ldo);
    ref_lmhead_forward(out.d, inp.d, w.d, N, C, V, ldo);
    cmp_("fwd out", out.f, out.d, NO, FWD_TOL);
    size_t written = 0;
    for (size_t n = 0; n < N; n++)
        for (int j = V; j < ldo; j++) written += out.f[n * ldo + j] != -7.0f;
    printf("  %-40s %zu written\n", nm_("columns >= V"), written);
    CHECK(written == 0, "%s: %zu entries of the columns >= V were written", case_, written);

    float *gf = xcalloc_(NO, sizeof(float));   /* junk past V in dout: it must not be read */
    for (size_t i = 0; i < NO; i++) gf[i] = (int)(i % ldo) < V ? g.f[i] : 1e3f;
    for (int prefill = 0; prefill < 2; prefill++) {
        grads_reset_(grads, 2, prefill);
        mpt_lmhead_backward(grads[0].f, grads[1].f, gf, inp.f, w.f, N, C, V, ldo);
        ref_lmhead_backward(grads[0].d, grads[1].d, g.d, inp.d, w.d, N, C, V, ldo);
        cmp_(prefill ? "bwd+= dinp" : "bwd dinp", grads[0].f, grads[0].d, grads[0].n, BWD_TOL);
        cmp_(prefill ? "bwd+= dw" : "bwd dw", grads[1].f, grads[1].d, grads[1].n, BWD_TOL);
        if (prefill) break;
        lm_ctx_t c = {N, C, V, ldo, inp.d, w.d, xcalloc_(NO, sizeof(double)), g.d};
        fd_check_("fd dinp", inp.d, inp.n, grads[0].d, lm_loss_, &c, samples);
        fd_check_("fd dw", w.d, w.n, grads[1].d, lm_loss_, &c, samples);
        free(c.out);
    }
    free(gf);
    pair_free_(&inp), pair_free_(&w), pair_free_(&out), pair_free_(&g);
    pair_free_(&grads[0]), pair_free_(&grads[1]);
}

/* ---------------------------------------------------------------- attention */

typedef struct {
    int B, T, D, H;
    double *qkv, *out, *att;
    const double *g;
} att_ctx_t;

static double att_loss_(void *c) {
    att_ctx_t *a = c;
    ref_attention_forward(a->out, a->att, a->qkv, a->B, a->T, a->D, a->H);
    return dot_(a->out, a->g, (size_t)a->B * a->T * a->D);
}

static void test_attention_(int B, int T, int D, int H, size_t samples) {
    snprintf(case_, sizeof case_, "attention B%d T%d D%d H%d", B, T, D, H);
    size_t N = (size_t)B * T, NA = (size_t)B * H * T * T;
    pair_t qkv = pair_(N * 3 * D), out = pair_(N * D), att = pair_(NA), g = pair_(N * D),
           datt = pair_(NA), dqkv = pair_(N * 3 * D);
    pair_rand_(&qkv, -2, 2);
    pair_rand_(&g, -1, 1);

    mpt_attention_forward(out.f, att.f, qkv.f, B, T, D, H);
    ref_attention_forward(out.d, att.d, qkv.d, B, T, D, H);
    cmp_("fwd out", out.f, out.d, N * D, FWD_TOL);
    cmp_("fwd att", att.f, att.d, NA, FWD_TOL);
    size_t nonzero = 0;
    for (size_t r = 0; r < (size_t)B * H * T; r++)
        for (int t2 = (int)(r % T) + 1; t2 < T; t2++) nonzero += att.f[r * T + t2] != 0.0f;
    printf("  %-40s %zu nonzero\n", nm_("att above diagonal"), nonzero);
    CHECK(nonzero == 0, "%s: %zu entries above the diagonal are not 0", case_, nonzero);

    for (int prefill = 0; prefill < 2; prefill++) {
        grads_reset_(&dqkv, 1, prefill);
        for (size_t i = 0; i < NA; i++) datt.f[i] = 1e3f;   /* scratch: junk must not matter */
        mpt_attention_backward(dqkv.f, datt.f, g.f, qkv.f, att.f, B, T, D, H);
        ref_attention_backward(dqkv.d, datt.d, g.d, qkv.d, att.d, B, T, D, H);
        cmp_(prefill ? "bwd+= dqkv" : "bwd dqkv", dqkv.f, dqkv.d, dqkv.n, BWD_TOL);
        if (prefill) break;
        att_ctx_t c = {B, T, D, H, qkv.d, xcalloc_(N * D, sizeof(double)),
                       xcalloc_(NA, sizeof(double)), g.d};
        fd_check_("fd dqkv", qkv.d, qkv.n, dqkv.d, att_loss_, &c, samples);
        free(c.out), free(c.att);
    }
    pair_free_(&qkv), pair_free_(&out), pair_free_(&att), pair_free_(&g), pair_free_(&datt);
    pair_free_(&dqkv);
}

/* ---------------------------------------------------------------- gelu, residual */

typedef struct {
    size_t N;
    double *inp, *out;
    const double *g;
} gelu_ctx_t;

static double gelu_loss_(void *c) {
    gelu_ctx_t *e = c;
    ref_gelu_forward(e->out, e->inp, e->N);
    return dot_(e->out, e->g, e->N);
}

static void test_gelu_(size_t N, size_t samples) {
    snprintf(case_, sizeof case_, "gelu N%zu", N);
    pair_t inp = pair_(N), out = pair_(N), g = pair_(N), dinp = pair_(N);
    pair_rand_(&inp, -6, 6);
    pair_set_(&inp, 0, 0.0);
    pair_set_(&inp, 1, -10.0);
    pair_set_(&inp, 2, 10.0);
    pair_rand_(&g, -1, 1);

    mpt_gelu_forward(out.f, inp.f, N);
    ref_gelu_forward(out.d, inp.d, N);
    cmp_("fwd out", out.f, out.d, N, FWD_TOL);
    for (int prefill = 0; prefill < 2; prefill++) {
        grads_reset_(&dinp, 1, prefill);
        mpt_gelu_backward(dinp.f, inp.f, g.f, N);
        ref_gelu_backward(dinp.d, inp.d, g.d, N);
        cmp_(prefill ? "bwd+= dinp" : "bwd dinp", dinp.f, dinp.d, N, BWD_TOL);
        if (prefill) break;
        gelu_ctx_t c = {N, inp.d, xcalloc_(N, sizeof(double)), g.d};
        fd_check_("fd dinp", inp.d, N, dinp.d, gelu_loss_, &c, samples);
        free(c.out);
    }
    pair_free_(&inp), pair_free_(&out), pair_free_(&g), pair_free_(&dinp);
}

static void test_residual_(size_t N) {
    snprintf(case_, sizeof case_, "residual N%zu", N);
    pair_t a = pair_(N), b = pair_(N), out = pair_(N);
    pair_rand_(&a, -1, 1);
    pair_rand_(&b, -1, 1);
    mpt_residual_forward(out.f, a.f, b.f, N);
    ref_residual_forward(out.d, a.d, b.d, N);
    cmp_("fwd out", out.f, out.d, N, FWD_TOL);
    memcpy(out.f, a.f, N * sizeof(float));   /* out aliasing a */
    mpt_residual_forward(out.f, out.f, b.f, N);
    cmp_("fwd out (aliasing a)", out.f, out.d, N, FWD_TOL);
    mpt_add_inplace(out.f, a.f, N);          /* y += x onto a pre-filled y */
    ref_add_inplace(out.d, a.d, N);
    cmp_("add_inplace", out.f, out.d, N, FWD_TOL);
    pair_free_(&a), pair_free_(&b), pair_free_(&out);
}

/* ---------------------------------------------------------------- cross-entropy, softmax */

typedef struct {
    size_t N;
    int V, Vp;
    double dloss, *logits, *scratch, *losses;
    const int32_t *targets;
} ce_ctx_t;

/* L = dloss * sum_n losses_n, whose gradient the fused kernel leaves in logits */
static double ce_loss_(void *c) {
    ce_ctx_t *e = c;
    memcpy(e->scratch, e->logits, e->N * e->Vp * sizeof(double));
    ref_crossentropy_fused(e->scratch, e->losses, e->targets, e->N, e->V, e->Vp, e->dloss);
    long double s = 0.0L;
    for (size_t n = 0; n < e->N; n++) s += e->losses[n];
    return (double)(e->dloss * s);
}

static void test_crossentropy_(size_t N, int V, int Vp, size_t samples) {
    snprintf(case_, sizeof case_, "crossentropy N%zu V%d Vp%d", N, V, Vp);
    size_t NV = N * Vp;
    int32_t *targets = xcalloc_(N, sizeof(int32_t));
    for (size_t n = 0; n < N; n++) targets[n] = (int32_t)rng_below_((size_t)V);
    targets[0] = V - 1;   /* the last real column */
    pair_t logits = pair_(NV), z = pair_(NV), losses = pair_(N);
    for (size_t n = 0; n < N; n++)
        for (int j = 0; j < Vp; j++)   /* padded columns large: they would dominate if read */
            pair_set_(&logits, n * Vp + j, j < V ? rng_uniform_(-4, 4) : 50.0);
    float dloss_f = 1.0f / (float)N;

    memcpy(z.f, logits.f, NV * sizeof(float));
    memcpy(z.d, logits.d, NV * sizeof(double));
    mpt_crossentropy_fused(z.f, losses.f, targets, N, V, Vp, dloss_f);
    ref_crossentropy_fused(z.d, losses.d, targets, N, V, Vp, (double)dloss_f);
    cmp_("losses", losses.f, losses.d, N, FWD_TOL);
    cmp_("dlogits", z.f, z.d, NV, BWD_TOL);
    /* The target columns' dloss * (p - 1) dominate the RMS, hence the floor, of dlogits; compare
     * the other columns, dloss * p, on their own scale too. */
    double *pf = xcalloc_(NV, sizeof(double)), *pd = xcalloc_(NV, sizeof(double));
    for (size_t i = 0; i < NV; i++) pf[i] = z.f[i], pd[i] = z.d[i];
    for (size_t n = 0; n < N; n++) pf[n * Vp + targets[n]] = pd[n * Vp + targets[n]] = 0.0;
    check_close_d(nm_("dlogits non-target"), pf, pd, NV, BWD_TOL, floor_of_(pd, NV));
    free(pf), free(pd);
    size_t nonzero = 0;
    for (size_t n = 0; n < N; n++)
        for (int j = V; j < Vp; j++) nonzero += z.f[n * Vp + j] != 0.0f;
    printf("  %-40s %zu nonzero\n", nm_("padded dlogits"), nonzero);
    CHECK(nonzero == 0, "%s: %zu padded gradient entries are not exactly 0", case_, nonzero);

    ce_ctx_t c = {N, V, Vp, (double)dloss_f, logits.d, xcalloc_(NV, sizeof(double)),
                  xcalloc_(N, sizeof(double)), targets};
    /* Each row's loss is ~log V while a logit's gradient is only ~dloss/V: with h = 1e-6 the
     * rounding of L (~1e-15 per row) over 2h is ~5e-10, comparable to the gradients themselves.
     * The third derivative of log-sum-exp is bounded by ~p (< 1), so h = 1e-4 keeps the
     * truncation error h^2 p / 6 below 2e-9 p while cutting the rounding term 100-fold. */
    fd_check_h_("fd dlogits", logits.d, NV, z.d, ce_loss_, &c, samples, 1e-4);
    free(c.scratch), free(c.losses), free(targets);
    pair_free_(&logits), pair_free_(&z), pair_free_(&losses);
}

static void test_softmax_row_(int V, double offset) {
    pair_t logits = pair_(V), probs = pair_((size_t)V + 4);
    for (int j = 0; j < V; j++) pair_set_(&logits, j, offset + rng_uniform_(-6, 6));
    static const double temps[] = {1.0, 0.7, 1.8};
    for (int k = 0; k < 3; k++) {
        float temp = (float)temps[k];
        snprintf(case_, sizeof case_, "softmax_row V%d offset%g temp%g", V, offset, temps[k]);
        for (int j = 0; j < V + 4; j++) probs.f[j] = -7.0f;   /* sentinels past V */
        mpt_softmax_row(probs.f, logits.f, V, temp);
        ref_softmax_row(probs.d, logits.d, V, (double)temp);
        cmp_("probs", probs.f, probs.d, (size_t)V, FWD_TOL);
        double sum = 0.0;
        for (int j = 0; j < V; j++) sum += probs.f[j];
        int kept = 1;
        for (int j = V; j < V + 4; j++) kept &= probs.f[j] == -7.0f;
        printf("  %-40s |sum-1| %.3e, past V %s\n", nm_("probs"), fabs(sum - 1.0),
               kept ? "untouched" : "WRITTEN");
        CHECK(fabs(sum - 1.0) < 1e-5 && kept, "%s: sum %.9g, past-V untouched %d", case_, sum,
              kept);
    }
    pair_free_(&logits), pair_free_(&probs);
}

/* ---------------------------------------------------------------- a whole block */

/* x (B,T,D) -> ln1 -> qkv = ln1 Wqkv + b -> y = attention(qkv) -> res1 = x + y Wap + b
 *   -> ln2 -> h = ln2 Wfc + b (N,F) -> gelu -> out = res1 + gelu(h) Wfp + b;  L = sum(out * g) */
enum { LN1W, LN1B, QKVW, QKVB, APW, APB, LN2W, LN2B, FCW, FCB, FPW, FPB, NPARAM };
static const char *const pname_[NPARAM] = {"ln1.w", "ln1.b", "qkv.w", "qkv.b", "attproj.w",
                                           "attproj.b", "ln2.w", "ln2.b", "fc.w", "fc.b",
                                           "fcproj.w", "fcproj.b"};
/* activations, then the gradients of the activations */
enum { LN1, M1, R1, QKV, ATT, ATY, TMP, RES1, LN2, M2, R2, FCH, FCG, OUT, NACT };
enum { DLN1, DQKV, DATT, DATY, DRES1, DLN2, DFCH, DFCG, NDACT };

typedef struct {
    int B, T, D, H, F;
    size_t N;
    pair_t x, g, dx, p[NPARAM], dp[NPARAM], a[NACT], da[NDACT];
} block_t;

static void block_forward_ref_(block_t *k) {
    size_t N = k->N;
    int D = k->D, F = k->F;
    double *a[NACT], *p[NPARAM];
    for (int i = 0; i < NACT; i++) a[i] = k->a[i].d;
    for (int i = 0; i < NPARAM; i++) p[i] = k->p[i].d;
    ref_layernorm_forward(a[LN1], a[M1], a[R1], k->x.d, p[LN1W], p[LN1B], N, D);
    ref_matmul_forward(a[QKV], a[LN1], p[QKVW], p[QKVB], N, D, 3 * D);
    ref_attention_forward(a[ATY], a[ATT], a[QKV], k->B, k->T, D, k->H);
    ref_matmul_forward(a[TMP], a[ATY], p[APW], p[APB], N, D, D);
    ref_residual_forward(a[RES1], k->x.d, a[TMP], N * D);
    ref_layernorm_forward(a[LN2], a[M2], a[R2], a[RES1], p[LN2W], p[LN2B], N, D);
    ref_matmul_forward(a[FCH], a[LN2], p[FCW], p[FCB], N, D, F);
    ref_gelu_forward(a[FCG], a[FCH], N * F);
    ref_matmul_forward(a[TMP], a[FCG], p[FPW], p[FPB], N, F, D);
    ref_residual_forward(a[OUT], a[RES1], a[TMP], N * D);
}

static void block_forward_fast_(block_t *k) {
    size_t N = k->N;
    int D = k->D, F = k->F;
    float *a[NACT], *p[NPARAM];
    for (int i = 0; i < NACT; i++) a[i] = k->a[i].f;
    for (int i = 0; i < NPARAM; i++) p[i] = k->p[i].f;
    mpt_layernorm_forward(a[LN1], a[M1], a[R1], k->x.f, p[LN1W], p[LN1B], N, D);
    mpt_matmul_forward(a[QKV], a[LN1], p[QKVW], p[QKVB], N, D, 3 * D);
    mpt_attention_forward(a[ATY], a[ATT], a[QKV], k->B, k->T, D, k->H);
    mpt_matmul_forward(a[TMP], a[ATY], p[APW], p[APB], N, D, D);
    mpt_residual_forward(a[RES1], k->x.f, a[TMP], N * D);
    mpt_layernorm_forward(a[LN2], a[M2], a[R2], a[RES1], p[LN2W], p[LN2B], N, D);
    mpt_matmul_forward(a[FCH], a[LN2], p[FCW], p[FCB], N, D, F);
    mpt_gelu_forward(a[FCG], a[FCH], N * F);
    mpt_matmul_forward(a[TMP], a[FCG], p[FPW], p[FPB], N, F, D);
    mpt_residual_forward(a[OUT], a[RES1], a[TMP], N * D);
}

/* Gradients into zeroed k->dx, k->dp, k->da. dout = g reaches res1 directly and through the MLP;
 * dres1 reaches x directly and through attention. */
static void block_backward_ref_(block_t *k) {
    size_t N = k->N;
    int D = k->D, F = k->F;
    double *a[NACT], *p[NPARAM], *da[NDACT], *dp[NPARAM];
    for (int i = 0; i < NACT; i++) a[i] = k->a[i].d;
    for (int i = 0; i < NDACT; i++) da[i] = k->da[i].d;
    for (int i = 0; i < NPARAM; i++) p[i] = k->p[i].d, dp[i] = k->dp[i].d;
    ref_add_inplace(da[DRES1], k->g.d, N * D);
    ref_matmul_backward(da[DFCG], dp[FPW], dp[FPB], k->g.d, a[FCG], p[FPW], N, F, D);
    ref_gelu_backward(da[DFCH], a[FCH], da[DFCG], N * F);
    ref_matmul_backward(da[DLN2], dp[FCW], dp[FCB], da[DFCH], a[LN2], p[FCW], N, D, F);
    ref_layernorm_backward(da[DRES1], dp[LN2W], dp[LN2B], da[DLN2], a[RES1], p[LN2W], a[M2],
                           a[R2], N, D);
    ref_add_inplace(k->dx.d, da[DRES1], N * D);
    ref_matmul_backward(da[DATY], dp[APW], dp[APB], da[DRES1], a[ATY], p[APW], N, D, D);
    ref_attention_backward(da[DQKV], da[DATT], da[DATY], a[QKV], a[ATT], k->B, k->T, D, k->H);
    ref_matmul_backward(da[DLN1], dp[QKVW], dp[QKVB], da[DQKV], a[LN1], p[QKVW], N, D, 3 * D);
    ref_layernorm_backward(k->dx.d, dp[LN1W], dp[LN1B], da[DLN1], k->x.d, p[LN1W], a[M1], a[R1],
                           N, D);
}

static void block_backward_fast_(block_t *k) {
    size_t N = k->N;
    int D = k->D, F = k->F;
    float *a[NACT], *p[NPARAM], *da[NDACT], *dp[NPARAM];
    for (int i = 0; i < NACT; i++) a[i] = k->a[i].f;
    for (int i = 0; i < NDACT; i++) da[i] = k->da[i].f;
    for (int i = 0; i < NPARAM; i++) p[i] = k->p[i].f, dp[i] = k->dp[i].f;
    mpt_add_inplace(da[DRES1], k->g.f, N * D);
    mpt_matmul_backward(da[DFCG], dp[FPW], dp[FPB], k->g.f, a[FCG], p[FPW], N, F, D);
    mpt_gelu_backward(da[DFCH], a[FCH], da[DFCG], N * F);
    mpt_matmul_backward(da[DLN2], dp[FCW], dp[FCB], da[DFCH], a[LN2], p[FCW], N, D, F);
    mpt_layernorm_backward(da[DRES1], dp[LN2W], dp[LN2B], da[DLN2], a[RES1], p[LN2W], a[M2],
                           a[R2], N, D);
    mpt_add_inplace(k->dx.f, da[DRES1], N * D);
    mpt_matmul_backward(da[DATY], dp[APW], dp[APB], da[DRES1], a[ATY], p[APW], N, D, D);
    mpt_attention_backward(da[DQKV], da[DATT], da[DATY], a[QKV], a[ATT], k->B, k->T, D, k->H);
    mpt_matmul_backward(da[DLN1], dp[QKVW], dp[QKVB], da[DQKV], a[LN1], p[QKVW], N, D, 3 * D);
    mpt_layernorm_backward(k->dx.f, dp[LN1W], dp[LN1B], da[DLN1], k->x.f, p[LN1W], a[M1], a[R1],
                           N, D);
}

static double block_loss_(void *c) {
    block_t *k = c;
    block_forward_ref_(k);
    return dot_(k->a[OUT].d, k->g.d, k->N * k->D);
}

static void test_block_(int B, int T, int D, int H, int F, size_t samples) {
    snprintf(case_, sizeof case_, "block B%d T%d D%d H%d F%d", B, T, D, H, F);
    block_t k = {.B = B, .T = T, .D = D, .H = H, .F = F, .N = (size_t)B * T};
    size_t N = k.N, ND = N * D, NA = (size_t)B * H * T * T;
    const size_t psize[NPARAM] = {D, D, (size_t)D * 3 * D, 3 * (size_t)D, (size_t)D * D, D,
                                  D, D, (size_t)D * F, F, (size_t)F * D, D};
    const size_t asize[NACT] = {ND, N, N, 3 * ND, NA, ND, ND, ND, ND, N, N, N * F, N * F, ND};
    const size_t dasize[NDACT] = {ND, 3 * ND, NA, ND, ND, ND, N * F, N * F};
    k.x = pair_(ND), k.g = pair_(ND), k.dx = pair_(ND);
    for (int i = 0; i < NACT; i++) k.a[i] = pair_(asize[i]);
    for (int i = 0; i < NDACT; i++) k.da[i] = pair_(dasize[i]);
    for (int i = 0; i < NPARAM; i++) {
        k.p[i] = pair_(psize[i]), k.dp[i] = pair_(psize[i]);
        int is_lnw = i == LN1W || i == LN2W, is_bias = i % 2 == 1;
        int fan_in = i == FPW ? F : D;   /* matrices keep activations at unit scale */
        double s = is_bias ? 0.2 : is_lnw ? 0.3 : sqrt(3.0 / fan_in);
        pair_rand_(&k.p[i], (is_lnw ? 1.0 : 0.0) - s, (is_lnw ? 1.0 : 0.0) + s);
    }
    pair_rand_(&k.x, -1.5, 1.5);
    pair_rand_(&k.g, -1, 1);

    block_forward_ref_(&k);
    block_backward_ref_(&k);
    block_forward_fast_(&k);
    for (size_t i = 0; i < NA; i++) k.da[DATT].f[i] = 1e3f;   /* scratch */
    block_backward_fast_(&k);

    /* ten fp32 operators in a row: held to the composite (backward) tolerance, not a single op's */
    cmp_("fwd out", k.a[OUT].f, k.a[OUT].d, ND, BWD_TOL);
    char what[64];
    cmp_("bwd dx", k.dx.f, k.dx.d, ND, BWD_TOL);
    for (int i = 0; i < NPARAM; i++) {
        snprintf(what, sizeof what, "bwd d%s", pname_[i]);
        cmp_(what, k.dp[i].f, k.dp[i].d, psize[i], BWD_TOL);
    }
    fd_check_("fd dx", k.x.d, ND, k.dx.d, block_loss_, &k, samples);
    for (int i = 0; i < NPARAM; i++) {
        snprintf(what, sizeof what, "fd d%s", pname_[i]);
        fd_check_(what, k.p[i].d, psize[i], k.dp[i].d, block_loss_, &k, samples);
    }
    pair_free_(&k.x), pair_free_(&k.g), pair_free_(&k.dx);
    for (int i = 0; i < NACT; i++) pair_free_(&k.a[i]);
    for (int i = 0; i < NDACT; i++) pair_free_(&k.da[i]);
    for (int i = 0; i < NPARAM; i++) pair_free_(&k.p[i]), pair_free_(&k.dp[i]);
}

int main(void) {
    small_ = check_small();
    test_encoder_(2, 5, 12, 11);
    test_encoder_(4, 64, 64, 50);

    test_layernorm_(10, 12, FD_ALL);
    test_layernorm_(7, 13, FD_ALL);
    test_layernorm_(128, 64, 256);
    test_layernorm_(16, 768, 256);

    /* the GEMM-based operators under both GEMM back ends */
    for (int backend = 0; backend < 2; backend++) {
        mpt_kernels_set_gemm(backend == 0 ? MPT_GEMM_ONEDNN : MPT_GEMM_OPENBLAS);
        printf("GEMMs through %s\n", backend == 0 ? "oneDNN" : "OpenBLAS");
        test_matmul_(10, 12, 7, 1, FD_ALL);
        test_matmul_(10, 12, 7, 0, FD_ALL);
        test_matmul_(37, 65, 131, 1, 256);
        test_matmul_(128, 64, 192, 1, 128);
        test_matmul_(128, 256, 64, 1, 128);
        test_matmul_(130, 96, 257, 0, 128);

        test_lmhead_(10, 12, 11, 16, FD_ALL);
        test_lmhead_(64, 64, 1000, 1024, 256);

        test_attention_(2, 5, 12, 3, FD_ALL);
        test_attention_(1, 7, 8, 1, FD_ALL);
        test_attention_(2, 64, 64, 4, 96);
        test_attention_(1, 33, 48, 3, 96);
    }
    mpt_kernels_set_gemm(MPT_GEMM_ONEDNN);
    /* one thread, oneDNN back end: the A^T B products with small outputs (weight gradients
     * here, the attention's dV and dK tiles always) run on OpenBLAS (core/kernels_internal.h) */
    printf("GEMMs through oneDNN, one thread (small weight gradients on OpenBLAS)\n");
    int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    test_matmul_(37, 65, 131, 1, 256);
    test_matmul_(130, 96, 257, 0, 128);
    test_matmul_(1024, 96, 128, 1, 16);
    test_lmhead_(64, 64, 1000, 1024, 256);
    omp_set_num_threads(threads);

    test_gelu_(117, FD_ALL);
    test_gelu_(4096, small_ ? 256 : FD_ALL);   /* 256 of 4096 sampled in a checking build */
    test_residual_(117);
    test_residual_(4099);

    test_crossentropy_(10, 11, 16, FD_ALL);
    test_crossentropy_(37, 1000, 1024, 256);
    test_crossentropy_(4, 50257, 50304, 64);
    test_softmax_row_(11, 0.0);
    test_softmax_row_(50257, 0.0);
    test_softmax_row_(300, 1000.0);

    test_block_(2, 5, 12, 3, 48, FD_ALL);
    test_block_(2, 64, 64, 4, 256, 12);
    return check_finish();
}
