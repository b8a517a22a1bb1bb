/* ckpt_probe.c — can the --save root be created and written? (see ckpt_probe.h) */
#include "train/ckpt_probe.h"

#include "train/checkpoint_internal.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* mkdir then rmdir a directory of a name no other process uses (pid and clock) inside `dir`: 0,
 * or the errno of the failed mkdir. Never the root itself: with the sharded format every rank
 * probes at once, and one rank's rmdir of a root it had just made raced another's probe in it. */
static int probe_mkdir_(const char *dir) {
    char probe[4300];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(probe, sizeof probe, "%s/.mpt-probe-%ld-%ld", dir, (long)getpid(), (long)ts.tv_nsec);
    if (mkdir(probe, 0755) != 0) return errno == EEXIST ? 0 : errno;
    rmdir(probe);
    return 0;
}

mpt_status mpt_ckpt_probe_dir(const char *root, mpt_error *err) {
    char path[4096], probe[4200];
    size_t n = strlen(root);
    if (n == 0) return mpt_fail(err, MPT_ERR_INPUT, "--save needs a directory name");
    if (n >= sizeof path)
        return mpt_fail(err, MPT_ERR_INPUT, "--save %.64s...: path too long", root);
    memcpy(path, root, n + 1);
    while (n > 1 && path[n - 1] == '/') path[--n] = '\0';
    struct stat sb;
    if (stat(path, &sb) == 0) { /* the root exists: a directory this rank can create in */
        if (!S_ISDIR(sb.st_mode))
            return mpt_fail(err, MPT_ERR_INPUT, "--save %s is a file, not a directory: choose "
                            "another path for the checkpoints", root);
        int e = probe_mkdir_(path);
        if (e)
            return mpt_fail(err, MPT_ERR_INPUT, "--save %s: cannot write checkpoints into it "
                            "(%s): choose a directory you can write", root, strerror(e));
        return MPT_OK;
    }
    if (errno != ENOENT)
        return mpt_fail(err, MPT_ERR_INPUT, "--save %s: %s: choose a directory you can write",
                        root, strerror(errno));
    /* the first missing directory of the path: its parent must exist as a directory */
    char parent[4096];
    memcpy(parent, path, n + 1);
    for (;;) {
        char *slash = strrchr(parent, '/');
        if (!slash) { /* a relative name: its parent is the working directory */
            snprintf(probe, sizeof probe, "%s", parent);
            snprintf(parent, sizeof parent, ".");
        } else {
            snprintf(probe, sizeof probe, "%s", parent);
            if (slash == parent) slash[1] = '\0'; /* "/x": the parent is "/" */
            else *slash = '\0';
        }
        if (stat(parent, &sb) == 0) break;
        if (errno != ENOENT || strcmp(parent, ".") == 0 || strcmp(parent, "/") == 0)
            return mpt_fail(err, MPT_ERR_INPUT, "--save %s: %s: %s", root, parent,
                            strerror(errno));
    }
    if (!S_ISDIR(sb.st_mode))
        return mpt_fail(err, MPT_ERR_INPUT, "--save %s: %s is a file, not a directory: choose "
                        "another path for the checkpoints", root, parent);
    int e = probe_mkdir_(parent); /* creating `probe` needs exactly this */
    if (e)
        return mpt_fail(err, MPT_ERR_INPUT, "--save %s: cannot create %s (%s): choose a "
                        "directory you can write", root, probe, strerror(e));
    return MPT_OK;
}

mpt_status mpt_ckpt_probe_unused(const char *root, mpt_error *err) {
    DIR *d = opendir(root);
    if (!d) return MPT_OK; /* missing (or unreadable: mpt_ckpt_probe_dir says why) */
    char found[512] = "";
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (strcmp(e->d_name, "latest") == 0 || mpt_ckpt_is_step_name(e->d_name)) {
            snprintf(found, sizeof found, "%s", e->d_name);
            break;
        }
    }
    closedir(d);
    if (!found[0]) return MPT_OK;
    return mpt_fail(err, MPT_ERR_INPUT,
                    "--save %s already holds checkpoints (%s) of another run: a new run would "
                    "overwrite its latest and --keep would delete its steps; pass --resume %s "
                    "to continue that run, or choose an empty --save directory",
                    root, found, root);
}
