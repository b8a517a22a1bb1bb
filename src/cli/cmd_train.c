/* cmd_train.c — `mptrain train`: options -> mpt_train_opts, progress display, summary. */
#include <glob.h>
#include <limits.h>
#include <signal.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mpi.h>

#include "cli/args.h"
#include "comm/alive.h"
#include "comm/comm.h"
#include "cli/cli.h"
#include "core/file.h"
#include "core/gemm_bf16.h"
#include "model/gpt.h"
#include "parallel/schedule.h"
#include "plan/memplan.h"
#include "cli/train_suggest.h"
#include "tok/tokenizer.h"
#include "tok/tokfile.h"
#include "train/checkpoint.h"
#include "train/hfconfig.h"
#include "train/trainer.h"

#define MAX_COMM_TIMEOUT_ 1e6   /* seconds a rank may wait in one MPI call: (0, ~11 days] */
#define MAX_MEM_LIMIT_ 0x1p50   /* --mem-limit: (0, 1 PiB] per rank */

typedef struct train_cli_ {
    const char *model, *data, *lr_schedule, *recompute;
    int layers, d_model, heads, seq_len, vocab, ffn, experts, top_k, untied;
    int moe_every;                               /* 0: the model's */
    float capacity_factor, aux_loss_coef, z_loss_coef; /* < 0: the model's */
    float dropless_bound;                              /* < 0: the model's */
    int cp, ep, virtual_stages;
    int pp;                /* copied from the options for the start banner */
    int quiet;
    int bf16;           /* --dtype bf16: say where the bf16 GEMMs run */
    int tty;
    int threads, threads_given; /* compute threads per rank; 1 when --threads said so */
    mpt_cli_threads cores;      /* what the default was made of */
    double last_print;
    double last_val;       /* the last validation loss shown, -1 before the first */
} train_cli_;

/* --model (preset or config.json) plus the dimension overrides. */
static mpt_status build_config_(const train_cli_ *c, mpt_config *cfg, mpt_error *err) {
    mpt_status st;
    struct stat sb;
    if (stat(c->model, &sb) == 0 && S_ISREG(sb.st_mode)) st = mpt_hfconfig_read(c->model, cfg, err);
    else st = mpt_config_preset(cfg, c->model, err);
    if (st) return st;
    if (c->layers) cfg->n_layer = c->layers;
    if (c->d_model) cfg->d_model = c->d_model;
    if (c->heads) cfg->n_head = c->heads;
    if (c->seq_len) cfg->n_positions = c->seq_len;
    if (c->vocab) cfg->vocab = c->vocab;
    if (c->ffn) cfg->ffn = c->ffn;
    else if (c->d_model) cfg->ffn = 0; /* mpt_config_finish: 4 x d-model, checked */
    if (c->untied) cfg->tied = 0;
    if (c->experts) cfg->experts = c->experts;
    if (c->top_k) cfg->top_k = c->top_k;
    if (c->moe_every) cfg->moe_every = c->moe_every;
    if (c->capacity_factor >= 0) cfg->capacity_factor = c->capacity_factor;
    if (c->aux_loss_coef >= 0) cfg->aux_loss_coef = c->aux_loss_coef;
    if (c->z_loss_coef >= 0) cfg->z_loss_coef = c->z_loss_coef;
    if (c->dropless_bound >= 0) cfg->dropless_bound = c->dropless_bound;
    cfg->padded_vocab = 0;
    return mpt_config_finish(cfg, 64, err);
}

/* --resume / --init-from take the model from the checkpoint (train/trainer_setup.c), so an
 * architecture option given with them would be ignored without a word: refuse each one given
 * that differs from the checkpoint's config (ck, finished), and --model when any of its sizes
 * does (built: --model with the overrides). Every rank reads the same files, so all agree. */
static mpt_status check_from_ckpt_(const train_cli_ *c, int model_seen, const mpt_config *built,
                                   const mpt_config *ck, const char *opt, const char *from,
                                   mpt_error *err) {
    struct {
        const char *name;
        int given;
        double want, have;
    } f[] = {
        {"layers", c->layers > 0, c->layers, ck->n_layer},
        {"d-model", c->d_model > 0, c->d_model, ck->d_model},
        {"heads", c->heads > 0, c->heads, ck->n_head},
        {"vocab", c->vocab > 0, c->vocab, ck->vocab},
        {"ffn", c->ffn > 0, c->ffn, ck->ffn},
        {"experts", c->experts > 0, c->experts, ck->experts},
        {"top-k", c->top_k > 0 && ck->experts > 0, c->top_k, ck->top_k},
        {"moe-every", c->moe_every > 0 && ck->experts > 0, c->moe_every, ck->moe_every},
        {"capacity-factor", c->capacity_factor >= 0, c->capacity_factor, ck->capacity_factor},
        {"aux-loss-coef", c->aux_loss_coef >= 0, c->aux_loss_coef, ck->aux_loss_coef},
        {"z-loss-coef", c->z_loss_coef >= 0, c->z_loss_coef, ck->z_loss_coef},
        {"moe-dropless-bound", c->dropless_bound >= 0, c->dropless_bound, ck->dropless_bound},
    };
    for (size_t i = 0; i < sizeof f / sizeof *f; i++)
        if (f[i].given && f[i].want != f[i].have)
            return mpt_fail(err, MPT_ERR_INPUT,
                            "--%s %g, but the checkpoint of %s %s has %g: a run from a "
                            "checkpoint takes its model from it; drop --%s",
                            f[i].name, f[i].want, opt, from, f[i].have, f[i].name);
    if (c->untied && ck->tied)
        return mpt_fail(err, MPT_ERR_INPUT,
                        "--untied, but the checkpoint of %s %s ties its head to wte: a run from "
                        "a checkpoint takes its model from it; drop --untied", opt, from);
    if (model_seen && (built->n_layer != ck->n_layer || built->d_model != ck->d_model ||
                       built->n_head != ck->n_head || built->vocab != ck->vocab ||
                       built->ffn != ck->ffn || built->experts != ck->experts))
        return mpt_fail(err, MPT_ERR_INPUT,
                        "--model %s is L%d D%d H%d F%d V%d, but the checkpoint of %s %s is L%d "
                        "D%d H%d F%d V%d: a run from a checkpoint takes its model from it; drop "
                        "--model",
                        c->model, built->n_layer, built->d_model, built->n_head, built->ffn,
                        built->vocab, opt, from, ck->n_layer, ck->d_model, ck->n_head, ck->ffn,
                        ck->vocab);
    return MPT_OK;
}

/* The default corpus, tokenized on first use into the cache. */
static mpt_status default_data_(int vocab, char *path, size_t n, mpt_error *err) {
    const char *kind = vocab == 256 ? "byte" : vocab == 50257 ? "gpt2" : NULL;
    if (!kind)
        return mpt_fail(err, MPT_ERR_INPUT,
                        "no --data given and vocab %d matches no built-in tokenizer (256 byte, "
                        "50257 gpt2): pass --data FILE.bin",
                        vocab);
    char rel[64];
    snprintf(rel, sizeof rel, "moby-dick.%s.bin", kind);
    mpt_cli_cache_path(path, n, rel);
    if (access(path, R_OK) == 0) return MPT_OK;
    char text_path[4096], bpe[4096];
    mpt_cli_cache_path(text_path, sizeof text_path, "moby-dick/data/data.txt");
    mpt_cli_cache_path(bpe, sizeof bpe, "gpt2-bpe");
    char *text = NULL;
    size_t got = 0;
    if (mpt_file_read(text_path, (size_t)1 << 32, &text, &got, err))
        return mpt_fail(err, MPT_ERR_INPUT,
                        "the default corpus %s is missing: run `make setup` (or pass --data)",
                        text_path);
    mpt_tokenizer *tok = NULL;
    int32_t *ids = NULL;
    size_t nids = 0;
    mpt_status st = mpt_tokenizer_init(&tok, kind, bpe, err);
    if (!st) st = mpt_tokenizer_encode(tok, text, got, 0, &ids, &nids, err);
    if (!st) st = mpt_tokfile_write(path, ids, nids, err);
    free(ids);
    free(text);
    mpt_tokenizer_free(tok);
    return st;
}

/* --data: one token file, or several (shards) as a comma-separated list whose items may be
 * glob patterns; each pattern's matches in name order (llm.c's shard names sort by number).
 * The stream is the files in that order (train/data.h). *paths (owned, each malloc'd) and *n. */
static mpt_status expand_data_(const char *spec, char ***paths, int *n, mpt_error *err) {
    *paths = NULL;
    *n = 0;
    char *copy = strdup(spec);
    if (!copy) return mpt_fail(err, MPT_ERR_RUN, "out of memory");
    glob_t g;
    memset(&g, 0, sizeof g);
    int flags = 0;
    mpt_status st = MPT_OK;
    for (char *save = NULL, *item = strtok_r(copy, ",", &save); item && !st;
         item = strtok_r(NULL, ",", &save)) {
        int rc = glob(item, flags | GLOB_NOCHECK, NULL, &g); /* no match: the name itself, so
                                                               * opening it reports the error */
        if (rc != 0) st = mpt_fail(err, MPT_ERR_INPUT, "--data %s: cannot expand '%s'", spec, item);
        flags = GLOB_APPEND;
    }
    if (!st && g.gl_pathc == 0)
        st = mpt_fail(err, MPT_ERR_INPUT, "--data '%s' names no file: check the path or the "
                      "glob, or make one with `mptrain tokenize --in TEXT --out FILE.bin`",
                      spec);
    if (!st && g.gl_pathc > MPT_MAX_DATA_FILES)
        st = mpt_fail(err, MPT_ERR_INPUT, "--data %s: %zu files, more than %d: join some "
                      "(`mptrain tokenize --in DIR --out FILE.bin`)", spec,
                      (size_t)g.gl_pathc, MPT_MAX_DATA_FILES);
    if (!st) {
        *paths = calloc(g.gl_pathc, sizeof **paths);
        if (!*paths) st = mpt_fail(err, MPT_ERR_RUN, "out of memory");
    }
    for (size_t i = 0; !st && i < g.gl_pathc; i++) {
        if (!((*paths)[i] = strdup(g.gl_pathv[i]))) st = mpt_fail(err, MPT_ERR_RUN, "out of memory");
        else *n = (int)i + 1;
    }
    if (flags) globfree(&g);
    free(copy);
    return st;
}

static void on_start_(const mpt_train_result *r, void *ctx) {
    train_cli_ *c = ctx;
    if (c->quiet) return;
    char plan[512];
    mpt_memplan_format(&r->plan, plan, sizeof plan);
    printf("model: %lld parameters (L%d D%d H%d F%d V%d)\n", r->n_params, r->cfg.n_layer,
           r->cfg.d_model, r->cfg.n_head, r->cfg.ffn, r->cfg.vocab);
    printf("memory plan of this rank: %s\n", plan);
    if (c->pp > 1) {
        printf("pipeline stages (blocks each):");
        for (int s = 0; s < c->pp; s++) printf(" %d", r->stage_layers[s]);
        printf("\n");
    }
    if (c->threads_given)
        printf("threads: %d per rank (--threads)\n", c->threads);
    else
        printf("threads: %d per rank (default: %d core%s this rank may use, shared by %d rank%s "
               "on this node; --threads sets it)\n", c->threads, c->cores.cores,
               c->cores.cores == 1 ? "" : "s", c->cores.ranks, c->cores.ranks == 1 ? "" : "s");
    printf("measured FMA peak: %.1f GFLOP/s\n", r->peak_flops / 1e9);
    if (c->bf16) printf("bf16 GEMMs: %s\n", mpt_gemm_bf16_describe());
    fflush(stdout);
}

static void on_step_(const mpt_step_info *s, void *ctx) {
    train_cli_ *c = ctx;
    if (s->skipped) {
        if (c->tty && !c->quiet) printf("\n");
        fflush(stdout);
        fprintf(stderr, "mptrain: warning: step %ld: the %s is not finite (loss %g, grad_norm %g): "
                "update skipped (--on-nan skip)\n", s->step,
                s->skipped == 1 ? "loss" : "gradient norm", s->loss, s->grad_norm);
    }
    if (c->quiet) return;
    if (c->tty) {
        int width = 30, done = (int)(width * s->step / (s->steps ? s->steps : 1));
        char bar[64];
        for (int i = 0; i < width; i++) bar[i] = i < done ? '#' : '.';
        bar[width] = '\0';
        if (s->val_loss >= 0) c->last_val = s->val_loss;
        char val[48] = "";
        if (c->last_val >= 0)
            snprintf(val, sizeof val, "  val %.4f (ppl %.1f)", c->last_val, exp(c->last_val));
        printf("\r[%s] step %ld/%ld  loss %.4f%s  %.0f tok/s  mfu %.1f%%  %.0f ms   ", bar, s->step,
               s->steps, s->loss, val, s->tokens_per_s, 100.0 * s->mfu, s->step_ms);
        if (s->step == s->steps) printf("\n");
    } else {
        printf("step %ld/%ld loss %.4f lr %.3e grad_norm %.3f tokens/s %.0f mfu %.1f%% ms %.1f\n",
               s->step, s->steps, s->loss, s->lr, s->grad_norm, s->tokens_per_s, 100.0 * s->mfu,
               s->step_ms);
        if (s->val_loss >= 0)
            printf("step %ld/%ld val_loss %.4f val_ppl %.2f\n", s->step, s->steps, s->val_loss,
                   exp(s->val_loss));
    }
    fflush(stdout);
}

/* The watchdog found a rank stuck in MPI: say where and end the whole job. */
static void watchdog_(const char *what) {
    fprintf(stderr, "mptrain: error: %s; aborting the job\n", what);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
}

/* The failure detector's thread: a rank was lost and this one did not reach a wait within the
 * grace period (alive.h). MPI_Finalize would wait for the lost rank: end here. */
static void alive_lost_(int lost, const char *what) {
    (void)lost;
    fprintf(stderr, "mptrain: error: %s\n", what);
    fflush(stderr);
    _exit(1);
}

/* mpirun's own policy ends the job when a rank dies (SIGTERM to the others): say which rank
 * was lost, when the detector knows its process ended and this rank has not said anything
 * yet, before going. Only async-signal-safe calls. */
static volatile sig_atomic_t reported_; /* this rank has printed its outcome */

static void on_term_(int sig) {
    int lost = mpt_alive_lost();
    if (lost >= 0 && !mpt_alive_lost_failed() && !reported_) {
        char msg[160] = "mptrain: error: rank ", num[16];
        int n = 0;
        unsigned v = (unsigned)lost;
        do num[n++] = (char)('0' + v % 10);
        while ((v /= 10) && n < 15);
        size_t len = strlen(msg);
        while (n > 0) msg[len++] = num[--n];
        const char *rest = " stopped responding (its process ended); mpirun is ending the job: "
                           "continue with --resume\n";
        memcpy(msg + len, rest, strlen(rest) + 1 < sizeof msg - len ? strlen(rest) + 1 : 0);
        if (write(STDERR_FILENO, msg, strlen(msg)) < 0) { /* nothing more to do */ }
        _exit(1);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

int mpt_cli_train(int argc, char **argv) {
    mpt_train_opts o;
    mpt_train_opts_defaults(&o);
    o.threads = 0; /* not given: cores / ranks once MPI runs (mpt_cli_default_threads) */
    float bucket_mb = 0.0f, comm_timeout = 300.0f, stall_seconds = 3600.0f, val_fraction = 0.0f;
    float probe_seconds = 0.0f; /* --debug-probe-seconds (bench/plan_vs_measured.sh) */
    int val_fraction_seen = 0, model_seen = 0;
    const char *gemm = "onednn", *z3_gather = "layer", *on_nan = "stop", *debug_nan = NULL;
    const char *save_format = "single", *dtype = "fp32", *grad_dtype = "fp32";
    train_cli_ c = {.model = "tiny", .cp = 1, .ep = 1, .last_val = -1.0, .capacity_factor = -1,
                    .aux_loss_coef = -1, .z_loss_coef = -1, .dropless_bound = -1,
                    .virtual_stages = 1, .lr_schedule = "cosine"};
    mpt_error err = {0};
    int help = 0;
    const mpt_arg args[] = {
        {"model", MPT_ARG_STRING, &c.model, "tiny | small | gpt2-124m | FILE.json (default tiny)", &model_seen, MPT_NO_RANGE},
        {"layers", MPT_ARG_INT, &c.layers, "override the number of blocks", NULL, MPT_RANGE(1, MPT_MAX_LAYERS)},
        {"d-model", MPT_ARG_INT, &c.d_model, "override the width", NULL, MPT_RANGE(1, MPT_MAX_D_MODEL)},
        {"heads", MPT_ARG_INT, &c.heads, "override the attention heads", NULL, MPT_RANGE(1, MPT_MAX_HEADS)},
        {"seq-len", MPT_ARG_INT, &c.seq_len, "sequence length T (and positions of a new model)", NULL, MPT_RANGE(1, MPT_MAX_POSITIONS)},
        {"vocab", MPT_ARG_INT, &c.vocab, "override the vocabulary size", NULL, MPT_RANGE(2, MPT_MAX_VOCAB)},
        {"ffn", MPT_ARG_INT, &c.ffn, "override the MLP inner width (default 4*d-model)", NULL, MPT_RANGE(1, MPT_MAX_FFN)},
        {"experts", MPT_ARG_INT, &c.experts, "Mixture-of-Experts: experts per MoE block (default 0: dense)", NULL, MPT_RANGE(0, MPT_MAX_EXPERTS)},
        {"top-k", MPT_ARG_INT, &c.top_k, "experts per token (default 1; <= experts)", NULL, MPT_RANGE(1, MPT_MAX_EXPERTS)},
        {"moe-every", MPT_ARG_INT, &c.moe_every, "every n-th block is MoE (blocks 0, n, 2n, ...; default 1)", NULL, MPT_RANGE(1, MPT_MAX_LAYERS)},
        {"capacity-factor", MPT_ARG_FLOAT, &c.capacity_factor, "expert capacity ceil(c*tokens*K/E), the highest gates kept (default 0: drop nothing)", NULL, MPT_RANGE(0, 1e6)},
        {"aux-loss-coef", MPT_ARG_FLOAT, &c.aux_loss_coef, "load-balancing loss weight (default 0.01)", NULL, MPT_RANGE(0, 1e6)},
        {"z-loss-coef", MPT_ARG_FLOAT, &c.z_loss_coef, "router z-loss weight (default 0)", NULL, MPT_RANGE(0, 1e6)},
        {"moe-dropless-bound", MPT_ARG_FLOAT, &c.dropless_bound, "dropless with --ep: rows a rank's experts may receive, in multiples of its own token assignments (>= 1; default 0 = --ep, the worst case); a step above it fails", NULL, MPT_RANGE(0, 1e6)},
        {"untied", MPT_ARG_FLAG, &c.untied, "separate lm_head instead of the tied wte", NULL, MPT_NO_RANGE},
        {"data", MPT_ARG_STRING, &o.data_path, "token file (default: the Moby-Dick corpus, its last tenth held out for validation)", NULL, MPT_NO_RANGE},
        {"val-data", MPT_ARG_STRING, &o.val_path, "validation token file (default: the held-out tail of --data)", NULL, MPT_NO_RANGE},
        {"val-fraction", MPT_ARG_FLOAT, &val_fraction, "hold out the last fraction of --data from training; the validation set unless --val-data (default 0.1 for the default corpus, else 0)", &val_fraction_seen, MPT_RANGE(0, MPT_MAX_VAL_FRACTION)},
        {"eval-every", MPT_ARG_LONG, &o.eval_every, "validation loss every N steps and after the last (default 0: never)", NULL, MPT_RANGE(0, MPT_MAX_STEPS)},
        {"eval-batches", MPT_ARG_INT, &o.eval_batches, "validation batches of --batch sequences (default 4)", NULL, MPT_RANGE(1, MPT_MAX_EVAL_BATCHES)},
        {"batch", MPT_ARG_INT, &o.batch, "sequences per optimizer step (default 8)", NULL, MPT_RANGE(1, MPT_MAX_BATCH)},
        {"microbatches", MPT_ARG_INT, &o.microbatches, "micro-batches per step (default 1)", NULL, MPT_RANGE(1, MPT_MAX_BATCH)},
        {"steps", MPT_ARG_LONG, &o.steps, "train until this many steps are done (default 10)", NULL, MPT_RANGE(0, MPT_MAX_STEPS)},
        {"lr", MPT_ARG_FLOAT, &o.opt.lr, "peak learning rate (default 6e-4)", NULL, MPT_ABOVE(0, MPT_MAX_LR)},
        {"warmup", MPT_ARG_INT, &o.opt.warmup, "linear warm-up steps (default 0)", NULL, MPT_RANGE(0, MPT_MAX_STEPS)},
        {"lr-schedule", MPT_ARG_STRING, &c.lr_schedule, "cosine (default: to 0.1*lr at the last step) | constant", NULL, MPT_NO_RANGE},
        {"weight-decay", MPT_ARG_FLOAT, &o.opt.weight_decay, "AdamW decay on matrices (default 0.1)", NULL, MPT_RANGE(0, MPT_MAX_WEIGHT_DECAY)},
        {"grad-clip", MPT_ARG_FLOAT, &o.opt.grad_clip, "clip to this global norm (default 1.0)", NULL, MPT_RANGE(0, MPT_MAX_GRAD_CLIP)},
        {"seed", MPT_ARG_U64, &o.seed, "initialisation seed (default 1337)", NULL, MPT_RANGE(0, UINT64_MAX)},
        {"threads", MPT_ARG_INT, &o.threads, "compute threads per rank (default cores/ranks)", NULL, MPT_RANGE(1, MPT_MAX_THREADS)},
        {"gemm", MPT_ARG_STRING, &gemm, "GEMM library: onednn (default) | openblas; -split appended: each GEMM split into one block per thread (default: the library threads it)", NULL, MPT_NO_RANGE},
        {"dtype", MPT_ARG_STRING, &dtype, "fp32 (default) | bf16: GEMMs on bf16 operands, fp32 accumulation, fp32 master weights and AdamW", NULL, MPT_NO_RANGE},
        {"grad-reduce-dtype", MPT_ARG_STRING, &grad_dtype, "fp32 (default) | bf16: the data-parallel gradient rings send bf16 (half the bytes), added in fp32 on receipt", NULL, MPT_NO_RANGE},
        {"dp", MPT_ARG_INT, &o.dp, "data-parallel replicas (dp*tp*pp*cp = ranks)", NULL, MPT_RANGE(1, MPT_MAX_PARALLEL)},
        {"tp", MPT_ARG_INT, &o.tp, "tensor-parallel ranks (Megatron column/row split)", NULL, MPT_RANGE(1, MPT_MAX_PARALLEL)},
        {"pp", MPT_ARG_INT, &o.pp, "pipeline stages", NULL, MPT_RANGE(1, MPT_MAX_PP)},
        {"cp", MPT_ARG_INT, &c.cp, "context-parallel ranks: ring attention, each holds 2 zigzag chunks of 2*cp (seq-len % 2cp == 0)", NULL, MPT_RANGE(1, MPT_MAX_PARALLEL)},
        {"ep", MPT_ARG_INT, &c.ep, "expert-parallel ranks: each holds experts/ep of every MoE block (divides dp, or cp times a divisor of dp)", NULL, MPT_RANGE(1, MPT_MAX_PARALLEL)},
        {"zero", MPT_ARG_INT, &o.zero, "ZeRO stage 0|1|2|3 (shards optimizer, grads, params)", NULL, MPT_RANGE(0, 3)},
        {"zero3-gather", MPT_ARG_STRING, &z3_gather, "ZeRO-3 gathering: layer (default: before each use, 16/N bytes per parameter) | step (each unit once per step, +4 bytes per parameter)", NULL, MPT_NO_RANGE},
        {"bucket-mb", MPT_ARG_FLOAT, &bucket_mb, "gradient all-reduce bucket size in MiB (default: the whole gradient when every rank is on one node, else 4)", NULL, MPT_ABOVE(0, MPT_MAX_BUCKET_MB)},
        {"comm-timeout", MPT_ARG_FLOAT, &comm_timeout, "seconds a rank may wait in one MPI call (default 300)", NULL, MPT_ABOVE(0, MAX_COMM_TIMEOUT_)},
        {"sp", MPT_ARG_FLAG, &o.sp, "sequence parallelism over the tp ranks (needs tp > 1)", NULL, MPT_NO_RANGE},
        {"schedule", MPT_ARG_STRING, &o.schedule, "pipeline schedule naive | gpipe | 1f1b (default) | interleaved | zb-h1 | zb-v | 2bw", NULL, MPT_NO_RANGE},
        {"virtual-stages", MPT_ARG_INT, &c.virtual_stages, "interleaved: model chunks per pipeline rank (default 1; 2 or more with --schedule interleaved)", NULL, MPT_RANGE(1, MPT_MAX_VIRTUAL)},
        {"partition", MPT_ARG_STRING, &o.partition, "layers per stage: uniform (default) | auto | L0,L1,...", NULL, MPT_NO_RANGE},
        {"recompute", MPT_ARG_STRING, &c.recompute, "none (default) | selective | full", NULL, MPT_NO_RANGE},
        {"log", MPT_ARG_STRING, &o.log_path, "JSON Lines log file", NULL, MPT_NO_RANGE},
        {"trace", MPT_ARG_STRING, &o.trace_path, "Chrome trace JSON of every rank's compute and communication (Perfetto)", NULL, MPT_NO_RANGE},
        {"save", MPT_ARG_STRING, &o.save_dir, "checkpoint directory (DIR/step_NNNNNN, DIR/latest)", NULL, MPT_NO_RANGE},
        {"save-format", MPT_ARG_STRING, &save_format, "single (default: one model.safetensors, written by rank 0) | sharded (every rank writes its own slices; mptrain convert makes one)", NULL, MPT_NO_RANGE},
        {"save-every", MPT_ARG_INT, &o.save_every, "checkpoint every N steps (and at the end; default 0: at the end only)", NULL, MPT_RANGE(0, MPT_MAX_STEPS)},
        {"keep", MPT_ARG_INT, &o.keep, "keep only the newest K checkpoints (default 0: all)", NULL, MPT_RANGE(0, MPT_MAX_STEPS)},
        {"resume", MPT_ARG_STRING, &o.resume, "continue from DIR (its latest) or a step directory", NULL, MPT_NO_RANGE},
        {"init-from", MPT_ARG_STRING, &o.init_from, "weights from a Hugging Face GPT-2 directory", NULL, MPT_NO_RANGE},
        {"mem-limit", MPT_ARG_BYTES, &o.mem_limit, "per-rank memory limit, e.g. 512M", NULL, MPT_ABOVE(0, MAX_MEM_LIMIT_)},
        {"quiet", MPT_ARG_FLAG, &c.quiet, "no progress display", NULL, MPT_NO_RANGE},
        {"on-nan", MPT_ARG_STRING, &on_nan, "a non-finite loss or gradient norm: stop (default: exit 1, nothing saved) | skip (the update, with a warning)", NULL, MPT_NO_RANGE},
        {"debug-nan", MPT_ARG_STRING, &debug_nan, "", NULL, MPT_NO_RANGE},
        {"dump-step1", MPT_ARG_STRING, &o.dump_path, "", NULL, MPT_NO_RANGE},
        {"debug-stall-rank", MPT_ARG_INT, &o.stall_rank, "", NULL, MPT_RANGE(0, INT_MAX)},
        {"debug-stall-step", MPT_ARG_LONG, &o.stall_step, "", NULL, MPT_RANGE(0, MPT_MAX_STEPS)},
        {"debug-stall-seconds", MPT_ARG_FLOAT, &stall_seconds, "", NULL, MPT_RANGE(0, MPT_MAX_STALL_SECONDS)},
        {"debug-probe-seconds", MPT_ARG_FLOAT, &probe_seconds, "", NULL, MPT_RANGE(0, 1)},
    };
    size_t nargs = sizeof args / sizeof *args;
    mpt_status st = mpt_args_parse(args, nargs, argc, argv, 2, &help, "train", &err);
    if (help) { /* under mpirun: once, from rank 0 */
        const char *rank = getenv("OMPI_COMM_WORLD_RANK");
        if (rank && atoi(rank) != 0) return 0;
        printf("usage: mptrain train [options]\n\n");
        mpt_args_usage(args, nargs);
        return 0;
    }
    if (st) return mpt_cli_report(&err);
    if (!c.recompute || strcmp(c.recompute, "none") == 0) o.recompute = MPT_RECOMPUTE_NONE;
    else if (strcmp(c.recompute, "selective") == 0) o.recompute = MPT_RECOMPUTE_SELECTIVE;
    else if (strcmp(c.recompute, "full") == 0) o.recompute = MPT_RECOMPUTE_FULL;
    else {
        mpt_fail(&err, MPT_ERR_INPUT, "--recompute %s: use none, selective or full", c.recompute);
        return mpt_cli_report(&err);
    }
    o.virtual_stages = c.virtual_stages;
    mpt_pp_kind kind; /* checked with pp 1 too, where it is not used, so a typo is not ignored */
    if (o.schedule && mpt_pp_kind_parse(o.schedule, &kind, &err)) return mpt_cli_report(&err);
    if (strcmp(c.lr_schedule, "cosine") == 0) o.opt.cosine = 1;
    else if (strcmp(c.lr_schedule, "constant") == 0) o.opt.cosine = 0;
    else {
        mpt_fail(&err, MPT_ERR_INPUT, "--lr-schedule %s: use cosine or constant", c.lr_schedule);
        return mpt_cli_report(&err);
    }
    if (strcmp(z3_gather, "layer") == 0) o.z3_gather_step = 0;
    else if (strcmp(z3_gather, "step") == 0) o.z3_gather_step = 1;
    else {
        mpt_fail(&err, MPT_ERR_INPUT, "--zero3-gather %s: use layer or step", z3_gather);
        return mpt_cli_report(&err);
    }
    if (strcmp(save_format, "single") == 0) o.save_sharded = 0;
    else if (strcmp(save_format, "sharded") == 0) o.save_sharded = 1;
    else {
        mpt_fail(&err, MPT_ERR_INPUT, "--save-format %s: use single or sharded", save_format);
        return mpt_cli_report(&err);
    }
    if (strcmp(on_nan, "stop") == 0) o.on_nan_skip = 0;
    else if (strcmp(on_nan, "skip") == 0) o.on_nan_skip = 1;
    else {
        mpt_fail(&err, MPT_ERR_INPUT, "--on-nan %s: use stop or skip", on_nan);
        return mpt_cli_report(&err);
    }
    if (debug_nan) { /* testing: loss:STEP or grad:STEP poisons that step */
        char what[8] = "", tail = 0;
        if (sscanf(debug_nan, "%7[a-z]:%ld%c", what, &o.nan_step, &tail) != 2 ||
            (strcmp(what, "loss") != 0 && strcmp(what, "grad") != 0) || o.nan_step < 1) {
            mpt_fail(&err, MPT_ERR_INPUT, "--debug-nan %s: use loss:STEP or grad:STEP", debug_nan);
            return mpt_cli_report(&err);
        }
        o.nan_grad = strcmp(what, "grad") == 0;
    }
    if (mpt_cli_set_gemm(gemm, &err)) return mpt_cli_report(&err);
    if (strcmp(dtype, "fp32") == 0) o.dtype = MPT_F32;
    else if (strcmp(dtype, "bf16") == 0) o.dtype = MPT_BF16;
    else {
        mpt_fail(&err, MPT_ERR_INPUT, "--dtype %s: use fp32 or bf16", dtype);
        return mpt_cli_report(&err);
    }
    c.bf16 = o.dtype == MPT_BF16;
    if (strcmp(grad_dtype, "bf16") == 0) o.grad_reduce_dtype = MPT_BF16;
    else if (strcmp(grad_dtype, "fp32") != 0) {
        mpt_fail(&err, MPT_ERR_INPUT, "--grad-reduce-dtype %s: use fp32 or bf16", grad_dtype);
        return mpt_cli_report(&err);
    }
    if ((st = mpt_cli_check_threads(o.threads, &err))) return mpt_cli_report(&err);
    if ((st = build_config_(&c, &o.cfg, &err))) return mpt_cli_report(&err);
    o.model_name = c.model;
    o.seq_len = c.seq_len;
    o.cp = c.cp;
    o.ep = c.ep;
    int vocab = o.cfg.vocab;
    const char *from = o.resume ? o.resume : o.init_from;
    if (from) {
        char dir[4096];
        mpt_config ck;
        if ((st = mpt_checkpoint_resolve(from, dir, sizeof dir, &err)) ||
            (st = mpt_checkpoint_read_config(dir, &ck, &err)) ||
            (st = mpt_config_finish(&ck, 64, &err)) ||
            (st = check_from_ckpt_(&c, model_seen, &o.cfg, &ck,
                                   o.resume ? "--resume" : "--init-from", from, &err)))
            return mpt_cli_report(&err);
        vocab = ck.vocab;
    }
    char data_path[4096], **paths = NULL;
    int n_paths = 0;
    if (o.data_path) {
        if ((st = expand_data_(o.data_path, &paths, &n_paths, &err))) {
            for (int i = 0; i < n_paths; i++) free(paths[i]);
            free(paths);
            return mpt_cli_report(&err);
        }
        o.data_paths = (const char *const *)paths;
        o.n_data = n_paths;
    } else {
        if ((st = default_data_(vocab, data_path, sizeof data_path, &err)))
            return mpt_cli_report(&err);
        o.data_path = data_path;
        if (!val_fraction_seen) val_fraction = 0.1f; /* the default corpus's tail is held out */
    }
    o.val_fraction = val_fraction;
    o.bucket_mb = bucket_mb;
    o.stall_seconds = stall_seconds;
    o.probe_seconds = probe_seconds;
    mpt_comm_set_timeout(comm_timeout);
    mpt_comm_set_watchdog(watchdog_);
    mpt_comm world;
    mpt_cli_mpi_start(); /* the checks above need no other rank (cli.h) */
    mpt_cli_threads cores = mpt_cli_default_threads(); /* every rank calls it (collective) */
    c.threads_given = o.threads > 0;
    if (!c.threads_given) o.threads = cores.threads;
    c.cores = cores;
    /* ranks with cores of their own spin while they wait (a nap costs a pipeline ~1 ms per
     * transfer); oversubscribed ranks nap almost at once so the rank they wait for can run */
    if (cores.ranks <= cores.cores) mpt_comm_set_spin(0.05);
    if ((st = mpt_comm_world(&world, &err))) return mpt_cli_report(&err);
    /* a killed rank makes every other one fail within seconds instead of hanging (alive.h);
     * without the detector, the comm timeout still ends a hang */
    if (mpt_alive_start(&world, 5.0, alive_lost_, &err) != MPT_OK && world.rank == 0)
        fprintf(stderr, "mptrain: warning: %s; a lost rank is found by --comm-timeout only\n",
                err.msg);
    signal(SIGTERM, on_term_);
    c.tty = mpt_cli_stdout_is_terminal();
    c.pp = o.pp;
    c.threads = o.threads;
    if (world.rank != 0) c.quiet = 1;
    mpt_train_result res;
    st = mpt_train(&world, &o, on_start_, on_step_, &c, &res, &err);
    if (st == MPT_ERR_INPUT && o.mem_limit && strstr(err.msg, "more than --mem-limit")) {
        char hint[400]; /* the layout of the same rank count that fits (cli/train_suggest.h) */
        mpt_train_suggest_layout(&world, &o, hint, sizeof hint);
        size_t used = strlen(err.msg);
        snprintf(err.msg + used, sizeof err.msg - used, "%s", hint);
    }
    reported_ = 1; /* from here this rank says its own outcome */
    if (mpt_alive_lost() >= 0 && !mpt_alive_lost_failed()) {
        /* MPI_Finalize would wait for the lost rank: end here */
        if (!st) mpt_alive_fail(NULL, MPT_OP_KINDS, &err);
        if (c.tty) printf("\n");
        fflush(stdout);
        int code = mpt_cli_report(&err);
        fflush(stderr);
        _exit(code);
    }
    mpt_alive_stop(st != MPT_OK);
    mpt_comm_free(&world);
    for (int i = 0; i < n_paths; i++) free(paths[i]);
    free(paths);
    if (st) {
        if (c.tty) printf("\n");
        return mpt_cli_report(&err);
    }
    if (!c.quiet) {
        char peak[32], plan[32];
        mpt_format_bytes(res.peak[5], peak, sizeof peak);
        mpt_format_bytes(res.plan_max, plan, sizeof plan);
        if (res.last_step >= res.first_step)
            printf("done: steps %ld-%ld, loss %.4f -> %.4f, %.0f tokens/s, mfu %.1f%%, "
                   "memory peak %s (plan %s, largest rank)\n",
                   res.first_step, res.last_step, res.first_loss, res.last_loss,
                   res.tokens_per_s, 100.0 * res.mfu, peak, plan);
        else if (o.steps == 0)
            printf("done: --steps 0, no step trained (the initial weights)\n");
        else
            printf("done: nothing to train, the run starts at step %ld and --steps is %ld: ask "
                   "for more steps\n", res.first_step - 1, o.steps);
        if (res.val_loss >= 0)
            printf("validation: loss %.4f, perplexity %.2f after step %ld (%zu held-out tokens; "
                   "training reads %zu)\n",
                   res.val_loss, exp(res.val_loss), res.val_step, res.val_tokens,
                   res.train_tokens);
        if (res.saved_dir[0]) printf("checkpoint: %s\n", res.saved_dir);
    }
    return 0;
}
