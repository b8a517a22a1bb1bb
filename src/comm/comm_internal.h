/* comm_internal.h — what the files of the communication layer share and nobody else uses:
 * turning MPI error codes into messages, element types into MPI datatypes, the per-call
 * element limit, the clock, and starting a request. comm.c owns the process-wide settings; comm_wait.c finishes requests. */
#ifndef MPT_COMM_INTERNAL_H
#define MPT_COMM_INTERNAL_H

#include "comm/comm.h"

#define MPT_REQ_MAX_PARTS ((int)(sizeof(((mpt_req *)0)->req) / sizeof(MPI_Request)))

/* Fills err with "rank R: OP on group G (peer P): FN failed: <MPI_Error_string(code)>" (the
 * peer part only when peer >= 0; R and P are world ranks) and returns MPT_ERR_RUN. */
mpt_status mpt_comm_mpi_fail(mpt_error *err, const mpt_comm *c, mpt_comm_op op, int peer,
                             const char *fn, int code);
/* This process's rank in MPI_COMM_WORLD (-1 outside MPI_Init..MPI_Finalize), and the world
 * rank of rank `peer` of c (-1 when peer < 0 or unknown). */
int mpt_comm_world_rank(void);
int mpt_comm_peer_world_rank(const mpt_comm *c, int peer);
/* The largest element count one MPI call takes (INT_MAX unless a test lowered it). */
size_t mpt_comm_max_count(void);
/* How many MPI calls n elements need, or fails (MPT_ERR_RUN) when they need more than one
 * mpt_req holds. Every rank of a collective passes the same n, so all reach the same verdict. */
mpt_status mpt_comm_parts(const mpt_comm *c, mpt_comm_op op, size_t n, int *parts,
                          mpt_error *err);
/* Monotonic seconds. */
double mpt_comm_now(void);
/* Tells the observer (if any) that an operation completed. */
void mpt_comm_observe(mpt_comm_op op, const mpt_comm *c, int peer, double t0, double t1);
/* Zeroes *r and records the op, its communicator, peer, element type (MPT_DTYPES: untyped
 * bytes), payload bytes and start time. */
void mpt_comm_req_start(mpt_req *r, mpt_comm *c, mpt_comm_op op, int peer, mpt_dtype dt,
                        double bytes);
/* The MPI datatype of dt (bf16 moves as 16-bit words); MPI_DATATYPE_NULL when unknown. */
MPI_Datatype mpt_comm_datatype(mpt_dtype dt);
/* The MPI datatype of dt (bf16 moves as 16-bit words) and its size; fails (MPT_ERR_RUN) for
 * an unknown type, or for bf16 when reduce is set (MPI cannot add bfloat16). Every rank passes
 * the same dt, so all reach the same verdict before communicating. */
mpt_status mpt_comm_type(const mpt_comm *c, mpt_comm_op op, mpt_dtype dt, int reduce,
                         MPI_Datatype *type, size_t *elem, mpt_error *err);
/* Settings read by mpt_wait. */
double mpt_comm_timeout(void);
double mpt_comm_spin(void);
mpt_watchdog_fn mpt_comm_watchdog(void);
long mpt_comm_step(void);

#endif
