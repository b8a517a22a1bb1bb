/* mpi_tp_ring.c — the tensor-parallel sums (parallel/tp_ring.c) and the ring of any count they
 * use (parallel/dp_ring.h, mpt_ring_start_any) under mpirun, driven by tests/t_tp_ring.sh with
 * 1 to 4 ranks. Every rank generates every rank's input (a seeded generator of non-integer
 * floats), so each computes the exact sum in double itself. Each case checks that the result
 * is within 1e-6 * sum|x| of the exact sum and that every rank holds the same bits:
 *   any count     mpt_ring_start_any over n = 0, 1, 2, 3, 5, 7, 37, 1001, 65537 (odd, and
 *                 below the rank count: empty chunks); with p dividing n, the same bits as
 *                 mpt_ring_start (the dp ring, unchanged)
 *   sums in set   four rings of odd row chunks in flight at once, moved by progress calls and
 *                 finished by end; the blocking mpt_tp_ring_sum
 *   row-parallel  mpt_tp_row_parallel_matmul (1 and 3 chunks) against the sum over ranks of
 *                 X_q W_q in double; its epilogue given every row once, in order, summed;
 *                 mpt_tp_rows_allreduce with a fn that writes the rows and a rest that checks
 *                 it runs over every chunk, in row order, after the last fn */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ring_inputs.h"
#include "comm/comm.h"
#include "parallel/tp.h"

static int R, S; /* world rank and size */
static mpt_comm world;
static mpt_error err;

#define OK(call) CHECK((call) == MPT_OK, "rank %d: %s: %s", R, #call, err.msg)

static void test_any_count(void) {
    static const size_t ns[] = {0, 1, 2, 3, 5, 7, 37, 1001, 65537};
    for (size_t t = 0; t < sizeof ns / sizeof ns[0]; t++) {
        size_t n = ns[t];
        uint64_t seed = 101 + t;
        float *buf = ring_fill_(seed, R, n), *tmp = malloc((n / (size_t)S + 1) * sizeof *tmp);
        mpt_ring g;
        OK(mpt_ring_start_any(&g, &world, MPT_RING_ALLREDUCE, buf, n, tmp, 3, &err));
        OK(mpt_ring_wait(&g, &err));
        double e = ring_err_(seed, S, buf, 0, n);
        CHECK(e <= 1e-6, "rank %d: any-count ring n=%zu: error %g", R, n, e);
        CHECK(ring_same_everywhere_(buf, n), "rank %d: any-count ring n=%zu: bits differ", R, n);
        if (n % (size_t)S == 0) { /* the dp ring's own start: the same messages, the same bits */
            float *b2 = ring_fill_(seed, R, n);
            OK(mpt_ring_start(&g, &world, MPT_RING_ALLREDUCE, b2, n, tmp, 3, &err));
            OK(mpt_ring_wait(&g, &err));
            CHECK(memcmp(buf, b2, n * sizeof *buf) == 0,
                  "rank %d: n=%zu: start_any and start differ", R, n);
            free(b2);
        }
        free(buf);
        free(tmp);
    }
    if (R == 0) printf("np=%d any-count rings: n = 0 .. 65537 summed\n", S);
}

static void test_sums_in_flight(void) {
    size_t N = 37, C = 13, n = N * C, k = 4;
    float *buf = ring_fill_(201, R, n);
    mpt_tp_sums s;
    OK(mpt_tp_sums_begin(&s, &world, n, k, &err));
    for (size_t c = 0; c < k; c++) {
        size_t r0 = N * c / k, r1 = N * (c + 1) / k;
        OK(mpt_tp_sums_progress(&s, &err));
        OK(mpt_tp_sums_start(&s, buf + r0 * C, (r1 - r0) * C, &err));
    }
    for (int i = 0; i < 100; i++) OK(mpt_tp_sums_progress(&s, &err));
    OK(mpt_tp_sums_end(&s, &err));
    double e = ring_err_(201, S, buf, 0, n);
    CHECK(e <= 1e-6, "rank %d: four rings in flight: error %g", R, e);
    CHECK(ring_same_everywhere_(buf, n), "rank %d: four rings in flight: bits differ", R);
    free(buf);
    /* a fifth ring is refused, before any message */
    float one[4] = {0};
    OK(mpt_tp_sums_begin(&s, &world, 4 * 5, 4, &err));
    for (int c = 0; c < 4; c++) OK(mpt_tp_sums_start(&s, one + c, 1, &err));
    mpt_status st = mpt_tp_sums_start(&s, one, 1, &err);
    CHECK(st == MPT_ERR_RUN || S == 1, "rank %d: a fifth ring was accepted", R);
    OK(mpt_tp_sums_end(&s, &err));
    size_t nb = 300001;
    float *b = ring_fill_(202, R, nb);
    OK(mpt_tp_ring_sum(&world, b, nb, &err));
    e = ring_err_(202, S, b, 0, nb);
    CHECK(e <= 1e-6, "rank %d: blocking ring sum: error %g", R, e);
    CHECK(ring_same_everywhere_(b, nb), "rank %d: blocking ring sum: bits differ", R);
    free(b);
}

/* out (N, OC) = sum over ranks q of X_q (N, C) W_q (C, OC), in double (X_q from seed, W_q
 * from seed + 1000). */
static double *rowpar_ref_(uint64_t seed, size_t N, int C, int OC) {
    double *ref = calloc(N * (size_t)OC, sizeof *ref);
    for (int q = 0; q < S; q++)
        for (size_t i = 0; i < N; i++)
            for (int c = 0; c < C; c++) {
                double x = ring_input_(seed, q, i * (size_t)C + (size_t)c);
                for (int o = 0; o < OC; o++)
                    ref[i * (size_t)OC + (size_t)o] +=
                        x * ring_input_(seed + 1000, q, (size_t)c * (size_t)OC + (size_t)o);
            }
    return ref;
}

/* The row-parallel epilogue: copies the rows it is given (which must be summed already) and
 * counts how often each row was given and whether in row order. */
typedef struct { const float *out; float *copy; int *seen; size_t OC, next; int order_ok; } epi_ctx;
static void epi_copy_(void *p, size_t r0, size_t n) {
    epi_ctx *e = p;
    if (r0 != e->next) e->order_ok = 0;
    e->next = r0 + n;
    memcpy(e->copy + r0 * e->OC, e->out + r0 * e->OC, n * e->OC * sizeof *e->copy);
    for (size_t i = r0; i < r0 + n; i++) e->seen[i]++;
}

static void test_row_parallel(void) {
    static const struct { size_t N; int C, OC; } cases[] = {{5, 7, 3}, {203, 17, 300}};
    for (size_t t = 0; t < 2; t++) {
        size_t N = cases[t].N;
        int C = cases[t].C, OC = cases[t].OC;
        uint64_t seed = 301 + t;
        float *x = ring_fill_(seed, R, N * (size_t)C), *w = ring_fill_(seed + 1000, R, (size_t)C * (size_t)OC);
        float *out = malloc(N * (size_t)OC * sizeof *out);
        float *copy = calloc(N * (size_t)OC, sizeof *copy);
        int *seen = calloc(N, sizeof *seen);
        epi_ctx e = {.out = out, .copy = copy, .seen = seen, .OC = (size_t)OC, .order_ok = 1};
        OK(mpt_tp_row_parallel_matmul(&world, out, x, w, N, C, OC, epi_copy_, &e, &err));
        size_t once = 0;
        for (size_t i = 0; i < N; i++) once += seen[i] == 1;
        CHECK(once == N && e.order_ok, "rank %d: row-parallel N=%zu: epilogue saw %zu of %zu rows"
              " once, in order %d", R, N, once, N, e.order_ok);
        CHECK(!memcmp(copy, out, N * (size_t)OC * sizeof *out),
              "rank %d: row-parallel N=%zu: the epilogue ran before its rows' sum", R, N);
        free(copy);
        free(seen);
        double *ref = rowpar_ref_(seed, N, C, OC), worst = 0.0;
        for (size_t i = 0; i < N * (size_t)OC; i++) {
            double d = fabs(out[i] - ref[i]) / (fabs(ref[i]) > 1.0 ? fabs(ref[i]) : 1.0);
            if (d > worst) worst = d;
        }
        CHECK(worst <= 1e-5, "rank %d: row-parallel GEMM N=%zu: error %g", R, N, worst);
        CHECK(ring_same_everywhere_(out, N * (size_t)OC), "rank %d: row-parallel N=%zu: bits", R, N);
        if (R == 0)
            printf("np=%d row-parallel GEMM %zux%dx%d in %zu chunks: max rel error %.3g\n", S, N,
                   C, OC, mpt_tp_overlap_chunks(N, OC), worst);
        free(x);
        free(w);
        free(out);
        free(ref);
    }
}

/* mpt_tp_rows_allreduce: fn writes rank R's rows [r0, r0+n) of ring_input_(401), chunks in row
 * order; rest records that it ran on the same chunks in row order, each after every fn (the
 * weight gradient behind all the input gradient's chunks). */
typedef struct { float *buf; size_t C, N; size_t fn_rows, rest_rows; int order_ok; } rows_ctx;
static void rows_fn_(void *p, size_t r0, size_t n) {
    rows_ctx *c = p;
    for (size_t i = r0 * c->C; i < (r0 + n) * c->C; i++) c->buf[i] = ring_input_(401, R, i);
    if (c->rest_rows != 0 || r0 != c->fn_rows) c->order_ok = 0;
    c->fn_rows += n;
}
static void rows_rest_(void *p, size_t r0, size_t n) {
    rows_ctx *c = p;
    if (r0 != c->rest_rows || c->fn_rows != c->N) c->order_ok = 0;
    c->rest_rows += n;
}

static void test_rows_allreduce(void) {
    size_t N = 301, C = 129; /* 155 kB: 2 chunks */
    rows_ctx c = {malloc(N * C * sizeof(float)), C, N, 0, 0, 1};
    OK(mpt_tp_rows_allreduce(&world, c.buf, N, C, rows_fn_, rows_rest_, &c, &err));
    CHECK(c.fn_rows == N && c.rest_rows == N && c.order_ok,
          "rank %d: rows_allreduce ran fn over %zu rows, rest over %zu (order ok %d)", R,
          c.fn_rows, c.rest_rows, c.order_ok);
    double e = ring_err_(401, S, c.buf, 0, N * C);
    CHECK(e <= 1e-6, "rank %d: rows_allreduce: error %g", R, e);
    CHECK(ring_same_everywhere_(c.buf, N * C), "rank %d: rows_allreduce: bits differ", R);
    free(c.buf);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    if (mpt_comm_world(&world, &err) != MPT_OK) {
        fprintf(stderr, "%s\n", err.msg);
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    R = world.rank;
    S = world.size;
    test_any_count();
    test_sums_in_flight();
    test_row_parallel();
    test_rows_allreduce();
    int counts[2] = {check_passed, check_failed}, sums[2];
    MPI_Allreduce(counts, sums, 2, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (R == 0) printf("np=%d: %d passed, %d failed (all ranks)\n", S, sums[0], sums[1]);
    mpt_comm_free(&world);
    MPI_Finalize();
    return sums[1] ? 1 : 0;
}
