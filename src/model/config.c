/* config.c — model presets and validation (see config.h). */
#include "model/config.h"

#include <string.h>

static void set_(mpt_config *c, int L, int D, int H, int T, int V) {
    memset(c, 0, sizeof *c);
    c->n_layer = L;
    c->d_model = D;
    c->n_head = H;
    c->n_positions = T;
    c->vocab = V;
    c->ffn = 4 * D;
    c->tied = 1;
    c->top_k = 1;
    c->aux_loss_coef = 0.01f;
}

mpt_status mpt_config_preset(mpt_config *c, const char *name, mpt_error *err) {
    if (strcmp(name, "tiny") == 0) set_(c, 2, 64, 4, 64, 256);
    else if (strcmp(name, "small") == 0) set_(c, 6, 384, 6, 256, 256);
    else if (strcmp(name, "gpt2-124m") == 0) set_(c, 12, 768, 12, 1024, 50257);
    else
        return mpt_fail(err, MPT_ERR_INPUT,
                        "unknown model '%s': use tiny, small, gpt2-124m or a config.json file",
                        name);
    return MPT_OK;
}

mpt_status mpt_config_finish(mpt_config *c, int pad_multiple, mpt_error *err) {
    if (c->n_layer < 1 || c->d_model < 1 || c->n_head < 1 || c->n_positions < 1 || c->vocab < 2)
        return mpt_fail(err, MPT_ERR_INPUT,
                        "model sizes must be positive (layers %d, d-model %d, heads %d, "
                        "positions %d, vocab %d)",
                        c->n_layer, c->d_model, c->n_head, c->n_positions, c->vocab);
    if (c->d_model % c->n_head != 0)
        return mpt_fail(err, MPT_ERR_INPUT,
                        "d-model %d is not divisible by heads %d: choose heads dividing d-model",
                        c->d_model, c->n_head);
    if (c->ffn == 0) c->ffn = 4 * c->d_model;
    if (c->ffn < 1) return mpt_fail(err, MPT_ERR_INPUT, "ffn %d must be positive", c->ffn);
    if (c->vocab > 65536)
        return mpt_fail(err, MPT_ERR_INPUT,
                        "vocab %d exceeds 65536, the most a uint16 token file can hold", c->vocab);
    if (c->experts < 0 || (c->experts > 0 && (c->top_k < 1 || c->top_k > c->experts)))
        return mpt_fail(err, MPT_ERR_INPUT, "experts %d with top-k %d: need 1 <= top-k <= experts",
                        c->experts, c->top_k);
    if (pad_multiple < 1) pad_multiple = 1;
    if (c->padded_vocab < c->vocab)
        c->padded_vocab = (c->vocab + pad_multiple - 1) / pad_multiple * pad_multiple;
    return MPT_OK;
}

long long mpt_config_param_count(const mpt_config *c) {
    long long D = c->d_model, F = c->ffn, V = c->vocab, T = c->n_positions;
    long long block = 2 * D + D * 3 * D + 3 * D + D * D + D + 2 * D + D * F + F + F * D + D;
    long long n = V * D + T * D + c->n_layer * block + 2 * D;
    if (!c->tied) n += V * D;
    return n;
}
