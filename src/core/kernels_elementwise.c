/* kernels_elementwise.c — residual adds, bias rows and the threaded zeroing of gradient buffers
 * (see kernels.h). */
#include "core/kernels.h"

#include <string.h>

#include "core/kernels_internal.h"

/* ---- elementwise ---------------------------------------------------------------------------- */

void mpt_residual_forward(float *out, const float *a, const float *b, size_t N) {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < N; i++) out[i] = a[i] + b[i];
}

void mpt_add_rows(float *out, const float *bias, size_t N, int C) {
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < N; r++) {
        float *o = out + r * (size_t)C;
#pragma omp simd
        for (int i = 0; i < C; i++) o[i] += bias[i];
    }
}

void mpt_add_inplace(float *y, const float *x, size_t N) {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < N; i++) y[i] += x[i];
}

/* Below this many floats (1 MiB) one memset: a region is not worth it. */
#define ZERO_SPLIT_MIN_ ((size_t)262144)

void mpt_zero(float *x, size_t n) {
    if (n < ZERO_SPLIT_MIN_ || omp_in_parallel() || omp_get_max_threads() < 2) {
        memset(x, 0, n * sizeof *x);
        return;
    }
#pragma omp parallel
    { /* each thread one contiguous block, cut at multiples of 16 floats (a cache line) */
        size_t units = (n + 15) / 16, id = (size_t)omp_thread_id_(), nth = (size_t)omp_threads_();
        size_t i0 = units * id / nth * 16, i1 = units * (id + 1) / nth * 16;
        if (i1 > n) i1 = n;
        if (i0 < i1) memset(x + i0, 0, (i1 - i0) * sizeof *x);
    }
}
