/* mpi_pingpong.c — the shared-memory message costs of cpu-here, measured with real MPI messages
 * between two ranks of this machine, as the runtime's rings and pipeline send them (nonblocking
 * receive posted first, then the send, both directions at once; parallel/dp_ring.c, pp.c):
 *   intra_lat   half the round trip of an 8-byte ping-pong (seconds per message step)
 *   intra_bw    bytes per second per direction while both ranks exchange S bytes at once:
 *               the slope (S2 - S1) / (t(S2) - t(S1)) between 1 MiB and 4 MiB messages (the
 *               latency and the first copies' cache effects drop out)
 *   mpi_allreduce_bw, mpi_reduce_scatter_bw, mpi_allgather_bw   the same for the library's
 *               nonblocking collectives as comm/comm_collective.c posts them (the
 *               tensor-parallel layers' all-reduce, sp's reduce-scatter and all-gather),
 *               expressed as the link bandwidth of cost.h's formula at n = 2 (all-reduce
 *               b / bw, the others b / (2 bw))
 *   mpi_alltoall_bw  the same for MPI_Ialltoallv as parallel/ep.c's dispatch and combine post
 *               it (comm/comm_collective.c, then waited): each rank's buffer of b bytes, half
 *               to itself and half to the other rank (balanced routing), as the link
 *               bandwidth of cost_moe.h's (n-1)/n b / bw at n = 2
 * Timed in CPU seconds of each rank (the mean of the two), like the kernel figures. Each
 * figure is the median of 9 rounds; a round times many repetitions back to back. Prints
 * one JSON object of those fields on rank 0, for plan/cluster.c's fields of
 * the same names (bench/plan_vs_measured.sh writes them into the cpu-here calibration).
 * Build and run: mpicc -O2 -o pingpong bench/mpi_pingpong.c && mpirun -np 2 ./pingpong */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { ROUNDS = 9 };

/* CPU seconds of this rank (a rank waiting in MPI polls: its CPU seconds are its wall seconds
 * on a core of its own, and leave out the time other jobs hold the core, as cpu-here's kernel
 * figures and the bench's cpu share do). */
static double now_(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* The two ranks' mean of a time. */
static double mean_(double t) {
    double s = 0;
    MPI_Allreduce(&t, &s, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    return s / 2;
}

static int cmp_(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median_(double *t, int n) {
    qsort(t, (size_t)n, sizeof *t, cmp_);
    return t[n / 2];
}

/* Seconds of one exchange of `bytes` each way between ranks 0 and 1 (mean of reps). */
static double exchange_(char *tx, char *rx, int bytes, int reps, int peer) {
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = now_();
    for (int i = 0; i < reps; i++) {
        MPI_Request rq[2];
        MPI_Irecv(rx, bytes, MPI_BYTE, peer, 1, MPI_COMM_WORLD, &rq[0]);
        MPI_Isend(tx, bytes, MPI_BYTE, peer, 1, MPI_COMM_WORLD, &rq[1]);
        MPI_Waitall(2, rq, MPI_STATUSES_IGNORE);
    }
    return mean_((now_() - t0) / reps);
}

/* Seconds of half a round trip of `bytes` (mean of reps). */
static double pingpong_(char *buf, int bytes, int reps, int rank, int peer) {
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = now_();
    for (int i = 0; i < reps; i++) {
        if (rank == 0) {
            MPI_Send(buf, bytes, MPI_BYTE, peer, 2, MPI_COMM_WORLD);
            MPI_Recv(buf, bytes, MPI_BYTE, peer, 2, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        } else {
            MPI_Recv(buf, bytes, MPI_BYTE, peer, 2, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            MPI_Send(buf, bytes, MPI_BYTE, peer, 2, MPI_COMM_WORLD);
        }
    }
    return mean_((now_() - t0) / reps / 2);
}

/* Seconds of one nonblocking collective as comm/comm_collective.c posts it (in place, then
 * waited): op 0 MPI_Iallreduce of `bytes` floats' bytes, 1 MPI_Ireduce_scatter_block, 2
 * MPI_Iallgather, 3 MPI_Ialltoallv of half the buffer to each rank (the whole buffer `bytes`,
 * as MPI counts it; mean of reps). */
static double coll_(float *buf, float *out, int op, int bytes, int reps) {
    int n = bytes / 4, half = n / 2;
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = now_();
    for (int i = 0; i < reps; i++) {
        MPI_Request rq;
        if (op == 0)
            MPI_Iallreduce(MPI_IN_PLACE, buf, n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &rq);
        else if (op == 1)
            MPI_Ireduce_scatter_block(buf, out, half, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &rq);
        else if (op == 2)
            MPI_Iallgather(MPI_IN_PLACE, half, MPI_FLOAT, buf, half, MPI_FLOAT, MPI_COMM_WORLD,
                           &rq);
        else {
            int cnt[2] = {half, half}, dsp[2] = {0, half};
            MPI_Ialltoallv(buf, cnt, dsp, MPI_FLOAT, out, cnt, dsp, MPI_FLOAT, MPI_COMM_WORLD,
                           &rq);
        }
        MPI_Wait(&rq, MPI_STATUS_IGNORE);
    }
    return mean_((now_() - t0) / reps);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank = 0, size = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size != 2) {
        if (rank == 0) fprintf(stderr, "mpi_pingpong: run on exactly 2 ranks\n");
        MPI_Finalize();
        return 2;
    }
    const int s1 = 1 << 20, s2 = 4 << 20;
    char *tx = malloc((size_t)s2), *rx = malloc((size_t)s2);
    if (!tx || !rx) MPI_Abort(MPI_COMM_WORLD, 1);
    memset(tx, 1, (size_t)s2);
    memset(rx, 0, (size_t)s2);
    int peer = 1 - rank;
    double lat[ROUNDS], bw[ROUNDS], cbw[4][ROUNDS];
    float *fb = (float *)(void *)tx, *fo = (float *)(void *)rx;
    exchange_(tx, rx, s2, 4, peer); /* warm-up: first touch, the transport's buffers */
    pingpong_(tx, 8, 100, rank, peer);
    for (int r = 0; r < ROUNDS; r++) {
        lat[r] = pingpong_(tx, 8, 2000, rank, peer);
        double t1 = exchange_(tx, rx, s1, 32, peer), t2 = exchange_(tx, rx, s2, 8, peer);
        bw[r] = t2 > t1 ? (double)(s2 - s1) / (t2 - t1) : (double)s2 / t2;
        for (int op = 0; op < 4; op++) { /* the link bandwidth of cost.h's formula at n = 2:
                                          * all-reduce b/bw, the others b/(2 bw) */
            double c1 = coll_(fb, fo, op, s1, 16), c2 = coll_(fb, fo, op, s2, 4);
            double k = op == 0 ? 1.0 : 0.5;
            cbw[op][r] = c2 > c1 ? k * (s2 - s1) / (c2 - c1) : k * s2 / c2;
        }
    }
    if (rank == 0)
        printf("{\"intra_lat\": %.4g, \"intra_bw\": %.4g, \"mpi_allreduce_bw\": %.4g, "
               "\"mpi_reduce_scatter_bw\": %.4g, \"mpi_allgather_bw\": %.4g, "
               "\"mpi_alltoall_bw\": %.4g}\n",
               median_(lat, ROUNDS), median_(bw, ROUNDS), median_(cbw[0], ROUNDS),
               median_(cbw[1], ROUNDS), median_(cbw[2], ROUNDS), median_(cbw[3], ROUNDS));
    free(tx);
    free(rx);
    MPI_Finalize();
    return 0;
}
