/* comm_wait.c — finishing requests (see comm.h): mpt_test, mpt_wait, mpt_waitall, mpt_waitany
 * and the watchdog.
 *
 * Waiting polls MPI_Test: first a spin (mpt_comm_set_spin: a few microseconds by default, so a
 * message that is about to land costs no sleep), then nanosleep with a period doubling from 1 us up to 1 ms. Tests run
 * 4-8 ranks on 2 cores, and a rank that busy-waits takes the core from the rank it waits for;
 * with the back-off a waiting rank uses a few percent of a core, and a late message costs at
 * most ~1 ms. A wait longer than the timeout (counted from the start of this wait) formats
 * "rank R: stuck for S s in OP on group G (peer P) at step N" and calls the watchdog handler;
 * without a handler (or if it returns) the wait fails with MPT_ERR_RUN and that message,
 * leaving the request pending. Only the rank that owns a request waits on it.
 * Once the failure detector (alive.h) knows of a lost rank (mpt_alive_give_up), a wait or
 * test that finds its request still pending fails with that loss.
 * Testing: under MPT_DEBUG_JITTER_US (alive.h) each wait and mpt_test first sleeps a random
 * while, mpt_test skips its MPI_Test half the time and a wait skips each request's MPI_Test
 * in half of its rounds: completions are seen late and in shuffled orders, as MPI allows. */
#include "comm/alive.h"
#include "comm/comm_internal.h"

#include <stdio.h>
#include <time.h>

#define NAP_MIN_NS 1000L     /* first sleep */
#define NAP_MAX_NS 1000000L  /* longest sleep */

/* Tests every pending part of r; *all = 1 when none is left. Counts received elements. */
static mpt_status test_parts_(mpt_req *r, int *all, mpt_error *err) {
    *all = 1;
    for (int i = 0; i < r->n; i++) {
        if (r->req[i] == MPI_REQUEST_NULL) continue;
        int flag = 0;
        MPI_Status status;
        int rc = MPI_Test(&r->req[i], &flag, &status);
        if (rc != MPI_SUCCESS) {
            const char *fn = r->op == MPT_OP_RECV ? "receiving" : r->op == MPT_OP_SEND ? "sending" : "MPI_Test";
            return mpt_comm_mpi_fail(err, r->comm, r->op, r->peer, fn, rc);
        }
        if (!flag) {
            *all = 0;
        } else if (r->op == MPT_OP_RECV) {
            int got = 0;
            MPI_Get_count(&status, mpt_comm_datatype(r->dtype), &got);
            r->got += got > 0 ? (size_t)got : 0;
        }
    }
    return MPT_OK;
}

/* Marks r complete and adds it to its communicator's counters. A receive that got fewer
 * elements than it posted fails (the sender and receiver disagree on a shape). */
static mpt_status finish_(mpt_req *r, mpt_error *err) {
    r->done = 1;
    if (!r->comm) return MPT_OK; /* a zeroed request that never started: nothing to count */
    mpt_comm_stats *s = &r->comm->stats;
    s->calls[r->op]++;
    s->bytes[r->op] += r->bytes;
    if ((unsigned)r->dtype < MPT_DTYPES) s->dtype_bytes[r->dtype] += r->bytes;
    double t1 = mpt_comm_now();
    s->seconds[r->op] += t1 - r->t0;
    mpt_comm_observe(r->op, r->comm, r->peer, r->t0, t1);
    size_t elem = mpt_dtype_size(r->dtype);
    size_t want = elem ? (size_t)(r->bytes / (double)elem) : 0;
    if (r->op == MPT_OP_RECV && r->got != want) {
        char what[24];
        if (r->dtype == MPT_F32) snprintf(what, sizeof what, "floats");
        else snprintf(what, sizeof what, "%s elements", mpt_dtype_name(r->dtype));
        return mpt_fail(err, MPT_ERR_RUN,
                        "rank %d: recv on group %s (peer %d): expected %zu %s, got %zu; "
                        "sender and receiver disagree on the message size",
                        mpt_comm_world_rank(), r->comm->name,
                        mpt_comm_peer_world_rank(r->comm, r->peer), want, what, r->got);
    }
    return MPT_OK;
}

/* Formats the watchdog message, calls the handler, and fails if the handler returns. */
static mpt_status stuck_(const mpt_req *r, mpt_error *err) {
    char msg[512], peer[24] = "-";
    int wp = mpt_comm_peer_world_rank(r->comm, r->peer);
    if (wp >= 0) snprintf(peer, sizeof peer, "%d", wp);
    snprintf(msg, sizeof msg, "rank %d: stuck for %g s in %s on group %s (peer %s) at step %ld",
             mpt_comm_world_rank(), mpt_comm_timeout(), mpt_comm_op_name(r->op), r->comm->name,
             peer, mpt_comm_step());
    mpt_watchdog_fn fn = mpt_comm_watchdog();
    if (fn) fn(msg);
    return mpt_fail(err, MPT_ERR_RUN, "%s", msg);
}

static void nap_(long ns) {
    struct timespec ts = {0, ns};
    nanosleep(&ts, NULL);
}

/* The rank that owns r[0..n) calls. all: returns when every one is complete (or one fails).
 * Else (any): returns when one of those still pending completes, *which = its index, or at
 * once with *which = n when none is pending (requests never started are not pending then). */
static mpt_status wait_many_(mpt_req *r, size_t n, int all, size_t *which, mpt_error *err) {
    mpt_alive_debug_jitter();
    double start = mpt_comm_now(), timeout = mpt_comm_timeout(), spin = mpt_comm_spin();
    long nap = NAP_MIN_NS;
    if (which) *which = n;
    for (;;) {
        const mpt_req *first = NULL;
        for (size_t i = 0; i < n; i++) {
            if (r[i].done || (!all && !r[i].comm)) continue;
            if (mpt_alive_debug_coin()) { /* testing: seen as pending this round */
                if (!first) first = &r[i];
                continue;
            }
            int done = 0;
            mpt_status st = test_parts_(&r[i], &done, err);
            if (st == MPT_OK && done) st = finish_(&r[i], err);
            if (st != MPT_OK) return st;
            if (!done && !first) first = &r[i];
            if (done && !all) {
                *which = i;
                first = NULL;
                break;
            }
        }
        if (!first) {
            for (size_t i = 0; i < n; i++) /* blocked time, on the first started request's group */
                if (r[i].comm) {
                    r[i].comm->stats.wait_seconds += mpt_comm_now() - start;
                    break;
                }
            return MPT_OK;
        }
        if (mpt_alive_give_up()) return mpt_alive_fail(first->comm, first->op, err);
        double waited = mpt_comm_now() - start;
        if (waited >= timeout) return stuck_(first, err);
        if (waited < spin) continue;
        nap_(nap);
        nap = nap * 2 > NAP_MAX_NS ? NAP_MAX_NS : nap * 2;
    }
}

mpt_status mpt_wait(mpt_req *r, mpt_error *err) { return wait_many_(r, 1, 1, NULL, err); }

mpt_status mpt_waitall(mpt_req *r, size_t n, mpt_error *err) {
    return wait_many_(r, n, 1, NULL, err);
}

mpt_status mpt_waitany(mpt_req *r, size_t n, size_t *which, mpt_error *err) {
    return wait_many_(r, n, 0, which, err);
}

mpt_status mpt_test(mpt_req *r, int *done, mpt_error *err) {
    *done = r->done;
    if (r->done) return MPT_OK;
    if (mpt_alive_debug_jitter() == 2) return MPT_OK; /* testing: seen as pending this time */
    int all = 0;
    mpt_status st = test_parts_(r, &all, err);
    if (st == MPT_OK && all) {
        st = finish_(r, err);
        *done = 1;
    }
    if (st == MPT_OK && !all && mpt_alive_give_up()) st = mpt_alive_fail(r->comm, r->op, err);
    return st;
}
