/* comm_p2p.c — point-to-point transfers of typed buffers (see comm.h): mpt_isend_dt /
 * mpt_irecv_dt, their blocking forms, mpt_sendrecv_dt, and the float wrappers (mpt_isend, ...).
 * Called by the two peers only; both must pass the same n, element type and tag (a message
 * longer than the per-call limit splits into several MPI messages of at most INT_MAX elements,
 * matched in order because MPI does not let messages with the same source, tag and
 * communicator overtake each other). */
#include "comm/comm_internal.h"

/* Posts the parts of one transfer into r. On failure cancels what was posted. */
static mpt_status post_(mpt_comm *c, mpt_comm_op op, void *buf, size_t n, mpt_dtype dt, int peer,
                        int tag, mpt_req *r, mpt_error *err) {
    int parts = 0;
    MPI_Datatype type;
    size_t elem = 0;
    mpt_status st = mpt_comm_type(c, op, dt, 0, &type, &elem, err);
    mpt_comm_req_start(r, c, op, peer, dt, (double)n * (double)elem);
    if (st == MPT_OK) st = mpt_comm_parts(c, op, n, &parts, err);
    if (st != MPT_OK) return st;
    size_t m = mpt_comm_max_count(), off = 0;
    for (int i = 0; i < parts; i++) {
        int k = (int)(n - off < m ? n - off : m);
        char *at = (char *)buf + off * elem;
        int rc = op == MPT_OP_SEND ? MPI_Isend(at, k, type, peer, tag, c->comm, &r->req[i])
                                   : MPI_Irecv(at, k, type, peer, tag, c->comm, &r->req[i]);
        if (rc != MPI_SUCCESS) {
            for (int j = 0; j < i; j++) {
                MPI_Cancel(&r->req[j]);
                MPI_Request_free(&r->req[j]);
            }
            r->n = 0;
            return mpt_comm_mpi_fail(err, c, op, peer, op == MPT_OP_SEND ? "MPI_Isend" : "MPI_Irecv",
                                     rc);
        }
        r->n = i + 1;
        off += (size_t)k;
    }
    return MPT_OK;
}

/* The sender calls; buf must stay unchanged until the request completes. */
mpt_status mpt_isend_dt(mpt_comm *c, const void *buf, size_t n, mpt_dtype dt, int peer, int tag,
                        mpt_req *r, mpt_error *err) {
    /* MPI_Isend takes a const buffer; the cast only shares post_ with the receive. */
    return post_(c, MPT_OP_SEND, (void *)buf, n, dt, peer, tag, r, err);
}

/* The receiver calls; buf must stay untouched until the request completes. The request fails
 * when the peer sent fewer than n elements (more gives MPI's truncation error). */
mpt_status mpt_irecv_dt(mpt_comm *c, void *buf, size_t n, mpt_dtype dt, int peer, int tag,
                        mpt_req *r, mpt_error *err) {
    return post_(c, MPT_OP_RECV, buf, n, dt, peer, tag, r, err);
}

mpt_status mpt_send_dt(mpt_comm *c, const void *buf, size_t n, mpt_dtype dt, int peer, int tag,
                       mpt_error *err) {
    mpt_req r;
    mpt_status st = mpt_isend_dt(c, buf, n, dt, peer, tag, &r, err);
    return st != MPT_OK ? st : mpt_wait(&r, err);
}

mpt_status mpt_recv_dt(mpt_comm *c, void *buf, size_t n, mpt_dtype dt, int peer, int tag,
                       mpt_error *err) {
    mpt_req r;
    mpt_status st = mpt_irecv_dt(c, buf, n, dt, peer, tag, &r, err);
    return st != MPT_OK ? st : mpt_wait(&r, err);
}

/* Sends to dst and receives from src at once (a ring shift when every rank calls it with its
 * neighbours), so no ordering of the calls can deadlock. Counted as one send and one recv. */
mpt_status mpt_sendrecv_dt(mpt_comm *c, const void *send, size_t ns, int dst, void *recv,
                           size_t nr, int src, mpt_dtype dt, int tag, mpt_error *err) {
    mpt_req r[2];
    mpt_status st = mpt_irecv_dt(c, recv, nr, dt, src, tag, &r[0], err);
    if (st != MPT_OK) return st;
    st = mpt_isend_dt(c, send, ns, dt, dst, tag, &r[1], err);
    if (st != MPT_OK) {
        for (int j = 0; j < r[0].n; j++) {
            MPI_Cancel(&r[0].req[j]);
            MPI_Request_free(&r[0].req[j]);
        }
        return st;
    }
    return mpt_waitall(r, 2, err);
}

/* --- float wrappers -------------------------------------------------------------------------- */

mpt_status mpt_isend(mpt_comm *c, const float *buf, size_t n, int peer, int tag, mpt_req *r,
                     mpt_error *err) {
    return mpt_isend_dt(c, buf, n, MPT_F32, peer, tag, r, err);
}

mpt_status mpt_irecv(mpt_comm *c, float *buf, size_t n, int peer, int tag, mpt_req *r,
                     mpt_error *err) {
    return mpt_irecv_dt(c, buf, n, MPT_F32, peer, tag, r, err);
}

mpt_status mpt_send(mpt_comm *c, const float *buf, size_t n, int peer, int tag, mpt_error *err) {
    return mpt_send_dt(c, buf, n, MPT_F32, peer, tag, err);
}

mpt_status mpt_recv(mpt_comm *c, float *buf, size_t n, int peer, int tag, mpt_error *err) {
    return mpt_recv_dt(c, buf, n, MPT_F32, peer, tag, err);
}

mpt_status mpt_sendrecv(mpt_comm *c, const float *send, size_t ns, int dst, float *recv,
                        size_t nr, int src, int tag, mpt_error *err) {
    return mpt_sendrecv_dt(c, send, ns, dst, recv, nr, src, MPT_F32, tag, err);
}
