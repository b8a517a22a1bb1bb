/* cluster.c — cluster presets, cluster JSON files and the calibration of cpu-here (see
 * cluster.h). */
#include "plan/cluster.h"

#include <cjson/cJSON.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/file.h"
#include "core/kernels.h"
#include "plan/probe.h"

static void a100_(mpt_cluster *c) {
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "a100-80g");
    c->peak_bf16 = 312e12;
    c->peak_fp32 = 19.5e12;
    c->gemm_eff = 0.70;
    c->mem_bw = 2039e9;
    c->mem_eff = 0.80;
    c->launch = 6e-6;
    c->mem_bytes = (size_t)80 * 1000 * 1000 * 1000;
    c->per_node = 8;
    c->intra_bw = 300e9;
    c->intra_eff = 0.80;
    c->intra_lat = 5e-6;
    c->inter_bw = 25e9;
    c->inter_eff = 0.90;
    c->inter_lat = 10e-6;
}

static void h100_(mpt_cluster *c) {
    a100_(c);
    snprintf(c->name, sizeof c->name, "h100-80g");
    c->peak_bf16 = 989e12;
    c->peak_fp32 = 67e12;
    c->mem_bw = 3350e9;
    c->intra_bw = 450e9;
    c->inter_bw = 50e9;
}

/* CPU seconds of this process: cpu-here's figures are the machine's rates while the
 * calibrating code runs, not diluted by other work sharing the cores (on a quiet machine the
 * same as wall time). */
double mpt_cluster_cpu_seconds(void) {
    struct timespec t;
    if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t) != 0) return omp_get_wtime();
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double now_(void) { return mpt_cluster_cpu_seconds(); }

/* The median of n > 0 times (sorted in place): the sustained figure, which a first run's
 * warm-up or a lucky quiet moment on a shared machine does not move. */
double mpt_cluster_median_(double *t, int n) {
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && t[j] < t[j - 1]; j--) {
            double x = t[j];
            t[j] = t[j - 1];
            t[j - 1] = x;
        }
    return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

/* The sustained sgemm rate of `threads` threads on a 768^3 product (median of five). */
static double gemm_rate_(int threads) {
    const int n = 768;
    size_t nn = (size_t)n * n;
    float *a = calloc(nn, 4), *b = calloc(nn, 4), *o = malloc(nn * 4);
    double best = 0;
    if (a && b && o) {
        for (size_t i = 0; i < nn; i++) a[i] = b[i] = 1e-3f * (float)(i % 97);
        int saved = omp_get_max_threads();
        omp_set_num_threads(threads);
        double t[5];
        for (int rep = 0; rep < 5; rep++) {
            double t0 = now_();
            mpt_matmul_forward(o, a, b, NULL, (size_t)n, n, n);
            t[rep] = now_() - t0;
        }
        /* CPU seconds of `threads` busy threads: wall seconds on cores of their own */
        double dt = mpt_cluster_median_(t, 5) / threads;
        if (dt > 0) best = 2.0 * n * n * n / dt;
        omp_set_num_threads(saved);
    }
    free(a);
    free(b);
    free(o);
    return best;
}

/* Streaming copy bandwidth of one core over 64 MiB (bytes read + written per second; median of
 * five). */
static double copy_bw_(void) {
    size_t n = (size_t)64 << 20;
    char *s = malloc(n), *d = malloc(n);
    double best = 0;
    if (s && d) {
        memset(s, 1, n);
        memset(d, 0, n);
        double t[5];
        for (int rep = 0; rep < 5; rep++) {
            double t0 = now_();
            memcpy(d, s, n);
            t[rep] = now_() - t0;
        }
        double dt = mpt_cluster_median_(t, 5);
        if (dt > 0) best = 2.0 * (double)n / dt;
    }
    free(s);
    free(d);
    return best;
}

void mpt_cluster_measure_here(mpt_cluster *c) {
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "cpu-here");
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    c->cores = cores > 0 ? (int)cores : 1;
    c->per_node = 1 << 30; /* every rank of a job here is on this node */
    /* the FMA peak in the thread's CPU seconds (plan/probe.h, the machine-state probe's loop:
     * what other jobs take from the core does not lower it, a busy sibling hyperthread of the
     * host core does), the median of 5 samples of 0.05 s. (Formerly core/peak.h's best of five
     * in wall seconds, which read 20% low at load 4 while the probe read the usual 90 GF/s.)
     * The GEMM rates do not depend on it: the curve is rate / peak (calib.c). */
    double pk[5];
    for (int i = 0; i < 5; i++) pk[i] = mpt_probe_fma_solo(0.05);
    c->peak_fp32 = mpt_cluster_median_(pk, 5);
    if (!(c->peak_fp32 > 0)) c->peak_fp32 = 1e10;
    c->peak_bf16 = c->peak_fp32; /* no bf16 arithmetic on this path: the same units */
    double g = gemm_rate_(1);
    if (g > c->peak_fp32) c->peak_fp32 = c->peak_bf16 = g; /* (the peak's own run was diluted) */
    /* par_eff (the GEMM on every core against one core times the cores): plan/calib.c */
    c->gemm_eff = g > 0 ? g / c->peak_fp32 : 0.5;
    if (c->gemm_eff > 1) c->gemm_eff = 1;
    c->mem_bw = copy_bw_();
    if (!(c->mem_bw > 0)) c->mem_bw = 1e10;
    c->mem_eff = 1.0;  /* measured, so already what a streaming kernel reaches */
    c->launch = 2e-6;  /* an OpenMP parallel region */
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    c->mem_bytes = pages > 0 && psz > 0 ? (size_t)pages * (size_t)psz / (size_t)c->cores : 0;
    /* shared-memory transport: the sender copies in, the receiver copies out */
    c->intra_bw = c->mem_bw / 4;
    c->intra_eff = 1.0;
    c->intra_lat = 2e-6;
    c->inter_bw = 1.25e9; /* no second node here: a 10 Gb/s Ethernet stands in */
    c->inter_eff = 0.9;
    c->inter_lat = 30e-6;
    c->measured = 1;
    mpt_cluster_measure_kernels(c);
    mpt_cluster_measure_moe(c);
    if (c->cores > 1) mpt_cluster_measure_poll(c); /* only more ranks than cores need it */
    if (c->cores > 1) mpt_cluster_measure_meet(c); /* (these two) */
}

/* A measured factor, or 1 when it was not measured (0). */
static double or_one_(double f) { return f > 0 ? f : 1.0; }

double mpt_cluster_rank_share(mpt_cluster *c, long world, int threads) {
    if (c->cores <= 0 || world < 1) return 1.0;
    if (threads <= 0) threads = c->cores / world > 0 ? (int)(c->cores / world) : 1;
    double share = (double)c->cores / (double)world;
    if (share > threads) share = threads;
    /* per kind of kernel: a rank of several threads runs at its share times the measured
     * team scaling (par_*); a rank of one thread at one core's rate, or while every core is
     * busy (ranks x threads >= cores) at the loaded core's rate (busy_*) */
    int all_busy = (double)world * threads >= c->cores;
    double fg = share, fa = share, fe = share;
    if (share > 1) {
        fg *= or_one_(c->par_eff);
        fa *= or_one_(c->par_attn);
        fe *= or_one_(c->par_ew);
    } else if (all_busy) {
        fg *= or_one_(c->busy_gemm);
        fa *= or_one_(c->busy_attn);
        fe *= or_one_(c->busy_ew);
    }
    c->peak_fp32 *= fg;
    c->peak_bf16 *= fg;
    c->mem_bw *= fe;
    c->attn_f *= fa;
    c->attn_b *= fa;
    /* MoE (calib_moe.c): the experts' GEMMs scale over a team by their own par_moe; moe.c's
     * own code by its measured par_moe_row (one thread's rate when not measured; at a
     * time-shared or loaded core's rate when the rank has at most one core) */
    double fm = share > 1 ? share * or_one_(c->par_moe) : fg;
    double fs = share > 1 ? (c->par_moe_row > 0 ? share * c->par_moe_row : 1.0)
                          : (all_busy ? share * or_one_(c->busy_ew) : share);
    c->moe_rate_f *= fm, c->moe_rate_b *= fm, c->moe_rate_w *= fm;
    c->moe_row_f /= fs, c->moe_row_b /= fs;
    double *ew[] = {&c->ew_ln_f, &c->ew_ln_b, &c->ew_gelu_f, &c->ew_gelu_b, &c->ew_add,
                    &c->ew_xent};
    for (size_t i = 0; i < sizeof ew / sizeof *ew; i++) *ew[i] /= fe;
    double *bw[] = {&c->intra_bw, &c->mpi_allreduce_bw, &c->mpi_reduce_scatter_bw,
                    &c->mpi_allgather_bw,
                    &c->mpi_alltoall_bw};
    for (size_t i = 0; i < sizeof bw / sizeof *bw; i++) {
        if (all_busy && share <= 1) /* shared-memory copies on a loaded socket */
            *bw[i] *= or_one_(c->busy_ew);
        if (share < 1) *bw[i] *= share; /* the copies run on a time-shared core too */
    }
    if (share < 1) c->intra_lat /= share;
    return share;
}

static mpt_status from_json_(mpt_cluster *c, const char *path, mpt_error *err) {
    char *text = NULL;
    size_t n = 0;
    mpt_status st = mpt_file_read(path, (size_t)1 << 20, &text, &n, err);
    if (st) return st;
    cJSON *root = cJSON_ParseWithLength(text, n);
    free(text);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return mpt_fail(err, MPT_ERR_INPUT, "%s: not a JSON object of cluster fields", path);
    }
    a100_(c);
    snprintf(c->name, sizeof c->name, "%s", path);
    const struct { const char *key; double *dst; } f[] = {
        {"peak_fp32", &c->peak_fp32}, {"peak_bf16", &c->peak_bf16}, {"gemm_eff", &c->gemm_eff},
        {"mem_bw", &c->mem_bw},       {"mem_eff", &c->mem_eff},     {"launch", &c->launch},
        {"intra_bw", &c->intra_bw},   {"intra_eff", &c->intra_eff}, {"intra_lat", &c->intra_lat},
        {"inter_bw", &c->inter_bw},   {"inter_eff", &c->inter_eff}, {"inter_lat", &c->inter_lat},
        {"attn_f", &c->attn_f},       {"attn_b", &c->attn_b},       {"ew_ln_f", &c->ew_ln_f},
        {"ew_ln_b", &c->ew_ln_b},     {"ew_gelu_f", &c->ew_gelu_f}, {"ew_gelu_b", &c->ew_gelu_b},
        {"ew_add", &c->ew_add},       {"ew_xent", &c->ew_xent},     {"par_eff", &c->par_eff},
    };
    const char *cal_names[32];
    double *cal_ptrs[32];
    size_t n_cal = mpt_cluster_calib_fields(c, cal_names, cal_ptrs, 32);
    for (cJSON *it = root->child; it; it = it->next) {
        int known = 0;
        for (size_t i = 0; i < sizeof f / sizeof *f; i++)
            if (strcmp(it->string, f[i].key) == 0) {
                if (!cJSON_IsNumber(it) || !(it->valuedouble >= 0)) goto bad;
                *f[i].dst = it->valuedouble;
                known = 1;
            }
        for (size_t i = 0; i < n_cal && i < 32; i++)
            if (strcmp(it->string, cal_names[i]) == 0) {
                if (!cJSON_IsNumber(it) || !(it->valuedouble >= 0)) goto bad;
                *cal_ptrs[i] = it->valuedouble;
                known = 1;
            }
        if (strcmp(it->string, "mem_bytes") == 0) {
            if (!cJSON_IsNumber(it) || !(it->valuedouble > 0)) goto bad;
            c->mem_bytes = (size_t)it->valuedouble;
            known = 1;
        } else if (strcmp(it->string, "per_node") == 0) {
            if (!cJSON_IsNumber(it) || !(it->valuedouble >= 1)) goto bad;
            c->per_node = (int)it->valuedouble;
            known = 1;
        } else if (strcmp(it->string, "cores") == 0) { /* ranks share them (cpu-here) */
            if (!cJSON_IsNumber(it) || !(it->valuedouble >= 0) || it->valuedouble > 1e6) goto bad;
            c->cores = (int)it->valuedouble;
            known = 1;
        } else if (strcmp(it->string, "name") == 0 && cJSON_IsString(it)) {
            snprintf(c->name, sizeof c->name, "%s", it->valuestring);
            known = 1;
        }
        if (!known) {
            mpt_fail(err, MPT_ERR_INPUT, "%s: unknown cluster field '%s'", path, it->string);
            cJSON_Delete(root);
            return MPT_ERR_INPUT;
        }
        continue;
    bad:
        mpt_fail(err, MPT_ERR_INPUT, "%s: field '%s' must be a non-negative number", path,
                 it->string);
        cJSON_Delete(root);
        return MPT_ERR_INPUT;
    }
    cJSON_Delete(root);
    if (!(c->peak_bf16 > 0 && c->peak_fp32 > 0 && c->gemm_eff > 0 && c->mem_bw > 0 &&
          c->mem_eff > 0 && c->intra_bw > 0 && c->inter_bw > 0 && c->intra_eff > 0 &&
          c->inter_eff > 0))
        return mpt_fail(err, MPT_ERR_INPUT, "%s: peaks, efficiencies and bandwidths must be "
                        "positive", path);
    return MPT_OK;
}

mpt_status mpt_cluster_load(mpt_cluster *c, const char *name, mpt_error *err) {
    if (strcmp(name, "a100-80g") == 0) a100_(c);
    else if (strcmp(name, "h100-80g") == 0) h100_(c);
    else if (strcmp(name, "cpu-here") == 0) mpt_cluster_measure_here(c);
    else if (access(name, R_OK) == 0) return from_json_(c, name, err);
    else
        return mpt_fail(err, MPT_ERR_INPUT, "unknown cluster '%s': use a100-80g, h100-80g, "
                        "cpu-here or a JSON file of cluster fields", name);
    return MPT_OK;
}
