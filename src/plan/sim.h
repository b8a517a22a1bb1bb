/* sim.h — the discrete-event simulator: one training step of a layout on a cluster.
 *
 * It replays every pipeline rank's action list from the runtime's schedule generator
 * (mpt_pp_schedule, the lists the executor runs) against the others, with per-stage costs from
 * cost.h (first and last stages carry the embedding and the head, interleaved chunks their own
 * blocks):
 *   compute stream   F, B, W of each rank in list order; a compute waits for its input, which
 *                    arrives max(send posted, receive posted) + point-to-point time after its
 *                    producer; tensor-parallel collectives and the MoE blocks' all-to-alls
 *                    (cost_moe.h) run inside F and B (the runtime's are blocking), a full
 *                    recompute inside B
 *   p2p              non-blocking: overlaps compute on both ends, as the executor's Isend/Irecv
 *   data parallel    a communication stream per rank: ZeRO 0/1 reduce gradient buckets during
 *                    the last micro-batch's backward (from its first B to its end, the last
 *                    bucket after it); ZeRO 2/3 reduce-scatter every micro-batch and ZeRO 3
 *                    all-gathers each unit before its forward and backward, spread over the
 *                    pipeline's span; then AdamW (memory-bound on the rank's shard) and, for
 *                    ZeRO 1/2, the all-gather of the updated parameters; MoE at ZeRO 0 with ep > 1: the
 *                    experts' gradients also summed over the expert-data-parallel group
 *   2bw              without a flush when the trainer runs it so (m >= p, dense:
 *                    train/trainer_2bw.c): a step is one window of the steady state, what
 *                    each rank's end grows by from mpt_pp_schedule_2bw's list of two steps to
 *                    that of three (then the data-parallel reduction and the update as above)
 *   time-sharing     cpu-here with more ranks than cores: the pipeline ranks' lists advance
 *                    together in time, and while k of them compute each runs at
 *                    min(1, cores / (k x dp x tp x cp)) of a core (processor sharing: 1F1B's
 *                    fill and drain leave cores idle); the step is still at least all ranks'
 *                    work over the cores
 * Symmetry: every replica and every tensor-parallel rank of a stage does the same work at the
 * same time, so only the p pipeline ranks of one replica are replayed (3,072 GPUs at pp 64 are
 * 64 lists). Pure: no MPI. */
#ifndef MPT_SIM_H
#define MPT_SIM_H

#include <stddef.h>

#include "plan/cluster.h"
#include "plan/cost.h"
#include "plan/plan.h"

/* One timed communication of a simulation, on the sending rank's communication stream. */
enum { MPT_SIM_P2P_ACT, MPT_SIM_P2P_GRAD, MPT_SIM_DP, MPT_SIM_OPTIMIZER };
typedef struct mpt_sim_comm {
    int rank;                /* pipeline rank */
    int kind;                /* MPT_SIM_* (the optimizer step with its ZeRO all-gather) */
    double start, end;
} mpt_sim_comm;

typedef struct mpt_sim_result {
    int world, p, v, m;
    double step_time;        /* seconds per optimizer step */
    double pipe_time;        /* first forward to last backward, slowest pipeline rank (2bw
                              * without a flush: the steady state's window) */
    double bubble;           /* idle fraction of the pipeline ranks over pipe_time */
    double dp_exposed;       /* data-parallel communication not hidden behind compute */
    double optimizer;        /* AdamW and the ZeRO parameter all-gather after it */
    double flops_hw;         /* FLOPs executed in one step, all GPUs, recompute included */
    double flops_model;      /* the model's FLOPs (3 x forward), all GPUs */
    double tflops_per_gpu;   /* flops_hw / (world * step_time) / 1e12 */
    double mfu, hfu;         /* model / hardware FLOPs over world * step_time * peak */
    double tokens_per_s;
    double peak;             /* FLOP/s per GPU used */
    double share;            /* cpu-here: the cores one rank computes on (cluster.h); else 1 */
    double bytes_tp, bytes_pp, bytes_dp;   /* bytes each GPU sends per step (largest rank) */
    double bytes_intra, bytes_inter;       /* the same by link */
    double tp_time;          /* seconds of tensor-parallel collectives per step (largest rank) */
    double bytes_ep;         /* bytes each GPU sends in MoE all-to-alls per step (largest rank) */
    double ep_time;          /* seconds of them per step (inside F and B; largest rank) */
    double meet_poll;        /* more ranks than cores: core seconds one micro-batch of the
                              * largest stage loses in its blocking tp collectives (cluster.h
                              * meet_waste; inside F, B and W) */
    mpt_pp_event *ev;        /* with events: every compute action of the p pipeline ranks */
    size_t n_ev;
    mpt_sim_comm *comm;      /* with events: their p2p messages, data-parallel reduction and
                              * optimizer step */
    size_t n_comm;
} mpt_sim_result;

/* Simulates one step. keep_events: fill ev and comm (for timelines). MPT_ERR_INPUT for a bad
 * layout. */
mpt_status mpt_simulate(const mpt_plan_job *job, const mpt_plan_layout *l, const mpt_cluster *c,
                        int keep_events, mpt_sim_result *out, mpt_error *err);
/* Frees the events; safe on a zeroed or freed result. */
void mpt_sim_result_free(mpt_sim_result *r);

#endif
