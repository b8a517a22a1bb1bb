/* pp_replay.h — a measured pipeline step replayed on each action's own duration (the log's
 * bubble_sim): the records every stage keeps of its last window (parallel/pp.h, mpt_pp_record)
 * turned into the per-action tables of mpt_pp_simulate_exact, and the bubble of that replay.
 *
 * The log carries two replays of the generator's lists on a step's measurements:
 *   bubble_sim       every F, B, W at its own measured duration and every transfer at its own
 *                    measured time (this file): the schedule with zero executor overhead on
 *                    this step's actual costs, so measured - bubble_sim is the executor's own
 *                    overhead (posting, waiting, copies between computes)
 *   bubble_sim_mean  every action at its stage's mean F, B, W and every transfer at the mean
 *                    transfer time (mpt_pp_measure + mpt_pp_simulate_replay): what the schedule
 *                    gives on the stage costs; it lacks the spread of durations around the mean
 * Pure: the callers gather the records (mpt_pp_measure's sum, or train/trainer_stats.c's
 * non-blocking one). */
#ifndef MPT_PP_REPLAY_H
#define MPT_PP_REPLAY_H

#include "parallel/pp.h"

/* From the p records of a flushed step (stage s's at recs + s*mpt_pp_record_size(m*v)), fills
 * dur (p*3*m*v) and comm (p*2*m*v) as mpt_pp_durations describes: a transfer's time is from
 * the later of its send's post and its receiver's wait to the wait's return, plus the time the
 * receive's post took (mpt_pp_record_costs's per-message terms, not averaged). */
void mpt_pp_replay_tables(int p, int m, int v, const double *recs, double *dur, double *comm);
/* The bubble of the per-action replay of a flushed step (mpt_pp_simulate_exact on those
 * tables). MPT_ERR_RUN when out of memory or the lists are broken. */
mpt_status mpt_pp_replay_bubble(mpt_pp_kind kind, int p, int m, int v, const double *recs,
                                double *bubble, mpt_error *err);

/* PipeDream-2BW's window n (0..steps-1) of a no-flush segment of `steps` steps (the trainer's
 * windows: parallel/pp_2bw.h; deferred as mpt_pp_2bw_window_ends, else each window ending
 * before the rank's first backward of step n+1), replayed on each action's own duration from
 * the p records of that window (mw = 2m entries): every rank starts at its measured window
 * start and runs the actions of its window in list order; a message sent inside the window
 * arrives at its send's replayed time plus its measured transfer, one carried in from the
 * window before at its send's measured time plus its transfer (the dependency as it was). The
 * bubble is 1 - busy / (p x the longest replayed window), as the trainer measures a window's
 * (-1: an empty window). MPT_ERR_RUN when out of memory or a message is missing. */
mpt_status mpt_pp_2bw_replay_bubble(int p, int m, int steps, int n, int deferred,
                                    const double *recs, double *bubble, mpt_error *err);

#endif
