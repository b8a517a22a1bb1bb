/* trainer_ckpt.c — a training run's state on disk: loading a checkpoint into this rank's part
 * of the model and optimizer, saving one, and the step-1 gradient dump of the reference tests.
 *
 * Nothing here holds a whole model: tensors stream through the two staging blocks of
 * train/checkpoint.h (mpt_checkpoint_buffers, workspace, in the memory plan), a run of whole
 * rows of one tensor at a time.
 *   Saving (all ranks call, world rank 0 writes): for each tensor and run of rows, in file
 *   order, the stage that holds the tensor sends its pieces: within each tensor-parallel rank's
 *   data-parallel group the ZeRO slices go to dp rank 0 (into its "in" block), which sends the
 *   shard's rows to world rank 0; rank 0 places every tp rank's shard into the checkpoint's
 *   row-major layout ("out" block) and appends it to the file. A failed write keeps the
 *   exchange going (so no rank hangs) and is agreed on at the end.
 *   Loading (all ranks call, no communication): each rank reads, with pread, only the rows of
 *   the tensors it keeps (its tp shard's rows; under ZeRO its slice's rows) into the "out"
 *   block and copies its elements from there.
 *   Sharded saving (--save-format sharded, at the end of the file): each rank writes its own
 *   slices to a file of its own; loading reads them through the same reader (ckpt_shard.h).
 * The staging is taken from the arena for each load, save and dump and given back after; the
 * load at start-up always takes it, so --mem-limit covers a later save from the start. */
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "train/checkpoint.h"
#include "train/ckpt_shard.h"
#include "train/safetensors.h"
#include "train/trainer_internal.h"

enum { K_PARAMS, K_M, K_V, K_STASH, K_GRADS };   /* what a tensor's data are (K_STASH: 2bw's
                                                  * previous version, kind 3 of the files) */
#define TAG_ 7301                       /* point-to-point tag of checkpoint pieces */

typedef struct stage_ {
    mpt_run *r;
    float *in, *out;     /* staging blocks of cap elements each (arena) */
    size_t cap;
    mpt_buflist bufs;
    long *local;         /* owned: per full tensor, its index in this rank's table, or -1 */
    mpt_param_table tpt; /* rank 0 saving: every tensor as tp rank 0's shard (shapes of all) */
} stage_;

static void stage_free_(stage_ *s) {
    mpt_buflist_release(&s->bufs, &s->r->arena);
    mpt_buflist_free(&s->bufs);
    free(s->local);
    mpt_params_free(&s->tpt);
}

/* Takes the staging from the arena and maps full tensors to this rank's table. */
static mpt_status stage_init_(stage_ *s, mpt_run *r, int shapes, mpt_error *err) {
    memset(s, 0, sizeof *s);
    s->r = r;
    mpt_buflist_init(&s->bufs);
    mpt_checkpoint_buffers(&r->full, &s->bufs, &s->in, &s->out);
    s->cap = mpt_checkpoint_stage_elems(&r->full);
    mpt_status st = mpt_buflist_alloc(&s->bufs, &r->arena, err);
    if (!st && !(s->local = malloc((r->full.n + 1) * sizeof *s->local)))
        st = mpt_fail(err, MPT_ERR_RUN, "out of memory for the checkpoint tables");
    for (size_t i = 0; !st && i < r->full.n; i++) s->local[i] = -1;
    const mpt_param_table *pt = &r->model.pt;
    for (size_t k = 0; !st && k < pt->n; k++) {
        int id = pt->t[k].full_id;
        if (id < 0 || (size_t)id >= r->full.n || strcmp(r->full.t[id].name, pt->t[k].name) != 0)
            st = mpt_fail(err, MPT_ERR_RUN, "checkpoint: tensor %s has no place in the model",
                          pt->t[k].name);
        else if (!pt->t[k].is_copy)
            s->local[id] = (long)k;
    }
    if (!st && shapes)
        st = mpt_params_build_stage(&s->tpt, &r->cfg, r->o->tp, 0, 0, r->cfg.n_layer, 1, 1, 1,
                                    err);
    if (st) stage_free_(s);
    return st;
}

/* Full tensor ft in rows: rows of frow elements (a 1-D tensor is one row). */
static size_t frow_(const mpt_tensor *ft) {
    return ft->ndim == 2 ? ft->shape[1] : mpt_tensor_ckpt_numel(ft);
}
static size_t nrows_(const mpt_tensor *ft) { return ft->ndim == 2 ? ft->shape[0] : 1; }
/* A shard's row length (1-D: the whole shard). */
static size_t lrow_(const mpt_tensor *lt) { return lt->ndim == 2 ? lt->cols : lt->numel; }

/* Rows [*a, *b) of tp rank t's shard lt that hold full rows [r0, r1). */
static void shard_rows_(const mpt_tensor *lt, int t, size_t r0, size_t r1, size_t *a,
                        size_t *b) {
    *a = 0;
    *b = 1;
    if (lt->ndim == 1) return;
    *a = r0;
    *b = r1;
    if (lt->split != MPT_SPLIT_ROWS) return;
    size_t lo = (size_t)t * lt->rows, hi = lo + lt->rows;
    if (r1 <= lo || r0 >= hi) {
        *a = *b = 0;
        return;
    }
    *a = (r0 > lo ? r0 : lo) - lo;
    *b = (r1 < hi ? r1 : hi) - lo;
}

/* Where this rank keeps kind k: *sliced when it holds only its ZeRO slice. */
static float *store_(mpt_run *r, int kind, int *sliced) {
    const mpt_dp *dp = &r->dp;
    *sliced = kind == K_PARAMS || kind == K_STASH ? dp->zero == 3
              : kind == K_GRADS                  ? 0
                                                 : dp->zero >= 1;
    switch (kind) {
    case K_PARAMS: return dp->zero == 3 ? dp->pshard : r->model.params;
    case K_STASH: return r->stash; /* laid out as the params (ZeRO-3: the slice) */
    case K_M: return dp->m;
    case K_V: return dp->v;
    default: return r->model.grads;
    }
}

/* Flat range [*x0, *x1) of tensor lt (of this rank's table) that rank d (-1: this rank) of its
 * ZeRO group holds of a sliced store, and *at = where element *x0 sits in the slice buffer.
 * Returns the group (parallel/dp.h): 1 the edp group (an expert under ep > 1), 0 the dp group. */
static int owned_(const mpt_dp *dp, const mpt_tensor *lt, int d, size_t *x0, size_t *x1,
                  size_t *at) {
    int g;
    mpt_dp_owned(dp, lt, d, &g, x0, x1, at);
    return g;
}

/* ---------------------------------------------------------------- loading */

/* The index in the dp module's group (dp, or dp x cp: cp_rank + cp * dp_rank) of its first
 * rank with ep rank q (parallel/mesh.h: ep over dp, or over cp then dp). */
static int ep_holder_(const mpt_run *r, int q) {
    const mpt_layout *l = &r->place.layout;
    return mpt_mesh_ep_spans_cp(l) ? q : q * l->size[MPT_DIM_CP];
}

/* Reads this rank's part of full tensor fi (kind) into tensor lt of its table. */
static mpt_status load_tensor_(stage_ *s, const mpt_ckpt_reader *rd, int kind, size_t fi,
                               const mpt_tensor *lt, mpt_error *err) {
    mpt_run *r = s->r;
    const mpt_tensor *ft = &r->full.t[fi];
    int sliced, t = r->model.pt.tp_rank, tp = r->model.pt.tp;
    float *store = store_(r, kind, &sliced);
    size_t o0 = 0, o1 = lt->numel, at, lrow = lrow_(lt), frow = frow_(ft);
    ptrdiff_t base = (ptrdiff_t)lt->offset; /* element k of lt is store[base + k] */
    if (sliced) {
        owned_(&r->dp, lt, -1, &o0, &o1, &at);
        base = (ptrdiff_t)at - (ptrdiff_t)(o0 - lt->offset);
        o0 -= lt->offset;
        o1 -= lt->offset;
    }
    if (o1 <= o0) return MPT_OK;
    memset(store + base + (ptrdiff_t)o0, 0, (o1 - o0) * sizeof *store);   /* padding stays 0 */
    /* full rows that hold the owned local rows */
    size_t la = o0 / lrow, lb = (o1 + lrow - 1) / lrow, fa = 0, fb = 1;
    if (ft->ndim == 2) {
        size_t shift = lt->split == MPT_SPLIT_ROWS ? (size_t)t * lt->rows : 0;
        fa = la + shift < ft->shape[0] ? la + shift : ft->shape[0];
        fb = lb + shift < ft->shape[0] ? lb + shift : ft->shape[0];
    }
    size_t per = s->cap / frow;   /* >= 2: see mpt_checkpoint_stage_elems */
    for (size_t r0 = fa; r0 < fb; r0 += per) {
        size_t r1 = r0 + per < fb ? r0 + per : fb, a, b;
        mpt_status st = mpt_checkpoint_read(rd, kind, fi, r0 * frow, (r1 - r0) * frow, s->out,
                                            err);
        if (st) return st;
        shard_rows_(lt, t, r0, r1, &a, &b);
        size_t k0 = a * lrow > o0 ? a * lrow : o0, k1 = b * lrow < o1 ? b * lrow : o1;
        for (size_t k = k0; k < k1; k++) {
            size_t f = mpt_tensor_full_index(lt, tp, t, k);
            if (f != SIZE_MAX) store[base + (ptrdiff_t)k] = s->out[f - r0 * frow];
        }
    }
    return MPT_OK;
}

mpt_status mpt_run_load(mpt_run *r, long *start, mpt_error *err) {
    const mpt_train_opts *o = r->o;
    stage_ s;
    mpt_ckpt_reader rd;
    mpt_train_state ts;
    *start = 0;
    mpt_status st = stage_init_(&s, r, 0, err);
    if (st) return st;
    if (!r->ckpt[0]) {
        mpt_dp_init_values(&r->dp, o->seed);
        stage_free_(&s);
        return MPT_OK;
    }
    memset(&rd, 0, sizeof rd);
    st = mpt_checkpoint_open(&rd, r->ckpt, &r->full, o->resume != NULL, err);
    if (!st && o->resume) st = mpt_checkpoint_read_state(r->ckpt, &ts, err);
    int kinds = o->resume && rd.has_opt ? 3 : 1;
    const mpt_param_table *pt = &r->model.pt;
    for (int k = 0; !st && k < kinds; k++)
        for (size_t i = 0; !st && i < pt->n; i++)
            st = load_tensor_(&s, &rd, k, (size_t)pt->t[i].full_id, &pt->t[i], err);
    if (!st && o->resume && r->stash && rd.has_stash) /* 2bw: W(t-1) too (else W(t), setup) */
        for (size_t i = 0; !st && i < pt->n; i++)
            st = load_tensor_(&s, &rd, K_STASH, (size_t)pt->t[i].full_id, &pt->t[i], err);
    if (!st) r->stash_loaded = o->resume && r->stash && rd.has_stash;
    if (!st && kinds == 1) { /* no optimizer state: AdamW starts from zero */
        size_t n = r->dp.zero == 0 ? pt->total : r->dp.shard_n;
        memset(r->dp.m, 0, n * sizeof(float));
        memset(r->dp.v, 0, n * sizeof(float));
    }
    if (!st && o->resume) *start = ts.step;
    mpt_checkpoint_close(&rd);
    stage_free_(&s);
    if (!st && *start > o->steps)
        st = mpt_fail(err, MPT_ERR_INPUT,
                      "the checkpoint is at step %ld, past --steps %ld: ask for more steps",
                      *start, o->steps);
    return st;
}

/* ---------------------------------------------------------------- saving */

/* The pipeline stage that holds full tensor ft (the first stage's wte, not the head's copy). */
static int holder_stage_(const mpt_run *r, const mpt_tensor *ft) {
    if (ft->layer >= 0 && r->v > 1) { /* interleaved or zb-v: chunks of k blocks */
        int rank, chunk, s = ft->layer / (r->cfg.n_layer / (r->o->pp * r->v));
        mpt_pp_stage_place(r->kind, r->o->pp, s, &rank, &chunk);
        return rank;
    }
    if (r->kind == MPT_PP_ZB_V) return 0; /* both ends of the V on rank 0 */
    if (ft->layer >= 0) {
        for (int p = 0, first = 0; p < r->o->pp; first += r->stage_count[p++])
            if (ft->layer >= first && ft->layer < first + r->stage_count[p]) return p;
    }
    return ft->full_id <= 1 ? 0 : r->o->pp - 1;
}

/* Every rank: rows [r0, r1) of full tensor fi of kind, assembled into s->out on world rank 0
 * (see the top of the file). */
static mpt_status gather_rows_(stage_ *s, int kind, size_t fi, size_t r0, size_t r1,
                               mpt_error *err) {
    mpt_run *r = s->r;
    const mpt_tensor *ft = &r->full.t[fi];
    /* the group the dp module shards over (dp, or dp x cp) and this rank's index in it: its
     * index 0 (dp 0, cp 0) collects the slices and sends the rows on */
    mpt_comm *dpc = r->dp.comm;
    int holder = holder_stage_(r, ft), tp = r->o->tp;
    int me_t = r->place.coords.c[MPT_DIM_TP], me_d = r->dp.r;
    /* an expert lives on the dp x cp ranks of its ep rank (ep > 1): the first of them sends
     * it (parallel/ep.h); sliced (ZeRO), its slices are spread over those ranks (edp) */
    int ep = r->place.layout.size[MPT_DIM_EP], hold_d = 0;
    if (ft->expert >= 0 && ep > 1)
        hold_d = ep_holder_(r, ft->expert / (r->cfg.experts / ep));
    int me_p = r->place.coords.c[MPT_DIM_PP];
    mpt_status st = MPT_OK;
    if (me_p == holder && s->local[fi] >= 0 && (me_t == 0 || ft->split != MPT_SPLIT_NONE)) {
        const mpt_tensor *lt = &r->model.pt.t[s->local[fi]];
        size_t a, b, lrow = lrow_(lt);
        shard_rows_(lt, me_t, r0, r1, &a, &b);
        size_t x0 = lt->offset + a * lrow, x1 = lt->offset + b * lrow;
        int sliced;
        float *store = store_(r, kind, &sliced);
        const float *block = store + x0;
        if (x1 > x0 && sliced) { /* the slices of [x0, x1) to rank 0 of the ZeRO group */
            size_t p0, p1, at;
            int g = owned_(&r->dp, lt, -1, &p0, &p1, &at);
            int gR = g ? r->dp.eR : r->dp.R, g_me = g ? r->dp.er : me_d;
            mpt_comm *gc = g ? r->dp.ecomm : dpc;
            for (int d = 0; !st && d < gR; d++) {
                owned_(&r->dp, lt, d, &p0, &p1, &at);
                at += (p0 < x0 ? x0 - p0 : 0);
                p0 = p0 > x0 ? p0 : x0;
                p1 = p1 < x1 ? p1 : x1;
                if (p1 <= p0 || (d != g_me && g_me != 0)) continue;
                if (d == g_me && d == 0) memcpy(s->in + (p0 - x0), store + at, (p1 - p0) * sizeof *store);
                else if (d == g_me) st = mpt_send(gc, store + at, p1 - p0, 0, TAG_, err);
                else st = mpt_recv(gc, s->in + (p0 - x0), p1 - p0, d, TAG_, err);
            }
            block = s->in;
        }
        if (!st && x1 > x0 && me_d == hold_d) {
            if (r->rank0) {
                if (block != s->in) memcpy(s->in, block, (x1 - x0) * sizeof *block);
            } else {
                st = mpt_send(r->world, block, x1 - x0, 0, TAG_, err);
            }
        }
    }
    if (st || !r->rank0) return st;
    /* world rank 0: every contributing tp rank's rows, in tp order, then into file layout */
    const mpt_tensor *lt = &s->tpt.t[fi];
    size_t off = 0, lrow = lrow_(lt), frow = frow_(ft);
    for (int t = 0; t < tp && !st; t++) {
        if (t > 0 && ft->split == MPT_SPLIT_NONE) break;
        size_t a, b;
        shard_rows_(lt, t, r0, r1, &a, &b);
        size_t n = (b - a) * lrow;
        if (n == 0) continue;
        mpt_coords c = {{0}};
        c.c[MPT_DIM_TP] = t;
        c.c[MPT_DIM_PP] = holder;
        c.c[MPT_DIM_CP] = hold_d % r->place.layout.size[MPT_DIM_CP]; /* the index in dp x cp */
        c.c[MPT_DIM_DP] = hold_d / r->place.layout.size[MPT_DIM_CP];
        int src = mpt_mesh_rank(&r->place.layout, &c);
        if (src != 0 && (st = mpt_recv(r->world, s->in + off, n, src, TAG_, err))) break;
        for (size_t k = a * lrow; k < b * lrow; k++) {
            size_t f = mpt_tensor_full_index(lt, tp, t, k);
            if (f != SIZE_MAX) s->out[f - r0 * frow] = s->in[off + k - a * lrow];
        }
        off += n;
    }
    return st;
}

/* Every rank: streams kind of every full tensor to world rank 0, which appends it with put
 * (when *wst is still MPT_OK; a failed write is kept in *wst and the exchange goes on). */
static mpt_status stream_kind_(stage_ *s, int kind, mpt_status (*put)(void *, const float *,
                               size_t, mpt_error *), void *ctx, mpt_status *wst,
                               mpt_error *werr, mpt_error *err) {
    const mpt_param_table *full = &s->r->full;
    for (size_t i = 0; i < full->n; i++) {
        const mpt_tensor *ft = &full->t[i];
        size_t frow = frow_(ft), rows = nrows_(ft), per = s->cap / frow;
        for (size_t r0 = 0; r0 < rows; r0 += per) {
            size_t r1 = r0 + per < rows ? r0 + per : rows;
            mpt_status st = gather_rows_(s, kind, i, r0, r1, err);
            if (st) return st;
            if (s->r->rank0 && *wst == MPT_OK) *wst = put(ctx, s->out, (r1 - r0) * frow, werr);
        }
    }
    return MPT_OK;
}

static mpt_status put_ckpt_(void *ctx, const float *d, size_t n, mpt_error *err) {
    return mpt_checkpoint_put(ctx, d, n, err);
}

static mpt_status put_st_(void *ctx, const float *d, size_t n, mpt_error *err) {
    return mpt_st_writer_put(ctx, d, n, err);
}

static mpt_status save_sharded_(mpt_run *r, long step, mpt_train_result *res, mpt_error *err);

mpt_status mpt_run_save(mpt_run *r, long step, mpt_train_result *res, mpt_error *err) {
    if (r->o->save_sharded) return save_sharded_(r, step, res, err);
    const mpt_train_opts *o = r->o;
    stage_ s;
    mpt_ckpt_writer w;
    mpt_error werr = {0};
    mpt_status wst = MPT_OK;
    mpt_status st = mpt_comm_agree(r->world, stage_init_(&s, r, r->rank0, err), err);
    if (st) return st;
    if (r->rank0)
        wst = mpt_checkpoint_begin(&w, o->save_dir, o->keep, step, &r->cfg, &r->full, 1, &werr);
    if (r->rank0) w.with_stash = r->stash != NULL; /* 2bw: W(t-1), for an exact resume */
    for (int k = K_PARAMS; !st && k <= (r->stash ? K_STASH : K_V); k++)
        st = stream_kind_(&s, k, put_ckpt_, &w, &wst, &werr, err);
    if (!st && r->rank0 && wst == MPT_OK) {
        mpt_train_state ts;
        memset(&ts, 0, sizeof ts);
        ts.step = step;
        ts.seed = o->seed;
        snprintf(ts.options_json, sizeof ts.options_json,
                 "{\"batch\":%d,\"microbatches\":%d,\"steps\":%ld,\"lr\":%g,\"warmup\":%d,"
                 "\"dp\":%d,\"tp\":%d,\"pp\":%d,\"zero\":%d}",
                 o->batch, o->microbatches, o->steps, (double)o->opt.lr, o->opt.warmup, o->dp,
                 o->tp, o->pp, o->zero);
        wst = mpt_checkpoint_commit(&w, &ts, res->saved_dir, sizeof res->saved_dir, &werr);
    } else if (r->rank0) {
        mpt_checkpoint_abort(&w);
    }
    stage_free_(&s);
    if (!st && wst) {
        *err = werr;
        st = wst;
    }
    st = mpt_comm_agree(r->world, st, err);
    if (!st) st = mpt_bcast(r->world, res->saved_dir, sizeof res->saved_dir, 0, err);
    return st;
}

mpt_status mpt_run_dump(mpt_run *r, const float *logits_copy, mpt_error *err) {
    const mpt_param_table *full = &r->full;
    stage_ s;
    mpt_st_writer w;
    mpt_error werr = {0};
    mpt_status wst = MPT_OK;
    mpt_status st = mpt_comm_agree(r->world, stage_init_(&s, r, r->rank0, err), err);
    if (st) return st;
    memset(&w, 0, sizeof w);
    if (r->rank0) {
        size_t n = full->n;
        mpt_st_entry *e = calloc(n + 2, sizeof *e);   /* the header's shapes only */
        if (!e) wst = mpt_fail(&werr, MPT_ERR_RUN, "out of memory for the dump");
        for (size_t i = 0; e && i < full->n; i++) {
            const mpt_tensor *t = &full->t[i];
            e[i] = (mpt_st_entry){t->name, t->ndim, {t->shape[0], t->shape[1]}, NULL};
        }
        if (e && logits_copy)
            e[n++] = (mpt_st_entry){"logits", 3, {(size_t)r->Bm, (size_t)r->T,
                                                  (size_t)r->cfg.vocab}, logits_copy};
        if (e) wst = mpt_st_writer_open(&w, r->o->dump_path, e, n, NULL, 0, &werr);
        free(e);
    }
    st = stream_kind_(&s, K_GRADS, put_st_, &w, &wst, &werr, err);
    if (!st && r->rank0 && wst == MPT_OK && logits_copy)
        wst = mpt_st_writer_put(&w, logits_copy, (size_t)r->Bm * r->T * (size_t)r->cfg.vocab,
                                &werr);
    if (!st && r->rank0 && wst == MPT_OK) wst = mpt_st_writer_close(&w, 0, &werr);
    else mpt_st_writer_abort(&w);
    stage_free_(&s);
    if (!st && wst) {
        *err = werr;
        st = wst;
    }
    return mpt_comm_agree(r->world, st, err);
}

/* ---------------------------------------------------------------- sharded saving */
/* --save-format sharded (train/ckpt_shard.h): every rank writes what it holds of the
 * parameters and AdamW moments to its own file, with no communication of tensor data: under
 * ZeRO each dp rank its slices, otherwise dp rank 0 (of dp x cp) the whole local tensors; tp
 * ranks other than 0 skip the tensors they replicate; a pipeline stage its own blocks (the
 * tied wte's copy on the last stage is not written). Each local range becomes boxes of the
 * full tensor through mpt_tensor_full_index (a QKV shard is three column blocks; a partial
 * ZeRO row is a box of its own), and rank 0 writes the index of every rank's boxes. */

typedef struct boxes_ {
    mpt_shard_box *b;
    size_t *local;       /* per box: the local element of its first row's first column */
    size_t n, cap;
} boxes_;

static int boxes_push_(boxes_ *x, const mpt_shard_box *b, size_t local) {
    if (x->n == x->cap) {
        size_t nc = x->cap ? 2 * x->cap : 64;
        mpt_shard_box *nb = realloc(x->b, nc * sizeof *nb);
        if (!nb) return -1;
        x->b = nb;
        size_t *nl = realloc(x->local, nc * sizeof *nl);
        if (!nl) return -1;
        x->local = nl;
        x->cap = nc;
    }
    x->b[x->n] = *b;
    x->local[x->n++] = local;
    return 0;
}

/* The boxes of local elements [k0, k1) of lt (full tensor fi) appended to x from index from:
 * runs of consecutive full columns in a row, stacked into a box while they continue the
 * previous row's run of the same columns. */
static int boxes_of_(boxes_ *x, size_t from, const mpt_run *r, int kind, size_t fi,
                     const mpt_tensor *lt, size_t k0, size_t k1) {
    const mpt_tensor *ft = &r->full.t[fi];
    int tp = r->model.pt.tp, t = r->model.pt.tp_rank;
    size_t lrow = lrow_(lt), fcols = frow_(ft);
    for (size_t k = k0; k < k1;) {
        size_t f = mpt_tensor_full_index(lt, tp, t, k);
        if (f == SIZE_MAX) {
            k++;
            continue;
        }
        size_t ks = k, row_end = (k / lrow + 1) * lrow, fr = f / fcols;
        for (k++; k < k1 && k < row_end; k++) {
            size_t g = mpt_tensor_full_index(lt, tp, t, k);
            if (g != f + (k - ks) || g / fcols != fr) break;
        }
        mpt_shard_box b = {.kind = kind, .tensor = (int64_t)fi, .file = r->world->rank,
                           .row0 = (int64_t)fr, .nrows = 1, .col0 = (int64_t)(f % fcols),
                           .ncols = (int64_t)(k - ks)};
        int merged = 0;
        for (size_t j = x->n; j > from && j + 16 > x->n && !merged; j--) {
            mpt_shard_box *p = &x->b[j - 1];
            if (p->col0 == b.col0 && p->ncols == b.ncols && p->row0 + p->nrows == b.row0 &&
                x->local[j - 1] + (size_t)p->nrows * lrow == ks) {
                p->nrows++;
                merged = 1;
            }
        }
        if (!merged && boxes_push_(x, &b, ks) != 0) return -1;
    }
    return 0;
}

/* The index in the dp module's group (dp, or dp x cp) of the rank that writes an unsliced
 * tensor: 0, or for an expert under ep > 1 (ZeRO 0) the first rank of the ep rank that holds
 * it (as gather_rows_ sends it). */
static int hold_dp_(const mpt_run *r, const mpt_tensor *ft) {
    int ep = r->place.layout.size[MPT_DIM_EP];
    if (ft->expert >= 0 && ep > 1)
        return ep_holder_(r, ft->expert / (r->cfg.experts / ep));
    return 0;
}

/* Writes this rank's shard file at path and fills x with its boxes (byte offsets set). */
static mpt_status write_shard_(mpt_run *r, const char *path, boxes_ *x, mpt_error *err) {
    const mpt_param_table *pt = &r->model.pt;
    int me_t = r->place.coords.c[MPT_DIM_TP];
    FILE *f = fopen(path, "wb");
    if (!f) return mpt_fail(err, MPT_ERR_RUN, "cannot create %s: %s", path, strerror(errno));
    int64_t pos = 0;
    int bad = 0;
    for (int kind = K_PARAMS; kind <= K_V && !bad; kind++) {
        int sliced;
        const float *store = store_(r, kind, &sliced);
        for (size_t i = 0; i < pt->n && !bad; i++) {
            const mpt_tensor *lt = &pt->t[i];
            int fi = lt->full_id;
            if (lt->is_copy || fi < 0 || (size_t)fi >= r->full.n) continue;
            if (lt->split == MPT_SPLIT_NONE && me_t != 0) continue;   /* tp rank 0 writes it */
            size_t k0 = 0, k1 = lt->numel;
            ptrdiff_t base = (ptrdiff_t)lt->offset;   /* local k is store[base + k] */
            if (sliced) {
                size_t x0, x1, at;
                owned_(&r->dp, lt, -1, &x0, &x1, &at);
                k0 = x0 - lt->offset;
                k1 = x1 - lt->offset;
                base = (ptrdiff_t)at - (ptrdiff_t)k0;
            } else if (r->dp.r != hold_dp_(r, &r->full.t[fi])) {
                continue;                              /* dp rank 0 writes the replica */
            }
            size_t from = x->n;
            if (k1 <= k0) continue;
            if (boxes_of_(x, from, r, kind, (size_t)fi, lt, k0, k1) != 0) {
                bad = 1;
                break;
            }
            size_t lrow = lrow_(lt);
            for (size_t j = from; j < x->n && !bad; j++) {
                mpt_shard_box *b = &x->b[j];
                b->byte = pos;
                for (int64_t row = 0; row < b->nrows && !bad; row++) {
                    const float *src = store + base + (ptrdiff_t)(x->local[j] + (size_t)row * lrow);
                    if (fwrite(src, sizeof *src, (size_t)b->ncols, f) != (size_t)b->ncols) bad = 2;
                    pos += b->ncols * (int64_t)sizeof *src;
                }
            }
        }
    }
    if (!bad && (fflush(f) != 0 || fsync(fileno(f)) != 0)) bad = 2;
    if (fclose(f) != 0 && !bad) bad = 2;
    if (bad == 1) return mpt_fail(err, MPT_ERR_RUN, "out of memory listing the slices of %s", path);
    if (bad) return mpt_fail(err, MPT_ERR_RUN, "cannot write %s: %s", path, strerror(errno));
    return MPT_OK;
}

#define BOX_FIELDS_ 8

static mpt_status save_sharded_(mpt_run *r, long step, mpt_train_result *res, mpt_error *err) {
    const mpt_train_opts *o = r->o;
    mpt_comm *w = r->world;
    char tmp[PATH_MAX], path[PATH_MAX + 32], name[32];
    boxes_ x = {0};
    double *mine = NULL, *all = NULL, *hall = NULL;
    char **files = NULL;
    mpt_ckpt_file_hash *known = NULL;
    mpt_status st = MPT_OK;
    memset(tmp, 0, sizeof tmp);
    if (r->rank0) st = mpt_checkpoint_begin_dir(o->save_dir, step, &r->cfg, tmp, sizeof tmp, err);
    if ((st = mpt_comm_agree(w, st, err))) return st;
    if ((st = mpt_bcast(w, tmp, sizeof tmp, 0, err))) return st;
    mpt_shard_file_name(w->rank, name, sizeof name);
    if (snprintf(path, sizeof path, "%s/%s", tmp, name) >= (int)sizeof path)
        st = mpt_fail(err, MPT_ERR_RUN, "%s: path too long", tmp);
    if (!st) st = write_shard_(r, path, &x, err);
    /* each rank hashes its own shard (from the page cache), so rank 0 reads no other shard */
    mpt_ckpt_file_hash fh = {0};
    if (!st) st = mpt_checkpoint_hash_file(path, &fh, err);
    if ((st = mpt_comm_agree(w, st, err))) goto done;
    /* (size, hash high 32 bits, hash low 32 bits) of every shard, exact as doubles */
    double hmine[3] = {(double)fh.size, (double)(fh.xxh3_64 >> 32),
                       (double)(fh.xxh3_64 & 0xffffffffu)};
    if (!(hall = calloc(3 * (size_t)w->size, sizeof *hall)))
        st = mpt_fail(err, MPT_ERR_RUN, "out of memory gathering the shard checksums");
    if ((st = mpt_comm_agree(w, st, err))) goto done;
    if ((st = mpt_allgather_dt(w, hmine, hall, 3, MPT_F64, err))) goto done;
    /* every rank's boxes to every rank (fixed-size blocks of the largest count) */
    double cnt = (double)x.n;
    if ((st = mpt_allreduce_max_f64(w, &cnt, 1, err))) goto done;
    size_t per = (size_t)cnt * BOX_FIELDS_ + 1, total;
    if (!mpt_size_mul(per, (size_t)w->size, &total) || !(mine = calloc(per, sizeof *mine)) ||
        !(all = calloc(total, sizeof *all)))
        st = mpt_fail(err, MPT_ERR_RUN, "out of memory gathering the slice index");
    if ((st = mpt_comm_agree(w, st, err))) goto done;
    mine[0] = (double)x.n;
    for (size_t j = 0; j < x.n; j++) {
        const mpt_shard_box *b = &x.b[j];
        double v[BOX_FIELDS_] = {(double)b->kind, (double)b->tensor, (double)b->file,
                                 (double)b->row0, (double)b->nrows, (double)b->col0,
                                 (double)b->ncols, (double)b->byte};
        memcpy(mine + 1 + j * BOX_FIELDS_, v, sizeof v);
    }
    if ((st = mpt_allgather_dt(w, mine, all, per, MPT_F64, err))) goto done;
    if (r->rank0) {
        size_t n = 0;
        for (int q = 0; q < w->size; q++) n += (size_t)all[(size_t)q * per];
        mpt_shard_box *bx = calloc(n + 1, sizeof *bx);
        files = calloc((size_t)w->size + 1, sizeof *files);
        known = calloc((size_t)w->size + 1, sizeof *known);   /* [0]: the index, hashed here */
        if (!bx || !files || !known) st = mpt_fail(err, MPT_ERR_RUN, "out of memory for the slice index");
        for (int q = 0, k = 0; !st && q < w->size; q++) {
            const double *blk = all + (size_t)q * per;
            for (size_t j = 0; j < (size_t)blk[0]; j++, k++) {
                const double *v = blk + 1 + j * BOX_FIELDS_;
                bx[k] = (mpt_shard_box){(int64_t)v[0], (int64_t)v[1], (int64_t)v[2], (int64_t)v[3],
                                        (int64_t)v[4], (int64_t)v[5], (int64_t)v[6], (int64_t)v[7]};
            }
        }
        if (!st) st = mpt_shard_write_index(tmp, &r->full, w->size, 1, bx, n, err);
        free(bx);
        files[0] = strdup(MPT_SHARD_INDEX_FILE);
        for (int q = 0; !st && q < w->size; q++) {
            char nm[32];
            mpt_shard_file_name(q, nm, sizeof nm);
            if (!(files[q + 1] = strdup(nm)) || !files[0])
                st = mpt_fail(err, MPT_ERR_RUN, "out of memory");
            const double *hq = hall + 3 * (size_t)q;
            known[q + 1] = (mpt_ckpt_file_hash){1, (uint64_t)hq[0],
                                                ((uint64_t)hq[1] << 32) | (uint64_t)hq[2]};
        }
        if (!st) {
            mpt_train_state ts;
            memset(&ts, 0, sizeof ts);
            ts.step = step;
            ts.seed = o->seed;
            snprintf(ts.options_json, sizeof ts.options_json,
                     "{\"batch\":%d,\"microbatches\":%d,\"steps\":%ld,\"lr\":%g,\"warmup\":%d,"
                     "\"dp\":%d,\"tp\":%d,\"pp\":%d,\"zero\":%d,\"save_format\":\"sharded\"}",
                     o->batch, o->microbatches, o->steps, (double)o->opt.lr, o->opt.warmup,
                     o->dp, o->tp, o->pp, o->zero);
            st = mpt_checkpoint_publish_hashed(o->save_dir, o->keep, step, tmp,
                                               (const char *const *)files, known,
                                               (size_t)w->size + 1, &ts, res->saved_dir,
                                               sizeof res->saved_dir, err);
            tmp[0] = '\0'; /* published or removed */
        }
    }
done:
    if (st && r->rank0 && tmp[0]) mpt_checkpoint_remove_dir(tmp);
    for (int q = 0; files && q <= w->size; q++) free(files[q]);
    free(files);
    free(known);
    free(mine);
    free(all);
    free(hall);
    free(x.b);
    free(x.local);
    st = mpt_comm_agree(w, st, err);
    if (!st) st = mpt_bcast(w, res->saved_dir, sizeof res->saved_dir, 0, err);
    return st;
}
