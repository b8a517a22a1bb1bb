/* cli.h — the mptrain commands. Each returns the process exit status (0, 1 or 2) and is the
 * only layer that prints to users. Errors go to stderr as "mptrain: error: <message>". */
#ifndef MPT_CLI_H
#define MPT_CLI_H

#include "core/status.h"

int mpt_cli_train(int argc, char **argv);
int mpt_cli_tokenize(int argc, char **argv);
int mpt_cli_generate(int argc, char **argv);
int mpt_cli_schedule(int argc, char **argv);
int mpt_cli_plot(int argc, char **argv);
int mpt_cli_convert(int argc, char **argv);
int mpt_cli_plan(int argc, char **argv), mpt_cli_simulate(int argc, char **argv);

/* --gemm onednn|openblas: sets the kernels' GEMM library (MPT_ERR_INPUT for another name). */
mpt_status mpt_cli_set_gemm(const char *name, mpt_error *err);
/* --threads N: more compute threads than this rank has cores (mpt_cli_usable_cores) only makes
 * every step slower (each parallel region waits for threads that take turns on a core):
 * MPT_ERR_INPUT. */
mpt_status mpt_cli_check_threads(int threads, mpt_error *err);
/* Whether stdout ends on a terminal (a live progress line) or not (plain lines): isatty, but
 * under mpirun the launcher's stdout, which is where a rank's output ends (cli/term.c). */
int mpt_cli_stdout_is_terminal(void);
/* The default --threads: the cores in this rank's affinity mask (sched_getaffinity: a
 * taskset, cpuset or launcher binding counts) divided among the ranks of this job on this node
 * (MPI_COMM_TYPE_SHARED) whose masks overlap this rank's, at least 1. Collective over
 * MPI_COMM_WORLD once MPI is initialised: every rank of the job must call it (train and
 * generate do, right after mpt_cli_mpi_start); before MPI_Init it counts this process alone. */
typedef struct mpt_cli_threads {
    int cores;   /* CPUs this rank may run on */
    int ranks;   /* ranks of the job on this node sharing some of them (this one included) */
    int threads; /* cores / ranks, at least 1 */
} mpt_cli_threads;
mpt_cli_threads mpt_cli_default_threads(void);
/* The CPUs in this process's affinity mask (the node's online CPUs if it cannot be read). */
int mpt_cli_usable_cores(void);
/* Initialises MPI (thread level FUNNELED) if it is not yet: train and generate call it only once
 * their options and files passed the checks that need no other rank, so on one rank a bad
 * command line exits 2 without starting MPI (fast, and nothing for a sanitizer to sift at
 * exit); under a launcher with several ranks main() starts MPI first, as before. main()
 * finalises MPI when it was started. */
void mpt_cli_mpi_start(void);
/* Prints "mptrain: error: <err->msg>" on stderr and returns the exit status for err. */
int mpt_cli_report(const mpt_error *err);
/* Where the fetched inputs live: $MPTRAIN_CACHE, else <directory of the binary>/../.cache.
 * Writes "<cache>/<rel>" into buf. */
void mpt_cli_cache_path(char *buf, size_t n, const char *rel);

#endif
