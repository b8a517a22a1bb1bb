/* generator.c — generation on a tp x pp layout (see generator.h): loading the checkpoint into
 * this rank's shard, the token's way through the stages, and the shared choice. */
#include "train/generator.h"

#include <stdlib.h>
#include <string.h>

#include "parallel/partition.h"
#include "parallel/placement.h"
#include "parallel/tp.h"
#include "train/checkpoint.h"

enum { TAG_ = 32000 }; /* pp group: a token's hidden state from one stage to the next */

/* Local checks and sizes, before any group exists: the same verdict on every rank. */
static mpt_status prepare_(mpt_generator *g, const char *dir, int tp, int pp, int no_cache,
                           mpt_error *err) {
    mpt_status st;
    if ((st = mpt_checkpoint_read_config(dir, &g->cfg, err))) return st;
    if (tp < 1 || pp < 1)
        return mpt_fail(err, MPT_ERR_INPUT, "--tp %d --pp %d: each must be at least 1", tp, pp);
    if (no_cache && pp > 1)
        return mpt_fail(err, MPT_ERR_INPUT,
                        "--no-cache re-runs the whole window on one pipeline stage: use --pp 1");
    if ((st = mpt_config_finish(&g->cfg, 64 * tp, err))) return st;
    /* MoE: every rank holds all the experts (ep 1; the checkpoint is layout-independent) and
     * routes dropless, so that a token's experts do not depend on the other tokens of the
     * window: the cached decoder (one token at a time) and --no-cache (the whole window) give
     * the same logits whatever capacity factor the model was trained with */
    g->cfg.capacity_factor = 0.0f;
    mpt_layout lay = mpt_layout_make(tp, 1, 1, pp, 1);
    if ((st = mpt_layout_check(&lay, g->world->size, err))) return st;
    if (pp > g->cfg.n_layer)
        return mpt_fail(err, MPT_ERR_INPUT,
                        "--pp %d is more pipeline stages than the checkpoint's %d layers: use "
                        "--pp %d or fewer", pp, g->cfg.n_layer, g->cfg.n_layer);
    return mpt_partition(&g->cfg, g->cfg.n_positions, pp, "uniform", g->stage_layers, NULL, NULL,
                         err);
}

/* This rank's shard of every tensor it holds, from the checkpoint's full tensors (each read
 * whole into a scratch buffer, then its elements picked by mpt_tensor_full_index). */
static mpt_status load_(mpt_generator *g, const char *dir, mpt_error *err) {
    mpt_gpt *m = &g->model;
    const mpt_param_table *pt = &m->pt;
    mpt_param_table full;
    mpt_ckpt_reader rd;
    float *tmp = NULL;
    memset(&rd, 0, sizeof rd);
    mpt_status st = mpt_params_build(&full, &g->cfg, err);
    if (st) return st;
    if ((st = mpt_checkpoint_open(&rd, dir, &full, 0, err))) goto done;
    size_t most = 1;
    for (size_t i = 0; i < pt->n; i++) {
        size_t n = mpt_tensor_ckpt_numel(&full.t[pt->t[i].full_id]);
        if (n > most) most = n;
    }
    if (!(tmp = malloc(most * sizeof *tmp))) {
        st = mpt_fail(err, MPT_ERR_RUN, "out of memory reading a tensor of %zu floats", most);
        goto done;
    }
    memset(m->params, 0, pt->total * sizeof *m->params);
    for (size_t i = 0; !st && i < pt->n; i++) {
        const mpt_tensor *t = &pt->t[i];
        size_t n = mpt_tensor_ckpt_numel(&full.t[t->full_id]);
        if ((st = mpt_checkpoint_read(&rd, 0, (size_t)t->full_id, 0, n, tmp, err))) break;
        float *dst = m->params + t->offset;
        for (size_t k = 0; k < t->numel; k++) {
            size_t f = mpt_tensor_full_index(t, pt->tp, pt->tp_rank, k);
            dst[k] = f == SIZE_MAX ? 0.0f : tmp[f];
        }
    }
done:
    free(tmp);
    mpt_checkpoint_close(&rd);
    mpt_params_free(&full);
    return st;
}

/* After the groups: this rank's model, weights and cache. */
static mpt_status build_(mpt_generator *g, const char *dir, int no_cache, mpt_error *err) {
    mpt_placement pl = g->groups.place;
    mpt_placement_set_layers(&pl, g->stage_layers);
    mpt_par_ops ops; /* the model copies it; its context, the tp group, lives in g->groups */
    mpt_tp_ops(&ops, &g->groups.dim[MPT_DIM_TP]);
    mpt_gpt_place place = mpt_placement_gpt(&pl, &ops, 0, MPT_RECOMPUTE_NONE);
    int flags = no_cache ? MPT_GPT_INFER : MPT_GPT_INFER | MPT_GPT_NO_ACTS;
    mpt_status st = mpt_gpt_init(&g->model, &g->cfg, 1, g->cfg.n_positions, flags, 1, &place,
                                 &g->arena, err);
    if (st || (st = load_(g, dir, err))) return st;
    if (!no_cache) return mpt_decode_init(&g->dec, &g->model, err);
    if (g->model.tp > 1 &&
        !(g->full_logits = malloc((size_t)g->cfg.padded_vocab * sizeof *g->full_logits)))
        return mpt_fail(err, MPT_ERR_RUN, "out of memory for a row of logits");
    return MPT_OK;
}

mpt_status mpt_generator_init(mpt_generator *g, mpt_comm *world, const char *dir, int tp, int pp,
                              int no_cache, mpt_error *err) {
    memset(g, 0, sizeof *g);
    g->world = world;
    g->no_cache = no_cache;
    mpt_arena_init(&g->arena, 0);
    mpt_status st = mpt_comm_agree(world, prepare_(g, dir, tp, pp, no_cache, err), err);
    mpt_layout lay = mpt_layout_make(tp, 1, 1, pp, 1);
    if (!st) st = mpt_groups_init(&g->groups, &lay, world, err);
    if (!st) st = mpt_comm_agree(world, build_(g, dir, no_cache, err), err);
    if (st) mpt_generator_free(g);
    return st;
}

void mpt_generator_free(mpt_generator *g) {
    if (!g) return;
    mpt_decode_free(&g->dec);
    free(g->full_logits);
    mpt_gpt_free(&g->model);
    mpt_groups_free(&g->groups);
    g->full_logits = NULL;
}

/* One token through every stage's cache: the previous stage's output in, this stage's out. */
static mpt_status feed_(mpt_generator *g, int32_t token, const float **logits, mpt_error *err) {
    mpt_comm *pp = &g->groups.dim[MPT_DIM_PP];
    size_t D = (size_t)g->cfg.d_model;
    mpt_status st = MPT_OK;
    if (!g->model.first && (st = mpt_recv(pp, g->dec.x, D, pp->rank - 1, TAG_, err))) return st;
    if ((st = mpt_decode_step(&g->dec, token, logits, err))) return st;
    if (!g->model.last) st = mpt_send(pp, g->dec.x, D, pp->rank + 1, TAG_, err);
    return st;
}

/* The whole window again (pp 1): the last position's logits, gathered over tp. */
static mpt_status rerun_(mpt_generator *g, const int32_t *ctx, size_t n, const float **logits,
                         mpt_error *err) {
    mpt_gpt *m = &g->model;
    size_t T = (size_t)g->cfg.n_positions, len = n < T ? n : T;
    for (size_t j = n - len; j < n; j++)
        if (ctx[j] < 0 || ctx[j] >= g->cfg.vocab)
            return mpt_fail(err, MPT_ERR_INPUT, "token %d is outside the vocabulary of %d",
                            (int)ctx[j], g->cfg.vocab);
    mpt_status st = mpt_gpt_forward(m, ctx + (n - len), NULL, 1, (int)len, 0.0f, NULL, err);
    if (st) return st;
    const float *row = m->cur->a[MPT_ACT_LOGITS] + (len - 1) * (size_t)m->Vl;
    *logits = row;
    if (m->tp == 1) return MPT_OK;
    *logits = g->full_logits;
    return m->ops.gather_seq(m->ops.ctx, row, g->full_logits, (size_t)m->Vl, err);
}

mpt_status mpt_generator_next(mpt_generator *g, mpt_sampler *s, const int32_t *ctx, size_t n,
                              uint64_t i, int32_t *next, mpt_error *err) {
    const float *logits = NULL;
    mpt_status st = MPT_OK;
    if (n == 0) return mpt_fail(err, MPT_ERR_INPUT, "generation needs at least one token");
    if (g->no_cache) {
        st = rerun_(g, ctx, n, &logits, err);
    } else {
        size_t T = (size_t)g->dec.T;
        if (g->fed > n) { /* a shorter context than the cache has seen: start over */
            g->fed = 0;
            mpt_decode_reset(&g->dec);
        }
        if ((size_t)g->dec.pos + (n - g->fed) > T) {
            /* the cache cannot take it all: restart it from the last T tokens (a prompt) or,
             * once full, from the last half of the context */
            size_t keep = g->dec.pos == 0 ? T : T / 2;
            mpt_decode_reset(&g->dec);
            g->fed = n > keep ? n - keep : 0;
        }
        for (; !st && g->fed < n; g->fed++) st = feed_(g, ctx[g->fed], &logits, err);
    }
    if (st) return st;
    if (g->model.last) *next = mpt_sampler_pick(s, logits, i);
    mpt_comm *pp = &g->groups.dim[MPT_DIM_PP];
    if (pp->size > 1) st = mpt_bcast(pp, next, sizeof *next, pp->size - 1, err);
    return st;
}
