/* comm_collective.c — collectives over typed buffers (see comm.h): allreduce (sum, max),
 * reduce-scatter (sum), all-gather, all-to-all-v, broadcast and barrier, each nonblocking with
 * a blocking form that is the nonblocking call plus the watched mpt_wait, and the float (and
 * f64 allreduce) wrappers that keep the older names.
 * Every rank of the communicator calls each collective, in the same order, with the same n
 * and element type.
 *
 * Counts above the per-call limit (INT_MAX elements) split into at most MPT_REQ_MAX_PARTS (8)
 * MPI calls, i.e. up to 8 * INT_MAX elements (64 GiB of floats) per call. Reduce-scatter and
 * all-gather split each rank's block: part j covers elements [off, off + k) of every block,
 * which is strided in the full buffer, so those parts use a datatype of k elements whose extent
 * is the whole block. OpenMPI refuses its built-in MPI_SUM on such a derived type, so the
 * split reduce-scatter sums with a user operation per element type (sum_f32_, ...); unsplit
 * calls use MPI_SUM. */
#include "comm/comm_internal.h"

#include <stdint.h>

/* --- helpers --------------------------------------------------------------------------------- */

/* Elementwise sums over any datatype made of elements of one type (a strided block type
 * included): MPI passes the derived type, whose size says how many elements one item holds. */
#define MPT_SUM_FN_(name, T)                                                                  \
    static void name(void *in, void *inout, int *len, MPI_Datatype *type) {                   \
        int bytes = 0;                                                                        \
        MPI_Aint lb = 0, extent = 0;                                                          \
        MPI_Type_size(*type, &bytes);                                                         \
        MPI_Type_get_extent(*type, &lb, &extent);                                             \
        size_t k = (size_t)bytes / sizeof(T);                                                 \
        for (int e = 0; e < *len; e++) {                                                      \
            const T *a = (const T *)((const char *)in + (MPI_Aint)e * extent);                \
            T *b = (T *)((char *)inout + (MPI_Aint)e * extent);                               \
            for (size_t i = 0; i < k; i++) b[i] += a[i];                                      \
        }                                                                                     \
    }
MPT_SUM_FN_(sum_f32_, float)
MPT_SUM_FN_(sum_f64_, double)
MPT_SUM_FN_(sum_i32_, int32_t)

/* The user-defined sum of dt (not bf16), created on first use and kept until MPI_Finalize. */
static int sum_op_(mpt_dtype dt, MPI_Op *op) {
    static MPI_Op made[MPT_DTYPES];
    static int have[MPT_DTYPES];
    MPI_User_function *fn = dt == MPT_F64 ? sum_f64_ : dt == MPT_I32 ? sum_i32_ : sum_f32_;
    int rc = MPI_SUCCESS;
    if (!have[dt]) rc = MPI_Op_create(fn, 1, &made[dt]);
    if (rc == MPI_SUCCESS) have[dt] = 1;
    *op = made[dt];
    return rc;
}

/* A committed datatype of k contiguous elements of type base (elem bytes each) whose extent
 * is `stride` elements. */
static int block_type_(int k, size_t stride, MPI_Datatype base, size_t elem, MPI_Datatype *out) {
    MPI_Datatype contig;
    int rc = MPI_Type_contiguous(k, base, &contig);
    if (rc != MPI_SUCCESS) return rc;
    rc = MPI_Type_create_resized(contig, 0, (MPI_Aint)(stride * elem), out);
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

mpt_status mpt_iallreduce_dt(mpt_comm *c, void *buf, size_t n, mpt_dtype dt, mpt_reduce_op op,
                             mpt_req *r, mpt_error *err) {
    int parts = 0;
    MPI_Datatype type;
    size_t elem = 0;
    mpt_status st = mpt_comm_type(c, MPT_OP_ALLREDUCE, dt, 1, &type, &elem, err);
    mpt_comm_req_start(r, c, MPT_OP_ALLREDUCE, -1, dt, (double)n * (double)elem);
    if (st == MPT_OK) st = mpt_comm_parts(c, MPT_OP_ALLREDUCE, n, &parts, err);
    MPI_Op mop = op == MPT_RED_MAX ? MPI_MAX : MPI_SUM;
    for (int i = 0; st == MPT_OK && i < parts; i++) {
        size_t off;
        int k;
        part_(n, i, &off, &k);
        int rc = MPI_Iallreduce(MPI_IN_PLACE, (char *)buf + off * elem, k, type, mop, c->comm,
                                &r->req[i]);
        if (rc != MPI_SUCCESS) return mpt_comm_mpi_fail(err, c, MPT_OP_ALLREDUCE, -1, "MPI_Iallreduce", rc);
        r->n = i + 1;
    }
    return st;
}

mpt_status mpt_allreduce_dt(mpt_comm *c, void *buf, size_t n, mpt_dtype dt, mpt_reduce_op op,
                            mpt_error *err) {
    mpt_req r;
    mpt_status st = mpt_iallreduce_dt(c, buf, n, dt, op, &r, err);
    return st != MPT_OK ? st : mpt_wait(&r, err);
}

mpt_status mpt_iallreduce_sum(mpt_comm *c, float *buf, size_t n, mpt_req *r, mpt_error *err) {
    return mpt_iallreduce_dt(c, buf, n, MPT_F32, MPT_RED_SUM, r, err);
}

mpt_status mpt_allreduce_sum(mpt_comm *c, float *buf, size_t n, mpt_error *err) {
    return mpt_allreduce_dt(c, buf, n, MPT_F32, MPT_RED_SUM, err);
}

mpt_status mpt_allreduce_sum_f64(mpt_comm *c, double *buf, size_t n, mpt_error *err) {
    return mpt_allreduce_dt(c, buf, n, MPT_F64, MPT_RED_SUM, err);
}

mpt_status mpt_allreduce_max_f64(mpt_comm *c, double *buf, size_t n, mpt_error *err) {
    return mpt_allreduce_dt(c, buf, n, MPT_F64, MPT_RED_MAX, err);
}

mpt_status mpt_allreduce_max(mpt_comm *c, float *buf, size_t n, mpt_error *err) {
    return mpt_allreduce_dt(c, buf, n, MPT_F32, MPT_RED_MAX, err);
}

/* --- reduce-scatter -------------------------------------------------------------------------- */

mpt_status mpt_ireduce_scatter_dt(mpt_comm *c, const void *send, void *recv, size_t n,
                                  mpt_dtype dt, mpt_req *r, mpt_error *err) {
    int parts = 0;
    MPI_Datatype type;
    size_t elem = 0;
    double total = (double)n * (double)c->size;
    mpt_status st = mpt_comm_type(c, MPT_OP_REDUCE_SCATTER, dt, 1, &type, &elem, err);
    mpt_comm_req_start(r, c, MPT_OP_REDUCE_SCATTER, -1, dt, total * (double)elem);
    if (st == MPT_OK) st = mpt_comm_parts(c, MPT_OP_REDUCE_SCATTER, n, &parts, err);
    if (st != MPT_OK) return st;
    if (send && overlap_(send, (size_t)total * elem, recv, n * elem))
        return mpt_fail(err, MPT_ERR_RUN, "rank %d: reduce_scatter on group %s: send and recv "
                        "buffers overlap (pass send NULL to reduce in place)",
                        mpt_comm_world_rank(), c->name);
    if (parts == 1) {
        const void *from = send ? send : MPI_IN_PLACE;
        int rc = MPI_Ireduce_scatter_block(from, recv, (int)n, type, MPI_SUM, c->comm, &r->req[0]);
        if (rc != MPI_SUCCESS)
            return mpt_comm_mpi_fail(err, c, MPT_OP_REDUCE_SCATTER, -1, "MPI_Ireduce_scatter_block", rc);
        r->n = 1;
        return MPT_OK;
    }
    MPI_Op op;
    int rc = sum_op_(dt, &op);
    if (rc != MPI_SUCCESS) return mpt_comm_mpi_fail(err, c, MPT_OP_REDUCE_SCATTER, -1, "MPI_Op_create", rc);
    for (int i = 0; i < parts; i++) {
        size_t off;
        int k;
        MPI_Datatype block;
        part_(n, i, &off, &k);
        rc = block_type_(k, n, type, elem, &block);
        if (rc != MPI_SUCCESS) return mpt_comm_mpi_fail(err, c, MPT_OP_REDUCE_SCATTER, -1, "MPI_Type_create_resized", rc);
        /* Rank q's part starts at send + off + q * n (one block extent); ours lands at recv + off.
         * In place the parts are read from recv the same way; each part writes only its own
         * elements [off, off + k) of block 0, which no other part reads. */
        const void *from = send ? (const void *)((const char *)send + off * elem) : MPI_IN_PLACE;
        rc = MPI_Ireduce_scatter_block(from, (char *)recv + off * elem, 1, block, op, c->comm,
                                       &r->req[i]);
        MPI_Type_free(&block); /* pending operations keep the type alive */
        if (rc != MPI_SUCCESS)
            return mpt_comm_mpi_fail(err, c, MPT_OP_REDUCE_SCATTER, -1, "MPI_Ireduce_scatter_block", rc);
        r->n = i + 1;
    }
    return MPT_OK;
}

mpt_status mpt_reduce_scatter_dt(mpt_comm *c, const void *send, void *recv, size_t n,
                                 mpt_dtype dt, mpt_error *err) {
    mpt_req r;
    mpt_status st = mpt_ireduce_scatter_dt(c, send, recv, n, dt, &r, err);
    return st != MPT_OK ? st : mpt_wait(&r, err);
}

mpt_status mpt_ireduce_scatter_sum(mpt_comm *c, const float *send, float *recv, size_t n,
                                   mpt_req *r, mpt_error *err) {
    return mpt_ireduce_scatter_dt(c, send, recv, n, MPT_F32, r, err);
}

mpt_status mpt_reduce_scatter_sum(mpt_comm *c, const float *send, float *recv, size_t n,
                                  mpt_error *err) {
    return mpt_reduce_scatter_dt(c, send, recv, n, MPT_F32, err);
}

/* --- all-gather ------------------------------------------------------------------------------ */

mpt_status mpt_iallgather_dt(mpt_comm *c, const void *send, void *recv, size_t n, mpt_dtype dt,
                             mpt_req *r, mpt_error *err) {
    int parts = 0;
    MPI_Datatype type;
    size_t elem = 0;
    mpt_status st = mpt_comm_type(c, MPT_OP_ALLGATHER, dt, 0, &type, &elem, err);
    mpt_comm_req_start(r, c, MPT_OP_ALLGATHER, -1, dt, (double)n * (double)elem);
    if (st == MPT_OK) st = mpt_comm_parts(c, MPT_OP_ALLGATHER, n, &parts, err);
    if (st != MPT_OK) return st;
    const char *mine = (const char *)recv + (size_t)c->rank * n * elem;
    int in_place = (const char *)send == mine;
    if (!in_place && overlap_(send, n * elem, recv, n * (size_t)c->size * elem))
        return mpt_fail(err, MPT_ERR_RUN, "rank %d: allgather on group %s: send overlaps recv "
                        "without being this rank's block of it (recv + rank * n)",
                        mpt_comm_world_rank(), c->name);
    for (int i = 0; i < parts; i++) {
        size_t off;
        int k, rc;
        part_(n, i, &off, &k);
        const void *from = in_place ? MPI_IN_PLACE : (const void *)((const char *)send + off * elem);
        if (parts == 1) {
            rc = MPI_Iallgather(from, k, type, recv, k, type, c->comm, &r->req[0]);
        } else {
            MPI_Datatype block;
            rc = block_type_(k, n, type, elem, &block);
            if (rc != MPI_SUCCESS) return mpt_comm_mpi_fail(err, c, MPT_OP_ALLGATHER, -1, "MPI_Type_create_resized", rc);
            /* Rank q's part lands at recv + off + q * n (one block extent). */
            rc = MPI_Iallgather(from, k, type, (char *)recv + off * elem, 1, block, c->comm,
                                &r->req[i]);
            MPI_Type_free(&block);
        }
        if (rc != MPI_SUCCESS) return mpt_comm_mpi_fail(err, c, MPT_OP_ALLGATHER, -1, "MPI_Iallgather", rc);
        r->n = i + 1;
    }
    return MPT_OK;
}

mpt_status mpt_allgather_dt(mpt_comm *c, const void *send, void *recv, size_t n, mpt_dtype dt,
                            mpt_error *err) {
    mpt_req r;
    mpt_status st = mpt_iallgather_dt(c, send, recv, n, dt, &r, err);
    return st != MPT_OK ? st : mpt_wait(&r, err);
}

mpt_status mpt_iallgather(mpt_comm *c, const float *send, float *recv, size_t n, mpt_req *r,
                          mpt_error *err) {
    return mpt_iallgather_dt(c, send, recv, n, MPT_F32, r, err);
}

mpt_status mpt_allgather(mpt_comm *c, const float *send, float *recv, size_t n, mpt_error *err) {
    return mpt_allgather_dt(c, send, recv, n, MPT_F32, err);
}

/* --- all-to-all-v, broadcast, barrier -------------------------------------------------------- */

mpt_status mpt_ialltoallv_dt(mpt_comm *c, const void *send, const int *send_counts,
                             const int *send_displs, void *recv, const int *recv_counts,
                             const int *recv_displs, mpt_dtype dt, mpt_req *r, mpt_error *err) {
    MPI_Datatype type;
    size_t elem = 0;
    double total = 0;
    for (int q = 0; q < c->size; q++) total += send_counts[q] > 0 ? send_counts[q] : 0;
    mpt_status st = mpt_comm_type(c, MPT_OP_ALLTOALL, dt, 0, &type, &elem, err);
    mpt_comm_req_start(r, c, MPT_OP_ALLTOALL, -1, dt, total * (double)elem);
    if (st != MPT_OK) return st;
    int rc = MPI_Ialltoallv(send, send_counts, send_displs, type, recv, recv_counts, recv_displs,
                            type, c->comm, &r->req[0]);
    if (rc != MPI_SUCCESS) return mpt_comm_mpi_fail(err, c, MPT_OP_ALLTOALL, -1, "MPI_Ialltoallv", rc);
    r->n = 1;
    return MPT_OK;
}

mpt_status mpt_alltoallv_dt(mpt_comm *c, const void *send, const int *send_counts,
                            const int *send_displs, void *recv, const int *recv_counts,
                            const int *recv_displs, mpt_dtype dt, mpt_error *err) {
    mpt_req r;
    mpt_status st = mpt_ialltoallv_dt(c, send, send_counts, send_displs, recv, recv_counts,
                                      recv_displs, dt, &r, err);
    return st != MPT_OK ? st : mpt_wait(&r, err);
}

mpt_status mpt_ialltoallv(mpt_comm *c, const float *send, const int *send_counts,
                          const int *send_displs, float *recv, const int *recv_counts,
                          const int *recv_displs, mpt_req *r, mpt_error *err) {
    return mpt_ialltoallv_dt(c, send, send_counts, send_displs, recv, recv_counts, recv_displs,
                             MPT_F32, r, err);
}

mpt_status mpt_alltoallv(mpt_comm *c, const float *send, const int *send_counts,
                         const int *send_displs, float *recv, const int *recv_counts,
                         const int *recv_displs, mpt_error *err) {
    return mpt_alltoallv_dt(c, send, send_counts, send_displs, recv, recv_counts, recv_displs,
                            MPT_F32, err);
}

mpt_status mpt_ibcast(mpt_comm *c, void *buf, size_t bytes, int root, mpt_req *r, mpt_error *err) {
    int parts = 0;
    mpt_comm_req_start(r, c, MPT_OP_BCAST, -1, MPT_DTYPES, (double)bytes);
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
    mpt_comm_req_start(&r, c, MPT_OP_BARRIER, -1, MPT_DTYPES, 0.0);
    int rc = MPI_Ibarrier(c->comm, &r.req[0]);
    if (rc != MPI_SUCCESS) return mpt_comm_mpi_fail(err, c, MPT_OP_BARRIER, -1, "MPI_Ibarrier", rc);
    r.n = 1;
    return mpt_wait(&r, err);
}
