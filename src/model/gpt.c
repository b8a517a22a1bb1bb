/* gpt.c — GPT-2 forward and backward on one rank (see gpt.h). */
#include "model/gpt.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/kernels.h"
#include "core/rng.h"

int mpt_gpt_buffer_sizes(const mpt_config *cfg, int B, int T, int training, int tp,
                         size_t act_n[MPT_ACT_SLOTS], size_t work_n[MPT_WORK_SLOTS]) {
    size_t L = (size_t)cfg->n_layer, D = (size_t)cfg->d_model, t = (size_t)(tp > 0 ? tp : 1);
    size_t Dl = D / t, Fl = (size_t)cfg->ffn / t, Hl = (size_t)cfg->n_head / t;
    size_t Vl = (size_t)cfg->padded_vocab / t;
    size_t N, ND, NF, BHTT, LN;
    if (!mpt_size_mul((size_t)B, (size_t)T, &N) || !mpt_size_mul(N, D, &ND) ||
        !mpt_size_mul(N, Fl, &NF) || !mpt_size_mul(N * Hl, (size_t)T, &BHTT) ||
        !mpt_size_mul(L, N, &LN) || !mpt_size_mul(LN, 3 * Fl + 3 * D, &(size_t){0}) ||
        !mpt_size_mul(N, Vl, &(size_t){0}))
        return 0;
    size_t NDl = N * Dl;
    act_n[MPT_ACT_ENCODED] = ND;
    act_n[MPT_ACT_LN1] = L * ND;
    act_n[MPT_ACT_LN1_MEAN] = LN;
    act_n[MPT_ACT_LN1_RSTD] = LN;
    act_n[MPT_ACT_QKV] = L * 3 * NDl;
    act_n[MPT_ACT_ATTY] = L * NDl;
    act_n[MPT_ACT_ATT] = L * BHTT;
    act_n[MPT_ACT_RES2] = L * ND;
    act_n[MPT_ACT_LN2] = L * ND;
    act_n[MPT_ACT_LN2_MEAN] = LN;
    act_n[MPT_ACT_LN2_RSTD] = LN;
    act_n[MPT_ACT_FCH] = L * NF;
    act_n[MPT_ACT_FCH_GELU] = L * NF;
    act_n[MPT_ACT_RES3] = L * ND;
    act_n[MPT_ACT_LNF] = ND;
    act_n[MPT_ACT_LNF_MEAN] = N;
    act_n[MPT_ACT_LNF_RSTD] = N;
    act_n[MPT_ACT_LOGITS] = N * Vl;
    act_n[MPT_ACT_LOSSES] = N;
    memset(work_n, 0, MPT_WORK_SLOTS * sizeof *work_n);
    work_n[MPT_WORK_DTMP] = ND; /* forward scratch, needed for inference too */
    if (t > 1) work_n[MPT_WORK_CE] = 3 * N;
    if (training) {
        work_n[MPT_WORK_DRES] = ND;
        work_n[MPT_WORK_DQKV] = 3 * NDl;
        work_n[MPT_WORK_DATT] = BHTT;
        work_n[MPT_WORK_DFCG] = NF;
        work_n[MPT_WORK_DFC] = NF;
    }
    return 1;
}

mpt_status mpt_gpt_init(mpt_gpt *m, const mpt_config *cfg, int B, int T, int flags,
                        size_t unit_align, mpt_comm *tp, mpt_arena *arena, mpt_error *err) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    m->B = B;
    m->T = T;
    m->flags = flags;
    m->arena = arena;
    m->tp = tp ? tp->size : 1;
    m->tp_rank = tp ? tp->rank : 0;
    m->tp_comm = m->tp > 1 ? tp : NULL;
    if (T > cfg->n_positions)
        return mpt_fail(err, MPT_ERR_INPUT,
                        "sequence length %d exceeds the model's %d positions: lower --seq-len", T,
                        cfg->n_positions);
    mpt_status st = mpt_params_build_tp(&m->pt, cfg, m->tp, m->tp_rank, unit_align, err);
    if (st) return st;
    m->Dl = cfg->d_model / m->tp;
    m->Hl = cfg->n_head / m->tp;
    m->Fl = cfg->ffn / m->tp;
    m->Vl = cfg->padded_vocab / m->tp;
    m->v0 = m->tp_rank * m->Vl;
    m->Vr = cfg->vocab - m->v0 < 0 ? 0 : cfg->vocab - m->v0 < m->Vl ? cfg->vocab - m->v0 : m->Vl;
    int training = (flags & MPT_GPT_BACKWARD) != 0;
    m->w = calloc(m->pt.n, sizeof *m->w);
    m->g = calloc(m->pt.n, sizeof *m->g);
    if (!m->w || !m->g) {
        mpt_gpt_free(m);
        return mpt_fail(err, MPT_ERR_RUN, "out of memory for the tensor tables");
    }
    if (!mpt_gpt_buffer_sizes(cfg, B, T, training, m->tp, m->act_n, m->work_n)) {
        mpt_gpt_free(m);
        return mpt_fail(err, MPT_ERR_INPUT, "batch %d x %d tokens is too large to address", B, T);
    }
    if (flags & MPT_GPT_PARAMS)
        st = mpt_arena_alloc(arena, MPT_MEM_PARAMS, m->pt.total, sizeof(float), &m->params, err);
    if (!st && (flags & MPT_GPT_GRADS))
        st = mpt_arena_alloc(arena, MPT_MEM_GRADS, m->pt.total, sizeof(float), &m->grads, err);
    for (int i = 0; !st && i < MPT_ACT_SLOTS; i++)
        st = mpt_arena_alloc(arena, MPT_MEM_ACTIVATIONS, m->act_n[i], sizeof(float), &m->act[i],
                             err);
    for (int i = 0; !st && i < MPT_WORK_SLOTS; i++)
        if (m->work_n[i])
            st = mpt_arena_alloc(arena, MPT_MEM_WORKSPACE, m->work_n[i], sizeof(float),
                                 &m->work[i], err);
    if (st) {
        mpt_gpt_free(m);
        return st;
    }
    for (int u = 0; u < m->pt.n_units; u++) {
        if (m->params) mpt_gpt_point_unit(m, m->w, u, m->params + m->pt.unit_begin[u]);
        if (m->grads) mpt_gpt_point_unit(m, m->g, u, m->grads + m->pt.unit_begin[u]);
    }
    return MPT_OK;
}

void mpt_gpt_point_unit(mpt_gpt *m, float **table, int u, float *base) {
    size_t b = m->pt.unit_begin[u], e = m->pt.unit_end[u];
    for (size_t i = 0; i < m->pt.n; i++) {
        size_t off = m->pt.t[i].offset;
        if (off >= b && off < e) table[i] = base + (off - b);
    }
}

void mpt_gpt_free(mpt_gpt *m) {
    if (!m || !m->arena) return;
    mpt_arena_release(m->arena, MPT_MEM_PARAMS, m->params, m->pt.total, sizeof(float));
    mpt_arena_release(m->arena, MPT_MEM_GRADS, m->grads, m->pt.total, sizeof(float));
    for (int i = 0; i < MPT_ACT_SLOTS; i++)
        mpt_arena_release(m->arena, MPT_MEM_ACTIVATIONS, m->act[i], m->act_n[i], sizeof(float));
    for (int i = 0; i < MPT_WORK_SLOTS; i++)
        mpt_arena_release(m->arena, MPT_MEM_WORKSPACE, m->work[i], m->work_n[i], sizeof(float));
    free(m->w);
    free(m->g);
    mpt_params_free(&m->pt);
    memset(m, 0, sizeof *m);
}

void mpt_params_init_range(const mpt_param_table *pt, float *dst, size_t begin, size_t n,
                           uint64_t seed) {
    memset(dst, 0, n * sizeof *dst); /* padding rows and unit padding stay zero */
    size_t end = begin + n;
    for (size_t i = 0; i < pt->n; i++) {
        const mpt_tensor *t = &pt->t[i];
        size_t t0 = t->offset, t1 = t->offset + t->numel;
        size_t a = t0 > begin ? t0 : begin, e = t1 < end ? t1 : end;
        if (a >= e) continue;
        float *p = dst + (a - begin);
        size_t k0 = a - t0, count = e - a, full_n = mpt_tensor_ckpt_numel(t);
        uint64_t key = mpt_rng_key(seed, t->name);
        if (t->split == MPT_SPLIT_NONE || t->split == MPT_SPLIT_ROWS) {
            /* stored elements are a contiguous run of the full tensor */
            size_t base = t->split == MPT_SPLIT_ROWS ? (size_t)pt->tp_rank * t->numel : 0;
            size_t first = base + k0, real = first < full_n ? full_n - first : 0;
            if (real > count) real = count;
            if (t->init_std > 0.0f) mpt_rng_fill_normal(p, real, key, first, t->init_std);
            else
                for (size_t j = 0; j < real; j++) p[j] = t->init_value;
            continue;
        }
        for (size_t j = 0; j < count; j++) {
            size_t full = mpt_tensor_full_index(t, pt->tp, pt->tp_rank, k0 + j);
            if (full == SIZE_MAX) continue;
            p[j] = t->init_std > 0.0f ? t->init_std * mpt_rng_normal(key, full) : t->init_value;
        }
    }
}

void mpt_params_init_values(const mpt_param_table *pt, float *params, uint64_t seed) {
    mpt_params_init_range(pt, params, 0, pt->total, seed);
}

void mpt_gpt_init_weights(mpt_gpt *m, uint64_t seed) { mpt_params_init_values(&m->pt, m->params, seed); }

/* Layer l's slice of a per-layer activation buffer. */
static float *lay_(const mpt_gpt *m, mpt_act_slot s, int l) {
    return m->act[s] + (size_t)l * (m->act_n[s] / (size_t)m->cfg.n_layer);
}

#define W_(m, l, slot) ((m)->w[(m)->pt.layer[(size_t)(l) * MPT_LAYER_SLOTS + (slot)]])
#define G_(m, l, slot) ((m)->g[(m)->pt.layer[(size_t)(l) * MPT_LAYER_SLOTS + (slot)]])
#define TRY_(call)                                                                            \
    do {                                                                                      \
        mpt_status st_ = (call);                                                              \
        if (st_) return st_;                                                                  \
    } while (0)

static mpt_status need_(mpt_gpt *m, int unit, mpt_gpt_phase ph, mpt_error *err) {
    return m->hooks.need ? m->hooks.need(m->hooks.ctx, unit, ph, err) : MPT_OK;
}
static mpt_status done_(mpt_gpt *m, int unit, mpt_gpt_phase ph, mpt_error *err) {
    return m->hooks.done ? m->hooks.done(m->hooks.ctx, unit, ph, err) : MPT_OK;
}
static mpt_status grads_done_(mpt_gpt *m, int unit, mpt_error *err) {
    return m->hooks.grads_done ? m->hooks.grads_done(m->hooks.ctx, unit, err) : MPT_OK;
}
/* Sum over the tensor-parallel group (a no-op without one). */
static mpt_status tp_sum_(mpt_gpt *m, float *buf, size_t n, mpt_error *err) {
    return m->tp_comm ? mpt_allreduce_sum(m->tp_comm, buf, n, err) : MPT_OK;
}

/* Row-parallel linear layer: out(N,OC) = sum over tp of inp_i(N,C) W_i(C,OC), then + bias
 * (replicated, added once after the sum). */
static mpt_status row_parallel_(mpt_gpt *m, float *out, const float *inp, const float *w,
                                const float *bias, size_t N, int C, int OC, mpt_error *err) {
    if (!m->tp_comm) {
        mpt_matmul_forward(out, inp, w, bias, N, C, OC);
        return MPT_OK;
    }
    mpt_matmul_forward(out, inp, w, NULL, N, C, OC);
    mpt_status st = tp_sum_(m, out, N * (size_t)OC, err);
    if (!st) mpt_add_rows(out, bias, N, OC);
    return st;
}

static mpt_status embed_(mpt_gpt *m, const int32_t *inputs, int B, int T, mpt_error *err) {
    const mpt_param_table *pt = &m->pt;
    int D = m->cfg.d_model;
    float *enc = m->act[MPT_ACT_ENCODED];
    if (!m->tp_comm) {
        mpt_encoder_forward(enc, inputs, m->w[pt->wte], m->w[pt->wpe], B, T, D);
        return MPT_OK;
    }
    mpt_embed_masked_forward(enc, inputs, m->w[pt->wte], B, T, D, m->v0, m->Vl);
    mpt_status st = tp_sum_(m, enc, (size_t)B * T * D, err);
    if (!st) mpt_positions_forward(enc, m->w[pt->wpe], B, T, D);
    return st;
}

/* Cross-entropy over the vocabulary split across tp: three all-reduced numbers per token. */
static mpt_status vocab_ce_(mpt_gpt *m, const int32_t *targets, size_t N, float dloss,
                            mpt_error *err) {
    float *logits = m->act[MPT_ACT_LOGITS], *losses = m->act[MPT_ACT_LOSSES];
    float *mx = m->work[MPT_WORK_CE], *se = mx + N, *tl = se + N;
    mpt_vocab_rowmax(mx, logits, N, m->Vr, m->Vl);
    mpt_status st = mpt_allreduce_max(m->tp_comm, mx, N, err);
    if (st) return st;
    mpt_vocab_sumexp(se, tl, logits, mx, targets, N, m->Vr, m->Vl, m->v0);
    if ((st = tp_sum_(m, se, 2 * N, err))) return st; /* se and tl together */
    for (size_t i = 0; i < N; i++) losses[i] = logf(se[i]) - (tl[i] - mx[i]);
    mpt_vocab_grad(logits, mx, se, targets, N, m->Vr, m->Vl, m->v0, dloss);
    return MPT_OK;
}

mpt_status mpt_gpt_forward(mpt_gpt *m, const int32_t *inputs, const int32_t *targets, int B,
                           int T, float dloss, double *loss_sum, mpt_error *err) {
    const mpt_config *c = &m->cfg;
    const mpt_param_table *pt = &m->pt;
    int D = c->d_model, Dl = m->Dl, Fl = m->Fl, Hl = m->Hl, L = c->n_layer;
    size_t N = (size_t)B * T;
    float *scratch = m->work[MPT_WORK_DTMP];
    TRY_(need_(m, 0, MPT_PHASE_FORWARD, err));
    TRY_(embed_(m, inputs, B, T, err));
    TRY_(done_(m, 0, MPT_PHASE_FORWARD, err));
    for (int l = 0; l < L; l++) {
        TRY_(need_(m, l + 1, MPT_PHASE_FORWARD, err));
        const float *in = l == 0 ? m->act[MPT_ACT_ENCODED] : lay_(m, MPT_ACT_RES3, l - 1);
        float *ln1 = lay_(m, MPT_ACT_LN1, l), *qkv = lay_(m, MPT_ACT_QKV, l);
        float *atty = lay_(m, MPT_ACT_ATTY, l), *res2 = lay_(m, MPT_ACT_RES2, l);
        float *ln2 = lay_(m, MPT_ACT_LN2, l), *fch = lay_(m, MPT_ACT_FCH, l);
        float *fchg = lay_(m, MPT_ACT_FCH_GELU, l), *res3 = lay_(m, MPT_ACT_RES3, l);
        mpt_layernorm_forward(ln1, lay_(m, MPT_ACT_LN1_MEAN, l), lay_(m, MPT_ACT_LN1_RSTD, l), in,
                              W_(m, l, MPT_LN1_W), W_(m, l, MPT_LN1_B), N, D);
        mpt_matmul_forward(qkv, ln1, W_(m, l, MPT_QKV_W), W_(m, l, MPT_QKV_B), N, D, 3 * Dl);
        mpt_attention_forward(atty, lay_(m, MPT_ACT_ATT, l), qkv, B, T, Dl, Hl);
        TRY_(row_parallel_(m, scratch, atty, W_(m, l, MPT_ATTPROJ_W), W_(m, l, MPT_ATTPROJ_B), N,
                           Dl, D, err));
        mpt_residual_forward(res2, in, scratch, N * D);
        mpt_layernorm_forward(ln2, lay_(m, MPT_ACT_LN2_MEAN, l), lay_(m, MPT_ACT_LN2_RSTD, l),
                              res2, W_(m, l, MPT_LN2_W), W_(m, l, MPT_LN2_B), N, D);
        mpt_matmul_forward(fch, ln2, W_(m, l, MPT_FC_W), W_(m, l, MPT_FC_B), N, D, Fl);
        mpt_gelu_forward(fchg, fch, N * Fl);
        TRY_(row_parallel_(m, scratch, fchg, W_(m, l, MPT_FCPROJ_W), W_(m, l, MPT_FCPROJ_B), N, Fl,
                           D, err));
        mpt_residual_forward(res3, res2, scratch, N * D);
        TRY_(done_(m, l + 1, MPT_PHASE_FORWARD, err));
    }
    TRY_(need_(m, L + 1, MPT_PHASE_FORWARD, err));
    if (c->tied) TRY_(need_(m, 0, MPT_PHASE_FORWARD, err));
    float *lnf = m->act[MPT_ACT_LNF], *logits = m->act[MPT_ACT_LOGITS];
    mpt_layernorm_forward(lnf, m->act[MPT_ACT_LNF_MEAN], m->act[MPT_ACT_LNF_RSTD],
                          lay_(m, MPT_ACT_RES3, L - 1), m->w[pt->lnf_w], m->w[pt->lnf_b], N, D);
    mpt_lmhead_forward(logits, lnf, m->w[pt->lm_head], N, D, m->Vr, m->Vl);
    if (c->tied) TRY_(done_(m, 0, MPT_PHASE_FORWARD, err));
    TRY_(done_(m, L + 1, MPT_PHASE_FORWARD, err));
    if (!targets) {
        if (loss_sum) *loss_sum = 0.0;
        return MPT_OK;
    }
    float *losses = m->act[MPT_ACT_LOSSES];
    if (m->tp_comm) TRY_(vocab_ce_(m, targets, N, dloss, err));
    else mpt_crossentropy_fused(logits, losses, targets, N, c->vocab, c->padded_vocab, dloss);
    double sum = 0.0;
    for (size_t i = 0; i < N; i++) sum += losses[i];
    if (loss_sum) *loss_sum = sum;
    return MPT_OK;
}

mpt_status mpt_gpt_backward(mpt_gpt *m, const int32_t *inputs, int B, int T, mpt_error *err) {
    const mpt_config *c = &m->cfg;
    const mpt_param_table *pt = &m->pt;
    int D = c->d_model, Dl = m->Dl, Fl = m->Fl, Hl = m->Hl, L = c->n_layer;
    size_t N = (size_t)B * T;
    float *dres = m->work[MPT_WORK_DRES], *dtmp = m->work[MPT_WORK_DTMP];
    float *dqkv = m->work[MPT_WORK_DQKV], *datt = m->work[MPT_WORK_DATT];
    float *dfcg = m->work[MPT_WORK_DFCG], *dfc = m->work[MPT_WORK_DFC];
    size_t ND = N * (size_t)D, NDl = N * (size_t)Dl, NF = N * (size_t)Fl;

    TRY_(need_(m, L + 1, MPT_PHASE_BACKWARD, err));
    if (c->tied) TRY_(need_(m, 0, MPT_PHASE_BACKWARD, err));
    memset(dtmp, 0, ND * sizeof *dtmp);
    mpt_lmhead_backward(dtmp, m->g[pt->lm_head], m->act[MPT_ACT_LOGITS], m->act[MPT_ACT_LNF],
                        m->w[pt->lm_head], N, D, m->Vr, m->Vl);
    TRY_(tp_sum_(m, dtmp, ND, err)); /* each rank saw its vocabulary slice */
    memset(dres, 0, ND * sizeof *dres);
    mpt_layernorm_backward(dres, m->g[pt->lnf_w], m->g[pt->lnf_b], dtmp,
                           lay_(m, MPT_ACT_RES3, L - 1), m->w[pt->lnf_w],
                           m->act[MPT_ACT_LNF_MEAN], m->act[MPT_ACT_LNF_RSTD], N, D);
    TRY_(grads_done_(m, L + 1, err));
    for (int l = L - 1; l >= 0; l--) {
        TRY_(need_(m, l + 1, MPT_PHASE_BACKWARD, err));
        const float *in = l == 0 ? m->act[MPT_ACT_ENCODED] : lay_(m, MPT_ACT_RES3, l - 1);
        /* dres holds dL/d(block output); MLP half. Row-parallel c_proj: its input gradient is
         * local; column-parallel c_fc: its input gradient is summed over tp. */
        memset(dfcg, 0, NF * sizeof *dfcg);
        mpt_matmul_backward(dfcg, G_(m, l, MPT_FCPROJ_W), G_(m, l, MPT_FCPROJ_B), dres,
                            lay_(m, MPT_ACT_FCH_GELU, l), W_(m, l, MPT_FCPROJ_W), N, Fl, D);
        memset(dfc, 0, NF * sizeof *dfc);
        mpt_gelu_backward(dfc, lay_(m, MPT_ACT_FCH, l), dfcg, NF);
        memset(dtmp, 0, ND * sizeof *dtmp);
        mpt_matmul_backward(dtmp, G_(m, l, MPT_FC_W), G_(m, l, MPT_FC_B), dfc,
                            lay_(m, MPT_ACT_LN2, l), W_(m, l, MPT_FC_W), N, D, Fl);
        TRY_(tp_sum_(m, dtmp, ND, err));
        mpt_layernorm_backward(dres, G_(m, l, MPT_LN2_W), G_(m, l, MPT_LN2_B), dtmp,
                               lay_(m, MPT_ACT_RES2, l), W_(m, l, MPT_LN2_W),
                               lay_(m, MPT_ACT_LN2_MEAN, l), lay_(m, MPT_ACT_LN2_RSTD, l), N, D);
        /* dres now holds dL/d(res2); attention half */
        memset(dtmp, 0, NDl * sizeof *dtmp);
        mpt_matmul_backward(dtmp, G_(m, l, MPT_ATTPROJ_W), G_(m, l, MPT_ATTPROJ_B), dres,
                            lay_(m, MPT_ACT_ATTY, l), W_(m, l, MPT_ATTPROJ_W), N, Dl, D);
        memset(dqkv, 0, 3 * NDl * sizeof *dqkv);
        mpt_attention_backward(dqkv, datt, dtmp, lay_(m, MPT_ACT_QKV, l), lay_(m, MPT_ACT_ATT, l),
                               B, T, Dl, Hl);
        memset(dtmp, 0, ND * sizeof *dtmp);
        mpt_matmul_backward(dtmp, G_(m, l, MPT_QKV_W), G_(m, l, MPT_QKV_B), dqkv,
                            lay_(m, MPT_ACT_LN1, l), W_(m, l, MPT_QKV_W), N, D, 3 * Dl);
        /* The key bias adds q.b_k to every score of a query's row, a shift the softmax ignores:
         * its gradient is exactly zero. Computed, it is rounding noise (~1e-11) that AdamW would
         * normalise into lr-sized steps of random sign, so it is set to its exact value. */
        memset(G_(m, l, MPT_QKV_B) + Dl, 0, (size_t)Dl * sizeof(float));
        TRY_(tp_sum_(m, dtmp, ND, err));
        mpt_layernorm_backward(dres, G_(m, l, MPT_LN1_W), G_(m, l, MPT_LN1_B), dtmp, in,
                               W_(m, l, MPT_LN1_W), lay_(m, MPT_ACT_LN1_MEAN, l),
                               lay_(m, MPT_ACT_LN1_RSTD, l), N, D);
        TRY_(grads_done_(m, l + 1, err));
    }
    if (!c->tied) TRY_(need_(m, 0, MPT_PHASE_BACKWARD, err));
    if (m->tp_comm) {
        mpt_embed_masked_backward(m->g[pt->wte], dres, inputs, B, T, D, m->v0, m->Vl);
        mpt_positions_backward(m->g[pt->wpe], dres, B, T, D);
    } else {
        mpt_encoder_backward(m->g[pt->wte], m->g[pt->wpe], dres, inputs, B, T, D);
    }
    return grads_done_(m, 0, err);
}
