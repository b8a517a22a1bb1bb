/* placement.h — where one rank sits: its coordinates along tp, cp, dp, pp, ep, the layout's
 * sizes, and its pipeline stage's blocks. Built once from the layout and the world rank (then
 * the pipeline partition's layer counts); the trainer, the memory plan and `generate` read it
 * instead of recomputing coordinates or stage bounds.
 *     mpt_placement pl;
 *     mpt_layout l = mpt_layout_make(tp, 1, dp, pp, 1);
 *     if (mpt_placement_init(&pl, &l, world_size, world_rank, err)) return err->status;
 *     mpt_placement_set_layers(&pl, stage_layers);          // blocks of every stage, in order
 *     mpt_gpt_place gp = mpt_placement_gpt(&pl, &ops, sp, recompute);    // ops: parallel/tp.h
 * Pure (no MPI): every rank computes its own and the others' from the same inputs. */
#ifndef MPT_PLACEMENT_H
#define MPT_PLACEMENT_H

#include "model/gpt.h"
#include "parallel/mesh.h"

typedef struct mpt_placement {
    mpt_layout layout;          /* sizes along tp, cp, dp, pp, ep */
    mpt_coords coords;          /* this rank's index along each */
    int rank, world;            /* world rank and size */
    int stage, stages;          /* pipeline stage (coords pp) and the number of stages */
    int first, last;            /* the stage holds the embeddings / ln_f, the head and the loss */
    int first_layer, n_layers;  /* the stage's blocks [first_layer, first_layer + n_layers); 0, 0
                                 * until mpt_placement_set_layers */
} mpt_placement;

/* Checks the layout against the world size (mpt_layout_check: MPT_ERR_INPUT with a message
 * saying what to change) and the rank, and fills *pl. */
mpt_status mpt_placement_init(mpt_placement *pl, const mpt_layout *l, int world, int rank,
                              mpt_error *err);
/* stage_layers: the blocks of every stage, pl->stages counts in pipeline order. */
void mpt_placement_set_layers(mpt_placement *pl, const int *stage_layers);
/* The placement of the rank that shares every coordinate with pl's but the pipeline one, which
 * is `stage`, holding blocks [first_layer, first_layer + n_layers) (the memory plan of another
 * stage, or of a candidate partition). */
mpt_placement mpt_placement_at_stage(const mpt_placement *pl, int stage, int first_layer,
                                     int n_layers);
/* The model's view of the placement (model/gpt.h): ops is the table of parallel operations
 * (model/parops.h; NULL on one rank, where tp and cp are 1), sp and recompute as the options
 * say; cp and cp_rank from the layout; threads 1 (the caller sets its --threads). */
mpt_gpt_place mpt_placement_gpt(const mpt_placement *pl, const mpt_par_ops *ops, int sp,
                                int recompute);

#endif
