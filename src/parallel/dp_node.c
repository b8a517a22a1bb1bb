/* dp_node.c — the default gradient bucket of ZeRO 0/1 (dp.h): whether every rank of the job
 * shares one node (one shared-memory domain, MPI_COMM_TYPE_SHARED). On one node the ring
 * all-reduce of the whole gradient runs over shared memory in a few milliseconds, less than
 * what overlapping many small buckets with the backward costs a rank that computes on every
 * core it has (measured: bench/parallel.sh, bench/scale_ab.sh; README, Speed), so the default
 * there is one bucket of the whole gradient, reduced after the backward; across nodes the
 * network is slow enough that overlap pays, and the default stays MPT_DP_BUCKET_MB_NODES. */
#include "parallel/dp.h"

mpt_status mpt_dp_one_node(mpt_comm *world, int *one, mpt_error *err) {
    *one = 1;
    if (!world || world->size <= 1) return MPT_OK;
    MPI_Comm node;
    int node_size = 0;
    if (MPI_Comm_split_type(world->comm, MPI_COMM_TYPE_SHARED, world->rank, MPI_INFO_NULL,
                            &node) != MPI_SUCCESS)
        return mpt_fail(err, MPT_ERR_RUN, "dp: MPI_Comm_split_type (node) failed");
    int rc = MPI_Comm_size(node, &node_size);
    MPI_Comm_free(&node);
    if (rc != MPI_SUCCESS) return mpt_fail(err, MPT_ERR_RUN, "dp: MPI_Comm_size (node) failed");
    /* every rank must take the same answer: a rank that sees fewer than all is on a split job */
    double apart = node_size < world->size;
    mpt_status st = mpt_allreduce_max_f64(world, &apart, 1, err);
    if (!st) *one = apart == 0;
    return st;
}

size_t mpt_dp_bucket_elems(double bucket_mb) {
    if (bucket_mb <= 0) return SIZE_MAX; /* MPT_DP_BUCKET_WHOLE */
    return (size_t)(bucket_mb * 1024 * 1024 / sizeof(float));
}
