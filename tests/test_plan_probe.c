/* test_plan_probe.c — the machine-state probe (plan/probe.h) and the FMA block it times
 * (core/peak.h mpt_peak_fma_block):
 *  - a block's FLOPs are exactly iters x 1024 x 12 FMAs x the vector width x 2 (8 lanes with
 *    AVX2, 16 with AVX-512), linear in iters;
 *  - the probe's rates (and mpt_probe_fma_solo's, cpu-here's peak_fp32 sample) are positive and finite, the slowest pair thread's at most the mean,
 *    the threads asked for run (OpenMP permitting), and each phase lasts at least its seconds;
 *  - no rate is asserted against a figure: the machine is shared and its rate is what the
 *    probe is for. */
#include <math.h>
#include <stdio.h>

#include "check.h"
#include "core/peak.h"
#include "plan/probe.h"

int main(void) {
    double one = mpt_peak_fma_block(1), three = mpt_peak_fma_block(3);
    CHECK(one == 1024.0 * 12 * 8 * 2 || one == 1024.0 * 12 * 16 * 2,
          "one block: %g FLOPs, not 12 x 1024 vector FMAs", one);
    CHECK(three == 3 * one, "three blocks: %g FLOPs, not 3 x %g", three, one);
    mpt_probe p;
    double s = 0.01;
    mpt_probe_fma(&p, 2, s);
    printf("probe: solo %.1f, pair %.1f (slowest %.1f, wall %.1f) GFLOP/s per thread, "
           "%d threads, %.3f s\n",
           1e-9 * p.solo, 1e-9 * p.pair, 1e-9 * p.pair_min, 1e-9 * p.pair_wall, p.threads,
           p.wall_s);
    CHECK(p.solo > 0 && isfinite(p.solo), "solo rate %g", p.solo);
    CHECK(p.pair > 0 && isfinite(p.pair) && p.pair_wall > 0 && isfinite(p.pair_wall),
          "pair rates %g, %g", p.pair, p.pair_wall);
    CHECK(p.pair_min > 0 && p.pair_min <= p.pair * (1 + 1e-12), "slowest %g, mean %g",
          p.pair_min, p.pair);
    CHECK(p.threads >= 1 && p.threads <= 2, "%d threads", p.threads);
    CHECK(p.wall_s >= 2 * s, "two phases of >= %g s took %g s", s, p.wall_s);
    double solo = mpt_probe_fma_solo(s); /* cpu-here's peak_fp32 sample */
    CHECK(solo > 0 && isfinite(solo), "solo phase alone: %g FLOP/s", solo);
    mpt_probe_fma(&p, 0, s); /* threads < 1: one */
    CHECK(p.threads == 1 && p.solo > 0, "threads 0: %d threads", p.threads);
    return check_finish();
}
