/* test_decode.c — the key/value-cache decoder (model/gpt_decode.h) against the full forward
 * (model/gpt_pass.c): the logits of every position, fed one token at a time, equal position t
 * of one forward over tokens 0..T-1 (causal, so later tokens do not change earlier logits);
 * tied and untied heads, and a Mixture-of-Experts model (every 2nd block, 4 experts, top-2:
 * dropless routing is per token, so the decoder routes as the full forward does); a reset
 * starts over; a full cache and a bad token are refused. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/rng.h"
#include "model/gpt.h"
#include "model/gpt_decode.h"
#ifndef SCALE_
#define SCALE_ 5.0f
#endif

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
