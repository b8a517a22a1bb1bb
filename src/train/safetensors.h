/* safetensors.h — reading and writing the safetensors format (Hugging Face).
 *
 * Layout of a file: 8 bytes little-endian header length N, N bytes of JSON header (padded with
 * spaces so the data starts 8-byte aligned), then the data buffer. The header maps each tensor
 * name to {"dtype", "shape", "data_offsets": [begin, end]} (byte offsets into the data buffer)
 * and may hold "__metadata__", an object of string values.
 *
 * Writing takes fp32 tensors only (the checkpoint's dtype) and lays them out in the order given:
 *
 *     mpt_st_entry e[2] = {{"a.weight", 2, {3, 4}, wa}, {"a.bias", 1, {4}, ba}};
 *     mpt_st_meta meta = {"format", "pt"};
 *     st = mpt_safetensors_write("/tmp/x.safetensors", e, 2, &meta, 1, 1, &err);
 *
 * Reading reads the header only (the data stay on disk until asked for, with pread, so reading
 * a large file costs no memory beyond the caller's buffers), checks the header completely (length within the file, every entry
 * well-formed, offsets in bounds, equal to dtype size × elements, no overlaps) and converts
 * F32/F16/BF16/F64 to fp32 on request; other dtypes are accepted in the file (so unrelated
 * buffers do not stop a load) but cannot be read as fp32.
 *
 *     mpt_safetensors f;
 *     if (mpt_safetensors_open(&f, path, &err) != MPT_OK) return err.status;
 *     const mpt_st_info *t = mpt_safetensors_find(&f, "a.weight");
 *     if (t) mpt_safetensors_read_f32(&f, t, out, t->numel, &err);
 *     mpt_safetensors_free(&f);
 *
 * Malformed files are MPT_ERR_INPUT with a message naming the file and the problem; failures of
 * the system (I/O, memory) are MPT_ERR_RUN. Little-endian hosts only (checked at compile time).
 */
#ifndef MPT_SAFETENSORS_H
#define MPT_SAFETENSORS_H

#include <stddef.h>
#include <stdio.h>

#include "core/status.h"

#define MPT_ST_MAX_DIM 8

/* One fp32 tensor to write. Not owned: name and data stay the caller's. */
typedef struct mpt_st_entry {
    const char *name;
    int ndim;                      /* 0..MPT_ST_MAX_DIM (0 = scalar) */
    size_t shape[MPT_ST_MAX_DIM];
    const float *data;             /* shape[0]*...*shape[ndim-1] contiguous elements */
} mpt_st_entry;

/* One "__metadata__" entry (both strings the caller's). */
typedef struct mpt_st_meta {
    const char *key;
    const char *value;
} mpt_st_meta;

typedef enum mpt_st_dtype {
    MPT_ST_F32, MPT_ST_F16, MPT_ST_BF16, MPT_ST_F64,   /* convertible to fp32 */
    MPT_ST_OTHER                                       /* a valid dtype we do not convert */
} mpt_st_dtype;

/* One tensor of an open file. */
typedef struct mpt_st_info {
    char *name;                    /* owned by the mpt_safetensors */
    char dtype_name[8];            /* as in the header, e.g. "BF16" */
    mpt_st_dtype dtype;
    size_t elem_size;              /* bytes per element */
    int ndim;
    size_t shape[MPT_ST_MAX_DIM];
    size_t numel;
    size_t begin, end;             /* byte offsets into the data buffer */
} mpt_st_info;

/* An open file: its descriptor stays open until mpt_safetensors_free. */
typedef struct mpt_safetensors {
    char *path;                    /* owned copy, for messages */
    int fd, has_fd;                /* the open file (owned when has_fd) */
    size_t file_size;
    size_t data_offset;            /* where the data buffer starts in the file */
    size_t data_size;
    mpt_st_info *t;                /* owned, n entries, in header order */
    size_t n;
    mpt_st_meta *meta;             /* owned (keys and values too), n_meta entries */
    size_t n_meta;
} mpt_safetensors;

/* Writes n tensors (and n_meta metadata entries, meta may be NULL) to f. `what` names the
 * destination in messages. Does not close f. */
mpt_status mpt_safetensors_write_stream(FILE *f, const char *what, const mpt_st_entry *e,
                                        size_t n, const mpt_st_meta *meta, size_t n_meta,
                                        mpt_error *err);
/* Creates (truncates) path and writes it; with do_fsync the data reach the disk before this
 * returns. On failure the partial file is removed. */
mpt_status mpt_safetensors_write(const char *path, const mpt_st_entry *e, size_t n,
                                 const mpt_st_meta *meta, size_t n_meta, int do_fsync,
                                 mpt_error *err);

/* Opens and validates path into f (zeroed first; on failure f holds nothing to free, though
 * mpt_safetensors_free on it stays safe). */
mpt_status mpt_safetensors_open(mpt_safetensors *f, const char *path, mpt_error *err);
/* Releases everything f owns; NULL and already-freed are safe. */
void mpt_safetensors_free(mpt_safetensors *f);
/* NULL when absent. */
const mpt_st_info *mpt_safetensors_find(const mpt_safetensors *f, const char *name);
/* The metadata value for key, or NULL. */
const char *mpt_safetensors_meta(const mpt_safetensors *f, const char *key);
/* Copies tensor t (of f) into out[0..n) as fp32; n must equal t->numel. */
mpt_status mpt_safetensors_read_f32(const mpt_safetensors *f, const mpt_st_info *t, float *out,
                                    size_t n, mpt_error *err);
/* Copies elements [first, first + n) of tensor t (flat, row-major) into out[0..n) as fp32,
 * reading just those bytes of the file (converted through a small stack buffer). */
mpt_status mpt_safetensors_read_f32_range(const mpt_safetensors *f, const mpt_st_info *t,
                                          size_t first, size_t n, float *out, mpt_error *err);

/* A file written as a stream: the header first (from entries whose data may be NULL), then the
 * tensors' data in entry order, in pieces of any size:
 *     mpt_st_writer w;
 *     if (mpt_st_writer_open(&w, path, e, n, &meta, 1, &err)) return err.status;
 *     ... mpt_st_writer_put(&w, chunk, count, &err) until every element is written ...
 *     st = mpt_st_writer_close(&w, 1, &err);   // fails unless exactly every element came
 * On any failure (and from mpt_st_writer_abort) the partial file is removed. */
typedef struct mpt_st_writer {
    FILE *f;                       /* owned until close / abort */
    char *path;                    /* owned copy */
    size_t expect, written;        /* data elements in all / so far */
} mpt_st_writer;

mpt_status mpt_st_writer_open(mpt_st_writer *w, const char *path, const mpt_st_entry *e,
                              size_t n, const mpt_st_meta *meta, size_t n_meta, mpt_error *err);
mpt_status mpt_st_writer_put(mpt_st_writer *w, const float *data, size_t n, mpt_error *err);
/* With do_fsync the data reach the disk before this returns. */
mpt_status mpt_st_writer_close(mpt_st_writer *w, int do_fsync, mpt_error *err);
/* Closes and removes the file; safe on a zeroed or closed writer. */
void mpt_st_writer_abort(mpt_st_writer *w);

/* IEEE half and bfloat16 bit patterns to float (exact). */
float mpt_f16_to_f32(unsigned short h);
float mpt_bf16_to_f32(unsigned short h);

#endif
