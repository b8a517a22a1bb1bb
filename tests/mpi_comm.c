/* mpi_comm.c — the communication layer (comm/comm.h) and the mesh groups (parallel/groups.h)
 * under mpirun, driven by tests/t_comm.sh with 1, 2 and 4 ranks.
 *
 *   mpi_comm                every check below on every rank; exit 0 when all ranks passed
 *   mpi_comm watchdog       the last rank never joins an allreduce; the others' watchdog
 *                           handler prints "WATCHDOG: <message>" and calls MPI_Abort(.., 1)
 *   mpi_comm watchdog_recv  rank 0 waits for a message rank 1 never sends (same handler)
 *
 * Data are integer-valued floats, so every sum is exact whatever order MPI adds in (the typed
 * f64 / i32 cases use values exact in their type but not in a float); waitany returns each
 * pending request once, skipping zeroed and finished ones. Large
 * counts are split with the per-call limit lowered (mpt_comm_set_max_count), so the split
 * paths run on small buffers. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "comm/comm.h"
#include "parallel/groups.h"

static int R, S; /* world rank and size */
static mpt_comm world;
static mpt_error err;

static double now_(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double cpu_now_(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static float *falloc_(size_t n) { return malloc(sizeof(float) * (n ? n : 1)); }

/* The call succeeds; otherwise the failure and its message are recorded. */
#define OK(call) CHECK((call) == MPT_OK, "rank %d: %s: %s", R, #call, err.msg)

/* Count of elements of a that differ from b; prints the first. */
static size_t diff_(const char *what, const float *a, const float *b, size_t n) {
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i] && bad++ == 0)
            fprintf(stderr, "rank %d: %s: [%zu] = %g, want %g\n", R, what, i, a[i], b[i]);
    return bad;
}

/* --- collectives ----------------------------------------------------------------------------- */

static void test_allreduce(void) {
    static const size_t ns[] = {0, 1, 37, 1000, 100000};
    for (size_t t = 0; t < sizeof ns / sizeof ns[0]; t++) {
        size_t n = ns[t];
        float *buf = falloc_(n), *want = falloc_(n);
        for (size_t i = 0; i < n; i++) {
            buf[i] = (float)(R + 1 + (int)(i % 1000));
            want[i] = (float)(S * (S + 1) / 2 + S * (int)(i % 1000));
        }
        OK(mpt_allreduce_sum(&world, buf, n, &err));
        CHECK(diff_("allreduce", buf, want, n) == 0, "rank %d: allreduce n=%zu", R, n);
        free(buf);
        free(want);
    }
    /* Split into parts: 50 elements at most 7 per call is 8 parts, the most a request holds. */
    mpt_comm_set_max_count(7);
    float buf[57], want[57];
    for (int i = 0; i < 57; i++) {
        buf[i] = (float)(R * 3 + i);
        want[i] = (float)(3 * S * (S - 1) / 2 + S * i);
    }
    OK(mpt_allreduce_sum(&world, buf, 50, &err));
    CHECK(diff_("allreduce split", buf, want, 50) == 0, "rank %d: allreduce in 8 parts", R);
    CHECK(mpt_allreduce_sum(&world, buf, 57, &err) == MPT_ERR_RUN && strstr(err.msg, "9 calls"),
          "rank %d: 57 elements in parts of 7 must fail (9 > 8 parts): %s", R, err.msg);
    double d[20], dmax[20];
    for (int i = 0; i < 20; i++) {
        d[i] = 0.5 * (R + 1) + i;
        dmax[i] = R * 10.0 - i;
    }
    OK(mpt_allreduce_sum_f64(&world, d, 20, &err)); /* split: 3 parts */
    OK(mpt_allreduce_max_f64(&world, dmax, 20, &err));
    mpt_comm_set_max_count(0);
    int bad = 0;
    for (int i = 0; i < 20; i++) {
        bad += d[i] != 0.25 * S * (S + 1) + (double)S * i;
        bad += dmax[i] != (S - 1) * 10.0 - i;
    }
    CHECK(bad == 0, "rank %d: f64 sum / max wrong in %d places", R, bad);
}

static void test_reduce_scatter(void) {
    static const size_t ns[] = {1, 5, 64, 10, 20000};
    for (size_t t = 0; t < sizeof ns / sizeof ns[0]; t++) {
        size_t n = ns[t];
        int split = t == 3; /* 10 per rank in parts of 3: 4 parts, strided blocks */
        if (split) mpt_comm_set_max_count(3);
        float *send = falloc_(n * (size_t)S), *recv = falloc_(n), *want = falloc_(n);
        for (int q = 0; q < S; q++)
            for (size_t i = 0; i < n; i++) send[(size_t)q * n + i] = (float)(R * 100 + q * 10 + (int)(i % 500));
        for (size_t i = 0; i < n; i++) {
            recv[i] = -1;
            want[i] = (float)(100 * S * (S - 1) / 2 + S * (R * 10 + (int)(i % 500)));
        }
        OK(mpt_reduce_scatter_sum(&world, send, recv, n, &err));
        CHECK(diff_("reduce_scatter", recv, want, n) == 0, "rank %d: reduce_scatter n=%zu%s", R, n,
              split ? " split" : "");
        /* In place (send NULL): the inputs are in recv, the sum lands at its start. */
        float *inplace = falloc_(n * (size_t)S);
        memcpy(inplace, send, sizeof(float) * n * (size_t)S);
        OK(mpt_reduce_scatter_sum(&world, NULL, inplace, n, &err));
        CHECK(diff_("reduce_scatter in place", inplace, want, n) == 0,
              "rank %d: reduce_scatter in place n=%zu%s", R, n, split ? " split" : "");
        free(inplace);
        if (split) mpt_comm_set_max_count(0);
        free(send);
        free(recv);
        free(want);
    }
    float both[8];
    CHECK(mpt_reduce_scatter_sum(&world, both, both, 1, &err) == MPT_ERR_RUN && strstr(err.msg, "overlap"),
          "rank %d: overlapping reduce_scatter must fail: %s", R, err.msg);
}

static void test_allgather(void) {
    static const size_t ns[] = {1, 7, 10, 30000};
    for (size_t t = 0; t < sizeof ns / sizeof ns[0]; t++) {
        size_t n = ns[t];
        int split = n == 10; /* parts of 3: 4 parts with a strided receive type */
        if (split) mpt_comm_set_max_count(3);
        float *send = falloc_(n), *recv = falloc_(n * (size_t)S), *want = falloc_(n * (size_t)S);
        for (size_t i = 0; i < n; i++) send[i] = (float)(R * 1000 + (int)(i % 999));
        for (int q = 0; q < S; q++)
            for (size_t i = 0; i < n; i++) want[(size_t)q * n + i] = (float)(q * 1000 + (int)(i % 999));
        for (size_t i = 0; i < n * (size_t)S; i++) recv[i] = -1;
        OK(mpt_allgather(&world, send, recv, n, &err));
        CHECK(diff_("allgather", recv, want, n * (size_t)S) == 0, "rank %d: allgather n=%zu", R, n);
        /* In place: this rank's block of recv is the input. */
        for (size_t i = 0; i < n * (size_t)S; i++) recv[i] = -1;
        memcpy(recv + (size_t)R * n, send, sizeof(float) * n);
        OK(mpt_allgather(&world, recv + (size_t)R * n, recv, n, &err));
        CHECK(diff_("allgather in place", recv, want, n * (size_t)S) == 0,
              "rank %d: allgather in place n=%zu", R, n);
        if (split) mpt_comm_set_max_count(0);
        free(send);
        free(recv);
        free(want);
    }
}

/* Rank p sends (p + q) % 3 + 1 elements to rank q, valued p*10000 + q*100 + i. */
static void test_alltoallv(void) {
    int sc[8], sd[8], rc[8], rd[8], ns = 0, nr = 0;
    for (int q = 0; q < S; q++) {
        sc[q] = (R + q) % 3 + 1;
        rc[q] = (q + R) % 3 + 1;
        sd[q] = ns;
        rd[q] = nr + 1; /* a gap of one element before every block */
        ns += sc[q];
        nr += rc[q] + 1;
    }
    float send[64], recv[64], want[64];
    for (int q = 0; q < S; q++)
        for (int i = 0; i < sc[q]; i++) send[sd[q] + i] = (float)(R * 10000 + q * 100 + i);
    for (int i = 0; i < nr; i++) recv[i] = want[i] = -7;
    for (int q = 0; q < S; q++)
        for (int i = 0; i < rc[q]; i++) want[rd[q] + i] = (float)(q * 10000 + R * 100 + i);
    OK(mpt_alltoallv(&world, send, sc, sd, recv, rc, rd, &err));
    CHECK(diff_("alltoallv", recv, want, (size_t)nr) == 0, "rank %d: alltoallv", R);
}

static void test_bcast(void) {
    char buf[300], want[300];
    for (int i = 0; i < 300; i++) want[i] = (char)((i * 7 + S) % 127);
    for (int split = 0; split < 2; split++) {
        if (split) mpt_comm_set_max_count(64); /* 300 bytes: 5 parts */
        for (int i = 0; i < 300; i++) buf[i] = R == S - 1 ? want[i] : 0;
        OK(mpt_bcast(&world, buf, sizeof buf, S - 1, &err));
        CHECK(memcmp(buf, want, sizeof buf) == 0, "rank %d: bcast from rank %d%s", R, S - 1, split ? " split" : "");
    }
    mpt_comm_set_max_count(0);
    OK(mpt_barrier(&world, &err));
}

/* --- typed calls: f64 and i32 ------------------------------------------------------------------
 * Values a float cannot hold (doubles near 2^40 with a fractional part, int32 above 2^24), so
 * a call that went through MPI_FLOAT would round them; every result is compared exactly. The
 * split cases (per-call limit 3) run the strided block types and the per-type user sum. */

static void test_typed(void) {
    const double big = 1099511627776.0; /* 2^40: sums up to 2^42 keep steps of 2^-10 */
    const int32_t ibig = 100000000;     /* above 2^24: odd values are not floats */
    for (int split = 0; split < 2; split++) {
        if (split) mpt_comm_set_max_count(3);
        enum { N = 10 };
        double d[N], dmax[N];
        int32_t k[N], kmax[N];
        for (int i = 0; i < N; i++) {
            d[i] = big + 0.25 * (R + 1) + i;
            dmax[i] = big * (R + 1) + 0.5 * i;
            k[i] = ibig + 2 * R + 1 + i;
            kmax[i] = -ibig - R * 7 + i;
        }
        OK(mpt_allreduce_dt(&world, d, N, MPT_F64, MPT_RED_SUM, &err));
        OK(mpt_allreduce_dt(&world, dmax, N, MPT_F64, MPT_RED_MAX, &err));
        OK(mpt_allreduce_dt(&world, k, N, MPT_I32, MPT_RED_SUM, &err));
        OK(mpt_allreduce_dt(&world, kmax, N, MPT_I32, MPT_RED_MAX, &err));
        int bad = 0;
        for (int i = 0; i < N; i++) {
            bad += d[i] != S * big + 0.125 * S * (S + 1) + (double)S * i;
            bad += dmax[i] != big * S + 0.5 * i;
            bad += k[i] != S * ibig + S * S + S * i; /* sum of 2R+1 over R < S is S^2 */
            bad += kmax[i] != -ibig + i;
        }
        CHECK(bad == 0, "rank %d: f64 / i32 allreduce%s wrong in %d places", R,
              split ? " split" : "", bad);

        /* reduce-scatter: block q of rank p holds p*3 + q*5 + i (+ big for f64) */
        double ds[4 * N], dr[N];
        int32_t ks[4 * N];
        for (int q = 0; q < S; q++)
            for (int i = 0; i < N; i++) {
                ds[q * N + i] = big + 0.125 * (R * 3 + q * 5 + i);
                ks[q * N + i] = ibig + R * 3 + q * 5 + i;
            }
        OK(mpt_reduce_scatter_dt(&world, ds, dr, N, MPT_F64, &err));
        OK(mpt_reduce_scatter_dt(&world, NULL, ks, N, MPT_I32, &err)); /* in place */
        bad = 0;
        for (int i = 0; i < N; i++) {
            int sum = 3 * S * (S - 1) / 2 + S * (R * 5 + i);
            bad += dr[i] != S * big + 0.125 * sum;
            bad += ks[i] != S * ibig + sum;
        }
        CHECK(bad == 0, "rank %d: f64 / i32 reduce_scatter%s wrong in %d places", R,
              split ? " split" : "", bad);

        /* all-gather */
        double dg[4 * N];
        int32_t kg[4 * N], mine[N];
        for (int i = 0; i < N; i++) {
            d[i] = big + 0.375 * R + i;
            mine[i] = ibig + 1000 * R + 2 * i + 1;
        }
        OK(mpt_allgather_dt(&world, d, dg, N, MPT_F64, &err));
        OK(mpt_allgather_dt(&world, mine, kg, N, MPT_I32, &err));
        bad = 0;
        for (int q = 0; q < S; q++)
            for (int i = 0; i < N; i++) {
                bad += dg[q * N + i] != big + 0.375 * q + i;
                bad += kg[q * N + i] != ibig + 1000 * q + 2 * i + 1;
            }
        CHECK(bad == 0, "rank %d: f64 / i32 allgather%s wrong in %d places", R,
              split ? " split" : "", bad);

        /* a ring shift of each type */
        int next = (R + 1) % S, prev = (R + S - 1) % S;
        double dn[N];
        int32_t kn[N];
        OK(mpt_sendrecv_dt(&world, dg + R * N, N, next, dn, N, prev, MPT_F64, 11, &err));
        OK(mpt_sendrecv_dt(&world, mine, N, next, kn, N, prev, MPT_I32, 12, &err));
        bad = 0;
        for (int i = 0; i < N; i++) {
            bad += dn[i] != big + 0.375 * prev + i;
            bad += kn[i] != ibig + 1000 * prev + 2 * i + 1;
        }
        CHECK(bad == 0, "rank %d: f64 / i32 sendrecv%s wrong in %d places", R,
              split ? " split" : "", bad);
    }
    mpt_comm_set_max_count(0);

    /* i32 all-to-all-v: rank p sends q+1 values p*1000003 + q to rank q */
    int32_t as[16], ar[16];
    int sc[4], sd[4], rc[4], rd[4], ns = 0, nr = 0;
    for (int q = 0; q < S; q++) {
        sc[q] = q + 1, sd[q] = ns, ns += q + 1;
        rc[q] = R + 1, rd[q] = nr, nr += R + 1;
        for (int i = 0; i < sc[q]; i++) as[sd[q] + i] = ibig + R * 1000003 + q * 7 + i;
    }
    OK(mpt_alltoallv_dt(&world, as, sc, sd, ar, rc, rd, MPT_I32, &err));
    int bad = 0;
    for (int q = 0; q < S; q++)
        for (int i = 0; i <= R; i++) bad += ar[rd[q] + i] != ibig + q * 1000003 + R * 7 + i;
    CHECK(bad == 0, "rank %d: i32 alltoallv wrong in %d places", R, bad);

    /* bf16 moves as 16-bit words but is never summed */
    uint16_t hw[2] = {(uint16_t)(0x3f80 + R), 0x4000}, hg[8];
    OK(mpt_allgather_dt(&world, hw, hg, 2, MPT_BF16, &err));
    bad = 0;
    for (int q = 0; q < S; q++) bad += hg[2 * q] != 0x3f80 + q || hg[2 * q + 1] != 0x4000;
    CHECK(bad == 0, "rank %d: bf16 allgather wrong in %d places", R, bad);
    CHECK(mpt_allreduce_dt(&world, hw, 2, MPT_BF16, MPT_RED_SUM, &err) == MPT_ERR_RUN &&
              strstr(err.msg, "bf16"),
          "rank %d: a bf16 sum must fail on every rank before communicating: %s", R, err.msg);

    /* counters: bytes by element type on a fresh communicator */
    mpt_comm c;
    OK(mpt_comm_split(&world, 0, R, "typed", &c, &err));
    double x[3] = {1, 2, 3};
    int32_t y[5] = {1, 2, 3, 4, 5};
    float z[2] = {1, 2};
    OK(mpt_allreduce_dt(&c, x, 3, MPT_F64, MPT_RED_SUM, &err));
    OK(mpt_allreduce_dt(&c, y, 5, MPT_I32, MPT_RED_MAX, &err));
    OK(mpt_allreduce_sum(&c, z, 2, &err));
    OK(mpt_barrier(&c, &err));
    const mpt_comm_stats *st = &c.stats;
    CHECK(st->dtype_bytes[MPT_F64] == 24 && st->dtype_bytes[MPT_I32] == 20 &&
              st->dtype_bytes[MPT_F32] == 8 && st->dtype_bytes[MPT_BF16] == 0 &&
              st->bytes[MPT_OP_ALLREDUCE] == 52,
          "rank %d: bytes by type f64 %.0f i32 %.0f f32 %.0f bf16 %.0f (allreduce %.0f), want "
          "24 20 8 0 (52)", R, st->dtype_bytes[MPT_F64], st->dtype_bytes[MPT_I32],
          st->dtype_bytes[MPT_F32], st->dtype_bytes[MPT_BF16], st->bytes[MPT_OP_ALLREDUCE]);
    mpt_comm_free(&c);
}

/* --- point to point -------------------------------------------------------------------------- */

static void test_p2p(void) {
    int next = (R + 1) % S, prev = (R + S - 1) % S;
    enum { N = 75, BIG = 200000 };
    float send[N], recv[N], want[N];
    for (int i = 0; i < N; i++) {
        send[i] = (float)(R * 100 + i);
        want[i] = (float)(prev * 100 + i);
        recv[i] = -1;
    }
    OK(mpt_sendrecv(&world, send, N, next, recv, N, prev, 5, &err));
    CHECK(diff_("sendrecv", recv, want, N) == 0, "rank %d: sendrecv ring", R);

    if (S % 2 == 0) { /* blocking send/recv around the ring: even ranks send first */
        for (int i = 0; i < N; i++) recv[i] = -1;
        if (R % 2 == 0) {
            OK(mpt_send(&world, send, N, next, 6, &err));
            OK(mpt_recv(&world, recv, N, prev, 6, &err));
        } else {
            OK(mpt_recv(&world, recv, N, prev, 6, &err));
            OK(mpt_send(&world, send, N, next, 6, &err));
        }
        CHECK(diff_("send/recv", recv, want, N) == 0, "rank %d: blocking send/recv ring", R);
    }

    /* Nonblocking, split into 8 messages of at most 10 elements, matched in order. */
    mpt_comm_set_max_count(10);
    mpt_req r[2];
    for (int i = 0; i < N; i++) recv[i] = -1;
    OK(mpt_irecv(&world, recv, N, prev, 7, &r[0], &err));
    OK(mpt_isend(&world, send, N, next, 7, &r[1], &err));
    CHECK(r[0].n == 8 && r[1].n == 8, "rank %d: 75 elements in parts of 10 should be 8 MPI calls", R);
    OK(mpt_waitall(r, 2, &err));
    CHECK(diff_("isend/irecv split", recv, want, N) == 0, "rank %d: split isend/irecv", R);
    mpt_comm_set_max_count(0);
    mpt_req zero;
    memset(&zero, 0, sizeof zero);
    OK(mpt_wait(&zero, &err)); /* a zeroed request that never started is complete */

    /* A message past the eager limit (rendezvous path). */
    float *big = falloc_(BIG), *bigr = falloc_(BIG), *bigw = falloc_(BIG);
    for (int i = 0; i < BIG; i++) {
        big[i] = (float)(R + i % 1000);
        bigw[i] = (float)(prev + i % 1000);
    }
    OK(mpt_sendrecv(&world, big, BIG, next, bigr, BIG, prev, 8, &err));
    CHECK(diff_("big sendrecv", bigr, bigw, BIG) == 0, "rank %d: 800 kB sendrecv", R);
    free(big);
    free(bigr);
    free(bigw);

    /* The receiver expects more than was sent: the receive fails with both sizes. */
    OK(mpt_isend(&world, send, 5, R, 9, &r[1], &err));
    CHECK(mpt_recv(&world, recv, 10, R, 9, &err) == MPT_ERR_RUN && strstr(err.msg, "expected 10 floats, got 5"),
          "rank %d: short message must fail: %s", R, err.msg);
    OK(mpt_wait(&r[1], &err));
    /* An MPI error comes back as a message naming the op, group, peer and MPI's words. */
    CHECK(mpt_isend(&world, send, 1, S, 1, &r[0], &err) == MPT_ERR_RUN &&
              strstr(err.msg, "send on group world") && strstr(err.msg, "MPI_Isend failed") &&
              strstr(err.msg, "MPI_ERR_RANK"),
          "rank %d: send to rank %d: %s", R, S, err.msg);
    if (R == 0) printf("  MPI error message: %s\n", err.msg);
}

/* mpt_waitany: skips zeroed and finished requests, returns each pending one once (finished and
 * counted), then n when none is left. */
static void test_waitany(void) {
    int next = (R + 1) % S, prev = (R + S - 1) % S;
    enum { N = 40 };
    float send[N], recv[N];
    for (int i = 0; i < N; i++) {
        send[i] = (float)(R * 100 + i);
        recv[i] = -1;
    }
    mpt_req r[3];
    memset(r, 0, sizeof r);
    size_t which = 99, seen[2] = {9, 9};
    OK(mpt_waitany(r, 3, &which, &err));
    CHECK(which == 3, "rank %d: waitany over zeroed requests gave %zu, want 3", R, which);
    OK(mpt_irecv(&world, recv, N, prev, 21, &r[1], &err));
    OK(mpt_isend(&world, send, N, next, 21, &r[2], &err));
    for (int k = 0; k < 2; k++) {
        OK(mpt_waitany(r, 3, &seen[k], &err));
        CHECK(seen[k] < 3 && r[seen[k]].done, "rank %d: waitany %d gave %zu", R, k, seen[k]);
    }
    CHECK(seen[0] != seen[1] && seen[0] + seen[1] == 3, "rank %d: waitany gave %zu then %zu", R,
          seen[0], seen[1]);
    OK(mpt_waitany(r, 3, &which, &err));
    CHECK(which == 3, "rank %d: waitany with nothing pending gave %zu, want 3", R, which);
    int right = 1;
    for (int i = 0; i < N; i++) right &= recv[i] == (float)(prev * 100 + i);
    CHECK(right, "rank %d: waitany: wrong data received", R);
}

/* --- nonblocking with overlap ---------------------------------------------------------------- */

static void test_overlap(void) {
    enum { N = 50000, M = 1000 };
    float *a = falloc_(N), *wa = falloc_(N), *g = falloc_((size_t)M * S), *wg = falloc_((size_t)M * S);
    float sbuf[M], rbuf[M];
    for (int i = 0; i < N; i++) {
        a[i] = (float)(R + i % 100);
        wa[i] = (float)(S * (S - 1) / 2 + S * (i % 100));
    }
    for (int q = 0; q < S; q++)
        for (int i = 0; i < M; i++) wg[q * M + i] = (float)(q - i);
    for (int i = 0; i < M; i++) sbuf[i] = (float)(R - i);
    long calls0 = world.stats.calls[MPT_OP_ALLREDUCE];
    mpt_req r[4];
    OK(mpt_iallreduce_sum(&world, a, N, &r[0], &err));
    OK(mpt_iallgather(&world, sbuf, g, M, &r[1], &err));
    OK(mpt_irecv(&world, rbuf, M, (R + S - 1) % S, 11, &r[2], &err));
    OK(mpt_isend(&world, sbuf, M, (R + 1) % S, 11, &r[3], &err));
    /* Compute while the transfers progress; test the allreduce between slices. */
    double acc = 0;
    int done = 0;
    mpt_status st = MPT_OK;
    for (int slice = 0; slice < 200 && !done && st == MPT_OK; slice++) {
        for (int i = 0; i < 20000; i++) acc += sqrt((double)i + slice);
        st = mpt_test(&r[0], &done, &err);
    }
    CHECK(st == MPT_OK, "rank %d: mpt_test: %s", R, err.msg);
    OK(mpt_waitall(r, 4, &err));
    CHECK(acc > 0, "compute");
    OK(mpt_test(&r[0], &done, &err));
    CHECK(done == 1, "rank %d: mpt_test after completion reports done", R);
    CHECK(world.stats.calls[MPT_OP_ALLREDUCE] == calls0 + 1, "rank %d: a tested then waited request counts once", R);
    CHECK(diff_("overlap allreduce", a, wa, N) == 0, "rank %d: overlapped allreduce", R);
    CHECK(diff_("overlap allgather", g, wg, (size_t)M * S) == 0, "rank %d: overlapped allgather", R);
    CHECK(diff_("overlap ring", rbuf, wg + (size_t)((R + S - 1) % S) * M, M) == 0, "rank %d: overlapped ring", R);
    free(a);
    free(wa);
    free(g);
    free(wg);
}

/* --- agreement ------------------------------------------------------------------------------- */

static void test_agree(void) {
    strcpy(err.msg, "untouched");
    CHECK(mpt_comm_agree(&world, MPT_OK, &err) == MPT_OK && strcmp(err.msg, "untouched") == 0,
          "rank %d: all OK agrees OK and leaves err alone", R);

    mpt_status local = MPT_OK;
    if (R == S - 1) local = mpt_fail(&err, MPT_ERR_RUN, "rank %d: out of memory (test)", R);
    char want[128];
    snprintf(want, sizeof want, "rank %d: out of memory (test)", S - 1);
    mpt_status st = mpt_comm_agree(&world, local, &err);
    CHECK(st == MPT_ERR_RUN && err.status == MPT_ERR_RUN && strcmp(err.msg, want) == 0,
          "rank %d: one failing rank: got %d '%s', want '%s'", R, st, err.msg, want);

    mpt_error none; /* a NULL err works too */
    CHECK(mpt_comm_agree(&world, R == 0 ? MPT_ERR_RUN : MPT_OK, R == 0 ? NULL : &none) == MPT_ERR_RUN,
          "rank %d: agree with a NULL err", R);
    if (R != 0) CHECK(strstr(none.msg, "rank 0 failed") != NULL, "rank %d: NULL err message: %s", R, none.msg);

    if (S >= 2) { /* ranks 1.. fail: rank 1's words everywhere */
        local = R >= 1 ? mpt_fail(&err, MPT_ERR_RUN, "rank %d says no", R) : MPT_OK;
        st = mpt_comm_agree(&world, local, &err);
        CHECK(st == MPT_ERR_RUN && strcmp(err.msg, "rank 1 says no") == 0, "rank %d: lowest failing rank: %s", R, err.msg);
        /* A bad input anywhere outranks a runtime failure elsewhere, and its words go with it. */
        local = MPT_OK;
        if (R == 0) local = mpt_fail(&err, MPT_ERR_RUN, "rank 0 ran out of memory");
        if (R == S - 1) local = mpt_fail(&err, MPT_ERR_INPUT, "rank %d: bad layout", R);
        snprintf(want, sizeof want, "rank %d: bad layout", S - 1);
        st = mpt_comm_agree(&world, local, &err);
        CHECK(st == MPT_ERR_INPUT && err.status == MPT_ERR_INPUT && strcmp(err.msg, want) == 0,
              "rank %d: worst status wins: %d %s", R, st, err.msg);
    }
}

/* --- counters -------------------------------------------------------------------------------- */

static void test_counters(void) {
    mpt_comm c;
    long wcalls0 = world.stats.calls[MPT_OP_ALLREDUCE];
    OK(mpt_comm_split(&world, 0, R, "count", &c, &err));
    CHECK(c.size == S && c.rank == R && strcmp(c.name, "count") == 0, "rank %d: split of everything", R);
    CHECK(c.stats.calls[MPT_OP_ALLREDUCE] == 0 && c.stats.bytes[MPT_OP_SEND] == 0, "rank %d: new comm counters are zero", R);
    float buf[64] = {0}, out[64 * 4];
    int sc[4], sd[4];
    int a2a = 0;
    for (int q = 0; q < S; q++) {
        sc[q] = q + 1;
        sd[q] = a2a;
        a2a += q + 1;
    }
    int rcv[4], rd[4], nr = 0;
    for (int q = 0; q < S; q++) {
        rcv[q] = R + 1;
        rd[q] = nr;
        nr += R + 1;
    }
    for (int i = 0; i < 3; i++) OK(mpt_allreduce_sum(&c, buf, 10, &err));
    mpt_comm_set_max_count(3);
    OK(mpt_allreduce_sum(&c, buf, 10, &err)); /* 4 MPI calls, one counted call */
    mpt_comm_set_max_count(0);
    for (int i = 0; i < 2; i++) OK(mpt_reduce_scatter_sum(&c, buf, out, 4, &err));
    OK(mpt_allgather(&c, buf, out, 5, &err));
    OK(mpt_alltoallv(&c, buf, sc, sd, out, rcv, rd, &err));
    OK(mpt_bcast(&c, buf, 100, 0, &err));
    OK(mpt_sendrecv(&c, buf, 6, (R + 1) % S, out, 6, (R + S - 1) % S, 3, &err));
    OK(mpt_barrier(&c, &err));
    OK(mpt_comm_agree(&c, MPT_OK, &err)); /* one allreduce of 8 bytes */
    const mpt_comm_stats *s = &c.stats;
    long calls[MPT_OP_KINDS] = {0};
    double bytes[MPT_OP_KINDS] = {0};
    calls[MPT_OP_ALLREDUCE] = 5, bytes[MPT_OP_ALLREDUCE] = 4 * 10 * 4 + 8; /* 4 x 10 floats, agree */
    calls[MPT_OP_REDUCE_SCATTER] = 2, bytes[MPT_OP_REDUCE_SCATTER] = 2 * 4 * S * 4;
    calls[MPT_OP_ALLGATHER] = 1, bytes[MPT_OP_ALLGATHER] = 5 * 4;
    calls[MPT_OP_ALLTOALL] = 1, bytes[MPT_OP_ALLTOALL] = a2a * 4;
    calls[MPT_OP_BCAST] = 1, bytes[MPT_OP_BCAST] = 100;
    calls[MPT_OP_SEND] = 1, bytes[MPT_OP_SEND] = 24;
    calls[MPT_OP_RECV] = 1, bytes[MPT_OP_RECV] = 24;
    calls[MPT_OP_BARRIER] = 1, bytes[MPT_OP_BARRIER] = 0;
    for (int k = 0; k < MPT_OP_KINDS; k++) {
        CHECK(s->calls[k] == calls[k] && s->bytes[k] == bytes[k], "rank %d: %s: %ld calls %.0f bytes, want %ld %.0f",
              R, mpt_comm_op_name((mpt_comm_op)k), s->calls[k], s->bytes[k], calls[k], bytes[k]);
        CHECK(s->seconds[k] >= 0, "rank %d: %s seconds %g", R,
              mpt_comm_op_name((mpt_comm_op)k), s->seconds[k]);
    }
    CHECK(s->seconds[MPT_OP_ALLREDUCE] > 0, "rank %d: allreduce took no time", R);
    CHECK(world.stats.calls[MPT_OP_ALLREDUCE] == wcalls0, "rank %d: world counters moved", R);
    if (R == 0)
        printf("  counters of 'count': allreduce %ld calls %.0f B %.1f us\n", s->calls[MPT_OP_ALLREDUCE],
               s->bytes[MPT_OP_ALLREDUCE], 1e6 * s->seconds[MPT_OP_ALLREDUCE]);
    mpt_comm_free(&c);
    mpt_comm_free(&c); /* twice is safe */
    mpt_comm z;
    memset(&z, 0, sizeof z);
    mpt_comm_free(&z);
    mpt_comm_free(NULL);
    CHECK(strcmp(mpt_comm_op_name(MPT_OP_REDUCE_SCATTER), "reduce_scatter") == 0, "op name");
}

/* --- mesh groups ----------------------------------------------------------------------------- */

static void check_groups_(int tp, int cp, int dp, int pp, int ep) {
    mpt_layout l = {{0}};
    l.size[MPT_DIM_TP] = tp, l.size[MPT_DIM_CP] = cp, l.size[MPT_DIM_DP] = dp;
    l.size[MPT_DIM_PP] = pp, l.size[MPT_DIM_EP] = ep;
    mpt_groups g;
    mpt_status st = mpt_groups_init(&g, &l, &world, &err);
    CHECK(st == MPT_OK, "rank %d: groups tp%d cp%d dp%d pp%d ep%d: %s", R, tp, cp, dp, pp, ep, err.msg);
    if (st != MPT_OK) return;
    for (int d = 0; d < MPT_DIMS; d++) {
        mpt_comm *c = &g.dim[d];
        int n = l.size[d], want[64];
        mpt_mesh_group(&l, (mpt_dim)d, R, want);
        CHECK(c->size == n && c->rank == g.place.coords.c[d] && strcmp(c->name, mpt_dim_name((mpt_dim)d)) == 0,
              "rank %d: %s comm size %d rank %d name %s", R, mpt_dim_name((mpt_dim)d), c->size, c->rank, c->name);
        /* Members, in order: gather the world ranks along the group. */
        float me = (float)R, got[64], wantf[64];
        OK(mpt_allgather(c, &me, got, 1, &err));
        for (int i = 0; i < n; i++) wantf[i] = (float)want[i];
        CHECK(diff_(mpt_dim_name((mpt_dim)d), got, wantf, (size_t)n) == 0, "rank %d: %s members", R,
              mpt_dim_name((mpt_dim)d));
    }
    /* Mask groups (two dimensions at once): members in order, name. */
    static const mpt_dim_mask masks[] = {MPT_MASK_TP | MPT_MASK_DP, MPT_MASK_DP | MPT_MASK_CP,
                                         MPT_MASK_ALL};
    for (size_t k = 0; k < sizeof masks / sizeof *masks; k++) {
        mpt_comm c;
        char nm[32];
        OK(mpt_groups_make(&g, masks[k], &c, &err));
        mpt_mesh_mask_name(masks[k], nm, sizeof nm);
        int want[64], n = mpt_mesh_mask_group(&l, masks[k], R, want);
        float me = (float)R, got[64], wantf[64];
        CHECK(c.size == n && c.rank == mpt_mesh_mask_index(&l, masks[k], R) && strcmp(c.name, nm) == 0,
              "rank %d: mask %s comm size %d rank %d name %s", R, nm, c.size, c.rank, c.name);
        OK(mpt_allgather(&c, &me, got, 1, &err));
        for (int i = 0; i < n; i++) wantf[i] = (float)want[i];
        CHECK(diff_(nm, got, wantf, (size_t)n) == 0, "rank %d: mask %s members", R, nm);
        mpt_comm_free(&c);
    }
    /* Pipeline ring: send my world rank to the next stage, hear from the previous one. */
    float me = (float)R, from = -1;
    CHECK(g.pp_prev_world == mpt_mesh_prev(&l, MPT_DIM_PP, R) && g.pp_next_world == mpt_mesh_next(&l, MPT_DIM_PP, R),
          "rank %d: pp neighbours", R);
    CHECK(g.pp_first == (g.place.coords.c[MPT_DIM_PP] == 0) && g.pp_last == (g.place.coords.c[MPT_DIM_PP] == pp - 1),
          "rank %d: pp first/last", R);
    OK(mpt_sendrecv(&g.dim[MPT_DIM_PP], &me, 1, g.pp_next, &from, 1, g.pp_prev, 4, &err));
    CHECK(from == (float)g.pp_prev_world, "rank %d: pp ring got %g want %d", R, from, g.pp_prev_world);
    mpt_groups_free(&g);
    mpt_groups_free(&g);
}

static void test_groups(void) {
    if (S == 1) check_groups_(1, 1, 1, 1, 1);
    if (S == 2) {
        check_groups_(2, 1, 1, 1, 1);
        check_groups_(1, 1, 2, 1, 2);
        check_groups_(1, 1, 1, 2, 1);
    }
    if (S == 4) {
        check_groups_(2, 1, 2, 1, 1); /* the 2x2 layout: tp {0,1} {2,3}, dp {0,2} {1,3} */
        check_groups_(1, 2, 1, 2, 1);
        check_groups_(1, 1, 4, 1, 2);
        check_groups_(1, 1, 1, 4, 1);
    }
    if (S == 4) { /* the 2x2 layout by hand */
        mpt_layout l = {{2, 1, 2, 1, 1}};
        mpt_groups g;
        OK(mpt_groups_init(&g, &l, &world, &err));
        float v = (float)R;
        OK(mpt_allreduce_sum(&g.dim[MPT_DIM_TP], &v, 1, &err));
        CHECK(v == (R < 2 ? 1.0f : 5.0f), "rank %d: tp sum %g", R, v);
        v = (float)R;
        OK(mpt_allreduce_sum(&g.dim[MPT_DIM_DP], &v, 1, &err));
        CHECK(v == (R % 2 ? 4.0f : 2.0f), "rank %d: dp sum %g", R, v);
        mpt_groups_free(&g);
    }
    /* A layout that does not fit the world fails on every rank, before any split. */
    mpt_layout bad = {{S + 1, 1, 1, 1, 1}};
    mpt_groups g;
    mpt_status st = mpt_groups_init(&g, &bad, &world, &err);
    CHECK(st == MPT_ERR_INPUT && strstr(err.msg, "launched with"), "rank %d: bad layout: %d %s", R, st, err.msg);
    mpt_groups_free(&g);
    bad = (mpt_layout){{1, 1, S, 1, S + 1}};
    st = mpt_groups_init(&g, &bad, &world, &err);
    CHECK(st == MPT_ERR_INPUT && strstr(err.msg, "does not divide"), "rank %d: bad ep: %d %s", R, st, err.msg);
    mpt_groups_free(&g);
}

/* --- the watchdog ---------------------------------------------------------------------------- */

/* No handler: a wait past the timeout fails with the message, not before the timeout (a
 * monotonic clock makes that exact, whatever the load). How long past it, and how much CPU the
 * wait used (it sleeps rather than spins), depend on the machine's load: printed, not asserted. */
static void test_watchdog_return(void) {
    mpt_comm_set_timeout(0.5);
    mpt_comm_set_step(3);
    float x;
    mpt_req r;
    OK(mpt_irecv(&world, &x, 1, R, 99, &r, &err)); /* nobody sends this */
    double t0 = now_(), c0 = cpu_now_();
    mpt_status st = mpt_wait(&r, &err);
    double wall = now_() - t0, cpu = cpu_now_() - c0;
    char want[128];
    snprintf(want, sizeof want, "rank %d: stuck for 0.5 s in recv on group world (peer %d) at step 3", R, R);
    CHECK(st == MPT_ERR_RUN && strcmp(err.msg, want) == 0, "rank %d: watchdog without handler: '%s', want '%s'",
          R, err.msg, want);
    CHECK(wall >= 0.5, "rank %d: gave up after %.3f s, before the 0.5 s timeout", R, wall);
    if (R == 0) printf("  idle wait: %.3f s of CPU in %.3f s (%.1f%%)\n", cpu, wall, 100 * cpu / wall);
    MPI_Cancel(&r.req[0]);
    MPI_Wait(&r.req[0], MPI_STATUS_IGNORE);
    mpt_comm_set_timeout(300);
    mpt_comm_set_step(0);
}

static void watchdog_abort_(const char *what) {
    fprintf(stderr, "WATCHDOG: %s\n", what);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
}

static int run_watchdog_(int recv_case) {
    mpt_comm_set_timeout(2);
    mpt_comm_set_watchdog(watchdog_abort_);
    mpt_comm_set_step(7);
    int straggler = recv_case ? 1 : S - 1;
    if (R == straggler) {
        sleep(60); /* never joins; MPI_Abort from another rank ends it */
        return 0;
    }
    float x = 1;
    if (recv_case) {
        if (R == 0) mpt_recv(&world, &x, 1, 1, 0, &err);
    } else {
        mpt_allreduce_sum(&world, &x, 1, &err);
    }
    fprintf(stderr, "rank %d: the watchdog did not fire: %s\n", R, err.msg);
    return 3;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    if (mpt_comm_world(&world, &err) != MPT_OK) {
        fprintf(stderr, "%s\n", err.msg);
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    R = world.rank;
    S = world.size;
    if (argc > 1 && strncmp(argv[1], "watchdog", 8) == 0) {
        int rc = run_watchdog_(strcmp(argv[1], "watchdog_recv") == 0);
        MPI_Finalize();
        return rc;
    }
    if (S > 4) {
        if (R == 0) fprintf(stderr, "mpi_comm: run with at most 4 ranks\n");
        MPI_Finalize();
        return 2;
    }
    struct { const char *name; void (*fn)(void); } tests[] = {
        {"allreduce", test_allreduce}, {"reduce_scatter", test_reduce_scatter},
        {"allgather", test_allgather}, {"alltoallv", test_alltoallv}, {"bcast", test_bcast},
        {"p2p", test_p2p}, {"waitany", test_waitany}, {"overlap", test_overlap}, {"agree", test_agree},
        {"counters", test_counters}, {"typed", test_typed}, {"groups", test_groups},
        {"watchdog_return", test_watchdog_return},
    };
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        double t0 = now_();
        int failed0 = check_failed;
        tests[i].fn();
        int bad = check_failed - failed0, all_bad = 0;
        MPI_Allreduce(&bad, &all_bad, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
        if (R == 0) printf("np=%d %-16s %s (%.3f s)\n", S, tests[i].name, all_bad ? "FAILED" : "ok", now_() - t0);
    }
    int counts[2] = {check_passed, check_failed}, sums[2];
    MPI_Allreduce(counts, sums, 2, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (R == 0) printf("np=%d: %d passed, %d failed (all ranks)\n", S, sums[0], sums[1]);
    mpt_comm_free(&world);
    MPI_Finalize();
    return sums[1] ? 1 : 0;
}
