/* kernels_matmul.c — the linear layers and the tied head: forward and backward GEMMs, bias, and
 * the fused GELU variants (see kernels.h). */
#include "core/kernels.h"

#include <string.h>

#include "core/gemm_bf16.h"
#include "core/kernels_fused.h"

#include "core/kernels_internal.h"

/* ---- matmul --------------------------------------------------------------------------------- */

void mpt_matmul_forward(float *out, const float *inp, const float *w, const float *bias,
                        size_t N, int C, int OC) {
    int nth = bias ? mpt_gemm_split_threads_(N, (size_t)OC, (size_t)C) : 0;
    if (nth) { /* one region: each thread preloads the bias into its block, then its GEMM */
#pragma omp parallel num_threads(nth)
        {
            size_t id = (size_t)omp_thread_id_(), n = (size_t)omp_threads_(), r0, r1, c0, c1;
            mpt_gemm_block_('N', 'N', N, (size_t)OC, (size_t)C, 1.0f, inp, (size_t)C, w, (size_t)OC,
                        0.0f, out, (size_t)OC, id, n, &r0, &r1, &c0, &c1);
            for (size_t r = r0; r < r1; r++) { /* bias after the product, not as a preload */
                float *o = out + r * (size_t)OC;
#pragma omp simd
                for (size_t j = c0; j < c1; j++) o[j] += bias[j];
            }
        }
        return;
    }
    float beta = 0.0f;
    if (bias) {
#pragma omp parallel for schedule(static)
        for (size_t r = 0; r < N; r++) memcpy(out + r * OC, bias, (size_t)OC * sizeof *out);
        beta = 1.0f;
    }
    mpt_gemm_('N', 'N', N, (size_t)OC, (size_t)C, 1.0f, inp, (size_t)C, w, (size_t)OC, beta, out,
           (size_t)OC);
}

/* beta_in: 1 accumulates into dinp, 0 overwrites it (no zeroing pass before the GEMM) */
/* fch(N,F) = x(N,C) w(C,F), then fch += bias and out = gelu(fch) (kernels_fused.h), in one
 * region when the GEMM splits by rows: each thread runs the fused pass on its own rows right
 * after its GEMM block, with no barrier between (the rows are still warm in its cache). The
 * pass runs inside the region, where its own OpenMP loop has one thread. Otherwise (columns
 * split, team threading, bf16, small) the two calls one after the other. Same results either
 * way: the same GEMM blocks, then the same elementwise pass. */
void mpt_matmul_bias_gelu_forward(float *out, float *fch, const float *x, const float *w,
                                  const float *bias, size_t N, int C, int F) {
    int nth = mpt_gemm_split_threads_(N, (size_t)F, (size_t)C);
    if (!nth || N < (size_t)F) {
        mpt_matmul_forward(fch, x, w, NULL, N, C, F);
        mpt_bias_gelu_forward(out, fch, bias, N, F);
        return;
    }
#pragma omp parallel num_threads(nth)
    {
        size_t r0, r1, c0, c1;
        mpt_gemm_block_('N', 'N', N, (size_t)F, (size_t)C, 1.0f, x, (size_t)C, w, (size_t)F, 0.0f, fch,
                    (size_t)F, (size_t)omp_thread_id_(), (size_t)omp_threads_(), &r0, &r1, &c0,
                    &c1);
        if (r1 > r0)
            mpt_bias_gelu_forward(out + r0 * (size_t)F, fch + r0 * (size_t)F, bias, r1 - r0, F);
    }
}

/* The pair (kernels.h, mpt_kernels_set_backward_pair): team threading, fp32, a team of
 * exactly 2 threads, both GEMMs wanted and each worth a thread. */
static int backward_pair_ok_(const float *dinp, const float *dw, size_t N, int C, int OC) {
    return mpt_kernels_backward_pair() && dinp && dw &&
           mpt_kernels_gemm_threading() == MPT_GEMM_TEAM &&
           mpt_gemm_dtype() != MPT_BF16 && !omp_in_parallel() && omp_get_max_threads() == 2 &&
           (double)N * (double)C * (double)OC >= MPT_GEMM_SPLIT_MIN_;
}

static void matmul_backward_(float *dinp, float beta_in, float *dw, float *dbias,
                             const float *dout, const float *inp, const float *w, size_t N, int C,
                             int OC) {
    if (backward_pair_ok_(dinp, dw, N, C, OC)) {
        /* Thread 0: dinp(N,C) = dout w^T; thread 1: dw(C,OC) += inp^T dout; the same FLOPs,
         * each on one thread (mpt_sgemm_fp32_ inside a region), then each its half of dbias's
         * columns (summed in row order, as below). No barrier: all three only read dout. */
#pragma omp parallel num_threads(2)
        {
            int id = omp_thread_id_(), n = omp_threads_(); /* n 1: the runtime gave one */
            if (id == 0)
                mpt_sgemm_fp32_('N', 'T', N, (size_t)C, (size_t)OC, 1.0f, dout, (size_t)OC, w,
                            (size_t)OC, beta_in, dinp, (size_t)C);
            if (id == 1 || n == 1)
                mpt_sgemm_fp32_('T', 'N', (size_t)C, (size_t)OC, N, 1.0f, inp, (size_t)C, dout,
                            (size_t)OC, 1.0f, dw, (size_t)OC);
            if (dbias) {
                int b0 = id ? OC / 2 : 0, b1 = id || n == 1 ? OC : OC / 2;
                for (size_t r = 0; r < N; r++) {
                    const float *g = dout + r * OC;
#pragma omp simd
                    for (int i = b0; i < b1; i++) dbias[i] += g[i];
                }
            }
        }
        return;
    }
    int nth = mpt_gemm_split_threads_(N, (size_t)C, (size_t)OC);
    if (nth && (!dw || mpt_gemm_split_threads_((size_t)C, (size_t)OC, N) == nth)) {
        /* One region, no barrier: each thread its block of dinp, its block of dw and its
         * columns of dbias (each summed in row order, as below); the three only read dout. */
#pragma omp parallel num_threads(nth)
        {
            size_t id = (size_t)omp_thread_id_(), n = (size_t)omp_threads_(), r0, r1, c0, c1;
            if (dinp)
                mpt_gemm_block_('N', 'T', N, (size_t)C, (size_t)OC, 1.0f, dout, (size_t)OC, w,
                            (size_t)OC, beta_in, dinp, (size_t)C, id, n, &r0, &r1, &c0, &c1);
            if (dw)
                mpt_gemm_block_('T', 'N', (size_t)C, (size_t)OC, N, 1.0f, inp, (size_t)C, dout,
                            (size_t)OC, 1.0f, dw, (size_t)OC, id, n, &r0, &r1, &c0, &c1);
            if (dbias) {
                int b0 = (int)((long)OC * (long)id / (long)n);
                int b1 = (int)((long)OC * (long)(id + 1) / (long)n);
                for (size_t r = 0; r < N; r++) {
                    const float *g = dout + r * OC;
#pragma omp simd
                    for (int i = b0; i < b1; i++) dbias[i] += g[i];
                }
            }
        }
        return;
    }
    if (dinp)
        mpt_gemm_('N', 'T', N, (size_t)C, (size_t)OC, 1.0f, dout, (size_t)OC, w, (size_t)OC, beta_in,
               dinp, (size_t)C);
    if (dw)
        mpt_gemm_('T', 'N', (size_t)C, (size_t)OC, N, 1.0f, inp, (size_t)C, dout, (size_t)OC, 1.0f,
              dw, (size_t)OC);
    if (dbias) {
#pragma omp parallel
        {
            int nth = omp_threads_(), id = omp_thread_id_();
            int c0 = (int)((long)OC * id / nth), c1 = (int)((long)OC * (id + 1) / nth);
            for (size_t r = 0; r < N; r++) {
                const float *g = dout + r * OC;
#pragma omp simd
                for (int i = c0; i < c1; i++) dbias[i] += g[i];
            }
        }
    }
}

void mpt_matmul_backward(float *dinp, float *dw, float *dbias, const float *dout,
                         const float *inp, const float *w, size_t N, int C, int OC) {
    matmul_backward_(dinp, 1.0f, dw, dbias, dout, inp, w, N, C, OC);
}

void mpt_matmul_backward_set(float *dinp, float *dw, float *dbias, const float *dout,
                             const float *inp, const float *w, size_t N, int C, int OC) {
    matmul_backward_(dinp, 0.0f, dw, dbias, dout, inp, w, N, C, OC);
}

/* Rows per chunk of mpt_matmul_backward_gelu_set: ~12 MiB of each N x C operand (1024 rows at
 * C 3072, 2048 at C 1536), so a chunk's GEMM output is still in the 32 MiB L3 when the GELU
 * backward reads it, while the GEMM keeps its rate. Smaller chunks cost more than the cache
 * saves: oneDNN's NT GEMM of 256 x 3072 x 768 runs far below its 1024-row rate, and every
 * chunk is two more regions. One thread, CPU time, GEMM + GELU backward of GPT-2 124M's
 * mlp.c_proj at N 1024 (median of 9 interleaved rounds, under load): 256-row chunks (the old
 * ~3 MiB) 113 ms, 512 86, 1024 81; at N 4096, 1024..4096 rows all 312-315 ms; the bench
 * model's 2048 x 1536 x 384: 512 rows 47.4 ms, 2048 43.2. Multiples of 64 rows. */
static size_t gelu_chunk_rows_(int C) {
    size_t rows = ((size_t)12 << 20) / (sizeof(float) * (size_t)C) / 64 * 64;
    return rows < 64 ? 64 : rows;
}

void mpt_matmul_backward_gelu_set(float *dinp, float *dw, float *dbias, float *dbias_in,
                                  const float *h, const float *dout, const float *inp,
                                  const float *w, size_t N, int C, int OC) {
    if (dw || dbias) matmul_backward_(NULL, 0.0f, dw, dbias, dout, inp, w, N, C, OC);
    size_t rows = gelu_chunk_rows_(C);
    for (size_t r0 = 0; r0 < N; r0 += rows) { /* in row order: dbias_in summed as unchunked */
        size_t n = N - r0 < rows ? N - r0 : rows;
        float *d = dinp + r0 * (size_t)C;
        mpt_gemm_('N', 'T', n, (size_t)C, (size_t)OC, 1.0f, dout + r0 * (size_t)OC, (size_t)OC, w,
              (size_t)OC, 0.0f, d, (size_t)C);
        mpt_gelu_backward_bias(d, dbias_in, h + r0 * (size_t)C, d, n, C);
    }
}

void mpt_lmhead_forward(float *out, const float *inp, const float *w, size_t N, int C, int V,
                        int ldo) {
    mpt_gemm_('N', 'T', N, (size_t)V, (size_t)C, 1.0f, inp, (size_t)C, w, (size_t)C, 0.0f, out,
           (size_t)ldo);
}

static void lmhead_backward_(float *dinp, float beta_in, float *dw, const float *dout,
                             const float *inp, const float *w, size_t N, int C, int V, int ldo) {
    if (backward_pair_ok_(dinp, dw, N, C, V)) { /* side by side, one thread each */
#pragma omp parallel num_threads(2)
        {
            int id = omp_thread_id_(), n = omp_threads_(); /* n 1: the runtime gave one */
            if (id == 0)
                mpt_sgemm_fp32_('N', 'N', N, (size_t)C, (size_t)V, 1.0f, dout, (size_t)ldo, w,
                            (size_t)C, beta_in, dinp, (size_t)C);
            if (id == 1 || n == 1)
                mpt_sgemm_fp32_('T', 'N', (size_t)V, (size_t)C, N, 1.0f, dout, (size_t)ldo, inp,
                            (size_t)C, 1.0f, dw, (size_t)C);
        }
        return;
    }
    if (dinp)
        mpt_gemm_('N', 'N', N, (size_t)C, (size_t)V, 1.0f, dout, (size_t)ldo, w, (size_t)C, beta_in,
               dinp, (size_t)C);
    if (dw)
        mpt_gemm_('T', 'N', (size_t)V, (size_t)C, N, 1.0f, dout, (size_t)ldo, inp, (size_t)C, 1.0f,
               dw, (size_t)C);
}

void mpt_lmhead_backward(float *dinp, float *dw, const float *dout, const float *inp,
                         const float *w, size_t N, int C, int V, int ldo) {
    lmhead_backward_(dinp, 1.0f, dw, dout, inp, w, N, C, V, ldo);
}

void mpt_lmhead_backward_set(float *dinp, float *dw, const float *dout, const float *inp,
                             const float *w, size_t N, int C, int V, int ldo) {
    lmhead_backward_(dinp, 0.0f, dw, dout, inp, w, N, C, V, ldo);
}
