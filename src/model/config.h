/* config.h — the GPT model's hyper-parameters (CONTRACT §2) and its presets.
 * Hugging Face GPT2Config JSON (config.json) is read and written by train/hfconfig.c. */
#ifndef MPT_CONFIG_H
#define MPT_CONFIG_H

#include "core/status.h"

/* The largest sizes a model may have. Each is far beyond what trains on one node, and small
 * enough that every per-tensor product of two of them (V x D, D x F, T x D, ...) fits in 64
 * bits many times over and 4 x d-model fits an int. mpt_config_finish enforces them, whether
 * the numbers came from the command line or a config.json. */
#define MPT_MAX_LAYERS 1024
#define MPT_MAX_D_MODEL 65536
#define MPT_MAX_HEADS 1024
#define MPT_MAX_POSITIONS 1048576  /* 2^20 */
#define MPT_MAX_VOCAB 65536        /* a uint16 token file holds ids < 65536 */
#define MPT_MAX_FFN 1048576        /* 2^20 (default 4 x d-model <= 262144) */
#define MPT_MAX_EXPERTS 1024

typedef struct mpt_config {
    int n_layer;      /* L */
    int n_head;       /* H */
    int d_model;      /* D (n_embd) */
    int n_positions;  /* rows of wpe: the longest sequence the model takes */
    int vocab;        /* V: real vocabulary (rows of wte in a checkpoint) */
    int padded_vocab; /* Vp >= V: rows of wte in memory; padded rows never enter the softmax */
    int ffn;          /* F: MLP inner width (n_inner), default 4*D */
    int tied;         /* 1: output head is wte; 0: separate lm_head.weight */
    int experts;      /* E: 0 = dense MLP; > 0: Mixture-of-Experts blocks (model/moe.h) */
    int top_k;        /* K: experts per token, 1 <= K <= E */
    int moe_every;    /* block i is MoE when i % moe_every == 0 (Megatron's layer frequency);
                       * 0 is taken as 1 */
    float aux_loss_coef;   /* load-balancing loss weight (Switch form), default 0.01 */
    float capacity_factor; /* 0: dropless; c > 0: each expert takes ceil(c*N*K/E) assignments */
    float z_loss_coef;     /* router z-loss weight (mean of logsumexp^2), default 0 */
    float dropless_bound;  /* dropless with ep > 1: one rank's experts receive at most
                            * ceil(f*N*K) rows per block and micro-batch (N*K: a rank's own
                            * assignments, its fair share), 1 <= f; 0 or f >= ep: ep*N*K, the
                            * worst case, never exceeded (model/moe.h) */
} mpt_config;

/* 1 when block i (model-wide index) of c is a Mixture-of-Experts block. */
int mpt_config_is_moe_layer(const mpt_config *c, int i);
/* Tensors block i has: 12 dense; an MoE block 8 + router + 4 per expert. */
int mpt_config_layer_tensors(const mpt_config *c, int i);

/* Fills c from a preset: "tiny" (L2 D64 H4 T64, byte vocab), "small" (L6 D384 H6 T256, byte
 * vocab: the benchmark model), "gpt2-124m" (L12 D768 H12 T1024 V50257). */
mpt_status mpt_config_preset(mpt_config *c, const char *name, mpt_error *err);
/* Checks the numbers are sane (positive and within the MPT_MAX_* limits, D % H == 0, ...),
 * sets ffn to 4 x D if 0 and padded_vocab if 0: V rounded up to a multiple of pad_multiple.
 * Messages name the offending numbers. */
mpt_status mpt_config_finish(mpt_config *c, int pad_multiple, mpt_error *err);
/* Parameters in the model as a checkpoint holds them (unpadded). */
long long mpt_config_param_count(const mpt_config *c);

#endif
