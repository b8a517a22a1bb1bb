/* fuzz_safetensors.c — libFuzzer target: the safetensors reader (train/safetensors.c).
 *
 * The input is a whole file. Opening it must either fail with a message (MPT_ERR_INPUT: every
 * input here is readable, so a failure is the file's fault) or give a header whose every entry
 * lies inside the file's data buffer, has offsets that agree with dtype x shape and overlaps no
 * other; then every readable tensor is read whole and in two halves, which must agree. A header
 * that passed validation but lied shows up as an ASan report, a failed read or a mismatch. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "train/safetensors.h"

static char path_[4200];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    char dir[4096];
    fuzz_scratch_dir(dir, sizeof dir);
    snprintf(path_, sizeof path_, "%s/x.safetensors", dir);
    return 0;
}

static int same_(float a, float b) { return a == b || (isnan(a) && isnan(b)); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (fuzz_write_file(path_, data, size)) return 0;
    mpt_safetensors f;
    mpt_error err = {0};
    mpt_status st = mpt_safetensors_open(&f, path_, &err);
    if (st != MPT_OK) {
        FUZZ_CHECK(st == MPT_ERR_INPUT && err.msg[0], "open failed with status %d, '%s'", st,
                   err.msg);
        mpt_safetensors_free(&f);
        return 0;
    }
    FUZZ_CHECK(f.data_offset <= size && f.data_size == size - f.data_offset,
               "data buffer [%zu, +%zu) in a %zu-byte file", f.data_offset, f.data_size, size);
    for (size_t i = 0; i < f.n; i++) {
        const mpt_st_info *t = &f.t[i];
        FUZZ_CHECK(t->begin <= t->end && t->end <= f.data_size, "tensor %zu at [%zu, %zu)", i,
                   t->begin, t->end);
        FUZZ_CHECK(t->end - t->begin == t->numel * t->elem_size, "tensor %zu: %zu bytes for %zu "
                   "elements of %zu", i, t->end - t->begin, t->numel, t->elem_size);
        for (size_t j = 0; j < i; j++)
            FUZZ_CHECK(f.t[j].begin == f.t[j].end || t->begin == t->end ||
                       f.t[j].end <= t->begin || t->end <= f.t[j].begin,
                       "tensors %zu and %zu overlap", j, i);
        FUZZ_CHECK(mpt_safetensors_find(&f, t->name) == t, "find(%s) is not entry %zu", t->name, i);
        if (t->dtype == MPT_ST_OTHER || t->numel > ((size_t)1 << 20)) continue;
        float *whole = malloc((t->numel + 1) * sizeof *whole);
        float *parts = malloc((t->numel + 1) * sizeof *parts);
        if (!whole || !parts) abort();
        st = mpt_safetensors_read_f32(&f, t, whole, t->numel, &err);
        FUZZ_CHECK(st == MPT_OK, "reading validated tensor %s: %s", t->name, err.msg);
        size_t half = t->numel / 2;
        st = mpt_safetensors_read_f32_range(&f, t, 0, half, parts, &err);
        if (st == MPT_OK)
            st = mpt_safetensors_read_f32_range(&f, t, half, t->numel - half, parts + half, &err);
        FUZZ_CHECK(st == MPT_OK, "reading tensor %s in halves: %s", t->name, err.msg);
        for (size_t k = 0; k < t->numel; k++)
            FUZZ_CHECK(same_(whole[k], parts[k]), "tensor %s element %zu differs", t->name, k);
        /* one past the end must be refused, not read */
        FUZZ_CHECK(mpt_safetensors_read_f32_range(&f, t, t->numel, 1, parts, &err) != MPT_OK,
                   "tensor %s: a range past its end was read", t->name);
        free(whole);
        free(parts);
    }
    for (size_t i = 0; i < f.n_meta; i++)
        FUZZ_CHECK(mpt_safetensors_meta(&f, f.meta[i].key) != NULL, "metadata key lost");
    mpt_safetensors_free(&f);
    mpt_safetensors_free(&f);   /* twice is safe */
    return 0;
}
