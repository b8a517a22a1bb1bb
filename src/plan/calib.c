/* calib.c — the kernel microbenchmarks of cpu-here (see cluster.h): the runtime's own fused
 * attention, LayerNorm, GELU, residual and cross-entropy kernels timed on one core, on tensors
 * of activation size (megabytes: out of L2, in or near L3, as a small model's activations are).
 * Each figure is the median of a few runs (the sustained rate: neither a first run's warm-up
 * nor a lucky quiet moment on a shared machine); about 0.3 s in all. */
#include "plan/cluster.h"

#include <omp.h>
#include <stdint.h>
#include <stdlib.h>

#include "core/attention.h"
#include "core/kernels.h"

/* One kernel call of each kind (a switch over the kernels: no closures in C). */
enum { K_LN_F_, K_LN_B_, K_GELU_F_, K_GELU_B_, K_ADD_, K_XENT_, K_ATT_F_, K_ATT_B_ };

typedef struct bufs_ {
    float *x, *y, *dy, *w, *b, *dw, *db, *mean, *rstd, *work;
    int32_t *tgt;
} bufs_;

/* Shapes: LayerNorm and residual N x C; GELU N x 4C; cross-entropy N x V; attention B, T, D, H. */
enum { N_ = 2048, C_ = 384, V_ = 512, AB_ = 2, AT_ = 256, AD_ = 256, AH_ = 4 };

static void run_(int k, bufs_ *u) {
    switch (k) {
    case K_LN_F_: mpt_layernorm_forward(u->y, u->mean, u->rstd, u->x, u->w, u->b, N_, C_); break;
    case K_LN_B_:
        mpt_layernorm_backward(u->y, u->dw, u->db, u->dy, u->x, u->w, u->mean, u->rstd, N_, C_);
        break;
    case K_GELU_F_: mpt_gelu_forward(u->y, u->x, (size_t)N_ * 4 * C_); break;
    case K_GELU_B_: mpt_gelu_backward(u->y, u->x, u->dy, (size_t)N_ * 4 * C_); break;
    case K_ADD_: mpt_residual_forward(u->y, u->x, u->dy, (size_t)N_ * C_); break;
    case K_XENT_: mpt_crossentropy_fused(u->y, u->mean, u->tgt, N_, V_, V_, 1.0f / N_); break;
    case K_ATT_F_: mpt_flash_forward(u->y, u->mean, u->x, AB_, AT_, AD_, AH_); break;
    case K_ATT_B_:
        mpt_flash_backward(u->dy, u->b, u->y, u->mean, u->x, AB_, AT_, AD_, AH_, u->work, 1);
        break;
    default: break;
    }
}

/* The median time of `reps` (<= 9) runs. */
static double best_(int k, bufs_ *u, int reps) {
    double t[9];
    if (reps > 9) reps = 9;
    for (int r = 0; r < reps; r++) {
        double t0 = mpt_cluster_cpu_seconds();
        run_(k, u);
        t[r] = mpt_cluster_cpu_seconds() - t0;
    }
    return mpt_cluster_median_(t, reps);
}

void mpt_cluster_measure_kernels(mpt_cluster *c) {
    size_t big = (size_t)N_ * 4 * C_; /* the largest tensor: GELU's N x 4C */
    size_t wsz = mpt_flash_workspace(AB_, AT_, AD_, AH_, 1);
    bufs_ u = {0};
    u.x = malloc(big * 4);
    u.y = malloc(big * 4);
    u.dy = malloc(big * 4);
    u.b = malloc(big * 4);
    u.w = malloc((size_t)C_ * 4);
    u.dw = calloc((size_t)C_, 4);
    u.db = calloc((size_t)C_, 4);
    u.mean = malloc((size_t)N_ * 4 * 4);
    u.rstd = malloc((size_t)N_ * 4);
    u.work = wsz != SIZE_MAX ? malloc(wsz * 4) : NULL;
    u.tgt = malloc((size_t)N_ * 4);
    if (u.x && u.y && u.dy && u.b && u.w && u.dw && u.db && u.mean && u.rstd && u.work && u.tgt) {
        for (size_t i = 0; i < big; i++) {
            u.x[i] = 1e-3f * (float)(i % 211) - 0.1f;
            u.dy[i] = 1e-3f * (float)(i % 97) - 0.05f;
            u.b[i] = u.dy[i];
            u.y[i] = 0;
        }
        for (int i = 0; i < C_; i++) u.w[i] = 1.0f;
        for (int i = 0; i < N_; i++) u.tgt[i] = (i * 7) % V_;
        int saved = omp_get_max_threads();
        omp_set_num_threads(1);
        double ln = (double)N_ * C_, ge = (double)big;
        c->ew_ln_f = best_(K_LN_F_, &u, 5) / ln;
        c->ew_ln_b = best_(K_LN_B_, &u, 5) / ln;
        c->ew_gelu_f = best_(K_GELU_F_, &u, 5) / ge;
        c->ew_gelu_b = best_(K_GELU_B_, &u, 5) / ge;
        c->ew_add = best_(K_ADD_, &u, 5) / ln;
        for (size_t i = 0; i < (size_t)N_ * V_; i++) u.y[i] = u.x[i];
        c->ew_xent = best_(K_XENT_, &u, 1) / ((double)N_ * V_); /* overwrites its input */
        /* attention: the whole T x T products counted (cost.h), 4 B H T^2 hs forward and
         * 8 B H T^2 hs backward */
        double hs = (double)AD_ / AH_, tt = (double)AB_ * AH_ * AT_ * AT_ * hs;
        double tf = best_(K_ATT_F_, &u, 5), tb = best_(K_ATT_B_, &u, 5);
        c->attn_f = tf > 0 ? 4 * tt / tf : 0;
        c->attn_b = tb > 0 ? 8 * tt / tb : 0;
        omp_set_num_threads(saved);
    }
    free(u.x);
    free(u.y);
    free(u.dy);
    free(u.b);
    free(u.w);
    free(u.dw);
    free(u.db);
    free(u.mean);
    free(u.rstd);
    free(u.work);
    free(u.tgt);
}
