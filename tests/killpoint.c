/* killpoint.c — an LD_PRELOAD library for tests/t_crash_save.sh: kills its own process with
 * SIGKILL at the Nth file-system step of a checkpoint save, to show that a crash at any point
 * of a save leaves the previous or the new checkpoint loadable, never a mix.
 *
 * Armed by the first mkdir of a path holding ".tmp-" (the save's temporary step directory);
 * from then on every call of fwrite, fflush, fsync, fdatasync, rename, renameat2, symlink,
 * unlink, remove, rmdir and mkdir is one point, and the process kills itself just before the
 * point numbered $MPT_KILL_AT (1, 2, ...), or just after it when $MPT_KILL_AFTER is set. With
 * $MPT_KILL_COUNT=FILE it writes the number of points it passed to FILE at exit (to learn how
 * many there are and what each is: lines "N function"; only a process that armed writes it). Each wrapper forwards to the libc function found with dlsym(RTLD_NEXT).
 * Not thread-safe beyond what a single writing thread needs (the checkpoint writer is one). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <string.h>
#include <unistd.h>

static int armed_;
static long points_, kill_at_ = -1, after_;
#define MAX_POINTS_ 100000
static const char *kind_[MAX_POINTS_];   /* the function of each point, for MPT_KILL_COUNT */

__attribute__((constructor)) static void init_(void) {
    const char *s = getenv("MPT_KILL_AT");
    if (s) kill_at_ = atol(s);
    after_ = getenv("MPT_KILL_AFTER") != NULL;
}

__attribute__((destructor)) static void fini_(void) {
    const char *path = getenv("MPT_KILL_COUNT");
    if (!path || !armed_) return; /* only a process that saved (under mpirun: the writer) */
    FILE *(*real_fopen)(const char *, const char *) = dlsym(RTLD_NEXT, "fopen");
    FILE *f = real_fopen(path, "w");
    if (f) {
        for (long i = 0; i < points_ && i < MAX_POINTS_; i++) fprintf(f, "%ld %s\n", i + 1, kind_[i]);
        fclose(f);
    }
}

/* One point passed: die before it (or after it, with MPT_KILL_AFTER) when it is the one. */
static void point_(int before, const char *kind) {
    if (!armed_) return;
    if (before && points_ < MAX_POINTS_) kind_[points_] = kind;
    if (before) points_++;
    if (points_ == kill_at_ && before == !after_) raise(SIGKILL);
}

/* real: the libc function this wrapper stands in for */
#define REAL_(name)                                                                                \
    static __typeof__(&name) real = NULL;                                                          \
    if (!real) real = (__typeof__(&name))dlsym(RTLD_NEXT, #name)

int mkdir(const char *path, mode_t mode) {
    REAL_(mkdir);
    if (!armed_ && strstr(path, ".tmp-")) armed_ = 1;
    point_(1, "mkdir");
    int rc = real(path, mode);
    point_(0, "mkdir");
    return rc;
}

#define WRAP_(ret, name, params, args)                                                            \
    ret name params {                                                                              \
        REAL_(name);                                                                               \
        point_(1, #name);                                                                          \
        ret rc = real args;                                                                        \
        point_(0, #name);                                                                          \
        return rc;                                                                                 \
    }

WRAP_(size_t, fwrite, (const void *p, size_t s, size_t n, FILE *f), (p, s, n, f))
WRAP_(int, fflush, (FILE *f), (f))
WRAP_(int, fsync, (int fd), (fd))
WRAP_(int, fdatasync, (int fd), (fd))
WRAP_(int, rename, (const char *a, const char *b), (a, b))
WRAP_(int, renameat2, (int fa, const char *a, int fb, const char *b, unsigned int fl),
      (fa, a, fb, b, fl))
WRAP_(int, symlink, (const char *a, const char *b), (a, b))
WRAP_(int, unlink, (const char *p), (p))
WRAP_(int, remove, (const char *p), (p))
WRAP_(int, rmdir, (const char *p), (p))
