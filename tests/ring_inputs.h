/* ring_inputs.h — the inputs and checks shared by the MPI ring tests (mpi_ring.c for the dp
 * ring, mpi_tp_ring.c for the tp sums). Every rank generates every rank's input (a seeded
 * generator of non-integer floats), so each computes the exact sum in double itself. */
#ifndef MPT_TESTS_RING_INPUTS_H
#define MPT_TESTS_RING_INPUTS_H

#include <math.h>
#include <mpi.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Element i of rank q's input for seed: a non-integer in (-1, 1), from a 64-bit mix. */
static float ring_input_(uint64_t seed, int q, size_t i) {
    uint64_t x = seed * 0x9E3779B97F4A7C15ull ^ ((uint64_t)q << 40) ^ (uint64_t)i;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return (float)((double)(x >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

/* Rank q's input (n), malloc'ed: the caller frees it. */
static float *ring_fill_(uint64_t seed, int q, size_t n) {
    float *b = malloc((n ? n : 1) * sizeof *b);
    for (size_t i = 0; i < n; i++) b[i] = ring_input_(seed, q, i);
    return b;
}

/* Largest |got - exact| / max(1, sum|x|) over elements [lo, hi) of the sum over `ranks`
 * ranks' inputs. */
static double ring_err_(uint64_t seed, int ranks, const float *got, size_t lo, size_t hi) {
    double worst = 0.0;
    for (size_t i = lo; i < hi; i++) {
        double sum = 0.0, mag = 0.0;
        for (int q = 0; q < ranks; q++) {
            double x = ring_input_(seed, q, i);
            sum += x;
            mag += fabs(x);
        }
        double e = fabs((double)got[i] - sum) / (mag > 1.0 ? mag : 1.0);
        if (e > worst) worst = e;
    }
    return worst;
}

/* 1 when every rank's buf[0..n) has the same bytes as rank 0's. Every rank of the world calls. */
static int ring_same_everywhere_(const float *buf, size_t n) {
    float *r0 = malloc((n ? n : 1) * sizeof *r0);
    memcpy(r0, buf, n * sizeof *r0);
    MPI_Bcast(r0, (int)n, MPI_FLOAT, 0, MPI_COMM_WORLD);
    int same = memcmp(r0, buf, n * sizeof *r0) == 0, all = 0;
    MPI_Allreduce(&same, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    free(r0);
    return all;
}

#endif
