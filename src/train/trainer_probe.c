/* trainer_probe.c — the machine-state probe between two steps (train --debug-probe-seconds,
 * declared in trainer_internal.h), for bench/plan_vs_measured.sh: a slow spell of the host that
 * begins after the bench's before-probe and ends before its after-probe is seen here. */
#include <omp.h>
#include <unistd.h>

#include "plan/probe.h"
#include "train/trainer_internal.h"

mpt_status mpt_run_probe(mpt_run *r, double seconds, int threads, double *solo, double *pair,
                         mpt_error *err) {
    *solo = *pair = 0;
    if (r->rank0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        mpt_probe p;
        mpt_probe_fma(&p, cores > 0 ? (int)cores : 1, seconds);
        omp_set_num_threads(threads > 0 ? threads : 1); /* the pair phase's team changed it */
        *solo = p.solo, *pair = p.pair;
    }
    /* no rank starts the next step while rank 0 probes */
    return mpt_barrier(r->world, err);
}
