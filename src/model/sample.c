/* sample.c — greedy, temperature, top-k and top-p choice of the next token (see sample.h). */
#include "model/sample.h"

#include <stdlib.h>
#include <string.h>

#include "core/kernels.h"
#include "core/rng.h"

mpt_status mpt_sampler_init(mpt_sampler *s, int V, float temperature, int top_k, float top_p,
                            uint64_t seed, mpt_error *err) {
    memset(s, 0, sizeof *s);
    if (V < 1) return mpt_fail(err, MPT_ERR_INPUT, "sampling needs a vocabulary (V %d)", V);
    s->V = V;
    s->temperature = temperature;
    s->top_k = top_k;
    s->top_p = top_p;
    s->key = mpt_rng_key(seed, "generate");
    s->probs = malloc((size_t)V * sizeof *s->probs);
    s->sorted = malloc((size_t)V * sizeof *s->sorted);
    s->idx = malloc((size_t)V * sizeof *s->idx);
    if (!s->probs || !s->sorted || !s->idx) {
        mpt_sampler_free(s);
        return mpt_fail(err, MPT_ERR_RUN, "out of memory for the sampler (V %d)", V);
    }
    return MPT_OK;
}

void mpt_sampler_free(mpt_sampler *s) {
    if (!s) return;
    free(s->probs);
    free(s->sorted);
    free(s->idx);
    memset(s, 0, sizeof *s);
}

/* Keeps the k largest probabilities (ties at the k-th kept), renormalised; k <= 0 keeps all. */
static void top_k_(float *p, float *sorted, int V, int k) {
    if (k <= 0 || k >= V) return;
    memcpy(sorted, p, (size_t)V * sizeof *sorted);
    for (int i = 0; i < k; i++) { /* partial selection of the k-th largest */
        int best = i;
        for (int j = i + 1; j < V; j++)
            if (sorted[j] > sorted[best]) best = j;
        float t = sorted[i];
        sorted[i] = sorted[best];
        sorted[best] = t;
    }
    float kth = sorted[k - 1], sum = 0.0f;
    for (int j = 0; j < V; j++) {
        if (p[j] < kth) p[j] = 0.0f;
        sum += p[j];
    }
    for (int j = 0; j < V; j++) p[j] /= sum;
}

static int cmp_desc_(const void *a, const void *b, void *ctx) {
    const float *p = ctx;
    float x = p[*(const int *)a], y = p[*(const int *)b];
    if (x != y) return x < y ? 1 : -1;
    return *(const int *)a - *(const int *)b; /* ties: the lower token first (deterministic) */
}

/* Nucleus: keeps the most likely tokens whose probabilities first reach top_p (at least one),
 * renormalised; top_p >= 1 keeps all. */
static void top_p_(float *p, int V, float top_p, int *idx) {
    if (top_p >= 1.0f) return;
    for (int j = 0; j < V; j++) idx[j] = j;
    qsort_r(idx, (size_t)V, sizeof *idx, cmp_desc_, p);
    float c = 0.0f;
    int keep = 0;
    while (keep < V && (keep == 0 || c < top_p)) c += p[idx[keep++]];
    for (int j = keep; j < V; j++) p[idx[j]] = 0.0f;
    for (int j = 0; j < V; j++) p[j] /= c;
}

int32_t mpt_sampler_pick(mpt_sampler *s, const float *logits, uint64_t i) {
    int V = s->V;
    if (s->temperature == 0.0f) {
        int next = 0;
        for (int j = 1; j < V; j++)
            if (logits[j] > logits[next]) next = j;
        return next;
    }
    mpt_softmax_row(s->probs, logits, V, s->temperature);
    top_k_(s->probs, s->sorted, V, s->top_k);
    top_p_(s->probs, V, s->top_p, s->idx);
    float u = mpt_rng_uniform(s->key, i), c = 0.0f;
    for (int j = 0; j < V; j++) {
        c += s->probs[j];
        if (u < c) return j;
    }
    return V - 1;
}
