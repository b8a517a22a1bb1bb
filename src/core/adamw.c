/* adamw.c — AdamW, clipping and the learning-rate schedule (see adamw.h). */
#include "core/adamw.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>

void mpt_adamw_defaults(mpt_adamw *o) {
    o->lr = 6e-4f;
    o->beta1 = 0.9f;
    o->beta2 = 0.95f;
    o->eps = 1e-8f;
    o->weight_decay = 0.1f;
    o->grad_clip = 1.0f;
    o->warmup = 0;
    o->cosine = 1;
    o->total_steps = 1;
}

float mpt_adamw_lr(const mpt_adamw *o, long step) {
    if (step < o->warmup) return o->lr * (float)(step + 1) / (float)o->warmup;
    if (!o->cosine) return o->lr;
    long span = o->total_steps - 1 - o->warmup;
    double r = span > 0 ? (double)(step - o->warmup) / (double)span : 1.0;
    if (r > 1.0) r = 1.0;
    double min_lr = 0.1 * o->lr;
    return (float)(min_lr + 0.5 * (1.0 + cos(M_PI * r)) * (o->lr - min_lr));
}

double mpt_sum_squares(const float *g, size_t n) {
    enum { CHUNK = 1 << 16 };
    size_t nchunks = (n + CHUNK - 1) / CHUNK;
    double *part = malloc((nchunks ? nchunks : 1) * sizeof *part);
    double total = 0.0;
    if (!part) {
        for (size_t i = 0; i < n; i++) total += (double)g[i] * g[i];
        return total;
    }
#pragma omp parallel for schedule(static)
    for (size_t c = 0; c < nchunks; c++) {
        size_t a = c * CHUNK, b = a + CHUNK < n ? a + CHUNK : n;
        double s = 0.0;
#pragma omp simd reduction(+ : s)
        for (size_t i = a; i < b; i++) s += (double)g[i] * g[i];
        part[c] = s;
    }
    for (size_t c = 0; c < nchunks; c++) total += part[c];
    free(part);
    return total;
}

float mpt_clip_factor(const mpt_adamw *o, double norm) {
    if (o->grad_clip <= 0.0f) return 1.0f;
    float f = (float)(o->grad_clip / (norm + 1e-6));
    return f < 1.0f ? f : 1.0f;
}

void mpt_adamw_update(const mpt_adamw *o, float *p, const float *g, float *m, float *v, size_t n,
                      float lr, float wd, float clip, long t) {
    float b1 = o->beta1, b2 = o->beta2, eps = o->eps;
    float bc1 = 1.0f - powf(b1, (float)t), bc2 = 1.0f - powf(b2, (float)t);
    float step_size = lr / bc1, bc2_sqrt = sqrtf(bc2), decay = 1.0f - lr * wd;
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] * clip;
        float pi = p[i] * decay;
        float mi = b1 * m[i] + (1.0f - b1) * gi;
        float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] = pi - step_size * mi / (sqrtf(vi) / bc2_sqrt + eps);
    }
}
