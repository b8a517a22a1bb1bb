/* pp.c — the pipeline executor (see pp.h). */
#include "parallel/pp.h"

#include <stdlib.h>
#include <string.h>

#define TRY_(call)                                                                            \
    do {                                                                                      \
        mpt_status st_ = (call);                                                              \
        if (st_) return st_;                                                                  \
    } while (0)

/* A micro-batch's set is opened by the first action that needs it (a receive posted early, or
 * F) and closed at the end of its B. */
static int touches_set_(const mpt_pp_action *a) {
    return a->op == MPT_PP_F || a->op == MPT_PP_RECV_ACT || a->op == MPT_PP_RECV_GRAD;
}

/* The most sets of each chunk alive at once, a set closing at its B (until_b, or an unsplit
 * schedule) or at its W. */
static mpt_status chunk_sets_(mpt_pp_kind kind, int p, int m, int v, int stage, int until_b,
                              int *sets, mpt_error *err) {
    mpt_pp_action *a;
    size_t na;
    TRY_(mpt_pp_schedule(kind, p, m, v, stage, &a, &na, err));
    char *open = calloc((size_t)m * (size_t)v, 1);
    int *alive = calloc((size_t)v, sizeof *alive);
    if (!open || !alive) {
        free(a);
        free(open);
        free(alive);
        return mpt_fail(err, MPT_ERR_RUN, "out of memory");
    }
    for (int c = 0; c < v; c++) sets[c] = 0;
    for (size_t i = 0; i < na; i++) {
        int c = a[i].chunk, j = a[i].mb * v + c;
        /* the until-B part opens at F (the head's slots) or at RECV_GRAD (GRAD_IN) */
        int touch = until_b ? a[i].op == MPT_PP_F || a[i].op == MPT_PP_RECV_GRAD
                            : touches_set_(&a[i]);
        if (touch && !open[j]) {
            open[j] = 1;
            if (++alive[c] > sets[c]) sets[c] = alive[c];
        }
        if (a[i].op == (mpt_pp_split(kind) && !until_b ? MPT_PP_W : MPT_PP_B)) alive[c]--;
    }
    free(a);
    free(open);
    free(alive);
    return MPT_OK;
}

mpt_status mpt_pp_chunk_sets(mpt_pp_kind kind, int p, int m, int v, int stage, int *sets,
                             mpt_error *err) {
    return chunk_sets_(kind, p, m, v, stage, 0, sets, err);
}

mpt_status mpt_pp_chunk_sets_b(mpt_pp_kind kind, int p, int m, int v, int stage, int *sets,
                               mpt_error *err) {
    return chunk_sets_(kind, p, m, v, stage, 1, sets, err);
}

mpt_status mpt_pp_sets_needed(mpt_pp_kind kind, int p, int m, int stage, int *n, mpt_error *err) {
    return mpt_pp_chunk_sets(kind, p, m, 1, stage, n, err);
}

mpt_gpt_place mpt_pp_chunk_place(const mpt_gpt_place *place, int v, int c) {
    mpt_gpt_place q = *place;
    q.n_layers = place->n_layers / v;
    q.first = place->first && c == 0;
    q.last = place->last && c == v - 1;
    q.chunk_layers = q.chunk_stride = 0;
    return q;
}

size_t mpt_pp_boundary_elems(int B, int T, int D, int tp, int sp) {
    size_t N = (size_t)B * (size_t)T;
    return (sp && tp > 1 ? N / (size_t)tp : N) * (size_t)D;
}

void mpt_pp_buffers(int stage, size_t boundary_n, mpt_pp *pp, mpt_buflist *l) {
    if (stage == 0) return;
    mpt_buflist_add(l, "pp.grad_out0", MPT_MEM_WORKSPACE, MPT_F32, boundary_n,
                    pp ? (void **)&pp->grad_out[0] : NULL);
    mpt_buflist_add(l, "pp.grad_out1", MPT_MEM_WORKSPACE, MPT_F32, boundary_n,
                    pp ? (void **)&pp->grad_out[1] : NULL);
}

/* The view's units: 0 the embeddings, 1..layers its blocks, layers+1 the final unit. */
static int view_unit_(const mpt_pp_view_ctx *x, int u) {
    if (u == 0) return 0;
    if (u > x->layers) return x->model_layers + 1;
    return x->chunk * x->layers + u;
}
static mpt_status view_need_(void *ctx, int u, mpt_gpt_phase ph, mpt_error *err) {
    const mpt_pp_view_ctx *x = ctx;
    return x->hooks.need ? x->hooks.need(x->hooks.ctx, view_unit_(x, u), ph, err) : MPT_OK;
}
static mpt_status view_done_(void *ctx, int u, mpt_gpt_phase ph, mpt_error *err) {
    const mpt_pp_view_ctx *x = ctx;
    return x->hooks.done ? x->hooks.done(x->hooks.ctx, view_unit_(x, u), ph, err) : MPT_OK;
}
static mpt_status view_grads_done_(void *ctx, int u, mpt_error *err) {
    const mpt_pp_view_ctx *x = ctx;
    return x->hooks.grads_done ? x->hooks.grads_done(x->hooks.ctx, view_unit_(x, u), err) : MPT_OK;
}

/* Chunk c's view of the model: a shallow copy (shared weight / gradient tables, parameter
 * table, workspace) over its blocks, with its own ends, activation sizes and mapped hooks. */
static mpt_status make_view_(mpt_pp *pp, int c, mpt_error *err) {
    const mpt_gpt *m = pp->model;
    mpt_gpt *w = &pp->views[c];
    int k = m->nl / pp->v;
    *w = *m;
    mpt_gpt_place whole = {.tp = m->tp, .tp_rank = m->tp_rank, .sp = m->sp, .n_layers = m->nl,
                           .first = m->first, .last = m->last, .recompute = m->recompute,
                           .threads = m->threads, .cp = m->cp, .cp_rank = m->cp_rank,
                           .split_w = m->split_w, .ep = m->ep, .ep_rank = m->ep_rank};
    mpt_gpt_place q = mpt_pp_chunk_place(&whole, pp->v, c);
    size_t work_n[MPT_WORK_SLOTS];
    if (!mpt_gpt_buffer_sizes(&m->cfg, m->B, m->T, 1, m->tp, m->sp, &q, w->act_n, work_n))
        return mpt_fail(err, MPT_ERR_INPUT, "pipeline chunk %d: buffers too large", c);
    w->nl = k;
    w->first = q.first;
    w->last = q.last;
    w->pt.layer = m->pt.layer + (size_t)c * (size_t)k * MPT_LAYER_SLOTS;
    w->pt.n_layer = k;
    mpt_gpt_slot_layers(w->recompute, k, w->slot_layers);
    memset(&w->own, 0, sizeof w->own);
    w->cur = &w->own;
    pp->vctx[c] = (mpt_pp_view_ctx){.hooks = m->hooks, .chunk = c, .layers = k,
                                    .model_layers = m->nl};
    w->hooks = (mpt_gpt_hooks){.ctx = &pp->vctx[c], .need = view_need_, .done = view_done_,
                               .grads_done = view_grads_done_};
    return MPT_OK;
}

/* The engine chunk c runs on: the model itself when v == 1. */
static mpt_gpt *chunk_model_(mpt_pp *pp, int c) { return pp->v > 1 ? &pp->views[c] : pp->model; }
mpt_gpt *mpt_pp_chunk_model(mpt_pp *pp, int c) { return chunk_model_(pp, c); }

mpt_status mpt_pp_init(mpt_pp *pp, mpt_comm *comm, mpt_pp_kind kind, int m, mpt_gpt *model,
                       mpt_dp *dp, mpt_error *err) {
    return mpt_pp_init_chunks(pp, comm, kind, m, 1, model, dp, err);
}

mpt_status mpt_pp_init_chunks(mpt_pp *pp, mpt_comm *comm, mpt_pp_kind kind, int m, int v,
                              mpt_gpt *model, mpt_dp *dp, mpt_error *err) {
    memset(pp, 0, sizeof *pp);
    if (v < 1 || model->nl % v != 0)
        return mpt_fail(err, MPT_ERR_INPUT, "%d blocks on this rank do not split into %d chunks",
                        model->nl, v);
    pp->comm = comm;
    pp->kind = kind;
    pp->p = comm->size;
    pp->stage = comm->rank;
    pp->m = m;
    pp->v = v;
    pp->model = model;
    pp->dp = dp;
    pp->boundary_n = mpt_pp_boundary_elems(model->B, model->T, model->cfg.d_model, model->tp,
                                           model->sp);
    int *sets = calloc(2 * (size_t)v, sizeof *sets), *bsets = sets ? sets + v : NULL;
    if (!sets) return mpt_fail(err, MPT_ERR_RUN, "out of memory for the pipeline executor");
    int split = mpt_pp_split(kind);
    mpt_status st = mpt_pp_schedule(kind, pp->p, m, v, pp->stage, &pp->acts, &pp->n_acts, err);
    /* one chunk: each receive posted where its data is needed (mpt_pp_recv_at_use; a set then
     * opens later, never earlier, than the plan counts) */
    if (!st && v == 1) mpt_pp_recv_at_use(pp->acts, pp->n_acts);
    if (!st) st = mpt_pp_chunk_sets(kind, pp->p, m, v, pp->stage, sets, err);
    if (!st && split) st = mpt_pp_chunk_sets_b(kind, pp->p, m, v, pp->stage, bsets, err);
    if (st) {
        free(sets);
        free(pp->acts);
        pp->acts = NULL;
        return st;
    }
    /* 2bw runs several steps without a flush (parallel/pp_2bw.h): micro-batch g of a segment
     * uses entry g % 2m of the per-micro-batch arrays, so they hold two steps */
    size_t mv = (size_t)m * (size_t)v * (kind == MPT_PP_2BW ? 2 : 1), npool = 0, nb = 0;
    pp->mw = (int)mv;
    for (int c = 0; c < v; c++) {
        npool += (size_t)sets[c];
        nb += split ? (size_t)bsets[c] : 0;
    }
    pp->sets_needed = (int)npool;
    pp->bsets_needed = (int)nb;
    if (v > 1) {
        pp->views = calloc((size_t)v, sizeof *pp->views);
        pp->vctx = calloc((size_t)v, sizeof *pp->vctx);
        for (int c = 0; !st && pp->views && pp->vctx && c < v; c++) st = make_view_(pp, c, err);
    }
    pp->pool_chunk = calloc(npool + 1, sizeof *pp->pool_chunk);
    for (int c = 0, k = 0; pp->pool_chunk && c < v; c++)
        for (int i = 0; i < sets[c]; i++) pp->pool_chunk[k++] = c;
    /* the split backward's until-B parts (mpt_gpt_slot_until_b), a pool of their own */
    pp->bpool = calloc(nb + 1, sizeof *pp->bpool);
    pp->bpool_chunk = calloc(nb + 1, sizeof *pp->bpool_chunk);
    pp->bpool_free = calloc(nb + 1, sizeof *pp->bpool_free);
    pp->bslot_of = malloc(mv * sizeof *pp->bslot_of);
    for (size_t k = 0; pp->bslot_of && k < mv; k++) pp->bslot_of[k] = -1;
    for (int c = 0, k = 0; split && pp->bpool_chunk && c < v; c++)
        for (int i = 0; i < bsets[c]; i++) pp->bpool_chunk[k++] = c;
    free(sets);
    pp->set = calloc(mv, sizeof *pp->set);
    pp->pool = calloc(npool + 1, sizeof *pp->pool);
    pp->pool_free = calloc(npool + 1, sizeof *pp->pool_free);
    pp->slot_of = malloc(mv * sizeof *pp->slot_of);
    for (size_t k = 0; pp->slot_of && k < mv; k++) pp->slot_of[k] = -1;
    pp->rx_act = calloc(mv, sizeof *pp->rx_act);
    pp->rx_grad = calloc(mv, sizeof *pp->rx_grad);
    pp->tx_act = calloc(mv, sizeof *pp->tx_act);
    pp->t_peer = calloc(2 * mv, sizeof *pp->t_peer);
    size_t nm = 2 * mv; /* four per-message arrays, two per-action ones, then p records for
                         * mpt_pp_measure */
    pp->t_sent = calloc(nm * 4 + 6 * mv + (size_t)pp->p * mpt_pp_record_len(pp),
                        sizeof *pp->t_sent);
    if (pp->t_sent) {
        pp->t_wait = pp->t_sent + nm;
        pp->t_got = pp->t_wait + nm;
        pp->t_post = pp->t_got + nm;
        pp->t_dur = pp->t_post + nm;
        pp->t_start = pp->t_dur + 3 * mv;
        pp->msg = pp->t_start + 3 * mv;
    }
    if (st || !pp->set || !pp->pool || !pp->pool_free || !pp->slot_of || !pp->rx_act ||
        !pp->rx_grad || !pp->tx_act || !pp->t_sent || !pp->pool_chunk || !pp->t_peer ||
        !pp->bpool || !pp->bpool_chunk || !pp->bpool_free || !pp->bslot_of ||
        (v > 1 && (!pp->views || !pp->vctx))) {
        mpt_pp_free(pp);
        return st ? st : mpt_fail(err, MPT_ERR_RUN, "out of memory for the pipeline executor");
    }
    mpt_buflist_init(&pp->bufs);
    mpt_pp_buffers(v > 1 ? 1 : pp->stage, pp->boundary_n, pp, &pp->bufs);
    st = mpt_buflist_alloc(&pp->bufs, model->arena, err);
    /* every activation set the schedule keeps alive at once, up front: no allocation during a
     * step, and the arena's peak is reached (and checked against --mem-limit) at set-up */
    for (; !st && pp->pool_n < pp->sets_needed; pp->pool_n++) {
        mpt_gpt *cm = chunk_model_(pp, pp->pool_chunk[pp->pool_n]);
        st = split ? mpt_gpt_acts_alloc_part(cm, &pp->pool[pp->pool_n], 0, err)
                   : mpt_gpt_acts_alloc(cm, &pp->pool[pp->pool_n], err);
        pp->pool_free[pp->pool_n] = 1;
    }
    for (; !st && pp->bpool_n < pp->bsets_needed; pp->bpool_n++) {
        st = mpt_gpt_acts_alloc_part(chunk_model_(pp, pp->bpool_chunk[pp->bpool_n]),
                                     &pp->bpool[pp->bpool_n], 1, err);
        pp->bpool_free[pp->bpool_n] = 1;
    }
    if (st) mpt_pp_free(pp);
    return st;
}

void mpt_pp_free(mpt_pp *pp) {
    if (!pp || !pp->model) return;
    for (int k = 0; k < pp->pool_n; k++)
        mpt_gpt_acts_free(chunk_model_(pp, pp->pool_chunk[k]), &pp->pool[k]);
    for (int k = 0; k < pp->bpool_n; k++)
        mpt_gpt_acts_free(chunk_model_(pp, pp->bpool_chunk[k]), &pp->bpool[k]);
    mpt_buflist_release(&pp->bufs, pp->model->arena);
    mpt_buflist_free(&pp->bufs);
    free(pp->acts);
    free(pp->set);
    free(pp->pool);
    free(pp->pool_free);
    free(pp->slot_of);
    free(pp->rx_act);
    free(pp->rx_grad);
    free(pp->tx_act);
    free(pp->t_sent);
    free(pp->views);
    free(pp->vctx);
    free(pp->pool_chunk);
    free(pp->t_peer);
    free(pp->bpool);
    free(pp->bpool_chunk);
    free(pp->bpool_free);
    free(pp->bslot_of);
    pp->model->cur = &pp->model->own;
    memset(pp, 0, sizeof *pp);
}

/* The output of a chunk: the last block's RES3 of the set of j = mb*v + chunk. */
static float *stage_output_(mpt_pp *pp, int j) {
    const mpt_gpt *m = chunk_model_(pp, j % pp->v);
    size_t per = m->act_n[MPT_ACT_RES3] / (size_t)m->nl;
    return pp->set[j].a[MPT_ACT_RES3] + (size_t)(m->nl - 1) * per;
}

/* Gives j = mb*v + chunk a free set of its chunk's pool (allocated at init). */
static mpt_status open_set_(mpt_pp *pp, int j, mpt_error *err) {
    if (pp->slot_of[j] >= 0) return MPT_OK;
    int k = 0, c = j % pp->v;
    while (k < pp->pool_n && (!pp->pool_free[k] || pp->pool_chunk[k] != c)) k++;
    if (k == pp->pool_n)
        return mpt_fail(err, MPT_ERR_RUN,
                        "pipeline stage %d: micro-batch %d (chunk %d) needs one more activation "
                        "set than the schedule was planned for (%d)",
                        pp->stage, j / pp->v, c, pp->sets_needed);
    pp->pool_free[k] = 0;
    pp->slot_of[j] = k;
    pp->set[j] = pp->pool[k];
    return MPT_OK;
}

/* The split backward: j's until-B part from its own pool, at its F or its RECV_GRAD (what
 * needs it first). */
static mpt_status open_set_b_(mpt_pp *pp, int j, mpt_error *err) {
    if (!pp->bsets_needed || pp->bslot_of[j] >= 0) return MPT_OK;
    int b = 0, c = j % pp->v;
    while (b < pp->bpool_n && (!pp->bpool_free[b] || pp->bpool_chunk[b] != c)) b++;
    if (b == pp->bpool_n)
        return mpt_fail(err, MPT_ERR_RUN,
                        "pipeline stage %d: micro-batch %d (chunk %d) needs one more until-B "
                        "part than the schedule was planned for (%d)",
                        pp->stage, j / pp->v, c, pp->bsets_needed);
    pp->bpool_free[b] = 0;
    pp->bslot_of[j] = b;
    for (int s = 0; s < MPT_ACT_SLOTS; s++)
        if (mpt_gpt_slot_until_b((mpt_act_slot)s)) pp->set[j].a[s] = pp->bpool[b].a[s];
    return MPT_OK;
}

/* The split backward's B is done with j's until-B part. */
static void close_set_b_(mpt_pp *pp, int j) {
    if (pp->bslot_of[j] < 0) return;
    pp->bpool_free[pp->bslot_of[j]] = 1;
    pp->bslot_of[j] = -1;
    for (int s = 0; s < MPT_ACT_SLOTS; s++)
        if (mpt_gpt_slot_until_b((mpt_act_slot)s)) pp->set[j].a[s] = NULL;
}

static void close_set_(mpt_pp *pp, int j) {
    close_set_b_(pp, j);
    pp->pool_free[pp->slot_of[j]] = 1;
    pp->slot_of[j] = -1;
    memset(&pp->set[j], 0, sizeof pp->set[j]);
}

/* Waits until send buffer k's last gradient send is done, so the buffer can be reused. */
static mpt_status free_grad_out_(mpt_pp *pp, int k, mpt_error *err) {
    if (!pp->tx_grad_busy[k]) return MPT_OK;
    pp->tx_grad_busy[k] = 0;
    return mpt_wait(&pp->tx_grad[k], err);
}

static mpt_status forward_(mpt_pp *pp, const mpt_pp_action *a, mpt_pp_batch_fn batch, void *ctx,
                           int32_t *inputs, int32_t *targets, int Bm, int T, float dloss,
                           double *loss_sum, mpt_error *err) {
    mpt_gpt *m = chunk_model_(pp, a->chunk);
    int mb = a->mb, j = mb * pp->v + a->chunk;
    TRY_(open_set_(pp, j, err));
    TRY_(open_set_b_(pp, j, err));
    batch(ctx, mb, m->first ? inputs : NULL, m->last ? targets : NULL);
    if (m->first) pp->inputs_mb = mb;
    m->cur = &pp->set[j];
    if (pp->before_forward) TRY_(pp->before_forward(pp->forward_ctx, mb, m, inputs, err));
    double loss = 0.0;
    TRY_(mpt_gpt_forward(m, inputs, m->last ? targets : NULL, Bm, T, dloss, &loss, err));
    *loss_sum += loss;
    m->cur = &m->own;
    return MPT_OK;
}

static mpt_status backward_(mpt_pp *pp, const mpt_pp_action *a, mpt_pp_batch_fn batch, void *ctx,
                            int32_t *inputs, int Bm, int T, mpt_error *err) {
    mpt_gpt *m = chunk_model_(pp, a->chunk);
    int mb = a->mb, j = mb * pp->v + a->chunk;
    if (m->first && pp->inputs_mb != mb) { /* the embedding's backward needs the tokens */
        batch(ctx, mb, inputs, NULL);
        pp->inputs_mb = mb;
    }
    m->cur = &pp->set[j];
    mpt_dp_set_last_microbatch(pp->dp, mb % pp->m == pp->m - 1);
    /* long done (the gradient came back), and the split backward's W stash reuses the output */
    if (!m->last) TRY_(mpt_wait(&pp->tx_act[j], err));
    TRY_(mpt_gpt_backward(m, inputs, Bm, T, err));
    if (!m->first) { /* the input gradient goes back: into a free send buffer */
        int k = j % 2;
        TRY_(free_grad_out_(pp, k, err));
        memcpy(pp->grad_out[k], m->work[MPT_WORK_DRES], pp->boundary_n * sizeof(float));
    }
    if (!m->split_w) close_set_(pp, j); /* else W still reads all but its until-B part */
    else close_set_b_(pp, j);
    m->cur = &m->own;
    return MPT_OK;
}

/* The split backward's weight-gradient pass (zb-h1): W of a micro-batch after its B. */
static mpt_status weights_(mpt_pp *pp, const mpt_pp_action *a, int Bm, int T, mpt_error *err) {
    mpt_gpt *m = chunk_model_(pp, a->chunk);
    int j = a->mb * pp->v + a->chunk;
    if (pp->slot_of[j] < 0)
        return mpt_fail(err, MPT_ERR_RUN, "pipeline: W%d before its B", a->mb);
    m->cur = &pp->set[j];
    mpt_dp_set_last_microbatch(pp->dp, a->mb % pp->m == pp->m - 1);
    TRY_(mpt_gpt_backward_weights(m, Bm, T, err));
    close_set_(pp, j);
    m->cur = &m->own;
    return MPT_OK;
}

mpt_status mpt_pp_step(mpt_pp *pp, mpt_pp_batch_fn batch, void *ctx, int32_t *inputs,
                       int32_t *targets, int Bm, int T, float dloss, double *loss_sum,
                       mpt_error *err) {
    *loss_sum = 0.0;
    mpt_pp_window_begin(pp);
    pp->inputs_mb = -1;
    double start = mpt_comm_clock();
    for (size_t i = 0; i < pp->n_acts; i++)
        TRY_(mpt_pp_act(pp, &pp->acts[i], batch, ctx, inputs, targets, Bm, T, dloss, loss_sum,
                        err));
    TRY_(mpt_pp_sends_done(pp, err));
    pp->wall = mpt_comm_clock() - start;
    return MPT_OK;
}

void mpt_pp_window_begin(mpt_pp *pp) {
    pp->busy = pp->f_sum = pp->b_sum = pp->w_sum = 0.0;
    pp->f_n = pp->b_n = pp->w_n = 0;
    /* (the send times stay: a message sent in the window before and received in this one
     * keeps its send's time, for 2bw's per-action replay; the record tells them apart by the
     * window's start) */
    memset(pp->t_wait, 0, (3 * 2 + 6) * (size_t)pp->mw * sizeof *pp->t_sent);
    pp->t_win0 = mpt_comm_clock();
}

/* A compute action's measurements: its kind's sum and count, busy, and its own duration and
 * start (for the per-action replay, pp_replay.h). */
static void timed_(mpt_pp *pp, const mpt_pp_action *a, double t0, double t1) {
    int k = a->op == MPT_PP_F ? 0 : a->op == MPT_PP_B ? 1 : 2;
    size_t at = (size_t)k * (size_t)pp->mw + (size_t)(a->mb * pp->v + a->chunk);
    double dt = t1 - t0;
    pp->busy += dt;
    if (k == 0) {
        pp->f_sum += dt;
        pp->f_n++;
    } else if (k == 1) {
        pp->b_sum += dt;
        pp->b_n++;
    } else {
        pp->w_sum += dt;
        pp->w_n++;
    }
    pp->t_dur[at] = dt;
    pp->t_start[at] = t0;
    if (pp->on_event) pp->on_event(pp->event_ctx, a, t0, t1);
}

mpt_status mpt_pp_sends_done(mpt_pp *pp, mpt_error *err) {
    for (int k = 0; k < 2; k++) TRY_(free_grad_out_(pp, k, err));
    pp->model->cur = &pp->model->own;
    return MPT_OK;
}

mpt_status mpt_pp_act(mpt_pp *pp, const mpt_pp_action *a, mpt_pp_batch_fn batch, void *ctx,
                      int32_t *inputs, int32_t *targets, int Bm, int T, float dloss,
                      double *loss_sum, mpt_error *err) {
    int v = pp->v;
    {
        int j = a->mb * v + a->chunk, tag = mpt_pp_action_tag(a, v);
        const mpt_gpt *m = chunk_model_(pp, a->chunk);
        switch (a->op) {
        case MPT_PP_RECV_ACT: {
            TRY_(open_set_(pp, j, err));
            /* a message already there is copied in the post (MPI's single-copy get by the
             * receiver): that time is its transfer's, outside any compute */
            double t0 = mpt_comm_clock();
            TRY_(mpt_irecv(pp->comm, pp->set[j].a[MPT_ACT_ENCODED], pp->boundary_n, a->peer, tag,
                           &pp->rx_act[j], err));
            pp->t_post[tag] = mpt_comm_clock() - t0;
            break;
        }
        case MPT_PP_SEND_ACT: /* from set j's stash: waited before j's backward (backward_) */
            pp->t_sent[tag] = mpt_comm_clock();
            pp->t_peer[tag] = a->peer;
            TRY_(mpt_isend(pp->comm, stage_output_(pp, j), pp->boundary_n, a->peer, tag,
                           &pp->tx_act[j], err));
            break;
        case MPT_PP_RECV_GRAD: {
            TRY_(open_set_(pp, j, err));
            TRY_(open_set_b_(pp, j, err));
            double t0 = mpt_comm_clock();
            TRY_(mpt_irecv(pp->comm, pp->set[j].a[MPT_ACT_GRAD_IN], pp->boundary_n, a->peer, tag,
                           &pp->rx_grad[j], err));
            pp->t_post[tag] = mpt_comm_clock() - t0;
            break;
        }
        case MPT_PP_SEND_GRAD:
            pp->t_sent[tag] = mpt_comm_clock();
            pp->t_peer[tag] = a->peer;
            TRY_(mpt_isend(pp->comm, pp->grad_out[j % 2], pp->boundary_n, a->peer, tag,
                           &pp->tx_grad[j % 2], err));
            pp->tx_grad_busy[j % 2] = 1;
            break;
        case MPT_PP_F:
        case MPT_PP_B: {
            /* waiting for the input is idle time; the compute after it is busy time */
            int grad = a->op == MPT_PP_B;
            if (grad ? !m->last : !m->first) {
                int k = 2 * j + grad; /* = the message's tag */
                pp->t_wait[k] = mpt_comm_clock();
                TRY_(mpt_wait(grad ? &pp->rx_grad[j] : &pp->rx_act[j], err));
                pp->t_got[k] = mpt_comm_clock();
            }
            double t0 = mpt_comm_clock();
            TRY_(a->op == MPT_PP_F ? forward_(pp, a, batch, ctx, inputs, targets, Bm, T, dloss,
                                              loss_sum, err)
                                   : backward_(pp, a, batch, ctx, inputs, Bm, T, err));
            timed_(pp, a, t0, mpt_comm_clock());
            break;
        }
        case MPT_PP_W: {
            double t0 = mpt_comm_clock();
            TRY_(weights_(pp, a, Bm, T, err));
            timed_(pp, a, t0, mpt_comm_clock());
            break;
        }
        default:
            return mpt_fail(err, MPT_ERR_RUN, "pipeline: action %d is not supported by this executor",
                            a->op);
        }
    }
    return MPT_OK;
}

size_t mpt_pp_record_size(int mw) { return MPT_PP_REC_HEAD + (6 * 2 + 6) * (size_t)mw + 1; }

size_t mpt_pp_record_len(const mpt_pp *pp) { return mpt_pp_record_size(pp->mw); }

void mpt_pp_record(const mpt_pp *pp, double *rec) {
    size_t nm = 2 * (size_t)pp->mw;
    double head[MPT_PP_REC_HEAD] = {pp->f_sum, pp->f_n, pp->b_sum, pp->b_n,
                                    pp->w_sum, pp->w_n, pp->busy,  pp->wall};
    memcpy(rec, head, sizeof head);
    double *sent = rec + MPT_PP_REC_HEAD, *peer = sent + nm, *wait = peer + nm, *got = wait + nm;
    double *post = got + nm;
    for (size_t i = 0; i < nm; i++) { /* sends of this window only */
        int here = pp->t_sent[i] >= pp->t_win0;
        sent[i] = here ? pp->t_sent[i] : 0.0;
        peer[i] = here ? pp->t_peer[i] : -1;
        wait[i] = pp->t_wait[i];
        got[i] = pp->t_got[i];
        post[i] = pp->t_post[i];
    }
    memcpy(post + nm, pp->t_dur, 6 * (size_t)pp->mw * sizeof *rec);
    double *any = post + nm + 6 * (size_t)pp->mw;
    memcpy(any, pp->t_sent, nm * sizeof *rec); /* the last send of each tag, any window */
    any[nm] = pp->t_win0;
}

void mpt_pp_record_costs(int p, int v, int mw, const double *recs, double *costs,
                         double *busy_sum, double *wall_max) {
    size_t nm = 2 * (size_t)mw, len = mpt_pp_record_size(mw);
    double comm = 0.0, comm_n = 0.0, busy = 0.0, wall = 0.0;
    for (int s = 0; s < p; s++) {
        const double *x = recs + (size_t)s * len;
        const double *wait = x + MPT_PP_REC_HEAD + 2 * nm, *got = wait + nm, *post = got + nm;
        /* the simulator's costs are a whole stage's (mpt_pp_action_cost scales a chunk's by
         * 1/v) */
        double *c = costs + (size_t)s * MPT_PP_COSTS;
        c[MPT_PP_COST_F] = x[1] > 0 ? v * x[0] / x[1] : 0.0;
        c[MPT_PP_COST_B] = x[3] > 0 ? v * x[2] / x[3] : 0.0;
        c[MPT_PP_COST_W] = x[5] > 0 ? v * x[4] / x[5] : 0.0; /* split backward only */
        busy += x[6];
        wall = x[7] > wall ? x[7] : wall;
        /* every message stage s received: from when its send was posted (by the stage whose
         * record names s as the peer of that tag) and s waited for it, to the wait's return,
         * plus the time its receive's post took (a message already there is copied then) */
        for (size_t i = 0; i < nm; i++) {
            double sent = 0.0;
            for (int q = 0; q < p; q++) {
                const double *y = recs + (size_t)q * len + MPT_PP_REC_HEAD;
                if (y[i] > 0 && (int)y[nm + i] == s) sent = y[i];
            }
            if (got[i] <= 0 || sent <= 0) continue;
            double from = sent > wait[i] ? sent : wait[i], dt = got[i] - from;
            comm += (dt > 0 ? dt : 0.0) + post[i];
            comm_n += 1;
        }
    }
    for (int s = 0; s < p; s++)
        costs[(size_t)s * MPT_PP_COSTS + MPT_PP_COST_COMM] = comm_n > 0 ? comm / comm_n : 0.0;
    if (busy_sum) *busy_sum = busy;
    if (wall_max) *wall_max = wall;
}

mpt_status mpt_pp_measure(mpt_pp *pp, double *costs, double *busy_sum, double *wall_max,
                          mpt_error *err) {
    size_t len = mpt_pp_record_len(pp);
    /* one sum over the pipeline group gathers every stage's record (each its own row) */
    memset(pp->msg, 0, (size_t)pp->p * len * sizeof *pp->msg);
    mpt_pp_record(pp, pp->msg + (size_t)pp->stage * len);
    mpt_status st =
        pp->p > 1 ? mpt_allreduce_sum_f64(pp->comm, pp->msg, (size_t)pp->p * len, err) : MPT_OK;
    if (!st) mpt_pp_record_costs(pp->p, pp->v, pp->mw, pp->msg, costs, busy_sum, wall_max);
    return st;
}
