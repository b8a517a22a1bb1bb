/* test_moe.c — the Mixture-of-Experts MLP (model/moe.h) on one rank:
 *   1. finite differences of the whole block (input, router and every expert tensor), with the
 *      aux and z-losses in the objective, dropless and at capacity 1 (every element; ~24 per
 *      tensor in the ASan and valgrind builds, MPT_TEST_SMALL);
 *   2. uniform routing (a zero router): the aux loss equals its coefficient;
 *   3. a crafted router at capacity factor 1: exactly the expected assignments are dropped,
 *      and the outputs are the kept gates times a plain double-precision expert MLP. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/rng.h"
#include "model/moe.h"

typedef struct fix_ {
    mpt_config cfg;
    int D, F, E, K;
    size_t N;
    float *w[1 + 4 * 8], *g[1 + 4 * 8]; /* router, then per expert W1, b1, W2, b2 */
    size_t n[1 + 4 * 8];
    float *act, *work;
} fix_;

static void fix_init_(fix_ *f, int D, int F, int E, int K, size_t N, float cap, float aux,
                      float z, uint64_t seed) {
    memset(f, 0, sizeof *f);
    f->cfg.d_model = D, f->cfg.ffn = F, f->cfg.experts = E, f->cfg.top_k = K;
    f->cfg.moe_every = 1, f->cfg.capacity_factor = cap, f->cfg.aux_loss_coef = aux;
    f->cfg.z_loss_coef = z;
    f->D = D, f->F = F, f->E = E, f->K = K, f->N = N;
    f->n[0] = (size_t)D * E;
    for (int e = 0; e < E; e++) {
        f->n[1 + 4 * e] = (size_t)D * F;
        f->n[2 + 4 * e] = (size_t)F;
        f->n[3 + 4 * e] = (size_t)F * D;
        f->n[4 + 4 * e] = (size_t)D;
    }
    for (int i = 0; i < 1 + 4 * E; i++) {
        f->w[i] = malloc(f->n[i] * sizeof(float));
        f->g[i] = calloc(f->n[i], sizeof(float));
        mpt_rng_fill_normal(f->w[i], f->n[i], seed + (uint64_t)i, 0, i == 0 ? 1.0f : 0.5f);
    }
    f->act = calloc(mpt_moe_act_elems(&f->cfg, N, 1) + mpt_moe_split_elems(&f->cfg, N, 1),
                    sizeof(float)); /* room for the split backward's kept gradients */
    f->work = calloc(mpt_moe_work_elems(&f->cfg, N, 1, 1), sizeof(float));
}

static void fix_free_(fix_ *f) {
    for (int i = 0; i < 1 + 4 * f->E; i++) {
        free(f->w[i]);
        free(f->g[i]);
    }
    free(f->act);
    free(f->work);
}

static mpt_moe_block block_(fix_ *f) {
    mpt_moe_block b = {.cfg = &f->cfg, .ep = 1, .w = f->w, .g = f->g};
    return b;
}

/* sum(out * r) + the weighted aux and z-losses, in double. */
static double objective_(fix_ *f, const float *x, const float *r, float weight, float *out,
                         mpt_moe_stats *st) {
    mpt_moe_block b = block_(f);
    mpt_error err = {0};
    memset(st, 0, sizeof *st);
    mpt_status s = mpt_moe_forward(&b, out, x, f->N, f->act, f->work, weight, st, &err);
    if (s) fprintf(stderr, "forward: %s\n", err.msg);
    double L = st->aux_loss + st->z_loss;
    for (size_t i = 0; i < f->N * (size_t)f->D; i++) L += (double)out[i] * r[i];
    return L;
}

/* Central differences of every element of p (n) against the analytic gradient an (n). An
 * element whose step changes the routing (the two step sizes disagree) is skipped and
 * counted. Returns the largest |fd - an| / max|an|. */
static double fd_tensor_(fix_ *f, float *p, const float *an, size_t n, const float *x,
                         const float *r, float weight, float *out, int *skipped, int *tried) {
    mpt_moe_stats st;
    double scale = 0.0, worst = 0.0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(an[i]));
    if (scale == 0.0) scale = 1.0;
    /* every element; in a checking build (check_small) about 24 per tensor, an odd stride
     * apart, under the same tolerance */
    size_t step = check_small() && n > 24 ? (n / 24) | 1 : 1;
    for (size_t i = 0; i < n; i += step) {
        float old = p[i];
        double fd[2];
        for (int k = 0; k < 2; k++) {
            float h = k == 0 ? 4e-3f : 2e-3f;
            p[i] = old + h;
            double lp = objective_(f, x, r, weight, out, &st);
            p[i] = old - h;
            double lm = objective_(f, x, r, weight, out, &st);
            p[i] = old;
            fd[k] = (lp - lm) / (2.0 * ((double)(old + h) - (double)old));
        }
        (*tried)++;
        if (fabs(fd[0] - fd[1]) > 0.05 * scale) {
            (*skipped)++;
            continue;
        }
        worst = fmax(worst, fabs(fd[1] - an[i]) / scale);
    }
    return worst;
}

static void test_fd_(float cap) {
    fix_ f;
    size_t N = 12;
    fix_init_(&f, 8, 12, 4, 2, N, cap, 0.3f, 0.05f, cap > 0 ? 77 : 11);
    size_t ND = N * (size_t)f.D;
    float *x = malloc(ND * sizeof *x), *r = malloc(ND * sizeof *r), *out = malloc(ND * 4);
    float *dx = calloc(ND, sizeof *dx);
    mpt_rng_fill_normal(x, ND, 5, 0, 1.0f);
    mpt_rng_fill_normal(r, ND, 6, 0, 1.0f);
    float weight = 0.7f;
    mpt_moe_stats st;
    objective_(&f, x, r, weight, out, &st);
    mpt_moe_block b = block_(&f);
    mpt_error err = {0};
    CHECK(mpt_moe_backward(&b, dx, r, x, N, f.act, f.work, weight, 0, &err) == MPT_OK,
          "backward: %s", err.msg);
    { /* the split backward (B, then W) gives the unsplit input and weight gradients */
        float *keep[1 + 4 * 8], *dx2 = calloc(ND, sizeof *dx2);
        double wx = 0.0, ww = 0.0, sx = 0.0, sw = 0.0;
        for (int i = 0; i < 1 + 4 * f.E; i++) {
            keep[i] = malloc(f.n[i] * sizeof(float));
            memcpy(keep[i], f.g[i], f.n[i] * sizeof(float));
            memset(f.g[i], 0, f.n[i] * sizeof(float));
        }
        objective_(&f, x, r, weight, out, &st);
        CHECK(mpt_moe_backward(&b, dx2, r, x, N, f.act, f.work, weight, 1, &err) == MPT_OK,
              "split B: %s", err.msg);
        for (int i = 0; i < 1 + 4 * f.E; i++)
            for (size_t k = 0; k < f.n[i]; k++) CHECK(f.g[i][k] == 0.0f, "B wrote a weight gradient");
        memset(f.work, 0xff, mpt_moe_work_elems(&f.cfg, N, 1, 1) * sizeof(float)); /* W needs none */
        CHECK(mpt_moe_backward_weights(&b, x, N, f.act, &err) == MPT_OK, "split W: %s", err.msg);
        for (size_t k = 0; k < ND; k++) wx = fmax(wx, fabs(dx2[k] - dx[k])), sx = fmax(sx, fabs(dx[k]));
        for (int i = 0; i < 1 + 4 * f.E; i++) {
            for (size_t k = 0; k < f.n[i]; k++)
                ww = fmax(ww, fabs(f.g[i][k] - keep[i][k])), sw = fmax(sw, fabs(keep[i][k]));
            memcpy(f.g[i], keep[i], f.n[i] * sizeof(float));
            free(keep[i]);
        }
        printf("moe split B+W (capacity %g): input max |diff| %.2e (max %.2e), weights %.2e "
               "(max %.2e)\n", cap, wx, sx, ww, sw);
        CHECK(wx <= 1e-6 * sx && ww <= 1e-6 * sw, "split backward differs from the unsplit one");
        free(dx2);
    }
    CHECK(cap == 0 || st.dropped > 0, "capacity %g drops assignments (%g)", cap, st.dropped);
    int skipped = 0, tried = 0;
    double worst = fd_tensor_(&f, x, dx, ND, x, r, weight, out, &skipped, &tried);
    printf("moe fd (capacity %g): input worst %.2e\n", cap, worst);
    CHECK(worst < 2e-3, "input gradient vs finite differences: %.3e", worst);
    const char *names[] = {"c_fc.weight", "c_fc.bias", "c_proj.weight", "c_proj.bias"};
    for (int i = 0; i < 1 + 4 * f.E; i++) {
        float *an = malloc(f.n[i] * sizeof *an);
        memcpy(an, f.g[i], f.n[i] * sizeof *an);
        double w = fd_tensor_(&f, f.w[i], an, f.n[i], x, r, weight, out, &skipped, &tried);
        if (i == 0) printf("moe fd (capacity %g): router worst %.2e\n", cap, w);
        else printf("moe fd (capacity %g): expert %d %s worst %.2e\n", cap, (i - 1) / 4,
                    names[(i - 1) % 4], w);
        CHECK(w < 2e-3, "tensor %d gradient vs finite differences: %.3e", i, w);
        free(an);
    }
    printf("moe fd (capacity %g): %d of %d elements skipped (routing changed)\n", cap, skipped,
           tried);
    CHECK(skipped * 20 < tried, "too many elements change the routing: %d of %d", skipped, tried);
    free(x), free(r), free(out), free(dx);
    fix_free_(&f);
}

static void test_uniform_(void) {
    fix_ f;
    size_t N = 10;
    fix_init_(&f, 8, 12, 4, 2, N, 0.0f, 0.01f, 0.0f, 3);
    memset(f.w[0], 0, f.n[0] * sizeof(float)); /* zero router: every probability 1/E */
    float *x = malloc(N * 8 * sizeof *x), *out = malloc(N * 8 * sizeof *out);
    mpt_rng_fill_normal(x, N * 8, 9, 0, 1.0f);
    mpt_moe_block b = block_(&f);
    mpt_moe_stats st = {0};
    mpt_error err = {0};
    CHECK(mpt_moe_forward(&b, out, x, N, f.act, f.work, 1.0f, &st, &err) == MPT_OK, "%s",
          err.msg);
    printf("moe uniform routing: aux %.9f (coef 0.01)\n", st.aux_loss);
    CHECK(fabs(st.aux_loss - 0.01) < 1e-8, "uniform routing: aux %.9g != coef 0.01", st.aux_loss);
    free(x), free(out);
    fix_free_(&f);
}

static double gelu_(double v) {
    return 0.5 * v * (1.0 + tanh(sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v)));
}

/* y (D) = expert e of fixture f on x (D), in double. */
static void expert_(const fix_ *f, int e, const float *x, double *y) {
    int D = f->D, F = f->F;
    const float *W1 = f->w[1 + 4 * e], *b1 = f->w[2 + 4 * e], *W2 = f->w[3 + 4 * e];
    const float *b2 = f->w[4 + 4 * e];
    double h[64];
    for (int j = 0; j < F; j++) {
        double s = b1[j];
        for (int i = 0; i < D; i++) s += (double)x[i] * W1[i * F + j];
        h[j] = gelu_(s);
    }
    for (int i = 0; i < D; i++) {
        double s = b2[i];
        for (int j = 0; j < F; j++) s += h[j] * W2[j * D + i];
        y[i] = s;
    }
}

/* E 4, K 2, 4 tokens: cap = ceil(1 * 4*2 / 4) = 2. Router = identity, so x is the logits.
 * Expert 0 is chosen by all four tokens with gates 0.731 (t0), 0.622 (t1), 0.525 (t2),
 * 0.982 (t3): t3 and t0 keep it, (t1, 0) and (t2, 0) are dropped; experts 1 and 2 get two
 * assignments each and drop none. */
static void test_capacity_(void) {
    fix_ f;
    fix_init_(&f, 4, 6, 4, 2, 4, 1.0f, 0.01f, 0.0f, 21);
    memset(f.w[0], 0, 16 * sizeof(float));
    for (int i = 0; i < 4; i++) f.w[0][i * 4 + i] = 1.0f;
    float x[16] = {3, 2, 0, -1,  2.5f, 0, 2, -1,  4, 3.9f, 0, -1,  5, 0, 1, 0};
    int keep_e[4][2] = {{0, 1}, {2, -1}, {1, -1}, {0, 2}}; /* kept experts of each token */
    float out[16];
    mpt_moe_block b = block_(&f);
    mpt_moe_stats st = {0};
    mpt_error err = {0};
    CHECK(mpt_moe_forward(&b, out, x, 4, f.act, f.work, 1.0f, &st, &err) == MPT_OK, "%s",
          err.msg);
    CHECK(st.dropped == 2, "capacity 1: %g assignments dropped, expected 2", st.dropped);
    CHECK(st.tokens[0] == 4 && st.tokens[1] == 2 && st.tokens[2] == 2 && st.tokens[3] == 0,
          "routing before capacity: %g %g %g %g", st.tokens[0], st.tokens[1], st.tokens[2],
          st.tokens[3]);
    double want[16] = {0}, worst = 0.0, scale = 0.0;
    for (int t = 0; t < 4; t++) {
        const float *z = x + 4 * t;
        /* the top-2 logits' softmax; the kept ones are in keep_e */
        int a = 0, c = -1;
        for (int e = 1; e < 4; e++) a = z[e] > z[a] ? e : a;
        for (int e = 0; e < 4; e++) if (e != a && (c < 0 || z[e] > z[c])) c = e;
        double ga = 1.0 / (1.0 + exp((double)z[c] - z[a])), gc = 1.0 - ga;
        for (int k = 0; k < 2; k++) {
            int e = keep_e[t][k];
            if (e < 0) continue;
            double y[4];
            expert_(&f, e, z, y);
            for (int i = 0; i < 4; i++) want[t * 4 + i] += (e == a ? ga : gc) * y[i];
        }
    }
    for (int i = 0; i < 16; i++) {
        worst = fmax(worst, fabs(out[i] - want[i]));
        scale = fmax(scale, fabs(want[i]));
    }
    printf("moe capacity 1: outputs vs kept-gate reference max |diff| %.2e (max %.2e)\n", worst,
           scale);
    CHECK(worst <= 1e-5 * scale, "capacity 1 outputs differ from the reference: %.3e", worst);
    fix_free_(&f);
}

int main(void) {
    test_fd_(0.0f);
    test_fd_(1.0f);
    test_uniform_();
    test_capacity_();
    return check_finish();
}
