/* pp.h — the pipeline-parallel executor: runs one rank's schedule (parallel/schedule.h) with
 * non-blocking point-to-point transfers.
 *
 * Each pipeline stage holds a contiguous range of blocks (model/gpt.h, mpt_gpt_place); the first
 * also the embeddings and the last ln_f, the head and the loss. For every action of its list:
 *   RECV_ACT  post MPI_Irecv of the micro-batch's input into its activation set's ENCODED
 *   F         wait for that input (or, first stage, read the tokens), run the stage's forward
 *   SEND_ACT  post MPI_Isend of the output (the last block's RES3)
 *   RECV_GRAD post MPI_Irecv of the output's gradient into the set's GRAD_IN
 *   W         zb-h1 (the model built with split_w): the weight-gradient pass of a micro-batch
 *             whose B (then the input-gradient pass only) ran earlier; its set lives until W
 *   B         wait for it (or, last stage, start from the loss), run the backward; a stage with a
 *             previous one copies the input gradient into one of two send buffers
 *   SEND_GRAD post MPI_Isend of that buffer
 * An activation set lives from the first action that needs it (RECV_ACT or F) to the end of its
 * B: at most mpt_pp_sets_needed() at once, which is what the memory plan counts. Sets come from
 * a pool of exactly that many, allocated by mpt_pp_init and reused from micro-batch to
 * micro-batch (no allocation during a step). Sends overlap compute and are waited only when their
 * buffer is reused or at the end of the step; with one chunk per rank a receive is posted just
 * before its consumer (mpt_pp_recv_at_use: the receiver's MPI copies the data in its first call
 * that finds it sent, so an earlier post only moves that copy in front of this rank's own sends),
 * with several where the list puts it (one compute early). Every rank of the pipeline group runs
 * mpt_pp_step together (and the tp ranks of a stage in step with each other).
 *
 * One executor for every layout: pp = 1 is the naive schedule on a one-stage pipeline (first
 * and last stage at once, no transfers, one activation set), F0 B0 F1 B1 ... */
#ifndef MPT_PP_H
#define MPT_PP_H

#include <stddef.h>
#include <stdint.h>

#include "comm/comm.h"
#include "core/buflist.h"
#include "model/gpt.h"
#include "parallel/dp.h"
#include "parallel/schedule.h"

/* Fills a micro-batch's tokens: inputs and targets (Bm*T each); either may be NULL. */
typedef void (*mpt_pp_batch_fn)(void *ctx, int mb, int32_t *inputs, int32_t *targets);
/* Called after each compute action with its times (mpt_comm_clock seconds; for the trace). */
typedef void (*mpt_pp_event_fn)(void *ctx, const mpt_pp_action *a, double t0, double t1);
/* Called before each forward of the stage, with the micro-batch's activation set current
 * (model->cur) and, on the first stage, its tokens in inputs (e.g. to copy the logits of an
 * inference forward). A non-OK status stops the step. */
typedef mpt_status (*mpt_pp_forward_fn)(void *ctx, int mb, mpt_gpt *model, const int32_t *inputs,
                                        mpt_error *err);

/* The hooks of a chunk's view (interleaved schedules): unit u of the view is unit map(u) of the
 * model, whose own hooks (the data-parallel ones) are called. */
typedef struct mpt_pp_view_ctx {
    mpt_gpt_hooks hooks;     /* the model's, copied at init */
    int chunk, layers, model_layers;
} mpt_pp_view_ctx;

typedef struct mpt_pp {
    mpt_comm *comm;          /* pipeline group (rank = stage), not owned */
    mpt_pp_kind kind;
    int p, stage, m;
    int v;                   /* model chunks on this rank (interleaved: --virtual-stages; else 1) */
    mpt_gpt *views;          /* owned, v > 1: chunk c's view of the model: blocks
                              * [c*nl/v, (c+1)*nl/v), its own ends (embeddings on chunk 0 of the
                              * first rank, head on chunk v-1 of the last), activation sizes of
                              * those blocks, the model's w/g tables and hooks (units mapped) */
    mpt_pp_view_ctx *vctx;   /* owned, v > 1 */
    int *pool_chunk;         /* owned: the chunk each pool entry was sized for */
    mpt_pp_action *acts;     /* owned: this stage's list for one step */
    size_t n_acts;
    int sets_needed;         /* most activation sets alive at once (from the list) */
    int mw;                  /* entries of the per-micro-batch arrays: m*v (2m under 2bw) */
    mpt_gpt *model;          /* not owned */
    mpt_dp *dp;              /* not owned */
    mpt_gpt_acts *set;       /* owned array of m*v: the set each micro-batch (mb*v + chunk) in
                              * flight uses */
    mpt_gpt_acts *pool;      /* owned: the sets_needed sets (allocated at init, reused) */
    int *pool_free;          /* 1 when pool[k] is not in use */
    int *slot_of;            /* per micro-batch and chunk: its pool entry, or -1 */
    int pool_n;
    /* the split backward (zb-h1, zb-v): pool holds the sets without their until-B slots
     * (mpt_gpt_slot_until_b: the head's and the received gradient), which come from bpool,
     * sized by the sets alive from first touch to B (mpt_pp_chunk_sets_b), and return to it
     * at the end of B; bpool is empty otherwise */
    mpt_gpt_acts *bpool;     /* owned */
    int *bpool_free, *bpool_chunk, *bslot_of; /* owned; as pool_free, pool_chunk, slot_of */
    int bpool_n, bsets_needed;
    mpt_req *rx_act, *rx_grad, *tx_act; /* per micro-batch and chunk (mb*v + chunk) */
    float *grad_out[2];      /* stages after the first: input-gradient send buffers (workspace) */
    mpt_buflist bufs;        /* owned: the list grad_out was allocated from (mpt_pp_buffers) */
    mpt_req tx_grad[2];
    int tx_grad_busy[2];
    size_t boundary_n;       /* floats of one stage-boundary tensor (N/sp rows x D) */
    int inputs_mb;           /* the micro-batch whose tokens are in inputs now, or -1 */
    /* The last step's measurements (mpt_comm_clock seconds) for mpt_pp_measure; per message
     * [its tag (mpt_pp_action_tag): (mb*v + receiving chunk)*2 + 0 activations / 1 gradient],
     * 0 when there was none. Owned (one malloc). */
    double *t_sent;          /* when this stage last posted the send (kept across windows) */
    double *t_wait, *t_got;  /* when it began waiting for the receive, and when that returned */
    double *t_post;          /* seconds its receive's post (MPI_Irecv) took: a message already
                              * there is copied in it (the receiver's single-copy get) */
    double *t_dur, *t_start; /* per compute action [k*mw + j] (k 0 F, 1 B, 2 W; j = mb*v +
                              * chunk): its seconds and its start (0: not run in the window) */
    double t_win0;           /* when the window began (mpt_pp_window_begin) */
    int *t_peer;             /* owned: the rank each message this stage sent went to */
    double f_sum, b_sum, w_sum; /* compute seconds of its F / B / W actions */
    int f_n, b_n, w_n;
    double *msg;             /* scratch: p records (mpt_pp_record, for mpt_pp_measure) */
    double busy;             /* compute seconds of the last step */
    double wall;             /* seconds from the step's first action to its last */
    mpt_pp_event_fn on_event;   /* optional */
    void *event_ctx;
    mpt_pp_forward_fn before_forward; /* optional */
    void *forward_ctx;
} mpt_pp;

/* Floats of one stage-boundary tensor: the residual stream of a micro-batch of B sequences of T
 * tokens, N = B*T rows (N/tp with sequence parallelism) of D. Pure. */
size_t mpt_pp_boundary_elems(int B, int T, int D, int tp, int sp);
/* The executor's own buffers besides the activation sets (which are the model's, counted per
 * set): a stage after the first keeps two input-gradient send buffers of boundary_n floats
 * (workspace); with several chunks per rank (v > 1) every rank sends gradients and pass
 * stage 1. pp NULL: a plan (no destinations). */
void mpt_pp_buffers(int stage, size_t boundary_n, mpt_pp *pp, mpt_buflist *l);

/* Activation sets stage `stage` holds at most at once under this schedule (walks its list). */
mpt_status mpt_pp_sets_needed(mpt_pp_kind kind, int p, int m, int stage, int *n, mpt_error *err);
/* The same per chunk for v chunks per rank: sets[c] (c < v) for chunk c, whose sets hold its
 * nl/v blocks. A set opens at the first action that touches its (micro-batch, chunk) and
 * closes at its last compute (B; W for the split backward). */
mpt_status mpt_pp_chunk_sets(mpt_pp_kind kind, int p, int m, int v, int stage, int *sets,
                             mpt_error *err);
/* The chunk view of a model with v chunks (its n_layers divisible by v): place as the model's
 * (mpt_gpt_place), for chunk c: n_layers/v blocks, first only on chunk 0, last only on chunk
 * v-1. For the memory plan and the executor. */
/* The same with every set closing at its B: for the split backward, how many until-B parts
 * (model/gpt.h mpt_gpt_slot_until_b) each chunk holds at once. */
mpt_status mpt_pp_chunk_sets_b(mpt_pp_kind kind, int p, int m, int v, int stage, int *sets,
                               mpt_error *err);
mpt_gpt_place mpt_pp_chunk_place(const mpt_gpt_place *place, int v, int c);

/* The model is this stage's (place->first/last/n_layers), built with MPT_GPT_NO_ACTS; comm is
 * the pipeline group (size 1 for a one-stage pipeline). */
mpt_status mpt_pp_init(mpt_pp *pp, mpt_comm *comm, mpt_pp_kind kind, int m, mpt_gpt *model,
                       mpt_dp *dp, mpt_error *err);
/* The same with v model chunks on this rank (interleaved: chunk c of rank r is pipeline stage
 * c*p + r; the model holds the chunks' blocks back to back, model->nl divisible by v). */
mpt_status mpt_pp_init_chunks(mpt_pp *pp, mpt_comm *comm, mpt_pp_kind kind, int m, int v,
                              mpt_gpt *model, mpt_dp *dp, mpt_error *err);
void mpt_pp_free(mpt_pp *pp);
/* The engine chunk c (< pp->v) runs on: its view, or the model itself when v == 1. */
mpt_gpt *mpt_pp_chunk_model(mpt_pp *pp, int c);

/* One optimizer step's forwards and backwards of m micro-batches of Bm sequences of T tokens
 * (inputs/targets: Bm*T scratch). *loss_sum: the sum of token losses (last stage; 0 elsewhere). */
mpt_status mpt_pp_step(mpt_pp *pp, mpt_pp_batch_fn batch, void *ctx, int32_t *inputs,
                       int32_t *targets, int Bm, int T, float dloss, double *loss_sum,
                       mpt_error *err);

/* The parts of mpt_pp_step, for an executor of its own list (parallel/pp_2bw.h): zero the
 * measurements of a window (busy, F/B/W sums, message times); run one action (mb below
 * pp->mw / v; the trace's on_event gets it as given); wait for the input-gradient sends. */
void mpt_pp_window_begin(mpt_pp *pp);
mpt_status mpt_pp_act(mpt_pp *pp, const mpt_pp_action *a, mpt_pp_batch_fn batch, void *ctx,
                      int32_t *inputs, int32_t *targets, int Bm, int T, float dloss,
                      double *loss_sum, mpt_error *err);
mpt_status mpt_pp_sends_done(mpt_pp *pp, mpt_error *err);

/* The last step's costs per stage, gathered over the pipeline group (every rank of it calls):
 * costs[s * MPT_PP_COSTS + i] for stage s gets its mean F and mean B (the whole backward, or
 * the input-gradient pass under the split backward of zb-h1) per action, W (the
 * weight-gradient pass; 0 unless split), and as COMM the mean transfer time of all messages, each from the moment its
 * send was posted and its receiver was waiting for it (max of the two) to the wait's return,
 * plus the time the receive's post took (where a message already there is copied)
 * (the clocks of the ranks of one node agree; on several hosts their offset enters this
 * estimate). costs holds p * MPT_PP_COSTS doubles. Replayed by mpt_pp_simulate_replay, they give
 * the bubble the schedule itself has on this run's costs; the measured bubble minus that one is
 * the executor's overhead. busy_sum and wall_max (either may be NULL) get the sum of the stages'
 * busy seconds and their longest wall (pp->busy, pp->wall) from the same single sum over the
 * group. */
mpt_status mpt_pp_measure(mpt_pp *pp, double *costs, double *busy_sum, double *wall_max,
                          mpt_error *err);

/* The same in parts, for a caller that gathers the records itself (e.g. without blocking,
 * train/trainer_stats.c). A stage's record of its last window: MPT_PP_REC_HEAD figures (F, B, W
 * compute sums and counts, busy, wall), per message tag (2*mw of them) when this stage posted
 * its send, to which stage (-1: none), when it began waiting for its receive, when that returned
 * and how long its receive's post took, then per compute action (3*mw: F, B, W of j = mb*v +
 * chunk) its duration and its start, per message tag the time of its last send in any window
 * (2bw: a message sent in the window before), and last the window's start
 * (mpt_pp_record_len(pp) doubles; pp_replay.h reads the parts after the first five).
 * mpt_pp_record_costs turns the p records of a pipeline (stage s's at recs + s*len) into
 * mpt_pp_measure's costs and, when not NULL, the sum of the stages' busy seconds and their
 * longest wall. Pure. */
enum { MPT_PP_REC_HEAD = 8 };
size_t mpt_pp_record_len(const mpt_pp *pp);
/* The same for mw per-micro-batch entries (pp->mw). Pure. */
size_t mpt_pp_record_size(int mw);
void mpt_pp_record(const mpt_pp *pp, double *rec);
void mpt_pp_record_costs(int p, int v, int mw, const double *recs, double *costs,
                         double *busy_sum, double *wall_max);

#endif
