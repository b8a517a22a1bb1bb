/* pp_eval.c — forward-only evaluation through the pipeline stages (see pp_eval.h). */
#include "parallel/pp_eval.h"

#include <string.h>

enum { EVAL_TAG_ = 31000 }; /* pipeline group; no training message is in flight meanwhile */

mpt_status mpt_pp_eval(mpt_pp *pp, mpt_pp_batch_fn batch, void *ctx, int count, int32_t *inputs,
                       int32_t *targets, int Bm, int T, double *loss_sum, mpt_error *err) {
    *loss_sum = 0.0;
    mpt_status st = MPT_OK;
    /* each micro-batch goes through the p*v stages in order; this rank runs the stages it
     * holds (interleaved: chunk c of rank r is stage c*p + r; zb-v: stages r and 2p-1-r) */
    int p = pp->p, v = pp->v > 0 ? pp->v : 1, S = p * v;
    for (int k = 0; k < count && !st; k++)
        for (int s = 0; s < S && !st; s++) {
            int rank, c, prev = -1, pc = 0, next = -1, nc = 0;
            mpt_pp_stage_place(pp->kind, p, s, &rank, &c);
            if (rank != pp->stage) continue;
            if (s > 0) mpt_pp_stage_place(pp->kind, p, s - 1, &prev, &pc);
            if (s < S - 1) mpt_pp_stage_place(pp->kind, p, s + 1, &next, &nc);
            mpt_gpt *m = mpt_pp_chunk_model(pp, c);
            mpt_gpt_acts *set = NULL, *to = NULL; /* sets of the pool: free between steps */
            for (int e = 0; e < pp->pool_n; e++) {
                if (!set && pp->pool_chunk[e] == c) set = &pp->pool[e];
                if (!to && next == pp->stage && pp->pool_chunk[e] == nc) to = &pp->pool[e];
            }
            if (!set || (next == pp->stage && !to))
                return mpt_fail(err, MPT_ERR_RUN,
                                "evaluation: the pipeline executor has no activation set");
            mpt_gpt_acts whole = *set; /* split backward: the until-B part from its own pool */
            for (int e = 0; e < pp->bpool_n; e++)
                if (pp->bpool_chunk[e] == c) {
                    for (int i = 0; i < MPT_ACT_SLOTS; i++)
                        if (mpt_gpt_slot_until_b((mpt_act_slot)i)) whole.a[i] = pp->bpool[e].a[i];
                    break;
                }
            set = &whole;
            size_t per = m->act_n[MPT_ACT_RES3] / (size_t)m->nl;
            float *out = set->a[MPT_ACT_RES3] + (size_t)(m->nl - 1) * per; /* the output */
            m->cur = set;
            mpt_req rq;
            if (prev >= 0 && prev != pp->stage) { /* (from this rank: copied below) */
                st = mpt_irecv(pp->comm, set->a[MPT_ACT_ENCODED], pp->boundary_n, prev,
                               EVAL_TAG_ + c, &rq, err);
                if (!st) st = mpt_wait(&rq, err);
            }
            if (!st) batch(ctx, k, m->first ? inputs : NULL, m->last ? targets : NULL);
            double loss = 0.0;
            if (!st) st = mpt_gpt_forward(m, inputs, m->last ? targets : NULL, Bm, T, 0.0f, &loss,
                                          err);
            if (!st && m->last) *loss_sum += loss;
            if (!st && next == pp->stage) {
                memcpy(to->a[MPT_ACT_ENCODED], out, pp->boundary_n * sizeof(float));
            } else if (!st && next >= 0) { /* the next forward overwrites out: wait for it */
                st = mpt_isend(pp->comm, out, pp->boundary_n, next, EVAL_TAG_ + nc, &rq, err);
                if (!st) st = mpt_wait(&rq, err);
            }
            m->cur = &m->own;
        }
    pp->inputs_mb = -1; /* the tokens in inputs are no training micro-batch's */
    return st;
}
