/* mpi_pingpong.c — the shared-memory message costs of cpu-here, measured with real MPI messages
 * between two ranks of this machine, as the runtime's rings and pipeline send them (nonblocking
 * receive posted first, then the send, both directions at once; parallel/dp_ring.c, pp.c):
 *   intra_lat   half the round trip of an 8-byte ping-pong (seconds per message step)
 *   intra_bw    bytes per second per direction while both ranks exchange S bytes at once:
 *               the slope (S2 - S1) / (t(S2) - t(S1)) between 1 MiB and 4 MiB messages (the
 *               latency and the first copies' cache effects drop out)
 * Each figure is the median of 9 rounds; a round times many repetitions back to back. Prints
 * one JSON object {"intra_lat": s, "intra_bw": B/s} on rank 0, for plan/cluster.c's fields of
 * the same names (bench/plan_vs_measured.sh writes them into the cpu-here calibration).
 * Build and run: mpicc -O2 -o pingpong bench/mpi_pingpong.c && mpirun -np 2 ./pingpong */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { ROUNDS = 9 };

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
    double t0 = MPI_Wtime();
    for (int i = 0; i < reps; i++) {
        MPI_Request rq[2];
        MPI_Irecv(rx, bytes, MPI_BYTE, peer, 1, MPI_COMM_WORLD, &rq[0]);
        MPI_Isend(tx, bytes, MPI_BYTE, peer, 1, MPI_COMM_WORLD, &rq[1]);
        MPI_Waitall(2, rq, MPI_STATUSES_IGNORE);
    }
    return (MPI_Wtime() - t0) / reps;
}

/* Seconds of half a round trip of `bytes` (mean of reps). */
static double pingpong_(char *buf, int bytes, int reps, int rank, int peer) {
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime();
    for (int i = 0; i < reps; i++) {
        if (rank == 0) {
            MPI_Send(buf, bytes, MPI_BYTE, peer, 2, MPI_COMM_WORLD);
            MPI_Recv(buf, bytes, MPI_BYTE, peer, 2, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        } else {
            MPI_Recv(buf, bytes, MPI_BYTE, peer, 2, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            MPI_Send(buf, bytes, MPI_BYTE, peer, 2, MPI_COMM_WORLD);
        }
    }
    return (MPI_Wtime() - t0) / reps / 2;
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
    double lat[ROUNDS], bw[ROUNDS];
    exchange_(tx, rx, s2, 4, peer); /* warm-up: first touch, the transport's buffers */
    pingpong_(tx, 8, 100, rank, peer);
    for (int r = 0; r < ROUNDS; r++) {
        lat[r] = pingpong_(tx, 8, 2000, rank, peer);
        double t1 = exchange_(tx, rx, s1, 32, peer), t2 = exchange_(tx, rx, s2, 8, peer);
        bw[r] = t2 > t1 ? (double)(s2 - s1) / (t2 - t1) : (double)s2 / t2;
    }
    if (rank == 0)
        printf("{\"intra_lat\": %.4g, \"intra_bw\": %.4g}\n", median_(lat, ROUNDS),
               median_(bw, ROUNDS));
    free(tx);
    free(rx);
    MPI_Finalize();
    return 0;
}
