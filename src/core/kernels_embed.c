/* kernels_embed.c — token and position embeddings, forward and backward (see kernels.h). */
#include "core/kernels.h"

#include <string.h>

#include "core/kernels_internal.h"

/* ---- embeddings ---------------------------------------------------------------------------- */

void mpt_encoder_forward(float *out, const int32_t *inp, const float *wte, const float *wpe,
                         int B, int T, int D) {
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            float *o = out + ((size_t)b * T + t) * D;
            const float *e = wte + (size_t)inp[b * T + t] * D;
            const float *p = wpe + (size_t)t * D;
#pragma omp simd
            for (int i = 0; i < D; i++) o[i] = e[i] + p[i];
        }
}

void mpt_encoder_backward(float *dwte, float *dwpe, const float *dout, const int32_t *inp,
                          int B, int T, int D) {
    /* Each thread owns a slice of the D columns, so repeated tokens never race. */
#pragma omp parallel
    {
        int nth = omp_threads_(), id = omp_thread_id_();
        int c0 = (int)((long)D * id / nth), c1 = (int)((long)D * (id + 1) / nth);
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++) {
                const float *g = dout + ((size_t)b * T + t) * D;
                float *e = dwte + (size_t)inp[b * T + t] * D;
                float *p = dwpe + (size_t)t * D;
                for (int i = c0; i < c1; i++) {
                    e[i] += g[i];
                    p[i] += g[i];
                }
            }
    }
}

void mpt_embed_masked_forward(float *out, const int32_t *inp, const float *wte, int B, int T,
                              int D, int v0, int Vl) {
#pragma omp parallel for schedule(static)
    for (int r = 0; r < B * T; r++) {
        float *o = out + (size_t)r * D;
        int tok = inp[r] - v0;
        if (tok >= 0 && tok < Vl) memcpy(o, wte + (size_t)tok * D, (size_t)D * sizeof *o);
        else memset(o, 0, (size_t)D * sizeof *o);
    }
}

void mpt_embed_masked_backward(float *dwte, const float *dout, const int32_t *inp, int B, int T,
                               int D, int v0, int Vl) {
#pragma omp parallel
    {
        int nth = omp_threads_(), id = omp_thread_id_();
        int c0 = (int)((long)D * id / nth), c1 = (int)((long)D * (id + 1) / nth);
        for (int r = 0; r < B * T; r++) {
            int tok = inp[r] - v0;
            if (tok < 0 || tok >= Vl) continue;
            const float *g = dout + (size_t)r * D;
            float *e = dwte + (size_t)tok * D;
            for (int i = c0; i < c1; i++) e[i] += g[i];
        }
    }
}

void mpt_positions_forward(float *out, const float *wpe, size_t row0, size_t nrows, int T, int D) {
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < nrows; r++) {
        float *o = out + r * (size_t)D;
        const float *p = wpe + ((row0 + r) % (size_t)T) * (size_t)D;
#pragma omp simd
        for (int i = 0; i < D; i++) o[i] += p[i];
    }
}

void mpt_positions_backward(float *dwpe, const float *dout, int B, int T, int D) {
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        float *p = dwpe + (size_t)t * D;
        for (int b = 0; b < B; b++) {
            const float *g = dout + ((size_t)b * T + t) * D;
#pragma omp simd
            for (int i = 0; i < D; i++) p[i] += g[i];
        }
    }
}
