/* plan_opts.c — options and output shared by `mptrain plan` and `mptrain simulate` (see
 * plan_opts.h). Part of cli/: prints. */
#include "cli/plan_opts.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "model/gpt.h"
#include "train/trainer.h"
#include "train/hfconfig.h"

void plan_cli_defaults(plan_cli *c) {
    memset(c, 0, sizeof *c);
    c->model = "gpt2-124m";
    c->cluster = "a100-80g";
    c->precision = "fp32";
    c->schedule = "1f1b";
    c->recompute = "none";
    c->partition = "uniform";
    c->dp = c->tp = c->pp = c->cp = c->ep = 1;
    c->microbatches = 1;
    c->virtual_stages = 1;
    c->top = 10;
    c->moe_imbalance = 1;
}

size_t plan_cli_table(plan_cli *c, mpt_arg *a) {
    const mpt_arg t[] = {
        {"model", MPT_ARG_STRING, &c->model, "gpt3-175b | bloom-176b | gpt-1.7b ... gpt-1t | gpt2-124m (default) | FILE.json", NULL, MPT_NO_RANGE},
        {"layers", MPT_ARG_INT, &c->layers, "override the number of blocks", NULL, MPT_RANGE(1, MPT_MAX_LAYERS)},
        {"d-model", MPT_ARG_INT, &c->d_model, "override the width", NULL, MPT_RANGE(1, MPT_MAX_D_MODEL)},
        {"heads", MPT_ARG_INT, &c->heads, "override the attention heads", NULL, MPT_RANGE(1, MPT_MAX_HEADS)},
        {"seq-len", MPT_ARG_INT, &c->seq_len, "tokens per sequence, and the positions of the model as train takes it (default: the model's)", NULL, MPT_RANGE(1, MPT_MAX_POSITIONS)},
        {"vocab", MPT_ARG_INT, &c->vocab, "override the vocabulary size", NULL, MPT_RANGE(2, MPT_MAX_VOCAB)},
        {"ffn", MPT_ARG_INT, &c->ffn, "override the MLP inner width (default 4*d-model)", NULL, MPT_RANGE(1, MPT_MAX_FFN)},
        {"untied", MPT_ARG_FLAG, &c->untied, "separate lm_head instead of the tied wte", NULL, MPT_NO_RANGE},
        {"experts", MPT_ARG_INT, &c->experts, "Mixture-of-Experts: experts per MoE block (as train)", NULL, MPT_RANGE(1, MPT_MAX_EXPERTS)},
        {"top-k", MPT_ARG_INT, &c->top_k, "experts per token (default 1)", NULL, MPT_RANGE(1, MPT_MAX_EXPERTS)},
        {"moe-every", MPT_ARG_INT, &c->moe_every, "every n-th block is MoE (default 1)", NULL, MPT_RANGE(1, MPT_MAX_LAYERS)},
        {"capacity-factor", MPT_ARG_FLOAT, &c->capacity_factor, "expert capacity ceil(c*tokens*K/E) (default 0: dropless)", &c->capacity_given, MPT_RANGE(0, 1e6)},
        {"moe-imbalance", MPT_ARG_FLOAT, &c->moe_imbalance, "simulate MoE: the busiest expert's rows over the mean (train logs moe_imbalance; default 1: balanced)", NULL, MPT_RANGE(1, 1e6)},
        {"moe-dropped", MPT_ARG_FLOAT, &c->moe_dropped, "simulate MoE with --capacity-factor: the share of assignments dropped at capacity (train logs moe_dropped_frac; default 0)", NULL, MPT_RANGE(0, 1)},
        {"moe-dropless-bound", MPT_ARG_FLOAT, &c->dropless_bound, "dropless with --ep: rows a rank's experts may receive, in multiples of its own assignments (default 0 = --ep)", &c->dropless_given, MPT_RANGE(0, 1e6)},
        {"cluster", MPT_ARG_STRING, &c->cluster, "a100-80g (default; plan prints a step time only when given) | h100-80g | cpu-here | FILE.json", &c->seen_cluster, MPT_NO_RANGE},
        {"gpus", MPT_ARG_INT, &c->gpus, "GPUs (ranks); without --dp/--tp/--pp: search layouts", NULL, MPT_RANGE(1, 1 << 24)},
        {"batch", MPT_ARG_INT, &c->batch, "sequences per optimizer step (default 8 x dp)", NULL, MPT_RANGE(1, MPT_MAX_BATCH)},
        {"precision", MPT_ARG_STRING, &c->precision, "fp32 (default) | bf16", NULL, MPT_NO_RANGE},
        {"dp", MPT_ARG_INT, &c->dp, "data-parallel replicas", &c->seen_dp, MPT_RANGE(1, MPT_MAX_PARALLEL)},
        {"tp", MPT_ARG_INT, &c->tp, "tensor-parallel ranks", &c->seen_tp, MPT_RANGE(1, MPT_MAX_PARALLEL)},
        {"pp", MPT_ARG_INT, &c->pp, "pipeline stages", &c->seen_pp, MPT_RANGE(1, MPT_MAX_PP)},
        {"cp", MPT_ARG_INT, &c->cp, "context-parallel ranks (ring attention; seq-len % 2cp == 0)", NULL, MPT_RANGE(1, MPT_MAX_PARALLEL)},
        {"ep", MPT_ARG_INT, &c->ep, "expert-parallel ranks (dividing --experts and dp x cp)", NULL, MPT_RANGE(1, MPT_MAX_PARALLEL)},
        {"zero", MPT_ARG_INT, &c->zero, "ZeRO stage 0|1|2|3", NULL, MPT_RANGE(0, 3)},
        {"sp", MPT_ARG_FLAG, &c->sp, "sequence parallelism over the tp ranks", NULL, MPT_NO_RANGE},
        {"schedule", MPT_ARG_STRING, &c->schedule, "naive | gpipe | 1f1b (default) | interleaved | zb-h1 | zb-v | 2bw", NULL, MPT_NO_RANGE},
        {"microbatches", MPT_ARG_INT, &c->microbatches, "micro-batches per step (default 1)", &c->seen_mb, MPT_RANGE(1, MPT_MAX_BATCH)},
        {"virtual-stages", MPT_ARG_INT, &c->virtual_stages, "model chunks per rank (interleaved)", NULL, MPT_RANGE(1, 1024)},
        {"partition", MPT_ARG_STRING, &c->partition, "uniform (default) | auto | L0,L1,...", NULL, MPT_NO_RANGE},
        {"recompute", MPT_ARG_STRING, &c->recompute, "none (default) | selective | full", NULL, MPT_NO_RANGE},
        {"threads", MPT_ARG_INT, &c->threads, "compute threads per rank (default: this node's cores / ranks, as train)", NULL, MPT_RANGE(1, MPT_MAX_THREADS)},
        {"mem-limit", MPT_ARG_BYTES, &c->mem_limit, "memory per rank (default: the cluster's)", NULL, MPT_ABOVE(0, 1e18)},
        {"json", MPT_ARG_FLAG, &c->json, "one JSON object on stdout", NULL, MPT_NO_RANGE},
    };
    size_t n = sizeof t / sizeof *t;
    memcpy(a, t, sizeof t);
    return n;
}

int plan_cli_has_layout(const plan_cli *c) { return c->seen_dp || c->seen_tp || c->seen_pp; }

mpt_status plan_cli_job(const plan_cli *c, mpt_plan_job *job, mpt_plan_layout *l,
                        mpt_error *err) {
    mpt_plan_job_defaults(job);
    mpt_plan_layout_defaults(l);
    struct stat sb;
    mpt_status st;
    if (stat(c->model, &sb) == 0 && S_ISREG(sb.st_mode))
        st = mpt_hfconfig_read(c->model, &job->cfg, err);
    else st = mpt_plan_model(&job->cfg, c->model, err);
    if (st) return st;
    mpt_config *cfg = &job->cfg;
    if (c->layers) cfg->n_layer = c->layers;
    if (c->d_model) cfg->d_model = c->d_model;
    if (c->heads) cfg->n_head = c->heads;
    if (c->seq_len) cfg->n_positions = c->seq_len; /* as train: a new model's positions */
    if (c->vocab) cfg->vocab = c->vocab;
    if (c->ffn) cfg->ffn = c->ffn;
    else if (c->d_model) cfg->ffn = 4 * cfg->d_model;
    if (c->untied) cfg->tied = 0;
    if (c->experts) cfg->experts = c->experts;
    if (c->top_k) cfg->top_k = c->top_k;
    if (c->moe_every) cfg->moe_every = c->moe_every;
    if (c->capacity_given) cfg->capacity_factor = c->capacity_factor;
    if (c->dropless_given) cfg->dropless_bound = c->dropless_bound;
    job->seq_len = c->seq_len;
    if (strcmp(c->precision, "fp32") == 0) job->precision = MPT_PREC_FP32;
    else if (strcmp(c->precision, "bf16") == 0) job->precision = MPT_PREC_BF16;
    else return mpt_fail(err, MPT_ERR_INPUT, "--precision %s: use fp32 or bf16", c->precision);
    l->dp = c->dp, l->tp = c->tp, l->pp = c->pp, l->cp = c->cp, l->ep = c->ep;
    l->sp = c->sp, l->zero = c->zero;
    l->microbatches = c->microbatches;
    l->virtual_stages = c->virtual_stages;
    if ((st = mpt_pp_kind_parse(c->schedule, &l->schedule, err))) return st;
    if (strcmp(c->recompute, "none") == 0) l->recompute = MPT_RECOMPUTE_NONE;
    else if (strcmp(c->recompute, "selective") == 0) l->recompute = MPT_RECOMPUTE_SELECTIVE;
    else if (strcmp(c->recompute, "full") == 0) l->recompute = MPT_RECOMPUTE_FULL;
    else return mpt_fail(err, MPT_ERR_INPUT, "--recompute %s: use none, selective or full",
                         c->recompute);
    if (strlen(c->partition) >= sizeof l->partition)
        return mpt_fail(err, MPT_ERR_INPUT, "--partition is too long");
    snprintf(l->partition, sizeof l->partition, "%s", c->partition);
    if (c->gpus < 0) return mpt_fail(err, MPT_ERR_INPUT, "--gpus %d must be >= 1", c->gpus);
    long world = mpt_plan_layout_world(l);
    if (world < 1)
        return mpt_fail(err, MPT_ERR_INPUT, "--dp %d --tp %d --pp %d --cp %d: sizes must be >= 1",
                        l->dp, l->tp, l->pp, l->cp);
    if (plan_cli_has_layout(c) && c->gpus && world != c->gpus)
        return mpt_fail(err, MPT_ERR_INPUT, "--dp %d x --tp %d x --pp %d x --cp %d = %ld ranks, "
                        "but --gpus %d: choose sizes whose product is %d, or leave the layout "
                        "out to search the layouts of %d GPUs", l->dp, l->tp, l->pp, l->cp,
                        world, c->gpus, c->gpus, c->gpus);
    job->batch = c->batch ? c->batch : 8 * l->dp;
    job->mem_limit = c->mem_limit;
    job->threads = c->threads;
    if (c->moe_imbalance > 1) job->moe_imbalance = c->moe_imbalance;
    if (c->moe_dropped > 0) job->moe_dropped = c->moe_dropped;
    return MPT_OK;
}

/* ---- output ----------------------------------------------------------------------------- */

static void gb_(size_t b, char *buf, size_t n) { mpt_format_bytes(b, buf, n); }

void plan_print_memory(const mpt_plan_job *job, const mpt_plan_layout *l,
                       const mpt_plan_memory *m) {
    char s[160], b[32];
    mpt_plan_layout_str(l, s, sizeof s);
    printf("model: %lld parameters (L%d D%d H%d F%d V%d), batch %d x %d tokens\n", m->n_params,
           job->cfg.n_layer, job->cfg.d_model, job->cfg.n_head, job->cfg.ffn, job->cfg.vocab,
           job->batch, job->seq_len > 0 ? job->seq_len : job->cfg.n_positions);
    if (job->cfg.experts > 0)
        printf("MoE: %d experts, top-%d, every %d block(s), %d per expert-parallel rank%s, "
               "capacity factor %g%s\n", job->cfg.experts, job->cfg.top_k,
               job->cfg.moe_every > 0 ? job->cfg.moe_every : 1,
               job->cfg.experts / (l->ep > 1 ? l->ep : 1),
               l->zero > 0 && l->ep > 1 ? " (ZeRO shards them over the expert-data-parallel "
                                          "ranks)" : "",
               job->cfg.capacity_factor, job->cfg.capacity_factor > 0 ? "" : " (dropless)");
    printf("layout: %s (%ld ranks)%s\n", s, mpt_plan_layout_world(l),
           m->z3_whole ? ", ZeRO-3 gathers whole stages" : "");
    if (job->precision == MPT_PREC_BF16)
        printf("precision bf16: fp32 params 4 + grads 4 + AdamW 8 = 16 bytes per parameter before "
               "ZeRO (no bf16 weight copy: the GEMMs round fp32 tiles into a workspace scratch; "
               "Megatron keeps one: 18); activations: the linear layers' saved inputs in bf16\n");
    else
        printf("precision fp32: 4 bytes params + 4 grads + 8 AdamW = 16 bytes per parameter "
               "before ZeRO\n");
    printf("\nmemory of the largest rank (pipeline stage %d):\n", m->worst_stage);
    for (int k = 0; k < MPT_MEM_KINDS; k++) {
        gb_(m->worst.bytes[k], b, sizeof b);
        printf("  %-12s %12s  (%zu bytes)\n", mpt_mem_kind_name(k), b, m->worst.bytes[k]);
    }
    gb_(m->worst.total, b, sizeof b);
    printf("  %-12s %12s  (%zu bytes)\n", "total", b, m->worst.total);
    size_t state = m->worst.bytes[MPT_MEM_PARAMS] + m->worst.bytes[MPT_MEM_GRADS] +
                   m->worst.bytes[MPT_MEM_OPTIMIZER];
    gb_(state, b, sizeof b);
    printf("  params+grads+optimizer %s\n", b);
    if (l->pp > 1) {
        printf("per stage (blocks: total):");
        for (int s2 = 0; s2 < m->stages; s2++) {
            gb_(m->stage_total[s2], b, sizeof b);
            printf("%s %d: %s", s2 ? "," : "", m->stage_layers[s2], b);
        }
        printf("\n");
    }
    gb_(m->sum_total, b, sizeof b);
    char st2[32];
    gb_(m->sum[MPT_MEM_PARAMS] + m->sum[MPT_MEM_GRADS] + m->sum[MPT_MEM_OPTIMIZER], st2,
        sizeof st2);
    printf("all ranks: %s (params+grads+optimizer %s)\n", b, st2);
    size_t replica = (m->sum[MPT_MEM_PARAMS] + m->sum[MPT_MEM_GRADS] +
                      m->sum[MPT_MEM_OPTIMIZER]) / (size_t)l->dp;
    gb_(replica, b, sizeof b);
    printf("one replica (tp x pp ranks): params+grads+optimizer %s (%.3g bytes; ZeRO >= 1 "
           "shares it over the dp ranks)\n", b, (double)replica);
}

void plan_print_fit(const plan_cli *c, const mpt_cluster *cl, size_t need) {
    size_t limit = c->mem_limit ? c->mem_limit : cl ? cl->mem_bytes : 0;
    if (!limit) return;
    char nb[32], lb[32], where[160];
    mpt_format_bytes(need, nb, sizeof nb);
    mpt_format_bytes(limit, lb, sizeof lb);
    if (c->mem_limit) snprintf(where, sizeof where, "--mem-limit %s", lb);
    else snprintf(where, sizeof where, "the %s of a GPU of %s", lb, cl->name);
    if (need <= limit) printf("fits: yes, the largest rank's %s within %s\n", nb, where);
    else
        printf("fits: NO, the largest rank needs %s, more than %s: use ZeRO, more pipeline "
               "stages or micro-batches, recompute, or let plan --gpus N search\n", nb, where);
}

void *plan_json_memory(const mpt_plan_memory *m) {
    cJSON *o = cJSON_CreateObject();
    const char *names[] = {"params", "grads", "optimizer", "activations", "other"};
    for (int k = 0; k < MPT_MEM_KINDS; k++)
        cJSON_AddNumberToObject(o, names[k], (double)m->worst.bytes[k]);
    cJSON_AddNumberToObject(o, "total", (double)m->worst.total);
    return o;
}

void plan_print_sim(const mpt_cluster *c, const mpt_sim_result *r) {
    int tera = r->peak >= 1e12;
    printf("\ncluster %s%s: %d GPUs, %d per node, peak %.1f %sFLOP/s per GPU\n", c->name,
           c->measured ? " (measured here)" : "", r->world, c->per_node,
           r->peak / (tera ? 1e12 : 1e9), tera ? "T" : "G");
    if (c->cores > 0)
        printf("this node: %d cores shared by %d ranks: a rank computes on %.2f cores; per "
               "core: sgemm %.1f GFLOP/s, fused attention %.1f / %.1f GFLOP/s (forward / "
               "backward), %d-core scaling %.2f, copy %.1f GB/s; ns per element: LayerNorm %.2f / %.2f, GELU %.2f / "
               "%.2f, add %.2f, cross-entropy %.2f\n",
               c->cores, r->world, r->share, c->peak_fp32 * c->gemm_eff / 1e9, c->attn_f / 1e9,
               c->attn_b / 1e9, c->cores, c->par_eff, c->mem_bw / 1e9, 1e9 * c->ew_ln_f, 1e9 * c->ew_ln_b,
               1e9 * c->ew_gelu_f, 1e9 * c->ew_gelu_b, 1e9 * c->ew_add, 1e9 * c->ew_xent);
    printf("step time        %10.4f s   (pipeline %.4f s, data-parallel exposed %.4f s, "
           "optimizer %.4f s)\n",
           r->step_time, r->pipe_time, r->dp_exposed, r->optimizer);
    printf("throughput       %10.1f tokens/s\n", r->tokens_per_s);
    printf("TFLOP/s per GPU  %10.2f   (hardware FLOPs, recompute included)\n",
           r->tflops_per_gpu);
    printf("MFU              %10.1f %%  (HFU %.1f %%)\n", 100 * r->mfu, 100 * r->hfu);
    printf("bubble           %10.1f %%\n", 100 * r->bubble);
    printf("traffic per GPU per step: tp %.3g B, pp %.3g B, dp %.3g B; intra-node %.3g B, "
           "inter-node %.3g B\n",
           r->bytes_tp, r->bytes_pp, r->bytes_dp, r->bytes_intra, r->bytes_inter);
    if (r->bytes_ep > 0)
        printf("MoE all-to-alls per GPU per step: %.3g B in %.4f s (inside the forward and "
               "backward)\n", r->bytes_ep, r->ep_time);
}

void plan_json_sim(void *obj, const mpt_sim_result *r) {
    cJSON *o = obj;
    cJSON_AddNumberToObject(o, "step_time_s", r->step_time);
    cJSON_AddNumberToObject(o, "tflops_per_gpu", r->tflops_per_gpu);
    cJSON_AddNumberToObject(o, "mfu", r->mfu);
    cJSON_AddNumberToObject(o, "hfu", r->hfu);
    cJSON_AddNumberToObject(o, "bubble", r->bubble);
    cJSON_AddNumberToObject(o, "tokens_per_s", r->tokens_per_s);
    cJSON_AddNumberToObject(o, "pipeline_s", r->pipe_time);
    cJSON_AddNumberToObject(o, "dp_exposed_s", r->dp_exposed);
    cJSON_AddNumberToObject(o, "optimizer_s", r->optimizer);
    cJSON_AddNumberToObject(o, "ep_alltoall_s", r->ep_time);
    cJSON_AddNumberToObject(o, "tp_meet_poll_s", r->meet_poll);
    cJSON *t = cJSON_AddObjectToObject(o, "traffic_bytes_per_gpu");
    cJSON_AddNumberToObject(t, "tp", r->bytes_tp);
    cJSON_AddNumberToObject(t, "pp", r->bytes_pp);
    cJSON_AddNumberToObject(t, "dp", r->bytes_dp);
    cJSON_AddNumberToObject(t, "ep", r->bytes_ep);
    cJSON_AddNumberToObject(t, "intra_node", r->bytes_intra);
    cJSON_AddNumberToObject(t, "inter_node", r->bytes_inter);
}

void plan_json_cluster(void *obj, const mpt_cluster *c) {
    cJSON *o = cJSON_AddObjectToObject(obj, "cluster_params");
    cJSON_AddStringToObject(o, "name", c->name);
    const struct { const char *key; double v; } f[] = {
        {"peak_fp32", c->peak_fp32}, {"peak_bf16", c->peak_bf16}, {"gemm_eff", c->gemm_eff},
        {"mem_bw", c->mem_bw},       {"mem_eff", c->mem_eff},     {"launch", c->launch},
        {"mem_bytes", (double)c->mem_bytes}, {"per_node", c->per_node},
        {"intra_bw", c->intra_bw},   {"intra_eff", c->intra_eff}, {"intra_lat", c->intra_lat},
        {"inter_bw", c->inter_bw},   {"inter_eff", c->inter_eff}, {"inter_lat", c->inter_lat},
        {"cores", c->cores},         {"attn_f", c->attn_f},       {"attn_b", c->attn_b},
        {"ew_ln_f", c->ew_ln_f},     {"ew_ln_b", c->ew_ln_b},     {"ew_gelu_f", c->ew_gelu_f},
        {"ew_gelu_b", c->ew_gelu_b}, {"ew_add", c->ew_add},       {"ew_xent", c->ew_xent},
        {"par_eff", c->par_eff},
    };
    for (size_t i = 0; i < sizeof f / sizeof *f; i++) cJSON_AddNumberToObject(o, f[i].key, f[i].v);
    const char *names[32];
    double *v[32];
    mpt_cluster cc = *c;
    size_t n = mpt_cluster_calib_fields(&cc, names, v, 32);
    for (size_t i = 0; i < n && i < 32; i++) cJSON_AddNumberToObject(o, names[i], *v[i]);
}
