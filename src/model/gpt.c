/* gpt.c — GPT-2 forward and backward on one rank (see gpt.h). */
#include "model/gpt.h"

#include <string.h>

#include "core/kernels.h"
#include "core/rng.h"

int mpt_gpt_buffer_sizes(const mpt_config *cfg, int B, int T, int training,
                         size_t act_n[MPT_ACT_SLOTS], size_t work_n[MPT_WORK_SLOTS]) {
    size_t L = (size_t)cfg->n_layer, D = (size_t)cfg->d_model, F = (size_t)cfg->ffn;
    size_t H = (size_t)cfg->n_head, Vp = (size_t)cfg->padded_vocab;
    size_t N, ND, NF, BHTT, LN;
    if (!mpt_size_mul((size_t)B, (size_t)T, &N) || !mpt_size_mul(N, D, &ND) ||
        !mpt_size_mul(N, F, &NF) || !mpt_size_mul(N * H, (size_t)T, &BHTT) ||
        !mpt_size_mul(L, N, &LN) || !mpt_size_mul(LN, 3 * F + 3 * D, &(size_t){0}) ||
        !mpt_size_mul(N, Vp, &(size_t){0}))
        return 0;
    act_n[MPT_ACT_ENCODED] = ND;
    act_n[MPT_ACT_LN1] = L * ND;
    act_n[MPT_ACT_LN1_MEAN] = LN;
    act_n[MPT_ACT_LN1_RSTD] = LN;
    act_n[MPT_ACT_QKV] = L * 3 * ND;
    act_n[MPT_ACT_ATTY] = L * ND;
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
    act_n[MPT_ACT_LOGITS] = N * Vp;
    act_n[MPT_ACT_LOSSES] = N;
    memset(work_n, 0, MPT_WORK_SLOTS * sizeof *work_n);
    work_n[MPT_WORK_DTMP] = ND; /* forward scratch, needed for inference too */
    if (training) {
        work_n[MPT_WORK_DRES] = ND;
        work_n[MPT_WORK_DQKV] = 3 * ND;
        work_n[MPT_WORK_DATT] = BHTT;
        work_n[MPT_WORK_DFCG] = NF;
        work_n[MPT_WORK_DFC] = NF;
    }
    return 1;
}

mpt_status mpt_gpt_init(mpt_gpt *m, const mpt_config *cfg, int B, int T, int training,
                        mpt_arena *arena, mpt_error *err) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    m->B = B;
    m->T = T;
    m->training = training;
    m->arena = arena;
    if (T > cfg->n_positions)
        return mpt_fail(err, MPT_ERR_INPUT,
                        "sequence length %d exceeds the model's %d positions: lower --seq-len", T,
                        cfg->n_positions);
    mpt_status st = mpt_params_build(&m->pt, cfg, err);
    if (st) return st;
    if (!mpt_gpt_buffer_sizes(cfg, B, T, training, m->act_n, m->work_n)) {
        mpt_gpt_free(m);
        return mpt_fail(err, MPT_ERR_INPUT, "batch %d x %d tokens is too large to address", B, T);
    }
    st = mpt_arena_alloc(arena, MPT_MEM_PARAMS, m->pt.total, sizeof(float), &m->params, err);
    if (!st && training)
        st = mpt_arena_alloc(arena, MPT_MEM_GRADS, m->pt.total, sizeof(float), &m->grads, err);
    for (int i = 0; !st && i < MPT_ACT_SLOTS; i++)
        st = mpt_arena_alloc(arena, MPT_MEM_ACTIVATIONS, m->act_n[i], sizeof(float), &m->act[i],
                             err);
    for (int i = 0; !st && i < MPT_WORK_SLOTS; i++)
        if (m->work_n[i])
            st = mpt_arena_alloc(arena, MPT_MEM_WORKSPACE, m->work_n[i], sizeof(float),
                                 &m->work[i], err);
    if (st) mpt_gpt_free(m);
    return st;
}

void mpt_gpt_free(mpt_gpt *m) {
    if (!m || !m->arena) return;
    mpt_arena_release(m->arena, MPT_MEM_PARAMS, m->params, m->pt.total, sizeof(float));
    mpt_arena_release(m->arena, MPT_MEM_GRADS, m->grads, m->pt.total, sizeof(float));
    for (int i = 0; i < MPT_ACT_SLOTS; i++)
        mpt_arena_release(m->arena, MPT_MEM_ACTIVATIONS, m->act[i], m->act_n[i], sizeof(float));
    for (int i = 0; i < MPT_WORK_SLOTS; i++)
        mpt_arena_release(m->arena, MPT_MEM_WORKSPACE, m->work[i], m->work_n[i], sizeof(float));
    mpt_params_free(&m->pt);
    memset(m, 0, sizeof *m);
}

void mpt_gpt_init_weights(mpt_gpt *m, uint64_t seed) {
    for (size_t i = 0; i < m->pt.n; i++) {
        const mpt_tensor *t = &m->pt.t[i];
        float *p = m->params + t->offset;
        size_t n = mpt_tensor_ckpt_numel(t);
        if (t->init_std > 0.0f) {
            mpt_rng_fill_normal(p, n, mpt_rng_key(seed, t->name), 0, t->init_std);
        } else {
            for (size_t j = 0; j < n; j++) p[j] = t->init_value;
        }
        memset(p + n, 0, (t->numel - n) * sizeof *p); /* padding rows */
    }
}

/* Pointers to layer l's slice of a per-layer activation buffer. */
static float *lay_(const mpt_gpt *m, mpt_act_slot s, int l) {
    return m->act[s] + (size_t)l * (m->act_n[s] / (size_t)m->cfg.n_layer);
}

#define W_(m, l, slot) mpt_gpt_param(m, (m)->pt.layer[(size_t)(l) * MPT_LAYER_SLOTS + (slot)])
#define G_(m, l, slot) mpt_gpt_grad(m, (m)->pt.layer[(size_t)(l) * MPT_LAYER_SLOTS + (slot)])

double mpt_gpt_forward(mpt_gpt *m, const int32_t *inputs, const int32_t *targets, int B, int T,
                       float dloss) {
    const mpt_config *c = &m->cfg;
    int D = c->d_model, F = c->ffn, H = c->n_head, L = c->n_layer;
    size_t N = (size_t)B * T;
    float *scratch = m->work[MPT_WORK_DTMP];
    mpt_encoder_forward(m->act[MPT_ACT_ENCODED], inputs, mpt_gpt_param(m, m->pt.wte),
                        mpt_gpt_param(m, m->pt.wpe), B, T, D);
    for (int l = 0; l < L; l++) {
        const float *in = l == 0 ? m->act[MPT_ACT_ENCODED] : lay_(m, MPT_ACT_RES3, l - 1);
        float *ln1 = lay_(m, MPT_ACT_LN1, l), *qkv = lay_(m, MPT_ACT_QKV, l);
        float *atty = lay_(m, MPT_ACT_ATTY, l), *res2 = lay_(m, MPT_ACT_RES2, l);
        float *ln2 = lay_(m, MPT_ACT_LN2, l), *fch = lay_(m, MPT_ACT_FCH, l);
        float *fchg = lay_(m, MPT_ACT_FCH_GELU, l), *res3 = lay_(m, MPT_ACT_RES3, l);
        mpt_layernorm_forward(ln1, lay_(m, MPT_ACT_LN1_MEAN, l), lay_(m, MPT_ACT_LN1_RSTD, l), in,
                              W_(m, l, MPT_LN1_W), W_(m, l, MPT_LN1_B), N, D);
        mpt_matmul_forward(qkv, ln1, W_(m, l, MPT_QKV_W), W_(m, l, MPT_QKV_B), N, D, 3 * D);
        mpt_attention_forward(atty, lay_(m, MPT_ACT_ATT, l), qkv, B, T, D, H);
        mpt_matmul_forward(scratch, atty, W_(m, l, MPT_ATTPROJ_W), W_(m, l, MPT_ATTPROJ_B), N, D,
                           D);
        mpt_residual_forward(res2, in, scratch, N * D);
        mpt_layernorm_forward(ln2, lay_(m, MPT_ACT_LN2_MEAN, l), lay_(m, MPT_ACT_LN2_RSTD, l),
                              res2, W_(m, l, MPT_LN2_W), W_(m, l, MPT_LN2_B), N, D);
        mpt_matmul_forward(fch, ln2, W_(m, l, MPT_FC_W), W_(m, l, MPT_FC_B), N, D, F);
        mpt_gelu_forward(fchg, fch, N * F);
        mpt_matmul_forward(scratch, fchg, W_(m, l, MPT_FCPROJ_W), W_(m, l, MPT_FCPROJ_B), N, F, D);
        mpt_residual_forward(res3, res2, scratch, N * D);
    }
    float *lnf = m->act[MPT_ACT_LNF], *logits = m->act[MPT_ACT_LOGITS];
    mpt_layernorm_forward(lnf, m->act[MPT_ACT_LNF_MEAN], m->act[MPT_ACT_LNF_RSTD],
                          lay_(m, MPT_ACT_RES3, L - 1), mpt_gpt_param(m, m->pt.lnf_w),
                          mpt_gpt_param(m, m->pt.lnf_b), N, D);
    mpt_lmhead_forward(logits, lnf, mpt_gpt_param(m, m->pt.lm_head), N, D, c->vocab,
                       c->padded_vocab);
    if (!targets) return 0.0;
    float *losses = m->act[MPT_ACT_LOSSES];
    mpt_crossentropy_fused(logits, losses, targets, N, c->vocab, c->padded_vocab, dloss);
    double sum = 0.0;
    for (size_t i = 0; i < N; i++) sum += losses[i];
    return sum;
}

void mpt_gpt_backward(mpt_gpt *m, const int32_t *inputs, int B, int T) {
    const mpt_config *c = &m->cfg;
    int D = c->d_model, F = c->ffn, H = c->n_head, L = c->n_layer;
    size_t N = (size_t)B * T;
    float *dres = m->work[MPT_WORK_DRES], *dtmp = m->work[MPT_WORK_DTMP];
    float *dqkv = m->work[MPT_WORK_DQKV], *datt = m->work[MPT_WORK_DATT];
    float *dfcg = m->work[MPT_WORK_DFCG], *dfc = m->work[MPT_WORK_DFC];
    size_t ND = N * (size_t)D, NF = N * (size_t)F;

    memset(dtmp, 0, ND * sizeof *dtmp);
    mpt_lmhead_backward(dtmp, mpt_gpt_grad(m, m->pt.lm_head), m->act[MPT_ACT_LOGITS],
                        m->act[MPT_ACT_LNF], mpt_gpt_param(m, m->pt.lm_head), N, D, c->vocab,
                        c->padded_vocab);
    memset(dres, 0, ND * sizeof *dres);
    mpt_layernorm_backward(dres, mpt_gpt_grad(m, m->pt.lnf_w), mpt_gpt_grad(m, m->pt.lnf_b), dtmp,
                           lay_(m, MPT_ACT_RES3, L - 1), mpt_gpt_param(m, m->pt.lnf_w),
                           m->act[MPT_ACT_LNF_MEAN], m->act[MPT_ACT_LNF_RSTD], N, D);
    for (int l = L - 1; l >= 0; l--) {
        const float *in = l == 0 ? m->act[MPT_ACT_ENCODED] : lay_(m, MPT_ACT_RES3, l - 1);
        /* dres holds dL/d(block output); MLP half */
        memset(dfcg, 0, NF * sizeof *dfcg);
        mpt_matmul_backward(dfcg, G_(m, l, MPT_FCPROJ_W), G_(m, l, MPT_FCPROJ_B), dres,
                            lay_(m, MPT_ACT_FCH_GELU, l), W_(m, l, MPT_FCPROJ_W), N, F, D);
        memset(dfc, 0, NF * sizeof *dfc);
        mpt_gelu_backward(dfc, lay_(m, MPT_ACT_FCH, l), dfcg, NF);
        memset(dtmp, 0, ND * sizeof *dtmp);
        mpt_matmul_backward(dtmp, G_(m, l, MPT_FC_W), G_(m, l, MPT_FC_B), dfc,
                            lay_(m, MPT_ACT_LN2, l), W_(m, l, MPT_FC_W), N, D, F);
        mpt_layernorm_backward(dres, G_(m, l, MPT_LN2_W), G_(m, l, MPT_LN2_B), dtmp,
                               lay_(m, MPT_ACT_RES2, l), W_(m, l, MPT_LN2_W),
                               lay_(m, MPT_ACT_LN2_MEAN, l), lay_(m, MPT_ACT_LN2_RSTD, l), N, D);
        /* dres now holds dL/d(res2); attention half */
        memset(dtmp, 0, ND * sizeof *dtmp);
        mpt_matmul_backward(dtmp, G_(m, l, MPT_ATTPROJ_W), G_(m, l, MPT_ATTPROJ_B), dres,
                            lay_(m, MPT_ACT_ATTY, l), W_(m, l, MPT_ATTPROJ_W), N, D, D);
        memset(dqkv, 0, 3 * ND * sizeof *dqkv);
        mpt_attention_backward(dqkv, datt, dtmp, lay_(m, MPT_ACT_QKV, l), lay_(m, MPT_ACT_ATT, l),
                               B, T, D, H);
        memset(dtmp, 0, ND * sizeof *dtmp);
        mpt_matmul_backward(dtmp, G_(m, l, MPT_QKV_W), G_(m, l, MPT_QKV_B), dqkv,
                            lay_(m, MPT_ACT_LN1, l), W_(m, l, MPT_QKV_W), N, D, 3 * D);
        mpt_layernorm_backward(dres, G_(m, l, MPT_LN1_W), G_(m, l, MPT_LN1_B), dtmp, in,
                               W_(m, l, MPT_LN1_W), lay_(m, MPT_ACT_LN1_MEAN, l),
                               lay_(m, MPT_ACT_LN1_RSTD, l), N, D);
    }
    mpt_encoder_backward(mpt_gpt_grad(m, m->pt.wte), mpt_gpt_grad(m, m->pt.wpe), dres, inputs, B,
                         T, D);
}
