/* pp_eval.c — forward-only evaluation through the pipeline stages (see pp_eval.h). */
#include "parallel/pp_eval.h"

#include <string.h>

enum { EVAL_TAG_ = 31000 }; /* pipeline group; no training message is in flight meanwhile */

mpt_status mpt_pp_eval(mpt_pp *pp, mpt_pp_batch_fn batch, void *ctx, int count, int32_t *inputs,
                       int32_t *targets, int Bm, int T, double *loss_sum, mpt_error *err) {
    *loss_sum = 0.0;
    mpt_status st = MPT_OK;
    /* chunk c of rank r is stage c*p + r: the micro-batch goes round the ranks v times */
    int p = pp->p, v = pp->v > 0 ? pp->v : 1;
    int prev = (pp->stage + p - 1) % p, next = (pp->stage + 1) % p;
    for (int k = 0; k < count && !st; k++)
        for (int c = 0; c < v && !st; c++) {
            mpt_gpt *m = mpt_pp_chunk_model(pp, c);
            int e = 0; /* a set of this chunk's pool: free between steps (every set closes) */
            while (e < pp->pool_n && pp->pool_chunk[e] != c) e++;
            if (e == pp->pool_n)
                return mpt_fail(err, MPT_ERR_RUN,
                                "evaluation: the pipeline executor has no activation set");
            mpt_gpt_acts *set = &pp->pool[e];
            size_t per = m->act_n[MPT_ACT_RES3] / (size_t)m->nl;
            float *out = set->a[MPT_ACT_RES3] + (size_t)(m->nl - 1) * per; /* the output */
            m->cur = set;
            mpt_req rq;
            if (!m->first) {
                st = mpt_irecv(pp->comm, set->a[MPT_ACT_ENCODED], pp->boundary_n, prev,
                               EVAL_TAG_ + c, &rq, err);
                if (!st) st = mpt_wait(&rq, err);
            }
            if (!st) batch(ctx, k, m->first ? inputs : NULL, m->last ? targets : NULL);
            double loss = 0.0;
            if (!st) st = mpt_gpt_forward(m, inputs, m->last ? targets : NULL, Bm, T, 0.0f, &loss,
                                          err);
            if (!st && m->last) *loss_sum += loss;
            if (!st && !m->last) { /* the next forward overwrites out: wait for the send */
                st = mpt_isend(pp->comm, out, pp->boundary_n, next, EVAL_TAG_ + (c + (next == 0)),
                               &rq, err);
                if (!st) st = mpt_wait(&rq, err);
            }
            m->cur = &m->own;
        }
    pp->inputs_mb = -1; /* the tokens in inputs are no training micro-batch's */
    return st;
}
