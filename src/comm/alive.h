/* alive.h — a failure detector for the ranks of a job, so that no rank hangs when another dies.
 *
 * MPI over shared memory never tells a rank that its peer is gone: a send to or a receive from
 * a process killed with SIGKILL waits for ever. The detector learns of a death from the
 * kernel instead: every rank keeps one TCP connection to world rank 0 (a star), served by a
 * thread of its own that makes no MPI call. When a process ends, its kernel closes its socket
 * at once, so the other end reads end-of-file within microseconds, on any node. Rank 0 tells
 * every other rank which rank it lost; a rank that loses rank 0 knows by its own socket. A
 * rank that ends normally says goodbye first (mpt_alive_stop), which is not a loss; a rank that
 * ends after a failure of its own says so, and the others stop too ("rank 2 stopped after an
 * error of its own ..."): an error only one rank found still ends every rank.
 *
 * Once a loss is known, every wait of the comm layer (mpt_wait, mpt_waitall, mpt_test, the
 * agreement) that still finds its request pending fails (at once for a process that ended,
 * after a short delay for a rank that said it failed: mpt_alive_give_up) with MPT_ERR_RUN and "rank 3 stopped responding (its process
 * ended) while rank 1 waited in allreduce on group dp at step 12 ...", so the ranks return up
 * their stacks like any failure. A rank that does not reach a wait within the grace period
 * (busy in a long computation or in a blocking MPI call outside the comm layer) is ended by
 * the handler, which the detector's thread calls with the same words.
 *
 * A process that is alive but stuck (stopped, in an endless loop) still holds its socket: the
 * comm layer's timeout watchdog (comm.h) catches that case.
 *
 * Testing: MPT_DEBUG_KILL="RANK:STEP:POINT" makes world rank RANK kill itself with SIGKILL at
 * step STEP (1-based, as mpt_comm_set_step counts): POINT "+MS" is MS milliseconds after the
 * step begins (a POSIX timer that delivers SIGKILL, wherever the rank is); "OP@GROUP#N" is
 * just before the rank posts its Nth (default 1st) operation OP ("allreduce", "send", ...) on
 * the group named GROUP ("dp", "tp", "pp", "world", ...) during that step.
 * MPT_DEBUG_JITTER_US="N" (or "N:SEED" to repeat one sequence) makes the comm layer sleep a
 * random 0..N microseconds (N up to 10^6) before every post, every mpt_test and every wait, and
 * makes half of the mpt_test calls, and half of a wait's polls of each request, see a pending
 * request without testing it (MPI_Test may always do so), from a generator seeded per rank (and per run without SEED): the order in
 * which a rank sees its messages complete then changes from run to run, so tests find the
 * races of the nonblocking paths (a buffer reused while a request may still use it). */
#ifndef MPT_ALIVE_H
#define MPT_ALIVE_H

#include "comm/comm.h"
#include "core/status.h"

/* Called from the detector's thread when the main thread has not reached a wait within the
 * grace period after a loss; should not return (the CLI prints `what` and ends the process).
 * what: "rank 3 stopped responding (its process ended) at step 12 ..." */
typedef void (*mpt_alive_fn)(int lost_rank, const char *what);

/* All ranks of world (MPI_COMM_WORLD) call once, from the thread that calls MPI. Connects the
 * ranks and starts the thread. When any rank cannot (no network, a name that does not
 * resolve), every rank returns MPT_ERR_RUN with that rank's reason and no detector runs; the
 * job can go on without it (a lost rank is then found by the comm timeout). One rank: no
 * connection, no thread, MPT_OK. */
mpt_status mpt_alive_start(mpt_comm *world, double grace_seconds, mpt_alive_fn on_lost,
                           mpt_error *err);
/* Says goodbye (failed: after an error of this rank, which the others then learn of), stops
 * the thread and closes the connections. Local; safe without a start and after a loss. Call
 * before MPI_Finalize on every path that ends without a loss. */
void mpt_alive_stop(int failed);
/* The world rank found lost (its process ended, or it said it failed), or -1. Any thread. */
int mpt_alive_lost(void);
/* 1 when waits should fail now: a rank's process ended, or a rank that said it failed did so
 * more than 3 s ago. A rank that fails in agreement with the others (bad input found by all)
 * says so while the others may still be finishing the agreement's last message from it; the
 * delay lets those messages, already sent, arrive instead of failing the waits for them. */
int mpt_alive_give_up(void);
/* 1 when the lost rank ended after a failure of its own (said goodbye with 'failed'): its
 * process ended in order, so MPI_Finalize does not wait for it. */
int mpt_alive_lost_failed(void);
/* Fills err with the loss, as seen by a wait in op on c (c NULL: no operation), and returns
 * MPT_ERR_RUN. */
mpt_status mpt_alive_fail(const mpt_comm *c, mpt_comm_op op, mpt_error *err);

/* Testing hooks the comm layer calls (see MPT_DEBUG_KILL above): at each step's start, and
 * before posting an operation. Do nothing unless the variable is set. */
void mpt_alive_debug_step(long step);
void mpt_alive_debug_op(const mpt_comm *c, mpt_comm_op op);
/* MPT_DEBUG_JITTER_US (above): 0 when off; else sleeps its random while and returns 1 or 2 at
 * random (mpt_test skips its MPI_Test on 2). The thread that calls MPI calls. */
int mpt_alive_debug_jitter(void);
/* MPT_DEBUG_JITTER_US: 0 when off; else 0 or 1 at random, without sleeping (a wait skips its
 * MPI_Test of one request for one round on 1). */
int mpt_alive_debug_coin(void);

#endif
