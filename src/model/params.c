/* params.c — builds the tensor table of a GPT model (see params.h). */
#include "model/params.h"

#include <math.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Adds one tensor of full shape (r, c) stored as (rows, cols) split as `split`. */
static void add_(mpt_param_table *pt, const char *name, int ndim, size_t r, size_t c,
                 mpt_split split, size_t rows, size_t cols, int layer, float std, float value) {
    mpt_tensor *t = &pt->t[pt->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = ndim;
    t->shape[0] = r;
    t->shape[1] = ndim == 2 ? c : 1;
    t->split = split;
    t->dtype = MPT_F32;
    t->rows = rows;
    t->cols = ndim == 2 ? cols : 1;
    t->numel = t->rows * t->cols;
    t->offset = pt->total;
    t->layer = layer;
    t->decay = ndim >= 2;
    t->init_std = std;
    t->init_value = value;
    t->expert = -1;
    pt->total += t->numel;
}

/* Closes unit u at the current end of the buffer, padded to the alignment. */
static void close_unit_(mpt_param_table *pt, int u, size_t begin) {
    size_t a = pt->unit_align;
    pt->total = (pt->total + a - 1) / a * a;
    pt->unit_begin[u] = begin;
    pt->unit_end[u] = pt->total;
    if (!pt->unit_xbegin[u]) pt->unit_xbegin[u] = pt->total; /* no expert part */
}

mpt_status mpt_params_build(mpt_param_table *pt, const mpt_config *c, mpt_error *err) {
    return mpt_params_build_aligned(pt, c, 1, err);
}

mpt_status mpt_params_build_aligned(mpt_param_table *pt, const mpt_config *c, size_t unit_align,
                                    mpt_error *err) {
    return mpt_params_build_stage(pt, c, 1, 0, 0, c->n_layer, 1, 1, unit_align, err);
}

mpt_status mpt_params_build_stage(mpt_param_table *pt, const mpt_config *c, int tp, int tp_rank,
                                  int first_layer, int n_layers, int has_embed, int has_head,
                                  size_t unit_align, mpt_error *err) {
    return mpt_params_build_chunks(pt, c, tp, tp_rank, 1, 0, first_layer, n_layers, 0, 0,
                                   has_embed, has_head, unit_align, err);
}

/* Model-wide id of block gl's first tensor: 2 + the tensors of the blocks before it. */
static int layer_id0_(const mpt_config *c, int gl) {
    int id = 2;
    for (int i = 0; i < gl; i++) id += mpt_config_layer_tensors(c, i);
    return id;
}

mpt_status mpt_params_build_stage_ep(mpt_param_table *pt, const mpt_config *c, int tp,
                                     int tp_rank, int ep, int ep_rank, int first_layer,
                                     int n_layers, int has_embed, int has_head,
                                     size_t unit_align, mpt_error *err) {
    return mpt_params_build_chunks(pt, c, tp, tp_rank, ep, ep_rank, first_layer, n_layers, 0, 0,
                                   has_embed, has_head, unit_align, err);
}

/* The model-wide index of local block i (chunks of chunk_layers blocks, chunk_stride apart). */
static size_t global_layer_(int first_layer, size_t i, int chunk_layers, int chunk_stride) {
    size_t ck = (size_t)chunk_layers;
    return (size_t)first_layer + i / ck * (size_t)chunk_stride + i % ck;
}

mpt_status mpt_params_build_chunks(mpt_param_table *pt, const mpt_config *c, int tp, int tp_rank,
                                   int ep, int ep_rank, int first_layer, int n_layers,
                                   int chunk_layers, int chunk_stride, int has_embed,
                                   int has_head, size_t unit_align, mpt_error *err) {
    memset(pt, 0, sizeof *pt);
    if (chunk_layers <= 0) chunk_layers = n_layers > 0 ? n_layers : 1;
    if (ep < 1) ep = 1;
    if (c->experts > 0 && c->experts % ep != 0)
        return mpt_fail(err, MPT_ERR_INPUT, "--ep %d must divide --experts %d: choose an ep "
                        "that divides the experts", ep, c->experts);
    if (c->experts == 0) ep = 1;
    pt->unit_align = unit_align ? unit_align : 1;
    size_t L = (size_t)n_layers, Lm = (size_t)c->n_layer, D = (size_t)c->d_model;
    size_t F = (size_t)c->ffn;
    size_t V = (size_t)c->vocab, Vp = (size_t)c->padded_vocab, T = (size_t)c->n_positions;
    if (Vp < V) return mpt_fail(err, MPT_ERR_RUN, "params: padded vocab %zu < vocab %zu", Vp, V);
    if (tp < 1 || c->n_head % tp || c->ffn % tp || c->padded_vocab % tp)
        return mpt_fail(err, MPT_ERR_INPUT,
                        "--tp %d must divide the heads %d, the ffn width %d and the padded "
                        "vocabulary %d: choose a tp that divides them",
                        tp, c->n_head, c->ffn, c->padded_vocab);
    pt->tp = tp;
    pt->tp_rank = tp_rank;
    size_t t_ = (size_t)tp, Dl = D / t_, Fl = F / t_, Vl = Vp / t_;
    int El = c->experts / ep; /* experts of this expert-parallel rank */
    size_t cap = 2 + 2 + 1;
    for (size_t i = 0; i < L; i++)
        cap += mpt_config_is_moe_layer(c, (int)global_layer_(first_layer, i, chunk_layers,
                                                             chunk_stride))
                   ? 9 + 4 * (size_t)El
                                                                : MPT_LAYER_SLOTS;
    pt->ep = ep;
    pt->ep_rank = ep > 1 ? ep_rank : 0;
    pt->n_experts_local = El;
    pt->t = calloc(cap, sizeof *pt->t);
    pt->layer = calloc(L * MPT_LAYER_SLOTS + 1, sizeof *pt->layer);
    pt->router = calloc(L + 1, sizeof *pt->router);
    pt->n_units = (int)L + 2;
    pt->unit_begin = calloc(L + 2, sizeof *pt->unit_begin);
    pt->unit_end = calloc(L + 2, sizeof *pt->unit_end);
    pt->unit_xbegin = calloc(L + 2, sizeof *pt->unit_xbegin);
    if (!pt->t || !pt->layer || !pt->router || !pt->unit_begin || !pt->unit_end ||
        !pt->unit_xbegin) {
        mpt_params_free(pt);
        return mpt_fail(err, MPT_ERR_RUN, "out of memory building the parameter table");
    }
    pt->n_layer = (int)L;
    pt->first_layer = first_layer;
    pt->has_embed = has_embed;
    pt->has_head = has_head;
    const float std = 0.02f, proj_std = 0.02f / sqrtf(2.0f * (float)Lm);
    /* ids in the whole model's table: wte 0, wpe 1, block l slot k 2 + 12l + k, then ln_f w, b,
     * lm_head */
    const int id_lnf = layer_id0_(c, (int)Lm);
    pt->wte = pt->wpe = SIZE_MAX;
    if (has_embed) {
        pt->wte = pt->n;
        add_(pt, "transformer.wte.weight", 2, V, D, MPT_SPLIT_ROWS, Vl, D, -1, std, 0);
        pt->t[pt->wte].full_id = 0;
        pt->wpe = pt->n;
        add_(pt, "transformer.wpe.weight", 2, T, D, MPT_SPLIT_NONE, T, D, -1, std, 0);
        pt->t[pt->wpe].full_id = 1;
    }
    close_unit_(pt, 0, 0);
    for (size_t i = 0; i < L; i++) {
        /* the model-wide block index: chunk i / chunk_layers starts chunk_stride blocks after
         * the previous one */
        size_t gl = global_layer_(first_layer, i, chunk_layers, chunk_stride);
        size_t begin = pt->total;
        /* Megatron: c_attn and c_fc column-parallel, the two c_proj row-parallel (their
         * biases replicated, added once after the all-reduce) */
        const struct {
            const char *suffix;
            int ndim;
            size_t r, c;
            mpt_split split;
            size_t rows, cols;
            float std, value;
        } s[] = {
            [MPT_LN1_W] = {"ln_1.weight", 1, D, 1, MPT_SPLIT_NONE, D, 1, 0, 1},
            [MPT_LN1_B] = {"ln_1.bias", 1, D, 1, MPT_SPLIT_NONE, D, 1, 0, 0},
            [MPT_QKV_W] = {"attn.c_attn.weight", 2, D, 3 * D, MPT_SPLIT_QKV, D, 3 * Dl, std, 0},
            [MPT_QKV_B] = {"attn.c_attn.bias", 1, 3 * D, 1, MPT_SPLIT_QKV, 3 * Dl, 1, 0, 0},
            [MPT_ATTPROJ_W] = {"attn.c_proj.weight", 2, D, D, MPT_SPLIT_ROWS, Dl, D, proj_std, 0},
            [MPT_ATTPROJ_B] = {"attn.c_proj.bias", 1, D, 1, MPT_SPLIT_NONE, D, 1, 0, 0},
            [MPT_LN2_W] = {"ln_2.weight", 1, D, 1, MPT_SPLIT_NONE, D, 1, 0, 1},
            [MPT_LN2_B] = {"ln_2.bias", 1, D, 1, MPT_SPLIT_NONE, D, 1, 0, 0},
            [MPT_FC_W] = {"mlp.c_fc.weight", 2, D, F, MPT_SPLIT_COLS, D, Fl, std, 0},
            [MPT_FC_B] = {"mlp.c_fc.bias", 1, F, 1, MPT_SPLIT_ROWS, Fl, 1, 0, 0},
            [MPT_FCPROJ_W] = {"mlp.c_proj.weight", 2, F, D, MPT_SPLIT_ROWS, Fl, D, proj_std, 0},
            [MPT_FCPROJ_B] = {"mlp.c_proj.bias", 1, D, 1, MPT_SPLIT_NONE, D, 1, 0, 0},
        };
        int id0 = layer_id0_(c, (int)gl), moe = mpt_config_is_moe_layer(c, (int)gl);
        pt->router[i] = SIZE_MAX;
        for (int k = 0; k < (moe ? MPT_FC_W : MPT_LAYER_SLOTS); k++) {
            char name[96];
            snprintf(name, sizeof name, "transformer.h.%zu.%s", gl, s[k].suffix);
            pt->layer[i * MPT_LAYER_SLOTS + (size_t)k] = pt->n;
            add_(pt, name, s[k].ndim, s[k].r, s[k].c, s[k].split, s[k].rows, s[k].cols, (int)i,
                 s[k].std, s[k].value);
            pt->t[pt->n - 1].full_id = id0 + k;
        }
        if (moe) { /* router [D, E], then this rank's experts: whole tensors on every tp rank */
            size_t E = (size_t)c->experts;
            char name[96];
            snprintf(name, sizeof name, "transformer.h.%zu.mlp.router.weight", gl);
            pt->router[i] = pt->n;
            add_(pt, name, 2, D, E, MPT_SPLIT_NONE, D, E, (int)i, std, 0);
            pt->t[pt->n - 1].full_id = id0 + MPT_FC_W;
            size_t a = pt->unit_align; /* the expert part starts aligned (unit_xbegin) */
            pt->total = (pt->total + a - 1) / a * a;
            pt->unit_xbegin[i + 1] = pt->total;
            for (int j = 0; j < El; j++) {
                int e = pt->ep_rank * El + j; /* model-wide expert index */
                for (int k = MPT_FC_W; k < MPT_LAYER_SLOTS; k++) {
                    snprintf(name, sizeof name, "transformer.h.%zu.mlp.experts.%d.%s", gl, e,
                             s[k].suffix + 4); /* "mlp." dropped */
                    if (j == 0) pt->layer[i * MPT_LAYER_SLOTS + (size_t)k] = pt->n;
                    add_(pt, name, s[k].ndim, s[k].r, s[k].c, MPT_SPLIT_NONE, s[k].r, s[k].c,
                         (int)i, s[k].std, s[k].value);
                    pt->t[pt->n - 1].full_id = id0 + MPT_FC_W + 1 + 4 * e + (k - MPT_FC_W);
                    pt->t[pt->n - 1].expert = e;
                }
            }
        }
        close_unit_(pt, (int)i + 1, begin);
    }
    size_t final_begin = pt->total;
    pt->lnf_w = pt->lnf_b = pt->lm_head = SIZE_MAX;
    if (has_head) {
        pt->lnf_w = pt->n;
        add_(pt, "transformer.ln_f.weight", 1, D, 1, MPT_SPLIT_NONE, D, 1, -1, 0, 1);
        pt->t[pt->lnf_w].full_id = id_lnf;
        pt->lnf_b = pt->n;
        add_(pt, "transformer.ln_f.bias", 1, D, 1, MPT_SPLIT_NONE, D, 1, -1, 0, 0);
        pt->t[pt->lnf_b].full_id = id_lnf + 1;
        pt->lm_head = pt->wte;
        if (!c->tied) {
            pt->lm_head = pt->n;
            add_(pt, "lm_head.weight", 2, V, D, MPT_SPLIT_ROWS, Vl, D, -1, std, 0);
            pt->t[pt->lm_head].full_id = id_lnf + 2;
        } else if (!has_embed) { /* the tied head's own copy of wte on the last stage */
            pt->lm_head = pt->n;
            add_(pt, "transformer.wte.weight", 2, V, D, MPT_SPLIT_ROWS, Vl, D, -1, std, 0);
            pt->t[pt->lm_head].full_id = 0;
            pt->t[pt->lm_head].is_copy = 1;
        }
    }
    close_unit_(pt, (int)L + 1, final_begin);
    return MPT_OK;
}

void mpt_params_free(mpt_param_table *pt) {
    if (!pt) return;
    free(pt->t);
    free(pt->layer);
    free(pt->router);
    free(pt->unit_begin);
    free(pt->unit_end);
    free(pt->unit_xbegin);
    memset(pt, 0, sizeof *pt);
}

const mpt_tensor *mpt_params_find(const mpt_param_table *pt, const char *name) {
    for (size_t i = 0; i < pt->n; i++)
        if (strcmp(pt->t[i].name, name) == 0) return &pt->t[i];
    return NULL;
}

int mpt_tensor_unit(const mpt_param_table *pt, const mpt_tensor *t) {
    if (t->layer >= 0) return t->layer + 1;
    return t->offset < pt->unit_end[0] && pt->has_embed ? 0 : pt->n_units - 1;
}

size_t mpt_tensor_full_index(const mpt_tensor *t, int tp, int rank, size_t k) {
    size_t i = k / t->cols, j = k % t->cols, fi = i, fj = j;
    (void)tp;
    switch (t->split) {
    case MPT_SPLIT_NONE: break;
    case MPT_SPLIT_ROWS: fi = (size_t)rank * t->rows + i; break;
    case MPT_SPLIT_COLS: fj = (size_t)rank * t->cols + j; break;
    case MPT_SPLIT_QKV: {
        /* the split dimension is the columns of the 2-D weight, the elements of the bias */
        size_t idx = t->ndim == 2 ? j : i, third = (t->ndim == 2 ? t->cols : t->rows) / 3;
        size_t full = (idx / third) * (t->shape[t->ndim == 2 ? 1 : 0] / 3) +
                      (size_t)rank * third + idx % third;
        if (t->ndim == 2) fj = full;
        else fi = full;
        break;
    }
    }
    if (fi >= t->shape[0]) return SIZE_MAX; /* padding rows of the vocabulary */
    return fi * t->shape[1] + fj;
}

size_t mpt_tensor_ckpt_numel(const mpt_tensor *t) { return t->shape[0] * t->shape[1]; }
