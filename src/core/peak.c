/* peak.c — measured FMA peak (see peak.h). Twelve independent accumulators hide the FMA latency
 * (4 cycles x 2 ports on current x86), so the loop runs at the core's FMA throughput. */
#include "core/peak.h"

#include <immintrin.h>
#include <omp.h>
#include <stdlib.h>

#define ACC 12
#define INNER 1024

/* keeps the FMA chains observable so the compiler cannot drop them */
static volatile float sink_;

__attribute__((target("avx2,fma"))) static double run_avx2_(long iters) {
    __m256 acc[ACC], a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
    for (int i = 0; i < ACC; i++) acc[i] = _mm256_set1_ps((float)i);
    for (long it = 0; it < iters; it++)
        for (int k = 0; k < INNER; k++)
            for (int i = 0; i < ACC; i++) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
    __m256 s = acc[0];
    for (int i = 1; i < ACC; i++) s = _mm256_add_ps(s, acc[i]);
    float out[8];
    _mm256_storeu_ps(out, s);
    sink_ = out[0];
    return (double)iters * INNER * ACC * 8 * 2; /* flops done */
}

__attribute__((target("avx512f"))) static double run_avx512_(long iters) {
    __m512 acc[ACC], a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
    for (int i = 0; i < ACC; i++) acc[i] = _mm512_set1_ps((float)i);
    for (long it = 0; it < iters; it++)
        for (int k = 0; k < INNER; k++)
            for (int i = 0; i < ACC; i++) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
    __m512 s = acc[0];
    for (int i = 1; i < ACC; i++) s = _mm512_add_ps(s, acc[i]);
    float out[16];
    _mm512_storeu_ps(out, s);
    sink_ = out[0];
    return (double)iters * INNER * ACC * 16 * 2;
}

static double rate_(int threads, double seconds, int wide) {
    double total = 0.0;
#pragma omp parallel num_threads(threads) reduction(+ : total)
    {
        long iters = 8;
        double flops = 0.0, dt = 0.0;
        for (;;) { /* grow until one run lasts long enough to time */
            double t0 = omp_get_wtime();
            flops = wide ? run_avx512_(iters) : run_avx2_(iters);
            dt = omp_get_wtime() - t0;
            if (dt >= seconds || iters > (1L << 40)) break;
            iters *= dt > 0 ? (long)(seconds / dt) + 2 : 4;
        }
        total += flops / dt;
    }
    return total;
}

/* The best of several short measurements: a virtual machine's cores are sometimes shared for
 * a moment, and a single reading can come out at half the peak. */
double mpt_measure_peak_flops(int threads, double seconds) {
    __builtin_cpu_init();
    double best = 0.0, each = seconds / 5;
    for (int rep = 0; rep < 5; rep++) {
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
            double r = rate_(threads, each, 0);
            if (r > best) best = r;
        }
        if (__builtin_cpu_supports("avx512f")) {
            double r = rate_(threads, each, 1);
            if (r > best) best = r;
        }
    }
    return best;
}

/* One block of the loop above on the calling thread (the widest FMA the CPU has): the FLOPs done,
 * 0 without AVX2+FMA. plan/probe.c times blocks of it in thread CPU seconds. */
double mpt_peak_fma_block(long iters) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return run_avx512_(iters);
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return run_avx2_(iters);
    return 0.0;
}

/* ---- memory bandwidth ------------------------------------------------------------------------ */

#define BW_N_ ((size_t)16 << 20) /* floats per array: 64 MiB */

double mpt_measure_bandwidth(int threads, double seconds) {
    float *a = malloc(BW_N_ * sizeof *a), *b = malloc(BW_N_ * sizeof *b);
    float *c = malloc(BW_N_ * sizeof *c);
    double best = 0.0;
    if (!a || !b || !c) goto cleanup;
    if (threads < 1) threads = 1;
    /* first touch on the threads that stream them later */
#pragma omp parallel for simd schedule(static) num_threads(threads)
    for (size_t i = 0; i < BW_N_; i++) a[i] = 0.0f, b[i] = 1.0f, c[i] = 2.0f;
    double t_end = omp_get_wtime() + seconds;
    for (int pass = 0; pass < 3 || omp_get_wtime() < t_end; pass++) {
        float s = 0.5f + 1e-3f * (float)pass;
        double t0 = omp_get_wtime();
#pragma omp parallel for simd schedule(static) num_threads(threads)
        for (size_t i = 0; i < BW_N_; i++) a[i] = b[i] + s * c[i];
        double dt = omp_get_wtime() - t0, r = dt > 0 ? 12.0 * (double)BW_N_ / dt : 0.0;
        if (r > best) best = r;
        if (pass > 1000) break;
    }
    sink_ = a[BW_N_ / 2];
cleanup:
    free(a);
    free(b);
    free(c);
    return best;
}
