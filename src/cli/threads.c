/* threads.c — the default compute threads per rank (cli.h): the cores this rank may run on
 * (its affinity mask) shared among the ranks of this job on the same node whose masks overlap
 * it, found through MPI itself, so it holds under any launcher (mpirun, srun, ...) and any
 * cpuset, taskset or binding. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <mpi.h>
#include <sched.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

/* The CPUs in this process's affinity mask into *set; 0 when the mask cannot be read. */
static int mask_(cpu_set_t *set) {
    CPU_ZERO(set);
    if (sched_getaffinity(0, sizeof *set, set) != 0) return 0;
    return CPU_COUNT(set);
}

int mpt_cli_usable_cores(void) {
    cpu_set_t set;
    int n = mask_(&set);
    if (n > 0) return n;
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    return online > 0 ? (int)online : 1;
}

mpt_cli_threads mpt_cli_default_threads(void) {
    mpt_cli_threads t = {.cores = 1, .ranks = 1, .threads = 1};
    cpu_set_t mine;
    int n = mask_(&mine);
    t.cores = n > 0 ? n : mpt_cli_usable_cores();
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    if (init && !fin && n > 0) {
        /* collective over MPI_COMM_WORLD: the ranks of one node exchange their masks */
        MPI_Comm node;
        int size = 1;
        if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node) ==
            MPI_SUCCESS) {
            MPI_Comm_size(node, &size);
            cpu_set_t all[64]; /* the first 64 ranks of the node; more count as overlapping */
            int k = size < 64 ? size : 64, share = 0;
            if (size <= 64 && MPI_Allgather(&mine, (int)sizeof mine, MPI_BYTE, all,
                                            (int)sizeof mine, MPI_BYTE, node) == MPI_SUCCESS) {
                for (int r = 0; r < k; r++) {
                    cpu_set_t both;
                    CPU_AND(&both, &mine, &all[r]);
                    share += CPU_COUNT(&both) > 0;
                }
            } else {
                share = size;
            }
            t.ranks = share > 0 ? share : 1;
            MPI_Comm_free(&node);
        }
    }
    t.threads = t.cores / t.ranks > 0 ? t.cores / t.ranks : 1;
    return t;
}
