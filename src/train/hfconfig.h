/* hfconfig.h — Hugging Face GPT2Config JSON (config.json) <-> mpt_config (CONTRACT §3).
 *
 * Keys read: model_type (must be "gpt2" when present), vocab_size, n_positions, n_embd, n_layer,
 * n_head, n_inner (null or absent: 4·n_embd), activation_function (gelu_new or
 * gelu_pytorch_tanh: both are the tanh GELU), layer_norm_epsilon (must be 1e-5),
 * tie_word_embeddings (default true), and our MoE keys (model/moe.h): n_experts (E, 0 = dense),
 * top_k (K), moe_layer_freq (block i is MoE when i % freq == 0, default 1),
 * moe_capacity_factor (0 = dropless), moe_aux_loss_coef (default 0.01) and moe_z_loss_coef
 * (default 0); transformers keeps unknown keys as attributes. A key that is absent
 * takes the GPT2Config default, as transformers does (save_pretrained leaves out values equal
 * to the defaults), so the defaults are those of the "gpt2-124m" preset. Options that change
 * the math (scale_attn_weights false, scale_attn_by_inverse_layer_idx true) are refused.
 * The same reader serves `--model FILE.json`. padded_vocab is left 0 for the caller
 * (mpt_config_finish sets it); other checks of the numbers are mpt_config_finish's.
 *
 * Writing emits architectures ["GPT2LMHeadModel"], model_type "gpt2", the sizes, n_inner,
 * activation_function "gelu_new", layer_norm_epsilon 1e-5, tie_word_embeddings, zero dropout
 * probabilities (the model has no dropout), and the MoE keys when the model is MoE.
 */
#ifndef MPT_HFCONFIG_H
#define MPT_HFCONFIG_H

#include "core/status.h"
#include "model/config.h"

/* Parses JSON text (len bytes) into cfg; `what` names the source in messages. */
mpt_status mpt_hfconfig_parse(const char *text, size_t len, const char *what, mpt_config *cfg,
                              mpt_error *err);
/* Reads the file at path into cfg. Errors name the file; all of them are MPT_ERR_INPUT except
 * running out of memory. */
mpt_status mpt_hfconfig_read(const char *path, mpt_config *cfg, mpt_error *err);
/* The JSON text of cfg (indented, newline-terminated), malloc'd: the caller frees it. NULL when
 * out of memory. */
char *mpt_hfconfig_to_json(const mpt_config *cfg);
/* Writes cfg to path (created or truncated); with do_fsync the file reaches the disk first. */
mpt_status mpt_hfconfig_write(const char *path, const mpt_config *cfg, int do_fsync,
                              mpt_error *err);

#endif
