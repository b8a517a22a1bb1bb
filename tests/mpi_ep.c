/* mpi_ep.c — expert dispatch and combine (parallel/ep.h) under mpirun (tests/t_moe.sh runs it
 * on 2 and 3 ranks): the world is one ep group with 2 experts per rank. Each case crafts every
 * rank's rows (sorted by expert) and checks exactly which rows each rank receives, in which
 * order (sources in rank order, each source's rows in its order) with which local expert
 * indices, and that combine brings each row's answer back to the row that sent it. Cases:
 * every rank sends to every rank; rank 0 sends nothing; nobody sends to rank 1 (a rank with
 * experts that get no token still joins every collective); nobody sends anything.
 * The receive bound (model/moe.h): a crafted router that sends every token to expert 0 (rank
 * 0's) makes rank 0 receive every rank's rows; under --moe-dropless-bound 1 (rows of its own
 * N*K) every rank fails with the same message before any row moves, and under the default
 * worst-case bound the same routing runs. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "comm/comm.h"
#include "model/moe.h"
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
        CHECK(ops.expert_dispatch(ops.ep_ctx, x, ex, n, D_, 4 * MAXR_, recv, rex, &nr, &err) == MPT_OK,
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
        CHECK(ops.expert_dispatch(ops.ep_ctx, x, ex, 2, D_, 8, recv, rex, &nr, &err) == MPT_ERR_RUN,
              "unsorted rows are refused");
    }
    /* the crafted skewed router through the MoE block: N tokens x = e_0, router column 0 = e_0 */
    if (S > 1) {
        enum { N_ = 4, DM_ = 4, F_ = 8 };
        mpt_config cfg = {.d_model = DM_, .ffn = F_, .experts = E, .top_k = 1,
                          .aux_loss_coef = 0.01f};
        float *router = calloc((size_t)DM_ * E, sizeof *router), *ew[4 * EL_];
        for (int k = 0; k < 4 * EL_; k++) ew[k] = calloc((size_t)DM_ * F_, sizeof(float));
        router[0] = 1.0f; /* [D, E] row 0, column 0 */
        float *w[1 + 4 * EL_] = {router};
        for (int k = 0; k < 4 * EL_; k++) w[1 + k] = ew[k];
        float x[N_ * DM_] = {0}, out[N_ * DM_];
        for (int t = 0; t < N_; t++) x[t * DM_] = 1.0f;
        for (int f = 1; f >= 0; f--) { /* bound 1 x N*K, then the worst case (0) */
            cfg.dropless_bound = (float)f;
            mpt_moe_block b = {.cfg = &cfg, .ops = &ops, .ep = S, .ep_rank = R, .w = w};
            size_t na = mpt_moe_act_elems(&cfg, N_, S), nw = mpt_moe_work_elems(&cfg, N_, S, 0);
            CHECK(mpt_moe_max_rows(&cfg, N_, S) == (f ? (size_t)N_ : (size_t)(S * N_)),
                  "bound %d: %zu rows planned", f, mpt_moe_max_rows(&cfg, N_, S));
            float *act = calloc(na, sizeof *act), *work = calloc(nw, sizeof *work);
            mpt_error e2 = {0};
            mpt_status st = mpt_moe_forward(&b, out, x, N_, act, work, 1.0f, NULL, &e2);
            if (f)
                CHECK(st == MPT_ERR_RUN && strstr(e2.msg, "ep rank 0 would receive") &&
                          strstr(e2.msg, "--moe-dropless-bound"),
                      "rank %d: skewed routing over the bound fails cleanly: %s", R, e2.msg);
            else
                CHECK(st == MPT_OK, "rank %d: skewed routing within the worst case: %s", R, e2.msg);
            free(act);
            free(work);
        }
        if (R == 0) printf("skewed router: %d rows for ep rank 0 against a bound of %d\n",
                           S * N_, N_);
        free(router);
        for (int k = 0; k < 4 * EL_; k++) free(ew[k]);
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
