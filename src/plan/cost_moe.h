/* cost_moe.h — the cost model of a Mixture-of-Experts MLP (model/moe.h) on one rank, for one
 * micro-batch of N token rows: what replaces the dense MLP's c_fc, GELU and c_proj (and their
 * tensor-parallel all-reduce: every tp rank runs the MoE MLP whole) in an MoE block.
 *
 * Routing is taken as balanced (what the load-balancing loss drives it to): a rank's N*K
 * assignments (capacity c > 0: at most min(1, c) of them kept) spread evenly, so each of its
 * El = E/ep experts runs its GEMMs on M = ep*N*K/E rows (times min(1, c)), N*K rows in all.
 *   forward   router GEMM N x E x D, softmax / top-K / gates over N x E, aux and z losses
 *             (about 8 FLOPs per router logit, counted though negligible), the sent rows
 *             gathered (N*K x D), dispatch all-to-all, El x (c_fc GEMM M x F x D, GELU,
 *             c_proj GEMM M x D x F), combine all-to-all, the gate-weighted sum
 *   backward  B: the gate gradients and the rows' gradients, dispatch all-to-all, per expert
 *             dh = dy W_proj^T, GELU backward, dx = dh W_fc^T, combine all-to-all, router
 *             softmax backward and dx += dz Wr^T; W: each expert's dW_proj, dW_fc and bias
 *             sums, the router's dWr = x^T dz
 * An all-to-all over the ep group (parallel/ep.c: the per-destination counts first, in the
 * forward dispatch only, then the rows with their expert indices through MPI_Alltoallv) costs
 * (ep-1) x latency + (ep-1)/ep x bytes / bandwidth, the link intra- or inter-node by where the
 * ep group sits in the rank order (mpt_cost_ep_inter); ep 1 moves the rows by a local copy.
 * On cpu-here, with the measured MoE figures (cluster.h moe_*, par_moe; plan/calib_moe.c: the
 * runtime's own MoE MLP timed): each part's experts take 4 S D F FLOPs (S = N K keep rows) at
 * moe_rate_f / _b / _w, times the GEMM curve's efficiency at the block's rows per expert over
 * its efficiency at the calibration's 256 (MPT_MOE_CAL_ROWS) when lower; an expert GEMM larger
 * than the calibration's moves towards the dense roofline's time (GEMM curve, par_eff: measured
 * on a 768^3 sgemm), geometrically in log of its FLOPs, reaching it at 2 x 768^3 FLOPs (a GEMM's
 * efficiency and team scaling rise with its size); moe.c's own single-threaded code
 * (softmax and top-K, gathers into send order, the local copies of ep 1, the sorts by expert,
 * the gate-weighted sum; backward the gate gradients and the sums into dx) takes moe_row_f /
 * moe_row_b seconds per sent row element (S x D), at one core's rate whatever the rank's
 * threads (mpt_cluster_rank_share); the all-to-all runs at the measured MPI_Ialltoallv
 * bandwidth (mpi_alltoall_bw) when given. Elsewhere (GPU presets) GEMMs and kernels are priced
 * as the dense ones (cost.h: mpt_cost_gemm, mpt_cost_kernel); the FLOPs are the same either
 * way. Pure. */
#ifndef MPT_COST_MOE_H
#define MPT_COST_MOE_H

#include "model/config.h"
#include "plan/cluster.h"
#include "plan/plan.h"

typedef struct mpt_moe_cost {
    double f, b, w;             /* seconds: forward; backward's input-gradient part; W part */
    double flops_f, flops_b, flops_w;
    double ep_bytes;            /* bytes this rank sends in the block's all-to-alls, F + B */
    double ep_time_f, ep_time_b;/* seconds of them (included in f and b) */
    double expert_f, expert_b, expert_w; /* seconds of the experts' GEMMs and GELU (included
                                 * in f, b, w): what a busier rank takes longer for */
    double params;              /* parameter elements the rank holds: router + its experts
                                 * (E/ep of them, at every ZeRO stage: parallel/ep.h) */
    double expert_params;       /* ep > 1: the experts' elements, whose gradients are reduced
                                 * (ZeRO 1-3: sharded) over the expert-data-parallel group */
} mpt_moe_cost;

/* MoE blocks among [first_layer, first_layer + n_layers) (mpt_config_is_moe_layer). */
int mpt_cost_moe_blocks(const mpt_config *cfg, int first_layer, int n_layers);
/* 1 when the ep group spans nodes (parallel/mesh.h: ep inside dp, stride tp x cp; or over
 * every cp rank and ep/cp dp ranks, stride tp). */
int mpt_cost_ep_inter(const mpt_cluster *c, const mpt_plan_layout *l);
/* Seconds of one all-to-all over n ranks sending `bytes` from each rank in all. */
double mpt_cost_alltoall(const mpt_cluster *c, int n, double bytes, int inter);
/* The busiest ep rank's rows over the mean when `tokens` tokens of the ep group are routed
 * independently and uniformly, each to k distinct experts of E, and each of the ep ranks holds
 * E/ep of them (the router near its initialisation, if tokens did not resemble each other): a
 * token sends a hypergeometric number of its k rows to a given rank (mean k/ep, variance
 * k (1/ep)(1-1/ep)(E-k)/(E-1)); over the tokens a rank's rows are near normal, and the
 * expected largest of ep such loads that sum to a constant is the mean plus sigma/sqrt(1-1/ep)
 * times the expected maximum of ep independent standard normals (integrated numerically).
 * 1 for ep < 2. Tokens of a real batch are alike (shared positions, common words), so real
 * routing is more skewed than this (train logs it: expert_tokens, moe_imbalance); this is the
 * floor the sampling alone gives, and `--moe-imbalance` the figure a user knows. */
double mpt_cost_moe_uniform_max(double tokens, int k, int E, int ep);
/* One MoE MLP of N rows on one rank (cfg finished for the layout, cfg->experts > 0). */
void mpt_cost_moe_block(const mpt_cluster *c, const mpt_config *cfg, const mpt_plan_layout *l,
                        double N, int precision, mpt_moe_cost *out);

#endif
