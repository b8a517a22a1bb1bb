/* gpt.c — the GPT engine's buffers, tensor tables and initial weights (see gpt.h); forward
 * and backward are in gpt_pass.c. */
#include "model/gpt.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/attention.h"
#include "core/gemm_bf16.h"
#include "core/kernels.h"
#include "core/rng.h"

void mpt_gpt_slot_layers(int rc, int nl, int slot_layers[MPT_ACT_SLOTS]) {
    static const mpt_act_slot per_layer[] = {
        MPT_ACT_LN1, MPT_ACT_LN1_MEAN, MPT_ACT_LN1_RSTD, MPT_ACT_QKV, MPT_ACT_ATTY, MPT_ACT_LSE,
        MPT_ACT_RES2, MPT_ACT_LN2, MPT_ACT_LN2_MEAN, MPT_ACT_LN2_RSTD, MPT_ACT_FCH,
        MPT_ACT_FCH_GELU, MPT_ACT_RES3, MPT_ACT_MOE, MPT_ACT_DY_FCPROJ, MPT_ACT_DY_FC,
        MPT_ACT_DY_ATTPROJ, MPT_ACT_DY_QKV, MPT_ACT_DY_LN};
    for (int i = 0; i < MPT_ACT_SLOTS; i++) slot_layers[i] = 0;
    for (size_t i = 0; i < sizeof per_layer / sizeof *per_layer; i++) {
        mpt_act_slot s = per_layer[i];
        /* selective keeps everything: the fused attention stores no s^2 term (gpt.h) */
        int one = rc == MPT_RECOMPUTE_FULL && s != MPT_ACT_RES3 && s < MPT_ACT_DY_FCPROJ;
        slot_layers[s] = one ? 1 : nl;
    }
}

mpt_dtype mpt_gpt_act_dtype(const mpt_config *cfg, int bf16, mpt_act_slot s) {
    if (!bf16) return MPT_F32;
    if (s == MPT_ACT_LN1 || s == MPT_ACT_ATTY || s == MPT_ACT_FCH_GELU) return MPT_BF16;
    return s == MPT_ACT_LN2 && cfg->experts == 0 ? MPT_BF16 : MPT_F32;
}

int mpt_gpt_buffer_sizes(const mpt_config *cfg, int B, int T, int training, int tp, int sp,
                         const mpt_gpt_place *place, size_t act_n[MPT_ACT_SLOTS],
                         size_t work_n[MPT_WORK_SLOTS]) {
    int first = place ? place->first : 1, last = place ? place->last : 1;
    size_t L = (size_t)(place ? place->n_layers : cfg->n_layer), D = (size_t)cfg->d_model;
    size_t t = (size_t)(tp > 0 ? tp : 1);
    int layers[MPT_ACT_SLOTS];
    mpt_gpt_slot_layers(place ? place->recompute : MPT_RECOMPUTE_NONE, (int)L, layers);
    size_t Dl = D / t, Fl = (size_t)cfg->ffn / t, Hl = (size_t)cfg->n_head / t;
    size_t Vl = (size_t)cfg->padded_vocab / t;
    int cp = place && place->cp > 1 ? place->cp : 1;
    int threads = place && place->threads > 0 ? place->threads : 1;
    size_t N, ND, NF, BHT, LN;
    if (!mpt_size_mul((size_t)B, (size_t)T, &N) || !mpt_size_mul(N, D, &ND) ||
        !mpt_size_mul(N, Fl, &NF) || !mpt_size_mul(N, Hl, &BHT) ||
        !mpt_size_mul(L, N, &LN) || !mpt_size_mul(LN, 3 * Fl + 3 * D, &(size_t){0}) ||
        !mpt_size_mul(N, Vl, &(size_t){0}))
        return 0;
    size_t NDl = N * Dl;
    size_t Nl = sp && t > 1 ? N / t : N, NlD = Nl * D, LNl = L * Nl; /* sequence-parallel rows */
    act_n[MPT_ACT_ENCODED] = NlD;
    act_n[MPT_ACT_LN1] = L * NlD;
    act_n[MPT_ACT_LN1_MEAN] = LNl;
    act_n[MPT_ACT_LN1_RSTD] = LNl;
    act_n[MPT_ACT_QKV] = L * 3 * NDl;
    act_n[MPT_ACT_ATTY] = L * NDl;
    act_n[MPT_ACT_LSE] = L * BHT;
    act_n[MPT_ACT_RES2] = L * NlD;
    act_n[MPT_ACT_LN2] = L * NlD;
    act_n[MPT_ACT_LN2_MEAN] = LNl;
    act_n[MPT_ACT_LN2_RSTD] = LNl;
    act_n[MPT_ACT_FCH] = L * NF;
    act_n[MPT_ACT_FCH_GELU] = L * NF;
    act_n[MPT_ACT_RES3] = L * NlD;
    act_n[MPT_ACT_LNF] = last ? NlD : 0;
    act_n[MPT_ACT_LNF_MEAN] = last ? Nl : 0;
    act_n[MPT_ACT_LNF_RSTD] = last ? Nl : 0;
    act_n[MPT_ACT_LOGITS] = last ? N * Vl : 0;
    act_n[MPT_ACT_LOSSES] = last ? N : 0;
    act_n[MPT_ACT_GRAD_IN] = training && !last ? NlD : 0;
    act_n[MPT_ACT_MOE] = 0;
    size_t moe_ep = (size_t)(place && place->ep > 1 ? place->ep : 1), moe_work = 0;
    if (cfg->experts > 0) { /* MoE blocks: routing and expert rows (model/moe.h) of the Nl rows
                             * the rank routes (with sp its own) */
        size_t per = mpt_moe_act_elems(cfg, Nl, (int)moe_ep);
        moe_work = mpt_moe_work_elems(cfg, Nl, (int)moe_ep, training);
        if (training && place && place->split_w) /* B keeps the output gradients for W */
            per += mpt_moe_split_elems(cfg, Nl, (int)moe_ep);
        if (!per || !moe_work || !mpt_size_mul(L, per, &act_n[MPT_ACT_MOE])) return 0;
    }
    int split = training && place && place->split_w;
    /* The split backward's W stash: each linear layer's output gradient, kept from B to W. A
     * block's B no longer reads its QKV, FCH, RES2 and RES3 once it has written the stash of
     * the same shape (dy of c_attn, c_fc, attn.c_proj and mlp.c_proj), so the stash lives in
     * them (slot 0 here; model/gpt_pass.c stash_): a split set is as large as an
     * unsplit one. Own slots only where the shapes differ: the two D-wide ones under sequence
     * parallelism (the residuals hold N/tp rows), all four under full recompute (the
     * intermediates hold one block). */
    int own = place && place->recompute == MPT_RECOMPUTE_FULL, own_d = own || Nl != N;
    act_n[MPT_ACT_DY_FCPROJ] = split && own_d ? L * ND : 0;
    act_n[MPT_ACT_DY_FC] = split && own ? L * NF : 0;
    act_n[MPT_ACT_DY_ATTPROJ] = split && own_d ? L * ND : 0;
    act_n[MPT_ACT_DY_QKV] = split && own ? L * 3 * NDl : 0;
    /* the LayerNorm weight gradients likewise in the block's LN means and rstds (N rows each,
     * dead after B) when a row count holds D */
    act_n[MPT_ACT_DY_LN] = split && (own || Nl < D) ? L * 4 * D : 0;
    for (int i = 0; i < MPT_ACT_SLOTS; i++) /* per-block slots keep `layers` of their L blocks */
        if (layers[i] > 0 && L > 0) act_n[i] = act_n[i] / L * (size_t)layers[i];
    memset(work_n, 0, MPT_WORK_SLOTS * sizeof *work_n);
    work_n[MPT_WORK_DTMP] = ND; /* forward scratch, needed for inference too */
    if (t > 1 && last) work_n[MPT_WORK_CE] = 3 * N * (size_t)(t + 1); /* stats, recv */
    (void)first;
    if (sp && t > 1) work_n[MPT_WORK_GATHER] = ND;
    if (sp && t > 1 && training) work_n[MPT_WORK_LNGRAD] = 4 * D;
    if (sp && t > 1) work_n[MPT_WORK_SPRECV] = ND - NlD; /* (tp - 1) * Nl rows */
    work_n[MPT_WORK_MOE] = moe_work;
    if (training) {
        work_n[MPT_WORK_DRES] = NlD;
        work_n[MPT_WORK_DQKV] = 3 * NDl;
        if (cp == 1) {
            work_n[MPT_WORK_FLASH] = mpt_flash_workspace(B, T, (int)Dl, (int)Hl, threads);
            if (work_n[MPT_WORK_FLASH] == SIZE_MAX) return 0;
        }
        work_n[MPT_WORK_DFCG] = NF;
        work_n[MPT_WORK_DFC] = NF;
    }
    if (place && place->bf16) { /* GEMM operands: N rows; D, 3Dl, Fl or Vl columns */
        size_t cols = D > 3 * Dl ? D : 3 * Dl;
        if (Fl > cols) cols = Fl;
        if (last && Vl > cols) cols = Vl;
        work_n[MPT_WORK_BF16] = mpt_gemm_bf16_workspace(N > D ? N : D, cols);
        if (cfg->experts > 0) { /* the experts' GEMMs (D or the whole F wide; up to all the
                                 * received rows) run `threads` at once, each in its slice */
            size_t fe = (size_t)cfg->ffn > D ? (size_t)cfg->ffn : D;
            size_t ew = mpt_gemm_bf16_workspace_threads(fe, threads);
            if (ew == SIZE_MAX) return 0;
            if (ew > work_n[MPT_WORK_BF16]) work_n[MPT_WORK_BF16] = ew;
        }
        work_n[MPT_WORK_STAGE16] = N * (D > Fl ? D : Fl);
    }
    return 1;
}

mpt_status mpt_gpt_init(mpt_gpt *m, const mpt_config *cfg, int B, int T, int flags,
                        size_t unit_align, const mpt_gpt_place *place, mpt_arena *arena,
                        mpt_error *err) {
    memset(m, 0, sizeof *m);
    mpt_gpt_place whole = {.n_layers = cfg->n_layer, .first = 1, .last = 1};
    if (!place) place = &whole;
    m->cfg = *cfg;
    m->B = B;
    m->T = T;
    m->flags = flags;
    m->arena = arena;
    m->cur = &m->own;
    m->tp = place->tp > 1 ? place->tp : 1;
    m->tp_rank = m->tp > 1 ? place->tp_rank : 0;
    m->ops = place->ops ? *place->ops : *mpt_par_ops_serial();
    m->sp = place->sp && m->tp > 1;
    m->nl = place->n_layers;
    m->first = place->first;
    m->last = place->last;
    m->recompute = place->recompute;
    m->split_w = place->split_w;
    m->threads = place->threads > 0 ? place->threads : 1;
    m->cp = place->cp > 1 ? place->cp : 1;
    m->cp_rank = m->cp > 1 ? place->cp_rank : 0;
    m->ep = place->ep > 1 ? place->ep : 1;
    m->ep_rank = m->ep > 1 ? place->ep_rank : 0;
    m->moe_to = &m->moe; /* a chunk view (parallel/pp.c) copies the pointer: one sum */
    mpt_gpt_slot_layers(m->recompute, m->nl, m->slot_layers);
    for (int i = 0; i < MPT_ACT_SLOTS; i++)
        m->act_dtype[i] = mpt_gpt_act_dtype(cfg, place->bf16, (mpt_act_slot)i);
    const mpt_par_ops *o = &m->ops;
    if (m->tp > 1 && (!place->ops || !o->reduce_from_tp || !o->copy_to_tp_backward ||
                      !o->gather_seq || !o->scatter_seq || !o->vocab_merge_rows ||
                      !o->ln_grad_sum))
        return mpt_fail(err, MPT_ERR_RUN,
                        "tensor parallelism over %d ranks needs a table of parallel operations "
                        "with every tensor-parallel entry (parallel/tp.c: mpt_tp_ops)", m->tp);
    if (m->tp > 1 && (m->tp_rank < 0 || m->tp_rank >= m->tp))
        return mpt_fail(err, MPT_ERR_RUN, "tensor-parallel rank %d is outside 0..%d",
                        m->tp_rank, m->tp - 1);
    if (m->sp && T % m->tp != 0)
        return mpt_fail(err, MPT_ERR_INPUT,
                        "--sp splits the sequence over --tp %d ranks, but --seq-len %d is not "
                        "divisible by %d: choose a multiple of %d",
                        m->tp, T, m->tp, m->tp);
    if (m->cp > 1 && (!place->ops || !o->ring_attention_forward || !o->ring_attention_backward))
        return mpt_fail(err, MPT_ERR_RUN,
                        "context parallelism over %d ranks needs the ring-attention entries of "
                        "the parallel operations (parallel/cp.c: mpt_cp_ops)", m->cp);
    if (m->cp > 1 && (m->cp_rank < 0 || m->cp_rank >= m->cp || T % 2 != 0))
        return mpt_fail(err, MPT_ERR_RUN,
                        "context-parallel rank %d of %d with %d local positions: the rank must be "
                        "in 0..%d and the positions two equal chunks",
                        m->cp_rank, m->cp, T, m->cp - 1);
    if (m->ep > 1 && (!place->ops || !o->expert_dispatch || !o->expert_combine))
        return mpt_fail(err, MPT_ERR_RUN,
                        "expert parallelism over %d ranks needs the expert entries of the "
                        "parallel operations (parallel/ep.c: mpt_ep_ops)", m->ep);
    if ((long long)T * m->cp > cfg->n_positions)
        return mpt_fail(err, MPT_ERR_INPUT,
                        "sequence length %lld exceeds the model's %d positions: lower --seq-len",
                        (long long)T * m->cp, cfg->n_positions);
    mpt_status st = mpt_params_build_chunks(&m->pt, cfg, m->tp, m->tp_rank,
                                            m->ep, m->ep_rank,
                                            place->first_layer, place->n_layers,
                                            place->chunk_layers, place->chunk_stride,
                                            place->first, place->last, unit_align, err);
    if (st) return st;
    m->Dl = cfg->d_model / m->tp;
    m->Hl = cfg->n_head / m->tp;
    m->Fl = cfg->ffn / m->tp;
    m->Vl = cfg->padded_vocab / m->tp;
    m->v0 = m->tp_rank * m->Vl;
    m->Vr = cfg->vocab - m->v0 < 0 ? 0 : cfg->vocab - m->v0 < m->Vl ? cfg->vocab - m->v0 : m->Vl;
    int training = (flags & MPT_GPT_BACKWARD) != 0;
    m->w = calloc(m->pt.n + 1, sizeof *m->w);
    m->g = calloc(m->pt.n + 1, sizeof *m->g);
    if (!m->w || !m->g) {
        mpt_gpt_free(m);
        return mpt_fail(err, MPT_ERR_RUN, "out of memory for the tensor tables");
    }
    if (!mpt_gpt_buffer_sizes(cfg, B, T, training, m->tp, m->sp, place, m->act_n, m->work_n)) {
        mpt_gpt_free(m);
        return mpt_fail(err, MPT_ERR_INPUT, "batch %d x %d tokens is too large to address", B, T);
    }
    if (flags & MPT_GPT_PARAMS)
        st = mpt_arena_alloc(arena, MPT_MEM_PARAMS, m->pt.total, MPT_F32, &m->params, err);
    if (!st && (flags & MPT_GPT_GRADS))
        st = mpt_arena_alloc(arena, MPT_MEM_GRADS, m->pt.total, MPT_F32, &m->grads, err);
    if (!st && !(flags & MPT_GPT_NO_ACTS)) st = mpt_gpt_acts_alloc(m, &m->own, err);
    for (int i = 0; !st && i < MPT_WORK_SLOTS; i++)
        if (m->work_n[i])
            st = mpt_arena_alloc(arena, MPT_MEM_WORKSPACE, m->work_n[i], MPT_F32,
                                 &m->work[i], err);
    if (st) {
        mpt_gpt_free(m);
        return st;
    }
    if (m->work[MPT_WORK_BF16])
        mpt_gemm_bf16_set_workspace(m->work[MPT_WORK_BF16], m->work_n[MPT_WORK_BF16]);
    for (int u = 0; u < m->pt.n_units; u++) {
        if (m->params) mpt_gpt_point_unit(m, m->w, u, m->params + m->pt.unit_begin[u]);
        if (m->grads) mpt_gpt_point_unit(m, m->g, u, m->grads + m->pt.unit_begin[u]);
    }
    return MPT_OK;
}

int mpt_gpt_slot_until_b(mpt_act_slot s) {
    return s == MPT_ACT_LNF || s == MPT_ACT_LNF_MEAN || s == MPT_ACT_LNF_RSTD ||
           s == MPT_ACT_LOGITS || s == MPT_ACT_LOSSES || s == MPT_ACT_GRAD_IN;
}

static mpt_status acts_alloc_(mpt_gpt *m, mpt_gpt_acts *a, int part, mpt_error *err) {
    memset(a, 0, sizeof *a);
    for (int i = 0; i < MPT_ACT_SLOTS; i++) {
        if (!m->act_n[i] || (part >= 0 && mpt_gpt_slot_until_b((mpt_act_slot)i) != part))
            continue;
        mpt_dtype t = m->act_dtype[i];
        void **dst = t == MPT_BF16 ? (void **)&a->h[i] : (void **)&a->a[i];
        mpt_status st = mpt_arena_alloc(m->arena, MPT_MEM_ACTIVATIONS, m->act_n[i], t, dst, err);
        if (st) {
            mpt_gpt_acts_free(m, a);
            return st;
        }
    }
    return MPT_OK;
}

mpt_status mpt_gpt_acts_alloc(mpt_gpt *m, mpt_gpt_acts *a, mpt_error *err) {
    return acts_alloc_(m, a, -1, err);
}

mpt_status mpt_gpt_acts_alloc_part(mpt_gpt *m, mpt_gpt_acts *a, int part, mpt_error *err) {
    return acts_alloc_(m, a, part ? 1 : 0, err);
}

void mpt_gpt_acts_free(mpt_gpt *m, mpt_gpt_acts *a) {
    for (int i = 0; i < MPT_ACT_SLOTS; i++) {
        mpt_arena_release(m->arena, MPT_MEM_ACTIVATIONS, a->a[i], m->act_n[i], MPT_F32);
        mpt_arena_release(m->arena, MPT_MEM_ACTIVATIONS, a->h[i], m->act_n[i], MPT_BF16);
    }
    memset(a, 0, sizeof *a);
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
    mpt_arena_release(m->arena, MPT_MEM_PARAMS, m->params, m->pt.total, MPT_F32);
    mpt_arena_release(m->arena, MPT_MEM_GRADS, m->grads, m->pt.total, MPT_F32);
    mpt_gpt_acts_free(m, &m->own);
    if (m->work[MPT_WORK_BF16]) mpt_gemm_bf16_set_workspace(NULL, 0);
    for (int i = 0; i < MPT_WORK_SLOTS; i++)
        mpt_arena_release(m->arena, MPT_MEM_WORKSPACE, m->work[i], m->work_n[i], MPT_F32);
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


