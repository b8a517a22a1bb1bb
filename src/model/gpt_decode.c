/* gpt_decode.c — one token's forward with a key/value cache, on one rank or on this rank's
 * tensor-parallel shard of a pipeline stage (see gpt_decode.h). */
#include "model/gpt_decode.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/kernels.h"

#define W_(m, l, slot) ((m)->w[(m)->pt.layer[(size_t)(l) * MPT_LAYER_SLOTS + (slot)]])

mpt_status mpt_decode_init(mpt_decode *d, const mpt_gpt *m, mpt_error *err) {
    memset(d, 0, sizeof *d);
    const mpt_config *c = &m->cfg;
    if (m->sp || m->cp > 1)
        return mpt_fail(err, MPT_ERR_INPUT,
                        "decoding with a cache takes no sequence or context parallelism");
    if (!m->params)
        return mpt_fail(err, MPT_ERR_INPUT, "decoding with a cache needs the model's weights");
    size_t D = (size_t)c->d_model, T = (size_t)c->n_positions, L = (size_t)m->nl;
    size_t Dl = (size_t)m->Dl, Fl = (size_t)m->Fl, Vl = m->tp > 1 ? (size_t)m->Vl : 0;
    size_t Vp = m->last ? (size_t)c->padded_vocab : 0, cache, n;
    /* 2 nl T Dl for the cache, then 3 D + 5 Dl + 2 Fl + T + Vl + Vp of scratch */
    if (!mpt_size_mul(L, T, &cache) || !mpt_size_mul(cache, Dl, &cache) ||
        !mpt_size_mul(cache, 2, &n) ||
        !mpt_size_add(n, 3 * D + 5 * Dl + 2 * Fl + T + Vl + Vp, &n) ||
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
    d->tmp = p, p += D;
    d->qkv = p, p += 3 * Dl;
    d->atty = p, p += Dl;
    d->fch = p, p += Fl;
    d->fchg = p, p += Fl;
    d->att = p, p += T;
    d->local = Vl ? p : NULL, p += Vl;
    d->logits = Vp ? p : NULL;
    memset(d->x, 0, D * sizeof *d->x);
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
 * block, for this rank's Hl heads (rows of Dl): for each head, weights
 * softmax(q . k_s / sqrt(hs)) over s = 0..t, out = sum w_s v_s. */
static void attend_(mpt_decode *d, const float *kc, const float *vc, int t) {
    const mpt_gpt *m = d->m;
    int Dl = m->Dl, H = m->Hl, hs = Dl / H;
    float scale = 1.0f / sqrtf((float)hs);
    for (int h = 0; h < H; h++) {
        const float *q = d->qkv + (size_t)h * hs;
        float mx = -INFINITY, sum = 0.0f;
        for (int s = 0; s <= t; s++) {
            const float *k = kc + (size_t)s * Dl + (size_t)h * hs;
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
            const float *v = vc + (size_t)s * Dl + (size_t)h * hs;
            float w = d->att[s] / sum;
            for (int i = 0; i < hs; i++) out[i] += w * v[i];
        }
    }
}

/* Row-parallel projection of one row: out (D) = sum over tp of inp (C) w (C, D), then + bias
 * (once, after the sum); on one rank the plain matmul. */
static mpt_status row_parallel_(const mpt_gpt *m, float *out, const float *inp, const float *w,
                                const float *bias, int C, int D, mpt_error *err) {
    if (m->tp == 1) {
        mpt_matmul_forward(out, inp, w, bias, 1, C, D);
        return MPT_OK;
    }
    mpt_matmul_forward(out, inp, w, NULL, 1, C, D);
    mpt_status st = m->ops.reduce_from_tp(m->ops.ctx, out, (size_t)D, err);
    if (!st) mpt_add_rows(out, bias, 1, D);
    return st;
}

/* x (D) = wte[token] + wpe[t]; under tp the rows of wte are split, so each rank looks up the
 * token only if it holds its row (zeros otherwise) and the sum over tp is the row. */
static mpt_status embed_(mpt_decode *d, int32_t token, int t, mpt_error *err) {
    const mpt_gpt *m = d->m;
    const mpt_param_table *pt = &m->pt;
    int D = m->cfg.d_model;
    const float *wpe = m->w[pt->wpe] + (size_t)t * D;
    if (m->tp == 1) {
        const float *wte = m->w[pt->wte] + (size_t)token * D;
        for (int i = 0; i < D; i++) d->x[i] = wte[i] + wpe[i];
        return MPT_OK;
    }
    mpt_embed_masked_forward(d->x, &token, m->w[pt->wte], 1, 1, D, m->v0, m->Vl);
    mpt_status st = m->ops.reduce_from_tp(m->ops.ctx, d->x, (size_t)D, err);
    if (!st)
        for (int i = 0; i < D; i++) d->x[i] += wpe[i];
    return st;
}

/* ln_f and the head: the logits of the whole (padded) vocabulary in d->logits. */
static mpt_status head_(mpt_decode *d, mpt_error *err) {
    const mpt_gpt *m = d->m;
    const mpt_param_table *pt = &m->pt;
    const mpt_config *c = &m->cfg;
    int D = c->d_model;
    mpt_layernorm_forward(d->ln, &d->stats[0], &d->stats[1], d->x, m->w[pt->lnf_w],
                          m->w[pt->lnf_b], 1, D);
    if (m->tp == 1) {
        mpt_lmhead_forward(d->logits, d->ln, m->w[pt->lm_head], 1, D, c->vocab, c->padded_vocab);
        return MPT_OK;
    }
    /* padded rows (past Vr) are not computed: zero them so the gathered row is defined */
    memset(d->local, 0, (size_t)m->Vl * sizeof *d->local);
    if (m->Vr > 0) mpt_lmhead_forward(d->local, d->ln, m->w[pt->lm_head], 1, D, m->Vr, m->Vl);
    return m->ops.gather_seq(m->ops.ctx, d->local, d->logits, (size_t)m->Vl, err);
}

mpt_status mpt_decode_step(mpt_decode *d, int32_t token, const float **logits, mpt_error *err) {
    const mpt_gpt *m = d->m;
    const mpt_config *c = &m->cfg;
    int D = c->d_model, Dl = m->Dl, Fl = m->Fl, t = d->pos;
    mpt_status st = MPT_OK;
    if (logits) *logits = NULL;
    if (t >= d->T)
        return mpt_fail(err, MPT_ERR_INPUT, "the key/value cache holds %d positions: reset it",
                        d->T);
    if (token < 0 || token >= c->vocab)
        return mpt_fail(err, MPT_ERR_INPUT, "token %d is outside the vocabulary of %d",
                        (int)token, c->vocab);
    if (m->first && (st = embed_(d, token, t, err))) return st;
    size_t per = (size_t)d->T * Dl;
    for (int l = 0; l < m->nl; l++) {
        float *kc = d->k + (size_t)l * per, *vc = d->v + (size_t)l * per;
        mpt_layernorm_forward(d->ln, &d->stats[0], &d->stats[1], d->x, W_(m, l, MPT_LN1_W),
                              W_(m, l, MPT_LN1_B), 1, D);
        mpt_matmul_forward(d->qkv, d->ln, W_(m, l, MPT_QKV_W), W_(m, l, MPT_QKV_B), 1, D,
                           3 * Dl);
        memcpy(kc + (size_t)t * Dl, d->qkv + Dl, (size_t)Dl * sizeof(float));
        memcpy(vc + (size_t)t * Dl, d->qkv + 2 * (size_t)Dl, (size_t)Dl * sizeof(float));
        attend_(d, kc, vc, t);
        if ((st = row_parallel_(m, d->tmp, d->atty, W_(m, l, MPT_ATTPROJ_W),
                                W_(m, l, MPT_ATTPROJ_B), Dl, D, err)))
            return st;
        mpt_residual_forward(d->x, d->x, d->tmp, (size_t)D);
        mpt_layernorm_forward(d->ln, &d->stats[0], &d->stats[1], d->x, W_(m, l, MPT_LN2_W),
                              W_(m, l, MPT_LN2_B), 1, D);
        if (m->pt.router[l] != SIZE_MAX) { /* MoE block: the token's top-K experts */
            mpt_moe_block b = {.cfg = c, .ep = 1, .w = m->w + m->pt.router[l]};
            if ((st = mpt_moe_forward(&b, d->tmp, d->ln, 1, d->moe_act, d->moe_work, 0.0f, NULL,
                                      err)))
                return st;
            mpt_residual_forward(d->x, d->x, d->tmp, (size_t)D);
            continue;
        }
        mpt_matmul_forward(d->fch, d->ln, W_(m, l, MPT_FC_W), W_(m, l, MPT_FC_B), 1, D, Fl);
        mpt_gelu_forward(d->fchg, d->fch, (size_t)Fl);
        if ((st = row_parallel_(m, d->tmp, d->fchg, W_(m, l, MPT_FCPROJ_W),
                                W_(m, l, MPT_FCPROJ_B), Fl, D, err)))
            return st;
        mpt_residual_forward(d->x, d->x, d->tmp, (size_t)D);
    }
    d->pos = t + 1;
    if (!m->last) return MPT_OK;
    if ((st = head_(d, err))) return st;
    if (logits) *logits = d->logits;
    return MPT_OK;
}
