/* search.c — layout search (see search.h). */
#include "plan/search.h"

#include <string.h>

#include "model/gpt.h"
#include "parallel/cp.h"

/* Keeps out[] sorted by throughput (tokens/s, higher first), at most max entries. */
static void insert_(mpt_plan_candidate *out, int max, int *n, const mpt_plan_candidate *c) {
    int i = *n < max ? (*n)++ : max;
    if (i == max) {
        if (c->tokens_per_s <= out[max - 1].tokens_per_s) return;
        i = max - 1;
    }
    while (i > 0 && out[i - 1].tokens_per_s < c->tokens_per_s) {
        out[i] = out[i - 1];
        i--;
    }
    out[i] = *c;
}

mpt_status mpt_plan_search(const mpt_plan_job *job, const mpt_cluster *c, int gpus,
                           size_t mem_limit, mpt_plan_candidate *out, int max_out, int *n_out,
                           mpt_search_stats *stats, mpt_error *err) {
    *n_out = 0;
    memset(stats, 0, sizeof *stats);
    if (gpus < 1) return mpt_fail(err, MPT_ERR_INPUT, "--gpus %d must be >= 1", gpus);
    if (max_out < 1) return MPT_OK;
    size_t limit = mem_limit ? mem_limit : c->mem_bytes;
    mpt_plan_job j = *job;
    j.mem_limit = limit;
    j.per_node = c->per_node; /* the default dp bucket follows the nodes */
    const mpt_config *cfg = &job->cfg;
    static const int sizes[] = {1, 2, 4, 8};
    /* pipeline schedules (pp > 1): kind and chunks per rank (interleaved v; zb-v's V is 2) */
    static const struct { mpt_pp_kind kind; int v; } scheds[] = {
        {MPT_PP_1F1B, 1},        {MPT_PP_GPIPE, 1},       {MPT_PP_INTERLEAVED, 2},
        {MPT_PP_INTERLEAVED, 4}, {MPT_PP_ZB_H1, 1},       {MPT_PP_ZB_V, 2}};
    int T = job->seq_len > 0 ? job->seq_len : cfg->n_positions;
    for (int tp = 1; tp <= gpus && tp <= c->per_node; tp++) {
        if (gpus % tp || cfg->n_head % tp || cfg->ffn % tp) continue;
        for (int cp = 1; cp <= gpus / tp; cp *= 2) {
            /* ring chunks of at least 256 tokens: shorter ones leave the hops exposed */
            if (cp > 1 && T / cp < 256) break;
            if ((gpus / tp) % cp || (cp > 1 && mpt_cp_check(T, cp, tp, 0, NULL))) continue;
            for (int pp = 1; pp <= gpus / tp / cp && pp <= cfg->n_layer; pp++) {
                if ((gpus / tp / cp) % pp) continue;
                int dp = gpus / tp / cp / pp;
                if (job->batch % dp) continue;
                size_t n_sched = pp > 1 ? sizeof scheds / sizeof *scheds : 1;
                /* MoE: ep over the divisors of E that the mesh takes (inside dp, or every cp
                 * rank and ep/cp dp ranks); sp is refused with experts */
                for (int ep = 1; ep <= (cfg->experts > 0 ? cfg->experts : 1); ep++) {
                if (cfg->experts > 0 && (cfg->experts % ep ||
                                         (dp % ep && (ep % cp || dp % (ep / cp)))))
                    continue;
                for (int sp = 0; sp <= (tp > 1 && cfg->experts == 0); sp++)
                    for (int zero = 0; zero <= 3; zero++)
                        for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
                            int per = job->batch / dp;
                            if (per % sizes[si]) continue;
                            for (size_t ki = 0; ki < n_sched; ki++)
                                for (int rc = MPT_RECOMPUTE_NONE; rc <= MPT_RECOMPUTE_FULL; rc++) {
                                    mpt_plan_layout l;
                                    mpt_plan_layout_defaults(&l);
                                    l.tp = tp, l.cp = cp, l.pp = pp, l.dp = dp, l.sp = sp;
                                    l.ep = ep;
                                    l.zero = zero;
                                    l.microbatches = per / sizes[si];
                                    l.schedule = scheds[ki].kind;
                                    l.virtual_stages = scheds[ki].v;
                                    l.recompute = rc;
                                    /* zero > 0 over one replica is zero 0 */
                                    if (zero > 0 && dp * cp == 1) continue;
                                    mpt_plan_memory mem;
                                    mpt_error e;
                                    if (mpt_plan_memory_ends(&j, &l, &mem, &e)) continue;
                                    stats->tried++;
                                    if (mem.worst.total > limit) continue;
                                    if (l.pp > 2 && (mpt_plan_memory_eval(&j, &l, &mem, &e) ||
                                                     mem.worst.total > limit))
                                        continue;
                                    stats->fit++;
                                    mpt_sim_result r;
                                    if (mpt_simulate(&j, &l, c, 0, &r, &e)) continue;
                                    mpt_plan_candidate cand = {
                                        .l = l, .mem = mem.worst, .step_time = r.step_time,
                                        .tflops_per_gpu = r.tflops_per_gpu, .mfu = r.mfu,
                                        .bubble = r.bubble, .tokens_per_s = r.tokens_per_s};
                                    insert_(out, max_out, n_out, &cand);
                                }
                        }
                }
            }
        }
    }
    (void)err;
    return MPT_OK;
}
