/* plan_opts.h — the options `mptrain plan` and `mptrain simulate` share (CONTRACT §7): the
 * model (--model preset or FILE.json, dimension overrides), the cluster, --gpus, --batch,
 * --precision and the layout options of `train`; and the pieces of output both print. */
#ifndef MPT_CLI_PLAN_OPTS_H
#define MPT_CLI_PLAN_OPTS_H

#include <stddef.h>

#include "cli/args.h"
#include "plan/cluster.h"
#include "plan/plan.h"
#include "plan/sim.h"

typedef struct plan_cli {
    const char *model, *cluster, *precision, *schedule, *recompute, *partition;
    int layers, d_model, heads, seq_len, vocab, ffn, untied;
    int experts, top_k, moe_every;            /* 0: the model's */
    float capacity_factor, dropless_bound;    /* the model's unless given: */
    int capacity_given, dropless_given;       /* set by the parser (mpt_arg.seen) */
    float moe_imbalance;                      /* 1: balanced */
    float moe_dropped;                        /* 0: none dropped */
    int gpus, batch, dp, tp, pp, cp, ep, sp, zero, microbatches, virtual_stages;
    int seen_dp, seen_tp, seen_pp, seen_cluster, seen_mb;
    size_t mem_limit;
    int threads;             /* --threads (0: the default of mpt_plan_job) */
    int json, top;
    const char *trace, *timeline; /* simulate only */
} plan_cli;

void plan_cli_defaults(plan_cli *c);
/* Writes the shared option table into args (room for 40) and returns its length. */
size_t plan_cli_table(plan_cli *c, mpt_arg *args);
/* The job (model, batch, precision) and the layout from the options. */
mpt_status plan_cli_job(const plan_cli *c, mpt_plan_job *job, mpt_plan_layout *lay,
                        mpt_error *err);
/* Whether any layout option (--dp --tp --pp) was given. */
int plan_cli_has_layout(const plan_cli *c);

/* Human-readable memory of a layout, and its JSON object (cJSON *, as void * to keep cJSON out
 * of the header). */
void plan_print_memory(const mpt_plan_job *job, const mpt_plan_layout *l,
                       const mpt_plan_memory *m);
void *plan_json_memory(const mpt_plan_memory *m);
void plan_print_sim(const mpt_cluster *c, const mpt_sim_result *r);
/* "fits: yes/no" for the largest rank's plan against --mem-limit, else the cluster's memory
 * per GPU (cl NULL and no --mem-limit: nothing printed). */
void plan_print_fit(const plan_cli *c, const mpt_cluster *cl, size_t need);
void plan_json_sim(void *obj, const mpt_sim_result *r);
/* The cluster's parameters as a JSON object under "cluster_params" of obj (a file of them is a
 * --cluster FILE.json: the bench calibrates cpu-here once and reuses it). */
void plan_json_cluster(void *obj, const mpt_cluster *c);

#endif
