/* cost.h — the cost model: FLOPs, bytes and seconds of every operation the runtime runs in one
 * pipeline stage's forward, backward and recompute, and of its collectives.
 *
 * One tensor-parallel rank of a stage holding n blocks (plus the embeddings when first, ln_f,
 * the head and the loss when last), for one micro-batch of Bm sequences of T tokens, N = Bm*T
 * rows, D/tp, H/tp, F/tp, Vp/tp its shares (model/gpt.h's Megatron split):
 *   per block, forward   ln_1 · c_attn GEMM (N x D x 3D/tp) · scores Q K^T and probs x V
 *                        (2 x 2*Bm*(H/tp)*T*T*hd FLOPs) · softmax · attn c_proj GEMM · all-reduce
 *                        (or reduce-scatter with sp; all-gathers before the column layers) ·
 *                        residual · ln_2 · c_fc GEMM · GELU · mlp c_proj GEMM · all-reduce ·
 *                        residual
 *   backward             every GEMM twice (input gradient: B, weight gradient: W), attention
 *                        products twice, element-wise kernels with about twice the traffic,
 *                        two all-reduces (the column-parallel inputs' gradients; sp: two
 *                        reduce-scatters, and four all-gathers: the two output gradients and
 *                        the saved ln_1 and ln_2 rows the weight gradients need whole)
 *   recompute            full: the block's forward again (with its collectives) in B;
 *                        selective: the scores and softmax again in B
 *   first stage          embedding lookup (+ all-reduce over tp; sp: reduce-scatter, and the
 *                        backward's all-gather of the input gradient)
 *   last stage           ln_f, head GEMM N x D x Vp/tp, fused cross-entropy over the logits;
 *                        backward: head GEMMs (B and W; sp: ln_f's rows all-gathered), ln_f
 *   sp (tp <= 16)        every block's and the head's gathers and reduce-scatters are the
 *                        runtime's overlapped path (parallel/tp_overlap_sp.c), priced by what
 *                        it does: the own block copied, tp-1 blocks received by Isend/Irecv
 *                        pairs (intra_lat + bytes / intra_bw), a reduce-scatter's tp-1 sums at
 *                        the residual add's rate, the layer's GEMM as tp GEMMs of N/tp rows,
 *                        one all-reduce of the block's LayerNorm gradients; the embedding's and
 *                        the head backward's reduce-scatter stay MPI collectives
 * A GEMM takes max(FLOPs / (peak*gemm_eff), bytes / (mem_bw*mem_eff)) + launch; an
 * element-wise kernel bytes / (mem_bw*mem_eff) + launch (cluster.h). FLOPs count a
 * multiply-add as 2 and every T x T attention product whole (as Narayanan et al. 2021 count
 * them: 96 B s l h^2 (1 + s/6h + V/16lh) per step with full recompute).
 * Collectives over n ranks, message of b bytes, link bandwidth bw (per direction, times its
 * efficiency) and latency a: all-reduce min(ring 2(n-1)a + 2(n-1)/n b/bw, tree 2 log2(n) a +
 * 2 b/bw); all-gather and reduce-scatter (n-1)a + (n-1)/n b/bw; point-to-point a + b/bw. A
 * group is intra-node when its ranks lie within one node (rank order tp, cp, dp, pp, fastest
 * first: a group of size n and stride s spans s*n consecutive ranks). Pure. */
#ifndef MPT_COST_H
#define MPT_COST_H

#include "model/config.h"
#include "plan/cluster.h"
#include "plan/plan.h"

enum { MPT_COLL_ALLREDUCE, MPT_COLL_ALLGATHER, MPT_COLL_REDUCE_SCATTER };

/* Seconds of one collective of `bytes` (the whole buffer, as MPI counts it) over n ranks. */
double mpt_cost_collective(const mpt_cluster *c, int op, int n, double bytes, int inter);
/* Seconds of one point-to-point message. */
double mpt_cost_p2p(const mpt_cluster *c, double bytes, int inter);
/* 1 when the group of layout dimension d (mesh.h's mpt_dim: MPT_DIM_TP, _DP, _PP) spans nodes. */
int mpt_cost_group_inter(const mpt_cluster *c, const mpt_plan_layout *l, int dim);
/* Bytes of one element of activations and of messages for the precision. */
double mpt_cost_elem_bytes(int precision);

/* The cost of one micro-batch in one stage on one tensor-parallel rank. */
typedef struct mpt_stage_cost {
    double f, b, w;       /* seconds: forward; backward's input-gradient part (with recompute);
                           * weight-gradient part */
    double flops_hw;      /* FLOPs executed: forward + backward + recompute */
    double flops_model;   /* FLOPs of the model: forward + backward, no recompute */
    double tp_bytes;      /* bytes one rank sends in tensor-parallel collectives ((tp-1)/tp
                           * of a gather's or reduce-scatter's buffer, twice that of an
                           * all-reduce's) */
    double tp_time;       /* seconds of them, included in f and b */
    double meets_f, meets_b, meets_w; /* blocking tp collectives in f, b, w: one per MPI
                           * collective waited for, per sp gather / reduce-scatter, one for the
                           * vocabulary-parallel loss's gathers (sim.c prices the polling of
                           * each when a node has more ranks than cores) */
    double params;        /* parameter elements this rank holds for the stage */
    double boundary_bytes;/* the activation sent to the next stage (gradient alike) */
    double ep_bytes;      /* bytes sent in the MoE blocks' all-to-alls (cost_moe.h) */
    double ep_time;       /* seconds of them, included in f and b */
    double expert_params; /* ep > 1: expert elements, reduced (ZeRO: sharded) over edp */
    double expert_f, expert_b, expert_w; /* seconds of the MoE experts' GEMMs and GELU in f,
                                          * b (a full recompute's included) and w */
} mpt_stage_cost;

/* cfg finished for the layout (mpt_plan_check); the stage holds blocks [first_layer,
 * first_layer + n_layers) (MoE blocks among them: cost_moe.h). */
void mpt_cost_stage(const mpt_cluster *c, const mpt_config *cfg, const mpt_plan_layout *l, int T,
                    int Bm, int precision, int first_layer, int n_layers, int first, int last,
                    mpt_stage_cost *out);
/* One GEMM (M x K) x (K x N) and one element-wise kernel (a measured per_elem seconds for n
 * elements, else `elems` moved), priced as the stage's own; flops (may be NULL) += the GEMM's. */
double mpt_cost_gemm(const mpt_cluster *c, int precision, double M, double N, double K,
                     double *flops);
double mpt_cost_kernel(const mpt_cluster *c, int precision, double per_elem, double n,
                       double elems);

#endif
