/* search.h — layout search: every layout of a job on N GPUs that the runtime can run, dropped
 * when its largest rank does not fit the memory per GPU, ranked by simulated throughput.
 *
 * Enumerated: tp (dividing heads and ffn, within a node), cp (powers of two the sequence
 * splits into, each rank keeping at least 256 tokens), pp (<= layers), dp = N / (tp cp pp) (dividing the batch), sequence parallelism
 * when tp > 1, ZeRO 0..3, micro-batch sizes 1, 2, 4, 8 (m = batch / dp / size), schedules
 * (pp > 1) 1f1b, gpipe, interleaved with 2 and 4 chunks per rank, zb-h1 and zb-v, recompute
 * none, selective, full, and for an MoE model ep (dividing the experts, inside dp x cp as
 * parallel/mesh.h places it; no sp with experts); what the trainer refuses (mpt_plan_check)
 * is skipped. Each
 * candidate's memory is the runtime's plan (plan.h), evaluated first; only the ones that fit
 * are simulated (sim.h). Pure. */
#ifndef MPT_SEARCH_H
#define MPT_SEARCH_H

#include "plan/cluster.h"
#include "plan/plan.h"
#include "plan/sim.h"

typedef struct mpt_plan_candidate {
    mpt_plan_layout l;
    mpt_mem_plan mem;       /* largest rank */
    double step_time, tflops_per_gpu, mfu, bubble, tokens_per_s;
} mpt_plan_candidate;

typedef struct mpt_search_stats {
    long tried;             /* layouts enumerated and valid */
    long fit;               /* of which fit the memory */
} mpt_search_stats;

/* The best min(max_out, fitting) candidates in out[], best first; *n_out how many. gpus: the
 * world size; mem_limit: bytes per GPU (0: the cluster's). No candidate fitting is not an
 * error (*n_out = 0). */
mpt_status mpt_plan_search(const mpt_plan_job *job, const mpt_cluster *c, int gpus,
                           size_t mem_limit, mpt_plan_candidate *out, int max_out, int *n_out,
                           mpt_search_stats *stats, mpt_error *err);

#endif
