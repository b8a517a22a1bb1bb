/* kernels.c — fast fp32 GPT operators on the CPU (see kernels.h): GEMMs through OpenBLAS,
 * everything else as OpenMP loops the compiler vectorises. Operators that need exp/tanh live in
 * kernels_vecmath.c, which is compiled so that those calls vectorise. */
#include "core/kernels.h"

#include <cblas.h>
#include <float.h>
#include <oneapi/dnnl/dnnl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/gemm_bf16.h"
#include "core/kernels_fused.h"
#include "core/kernels_internal.h"

static mpt_gemm_backend gemm_backend_ = MPT_GEMM_ONEDNN;
static mpt_gemm_threading gemm_threading_ = MPT_GEMM_TEAM;
static int backward_pair_ = 0;

void mpt_kernels_set_gemm(mpt_gemm_backend b) { gemm_backend_ = b; }
mpt_gemm_backend mpt_kernels_gemm(void) { return gemm_backend_; }
void mpt_kernels_set_gemm_threading(mpt_gemm_threading t) { gemm_threading_ = t; }
mpt_gemm_threading mpt_kernels_gemm_threading(void) { return gemm_threading_; }
void mpt_kernels_set_backward_pair(int on) { backward_pair_ = on != 0; }
int mpt_kernels_backward_pair(void) { return backward_pair_; }

/* Row-major C(M,N) = alpha op(A) op(B) + beta C, ta/tb 'N' or 'T'. Called from one thread, or
 * from inside our own OpenMP loop (attention), where both libraries run single-threaded. */
static void sgemm_(char ta, char tb, size_t M, size_t N, size_t K, float alpha, const float *A,
                   size_t lda, const float *B, size_t ldb, float beta, float *C, size_t ldc) {
    if (K == 0) { /* C = beta C, done here: dnnl_sgemm leaves C untouched when K is 0 (a tp
                   * rank whose vocabulary slice is all padding), and beta = 0 must give 0 */
        for (size_t i = 0; i < M; i++)
            for (size_t j = 0; j < N; j++)
                C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
        return;
    }
    if (gemm_backend_ == MPT_GEMM_ONEDNN) {
        dnnl_sgemm(ta, tb, (dnnl_dim_t)M, (dnnl_dim_t)N, (dnnl_dim_t)K, alpha, A, (dnnl_dim_t)lda,
                   B, (dnnl_dim_t)ldb, beta, C, (dnnl_dim_t)ldc);
        return;
    }
    cblas_sgemm(CblasRowMajor, ta == 'T' ? CblasTrans : CblasNoTrans,
                tb == 'T' ? CblasTrans : CblasNoTrans, (int)M, (int)N, (int)K, alpha, A, (int)lda,
                B, (int)ldb, beta, C, (int)ldc);
}

/* sgemm_ for the fp32 GEMMs of the linear layers and the head: single-threaded A^T B products
 * with a small output on OpenBLAS when oneDNN is the back end (core/kernels_internal.h) */
static void sgemm_fp32_(char ta, char tb, size_t M, size_t N, size_t K, float alpha,
                        const float *A, size_t lda, const float *B, size_t ldb, float beta,
                        float *C, size_t ldc) {
    if (gemm_backend_ == MPT_GEMM_ONEDNN && K > 0 && mpt_gemm_tn_blas_(ta, tb, M, N) &&
        (omp_in_parallel() || omp_get_max_threads() == 1)) {
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)M, (int)N, (int)K, alpha, A,
                    (int)lda, B, (int)ldb, beta, C, (int)ldc);
        return;
    }
    sgemm_(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

/* GEMMs of fewer multiply-adds per thread than this (~40 us of one core) run as one call: a
 * region is not worth it, and oneDNN's kernels for tiny blocks round differently (a 64-row
 * block of test_kernels' 128 x 256 x 64 GEMM ended 1.06e-5 from the double reference, outside
 * its 1e-5, against < 1e-5 unsplit). The model's GEMMs are 30M multiply-adds and more. */
#define GEMM_SPLIT_MIN_ 4194304.0

/* MPT_GEMM_SPLIT (kernels.h): C's larger dimension cut into one block per thread (rows in
 * multiples of 8, columns in multiples of 16 floats, so no two threads share a cache line of
 * C), each block one single-threaded sgemm_ over the whole K. Every element is thus summed
 * by one thread's kernel in its own order, and no barrier runs inside the GEMM.
 * gemm_block_ runs thread id's block of nth (called inside a parallel region) and returns its
 * rows [*r0, *r1) and columns [*c0, *c1) of C (an empty range when it has none). */
static void gemm_block_(char ta, char tb, size_t M, size_t N, size_t K, float alpha,
                        const float *A, size_t lda, const float *B, size_t ldb, float beta,
                        float *C, size_t ldc, size_t id, size_t nth, size_t *r0, size_t *r1,
                        size_t *c0, size_t *c1) {
    int by_rows = M >= N;
    size_t unit = by_rows ? 8 : 16, len = by_rows ? M : N, units = (len + unit - 1) / unit;
    size_t i0 = units * id / nth * unit, i1 = units * (id + 1) / nth * unit;
    if (i1 > len) i1 = len;
    if (i0 > i1) i0 = i1;
    *r0 = by_rows ? i0 : 0, *r1 = by_rows ? i1 : M;
    *c0 = by_rows ? 0 : i0, *c1 = by_rows ? N : i1;
    if (i1 == i0) return;
    if (by_rows)
        sgemm_fp32_(ta, tb, i1 - i0, N, K, alpha, ta == 'N' ? A + i0 * lda : A + i0, lda, B,
                    ldb, beta, C + i0 * ldc, ldc);
    else
        sgemm_fp32_(ta, tb, M, i1 - i0, K, alpha, A, lda, tb == 'N' ? B + i0 : B + i0 * ldb,
                    ldb, beta, C + i0, ldc);
}

/* Threads for a split GEMM of M x N x K: 0 when it runs as one call (team threading, bf16,
 * one thread, inside a parallel region already, or too small to be worth a region). */
static int split_threads_(size_t M, size_t N, size_t K) {
    if (gemm_threading_ != MPT_GEMM_SPLIT || mpt_gemm_dtype() == MPT_BF16 || omp_in_parallel())
        return 0;
    int nth = omp_get_max_threads();
    if (nth < 2 || (double)M * (double)N * (double)K < GEMM_SPLIT_MIN_ * nth) return 0;
    return nth;
}

/* The GEMMs of the linear layers and the head: fp32, or bf16 operands with fp32 accumulation
 * when mpt_gemm_set_dtype(MPT_BF16) (core/gemm_bf16.h). Attention stays fp32. */
static void gemm_(char ta, char tb, size_t M, size_t N, size_t K, float alpha, const float *A,
                  size_t lda, const float *B, size_t ldb, float beta, float *C, size_t ldc) {
    if (mpt_gemm_dtype() == MPT_BF16) {
        mpt_gemm_bf16(sgemm_, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    int nth = split_threads_(M, N, K);
    if (!nth) {
        sgemm_fp32_(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
#pragma omp parallel num_threads(nth)
    {
        size_t r0, r1, c0, c1;
        gemm_block_(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc,
                    (size_t)omp_thread_id_(), (size_t)omp_threads_(), &r0, &r1, &c0, &c1);
    }
}

/* ---- embeddings ---------------------------------------------------------------------------- */

void mpt_encoder_forward(float *out, const int32_t *inp, const float *wte, const float *wpe,
                         int B, int T, int D) {
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            float *o = out + ((size_t)b * T + t) * D;
            const float *e = wte + (size_t)inp[b * T + t] * D;
            const float *p = wpe + (size_t)t * D;
#pragma omp simd
            for (int i = 0; i < D; i++) o[i] = e[i] + p[i];
        }
}

void mpt_encoder_backward(float *dwte, float *dwpe, const float *dout, const int32_t *inp,
                          int B, int T, int D) {
    /* Each thread owns a slice of the D columns, so repeated tokens never race. */
#pragma omp parallel
    {
        int nth = omp_threads_(), id = omp_thread_id_();
        int c0 = (int)((long)D * id / nth), c1 = (int)((long)D * (id + 1) / nth);
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++) {
                const float *g = dout + ((size_t)b * T + t) * D;
                float *e = dwte + (size_t)inp[b * T + t] * D;
                float *p = dwpe + (size_t)t * D;
                for (int i = c0; i < c1; i++) {
                    e[i] += g[i];
                    p[i] += g[i];
                }
            }
    }
}

void mpt_embed_masked_forward(float *out, const int32_t *inp, const float *wte, int B, int T,
                              int D, int v0, int Vl) {
#pragma omp parallel for schedule(static)
    for (int r = 0; r < B * T; r++) {
        float *o = out + (size_t)r * D;
        int tok = inp[r] - v0;
        if (tok >= 0 && tok < Vl) memcpy(o, wte + (size_t)tok * D, (size_t)D * sizeof *o);
        else memset(o, 0, (size_t)D * sizeof *o);
    }
}

void mpt_embed_masked_backward(float *dwte, const float *dout, const int32_t *inp, int B, int T,
                               int D, int v0, int Vl) {
#pragma omp parallel
    {
        int nth = omp_threads_(), id = omp_thread_id_();
        int c0 = (int)((long)D * id / nth), c1 = (int)((long)D * (id + 1) / nth);
        for (int r = 0; r < B * T; r++) {
            int tok = inp[r] - v0;
            if (tok < 0 || tok >= Vl) continue;
            const float *g = dout + (size_t)r * D;
            float *e = dwte + (size_t)tok * D;
            for (int i = c0; i < c1; i++) e[i] += g[i];
        }
    }
}

void mpt_positions_forward(float *out, const float *wpe, size_t row0, size_t nrows, int T, int D) {
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < nrows; r++) {
        float *o = out + r * (size_t)D;
        const float *p = wpe + ((row0 + r) % (size_t)T) * (size_t)D;
#pragma omp simd
        for (int i = 0; i < D; i++) o[i] += p[i];
    }
}

void mpt_positions_backward(float *dwpe, const float *dout, int B, int T, int D) {
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        float *p = dwpe + (size_t)t * D;
        for (int b = 0; b < B; b++) {
            const float *g = dout + ((size_t)b * T + t) * D;
#pragma omp simd
            for (int i = 0; i < D; i++) p[i] += g[i];
        }
    }
}

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

/* ---- matmul --------------------------------------------------------------------------------- */

void mpt_matmul_forward(float *out, const float *inp, const float *w, const float *bias,
                        size_t N, int C, int OC) {
    int nth = bias ? split_threads_(N, (size_t)OC, (size_t)C) : 0;
    if (nth) { /* one region: each thread preloads the bias into its block, then its GEMM */
#pragma omp parallel num_threads(nth)
        {
            size_t id = (size_t)omp_thread_id_(), n = (size_t)omp_threads_(), r0, r1, c0, c1;
            gemm_block_('N', 'N', N, (size_t)OC, (size_t)C, 1.0f, inp, (size_t)C, w, (size_t)OC,
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
    gemm_('N', 'N', N, (size_t)OC, (size_t)C, 1.0f, inp, (size_t)C, w, (size_t)OC, beta, out,
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
    int nth = split_threads_(N, (size_t)F, (size_t)C);
    if (!nth || N < (size_t)F) {
        mpt_matmul_forward(fch, x, w, NULL, N, C, F);
        mpt_bias_gelu_forward(out, fch, bias, N, F);
        return;
    }
#pragma omp parallel num_threads(nth)
    {
        size_t r0, r1, c0, c1;
        gemm_block_('N', 'N', N, (size_t)F, (size_t)C, 1.0f, x, (size_t)C, w, (size_t)F, 0.0f, fch,
                    (size_t)F, (size_t)omp_thread_id_(), (size_t)omp_threads_(), &r0, &r1, &c0,
                    &c1);
        if (r1 > r0)
            mpt_bias_gelu_forward(out + r0 * (size_t)F, fch + r0 * (size_t)F, bias, r1 - r0, F);
    }
}

/* The pair (kernels.h, mpt_kernels_set_backward_pair): team threading, fp32, a team of
 * exactly 2 threads, both GEMMs wanted and each worth a thread. */
static int backward_pair_ok_(const float *dinp, const float *dw, size_t N, int C, int OC) {
    return backward_pair_ && dinp && dw && gemm_threading_ == MPT_GEMM_TEAM &&
           mpt_gemm_dtype() != MPT_BF16 && !omp_in_parallel() && omp_get_max_threads() == 2 &&
           (double)N * (double)C * (double)OC >= GEMM_SPLIT_MIN_;
}

static void matmul_backward_(float *dinp, float beta_in, float *dw, float *dbias,
                             const float *dout, const float *inp, const float *w, size_t N, int C,
                             int OC) {
    if (backward_pair_ok_(dinp, dw, N, C, OC)) {
        /* Thread 0: dinp(N,C) = dout w^T; thread 1: dw(C,OC) += inp^T dout; the same FLOPs,
         * each on one thread (sgemm_fp32_ inside a region), then each its half of dbias's
         * columns (summed in row order, as below). No barrier: all three only read dout. */
#pragma omp parallel num_threads(2)
        {
            int id = omp_thread_id_(), n = omp_threads_(); /* n 1: the runtime gave one */
            if (id == 0)
                sgemm_fp32_('N', 'T', N, (size_t)C, (size_t)OC, 1.0f, dout, (size_t)OC, w,
                            (size_t)OC, beta_in, dinp, (size_t)C);
            if (id == 1 || n == 1)
                sgemm_fp32_('T', 'N', (size_t)C, (size_t)OC, N, 1.0f, inp, (size_t)C, dout,
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
    int nth = split_threads_(N, (size_t)C, (size_t)OC);
    if (nth && (!dw || split_threads_((size_t)C, (size_t)OC, N) == nth)) {
        /* One region, no barrier: each thread its block of dinp, its block of dw and its
         * columns of dbias (each summed in row order, as below); the three only read dout. */
#pragma omp parallel num_threads(nth)
        {
            size_t id = (size_t)omp_thread_id_(), n = (size_t)omp_threads_(), r0, r1, c0, c1;
            if (dinp)
                gemm_block_('N', 'T', N, (size_t)C, (size_t)OC, 1.0f, dout, (size_t)OC, w,
                            (size_t)OC, beta_in, dinp, (size_t)C, id, n, &r0, &r1, &c0, &c1);
            if (dw)
                gemm_block_('T', 'N', (size_t)C, (size_t)OC, N, 1.0f, inp, (size_t)C, dout,
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
        gemm_('N', 'T', N, (size_t)C, (size_t)OC, 1.0f, dout, (size_t)OC, w, (size_t)OC, beta_in,
               dinp, (size_t)C);
    if (dw)
        gemm_('T', 'N', (size_t)C, (size_t)OC, N, 1.0f, inp, (size_t)C, dout, (size_t)OC, 1.0f,
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

/* Rows per chunk of mpt_matmul_backward_gelu_set: ~3 MiB of each N x C operand, so a chunk's
 * GEMM output and pre-activation are still in the L3 when the GELU backward reads them (and its
 * output there when the next layer's GEMMs read it), while the GEMM keeps >= 256 rows (its rate
 * holds there) where C allows. Multiples of 64 rows. */
static size_t gelu_chunk_rows_(int C) {
    size_t rows = ((size_t)3 << 20) / (sizeof(float) * (size_t)C) / 64 * 64;
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
        gemm_('N', 'T', n, (size_t)C, (size_t)OC, 1.0f, dout + r0 * (size_t)OC, (size_t)OC, w,
              (size_t)OC, 0.0f, d, (size_t)C);
        mpt_gelu_backward_bias(d, dbias_in, h + r0 * (size_t)C, d, n, C);
    }
}

void mpt_lmhead_forward(float *out, const float *inp, const float *w, size_t N, int C, int V,
                        int ldo) {
    gemm_('N', 'T', N, (size_t)V, (size_t)C, 1.0f, inp, (size_t)C, w, (size_t)C, 0.0f, out,
           (size_t)ldo);
}

static void lmhead_backward_(float *dinp, float beta_in, float *dw, const float *dout,
                             const float *inp, const float *w, size_t N, int C, int V, int ldo) {
    if (backward_pair_ok_(dinp, dw, N, C, V)) { /* side by side, one thread each */
#pragma omp parallel num_threads(2)
        {
            int id = omp_thread_id_(), n = omp_threads_(); /* n 1: the runtime gave one */
            if (id == 0)
                sgemm_fp32_('N', 'N', N, (size_t)C, (size_t)V, 1.0f, dout, (size_t)ldo, w,
                            (size_t)C, beta_in, dinp, (size_t)C);
            if (id == 1 || n == 1)
                sgemm_fp32_('T', 'N', (size_t)V, (size_t)C, N, 1.0f, dout, (size_t)ldo, inp,
                            (size_t)C, 1.0f, dw, (size_t)C);
        }
        return;
    }
    if (dinp)
        gemm_('N', 'N', N, (size_t)C, (size_t)V, 1.0f, dout, (size_t)ldo, w, (size_t)C, beta_in,
               dinp, (size_t)C);
    if (dw)
        gemm_('T', 'N', (size_t)V, (size_t)C, N, 1.0f, dout, (size_t)ldo, inp, (size_t)C, 1.0f,
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

/* ---- attention ------------------------------------------------------------------------------ */

/* Causal attention skips the upper triangle by working in row blocks: rows [r0, r1) of the
 * scores only need keys [0, r1). */
#define ATT_ROW_BLOCK 64

void mpt_attention_forward(float *out, float *att, const float *qkv, int B, int T, int D, int H) {
    int hs = D / H;
    float scale = 1.0f / sqrtf((float)hs);
    size_t ld = 3 * (size_t)D;
#pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            const float *q = qkv + (size_t)b * T * ld + (size_t)h * hs;
            const float *k = q + D, *v = q + 2 * D;
            float *S = att + ((size_t)b * H + h) * T * T;
            float *o = out + (size_t)b * T * D + (size_t)h * hs;
            for (int r0 = 0; r0 < T; r0 += ATT_ROW_BLOCK) {
                int r1 = r0 + ATT_ROW_BLOCK < T ? r0 + ATT_ROW_BLOCK : T;
                float *Sb = S + (size_t)r0 * T;
                sgemm_('N', 'T', (size_t)(r1 - r0), (size_t)(r1), (size_t)(hs), scale, q + (size_t)r0 * ld, (size_t)((int)ld), k, (size_t)((int)ld), 0.0f, Sb, (size_t)(T));
                for (int i = r0; i < r1; i++) {
                    float *row = S + (size_t)i * T;
                    mpt_softmax_inplace_(row, i + 1);
                    memset(row + i + 1, 0, (size_t)(T - i - 1) * sizeof *row);
                }
                sgemm_('N', 'N', (size_t)(r1 - r0), (size_t)(hs), (size_t)(r1), 1.0f, Sb, (size_t)(T), v, (size_t)((int)ld), 0.0f, o + (size_t)r0 * D, (size_t)(D));
            }
        }
}

void mpt_attention_backward(float *dqkv, float *datt, const float *dout, const float *qkv,
                            const float *att, int B, int T, int D, int H) {
    int hs = D / H;
    float scale = 1.0f / sqrtf((float)hs);
    size_t ld = 3 * (size_t)D;
#pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            size_t base = (size_t)b * T * ld + (size_t)h * hs;
            const float *q = qkv + base, *k = q + D, *v = q + 2 * D;
            float *dq = dqkv + base, *dk = dq + D, *dv = dq + 2 * D;
            const float *P = att + ((size_t)b * H + h) * T * T;
            float *dS = datt + ((size_t)b * H + h) * T * T;
            const float *dO = dout + (size_t)b * T * D + (size_t)h * hs;
            for (int r0 = 0; r0 < T; r0 += ATT_ROW_BLOCK) {
                int r1 = r0 + ATT_ROW_BLOCK < T ? r0 + ATT_ROW_BLOCK : T, nr = r1 - r0;
                const float *Pb = P + (size_t)r0 * T, *dOb = dO + (size_t)r0 * D;
                float *dSb = dS + (size_t)r0 * T;
                /* dP = dO V^T (rows r0..r1, keys 0..r1) */
                sgemm_('N', 'T', (size_t)(nr), (size_t)(r1), (size_t)(hs), 1.0f, dOb, (size_t)(D), v, (size_t)((int)ld), 0.0f, dSb, (size_t)(T));
                /* dV[0:r1] += P^T dO */
                sgemm_('T', 'N', (size_t)(r1), (size_t)(hs), (size_t)(nr), 1.0f, Pb, (size_t)(T), dOb, (size_t)(D), 1.0f, dv, (size_t)((int)ld));
                /* dS = P * (dP - rowsum(P * dP)) * scale, on the causal part */
                for (int i = r0; i < r1; i++) {
                    const float *p = P + (size_t)i * T;
                    float *g = dS + (size_t)i * T, dot = 0.0f;
                    int n = i + 1;
#pragma omp simd reduction(+ : dot)
                    for (int j = 0; j < n; j++) dot += p[j] * g[j];
#pragma omp simd
                    for (int j = 0; j < n; j++) g[j] = p[j] * (g[j] - dot) * scale;
                    for (int j = n; j < r1; j++) g[j] = 0.0f;
                }
                /* dQ[r0:r1] += dS K[0:r1];  dK[0:r1] += dS^T Q[r0:r1] */
                sgemm_('N', 'N', (size_t)(nr), (size_t)(hs), (size_t)(r1), 1.0f, dSb, (size_t)(T), k, (size_t)((int)ld), 1.0f, dq + (size_t)r0 * ld, (size_t)((int)ld));
                sgemm_('T', 'N', (size_t)(r1), (size_t)(hs), (size_t)(nr), 1.0f, dSb, (size_t)(T), q + (size_t)r0 * ld, (size_t)((int)ld), 1.0f, dk, (size_t)((int)ld));
            }
        }
}

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
