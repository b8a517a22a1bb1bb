/* placement.c — one rank's placement in the layout (see placement.h). Pure arithmetic. */
#include "parallel/placement.h"

#include <string.h>

mpt_status mpt_placement_init(mpt_placement *pl, const mpt_layout *l, int world, int rank,
                              mpt_error *err) {
    memset(pl, 0, sizeof *pl);
    mpt_status st = mpt_layout_check(l, world, err);
    if (st) return st;
    if (rank < 0 || rank >= world)
        return mpt_fail(err, MPT_ERR_INPUT, "rank %d is outside the world of %d ranks", rank,
                        world);
    pl->layout = *l;
    pl->world = world;
    pl->rank = rank;
    pl->coords = mpt_mesh_coords(l, rank);
    pl->stage = pl->coords.c[MPT_DIM_PP];
    pl->stages = l->size[MPT_DIM_PP];
    pl->first = pl->stage == 0;
    pl->last = pl->stage == pl->stages - 1;
    return MPT_OK;
}

void mpt_placement_set_layers(mpt_placement *pl, const int *stage_layers) {
    int first = 0;
    for (int s = 0; s < pl->stage; s++) first += stage_layers[s];
    pl->first_layer = first;
    pl->n_layers = stage_layers[pl->stage];
}

mpt_placement mpt_placement_at_stage(const mpt_placement *pl, int stage, int first_layer,
                                     int n_layers) {
    mpt_placement q = *pl;
    q.coords.c[MPT_DIM_PP] = stage;
    q.rank = mpt_mesh_rank(&q.layout, &q.coords);
    q.stage = stage;
    q.stages = q.layout.size[MPT_DIM_PP];
    q.first = stage == 0;
    q.last = stage == q.stages - 1;
    q.first_layer = first_layer;
    q.n_layers = n_layers;
    return q;
}

mpt_gpt_place mpt_placement_gpt(const mpt_placement *pl, const mpt_par_ops *ops, int sp,
                                int recompute) {
    mpt_gpt_place g = {.ops = ops, .tp = pl->layout.size[MPT_DIM_TP],
                       .tp_rank = pl->coords.c[MPT_DIM_TP], .sp = sp,
                       .first_layer = pl->first_layer,
                       .n_layers = pl->n_layers, .first = pl->first, .last = pl->last,
                       .recompute = recompute, .threads = 1,
                       .cp = pl->layout.size[MPT_DIM_CP], .cp_rank = pl->coords.c[MPT_DIM_CP],
                       .ep = pl->layout.size[MPT_DIM_EP], .ep_rank = pl->coords.c[MPT_DIM_EP]};
    return g;
}
