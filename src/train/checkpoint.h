/* checkpoint.h — checkpoint directories (CONTRACT §3, §6).
 *
 * A checkpoint is a directory:
 *   config.json          Hugging Face GPT2Config keys (train/hfconfig.h)
 *   model.safetensors    full fp32 weights, Hugging Face GPT-2 names and unpadded shapes
 *                        (lm_head.weight only when untied)
 *   optimizer.safetensors  AdamW first/second moments, names "exp_avg.<name>" / "exp_avg_sq.<name>"
 *   trainer_state.json   step, seed, data position, RNG state, and the run's options
 *   manifest.json        size and XXH3-64 checksum of every other file
 * Saving writes DIR/step_NNNNNN.tmp-<pid>/, fsyncs every file and the directory, renames it to
 * DIR/step_NNNNNN/, then atomically re-points the symlink DIR/latest (new symlink + rename),
 * and deletes the oldest step_ directories beyond `keep` (keep <= 0 keeps all).
 * A Hugging Face directory (config.json + model.safetensors, no manifest) loads weights only.
 * Every failure names the file and the problem; corrupt or mismatched input is MPT_ERR_INPUT.
 * All tensors here are full (layout-free); parallel code gathers/scatters around these calls.
 */
#ifndef MPT_CHECKPOINT_H
#define MPT_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "model/config.h"
#include "model/params.h"

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
