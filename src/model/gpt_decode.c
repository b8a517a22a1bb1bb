/* gpt_decode.c — one token's forward with a key/value cache (see gpt_decode.h). */
#include "model/gpt_decode.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/kernels.h"

#define W_(m, l, slot) ((m)->w[(m)->pt.layer[(size_t)(l) * MPT_LAYER_SLOTS + (slot)]])

mpt_status mpt_decode_init(mpt_decode *d, const mpt_gpt *m, mpt_error *err) {
    memset(d, 0, sizeof *d);
    const mpt_config *c = &m->cfg;
    if (m->tp != 1 || !m->first || !m->last || m->nl != c->n_layer)
        return mpt_fail(err, MPT_ERR_INPUT,
                        "decoding with a cache needs the whole model on one rank");
    size_t D = (size_t)c->d_model, F = (size_t)c->ffn, T = (size_t)c->n_positions;
    size_t L = (size_t)c->n_layer, Vp = (size_t)c->padded_vocab, cache, n;
    /* 2 L T D for the cache, then 7 D + 2 F + T + Vp of scratch */
    if (!mpt_size_mul(L, T, &cache) || !mpt_size_mul(cache, D, &cache) ||
        !mpt_size_mul(cache, 2, &n) || !mpt_size_add(n, 7 * D + 2 * F + T + Vp, &n) ||
        n > SIZE_MAX / sizeof(float))
        return mpt_fail(err, MPT_ERR_INPUT, "the key/value cache is too large for this machine");
    d->buf = malloc(n * sizeof(float));
    if (!d->buf)
        return mpt_fail(err, MPT_ERR_RUN, "out of memory for a key/value cache of %zu floats", n);
    float *p = d->buf;
    d->k = p, p += cache;
    d->v = p, p += cache;
    d->x = p, p += D;
    d->ln = p, p += D;
    d->qkv = p, p += 3 * D;
    d->atty = p, p += D;
    d->tmp = p, p += D;
    d->fch = p, p += F;
    d->fchg = p, p += F;
    d->att = p, p += T;
    d->logits = p;
    if (c->experts > 0) { /* MoE blocks route the one token (model/moe.h) */
        size_t na = mpt_moe_act_elems(c, 1, 1), nw = mpt_moe_work_elems(c, 1, 1, 0);
        d->moe_act = na ? malloc(na * sizeof(float)) : NULL;
        d->moe_work = nw ? malloc(nw * sizeof(float)) : NULL;
        if (!d->moe_act || !d->moe_work) {
            mpt_decode_free(d);
            return mpt_fail(err, MPT_ERR_RUN, "out of memory for the MoE decoding buffers");
        }
    }
    d->m = m;
    d->T = (int)T;
    return MPT_OK;
}

void mpt_decode_free(mpt_decode *d) {
    if (!d) return;
    free(d->buf);
    free(d->moe_act);
    free(d->moe_work);
    memset(d, 0, sizeof *d);
}

void mpt_decode_reset(mpt_decode *d) { d->pos = 0; }

/* Causal attention of the current token (position t) over the cached keys and values of one
 * block: for each head, weights softmax(q . k_s / sqrt(hs)) over s = 0..t, out = sum w_s v_s. */
static void attend_(mpt_decode *d, const float *kc, const float *vc, int t) {
    const mpt_config *c = &d->m->cfg;
    int D = c->d_model, H = c->n_head, hs = D / H;
    float scale = 1.0f / sqrtf((float)hs);
    for (int h = 0; h < H; h++) {
        const float *q = d->qkv + (size_t)h * hs;
        float mx = -INFINITY, sum = 0.0f;
        for (int s = 0; s <= t; s++) {
            const float *k = kc + (size_t)s * D + (size_t)h * hs;
            float dot = 0.0f;
            for (int i = 0; i < hs; i++) dot += q[i] * k[i];
            d->att[s] = dot * scale;
            if (d->att[s] > mx) mx = d->att[s];
        }
        for (int s = 0; s <= t; s++) {
            d->att[s] = expf(d->att[s] - mx);
            sum += d->att[s];
        }
        float *out = d->atty + (size_t)h * hs;
        memset(out, 0, (size_t)hs * sizeof *out);
        for (int s = 0; s <= t; s++) {
            const float *v = vc + (size_t)s * D + (size_t)h * hs;
            float w = d->att[s] / sum;
            for (int i = 0; i < hs; i++) out[i] += w * v[i];
        }
    }
}

mpt_status mpt_decode_step(mpt_decode *d, int32_t token, const float **logits, mpt_error *err) {
    const mpt_gpt *m = d->m;
    const mpt_config *c = &m->cfg;
    const mpt_param_table *pt = &m->pt;
    int D = c->d_model, F = c->ffn, t = d->pos;
    if (t >= d->T)
        return mpt_fail(err, MPT_ERR_INPUT, "the key/value cache holds %d positions: reset it",
                        d->T);
    if (token < 0 || token >= c->vocab)
        return mpt_fail(err, MPT_ERR_INPUT, "token %d is outside the vocabulary of %d",
                        (int)token, c->vocab);
    const float *wte = m->w[pt->wte] + (size_t)token * D, *wpe = m->w[pt->wpe] + (size_t)t * D;
    for (int i = 0; i < D; i++) d->x[i] = wte[i] + wpe[i];
    size_t per = (size_t)d->T * D;
    for (int l = 0; l < c->n_layer; l++) {
        float *kc = d->k + (size_t)l * per, *vc = d->v + (size_t)l * per;
        mpt_layernorm_forward(d->ln, &d->stats[0], &d->stats[1], d->x, W_(m, l, MPT_LN1_W),
                              W_(m, l, MPT_LN1_B), 1, D);
        mpt_matmul_forward(d->qkv, d->ln, W_(m, l, MPT_QKV_W), W_(m, l, MPT_QKV_B), 1, D, 3 * D);
        memcpy(kc + (size_t)t * D, d->qkv + D, (size_t)D * sizeof(float));
        memcpy(vc + (size_t)t * D, d->qkv + 2 * (size_t)D, (size_t)D * sizeof(float));
        attend_(d, kc, vc, t);
        mpt_matmul_forward(d->tmp, d->atty, W_(m, l, MPT_ATTPROJ_W), W_(m, l, MPT_ATTPROJ_B), 1, D,
                           D);
        mpt_residual_forward(d->x, d->x, d->tmp, (size_t)D);
        mpt_layernorm_forward(d->ln, &d->stats[0], &d->stats[1], d->x, W_(m, l, MPT_LN2_W),
                              W_(m, l, MPT_LN2_B), 1, D);
        if (pt->router[l] != SIZE_MAX) { /* MoE block: the token's top-K experts */
            mpt_moe_block b = {.cfg = c, .ep = 1, .w = m->w + pt->router[l]};
            mpt_status st = mpt_moe_forward(&b, d->tmp, d->ln, 1, d->moe_act, d->moe_work, 0.0f,
                                            NULL, err);
            if (st) return st;
            mpt_residual_forward(d->x, d->x, d->tmp, (size_t)D);
            continue;
        }
        mpt_matmul_forward(d->fch, d->ln, W_(m, l, MPT_FC_W), W_(m, l, MPT_FC_B), 1, D, F);
        mpt_gelu_forward(d->fchg, d->fch, (size_t)F);
        mpt_matmul_forward(d->tmp, d->fchg, W_(m, l, MPT_FCPROJ_W), W_(m, l, MPT_FCPROJ_B), 1, F,
                           D);
        mpt_residual_forward(d->x, d->x, d->tmp, (size_t)D);
    }
    mpt_layernorm_forward(d->ln, &d->stats[0], &d->stats[1], d->x, m->w[pt->lnf_w],
                          m->w[pt->lnf_b], 1, D);
    mpt_lmhead_forward(d->logits, d->ln, m->w[pt->lm_head], 1, D, c->vocab, c->padded_vocab);
    d->pos = t + 1;
    if (logits) *logits = d->logits;
    return MPT_OK;
}
