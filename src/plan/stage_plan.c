/* stage_plan.c — one pipeline rank's memory plan for the trainer and the planner (see
 * stage_plan.h). */
#include "plan/stage_plan.h"

#include <string.h>

#include "parallel/dp.h"
#include "parallel/pp.h"

/* mpt_pp_chunk_sets (until_b 0) or mpt_pp_chunk_sets_b (until_b 1) of rank s, the last few
 * requests kept: generating the action list is the cost, and a search asks for the same
 * schedule's ranks under many layouts. */
static mpt_status sets_cached_(mpt_pp_kind kind, int p, int m, int v, int s, int until_b,
                               int *sets, mpt_error *err) {
    enum { SLOTS = 64 };
    static int keys[SLOTS][6], vals[SLOTS][MPT_STAGE_MAX_CHUNKS], used = 0, next = 0;
    int k[6] = {(int)kind, p, m, v, s, until_b};
    for (int i = 0; i < used; i++)
        if (memcmp(keys[i], k, sizeof k) == 0) {
            memcpy(sets, vals[i], (size_t)v * sizeof *sets);
            return MPT_OK;
        }
    mpt_status st = until_b ? mpt_pp_chunk_sets_b(kind, p, m, v, s, sets, err)
                            : mpt_pp_chunk_sets(kind, p, m, v, s, sets, err);
    if (st) return st;
    memcpy(keys[next], k, sizeof k);
    memcpy(vals[next], sets, (size_t)v * sizeof *sets);
    next = (next + 1) % SLOTS;
    if (used < SLOTS) used++;
    return MPT_OK;
}

mpt_status mpt_stage_plan(const mpt_config *cfg, const mpt_stage_run *run,
                          const mpt_placement *q, mpt_mem_plan *plan, mpt_error *err) {
    int piped = q->stages > 1, v = run->v > 1 ? run->v : 1;
    if (v > MPT_STAGE_MAX_CHUNKS)
        return mpt_fail(err, MPT_ERR_INPUT, "%d model chunks per pipeline rank: at most %d", v,
                        MPT_STAGE_MAX_CHUNKS);
    int split = piped && mpt_pp_split(run->kind);
    int chunk_sets[MPT_STAGE_MAX_CHUNKS] = {1}, sets_b[MPT_STAGE_MAX_CHUNKS] = {1};
    mpt_status st = MPT_OK;
    if (piped)
        st = sets_cached_(run->kind, q->stages, run->microbatches, v, q->stage, 0, chunk_sets,
                          err);
    if (!st && split) /* the executor's until-B pool (parallel/pp.h) */
        st = sets_cached_(run->kind, q->stages, run->microbatches, v, q->stage, 1, sets_b, err);
    if (st) return st;
    mpt_placement qv = *q;
    if (piped && run->kind == MPT_PP_ZB_V) qv.first = qv.last = q->stage == 0; /* both ends */
    mpt_rank_layout lay = {.place = qv, .sp = run->sp, .zero = run->zero,
                           .act_sets = chunk_sets[0], .recompute = run->recompute,
                           .z3_whole = run->z3_whole,
                           .bucket_elems = mpt_dp_bucket_elems(run->bucket_mb),
                           .threads = run->threads, .bf16 = run->bf16, .chunks = v,
                           .chunk_sets = chunk_sets, .split_w = split,
                           .sets_b = split ? sets_b : NULL,
                           .weight_versions = run->two_bw ? 2 + run->two_bw_deferred : 1,
                           .ckpt_bytes = run->ckpt_bytes};
    return mpt_memplan_rank(cfg, run->Bm, run->T, &lay, plan, err);
}

int mpt_stage_2bw_deferred(int pp, int dp, int cp, int zero, int experts) {
    (void)dp; /* any: the replicas of a stage finish their reduction at its update point */
    (void)cp;
    return pp > 1 && zero <= 2 && experts == 0;
}
