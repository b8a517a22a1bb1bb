/* file.c — whole-file reads (see file.h). */
#include "core/file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

mpt_status mpt_file_read(const char *path, size_t max, char **data, size_t *len, mpt_error *err) {
    *data = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb"); /* owned */
    if (!f) return mpt_fail(err, MPT_ERR_INPUT, "%s: cannot open it (%s)", path, strerror(errno));
    struct stat sb;
    mpt_status st = MPT_OK;
    char *buf = NULL;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        st = mpt_fail(err, MPT_ERR_INPUT, "%s: cannot read it (not a regular file)", path);
        goto cleanup;
    }
    size_t size = (size_t)sb.st_size;
    if (size > max) {
        st = mpt_fail(err, MPT_ERR_INPUT, "%s: %zu bytes, more than the %zu expected", path, size,
                      max);
        goto cleanup;
    }
    if (!(buf = malloc(size + 1))) {
        st = mpt_fail(err, MPT_ERR_RUN, "%s: out of memory for %zu bytes", path, size);
        goto cleanup;
    }
    size_t got = fread(buf, 1, size, f);
    if (ferror(f) || got != size) {
        st = mpt_fail(err, MPT_ERR_INPUT, "%s: read failed (%s)", path,
                      ferror(f) ? strerror(errno) : "the file changed while being read");
        goto cleanup;
    }
    buf[size] = '\0';
    *data = buf;
    *len = size;
    buf = NULL;
cleanup:
    free(buf);
    fclose(f);
    return st;
}
