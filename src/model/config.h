/* config.h — the GPT model's hyper-parameters (CONTRACT §2) and its presets.
 * Hugging Face GPT2Config JSON (config.json) is read and written by train/hfconfig.c. */
#ifndef MPT_CONFIG_H
#define MPT_CONFIG_H

#include "core/status.h"

typedef struct mpt_config {
    int n_layer;      /* L */
    int n_head;       /* H */
    int d_model;      /* D (n_embd) */
    int n_positions;  /* rows of wpe: the longest sequence the model takes */
    int vocab;        /* V: real vocabulary (rows of wte in a checkpoint) */
    int padded_vocab; /* Vp >= V: rows of wte in memory; padded rows never enter the softmax */
    int ffn;          /* F: MLP inner width (n_inner), default 4*D */
    int tied;         /* 1: output head is wte; 0: separate lm_head.weight */
    int experts;      /* E: 0 = dense MLP */
    int top_k;
    float aux_loss_coef;
    float capacity_factor;
} mpt_config;

/* Fills c from a preset: "tiny" (L2 D64 H4 T64, byte vocab), "small" (L6 D384 H6 T256, byte
 * vocab: the benchmark model), "gpt2-124m" (L12 D768 H12 T1024 V50257). */
mpt_status mpt_config_preset(mpt_config *c, const char *name, mpt_error *err);
/* Checks the numbers are sane (positive, D % H == 0, ...) and sets padded_vocab if 0:
 * V rounded up to a multiple of pad_multiple. Messages name the offending numbers. */
mpt_status mpt_config_finish(mpt_config *c, int pad_multiple, mpt_error *err);
/* Parameters in the model as a checkpoint holds them (unpadded). */
long long mpt_config_param_count(const mpt_config *c);

#endif
