/* tokfile.c — reads and writes token files in the llm.c layout (see tokfile.h, CONTRACT §4).
 * All integers on disk are little-endian. The writer converts explicitly; the reader maps the
 * file and uses the uint16 tokens in place, so it needs a little-endian host (checked below). */
#include "tok/tokfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "tokfile.c reads the mapped uint16 tokens in host order: little-endian hosts only"
#endif

#define HEADER_INTS_ 256
#define HEADER_BYTES_ (HEADER_INTS_ * 4)
#define CHUNK_ 65536 /* tokens converted per write */

static int32_t get_le32_(const unsigned char *p) {
    return (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                     (uint32_t)p[3] << 24);
}

static void put_le32_(unsigned char *p, int32_t v) {
    uint32_t u = (uint32_t)v;
    p[0] = (unsigned char)u;
    p[1] = (unsigned char)(u >> 8);
    p[2] = (unsigned char)(u >> 16);
    p[3] = (unsigned char)(u >> 24);
}

void mpt_tokfile_free(mpt_tokfile *f) {
    if (!f) return;
    if (f->map) munmap(f->map, f->map_size);
    memset(f, 0, sizeof *f);
    f->max_token = -1;
}

#define REMAKE_ "make it with `mptrain tokenize --in TEXT --out FILE.bin`"

mpt_status mpt_tokfile_read(const char *path, int vocab, mpt_tokfile *out, mpt_error *err) {
    memset(out, 0, sizeof *out);
    out->max_token = -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC); /* owned until the end: the mapping outlives it */
    if (fd < 0)
        return mpt_fail(err, MPT_ERR_INPUT, "%s: cannot open (%s); check the path or " REMAKE_,
                        path, strerror(errno));
    mpt_status st = MPT_OK;
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        st = mpt_fail(err, MPT_ERR_INPUT, "%s: not a regular file; " REMAKE_, path);
        goto done;
    }
    long long size = (long long)sb.st_size;
    if (size < HEADER_BYTES_) {
        st = mpt_fail(err, MPT_ERR_INPUT, "%s: %lld bytes, shorter than the %d-byte header of a "
                      "token file; is it a token file? " REMAKE_, path, size, HEADER_BYTES_);
        goto done;
    }
    void *map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        st = mpt_fail(err, MPT_ERR_RUN, "%s: cannot map the file (%s)", path, strerror(errno));
        goto done;
    }
    out->map = map;
    out->map_size = (size_t)size;
    const unsigned char *hdr = map;
    int32_t magic = get_le32_(hdr), version = get_le32_(hdr + 4), count = get_le32_(hdr + 8);
    if (magic != MPT_TOKFILE_MAGIC) {
        st = mpt_fail(err, MPT_ERR_INPUT, "%s: bad magic number %d (expected %d): not an llm.c "
                      "token file; " REMAKE_, path, (int)magic, MPT_TOKFILE_MAGIC);
        goto done;
    }
    if (version != MPT_TOKFILE_VERSION) {
        st = mpt_fail(err, MPT_ERR_INPUT, "%s: version %d is not supported (expected %d: uint16 "
                      "tokens); re-" REMAKE_, path, (int)version, MPT_TOKFILE_VERSION);
        goto done;
    }
    if (count < 0 || size != HEADER_BYTES_ + 2LL * count) {
        st = mpt_fail(err, MPT_ERR_INPUT, "%s: the header says %d tokens (%lld bytes in all) but "
                      "the file has %lld bytes: it is truncated or corrupt; re-" REMAKE_, path,
                      (int)count, HEADER_BYTES_ + 2LL * count, size);
        goto done;
    }
    size_t n = (size_t)count;
    const uint16_t *tok = n ? (const uint16_t *)(hdr + HEADER_BYTES_) : NULL; /* little-endian */
    int max = -1;
    for (size_t i = 0; i < n; i++) {
        int t = tok[i];
        if (vocab > 0 && t >= vocab) {
            st = mpt_fail(err, MPT_ERR_INPUT, "%s: token %d at position %zu is >= the model's "
                          "vocabulary %d: pass --vocab 50257 if the file holds GPT-2 tokens "
                          "(--tokenizer gpt2; 256 for bytes; --vocab must exceed every token "
                          "id), or tokenize the text again with the model's --tokenizer",
                          path, t, i, vocab);
            goto done;
        }
        if (t > max) max = t;
    }
    out->tokens = tok;
    out->n = n;
    out->max_token = max;
done:
    close(fd);
    if (st != MPT_OK) mpt_tokfile_free(out);
    return st;
}

mpt_status mpt_tokfile_write(const char *path, const int32_t *tokens, size_t n, mpt_error *err) {
    if (n > INT32_MAX)
        return mpt_fail(err, MPT_ERR_INPUT, "%s: %zu tokens do not fit the token file's int32 "
                        "count; split the text into several files", path, n);
    for (size_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] > 65535)
            return mpt_fail(err, MPT_ERR_INPUT, "%s: token %d at position %zu is outside "
                            "0..65535 and cannot be stored as uint16", path, (int)tokens[i], i);
    size_t plen = strlen(path);
    char *tmp = malloc(plen + sizeof ".tmp.XXXXXX");
    if (!tmp) return mpt_fail(err, MPT_ERR_RUN, "out of memory");
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp.XXXXXX", sizeof ".tmp.XXXXXX");
    int fd = mkstemp(tmp);
    if (fd < 0) {
        int e = errno;
        free(tmp);
        return mpt_fail(err, MPT_ERR_INPUT, "%s: cannot create it (%s); check that its folder "
                        "exists and is writable", path, strerror(e));
    }
    (void)fchmod(fd, 0644); /* mkstemp makes 0600; token files are ordinary data */
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        int e = errno;
        close(fd);
        unlink(tmp);
        free(tmp);
        return mpt_fail(err, MPT_ERR_RUN, "%s: cannot write (%s)", path, strerror(e));
    }
    unsigned char hdr[HEADER_BYTES_] = {0};
    put_le32_(hdr, MPT_TOKFILE_MAGIC);
    put_le32_(hdr + 4, MPT_TOKFILE_VERSION);
    put_le32_(hdr + 8, (int32_t)n);
    int ok = fwrite(hdr, 1, sizeof hdr, f) == sizeof hdr;
    unsigned char buf[2 * CHUNK_];
    for (size_t i = 0; ok && i < n; i += CHUNK_) {
        size_t m = n - i < CHUNK_ ? n - i : CHUNK_;
        for (size_t j = 0; j < m; j++) {
            buf[2 * j] = (unsigned char)tokens[i + j];
            buf[2 * j + 1] = (unsigned char)(tokens[i + j] >> 8);
        }
        ok = fwrite(buf, 2, m, f) == m;
    }
    int e = 0;
    if (ok && (fflush(f) != 0 || fsync(fd) != 0)) ok = 0;
    if (!ok) e = errno;
    if (fclose(f) != 0 && ok) {
        ok = 0;
        e = errno;
    }
    if (ok && rename(tmp, path) != 0) {
        ok = 0;
        e = errno;
    }
    if (!ok) {
        unlink(tmp);
        free(tmp);
        return mpt_fail(err, MPT_ERR_RUN, "%s: writing failed (%s); check free disk space and "
                        "permissions", path, strerror(e));
    }
    free(tmp);
    return MPT_OK;
}
