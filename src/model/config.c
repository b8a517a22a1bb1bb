/* config.c — model presets and validation (see config.h). */
#include "model/config.h"

#include <limits.h>
#include <math.h>
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
    c->moe_every = 1;
    c->aux_loss_coef = 0.01f;
}

int mpt_config_is_moe_layer(const mpt_config *c, int i) {
    int every = c->moe_every > 0 ? c->moe_every : 1;
    return c->experts > 0 && i % every == 0;
}

int mpt_config_layer_tensors(const mpt_config *c, int i) {
    return mpt_config_is_moe_layer(c, i) ? 9 + 4 * c->experts : 12;
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

/* One size against its range: "layers 5000 (--layers, n_layer) is out of range: ..." names the
 * command-line option and the config.json key it may have come from. */
static mpt_status size_in_(const char *what, const char *option, const char *key, long long v,
                           long long lo, long long hi, mpt_error *err) {
    if (v >= lo && v <= hi) return MPT_OK;
    return mpt_fail(err, MPT_ERR_INPUT,
                    "%s %lld (--%s, config.json %s) is out of range: use %lld to %lld", what, v,
                    option, key, lo, hi);
}

mpt_status mpt_config_finish(mpt_config *c, int pad_multiple, mpt_error *err) {
    mpt_status st;
    if ((st = size_in_("layers", "layers", "n_layer", c->n_layer, 1, MPT_MAX_LAYERS, err)) ||
        (st = size_in_("d-model", "d-model", "n_embd", c->d_model, 1, MPT_MAX_D_MODEL, err)) ||
        (st = size_in_("heads", "heads", "n_head", c->n_head, 1, MPT_MAX_HEADS, err)) ||
        (st = size_in_("positions", "seq-len", "n_positions", c->n_positions, 1,
                       MPT_MAX_POSITIONS, err)))
        return st;
    if (c->vocab < 2 || c->vocab > MPT_MAX_VOCAB)
        return mpt_fail(err, MPT_ERR_INPUT,
                        "vocab %d is out of range: from 2 to %d, the most a uint16 token file "
                        "can hold (use 50257 for GPT-2 tokens, 256 for bytes)", c->vocab,
                        MPT_MAX_VOCAB);
    if (c->d_model % c->n_head != 0)
        return mpt_fail(err, MPT_ERR_INPUT,
                        "d-model %d is not divisible by heads %d: choose heads dividing d-model",
                        c->d_model, c->n_head);
    if (c->ffn == 0) c->ffn = (int)(4LL * c->d_model); /* <= 4 x MPT_MAX_D_MODEL: fits */
    if (c->ffn < 1 || c->ffn > MPT_MAX_FFN)
        return mpt_fail(err, MPT_ERR_INPUT, "ffn %d is out of range: the MLP width must be from "
                        "1 to %d", c->ffn, MPT_MAX_FFN);
    if (c->experts < 0 || c->experts > MPT_MAX_EXPERTS ||
        (c->experts > 0 && (c->top_k < 1 || c->top_k > c->experts)))
        return mpt_fail(err, MPT_ERR_INPUT, "experts %d with top-k %d: need 0 <= experts <= %d "
                        "and 1 <= top-k <= experts", c->experts, c->top_k, MPT_MAX_EXPERTS);
    if (!isfinite(c->aux_loss_coef) || c->aux_loss_coef < 0 || !isfinite(c->capacity_factor) ||
        c->capacity_factor < 0 || !isfinite(c->z_loss_coef) || c->z_loss_coef < 0)
        return mpt_fail(err, MPT_ERR_INPUT, "aux-loss-coef %g, z-loss-coef %g and "
                        "capacity-factor %g must be finite and >= 0", c->aux_loss_coef,
                        c->z_loss_coef, c->capacity_factor);
    if (!isfinite(c->dropless_bound) || (c->dropless_bound != 0 && c->dropless_bound < 1))
        return mpt_fail(err, MPT_ERR_INPUT, "moe-dropless-bound %g must be 0 (the worst case) "
                        "or at least 1 (rows of one rank's own assignments)", c->dropless_bound);
    if (c->moe_every == 0) c->moe_every = 1;
    if (c->moe_every < 1 || c->moe_every > MPT_MAX_LAYERS)
        return mpt_fail(err, MPT_ERR_INPUT, "moe-every %d is out of range: use 1 to %d",
                        c->moe_every, MPT_MAX_LAYERS);
    if (pad_multiple < 1) pad_multiple = 1;
    if (c->padded_vocab < c->vocab) {
        long long padded = ((long long)c->vocab + pad_multiple - 1) / pad_multiple * pad_multiple;
        if (padded > INT_MAX)
            return mpt_fail(err, MPT_ERR_INPUT, "vocab %d padded to a multiple of %d overflows: "
                            "use a smaller vocabulary or --tp", c->vocab, pad_multiple);
        c->padded_vocab = (int)padded;
    }
    return MPT_OK;
}

long long mpt_config_param_count(const mpt_config *c) {
    long long D = c->d_model, F = c->ffn, V = c->vocab, T = c->n_positions;
    long long block = 2 * D + D * 3 * D + 3 * D + D * D + D + 2 * D + D * F + F + F * D + D;
    long long E = c->experts, moe = 2 * D + D * 3 * D + 3 * D + D * D + D + 2 * D + D * E +
                                  E * (D * F + F + F * D + D);
    long long n = V * D + T * D + 2 * D;
    for (int i = 0; i < c->n_layer; i++) n += mpt_config_is_moe_layer(c, i) ? moe : block;
    if (!c->tied) n += V * D;
    return n;
}
