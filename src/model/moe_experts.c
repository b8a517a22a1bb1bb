/* moe_experts.c — the experts' GEMMs of one MoE block as one parallel region over
 * (expert, row tile) tasks, then one expert per task for the weight gradients (see
 * moe_experts.h). */
#include "model/moe_experts.h"

#include <omp.h>

#include "core/kernels.h"
#include "core/kernels_fused.h"

/* Row tiles per expert: one (each GEMM at the expert's full M) when there are at least twice
 * as many experts as threads, else enough for about two tasks per thread. */
static size_t per_expert_(size_t El) {
    size_t nth = (size_t)omp_get_max_threads(), want = 2 * nth;
    return El >= want || El == 0 ? 1 : (want + El - 1) / El;
}

/* Task i of tp tiles per expert: local expert *j, rows [*r0, *r1) (absolute rows of the sorted
 * runs; empty when the expert has fewer rows than tiles). */
static void task_(const int32_t *off, size_t tp, size_t i, size_t *j, size_t *r0, size_t *r1) {
    size_t e = i / tp, k = i % tp, o = (size_t)off[e], n = (size_t)off[e + 1] - o;
    size_t chunk = (n + tp - 1) / tp, a = k * chunk < n ? k * chunk : n;
    *j = e;
    *r0 = o + a;
    *r1 = o + (a + chunk < n ? a + chunk : n);
}

static void forward_tile_(float *y, float *h, float *hg, const float *xr, float *const *w,
                          size_t r0, size_t n, size_t D, size_t F) {
    mpt_matmul_forward(h + r0 * F, xr + r0 * D, w[0], NULL, n, (int)D, (int)F);
    mpt_bias_gelu_forward(hg + r0 * F, h + r0 * F, w[1], n, (int)F);
    mpt_matmul_forward(y + r0 * D, hg + r0 * F, w[2], w[3], n, (int)F, (int)D);
}

void mpt_moe_experts_forward(float *y, float *h, float *hg, const float *xr,
                             float *const *w, const int32_t *off, size_t El, size_t D, size_t F) {
    size_t tp = per_expert_(El);
    long nt = (long)(tp * El);
#pragma omp parallel for schedule(dynamic, 1) if (nt > 1)
    for (long i = 0; i < nt; i++) {
        size_t j, r0, r1;
        task_(off, tp, (size_t)i, &j, &r0, &r1);
        if (r0 < r1) forward_tile_(y, h, hg, xr, w + 4 * j, r0, r1 - r0, D, F);
    }
}

static void weights_one_(float *const *g, const float *dyr, const float *dh, const float *xr,
                         const float *hg, size_t r0, size_t n, size_t D, size_t F) {
    if (!n) return;
    mpt_matmul_backward(NULL, g[2], g[3], dyr + r0 * D, hg + r0 * F, NULL, n, (int)F, (int)D);
    mpt_matmul_backward(NULL, g[0], g[1], dh + r0 * F, xr + r0 * D, NULL, n, (int)D, (int)F);
}

void mpt_moe_experts_backward(float *dxr, float *dh, float *dhg, const float *dyr,
                              const float *xr, const float *h, const float *hg, float *const *w,
                              const int32_t *off, size_t El, size_t D, size_t F) {
    size_t tp = per_expert_(El);
    long nt = (long)(tp * El);
#pragma omp parallel for schedule(dynamic, 1) if (nt > 1)
    for (long i = 0; i < nt; i++) {
        size_t j, r0, r1;
        task_(off, tp, (size_t)i, &j, &r0, &r1);
        size_t n = r1 - r0;
        if (!n) continue;
        const float *const *we = (const float *const *)(w + 4 * j);
        /* beta = 0: dhg and dxr overwritten, no zeroing pass */
        mpt_matmul_backward_set(dhg + r0 * F, NULL, NULL, dyr + r0 * D, hg + r0 * F, we[2], n,
                                (int)F, (int)D);
        mpt_gelu_backward_bias(dh + r0 * F, NULL, h + r0 * F, dhg + r0 * F, n, (int)F);
        mpt_matmul_backward_set(dxr + r0 * D, NULL, NULL, dh + r0 * F, xr + r0 * D, we[0], n,
                                (int)D, (int)F);
    }
}

void mpt_moe_experts_weights(float *const *g, const float *dyr, const float *dh,
                             const float *xr, const float *hg, const int32_t *off, size_t El,
                             size_t D, size_t F) {
    int par = El > 1 && (int)El >= omp_get_max_threads(); /* else each GEMM its own team */
#pragma omp parallel for schedule(dynamic, 1) if (par)
    for (long j = 0; j < (long)El; j++)
        weights_one_(g + 4 * j, dyr, dh, xr, hg, (size_t)off[j], (size_t)(off[j + 1] - off[j]),
                     D, F);
}
