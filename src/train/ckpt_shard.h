/* ckpt_shard.h — sharded checkpoints: every rank writes the slices it holds to a file of its
 * own, and an index maps the slices to full tensors, so no rank ever stages the whole model and
 * a load reads only the slices that overlap what a rank needs, for any layout.
 *
 * A sharded checkpoint directory (the same crash-safe save as checkpoint.h: temporary
 * directory, fsync, rename, `latest` last):
 *   config.json          Hugging Face GPT2Config keys
 *   shards.json          the index (below)
 *   shard-RRRRR.bin      world rank R's slices: raw little-endian elements, one slice after
 *                        another, each row-major over its own box
 *   trainer_state.json   step, seed, data position, the run's options
 *   manifest.json        size and XXH3-64 checksum of every other file
 * (no model.safetensors: `mptrain convert` turns it into one, see cli/cmd_convert.c).
 *
 * shards.json is generic: nothing in it depends on how a layout splits a tensor.
 *   {"format": "mptrain-shards", "version": 1, "optimizer": true,
 *    "files": ["shard-00000.bin", ...],
 *    "tensors": [{"name": "transformer.h.0.attn.c_attn.weight", "shape": [64, 192],
 *                 "dtype": "F32",
 *                 "slices": [{"kind": "param", "file": 0, "offset": [0, 0],
 *                             "length": [64, 32], "byte": 0}, ...]}, ...]}
 * A slice is a box of a full tensor: per dimension its first index and length; "kind" is
 * "param", "exp_avg" or "exp_avg_sq"; "byte" is where its data start in its file. For every
 * tensor and kind the boxes cover the tensor exactly once (checked on load). */
#ifndef MPT_CKPT_SHARD_H
#define MPT_CKPT_SHARD_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "model/params.h"

#define MPT_SHARD_INDEX_FILE "shards.json"
#define MPT_SHARD_KINDS 3   /* param, exp_avg, exp_avg_sq */

/* One slice: a box of full tensor `tensor` (an index into the whole-model table) of kind, in
 * file `file` from byte `byte`. 1-D tensors are one row: row0 0, nrows 1. */
typedef struct mpt_shard_box {
    int64_t kind, tensor, file;
    int64_t row0, nrows, col0, ncols;
    int64_t byte;
} mpt_shard_box;

/* Writes dir/shards.json for the whole-model table full, nfiles files named shard-RRRRR.bin
 * and boxes[0..n) (any order). Local (one rank). */
mpt_status mpt_shard_write_index(const char *dir, const mpt_param_table *full, int nfiles,
                                 int with_opt, const mpt_shard_box *boxes, size_t n,
                                 mpt_error *err);
/* "shard-RRRRR.bin" of rank r into buf (>= 24 bytes). */
void mpt_shard_file_name(int r, char *buf, size_t size);
/* 1 when dir holds a shards.json. */
int mpt_shard_is_sharded(const char *dir);

typedef struct mpt_shards mpt_shards;
/* Reads and checks dir/shards.json against the whole-model table full: every tensor of full
 * present with its shape, no tensor of another model, every box inside its tensor and its
 * file, the boxes of every tensor and kind covering it exactly once. Opens the shard files.
 * Problems are MPT_ERR_INPUT naming the file, the tensor and what is wrong. */
mpt_status mpt_shards_open(mpt_shards **out, const char *dir, const mpt_param_table *full,
                           mpt_error *err);
int mpt_shards_has_opt(const mpt_shards *s);
/* out[0..n) = elements [first, first + n) (row-major) of full tensor i of kind, read with
 * pread from the slices that overlap them. The first read from a shard file verifies its
 * whole XXH3-64 against manifest.json (listed there, else mpt_shards_open fails): each rank
 * checksums exactly the shards it reads; a mismatch is MPT_ERR_INPUT on that rank. */
mpt_status mpt_shards_read(const mpt_shards *s, int kind, size_t i, size_t first, size_t n,
                           float *out, mpt_error *err);
void mpt_shards_close(mpt_shards *s);

#endif
