/* pp_eval.c — forward-only evaluation through the pipeline stages (see pp_eval.h). */
#include "parallel/pp_eval.h"

#include <string.h>

enum { EVAL_TAG_ = 31000 }; /* pipeline group; no training message is in flight meanwhile */

mpt_status mpt_pp_eval(mpt_pp *pp, mpt_pp_batch_fn batch, void *ctx, int count, int32_t *inputs,
                       int32_t *targets, int Bm, int T, double *loss_sum, mpt_error *err) {
    mpt_gpt *m = pp->model;
    *loss_sum = 0.0;
    if (pp->pool_n < 1)
        return mpt_fail(err, MPT_ERR_RUN, "evaluation: the pipeline executor has no activation set");
    mpt_gpt_acts *set = &pp->pool[0]; /* free between steps: every set closes at its B */
    size_t per = m->act_n[MPT_ACT_RES3] / (size_t)m->nl;
    float *out = set->a[MPT_ACT_RES3] + (size_t)(m->nl - 1) * per; /* the stage's output */
    mpt_status st = MPT_OK;
    m->cur = set;
    for (int k = 0; k < count && !st; k++) {
        mpt_req rq;
        if (!m->first) {
            st = mpt_irecv(pp->comm, set->a[MPT_ACT_ENCODED], pp->boundary_n, pp->stage - 1,
                           EVAL_TAG_, &rq, err);
            if (!st) st = mpt_wait(&rq, err);
        }
        if (st) break;
        batch(ctx, k, m->first ? inputs : NULL, m->last ? targets : NULL);
        double loss = 0.0;
        st = mpt_gpt_forward(m, inputs, m->last ? targets : NULL, Bm, T, 0.0f, &loss, err);
        if (!st && m->last) *loss_sum += loss;
        if (!st && !m->last) { /* the next forward overwrites out: wait for the send */
            st = mpt_isend(pp->comm, out, pp->boundary_n, pp->stage + 1, EVAL_TAG_, &rq, err);
            if (!st) st = mpt_wait(&rq, err);
        }
    }
    m->cur = &m->own;
    pp->inputs_mb = -1; /* the tokens in inputs are no training micro-batch's */
    return st;
}
