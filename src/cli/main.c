/* main.c — the mptrain command-line tool: dispatches to one command per file (cmd_*.c).
 * The only layer that prints to users or chooses exit codes (0 done, 1 failure while running,
 * 2 bad command line / config / layout / input). */
#include <libgen.h>
#include <mpi.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/kernels.h"

/* Under AddressSanitizer: what OpenMPI allocates inside MPI_Init and MPI_Finalize is its own
 * business and it keeps much of it until exit (thousands of blocks, most from components it
 * unloads). LeakSanitizer ignores the blocks allocated between __lsan_disable and
 * __lsan_enable on this thread, so it does not have to match each one against
 * tests/lsan.supp at exit (symbolising its stack: ~10 s a rank). No mptrain code runs there. */
#if defined(__SANITIZE_ADDRESS__)
#define MPT_LSAN_ 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MPT_LSAN_ 1
#endif
#endif
#ifdef MPT_LSAN_
#include <sanitizer/lsan_interface.h>
#define LSAN_OFF_() __lsan_disable()
#define LSAN_ON_() __lsan_enable()
#else
#define LSAN_OFF_() ((void)0)
#define LSAN_ON_() ((void)0)
#endif

void mpt_cli_mpi_start(void) {
    int init = 0, provided;
    MPI_Initialized(&init);
    if (init) return;
    LSAN_OFF_();
    MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
    LSAN_ON_();
}

/* 1 when a launcher started this process as one of several ranks (OpenMPI's mpirun sets
 * OMPI_COMM_WORLD_SIZE). Such a rank starts MPI before checking its options, as before: a rank
 * that exited before MPI_Init would make mpirun kill the others before they said the error. */
static int several_ranks_(void) {
    const char *n = getenv("OMPI_COMM_WORLD_SIZE");
    return n && atoi(n) > 1;
}

/* MPI_Finalize when a command started MPI (mpt_cli_mpi_start) and did not finalise it. */
static void mpi_end_(void) {
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    if (init && !fin) {
        LSAN_OFF_();
        MPI_Finalize();
        LSAN_ON_();
    }
}

int mpt_cli_report(const mpt_error *err) {
    fprintf(stderr, "mptrain: error: %s\n", err->msg);
    return err->status == MPT_ERR_INPUT ? 2 : 1;
}

/* --gemm LIB[-split]: the library, and with "-split" each GEMM split into one block per thread
 * instead of the library's own threading (core/kernels.h; for side-by-side benches) */
mpt_status mpt_cli_set_gemm(const char *name, mpt_error *err) {
    size_t n = strlen(name), t = strlen("-split");
    int split = n > t && strcmp(name + n - t, "-split") == 0;
    if (split) n -= t;
    if (n == 6 && strncmp(name, "onednn", n) == 0) mpt_kernels_set_gemm(MPT_GEMM_ONEDNN);
    else if (n == 8 && strncmp(name, "openblas", n) == 0) mpt_kernels_set_gemm(MPT_GEMM_OPENBLAS);
    else
        return mpt_fail(err, MPT_ERR_INPUT,
                        "--gemm %s: use onednn or openblas (optionally with -split)", name);
    mpt_kernels_set_gemm_threading(split ? MPT_GEMM_SPLIT : MPT_GEMM_TEAM);
    return MPT_OK;
}

mpt_status mpt_cli_check_threads(int threads, mpt_error *err) {
    int cores = mpt_cli_usable_cores();
    if (threads > cores)
        return mpt_fail(err, MPT_ERR_INPUT,
                        "--threads %d is more than the %d core%s this rank may run on (its CPU "
                        "affinity): use at most %d (leave it out for cores / ranks), or give "
                        "each rank more cores (mpirun --bind-to none, or --map-by slot:PE=N)",
                        threads, cores, cores == 1 ? "" : "s", cores);
    return MPT_OK;
}

void mpt_cli_cache_path(char *buf, size_t n, const char *rel) {
    const char *env = getenv("MPTRAIN_CACHE");
    if (env && *env) {
        snprintf(buf, n, "%s/%s", env, rel);
        return;
    }
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len <= 0) {
        snprintf(buf, n, ".cache/%s", rel);
        return;
    }
    exe[len] = '\0';
    snprintf(buf, n, "%s/../.cache/%s", dirname(exe), rel);
}

static void usage_(FILE *f) {
    fprintf(f, "mptrain — train and run GPT models split across MPI ranks\n\n"
           "usage: mptrain <command> [options]      (mptrain <command> --help for its options)\n\n"
           "commands:\n"
           "  train      train a model (one rank, or several under mpirun -np N)\n"
           "  tokenize   text -> token file (llm.c format), byte or GPT-2 BPE\n"
           "  generate   sample text from a checkpoint\n"
           "  schedule   print a pipeline schedule's per-rank timeline and bubble (--svg to draw)\n"
           "  plot       SVG of training logs: loss, validation loss, lr, tokens/s, memory\n"
           "  plan       memory per rank and predicted step time; searches layouts (--gpus N)\n"
           "  simulate   replay a layout's schedule on a cluster model: step time, MFU, bubble\n"
           "  convert    sharded checkpoint <-> one directory (config.json + model.safetensors)\n\n"
           "example:\n"
           "  mptrain train --model tiny --steps 100 --log run.jsonl --save ckpt\n"
           "  mptrain generate --checkpoint ckpt --prompt 'Call me' --tokens 200\n"
           "  mpirun -np 8 mptrain train --dp 2 --tp 2 --pp 2 --microbatches 4\n"
           "  mptrain schedule --pp 4 --microbatches 8 --schedule 1f1b\n"
           "  mptrain plot run.jsonl other.jsonl --svg runs.svg\n");
}

int main(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage_(argc < 2 ? stderr : stdout);
        if (argc >= 2) return 0;
        fprintf(stderr, "mptrain: error: no command given: name one of the commands above\n");
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "train") == 0) {
        /* Blocking all-reduces (tensor parallelism, norms, agreement) use OpenMPI's ring
         * all-reduce. The data-parallel gradient buckets do not go through MPI's collectives
         * (nonblocking ones run in libnbc, which ignores this): they run their own ring over
         * point-to-point messages (parallel/dp_ring.c). The user's own OMPI_MCA_coll_tuned_*
         * settings win (setenv does not overwrite). */
        setenv("OMPI_MCA_coll_tuned_use_dynamic_rules", "1", 0);
        setenv("OMPI_MCA_coll_tuned_allreduce_algorithm", "4", 0);
        /* Every rank runs the command, which starts MPI once its local checks passed
         * (mpt_cli_mpi_start); MPI_Finalize only after all agreed on the outcome. */
        if (several_ranks_()) mpt_cli_mpi_start();
        int code = mpt_cli_train(argc, argv);
        mpi_end_();
        return code;
    }
    if (strcmp(cmd, "tokenize") == 0) return mpt_cli_tokenize(argc, argv);
    if (strcmp(cmd, "generate") == 0) { /* one rank, or a tp x pp layout under mpirun */
        if (several_ranks_()) mpt_cli_mpi_start();
        int code = mpt_cli_generate(argc, argv);
        mpi_end_();
        return code;
    }
    if (strcmp(cmd, "schedule") == 0) return mpt_cli_schedule(argc, argv);
    if (strcmp(cmd, "plot") == 0) return mpt_cli_plot(argc, argv);
    if (strcmp(cmd, "plan") == 0) return mpt_cli_plan(argc, argv);
    if (strcmp(cmd, "simulate") == 0) return mpt_cli_simulate(argc, argv);
    if (strcmp(cmd, "convert") == 0) return mpt_cli_convert(argc, argv);
    fprintf(stderr, "mptrain: error: unknown command '%s': see mptrain --help\n", cmd);
    return 2;
}
