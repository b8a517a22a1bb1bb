/* kernels_attention_ref.c — the plain causal attention that stores the T x T probabilities (the
 * reference beside the fused kernel of attention.c) (see kernels.h). */
#include "core/kernels.h"

#include <math.h>
#include <string.h>

#include "core/kernels_internal.h"

/* ---- attention ------------------------------------------------------------------------------ */

/* Causal attention skips the upper triangle by working in row blocks: rows [r0, r1) of the
 * scores only need keys [0, r1). */
#define ATT_ROW_BLOCK 64

void mpt_attention_forward(float *out, float *att, const float *qkv, int B, int T, int D, int H) {
    int hs = D / H;
    float scale = 1.0f / sqrtf((float)hs);
    size_t ld = 3 * (size_t)D;
#pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            const float *q = qkv + (size_t)b * T * ld + (size_t)h * hs;
            const float *k = q + D, *v = q + 2 * D;
            float *S = att + ((size_t)b * H + h) * T * T;
            float *o = out + (size_t)b * T * D + (size_t)h * hs;
            for (int r0 = 0; r0 < T; r0 += ATT_ROW_BLOCK) {
                int r1 = r0 + ATT_ROW_BLOCK < T ? r0 + ATT_ROW_BLOCK : T;
                float *Sb = S + (size_t)r0 * T;
                mpt_sgemm_('N', 'T', (size_t)(r1 - r0), (size_t)(r1), (size_t)(hs), scale, q + (size_t)r0 * ld, (size_t)((int)ld), k, (size_t)((int)ld), 0.0f, Sb, (size_t)(T));
                for (int i = r0; i < r1; i++) {
                    float *row = S + (size_t)i * T;
                    mpt_softmax_inplace_(row, i + 1);
                    memset(row + i + 1, 0, (size_t)(T - i - 1) * sizeof *row);
                }
                mpt_sgemm_('N', 'N', (size_t)(r1 - r0), (size_t)(hs), (size_t)(r1), 1.0f, Sb, (size_t)(T), v, (size_t)((int)ld), 0.0f, o + (size_t)r0 * D, (size_t)(D));
            }
        }
}

void mpt_attention_backward(float *dqkv, float *datt, const float *dout, const float *qkv,
                            const float *att, int B, int T, int D, int H) {
    int hs = D / H;
    float scale = 1.0f / sqrtf((float)hs);
    size_t ld = 3 * (size_t)D;
#pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            size_t base = (size_t)b * T * ld + (size_t)h * hs;
            const float *q = qkv + base, *k = q + D, *v = q + 2 * D;
            float *dq = dqkv + base, *dk = dq + D, *dv = dq + 2 * D;
            const float *P = att + ((size_t)b * H + h) * T * T;
            float *dS = datt + ((size_t)b * H + h) * T * T;
            const float *dO = dout + (size_t)b * T * D + (size_t)h * hs;
            for (int r0 = 0; r0 < T; r0 += ATT_ROW_BLOCK) {
                int r1 = r0 + ATT_ROW_BLOCK < T ? r0 + ATT_ROW_BLOCK : T, nr = r1 - r0;
                const float *Pb = P + (size_t)r0 * T, *dOb = dO + (size_t)r0 * D;
                float *dSb = dS + (size_t)r0 * T;
                /* dP = dO V^T (rows r0..r1, keys 0..r1) */
                mpt_sgemm_('N', 'T', (size_t)(nr), (size_t)(r1), (size_t)(hs), 1.0f, dOb, (size_t)(D), v, (size_t)((int)ld), 0.0f, dSb, (size_t)(T));
                /* dV[0:r1] += P^T dO */
                mpt_sgemm_('T', 'N', (size_t)(r1), (size_t)(hs), (size_t)(nr), 1.0f, Pb, (size_t)(T), dOb, (size_t)(D), 1.0f, dv, (size_t)((int)ld));
                /* dS = P * (dP - rowsum(P * dP)) * scale, on the causal part */
                for (int i = r0; i < r1; i++) {
                    const float *p = P + (size_t)i * T;
                    float *g = dS + (size_t)i * T, dot = 0.0f;
                    int n = i + 1;
#pragma omp simd reduction(+ : dot)
                    for (int j = 0; j < n; j++) dot += p[j] * g[j];
#pragma omp simd
                    for (int j = 0; j < n; j++) g[j] = p[j] * (g[j] - dot) * scale;
                    for (int j = n; j < r1; j++) g[j] = 0.0f;
                }
                /* dQ[r0:r1] += dS K[0:r1];  dK[0:r1] += dS^T Q[r0:r1] */
                mpt_sgemm_('N', 'N', (size_t)(nr), (size_t)(hs), (size_t)(r1), 1.0f, dSb, (size_t)(T), k, (size_t)((int)ld), 1.0f, dq + (size_t)r0 * ld, (size_t)((int)ld));
                mpt_sgemm_('T', 'N', (size_t)(r1), (size_t)(hs), (size_t)(nr), 1.0f, dSb, (size_t)(T), q + (size_t)r0 * ld, (size_t)((int)ld), 1.0f, dk, (size_t)((int)ld));
            }
        }
}
