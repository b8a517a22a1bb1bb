/* gpt_pass.c — GPT-2 forward and backward of one micro-batch on one rank (see gpt.h).
 *
 * Tensor and sequence parallelism enter only through the table of parallel operations
 * (model/parops.h, m->ops): the forward and backward below are the single-rank math on this
 * rank's heads, MLP columns and vocabulary rows, with the table's sums and gathers where the
 * math spans the tp group. With one rank the table is the identity.
 *
 * Rows: N = B*T tokens. Without sp every rank holds all N rows of the residual stream; with sp
 * it holds Nl = N/tp rows (rows row0 .. row0+Nl-1 of the flattened tokens) and gathers the
 * others only where a column-parallel layer needs them.
 *
 * Attention is the fused kernel of core/attention.h: the forward keeps the output (ATTY) and
 * the per-row log-sum-exp (LSE), the backward recomputes the scores block by block. Under
 * context parallelism (m->cp > 1) each sequence here is T local positions, the zigzag chunks
 * cp_rank and 2cp-1-cp_rank of 2cp (global positions from pos_); attention goes through the
 * table's ring_attention entries (parallel/cp.c), everything else is local to the rows. */
#include <math.h>
#include <string.h>

#include "core/attention.h"
#include "core/gemm_bf16.h"
#include "core/kernels.h"
#include "core/kernels_fused.h"
#include "model/gpt.h"
#include "model/gpt_sp.h"
#include "model/gpt_tp.h"

/* Layer l's slice of a per-layer activation buffer (the same one for every layer when
 * recomputation keeps a single layer of it). */
static float *lay_(const mpt_gpt *m, mpt_act_slot s, int l) {
    size_t layers = (size_t)m->slot_layers[s];
    return m->cur->a[s] + (layers > 1 ? (size_t)l * (m->act_n[s] / layers) : 0);
}

/* Slots stored in bf16 (mpt_gpt_act_dtype: the saved inputs of the linear layers under
 * --dtype bf16) go through one fp32 staging buffer (MPT_WORK_STAGE16), a block's worth:
 *   at_(m, s, l)        forward: where block l writes s (its slot, or the staging buffer)
 *   keep_(m, s, l, n)   forward, after the last read of the staging copy: round it into the slot
 *   saved_(m, s, l, n)  backward: block l's s (n values) as fp32 (the slot, or decoded) */
static int is16_(const mpt_gpt *m, mpt_act_slot s) { return m->act_dtype[s] == MPT_BF16; }
static uint16_t *lay16_(const mpt_gpt *m, mpt_act_slot s, int l) {
    size_t layers = (size_t)m->slot_layers[s];
    return m->cur->h[s] + (layers > 1 ? (size_t)l * (m->act_n[s] / layers) : 0);
}
static float *at_(const mpt_gpt *m, mpt_act_slot s, int l) {
    return is16_(m, s) ? m->work[MPT_WORK_STAGE16] : lay_(m, s, l);
}
static void keep_(const mpt_gpt *m, mpt_act_slot s, int l, size_t n) {
    if (is16_(m, s)) mpt_bf16_encode(lay16_(m, s, l), m->work[MPT_WORK_STAGE16], n);
}
static const float *saved_(const mpt_gpt *m, mpt_act_slot s, int l, size_t n) {
    if (!is16_(m, s)) return lay_(m, s, l);
    mpt_bf16_decode(m->work[MPT_WORK_STAGE16], lay16_(m, s, l), n);
    return m->work[MPT_WORK_STAGE16];
}

#define W_(m, l, slot) ((m)->w[(m)->pt.layer[(size_t)(l) * MPT_LAYER_SLOTS + (slot)]])
#define G_(m, l, slot) ((m)->g[(m)->pt.layer[(size_t)(l) * MPT_LAYER_SLOTS + (slot)]])
#define TRY_(call)                                                                            \
    do {                                                                                      \
        mpt_status st_ = (call);                                                              \
        if (st_) return st_;                                                                  \
    } while (0)

/* Global position of local position t of a sequence of T local positions: t itself, or under
 * cp the zigzag chunk's (the first T/2 positions are chunk cp_rank, the rest chunk
 * 2cp-1-cp_rank, each T/2 long). */
static size_t pos_(const mpt_gpt *m, int T, int t) {
    if (m->cp == 1) return (size_t)t;
    int Tc = T / 2;
    return t < Tc ? (size_t)m->cp_rank * Tc + (size_t)t
                  : (size_t)(2 * m->cp - 1 - m->cp_rank) * Tc + (size_t)(t - Tc);
}

/* out (nrows, D) += wpe at the positions of rows row0 .. row0+nrows-1 of the flattened (B, T). */
static void positions_forward_(const mpt_gpt *m, float *out, const float *wpe, size_t row0,
                               size_t nrows, int T, int D) {
    if (m->cp == 1) {
        mpt_positions_forward(out, wpe, row0, nrows, T, D);
        return;
    }
    for (size_t i = 0; i < nrows; i++) {
        const float *p = wpe + pos_(m, T, (int)((row0 + i) % (size_t)T)) * (size_t)D;
        float *o = out + i * (size_t)D;
        for (int j = 0; j < D; j++) o[j] += p[j];
    }
}

/* dwpe += dout (B, T, D) summed over b, at each row's position. */
static void positions_backward_(const mpt_gpt *m, float *dwpe, const float *dout, int B, int T,
                                int D) {
    if (m->cp == 1) {
        mpt_positions_backward(dwpe, dout, B, T, D);
        return;
    }
    for (int t = 0; t < T; t++) {
        float *g = dwpe + pos_(m, T, t) * (size_t)D;
        for (int b = 0; b < B; b++) {
            const float *d = dout + ((size_t)b * T + (size_t)t) * D;
            for (int j = 0; j < D; j++) g[j] += d[j];
        }
    }
}

/* Causal attention of this rank's heads: atty (B,T,Dl) and lse (B,Hl,T) from qkv (B,T,3Dl). */
static mpt_status attention_forward_(mpt_gpt *m, float *atty, float *lse, const float *qkv, int B,
                                     int T, mpt_error *err) {
    if (m->cp > 1)
        return m->ops.ring_attention_forward(m->ops.cp_ctx, atty, lse, qkv, B, T, m->Dl, m->Hl,
                                             err);
    mpt_flash_forward(atty, lse, qkv, B, T, m->Dl, m->Hl);
    return MPT_OK;
}

/* dqkv (B,T,3Dl) = (overwritten) the attention's gradient from datty, given its forward's atty
 * and lse. */
static mpt_status attention_backward_(mpt_gpt *m, float *dqkv, const float *datty,
                                      const float *atty, const float *lse, const float *qkv,
                                      int B, int T, mpt_error *err) {
    if (m->cp > 1) {
        memset(dqkv, 0, (size_t)B * T * 3 * (size_t)m->Dl * sizeof *dqkv);
        return m->ops.ring_attention_backward(m->ops.cp_ctx, dqkv, datty, atty, lse, qkv, B, T,
                                              m->Dl, m->Hl, err);
    }
    /* no zeroing pass: each (batch, head) task zeroes its own columns (core/attention.h) */
    mpt_flash_backward_set(dqkv, datty, atty, lse, qkv, B, T, m->Dl, m->Hl,
                           m->work[MPT_WORK_FLASH], m->threads);
    return MPT_OK;
}

static mpt_status need_(mpt_gpt *m, int unit, mpt_gpt_phase ph, mpt_error *err) {
    return m->hooks.need ? m->hooks.need(m->hooks.ctx, unit, ph, err) : MPT_OK;
}
static mpt_status done_(mpt_gpt *m, int unit, mpt_gpt_phase ph, mpt_error *err) {
    return m->hooks.done ? m->hooks.done(m->hooks.ctx, unit, ph, err) : MPT_OK;
}
static mpt_status grads_done_(mpt_gpt *m, int unit, mpt_error *err) {
    return m->hooks.grads_done ? m->hooks.grads_done(m->hooks.ctx, unit, err) : MPT_OK;
}

/* ---- the tp group's operators, from the table (identity when tp == 1) ---------------------
 * all_rows_:          f forward (and g backward): the input of a column-parallel layer (or the
 *                     output gradient of a row-parallel one) for all N rows. Without sp they
 *                     are all here already; with sp the ranks' Nl-row blocks are gathered
 *                     along the sequence into the (N, D) gather buffer.
 * reduce_from_tp_:    g forward: the (N, D) partial outputs of a row-parallel layer summed over
 *                     tp -- all rows, or with sp a reduce-scatter leaving this rank's Nl rows at
 *                     the start of buf.
 * copy_to_tp_bwd_:    f backward: the same sum of a column-parallel layer's input gradients. */
static mpt_status all_rows_(mpt_gpt *m, const float *local, size_t Nl, const float **full,
                            mpt_error *err) {
    if (!m->sp) {
        *full = local;
        return MPT_OK;
    }
    float *g = m->work[MPT_WORK_GATHER];
    *full = g;
    return m->ops.gather_seq(m->ops.ctx, local, g, Nl * (size_t)m->cfg.d_model, err);
}

static mpt_status reduce_from_tp_(mpt_gpt *m, float *buf, size_t N, size_t Nl, mpt_error *err) {
    size_t D = (size_t)m->cfg.d_model;
    if (m->sp) return m->ops.scatter_seq(m->ops.ctx, buf, Nl * D, err);
    return m->ops.reduce_from_tp(m->ops.ctx, buf, N * D, err);
}

static mpt_status copy_to_tp_bwd_(mpt_gpt *m, float *buf, size_t N, size_t Nl, mpt_error *err) {
    size_t D = (size_t)m->cfg.d_model;
    if (m->sp) return m->ops.scatter_seq(m->ops.ctx, buf, Nl * D, err);
    return m->ops.copy_to_tp_backward(m->ops.ctx, buf, N * D, err);
}

/* Row-parallel linear layer: out = sum over tp of inp_i(N,C) W_i(C,OC), then + bias
 * (replicated, added once, after the sum; NULL: the caller adds it in its next fused pass);
 * out keeps this rank's rows. epi (may be NULL; model/gpt_tp.h): then epi(ectx, r0, n) over
 * those rows, with the overlapped sum chunk by chunk as each chunk's sum arrives. */
static mpt_status row_parallel_(mpt_gpt *m, float *out, const float *inp, const float *w,
                                const float *bias, size_t N, size_t Nl, int C, int OC,
                                mpt_rows_fn epi, void *ectx, mpt_error *err) {
    if (m->tp == 1) {
        mpt_matmul_forward(out, inp, w, bias, N, C, OC);
    } else if (!m->sp && m->ops.row_parallel_matmul) { /* chunked, all-reduce overlapped */
        TRY_(m->ops.row_parallel_matmul(m->ops.ctx, out, inp, w, N, C, OC, bias ? NULL : epi,
                                        ectx, err));
        if (!bias) return MPT_OK; /* epi ran in there */
        mpt_add_rows(out, bias, Nl, OC);
    } else if (mpt_gpt_sp_overlap(m)) { /* by row blocks, reduce-scatter overlapped */
        TRY_(mpt_gpt_sp_matmul_scatter(m, out, inp, w, Nl, C, OC, err));
        if (bias) mpt_add_rows(out, bias, Nl, OC);
    } else {
        mpt_matmul_forward(out, inp, w, NULL, N, C, OC);
        TRY_(reduce_from_tp_(m, out, N, Nl, err));
        if (bias) mpt_add_rows(out, bias, Nl, OC);
    }
    if (epi) epi(ectx, 0, Nl);
    return MPT_OK;
}

/* LayerNorm backward on this rank's rows. With sp the weight gradients of those rows are
 * partial: they are computed into a scratch buffer, summed over tp and then accumulated. */
static mpt_status ln_backward_(mpt_gpt *m, float *dinp, float *dw, float *db, const float *dout,
                               const float *inp, const float *w, const float *mean,
                               const float *rstd, size_t Nl, mpt_error *err) {
    int D = m->cfg.d_model;
    if (!m->sp) {
        mpt_layernorm_backward(dinp, dw, db, dout, inp, w, mean, rstd, Nl, D);
        return MPT_OK;
    }
    float *part = m->work[MPT_WORK_LNGRAD];
    memset(part, 0, 2 * (size_t)D * sizeof *part);
    mpt_layernorm_backward(dinp, part, part + D, dout, inp, w, mean, rstd, Nl, D);
    TRY_(m->ops.ln_grad_sum(m->ops.ctx, part, 2 * (size_t)D, err));
    mpt_add_inplace(dw, part, (size_t)D);
    mpt_add_inplace(db, part + D, (size_t)D);
    return MPT_OK;
}

static mpt_status embed_(mpt_gpt *m, const int32_t *inputs, int B, int T, size_t Nl, size_t row0,
                         mpt_error *err) {
    const mpt_param_table *pt = &m->pt;
    int D = m->cfg.d_model;
    float *enc = m->cur->a[MPT_ACT_ENCODED], *tmp = m->work[MPT_WORK_DTMP];
    if (m->tp == 1 && m->cp == 1) {
        mpt_encoder_forward(enc, inputs, m->w[pt->wte], m->w[pt->wpe], B, T, D);
        return MPT_OK;
    }
    /* vocabulary-parallel: each rank looks up the tokens of its rows of wte (zero for the
     * others), so the sum over tp, as after a row-parallel layer, is the whole embedding */
    if (mpt_gpt_tp_overlap(m) && m->cp == 1) /* by row chunks, sums in flight (gpt_tp.h) */
        return mpt_gpt_tp_embed_forward(m, enc, inputs, B, T, err);
    if (mpt_gpt_sp_overlap(m)) { /* by row blocks, each sent as it is looked up (gpt_sp.h) */
        TRY_(mpt_gpt_sp_embed_forward(m, tmp, inputs, m->w[pt->wte], Nl, D, err));
    } else {
        mpt_embed_masked_forward(tmp, inputs, m->w[pt->wte], B, T, D, m->v0, m->Vl);
        if (m->tp > 1) TRY_(reduce_from_tp_(m, tmp, (size_t)B * T, Nl, err));
    }
    memcpy(enc, tmp, Nl * (size_t)D * sizeof *enc);
    positions_forward_(m, enc, m->w[pt->wpe], row0, Nl, T, D);
    return MPT_OK;
}

/* Block l's forward from its input (ENCODED or the previous block's RES3) to its RES3; with
 * recompute the intermediate buffers hold one block only and are refilled in backward. */
static mpt_status block_forward_(mpt_gpt *m, int l, int B, int T, mpt_error *err) {
    int D = m->cfg.d_model, Dl = m->Dl, Fl = m->Fl;
    size_t N = (size_t)B * T, Nl = m->sp ? N / (size_t)m->tp : N;
    float *scratch = m->work[MPT_WORK_DTMP];
    const float *x;
    const float *in = l == 0 ? m->cur->a[MPT_ACT_ENCODED] : lay_(m, MPT_ACT_RES3, l - 1);
    float *ln1 = at_(m, MPT_ACT_LN1, l), *qkv = lay_(m, MPT_ACT_QKV, l);
    float *atty = at_(m, MPT_ACT_ATTY, l), *res2 = lay_(m, MPT_ACT_RES2, l);
    float *ln2 = at_(m, MPT_ACT_LN2, l), *fch = lay_(m, MPT_ACT_FCH, l);
    float *fchg = at_(m, MPT_ACT_FCH_GELU, l), *res3 = lay_(m, MPT_ACT_RES3, l);
    mpt_layernorm_forward(ln1, lay_(m, MPT_ACT_LN1_MEAN, l), lay_(m, MPT_ACT_LN1_RSTD, l), in,
                          W_(m, l, MPT_LN1_W), W_(m, l, MPT_LN1_B), Nl, D);
    if (mpt_gpt_sp_overlap(m)) { /* by row blocks, all-gather overlapped (model/gpt_sp.h) */
        TRY_(mpt_gpt_sp_gather_matmul(m, qkv, NULL, ln1, W_(m, l, MPT_QKV_W), W_(m, l, MPT_QKV_B),
                                      Nl, D, 3 * Dl, &x, err));
    } else {
        TRY_(all_rows_(m, ln1, Nl, &x, err));
        mpt_matmul_forward(qkv, x, W_(m, l, MPT_QKV_W), W_(m, l, MPT_QKV_B), N, D, 3 * Dl);
    }
    keep_(m, MPT_ACT_LN1, l, Nl * D);
    TRY_(attention_forward_(m, atty, lay_(m, MPT_ACT_LSE, l), qkv, B, T, err));
    /* the projections' biases ride in the fused pass after the GEMM (core/kernels_fused.h):
     * res2 = in + y + b and ln2 = LN(res2) in one pass; fch += b and gelu in one pass */
    /* ... run as the epilogue of the row-parallel GEMM (by chunks as their sums arrive), unless
     * atty is the bf16 staging buffer that ln_2 may share (then after keep_) */
    mpt_gpt_tp_epi e = {.res = res2, .out = ln2, .mean = lay_(m, MPT_ACT_LN2_MEAN, l),
                        .rstd = lay_(m, MPT_ACT_LN2_RSTD, l), .a = in, .y = scratch,
                        .bias = W_(m, l, MPT_ATTPROJ_B), .w = W_(m, l, MPT_LN2_W),
                        .b = W_(m, l, MPT_LN2_B), .C = D};
    int epi_in = !is16_(m, MPT_ACT_ATTY);
    TRY_(row_parallel_(m, scratch, atty, W_(m, l, MPT_ATTPROJ_W), NULL, N, Nl, Dl, D,
                       epi_in ? mpt_gpt_tp_epi_res_ln : NULL, &e, err));
    keep_(m, MPT_ACT_ATTY, l, N * Dl);
    if (!epi_in) mpt_gpt_tp_epi_res_ln(&e, 0, Nl);
    if (mpt_gpt_router(m, l) != SIZE_MAX) { /* MoE block (model/moe.h): whole on every tp rank,
                                             * which routes its own rows (all of them, or Nl) */
        TRY_(mpt_gpt_moe_forward(m, l, scratch, ln2, Nl, err));
        keep_(m, MPT_ACT_LN2, l, Nl * D);
        mpt_residual_forward(res3, res2, scratch, Nl * D);
        return MPT_OK;
    }
    if (!mpt_gpt_sp_overlap(m)) TRY_(all_rows_(m, ln2, Nl, &x, err)); /* sp overlap: below */
    /* under bf16 ln_2 and the GELU output share the staging buffer: ln_2 is kept first (the
     * fused call's GEMM reads x in full before its GELU writes; bf16 GEMMs are never split) */
    keep_(m, MPT_ACT_LN2, l, Nl * D);
    if (mpt_gpt_sp_overlap(m)) /* the gather keeps its own copy of ln_2 before any GELU */
        TRY_(mpt_gpt_sp_gather_matmul(m, fchg, fch, ln2, W_(m, l, MPT_FC_W), W_(m, l, MPT_FC_B),
                                      Nl, D, Fl, &x, err));
    else
        mpt_matmul_bias_gelu_forward(fchg, fch, x, W_(m, l, MPT_FC_W), W_(m, l, MPT_FC_B), N, D,
                                     Fl);
    mpt_gpt_tp_epi e3 = {.res = res3, .a = res2, .y = scratch, .bias = W_(m, l, MPT_FCPROJ_B),
                         .C = D}; /* res3 = res2 + y + b, the GEMM's epilogue (fp32 rows) */
    TRY_(row_parallel_(m, scratch, fchg, W_(m, l, MPT_FCPROJ_W), NULL, N, Nl, Fl, D,
                       mpt_gpt_tp_epi_res, &e3, err));
    keep_(m, MPT_ACT_FCH_GELU, l, N * Fl);
    return MPT_OK;
}

mpt_status mpt_gpt_forward(mpt_gpt *m, const int32_t *inputs, const int32_t *targets, int B,
                           int T, float dloss, double *loss_sum, mpt_error *err) {
    const mpt_config *c = &m->cfg;
    const mpt_param_table *pt = &m->pt;
    int D = c->d_model, L = m->nl;
    size_t N = (size_t)B * T, Nl = m->sp ? N / (size_t)m->tp : N;
    size_t row0 = m->sp ? (size_t)m->tp_rank * Nl : 0;
    const float *x;
    int head_is_wte = c->tied && m->first && m->last; /* the head reads unit 0's wte */
    m->moe_weight = dloss * (float)Nl; /* the MoE aux losses' weight (model/moe.h) */
    m->moe_stats_on = dloss > 0.0f; /* training forwards only (not eval, dump, inference) */
    if (m->first) { /* later stages find their input in ENCODED, received from the previous */
        TRY_(need_(m, 0, MPT_PHASE_FORWARD, err));
        TRY_(embed_(m, inputs, B, T, Nl, row0, err));
        TRY_(done_(m, 0, MPT_PHASE_FORWARD, err));
    }
    for (int l = 0; l < L; l++) {
        TRY_(need_(m, l + 1, MPT_PHASE_FORWARD, err));
        TRY_(block_forward_(m, l, B, T, err));
        TRY_(done_(m, l + 1, MPT_PHASE_FORWARD, err));
    }
    if (!m->last) { /* the output stays in the last block's RES3 for the next stage */
        if (loss_sum) *loss_sum = 0.0;
        return MPT_OK;
    }
    TRY_(need_(m, L + 1, MPT_PHASE_FORWARD, err));
    if (head_is_wte) TRY_(need_(m, 0, MPT_PHASE_FORWARD, err));
    float *lnf = m->cur->a[MPT_ACT_LNF], *logits = m->cur->a[MPT_ACT_LOGITS];
    mpt_layernorm_forward(lnf, m->cur->a[MPT_ACT_LNF_MEAN], m->cur->a[MPT_ACT_LNF_RSTD],
                          lay_(m, MPT_ACT_RES3, L - 1), m->w[pt->lnf_w], m->w[pt->lnf_b], Nl, D);
    if (mpt_gpt_sp_overlap(m)) { /* by row blocks, all-gather overlapped (model/gpt_sp.h) */
        TRY_(mpt_gpt_sp_gather_lmhead(m, logits, lnf, m->w[pt->lm_head], Nl, D, m->Vr, m->Vl,
                                      err));
    } else if (targets && mpt_gpt_tp_overlap(m)) { /* the GEMM by row chunks, beside the
                                                       * loss's gathers (model/gpt_tp.h) */
        TRY_(mpt_gpt_tp_vocab_ce(m, lnf, targets, N, dloss, err));
    } else {
        TRY_(all_rows_(m, lnf, Nl, &x, err));
        mpt_lmhead_forward(logits, x, m->w[pt->lm_head], N, D, m->Vr, m->Vl);
    }
    if (head_is_wte) TRY_(done_(m, 0, MPT_PHASE_FORWARD, err));
    TRY_(done_(m, L + 1, MPT_PHASE_FORWARD, err));
    if (!targets) {
        if (loss_sum) *loss_sum = 0.0;
        return MPT_OK;
    }
    float *losses = m->cur->a[MPT_ACT_LOSSES];
    if (m->tp == 1)
        mpt_crossentropy_fused(logits, losses, targets, N, c->vocab, c->padded_vocab, dloss);
    else if (!mpt_gpt_tp_overlap(m)) /* with tp overlap: above, beside the head's GEMM */
        TRY_(mpt_gpt_tp_vocab_ce(m, NULL, targets, N, dloss, err));
    double sum = 0.0;
    for (size_t i = 0; i < N; i++) sum += losses[i];
    if (loss_sum) *loss_sum = sum;
    return MPT_OK;
}

/* Layer l's W stash of slot s (an MPT_ACT_DY_* slot): its own buffer, or, when it has none
 * (model/gpt.c mpt_gpt_buffer_sizes), the activation of the same shape that the block's B has
 * finished reading when it writes the stash. */
static float *stash_(const mpt_gpt *m, mpt_act_slot s, int l) {
    if (m->act_n[s]) return lay_(m, s, l);
    switch (s) {
    case MPT_ACT_DY_FCPROJ: return lay_(m, MPT_ACT_RES3, l); /* the next block's input: done */
    case MPT_ACT_DY_FC: return lay_(m, MPT_ACT_FCH, l);      /* after the GELU backward */
    case MPT_ACT_DY_ATTPROJ: return lay_(m, MPT_ACT_RES2, l); /* after the ln_2 backward */
    default: return lay_(m, MPT_ACT_QKV, l);                  /* after the attention backward */
    }
}

/* Where B leaves layer l's LayerNorm k's (0: ln_1, 1: ln_2) weight and bias gradients for W:
 * the own slot, or the first D rows of that LayerNorm's mean and rstd, which B has read. */
static void ln_stash_(const mpt_gpt *m, int l, int k, float **dw, float **db) {
    size_t D = (size_t)m->cfg.d_model;
    if (m->act_n[MPT_ACT_DY_LN]) {
        *dw = lay_(m, MPT_ACT_DY_LN, l) + (size_t)k * 2 * D;
        *db = *dw + D;
        return;
    }
    *dw = lay_(m, k ? MPT_ACT_LN2_MEAN : MPT_ACT_LN1_MEAN, l);
    *db = lay_(m, k ? MPT_ACT_LN2_RSTD : MPT_ACT_LN1_RSTD, l);
}

/* Under sp, unsplit: a block's two LayerNorms leave this rank's parts of their weight
 * gradients in the LNGRAD scratch (ln_1 at 0, ln_2 at 2D) and ln_grads_sum_ sums both over tp
 * in one all-reduce at the block's end (one synchronisation per block instead of two). */
static int ln_defer_(const mpt_gpt *m) { return m->sp && m->tp > 1 && !m->split_w; }

static mpt_status ln_grads_sum_(mpt_gpt *m, int l, mpt_error *err) {
    size_t D = (size_t)m->cfg.d_model;
    float *part = m->work[MPT_WORK_LNGRAD];
    TRY_(m->ops.ln_grad_sum(m->ops.ctx, part, 4 * D, err));
    mpt_add_inplace(G_(m, l, MPT_LN1_W), part, D);
    mpt_add_inplace(G_(m, l, MPT_LN1_B), part + D, D);
    mpt_add_inplace(G_(m, l, MPT_LN2_W), part + 2 * D, D);
    mpt_add_inplace(G_(m, l, MPT_LN2_B), part + 3 * D, D);
    return MPT_OK;
}

/* The split backward's LayerNorm: its weight gradients into the free dqkv workspace (2D), then
 * to the stash; the unsplit one accumulates them into g (or, ln_defer_, its part to LNGRAD). */
static mpt_status block_ln_backward_(mpt_gpt *m, int l, int k, float *dres, const float *dout,
                                     const float *inp, size_t Nl, mpt_error *err) {
    int wslot = k ? MPT_LN2_W : MPT_LN1_W, bslot = k ? MPT_LN2_B : MPT_LN1_B;
    const float *mean = lay_(m, k ? MPT_ACT_LN2_MEAN : MPT_ACT_LN1_MEAN, l);
    const float *rstd = lay_(m, k ? MPT_ACT_LN2_RSTD : MPT_ACT_LN1_RSTD, l);
    if (ln_defer_(m)) {
        int D = m->cfg.d_model;
        float *part = m->work[MPT_WORK_LNGRAD] + (size_t)k * 2 * (size_t)D;
        memset(part, 0, 2 * (size_t)D * sizeof *part);
        mpt_layernorm_backward(dres, part, part + D, dout, inp, W_(m, l, wslot), mean, rstd, Nl,
                               D);
        return MPT_OK;
    }
    if (!m->split_w)
        return ln_backward_(m, dres, G_(m, l, wslot), G_(m, l, bslot), dout, inp,
                            W_(m, l, wslot), mean, rstd, Nl, err);
    size_t D = (size_t)m->cfg.d_model;
    float *part = m->work[MPT_WORK_DQKV], *dw, *db;
    memset(part, 0, 2 * D * sizeof *part);
    TRY_(ln_backward_(m, dres, part, part + D, dout, inp, W_(m, l, wslot), mean, rstd, Nl, err));
    ln_stash_(m, l, k, &dw, &db);
    memcpy(dw, part, D * sizeof *dw);
    memcpy(db, part + D, D * sizeof *db);
    return MPT_OK;
}

/* A block's linear layer backward: the input gradient into dinp (OVERWRITTEN: the GEMM's
 * beta = 0, so no zeroing pass before it); the weight and bias gradients too (+=; bslot < 0:
 * no bias gradient here), or, in the split backward, dout (N x OC) saved in the stash slot
 * for W. */
static void linear_backward_(mpt_gpt *m, float *dinp, int l, int wslot, int bslot,
                             const float *dout, const float *inp, size_t N, int C, int OC,
                             mpt_act_slot stash) {
    if (!m->split_w) {
        mpt_matmul_backward_set(dinp, G_(m, l, wslot), bslot < 0 ? NULL : G_(m, l, bslot), dout,
                                inp, W_(m, l, wslot), N, C, OC);
        return;
    }
    mpt_matmul_backward_set(dinp, NULL, NULL, dout, inp, W_(m, l, wslot), N, C, OC);
    memcpy(stash_(m, stash, l), dout, N * (size_t)OC * sizeof(float));
}

/* Under sp with the overlapped entries (model/gpt_sp.h): linear_backward_ of a row-parallel
 * layer from this rank's output-gradient rows dlocal, gathered block by block
 * (gather = 1), or of a column-parallel one with its input gradient's sum over tp, reduce-
 * scattered block by block into dinp's first Nl rows (gather = 0). */
static mpt_status linear_backward_sp_(mpt_gpt *m, float *dinp, int l, int wslot, int bslot,
                                      const float *dout, const float *inp, size_t Nl, int C,
                                      int OC, mpt_act_slot stash, int gather, mpt_error *err) {
    float *dw = m->split_w ? NULL : G_(m, l, wslot);
    float *db = m->split_w || bslot < 0 ? NULL : G_(m, l, bslot);
    float *keep = m->split_w ? stash_(m, stash, l) : NULL;
    if (gather)
        return mpt_gpt_sp_gather_backward(m, dinp, dw, db, keep, dout, inp, W_(m, l, wslot), Nl,
                                          C, OC, err);
    return mpt_gpt_sp_backward_scatter(m, dinp, dw, db, keep, dout, inp, W_(m, l, wslot), Nl, C,
                                       OC, err);
}

/* Without sp, with the overlapped f backward (model/gpt_tp.h): linear_backward_ of a
 * column-parallel layer with its input gradient's sum over tp, by row chunks in flight. */
static mpt_status linear_backward_tp_(mpt_gpt *m, float *dinp, int l, int wslot, int bslot,
                                      const float *dout, const float *inp, size_t N, int C,
                                      int OC, mpt_act_slot stash, mpt_error *err) {
    float *dw = m->split_w ? NULL : G_(m, l, wslot);
    float *db = m->split_w || bslot < 0 ? NULL : G_(m, l, bslot);
    float *keep = m->split_w ? stash_(m, stash, l) : NULL;
    return mpt_gpt_tp_backward_reduce(m, dinp, dw, db, keep, dout, inp, W_(m, l, wslot), N, C,
                                      OC, err);
}

/* A block's grads_done, which the split backward leaves to W. */
static mpt_status b_grads_done_(mpt_gpt *m, int unit, mpt_error *err) {
    return m->split_w ? MPT_OK : grads_done_(m, unit, err);
}

/* ln_f and the head: dres = the gradient of the last block's output (this rank's rows). */
static mpt_status head_backward_(mpt_gpt *m, size_t N, size_t Nl, mpt_error *err) {
    const mpt_param_table *pt = &m->pt;
    int D = m->cfg.d_model, L = m->nl;
    float *dres = m->work[MPT_WORK_DRES], *dtmp = m->work[MPT_WORK_DTMP];
    const float *x;
    TRY_(need_(m, L + 1, MPT_PHASE_BACKWARD, err));
    if (m->cfg.tied && m->first) TRY_(need_(m, 0, MPT_PHASE_BACKWARD, err));
    if (mpt_gpt_sp_overlap(m)) { /* the gather by row blocks beside the GEMMs, then the sum */
        TRY_(mpt_gpt_sp_lmhead_backward(m, dtmp, m->g[pt->lm_head], m->cur->a[MPT_ACT_LOGITS],
                                        m->cur->a[MPT_ACT_LNF], m->w[pt->lm_head], Nl, D, m->Vr,
                                        m->Vl, err));
    } else if (mpt_gpt_tp_overlap(m)) { /* by row chunks, the sums in flight (model/gpt_tp.h) */
        TRY_(mpt_gpt_tp_lmhead_backward(m, dtmp, m->g[pt->lm_head], m->cur->a[MPT_ACT_LOGITS],
                                        m->cur->a[MPT_ACT_LNF], m->w[pt->lm_head], N, D, m->Vr,
                                        m->Vl, err));
    } else {
        TRY_(all_rows_(m, m->cur->a[MPT_ACT_LNF], Nl, &x, err));
        mpt_lmhead_backward_set(dtmp, m->g[pt->lm_head], m->cur->a[MPT_ACT_LOGITS], x,
                                m->w[pt->lm_head], N, D, m->Vr, m->Vl);
        TRY_(copy_to_tp_bwd_(m, dtmp, N, Nl, err)); /* each rank saw its vocabulary slice */
    }
    memset(dres, 0, Nl * (size_t)D * sizeof *dres);
    TRY_(ln_backward_(m, dres, m->g[pt->lnf_w], m->g[pt->lnf_b], dtmp,
                      lay_(m, MPT_ACT_RES3, L - 1), m->w[pt->lnf_w], m->cur->a[MPT_ACT_LNF_MEAN],
                      m->cur->a[MPT_ACT_LNF_RSTD], Nl, err));
    return grads_done_(m, L + 1, err); /* split or not: B writes the head's gradients */
}

mpt_status mpt_gpt_backward(mpt_gpt *m, const int32_t *inputs, int B, int T, mpt_error *err) {
    const mpt_config *c = &m->cfg;
    const mpt_param_table *pt = &m->pt;
    int D = c->d_model, Dl = m->Dl, Fl = m->Fl, L = m->nl;
    size_t N = (size_t)B * T, Nl = m->sp ? N / (size_t)m->tp : N;
    int head_is_wte = c->tied && m->first && m->last; /* the head reads unit 0's wte */
    float *dres = m->work[MPT_WORK_DRES], *dtmp = m->work[MPT_WORK_DTMP];
    float *dqkv = m->work[MPT_WORK_DQKV];
    float *dfcg = m->work[MPT_WORK_DFCG], *dfc = m->work[MPT_WORK_DFC];
    m->moe_stats_on = 0; /* a recomputed forward counts no routing twice */
    size_t NDl = N * (size_t)Dl;
    const float *x, *dy;

    if (m->last) {
        TRY_(head_backward_(m, N, Nl, err));
    } else { /* the gradient of this stage's output came from the next stage */
        memcpy(dres, m->cur->a[MPT_ACT_GRAD_IN], Nl * (size_t)D * sizeof *dres);
    }
    for (int l = L - 1; l >= 0; l--) {
        TRY_(need_(m, l + 1, m->split_w ? MPT_PHASE_BACKWARD_B : MPT_PHASE_BACKWARD, err));
        const float *in = l == 0 ? m->cur->a[MPT_ACT_ENCODED] : lay_(m, MPT_ACT_RES3, l - 1);
        /* only the block's input was kept: run its forward again (deterministic kernels, so
         * the block's output RES3 is rewritten with the same values) */
        if (m->recompute == MPT_RECOMPUTE_FULL) TRY_(block_forward_(m, l, B, T, err));
        /* dres holds dL/d(block output) for this rank's rows; MLP half. The row-parallel c_proj
         * needs it for all rows; the column-parallel c_fc's input gradient is summed over tp. */
        int moe = mpt_gpt_router(m, l) != SIZE_MAX, ov = mpt_gpt_sp_overlap(m) && !moe;
        if (moe) { /* MoE: the input gradient of this rank's rows */
            TRY_(mpt_gpt_moe_backward(m, l, dtmp, dres, saved_(m, MPT_ACT_LN2, l, Nl * D), Nl,
                                      err));
        } else if (ov) { /* sp, by row blocks with the gathers and sums in flight */
            TRY_(linear_backward_sp_(m, dfcg, l, MPT_FCPROJ_W, MPT_FCPROJ_B, dres,
                                     saved_(m, MPT_ACT_FCH_GELU, l, N * (size_t)Fl), Nl, Fl, D,
                                     MPT_ACT_DY_FCPROJ, 1, err));
            mpt_gelu_backward_bias(dfc, m->split_w ? NULL : G_(m, l, MPT_FC_B),
                                   lay_(m, MPT_ACT_FCH, l), dfcg, N, Fl);
            /* ln_2's rows: gathered beside the input gradient's GEMMs (model/gpt_sp.h) */
            TRY_(linear_backward_sp_(m, dtmp, l, MPT_FC_W, -1, dfc,
                                     saved_(m, MPT_ACT_LN2, l, Nl * D), Nl, D, Fl, MPT_ACT_DY_FC,
                                     0, err));
        } else {
            TRY_(all_rows_(m, dres, Nl, &dy, err));
            if (!m->split_w) { /* c_proj's backward and the GELU's by row chunks, into dfc */
                mpt_matmul_backward_gelu_set(dfc, G_(m, l, MPT_FCPROJ_W), G_(m, l, MPT_FCPROJ_B),
                                             G_(m, l, MPT_FC_B), lay_(m, MPT_ACT_FCH, l), dy,
                                             saved_(m, MPT_ACT_FCH_GELU, l, N * (size_t)Fl),
                                             W_(m, l, MPT_FCPROJ_W), N, Fl, D);
            } else { /* split: dfc overwritten with gelu' * dfcg; W sums the c_fc bias gradient
                      * from the saved dfc */
                linear_backward_(m, dfcg, l, MPT_FCPROJ_W, MPT_FCPROJ_B, dy,
                                 saved_(m, MPT_ACT_FCH_GELU, l, N * (size_t)Fl), N, Fl, D,
                                 MPT_ACT_DY_FCPROJ);
                mpt_gelu_backward_bias(dfc, NULL, lay_(m, MPT_ACT_FCH, l), dfcg, N, Fl);
            }
            TRY_(all_rows_(m, saved_(m, MPT_ACT_LN2, l, Nl * D), Nl, &x, err));
            if (mpt_gpt_tp_overlap(m)) {
                TRY_(linear_backward_tp_(m, dtmp, l, MPT_FC_W, -1, dfc, x, N, D, Fl,
                                         MPT_ACT_DY_FC, err));
            } else {
                linear_backward_(m, dtmp, l, MPT_FC_W, -1, dfc, x, N, D, Fl, MPT_ACT_DY_FC);
                TRY_(copy_to_tp_bwd_(m, dtmp, N, Nl, err));
            }
        }
        /* unsplit without sp, attn.c_proj's bias gradient (the column sums of d res2) comes
         * out of ln_2's backward pass (core/kernels_fused.h): no bias pass of its own */
        int fuse_b = !m->sp && !m->split_w;
        if (fuse_b)
            mpt_layernorm_backward_colsum(dres, G_(m, l, MPT_LN2_W), G_(m, l, MPT_LN2_B),
                                          G_(m, l, MPT_ATTPROJ_B), dtmp, lay_(m, MPT_ACT_RES2, l),
                                          W_(m, l, MPT_LN2_W), lay_(m, MPT_ACT_LN2_MEAN, l),
                                          lay_(m, MPT_ACT_LN2_RSTD, l), Nl, D);
        else
            TRY_(block_ln_backward_(m, l, 1, dres, dtmp, lay_(m, MPT_ACT_RES2, l), Nl, err));
        /* dres now holds dL/d(res2); attention half */
        const float *atty = saved_(m, MPT_ACT_ATTY, l, NDl);
        if (mpt_gpt_sp_overlap(m)) {
            TRY_(linear_backward_sp_(m, dtmp, l, MPT_ATTPROJ_W, MPT_ATTPROJ_B, dres, atty, Nl, Dl,
                                     D, MPT_ACT_DY_ATTPROJ, 1, err));
        } else {
            TRY_(all_rows_(m, dres, Nl, &dy, err));
            linear_backward_(m, dtmp, l, MPT_ATTPROJ_W, fuse_b ? -1 : MPT_ATTPROJ_B, dy, atty, N,
                             Dl, D, MPT_ACT_DY_ATTPROJ);
        }
        /* the fused backward recomputes the scores from q, k and the kept lse (any recompute
         * mode: nothing T x T was stored) */
        TRY_(attention_backward_(m, dqkv, dtmp, atty, lay_(m, MPT_ACT_LSE, l),
                                 lay_(m, MPT_ACT_QKV, l), B, T, err));
        if (mpt_gpt_sp_overlap(m)) x = saved_(m, MPT_ACT_LN1, l, Nl * D); /* gathered beside */
        else TRY_(all_rows_(m, saved_(m, MPT_ACT_LN1, l, Nl * D), Nl, &x, err));
        /* then the sum over tp comes with the GEMMs */
        int ov_qkv = mpt_gpt_sp_overlap(m) || mpt_gpt_tp_overlap(m);
        if (mpt_gpt_sp_overlap(m))
            TRY_(linear_backward_sp_(m, dtmp, l, MPT_QKV_W, MPT_QKV_B, dqkv, x, Nl, D, 3 * Dl,
                                     MPT_ACT_DY_QKV, 0, err));
        else if (ov_qkv)
            TRY_(linear_backward_tp_(m, dtmp, l, MPT_QKV_W, MPT_QKV_B, dqkv, x, N, D, 3 * Dl,
                                     MPT_ACT_DY_QKV, err));
        else
            linear_backward_(m, dtmp, l, MPT_QKV_W, MPT_QKV_B, dqkv, x, N, D, 3 * Dl,
                             MPT_ACT_DY_QKV);
        /* The key bias adds q.b_k to every score of a query's row, a shift the softmax ignores:
         * its gradient is exactly zero. Computed, it is rounding noise (~1e-11) that AdamW would
         * normalise into lr-sized steps of random sign, so it is set to its exact value. */
        if (!m->split_w) memset(G_(m, l, MPT_QKV_B) + Dl, 0, (size_t)Dl * sizeof(float));
        if (!ov_qkv) TRY_(copy_to_tp_bwd_(m, dtmp, N, Nl, err));
        TRY_(block_ln_backward_(m, l, 0, dres, dtmp, in, Nl, err));
        if (ln_defer_(m)) TRY_(ln_grads_sum_(m, l, err));
        TRY_(b_grads_done_(m, l + 1, err));
    }
    if (!m->first) return MPT_OK; /* dres: the input gradient, for the previous stage */
    if (!head_is_wte) TRY_(need_(m, 0, MPT_PHASE_BACKWARD, err));
    if (mpt_gpt_sp_overlap(m)) { /* the gather by row blocks, each summed in as it arrives */
        TRY_(mpt_gpt_sp_embed_backward(m, m->g[pt->wte], dres, inputs, Nl, D, &dy, err));
        positions_backward_(m, m->g[pt->wpe], dy, B, T, D);
    } else if (m->tp > 1 || m->cp > 1) {
        TRY_(all_rows_(m, dres, Nl, &dy, err)); /* every token, for the vocabulary rows here */
        mpt_embed_masked_backward(m->g[pt->wte], dy, inputs, B, T, D, m->v0, m->Vl);
        positions_backward_(m, m->g[pt->wpe], dy, B, T, D);
    } else {
        mpt_encoder_backward(m->g[pt->wte], m->g[pt->wpe], dres, inputs, B, T, D);
    }
    return grads_done_(m, 0, err); /* split or not: B writes the embeddings' gradients */
}

mpt_status mpt_gpt_backward_weights(mpt_gpt *m, int B, int T, mpt_error *err) {
    if (!m->split_w) return MPT_OK; /* the backward did it all */
    int D = m->cfg.d_model, Dl = m->Dl, Fl = m->Fl, L = m->nl;
    size_t N = (size_t)B * T, Nl = m->sp ? N / (size_t)m->tp : N;
    const float *x;
    m->moe_stats_on = 0; /* a recomputed forward counts no routing twice */
    for (int l = L - 1; l >= 0; l--) { /* dW = X^T dY, db = sum dY, as the unsplit backward */
        TRY_(need_(m, l + 1, MPT_PHASE_BACKWARD_W, err));
        /* full recompute kept only the block's input: its forward again for the inputs of its
         * linear layers (deterministic, the same values B saw) */
        if (m->recompute == MPT_RECOMPUTE_FULL) TRY_(block_forward_(m, l, B, T, err));
        for (int k = 0; k < 2; k++) { /* the LayerNorms' gradients B left */
            float *dw, *db;
            ln_stash_(m, l, k, &dw, &db);
            mpt_add_inplace(G_(m, l, k ? MPT_LN2_W : MPT_LN1_W), dw, (size_t)D);
            mpt_add_inplace(G_(m, l, k ? MPT_LN2_B : MPT_LN1_B), db, (size_t)D);
        }
        if (mpt_gpt_router(m, l) != SIZE_MAX) { /* MoE: experts and router (model/moe.h) */
            TRY_(mpt_gpt_moe_backward_weights(m, l, saved_(m, MPT_ACT_LN2, l, Nl * D), Nl, err));
        } else {
            mpt_matmul_backward(NULL, G_(m, l, MPT_FCPROJ_W), G_(m, l, MPT_FCPROJ_B),
                                stash_(m, MPT_ACT_DY_FCPROJ, l),
                                saved_(m, MPT_ACT_FCH_GELU, l, N * Fl), NULL, N, Fl, D);
            TRY_(all_rows_(m, saved_(m, MPT_ACT_LN2, l, Nl * D), Nl, &x, err));
            mpt_matmul_backward(NULL, G_(m, l, MPT_FC_W), G_(m, l, MPT_FC_B),
                                stash_(m, MPT_ACT_DY_FC, l), x, NULL, N, D, Fl);
        }
        /* without sp, its bias in the unsplit backward's order (fused in ln_2's pass) */
        mpt_matmul_backward(NULL, G_(m, l, MPT_ATTPROJ_W), m->sp ? G_(m, l, MPT_ATTPROJ_B) : NULL,
                            stash_(m, MPT_ACT_DY_ATTPROJ, l), saved_(m, MPT_ACT_ATTY, l, N * Dl),
                            NULL, N, Dl, D);
        if (!m->sp) mpt_colsum_add(G_(m, l, MPT_ATTPROJ_B), stash_(m, MPT_ACT_DY_ATTPROJ, l), N, D);
        TRY_(all_rows_(m, saved_(m, MPT_ACT_LN1, l, Nl * D), Nl, &x, err));
        mpt_matmul_backward(NULL, G_(m, l, MPT_QKV_W), G_(m, l, MPT_QKV_B),
                            stash_(m, MPT_ACT_DY_QKV, l), x, NULL, N, D, 3 * Dl);
        memset(G_(m, l, MPT_QKV_B) + Dl, 0, (size_t)Dl * sizeof(float)); /* as in backward */
        TRY_(grads_done_(m, l + 1, err));
    }
    return MPT_OK;
}
