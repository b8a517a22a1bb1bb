/* test_kernels_fused.c — checks every operator of src/core/kernels_fused.h:
 *   1. against the chain of plain fp32 operators of kernels.h it replaces (same inputs);
 *   2. against the same chain in the double-precision reference of tests/ref_kernels.c;
 *   3. backward (GELU + bias gradient) against central finite differences, in double, of the
 *      reference forward gelu(h + bias): the fused fp32 gradient is compared with them directly;
 *   4. aliasing (res onto a or y, dinp onto dout) and NULL bias, accumulation into pre-filled
 *      bias gradients, and widths that are not a multiple of the vector or cache-line width;
 *   5. the beta = 0 input-gradient GEMMs of kernels.h (mpt_matmul_backward_set,
 *      mpt_lmhead_backward_set) against a zeroed buffer and the accumulating kernels;
 *   6. the MLP's c_proj backward with the GELU backward fused by row chunks
 *      (mpt_matmul_backward_gelu_set) against the unfused pair, the reference and finite
 *      differences;
 *   7. the linear layers' GEMMs under both threadings (split into one block per thread, or
 *      threaded by the library) against the double reference and each other.
 * Tolerances are those of tests/test_kernels.c (1e-5 forward, 1e-4 backward, relative, with a
 * floor of a tenth of the reference's RMS). One line per check. */
#include "check.h"
#include "core/kernels.h"
#include "core/kernels_fused.h"
#include "ref_kernels.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ref_kernels.c"

#define FWD_TOL 1e-5
#define BWD_TOL 1e-4
#define FD_H 1e-6

static uint64_t rng_ = 0x9E3779B97F4A7C15ull;
static double uni_(double lo, double hi) {
    uint64_t z = (rng_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return lo + (hi - lo) * ((double)(z >> 11) * 0x1.0p-53);
}

static void *xcalloc_(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size);
    if (!p) {
        fprintf(stderr, "test_kernels_fused: out of memory\n");
        exit(1);
    }
    return p;
}

/* the same values in fp32 and double */
typedef struct {
    size_t n;
    float *f;
    double *d;
} pair_t;
static pair_t pair_(size_t n, double lo, double hi) {
    pair_t p = {n, xcalloc_(n, sizeof(float)), xcalloc_(n, sizeof(double))};
    for (size_t i = 0; i < n; i++) p.f[i] = (float)uni_(lo, hi), p.d[i] = p.f[i];
    return p;
}
static void pair_free_(pair_t *p) { free(p->f), free(p->d); }
static float *fcopy_(const float *x, size_t n) {
    float *y = xcalloc_(n, sizeof *y);
    memcpy(y, x, n * sizeof *y);
    return y;
}

static double floor_d_(const double *r, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += r[i] * r[i];
    double f = n ? 0.1 * sqrt(s / (double)n) : 0.0;
    return f > 1e-30 ? f : 1e-30;
}
static double floor_f_(const float *r, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)r[i] * r[i];
    double f = n ? 0.1 * sqrt(s / (double)n) : 0.0;
    return f > 1e-30 ? f : 1e-30;
}

static char case_[96];
static const char *nm_(const char *what) {
    static char s[192];
    snprintf(s, sizeof s, "%s %s", case_, what);
    return s;
}
/* fused fp32 vs plain fp32 chain */
static void vs_plain_(const char *what, const float *fused, const float *plain, size_t n,
                      double tol) {
    check_close(nm_(what), fused, plain, n, tol, floor_f_(plain, n));
}
/* fused fp32 vs double reference */
static void vs_ref_(const char *what, const float *fused, const double *ref, size_t n, double tol) {
    double *f = xcalloc_(n, sizeof *f);
    for (size_t i = 0; i < n; i++) f[i] = fused[i];
    check_close_d(nm_(what), f, ref, n, tol, floor_d_(ref, n));
    free(f);
}

/* ---- bias + GELU forward, GELU backward + bias gradient ---------------------------------- */

/* L = sum g * gelu(h + bias), in double */
static double gelu_loss_(const double *h, const double *bias, const double *g, size_t N, int C,
                         double *tmp) {
    for (size_t r = 0; r < N; r++)
        for (int i = 0; i < C; i++) tmp[r * C + i] = h[r * C + i] + bias[i];
    ref_gelu_forward(tmp, tmp, N * (size_t)C);
    double s = 0.0;
    for (size_t k = 0; k < N * (size_t)C; k++) s += tmp[k] * g[k];
    return s;
}

static void test_bias_gelu_(size_t N, int C) {
    snprintf(case_, sizeof case_, "bias+gelu N%zu C%d", N, C);
    size_t n = N * (size_t)C;
    pair_t h = pair_(n, -6, 6), bias = pair_(C, -1, 1), g = pair_(n, -1, 1);
    h.f[0] = 0.0f, h.d[0] = 0.0, h.f[1] = -30.0f, h.d[1] = -30.0, h.f[2] = 30.0f, h.d[2] = 30.0;

    /* plain chain: h + bias (the GEMM's preload), gelu; fused: one pass */
    float *hp = fcopy_(h.f, n), *op = xcalloc_(n, sizeof *op);
    mpt_add_rows(hp, bias.f, N, C);
    mpt_gelu_forward(op, hp, n);
    float *hf = fcopy_(h.f, n), *of = xcalloc_(n, sizeof *of);
    mpt_bias_gelu_forward(of, hf, bias.f, N, C);
    vs_plain_("fwd h+bias vs plain", hf, hp, n, 0.0);
    vs_plain_("fwd out vs plain", of, op, n, FWD_TOL);
    double *hd = xcalloc_(n, sizeof *hd), *od = xcalloc_(n, sizeof *od);
    for (size_t r = 0; r < N; r++)
        for (int i = 0; i < C; i++) hd[r * C + i] = (double)hf[r * C + i];
    ref_gelu_forward(od, hd, n);
    vs_ref_("fwd out vs ref", of, od, n, FWD_TOL);
    mpt_bias_gelu_forward(of, hf, NULL, N, C); /* no bias: h unchanged, same out */
    vs_plain_("fwd NULL bias", of, op, n, FWD_TOL);

    /* backward: plain = zeroed dinp += gelu' * g, then the bias column sums */
    float *dp = xcalloc_(n, sizeof *dp), *dbp = xcalloc_(C, sizeof *dbp);
    mpt_gelu_backward(dp, hp, g.f, n);
    for (size_t r = 0; r < N; r++)
        for (int i = 0; i < C; i++) dbp[i] += dp[r * C + i];
    float *df = fcopy_(g.f, n), *dbf = xcalloc_(C, sizeof *dbf); /* dinp aliasing dout */
    for (int i = 0; i < C; i++) dbf[i] = 0.5f; /* pre-filled: the kernel accumulates */
    mpt_gelu_backward_bias(df, dbf, hp, df, N, C);
    for (int i = 0; i < C; i++) dbf[i] -= 0.5f;
    vs_plain_("bwd dinp vs plain (aliasing dout)", df, dp, n, BWD_TOL);
    vs_plain_("bwd dbias+= vs plain", dbf, dbp, (size_t)C, BWD_TOL);
    double *dd = xcalloc_(n, sizeof *dd), *dbd = xcalloc_(C, sizeof *dbd);
    ref_gelu_backward(dd, hd, g.d, n);
    for (size_t r = 0; r < N; r++)
        for (int i = 0; i < C; i++) dbd[i] += dd[r * C + i];
    vs_ref_("bwd dinp vs ref", df, dd, n, BWD_TOL);
    vs_ref_("bwd dbias vs ref", dbf, dbd, (size_t)C, BWD_TOL);
    float *dn = xcalloc_(n, sizeof *dn);
    mpt_gelu_backward_bias(dn, NULL, hp, g.f, N, C);
    vs_plain_("bwd NULL dbias", dn, dp, n, BWD_TOL);

    /* finite differences of the double forward in h and in bias vs the fused fp32 gradient
     * (the analytic gradient w.r.t. h is dinp, w.r.t. bias its column sums) */
    double *tmp = xcalloc_(n, sizeof *tmp), *hx = h.d, *an = xcalloc_(64, sizeof *an),
           *fd = xcalloc_(64, sizeof *fd);
    for (size_t r = 0; r < N; r++)
        for (int i = 0; i < C; i++) hx[r * C + i] = (double)h.f[r * C + i];
    size_t m = n < 64 ? n : 64;
    for (size_t k = 0; k < m; k++) {
        size_t i = n <= 64 ? k : (size_t)uni_(0, (double)n);
        double x0 = hx[i];
        hx[i] = x0 + FD_H;
        double lp = gelu_loss_(hx, bias.d, g.d, N, C, tmp);
        hx[i] = x0 - FD_H;
        double lm = gelu_loss_(hx, bias.d, g.d, N, C, tmp);
        hx[i] = x0;
        fd[k] = (lp - lm) / (2 * FD_H), an[k] = df[i];
    }
    check_close_d(nm_("fd dinp"), an, fd, m, BWD_TOL, floor_d_(fd, m));
    m = (size_t)C < 64 ? (size_t)C : 64;
    for (size_t k = 0; k < m; k++) {
        double x0 = bias.d[k];
        bias.d[k] = x0 + FD_H;
        double lp = gelu_loss_(hx, bias.d, g.d, N, C, tmp);
        bias.d[k] = x0 - FD_H;
        double lm = gelu_loss_(hx, bias.d, g.d, N, C, tmp);
        bias.d[k] = x0;
        fd[k] = (lp - lm) / (2 * FD_H), an[k] = dbf[k];
    }
    check_close_d(nm_("fd dbias"), an, fd, m, BWD_TOL, floor_d_(fd, m));

    free(hp), free(op), free(hf), free(of), free(hd), free(od), free(dp), free(dbp), free(df);
    free(dbf), free(dd), free(dbd), free(dn), free(tmp), free(an), free(fd);
    pair_free_(&h), pair_free_(&bias), pair_free_(&g);
}

/* ---- bias gradient ---------------------------------------------------------------------- */

static void test_bias_backward_(size_t N, int C) {
    snprintf(case_, sizeof case_, "bias_backward N%zu C%d", N, C);
    size_t n = N * (size_t)C;
    pair_t g = pair_(n, -1, 1), db = pair_(C, -1, 1);
    mpt_bias_backward(db.f, g.f, N, C);
    for (size_t r = 0; r < N; r++)
        for (int i = 0; i < C; i++) db.d[i] += g.d[r * C + i];
    vs_ref_("dbias+= vs ref", db.f, db.d, (size_t)C, BWD_TOL);
    pair_free_(&g), pair_free_(&db);
}

/* ---- bias + residual, residual + LayerNorm ---------------------------------------------- */

static void test_residual_ln_(size_t N, int C) {
    snprintf(case_, sizeof case_, "residual+layernorm N%zu C%d", N, C);
    size_t n = N * (size_t)C;
    pair_t a = pair_(n, -1, 1), y = pair_(n, -1, 1), bias = pair_(C, -0.5, 0.5);
    pair_t w = pair_(C, 0.5, 1.5), b = pair_(C, -0.5, 0.5);
    for (size_t r = 0; r < N; r++) { /* rows with their own offset, as test_kernels.c */
        double off = uni_(-1, 1);
        for (int i = 0; i < C; i++) a.f[r * C + i] += (float)off, a.d[r * C + i] = a.f[r * C + i];
    }
    /* plain chain: y + bias (the GEMM's preload), residual, layernorm */
    float *yp = fcopy_(y.f, n), *rp = xcalloc_(n, sizeof *rp), *op = xcalloc_(n, sizeof *op);
    float *mp = xcalloc_(N, sizeof *mp), *sp = xcalloc_(N, sizeof *sp);
    mpt_add_rows(yp, bias.f, N, C);
    mpt_residual_forward(rp, a.f, yp, n);
    mpt_layernorm_forward(op, mp, sp, rp, w.f, b.f, N, C);
    float *rf = xcalloc_(n, sizeof *rf), *of = xcalloc_(n, sizeof *of);
    float *mf = xcalloc_(N, sizeof *mf), *sf = xcalloc_(N, sizeof *sf);
    mpt_residual_layernorm_forward(rf, of, mf, sf, a.f, y.f, bias.f, w.f, b.f, N, C);
    vs_plain_("res vs plain", rf, rp, n, FWD_TOL);
    vs_plain_("out vs plain", of, op, n, FWD_TOL);
    vs_plain_("mean vs plain", mf, mp, N, FWD_TOL);
    vs_plain_("rstd vs plain", sf, sp, N, FWD_TOL);
    /* double reference of the same chain */
    double *yd = xcalloc_(n, sizeof *yd), *rd = xcalloc_(n, sizeof *rd);
    double *od = xcalloc_(n, sizeof *od), *md = xcalloc_(N, sizeof *md), *sd = xcalloc_(N, sizeof *sd);
    for (size_t r = 0; r < N; r++)
        for (int i = 0; i < C; i++) yd[r * C + i] = y.d[r * C + i] + bias.d[i];
    ref_residual_forward(rd, a.d, yd, n);
    ref_layernorm_forward(od, md, sd, rd, w.d, b.d, N, C);
    vs_ref_("res vs ref", rf, rd, n, FWD_TOL);
    vs_ref_("out vs ref", of, od, n, FWD_TOL);
    vs_ref_("rstd vs ref", sf, sd, N, FWD_TOL);
    /* res aliasing y, no bias: the plain chain without the preload */
    float *ya = fcopy_(y.f, n);
    mpt_residual_layernorm_forward(ya, of, mf, sf, a.f, ya, NULL, w.f, b.f, N, C);
    mpt_residual_forward(rp, a.f, y.f, n);
    mpt_layernorm_forward(op, mp, sp, rp, w.f, b.f, N, C);
    vs_plain_("NULL bias, res aliasing y: res", ya, rp, n, FWD_TOL);
    vs_plain_("NULL bias, res aliasing y: out", of, op, n, FWD_TOL);

    snprintf(case_, sizeof case_, "bias+residual N%zu C%d", N, C);
    float *aa = fcopy_(a.f, n);
    mpt_bias_residual_forward(aa, aa, y.f, bias.f, N, C); /* res aliasing a */
    mpt_residual_forward(rp, a.f, yp, n);
    vs_plain_("res (aliasing a) vs plain", aa, rp, n, FWD_TOL);
    vs_ref_("res vs ref", aa, rd, n, FWD_TOL);
    mpt_bias_residual_forward(aa, a.f, y.f, NULL, N, C);
    mpt_residual_forward(rp, a.f, y.f, n);
    vs_plain_("NULL bias vs plain", aa, rp, n, FWD_TOL);

    free(yp), free(rp), free(op), free(mp), free(sp), free(rf), free(of), free(mf), free(sf);
    free(yd), free(rd), free(od), free(md), free(sd), free(ya), free(aa);
    pair_free_(&a), pair_free_(&y), pair_free_(&bias), pair_free_(&w), pair_free_(&b);
}

/* ---- LayerNorm backward + the column sums of its input gradient --------------------------
 * mpt_layernorm_backward_colsum = mpt_layernorm_backward followed by mpt_bias_backward of the
 * updated dinp: dinp, dw, db bit for bit (the same code), dcol within the backward tolerance of
 * the plain sum and of the double sum of the same dinp (another order of the same additions). */
static void test_ln_colsum_(size_t N, int C) {
    snprintf(case_, sizeof case_, "layernorm_backward_colsum N%zu C%d", N, C);
    size_t n = N * (size_t)C;
    pair_t x = pair_(n, -1, 1), g = pair_(n, -1, 1), w = pair_(C, 0.5, 1.5), b = pair_(C, -0.5, 0.5);
    pair_t d0 = pair_(n, -1, 1), dw0 = pair_(C, -1, 1), db0 = pair_(C, -1, 1), dc0 = pair_(C, -1, 1);
    float *out = xcalloc_(n, sizeof *out), *mean = xcalloc_(N, sizeof *mean);
    float *rstd = xcalloc_(N, sizeof *rstd);
    mpt_layernorm_forward(out, mean, rstd, x.f, w.f, b.f, N, C);
    float *dp = fcopy_(d0.f, n), *dwp = fcopy_(dw0.f, C), *dbp = fcopy_(db0.f, C);
    float *dcp = fcopy_(dc0.f, C);
    mpt_layernorm_backward(dp, dwp, dbp, g.f, x.f, w.f, mean, rstd, N, C);
    mpt_bias_backward(dcp, dp, N, C);
    float *df = fcopy_(d0.f, n), *dwf = fcopy_(dw0.f, C), *dbf = fcopy_(db0.f, C);
    float *dcf = fcopy_(dc0.f, C);
    mpt_layernorm_backward_colsum(df, dwf, dbf, dcf, g.f, x.f, w.f, mean, rstd, N, C);
    size_t differ = 0;
    for (size_t i = 0; i < n; i++) differ += df[i] != dp[i];
    for (int i = 0; i < C; i++) differ += (dwf[i] != dwp[i]) + (dbf[i] != dbp[i]);
    CHECK(differ == 0, "%s: dinp, dw, db bit for bit as the plain kernel (%zu differ)", case_,
          differ);
    vs_plain_("dcol vs plain bias sum", dcf, dcp, (size_t)C, BWD_TOL);
    double *dcd = xcalloc_(C, sizeof *dcd);
    for (int i = 0; i < C; i++) dcd[i] = dc0.d[i];
    for (size_t r = 0; r < N; r++)
        for (int i = 0; i < C; i++) dcd[i] += dp[r * C + i];
    vs_ref_("dcol vs double sum", dcf, dcd, (size_t)C, BWD_TOL);
    free(out), free(mean), free(rstd), free(dp), free(dwp), free(dbp), free(dcp), free(df);
    free(dwf), free(dbf), free(dcf), free(dcd);
    pair_free_(&x), pair_free_(&g), pair_free_(&w), pair_free_(&b), pair_free_(&d0);
    pair_free_(&dw0), pair_free_(&db0), pair_free_(&dc0);
}

/* ---- input-gradient GEMMs with beta = 0 ---------------------------------------------------
 * mpt_matmul_backward_set / mpt_lmhead_backward_set overwrite dinp (here pre-filled with
 * garbage, NaN included: beta = 0 must not read it) and accumulate dw, dbias: equal to the
 * plain kernels run on a zeroed dinp and the same pre-filled dw, dbias. */
static void test_backward_set_(size_t N, int C, int OC) {
    snprintf(case_, sizeof case_, "matmul/lmhead backward_set N%zu C%d OC%d", N, C, OC);
    size_t nx = N * (size_t)C, ny = N * (size_t)OC, nw = (size_t)C * OC;
    pair_t x = pair_(nx, -1, 1), dy = pair_(ny, -1, 1), w = pair_(nw, -1, 1);
    pair_t dw0 = pair_(nw, -1, 1), db0 = pair_(OC, -1, 1);
    float *dxs = xcalloc_(nx, sizeof *dxs), *dxp = xcalloc_(nx, sizeof *dxp);
    float *dws = fcopy_(dw0.f, nw), *dwp = fcopy_(dw0.f, nw);
    float *dbs = fcopy_(db0.f, OC), *dbp = fcopy_(db0.f, OC);
    for (size_t i = 0; i < nx; i++) dxs[i] = i % 7 ? 1e30f : NAN;
    mpt_matmul_backward_set(dxs, dws, dbs, dy.f, x.f, w.f, N, C, OC);
    mpt_matmul_backward(dxp, dwp, dbp, dy.f, x.f, w.f, N, C, OC);
    vs_plain_("matmul dinp (overwritten) vs zeroed + plain", dxs, dxp, nx, FWD_TOL);
    if (OC > 0) { /* dw and dbias are empty when OC is 0 */
        vs_plain_("matmul dw (+=) vs plain", dws, dwp, nw, BWD_TOL);
        vs_plain_("matmul dbias (+=) vs plain", dbs, dbp, (size_t)OC, BWD_TOL);
    }
    /* the head: w is (V, C) = (OC, C), dout (N, ldo) with ldo = OC + 3 padded columns */
    int ldo = OC + 3;
    float *lo = xcalloc_(N * (size_t)ldo, sizeof *lo);
    for (size_t r = 0; r < N; r++) memcpy(lo + r * ldo, dy.f + r * OC, (size_t)OC * sizeof *lo);
    for (size_t i = 0; i < nx; i++) dxs[i] = i % 5 ? -1e30f : NAN;
    memset(dxp, 0, nx * sizeof *dxp);
    memcpy(dws, dw0.f, nw * sizeof *dws), memcpy(dwp, dw0.f, nw * sizeof *dwp);
    mpt_lmhead_backward_set(dxs, dws, lo, x.f, w.f, N, C, OC, ldo);
    mpt_lmhead_backward(dxp, dwp, lo, x.f, w.f, N, C, OC, ldo);
    vs_plain_("lmhead dinp (overwritten) vs zeroed + plain", dxs, dxp, nx, FWD_TOL);
    if (OC > 0) { /* dw and dbias are empty when OC is 0 */
        vs_plain_("lmhead dw (+=) vs plain", dws, dwp, nw, BWD_TOL);
    }
    free(dxs), free(dxp), free(dws), free(dwp), free(dbs), free(dbp), free(lo);
    pair_free_(&x), pair_free_(&dy), pair_free_(&w), pair_free_(&dw0), pair_free_(&db0);
}

/* ---- c_proj backward + GELU backward by row chunks ------------------------------------------
 * mpt_matmul_backward_gelu_set against the unfused pair (mpt_matmul_backward_set into a buffer,
 * then mpt_gelu_backward_bias from it), the double reference, and finite differences of the
 * double loss L(h) = sum dy . (gelu(h) w) in h (its gradient is dinp). Shapes with several row
 * chunks and a partial last one (chunks of ~12 MiB: 2048 rows at C 1536, 1024 at C 3072). */
static double gelu_row_loss_(const double *h, const double *w, const double *dy, int C, int OC,
                             double *tmp) {
    ref_gelu_forward(tmp, h, (size_t)C);
    double s = 0.0;
    for (int i = 0; i < C; i++)
        for (int j = 0; j < OC; j++) s += dy[j] * tmp[i] * w[(size_t)i * OC + j];
    return s;
}

static void test_matmul_gelu_(size_t N, int C, int OC) {
    snprintf(case_, sizeof case_, "matmul_backward_gelu_set N%zu C%d OC%d", N, C, OC);
    size_t nx = N * (size_t)C, ny = N * (size_t)OC, nw = (size_t)C * OC;
    pair_t x = pair_(nx, -1, 1), h = pair_(nx, -4, 4), dy = pair_(ny, -1, 1), w = pair_(nw, -1, 1);
    pair_t dw0 = pair_(nw, -1, 1), db0 = pair_(OC, -1, 1), dbi0 = pair_(C, -1, 1);
    /* unfused */
    float *dg = xcalloc_(nx, sizeof *dg), *dp = xcalloc_(nx, sizeof *dp);
    float *dwp = fcopy_(dw0.f, nw), *dbp = fcopy_(db0.f, OC), *dbip = fcopy_(dbi0.f, C);
    mpt_matmul_backward_set(dg, dwp, dbp, dy.f, x.f, w.f, N, C, OC);
    mpt_gelu_backward_bias(dp, dbip, h.f, dg, N, C);
    /* fused, into a buffer of garbage (overwritten) */
    float *df = xcalloc_(nx, sizeof *df);
    for (size_t i = 0; i < nx; i++) df[i] = i % 7 ? 1e30f : NAN;
    float *dwf = fcopy_(dw0.f, nw), *dbf = fcopy_(db0.f, OC), *dbif = fcopy_(dbi0.f, C);
    mpt_matmul_backward_gelu_set(df, dwf, dbf, dbif, h.f, dy.f, x.f, w.f, N, C, OC);
    vs_plain_("dinp vs unfused", df, dp, nx, BWD_TOL);
    vs_plain_("dw (+=) vs unfused", dwf, dwp, nw, BWD_TOL);
    vs_plain_("dbias (+=) vs unfused", dbf, dbp, (size_t)OC, BWD_TOL);
    vs_plain_("dbias_in (+=) vs unfused", dbif, dbip, (size_t)C, BWD_TOL);
    /* NULL dw, dbias, dbias_in: the same dinp */
    float *dn = xcalloc_(nx, sizeof *dn);
    mpt_matmul_backward_gelu_set(dn, NULL, NULL, NULL, h.f, dy.f, x.f, w.f, N, C, OC);
    vs_plain_("dinp with NULL gradients", dn, df, nx, 0.0);
    /* double reference */
    double *dgd = xcalloc_(nx, sizeof *dgd), *dd = xcalloc_(nx, sizeof *dd);
    ref_matmul_backward(dgd, dw0.d, db0.d, dy.d, x.d, w.d, N, C, OC);
    ref_gelu_backward(dd, h.d, dgd, nx);
    for (size_t r = 0; r < N; r++)
        for (int i = 0; i < C; i++) dbi0.d[i] += dd[r * C + i];
    vs_ref_("dinp vs ref", df, dd, nx, BWD_TOL);
    vs_ref_("dw vs ref", dwf, dw0.d, nw, BWD_TOL);
    vs_ref_("dbias vs ref", dbf, db0.d, (size_t)OC, BWD_TOL);
    vs_ref_("dbias_in vs ref", dbif, dbi0.d, (size_t)C, BWD_TOL);
    /* finite differences in h (one row's loss: h[r, i] reaches only row r) */
    double *tmp = xcalloc_(C, sizeof *tmp), an[32], fd[32];
    for (int k = 0; k < 32; k++) {
        size_t r = (size_t)uni_(0, (double)N), i = (size_t)uni_(0, (double)C);
        double *hr = h.d + r * (size_t)C, x0 = hr[i];
        hr[i] = x0 + FD_H;
        double lp = gelu_row_loss_(hr, w.d, dy.d + r * (size_t)OC, C, OC, tmp);
        hr[i] = x0 - FD_H;
        double lm = gelu_row_loss_(hr, w.d, dy.d + r * (size_t)OC, C, OC, tmp);
        hr[i] = x0;
        fd[k] = (lp - lm) / (2 * FD_H), an[k] = df[r * (size_t)C + i];
    }
    check_close_d(nm_("fd dinp"), an, fd, 32, BWD_TOL, floor_d_(fd, 32));
    free(dg), free(dp), free(dwp), free(dbp), free(dbip), free(df), free(dwf), free(dbf);
    free(dbif), free(dn), free(dgd), free(dd), free(tmp);
    pair_free_(&x), pair_free_(&h), pair_free_(&dy), pair_free_(&w), pair_free_(&dw0);
    pair_free_(&db0), pair_free_(&dbi0);
}

/* mpt_zero (kernels.h): every element zeroed, below and above its threading size, at lengths
 * that are not a multiple of a cache line, and nothing past n touched */
static void test_zero_(size_t n) {
    snprintf(case_, sizeof case_, "zero n%zu", n);
    float *x = xcalloc_(n + 1, sizeof *x), *z = xcalloc_(n + 1, sizeof *z);
    for (size_t i = 0; i < n; i++) x[i] = i % 3 ? 1.5f : NAN;
    x[n] = z[n] = 7.0f; /* the element past the end stays */
    mpt_zero(x, n);
    check_close(nm_("zeroed, past n kept"), x, z, n + 1, 0.0, 1e-30);
    free(x), free(z);
}

/* ---- GEMM threading ------------------------------------------------------------------------
 * The linear layers' GEMMs at the model's shapes under both threadings of kernels.h
 * (MPT_GEMM_SPLIT: one block per thread; MPT_GEMM_TEAM: the library threads the call, with
 * the backward's two GEMMs side by side on a team of 2 threads, and without) against the
 * double reference, and each against the split path; with 2 threads the split path runs
 * (these shapes are above its size floor). Tolerance GEMM_TOL for all three: with K 384-1536
 * fp32 products summed, the library's own (team) path already sits at 1.3-1.6e-5 of the
 * double reference here, above FWD_TOL, which the small shapes of test_kernels.c meet. */
#define GEMM_TOL 5e-5
/* The head's backward with its two GEMMs side by side (2 threads, kernels.h's backward pair)
 * and one after the other, each against the double reference, at the bench model's shape. */
static void test_lmhead_pair_(size_t N, int C, int V) {
    int ldo = V + 3;
    size_t nx = N * (size_t)C, nl = N * (size_t)ldo, nw = (size_t)V * C;
    pair_t x = pair_(nx, -1, 1), lo = pair_(nl, -1, 1), w = pair_(nw, -1, 1);
    double *dxd = xcalloc_(nx, sizeof *dxd), *dwd = xcalloc_(nw, sizeof *dwd);
    ref_lmhead_backward(dxd, dwd, lo.d, x.d, w.d, N, C, V, ldo);
    for (int t = 0; t < 2; t++) {
        snprintf(case_, sizeof case_, "lmhead backward %s N%zu C%d V%d",
                 t ? "no pairs" : "pairs", N, C, V);
        float *dx = xcalloc_(nx, sizeof *dx), *dw = xcalloc_(nw, sizeof *dw);
        mpt_kernels_set_backward_pair(t == 0);
        mpt_lmhead_backward_set(dx, dw, lo.f, x.f, w.f, N, C, V, ldo);
        vs_ref_("dinp vs ref", dx, dxd, nx, GEMM_TOL);
        vs_ref_("dw vs ref", dw, dwd, nw, GEMM_TOL);
        free(dx), free(dw);
    }
    mpt_kernels_set_backward_pair(0); /* the default again */
    free(dxd), free(dwd);
    pair_free_(&x), pair_free_(&lo), pair_free_(&w);
}

static void test_gemm_threading_(size_t N, int C, int OC) {
    size_t nx = N * (size_t)C, ny = N * (size_t)OC, nw = (size_t)C * OC;
    pair_t x = pair_(nx, -1, 1), dy = pair_(ny, -1, 1), w = pair_(nw, -1, 1), b = pair_(OC, -1, 1);
    float *y[3], *dx[3], *dw[3], *db[3];
    for (int t = 0; t < 3; t++) { /* split, team with backward pairs, team without */
        mpt_kernels_set_gemm_threading(t == 0 ? MPT_GEMM_SPLIT : MPT_GEMM_TEAM);
        mpt_kernels_set_backward_pair(t != 2);
        y[t] = xcalloc_(ny, sizeof(float)), dx[t] = xcalloc_(nx, sizeof(float));
        dw[t] = xcalloc_(nw, sizeof(float)), db[t] = xcalloc_(OC, sizeof(float));
        mpt_matmul_forward(y[t], x.f, w.f, b.f, N, C, OC);
        mpt_matmul_backward_set(dx[t], dw[t], db[t], dy.f, x.f, w.f, N, C, OC);
    }
    double *yd = xcalloc_(ny, sizeof *yd), *dxd = xcalloc_(nx, sizeof *dxd);
    double *dwd = xcalloc_(nw, sizeof *dwd), *dbd = xcalloc_(OC, sizeof *dbd);
    ref_matmul_forward(yd, x.d, w.d, b.d, N, C, OC);
    ref_matmul_backward(dxd, dwd, dbd, dy.d, x.d, w.d, N, C, OC);
    mpt_kernels_set_backward_pair(0); /* the default again */
    for (int t = 0; t < 3; t++) {
        snprintf(case_, sizeof case_, "gemm %s N%zu C%d OC%d",
                 t == 0 ? "split" : t == 1 ? "team" : "team, no pairs", N, C, OC);
        vs_ref_("fwd vs ref", y[t], yd, ny, GEMM_TOL);
        vs_ref_("dinp vs ref", dx[t], dxd, nx, GEMM_TOL);
        vs_ref_("dw vs ref", dw[t], dwd, nw, GEMM_TOL);
        vs_ref_("dbias vs ref", db[t], dbd, (size_t)OC, GEMM_TOL);
    }
    /* c_fc + bias + GELU in one region (split) = the GEMM then mpt_bias_gelu_forward, exactly */
    mpt_kernels_set_gemm_threading(MPT_GEMM_SPLIT);
    snprintf(case_, sizeof case_, "matmul_bias_gelu N%zu C%d F%d", N, C, OC);
    float *h1 = xcalloc_(ny, sizeof *h1), *o1 = xcalloc_(ny, sizeof *o1);
    float *h2 = xcalloc_(ny, sizeof *h2), *o2 = xcalloc_(ny, sizeof *o2);
    mpt_matmul_bias_gelu_forward(o1, h1, x.f, w.f, b.f, N, C, OC);
    mpt_matmul_forward(h2, x.f, w.f, NULL, N, C, OC);
    mpt_bias_gelu_forward(o2, h2, b.f, N, OC);
    CHECK(memcmp(h1, h2, ny * sizeof *h1) == 0 && memcmp(o1, o2, ny * sizeof *o1) == 0,
          "%s: fused c_fc + GELU differs from the two calls", case_);
    free(h1), free(o1), free(h2), free(o2);
    mpt_kernels_set_gemm_threading(MPT_GEMM_TEAM); /* the default again */
    for (int t = 1; t < 3; t++) {
        snprintf(case_, sizeof case_, "gemm split vs team%s N%zu C%d OC%d",
                 t == 2 ? " (no pairs)" : "", N, C, OC);
        vs_plain_("fwd", y[0], y[t], ny, GEMM_TOL);
        vs_plain_("dinp", dx[0], dx[t], nx, GEMM_TOL);
        vs_plain_("dw", dw[0], dw[t], nw, GEMM_TOL);
    }
    for (int t = 0; t < 3; t++) free(y[t]), free(dx[t]), free(dw[t]), free(db[t]);
    free(yd), free(dxd), free(dwd), free(dbd);
    pair_free_(&x), pair_free_(&dy), pair_free_(&w), pair_free_(&b);
}

int main(void) {
    test_bias_gelu_(7, 13);
    test_bias_gelu_(64, 1536);
    test_bias_gelu_(33, 47);
    test_bias_backward_(5, 3);
    test_bias_backward_(130, 1157);
    test_residual_ln_(10, 12);
    test_residual_ln_(7, 13);
    test_residual_ln_(128, 384);
    test_residual_ln_(16, 768);
    test_ln_colsum_(7, 13);
    test_ln_colsum_(2048, 384); /* ln_2 of the bench model's step */
    test_ln_colsum_(33, 768);
    test_backward_set_(7, 13, 5);
    test_backward_set_(256, 384, 1152);
    test_backward_set_(33, 96, 256);
    test_backward_set_(9, 12, 0); /* K = 0 (a tp rank's all-padding vocabulary): dinp = 0 */
    test_zero_(1000);
    test_zero_(262144 * 3 + 5); /* threaded */
    test_matmul_gelu_(7, 13, 5);
    test_matmul_gelu_(2100, 1536, 16); /* chunks of 2048 and 52 rows */
    test_matmul_gelu_(2100, 3072, 8);  /* chunks of 1024, 1024 and 52 rows */
    test_gemm_threading_(512, 384, 1152); /* qkv at 2 sequences of T 256 */
    test_gemm_threading_(256, 1536, 384); /* c_proj of the MLP: C taller than OC */
    test_gemm_threading_(300, 384, 770);  /* blocks not multiples of 8 rows or 16 columns */
    test_gemm_threading_(2048, 64, 1536); /* rows split: the c_fc GELU runs in the region */
    test_lmhead_pair_(1024, 384, 256);    /* the byte head, half the bench model's rows */
    return check_finish();
}
