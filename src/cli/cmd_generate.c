/* cmd_generate.c — `mptrain generate`: sample text from a checkpoint, streamed as it comes.
 *
 * Each new token costs one forward of one token through the key/value cache
 * (model/gpt_decode.h); --no-cache re-runs the whole window instead (the reference). The next
 * token is the argmax (--temperature 0) or drawn from softmax(logits / temperature) cut to the
 * --top-k most likely and then to the smallest set whose probability reaches --top-p, with the
 * uniform number mpt_rng_uniform(key(seed), i) for the i-th token. Generation stops after
 * --tokens tokens or at <|endoftext|> (gpt2). Past the model's positions the window slides: the
 * cache restarts from the last half of the context. */
#include <cblas.h>
#include <omp.h>
#include <time.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "core/kernels.h"
#include "core/rng.h"
#include "model/gpt.h"
#include "model/gpt_decode.h"
#include "parallel/placement.h"
#include "tok/tokenizer.h"
#include "train/checkpoint.h"
#include "train/trainer.h"

#define MAX_TOKENS_ (1 << 24) /* --tokens: up to 16M tokens of output */

/* Keeps the k largest probabilities (ties at the k-th kept), renormalised; k <= 0 keeps all. */
static void top_k_(float *p, int V, int k) {
    if (k <= 0 || k >= V) return;
    float *sorted = malloc((size_t)V * sizeof *sorted);
    if (!sorted) return;
    memcpy(sorted, p, (size_t)V * sizeof *sorted);
    /* partial selection of the k-th largest */
    for (int i = 0; i < k; i++) {
        int best = i;
        for (int j = i + 1; j < V; j++)
            if (sorted[j] > sorted[best]) best = j;
        float t = sorted[i];
        sorted[i] = sorted[best];
        sorted[best] = t;
    }
    float kth = sorted[k - 1], sum = 0.0f;
    free(sorted);
    for (int j = 0; j < V; j++) {
        if (p[j] < kth) p[j] = 0.0f;
        sum += p[j];
    }
    for (int j = 0; j < V; j++) p[j] /= sum;
}

/* Nucleus sampling: keeps the most likely tokens whose probabilities first reach top_p (at
 * least one), renormalised; top_p >= 1 keeps all. idx: V ints of scratch. */
static int cmp_desc_(const void *a, const void *b, void *ctx) {
    const float *p = ctx;
    float x = p[*(const int *)a], y = p[*(const int *)b];
    if (x != y) return x < y ? 1 : -1;
    return *(const int *)a - *(const int *)b; /* ties: the lower token first (deterministic) */
}

static void top_p_(float *p, int V, float top_p, int *idx) {
    if (top_p >= 1.0f) return;
    for (int j = 0; j < V; j++) idx[j] = j;
    qsort_r(idx, (size_t)V, sizeof *idx, cmp_desc_, p);
    float c = 0.0f;
    int keep = 0;
    while (keep < V && (keep == 0 || c < top_p)) c += p[idx[keep++]];
    for (int j = keep; j < V; j++) p[idx[j]] = 0.0f;
    for (int j = 0; j < V; j++) p[j] /= c;
}

static double now_(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int sample_(const float *p, int V, float u) {
    float c = 0.0f;
    for (int j = 0; j < V; j++) {
        c += p[j];
        if (u < c) return j;
    }
    return V - 1;
}

int mpt_cli_generate(int argc, char **argv) {
    const char *ckpt = NULL, *prompt = "", *tok_kind = NULL, *gemm = "onednn";
    int n_tokens = 200, top_k = 40, threads = (int)sysconf(_SC_NPROCESSORS_ONLN), help = 0;
    int no_cache = 0, no_stop = 0, stats = 0, print_ids = 0;
    float temperature = 0.8f, top_p = 1.0f;
    uint64_t seed = 42;
    const mpt_arg args[] = {
        {"checkpoint", MPT_ARG_STRING, &ckpt, "checkpoint directory (or a --save DIR: its latest)", NULL, MPT_NO_RANGE},
        {"prompt", MPT_ARG_STRING, &prompt, "text to continue (default empty)", NULL, MPT_NO_RANGE},
        {"tokens", MPT_ARG_INT, &n_tokens, "tokens to generate (default 200)", NULL, MPT_RANGE(0, MAX_TOKENS_)},
        {"temperature", MPT_ARG_FLOAT, &temperature, "softmax temperature (default 0.8; 0 = greedy)", NULL, MPT_RANGE(0, 1000)},
        {"top-k", MPT_ARG_INT, &top_k, "sample among the k most likely (default 40; 0 = all)", NULL, MPT_RANGE(0, MPT_MAX_VOCAB)},
        {"top-p", MPT_ARG_FLOAT, &top_p, "nucleus: sample among the most likely tokens whose probability reaches p (default 1 = all)", NULL, MPT_ABOVE(0, 1)},
        {"no-stop", MPT_ARG_FLAG, &no_stop, "go on past <|endoftext|> (default: stop there)", NULL, MPT_NO_RANGE},
        {"no-cache", MPT_ARG_FLAG, &no_cache, "re-run the whole context for every token (no key/value cache)", NULL, MPT_NO_RANGE},
        {"ids", MPT_ARG_FLAG, &print_ids, "print the generated token ids (space-separated) instead of text", NULL, MPT_NO_RANGE},
        {"stats", MPT_ARG_FLAG, &stats, "print tokens/s on stderr at the end", NULL, MPT_NO_RANGE},
        {"seed", MPT_ARG_U64, &seed, "sampling seed (default 42)", NULL, MPT_RANGE(0, UINT64_MAX)},
        {"tokenizer", MPT_ARG_STRING, &tok_kind, "byte | gpt2 (default: from the vocabulary)", NULL, MPT_NO_RANGE},
        {"threads", MPT_ARG_INT, &threads, "compute threads", NULL, MPT_RANGE(1, MPT_MAX_THREADS)},
        {"gemm", MPT_ARG_STRING, &gemm, "GEMM library: onednn (default) | openblas", NULL, MPT_NO_RANGE},
    };
    size_t nargs = sizeof args / sizeof *args;
    mpt_error err = {0};
    mpt_status st = mpt_args_parse(args, nargs, argc, argv, 2, &help, "generate", &err);
    if (help) {
        printf("usage: mptrain generate --checkpoint DIR [options]\n\n");
        mpt_args_usage(args, nargs);
        return 0;
    }
    if (st) return mpt_cli_report(&err);
    if (mpt_cli_set_gemm(gemm, &err)) return mpt_cli_report(&err);
    if (!ckpt) {
        mpt_fail(&err, MPT_ERR_INPUT, "generate needs --checkpoint DIR");
        return mpt_cli_report(&err);
    }
    if (mpt_cli_check_threads(threads, &err)) return mpt_cli_report(&err);
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);

    char dir[4096], bpe[4096];
    mpt_config cfg;
    mpt_arena arena;
    mpt_gpt m = {0};
    mpt_tokenizer *tok = NULL;
    int32_t *ids = NULL, *ctx = NULL;
    size_t n_ids = 0;
    float *probs = NULL;
    int *idx = NULL;
    mpt_decode dec;
    memset(&dec, 0, sizeof dec);
    size_t fed = 0; /* tokens of ctx fed to the cache */
    mpt_arena_init(&arena, 0);
    if ((st = mpt_checkpoint_resolve(ckpt, dir, sizeof dir, &err)) ||
        (st = mpt_checkpoint_read_config(dir, &cfg, &err)) ||
        (st = mpt_config_finish(&cfg, 64, &err)))
        goto done;
    if (!tok_kind) tok_kind = cfg.vocab <= 256 ? "byte" : "gpt2";
    mpt_cli_cache_path(bpe, sizeof bpe, "gpt2-bpe");
    if ((st = mpt_tokenizer_init(&tok, tok_kind, bpe, &err))) goto done;
    if (mpt_tokenizer_vocab(tok) > cfg.vocab) {
        st = mpt_fail(&err, MPT_ERR_INPUT,
                      "the %s tokenizer has %d tokens but the model only %d: pass --tokenizer",
                      tok_kind, mpt_tokenizer_vocab(tok), cfg.vocab);
        goto done;
    }
    int T = cfg.n_positions;
    /* one rank holding the whole model: the placement of a 1 x 1 x 1 layout */
    mpt_placement pl;
    mpt_layout lay = mpt_layout_make(1, 1, 1, 1, 1);
    if ((st = mpt_placement_init(&pl, &lay, 1, 0, &err))) goto done;
    mpt_placement_set_layers(&pl, &cfg.n_layer);
    mpt_gpt_place place = mpt_placement_gpt(&pl, NULL, 0, MPT_RECOMPUTE_NONE);
    if ((st = mpt_gpt_init(&m, &cfg, 1, T, MPT_GPT_INFER, 1, &place, &arena, &err)) ||
        (st = mpt_checkpoint_load(dir, &m.pt, m.params, NULL, NULL, NULL, NULL, &err)))
        goto done;
    if ((st = mpt_tokenizer_encode(tok, prompt, strlen(prompt), 1, &ids, &n_ids, &err))) goto done;
    size_t total = n_ids + (size_t)n_tokens + 1;
    ctx = malloc(total * sizeof *ctx);
    probs = malloc((size_t)cfg.vocab * sizeof *probs);
    if (!ctx || !probs) {
        st = mpt_fail(&err, MPT_ERR_RUN, "out of memory");
        goto done;
    }
    size_t n = 0;
    if (n_ids == 0) ctx[n++] = mpt_tokenizer_eot(tok) >= 0 ? mpt_tokenizer_eot(tok) : '\n';
    for (size_t i = 0; i < n_ids; i++) ctx[n++] = ids[i];
    if (!print_ids) fwrite(prompt, 1, strlen(prompt), stdout);
    fflush(stdout);
    idx = malloc((size_t)cfg.vocab * sizeof *idx);
    if (!idx || (!no_cache && (st = mpt_decode_init(&dec, &m, &err)))) {
        if (!idx) st = mpt_fail(&err, MPT_ERR_RUN, "out of memory");
        goto done;
    }
    uint64_t key = mpt_rng_key(seed, "generate");
    int eot = no_stop ? -1 : mpt_tokenizer_eot(tok);
    double t0 = now_();
    int made = 0;
    for (int i = 0; i < n_tokens; i++) {
        const float *logits;
        if (no_cache) { /* the whole window again: the reference the cache must equal */
            size_t len = n < (size_t)T ? n : (size_t)T;
            const int32_t *window = ctx + (n - len);
            if ((st = mpt_gpt_forward(&m, window, NULL, 1, (int)len, 0.0f, NULL, &err))) goto done;
            logits = m.cur->a[MPT_ACT_LOGITS] + (len - 1) * (size_t)cfg.padded_vocab;
        } else {
            if ((size_t)dec.pos + (n - fed) > (size_t)T) {
                /* the cache cannot take it all: restart it from the last T tokens (a prompt) or,
                 * once full, from the last half of the context */
                size_t keep = dec.pos == 0 ? (size_t)T : (size_t)T / 2;
                mpt_decode_reset(&dec);
                fed = n > keep ? n - keep : 0;
            }
            for (; fed < n; fed++) /* the prompt (or the window), then each new token once */
                if ((st = mpt_decode_step(&dec, ctx[fed], &logits, &err))) goto done;
            logits = dec.logits;
        }
        int next;
        if (temperature == 0.0f) {
            next = 0;
            for (int j = 1; j < cfg.vocab; j++)
                if (logits[j] > logits[next]) next = j;
        } else {
            mpt_softmax_row(probs, logits, cfg.vocab, temperature);
            top_k_(probs, cfg.vocab, top_k);
            top_p_(probs, cfg.vocab, top_p, idx);
            next = sample_(probs, cfg.vocab, mpt_rng_uniform(key, (uint64_t)i));
        }
        ctx[n++] = next;
        made++;
        if (print_ids) {
            printf("%s%d", made > 1 ? " " : "", next);
            fflush(stdout);
        }
        if (next == eot) break;
        if (!print_ids && next < mpt_tokenizer_vocab(tok)) {
            char *text = NULL;
            size_t tlen = 0;
            if (mpt_tokenizer_decode(tok, &ctx[n - 1], 1, &text, &tlen, &err) == MPT_OK)
                fwrite(text, 1, tlen, stdout);
            free(text);
            fflush(stdout);
        }
    }
    double secs = now_() - t0;
    printf("\n");
    if (stats)
        fprintf(stderr, "generate: %d tokens in %.3f s, %.1f tokens/s (%s, %d threads)\n", made,
                secs, secs > 0 ? made / secs : 0.0, no_cache ? "no cache" : "key/value cache",
                threads);
done:
    mpt_decode_free(&dec);
    free(idx);
    free(ids);
    free(ctx);
    free(probs);
    mpt_gpt_free(&m);
    mpt_tokenizer_free(tok);
    return st ? mpt_cli_report(&err) : 0;
}
