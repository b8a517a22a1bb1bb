/* cmd_simulate.c — `mptrain simulate`: one step of a layout's real schedule (the runtime's
 * action lists) replayed against a cost model of a cluster: step time, TFLOP/s per GPU, MFU,
 * bubble, traffic per link, memory per rank (the runtime's plan), an ASCII timeline, a
 * Chrome trace and an SVG timeline (cli/sim_svg.h). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/plan_opts.h"
#include "cli/sim_svg.h"

/* One line per pipeline rank, `width` cells over the pipeline's span: F, B, W or idle. */
static void timeline_(const mpt_sim_result *r, int width) {
    if (!r->n_ev || r->pipe_time <= 0) return;
    char *line = malloc((size_t)width + 1);
    if (!line) return;
    printf("\ntimeline (%d pipeline ranks, %.4f s across; F forward, B backward, W weight "
           "gradient, . idle):\n", r->p, r->pipe_time);
    for (int rank = 0; rank < r->p && rank < 64; rank++) {
        memset(line, '.', (size_t)width);
        line[width] = '\0';
        for (size_t i = 0; i < r->n_ev; i++) {
            const mpt_pp_event *e = &r->ev[i];
            if (e->rank != rank) continue;
            int a = (int)(e->start / r->pipe_time * width);
            int b = (int)(e->end / r->pipe_time * width);
            if (b == a) b = a + 1;
            for (int k = a; k < b && k < width; k++)
                line[k] = e->a.op == MPT_PP_F ? 'F' : e->a.op == MPT_PP_B ? 'B' : 'W';
        }
        printf("rank %2d |%s|\n", rank, line);
    }
    free(line);
}

/* Chrome trace-event JSON: one process per pipeline rank, one compute track. */
static int trace_(const mpt_sim_result *r, const char *path) {
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "mptrain: error: cannot write --trace %s\n", path);
        return 2;
    }
    fprintf(f, "{\"traceEvents\":[\n");
    for (size_t i = 0; i < r->n_ev; i++) {
        const mpt_pp_event *e = &r->ev[i];
        char name[48];
        mpt_pp_action_str(&e->a, r->v, name, sizeof name);
        fprintf(f,
                "%s{\"name\":\"%s\",\"ph\":\"X\",\"pid\":%d,\"tid\":0,\"ts\":%.3f,"
                "\"dur\":%.3f}\n",
                i ? "," : "", name, e->rank, e->start * 1e6, (e->end - e->start) * 1e6);
    }
    fprintf(f, "]}\n");
    return fclose(f) == 0 ? 0 : 1;
}

int mpt_cli_simulate(int argc, char **argv) {
    plan_cli c;
    plan_cli_defaults(&c);
    mpt_arg args[48];
    size_t n = plan_cli_table(&c, args);
    args[n++] = (mpt_arg){"trace", MPT_ARG_STRING, &c.trace, "Chrome trace JSON of the step (Perfetto)", NULL, MPT_NO_RANGE};
    const char *svg = NULL;
    args[n++] = (mpt_arg){"svg", MPT_ARG_STRING, &svg, "SVG timeline of the step: compute and communication streams per rank", NULL, MPT_NO_RANGE};
    args[n++] = (mpt_arg){"timeline", MPT_ARG_FLAG, &c.top, "ASCII timeline of the pipeline ranks", NULL, MPT_NO_RANGE};
    mpt_error err = {0};
    int help = 0;
    c.top = 0;
    mpt_status st = mpt_args_parse(args, n, argc, argv, 2, &help, "simulate", &err);
    if (help) {
        printf("usage: mptrain simulate [options]\n\n"
               "Replays a layout's pipeline schedule (the runtime's action lists) against a cost\n"
               "model of a cluster: step time, TFLOP/s per GPU, MFU, bubble, traffic.\n\n");
        mpt_args_usage(args, n);
        return 0;
    }
    if (st) return mpt_cli_report(&err);
    mpt_plan_job job;
    mpt_plan_layout lay;
    mpt_cluster cl;
    if ((st = plan_cli_job(&c, &job, &lay, &err)) ||
        (st = mpt_cluster_load(&cl, c.cluster, &err)))
        return mpt_cli_report(&err);
    job.per_node = cl.per_node; /* the default dp bucket follows the cluster's nodes */
    mpt_sim_result r;
    if ((st = mpt_simulate(&job, &lay, &cl, c.top || c.trace || svg, &r, &err)))
        return mpt_cli_report(&err);
    mpt_plan_memory mem;
    mpt_error merr = {0};
    int have_mem = mpt_plan_memory_eval(&job, &lay, &mem, &merr) == MPT_OK;
    int code = 0;
    if (c.json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "cluster", cl.name);
        cJSON_AddNumberToObject(o, "gpus", r.world);
        if (have_mem) cJSON_AddItemToObject(o, "memory_bytes_per_rank", plan_json_memory(&mem));
        else {
            cJSON_AddNullToObject(o, "memory_bytes_per_rank");
            cJSON_AddStringToObject(o, "memory_note", merr.msg);
        }
        plan_json_sim(o, &r);
        plan_json_cluster(o, &cl);
        char *s = cJSON_Print(o);
        cJSON_Delete(o);
        if (s) printf("%s\n", s);
        free(s);
    } else {
        char s[160];
        mpt_plan_layout_str(&lay, s, sizeof s);
        printf("model: L%d D%d H%d F%d V%d, batch %d x %d tokens, %s\nlayout: %s\n",
               job.cfg.n_layer, job.cfg.d_model, job.cfg.n_head, job.cfg.ffn, job.cfg.vocab,
               job.batch, job.seq_len > 0 ? job.seq_len : job.cfg.n_positions, c.precision, s);
        plan_print_sim(&cl, &r);
        if (have_mem) {
            char b[32];
            mpt_format_bytes(mem.worst.total, b, sizeof b);
            printf("memory per rank  %10s   (largest rank, the runtime's plan)\n", b);
            plan_print_fit(&c, &cl, mem.worst.total);
        } else printf("memory per rank: not available: %s\n", merr.msg);
        if (c.top) timeline_(&r, 100);
    }
    if (c.trace) code = trace_(&r, c.trace);
    if (svg && !code) {
        char s[160];
        mpt_plan_layout_str(&lay, s, sizeof s);
        if ((code = mpt_sim_svg_write(&r, s, svg)))
            fprintf(stderr, "mptrain: error: cannot write --svg %s\n", svg);
    }
    mpt_sim_result_free(&r);
    return code;
}
