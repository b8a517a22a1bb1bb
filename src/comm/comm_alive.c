/* comm_alive.c — the failure detector of alive.h: a TCP star around world rank 0, watched by
 * one thread per rank that makes no MPI call, and the MPT_DEBUG_KILL testing hooks.
 *
 * Wire protocol (one byte, then for 'L' a 4-byte world rank in host order: every rank of a job
 * runs the same binary on the same kind of machine):
 *   rank k -> 0   at connect: its world rank (4 bytes)
 *   'B'           goodbye: the sender ends normally; the end-of-file that follows is no loss
 *   'E'           goodbye after a failure of the sender's own (an error the other ranks may not
 *                 know of): a loss of the "failed" kind
 *   'L' rank      0 -> k: rank 0 lost that rank (its process ended)
 *   'F' rank      0 -> k: that rank ended after a failure
 * Rank 0 listens on an ephemeral port of every interface and broadcasts its host name, its
 * IPv4 addresses and the port; a rank tries the loopback when it runs on rank 0's host name,
 * then each address, then the name (each attempt bounded by a 2 s connect timeout: network
 * namespaces may share a host name but not a loopback). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "comm/alive.h"

#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "comm/comm_internal.h"

#define CONNECT_SECONDS_ 30.0  /* rank 0 waits this long for every rank to connect */
#define MAX_ADDRS_ 16

/* What rank 0 broadcasts: where to reach it. */
typedef struct alive_where_ {
    char host[256];
    int32_t port;
    int32_t naddr;
    uint32_t addr[MAX_ADDRS_];   /* IPv4, network order */
} alive_where_;

static struct {
    int started, rank, size;
    int *fd;                   /* rank 0: fd[k] of rank k (fd[0] = -1); others: fd[0] */
    int nfd;
    char *bye;                 /* per fd: goodbye received */
    int wake[2];               /* self-pipe that stops the thread */
    pthread_t thread;
    double grace;
    mpt_alive_fn on_lost;
} A_ = {.wake = {-1, -1}};

static atomic_int lost_ = -1;   /* world rank lost, -1 none */
static atomic_long lost_step_ = 0;
static atomic_int lost_failed_ = 0;  /* 1: the lost rank said it failed ('E') */
static atomic_llong lost_ns_ = 0;    /* when the loss was learnt (CLOCK_MONOTONIC) */
#define FAILED_GRACE_NS_ 3000000000LL

int mpt_alive_lost(void) { return atomic_load(&lost_); }
int mpt_alive_lost_failed(void) { return mpt_alive_lost() >= 0 && atomic_load(&lost_failed_); }

static long long now_ns_(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int mpt_alive_give_up(void) {
    if (mpt_alive_lost() < 0) return 0;
    if (!atomic_load(&lost_failed_)) return 1;
    return now_ns_() - atomic_load(&lost_ns_) >= FAILED_GRACE_NS_;
}

static double now_(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void describe_(char *buf, size_t n, const mpt_comm *c, mpt_comm_op op) {
    int lost = mpt_alive_lost();
    char where[160] = "";
    if (c)
        snprintf(where, sizeof where, " while rank %d waited in %s on group %s",
                 mpt_comm_world_rank(), mpt_comm_op_name(op), c->name);
    else
        snprintf(where, sizeof where, " (seen by rank %d)", A_.rank);
    if (atomic_load(&lost_failed_))
        snprintf(buf, n,
                 "rank %d stopped after an error of its own (its message is in its output)%s "
                 "at step %ld; the job stops: the last checkpoint is intact", lost, where,
                 (long)atomic_load(&lost_step_));
    else
        snprintf(buf, n,
                 "rank %d stopped responding (its process ended)%s at step %ld; the job stops: "
                 "the last checkpoint is intact, continue with --resume",
                 lost, where, (long)atomic_load(&lost_step_));
}

mpt_status mpt_alive_fail(const mpt_comm *c, mpt_comm_op op, mpt_error *err) {
    char msg[512];
    describe_(msg, sizeof msg, c, op);
    return mpt_fail(err, MPT_ERR_RUN, "%s", msg);
}

/* Records the first loss (later ones change nothing); failed: it said 'E'. */
static void lose_(int rank, int failed) {
    int none = -1;
    if (mpt_alive_lost() >= 0) return;
    atomic_store(&lost_failed_, failed);
    atomic_store(&lost_step_, mpt_comm_step());
    atomic_store(&lost_ns_, now_ns_());
    atomic_compare_exchange_strong(&lost_, &none, rank);
}

/* Writes all of buf (MSG_NOSIGNAL: a peer that closed gives an error, not SIGPIPE). */
static int send_all_(int fd, const void *buf, size_t n) {
    const char *p = buf;
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int recv_all_(int fd, void *buf, size_t n) {
    char *p = buf;
    while (n > 0) {
        ssize_t r = recv(fd, p, n, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

/* The world rank at the other end of fd index i. */
static int peer_of_(int i) { return A_.rank == 0 ? i : 0; }

/* Rank 0: tells every other connected rank that `rank` is lost ('L') or failed ('F'). */
static void tell_all_(int rank, char kind) {
    unsigned char msg[5] = {(unsigned char)kind};
    int32_t r = rank;
    memcpy(msg + 1, &r, 4);
    for (int i = 1; i < A_.nfd; i++)
        if (A_.fd[i] >= 0 && i != rank && !A_.bye[i]) send_all_(A_.fd[i], msg, sizeof msg);
}

/* One message or end-of-file on fd index i. Returns 0 to keep watching it, -1 to drop it. */
static int handle_(int i) {
    unsigned char kind;
    ssize_t r;
    do r = recv(A_.fd[i], &kind, 1, 0);
    while (r < 0 && errno == EINTR);
    if (r == 1 && (kind == 'B' || kind == 'E')) {
        A_.bye[i] = 1;
        if (kind == 'E') {
            if (A_.rank == 0 && mpt_alive_lost() < 0) tell_all_(peer_of_(i), 'F');
            lose_(peer_of_(i), 1);
        }
        return 0;
    }
    if (r == 1 && (kind == 'L' || kind == 'F') && A_.rank != 0) {
        int32_t who = -1;
        if (recv_all_(A_.fd[i], &who, 4) == 0 && who >= 0 && who < A_.size) lose_(who, kind == 'F');
        else if (!A_.bye[i]) lose_(0, 0);
        return 0;
    }
    if (r == 1) return 0; /* unknown byte: ignore */
    /* end-of-file or error: a loss unless the peer said goodbye */
    if (!A_.bye[i]) { /* rank 0 tells the others first: once lost_ is set, its main thread may
                       * end the process before this thread could */
        if (A_.rank == 0 && mpt_alive_lost() < 0) tell_all_(peer_of_(i), 'L');
        lose_(peer_of_(i), 0);
    }
    return -1;
}

static void *watch_(void *arg) {
    (void)arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL); /* signals go to the main thread */
    struct pollfd *p = calloc((size_t)A_.nfd + 1, sizeof *p);
    int *idx = calloc((size_t)A_.nfd + 1, sizeof *idx);
    double lost_at = -1.0;
    int told = 0;
    for (;;) {
        int n = 0;
        p[n].fd = A_.wake[0];
        p[n].events = POLLIN;
        idx[n++] = -1;
        for (int i = 0; i < A_.nfd; i++)
            if (A_.fd[i] >= 0) {
                p[n].fd = A_.fd[i];
                p[n].events = POLLIN;
                p[n].revents = 0;
                idx[n++] = i;
            }
        int rc = poll(p, (nfds_t)n, 200);
        if (rc < 0 && errno != EINTR) break;
        if (rc > 0 && (p[0].revents & (POLLIN | POLLHUP))) break; /* stop */
        for (int k = 1; rc > 0 && k < n; k++) {
            if (!(p[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            int i = idx[k];
            if (handle_(i) < 0) {
                close(A_.fd[i]);
                A_.fd[i] = -1;
            }
        }
        if (A_.rank != 0 && A_.fd[0] < 0 && A_.bye[0] && mpt_alive_lost() < 0) break; /* 0 ended */
        if (mpt_alive_lost() >= 0 && !told) {
            if (lost_at < 0) lost_at = now_();
            if (now_() - lost_at >= A_.grace && A_.on_lost) {
                char msg[512];
                describe_(msg, sizeof msg, NULL, MPT_OP_KINDS);
                told = 1;
                A_.on_lost(mpt_alive_lost(), msg);
            }
        }
    }
    free(p);
    free(idx);
    return NULL;
}

/* --- set-up ---------------------------------------------------------------------------------- */

/* Rank 0: a listening socket on every interface, its port in *port. */
static int listen_(int *port, char *why, size_t n) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_ANY);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 4096) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        snprintf(why, n, "cannot listen on a TCP port: %s", strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    *port = ntohs(a.sin_port);
    return fd;
}

/* A connected socket to a (IPv4, port set), or -1 within CONNECT_TRY_MS_. */
#define CONNECT_TRY_MS_ 2000
static int try_connect_(const struct sockaddr_in *a) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return -1;
    if (connect(fd, (const struct sockaddr *)a, sizeof *a) != 0) {
        struct pollfd p = {fd, POLLOUT, 0};
        int e = 0;
        socklen_t len = sizeof e;
        if (errno != EINPROGRESS || poll(&p, 1, CONNECT_TRY_MS_) != 1 ||
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) != 0 || e != 0) {
            close(fd);
            return -1;
        }
    }
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    return fd;
}

/* Others: a connection to rank 0 that sends this rank's number. Tries the loopback when on
 * rank 0's host, then each of rank 0's addresses, then its host name. */
static int connect_(const alive_where_ *w, int same_host, int rank, char *why, size_t n) {
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)w->port);
    int fd = -1;
    if (same_host) {
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        fd = try_connect_(&a);
    }
    for (int i = 0; fd < 0 && i < w->naddr && i < MAX_ADDRS_; i++) {
        a.sin_addr.s_addr = w->addr[i];
        fd = try_connect_(&a);
    }
    if (fd < 0) {
        struct addrinfo hints, *res = NULL;
        memset(&hints, 0, sizeof hints);
        hints.ai_family = AF_INET;
        hints.ai_socktype = SOCK_STREAM;
        if (getaddrinfo(w->host, NULL, &hints, &res) == 0) {
            for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
                a.sin_addr = ((struct sockaddr_in *)ai->ai_addr)->sin_addr;
                fd = try_connect_(&a);
            }
            freeaddrinfo(res);
        }
    }
    int32_t r = rank;
    if (fd < 0 || send_all_(fd, &r, 4) != 0) {
        snprintf(why, n, "cannot connect to rank 0 (host %s, port %d, %d addresses)", w->host,
                 w->port, w->naddr);
        if (fd >= 0) close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/* Rank 0: its IPv4 addresses other than the loopback, up to MAX_ADDRS_. */
static void addresses_(alive_where_ *w) {
    struct ifaddrs *ifs = NULL;
    w->naddr = 0;
    if (getifaddrs(&ifs) != 0) return;
    for (struct ifaddrs *i = ifs; i && w->naddr < MAX_ADDRS_; i = i->ifa_next) {
        if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET || (i->ifa_flags & IFF_LOOPBACK))
            continue;
        w->addr[w->naddr++] = ((struct sockaddr_in *)i->ifa_addr)->sin_addr.s_addr;
    }
    freeifaddrs(ifs);
}

/* Rank 0: accepts size - 1 connections, each naming its rank, within CONNECT_SECONDS_. */
static int accept_all_(int lfd, char *why, size_t n) {
    double t0 = now_();
    for (int got = 0; got < A_.size - 1;) {
        struct pollfd p = {lfd, POLLIN, 0};
        int left = (int)((CONNECT_SECONDS_ - (now_() - t0)) * 1000);
        if (left <= 0 || poll(&p, 1, left) <= 0) {
            snprintf(why, n, "only %d of %d ranks connected to rank 0 within %g s", got,
                     A_.size - 1, CONNECT_SECONDS_);
            return -1;
        }
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        int32_t r = -1;
        if (fd < 0) continue;
        if (recv_all_(fd, &r, 4) != 0 || r <= 0 || r >= A_.size || A_.fd[r] >= 0) {
            close(fd);
            continue;
        }
        A_.fd[r] = fd;
        got++;
    }
    return 0;
}

static void close_all_(void) {
    for (int i = 0; A_.fd && i < A_.nfd; i++)
        if (A_.fd[i] >= 0) close(A_.fd[i]);
    free(A_.fd);
    free(A_.bye);
    A_.fd = NULL;
    A_.bye = NULL;
    A_.nfd = 0;
    for (int i = 0; i < 2; i++)
        if (A_.wake[i] >= 0) close(A_.wake[i]);
    A_.wake[0] = A_.wake[1] = -1;
}

mpt_status mpt_alive_start(mpt_comm *world, double grace_seconds, mpt_alive_fn on_lost,
                           mpt_error *err) {
    A_.rank = world->rank;
    A_.size = world->size;
    A_.grace = grace_seconds > 0 ? grace_seconds : 5.0;
    A_.on_lost = on_lost;
    if (world->size <= 1 || A_.started) return MPT_OK;
    char why[256] = "";
    alive_where_ where;
    memset(&where, 0, sizeof where);
    A_.nfd = A_.rank == 0 ? A_.size : 1;
    A_.fd = malloc((size_t)A_.nfd * sizeof *A_.fd);
    A_.bye = calloc((size_t)A_.nfd, 1);
    int lfd = -1, ok = A_.fd && A_.bye;
    if (!ok) snprintf(why, sizeof why, "out of memory");
    for (int i = 0; ok && i < A_.nfd; i++) A_.fd[i] = -1;
    if (ok && A_.rank == 0) {
        int port = 0;
        lfd = listen_(&port, why, sizeof why);
        where.port = lfd >= 0 ? port : -1;
        if (gethostname(where.host, sizeof where.host - 1) != 0) where.host[0] = '\0';
        addresses_(&where);
    }
    mpt_status st = mpt_bcast(world, &where, sizeof where, 0, err);
    if (st) return st;
    if (ok && A_.rank != 0) {
        char mine[256] = "";
        gethostname(mine, sizeof mine - 1);
        if (where.port < 0) {
            snprintf(why, sizeof why, "rank 0 could not listen");
            ok = 0;
        } else if ((A_.fd[0] = connect_(&where, strcmp(mine, where.host) == 0, A_.rank, why,
                                      sizeof why)) < 0)
            ok = 0;
    }
    if (ok && pipe(A_.wake) != 0) {
        snprintf(why, sizeof why, "pipe: %s", strerror(errno));
        ok = 0;
    }
    /* every connection waits in rank 0's backlog: agree first, so that a rank that could not
     * connect costs no one a wait, then rank 0 accepts them */
    if (ok && A_.rank == 0 && lfd < 0) ok = 0;
    st = ok ? MPT_OK : mpt_fail(err, MPT_ERR_RUN, "rank %d: failure detector: %s", A_.rank, why);
    st = mpt_comm_agree(world, st, err);
    if (!st && A_.rank == 0 && accept_all_(lfd, why, sizeof why) != 0) ok = 0;
    if (lfd >= 0) close(lfd);
    if (!st) st = ok ? MPT_OK : mpt_fail(err, MPT_ERR_RUN, "rank 0: failure detector: %s", why);
    st = mpt_comm_agree(world, st, err);
    if (!st && pthread_create(&A_.thread, NULL, watch_, NULL) != 0)
        st = mpt_fail(err, MPT_ERR_RUN, "rank %d: failure detector: no thread", A_.rank);
    if (st) {
        close_all_();
        return st;
    }
    A_.started = 1;
    return MPT_OK;
}

void mpt_alive_stop(int failed) {
    if (!A_.started) return;
    const char bye = failed ? 'E' : 'B';
    for (int i = 0; i < A_.nfd; i++)
        if (A_.fd[i] >= 0) send_all_(A_.fd[i], &bye, 1);
    if (write(A_.wake[1], &bye, 1) != 1) { /* the thread then ends at its next poll anyway */ }
    pthread_join(A_.thread, NULL);
    close_all_();
    A_.started = 0;
}

/* --- testing: MPT_DEBUG_KILL ----------------------------------------------------------------- */

static struct {
    int parsed, armed;
    int rank;
    long step, ms;              /* ms >= 0: timer point */
    char op[24], group[16];
    int nth, seen;
    long cur;                   /* the step running now */
} K_ = {.ms = -1};

static void parse_kill_(void) {
    K_.parsed = 1;
    const char *s = getenv("MPT_DEBUG_KILL");
    if (!s || !*s) return;
    char point[64] = "";
    if (sscanf(s, "%d:%ld:%63s", &K_.rank, &K_.step, point) != 3) return;
    if (K_.rank != mpt_comm_world_rank()) return;
    if (point[0] == '+') {
        K_.ms = atol(point + 1);
    } else {
        char *at = strchr(point, '@');
        if (!at) return;
        *at = '\0';
        char *hash = strchr(at + 1, '#');
        K_.nth = hash ? atoi(hash + 1) : 1;
        if (hash) *hash = '\0';
        snprintf(K_.op, sizeof K_.op, "%s", point);
        snprintf(K_.group, sizeof K_.group, "%s", at + 1);
    }
    K_.armed = 1;
}

void mpt_alive_debug_step(long step) {
    if (!K_.parsed) parse_kill_();
    if (!K_.armed) return;
    K_.cur = step;
    K_.seen = 0;
    if (step != K_.step || K_.ms < 0) return;
    if (K_.ms == 0) raise(SIGKILL);
    struct sigevent ev;
    memset(&ev, 0, sizeof ev);
    ev.sigev_notify = SIGEV_SIGNAL;
    ev.sigev_signo = SIGKILL;
    timer_t t;
    struct itimerspec it;
    memset(&it, 0, sizeof it);
    it.it_value.tv_sec = K_.ms / 1000;
    it.it_value.tv_nsec = (K_.ms % 1000) * 1000000L;
    if (timer_create(CLOCK_MONOTONIC, &ev, &t) == 0) timer_settime(t, 0, &it, NULL);
}

void mpt_alive_debug_op(const mpt_comm *c, mpt_comm_op op) {
    if (!K_.parsed) parse_kill_();
    if (!K_.armed || K_.ms >= 0 || K_.cur != K_.step) return;
    if (strcmp(mpt_comm_op_name(op), K_.op) != 0 || strcmp(c->name, K_.group) != 0) return;
    if (++K_.seen == K_.nth) raise(SIGKILL);
}

/* --- testing: MPT_DEBUG_JITTER_US -------------------------------------------------------------- */

static struct {
    int parsed;
    long us;          /* 0: off */
    uint64_t state;   /* xorshift64*, seeded per rank and per run */
} J_;

static void parse_jitter_(void) {
    J_.parsed = 1;
    const char *s = getenv("MPT_DEBUG_JITTER_US");
    if (!s || !*s) return;
    long us = 0;
    unsigned long long seed = 0;
    int got = sscanf(s, "%ld:%llu", &us, &seed);
    if (got < 1 || us <= 0) return;
    J_.us = us > 1000000 ? 1000000 : us;
    if (got < 2) { /* a new order every run: the clock and the process id */
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        seed = (unsigned long long)ts.tv_nsec ^ ((unsigned long long)ts.tv_sec << 20) ^
               ((unsigned long long)getpid() << 40);
    }
    J_.state = (uint64_t)seed * 0x9E3779B97F4A7C15ULL + (uint64_t)(mpt_comm_world_rank() + 1) *
               0xD1B54A32D192ED03ULL;
    if (!J_.state) J_.state = 1;
}

static uint64_t jitter_rand_(void) {
    J_.state ^= J_.state >> 12;
    J_.state ^= J_.state << 25;
    J_.state ^= J_.state >> 27;
    return J_.state * 0x2545F4914F6CDD1DULL;
}

int mpt_alive_debug_jitter(void) {
    if (!J_.parsed) parse_jitter_();
    if (!J_.us) return 0;
    uint64_t x = jitter_rand_();
    long ns = (long)((x >> 11) % (uint64_t)(J_.us + 1)) * 1000L;
    if (ns > 0) {
        struct timespec ts = {ns / 1000000000L, ns % 1000000000L};
        nanosleep(&ts, NULL);
    }
    return (int)(x & 1) + 1;
}

int mpt_alive_debug_coin(void) {
    if (!J_.parsed) parse_jitter_();
    return J_.us ? (int)(jitter_rand_() >> 63) : 0;
}
