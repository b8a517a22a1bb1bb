/* cluster.h — the machines a job is planned for: compute, memory and link parameters, from
 * datasheets (presets), a JSON file, or microbenchmarks of the machine the planner runs on.
 *
 * Every number is physical and documented; none is fitted to a measured step time:
 *   peak          datasheet dense FLOP/s of one GPU (rank) for the precision
 *   gemm_eff      the fraction of peak a large, well-shaped GEMM sustains. The GEMM
 *                 efficiency curve is a roofline: t = max(flops / (peak*gemm_eff),
 *                 bytes / (mem_bw*mem_eff)) + launch, so small or thin GEMMs (attention heads,
 *                 short rows) fall below the plateau by themselves
 *   mem_bw        datasheet memory bandwidth; mem_eff the fraction a streaming kernel reaches
 *   launch        fixed cost of one kernel (launch + tail)
 *   links         intra-node (NVLink; shared memory on a CPU) and inter-node (one NIC per GPU):
 *                 bandwidth per direction per GPU, its achievable fraction, and latency per
 *                 message step. Collectives: ring or tree, whichever is faster (cost.h).
 * Presets:
 *   a100-80g   A100 SXM4 80GB: 312 TFLOP/s bf16 dense, 19.5 fp32; HBM2e 2039 GB/s; NVLink3
 *              600 GB/s total (300 per direction); 8 GPUs per node; 8 x 200 Gb/s HDR InfiniBand
 *              (one 25 GB/s NIC per GPU)
 *   h100-80g   H100 SXM5 80GB: 989 TFLOP/s bf16 dense, 67 fp32; HBM3 3350 GB/s; NVLink4 900 GB/s
 *              (450 per direction); 8 per node; 8 x 400 Gb/s NDR (50 GB/s per GPU)
 *   cpu-here   this machine, every rank on it (one node, shared memory), timed in CPU seconds
 *              (the rates while the code runs, whatever else shares the cores): per core, the FMA peak
 *              (core/peak.h), the rate of a 768^3 sgemm, streaming copy bandwidth, and the
 *              runtime's own fused attention, LayerNorm, GELU, residual and cross-entropy
 *              kernels (plan/calib.c); shared-memory messages as a copy in and a copy out (a
 *              quarter of the copy bandwidth each way; or measured MPI figures
 *              from bench/mpi_pingpong.c given in a cluster JSON). A rank's rates are those of its share
 *              of the cores (mpt_cluster_rank_share): 1 rank x 2 threads on 2 cores computes
 *              at twice one core times par_eff (the measured sgemm scaling over the cores),
 *              2 ranks at one core each. More ranks than cores (the
 *              simulator, sim.c): each computes at one core while it runs and the cores are
 *              time-shared, so the step is at least all ranks' compute over the cores (4 busy
 *              ranks on 2 cores: half speed; a pipeline's idle ranks leave their core to the
 *              others). Measured in about 4 CPU seconds (plan/calib.c: paired, repeated rounds).
 * Efficiencies of the GPU presets: gemm_eff 0.70 — cuBLAS bf16 GEMMs of transformer shapes
 * on A100/H100 run at 65-75% of the dense datasheet peak at the sustained (power-limited) clock;
 * mem_eff 0.80 (STREAM-like kernels on HBM); link_eff 0.80 NVLink (NCCL bus bandwidth ~240 of
 * 300 GB/s), 0.90 InfiniBand; launch 6 us per kernel; latency 5 us (NVLink) and 10 us (IB) per
 * message step. */
#ifndef MPT_CLUSTER_H
#define MPT_CLUSTER_H

#include <stddef.h>

#include "core/status.h"

enum { MPT_GEMM_CURVE = 6 }; /* points of cpu-here's GEMM efficiency curve */

typedef struct mpt_cluster {
    char name[64];
    double peak_fp32, peak_bf16;  /* FLOP/s per rank */
    double gemm_eff;
    double mem_bw, mem_eff;       /* bytes/s per rank */
    double launch;                /* seconds per kernel */
    size_t mem_bytes;             /* per rank */
    int per_node;                 /* ranks per node */
    double intra_bw, intra_eff, intra_lat; /* per direction per rank; s per message step */
    double inter_bw, inter_eff, inter_lat;
    int measured;                 /* cpu-here: calibrated on this machine */
    /* cpu-here only (0 elsewhere: the roofline of gemm_eff and mem_bw applies) */
    int cores;                    /* cores the ranks of the node share: a rank computes on
                                   * min(threads, cores / ranks) of them (ranks > cores
                                   * time-share a core) */
    double attn_f, attn_b;        /* FLOP/s of the fused attention forward / backward on one
                                   * core, the whole T x T products counted (cost.h) */
    double ew_ln_f, ew_ln_b, ew_gelu_f, ew_gelu_b, ew_add, ew_xent; /* seconds per element on
                                   * one core: LayerNorm, GELU, residual add, fused
                                   * cross-entropy (per logit) */
    double par_eff;               /* sgemm on every core / (cores x one core): how far one
                                   * rank's threads scale */
    /* cpu-here only, measured by plan/calib.c (0: not measured, taken as 1 / the flat gemm_eff) */
    double gemm_curve[MPT_GEMM_CURVE]; /* one-core sgemm rate / peak_fp32 of a 768 x K x 768
                                   * product, K = 32, 64, ..., 1024: the GEMM efficiency curve,
                                   * read at a GEMM's smallest dimension (mpt_cluster_gemm_eff) */
    double busy_gemm, busy_attn, busy_ew; /* per-core rate while every core runs its own
                                   * single-threaded copy / the rate of one core alone (shared
                                   * L3, memory bus and clock of a loaded socket) */
    double par_attn, par_ew;      /* attention / element-wise kernels on every core's thread /
                                   * (cores x one core), as par_eff for the GEMM */
    double par_eff_wall, par_attn_wall, par_ew_wall; /* diagnostic, not priced (0: not
                                   * measured): the same team ratios in wall seconds, not clamped
                                   * at 1. par_* count the process's CPU seconds, so a team
                                   * thread asleep at a barrier (past OpenMP's spin) is not
                                   * counted; the step's clock counts it. Idle, wall < CPU
                                   * figure = team time no CPU clock sees (docs/planner_notes.md,
                                   * tenth session); under load wall is other jobs' time too */
    /* cpu-here only, measured by bench/mpi_pingpong.c with real MPI calls between two ranks
     * (0: not measured, intra_bw x intra_eff applies): the link bandwidth (cost.h's formula at
     * n = 2) of the MPI library's nonblocking collectives as the tensor-parallel layers post
     * them (comm/comm_collective.c: MPI_Iallreduce; with sp MPI_Ireduce_scatter_block and
     * MPI_Iallgather). The runtime's own rings (dp, cp) and the pipeline's messages are
     * Isend/Irecv pairs: intra_bw and intra_lat, which the same program measures. */
    double mpi_allreduce_bw, mpi_reduce_scatter_bw, mpi_allgather_bw;
    /* cpu-here only, measured by plan/calib_moe.c on the runtime's own MoE MLP (0: not
     * measured, cost_moe.c prices the experts as dense GEMMs and moe.c's copies at mem_bw):
     * the experts' FLOP/s on one core in the forward, the input-gradient (B) and the weight-
     * gradient (W) parts at about 256 rows per expert; seconds per sent row element of moe.c's
     * own single-threaded code, forward and backward; the experts' team scaling on every core
     * (as par_eff, at their small GEMMs' size) */
    double moe_rate_f, moe_rate_b, moe_rate_w, moe_row_f, moe_row_b, par_moe;
    /* cpu-here only, plan/calib_moe.c: moe.c's own code (the part moe_row_* price) on every
     * core's thread / (cores x one core), its OpenMP loops as one rank of all the cores runs
     * them (0: not measured, the code priced at one core whatever the rank's threads) */
    double par_moe_row;
    /* cpu-here only, plan/calib_poll.c: the share of a core a rank waiting for a message
     * (OpenMPI oversubscribed: polling with sched_yield) takes from a rank computing on the
     * same core (0: not measured, a waiting rank leaves its core wholly to the others) */
    double poll_share;
    /* cpu-here only, measured by bench/mpi_pingpong.c (0: not measured, intra_bw x intra_eff
     * applies): MPI_Ialltoallv as parallel/ep.c posts it, the link bandwidth of cost_moe.h's
     * all-to-all formula at n = 2 */
    double mpi_alltoall_bw;
    /* cpu-here only, plan/calib_meet.c: core seconds lost per rank and blocking pair meeting
     * (a tp collective, waited in comm_wait.c's naps) when the node runs twice as many ranks
     * as cores, after MPT_MEET_G1 / MPT_MEET_G8 seconds of work between meetings; wall-time
     * based, an idle machine's figure (0: not measured, nothing added) */
    double meet_waste[2];
} mpt_cluster;
enum { MPT_MEET_POINTS = 2 };
#define MPT_MEET_G1 1e-3
#define MPT_MEET_G8 8e-3
/* The shape calib_moe.c measures the MoE figures at: rows per expert, d_model, expert width;
 * and the side of the square sgemm the dense rate (gemm_eff, par_eff) is measured on. */
enum { MPT_MOE_CAL_ROWS = 256, MPT_MOE_CAL_D = 256, MPT_MOE_CAL_F = 512, MPT_MOE_CAL_BIG = 768 };

/* The GEMM efficiency for an (m x k) times (k x n) product: the measured curve at its smallest
 * dimension (linear in log2 between the points; proportional below the first), else gemm_eff. */
double mpt_cluster_gemm_eff(const mpt_cluster *c, double m, double n, double k);
/* The calibration fields above by name (JSON files, `--json`'s cluster_params, train_suggest's
 * broadcast): fills up to max names and pointers into c, returns how many there are. */
size_t mpt_cluster_calib_fields(mpt_cluster *c, const char **names, double **ptrs, size_t max);

/* "a100-80g", "h100-80g", "cpu-here" (runs the microbenchmarks), or a JSON file with the fields
 * of mpt_cluster (names as above; missing fields keep a100-80g's values). */
mpt_status mpt_cluster_load(mpt_cluster *c, const char *name, mpt_error *err);
/* The calibration of cpu-here (about 4 CPU seconds). */
void mpt_cluster_measure_here(mpt_cluster *c);
/* CPU seconds of this process (cpu-here times its microbenchmarks in them). */
double mpt_cluster_cpu_seconds(void);
/* The median of n > 0 times (sorts t): how cpu-here summarises repeated runs. */
double mpt_cluster_median_(double *t, int n);
/* cpu-here's kernel figures (attn_*, ew_*): the runtime's kernels timed on one core
 * (plan/calib.c, about 0.3 s). */
void mpt_cluster_measure_kernels(mpt_cluster *c);
/* cpu-here's MoE figures (moe_*, par_moe; plan/calib_moe.c, about 0.3 CPU seconds). */
void mpt_cluster_measure_moe(mpt_cluster *c);
/* The MoE calibration's sizes and repetitions (mpt_moe_calib_defaults: what
 * mpt_cluster_measure_moe runs). Counts outside [1, the default], rows and sample_s <= 0 take
 * the default; figures measured at other rows than MPT_MOE_CAL_ROWS are not at the shape cost_moe.c prices
 * from (checking builds' tests run the same calls smaller: tests/test_plan_moe.c). */
typedef struct mpt_moe_calib_opts {
    int rows;        /* rows per expert (MPT_MOE_CAL_ROWS; at most 2^20); the block routes
                      * rows x E / K tokens */
    int samples;     /* one-thread samples of each experts' part, their median taken (5) */
    int own_rounds;  /* rounds of the whole passes against their kernels (moe_row_*) (11) */
    int par_rounds;  /* rounds of the team / one-thread pairs (par_moe) (3) */
    double sample_s; /* thread CPU seconds a one-thread sample lasts at least (0.008) */
} mpt_moe_calib_opts;
void mpt_moe_calib_defaults(mpt_moe_calib_opts *o);
/* mpt_cluster_measure_moe with o's sizes (NULL: the defaults). */
void mpt_cluster_measure_moe_opts(mpt_cluster *c, const mpt_moe_calib_opts *o);
/* cpu-here's poll_share (plan/calib_poll.c, about 0.4 s). */
void mpt_cluster_measure_poll(mpt_cluster *c);
/* cpu-here's meet_waste (plan/calib_meet.c, about 0.5 CPU seconds on 2 cores). */
void mpt_cluster_measure_meet(mpt_cluster *c);
/* n iterations of two dependent 8-wide FMA chains kept in registers (about 4n cycles of one
 * core, no memory traffic): the work calib_meet.c puts between meetings, and bench/oversub_meet.c
 * too. Local to the calling thread. */
void mpt_cluster_fma_work(long n);
/* The core seconds lost per rank to one blocking pair meeting after g seconds of work (one core's)
 * since the last: meet_waste linear in log g between the measured points, constant beyond
 * them; 0 when not measured. Applies only to ranks beyond the cores (sim.c). */
double mpt_cluster_meet_waste(const mpt_cluster *c, double g);
/* The cluster as one rank of a layout of `world` ranks with `threads` compute threads each
 * (0: cores / world, as `train` defaults) sees it: with cores > 0, compute rates times the
 * rank's share of the cores, min(threads, cores / world). Returns the share (1 without cores). */
double mpt_cluster_rank_share(mpt_cluster *c, long world, int threads);

#endif
