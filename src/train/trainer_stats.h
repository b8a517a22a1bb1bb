/* trainer_stats.h — a --schedule 2bw log line's cross-rank figures without a barrier between
 * windows (train/trainer_stats.c). Not public. */
#ifndef MPT_TRAINER_STATS_H
#define MPT_TRAINER_STATS_H

#include "comm/comm.h"

typedef struct mpt_run_stats {
    mpt_comm world, pp;       /* owned: own groups of the world's and the pipeline's ranks (their
                               * reductions never meet the trainer's in one order) */
    int ready;                /* world and pp made (on the first use, by every rank at once) */
    double *wbuf, *pbuf;      /* owned: world size x STATS_W_ slots; pp size x record length */
    size_t wn, pn;
    mpt_req wreq, preq;
    int pending;              /* the reductions of window `window` are in flight */
    long window;
    double dt, cpu;           /* that window's wall-clock and CPU seconds (this rank's) */
    double last_peak, last_cpu; /* the last blocking line's largest peak and CPU sum */
    mpt_status log_st;        /* rank 0: a failed log write not yet agreed on */
    char log_msg[1024];       /* its message (mpt_error.msg) */
} mpt_run_stats;

#endif
