/* peak.c — measured FMA peak (see peak.h). Twelve independent accumulators hide the FMA latency
 * (4 cycles x 2 ports on current x86), so the loop runs at the core's FMA throughput. */
#include "core/peak.h"

#include <immintrin.h>
#include <omp.h>

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
