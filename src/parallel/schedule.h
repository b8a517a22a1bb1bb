/* schedule.h — pipeline-parallel schedules as data: the one list of actions every consumer uses.
 *
 * A schedule is, for each pipeline rank, the ordered list of actions that rank runs in one
 * optimizer step. One pure function (no MPI, no globals) makes it; the pipeline executor runs
 * it, `mptrain schedule` prints it, and mpt_pp_simulate times it (the planner's simulator uses
 * the same). Kinds:
 *   naive        one micro-batch goes through every stage forward and back before the next
 *   gpipe        all forwards, then all backwards (Huang et al. 2019)
 *   1f1b         PipeDream-flush / Megatron: p-r-1 warm-up forwards, then one forward + one
 *                backward, then the remaining backwards (Narayanan et al. 2021)
 *   interleaved  Megatron virtual stages: v model chunks per rank, chunk c of rank r is stage
 *                c*p + r; needs v >= 2, p >= 2 and m % p == 0
 *   zb-h1        zero bubble H1 (Qi et al. 2023): backward split into B (input gradient, on
 *                the critical path) and W (weight gradient), rank r running W r micro-batches
 *                behind B so W fills the cool-down bubble; peak memory as 1f1b's rank 0
 *   zb-v         zero bubble V (Qi et al. 2024): v = 2 chunks per rank in a V, rank r holding
 *                stages r (chunk 0) and 2p-1-r (chunk 1), so the first and the last stage are
 *                both on rank 0; split backward as zb-h1. The order is made by a greedy list
 *                scheduler on unit costs: B first, then F while the rank holds fewer than p
 *                chunk-0 micro-batches, else the oldest pending W; at most 2p half-stage sets
 *                (p full-stage sets, 1f1b's rank 0) per rank
 *   2bw          PipeDream-2BW's update rule (Narayanan et al. 2021): each step's forwards and
 *                backwards use the previous step's weights (stashed: two versions per stage),
 *                the update applies to the current ones. One step's list is 1f1b's; the
 *                trainer runs mpt_pp_schedule_2bw's list of several steps without a flush
 *                (parallel/pp_2bw.h)
 *
 * Actions. Compute: F(mb, chunk) forward; B(mb, chunk) backward — the whole backward, except in
 * zb-h1 where it is the input gradient only; W(mb, chunk) weight gradient (zb-h1 only).
 * Communication, for an executor with non-blocking point-to-point:
 *   RECV_ACT / RECV_GRAD  post the receive (MPI_Irecv) of the input of F / B (mb, chunk) from
 *                         peer; it is posted one compute action early (before the compute that
 *                         precedes its consumer), and waited just before its consumer F / B.
 *   SEND_ACT / SEND_GRAD  post the send (MPI_Isend) of the output of the F / B just done. The
 *                         executor waits for sends when it next needs their buffer or at the end
 *                         of the step; never before a later receive (that could deadlock).
 * The first stage's F reads the data and the last stage's B starts from the loss, so they have
 * no receive; no stage sends forward from the last stage or backward from the first.
 *
 * Worked example: 1f1b, p = 2 ranks, m = 3 micro-batches, rank 0 (stage 0 of 2):
 *     mpt_pp_action *a; size_t n;
 *     if (mpt_pp_schedule(MPT_PP_1F1B, 2, 3, 1, 0, &a, &n, err)) return err->status;
 *     // a[0..n), by mpt_pp_action_str: warm-up F0, steady F1 B0 and F2 B1, cool-down B2:
 *     //   F0 send-act0>1 recv-grad0<1 F1 send-act1>1 B0 recv-grad1<1 F2 send-act2>1
 *     //   recv-grad2<1 B1 B2
 *     // (recv-grad1<1 is posted before F2 and waited before B1, which needs it)
 *     for (size_t i = 0; i < n; i++) switch (a[i].op) { case MPT_PP_F: ...; }
 *     free(a);
 *
 * Every function here is pure: each rank computes its own list without talking, and the same
 * inputs give every rank the same verdict in mpt_pp_check. */
#ifndef MPT_SCHEDULE_H
#define MPT_SCHEDULE_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef enum mpt_pp_kind {
    MPT_PP_NAIVE,
    MPT_PP_GPIPE,
    MPT_PP_1F1B,
    MPT_PP_INTERLEAVED,
    MPT_PP_ZB_H1,
    MPT_PP_ZB_V,
    MPT_PP_2BW,
    MPT_PP_KINDS
} mpt_pp_kind;

/* "naive", "gpipe", "1f1b", "interleaved", "zb-h1", "zb-v", "2bw"; "?" out of range. */
const char *mpt_pp_kind_name(mpt_pp_kind k);
/* Parses one of the names above; MPT_ERR_INPUT with the list of names otherwise. */
mpt_status mpt_pp_kind_parse(const char *s, mpt_pp_kind *k, mpt_error *err);

typedef enum mpt_pp_op {
    MPT_PP_F,          /* forward */
    MPT_PP_B,          /* backward (input gradient only in zb-h1) */
    MPT_PP_W,          /* weight gradient (zb-h1) */
    MPT_PP_RECV_ACT,   /* post receive of F(mb, chunk)'s input from peer */
    MPT_PP_SEND_ACT,   /* post send of F(mb, chunk)'s output to peer */
    MPT_PP_RECV_GRAD,  /* post receive of B(mb, chunk)'s output gradient from peer */
    MPT_PP_SEND_GRAD,  /* post send of B(mb, chunk)'s input gradient to peer */
    MPT_PP_OPS
} mpt_pp_op;

typedef struct mpt_pp_action {
    uint8_t op;       /* mpt_pp_op */
    int mb;           /* micro-batch, 0..m-1 */
    int chunk;        /* this rank's model chunk, 0..v-1: pipeline stage chunk*p + rank */
    int peer;         /* communication: the other pipeline rank (0..p-1); -1 for compute */
    int peer_chunk;   /* communication: the peer's chunk the message comes from / goes to; -1 */
} mpt_pp_action;

/* 1 for F, B, W. */
int mpt_pp_op_is_compute(int op);

/* Checks a schedule request: p, m, v >= 1; v == 1 unless interleaved or zb-v (v == 2, p >= 2);
 * interleaved needs p >= 2,
 * v >= 2 and m a multiple of p; p*v*m at most 2^20. m < p is allowed for the other kinds (the
 * warm-up is then min(p-r-1, m) forwards and the bubble is large). MPT_ERR_INPUT with a message
 * that names the option to change (--pp, --microbatches, --virtual-stages, --schedule).
 * (More pipeline stages than layers is checked by the partitioner, not here.) */
mpt_status mpt_pp_check(mpt_pp_kind kind, int p, int m, int v, mpt_error *err);

/* The actions of pipeline rank `rank` (0..p-1) in execution order, in a malloc'd *out of *n
 * elements (caller frees). Checks its inputs as mpt_pp_check (and rank); MPT_ERR_RUN only when
 * out of memory. */
mpt_status mpt_pp_schedule(mpt_pp_kind kind, int p, int m, int v, int rank, mpt_pp_action **out,
                           size_t *n, mpt_error *err);

/* Writes one action into buf (always terminated) and returns buf. Compute: "F3", "B3", "W3",
 * with the chunk when v > 1: "F3.1". Communication: "recv-act3<0", "send-act3>2",
 * "recv-grad3<2", "send-grad3>0" (micro-batch, then < from / > to the peer rank; with v > 1
 * "send-act3.1>2" names this rank's chunk). */
const char *mpt_pp_action_str(const mpt_pp_action *a, int v, char *buf, size_t cap);

/* The pipeline stage of a rank's chunk: chunk*p + rank. */
int mpt_pp_stage(int p, int rank, int chunk);
/* The same for a kind: zb-v's V (chunk 0 stage rank, chunk 1 stage 2p-1-rank), else as above. */
int mpt_pp_stage_k(mpt_pp_kind kind, int p, int rank, int chunk);
/* The rank and chunk of pipeline stage s (inverse of mpt_pp_stage_k). */
void mpt_pp_stage_place(mpt_pp_kind kind, int p, int s, int *rank, int *chunk);
/* 1 when the kind splits the backward into B and W (zb-h1, zb-v). */
int mpt_pp_split(mpt_pp_kind kind);

/* An MPI tag for a communication action, equal on the sending and the receiving side and
 * distinct for every message between one pair of ranks in a step: (mb*v + receiving chunk)*2
 * (+1 for gradients), so below 2*m*v. -1 for compute actions. */
int mpt_pp_action_tag(const mpt_pp_action *a, int v);

/* Costs for the simulator, in any time unit. F: one stage's forward of one micro-batch; B: its
 * input-gradient backward; W: its weight-gradient backward (so a full backward, the B action of
 * every kind but zb-h1, costs B + W); COMM: time from a send and its receive both being posted
 * to the data's arrival. Interleaved chunks hold 1/v of a stage's layers, so each of their
 * compute actions costs 1/v of the above. */
enum { MPT_PP_COST_F, MPT_PP_COST_B, MPT_PP_COST_W, MPT_PP_COST_COMM, MPT_PP_COSTS };

/* The duration of one compute action of the given kind under cost (0 for communication). */
double mpt_pp_action_cost(mpt_pp_kind kind, int v, const double cost[MPT_PP_COSTS], int op);

/* The theoretical bubble fraction (idle / (p x makespan)) with no communication cost:
 *   naive        (p-1)/p: each rank works on one stage of one micro-batch at a time
 *   gpipe, 1f1b  (p-1)/(m+p-1) (GPipe, Huang et al. 2019; Narayanan et al. 2021 §2.2.1:
 *                bubble time (p-1)(tf+tb) against ideal m(tf+tb))
 *   interleaved  (p-1)/(v*m+p-1) (Narayanan et al. 2021 §2.2.2: the bubble time shrinks by v,
 *                (1/v)(p-1)(tf+tb), against the same ideal m(tf+tb))
 *   zb-h1        1 - m(F+B+W)/T with T = (m+p-1)(F+B) + max(m-p+1, 1)W. For m >= p that is
 *                (p-1)(F+B-W) / (m(F+B+W) + (p-1)(F+B-W)), Qi et al. 2023 §3.1: the bubble is
 *                (p-1)(TF+TB-TW) instead of 1f1b's (p-1)(TF+TB+TW) (for W <= F+B; above, a lower
 *                bound, as T never drops below the busy time m(F+B+W)). For
 *                m < p there are too few W to fill it, and T is the critical path: m forwards
 *                and input-gradient backwards on each of p stages, then rank 0's last W.
 * cost may be NULL (F = B = W). -1 when the request fails mpt_pp_check. */
double mpt_pp_bubble_theory(mpt_pp_kind kind, int p, int m, int v,
                            const double cost[MPT_PP_COSTS]);

/* One timed compute action of a simulation. */
typedef struct mpt_pp_event {
    int rank;
    mpt_pp_action a;
    double start, end;
} mpt_pp_event;

/* The simulated step: every rank's compute actions with their times. Owns its arrays. */
typedef struct mpt_pp_timeline {
    mpt_pp_kind kind;
    int p, m, v;
    double cost[MPT_PP_COSTS];  /* rank 0's under per-rank costs */
    mpt_pp_event *ev;     /* all ranks' compute events, rank 0's first, each in execution order */
    size_t n;             /* number of events */
    size_t *first;        /* p+1 offsets: rank r's events are ev[first[r] .. first[r+1]) */
    int *peak_inflight;   /* per rank: most micro-batch chunks forwarded whose backward is not
                           * done (the last of B, or of W in zb-h1): stashed activations */
    double makespan;      /* end of the last action (all ranks start at 0) */
    double busy;          /* total compute time over all ranks */
    double bubble;        /* 1 - busy / (p x makespan) */
} mpt_pp_timeline;

/* Runs every rank's list against the others: a compute action starts when its rank is free and
 * its input has arrived, at max(send posted, receive posted) + COMM; sends and receive posts take
 * no time. Fills *out (free with mpt_pp_timeline_free). Fails with MPT_ERR_INPUT for a bad
 * request (mpt_pp_check) or negative cost, and with MPT_ERR_RUN naming the ranks and actions
 * for a broken schedule: deadlock (no rank can progress), a send without its receive or the
 * reverse, a compute whose input was never received, an action done twice or out of order
 * (B before F, W before B). */
mpt_status mpt_pp_simulate(mpt_pp_kind kind, int p, int m, int v,
                           const double cost[MPT_PP_COSTS], mpt_pp_timeline *out,
                           mpt_error *err);
/* The same for given per-rank lists (lists[r][0..lens[r]) for r < p; borrowed), e.g. a schedule
 * modified by hand; the lists need not come from mpt_pp_schedule. kind decides the costs and
 * whether W actions are expected. */
mpt_status mpt_pp_simulate_lists(mpt_pp_kind kind, int p, int m, int v,
                                 const mpt_pp_action *const *lists, const size_t *lens,
                                 const double cost[MPT_PP_COSTS], mpt_pp_timeline *out,
                                 mpt_error *err);
/* The same with costs per rank: costs[r * MPT_PP_COSTS + i] is rank r's cost i, for its compute
 * actions and (COMM) the messages it receives; out->cost holds rank 0's, receives at the
 * generator's positions. A run's bubble_sim uses mpt_pp_simulate_replay below (receives at
 * their use, as the executor posts them). */
mpt_status mpt_pp_simulate_ranks(mpt_pp_kind kind, int p, int m, int v, const double *costs,
                                 mpt_pp_timeline *out, mpt_error *err);
/* Moves every receive of a list (in place) to just before the compute that consumes it (F for
 * activations, B for a gradient, same micro-batch and chunk); the rest keeps its order. The
 * executor runs single-chunk lists so (parallel/pp.c): with MPI's single-copy transfers the
 * receiver copies a message in the first MPI call that finds it sent, so a receive posted one
 * compute early copies it before that compute and the sends after it; posted at its use, the
 * copy comes where the data is needed anyway, after this rank's sends. Pure; on out of memory
 * the list stays as it was. */
void mpt_pp_recv_at_use(mpt_pp_action *a, size_t n);
/* A run's replay (the log's bubble_sim, with mpt_pp_measure's costs): as mpt_pp_simulate_ranks
 * with every receive posted just before the compute that consumes it, so that a transfer
 * costs its receiver COMM from max(send posted, receiver free). That is how the executor's MPI
 * moves a boundary tensor (no progress thread: the receiver copies it, in its wait or in the
 * post of a receive it finds already sent) and how mpt_pp_measure times it; posted early, the
 * simulator would let the copy overlap the receiver's compute, which the run cannot. */
mpt_status mpt_pp_simulate_replay(mpt_pp_kind kind, int p, int m, int v, const double *costs,
                                  mpt_pp_timeline *out, mpt_error *err);
/* Every action's own duration, for a replay of one measured step (borrowed arrays; mv = m*v,
 * j = mb*v + chunk):
 *   dur[(r*3 + k)*mv + j]  rank r's F (k 0), B (k 1) and W (k 2) of (mb, chunk), in seconds
 *                          as it ran (not scaled by 1/v: a chunk's own time); W 0 unless split
 *   comm[r*2*mv + tag]     the transfer of the message rank r received with that tag
 *                          (mpt_pp_action_tag: (mb*v + receiving chunk)*2, +1 for gradients),
 *                          the COMM of that one message; 0 where there is none */
typedef struct mpt_pp_durations {
    const double *dur;
    const double *comm;
} mpt_pp_durations;
/* The schedule's lists replayed as mpt_pp_simulate_replay (receives at their use), each action
 * at its own duration and each transfer at its own time from d: what the schedule achieves on
 * exactly this step's costs with no time between actions beyond what it prescribes (the log's
 * bubble_sim; a measured bubble above it is the executor's own overhead). With every F, B, W
 * of a rank equal to its stage cost (scaled by 1/v) and every transfer COMM, the same timeline
 * as mpt_pp_simulate_replay. MPT_ERR_INPUT for a bad request or a negative or non-finite
 * duration; MPT_ERR_RUN as mpt_pp_simulate. */
mpt_status mpt_pp_simulate_exact(mpt_pp_kind kind, int p, int m, int v, const mpt_pp_durations *d,
                                 mpt_pp_timeline *out, mpt_error *err);
/* Safe on a zeroed or freed timeline. */
void mpt_pp_timeline_free(mpt_pp_timeline *t);

/* PipeDream-2BW without the flush: rank `rank`'s actions over `steps` steps of m micro-batches
 * as one 1F1B order (micro-batch g = step g / m, micro-batch g % m of it), so step n+1's
 * forwards enter while step n's backwards run. Every micro-batch of step n runs forward and
 * backward on the weights W(n-1) (stashed), and W(n+1) = W(n) - AdamW(gradient of step n): the
 * trainer's --schedule 2bw rule, which runs these lists (parallel/pp_2bw.h). */
mpt_status mpt_pp_schedule_2bw(int p, int m, int steps, int rank, mpt_pp_action **out,
                               size_t *n, mpt_error *err);
/* What the simulation of those lists shows (equal costs per stage, as mpt_pp_simulate). */
typedef struct mpt_pp_2bw_report {
    double bubble;       /* idle share over the steps, no flush */
    double bubble_flush; /* the same steps drained one by one */
    double makespan;
    int versions;        /* most weight versions a rank's in-flight micro-batches use at once */
    double slack;        /* min over n of (first forward of step n+1 on any rank) - (last
                          * backward of step n-1 on any rank): >= 0 when W(n), which needs
                          * step n-1's gradient and its norm over every rank, is ready in time
                          * (0 with fewer than 3 steps) */
} mpt_pp_2bw_report;
mpt_status mpt_pp_2bw_simulate(int p, int m, int steps, const double cost[MPT_PP_COSTS],
                               mpt_pp_2bw_report *rep, mpt_error *err);
/* The bubble of the trainer's window n (0..steps-1) of a no-flush segment of `steps` steps, with
 * per-rank costs as mpt_pp_simulate_ranks. Rank r's window n runs from its window n-1's end (0)
 * to the end of its last compute before its first backward of step n+1 (its update point,
 * parallel/pp_2bw.h), or with deferred updates (mpt_pp_2bw_defer) before the action
 * mpt_pp_2bw_window_ends names (window steps-2 reaches the end; the last is empty: -1); the bubble is
 * 1 - (busy of every rank in its window) / (p x the longest window), as the trainer measures
 * it. The steady state repeats, so a middle window is simulated as window 1 (or 0) of as few
 * steps as keep it a middle one, and the one reaching the end as such of at most three. */
/* With deferred updates (parallel/pp_2bw.h), 1 when compute action (op, mb) of pipeline rank
 * `rank` ends window n of a segment (n and mb counted from its first step): the last rank's
 * before its first action of step n+2; rank r < p-1's before its backward of micro-batch
 * (n+2)m - 1 - round(2(p-2-r)/3): in 1F1B's steady state with B = 2F rank r's backward of g
 * starts 2(p-1-r)F after the last rank's, so every rank reaches its end of window n within one
 * B of the last rank's finishing its backward of (n+2)m - 1 (test_schedule). Pure. */
int mpt_pp_2bw_window_ends(int p, int m, int rank, int n, int op, int mb);
mpt_status mpt_pp_2bw_window_bubble(int p, int m, int steps, int n, int deferred,
                                    const double *costs, double *bubble, mpt_error *err);

#endif
