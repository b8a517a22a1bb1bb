/* sample.h — choosing the next token from a row of logits: greedy, or drawn from
 * softmax(logits / temperature) cut to the top-k most likely and then to the smallest set whose
 * probability reaches top-p (nucleus), with a counter-based uniform number, so the i-th token
 * of a run depends only on (seed, i, logits) — the same on every rank and every layout.
 *
 *   mpt_sampler s;  mpt_sampler_init(&s, V, 0.8f, 40, 1.0f, seed, &err);
 *   int32_t next = mpt_sampler_pick(&s, logits, i);       // logits: V floats
 *   mpt_sampler_free(&s);
 * Local (no communication); not thread-safe (one scratch per sampler). */
#ifndef MPT_SAMPLE_H
#define MPT_SAMPLE_H

#include <stdint.h>

#include "core/status.h"

typedef struct mpt_sampler {
    int V;             /* vocabulary (logits read) */
    float temperature; /* 0: greedy (argmax, the lowest id on ties) */
    int top_k;         /* <= 0 or >= V: all */
    float top_p;       /* >= 1: all */
    uint64_t key;      /* mpt_rng_key(seed, "generate") */
    float *probs;      /* owned (V) */
    float *sorted;     /* owned (V) top-k scratch */
    int *idx;          /* owned (V) top-p scratch */
} mpt_sampler;

mpt_status mpt_sampler_init(mpt_sampler *s, int V, float temperature, int top_k, float top_p,
                            uint64_t seed, mpt_error *err);
void mpt_sampler_free(mpt_sampler *s); /* NULL safe */
/* The i-th generated token from logits (V): the uniform number is mpt_rng_uniform(key, i). */
int32_t mpt_sampler_pick(mpt_sampler *s, const float *logits, uint64_t i);

#endif
