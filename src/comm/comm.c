/* comm.c — the communication layer's settings, communicators and agreement (see comm.h):
 * the process-wide timeout, watchdog and step; wrapping and splitting communicators with
 * MPI_ERRORS_RETURN; mpt_comm_agree; and the helpers the other comm_*.c files share
 * (comm_internal.h). Collectives are in comm_collective.c, point-to-point in comm_p2p.c,
 * waiting and the watchdog in comm_wait.c. */
#include "comm/alive.h"
#include "comm/comm_internal.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* Process-wide settings; set them from the thread that calls MPI, before communicating. */
static double timeout_s_ = 300.0;
static mpt_watchdog_fn watchdog_ = NULL;
static long step_ = 0;
static size_t max_count_ = INT_MAX;

void mpt_comm_set_timeout(double seconds) { timeout_s_ = seconds > 0 ? seconds : 300.0; }
void mpt_comm_set_watchdog(mpt_watchdog_fn fn) { watchdog_ = fn; }
void mpt_comm_set_step(long step) {
    step_ = step;
    mpt_alive_debug_step(step);
}
void mpt_comm_set_max_count(size_t n) { max_count_ = (n == 0 || n > INT_MAX) ? INT_MAX : n; }

double mpt_comm_timeout(void) { return timeout_s_; }

static double spin_s_ = 5e-6;
void mpt_comm_set_spin(double seconds) { spin_s_ = seconds > 0 ? seconds : 5e-6; }
double mpt_comm_spin(void) { return spin_s_; }
mpt_watchdog_fn mpt_comm_watchdog(void) { return watchdog_; }
long mpt_comm_step(void) { return step_; }
size_t mpt_comm_max_count(void) { return max_count_; }

const char *mpt_comm_op_name(mpt_comm_op op) {
    switch (op) {
    case MPT_OP_ALLREDUCE: return "allreduce";
    case MPT_OP_REDUCE_SCATTER: return "reduce_scatter";
    case MPT_OP_ALLGATHER: return "allgather";
    case MPT_OP_ALLTOALL: return "alltoall";
    case MPT_OP_BCAST: return "bcast";
    case MPT_OP_SEND: return "send";
    case MPT_OP_RECV: return "recv";
    case MPT_OP_BARRIER: return "barrier";
    case MPT_OP_KINDS: break;
    }
    return "?";
}

static mpt_comm_observer_fn observer_;
static void *observer_ctx_;

void mpt_comm_set_observer(mpt_comm_observer_fn fn, void *ctx) {
    observer_ = fn;
    observer_ctx_ = ctx;
}

void mpt_comm_observe(mpt_comm_op op, const mpt_comm *c, int peer, double t0, double t1) {
    if (observer_) observer_(observer_ctx_, op, c, peer, t0, t1);
}

double mpt_comm_clock(void) { return mpt_comm_now(); }

double mpt_comm_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int mpt_comm_world_rank(void) {
    int init = 0, fin = 0, r = -1;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    if (init && !fin) MPI_Comm_rank(MPI_COMM_WORLD, &r);
    return r;
}

int mpt_comm_peer_world_rank(const mpt_comm *c, int peer) {
    if (peer < 0 || peer >= c->size || c->comm == MPI_COMM_NULL) return -1;
    if (c->comm == MPI_COMM_WORLD) return peer;
    MPI_Group g, wg;
    int out = -1;
    if (MPI_Comm_group(c->comm, &g) != MPI_SUCCESS) return -1;
    if (MPI_Comm_group(MPI_COMM_WORLD, &wg) == MPI_SUCCESS) {
        if (MPI_Group_translate_ranks(g, 1, &peer, wg, &out) != MPI_SUCCESS || out == MPI_UNDEFINED)
            out = -1;
        MPI_Group_free(&wg);
    }
    MPI_Group_free(&g);
    return out;
}

/* MPI_Error_string of code into text (MPI_MAX_ERROR_STRING + 1 bytes). */
static void mpi_text_(int code, char *text) {
    int len = 0;
    if (MPI_Error_string(code, text, &len) != MPI_SUCCESS)
        len = snprintf(text, MPI_MAX_ERROR_STRING, "MPI error %d", code);
    text[len < 0 ? 0 : len > MPI_MAX_ERROR_STRING ? MPI_MAX_ERROR_STRING : len] = '\0';
}

mpt_status mpt_comm_mpi_fail(mpt_error *err, const mpt_comm *c, mpt_comm_op op, int peer,
                             const char *fn, int code) {
    char text[MPI_MAX_ERROR_STRING + 1], who[48] = "";
    mpi_text_(code, text);
    if (peer >= 0) {
        int wp = mpt_comm_peer_world_rank(c, peer);
        if (wp >= 0) snprintf(who, sizeof who, " (peer %d)", wp);
        else snprintf(who, sizeof who, " (peer %d of %d)", peer, c->size);
    }
    return mpt_fail(err, MPT_ERR_RUN, "rank %d: %s on group %s%s: %s failed: %s",
                    mpt_comm_world_rank(), mpt_comm_op_name(op), c->name, who, fn, text);
}

mpt_status mpt_comm_parts(const mpt_comm *c, mpt_comm_op op, size_t n, int *parts,
                          mpt_error *err) {
    size_t m = max_count_;
    size_t k = n == 0 ? 1 : (n - 1) / m + 1;
    if (k > (size_t)MPT_REQ_MAX_PARTS)
        return mpt_fail(err, MPT_ERR_RUN,
                        "rank %d: %s on group %s: %zu elements need %zu calls of at most %zu, "
                        "more than the %d one request holds; split the buffer",
                        mpt_comm_world_rank(), mpt_comm_op_name(op), c->name, n, k, m, MPT_REQ_MAX_PARTS);
    *parts = (int)k;
    return MPT_OK;
}

void mpt_comm_req_start(mpt_req *r, mpt_comm *c, mpt_comm_op op, int peer, mpt_dtype dt,
                        double bytes) {
    mpt_alive_debug_op(c, op);
    mpt_alive_debug_jitter();
    memset(r, 0, sizeof *r);
    for (int i = 0; i < MPT_REQ_MAX_PARTS; i++) r->req[i] = MPI_REQUEST_NULL;
    r->op = op;
    r->comm = c;
    r->peer = peer;
    r->dtype = dt;
    r->bytes = bytes;
    r->t0 = mpt_comm_now();
}

MPI_Datatype mpt_comm_datatype(mpt_dtype dt) {
    switch (dt) {
    case MPT_F32: return MPI_FLOAT;
    case MPT_F64: return MPI_DOUBLE;
    case MPT_I32: return MPI_INT32_T;
    case MPT_BF16: return MPI_UINT16_T; /* moved as raw 16-bit words */
    case MPT_DTYPES: break;
    }
    return MPI_DATATYPE_NULL;
}

mpt_status mpt_comm_type(const mpt_comm *c, mpt_comm_op op, mpt_dtype dt, int reduce,
                         MPI_Datatype *type, size_t *elem, mpt_error *err) {
    *type = mpt_comm_datatype(dt);
    if (*type == MPI_DATATYPE_NULL)
        return mpt_fail(err, MPT_ERR_RUN, "rank %d: %s on group %s: unknown element type %d",
                        mpt_comm_world_rank(), mpt_comm_op_name(op), c->name, (int)dt);
    if (reduce && dt == MPT_BF16)
        return mpt_fail(err, MPT_ERR_RUN,
                        "rank %d: %s on group %s: reductions of bf16 are not supported; "
                        "reduce in f32", mpt_comm_world_rank(), mpt_comm_op_name(op), c->name);
    *elem = mpt_dtype_size(dt);
    return MPT_OK;
}

/* --- communicators --------------------------------------------------------------------------- */

/* Sets MPI_ERRORS_RETURN, the rank, size, name and zero counters. */
static mpt_status wrap_(mpt_comm *c, MPI_Comm comm, const char *name, mpt_error *err) {
    memset(c, 0, sizeof *c);
    c->comm = comm;
    snprintf(c->name, sizeof c->name, "%s", name);
    int rc = MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_rank(comm, &c->rank);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_size(comm, &c->size);
    if (rc != MPI_SUCCESS) {
        char text[MPI_MAX_ERROR_STRING + 1];
        mpi_text_(rc, text);
        c->size = 0;
        return mpt_fail(err, MPT_ERR_RUN, "rank %d: setting up group %s failed: %s",
                        mpt_comm_world_rank(), name, text);
    }
    return MPT_OK;
}

/* Any rank, any time after MPI_Init. */
mpt_status mpt_comm_world(mpt_comm *c, mpt_error *err) {
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    if (!init || fin) {
        memset(c, 0, sizeof *c);
        c->comm = MPI_COMM_NULL;
        return mpt_fail(err, MPT_ERR_RUN, "mpt_comm_world: MPI is %s",
                        fin ? "already finalised" : "not initialised (call MPI_Init first)");
    }
    return wrap_(c, MPI_COMM_WORLD, "world", err);
}

/* All ranks of parent call (collective). color MPI_UNDEFINED gives an empty out (size 0). */
mpt_status mpt_comm_split(mpt_comm *parent, int color, int key, const char *name, mpt_comm *out,
                          mpt_error *err) {
    MPI_Comm nc = MPI_COMM_NULL;
    memset(out, 0, sizeof *out);
    out->comm = MPI_COMM_NULL;
    snprintf(out->name, sizeof out->name, "%s", name);
    int rc = MPI_Comm_split(parent->comm, color, key, &nc);
    if (rc != MPI_SUCCESS) {
        char text[MPI_MAX_ERROR_STRING + 1];
        mpi_text_(rc, text);
        return mpt_fail(err, MPT_ERR_RUN, "rank %d: making group %s from group %s: "
                        "MPI_Comm_split failed: %s", mpt_comm_world_rank(), name, parent->name, text);
    }
    if (nc == MPI_COMM_NULL) return MPT_OK;
    mpt_status st = wrap_(out, nc, name, err);
    if (st != MPT_OK) {
        MPI_Comm_free(&nc);
        out->comm = MPI_COMM_NULL;
    }
    return st;
}

/* Local (MPI_Comm_free is collective in name only; OpenMPI frees without waiting). Safe on a
 * zeroed or already freed mpt_comm, on the world wrapper, and after MPI_Finalize. */
void mpt_comm_free(mpt_comm *c) {
    if (!c || c->size == 0) return;
    int fin = 0;
    MPI_Finalized(&fin);
    if (!fin && c->comm != MPI_COMM_NULL && c->comm != MPI_COMM_WORLD && c->comm != MPI_COMM_SELF)
        MPI_Comm_free(&c->comm);
    c->comm = MPI_COMM_NULL;
    c->size = 0;
}

/* --- agreement ------------------------------------------------------------------------------- */

/* All ranks of c call. One allreduce (MAX) of a key that orders by status first and then by
 * lower rank: key = status * size + (size - 1 - rank), or -1 when this rank is fine. When the
 * result is not OK, the chosen rank broadcasts its message. Both waits are watched, so a rank
 * that never arrives triggers the watchdog instead of a silent hang. */
mpt_status mpt_comm_agree(mpt_comm *c, mpt_status local, mpt_error *err) {
    mpt_error tmp;
    mpt_error *e = err ? err : &tmp;
    if (!err) snprintf(tmp.msg, sizeof tmp.msg, "rank %d failed (no message)", mpt_comm_world_rank());
    if (local != MPT_OK && e->msg[0] == '\0')
        snprintf(e->msg, sizeof e->msg, "rank %d failed (no message)", mpt_comm_world_rank());

    long long key = local == MPT_OK ? -1 : (long long)local * c->size + (c->size - 1 - c->rank);
    long long worst = -1;
    mpt_req r;
    mpt_comm_req_start(&r, c, MPT_OP_ALLREDUCE, -1, MPT_DTYPES, (double)sizeof key);
    r.n = 1;
    int rc = MPI_Iallreduce(&key, &worst, 1, MPI_LONG_LONG, MPI_MAX, c->comm, &r.req[0]);
    if (rc != MPI_SUCCESS) return mpt_comm_mpi_fail(err, c, MPT_OP_ALLREDUCE, -1, "MPI_Iallreduce", rc);
    mpt_error werr;
    if (mpt_wait(&r, &werr) != MPT_OK) return mpt_fail(err, MPT_ERR_RUN, "%s", werr.msg);
    if (worst < 0) return MPT_OK;

    mpt_status st = (mpt_status)(worst / c->size);
    int root = c->size - 1 - (int)(worst % c->size);
    mpt_comm_req_start(&r, c, MPT_OP_BCAST, -1, MPT_DTYPES, (double)sizeof e->msg);
    r.n = 1;
    rc = MPI_Ibcast(e->msg, (int)sizeof e->msg, MPI_CHAR, root, c->comm, &r.req[0]);
    if (rc != MPI_SUCCESS) return mpt_comm_mpi_fail(err, c, MPT_OP_BCAST, -1, "MPI_Ibcast", rc);
    if (mpt_wait(&r, &werr) != MPT_OK) return mpt_fail(err, MPT_ERR_RUN, "%s", werr.msg);
    e->msg[sizeof e->msg - 1] = '\0';
    e->status = st;
    return st;
}
