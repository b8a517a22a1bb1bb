/* cmd_plan.c — `mptrain plan`: memory per rank (the runtime's own memory plan) and, with a
 * cluster, the predicted step time of a layout; without a layout and with --gpus, the layout
 * search: candidates best first. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>

#include "cli/cli.h"
#include "train/trainer.h"
#include "cli/plan_opts.h"
#include "plan/search.h"

static int print_json_(cJSON *o) {
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    if (!s) {
        fprintf(stderr, "mptrain: error: out of memory writing JSON\n");
        return 1;
    }
    printf("%s\n", s);
    free(s);
    return 0;
}

static int search_(const plan_cli *c, const mpt_plan_job *job) {
    mpt_error err = {0};
    mpt_cluster cl;
    if (mpt_cluster_load(&cl, c->cluster, &err)) return mpt_cli_report(&err);
    int top = c->top > 0 ? c->top : 10;
    mpt_plan_candidate *cand = calloc((size_t)top, sizeof *cand);
    if (!cand) {
        fprintf(stderr, "mptrain: error: out of memory\n");
        return 1;
    }
    int n = 0;
    mpt_search_stats stats;
    if (mpt_plan_search(job, &cl, c->gpus, c->mem_limit, cand, top, &n, &stats, &err)) {
        free(cand);
        return mpt_cli_report(&err);
    }
    size_t limit = c->mem_limit ? c->mem_limit : cl.mem_bytes;
    char lim[32];
    mpt_format_bytes(limit, lim, sizeof lim);
    if (c->json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "cluster", cl.name);
        cJSON_AddNumberToObject(o, "gpus", c->gpus);
        cJSON_AddNumberToObject(o, "layouts_tried", (double)stats.tried);
        cJSON_AddNumberToObject(o, "layouts_fit", (double)stats.fit);
        cJSON *arr = cJSON_AddArrayToObject(o, "candidates");
        for (int i = 0; i < n; i++) {
            cJSON *e = cJSON_CreateObject();
            const mpt_plan_layout *l = &cand[i].l;
            cJSON *lay = cJSON_AddObjectToObject(e, "layout");
            cJSON_AddNumberToObject(lay, "dp", l->dp);
            cJSON_AddNumberToObject(lay, "tp", l->tp);
            cJSON_AddNumberToObject(lay, "pp", l->pp);
            cJSON_AddNumberToObject(lay, "cp", l->cp);
            cJSON_AddNumberToObject(lay, "ep", l->ep);
            cJSON_AddBoolToObject(lay, "sp", l->sp);
            cJSON_AddNumberToObject(lay, "zero", l->zero);
            cJSON_AddNumberToObject(lay, "microbatches", l->microbatches);
            cJSON_AddStringToObject(lay, "schedule", mpt_pp_kind_name(l->schedule));
            const char *rc[] = {"none", "selective", "full"};
            cJSON_AddStringToObject(lay, "recompute", rc[l->recompute]);
            mpt_plan_memory m = {.worst = cand[i].mem};
            cJSON_AddItemToObject(e, "memory_bytes_per_rank", plan_json_memory(&m));
            cJSON_AddNumberToObject(e, "step_time_s", cand[i].step_time);
            cJSON_AddNumberToObject(e, "tflops_per_gpu", cand[i].tflops_per_gpu);
            cJSON_AddNumberToObject(e, "mfu", cand[i].mfu);
            cJSON_AddNumberToObject(e, "bubble", cand[i].bubble);
            cJSON_AddNumberToObject(e, "tokens_per_s", cand[i].tokens_per_s);
            if (i == 0) { /* the best at the top level too */
                cJSON_AddItemToObject(o, "memory_bytes_per_rank", plan_json_memory(&m));
                cJSON_AddNumberToObject(o, "step_time_s", cand[i].step_time);
                cJSON_AddNumberToObject(o, "tflops_per_gpu", cand[i].tflops_per_gpu);
                cJSON_AddNumberToObject(o, "mfu", cand[i].mfu);
                cJSON_AddNumberToObject(o, "bubble", cand[i].bubble);
            }
            cJSON_AddItemToArray(arr, e);
        }
        free(cand);
        return print_json_(o);
    }
    printf("%ld layouts of %d GPUs checked on %s, %ld fit %s per GPU; best first:\n\n",
           stats.tried, c->gpus, cl.name, stats.fit, lim);
    printf("  %-4s %-52s %10s %10s %8s %6s %7s\n", "rank", "layout", "memory", "step s",
           "TFLOP/s", "MFU", "bubble");
    for (int i = 0; i < n; i++) {
        char s[160], mem[32];
        mpt_plan_layout_str(&cand[i].l, s, sizeof s);
        mpt_format_bytes(cand[i].mem.total, mem, sizeof mem);
        printf("  %-4d %-52s %10s %10.3f %8.1f %5.1f%% %6.1f%%\n", i + 1, s, mem,
               cand[i].step_time, cand[i].tflops_per_gpu, 100 * cand[i].mfu,
               100 * cand[i].bubble);
    }
    if (n == 0)
        printf("  no layout fits: use more GPUs, a shorter sequence or a smaller model\n");
    else {
        const mpt_plan_layout *l = &cand[0].l;
        char cpv[64] = "";
        if (l->cp > 1) snprintf(cpv, sizeof cpv, " --cp %d", l->cp);
        if (l->ep > 1) snprintf(cpv + strlen(cpv), sizeof cpv - strlen(cpv), " --ep %d", l->ep);
        if (l->pp > 1 && l->schedule == MPT_PP_INTERLEAVED)
            snprintf(cpv + strlen(cpv), sizeof cpv - strlen(cpv), " --virtual-stages %d",
                     l->virtual_stages);
        printf("\nbest: mptrain train --dp %d --tp %d%s --pp %d --zero %d%s --microbatches %d "
               "--schedule %s --recompute %s --batch %d\n",
               l->dp, l->tp, cpv, l->pp, l->zero, l->sp ? " --sp" : "", l->microbatches,
               mpt_pp_kind_name(l->schedule),
               (const char *[]){"none", "selective", "full"}[l->recompute], job->batch);
    }
    free(cand);
    return 0;
}

int mpt_cli_plan(int argc, char **argv) {
    plan_cli c;
    plan_cli_defaults(&c);
    mpt_arg args[48];
    size_t n = plan_cli_table(&c, args);
    args[n++] =
        (mpt_arg){"top", MPT_ARG_INT, &c.top, "search: candidates shown (default 10)", NULL, MPT_RANGE(1, 100000)};
    mpt_error err = {0};
    int help = 0;
    mpt_status st = mpt_args_parse(args, n, argc, argv, 2, &help, "plan", &err);
    if (help) {
        printf("usage: mptrain plan [options]\n\n"
               "Memory per rank from the runtime's own memory plan, and with --cluster the\n"
               "predicted step time. With --gpus N and no --dp/--tp/--pp: searches layouts.\n\n");
        mpt_args_usage(args, n);
        return 0;
    }
    if (st) return mpt_cli_report(&err);
    mpt_plan_job job;
    mpt_plan_layout lay;
    if ((st = plan_cli_job(&c, &job, &lay, &err))) return mpt_cli_report(&err);
    if (!plan_cli_has_layout(&c) && c.gpus > 0) {
        if (!c.batch) job.batch = 8 * c.gpus;
        return search_(&c, &job);
    }
    mpt_plan_memory mem;
    if ((st = mpt_plan_memory_eval(&job, &lay, &mem, &err))) return mpt_cli_report(&err);
    mpt_sim_result r = {0};
    mpt_cluster cl;
    int sim = c.seen_cluster;
    if (sim && ((st = mpt_cluster_load(&cl, c.cluster, &err)) ||
                (st = mpt_simulate(&job, &lay, &cl, 0, &r, &err))))
        return mpt_cli_report(&err);
    if (c.json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToObject(o, "memory_bytes_per_rank", plan_json_memory(&mem));
        cJSON_AddNumberToObject(o, "memory_bytes_all_ranks", (double)mem.sum_total);
        cJSON_AddNumberToObject(o, "state_bytes_all_ranks",
                                (double)(mem.sum[MPT_MEM_PARAMS] + mem.sum[MPT_MEM_GRADS] +
                                         mem.sum[MPT_MEM_OPTIMIZER]));
        cJSON_AddNumberToObject(o, "params", (double)mem.n_params);
        /* fp32 params + grads + AdamW before ZeRO, both precisions (no bf16 weight copy) */
        cJSON_AddNumberToObject(o, "bytes_per_param", 16);
        cJSON_AddNumberToObject(o, "worst_stage", mem.worst_stage);
        if (sim) {
            cJSON_AddStringToObject(o, "cluster", cl.name);
            plan_json_sim(o, &r);
        }
        return print_json_(o);
    }
    plan_print_memory(&job, &lay, &mem);
    plan_print_fit(&c, sim ? &cl : NULL, mem.worst.total);
    if (sim) plan_print_sim(&cl, &r);
    return 0;
}
