/* params.h — the table of a model's tensors and where each lives in one flat fp32 buffer.
 *
 * Order (layer-major, so that one layer is one contiguous slice for pipeline stages, ZeRO-3
 * gathers and gradient buckets): wte, wpe, then per layer i the 12 tensors of block i in
 * Hugging Face order (ln_1.w/b, c_attn.w/b, attn.c_proj.w/b, ln_2.w/b, c_fc.w/b, mlp.c_proj.w/b),
 * then ln_f.weight, ln_f.bias, then lm_head.weight when untied.
 * Names and shapes are the Hugging Face GPT-2 ones (CONTRACT §3); wte (and lm_head) are stored
 * with padded_vocab rows, the first `vocab` of which are the checkpoint's. Gradients and AdamW
 * state use the same layout in buffers of their own. */
#ifndef MPT_PARAMS_H
#define MPT_PARAMS_H

#include <stddef.h>

#include "core/dtype.h"
#include "core/status.h"
#include "model/config.h"

/* How a rank's stored tensor relates to the full one under tensor parallelism (tp ranks):
 *   NONE  the whole tensor (replicated on every tp rank)
 *   ROWS  a block of rows: rank r holds rows [r*rows, (r+1)*rows) (1-D tensors: elements);
 *         rows past shape[0] are padding (the padded vocabulary)
 *   COLS  a block of columns [r*cols, (r+1)*cols) of every row
 *   QKV   c_attn: in each of the q, k and v thirds, the block of columns (1-D: elements) of
 *         this rank's heads: [part*D + r*D/tp, part*D + (r+1)*D/tp), part = 0, 1, 2 */
typedef enum mpt_split { MPT_SPLIT_NONE, MPT_SPLIT_ROWS, MPT_SPLIT_COLS, MPT_SPLIT_QKV } mpt_split;

typedef struct mpt_tensor {
    char name[96];    /* e.g. "transformer.h.3.attn.c_attn.weight" */
    int ndim;         /* 1 or 2 */
    size_t shape[2];  /* checkpoint shape (unpadded, full); shape[1] = 1 when ndim == 1 */
    size_t rows, cols;/* stored shape on this rank (rows include padding); 1-D: (n, 1) */
    mpt_split split;
    mpt_dtype dtype;  /* element type in memory (MPT_F32 for every tensor today; checkpoint and
                       * communication code read it rather than assume fp32) */
    size_t numel;     /* elements stored in memory: rows * cols */
    size_t offset;    /* of element 0 in the flat buffer */
    int layer;        /* block index in this table (0.. n_layer-1), or -1 for embeddings /
                       * final LayerNorm / head; the name carries the model-wide index */
    int full_id;      /* index of the same tensor in the whole model's table (tp 1, one stage) */
    int is_copy;      /* the last pipeline stage's copy of the tied wte (the first stage's wte
                       * is the one a checkpoint takes) */
    int decay;        /* AdamW weight decay applies (ndim >= 2) */
    int expert;       /* model-wide expert index of an MoE expert's tensor, else -1 */
    float init_std;   /* > 0: N(0, init_std); == 0: constant init_value */
    float init_value;
} mpt_tensor;

/* Which tensors a block has, for code that walks one layer: index into mpt_layer_tensors. */
enum mpt_layer_slot {
    MPT_LN1_W, MPT_LN1_B, MPT_QKV_W, MPT_QKV_B, MPT_ATTPROJ_W, MPT_ATTPROJ_B,
    MPT_LN2_W, MPT_LN2_B, MPT_FC_W, MPT_FC_B, MPT_FCPROJ_W, MPT_FCPROJ_B, MPT_LAYER_SLOTS
};

/* Units: the pieces that become ready together in backward and are gathered together by
 * ZeRO-3. Unit 0 = embeddings (wte, wpe), units 1..L = blocks 0..L-1, unit L+1 = final
 * (ln_f and an untied lm_head). In the flat buffer the units follow each other in this order,
 * each padded with zeros to a multiple of `unit_align` elements (so a unit splits evenly over
 * the data-parallel ranks); the padding belongs to no tensor and stays zero. */
typedef struct mpt_param_table {
    mpt_tensor *t;   /* owned, n entries */
    size_t n;
    size_t total;    /* elements in the flat buffer, padding included */
    int n_units;     /* L + 2 */
    size_t *unit_begin, *unit_end; /* owned, n_units each: [begin, end) in the flat buffer */
    size_t unit_align;
    size_t *unit_xbegin; /* owned, n_units: where unit u's expert part begins (an MoE block's
                          * experts, after its router, start at a multiple of unit_align, so
                          * ZeRO can shard them over their own group: parallel/dp.h), or
                          * unit_end[u] when the unit holds no expert */
    int tp, tp_rank;  /* tensor-parallel split this table describes (1, 0: whole tensors) */
    int first_layer;  /* model-wide index of this table's block 0 (pipeline stages) */
    int has_embed;    /* holds wte and wpe (unit 0 not empty): the first pipeline stage */
    int has_head;     /* holds ln_f and the head (the last unit not empty): the last stage */
    int n_layer;
    size_t wte, wpe, lnf_w, lnf_b, lm_head;   /* indices into t (lm_head = wte when tied) */
    size_t *layer;   /* owned: layer[i*MPT_LAYER_SLOTS + slot] = index into t. In an MoE block
                      * the MLP slots (MPT_FC_W .. MPT_FCPROJ_B) are the tensors of this rank's
                      * first expert; local expert j's are 4*j entries further on */
    size_t *router;  /* owned, n_layer: index into t of block i's router [D, E], or SIZE_MAX for
                      * a dense block */
    int ep, ep_rank;      /* expert-parallel split (1, 0: every expert here) */
    int n_experts_local;  /* E / ep: this rank holds experts [ep_rank*El, (ep_rank+1)*El) */
} mpt_param_table;

/* Units unpadded (unit_align 1). */
mpt_status mpt_params_build(mpt_param_table *pt, const mpt_config *c, mpt_error *err);
/* unit_align >= 1: each unit's length is rounded up to a multiple of it. */
mpt_status mpt_params_build_aligned(mpt_param_table *pt, const mpt_config *c, size_t unit_align,
                                    mpt_error *err);
/* The table of tensor-parallel rank tp_rank of tp (Megatron split, see mpt_split; needs
 * n_head, ffn and padded_vocab divisible by tp, MPT_ERR_INPUT naming the numbers otherwise) for
 * one pipeline stage: blocks [first_layer, first_layer + n_layers), with the
 * embeddings when has_embed and ln_f + head when has_head. Units keep their meaning (unit 0
 * embeddings, 1..n_layers blocks, last the final unit), possibly empty. A tied head on a stage
 * without the embeddings gets its own copy of wte (is_copy) in the final unit. */
mpt_status mpt_params_build_stage(mpt_param_table *pt, const mpt_config *c, int tp, int tp_rank,
                                  int first_layer, int n_layers, int has_embed, int has_head,
                                  size_t unit_align, mpt_error *err);
/* The same with expert parallelism: in MoE blocks (model/moe.h) this rank holds the router
 * and experts [ep_rank*E/ep, (ep_rank+1)*E/ep) (whole tensors, replicated over tp); E % ep == 0
 * is required (MPT_ERR_INPUT). An MoE block's tensors are ln_1, attn, ln_2 as in a dense block,
 * then mlp.router.weight [D, E], then per expert e mlp.experts.{e}.c_fc.weight [D, F], .bias,
 * .c_proj.weight [F, D], .bias (initialised like the dense MLP's). */
mpt_status mpt_params_build_stage_ep(mpt_param_table *pt, const mpt_config *c, int tp,
                                     int tp_rank, int ep, int ep_rank, int first_layer,
                                     int n_layers, int has_embed, int has_head,
                                     size_t unit_align, mpt_error *err);
/* The same for a rank holding several model chunks (interleaved pipeline schedules): local
 * block i is model block first_layer + (i / chunk_layers) * chunk_stride + i % chunk_layers.
 * chunk_layers <= 0: one contiguous chunk (mpt_params_build_stage_ep); ep as there. */
mpt_status mpt_params_build_chunks(mpt_param_table *pt, const mpt_config *c, int tp, int tp_rank,
                                   int ep, int ep_rank, int first_layer, int n_layers,
                                   int chunk_layers, int chunk_stride, int has_embed,
                                   int has_head, size_t unit_align, mpt_error *err);
/* Index in the full (checkpoint-shaped, row-major) tensor of stored element k of t on tensor-
 * parallel rank `rank`, or SIZE_MAX for a padding element. */
size_t mpt_tensor_full_index(const mpt_tensor *t, int tp, int rank, size_t k);
/* The unit a tensor belongs to. */
int mpt_tensor_unit(const mpt_param_table *pt, const mpt_tensor *t);
void mpt_params_free(mpt_param_table *pt);
/* NULL when absent. */
const mpt_tensor *mpt_params_find(const mpt_param_table *pt, const char *name);
/* Elements of the checkpoint form of t (shape[0]*shape[1]): the first ones of its region. */
size_t mpt_tensor_ckpt_numel(const mpt_tensor *t);

#endif
