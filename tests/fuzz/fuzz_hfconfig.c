/* fuzz_hfconfig.c — libFuzzer target: the JSON model config reader (train/hfconfig.c), which
 * reads a checkpoint's config.json and `--model FILE.json`, and the checks after it
 * (mpt_config_finish, the parameter table).
 *
 * Any input is parsed. A refusal must be MPT_ERR_INPUT with a message. A config that passes
 * mpt_config_finish must build its parameter table, and written back as JSON
 * (mpt_hfconfig_to_json) it must read back to the same config. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "model/config.h"
#include "model/params.h"
#include "train/hfconfig.h"

static int same_config_(const mpt_config *a, const mpt_config *b) {
    return a->n_layer == b->n_layer && a->n_head == b->n_head && a->d_model == b->d_model &&
           a->n_positions == b->n_positions && a->vocab == b->vocab &&
           a->padded_vocab == b->padded_vocab && a->ffn == b->ffn && a->tied == b->tied &&
           a->experts == b->experts && (a->experts == 0 || a->top_k == b->top_k);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mpt_config cfg, again;
    mpt_error err = {0};
    mpt_status st = mpt_hfconfig_parse((const char *)data, size, "fuzz.json", &cfg, &err);
    if (st != MPT_OK) {
        FUZZ_CHECK(st == MPT_ERR_INPUT && err.msg[0], "parse: status %d, '%s'", st, err.msg);
        return 0;
    }
    st = mpt_config_finish(&cfg, 64, &err);
    if (st != MPT_OK) {
        FUZZ_CHECK(st == MPT_ERR_INPUT && err.msg[0], "finish: status %d, '%s'", st, err.msg);
        return 0;
    }
    FUZZ_CHECK(mpt_config_param_count(&cfg) > 0, "a finished config with %lld parameters",
               mpt_config_param_count(&cfg));
    if (cfg.experts == 0 && cfg.n_layer <= 64) {   /* the table of a dense model */
        mpt_param_table pt;
        st = mpt_params_build(&pt, &cfg, &err);
        FUZZ_CHECK(st == MPT_OK || st == MPT_ERR_INPUT, "params: status %d, '%s'", st, err.msg);
        if (st == MPT_OK) mpt_params_free(&pt);
    }
    char *json = mpt_hfconfig_to_json(&cfg);
    if (!json) abort();
    st = mpt_hfconfig_parse(json, strlen(json), "written", &again, &err);
    FUZZ_CHECK(st == MPT_OK, "the written config does not read back: %s\n%s", err.msg, json);
    st = mpt_config_finish(&again, 64, &err);
    FUZZ_CHECK(st == MPT_OK && same_config_(&cfg, &again), "the config changed on the way back "
               "(%s):\n%s", err.msg, json);
    free(json);
    return 0;
}
