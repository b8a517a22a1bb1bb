/* comm.h — the thin communication layer over MPI that every parallel dimension uses.
 *
 * A mpt_comm is one MPI communicator (world, or a group of the mesh: "dp", "tp", "pp", "cp")
 * with a name for messages. All calls return a status (MPI_ERRORS_RETURN is set on every
 * communicator) and count calls, bytes and seconds per operation kind for the log and trace.
 * Blocking calls are nonblocking calls plus mpt_wait, so every wait is watched: a wait longer
 * than the timeout (mpt_comm_set_timeout, default 300 s) calls the watchdog handler with the
 * rank, operation, group, peer and step; the CLI's handler prints that and aborts the job.
 * Waiting polls MPI_Test with a short spin then sleeps that back off (up to ~1 ms), so ranks
 * oversubscribed on few cores do not steal time from the ranks that compute.
 * Counts above INT_MAX elements are split into several MPI calls, at most 8 per request
 * (the size of mpt_req.req), so one call moves at most 8 * INT_MAX elements (64 GiB of floats);
 * larger calls fail with MPT_ERR_RUN before any rank communicates.
 * Typed buffers: the core calls (the _dt names) take void * buffers and an element type
 * (core/dtype.h); the MPI datatype and every byte count come from it. MPT_F32, MPT_F64 and
 * MPT_I32 go anywhere; MPT_BF16 only moves (all-gather, all-to-all, point-to-point): a sum or
 * max of bf16 fails with MPT_ERR_RUN before any rank communicates. The float names
 * (mpt_allreduce_sum, mpt_isend, ...) are thin wrappers that pass MPT_F32.
 * Which ranks must call: every collective is called by all ranks of its communicator in the
 * same order; point-to-point by the two peers.
 * After any failure (an MPI error, or the watchdog without a handler) requests may be left
 * pending: end the job rather than communicate further on that communicator.
 *
 * Example (every rank of dp):
 *     mpt_req r;
 *     if (mpt_iallreduce_sum(&g->dp, grads, n, &r, err)) return err->status;
 *     ...compute the next bucket...
 *     if (mpt_wait(&r, err)) return err->status;   // grads now holds the sum over dp */
#ifndef MPT_COMM_H
#define MPT_COMM_H

#include <mpi.h>
#include <stddef.h>

#include "core/dtype.h"
#include "core/status.h"

typedef enum mpt_comm_op {
    MPT_OP_ALLREDUCE, MPT_OP_REDUCE_SCATTER, MPT_OP_ALLGATHER, MPT_OP_ALLTOALL, MPT_OP_BCAST,
    MPT_OP_SEND, MPT_OP_RECV, MPT_OP_BARRIER, MPT_OP_KINDS
} mpt_comm_op;

const char *mpt_comm_op_name(mpt_comm_op op); /* "allreduce", "reduce_scatter", ... */

typedef struct mpt_comm_stats {
    long calls[MPT_OP_KINDS];
    double bytes[MPT_OP_KINDS];    /* payload bytes of this rank's buffer: allreduce n, reduce-
                                      scatter n*size, allgather n (its own block), alltoall the
                                      sum of send counts, bcast and recv the buffer, times the
                                      element size */
    double seconds[MPT_OP_KINDS];  /* from start to completion as seen by mpt_wait/mpt_test */
    double dtype_bytes[MPT_DTYPES];/* the same payload bytes by element type, over the typed
                                      calls (bcast, barrier and agreement move untyped bytes) */
    double wait_seconds;           /* this rank's time blocked in mpt_wait / mpt_waitall (and
                                      so in every blocking call) on this communicator: the
                                      exposed part of its communication, which for requests
                                      overlapped with compute is below the sum of seconds */
} mpt_comm_stats;

/* Reductions of the typed allreduce. */
typedef enum mpt_reduce_op { MPT_RED_SUM, MPT_RED_MAX } mpt_reduce_op;

/* Counted when a request completes (mpt_wait / mpt_waitall / mpt_test), once per call however
 * many MPI calls it was split into; mpt_comm_agree counts as one allreduce (and one bcast of
 * the message when some rank failed). Zero them with memset to measure a stretch. */
typedef struct mpt_comm {
    MPI_Comm comm;         /* owned (freed by mpt_comm_free) unless it is MPI_COMM_WORLD */
    int rank, size;
    char name[16];
    mpt_comm_stats stats;  /* this communicator's counters */
} mpt_comm;

typedef struct mpt_req {
    MPI_Request req[8];    /* several when a large count was split */
    int n;
    mpt_comm_op op;
    mpt_comm *comm;        /* not owned */
    int peer;              /* p2p peer rank in comm, -1 for collectives */
    double bytes, t0;
    mpt_dtype dtype;       /* element type (MPT_DTYPES for untyped bytes) */
    size_t got;            /* recv: elements received so far */
    int done;
} mpt_req;

/* --- process-wide settings ------------------------------------------------------------------ */
/* Called when a wait exceeds the timeout; should not return (the CLI prints and MPI_Aborts).
 * what: "rank 3: stuck for 300 s in allreduce on group dp (peer -) at step 12" (the rank and
 * the peer are world ranks; the seconds are the timeout). Without a handler, or if it returns,
 * the wait fails with MPT_ERR_RUN and that message. The timeout counts from the wait's start. */
typedef void (*mpt_watchdog_fn)(const char *what);
void mpt_comm_set_timeout(double seconds);
/* How long a wait polls MPI_Test without sleeping before it backs off into naps (default 5 us,
 * for ranks oversubscribed on few cores). A rank with a core of its own should spin longer:
 * a nap can add up to ~1 ms to every wait, which a pipeline pays per micro-batch. */
void mpt_comm_set_spin(double seconds);  /* <= 0 restores the default 300 s */
void mpt_comm_set_watchdog(mpt_watchdog_fn fn);
void mpt_comm_set_step(long step);      /* for watchdog messages */
/* Called when an operation completes (from mpt_wait / mpt_test), with its kind, group and
 * start and end on mpt_comm_clock(): the trace records communication through it. NULL: none. */
typedef void (*mpt_comm_observer_fn)(void *ctx, mpt_comm_op op, const mpt_comm *c, int peer,
                                     double t0, double t1);
void mpt_comm_set_observer(mpt_comm_observer_fn fn, void *ctx);
/* Seconds on the clock the counters and the observer use (monotonic). */
double mpt_comm_clock(void);
/* For tests: the largest element count one MPI call takes (0 = the default, INT_MAX), so the
 * splitting of large counts runs on small buffers. Set the same value on every rank. */
void mpt_comm_set_max_count(size_t n);

/* --- communicators ---------------------------------------------------------------------------- */
/* Wraps MPI_COMM_WORLD (MPI must be initialised) and sets MPI_ERRORS_RETURN on it. Any rank. */
mpt_status mpt_comm_world(mpt_comm *c, mpt_error *err);
/* MPI_Comm_split of parent; all ranks of parent call. name (up to 15 characters) is used in
 * messages. color MPI_UNDEFINED leaves out empty (size 0, not to be used). */
mpt_status mpt_comm_split(mpt_comm *parent, int color, int key, const char *name, mpt_comm *out,
                          mpt_error *err);
/* Local. Safe on NULL, on a zeroed or already freed mpt_comm, and on the world wrapper. */
void mpt_comm_free(mpt_comm *c);

/* --- agreement ------------------------------------------------------------------------------- */
/* All ranks of c call with their local status (and err holding the message when not OK).
 * Returns the worst status over the ranks (MPT_ERR_INPUT > MPT_ERR_RUN > MPT_OK); when it is
 * not OK every rank's err holds that status and the message of the lowest-numbered rank that
 * has it, so all ranks report the same words and exit with the same code. Watched like any
 * wait. */
mpt_status mpt_comm_agree(mpt_comm *c, mpt_status local, mpt_error *err);

/* --- nonblocking ----------------------------------------------------------------------------- */
/* All nonblocking calls fill *r (no need to initialise it); the buffers, *r and *c must stay
 * where they are, alive and untouched, until the request completes (r points at c, and a
 * pending request is not to be copied). */
/* Typed core calls. Counts n are elements of type dt; every rank passes the same n and dt.
 * In place: buf (n) holds this rank's input, then the sum (or max) over ranks. */
mpt_status mpt_iallreduce_dt(mpt_comm *c, void *buf, size_t n, mpt_dtype dt, mpt_reduce_op op,
                             mpt_req *r, mpt_error *err);
/* recv (n) = sum over ranks of send[rank*n .. rank*n + n); send holds n*size elements and
 * must not overlap recv. send NULL reduces in place: recv holds the n*size inputs, and the
 * sum lands in recv[0 .. n) (the rest of recv is then undefined). */
mpt_status mpt_ireduce_scatter_dt(mpt_comm *c, const void *send, void *recv, size_t n,
                                  mpt_dtype dt, mpt_req *r, mpt_error *err);
/* recv (n*size) = concatenation of every rank's send (n). send may be recv + rank*n (in place). */
mpt_status mpt_iallgather_dt(mpt_comm *c, const void *send, void *recv, size_t n, mpt_dtype dt,
                             mpt_req *r, mpt_error *err);
mpt_status mpt_isend_dt(mpt_comm *c, const void *buf, size_t n, mpt_dtype dt, int peer, int tag,
                        mpt_req *r, mpt_error *err);
/* Both peers pass the same n, dt and tag. The receive fails (when waited on) if fewer than n
 * elements arrived; more gives MPI's truncation error. */
mpt_status mpt_irecv_dt(mpt_comm *c, void *buf, size_t n, mpt_dtype dt, int peer, int tag,
                        mpt_req *r, mpt_error *err);

/* The float forms (MPT_F32) of the calls above. */
mpt_status mpt_iallreduce_sum(mpt_comm *c, float *buf, size_t n, mpt_req *r, mpt_error *err);
mpt_status mpt_ireduce_scatter_sum(mpt_comm *c, const float *send, float *recv, size_t n,
                                   mpt_req *r, mpt_error *err);
mpt_status mpt_iallgather(mpt_comm *c, const float *send, float *recv, size_t n, mpt_req *r,
                          mpt_error *err);
mpt_status mpt_isend(mpt_comm *c, const float *buf, size_t n, int peer, int tag, mpt_req *r,
                     mpt_error *err);
mpt_status mpt_irecv(mpt_comm *c, float *buf, size_t n, int peer, int tag, mpt_req *r,
                     mpt_error *err);
/* Only the rank that started r waits on it. Waiting on a finished or zeroed request returns
 * MPT_OK at once. */
mpt_status mpt_wait(mpt_req *r, mpt_error *err);
/* Waits for r[0..n) together (the watchdog names the first one still pending). */
mpt_status mpt_waitall(mpt_req *r, size_t n, mpt_error *err);
/* Waits until one of r[0..n) that is still pending completes: *which = its index (finished and
 * counted; the others may have completed too, mpt_test tells). Requests already finished, and
 * zeroed ones that never started, are skipped; with none pending it returns at once with
 * *which = n. For a caller whose next move may need any of several requests (a ring's receive,
 * or the send whose buffer its next send reuses): waiting on one of them alone can deadlock. */
mpt_status mpt_waitany(mpt_req *r, size_t n, size_t *which, mpt_error *err);
/* *done = 1 when complete (then r is finished and counted); progresses MPI either way. */
mpt_status mpt_test(mpt_req *r, int *done, mpt_error *err);

/* --- blocking (nonblocking + watched wait) ------------------------------------------------- */
mpt_status mpt_allreduce_dt(mpt_comm *c, void *buf, size_t n, mpt_dtype dt, mpt_reduce_op op,
                            mpt_error *err);
mpt_status mpt_reduce_scatter_dt(mpt_comm *c, const void *send, void *recv, size_t n,
                                 mpt_dtype dt, mpt_error *err);
mpt_status mpt_allgather_dt(mpt_comm *c, const void *send, void *recv, size_t n, mpt_dtype dt,
                            mpt_error *err);
/* counts and displacements in elements of dt (MPI_Alltoallv semantics). The count and
 * displacement arrays of the nonblocking form must live until it completes. */
mpt_status mpt_ialltoallv_dt(mpt_comm *c, const void *send, const int *send_counts,
                             const int *send_displs, void *recv, const int *recv_counts,
                             const int *recv_displs, mpt_dtype dt, mpt_req *r, mpt_error *err);
mpt_status mpt_alltoallv_dt(mpt_comm *c, const void *send, const int *send_counts,
                            const int *send_displs, void *recv, const int *recv_counts,
                            const int *recv_displs, mpt_dtype dt, mpt_error *err);
mpt_status mpt_send_dt(mpt_comm *c, const void *buf, size_t n, mpt_dtype dt, int peer, int tag,
                       mpt_error *err);
mpt_status mpt_recv_dt(mpt_comm *c, void *buf, size_t n, mpt_dtype dt, int peer, int tag,
                       mpt_error *err);
/* Receives first, then sends; both are in flight together, so a ring shift cannot deadlock. */
mpt_status mpt_sendrecv_dt(mpt_comm *c, const void *send, size_t ns, int dst, void *recv,
                           size_t nr, int src, mpt_dtype dt, int tag, mpt_error *err);

/* The float forms (and the f64 allreduces kept by name). */
mpt_status mpt_allreduce_sum(mpt_comm *c, float *buf, size_t n, mpt_error *err);
mpt_status mpt_allreduce_sum_f64(mpt_comm *c, double *buf, size_t n, mpt_error *err);
mpt_status mpt_allreduce_max_f64(mpt_comm *c, double *buf, size_t n, mpt_error *err);
mpt_status mpt_allreduce_max(mpt_comm *c, float *buf, size_t n, mpt_error *err);
mpt_status mpt_reduce_scatter_sum(mpt_comm *c, const float *send, float *recv, size_t n,
                                  mpt_error *err);
mpt_status mpt_allgather(mpt_comm *c, const float *send, float *recv, size_t n, mpt_error *err);
mpt_status mpt_ialltoallv(mpt_comm *c, const float *send, const int *send_counts,
                          const int *send_displs, float *recv, const int *recv_counts,
                          const int *recv_displs, mpt_req *r, mpt_error *err);
mpt_status mpt_alltoallv(mpt_comm *c, const float *send, const int *send_counts,
                         const int *send_displs, float *recv, const int *recv_counts,
                         const int *recv_displs, mpt_error *err);
mpt_status mpt_ibcast(mpt_comm *c, void *buf, size_t bytes, int root, mpt_req *r,
                      mpt_error *err);
mpt_status mpt_bcast(mpt_comm *c, void *buf, size_t bytes, int root, mpt_error *err);
mpt_status mpt_send(mpt_comm *c, const float *buf, size_t n, int peer, int tag, mpt_error *err);
mpt_status mpt_recv(mpt_comm *c, float *buf, size_t n, int peer, int tag, mpt_error *err);
mpt_status mpt_sendrecv(mpt_comm *c, const float *send, size_t ns, int dst, float *recv,
                        size_t nr, int src, int tag, mpt_error *err);
mpt_status mpt_barrier(mpt_comm *c, mpt_error *err);

#endif
