/* mpi_decode.c — the key/value-cache decoder (model/gpt_decode.h) on tp x pp layouts under
 * mpirun (tests/t_generate.sh runs it on 2 ranks as tp 2 and as pp 2, and on 4 as tp 2 x pp 2):
 * usage `mpi_decode TP`, world size = TP x P. Every rank builds the whole model's seeded
 * weights (scaled to a trained model's std, as test_decode does) and takes its shard of them
 * (mpt_tp_extract), as train/generator.c does with a checkpoint. Two layouts of the world:
 *   - tp x dp P (pipeline 1; the dp replicas never talk): the training forward (mpt_gpt_forward)
 *     over all T tokens, every row of logits all-gathered over tp, against the decoder fed one
 *     token at a time: equal within 1e-5 of the logits' scale (the decoder's GEMVs and loop
 *     attention against the forward's GEMMs and blocked attention add in other orders; the tp
 *     sums happen at the same places in both);
 *   - tp x pp P: the decoder's logits on the last stage, the stages handing the token's hidden
 *     state on as the generator does, equal the pipeline-1 decoder's bit for bit (the same
 *     operations in the same order).
 * Dense, and Mixture-of-Experts (4 experts, top-2, every 2nd block; all experts on every rank,
 * dropless). Every rank calls everything. */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "comm/comm.h"
#include "core/rng.h"
#include "model/gpt.h"
#include "model/gpt_decode.h"
#include "parallel/groups.h"
#include "parallel/partition.h"
#include "parallel/placement.h"
#include "parallel/tp.h"

enum { TAG_ = 77, T_ = 16, V_ = 100 };

typedef struct shard_ {
    mpt_groups g;
    mpt_gpt m;
} shard_;

/* This rank's shard of the model c under layout (tp, dp, pp), weights from full. */
static void shard_init_(shard_ *s, mpt_comm *world, const mpt_config *c, const mpt_gpt *full,
                        int tp, int dp, int pp, int flags, mpt_arena *arena) {
    mpt_error err = {0};
    memset(s, 0, sizeof *s);
    mpt_layout lay = mpt_layout_make(tp, 1, dp, pp, 1);
    CHECK(mpt_groups_init(&s->g, &lay, world, &err) == MPT_OK, "groups: %s", err.msg);
    int layers[64];
    CHECK(mpt_partition(c, c->n_positions, pp, "uniform", layers, NULL, NULL, &err) == MPT_OK,
          "partition: %s", err.msg);
    mpt_placement pl = s->g.place;
    mpt_placement_set_layers(&pl, layers);
    mpt_par_ops ops; /* copied by the model; its context lives in s->g */
    mpt_tp_ops(&ops, &s->g.dim[MPT_DIM_TP]);
    mpt_gpt_place place = mpt_placement_gpt(&pl, &ops, 0, MPT_RECOMPUTE_NONE);
    CHECK(mpt_gpt_init(&s->m, c, 1, c->n_positions, flags, 1, &place, arena, &err) == MPT_OK,
          "shard init: %s", err.msg);
    mpt_tp_extract(&s->m.pt, &full->pt, full->params, s->m.params);
}

static void shard_free_(shard_ *s) {
    mpt_gpt_free(&s->m);
    mpt_groups_free(&s->g);
}

/* The tokens through s's decoder (its stage's blocks; the hidden state received from the
 * previous stage and sent to the next); on the last stage the logits (T_, V_) into out. */
static void decode_(shard_ *s, const int32_t *tok, float *out) {
    mpt_error err = {0};
    mpt_decode d;
    CHECK(mpt_decode_init(&d, &s->m, &err) == MPT_OK, "decode init: %s", err.msg);
    mpt_comm *pp = &s->g.dim[MPT_DIM_PP];
    size_t D = (size_t)s->m.cfg.d_model;
    int ok = 1;
    for (int t = 0; t < T_ && ok; t++) {
        const float *lg = NULL;
        ok = (s->m.first || mpt_recv(pp, d.x, D, pp->rank - 1, TAG_, &err) == MPT_OK) &&
             mpt_decode_step(&d, tok[t], &lg, &err) == MPT_OK &&
             (s->m.last || mpt_send(pp, d.x, D, pp->rank + 1, TAG_, &err) == MPT_OK);
        if (ok && lg) memcpy(out + (size_t)t * V_, lg, V_ * sizeof(float));
    }
    CHECK(ok, "decode step: %s", err.msg);
    mpt_decode_free(&d);
}

static void run_(mpt_comm *world, int tp, int experts) {
    int p = world->size / tp;
    mpt_error err = {0};
    mpt_config c;
    mpt_config_preset(&c, "tiny", &err);
    c.n_layer = 4;
    c.d_model = 64;
    c.n_head = 4;
    c.n_positions = T_;
    c.vocab = V_;
    c.ffn = 0;
    c.experts = experts;
    c.top_k = 2;
    c.moe_every = 2;
    c.padded_vocab = 0;
    CHECK(mpt_config_finish(&c, 64 * tp, &err) == MPT_OK, "config: %s", err.msg);
    mpt_arena arena;
    mpt_arena_init(&arena, 0);
    mpt_gpt full; /* the whole model's weights, on every rank */
    memset(&full, 0, sizeof full);
    CHECK(mpt_gpt_init(&full, &c, 1, T_, MPT_GPT_INFER | MPT_GPT_NO_ACTS, 1, NULL, &arena,
                       &err) == MPT_OK, "full init: %s", err.msg);
    mpt_params_init_values(&full.pt, full.params, 7);
    for (size_t i = 0; i < full.pt.total; i++) full.params[i] *= 5.0f;
    int32_t tok[T_];
    uint64_t key = mpt_rng_key(5, "mpi_decode");
    for (int t = 0; t < T_; t++) tok[t] = (int32_t)(mpt_rng_uniform(key, (uint64_t)t) * V_) % V_;
    size_t n = (size_t)T_ * V_;
    float *fwd = calloc(n, sizeof *fwd), *dec = calloc(n, sizeof *dec);
    float *row = malloc((size_t)c.padded_vocab * sizeof *row);
    /* pipeline 1: the training forward against the decoder */
    shard_ a;
    shard_init_(&a, world, &c, &full, tp, p, 1, MPT_GPT_INFER, &arena);
    CHECK(mpt_gpt_forward(&a.m, tok, NULL, 1, T_, 0.0f, NULL, &err) == MPT_OK, "forward: %s",
          err.msg);
    for (int t = 0; t < T_; t++) {
        const float *lg = a.m.cur->a[MPT_ACT_LOGITS] + (size_t)t * a.m.Vl;
        if (tp > 1) {
            CHECK(a.m.ops.gather_seq(a.m.ops.ctx, lg, row, (size_t)a.m.Vl, &err) == MPT_OK,
                  "gather: %s", err.msg);
            lg = row;
        }
        memcpy(fwd + (size_t)t * V_, lg, V_ * sizeof(float));
    }
    decode_(&a, tok, dec);
    double scale = 0.0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(fwd[i]));
    char name[128];
    snprintf(name, sizeof name, "tp %d, %d experts, rank %d: decoder = training forward (|max| "
             "%.1f)", tp, experts, world->rank, scale);
    check_close(name, dec, fwd, n, 1e-5, scale);
    shard_free_(&a);
    if (p > 1) { /* tp x pp: the stages' decoder = the pipeline-1 decoder, bit for bit */
        shard_ b;
        float *got = calloc(n, sizeof *got);
        shard_init_(&b, world, &c, &full, tp, 1, p, MPT_GPT_INFER | MPT_GPT_NO_ACTS, &arena);
        decode_(&b, tok, got);
        if (b.m.last)
            CHECK(memcmp(got, dec, n * sizeof *got) == 0, "tp %d pp %d, %d experts, rank %d: "
                  "the last stage's logits = pipeline 1's, bit for bit", tp, p, experts,
                  world->rank);
        shard_free_(&b);
        free(got);
    }
    mpt_gpt_free(&full);
    free(fwd);
    free(dec);
    free(row);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    mpt_comm world;
    mpt_error err = {0};
    CHECK(mpt_comm_world(&world, &err) == MPT_OK, "world: %s", err.msg);
    int tp = argc > 1 ? atoi(argv[1]) : 1;
    if (tp >= 1 && world.size % tp == 0) {
        run_(&world, tp, 0);
        run_(&world, tp, 4);
    } else {
        CHECK(0, "usage: mpi_decode TP (the world size a multiple of TP)");
    }
    mpt_comm_free(&world);
    int rc = check_finish();
    MPI_Finalize();
    return rc;
}
