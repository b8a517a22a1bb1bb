/* kernels_vecmath.c — the operators that need exp and tanh: GELU, softmax and the fused
 * softmax cross-entropy (see kernels.h).
 *
 * This file alone is compiled with -ffast-math so that glibc's vector math (libmvec) serves
 * expf/tanhf inside `omp simd` loops; its accuracy (a few ulp) is far inside the 1e-4 budget
 * against PyTorch. Nothing here relies on infinities or NaN: every softmax subtracts the row
 * maximum first. */
#include <math.h>
#include <stddef.h>

#include "core/kernels.h"
#include "core/kernels_internal.h"

void mpt_gelu_forward(float *out, const float *inp, size_t N) {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < N; i++) {
        float x = inp[i]; /* 0.5 x (1 + tanh u) = x sigmoid(2u) (kernels_internal.h) */
        out[i] = x / (1.0f + mpt_gelu_exp_m2u_(x));
    }
}

void mpt_gelu_backward(float *dinp, const float *inp, const float *dout, size_t N) {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < N; i++) {
        float x = inp[i], e = mpt_gelu_exp_m2u_(x), sg = 1.0f / (1.0f + e);
        float d = sg + x * sg * (e * sg) * 2.0f * GELU_S * (1.0f + 3.0f * GELU_C * x * x);
        dinp[i] += d * dout[i];
    }
}

/* Row sums accumulate in double: accurate whether or not the compiler vectorises them. */
void mpt_softmax_inplace_(float *row, int n) {
    float mx = row[0];
    double sum = 0.0;
    for (int j = 1; j < n; j++) mx = row[j] > mx ? row[j] : mx;
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j < n; j++) {
        row[j] = expf(row[j] - mx);
        sum += row[j];
    }
    float inv = (float)(1.0 / sum);
#pragma omp simd
    for (int j = 0; j < n; j++) row[j] *= inv;
}

void mpt_crossentropy_fused(float *logits, float *losses, const int32_t *targets, size_t N,
                            int V, int Vp, float dloss) {
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < N; r++) {
        float *row = logits + r * (size_t)Vp;
        int t = targets[r];
        float mx = row[0];
        double sum = 0.0;
        for (int j = 1; j < V; j++) mx = row[j] > mx ? row[j] : mx;
        float lt = row[t] - mx;
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j < V; j++) {
            row[j] = expf(row[j] - mx);
            sum += row[j];
        }
        losses[r] = (float)log(sum) - lt;
        float s = (float)(dloss / sum);
#pragma omp simd
        for (int j = 0; j < V; j++) row[j] *= s;
        row[t] -= dloss;
        for (int j = V; j < Vp; j++) row[j] = 0.0f;
    }
}

void mpt_vocab_rowmax(float *mx, const float *logits, size_t N, int Vr, int ld) {
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < N; r++) {
        const float *row = logits + r * (size_t)ld;
        float m = -3.402823466e38f;
        for (int j = 0; j < Vr; j++) m = row[j] > m ? row[j] : m;
        mx[r] = m;
    }
}

void mpt_vocab_sumexp(float *se, float *tl, const float *logits, const float *mx,
                      const int32_t *targets, size_t N, int Vr, int ld, int v0) {
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < N; r++) {
        const float *row = logits + r * (size_t)ld;
        float m = mx[r];
        double sum = 0.0;
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j < Vr; j++) sum += expf(row[j] - m);
        se[r] = (float)sum;
        int t = targets[r] - v0;
        tl[r] = t >= 0 && t < Vr ? row[t] : 0.0f;
    }
}

void mpt_vocab_grad(float *logits, const float *mx, const float *se, const int32_t *targets,
                    size_t N, int Vr, int ld, int v0, float dloss) {
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < N; r++) {
        float *row = logits + r * (size_t)ld;
        float m = mx[r], s = dloss / se[r];
#pragma omp simd
        for (int j = 0; j < Vr; j++) row[j] = expf(row[j] - m) * s;
        int t = targets[r] - v0;
        if (t >= 0 && t < Vr) row[t] -= dloss;
        for (int j = Vr; j < ld; j++) row[j] = 0.0f;
    }
}

void mpt_softmax_row(float *probs, const float *logits, int V, float temperature) {
    float inv_t = temperature > 0.0f ? 1.0f / temperature : 1.0f, mx = logits[0];
    for (int j = 1; j < V; j++) mx = logits[j] > mx ? logits[j] : mx;
    /* subtract the maximum before scaling: (l - max) / T keeps the exponent exact */
    for (int j = 0; j < V; j++) probs[j] = (logits[j] - mx) * inv_t;
    mpt_softmax_inplace_(probs, V);
}
