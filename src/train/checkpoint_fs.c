/* checkpoint_fs.c — the checkpoint module's file-system, JSON and checksum helpers (see
 * checkpoint_internal.h). */
#include "train/checkpoint_internal.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "core/file.h"
#include "train/hfconfig.h"
#include "train/safetensors.h"


const char *const mpt_ckpt_model_file = "model.safetensors";
const char *const mpt_ckpt_optim_file = "optimizer.safetensors";
const char *const mpt_ckpt_stash_file = "2bw_stash.safetensors";
const char *const mpt_ckpt_state_file = "trainer_state.json";
const char *const mpt_ckpt_config_file = "config.json";
const char *const mpt_ckpt_manifest_file = "manifest.json";

/* ---------------------------------------------------------------- file-system helpers */

/* out = a "/" b; 0 when it does not fit. */
int mpt_ckpt_is_step_name(const char *name) {
    return strncmp(name, "step_", 5) == 0 && name[5] &&
           strspn(name + 5, "0123456789") == strlen(name + 5);
}

int mpt_ckpt_join(char *out, size_t size, const char *a, const char *b) {
    int n = snprintf(out, size, "%s/%s", a, b);
    return n >= 0 && (size_t)n < size;
}

int mpt_ckpt_exists(const char *path) {
    struct stat sb;
    return lstat(path, &sb) == 0;
}

int mpt_ckpt_is_dir(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

int mpt_ckpt_fsync_dir(const char *path) {
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* mkdir -p; 0 on success (errno set otherwise). */
int mpt_ckpt_mkdir_p(const char *path) {
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) return errno = ENAMETOOLONG, -1;
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) return -1;
    return mpt_ckpt_is_dir(buf) ? 0 : (errno = ENOTDIR, -1);
}

static int rm_entry_(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p) != 0 ? -1 : 0;
}

/* rm -rf path (symlinks are removed, never followed); 0 on success or when absent. */
int mpt_ckpt_remove_tree(const char *path) {
    if (!mpt_ckpt_exists(path)) return 0;
    return nftw(path, rm_entry_, 16, FTW_DEPTH | FTW_PHYS);
}

/* Writes text to path and fsyncs it. */
mpt_status mpt_ckpt_write_text(const char *path, const char *text, mpt_error *err) {
    FILE *f = fopen(path, "wb");   /* owned */
    if (!f) return mpt_fail(err, MPT_ERR_RUN, "cannot create %s: %s", path, strerror(errno));
    size_t len = strlen(text);
    int ok = fwrite(text, 1, len, f) == len && fflush(f) == 0 && fsync(fileno(f)) == 0;
    int e = errno;
    if (fclose(f) != 0) ok = 0;
    if (!ok) return mpt_fail(err, MPT_ERR_RUN, "%s: write failed: %s", path, strerror(e));
    return MPT_OK;
}

/* Reads a JSON file into a cJSON tree the caller deletes. Bad JSON is MPT_ERR_INPUT. */
mpt_status mpt_ckpt_read_json(const char *path, cJSON **out, mpt_error *err) {
    char *text = NULL; /* owned */
    size_t len = 0;
    *out = NULL;
    mpt_status st = mpt_file_read(path, MPT_CKPT_MAX_JSON_BYTES, &text, &len, err);
    if (!st && (!(*out = cJSON_ParseWithLength(text, len)) || !cJSON_IsObject(*out))) {
        st = mpt_fail(err, MPT_ERR_INPUT, "%s: not a readable JSON object (corrupt file?)", path);
        cJSON_Delete(*out);
        *out = NULL;
    }
    free(text);
    return st;
}

/* XXH3-64 and size of the file at path. */
mpt_status mpt_ckpt_hash_file(const char *path, uint64_t *hash, size_t *size, mpt_error *err) {
    mpt_status st = MPT_OK;
    unsigned char *buf = malloc((size_t)1 << 20);   /* owned */
    XXH3_state_t *h = XXH3_createState();            /* owned */
    FILE *f = fopen(path, "rb");                     /* owned */
    if (!f) {
        st = mpt_fail(err, MPT_ERR_INPUT, "%s: cannot open: %s", path, strerror(errno));
        goto cleanup;
    }
    if (!buf || !h || XXH3_64bits_reset(h) != XXH_OK) {
        st = mpt_fail(err, MPT_ERR_RUN, "out of memory hashing %s", path);
        goto cleanup;
    }
    size_t got, total = 0;
    while ((got = fread(buf, 1, (size_t)1 << 20, f)) > 0) {
        XXH3_64bits_update(h, buf, got);
        total += got;
    }
    if (ferror(f)) {
        st = mpt_fail(err, MPT_ERR_RUN, "%s: read failed", path);
        goto cleanup;
    }
    *hash = XXH3_64bits_digest(h);
    *size = total;
cleanup:
    if (f) fclose(f);
    XXH3_freeState(h);
    free(buf);
    return st;
}

/* A JSON integer that keeps 64 bits: a decimal string, or a number below 2^53. */
int mpt_ckpt_json_u64(const cJSON *j, uint64_t *out) {
    if (cJSON_IsString(j)) {
        const char *s = j->valuestring;
        char *end;
        if (*s < '0' || *s > '9') return 0;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno || *end) return 0;
        *out = v;
        return 1;
    }
    if (!cJSON_IsNumber(j) || !(j->valuedouble >= 0) || j->valuedouble > 9007199254740992.0 ||
        j->valuedouble != floor(j->valuedouble))
        return 0;
    *out = (uint64_t)j->valuedouble;
    return 1;
}

