/* cmd_generate.c — `mptrain generate`: sample text from a checkpoint, streamed as it comes, on
 * one rank or under mpirun on a tp x pp layout (train/generator.h; the text is the same as one
 * rank's for the same seed).
 *
 * Each new token costs one forward of one token through the key/value cache
 * (model/gpt_decode.h); --no-cache re-runs the whole window instead (the reference). The next
 * token is the argmax (--temperature 0) or drawn from softmax(logits / temperature) cut to the
 * --top-k most likely and then to the smallest set whose probability reaches --top-p, with the
 * uniform number mpt_rng_uniform(key(seed), i) for the i-th token (model/sample.h). Generation
 * stops after --tokens tokens or at <|endoftext|> (gpt2). Past the model's positions the window
 * slides: the cache restarts from the last half of the context. Every rank computes; world
 * rank 0 prints. */
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
#include "comm/comm.h"
#include "model/sample.h"
#include "tok/tokenizer.h"
#include "train/checkpoint.h"
#include "train/generator.h"
#include "train/trainer.h"

#define MAX_TOKENS_ (1 << 24) /* --tokens: up to 16M tokens of output */

static double now_(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int mpt_cli_generate(int argc, char **argv) {
    const char *ckpt = NULL, *prompt = "", *tok_kind = NULL, *gemm = "onednn";
    int n_tokens = 200, top_k = 40, threads = 0, help = 0, tp = 1, pp = 1;
    int no_cache = 0, no_stop = 0, stats = 0, print_ids = 0, ep = 1;
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
        {"no-cache", MPT_ARG_FLAG, &no_cache, "re-run the whole context for every token (no key/value cache; --pp 1)", NULL, MPT_NO_RANGE},
        {"ids", MPT_ARG_FLAG, &print_ids, "print the generated token ids (space-separated) instead of text", NULL, MPT_NO_RANGE},
        {"stats", MPT_ARG_FLAG, &stats, "print tokens/s on stderr at the end", NULL, MPT_NO_RANGE},
        {"seed", MPT_ARG_U64, &seed, "sampling seed (default 42)", NULL, MPT_RANGE(0, UINT64_MAX)},
        {"tokenizer", MPT_ARG_STRING, &tok_kind, "byte | gpt2 (default: from the vocabulary)", NULL, MPT_NO_RANGE},
        {"tp", MPT_ARG_INT, &tp, "tensor-parallel ranks (under mpirun; -np = tp x pp)", NULL, MPT_RANGE(1, 4096)},
        {"pp", MPT_ARG_INT, &pp, "pipeline stages (under mpirun; -np = tp x pp)", NULL, MPT_RANGE(1, 4096)},
        {"ep", MPT_ARG_INT, &ep, "expert-parallel ranks: only 1 (every rank holds all the experts)", NULL, MPT_RANGE(1, 4096)},
        {"threads", MPT_ARG_INT, &threads, "compute threads per rank (default cores/ranks)", NULL, MPT_RANGE(1, MPT_MAX_THREADS)},
        {"gemm", MPT_ARG_STRING, &gemm, "GEMM library: onednn (default) | openblas", NULL, MPT_NO_RANGE},
    };
    size_t nargs = sizeof args / sizeof *args;
    mpt_error err = {0};
    mpt_status st = mpt_args_parse(args, nargs, argc, argv, 2, &help, "generate", &err);
    if (st && !help) return mpt_cli_report(&err);   /* a bad option: exit 2 before MPI starts */
    mpt_cli_mpi_start();
    mpt_cli_threads cores = mpt_cli_default_threads(); /* every rank calls it (collective) */
    if (threads == 0) threads = cores.threads; /* not given: cores / ranks on this node */
    mpt_comm world; /* with or without a launcher */
    memset(&world, 0, sizeof world);
    int rank0 = 1;
    if (mpt_comm_world(&world, &err) == MPT_OK) rank0 = world.rank == 0;
    else st = err.status;
    if (help) {
        if (rank0) {
            printf("usage: mptrain generate --checkpoint DIR [options]\n"
                   "       mpirun -np N mptrain generate --checkpoint DIR --tp t --pp p [options]"
                   "   (N = t x p)\n\n");
            mpt_args_usage(args, nargs);
        }
        return 0;
    }
    if (st) return mpt_cli_report(&err);
    if (mpt_cli_set_gemm(gemm, &err)) return mpt_cli_report(&err);
    if (!ckpt) {
        mpt_fail(&err, MPT_ERR_INPUT, "generate needs --checkpoint DIR");
        return mpt_cli_report(&err);
    }
    if (ep != 1) { /* the same verdict on every rank: the option is the same everywhere */
        mpt_fail(&err, MPT_ERR_INPUT,
                 "generate holds every expert on each rank and takes no --ep %d: drop --ep (the "
                 "checkpoint loads under any layout) and split the model with --tp/--pp", ep);
        return mpt_cli_report(&err);
    }
    if (mpt_cli_check_threads(threads, &err)) return mpt_cli_report(&err);
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);

    char dir[4096], bpe[4096];
    mpt_generator g;
    mpt_sampler smp;
    mpt_tokenizer *tok = NULL;
    int32_t *ids = NULL, *ctx = NULL;
    size_t n_ids = 0;
    memset(&g, 0, sizeof g);
    memset(&smp, 0, sizeof smp);
    /* every rank reads the same files, so every rank finds the same problem */
    if ((st = mpt_comm_agree(&world, mpt_checkpoint_resolve(ckpt, dir, sizeof dir, &err), &err)) ||
        (st = mpt_generator_init(&g, &world, dir, tp, pp, no_cache, &err)))
        goto done;
    const mpt_config *cfg = &g.cfg;
    if (!tok_kind) tok_kind = cfg->vocab <= 256 ? "byte" : "gpt2";
    mpt_cli_cache_path(bpe, sizeof bpe, "gpt2-bpe");
    if ((st = mpt_tokenizer_init(&tok, tok_kind, bpe, &err))) goto done;
    if (mpt_tokenizer_vocab(tok) > cfg->vocab) {
        st = mpt_fail(&err, MPT_ERR_INPUT,
                      "the %s tokenizer has %d tokens but the model only %d: pass --tokenizer %s",
                      tok_kind, mpt_tokenizer_vocab(tok), cfg->vocab,
                      strcmp(tok_kind, "byte") ? "byte" : "gpt2 (or give the model more tokens)");
        goto done;
    }
    if ((st = mpt_tokenizer_encode(tok, prompt, strlen(prompt), 1, &ids, &n_ids, &err)) ||
        (st = mpt_sampler_init(&smp, cfg->vocab, temperature, top_k, top_p, seed, &err)))
        goto done;
    size_t total = n_ids + (size_t)n_tokens + 1;
    if (!(ctx = malloc(total * sizeof *ctx))) {
        st = mpt_fail(&err, MPT_ERR_RUN, "out of memory");
        goto done;
    }
    size_t n = 0;
    if (n_ids == 0) ctx[n++] = mpt_tokenizer_eot(tok) >= 0 ? mpt_tokenizer_eot(tok) : '\n';
    for (size_t i = 0; i < n_ids; i++) ctx[n++] = ids[i];
    if (rank0 && !print_ids) fwrite(prompt, 1, strlen(prompt), stdout);
    fflush(stdout);
    int eot = no_stop ? -1 : mpt_tokenizer_eot(tok);
    double t0 = now_();
    int made = 0;
    for (int i = 0; i < n_tokens; i++) {
        int32_t next = 0;
        if ((st = mpt_generator_next(&g, &smp, ctx, n, (uint64_t)i, &next, &err))) goto done;
        ctx[n++] = next;
        made++;
        if (!rank0) {
            if (next == eot) break;
            continue;
        }
        if (print_ids) {
            printf("%s%d", made > 1 ? " " : "", (int)next);
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
    if (rank0) printf("\n");
    if (stats && rank0)
        fprintf(stderr, "generate: %d tokens in %.3f s, %.1f tokens/s (%s, tp %d, pp %d, %d threads"
                " per rank)\n", made, secs, secs > 0 ? made / secs : 0.0,
                no_cache ? "no cache" : "key/value cache", tp, pp, threads);
done:
    mpt_sampler_free(&smp);
    free(ids);
    free(ctx);
    mpt_generator_free(&g);
    mpt_tokenizer_free(tok);
    mpt_comm_free(&world);
    return st ? mpt_cli_report(&err) : 0;
}
