/* hfconfig.c — Hugging Face GPT2Config JSON reader and writer (see hfconfig.h). */
#include "train/hfconfig.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/file.h"

#define MAX_CONFIG_BYTES_ ((size_t)1 << 24)

/* Reads integer key (>= min) into *out; absent keeps *out; null is refused unless null_ok
 * (then *out becomes null_value). */
static mpt_status get_int_(const cJSON *root, const char *key, int min, int null_ok,
                           int null_value, int *out, const char *what, mpt_error *err) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!j) return MPT_OK;
    if (null_ok && cJSON_IsNull(j)) {
        *out = null_value;
        return MPT_OK;
    }
    if (!cJSON_IsNumber(j) || j->valuedouble != floor(j->valuedouble) ||
        j->valuedouble < (double)min || j->valuedouble > (double)INT_MAX)
        return mpt_fail(err, MPT_ERR_INPUT, "%s: \"%s\" must be an integer >= %d%s", what, key,
                        min, null_ok ? " or null" : "");
    *out = (int)j->valuedouble;
    return MPT_OK;
}

/* Reads a finite number key >= 0 into *out; absent keeps *out. */
static mpt_status get_float_(const cJSON *root, const char *key, float *out, const char *what,
                             mpt_error *err) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!j) return MPT_OK;
    if (!cJSON_IsNumber(j) || !isfinite(j->valuedouble) || j->valuedouble < 0 ||
        j->valuedouble > 1e6)
        return mpt_fail(err, MPT_ERR_INPUT, "%s: \"%s\" must be a number from 0 to 1e6", what,
                        key);
    *out = (float)j->valuedouble;
    return MPT_OK;
}

/* A float as the shortest decimal that reads back to it ("0.01", not 0.00999999977648258). */
static double short_(float v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%.9g", (double)v);
    for (int p = 1; p <= 9; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, (double)v);
        if ((float)strtod(buf, NULL) == v) break;
    }
    return strtod(buf, NULL);
}

/* Refuses a boolean key whose value differs from the only one the model implements. */
static mpt_status want_bool_(const cJSON *root, const char *key, int want, const char *what,
                             mpt_error *err) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!j) return MPT_OK;
    if (!cJSON_IsBool(j) || cJSON_IsTrue(j) != want)
        return mpt_fail(err, MPT_ERR_INPUT, "%s: \"%s\" must be %s: mptrain implements only "
                        "standard GPT-2 attention", what, key, want ? "true" : "false");
    return MPT_OK;
}

mpt_status mpt_hfconfig_parse(const char *text, size_t len, const char *what, mpt_config *cfg,
                              mpt_error *err) {
    mpt_status st = MPT_OK;
    mpt_config c;
    cJSON *root = cJSON_ParseWithLength(text, len);   /* owned */
    if (!root || !cJSON_IsObject(root)) {
        st = mpt_fail(err, MPT_ERR_INPUT, "%s: not a JSON object (a Hugging Face GPT2Config "
                      "config.json is expected)", what);
        goto cleanup;
    }
    /* GPT2Config's defaults are GPT-2 124M, our "gpt2-124m" preset. */
    if ((st = mpt_config_preset(&c, "gpt2-124m", err)) != MPT_OK) goto cleanup;
    c.ffn = 0;   /* n_inner absent or null: 4 * n_embd, set below */
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    if (j && !(cJSON_IsString(j) && strcmp(j->valuestring, "gpt2") == 0)) {
        st = mpt_fail(err, MPT_ERR_INPUT, "%s: model_type must be \"gpt2\" (mptrain trains GPT-2 "
                      "models only)", what);
        goto cleanup;
    }
    if ((st = get_int_(root, "vocab_size", 2, 0, 0, &c.vocab, what, err)) ||
        (st = get_int_(root, "n_positions", 1, 0, 0, &c.n_positions, what, err)) ||
        (st = get_int_(root, "n_embd", 1, 0, 0, &c.d_model, what, err)) ||
        (st = get_int_(root, "n_layer", 1, 0, 0, &c.n_layer, what, err)) ||
        (st = get_int_(root, "n_head", 1, 0, 0, &c.n_head, what, err)) ||
        (st = get_int_(root, "n_inner", 1, 1, 0, &c.ffn, what, err)) ||
        (st = get_int_(root, "n_experts", 0, 0, 0, &c.experts, what, err)) ||
        (st = get_int_(root, "top_k", 1, 0, 0, &c.top_k, what, err)) ||
        (st = get_int_(root, "moe_layer_freq", 1, 0, 0, &c.moe_every, what, err)) ||
        (st = get_float_(root, "moe_capacity_factor", &c.capacity_factor, what, err)) ||
        (st = get_float_(root, "moe_aux_loss_coef", &c.aux_loss_coef, what, err)) ||
        (st = get_float_(root, "moe_z_loss_coef", &c.z_loss_coef, what, err)) ||
        (st = get_float_(root, "moe_dropless_bound", &c.dropless_bound, what, err)))
        goto cleanup;
    /* 4 x n_embd only where it fits an int; a wider n_embd is left to mpt_config_finish */
    if (c.ffn == 0 && c.d_model <= INT_MAX / 4) c.ffn = 4 * c.d_model;
    j = cJSON_GetObjectItemCaseSensitive(root, "activation_function");
    if (j && !(cJSON_IsString(j) && (strcmp(j->valuestring, "gelu_new") == 0 ||
                                     strcmp(j->valuestring, "gelu_pytorch_tanh") == 0))) {
        st = mpt_fail(err, MPT_ERR_INPUT, "%s: activation_function %s%.40s%s is not supported: "
                      "mptrain implements the tanh GELU (\"gelu_new\" or \"gelu_pytorch_tanh\")",
                      what, cJSON_IsString(j) ? "\"" : "", cJSON_IsString(j) ? j->valuestring :
                      "(not a string)", cJSON_IsString(j) ? "\"" : "");
        goto cleanup;
    }
    j = cJSON_GetObjectItemCaseSensitive(root, "layer_norm_epsilon");
    if (j && !(cJSON_IsNumber(j) && fabs(j->valuedouble - 1e-5) <= 1e-12)) {
        st = mpt_fail(err, MPT_ERR_INPUT, "%s: layer_norm_epsilon %g is not supported: mptrain's "
                      "LayerNorm uses 1e-5", what, cJSON_IsNumber(j) ? j->valuedouble : NAN);
        goto cleanup;
    }
    j = cJSON_GetObjectItemCaseSensitive(root, "tie_word_embeddings");
    if (j) {
        if (!cJSON_IsBool(j)) {
            st = mpt_fail(err, MPT_ERR_INPUT, "%s: tie_word_embeddings must be true or false",
                          what);
            goto cleanup;
        }
        c.tied = cJSON_IsTrue(j);
    }
    if ((st = want_bool_(root, "scale_attn_weights", 1, what, err)) ||
        (st = want_bool_(root, "scale_attn_by_inverse_layer_idx", 0, what, err)))
        goto cleanup;
    c.padded_vocab = 0;
    *cfg = c;
cleanup:
    cJSON_Delete(root);
    return st;
}

mpt_status mpt_hfconfig_read(const char *path, mpt_config *cfg, mpt_error *err) {
    char *text = NULL; /* owned */
    size_t len = 0;
    mpt_status st = mpt_file_read(path, MAX_CONFIG_BYTES_, &text, &len, err);
    if (!st) st = mpt_hfconfig_parse(text, len, path, cfg, err);
    free(text);
    return st;
}

char *mpt_hfconfig_to_json(const mpt_config *cfg) {
    char *text = NULL, *out = NULL;   /* text owned here; out returned to the caller */
    cJSON *root = cJSON_CreateObject(), *arch = NULL;   /* owned */
    if (!root || !(arch = cJSON_AddArrayToObject(root, "architectures"))) goto cleanup;
    cJSON *name = cJSON_CreateString("GPT2LMHeadModel");
    if (!name || !cJSON_AddItemToArray(arch, name)) {
        cJSON_Delete(name);
        goto cleanup;
    }
    int ok = cJSON_AddStringToObject(root, "model_type", "gpt2") &&
             cJSON_AddNumberToObject(root, "vocab_size", cfg->vocab) &&
             cJSON_AddNumberToObject(root, "n_positions", cfg->n_positions) &&
             cJSON_AddNumberToObject(root, "n_embd", cfg->d_model) &&
             cJSON_AddNumberToObject(root, "n_layer", cfg->n_layer) &&
             cJSON_AddNumberToObject(root, "n_head", cfg->n_head) &&
             cJSON_AddNumberToObject(root, "n_inner", cfg->ffn) &&
             cJSON_AddStringToObject(root, "activation_function", "gelu_new") &&
             cJSON_AddNumberToObject(root, "layer_norm_epsilon", 1e-5) &&
             cJSON_AddBoolToObject(root, "tie_word_embeddings", cfg->tied != 0) &&
             cJSON_AddNumberToObject(root, "resid_pdrop", 0.0) &&
             cJSON_AddNumberToObject(root, "embd_pdrop", 0.0) &&
             cJSON_AddNumberToObject(root, "attn_pdrop", 0.0) &&
             cJSON_AddStringToObject(root, "torch_dtype", "float32");
    if (ok && cfg->experts > 0)
        ok = cJSON_AddNumberToObject(root, "n_experts", cfg->experts) &&
             cJSON_AddNumberToObject(root, "top_k", cfg->top_k) &&
             cJSON_AddNumberToObject(root, "moe_layer_freq",
                                     cfg->moe_every > 0 ? cfg->moe_every : 1) &&
             cJSON_AddNumberToObject(root, "moe_capacity_factor", short_(cfg->capacity_factor)) &&
             cJSON_AddNumberToObject(root, "moe_aux_loss_coef", short_(cfg->aux_loss_coef)) &&
             cJSON_AddNumberToObject(root, "moe_z_loss_coef", short_(cfg->z_loss_coef));
    if (ok && cfg->experts > 0 && cfg->dropless_bound > 0)
        ok = cJSON_AddNumberToObject(root, "moe_dropless_bound", short_(cfg->dropless_bound)) != NULL;
    if (!ok || !(text = cJSON_Print(root))) goto cleanup;
    size_t len = strlen(text);
    if ((out = malloc(len + 2))) {
        memcpy(out, text, len);
        memcpy(out + len, "\n", 2);
    }
cleanup:
    free(text);
    cJSON_Delete(root);
    return out;
}

mpt_status mpt_hfconfig_write(const char *path, const mpt_config *cfg, int do_fsync,
                              mpt_error *err) {
    mpt_status st = MPT_OK;
    char *text = mpt_hfconfig_to_json(cfg);   /* owned */
    FILE *f = NULL;                           /* owned */
    if (!text) return mpt_fail(err, MPT_ERR_RUN, "out of memory writing %s", path);
    if (!(f = fopen(path, "wb"))) {
        st = mpt_fail(err, MPT_ERR_RUN, "cannot create %s: %s", path, strerror(errno));
        goto cleanup;
    }
    size_t len = strlen(text);
    if (fwrite(text, 1, len, f) != len || fflush(f) != 0 || (do_fsync && fsync(fileno(f)) != 0))
        st = mpt_fail(err, MPT_ERR_RUN, "%s: write failed: %s", path, strerror(errno));
cleanup:
    if (f && fclose(f) != 0 && st == MPT_OK)
        st = mpt_fail(err, MPT_ERR_RUN, "%s: close failed: %s", path, strerror(errno));
    if (f && st != MPT_OK) unlink(path);
    free(text);
    return st;
}
