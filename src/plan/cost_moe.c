/* cost_moe.c — the cost of a Mixture-of-Experts MLP on one rank (see cost_moe.h). */
#include "plan/cost_moe.h"

#include <math.h>
#include <string.h>

#include "parallel/mesh.h"
#include "plan/cost.h"

int mpt_cost_moe_blocks(const mpt_config *cfg, int first_layer, int n_layers) {
    int n = 0;
    for (int i = first_layer; i < first_layer + n_layers; i++) n += mpt_config_is_moe_layer(cfg, i);
    return n;
}

int mpt_cost_ep_inter(const mpt_cluster *c, const mpt_plan_layout *l) {
    if (l->ep < 2) return 0;
    mpt_layout ml = mpt_layout_make(l->tp, l->cp, l->dp, l->pp, l->ep);
    /* inside dp: ep consecutive dp ranks (stride tp x cp); spanning cp: tp x ep ranks */
    long span = mpt_mesh_ep_spans_cp(&ml) ? (long)l->tp * l->ep : (long)l->tp * l->cp * l->ep;
    return span > c->per_node;
}

double mpt_cost_alltoall(const mpt_cluster *c, int n, double bytes, int inter) {
    if (n <= 1) return 0.0;
    double bw = inter ? c->inter_bw * c->inter_eff : c->intra_bw * c->intra_eff;
    if (!inter && c->mpi_alltoall_bw > 0) bw = c->mpi_alltoall_bw; /* measured (cpu-here) */
    double a = inter ? c->inter_lat : c->intra_lat;
    return (n - 1) * a + (double)(n - 1) / n * bytes / bw;
}

/* How far an expert GEMM of `flops` is from the calibration's expert GEMM (2 x 256 x 256 x 512
 * FLOPs: weight 0) towards the 768^3 sgemm of the dense figures (weight 1), in log of the FLOPs,
 * clamped: the measured expert rates hold at the calibration's size, the dense roofline (GEMM
 * curve, par_eff) for GEMMs as large as the one it was measured on, and a GEMM in between sits
 * in between (a GEMM's efficiency and its team scaling rise with its size). */
static double moe_big_weight_(double flops) {
    double lo = 2.0 * MPT_MOE_CAL_ROWS * MPT_MOE_CAL_D * MPT_MOE_CAL_F;
    double hi = 2.0 * MPT_MOE_CAL_BIG * MPT_MOE_CAL_BIG * MPT_MOE_CAL_BIG;
    if (flops <= lo) return 0;
    if (flops >= hi) return 1;
    return log(flops / lo) / log(hi / lo);
}

/* Seconds between the measured small-GEMM time a and the roofline's b, geometric at weight w. */
static double between_(double a, double b, double w) {
    if (w <= 0 || !(b > 0)) return a;
    if (w >= 1) return b;
    return exp((1 - w) * log(a) + w * log(b));
}

/* The expected maximum of n independent standard normals: the integral of x n phi(x)
 * Phi(x)^(n-1) over [-8, 8] by the midpoint rule (the tails beyond add < 1e-12). */
static double normal_max_(int n) {
    const int steps = 1600;
    const double lo = -8, h = 16.0 / steps, pi = 3.14159265358979323846;
    double s = 0;
    for (int i = 0; i < steps; i++) {
        double x = lo + (i + 0.5) * h;
        double phi = exp(-0.5 * x * x) / sqrt(2 * pi), Phi = 0.5 * (1 + erf(x / sqrt(2.0)));
        s += x * n * phi * pow(Phi, n - 1) * h;
    }
    return s;
}

double mpt_cost_moe_uniform_max(double tokens, int k, int E, int ep) {
    if (ep < 2 || E < 2 || k < 1 || !(tokens > 0)) return 1.0;
    double q = 1.0 / ep;
    double var = tokens * k * q * (1 - q) * (double)(E - k) / (E - 1);
    double mean = tokens * k * q;
    return 1.0 + sqrt(var / (1 - q)) * normal_max_(ep) / mean;
}

void mpt_cost_moe_block(const mpt_cluster *c, const mpt_config *cfg, const mpt_plan_layout *l,
                        double N, int precision, mpt_moe_cost *out) {
    memset(out, 0, sizeof *out);
    if (cfg->experts <= 0) return;
    int ep = l->ep > 1 ? l->ep : 1, inter = mpt_cost_ep_inter(c, l);
    double D = cfg->d_model, F = cfg->ffn, E = cfg->experts, K = cfg->top_k;
    double El = E / ep, es = mpt_cost_elem_bytes(precision);
    double keep = cfg->capacity_factor > 0 && cfg->capacity_factor < 1 ? cfg->capacity_factor : 1;
    double S = N * K * keep;          /* rows this rank sends (and, balanced, receives) */
    double M = S / El;                /* rows of each of its experts' GEMMs */
    double fl = 0;
    /* one all-to-all of the rows (D values and an expert index each), with the counts first */
    double msg = S * (D * es + 4.0);
    double a2a = ep > 1 ? mpt_cost_alltoall(c, ep, msg, inter) : 0;
    double counts = ep > 1 ? mpt_cost_alltoall(c, ep, 4.0 * ep, inter) : 0;
    double local = ep > 1 ? 0 : mpt_cost_kernel(c, precision, 0, 0, 2 * S * D); /* ep 1: copy */

    /* cpu-here measured the runtime's own MoE MLP (plan/calib_moe.c): its experts' FLOP/s per
     * part at the calibration's ~256 rows per expert, scaled to this block's rows per expert
     * by the GEMM efficiency curve; moe.c's own single-threaded code per sent row element */
    int meas = c->moe_rate_f > 0 && c->moe_rate_b > 0 && c->moe_rate_w > 0;
    double adj = 1, wbig = 0;
    if (meas) {
        double e_ref = mpt_cluster_gemm_eff(c, MPT_MOE_CAL_ROWS, MPT_MOE_CAL_F, MPT_MOE_CAL_D);
        double e_here = mpt_cluster_gemm_eff(c, M, F, D);
        adj = e_ref > 0 && e_here > 0 && e_here < e_ref ? e_here / e_ref : 1;
        wbig = moe_big_weight_(2 * M * D * F);
    }
    double xfl = 4 * S * D * F; /* each part's expert FLOPs: two GEMMs of 2 M D F, El times */

    /* forward */
    double f = mpt_cost_gemm(c, precision, N, E, D, &fl);         /* router logits */
    out->flops_f += 8 * N * E + 2 * E;                            /* aux and z losses */
    f += counts + a2a;                                            /* dispatch */
    if (meas) f += c->moe_row_f * S * D;                          /* moe.c's own code */
    else {
        f += mpt_cost_kernel(c, precision, 0, 0, 4 * N * E);      /* softmax, top-K, gates */
        f += mpt_cost_kernel(c, precision, 0, 0, 2 * S * D);      /* gather the sent rows */
        f += local;
        f += mpt_cost_kernel(c, precision, 0, 0, 2 * S * D);      /* sort by local expert */
    }
    double t0 = f, xf = 0;
    for (int e = 0; e < (int)El; e++) {
        xf += mpt_cost_gemm(c, precision, M, F, D, &fl);          /* c_fc */
        xf += mpt_cost_kernel(c, precision, c->ew_gelu_f, M * F, 2 * M * F); /* GELU */
        xf += mpt_cost_gemm(c, precision, M, D, F, &fl);          /* c_proj */
    }
    f += meas ? between_(xfl / (c->moe_rate_f * adj), xf, wbig) : xf;
    out->expert_f = f - t0;
    f += a2a;                                                     /* combine */
    if (!meas) {
        f += local;
        f += mpt_cost_kernel(c, precision, 0, 0, S * D + 2 * N * D); /* gate-weighted sum */
    }
    out->f = f;
    out->flops_f += fl;
    out->ep_time_f = counts + 2 * a2a;

    /* backward: B */
    fl = 0;
    double b = 2 * a2a;                                           /* dispatch dy, combine dx */
    if (meas) b += c->moe_row_b * S * D;                          /* moe.c's own code */
    else {
        b += mpt_cost_kernel(c, precision, 0, 0, 3 * S * D);      /* gate grads, row grads */
        b += 2 * local;
    }
    out->flops_b += 2 * S * D;
    double w = 0, flw = 0, b0 = b, xb = 0, xw = 0;
    for (int e = 0; e < (int)El; e++) {
        xb += mpt_cost_gemm(c, precision, M, F, D, &fl);          /* dh = dy W_proj^T */
        xb += mpt_cost_kernel(c, precision, c->ew_gelu_b, M * F, 3 * M * F); /* GELU backward */
        xb += mpt_cost_gemm(c, precision, M, D, F, &fl);          /* dx = dh W_fc^T */
        xw += mpt_cost_gemm(c, precision, F, D, M, &flw);         /* dW_proj */
        xw += mpt_cost_gemm(c, precision, D, F, M, &flw);         /* dW_fc */
        xw += mpt_cost_kernel(c, precision, 0, 0, M * (F + D));   /* bias sums */
    }
    b += meas ? between_(xfl / (c->moe_rate_b * adj), xb, wbig) : xb;
    w += meas ? between_(xfl / (c->moe_rate_w * adj), xw, wbig) : xw;
    out->expert_b = b - b0;
    out->expert_w = w;
    if (!meas) b += mpt_cost_kernel(c, precision, 0, 0, 2 * S * D + 4 * N * E); /* un-sort,
                                                                   * softmax backward */
    out->flops_b += 8 * N * E;                                    /* aux and z gradients */
    b += mpt_cost_gemm(c, precision, N, D, E, &fl);               /* dx += dz Wr^T */
    w += mpt_cost_gemm(c, precision, D, E, N, &flw);              /* dWr */
    out->b = b;
    out->w = w;
    out->flops_b += fl;
    out->flops_w = flw;
    out->ep_time_b = 2 * a2a;
    out->ep_bytes = ep > 1 ? 4 * msg * (ep - 1) / ep : 0;

    /* parameters: the router and the rank's E/ep experts (ZeRO 1-3 shard the experts over
     * the expert-data-parallel group, the dense part over dp x cp: parallel/ep.h) */
    double expert = 2 * D * F + F + D;
    out->params = D * E + El * expert;
    out->expert_params = ep > 1 ? El * expert : 0;
}
