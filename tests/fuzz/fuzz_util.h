/* fuzz_util.h — what the libFuzzer targets of tests/fuzz share: a scratch directory of this
 * process (under $TMPDIR, which tests/fuzz/run.sh points at a directory it removes), writing
 * the input to a file there (the readers under test take paths), and FUZZ_CHECK, which ends
 * the run as a crash (libFuzzer saves the input) when a property of a reader fails.
 * Header-only: each target is one .c file plus the library. */
#ifndef MPT_FUZZ_UTIL_H
#define MPT_FUZZ_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FUZZ_CHECK(cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz check failed: %s: ", #cond);                                     \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Creates the process's scratch directory once and writes its path into dir (size >= 4096). */
static inline void fuzz_scratch_dir(char *dir, size_t size) {
    const char *base = getenv("TMPDIR");
    snprintf(dir, size, "%s/mpt-fuzz-XXXXXX", base && base[0] ? base : "/tmp");
    if (!mkdtemp(dir)) {
        perror("fuzz: mkdtemp");
        abort();
    }
}

/* Writes data[0..size) to path (created or truncated). 0 on success. */
static inline int fuzz_write_file(const char *path, const uint8_t *data, size_t size) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t put = size ? fwrite(data, 1, size, f) : 0;
    return (fclose(f) != 0 || put != size) ? -1 : 0;
}

#endif
