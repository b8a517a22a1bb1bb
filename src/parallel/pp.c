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

mpt_status mpt_pp_sets_needed(mpt_pp_kind kind, int p, int m, int stage, int *n, mpt_error *err) {
    mpt_pp_action *a;
    size_t na;
    TRY_(mpt_pp_schedule(kind, p, m, 1, stage, &a, &na, err));
    char *open = calloc((size_t)m, 1);
    if (!open) {
        free(a);
        return mpt_fail(err, MPT_ERR_RUN, "out of memory");
    }
    int alive = 0, most = 0;
    for (size_t i = 0; i < na; i++) {
        if (touches_set_(&a[i]) && !open[a[i].mb]) {
            open[a[i].mb] = 1;
            alive++;
        }
        if (alive > most) most = alive;
        if (a[i].op == MPT_PP_B) alive--;
    }
    free(a);
    free(open);
    *n = most;
    return MPT_OK;
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

mpt_status mpt_pp_init(mpt_pp *pp, mpt_comm *comm, mpt_pp_kind kind, int m, mpt_gpt *model,
                       mpt_dp *dp, mpt_error *err) {
    memset(pp, 0, sizeof *pp);
    pp->comm = comm;
    pp->kind = kind;
    pp->p = comm->size;
    pp->stage = comm->rank;
    pp->m = m;
    pp->model = model;
    pp->dp = dp;
    pp->boundary_n = mpt_pp_boundary_elems(model->B, model->T, model->cfg.d_model, model->tp,
                                           model->sp);
    mpt_status st = mpt_pp_schedule(kind, pp->p, m, 1, pp->stage, &pp->acts, &pp->n_acts, err);
    if (!st) st = mpt_pp_sets_needed(kind, pp->p, m, pp->stage, &pp->sets_needed, err);
    if (st) return st;
    pp->set = calloc((size_t)m, sizeof *pp->set);
    pp->pool = calloc((size_t)m, sizeof *pp->pool);
    pp->pool_free = calloc((size_t)m, sizeof *pp->pool_free);
    pp->slot_of = malloc((size_t)m * sizeof *pp->slot_of);
    for (int k = 0; pp->slot_of && k < m; k++) pp->slot_of[k] = -1;
    pp->rx_act = calloc((size_t)m, sizeof *pp->rx_act);
    pp->rx_grad = calloc((size_t)m, sizeof *pp->rx_grad);
    pp->tx_act = calloc((size_t)m, sizeof *pp->tx_act);
    size_t nm = 2 * (size_t)m; /* three per-message arrays, then p of them for mpt_pp_measure */
    pp->t_sent = calloc(nm * (3 + (size_t)pp->p), sizeof *pp->t_sent);
    if (pp->t_sent) {
        pp->t_wait = pp->t_sent + nm;
        pp->t_got = pp->t_wait + nm;
        pp->msg = pp->t_got + nm;
    }
    if (!pp->set || !pp->pool || !pp->pool_free || !pp->slot_of || !pp->rx_act || !pp->rx_grad ||
        !pp->tx_act || !pp->t_sent) {
        mpt_pp_free(pp);
        return mpt_fail(err, MPT_ERR_RUN, "out of memory for the pipeline executor");
    }
    mpt_buflist_init(&pp->bufs);
    mpt_pp_buffers(pp->stage, pp->boundary_n, pp, &pp->bufs);
    st = mpt_buflist_alloc(&pp->bufs, model->arena, err);
    /* every activation set the schedule keeps alive at once, up front: no allocation during a
     * step, and the arena's peak is reached (and checked against --mem-limit) at set-up */
    for (; !st && pp->pool_n < pp->sets_needed; pp->pool_n++) {
        st = mpt_gpt_acts_alloc(model, &pp->pool[pp->pool_n], err);
        pp->pool_free[pp->pool_n] = 1;
    }
    if (st) mpt_pp_free(pp);
    return st;
}

void mpt_pp_free(mpt_pp *pp) {
    if (!pp || !pp->model) return;
    for (int k = 0; k < pp->pool_n; k++) mpt_gpt_acts_free(pp->model, &pp->pool[k]);
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
    pp->model->cur = &pp->model->own;
    memset(pp, 0, sizeof *pp);
}

/* The output of a stage: the last block's RES3 of the micro-batch's set. */
static float *stage_output_(mpt_pp *pp, int mb) {
    const mpt_gpt *m = pp->model;
    size_t per = m->act_n[MPT_ACT_RES3] / (size_t)m->nl;
    return pp->set[mb].a[MPT_ACT_RES3] + (size_t)(m->nl - 1) * per;
}

/* Gives micro-batch mb a free set of the pool (allocated at init: sets_needed of them). */
static mpt_status open_set_(mpt_pp *pp, int mb, mpt_error *err) {
    if (pp->slot_of[mb] >= 0) return MPT_OK;
    int k = 0;
    while (k < pp->pool_n && !pp->pool_free[k]) k++;
    if (k == pp->pool_n)
        return mpt_fail(err, MPT_ERR_RUN,
                        "pipeline stage %d: micro-batch %d needs activation set %d, but the "
                        "schedule was planned for %d",
                        pp->stage, mb, k + 1, pp->sets_needed);
    pp->pool_free[k] = 0;
    pp->slot_of[mb] = k;
    pp->set[mb] = pp->pool[k];
    return MPT_OK;
}

static void close_set_(mpt_pp *pp, int mb) {
    pp->pool_free[pp->slot_of[mb]] = 1;
    pp->slot_of[mb] = -1;
    memset(&pp->set[mb], 0, sizeof pp->set[mb]);
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
    mpt_gpt *m = pp->model;
    int mb = a->mb;
    TRY_(open_set_(pp, mb, err));
    batch(ctx, mb, m->first ? inputs : NULL, m->last ? targets : NULL);
    if (m->first) pp->inputs_mb = mb;
    m->cur = &pp->set[mb];
    if (pp->before_forward) TRY_(pp->before_forward(pp->forward_ctx, mb, m, inputs, err));
    double loss = 0.0;
    TRY_(mpt_gpt_forward(m, inputs, m->last ? targets : NULL, Bm, T, dloss, &loss, err));
    *loss_sum += loss;
    return MPT_OK;
}

static mpt_status backward_(mpt_pp *pp, const mpt_pp_action *a, mpt_pp_batch_fn batch, void *ctx,
                            int32_t *inputs, int Bm, int T, mpt_error *err) {
    mpt_gpt *m = pp->model;
    int mb = a->mb;
    if (m->first && pp->inputs_mb != mb) { /* the embedding's backward needs the tokens */
        batch(ctx, mb, inputs, NULL);
        pp->inputs_mb = mb;
    }
    m->cur = &pp->set[mb];
    mpt_dp_set_last_microbatch(pp->dp, mb == pp->m - 1);
    TRY_(mpt_gpt_backward(m, inputs, Bm, T, err));
    if (!m->first) { /* the input gradient goes back: into a free send buffer */
        int k = mb % 2;
        TRY_(free_grad_out_(pp, k, err));
        memcpy(pp->grad_out[k], m->work[MPT_WORK_DRES], pp->boundary_n * sizeof(float));
    }
    if (!m->last) TRY_(mpt_wait(&pp->tx_act[mb], err)); /* long done: the gradient came back */
    close_set_(pp, mb);
    m->cur = &m->own;
    return MPT_OK;
}

mpt_status mpt_pp_step(mpt_pp *pp, mpt_pp_batch_fn batch, void *ctx, int32_t *inputs,
                       int32_t *targets, int Bm, int T, float dloss, double *loss_sum,
                       mpt_error *err) {
    mpt_gpt *m = pp->model;
    *loss_sum = 0.0;
    pp->busy = pp->f_sum = pp->b_sum = 0.0;
    pp->f_n = pp->b_n = 0;
    pp->inputs_mb = -1;
    memset(pp->t_sent, 0, 3 * 2 * (size_t)pp->m * sizeof *pp->t_sent);
    double start = mpt_comm_clock();
    for (size_t i = 0; i < pp->n_acts; i++) {
        const mpt_pp_action *a = &pp->acts[i];
        int mb = a->mb, tag = mpt_pp_action_tag(a, 1);
        switch (a->op) {
        case MPT_PP_RECV_ACT:
            TRY_(open_set_(pp, mb, err));
            TRY_(mpt_irecv(pp->comm, pp->set[mb].a[MPT_ACT_ENCODED], pp->boundary_n, a->peer, tag,
                           &pp->rx_act[mb], err));
            break;
        case MPT_PP_SEND_ACT:
            pp->t_sent[2 * mb] = mpt_comm_clock();
            TRY_(mpt_isend(pp->comm, stage_output_(pp, mb), pp->boundary_n, a->peer, tag,
                           &pp->tx_act[mb], err));
            break;
        case MPT_PP_RECV_GRAD:
            TRY_(open_set_(pp, mb, err));
            TRY_(mpt_irecv(pp->comm, pp->set[mb].a[MPT_ACT_GRAD_IN], pp->boundary_n, a->peer, tag,
                           &pp->rx_grad[mb], err));
            break;
        case MPT_PP_SEND_GRAD:
            pp->t_sent[2 * mb + 1] = mpt_comm_clock();
            TRY_(mpt_isend(pp->comm, pp->grad_out[mb % 2], pp->boundary_n, a->peer, tag,
                           &pp->tx_grad[mb % 2], err));
            pp->tx_grad_busy[mb % 2] = 1;
            break;
        case MPT_PP_F:
        case MPT_PP_B: {
            /* waiting for the input is idle time; the compute after it is busy time */
            int grad = a->op == MPT_PP_B;
            if (grad ? !m->last : !m->first) {
                pp->t_wait[2 * mb + grad] = mpt_comm_clock();
                TRY_(mpt_wait(grad ? &pp->rx_grad[mb] : &pp->rx_act[mb], err));
                pp->t_got[2 * mb + grad] = mpt_comm_clock();
            }
            double t0 = mpt_comm_clock();
            TRY_(a->op == MPT_PP_F ? forward_(pp, a, batch, ctx, inputs, targets, Bm, T, dloss,
                                              loss_sum, err)
                                   : backward_(pp, a, batch, ctx, inputs, Bm, T, err));
            double t1 = mpt_comm_clock();
            pp->busy += t1 - t0;
            if (grad) {
                pp->b_sum += t1 - t0;
                pp->b_n++;
            } else {
                pp->f_sum += t1 - t0;
                pp->f_n++;
            }
            if (pp->on_event) pp->on_event(pp->event_ctx, a, t0, t1);
            break;
        }
        default:
            return mpt_fail(err, MPT_ERR_RUN, "pipeline: action %d is not supported by this executor",
                            a->op);
        }
    }
    for (int k = 0; k < 2; k++) TRY_(free_grad_out_(pp, k, err));
    m->cur = &m->own;
    pp->wall = mpt_comm_clock() - start;
    return MPT_OK;
}

mpt_status mpt_pp_measure(mpt_pp *pp, double *costs, mpt_error *err) {
    int p = pp->p, m = pp->m, me = pp->stage;
    size_t nm = 2 * (size_t)m;
    /* 1. every message's send time, at its receiving stage's row: activations go to me + 1,
     *    gradients to me - 1 */
    memset(pp->msg, 0, (size_t)p * nm * sizeof *pp->msg);
    for (size_t i = 0; i < nm; i++) {
        int dst = me + (i % 2 ? -1 : 1);
        if (pp->t_sent[i] > 0 && dst >= 0 && dst < p) pp->msg[(size_t)dst * nm + i] = pp->t_sent[i];
    }
    if (p > 1) TRY_(mpt_allreduce_sum_f64(pp->comm, pp->msg, (size_t)p * nm, err));
    /* 2. per stage: F and B sums and counts; over all: transfer sum and count */
    size_t ns = 4 * (size_t)p + 2;
    double *sums = calloc(ns, sizeof *sums);
    if (!sums) return mpt_fail(err, MPT_ERR_RUN, "out of memory measuring the pipeline");
    double *row = sums + 4 * (size_t)me;
    row[0] = pp->f_sum;
    row[1] = pp->f_n;
    row[2] = pp->b_sum;
    row[3] = pp->b_n;
    for (size_t i = 0; i < nm; i++) {
        double sent = pp->msg[(size_t)me * nm + i];
        if (pp->t_got[i] <= 0 || sent <= 0) continue;
        double from = sent > pp->t_wait[i] ? sent : pp->t_wait[i], dt = pp->t_got[i] - from;
        sums[ns - 2] += dt > 0 ? dt : 0.0;
        sums[ns - 1] += 1;
    }
    mpt_status st = p > 1 ? mpt_allreduce_sum_f64(pp->comm, sums, ns, err) : MPT_OK;
    for (int s = 0; !st && s < p; s++) {
        const double *x = sums + 4 * (size_t)s;
        double *c = costs + (size_t)s * MPT_PP_COSTS;
        c[MPT_PP_COST_F] = x[1] > 0 ? x[0] / x[1] : 0.0;
        c[MPT_PP_COST_B] = x[3] > 0 ? x[2] / x[3] : 0.0;
        c[MPT_PP_COST_W] = 0.0;
        c[MPT_PP_COST_COMM] = sums[ns - 1] > 0 ? sums[ns - 2] / sums[ns - 1] : 0.0;
    }
    free(sums);
    return st;
}
