/* kernels_fused.c — the fused memory-bound operators of kernels_fused.h: bias + GELU,
 * GELU backward + bias gradient, bias + residual, residual + LayerNorm, bias gradient.
 *
 * Compiled with -ffast-math (CMakeLists.txt), like kernels_vecmath.c, so that expf inside
 * `omp simd` loops uses glibc's vector math (libmvec); nothing here relies on infinities or
 * NaN. Row-wise kernels split rows over threads; the column-sum kernels split columns, so each
 * column is summed in row order whatever the thread count. */
#include "core/kernels_fused.h"

#include <math.h>
#include <omp.h>

#include "core/kernels_internal.h"

/* columns [c0, c1) of thread id of nth over C columns, in multiples of 16 floats (one cache
 * line) so that threads never share a line of the gradient */
static void col_slice_(int C, int id, int nth, int *c0, int *c1) {
    int lines = (C + 15) / 16;
    *c0 = (int)((long)lines * id / nth) * 16;
    *c1 = (int)((long)lines * (id + 1) / nth) * 16;
    if (*c0 > C) *c0 = C;
    if (*c1 > C) *c1 = C;
}

void mpt_bias_backward(float *dbias, const float *dout, size_t N, int C) {
#pragma omp parallel
    {
        int c0, c1;
        col_slice_(C, omp_get_thread_num(), omp_get_num_threads(), &c0, &c1);
        for (size_t r = 0; r < N; r++) {
            const float *g = dout + r * (size_t)C;
#pragma omp simd
            for (int i = c0; i < c1; i++) dbias[i] += g[i];
        }
    }
}

void mpt_bias_gelu_forward(float *out, float *h, const float *bias, size_t N, int C) {
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < N; r++) {
        float *x = h + r * (size_t)C, *o = out + r * (size_t)C;
        if (bias) {
#pragma omp simd
            for (int i = 0; i < C; i++) x[i] += bias[i];
        }
#pragma omp simd
        for (int i = 0; i < C; i++) {
            float v = x[i];
            o[i] = v / (1.0f + mpt_gelu_exp_m2u_(v));
        }
    }
}

void mpt_gelu_backward_bias(float *dinp, float *dbias, const float *h, const float *dout,
                            size_t N, int C) {
#pragma omp parallel
    {
        int c0, c1;
        col_slice_(C, omp_get_thread_num(), omp_get_num_threads(), &c0, &c1);
        for (size_t r = 0; r < N; r++) {
            const float *x = h + r * (size_t)C, *g = dout + r * (size_t)C;
            float *d = dinp + r * (size_t)C;
#pragma omp simd
            for (int i = c0; i < c1; i++) {
                /* d/dx [x sg] = sg + x sg (1 - sg) 2 du/dx, sg = sigmoid(2u) = 1/(1+e),
                 * e = exp(-2u); 1 - sg = e sg exactly (no cancellation as sg -> 1, where the
                 * x^3 factor would magnify the rounding of 1 - sg) */
                float v = x[i], e = mpt_gelu_exp_m2u_(v), sg = 1.0f / (1.0f + e);
                float dg = sg + v * sg * (e * sg) * 2.0f * GELU_S *
                                    (1.0f + 3.0f * GELU_C * v * v);
                d[i] = dg * g[i];
            }
            if (dbias) {
#pragma omp simd
                for (int i = c0; i < c1; i++) dbias[i] += d[i];
            }
        }
    }
}

void mpt_bias_residual_forward(float *res, const float *a, const float *y, const float *bias,
                               size_t N, int C) {
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < N; r++) {
        const float *pa = a + r * (size_t)C, *py = y + r * (size_t)C;
        float *o = res + r * (size_t)C;
        if (bias) {
#pragma omp simd
            for (int i = 0; i < C; i++) o[i] = pa[i] + (py[i] + bias[i]);
        } else {
#pragma omp simd
            for (int i = 0; i < C; i++) o[i] = pa[i] + py[i];
        }
    }
}

void mpt_residual_layernorm_forward(float *res, float *out, float *mean, float *rstd,
                                    const float *a, const float *y, const float *bias,
                                    const float *w, const float *b, size_t N, int C) {
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < N; r++) {
        const float *pa = a + r * (size_t)C, *py = y + r * (size_t)C;
        float *x = res + r * (size_t)C, *o = out + r * (size_t)C;
        double s = 0.0, v = 0.0; /* double, as mpt_layernorm_forward */
        if (bias) {
#pragma omp simd reduction(+ : s)
            for (int i = 0; i < C; i++) {
                x[i] = pa[i] + (py[i] + bias[i]);
                s += x[i];
            }
        } else {
#pragma omp simd reduction(+ : s)
            for (int i = 0; i < C; i++) {
                x[i] = pa[i] + py[i];
                s += x[i];
            }
        }
        float m = (float)(s / C);
        /* the row is in L1 now: the second pass costs no memory traffic */
#pragma omp simd reduction(+ : v)
        for (int i = 0; i < C; i++) v += (double)((x[i] - m) * (x[i] - m));
        float rs = (float)(1.0 / sqrt(v / C + 1e-5));
#pragma omp simd
        for (int i = 0; i < C; i++) o[i] = (x[i] - m) * rs * w[i] + b[i];
        mean[r] = m;
        rstd[r] = rs;
    }
}
