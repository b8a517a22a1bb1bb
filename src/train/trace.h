/* trace.h — the --trace file: Chrome trace-event JSON (opens in Perfetto / chrome://tracing).
 * One process per rank, one track for compute (F3, B3, W3, optimizer) and one for
 * communication (allreduce, send, ... with the group in args). Each rank records its own
 * events in memory; at the end world rank 0 gathers and writes them. Times are seconds on
 * mpt_comm_clock(), taken relative to an origin every rank records right after a barrier. */
#ifndef MPT_TRACE_H
#define MPT_TRACE_H

#include <stddef.h>

#include "comm/comm.h"
#include "core/status.h"

enum { MPT_TRACE_COMPUTE = 0, MPT_TRACE_COMM = 1 };

typedef struct mpt_trace_event {
    double t0, t1;
    int track;
    char name[16];       /* "F3", "allreduce" */
    char group[16];      /* communication: "dp", "tp", "pp", ...; "" for compute */
    int peer;            /* point-to-point peer, -1 otherwise */
} mpt_trace_event;

typedef struct mpt_trace {
    int enabled;
    double origin;
    mpt_trace_event *ev; /* owned */
    size_t n, cap;
} mpt_trace;

/* All ranks of world call (a barrier aligns the origins). enabled 0: every call is a no-op. */
mpt_status mpt_trace_init(mpt_trace *tr, mpt_comm *world, int enabled, mpt_error *err);
void mpt_trace_add(mpt_trace *tr, int track, const char *name, const char *group, int peer,
                   double t0, double t1);
/* Installs tr as the comm layer's observer (communication events), or removes it (NULL). */
void mpt_trace_observe_comm(mpt_trace *tr);
/* Gathers every rank's events on world rank 0, which writes path. All ranks call. */
mpt_status mpt_trace_write(mpt_trace *tr, mpt_comm *world, const char *path, mpt_error *err);
void mpt_trace_free(mpt_trace *tr);

#endif
