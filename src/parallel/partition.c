/* partition.c — pipeline stage splits (see partition.h). */
#include "parallel/partition.h"

#include <stdlib.h>
#include <string.h>

double mpt_partition_stage_cost(const mpt_config *cfg, int T, int n, int first, int last) {
    double D = cfg->d_model, F = cfg->ffn, V = cfg->vocab;
    double block = 6.0 * (4.0 * D * D + 2.0 * D * F) + 12.0 * T * D; /* matmuls + attention */
    double cost = n * block;
    if (first) cost += 6.0 * D;                  /* lookup and its scatter */
    if (last) cost += 6.0 * V * D + 10.0 * V;    /* head matmuls, softmax cross-entropy */
    return cost;
}

static mpt_status parse_list_(const char *mode, int p, int L, int *counts, mpt_error *err) {
    const char *s = mode;
    int total = 0;
    for (int i = 0; i < p; i++) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 1)
            return mpt_fail(err, MPT_ERR_INPUT,
                            "--partition %s: expected %d positive block counts separated by "
                            "commas (one per pipeline stage)",
                            mode, p);
        counts[i] = (int)v;
        total += (int)v;
        s = end;
        if (i + 1 < p) {
            if (*s != ',')
                return mpt_fail(err, MPT_ERR_INPUT,
                                "--partition %s has fewer than the %d counts --pp %d needs", mode,
                                p, p);
            s++;
        }
    }
    if (*s != '\0')
        return mpt_fail(err, MPT_ERR_INPUT, "--partition %s has more than the %d counts --pp %d "
                                            "needs", mode, p, p);
    if (total != L)
        return mpt_fail(err, MPT_ERR_INPUT,
                        "--partition %s adds up to %d blocks, but the model has %d layers: give "
                        "%d counts (one per stage) that add up to %d, or --partition auto", mode,
                        total, L, p, L);
    return MPT_OK;
}

/* best[k][l]: the smallest possible largest-stage cost splitting blocks [0, l) into stages
 * 0..k-1; the last stage of such a prefix is the model's last only when k == p. */
static int auto_(const mpt_config *cfg, int T, int p, int L, int *counts,
                 mpt_partition_fits_fn fits, void *ctx) {
    size_t W = (size_t)L + 1;
    double *best = malloc((size_t)(p + 1) * W * sizeof *best);
    int *cut = malloc((size_t)(p + 1) * W * sizeof *cut);
    if (!best || !cut) { /* fall back to uniform */
        for (int i = 0; i < p; i++) counts[i] = L / p + (i < L % p);
        free(best);
        free(cut);
        return 1;
    }
    for (size_t i = 0; i < (size_t)(p + 1) * W; i++) best[i] = 1e300;
    best[0] = 0.0;
    for (int k = 1; k <= p; k++)
        for (int l = k; l <= L - (p - k); l++)
            for (int j = k - 1; j < l; j++) {
                double prev = best[(size_t)(k - 1) * W + (size_t)j];
                if (prev >= 1e300 || (fits && !fits(ctx, k - 1, j, l - j))) continue;
                double c = mpt_partition_stage_cost(cfg, T, l - j, k == 1, k == p);
                double v = prev > c ? prev : c;
                if (v < best[(size_t)k * W + (size_t)l]) {
                    best[(size_t)k * W + (size_t)l] = v;
                    cut[(size_t)k * W + (size_t)l] = j;
                }
            }
    int found = best[(size_t)p * W + (size_t)L] < 1e300;
    for (int k = p, l = L; found && k >= 1; k--) {
        int j = cut[(size_t)k * W + (size_t)l];
        counts[k - 1] = l - j;
        l = j;
    }
    free(best);
    free(cut);
    return found;
}

mpt_status mpt_partition(const mpt_config *cfg, int T, int p, const char *mode, int *counts,
                         mpt_partition_fits_fn fits, void *ctx, mpt_error *err) {
    int L = cfg->n_layer;
    if (p > L)
        return mpt_fail(err, MPT_ERR_INPUT,
                        "--pp %d is more pipeline stages than the model's %d layers: use --pp %d "
                        "or fewer",
                        p, L, L);
    if (!mode || strcmp(mode, "uniform") == 0) {
        for (int i = 0; i < p; i++) counts[i] = L / p + (i < L % p);
        return MPT_OK;
    }
    if (strcmp(mode, "auto") == 0) {
        if (auto_(cfg, T, p, L, counts, fits, ctx)) return MPT_OK;
        return mpt_fail(err, MPT_ERR_INPUT,
                        "--partition auto finds no split of %d layers over %d stages whose every "
                        "stage fits --mem-limit: raise it, or use more stages or micro-batches",
                        L, p);
    }
    return parse_list_(mode, p, L, counts, err);
}
