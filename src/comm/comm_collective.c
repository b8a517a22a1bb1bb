/* comm_collective.c — collectives (see comm.h): allreduce (f32 sum, f64 sum and max),
 * reduce-scatter, all-gather, all-to-all-v, broadcast and barrier, each nonblocking with a
 * blocking form that is the nonblocking call plus the watched mpt_wait.
 * Every rank of the communicator calls each collective, in the same order, with the same n.
 *
 * Counts above the per-call limit (INT_MAX elements) split into at most MPT_REQ_MAX_PARTS (8)
 * MPI calls, i.e. up to 8 * INT_MAX elements (64 GiB of floats) per call. Reduce-scatter and
 * all-gather split each rank's block: part j covers elements [off, off + k) of every block,
 * which is strided in the full buffer, so those parts use a datatype of k floats whose extent
 * is the whole block. OpenMPI refuses its built-in MPI_SUM on such a derived type, so the
 * split reduce-scatter sums with a user operation (sum_f32_); unsplit calls use MPI_SUM. */
#include "comm/comm_internal.h"

#include <stdint.h>

/* --- helpers --------------------------------------------------------------------------------- */

/* Elementwise float sum over any datatype made of floats (a strided block type included). */
static void sum_f32_(void *in, void *inout, int *len, MPI_Datatype *type) {
    int bytes = 0;
    MPI_Aint lb = 0, extent = 0;
    MPI_Type_size(*type, &bytes);
    MPI_Type_get_extent(*type, &lb, &extent);
    size_t k = (size_t)bytes / sizeof(float);
    for (int e = 0; e < *len; e++) {
        const float *a = (const float *)((const char *)in + (MPI_Aint)e * extent);
        float *b = (float *)((char *)inout + (MPI_Aint)e * extent);
        for (size_t i = 0; i < k; i++) b[i] += a[i];
    }
}

/* The user-defined sum, created on first use and kept until MPI_Finalize. */
static int sum_op_(MPI_Op *op) {
    static MPI_Op made = MPI_OP_NULL;
    int rc = MPI_SUCCESS;
    if (made == MPI_OP_NULL) rc = MPI_Op_create(sum_f32_, 1, &made);
    *op = made;
    return rc;
}

/* A committed datatype of k contiguous floats whose extent is `stride` floats. */
static int block_type_(int k, size_t stride, MPI_Datatype *out) {
    MPI_Datatype contig;
    int rc = MPI_Type_contiguous(k, MPI_FLOAT, &contig);
    if (rc != MPI_SUCCESS) return rc;
    rc = MPI_Type_create_resized(contig, 0, (MPI_Aint)(stride * sizeof(float)), out);
    MPI_Type_free(&contig);
    if (rc == MPI_SUCCESS) rc = MPI_Type_commit(out);
    return rc;
}

/* Part i of n elements split into parts of at most the per-call limit: offset and length. */
static void part_(size_t n, int i, size_t *off, int *k) {
    size_t m = mpt_comm_max_count();
    *off = (size_t)i * m;
    *k = (int)(n - *off < m ? n - *off : m);
}

/* 1 when [a, a + na) and [b, b + nb) (bytes) share memory. */
static int overlap_(const void *a, size_t na, const void *b, size_t nb) {
    uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
    return na && nb && x < y + nb && y < x + na;
}

/* --- allreduce ------------------------------------------------------------------------------- */

static mpt_status iallreduce_(mpt_comm *c, void *buf, size_t n, MPI_Datatype type, size_t elem,
                              MPI_Op op, mpt_req *r, mpt_error *err) {
    int parts = 0;
    mpt_comm_req_start(r, c, MPT_OP_ALLREDUCE, -1, (double)n * (double)elem);
    mpt_status st = mpt_comm_parts(c, MPT_OP_ALLREDUCE, n, &parts, err);
    for (int i = 0; st == MPT_OK && i < parts; i++) {
        size_t off;
        int k;
        part_(n, i, &off, &k);
        int rc = MPI_Iallreduce(MPI_IN_PLACE, (char *)buf + off * elem, k, type, op, c->comm,
                                &r->req[i]);
        if (rc != MPI_SUCCESS) return mpt_comm_mpi_fail(err, c, MPT_OP_ALLREDUCE, -1, "MPI_Iallreduce", rc);
        r->n = i + 1;
    }
    return st;
}

mpt_status mpt_iallreduce_sum(mpt_comm *c, float *buf, size_t n, mpt_req *r, mpt_error *err) {
    return iallreduce_(c, buf, n, MPI_FLOAT, sizeof(float), MPI_SUM, r, err);
}

mpt_status mpt_allreduce_sum(mpt_comm *c, float *buf, size_t n, mpt_error *err) {
    mpt_req r;
    mpt_status st = mpt_iallreduce_sum(c, buf, n, &r, err);
    return st != MPT_OK ? st : mpt_wait(&r, err);
}

mpt_status mpt_allreduce_sum_f64(mpt_comm *c, double *buf, size_t n, mpt_error *err) {
    mpt_req r;
    mpt_status st = iallreduce_(c, buf, n, MPI_DOUBLE, sizeof(double), MPI_SUM, &r, err);
    return st != MPT_OK ? st : mpt_wait(&r, err);
}

mpt_status mpt_allreduce_max_f64(mpt_comm *c, double *buf, size_t n, mpt_error *err) {
    mpt_req r;
    mpt_status st = iallreduce_(c, buf, n, MPI_DOUBLE, sizeof(double), MPI_MAX, &r, err);
    return st != MPT_OK ? st : mpt_wait(&r, err);
}

mpt_status mpt_allreduce_max(mpt_comm *c, float *buf, size_t n, mpt_error *err) {
    mpt_req r;
    mpt_status st = iallreduce_(c, buf, n, MPI_FLOAT, sizeof(float), MPI_MAX, &r, err);
    return st != MPT_OK ? st : mpt_wait(&r, err);
}

/* --- reduce-scatter -------------------------------------------------------------------------- */

mpt_status mpt_ireduce_scatter_sum(mpt_comm *c, const float *send, float *recv, size_t n,
                                   mpt_req *r, mpt_error *err) {
    int parts = 0;
    double total = (double)n * (double)c->size;
    mpt_comm_req_start(r, c, MPT_OP_REDUCE_SCATTER, -1, total * (double)sizeof(float));
    mpt_status st = mpt_comm_parts(c, MPT_OP_REDUCE_SCATTER, n, &parts, err);
    if (st != MPT_OK) return st;
    if (send && overlap_(send, (size_t)total * sizeof(float), recv, n * sizeof(float)))
        return mpt_fail(err, MPT_ERR_RUN, "rank %d: reduce_scatter on group %s: send and recv "
                        "buffers overlap (pass send NULL to reduce in place)",
                        mpt_comm_world_rank(), c->name);
    if (parts == 1) {
        const void *from = send ? (const void *)send : MPI_IN_PLACE;
        int rc = MPI_Ireduce_scatter_block(from, recv, (int)n, MPI_FLOAT, MPI_SUM, c->comm, &r->req[0]);
        if (rc != MPI_SUCCESS)
            return mpt_comm_mpi_fail(err, c, MPT_OP_REDUCE_SCATTER, -1, "MPI_Ireduce_scatter_block", rc);
        r->n = 1;
        return MPT_OK;
    }
    MPI_Op op;
    int rc = sum_op_(&op);
    if (rc != MPI_SUCCESS) return mpt_comm_mpi_fail(err, c, MPT_OP_REDUCE_SCATTER, -1, "MPI_Op_create", rc);
    for (int i = 0; i < parts; i++) {
        size_t off;
        int k;
        MPI_Datatype block;
        part_(n, i, &off, &k);
        rc = block_type_(k, n, &block);
        if (rc != MPI_SUCCESS) return mpt_comm_mpi_fail(err, c, MPT_OP_REDUCE_SCATTER, -1, "MPI_Type_create_resized", rc);
        /* Rank q's part starts at send + off + q * n (one block extent); ours lands at recv + off.
         * In place the parts are read from recv the same way; each part writes only its own
         * elements [off, off + k) of block 0, which no other part reads. */
        const void *from = send ? (const void *)(send + off) : MPI_IN_PLACE;
        rc = MPI_Ireduce_scatter_block(from, recv + off, 1, block, op, c->comm, &r->req[i]);
        MPI_Type_free(&block); /* pending operations keep the type alive */
        if (rc != MPI_SUCCESS)
            return mpt_comm_mpi_fail(err, c, MPT_OP_REDUCE_SCATTER, -1, "MPI_Ireduce_scatter_block", rc);
        r->n = i + 1;
    }
    return MPT_OK;
}

mpt_status mpt_reduce_scatter_sum(mpt_comm *c, const float *send, float *recv, size_t n,
                                  mpt_error *err) {
    mpt_req r;
    mpt_status st = mpt_ireduce_scatter_sum(c, send, recv, n, &r, err);
    return st != MPT_OK ? st : mpt_wait(&r, err);
}

/* --- all-gather ------------------------------------------------------------------------------ */

mpt_status mpt_iallgather(mpt_comm *c, const float *send, float *recv, size_t n, mpt_req *r,
                          mpt_error *err) {
    int parts = 0;
    mpt_comm_req_start(r, c, MPT_OP_ALLGATHER, -1, (double)n * (double)sizeof(float));
    mpt_status st = mpt_comm_parts(c, MPT_OP_ALLGATHER, n, &parts, err);
    if (st != MPT_OK) return st;
    float *mine = recv + (size_t)c->rank * n;
    int in_place = send == mine;
    if (!in_place && overlap_(send, n * sizeof(float), recv, n * (size_t)c->size * sizeof(float)))
        return mpt_fail(err, MPT_ERR_RUN, "rank %d: allgather on group %s: send overlaps recv "
                        "without being this rank's block of it (recv + rank * n)",
                        mpt_comm_world_rank(), c->name);
    for (int i = 0; i < parts; i++) {
        size_t off;
        int k, rc;
        part_(n, i, &off, &k);
        const void *from = in_place ? MPI_IN_PLACE : (const void *)(send + off);
        if (parts == 1) {
            rc = MPI_Iallgather(from, k, MPI_FLOAT, recv, k, MPI_FLOAT, c->comm, &r->req[0]);
        } else {
            MPI_Datatype block;
            rc = block_type_(k, n, &block);
            if (rc != MPI_SUCCESS) return mpt_comm_mpi_fail(err, c, MPT_OP_ALLGATHER, -1, "MPI_Type_create_resized", rc);
            /* Rank q's part lands at recv + off + q * n (one block extent). */
            rc = MPI_Iallgather(from, k, MPI_FLOAT, recv + off, 1, block, c->comm, &r->req[i]);
            MPI_Type_free(&block);
        }
        if (rc != MPI_SUCCESS) return mpt_comm_mpi_fail(err, c, MPT_OP_ALLGATHER, -1, "MPI_Iallgather", rc);
        r->n = i + 1;
    }
    return MPT_OK;
}

mpt_status mpt_allgather(mpt_comm *c, const float *send, float *recv, size_t n, mpt_error *err) {
    mpt_req r;
    mpt_status st = mpt_iallgather(c, send, recv, n, &r, err);
    return st != MPT_OK ? st : mpt_wait(&r, err);
}

/* --- all-to-all-v, broadcast, barrier -------------------------------------------------------- */

mpt_status mpt_ialltoallv(mpt_comm *c, const float *send, const int *send_counts,
                          const int *send_displs, float *recv, const int *recv_counts,
                          const int *recv_displs, mpt_req *r, mpt_error *err) {
    double total = 0;
    for (int q = 0; q < c->size; q++) total += send_counts[q] > 0 ? send_counts[q] : 0;
    mpt_comm_req_start(r, c, MPT_OP_ALLTOALL, -1, total * (double)sizeof(float));
    int rc = MPI_Ialltoallv(send, send_counts, send_displs, MPI_FLOAT, recv, recv_counts,
                            recv_displs, MPI_FLOAT, c->comm, &r->req[0]);
    if (rc != MPI_SUCCESS) return mpt_comm_mpi_fail(err, c, MPT_OP_ALLTOALL, -1, "MPI_Ialltoallv", rc);
    r->n = 1;
    return MPT_OK;
}

mpt_status mpt_alltoallv(mpt_comm *c, const float *send, const int *send_counts,
                         const int *send_displs, float *recv, const int *recv_counts,
                         const int *recv_displs, mpt_error *err) {
    mpt_req r;
    mpt_status st = mpt_ialltoallv(c, send, send_counts, send_displs, recv, recv_counts,
                                   recv_displs, &r, err);
    return st != MPT_OK ? st : mpt_wait(&r, err);
}

mpt_status mpt_ibcast(mpt_comm *c, void *buf, size_t bytes, int root, mpt_req *r, mpt_error *err) {
    int parts = 0;
    mpt_comm_req_start(r, c, MPT_OP_BCAST, -1, (double)bytes);
    mpt_status st = mpt_comm_parts(c, MPT_OP_BCAST, bytes, &parts, err);
    for (int i = 0; st == MPT_OK && i < parts; i++) {
        size_t off;
        int k;
        part_(bytes, i, &off, &k);
        int rc = MPI_Ibcast((char *)buf + off, k, MPI_BYTE, root, c->comm, &r->req[i]);
        if (rc != MPI_SUCCESS) return mpt_comm_mpi_fail(err, c, MPT_OP_BCAST, -1, "MPI_Ibcast", rc);
        r->n = i + 1;
    }
    return st;
}

mpt_status mpt_bcast(mpt_comm *c, void *buf, size_t bytes, int root, mpt_error *err) {
    mpt_req r;
    mpt_status st = mpt_ibcast(c, buf, bytes, root, &r, err);
    return st != MPT_OK ? st : mpt_wait(&r, err);
}

mpt_status mpt_barrier(mpt_comm *c, mpt_error *err) {
    mpt_req r;
    mpt_comm_req_start(&r, c, MPT_OP_BARRIER, -1, 0.0);
    int rc = MPI_Ibarrier(c->comm, &r.req[0]);
    if (rc != MPI_SUCCESS) return mpt_comm_mpi_fail(err, c, MPT_OP_BARRIER, -1, "MPI_Ibarrier", rc);
    r.n = 1;
    return mpt_wait(&r, err);
}
