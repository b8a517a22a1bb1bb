/* test_plan_meet.c — the polling of blocking tensor-parallel meetings when a node runs more
 * ranks than cores (cluster.h meet_waste, plan/calib_meet.c, sim.c meet_poll_):
 *  - mpt_cluster_meet_waste: 0 when not measured; the measured points at 1 and 8 ms, linear in
 *    log g between them (monotone when the points are), constant beyond them;
 *  - the count of blocking tp collectives (cost.c): gpt2-124m (12 blocks), one stage, tp 2:
 *    forward 2 per block + the embedding's sum + the vocabulary-parallel loss's gathers,
 *    backward 2 per block + the head's input gradient; a full recompute adds the forward's
 *    2 per block to the backward. With a waste constant in g the step's polling is that count
 *    times the waste, exactly;
 *  - the term is 0 with ranks <= cores (tp 2 on 2 cores) and without tp (dp 4 on 2 cores),
 *    > 0 when oversubscribed with tp (dp 2 x tp 2, tp 2 x pp 2 on 2 cores), and the step
 *    grows monotonically with the waste.
 * No calibration runs: a100-80g's rates with 2 cores set, the waste given. */
#include <math.h>
#include <stdio.h>

#include "check.h"
#include "plan/sim.h"

static mpt_sim_result sim_(const mpt_plan_job *j, int dp, int tp, int pp, int rec, int cores,
                           double w1, double w8) {
    mpt_cluster c;
    mpt_error err;
    CHECK(mpt_cluster_load(&c, "a100-80g", &err) == MPT_OK, "a100-80g");
    c.per_node = 64;
    c.cores = cores;
    c.meet_waste[0] = w1, c.meet_waste[1] = w8;
    mpt_plan_layout l;
    mpt_plan_layout_defaults(&l);
    l.dp = dp, l.tp = tp, l.pp = pp;
    l.microbatches = pp > 1 ? 4 : 1;
    l.schedule = MPT_PP_1F1B;
    l.recompute = rec ? MPT_RECOMPUTE_FULL : MPT_RECOMPUTE_NONE;
    mpt_sim_result r;
    CHECK(mpt_simulate(j, &l, &c, 0, &r, &err) == MPT_OK, "simulate: %s", err.msg);
    return r;
}

static void interpolation_(void) {
    mpt_cluster c = {0};
    CHECK(mpt_cluster_meet_waste(&c, 2e-3) == 0, "not measured: 0");
    c.meet_waste[0] = 1e-4, c.meet_waste[1] = 4e-4;
    CHECK(mpt_cluster_meet_waste(&c, MPT_MEET_G1) == 1e-4, "at 1 ms: the 1 ms point");
    CHECK(fabs(mpt_cluster_meet_waste(&c, MPT_MEET_G8) - 4e-4) < 1e-12, "at 8 ms: the 8 ms point");
    CHECK(fabs(mpt_cluster_meet_waste(&c, sqrt(MPT_MEET_G1 * MPT_MEET_G8)) - 2.5e-4) < 1e-12,
          "halfway in log g: halfway between the points");
    CHECK(mpt_cluster_meet_waste(&c, 1e-5) == 1e-4 && mpt_cluster_meet_waste(&c, 1) == 4e-4,
          "constant beyond the points");
    double prev = 0;
    int mono = 1;
    for (double g = 1e-4; g < 0.1; g *= 1.3) {
        double w = mpt_cluster_meet_waste(&c, g);
        mono &= w >= prev;
        prev = w;
    }
    CHECK(mono, "monotone in g when the points are");
}

int main(void) {
    interpolation_();
    mpt_plan_job j;
    mpt_error err;
    mpt_plan_job_defaults(&j);
    CHECK(mpt_plan_model(&j.cfg, "gpt2-124m", &err) == MPT_OK, "preset");
    j.batch = 8;
    j.seq_len = 256;
    j.threads = 1;
    const double w = 1e-3, L = 12;
    /* the count: dp 2 x tp 2 on 2 cores, one stage, a waste constant in g */
    mpt_sim_result r = sim_(&j, 2, 2, 1, 0, 2, w, w);
    double n = (2 * L + 2) + (2 * L + 1);
    printf("dp 2 x tp 2 on 2 cores, waste 1 ms: %.1f ms of polling per micro-batch (%g meetings)\n",
           1e3 * r.meet_poll, n);
    CHECK(fabs(r.meet_poll - n * w) < 1e-9, "polling %g s, not %g meetings x %g s", r.meet_poll,
          n, w);
    r = sim_(&j, 2, 2, 1, 1, 2, w, w);
    n = (2 * L + 2) + (4 * L + 1);
    CHECK(fabs(r.meet_poll - n * w) < 1e-9, "full recompute: polling %g s, not %g x %g s",
          r.meet_poll, n, w);
    /* 0 with ranks <= cores, and without tp */
    mpt_sim_result a = sim_(&j, 1, 2, 1, 0, 2, w, w), b = sim_(&j, 1, 2, 1, 0, 2, 0, 0);
    CHECK(a.meet_poll == 0 && a.step_time == b.step_time, "tp 2 on 2 cores: no polling term");
    a = sim_(&j, 4, 1, 1, 0, 2, w, w), b = sim_(&j, 4, 1, 1, 0, 2, 0, 0);
    CHECK(a.meet_poll == 0 && a.step_time == b.step_time, "dp 4 on 2 cores: no tp, no term");
    /* > 0 oversubscribed, monotone in the waste */
    const int shapes[2][3] = {{2, 2, 1}, {1, 2, 2}};
    for (int s = 0; s < 2; s++) {
        double prev = 0;
        int mono = 1;
        for (double x = 0; x <= 4e-3; x += 1e-3) {
            mpt_sim_result q = sim_(&j, shapes[s][0], shapes[s][1], shapes[s][2], 0, 2, x, x);
            mono &= q.step_time > prev;
            CHECK((x > 0) == (q.meet_poll > 0), "polling > 0 exactly when the waste is");
            prev = q.step_time;
        }
        printf("dp %d x tp %d x pp %d on 2 cores: step at waste 4 ms %.1f ms\n", shapes[s][0],
               shapes[s][1], shapes[s][2], 1e3 * prev);
        CHECK(mono, "dp %d x tp %d x pp %d on 2 cores: the step grows with the waste",
              shapes[s][0], shapes[s][1], shapes[s][2]);
    }
    return check_finish();
}
