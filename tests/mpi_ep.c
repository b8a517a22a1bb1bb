/* mpi_ep.c — expert dispatch and combine (parallel/ep.h) under mpirun (tests/t_moe.sh runs it
 * on 2 and 3 ranks): the world is one ep group with 2 experts per rank. Each case crafts every
 * rank's rows (sorted by expert) and checks exactly which rows each rank receives, in which
 * order (sources in rank order, each source's rows in its order) with which local expert
 * indices, and that combine brings each row's answer back to the row that sent it. Cases:
 * every rank sends to every rank; rank 0 sends nothing; nobody sends to rank 1 (a rank with
 * experts that get no token still joins every collective); nobody sends anything. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "comm/comm.h"
#include "parallel/ep.h"

enum { D_ = 3, EL_ = 2, MAXR_ = 64 };

/* How many rows source s sends to expert e in case c (a deterministic pattern). */
static int rows_(int c, int s, int e, int S) {
    int q = e / EL_;
    switch (c) {
    case 0: return 1 + (s + e) % 3;                  /* everyone to everyone */
    case 1: return s == 0 ? 0 : 1 + (s * e) % 2;     /* rank 0 sends nothing */
    case 2: return q == 1 % S ? 0 : 2 + (e + s) % 2; /* rank 1 receives nothing */
    default: return 0;                               /* nothing at all */
    }
}

/* The value of element i of the k-th row source s sends to expert e. */
static float val_(int s, int e, int k, int i) { return (float)(1000 * s + 100 * e + 10 * k + i); }

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    mpt_comm world;
    mpt_error err = {0};
    if (mpt_comm_world(&world, &err) != MPT_OK) {
        fprintf(stderr, "%s\n", err.msg);
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    int R = world.rank, S = world.size, E = EL_ * S;
    mpt_ep ep;
    CHECK(mpt_ep_init(&ep, &world, E, &err) == MPT_OK, "ep init: %s", err.msg);
    mpt_par_ops ops;
    memset(&ops, 0, sizeof ops);
    mpt_ep_ops(&ops, &ep);
    for (int c = 0; c < 4; c++) {
        float x[MAXR_ * D_], recv[4 * MAXR_ * D_], back[4 * MAXR_ * D_], y[MAXR_ * D_];
        int32_t ex[MAXR_], rex[4 * MAXR_];
        size_t n = 0, nr = 99;
        for (int e = 0; e < E; e++)
            for (int k = 0; k < rows_(c, R, e, S); k++, n++) {
                ex[n] = e;
                for (int i = 0; i < D_; i++) x[n * D_ + i] = val_(R, e, k, i);
            }
        CHECK(ops.expert_dispatch(ops.ep_ctx, x, ex, n, D_, recv, rex, &nr, &err) == MPT_OK,
              "case %d dispatch: %s", c, err.msg);
        /* expected: from each source in rank order, its rows for my experts in its order */
        size_t at = 0;
        int bad = 0;
        for (int s = 0; s < S; s++)
            for (int j = 0; j < EL_; j++) {
                int e = R * EL_ + j;
                for (int k = 0; k < rows_(c, s, e, S); k++, at++) {
                    if (at >= nr) { bad = 1; continue; }
                    if (rex[at] != j) bad = 1;
                    for (int i = 0; i < D_; i++)
                        if (recv[at * D_ + i] != val_(s, e, k, i)) bad = 1;
                }
            }
        CHECK(!bad && at == nr, "case %d rank %d: received %zu rows, expected %zu, contents %s", c,
              R, nr, at, bad ? "wrong" : "right");
        /* each expert answers 2x + its local index; combine returns the answers in order */
        for (size_t r = 0; r < nr; r++)
            for (int i = 0; i < D_; i++) back[r * D_ + i] = 2 * recv[r * D_ + i] + (float)rex[r];
        CHECK(ops.expert_combine(ops.ep_ctx, back, nr, y, n, D_, &err) == MPT_OK,
              "case %d combine: %s", c, err.msg);
        bad = 0;
        for (size_t r = 0; r < n; r++)
            for (int i = 0; i < D_; i++)
                if (y[r * D_ + i] != 2 * x[r * D_ + i] + (float)(ex[r] % EL_)) bad = 1;
        CHECK(!bad, "case %d rank %d: combine did not return the rows in order", c, R);
    }
    /* rows out of expert order are refused (the caller sorts them) */
    if (S > 1) {
        float x[2 * D_] = {0}, recv[8 * D_];
        int32_t ex[2] = {EL_, 0}, rex[8];
        size_t nr = 0;
        CHECK(ops.expert_dispatch(ops.ep_ctx, x, ex, 2, D_, recv, rex, &nr, &err) == MPT_ERR_RUN,
              "unsorted rows are refused");
    }
    mpt_ep_free(&ep);
    mpt_ep_free(NULL);
    int counts[2] = {check_passed, check_failed}, sums[2];
    MPI_Allreduce(counts, sums, 2, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (R == 0) printf("mpi_ep np=%d: %d passed, %d failed (all ranks)\n", S, sums[0], sums[1]);
    mpt_comm_free(&world);
    MPI_Finalize();
    return sums[1] ? 1 : 0;
}
