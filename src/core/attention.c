/* attention.c — fused causal attention, forward and backward, with memory linear in T (see
 * attention.h): online softmax over 64×256 tiles of scores that are never stored.
 *
 * Forward, per (batch, head, query tile) — one OpenMP task each, largest tiles first: for every
 * K/V tile that some row of the query tile can see, S = scale Q Kᵀ (GEMM), then per row the
 * running maximum m and sum l are updated and the output row rescaled (online softmax),
 * O += P V (GEMM); at the end O /= l and lse = m + log l.
 * Backward, per K/V tile (FlashAttention-2 order): for every query tile that sees it, recompute
 * P = exp(S - lse), dP = dO Vᵀ, dS = P ∘ (dP - drow) · scale; dV += Pᵀ dO, dK += dSᵀ Q,
 * dQ += dS K. Tasks are whole (batch, head) pairs when there are enough of them to share out
 * evenly; otherwise each (batch, head) is split over K/V tiles, and every thread adds its dQ into
 * a private (Tq, hs) accumulator from the workspace that is summed at the end of the pair.
 * The tile GEMMs: core/attn_tile.h's micro-kernels at head sizes 16..64 (multiples of 16) on a
 * CPU with AVX2 + FMA (Kᵀ, Vᵀ of a key tile packed on the stack for S = Q Kᵀ and dP = dO Vᵀ:
 * once per key tile in the backward, once per (query tile, key tile) in the forward), the
 * library's sgemm otherwise.
 *
 * Compiled with -ffast-math (CMakeLists.txt) so that expf in `omp simd` loops uses glibc's
 * vector math, as kernels_vecmath.c is. Nothing here relies on infinities or NaN: an empty row's
 * lse is the finite MPT_FLASH_LSE_EMPTY, and masked scores are skipped, never set to -inf. */
#include "core/attention.h"

#include <cblas.h>
#include <math.h>
#include <oneapi/dnnl/dnnl.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include "core/attn_tile.h"
#include "core/kernels.h"
#include "core/kernels_internal.h"
#include "core/status.h"

#define BQ MPT_FLASH_BQ
#define BK MPT_FLASH_BK

/* Row-major C(M,N) = alpha op(A) op(B) + beta C on the back end kernels.h chose; called from
 * inside our OpenMP loops, where both libraries run single-threaded; the dV, dK tile products
 * (A^T B) on OpenBLAS (core/kernels_internal.h). */
static void gemm_(char ta, char tb, int M, int N, int K, float alpha, const float *A, size_t lda,
                  const float *B, size_t ldb, float beta, float *C, size_t ldc) {
    if (mpt_kernels_gemm() == MPT_GEMM_ONEDNN &&
        !mpt_gemm_tn_blas_(ta, tb, (size_t)M, (size_t)N)) {
        dnnl_sgemm(ta, tb, M, N, K, alpha, A, (dnnl_dim_t)lda, B, (dnnl_dim_t)ldb, beta, C,
                   (dnnl_dim_t)ldc);
        return;
    }
    cblas_sgemm(CblasRowMajor, ta == 'T' ? CblasTrans : CblasNoTrans,
                tb == 'T' ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, (int)lda, B, (int)ldb,
                beta, C, (int)ldc);
}

/* The tile GEMMs with the micro-kernels of attn_tile.h when mk (mpt_attn_tile_usable(hs)),
 * else on the library (gemm_). diag = global position of the tile's first query - that of its
 * first key: the micro-kernels skip the blocks and terms the causal mask zeroes (attn_tile.h).
 * tile_abt_: C (M scores rows × N keys) = alpha A Bᵀ, only C(i,j) with j <= i + diag needed;
 * B already transposed into a panel (K rows, stride BK; mpt_attn_tile_pack_t) when mk.
 * tile_ab_: C += A B, A (scores rows × keys) zero for k > i + diag.
 * tile_atb_: C += Aᵀ B, A (query rows × keys) zero for query row k < key column i - diag. */
static void tile_abt_(int mk, int M, int N, int K, float alpha, const float *A, size_t lda,
                      const float *B, size_t ldb, const float *panel, float *C, size_t ldc,
                      int diag) {
    if (mk)
        mpt_attn_tile_nn(M, N, K, alpha, A, lda, panel, BK, 0.0f, C, ldc, MPT_ATTN_TILE_C_LOWER,
                         diag);
    else
        gemm_('N', 'T', M, N, K, alpha, A, lda, B, ldb, 0.0f, C, ldc);
}
static void tile_ab_(int mk, int M, int N, int K, const float *A, size_t lda, const float *B,
                     size_t ldb, float *C, size_t ldc, int diag) {
    if (mk)
        mpt_attn_tile_nn(M, N, K, 1.0f, A, lda, B, ldb, 1.0f, C, ldc, MPT_ATTN_TILE_A_LOWER, diag);
    else
        gemm_('N', 'N', M, N, K, 1.0f, A, lda, B, ldb, 1.0f, C, ldc);
}
static void tile_atb_(int mk, int M, int N, int K, const float *A, size_t lda, const float *B,
                      size_t ldb, float *C, size_t ldc, int diag) {
    if (mk)
        mpt_attn_tile_tn(M, N, K, 1.0f, A, lda, B, ldb, 1.0f, C, ldc, MPT_ATTN_TILE_A_UPPER, diag);
    else
        gemm_('T', 'N', M, N, K, 1.0f, A, lda, B, ldb, 1.0f, C, ldc);
}

static int min_(int a, int b) { return a < b ? a : b; }
static int max_(int a, int b) { return a > b ? a : b; }

/* Threads to run on: at most `threads`, at most what OpenMP offers, at least 1. */
static int team_(int threads) {
    int nt = omp_get_max_threads();
    if (threads > 0 && threads < nt) nt = threads;
    return nt > 0 ? nt : 1;
}

/* Keys of a tile that a query row sees: the tile's columns j < visible_(...) are visible.
 * qpos = global position of the row, kpos = global position of the tile's first key. */
static int visible_(int qpos, int kpos, int nc) { return max_(0, min_(nc, qpos - kpos + 1)); }

/* ---- forward ---------------------------------------------------------------------------- */

/* One query tile of one head: rows q[0..nr) (global positions qpos..qpos+nr-1) against the keys
 * k[0..Tk) (global positions k0..). o (nr rows of hs, stride ldo) and lse[0..nr) overwritten.
 * mk: the tile GEMMs on attn_tile.h's micro-kernels (hs <= MPT_ATTN_TILE_MAX_HS). */
static void fwd_tile_(float *o, size_t ldo, float *lse, const float *q, size_t ldq,
                      const float *k, size_t ldk, const float *v, size_t ldv, int nr, int qpos,
                      int Tk, int k0, int hs, float scale, int mk) {
    float S[BQ * BK], m[BQ], l[BQ], kt[MPT_ATTN_TILE_MAX_HS * BK]; /* kt: Kᵀ of a tile (mk) */
    for (int r = 0; r < nr; r++) {
        m[r] = MPT_FLASH_LSE_EMPTY;
        l[r] = 0.0f;
        memset(o + (size_t)r * ldo, 0, (size_t)hs * sizeof *o);
    }
    int last = qpos + nr - 1;
    for (int c0 = 0; c0 < Tk && k0 + c0 <= last; c0 += BK) {
        int kpos = k0 + c0;
        int nc = visible_(last, kpos, min_(BK, Tk - c0)); /* columns any row sees */
        int full = kpos + nc - 1 <= qpos;                  /* every row sees all nc */
        /* S on the micro-kernel only where the mask saves work (a diagonal tile): the packing
         * of Kᵀ, once per (query tile, key tile) here, costs more than the call it saves */
        int mks = mk && !full;
        if (mks) mpt_attn_tile_pack_t(kt, BK, k + (size_t)c0 * ldk, ldk, nc, hs);
        tile_abt_(mks, nr, nc, hs, scale, q, ldq, k + (size_t)c0 * ldk, ldk, kt, S, BK,
                  qpos - kpos);
        for (int r = 0; r < nr; r++) {
            float *row = S + (size_t)r * BK;
            int nv = full ? nc : visible_(qpos + r, kpos, nc);
            if (nv == 0) {
                memset(row, 0, (size_t)nc * sizeof *row);
                continue;
            }
            float mx = row[0];
            for (int j = 1; j < nv; j++) mx = row[j] > mx ? row[j] : mx;
            float mnew = mx > m[r] ? mx : m[r], sum = 0.0f;
#pragma omp simd reduction(+ : sum)
            for (int j = 0; j < nv; j++) {
                float p = expf(row[j] - mnew);
                row[j] = p;
                sum += p;
            }
            for (int j = nv; j < nc; j++) row[j] = 0.0f;
            float alpha = expf(m[r] - mnew);
            l[r] = l[r] * alpha + sum;
            m[r] = mnew;
            if (alpha != 1.0f) {
                float *orow = o + (size_t)r * ldo;
#pragma omp simd
                for (int i = 0; i < hs; i++) orow[i] *= alpha;
            }
        }
        tile_ab_(mk, nr, hs, nc, S, BK, v + (size_t)c0 * ldv, ldv, o, ldo, qpos - kpos);
    }
    for (int r = 0; r < nr; r++) {
        if (l[r] > 0.0f) {
            float inv = 1.0f / l[r], *orow = o + (size_t)r * ldo;
#pragma omp simd
            for (int i = 0; i < hs; i++) orow[i] *= inv;
            lse[r] = m[r] + logf(l[r]);
        } else {
            lse[r] = MPT_FLASH_LSE_EMPTY;
        }
    }
}

void mpt_flash_block_forward(mpt_flash_out o, float *lse, size_t ldl, mpt_flash_in q,
                             mpt_flash_in k, mpt_flash_in v, const mpt_flash_shape *s) {
    int B = s->B, H = s->H, hs = s->hs, Tq = s->Tq, nq = (Tq + BQ - 1) / BQ;
    float scale = 1.0f / sqrtf((float)hs);
    long ntask = (long)B * H * nq;
    int mk = mpt_attn_tile_usable(hs);
    /* Task t: query tile nq-1 - t/(B*H) (the tiles that see the most keys go first), head pair
     * t % (B*H). */
#pragma omp parallel for schedule(dynamic, 1)
    for (long t = 0; t < ntask; t++) {
        int qb = nq - 1 - (int)(t / ((long)B * H)), bh = (int)(t % ((long)B * H));
        int b = bh / H, h = bh % H, r0 = qb * BQ, nr = min_(BQ, Tq - r0);
        size_t col = (size_t)h * hs;
        fwd_tile_(o.p + b * o.bs + (size_t)r0 * o.ld + col, o.ld, lse + (size_t)bh * ldl + r0,
                  q.p + b * q.bs + (size_t)r0 * q.ld + col, q.ld, k.p + b * k.bs + col, k.ld,
                  v.p + b * v.bs + col, v.ld, nr, s->q0 + r0, s->Tk, s->k0, hs, scale, mk);
    }
}

void mpt_flash_merge(mpt_flash_out o, float *lse, size_t ldl, mpt_flash_in o_part,
                     const float *lse_part, size_t ldlp, int B, int H, int hs, int Tq) {
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int t = 0; t < Tq; t++)
            for (int h = 0; h < H; h++) {
                float *L = lse + ((size_t)b * H + h) * ldl + t;
                float lp = lse_part[((size_t)b * H + h) * ldlp + t];
                float mx = *L > lp ? *L : lp;
                float wa = expf(*L - mx), wb = expf(lp - mx), sum = wa + wb;
                wa /= sum, wb /= sum;
                float *orow = o.p + b * o.bs + (size_t)t * o.ld + (size_t)h * hs;
                const float *prow = o_part.p + b * o_part.bs + (size_t)t * o_part.ld +
                                    (size_t)h * hs;
#pragma omp simd
                for (int i = 0; i < hs; i++) orow[i] = wa * orow[i] + wb * prow[i];
                *L = mx + logf(sum);
            }
}

/* ---- backward ----------------------------------------------------------------------------- */

void mpt_flash_rowdot(float *drow, size_t ldd, mpt_flash_in dout, mpt_flash_in out, int B, int H,
                      int hs, int Tq) {
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int t = 0; t < Tq; t++)
            for (int h = 0; h < H; h++) {
                const float *g = dout.p + b * dout.bs + (size_t)t * dout.ld + (size_t)h * hs;
                const float *y = out.p + b * out.bs + (size_t)t * out.ld + (size_t)h * hs;
                float d = 0.0f;
#pragma omp simd reduction(+ : d)
                for (int i = 0; i < hs; i++) d += g[i] * y[i];
                drow[((size_t)b * H + h) * ldd + t] = d;
            }
}

/* One head's pointers for the backward (rows start at row 0 of the chunk). */
typedef struct bwd_head_ {
    const float *q, *k, *v, *dout, *lse, *drow;
    float *dq, *dk, *dv;
    size_t ldq, ldk, ldv, ldg, lddq, lddk, lddv;
    int mk; /* tile GEMMs on attn_tile.h's micro-kernels */
} bwd_head_;

/* K/V tile c0 of one head against every query tile that sees it: dk, dv rows [c0, c0+nc) +=,
 * dq rows += (into x->dq with stride x->lddq: the gradient itself or a private accumulator). */
static void bwd_ktile_(const bwd_head_ *x, int c0, const mpt_flash_shape *s, float scale) {
    float P[BQ * BK], G[BQ * BK];
    float kt[MPT_ATTN_TILE_MAX_HS * BK], vt[MPT_ATTN_TILE_MAX_HS * BK]; /* Kᵀ, Vᵀ (x->mk) */
    int hs = s->hs, kpos = s->k0 + c0, nc = min_(BK, s->Tk - c0), mk = x->mk;
    const float *k = x->k + (size_t)c0 * x->ldk, *v = x->v + (size_t)c0 * x->ldv;
    if (mk) { /* once for every query tile below */
        mpt_attn_tile_pack_t(kt, BK, k, x->ldk, nc, hs);
        mpt_attn_tile_pack_t(vt, BK, v, x->ldv, nc, hs);
    }
    float *dk = x->dk + (size_t)c0 * x->lddk, *dv = x->dv + (size_t)c0 * x->lddv;
    /* first query tile with a row at a global position >= kpos */
    int r_first = max_(0, kpos - s->q0) / BQ * BQ;
    for (int r0 = r_first; r0 < s->Tq; r0 += BQ) {
        int nr = min_(BQ, s->Tq - r0), qpos = s->q0 + r0;
        int ncv = visible_(qpos + nr - 1, kpos, nc);   /* columns any row of the tile sees */
        if (ncv == 0) continue;
        int full = kpos + ncv - 1 <= qpos;
        const float *q = x->q + (size_t)r0 * x->ldq, *g = x->dout + (size_t)r0 * x->ldg;
        const float *lse = x->lse + r0, *drow = x->drow + r0;
        int diag = qpos - kpos;
        tile_abt_(mk, nr, ncv, hs, scale, q, x->ldq, k, x->ldk, kt, P, BK, diag);
        tile_abt_(mk, nr, ncv, hs, 1.0f, g, x->ldg, v, x->ldv, vt, G, BK, diag);
        for (int r = 0; r < nr; r++) {
            float *p = P + (size_t)r * BK, *d = G + (size_t)r * BK, L = lse[r], Dr = drow[r];
            int nv = full ? ncv : visible_(qpos + r, kpos, ncv);
#pragma omp simd
            for (int j = 0; j < nv; j++) {
                float e = expf(p[j] - L);
                p[j] = e;
                d[j] = e * (d[j] - Dr) * scale;
            }
            for (int j = nv; j < ncv; j++) p[j] = d[j] = 0.0f;
        }
        tile_atb_(mk, ncv, hs, nr, P, BK, g, x->ldg, dv, x->lddv, diag);
        tile_atb_(mk, ncv, hs, nr, G, BK, q, x->ldq, dk, x->lddk, diag);
        tile_ab_(mk, nr, hs, ncv, G, BK, k, x->ldk, x->dq + (size_t)r0 * x->lddq, x->lddq, diag);
    }
}

static bwd_head_ head_(mpt_flash_out dq, mpt_flash_out dk, mpt_flash_out dv, mpt_flash_in dout,
                       const float *lse, const float *drow, size_t ldl, mpt_flash_in q,
                       mpt_flash_in k, mpt_flash_in v, int b, int h, int H, int hs, int mk) {
    size_t col = (size_t)h * hs, row = ((size_t)b * H + h) * ldl;
    bwd_head_ x = {q.p + b * q.bs + col,       k.p + b * k.bs + col,   v.p + b * v.bs + col,
                   dout.p + b * dout.bs + col, lse + row,              drow + row,
                   dq.p + b * dq.bs + col,     dk.p + b * dk.bs + col, dv.p + b * dv.bs + col,
                   q.ld, k.ld, v.ld, dout.ld, dq.ld, dk.ld, dv.ld, mk};
    return x;
}

size_t mpt_flash_block_workspace(const mpt_flash_shape *s, int threads) {
    size_t n;
    if (!mpt_size_mul((size_t)(s->Tq > 0 ? s->Tq : 0), (size_t)(s->hs > 0 ? s->hs : 0), &n) ||
        !mpt_size_mul(n, (size_t)(threads > 0 ? threads : 1), &n))
        return SIZE_MAX;
    return n;
}

/* Whole head pairs are the tasks: no thread shares a gradient row with another. */
static int whole_heads_(const mpt_flash_shape *s, int nt) {
    int nbh = s->B * s->H, nk = (s->Tk + BK - 1) / BK;
    return nbh % nt == 0 || nbh >= 4 * nt || nk == 1;
}

/* n rows of hs floats at stride ld, zeroed */
static void zero_rows_(float *p, size_t ld, int n, int hs) {
    for (int r = 0; r < n; r++) memset(p + (size_t)r * ld, 0, (size_t)hs * sizeof *p);
}

/* drow[t] = dout row t . out row t for one head's Tq rows (as mpt_flash_rowdot) */
static void rowdot_head_(float *drow, const float *g, size_t ldg, const float *y, size_t ldy,
                         int Tq, int hs) {
    for (int t = 0; t < Tq; t++) {
        const float *gt = g + (size_t)t * ldg, *yt = y + (size_t)t * ldy;
        float d = 0.0f;
#pragma omp simd reduction(+ : d)
        for (int i = 0; i < hs; i++) d += gt[i] * yt[i];
        drow[t] = d;
    }
}

/* The whole-head-pair backward in one parallel region. With set, each task first zeroes its
 * head's columns of dq, dk, dv (the gradients are then overwritten, no zeroing pass before the
 * kernel) and, with out not NULL, computes its head's drow (no separate rowdot region). */
static void bwd_whole_(mpt_flash_out dq, mpt_flash_out dk, mpt_flash_out dv, mpt_flash_in dout,
                       const float *lse, float *drow, size_t ldl, mpt_flash_in q, mpt_flash_in k,
                       mpt_flash_in v, const mpt_flash_in *out, int set, const mpt_flash_shape *s,
                       int nt) {
    int H = s->H, hs = s->hs, nbh = s->B * H, nk = (s->Tk + BK - 1) / BK;
    int mk = mpt_attn_tile_usable(hs);
    float scale = 1.0f / sqrtf((float)hs);
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
    for (int bh = 0; bh < nbh; bh++) {
        int b = bh / H, h = bh % H;
        if (out)
            rowdot_head_(drow + (size_t)bh * ldl, dout.p + b * dout.bs + (size_t)h * hs, dout.ld,
                         out->p + b * out->bs + (size_t)h * hs, out->ld, s->Tq, hs);
        bwd_head_ x = head_(dq, dk, dv, dout, lse, drow, ldl, q, k, v, b, h, H, hs, mk);
        if (set) {
            zero_rows_(x.dq, x.lddq, s->Tq, hs);
            zero_rows_(x.dk, x.lddk, s->Tk, hs);
            zero_rows_(x.dv, x.lddv, s->Tk, hs);
        }
        for (int kb = 0; kb < nk; kb++) bwd_ktile_(&x, kb * BK, s, scale);
    }
}

void mpt_flash_block_backward(mpt_flash_out dq, mpt_flash_out dk, mpt_flash_out dv,
                              mpt_flash_in dout, const float *lse, const float *drow, size_t ldl,
                              mpt_flash_in q, mpt_flash_in k, mpt_flash_in v,
                              const mpt_flash_shape *s, float *work, int threads) {
    int B = s->B, H = s->H, hs = s->hs, nbh = B * H, nt = team_(threads);
    int nk = (s->Tk + BK - 1) / BK;
    float scale = 1.0f / sqrtf((float)hs);
    if (s->Tq <= 0 || nk == 0) return;
    if (whole_heads_(s, nt)) {
        bwd_whole_(dq, dk, dv, dout, lse, (float *)drow, ldl, q, k, v, NULL, 0, s, nt);
        return;
    }
    /* few head pairs: split each over its K/V tiles; dq through per-thread accumulators */
    size_t acc_n = (size_t)s->Tq * hs;
    int mk = mpt_attn_tile_usable(hs);
    for (int bh = 0; bh < nbh; bh++) {
        bwd_head_ x = head_(dq, dk, dv, dout, lse, drow, ldl, q, k, v, bh / H, bh % H, H, hs,
                            mk);
#pragma omp parallel num_threads(nt)
        {
            bwd_head_ mine = x;
            mine.dq = work + (size_t)omp_get_thread_num() * acc_n;
            mine.lddq = (size_t)hs;
            memset(mine.dq, 0, acc_n * sizeof(float));
            /* K/V tile 0 sees every query tile: largest first. Tiles go round-robin to fixed
             * threads (static, not dynamic), so which accumulator receives which tile's dq, and
             * hence the rounding of the sum, is the same in every run: results are bit-identical
             * from run to run at a given thread count. */
#pragma omp for schedule(static, 1)
            for (int kb = 0; kb < nk; kb++) bwd_ktile_(&mine, kb * BK, s, scale);
            int team = omp_get_num_threads();
#pragma omp for schedule(static)
            for (int t = 0; t < s->Tq; t++) {
                float *d = x.dq + (size_t)t * x.lddq;
                for (int th = 0; th < team; th++) {
                    const float *a = work + (size_t)th * acc_n + (size_t)t * hs;
#pragma omp simd
                    for (int i = 0; i < hs; i++) d[i] += a[i];
                }
            }
        }
    }
}

/* ---- whole sequence ------------------------------------------------------------------------ */

static mpt_flash_shape whole_(int B, int T, int D, int H) {
    mpt_flash_shape s = {B, H, D / H, T, 0, T, 0};
    return s;
}

void mpt_flash_forward(float *out, float *lse, const float *qkv, int B, int T, int D, int H) {
    size_t ld = 3 * (size_t)D, bs = (size_t)T * ld;
    mpt_flash_shape s = whole_(B, T, D, H);
    mpt_flash_out o = {out, (size_t)D, (size_t)T * D};
    mpt_flash_in q = {qkv, ld, bs}, k = {qkv + D, ld, bs}, v = {qkv + 2 * (size_t)D, ld, bs};
    mpt_flash_block_forward(o, lse, (size_t)T, q, k, v, &s);
}

size_t mpt_flash_workspace(int B, int T, int D, int H, int threads) {
    mpt_flash_shape s = whole_(B, T, D, H);
    size_t rows, acc = mpt_flash_block_workspace(&s, threads), n;
    if (acc == SIZE_MAX || !mpt_size_mul((size_t)B * (size_t)H, (size_t)T, &rows) ||
        !mpt_size_add(rows, acc, &n))
        return SIZE_MAX;
    return n;
}

/* The whole-sequence backward: dqkv += (set 0) or = (set 1) the gradient. */
static void flash_backward_(float *dqkv, const float *dout, const float *out, const float *lse,
                            const float *qkv, int B, int T, int D, int H, float *work,
                            int threads, int set) {
    size_t ld = 3 * (size_t)D, bs = (size_t)T * ld, od = (size_t)T * D;
    mpt_flash_shape s = whole_(B, T, D, H);
    mpt_flash_in g = {dout, (size_t)D, od}, y = {out, (size_t)D, od};
    mpt_flash_in q = {qkv, ld, bs}, k = {qkv + D, ld, bs}, v = {qkv + 2 * (size_t)D, ld, bs};
    mpt_flash_out dq = {dqkv, ld, bs}, dk = {dqkv + D, ld, bs}, dv = {dqkv + 2 * (size_t)D, ld, bs};
    float *drow = work;
    if (T > 0 && whole_heads_(&s, team_(threads))) { /* one region: zero, rowdot, tiles */
        bwd_whole_(dq, dk, dv, g, lse, drow, (size_t)T, q, k, v, &y, set, &s, team_(threads));
        return;
    }
    if (set) memset(dqkv, 0, (size_t)B * bs * sizeof *dqkv);
    mpt_flash_rowdot(drow, (size_t)T, g, y, B, H, D / H, T);
    mpt_flash_block_backward(dq, dk, dv, g, lse, drow, (size_t)T, q, k, v, &s,
                             work + (size_t)B * H * T, threads);
}

void mpt_flash_backward(float *dqkv, const float *dout, const float *out, const float *lse,
                        const float *qkv, int B, int T, int D, int H, float *work, int threads) {
    flash_backward_(dqkv, dout, out, lse, qkv, B, T, D, H, work, threads, 0);
}

void mpt_flash_backward_set(float *dqkv, const float *dout, const float *out, const float *lse,
                            const float *qkv, int B, int T, int D, int H, float *work,
                            int threads) {
    flash_backward_(dqkv, dout, out, lse, qkv, B, T, D, H, work, threads, 1);
}
