/* trace.c — Chrome trace-event recording (see trace.h). */
#include "train/trace.h"

#include <errno.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

mpt_status mpt_trace_init(mpt_trace *tr, mpt_comm *world, int enabled, mpt_error *err) {
    memset(tr, 0, sizeof *tr);
    tr->enabled = enabled;
    if (!enabled) return MPT_OK;
    mpt_status st = mpt_barrier(world, err);
    tr->origin = mpt_comm_clock();
    return st;
}

void mpt_trace_add(mpt_trace *tr, int track, const char *name, const char *group, int peer,
                   double t0, double t1) {
    if (!tr || !tr->enabled) return;
    if (tr->n == tr->cap) {
        size_t cap = tr->cap ? 2 * tr->cap : 1024;
        mpt_trace_event *ev = realloc(tr->ev, cap * sizeof *ev);
        if (!ev) return; /* out of memory: the trace misses events, training goes on */
        tr->ev = ev;
        tr->cap = cap;
    }
    mpt_trace_event *e = &tr->ev[tr->n++];
    e->t0 = t0 - tr->origin;
    e->t1 = t1 - tr->origin;
    e->track = track;
    e->peer = peer;
    snprintf(e->name, sizeof e->name, "%s", name);
    snprintf(e->group, sizeof e->group, "%s", group ? group : "");
}

static void comm_event_(void *ctx, mpt_comm_op op, const mpt_comm *c, int peer, double t0,
                        double t1) {
    mpt_trace_add(ctx, MPT_TRACE_COMM, mpt_comm_op_name(op), c->name, peer, t0, t1);
}

void mpt_trace_observe_comm(mpt_trace *tr) {
    if (tr && tr->enabled) mpt_comm_set_observer(comm_event_, tr);
    else mpt_comm_set_observer(NULL, NULL);
}

static void write_events_(FILE *f, const mpt_trace_event *ev, size_t n, int rank, int *first) {
    for (size_t i = 0; i < n; i++) {
        const mpt_trace_event *e = &ev[i];
        fprintf(f, "%s\n{\"name\":\"%s\",\"ph\":\"X\",\"pid\":%d,\"tid\":%d,\"ts\":%.3f,"
                   "\"dur\":%.3f",
                *first ? "" : ",", e->name, rank, e->track, e->t0 * 1e6, (e->t1 - e->t0) * 1e6);
        if (e->track == MPT_TRACE_COMM) {
            fprintf(f, ",\"args\":{\"group\":\"%s\"", e->group);
            if (e->peer >= 0) fprintf(f, ",\"peer\":%d", e->peer);
            fputc('}', f);
        }
        fputc('}', f);
        *first = 0;
    }
}

mpt_status mpt_trace_write(mpt_trace *tr, mpt_comm *world, const char *path, mpt_error *err) {
    if (!tr->enabled) return MPT_OK;
    int size = world->size, rank = world->rank, mine = (int)(tr->n * sizeof *tr->ev);
    int *bytes = rank == 0 ? calloc((size_t)size, sizeof *bytes) : NULL;
    int *displ = rank == 0 ? calloc((size_t)size, sizeof *displ) : NULL;
    char *all = NULL;
    mpt_status st = MPT_OK;
    /* the trace is written once at the end: plain MPI gathers of raw event records */
    MPI_Gather(&mine, 1, MPI_INT, bytes, 1, MPI_INT, 0, world->comm);
    if (rank == 0) {
        size_t total = 0;
        for (int r = 0; r < size; r++) {
            displ[r] = (int)total;
            total += (size_t)bytes[r];
        }
        all = malloc(total ? total : 1);
    }
    MPI_Gatherv(tr->ev, mine, MPI_BYTE, all, bytes, displ, MPI_BYTE, 0, world->comm);
    if (rank == 0) {
        FILE *f = fopen(path, "w");
        if (!f) {
            st = mpt_fail(err, MPT_ERR_INPUT, "cannot write the trace %s: %s", path,
                          strerror(errno));
        } else {
            int first = 1;
            fprintf(f, "{\"displayTimeUnit\":\"ms\",\"traceEvents\":[");
            for (int r = 0; r < size; r++) {
                fprintf(f, "%s\n{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":%d,"
                           "\"args\":{\"name\":\"rank %d\"}}",
                        first ? "" : ",", r, r);
                first = 0;
                fprintf(f, ",\n{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":%d,\"tid\":0,"
                           "\"args\":{\"name\":\"compute\"}},\n{\"name\":\"thread_name\","
                           "\"ph\":\"M\",\"pid\":%d,\"tid\":1,\"args\":{\"name\":\"communication\"}}",
                        r, r);
                write_events_(f, (const mpt_trace_event *)(all + displ[r]),
                              (size_t)bytes[r] / sizeof(mpt_trace_event), r, &first);
            }
            fprintf(f, "\n]}\n");
            if (fclose(f) != 0)
                st = mpt_fail(err, MPT_ERR_RUN, "cannot finish the trace %s: %s", path,
                              strerror(errno));
        }
    }
    free(bytes);
    free(displ);
    free(all);
    return mpt_comm_agree(world, st, err);
}

void mpt_trace_free(mpt_trace *tr) {
    if (!tr) return;
    if (tr->enabled) mpt_comm_set_observer(NULL, NULL);
    free(tr->ev);
    memset(tr, 0, sizeof *tr);
}
