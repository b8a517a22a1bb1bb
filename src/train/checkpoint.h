/* checkpoint.h — checkpoint directories (CONTRACT §3, §6).
 *
 * A checkpoint is a directory:
 *   config.json          Hugging Face GPT2Config keys (train/hfconfig.h)
 *   model.safetensors    full fp32 weights, Hugging Face GPT-2 names and unpadded shapes
 *                        (lm_head.weight only when untied)
 *   optimizer.safetensors  AdamW first/second moments, names "exp_avg.<name>" / "exp_avg_sq.<name>"
 *   2bw_stash.safetensors  optional (--schedule 2bw): the previous weight version W(t-1),
 *                        names "stash.<name>", so that a resumed run continues exactly
 *   trainer_state.json   step, seed, data position, RNG state, and the run's options
 *   manifest.json        size and XXH3-64 checksum of every other file
 * Saving writes DIR/step_NNNNNN.tmp-<pid>/, fsyncs every file and the directory, renames it to
 * DIR/step_NNNNNN/, then atomically re-points the symlink DIR/latest (new symlink + rename),
 * and deletes the oldest step_ directories beyond `keep` (keep <= 0 keeps all).
 * A Hugging Face directory (config.json + model.safetensors, no manifest) loads weights only.
 * Every failure names the file and the problem; corrupt or mismatched input is MPT_ERR_INPUT.
 * All tensors here are full (layout-free); parallel code gathers/scatters around these calls.
 *
 * Streaming: a training run never holds a whole model outside its own buffers. Saving goes
 * through a writer session (mpt_checkpoint_begin / _put / _commit) that takes the tensors' data
 * in file order in pieces of any size; loading through a reader (mpt_checkpoint_open / _read)
 * that reads any range of a tensor with pread. Both pass through a staging buffer of bounded
 * size (mpt_checkpoint_buffers: two blocks of mpt_checkpoint_stage_elems floats, workspace,
 * in the memory plan). The whole-buffer mpt_checkpoint_save / _load are built on them.
 */
#ifndef MPT_CHECKPOINT_H
#define MPT_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include <limits.h>

#include "core/buflist.h"
#include "core/status.h"
#include "model/config.h"
#include "model/params.h"
#include "train/safetensors.h"

typedef struct mpt_train_state {
    long step;              /* optimizer steps completed */
    uint64_t seed;
    uint64_t rng_counter;   /* position of the run's counter-based RNG stream */
    char options_json[4096];/* the run's options as a JSON object text (informational), may be "" */
} mpt_train_state;

/* Writes a checkpoint of step st->step under root (see above). params/m/v are flat buffers laid
 * out by pt; m and v may be NULL (weights only: no optimizer.safetensors). On success, when
 * out_dir is not NULL, the final step directory is written into it. */
mpt_status mpt_checkpoint_save(const char *root, int keep, const mpt_config *cfg,
                               const mpt_param_table *pt, const float *params, const float *m,
                               const float *v, const mpt_train_state *st, char *out_dir,
                               size_t out_dir_size, mpt_error *err);

/* ---- staging: the bound on a checkpoint's transient memory ---- */

/* Elements of one staging block for the whole-model table `full`: a piece of a tensor that
 * goes through the staging at once is a run of whole rows (a 1-D tensor is one row), so a
 * block holds max(2 x the widest row, min(1 Mi, the largest tensor)) floats: at most
 * max(8 x widest row, 4 MiB) bytes, independent of the model's size otherwise. */
size_t mpt_checkpoint_stage_elems(const mpt_param_table *full);
/* Adds the two staging blocks (workspace, f32; "ckpt_stage_in" and "ckpt_stage_out") to l with
 * destinations a and b (NULL in a plan). */
void mpt_checkpoint_buffers(const mpt_param_table *full, mpt_buflist *l, float **a, float **b);

/* ---- streaming save ---- */

/* Tensor data arrive in file order: kind 0 (parameters) for every tensor of pt in table
 * order, then kinds 1 and 2 (exp_avg, exp_avg_sq) when with_opt, then kind 3 (the stash) when
 * with_stash (set after mpt_checkpoint_begin, before the data); each tensor's checkpoint form
 * (mpt_tensor_ckpt_numel elements, row-major, no padding rows). Local (one writer rank). */
typedef struct mpt_ckpt_writer {
    const mpt_param_table *pt;  /* not owned */
    const mpt_config *cfg;      /* not owned */
    int keep, with_opt, with_stash;
    int file;                   /* 0 writing the model, 1 the optimizer state, 2 the stash,
                                 * 3 all data done */
    int have_tmp;               /* tmp exists and is ours to remove on failure */
    char root[PATH_MAX], name[64], tmp[PATH_MAX], final[PATH_MAX];
    mpt_st_writer out;          /* the file being written */
    size_t left;                /* elements still due in it */
    const char *files[6];
    size_t nfiles;
} mpt_ckpt_writer;

/* Creates root/step_NNNNNN.tmp-<pid>/ with config.json and opens model.safetensors. */
mpt_status mpt_checkpoint_begin(mpt_ckpt_writer *w, const char *root, int keep, long step,
                                const mpt_config *cfg, const mpt_param_table *pt, int with_opt,
                                mpt_error *err);
/* Appends n elements of the data in file order (may span tensors and files). */
mpt_status mpt_checkpoint_put(mpt_ckpt_writer *w, const float *data, size_t n, mpt_error *err);
/* After every element: trainer state, manifest, fsync, rename, `latest`, pruning (see above).
 * Ends the session either way. */
mpt_status mpt_checkpoint_commit(mpt_ckpt_writer *w, const mpt_train_state *st, char *out_dir,
                                 size_t out_dir_size, mpt_error *err);
/* Ends a session without publishing: removes the temporary directory. Safe twice. */
void mpt_checkpoint_abort(mpt_ckpt_writer *w);

/* ---- directories whose data files the caller writes (sharded saves, ckpt_shard.h) ---- */

/* Creates root/step_NNNNNN.tmp-<pid>/ (pid of the caller) holding config.json; its path into
 * tmp. Local (one rank). */
mpt_status mpt_checkpoint_begin_dir(const char *root, long step, const mpt_config *cfg,
                                    char *tmp, size_t tmp_size, mpt_error *err);
/* After the caller wrote and synced files[0..n) into tmp: trainer state, manifest over
 * config.json, the state and those files, fsync, rename to root/step_NNNNNN, `latest`,
 * pruning; tmp is removed on failure. Local (one rank). */
mpt_status mpt_checkpoint_publish(const char *root, int keep, long step, const char *tmp,
                                  const char *const *files, size_t n, const mpt_train_state *st,
                                  char *out_dir, size_t out_dir_size, mpt_error *err);

/* A file's size and XXH3-64 checksum, computed by the rank that wrote it (known 0: not given;
 * the manifest writer then reads the file to hash it). */
typedef struct mpt_ckpt_file_hash {
    int known;
    uint64_t size, xxh3_64;
} mpt_ckpt_file_hash;
/* out = the size and checksum of the file at path (known 1). Local. */
mpt_status mpt_checkpoint_hash_file(const char *path, mpt_ckpt_file_hash *out, mpt_error *err);
/* mpt_checkpoint_publish where known[0..n) (or NULL) gives the size and checksum of files[i]
 * when known[i].known: a sharded save's shards are hashed by the ranks that wrote them, so
 * rank 0 never reads another rank's shard. Local (one rank). */
mpt_status mpt_checkpoint_publish_hashed(const char *root, int keep, long step, const char *tmp,
                                         const char *const *files,
                                         const mpt_ckpt_file_hash *known, size_t n,
                                         const mpt_train_state *st, char *out_dir,
                                         size_t out_dir_size, mpt_error *err);

/* Removes a temporary step directory left by a failed sharded save. Local. */
void mpt_checkpoint_remove_dir(const char *tmp);

/* ---- streaming load ---- */

typedef struct mpt_ckpt_reader {
    const mpt_param_table *pt;   /* not owned */
    int managed, has_opt;        /* ours (manifest verified); optimizer state present */
    int has_stash;               /* 2bw's stash present (listed in the manifest; not sharded) */
    mpt_safetensors f[3];        /* model, optimizer, stash (open when asked for and present) */
    const mpt_st_info **src;     /* owned: [kind * pt->n + i] = tensor i's kind in its file */
    struct mpt_shards *sh;       /* owned: a sharded checkpoint's slices (train/ckpt_shard.h),
                                  * read in place of the two files */
} mpt_ckpt_reader;

/* Verifies the manifest (when there is one), opens model.safetensors (and, when want_opt and
 * present, optimizer.safetensors and 2bw_stash.safetensors) and checks every name, shape and dtype against pt, as
 * mpt_checkpoint_load does; reads no tensor data except a tied model's lm_head check.
 * A sharded checkpoint (shards.json, train/ckpt_shard.h; its manifest is required) opens its
 * index instead, checked against pt (the whole-model table). */
mpt_status mpt_checkpoint_open(mpt_ckpt_reader *rd, const char *dir, const mpt_param_table *pt,
                               int want_opt, mpt_error *err);
/* out[0..n) = elements [first, first + n) of the checkpoint form of tensor i of kind (0 params,
 * 1 exp_avg, 2 exp_avg_sq, 3 the 2bw stash), as fp32. */
mpt_status mpt_checkpoint_read(const mpt_ckpt_reader *rd, int kind, size_t i, size_t first,
                               size_t n, float *out, mpt_error *err);
void mpt_checkpoint_close(mpt_ckpt_reader *rd);
/* Reads dir/trainer_state.json. */
mpt_status mpt_checkpoint_read_state(const char *dir, mpt_train_state *st, mpt_error *err);

/* Resolves what --resume / --init-from name: a step directory or one with a config.json is
 * itself; a directory with a `latest` symlink means its target. Writes the directory to out. */
mpt_status mpt_checkpoint_resolve(const char *path, char *out, size_t out_size, mpt_error *err);

/* Reads dir/config.json into cfg (padded_vocab left 0 for the caller to set). */
mpt_status mpt_checkpoint_read_config(const char *dir, mpt_config *cfg, mpt_error *err);

/* Loads dir into the flat buffers laid out by pt (built from a config equal in shape to the
 * checkpoint's: mismatches are MPT_ERR_INPUT naming the tensor and both shapes). Padding rows are
 * zeroed. Accepts names with or without the "transformer." prefix, ignores attention mask
 * buffers (".attn.bias", ".attn.masked_bias"), converts F16/BF16/F64 to fp32. With a manifest
 * every checksum is verified first. m, v, st may be NULL; if m/v are given but the directory
 * has no optimizer state, *has_optimizer is set to 0 (and m, v zeroed), else 1. */
mpt_status mpt_checkpoint_load(const char *dir, const mpt_param_table *pt, float *params,
                               float *m, float *v, int *has_optimizer, mpt_train_state *st,
                               mpt_error *err);

#endif
