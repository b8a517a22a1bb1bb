/* bench/gemm_rates.c — GFLOP/s of every GEMM shape of one training step of the bench model (or
 * any GPT shape), one row per shape and GEMM library, against the FMA peak and the rate of a
 * large square GEMM: where the step's GEMM time falls short of the large-GEMM limit.
 *
 *   build/bench/bench_gemm_rates [--layers L --d-model D --heads H --seq-len T --vocab V
 *                                 --ffn F --batch B --threads N --rounds R --peak1 G]
 *   defaults: the bench model (6L/384/6h/T256, byte vocab 256, F 1536, batch 8), 2 threads,
 *   5 rounds
 *
 * Shapes: the four linear layers' forward (x W), input gradient (dY W^T, beta 0) and weight
 * gradient (X^T dY, beta 1) at N = B*T rows; the tied head's forward (x E^T), input gradient
 * (dL E) and weight gradient (dL^T x); the flash attention's tile GEMMs (core/attention.c,
 * 64 query rows x 256 keys, head size hs, with the real leading dimensions), which run on one
 * thread each inside the attention's region; and a large square GEMM (2048^3) as the limit.
 * Each shape runs on three back ends (oneDNN's dnnl_sgemm, OpenBLAS's cblas_sgemm, BLIS's
 * bli_sgemm_ex through core/gemm_blis.c), the block and head GEMMs with the library's
 * threading on N threads and on one thread, the tile GEMMs on one thread. Rates:
 *   cpu1  one thread, per second of the thread's CPU time (CLOCK_THREAD_CPUTIME_ID): robust to
 *         other processes taking the core (not to their cache traffic), so readable under load;
 *   wallN N threads, per wall second: what the step sees, noisy under load.
 * Figures: median over R interleaved rounds (every shape and back end once per round). The
 * `% step` column is the shape's share of the step's GEMM FLOPs (attention tiles: of the
 * attention's, causal tiles skipped as the kernel does); `%P` the rate as a share of the FMA
 * peak (one thread's for cpu1, N threads' for wallN; --peak1 G gives one core's peak in GFLOP/s
 * instead of the start-up measurement, which load lowers). The last lines: the step's GEMMs
 * FLOP-weighted (total FLOPs / total time) per back end and with the best back end per shape,
 * and the 2048^3 GEMM against the peak. */
#include <cblas.h>
#include <oneapi/dnnl/dnnl.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "blis/gemm_blis.h"
#include "core/peak.h"

#define MAXS_ 32
#define MAXR_ 64
#define NB_ 3 /* back ends: 0 oneDNN, 1 OpenBLAS, 2 BLIS */
static const char *const bname_[NB_] = {"dnnl", "blas", "blis"};

typedef struct {
    char name[48];
    char ta, tb;
    size_t M, N, K, lda, ldb, ldc;
    float beta;
    int tile;      /* attention tile GEMM: one thread only */
    double weight; /* FLOPs of this shape per step */
} shape_t;

static float *buf_(size_t n) {
    float *p = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
    if (!p) {
        fprintf(stderr, "bench_gemm_rates: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++) p[i] = (float)((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
    return p;
}

static double now_(int cpu) {
    struct timespec ts;
    clock_gettime(cpu ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void gemm_(int blas, const shape_t *s, const float *A, const float *B, float *C) {
    if (blas == 2) {
        mpt_blis_sgemm(s->ta, s->tb, s->M, s->N, s->K, 1.0f, A, s->lda, B, s->ldb, s->beta, C,
                       s->ldc, 0);
        return;
    }
    if (!blas) {
        dnnl_sgemm(s->ta, s->tb, (dnnl_dim_t)s->M, (dnnl_dim_t)s->N, (dnnl_dim_t)s->K, 1.0f, A,
                   (dnnl_dim_t)s->lda, B, (dnnl_dim_t)s->ldb, s->beta, C, (dnnl_dim_t)s->ldc);
        return;
    }
    cblas_sgemm(CblasRowMajor, s->ta == 'T' ? CblasTrans : CblasNoTrans,
                s->tb == 'T' ? CblasTrans : CblasNoTrans, (int)s->M, (int)s->N, (int)s->K, 1.0f,
                A, (int)s->lda, B, (int)s->ldb, s->beta, C, (int)s->ldc);
}

/* seconds per call: repeats until ~reps calls or 0.15 s, whichever first (at least 2) */
static double time_(int blas, int threads, int cpu, const shape_t *s, const float *A,
                    const float *B, float *C) {
    omp_set_num_threads(threads);
    gemm_(blas, s, A, B, C); /* warm */
    int n = 0;
    double t0 = now_(cpu), t = t0;
    while (n < 2 || (t - t0 < 0.15 && n < 200)) {
        gemm_(blas, s, A, B, C);
        n++;
        t = now_(cpu);
    }
    return (t - t0) / n;
}

static int cmp_(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median_(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void add_(shape_t *s, int *ns, const char *name, char ta, char tb, size_t M, size_t N,
                 size_t K, size_t lda, size_t ldb, size_t ldc, float beta, int tile,
                 double count) {
    shape_t *x = &s[(*ns)++];
    snprintf(x->name, sizeof x->name, "%s", name);
    x->ta = ta, x->tb = tb, x->M = M, x->N = N, x->K = K, x->lda = lda, x->ldb = ldb;
    x->ldc = ldc, x->beta = beta, x->tile = tile;
    x->weight = count * 2.0 * (double)M * (double)N * (double)K;
}

int main(int argc, char **argv) {
    int L = 6, D = 384, H = 6, T = 256, V = 256, F = 0, B = 8, threads = 2, rounds = 5;
    double peak_arg = 0; /* --peak1 G: one core's FMA peak in GFLOP/s (an idle measurement) */
    for (int i = 1; i + 1 < argc; i += 2) {
        int v = atoi(argv[i + 1]);
        if (!strcmp(argv[i], "--layers")) L = v;
        else if (!strcmp(argv[i], "--d-model")) D = v;
        else if (!strcmp(argv[i], "--heads")) H = v;
        else if (!strcmp(argv[i], "--seq-len")) T = v;
        else if (!strcmp(argv[i], "--vocab")) V = v;
        else if (!strcmp(argv[i], "--ffn")) F = v;
        else if (!strcmp(argv[i], "--batch")) B = v;
        else if (!strcmp(argv[i], "--threads")) threads = v;
        else if (!strcmp(argv[i], "--rounds")) rounds = v;
        else if (!strcmp(argv[i], "--peak1")) peak_arg = atof(argv[i + 1]);
        else {
            fprintf(stderr, "bench_gemm_rates: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (F == 0) F = 4 * D;
    if (rounds > MAXR_) rounds = MAXR_;
    size_t N = (size_t)B * T, hs = (size_t)(D / H), Vp = ((size_t)V + 63) / 64 * 64;
    size_t d = (size_t)D, f = (size_t)F;
    shape_t s[MAXS_];
    int ns = 0;
    const struct { const char *n; size_t C, OC; } lay[4] = {
        {"qkv", d, 3 * d}, {"attn.proj", d, d}, {"fc", d, f}, {"fc.proj", f, d}};
    char nm[48];
    for (int k = 0; k < 4; k++) {
        size_t C = lay[k].C, OC = lay[k].OC;
        snprintf(nm, sizeof nm, "%s fwd", lay[k].n);
        add_(s, &ns, nm, 'N', 'N', N, OC, C, C, OC, OC, 0.0f, 0, L);
        snprintf(nm, sizeof nm, "%s dinp", lay[k].n);
        add_(s, &ns, nm, 'N', 'T', N, C, OC, OC, OC, C, 0.0f, 0, L);
        snprintf(nm, sizeof nm, "%s dW", lay[k].n);
        add_(s, &ns, nm, 'T', 'N', C, OC, N, C, OC, OC, 1.0f, 0, L);
    }
    add_(s, &ns, "head fwd", 'N', 'T', N, (size_t)V, d, d, d, Vp, 0.0f, 0, 1);
    add_(s, &ns, "head dinp", 'N', 'N', N, d, (size_t)V, Vp, d, d, 0.0f, 0, 1);
    add_(s, &ns, "head dW", 'T', 'N', (size_t)V, d, N, Vp, d, d, 1.0f, 0, 1);
    /* attention tiles (core/attention.c): BQ 64 query rows, up to BK 256 keys; q, k, v inside
     * qkv (ld 3D), the tile S (BQ x BK) ld BK, out/dout ld D. Counted per (batch, head, query
     * tile) for the causal tiles: nc averages (T+BQ)/2 keys when T <= BK. */
    size_t bq = 64, bk = (size_t)T < 256 ? (size_t)T : 256, q3 = 3 * d;
    double tiles = (double)B * H * ((double)T / 64.0), kf = ((double)T + 64.0) / 2.0 / (double)bk;
    add_(s, &ns, "att S=QK^T", 'N', 'T', bq, bk, hs, q3, q3, bk, 0.0f, 1, L * tiles * kf);
    add_(s, &ns, "att O+=PV", 'N', 'N', bq, hs, bk, bk, q3, d, 1.0f, 1, L * tiles * kf);
    add_(s, &ns, "att bwd S,dP", 'N', 'T', bq, bk, hs, q3, q3, bk, 0.0f, 1, 2 * L * tiles * kf);
    add_(s, &ns, "att bwd dV,dK", 'T', 'N', bk, hs, bq, bk, d, q3, 1.0f, 1, 2 * L * tiles * kf);
    add_(s, &ns, "att bwd dQ", 'N', 'N', bq, hs, bk, bk, q3, q3, 1.0f, 1, L * tiles * kf);
    add_(s, &ns, "large 2048^3", 'N', 'N', 2048, 2048, 2048, 2048, 2048, 2048, 0.0f, 0, 0);

    size_t maxe = 0;
    for (int i = 0; i < ns; i++) {
        size_t ea = (s[i].ta == 'N' ? s[i].M : s[i].K) * s[i].lda;
        size_t eb = (s[i].tb == 'N' ? s[i].K : s[i].N) * s[i].ldb;
        size_t ec = s[i].M * s[i].ldc;
        if (ea > maxe) maxe = ea;
        if (eb > maxe) maxe = eb;
        if (ec > maxe) maxe = ec;
    }
    float *A = buf_(maxe), *Bm = buf_(maxe), *C = buf_(maxe);
    double peak1 = mpt_measure_peak_flops(1, 0.2) * 1e-9;
    double peakN = mpt_measure_peak_flops(threads, 0.2) * 1e-9;
    if (peak_arg > 0) peak1 = peak_arg, peakN = peak_arg * threads;
    /* r[shape][backend][0 cpu1, 1 wallN][round] */
    static double r[MAXS_][NB_][2][MAXR_];
    for (int k = 0; k < rounds; k++)
        for (int i = 0; i < ns; i++)
            for (int b = 0; b < NB_; b++) {
                double fl = 2.0 * (double)s[i].M * (double)s[i].N * (double)s[i].K;
                r[i][b][0][k] = fl / time_(b, 1, 1, &s[i], A, Bm, C) * 1e-9;
                r[i][b][1][k] = s[i].tile ? 0.0
                                          : fl / time_(b, threads, 0, &s[i], A, Bm, C) * 1e-9;
            }
    double blockfl = 0.0, attfl = 0.0;
    for (int i = 0; i < ns; i++) (s[i].tile ? &attfl : &blockfl)[0] += s[i].weight;
    double la[NB_][2];
    for (int b = 0; b < NB_; b++)
        for (int m = 0; m < 2; m++) la[b][m] = median_(r[ns - 1][b][m], rounds);
    printf("bench_gemm_rates: L%d D%d H%d T%d V%d F%d, batch %d (N %zu), %d threads, median of %d "
           "rounds\n",
           L, D, H, T, V, F, B, N, threads, rounds);
    printf("FMA peak (measured in wall time, lowered by load; or --peak1): 1 thread %.1f GFLOP/s, "
           "%d threads %.1f GFLOP/s\n",
           peak1, threads, peakN);
    printf("cpu1 = 1 thread per CPU second; wall%d = %d threads per wall second\n", threads,
           threads);
    printf("BLIS sub-configuration: %s; %%P = of the FMA peak (cpu1: 1 thread's, wallN: N "
           "threads')\n\n", mpt_blis_arch());
    printf("  %-16s %5s %5s %5s %2s  %6s", "shape", "M", "N", "K", "op", "%step");
    for (int b = 0; b < NB_; b++)
        printf("  %5s c1 %4s %5s wN %4s", bname_[b], "%P", bname_[b], "%P");
    printf("\n");
    for (int i = 0; i < ns; i++) {
        double m[NB_][2];
        for (int b = 0; b < NB_; b++)
            for (int q = 0; q < 2; q++) m[b][q] = median_(r[i][b][q], rounds);
        double share = s[i].weight / (s[i].tile ? attfl : blockfl) * 100.0;
        printf("  %-16s %5zu %5zu %5zu %c%c  %5.1f%%", s[i].name, s[i].M, s[i].N, s[i].K, s[i].ta,
               s[i].tb, s[i].weight > 0 ? share : 0.0);
        for (int b = 0; b < NB_; b++) {
            printf("  %8.1f %4.0f%%", m[b][0], m[b][0] / peak1 * 100.0);
            if (s[i].tile) printf(" %8s %5s", "-", "-");
            else printf(" %8.1f %4.0f%%", m[b][1], m[b][1] / peakN * 100.0);
        }
        printf("\n");
    }
    printf("\n  step GEMMs, FLOP-weighted, %% of FMA peak (cpu1 / wall%d), best back end per "
           "shape:", threads);
    for (int q = 0; q < 2; q++) { /* time = sum weight / rate, per back end and per best */
        double t[NB_ + 1] = {0};
        for (int i = 0; i < ns; i++) {
            if (s[i].weight <= 0 || (q && s[i].tile)) continue;
            double best = 0;
            for (int b = 0; b < NB_; b++) {
                double m = median_(r[i][b][q], rounds);
                t[b] += s[i].weight / m;
                if (m > best) best = m;
            }
            t[NB_] += s[i].weight / best;
        }
        double fl = q ? blockfl : blockfl + attfl, pk = q ? peakN : peak1;
        for (int b = 0; b <= NB_; b++)
            printf(" %s %.0f%%", b < NB_ ? bname_[b] : "best", fl / t[b] / pk * 100.0);
        printf(q ? "\n" : " |");
    }
    printf("  large GEMM vs FMA peak (cpu1 / wall%d):", threads);
    for (int b = 0; b < NB_; b++)
        printf(" %s %.0f%% / %.0f%%", bname_[b], la[b][0] / peak1 * 100.0, la[b][1] / peakN * 100.0);
    printf("\n");
    free(A);
    free(Bm);
    free(C);
    return 0;
}
