/* mpi_ring.c — the data-parallel gradient ring (parallel/dp_ring.h) under mpirun, driven by
 * tests/t_ring.sh with 1 to 4 ranks. Every rank generates every rank's input (a seeded
 * generator of non-integer floats), so each can compute the exact sum in double itself.
 *   allreduce       sizes 0 .. 2^20*R: every rank holds bit-identical results (compared with
 *                   rank 0's bytes), within 1e-6 * sum|x| of the exact sum; 2(R-1) sends each
 *   reduce_scatter  chunk r bit-identical to the all-reduce's chunk r (same additions)
 *   allgather       exact copies of every rank's chunk
 *   stepwise        a ring started on rank 0 alone does not finish and does not block; three
 *                   rings in flight at once (distinct tags) finish by mpt_ring_progress alone
 *   bad size        n not a multiple of R fails with MPT_ERR_RUN before any message
 *   tmp release     once mpt_ring_uses_tmp says 0 the ring never writes tmp again (dp_reduce.c
 *                   then hands tmp to the next bucket's ring): tmp is filled with a sentinel
 *                   at that moment and must still hold it at the end, under rank-dependent
 *                   delays that leave reduce-scatter sends pending into the all-gather
 *   wait alone      rings run by mpt_ring_wait alone (no progress calls) finish, while half of
 *                   the comm layer's MPI_Test calls are skipped (MPT_DEBUG_JITTER_US, which main
 *                   sets for the whole run unless the caller did): a send then often looks
 *                   pending when the ring blocks, and a wait on the receive alone deadlocked
 *                   (every rank's next send waiting for its slot; the other tests' rings
 *                   hung too); the comm timeout of 20 s turns such a hang into a failure
 *   bf16 wire       (--grad-reduce-dtype bf16) all-reduce: bit-identical on every rank, within
 *                   R * 2^-8 * sum|x| of the exact sum (one rounding per hop and the final one),
 *                   and half the bytes of the fp32 ring; reduce-scatter: the owner's chunk within
 *                   the same bound; an all-gather in bf16 is refused */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "ring_inputs.h"
#include "comm/comm.h"
#include "parallel/dp_ring.h"

static int R, S; /* world rank and size */
static mpt_comm world;
static mpt_error err;

#define OK(call) CHECK((call) == MPT_OK, "rank %d: %s: %s", R, #call, err.msg)

static void test_allreduce(void) {
    static const size_t per[] = {0, 1, 16, 37, 1000, 1 << 20};
    for (size_t t = 0; t < sizeof per / sizeof per[0]; t++) {
        size_t n = per[t] * (size_t)S;
        uint64_t seed = 11 + t;
        float *buf = ring_fill_(seed, R, n), *tmp = malloc((per[t] ? per[t] : 1) * sizeof *tmp);
        long sends0 = world.stats.calls[MPT_OP_SEND];
        mpt_ring g;
        OK(mpt_ring_start(&g, &world, MPT_RING_ALLREDUCE, buf, n, tmp, 5, &err));
        OK(mpt_ring_wait(&g, &err));
        long sends = world.stats.calls[MPT_OP_SEND] - sends0;
        double e = ring_err_(seed, S, buf, 0, n);
        int same = ring_same_everywhere_(buf, n);
        CHECK(e <= 1e-6, "rank %d: allreduce n=%zu: error %g vs the exact sum", R, n, e);
        CHECK(same, "rank %d: allreduce n=%zu: ranks hold different bits", R, n);
        long want = S > 1 && per[t] > 0 ? 2L * (S - 1) : 0;
        CHECK(sends == want, "rank %d: allreduce n=%zu: %ld sends, want %ld", R, n, sends, want);
        if (R == 0 && per[t] == (1 << 20))
            printf("np=%d allreduce of %zu floats: max error %.3g of sum|x|, bit-identical on all "
                   "ranks: %s, %ld sends per rank\n", S, n, e, same ? "yes" : "no", sends);
        free(buf);
        free(tmp);
    }
}

static void test_reduce_scatter(void) {
    size_t w = 4099, n = w * (size_t)S;
    float *a = ring_fill_(21, R, n), *b = ring_fill_(21, R, n), *tmp = malloc(w * sizeof *tmp);
    mpt_ring g;
    OK(mpt_ring_start(&g, &world, MPT_RING_ALLREDUCE, a, n, tmp, 6, &err));
    OK(mpt_ring_wait(&g, &err));
    OK(mpt_ring_start(&g, &world, MPT_RING_REDUCE_SCATTER, b, n, tmp, 6, &err));
    OK(mpt_ring_wait(&g, &err));
    size_t lo = (size_t)R * w;
    CHECK(memcmp(a + lo, b + lo, w * sizeof *a) == 0,
          "rank %d: reduce-scatter chunk differs from the all-reduce's", R);
    double e = ring_err_(21, S, b, lo, lo + w);
    CHECK(e <= 1e-6, "rank %d: reduce-scatter error %g", R, e);
    free(a);
    free(b);
    free(tmp);
}

static void test_allgather(void) {
    size_t w = 777, n = w * (size_t)S;
    float *buf = calloc(n, sizeof *buf), *want = malloc(n * sizeof *want);
    for (int q = 0; q < S; q++)
        for (size_t i = 0; i < w; i++) want[(size_t)q * w + i] = ring_input_(31, q, i);
    memcpy(buf + (size_t)R * w, want + (size_t)R * w, w * sizeof *buf);
    mpt_ring g;
    OK(mpt_ring_start(&g, &world, MPT_RING_ALLGATHER, buf, n, NULL, 7, &err));
    OK(mpt_ring_wait(&g, &err));
    CHECK(memcmp(buf, want, n * sizeof *buf) == 0, "rank %d: all-gather differs", R);
    free(buf);
    free(want);
}

static void test_stepwise(void) {
    size_t w = 5000, n = w * (size_t)S;
    float *buf[3], *tmp[3];
    mpt_ring g[3];
    for (int k = 0; k < 3; k++) {
        buf[k] = ring_fill_(41 + (uint64_t)k, R, n);
        tmp[k] = malloc(w * sizeof *tmp[k]);
    }
    /* rank 0 starts ring 0 while the others are still in the barrier: it cannot finish */
    if (R == 0) {
        int done = 1;
        OK(mpt_ring_start(&g[0], &world, MPT_RING_ALLREDUCE, buf[0], n, tmp[0], 8, &err));
        OK(mpt_ring_progress(&g[0], &done, &err));
        CHECK(done == (S == 1), "rank 0: a ring finished before its peers started (np=%d)", S);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    if (R != 0) OK(mpt_ring_start(&g[0], &world, MPT_RING_ALLREDUCE, buf[0], n, tmp[0], 8, &err));
    OK(mpt_ring_start(&g[1], &world, MPT_RING_REDUCE_SCATTER, buf[1], n, tmp[1], 9, &err));
    OK(mpt_ring_start(&g[2], &world, MPT_RING_ALLREDUCE, buf[2], n, tmp[2], 10, &err));
    /* progress alone, as the backward's hooks do (10 s bound against a hang) */
    int done[3] = {0, 0, 0};
    long calls = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        for (int k = 0; k < 3; k++)
            if (!done[k]) OK(mpt_ring_progress(&g[k], &done[k], &err));
        calls++;
        if (done[0] && done[1] && done[2]) break;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (t1.tv_sec - t0.tv_sec > 10) break;
    }
    CHECK(done[0] && done[1] && done[2], "rank %d: rings did not finish by progress alone", R);
    for (int k = 0; k < 3; k++) {
        size_t lo = k == 1 ? (size_t)R * w : 0, hi = k == 1 ? lo + w : n;
        double e = ring_err_(41 + (uint64_t)k, S, buf[k], lo, hi);
        CHECK(e <= 1e-6, "rank %d: ring %d in flight with others: error %g", R, k, e);
        if (k != 1) CHECK(ring_same_everywhere_(buf[k], n), "rank %d: ring %d: bits differ", R, k);
        free(buf[k]);
        free(tmp[k]);
    }
    if (R == 0) printf("np=%d three rings in flight finished after %ld progress rounds\n", S, calls);
}

static void test_bf16_wire(void) {
    static const size_t per[] = {1, 37, 1 << 16};
    for (size_t t = 0; t < sizeof per / sizeof per[0]; t++) {
        size_t w = per[t], n = w * (size_t)S;
        uint64_t seed = 51 + t;
        float *buf = ring_fill_(seed, R, n), *rs = ring_fill_(seed, R, n), *tmp = malloc(w * sizeof *tmp);
        double b0 = world.stats.bytes[MPT_OP_SEND];
        mpt_ring g;
        OK(mpt_ring_start_dt(&g, &world, MPT_RING_ALLREDUCE, buf, n, tmp, MPT_BF16, 13, &err));
        OK(mpt_ring_wait(&g, &err));
        double sent = world.stats.bytes[MPT_OP_SEND] - b0;
        double e = ring_err_(seed, S, buf, 0, n), bound = S * ldexp(1.0, -8) + 1e-6;
        int same = ring_same_everywhere_(buf, n);
        CHECK(e <= bound, "rank %d: bf16 allreduce n=%zu: error %g > %g", R, n, e, bound);
        CHECK(same, "rank %d: bf16 allreduce n=%zu: ranks hold different bits", R, n);
        double want = S > 1 ? 2.0 * (S - 1) * (double)w * 2.0 : 0.0;
        CHECK(sent == want, "rank %d: bf16 allreduce n=%zu: %.0f bytes sent, want %.0f", R, n,
              sent, want);
        OK(mpt_ring_start_dt(&g, &world, MPT_RING_REDUCE_SCATTER, rs, n, tmp, MPT_BF16, 13, &err));
        OK(mpt_ring_wait(&g, &err));
        double er = ring_err_(seed, S, rs, (size_t)R * w, (size_t)R * w + w);
        CHECK(er <= bound, "rank %d: bf16 reduce-scatter n=%zu: error %g > %g", R, n, er, bound);
        if (R == 0 && w == (1 << 16))
            printf("np=%d bf16-wire allreduce of %zu floats: max error %.3g of sum|x| (bound "
                   "%.3g), bit-identical: %s, %.0f bytes sent (fp32 ring: %.0f)\n", S, n, e,
                   bound, same ? "yes" : "no", sent, 2 * sent);
        free(buf);
        free(rs);
        free(tmp);
    }
    float b[8] = {0};
    mpt_ring g;
    mpt_status st = mpt_ring_start_dt(&g, &world, MPT_RING_ALLGATHER, b, (size_t)S, NULL,
                                      MPT_BF16, 14, &err);
    CHECK(st == MPT_ERR_RUN || S == 1, "rank %d: a bf16 all-gather ring was accepted", R);
}

static void test_tmp_release(void) {
    size_t w = 1 << 15, n = w * (size_t)S;
    float *tmp = malloc(w * sizeof *tmp);
    int early = 0, kept = 1, right = 1;
    srand(7 + (unsigned)R);
    for (int trial = 0; trial < 40; trial++) {
        uint64_t seed = 61 + (uint64_t)trial;
        float *buf = ring_fill_(seed, R, n);
        mpt_ring g;
        OK(mpt_ring_start(&g, &world, MPT_RING_ALLREDUCE, buf, n, tmp, 15, &err));
        int done = 0, released = 0;
        while (!done) {
            OK(mpt_ring_progress(&g, &done, &err));
            if (!done && !released && !mpt_ring_uses_tmp(&g)) { /* another ring takes tmp */
                released = 1;
                early++;
                for (size_t i = 0; i < w; i++) tmp[i] = -7.0f;
            }
            /* one rank reads late each trial (1 ms per round), the others jitter (0-140 us): a
             * reduce-scatter send is then often still pending when the all-gather starts */
            struct timespec d = {0, (R == trial % S ? 1000000L : 0) + 20000L * (rand() % 8)};
            nanosleep(&d, NULL);
        }
        for (size_t i = 0; released && i < w; i++) kept &= tmp[i] == -7.0f;
        right &= ring_err_(seed, S, buf, 0, n) <= 1e-6;
        free(buf);
    }
    CHECK(kept, "rank %d: the ring wrote tmp after mpt_ring_uses_tmp said it no longer uses it", R);
    CHECK(right, "rank %d: all-reduce with a released tmp: wrong sums", R);
    if (R == 0)
        printf("np=%d tmp released before the end in %d of 40 all-reduces; written after: %s\n",
               S, early, kept ? "never" : "yes");
    free(tmp);
}

static void test_wait_alone(void) {
    size_t w = 300, n = w * (size_t)S;
    float *tmp = malloc(w * sizeof *tmp);
    int trials = 0, right = 1;
    mpt_status st = MPT_OK;
    for (; trials < 300 && st == MPT_OK; trials++) {
        uint64_t seed = 900 + (uint64_t)trials;
        float *buf = ring_fill_(seed, R, n);
        mpt_ring g;
        st = mpt_ring_start(&g, &world, MPT_RING_ALLREDUCE, buf, n, tmp, 16, &err);
        if (st == MPT_OK) st = mpt_ring_wait(&g, &err);
        if (st == MPT_OK) right &= ring_err_(seed, S, buf, 0, n) <= 1e-6;
        free(buf);
    }
    CHECK(st == MPT_OK, "rank %d: ring %d of 300 run by mpt_ring_wait alone: %s", R, trials,
          err.msg);
    CHECK(right, "rank %d: rings run by mpt_ring_wait alone: wrong sums", R);
    if (R == 0 && st == MPT_OK)
        printf("np=%d 300 rings run by mpt_ring_wait alone under MPT_DEBUG_JITTER_US=%s\n", S,
               getenv("MPT_DEBUG_JITTER_US"));
    free(tmp);
}

static void test_bad_size(void) {
    if (S == 1) return;
    float buf[8] = {0}, tmp[8];
    mpt_ring g;
    mpt_status st = mpt_ring_start(&g, &world, MPT_RING_ALLREDUCE, buf, (size_t)S + 1, tmp, 12,
                                   &err);
    CHECK(st == MPT_ERR_RUN && !g.active, "rank %d: uneven ring accepted", R);
}

int main(int argc, char **argv) {
    setenv("MPT_DEBUG_JITTER_US", "20", 0); /* (test_wait_alone) read at the first message */
    MPI_Init(&argc, &argv);
    if (mpt_comm_world(&world, &err) != MPT_OK) {
        fprintf(stderr, "%s\n", err.msg);
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    R = world.rank;
    S = world.size;
    mpt_comm_set_timeout(20); /* a hang (see wait alone) fails with the watchdog's message */
    test_allreduce();
    test_reduce_scatter();
    test_allgather();
    test_stepwise();
    test_bf16_wire();
    test_bad_size();
    test_tmp_release();
    test_wait_alone(); /* last: a failure leaves requests pending */
    int counts[2] = {check_passed, check_failed}, sums[2];
    MPI_Allreduce(counts, sums, 2, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (R == 0) printf("np=%d: %d passed, %d failed (all ranks)\n", S, sums[0], sums[1]);
    mpt_comm_free(&world);
    MPI_Finalize();
    return sums[1] ? 1 : 0;
}
