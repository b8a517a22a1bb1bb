/* train_suggest.c — `train --mem-limit`: when the memory plan does not fit the limit, the best
 * layout of the same rank count that does (the layout search of plan/search.h on cluster
 * cpu-here), appended to the error every rank reports.
 *
 * Which ranks call: every rank of world, together (one collective: world rank 0 calibrates
 * cpu-here and the others receive its figures, so that every rank ranks the layouts alike
 * and prints the same suggestion). */
#include "cli/train_suggest.h"

#include <stdio.h>
#include <string.h>

#include "plan/search.h"

/* The cluster's numbers as doubles (order fixed), and back. */
enum { FIELDS_ = 26, CAL_ = 32 };
static void pack_(const mpt_cluster *c, double *v) {
    const double f[FIELDS_] = {
        c->peak_fp32, c->peak_bf16, c->gemm_eff, c->mem_bw,    c->mem_eff,   c->launch,
        (double)c->mem_bytes, c->per_node, c->intra_bw, c->intra_eff, c->intra_lat,
        c->inter_bw,  c->inter_eff, c->inter_lat, c->measured, c->cores,    c->attn_f,
        c->attn_b,    c->ew_ln_f,   c->ew_ln_b,   c->ew_gelu_f, c->ew_gelu_b, c->ew_add,
        c->ew_xent,   c->par_eff,   0};
    memcpy(v, f, sizeof f);
    const char *names[CAL_];
    double *p[CAL_];
    mpt_cluster cc = *c;
    size_t n = mpt_cluster_calib_fields(&cc, names, p, CAL_);
    for (size_t i = 0; i < n && i < CAL_; i++) v[FIELDS_ + i] = *p[i];
}
static void unpack_(const double *v, mpt_cluster *c) {
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "cpu-here");
    c->peak_fp32 = v[0], c->peak_bf16 = v[1], c->gemm_eff = v[2], c->mem_bw = v[3];
    c->mem_eff = v[4], c->launch = v[5], c->mem_bytes = (size_t)v[6], c->per_node = (int)v[7];
    c->intra_bw = v[8], c->intra_eff = v[9], c->intra_lat = v[10], c->inter_bw = v[11];
    c->inter_eff = v[12], c->inter_lat = v[13], c->measured = (int)v[14], c->cores = (int)v[15];
    c->attn_f = v[16], c->attn_b = v[17], c->ew_ln_f = v[18], c->ew_ln_b = v[19];
    c->ew_gelu_f = v[20], c->ew_gelu_b = v[21], c->ew_add = v[22], c->ew_xent = v[23];
    c->par_eff = v[24];
    const char *names[CAL_];
    double *p[CAL_];
    size_t n = mpt_cluster_calib_fields(c, names, p, CAL_);
    for (size_t i = 0; i < n && i < CAL_; i++) *p[i] = v[FIELDS_ + i];
}

void mpt_train_suggest_layout(mpt_comm *world, const mpt_train_opts *o, char *buf, size_t n) {
    buf[0] = '\0';
    double v[FIELDS_ + CAL_] = {0};
    if (world->rank == 0) {
        mpt_cluster here;
        mpt_cluster_measure_here(&here);
        pack_(&here, v);
    }
    if (world->size > 1 && mpt_allreduce_sum_f64(world, v, FIELDS_ + CAL_, NULL)) return;
    mpt_cluster c;
    unpack_(v, &c);
    mpt_plan_job job;
    mpt_plan_job_defaults(&job);
    job.cfg = o->cfg;
    job.batch = o->batch;
    job.seq_len = o->seq_len;
    job.threads = o->threads;
    job.bucket_mb = o->bucket_mb;
    mpt_plan_candidate best;
    int found = 0;
    mpt_search_stats stats;
    mpt_error err = {0};
    if (mpt_plan_search(&job, &c, world->size, o->mem_limit, &best, 1, &found, &stats, &err))
        return;
    if (!found) {
        snprintf(buf, n, "; no layout of %d ranks fits it (%ld tried): use more ranks, a "
                 "smaller batch, sequence or model", world->size, stats.tried);
        return;
    }
    const mpt_plan_layout *l = &best.l;
    char mem[32];
    mpt_format_bytes(best.mem.total, mem, sizeof mem);
    char cpv[64] = ""; /* --cp, --ep and interleaved's --virtual-stages, when the search chose
                        * them */
    if (l->cp > 1) snprintf(cpv, sizeof cpv, " --cp %d", l->cp);
    if (l->ep > 1) snprintf(cpv + strlen(cpv), sizeof cpv - strlen(cpv), " --ep %d", l->ep);
    if (l->pp > 1 && l->schedule == MPT_PP_INTERLEAVED)
        snprintf(cpv + strlen(cpv), sizeof cpv - strlen(cpv), " --virtual-stages %d",
                 l->virtual_stages);
    snprintf(buf, n, "; the best layout of %d ranks that fits (%s per rank, %.3f s per step "
             "simulated on cpu-here): --dp %d --tp %d%s%s --pp %d --zero %d --microbatches %d%s%s "
             "--recompute %s", world->size, mem, best.step_time, l->dp, l->tp, l->sp ? " --sp" : "",
             cpv, l->pp, l->zero, l->microbatches, l->pp > 1 ? " --schedule " : "",
             l->pp > 1 ? mpt_pp_kind_name(l->schedule) : "",
             (const char *[]){"none", "selective", "full"}[l->recompute]);
}
