/* test_decode.c — the key/value-cache decoder (model/gpt_decode.h) against the full forward
 * (model/gpt_pass.c): the logits of every position, fed one token at a time, equal position t
 * of one forward over tokens 0..T-1 (causal, so later tokens do not change earlier logits);
 * tied and untied heads, and a Mixture-of-Experts model (every 2nd block, 4 experts, top-2:
 * dropless routing is per token, so the decoder routes as the full forward does); a reset
 * starts over; a full cache and a bad token are refused.
 * Pipeline stages: the model cut into two stages (blocks 0-1 with the embeddings, block 2 with
 * the head; with experts, blocks 0 and 2 are MoE, one in each stage), the first stage's output
 * handed to the second in d->x as train/generator.c sends it, gives the whole model's logits
 * bit for bit (the same operations in the same order). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/rng.h"
#include "model/gpt.h"
#include "model/gpt_decode.h"
#include "parallel/tp.h"
#ifndef SCALE_
#define SCALE_ 5.0f
#endif

/* Stage s of two (blocks [first, first + n)) of the model c, its weights taken from full. */
static void stage_init_(mpt_gpt *st, const mpt_config *c, const mpt_gpt *full, int first, int n,
                        int last, mpt_arena *arena) {
    mpt_error err = {0};
    mpt_gpt_place pl = {.tp = 1, .first_layer = first, .n_layers = n, .first = first == 0,
                        .last = last, .threads = 1, .cp = 1};
    memset(st, 0, sizeof *st);
    CHECK(mpt_gpt_init(st, c, 1, c->n_positions, MPT_GPT_INFER | MPT_GPT_NO_ACTS, 1, &pl, arena,
                       &err) == MPT_OK, "stage init: %s", err.msg);
    mpt_tp_extract(&st->pt, &full->pt, full->params, st->params);
}

static void stages_(mpt_gpt *m, const int32_t *tok, int T) {
    printf("decode on two pipeline stages vs the whole model (%s head, %d experts)\n",
           m->cfg.tied ? "tied" : "untied", m->cfg.experts);
    mpt_error err = {0};
    mpt_arena arena;
    mpt_arena_init(&arena, 0);
    mpt_gpt s0, s1;
    stage_init_(&s0, &m->cfg, m, 0, 2, 0, &arena);
    stage_init_(&s1, &m->cfg, m, 2, 1, 1, &arena);
    mpt_decode whole, d0, d1;
    CHECK(mpt_decode_init(&whole, m, &err) == MPT_OK && mpt_decode_init(&d0, &s0, &err) == MPT_OK &&
          mpt_decode_init(&d1, &s1, &err) == MPT_OK, "decode init: %s", err.msg);
    int V = m->cfg.vocab, same = 1, first_null = 1;
    for (int t = 0; t < T; t++) {
        const float *a = NULL, *b = NULL, *mid = NULL;
        CHECK(mpt_decode_step(&whole, tok[t], &a, &err) == MPT_OK, "whole %d: %s", t, err.msg);
        CHECK(mpt_decode_step(&d0, tok[t], &mid, &err) == MPT_OK, "stage 0 %d: %s", t, err.msg);
        first_null &= mid == NULL;
        memcpy(d1.x, d0.x, (size_t)m->cfg.d_model * sizeof(float)); /* the pp send */
        CHECK(mpt_decode_step(&d1, tok[t], &b, &err) == MPT_OK, "stage 1 %d: %s", t, err.msg);
        same &= a && b && memcmp(a, b, (size_t)V * sizeof *a) == 0;
    }
    CHECK(first_null, "the first stage gives no logits");
    CHECK(same, "two stages = the whole model, bit for bit, at all %d positions", T);
    mpt_decode_free(&whole);
    mpt_decode_free(&d0);
    mpt_decode_free(&d1);
    mpt_gpt_free(&s0);
    mpt_gpt_free(&s1);
}

static void run_(int tied, int experts) {
    printf("decode vs full forward (%s head, %d experts)\n", tied ? "tied" : "untied", experts);
    mpt_error err = {0};
    mpt_config c;
    mpt_config_preset(&c, "tiny", &err);
    c.n_layer = 3;
    c.d_model = 64;
    c.n_head = 4;
    c.n_positions = 24;
    c.vocab = 100;
    c.ffn = 0;
    c.tied = tied;
    c.experts = experts;
    c.top_k = 2;
    c.moe_every = 2;
    c.padded_vocab = 0;
    CHECK(mpt_config_finish(&c, 64, &err) == MPT_OK, "config: %s", err.msg);
    int T = c.n_positions, V = c.vocab;
    mpt_arena arena;
    mpt_arena_init(&arena, 0);
    mpt_gpt m;
    memset(&m, 0, sizeof m);
    CHECK(mpt_gpt_init(&m, &c, 1, T, MPT_GPT_INFER, 1, NULL, &arena, &err) == MPT_OK, "init: %s",
          err.msg);
    mpt_params_init_values(&m.pt, m.params, 7);
    /* weights of std 0.1 (a trained GPT-2's scale) instead of the initial 0.02, so that the
     * attention is far from uniform and the logits are O(10) */
    for (size_t i = 0; i < m.pt.total; i++) m.params[i] *= SCALE_;
    int32_t tok[64];
    uint64_t key = mpt_rng_key(3, "test_decode");
    for (int t = 0; t < T; t++) tok[t] = (int32_t)(mpt_rng_uniform(key, (uint64_t)t) * V) % V;
    CHECK(mpt_gpt_forward(&m, tok, NULL, 1, T, 0.0f, NULL, &err) == MPT_OK, "forward: %s", err.msg);
    size_t n = (size_t)T * V;
    float *full = malloc(n * sizeof *full), *inc = malloc(n * sizeof *inc);
    for (int t = 0; t < T; t++)
        memcpy(full + (size_t)t * V, m.cur->a[MPT_ACT_LOGITS] + (size_t)t * c.padded_vocab,
               (size_t)V * sizeof(float));
    /* compared as max|a-b| / max|full| (the tensors' scale): the two paths sum in different
     * orders (a GEMV per token against a GEMM per sequence, a loop against the blocked
     * attention), and float32 rounding of O(10) logits is O(1e-6) of that scale */
    double scale = 0.0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(full[i]));
    printf("  largest |logit| %.2f\n", scale);
    mpt_decode d;
    CHECK(mpt_decode_init(&d, &m, &err) == MPT_OK, "decode init: %s", err.msg);
    for (int pass = 0; pass < 2; pass++) { /* the second after a reset: the same again */
        mpt_decode_reset(&d);
        for (int t = 0; t < T; t++) {
            const float *lg = NULL;
            CHECK(mpt_decode_step(&d, tok[t], &lg, &err) == MPT_OK, "step %d: %s", t, err.msg);
            if (lg) memcpy(inc + (size_t)t * V, lg, (size_t)V * sizeof(float));
        }
        check_close(pass ? "logits of every position after a reset" : "logits of every position",
                    inc, full, n, 1e-5, scale);
    }
    const float *lg = NULL;
    CHECK(mpt_decode_step(&d, tok[0], &lg, &err) == MPT_ERR_INPUT && strstr(err.msg, "positions"),
          "a full cache is refused: %s", err.msg);
    mpt_decode_reset(&d);
    CHECK(mpt_decode_step(&d, V, &lg, &err) == MPT_ERR_INPUT && strstr(err.msg, "vocabulary"),
          "a token outside the vocabulary is refused: %s", err.msg);
    mpt_decode_free(&d);
    mpt_decode_free(NULL);
    stages_(&m, tok, T);
    free(full);
    free(inc);
    mpt_gpt_free(&m);
}

int main(void) {
    run_(1, 0);
    run_(0, 0);
    run_(1, 4);
    return check_finish();
}
