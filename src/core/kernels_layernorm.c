/* kernels_layernorm.c — LayerNorm forward and backward, and the column sums that share its
 * summation order (see kernels.h). */
#include "core/kernels.h"

#include <math.h>
#include <string.h>

#include "core/kernels_internal.h"

/* ---- LayerNorm ------------------------------------------------------------------------------ */

void mpt_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                           const float *w, const float *b, size_t N, int C) {
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < N; r++) {
        const float *x = inp + r * C;
        double s = 0.0, v = 0.0; /* double: accurate whether or not these sums vectorise */
#pragma omp simd reduction(+ : s)
        for (int i = 0; i < C; i++) s += x[i];
        float m = (float)(s / C);
#pragma omp simd reduction(+ : v)
        for (int i = 0; i < C; i++) v += (double)((x[i] - m) * (x[i] - m));
        float rs = (float)(1.0 / sqrt(v / C + 1e-5));
        float *o = out + r * C;
#pragma omp simd
        for (int i = 0; i < C; i++) o[i] = (x[i] - m) * rs * w[i] + b[i];
        mean[r] = m;
        rstd[r] = rs;
    }
}

/* Columns up to which each thread's dw/db partial sums live on its own stack (2 x 16 KiB
 * floats per thread at most); wider rows take the serial path. */
#define LN_STACK_C_ 4096
/* Threads whose partials are summed in order (more threads than this run this many). */
#define LN_MAX_SLOTS_ 256

/* dcol not NULL: dcol (C) += the column sums of dinp after the update, in the same pass (the
 * fused form, core/kernels_fused.h). */
static void layernorm_backward_(float *dinp, float *dw, float *db, float *dcol,
                                const float *dout, const float *inp, const float *w,
                                const float *mean, const float *rstd, size_t N, int C) {
    /* Each thread sums dw, db over its rows into its own slot on its stack; the slots are then
     * added in thread order, so the result is bit-identical run to run. No allocation: the
     * slots live on the threads' stacks and are published through `slot` until the last
     * barrier. */
    int nslots = omp_get_max_threads();
    if (nslots > LN_MAX_SLOTS_) nslots = LN_MAX_SLOTS_;
    if (C > LN_STACK_C_) nslots = 0; /* too wide for the stacks: one serial pass below */
    const float *slot[LN_MAX_SLOTS_];
#pragma omp parallel num_threads(nslots > 1 ? nslots : 1)
    {
        int id = omp_thread_id_(), nth = omp_threads_();
        int k = dcol ? 3 : 2; /* slot rows: dw, db (, dcol) */
        float mine[nslots ? k * C + 1 : 1];
        if (nslots) memset(mine, 0, (size_t)k * (size_t)C * sizeof *mine);
        float *pdw = nslots ? mine : dw, *pdb = nslots ? mine + C : db;
        float *pdc = nslots ? mine + 2 * (size_t)C : dcol;
        size_t r0 = N * (size_t)id / (size_t)nth, r1 = N * (size_t)(id + 1) / (size_t)nth;
        for (size_t r = r0; r < r1; r++) {
            const float *x = inp + r * C, *g = dout + r * C;
            float m = mean[r], rs = rstd[r], sg = 0.0f, sgx = 0.0f;
#pragma omp simd reduction(+ : sg, sgx)
            for (int i = 0; i < C; i++) {
                float xh = (x[i] - m) * rs, gw = g[i] * w[i];
                sg += gw;
                sgx += gw * xh;
                pdw[i] += g[i] * xh;
                pdb[i] += g[i];
            }
            sg /= C;
            sgx /= C;
            float *dx = dinp + r * C;
#pragma omp simd
            for (int i = 0; i < C; i++) {
                float xh = (x[i] - m) * rs;
                dx[i] += (g[i] * w[i] - sg - xh * sgx) * rs;
            }
            if (dcol) {
#pragma omp simd
                for (int i = 0; i < C; i++) pdc[i] += dx[i];
            }
        }
        if (nslots) {
            slot[id] = mine;
#pragma omp barrier
#pragma omp for schedule(static)
            for (int i = 0; i < C; i++) /* the implicit barrier keeps every slot alive */
                for (int t = 0; t < nth; t++) {
                    dw[i] += slot[t][i];
                    db[i] += slot[t][C + i];
                    if (dcol) dcol[i] += slot[t][2 * C + i];
                }
        }
    }
}

void mpt_layernorm_backward(float *dinp, float *dw, float *db, const float *dout,
                            const float *inp, const float *w, const float *mean,
                            const float *rstd, size_t N, int C) {
    layernorm_backward_(dinp, dw, db, NULL, dout, inp, w, mean, rstd, N, C);
}

void mpt_layernorm_backward_colsum(float *dinp, float *dw, float *db, float *dcol,
                                   const float *dout, const float *inp, const float *w,
                                   const float *mean, const float *rstd, size_t N, int C) {
    layernorm_backward_(dinp, dw, db, dcol, dout, inp, w, mean, rstd, N, C);
}

/* dcol (C) += the column sums of x (N, C), summed as layernorm_backward_ sums dcol (the same
 * row slots, each from zero in row order, added in slot order; the serial form past
 * LN_STACK_C_), so a split backward's bias gradient has the fused pass's bits. */
void mpt_colsum_add(float *dcol, const float *x, size_t N, int C) {
    int nslots = omp_get_max_threads();
    if (nslots > LN_MAX_SLOTS_) nslots = LN_MAX_SLOTS_;
    if (C > LN_STACK_C_) nslots = 0;
    const float *slot[LN_MAX_SLOTS_];
#pragma omp parallel num_threads(nslots > 1 ? nslots : 1)
    {
        int id = omp_thread_id_(), nth = omp_threads_();
        float mine[nslots ? C + 1 : 1];
        if (nslots) memset(mine, 0, (size_t)C * sizeof *mine);
        float *pdc = nslots ? mine : dcol;
        size_t r0 = N * (size_t)id / (size_t)nth, r1 = N * (size_t)(id + 1) / (size_t)nth;
        for (size_t r = r0; r < r1; r++) {
#pragma omp simd
            for (int i = 0; i < C; i++) pdc[i] += x[r * C + i];
        }
        if (nslots) {
            slot[id] = mine;
#pragma omp barrier
#pragma omp for schedule(static)
            for (int i = 0; i < C; i++)
                for (int t = 0; t < nth; t++) dcol[i] += slot[t][i];
        }
    }
}
