/* Model hyper-parameters: config.json in, GGUF <arch>.* keys out and back (arch.h). */
#include "formats/arch.h"
#include "formats/json.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <strings.h>

static const qf_arch *arch_by_hf_class(const char *cls) {
    for (size_t i = 0; qf_arch_at(i); i++)
        for (const char *const *c = qf_arch_at(i)->hf_classes; *c; c++)
            if (strcmp(*c, cls) == 0) return qf_arch_at(i);
    return NULL;
}

static void supported_classes(char *out, size_t n) {
    size_t k = 0;
    out[0] = '\0';
    for (size_t i = 0; qf_arch_at(i); i++)
        for (const char *const *c = qf_arch_at(i)->hf_classes; *c && k < n; c++)
            k += (size_t)snprintf(out + k, n - k, "%s%s", k ? ", " : "", *c);
}

/* ---- config.json ------------------------------------------------------------------------------ */

typedef struct cfg_ctx {
    const char *label;
    const cJSON *root;
    qf_error *err;
} cfg_ctx;

static const cJSON *cfg_get(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

/* A non-negative integer that fits u32 (zero allowed only with allow_zero). Absent -> QF_E_NOTFOUND
 * (message set only if required). */
static qf_status cfg_u32_in(const cfg_ctx *c, const cJSON *obj, const char *key, bool required, bool allow_zero,
                            uint32_t *out) {
    const cJSON *v = cfg_get(obj, key);
    if (!v)
        return required ? qf_fail(c->err, QF_E_INPUT, "%s: required key '%s' is missing", c->label, key)
                        : QF_E_NOTFOUND;
    double d = cJSON_IsNumber(v) ? v->valuedouble : -1;
    if (d < (allow_zero ? 0 : 1) || d > 4294967295.0 || d != floor(d))
        return qf_fail(c->err, QF_E_INPUT, "%s: key '%s' must be a %s integer below 2^32", c->label, key,
                       allow_zero ? "non-negative" : "positive");
    *out = (uint32_t)d;
    return QF_OK;
}

static qf_status cfg_u32(const cfg_ctx *c, const cJSON *obj, const char *key, bool required, uint32_t *out) {
    return cfg_u32_in(c, obj, key, required, false, out);
}

/* Like cfg_u32, absent is fine (leaves *out). */
static qf_status cfg_u32_opt(const cfg_ctx *c, const char *key, bool allow_zero, uint32_t *out) {
    qf_status st = cfg_u32_in(c, c->root, key, false, allow_zero, out);
    return st == QF_E_NOTFOUND ? QF_OK : st;
}

/* The first of several spellings families use for one idea (as llama.cpp's converter finds them). */
static qf_status cfg_u32_any(const cfg_ctx *c, const char *const *keys, bool allow_zero, uint32_t *out, bool *found) {
    *found = false;
    for (; *keys; keys++) {
        if (!cfg_get(c->root, *keys)) continue;
        *found = true;
        return cfg_u32_in(c, c->root, *keys, true, allow_zero, out);
    }
    return QF_OK;
}

static qf_status cfg_float(const cfg_ctx *c, const cJSON *obj, const char *key, float dflt, float *out) {
    const cJSON *v = cfg_get(obj, key);
    if (!v) { *out = dflt; return QF_OK; }
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return qf_fail(c->err, QF_E_INPUT, "%s: key '%s' must be a finite number", c->label, key);
    *out = (float)v->valuedouble;
    return QF_OK;
}

static qf_status cfg_bool(const cfg_ctx *c, const char *key, bool dflt, bool *out) {
    const cJSON *v = cfg_get(c->root, key);
    if (!v) { *out = dflt; return QF_OK; }
    if (!cJSON_IsBool(v)) return qf_fail(c->err, QF_E_INPUT, "%s: '%s' must be true or false", c->label, key);
    *out = cJSON_IsTrue(v);
    return QF_OK;
}

static const char *cfg_str(const cJSON *obj, const char *key) {
    const cJSON *v = cfg_get(obj, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static qf_status cfg_yarn(const cfg_ctx *c, const cJSON *rs, qf_hparams *hp) {
    qf_status st;
    if ((st = cfg_float(c, rs, "beta_fast", 32.0f, &hp->yarn_beta_fast)) ||
        (st = cfg_float(c, rs, "beta_slow", 1.0f, &hp->yarn_beta_slow)) ||
        (st = cfg_float(c, rs, "mscale", 0.0f, &hp->yarn_mscale)) ||
        (st = cfg_float(c, rs, "mscale_all_dim", 0.0f, &hp->yarn_mscale_all_dim)))
        return st;
    /* llama.cpp writes a yarn_log_multiplier from mscale_all_dim only for deepseek2 and reads neither
     * mscale nor attention_factor elsewhere: refuse what the file could not carry */
    if (hp->arch->attn != QF_ATTN_MLA && (cfg_get(rs, "attention_factor") || cfg_get(rs, "mscale_all_dim")))
        return qf_fail(c->err, QF_E_UNSUPPORTED, "%s: rope_scaling 'attention_factor'/'mscale_all_dim' of a %s model are not supported",
                       c->label, hp->arch->name);
    return QF_OK;
}

static qf_status cfg_rope_scaling(const cfg_ctx *c, qf_hparams *hp) {
    const cJSON *rs = cfg_get(c->root, "rope_scaling");
    if (!rs) return QF_OK;
    if (!cJSON_IsObject(rs)) return qf_fail(c->err, QF_E_INPUT, "%s: 'rope_scaling' must be an object or null", c->label);
    const char *type = cfg_str(rs, "rope_type");
    if (!type) type = cfg_str(rs, "type");
    if (!type) return qf_fail(c->err, QF_E_INPUT, "%s: 'rope_scaling' has no string 'rope_type'", c->label);
    qf_status st;
    if ((st = cfg_float(c, rs, "factor", 0.0f, &hp->rope_factor))) return st;
    if (strcmp(type, "default") == 0) return QF_OK;
    if (strcmp(type, "linear") == 0) hp->rope_scaling = QF_ROPE_SCALING_LINEAR;
    else if (strcmp(type, "yarn") == 0) hp->rope_scaling = QF_ROPE_SCALING_YARN;
    else if (strcasecmp(type, "llama3") == 0) hp->rope_scaling = QF_ROPE_SCALING_LLAMA3;
    else return qf_fail(c->err, QF_E_UNSUPPORTED, "%s: rope_scaling type '%s' is not supported (linear, yarn, llama3)", c->label, type);
    if (hp->rope_factor <= 0 && hp->rope_scaling != QF_ROPE_SCALING_LLAMA3)
        return qf_fail(c->err, QF_E_INPUT, "%s: rope_scaling '%s' needs a positive 'factor'", c->label, type);
    if (hp->rope_scaling == QF_ROPE_SCALING_LLAMA3) {
        if (hp->rope_factor <= 0) hp->rope_factor = 8.0f;
        if ((st = cfg_float(c, rs, "low_freq_factor", 1.0f, &hp->rope_low_freq_factor))) return st;
        if ((st = cfg_float(c, rs, "high_freq_factor", 4.0f, &hp->rope_high_freq_factor))) return st;
        hp->rope_orig_ctx = 8192;
    }
    if (hp->rope_scaling == QF_ROPE_SCALING_YARN && (st = cfg_yarn(c, rs, hp))) return st;
    st = cfg_u32(c, rs, "original_max_position_embeddings", hp->rope_scaling == QF_ROPE_SCALING_YARN, &hp->rope_orig_ctx);
    return st == QF_E_NOTFOUND ? QF_OK : st;
}

static qf_status cfg_fp8_block(const cfg_ctx *c, qf_hparams *hp) {
    const cJSON *qc = cfg_get(c->root, "quantization_config");
    if (!qc) return QF_OK;
    const cJSON *bs = cfg_get(qc, "weight_block_size");
    if (!bs) return QF_OK;
    if (!cJSON_IsArray(bs) || cJSON_GetArraySize(bs) != 2)
        return qf_fail(c->err, QF_E_INPUT, "%s: quantization_config.weight_block_size must be [rows, cols]", c->label);
    for (int i = 0; i < 2; i++) {
        const cJSON *v = cJSON_GetArrayItem(bs, i);
        double d = cJSON_IsNumber(v) ? v->valuedouble : 0;
        if (d < 1 || d > 65536 || d != floor(d))
            return qf_fail(c->err, QF_E_INPUT, "%s: quantization_config.weight_block_size[%d] must be an integer in 1..65536", c->label, i);
        hp->fp8_block[i] = (uint32_t)d;
    }
    return QF_OK;
}

/* Multi-head latent attention: the low-rank q and kv paths and the split head dimensions. */
static qf_status cfg_mla(const cfg_ctx *c, qf_hparams *hp) {
    qf_status st;
    hp->q_lora_rank = 0;
    if ((st = cfg_u32_opt(c, "q_lora_rank", true, &hp->q_lora_rank)) ||
        (st = cfg_u32(c, c->root, "kv_lora_rank", true, &hp->kv_lora_rank)) ||
        (st = cfg_u32(c, c->root, "qk_nope_head_dim", true, &hp->qk_nope_dim)) ||
        (st = cfg_u32(c, c->root, "qk_rope_head_dim", true, &hp->qk_rope_dim)) ||
        (st = cfg_u32(c, c->root, "v_head_dim", true, &hp->v_head_dim)))
        return st;
    if (hp->qk_rope_dim % 2)
        return qf_fail(c->err, QF_E_INPUT, "%s: qk_rope_head_dim %u must be even for rotary embeddings", c->label, hp->qk_rope_dim);
    /* llama.cpp splits kv_b_proj with num_key_value_heads: the two must agree (its README's conversion note) */
    if (hp->n_head_kv != hp->n_head)
        return qf_fail(c->err, QF_E_INPUT, "%s: num_key_value_heads %u must equal num_attention_heads %u for latent attention",
                       c->label, hp->n_head_kv, hp->n_head);
    hp->n_rot = hp->qk_rope_dim;
    hp->head_dim = hp->qk_nope_dim + hp->qk_rope_dim;
    bool interleave = true;
    if ((st = cfg_bool(c, "rope_interleave", true, &interleave))) return st;
    hp->hf_pairs = interleave ? QF_ROPE_ADJACENT : QF_ROPE_NEOX;
    return QF_OK;
}

/* Mixture of experts: counts, sizes, the router and its selection rule. */
static qf_status cfg_moe(const cfg_ctx *c, qf_hparams *hp) {
    static const char *const n_expert_keys[] = {"num_local_experts", "num_experts", "n_routed_experts", NULL};
    static const char *const n_used_keys[] = {"num_experts_per_tok", NULL};
    bool found, used_found;
    qf_status st;
    if ((st = cfg_u32_any(c, n_expert_keys, true, &hp->n_expert, &found)) ||
        (st = cfg_u32_any(c, n_used_keys, true, &hp->n_expert_used, &used_found)))
        return st;
    if (!found || hp->n_expert == 0) { hp->n_expert = 0; return QF_OK; } /* a dense model of a MoE family */
    if (hp->n_expert > QF_MAX_EXPERTS)
        return qf_fail(c->err, QF_E_UNSUPPORTED, "%s: %u experts; at most %u are supported", c->label, hp->n_expert, QF_MAX_EXPERTS);
    if (!used_found || hp->n_expert_used == 0 || hp->n_expert_used > QF_MIN(hp->n_expert, QF_MAX_EXPERTS_USED))
        return qf_fail(c->err, QF_E_INPUT, "%s: num_experts_per_tok must be in 1..%u", c->label,
                       QF_MIN(hp->n_expert, QF_MAX_EXPERTS_USED));
    hp->n_ff_exp = hp->n_ff;
    if ((st = cfg_u32_opt(c, "moe_intermediate_size", false, &hp->n_ff_exp))) return st;
    uint32_t step = 1, freq = 1;
    if ((st = cfg_u32_opt(c, "decoder_sparse_step", false, &step)) || (st = cfg_u32_opt(c, "moe_layer_freq", false, &freq)))
        return st;
    const cJSON *dense_only = cfg_get(c->root, "mlp_only_layers");
    if (step != 1 || freq != 1 || (dense_only && cJSON_GetArraySize(dense_only) > 0))
        return qf_fail(c->err, QF_E_UNSUPPORTED, "%s: MoE layers interleaved with dense ones (decoder_sparse_step, "
                       "moe_layer_freq, mlp_only_layers) are not supported: llama.cpp's graph has no place for them", c->label);
    if ((st = cfg_u32_opt(c, "first_k_dense_replace", true, &hp->n_layer_dense_lead))) return st;
    if (hp->n_layer_dense_lead > hp->n_layer)
        return qf_fail(c->err, QF_E_INPUT, "%s: first_k_dense_replace %u exceeds num_hidden_layers %u", c->label,
                       hp->n_layer_dense_lead, hp->n_layer);
    /* shared experts: DeepSeek counts them in expert widths, Qwen2-MoE gives their width */
    if ((st = cfg_u32_opt(c, "n_shared_experts", true, &hp->n_expert_shared))) return st;
    hp->n_ff_shexp = hp->n_expert_shared * hp->n_ff_exp;
    if ((st = cfg_u32_opt(c, "shared_expert_intermediate_size", true, &hp->n_ff_shexp))) return st;
    if (hp->arch->shexp_gate && hp->n_ff_shexp == 0)
        return qf_fail(c->err, QF_E_INPUT, "%s: shared_expert_intermediate_size is missing or 0", c->label);
    if ((st = cfg_u32_opt(c, "n_group", true, &hp->n_expert_group)) ||
        (st = cfg_u32_opt(c, "topk_group", true, &hp->n_expert_group_used)))
        return st;
    if (hp->n_expert_group > 1 && (hp->n_expert % hp->n_expert_group || hp->n_expert_group_used == 0 ||
                                   hp->n_expert_group > QF_MAX_EXPERT_GROUPS ||
                                   hp->n_expert_group_used > hp->n_expert_group ||
                                   (uint64_t)hp->n_expert_group_used * (hp->n_expert / hp->n_expert_group) < hp->n_expert_used))
        return qf_fail(c->err, QF_E_INPUT, "%s: n_group %u / topk_group %u cannot route %u of %u experts", c->label,
                       hp->n_expert_group, hp->n_expert_group_used, hp->n_expert_used, hp->n_expert);
    const char *scoring = cfg_str(c->root, "scoring_func");
    hp->gating = QF_GATING_SOFTMAX;
    if (scoring && !strcmp(scoring, "sigmoid")) hp->gating = QF_GATING_SIGMOID;
    else if (scoring && strcmp(scoring, "softmax"))
        return qf_fail(c->err, QF_E_UNSUPPORTED, "%s: scoring_func '%s' is not supported (softmax, sigmoid)", c->label, scoring);
    const char *topk = cfg_str(c->root, "topk_method");
    hp->expert_bias = topk && !strcmp(topk, "noaux_tc");
    hp->group_score = topk && !strcmp(topk, "group_limited_greedy") ? QF_GROUP_MAX : QF_GROUP_TOP2_SUM;
    if (topk && strcmp(topk, "noaux_tc") && strcmp(topk, "group_limited_greedy") && strcmp(topk, "greedy"))
        return qf_fail(c->err, QF_E_UNSUPPORTED, "%s: topk_method '%s' is not supported (greedy, group_limited_greedy, noaux_tc)",
                       c->label, topk);
    if ((st = cfg_bool(c, "norm_topk_prob", hp->arch->moe_norm == QF_MOE_NORM_ALWAYS, &hp->expert_weights_norm)) ||
        (st = cfg_float(c, c->root, "routed_scaling_factor", 0.0f, &hp->expert_weights_scale)))
        return st;
    return QF_OK;
}

static qf_status cfg_check_shape(const cfg_ctx *c, const qf_hparams *hp) {
    if (hp->n_head % hp->n_head_kv != 0)
        return qf_fail(c->err, QF_E_INPUT, "%s: num_attention_heads %u is not a multiple of num_key_value_heads %u",
                       c->label, hp->n_head, hp->n_head_kv);
    if (hp->n_rot % 2 != 0)
        return qf_fail(c->err, QF_E_INPUT, "%s: head_dim %u must be even for rotary embeddings", c->label, hp->head_dim);
    if (hp->n_layer > 100000 || hp->n_head > 65536)
        return qf_fail(c->err, QF_E_INPUT, "%s: num_hidden_layers %u / num_attention_heads %u out of range", c->label,
                       hp->n_layer, hp->n_head);
    return QF_OK;
}

static qf_status cfg_arch(const cfg_ctx *c, qf_hparams *hp) {
    const cJSON *archs = cJSON_GetObjectItemCaseSensitive(c->root, "architectures");
    const cJSON *a0 = cJSON_IsArray(archs) ? cJSON_GetArrayItem(archs, 0) : NULL;
    if (!cJSON_IsString(a0))
        return qf_fail(c->err, QF_E_INPUT, "%s: 'architectures' must be a non-empty array of strings", c->label);
    if ((hp->arch = arch_by_hf_class(a0->valuestring))) return QF_OK;
    char list[512];
    supported_classes(list, sizeof list);
    return qf_fail(c->err, QF_E_UNSUPPORTED, "%s: architecture '%s' is not supported (supported: %s)", c->label,
                   a0->valuestring, list);
}

static qf_status cfg_parse(const cfg_ctx *c, qf_hparams *hp) {
    qf_status st = cfg_arch(c, hp);
    if (st) return st;
    if ((st = cfg_u32(c, c->root, "hidden_size", true, &hp->n_embd)) ||
        (st = cfg_u32(c, c->root, "intermediate_size", true, &hp->n_ff)) ||
        (st = cfg_u32(c, c->root, "num_hidden_layers", true, &hp->n_layer)) ||
        (st = cfg_u32(c, c->root, "num_attention_heads", true, &hp->n_head)) ||
        (st = cfg_u32(c, c->root, "vocab_size", true, &hp->n_vocab)))
        return st;
    hp->n_head_kv = hp->n_head;
    if ((st = cfg_u32_opt(c, "num_key_value_heads", false, &hp->n_head_kv))) return st;
    hp->head_dim = hp->n_embd / hp->n_head;
    st = cfg_u32(c, c->root, "head_dim", false, &hp->head_dim);
    if (st && st != QF_E_NOTFOUND) return st;
    hp->head_dim_explicit = st == QF_OK;
    hp->n_rot = hp->head_dim;
    hp->hf_pairs = hp->arch->hf_pairs;
    if ((st = cfg_u32_opt(c, "max_position_embeddings", false, &hp->n_ctx_train)) ||
        (st = cfg_float(c, c->root, "rms_norm_eps", 1e-6f, &hp->rms_eps)) ||
        (st = cfg_float(c, c->root, "rope_theta", 10000.0f, &hp->rope_theta)) ||
        (st = cfg_bool(c, "tie_word_embeddings", false, &hp->tied_embeddings)))
        return st;
    if (hp->arch->attn == QF_ATTN_MLA && (st = cfg_mla(c, hp))) return st;
    if (hp->arch->moe && (st = cfg_moe(c, hp))) return st;
    if (hp->arch->mtp_layers && (st = cfg_u32_opt(c, "num_nextn_predict_layers", true, &hp->n_mtp_layers))) return st;
    if ((st = cfg_rope_scaling(c, hp)) || (st = cfg_fp8_block(c, hp))) return st;
    return cfg_check_shape(c, hp);
}

qf_status qf_hparams_from_hf(const char *label, const char *json, size_t len, qf_hparams *hp, qf_error *err) {
    memset(hp, 0, sizeof *hp);
    cJSON *root = NULL;
    qf_status pst = qf_json_parse_object(label, json, len, &root, err);
    if (pst != QF_OK) return pst;
    cfg_ctx c = {.label = label, .root = root, .err = err};
    qf_status st = cfg_parse(&c, hp);
    cJSON_Delete(root);
    return st;
}

qf_status qf_hf_fp8_block(const char *label, const char *json, size_t len, uint32_t block[2], qf_error *err) {
    block[0] = block[1] = 0;
    cJSON *root = NULL;
    qf_status pst = qf_json_parse_object(label, json, len, &root, err);
    if (pst != QF_OK) return pst;
    cfg_ctx c = {.label = label, .root = root, .err = err};
    qf_hparams hp = {0};
    qf_status st = cfg_fp8_block(&c, &hp);
    block[0] = hp.fp8_block[0];
    block[1] = hp.fp8_block[1];
    cJSON_Delete(root);
    return st;
}

/* ---- GGUF hyper-parameter keys ----------------------------------------------------------------- */

static void arch_key(char *buf, size_t n, const qf_hparams *hp, const char *suffix) {
    snprintf(buf, n, "%s.%s", hp->arch->name, suffix);
}

static const char *rope_scaling_name(qf_rope_scaling s) {
    return s == QF_ROPE_SCALING_LINEAR ? "linear" : s == QF_ROPE_SCALING_YARN ? "yarn" : "none";
}

typedef struct key_writer {
    const qf_hparams *hp;
    qf_gguf_writer *w;
    qf_error *err;
    qf_status st;
} key_writer;

static void put_u32(key_writer *k, const char *suffix, uint32_t v) {
    char key[128];
    arch_key(key, sizeof key, k->hp, suffix);
    if (!k->st) k->st = qf_gguf_set_u32(k->w, key, v, k->err);
}
static void put_f32(key_writer *k, const char *suffix, float v) {
    char key[128];
    arch_key(key, sizeof key, k->hp, suffix);
    if (!k->st) k->st = qf_gguf_set_f32(k->w, key, v, k->err);
}
static void put_bool(key_writer *k, const char *suffix, bool v) {
    char key[128];
    arch_key(key, sizeof key, k->hp, suffix);
    if (!k->st) k->st = qf_gguf_set_bool(k->w, key, v, k->err);
}

static void write_rope_scaling(key_writer *k) {
    const qf_hparams *hp = k->hp;
    if (hp->rope_scaling != QF_ROPE_SCALING_LINEAR && hp->rope_scaling != QF_ROPE_SCALING_YARN) return;
    char key[128];
    arch_key(key, sizeof key, hp, "rope.scaling.type");
    if (!k->st) k->st = qf_gguf_set_str(k->w, key, rope_scaling_name(hp->rope_scaling), k->err);
    put_f32(k, "rope.scaling.factor", hp->rope_factor);
    if (hp->rope_scaling != QF_ROPE_SCALING_YARN) return;
    put_u32(k, "rope.scaling.original_context_length", hp->rope_orig_ctx);
    put_f32(k, "rope.scaling.yarn_beta_fast", hp->yarn_beta_fast);
    put_f32(k, "rope.scaling.yarn_beta_slow", hp->yarn_beta_slow);
}

/* The MoE keys llama.cpp's converters write (base TextModel, then each family's additions). */
static void write_moe(key_writer *k) {
    const qf_hparams *hp = k->hp;
    if (!hp->n_expert) return;
    put_u32(k, "expert_count", hp->n_expert);
    put_u32(k, "expert_used_count", hp->n_expert_used);
    /* Groups that all stay selectable restrict nothing, and llama.cpp asserts used < count: such a
     * config is written as ungrouped (its converter writes the keys and llama.cpp then cannot load). */
    if (hp->n_expert_group && !qf_hparams_groups_inert(hp)) {
        put_u32(k, "expert_group_count", hp->n_expert_group);
        put_u32(k, "expert_group_used_count", hp->n_expert_group_used);
        /* llama.cpp ranks groups by the sum of their two best scores (DeepSeek-V3); V2's
         * group_limited_greedy by the best one. llama.cpp has no key for it; qforge's runtime reads this. */
        if (hp->n_expert_group > 1 && hp->group_score == QF_GROUP_MAX && !k->st)
            k->st = qf_gguf_set_str(k->w, QF_KEY_EXPERT_GROUP_SCORE, "max", k->err);
    }
    if (hp->arch->attn == QF_ATTN_MLA || hp->gating == QF_GATING_SIGMOID) put_u32(k, "expert_gating_func", (uint32_t)hp->gating);
    if (hp->arch->attn == QF_ATTN_MLA) return; /* the rest comes with the MLA keys, in llama.cpp's order */
    if (strcmp(hp->arch->name, "llama") != 0) put_u32(k, "expert_feed_forward_length", hp->n_ff_exp);
    if (hp->arch->shexp_gate) put_u32(k, "expert_shared_feed_forward_length", hp->n_ff_shexp);
}

/* DeepSeek's latent attention and its MoE details (llama.cpp's DeepseekV2Model.set_gguf_parameters).
 * q_lora_rank 0 is written where the converter writes nothing: llama.cpp reads the key for every
 * depth but the known Lite ones, so only with it does a q-projection model of any depth load. */
static void write_mla(key_writer *k) {
    const qf_hparams *hp = k->hp;
    put_u32(k, "leading_dense_block_count", hp->n_layer_dense_lead);
    put_u32(k, "vocab_size", hp->n_vocab);
    put_u32(k, "attention.q_lora_rank", hp->q_lora_rank);
    put_u32(k, "attention.kv_lora_rank", hp->kv_lora_rank);
    put_u32(k, "attention.key_length", hp->kv_lora_rank + hp->qk_rope_dim);
    put_u32(k, "attention.value_length", hp->kv_lora_rank);
    put_u32(k, "attention.key_length_mla", hp->qk_nope_dim + hp->qk_rope_dim);
    put_u32(k, "attention.value_length_mla", hp->v_head_dim);
    put_u32(k, "expert_feed_forward_length", hp->n_ff_exp);
    put_u32(k, "expert_shared_count", hp->n_expert_shared);
    if (hp->expert_weights_scale != 0) put_f32(k, "expert_weights_scale", hp->expert_weights_scale);
    if (hp->expert_weights_norm) put_bool(k, "expert_weights_norm", true);
    put_u32(k, "rope.dimension_count", hp->qk_rope_dim);
    if (hp->yarn_mscale_all_dim != 0) put_f32(k, "rope.scaling.yarn_log_multiplier", 0.1f * hp->yarn_mscale_all_dim);
}

qf_status qf_hparams_write_gguf(const qf_hparams *hp, qf_gguf_writer *w, qf_error *err) {
    key_writer k = {.hp = hp, .w = w, .err = err};
    if ((k.st = qf_gguf_set_str(w, "general.architecture", hp->arch->name, err)) ||
        (k.st = qf_gguf_set_str(w, "general.type", "model", err)) ||
        (k.st = qf_gguf_set_str(w, "general.name", hp->name, err)))
        return k.st;
    bool mla = hp->arch->attn == QF_ATTN_MLA;
    put_u32(&k, "block_count", hp->n_layer);
    if (hp->n_ctx_train) put_u32(&k, "context_length", hp->n_ctx_train);
    put_u32(&k, "embedding_length", hp->n_embd);
    put_u32(&k, "feed_forward_length", hp->n_ff);
    put_u32(&k, "attention.head_count", hp->n_head);
    put_u32(&k, "attention.head_count_kv", mla ? 1 : hp->n_head_kv); /* MLA runs as MQA in llama.cpp */
    write_rope_scaling(&k);
    put_f32(&k, "rope.freq_base", hp->rope_theta);
    put_f32(&k, "attention.layer_norm_rms_epsilon", hp->rms_eps);
    write_moe(&k);
    if (hp->head_dim_explicit && !mla) {
        put_u32(&k, "attention.key_length", hp->head_dim);
        put_u32(&k, "attention.value_length", hp->head_dim);
    }
    if (mla) write_mla(&k);
    /* llama.cpp's converter writes these two for the llama family only */
    if (!strcmp(hp->arch->name, "llama")) {
        put_u32(&k, "vocab_size", hp->n_vocab);
        put_u32(&k, "rope.dimension_count", hp->head_dim);
    }
    return k.st;
}

/* ---- reading them back ------------------------------------------------------------------------- */

typedef struct key_reader {
    const qf_gguf *g;
    const qf_hparams *hp;
    qf_error *err;
    qf_status st;
} key_reader;

/* A u32 key; required ones must be present (and, with positive, non-zero). */
static void get_u32(key_reader *r, const char *suffix, bool required, bool positive, uint32_t *v) {
    char key[128];
    if (r->st) return;
    arch_key(key, sizeof key, r->hp, suffix);
    qf_status st = qf_gguf_get_u32(r->g, key, v, r->err);
    if (st == QF_E_NOTFOUND) {
        if (required) r->st = qf_fail(r->err, QF_E_INPUT, "GGUF is missing required key '%s'", key);
        return;
    }
    if (st) { r->st = st; return; }
    if (positive && *v == 0) r->st = qf_fail(r->err, QF_E_INPUT, "GGUF key '%s' must be positive", key);
}

static void get_f32(key_reader *r, const char *suffix, float *v) {
    char key[128];
    if (r->st) return;
    arch_key(key, sizeof key, r->hp, suffix);
    qf_status st = qf_gguf_get_f32(r->g, key, v, r->err);
    if (st && st != QF_E_NOTFOUND) r->st = st;
    else if (!st && !isfinite(*v)) r->st = qf_fail(r->err, QF_E_INPUT, "GGUF key '%s' is not finite", key);
}

static void get_bool(key_reader *r, const char *suffix, bool *v) {
    char key[128];
    if (r->st) return;
    arch_key(key, sizeof key, r->hp, suffix);
    qf_status st = qf_gguf_get_bool(r->g, key, v, r->err);
    if (st && st != QF_E_NOTFOUND) r->st = st;
}

static void gguf_rope_scaling(key_reader *r, qf_hparams *hp) {
    const char *rs = NULL;
    char key[128];
    arch_key(key, sizeof key, hp, "rope.scaling.type");
    if (r->st || qf_gguf_get_str(r->g, key, &rs, NULL) != QF_OK || strcmp(rs, "none") == 0) return;
    hp->rope_scaling = strcmp(rs, "linear") == 0 ? QF_ROPE_SCALING_LINEAR
                       : strcmp(rs, "yarn") == 0 ? QF_ROPE_SCALING_YARN : QF_ROPE_SCALING_NONE;
    if (hp->rope_scaling == QF_ROPE_SCALING_NONE) {
        r->st = qf_fail(r->err, QF_E_UNSUPPORTED, "GGUF key '%s' = '%s' is not supported", key, rs);
        return;
    }
    hp->rope_factor = 0;
    get_f32(r, "rope.scaling.factor", &hp->rope_factor);
    if (!r->st && !(hp->rope_factor > 0))
        r->st = qf_fail(r->err, QF_E_INPUT, "GGUF rope scaling '%s' needs a positive %s.rope.scaling.factor", rs, hp->arch->name);
    if (hp->rope_scaling != QF_ROPE_SCALING_YARN) return;
    hp->yarn_beta_fast = 32.0f;
    hp->yarn_beta_slow = 1.0f;
    get_u32(r, "rope.scaling.original_context_length", true, true, &hp->rope_orig_ctx);
    get_f32(r, "rope.scaling.yarn_beta_fast", &hp->yarn_beta_fast);
    get_f32(r, "rope.scaling.yarn_beta_slow", &hp->yarn_beta_slow);
    float log_mul = 0;
    get_f32(r, "rope.scaling.yarn_log_multiplier", &log_mul);
    /* deepseek2 stores 0.1 * mscale_all_dim (llama.cpp divides it back); llama.cpp then treats
     * mscale as equal to it, so the cos/sin magnitude ratio is 1 */
    hp->yarn_mscale_all_dim = hp->arch->attn == QF_ATTN_MLA ? log_mul / 0.1f : 0;
    hp->yarn_mscale = hp->yarn_mscale_all_dim;
}

static void gguf_moe(key_reader *r, qf_hparams *hp) {
    get_u32(r, "expert_count", false, false, &hp->n_expert);
    if (!hp->n_expert) return;
    get_u32(r, "expert_used_count", true, true, &hp->n_expert_used);
    hp->n_ff_exp = hp->n_ff;
    get_u32(r, "expert_feed_forward_length", hp->arch->attn == QF_ATTN_MLA, true, &hp->n_ff_exp);
    get_u32(r, "expert_group_count", false, false, &hp->n_expert_group);
    get_u32(r, "expert_group_used_count", false, false, &hp->n_expert_group_used);
    const char *score = NULL;
    if (qf_gguf_get_str(r->g, QF_KEY_EXPERT_GROUP_SCORE, &score, NULL) == QF_OK) {
        if (!strcmp(score, "max")) hp->group_score = QF_GROUP_MAX;
        else if (!r->st)
            r->st = qf_fail(r->err, QF_E_UNSUPPORTED, "GGUF %s '%s' is not supported (max)", QF_KEY_EXPERT_GROUP_SCORE, score);
    }
    get_u32(r, "leading_dense_block_count", false, false, &hp->n_layer_dense_lead);
    uint32_t gating = QF_GATING_SOFTMAX;
    get_u32(r, "expert_gating_func", false, false, &gating);
    if (!r->st && gating != QF_GATING_SOFTMAX && gating != QF_GATING_SIGMOID)
        r->st = qf_fail(r->err, QF_E_UNSUPPORTED, "GGUF %s.expert_gating_func %u is not supported (1 softmax, 2 sigmoid)",
                        hp->arch->name, gating);
    hp->gating = (qf_gating)gating;
    hp->expert_weights_norm = hp->arch->moe_norm == QF_MOE_NORM_ALWAYS;
    if (hp->arch->moe_norm == QF_MOE_NORM_KEY) get_bool(r, "expert_weights_norm", &hp->expert_weights_norm);
    get_f32(r, "expert_weights_scale", &hp->expert_weights_scale);
    get_u32(r, "expert_shared_count", false, false, &hp->n_expert_shared);
    hp->n_ff_shexp = hp->arch->shexp_gate ? hp->n_ff : hp->n_expert_shared * hp->n_ff_exp;
    get_u32(r, "expert_shared_feed_forward_length", false, false, &hp->n_ff_shexp);
    if (!r->st && (hp->n_expert_used == 0 || hp->n_expert_used > QF_MIN(hp->n_expert, QF_MAX_EXPERTS_USED) ||
                   hp->n_expert > QF_MAX_EXPERTS || hp->n_expert_group > QF_MAX_EXPERT_GROUPS ||
                   hp->n_layer_dense_lead > hp->n_layer ||
                   (hp->n_expert_group > 1 && (hp->n_expert % hp->n_expert_group || hp->n_expert_group_used == 0 ||
                                               hp->n_expert_group_used >= hp->n_expert_group))))
        r->st = qf_fail(r->err, QF_E_INPUT, "GGUF %s.expert_* keys do not describe a valid routing (%u of %u experts, "
                        "%u/%u groups (llama.cpp needs fewer used than there are), %u dense layers)",
                        hp->arch->name, hp->n_expert_used, hp->n_expert, hp->n_expert_group_used, hp->n_expert_group,
                        hp->n_layer_dense_lead);
}

static void gguf_mla(key_reader *r, qf_hparams *hp) {
    uint32_t dk = 0;
    get_u32(r, "attention.q_lora_rank", false, false, &hp->q_lora_rank);
    get_u32(r, "attention.kv_lora_rank", true, true, &hp->kv_lora_rank);
    get_u32(r, "attention.key_length_mla", true, true, &dk);
    get_u32(r, "attention.value_length_mla", true, true, &hp->v_head_dim);
    get_u32(r, "rope.dimension_count", true, true, &hp->qk_rope_dim);
    if (r->st) return;
    if (hp->qk_rope_dim >= dk || hp->qk_rope_dim % 2)
        r->st = qf_fail(r->err, QF_E_INPUT, "GGUF %s.rope.dimension_count %u must be even and below key_length_mla %u",
                        hp->arch->name, hp->qk_rope_dim, dk);
    hp->qk_nope_dim = dk - hp->qk_rope_dim;
    hp->head_dim = dk;
    hp->n_rot = hp->qk_rope_dim;
    hp->n_head_kv = hp->n_head;
}

qf_status qf_hparams_from_gguf(const qf_gguf *g, qf_hparams *hp, qf_error *err) {
    memset(hp, 0, sizeof *hp);
    const char *arch = NULL, *name = NULL;
    qf_status st = qf_gguf_get_str(g, "general.architecture", &arch, err);
    if (st == QF_E_NOTFOUND) return qf_fail(err, QF_E_INPUT, "GGUF has no general.architecture key");
    if (st) return st;
    if (!(hp->arch = qf_arch_by_name(arch))) {
        char list[256] = "";
        for (size_t i = 0, k = 0; qf_arch_at(i) && k < sizeof list; i++)
            k += (size_t)snprintf(list + k, sizeof list - k, "%s%s", i ? ", " : "", qf_arch_at(i)->name);
        return qf_fail(err, QF_E_UNSUPPORTED, "GGUF architecture '%s' is not supported (%s)", arch, list);
    }
    if (qf_gguf_get_str(g, "general.name", &name, NULL) == QF_OK) snprintf(hp->name, sizeof hp->name, "%s", name);
    key_reader r = {.g = g, .hp = hp, .err = err};
    get_u32(&r, "block_count", true, true, &hp->n_layer);
    get_u32(&r, "embedding_length", true, true, &hp->n_embd);
    get_u32(&r, "feed_forward_length", true, true, &hp->n_ff);
    get_u32(&r, "attention.head_count", true, true, &hp->n_head);
    if (r.st) return r.st;
    hp->n_head_kv = hp->n_head;
    hp->head_dim = hp->n_embd / hp->n_head;
    get_u32(&r, "attention.head_count_kv", false, true, &hp->n_head_kv);
    get_u32(&r, "context_length", false, false, &hp->n_ctx_train);
    hp->rms_eps = 1e-5f;
    hp->rope_theta = 10000.0f;
    get_f32(&r, "attention.layer_norm_rms_epsilon", &hp->rms_eps);
    get_f32(&r, "rope.freq_base", &hp->rope_theta);
    if (hp->arch->attn == QF_ATTN_MLA) gguf_mla(&r, hp);
    else {
        get_u32(&r, "attention.key_length", false, true, &hp->head_dim);
        hp->n_rot = hp->head_dim;
        get_u32(&r, "rope.dimension_count", false, true, &hp->n_rot);
        if (!r.st && hp->n_rot != hp->head_dim)
            r.st = qf_fail(err, QF_E_UNSUPPORTED, "GGUF %s.rope.dimension_count %u differs from the head size %u (partial rotary is not supported)",
                           hp->arch->name, hp->n_rot, hp->head_dim);
        if (!r.st && hp->n_rot % 2) r.st = qf_fail(err, QF_E_INPUT, "GGUF head size %u must be even for rotary embeddings", hp->n_rot);
    }
    if (hp->arch->moe) gguf_moe(&r, hp);
    gguf_rope_scaling(&r, hp);
    if (r.st) return r.st;
    const qf_gguf_tensor *out = qf_gguf_find_tensor(g, "output.weight");
    hp->tied_embeddings = out == NULL;
    const qf_gguf_tensor *emb = qf_gguf_find_tensor(g, "token_embd.weight");
    if (emb && emb->n_dims == 2) hp->n_vocab = (uint32_t)emb->ne[1];
    for (uint32_t l = 0; !hp->expert_bias && hp->n_expert && l < hp->n_layer; l++) {
        char name_l[64];
        qf_arch_tensor_name(QF_ROLE_FFN_EXP_PROBS_B, (int)l, name_l, sizeof name_l);
        hp->expert_bias = qf_gguf_find_tensor(g, name_l) != NULL;
    }
    hp->hf_pairs = hp->arch->gguf_pairs; /* GGUF rows are already in the GGUF layout */
    if (hp->n_head_kv == 0 || hp->n_head % hp->n_head_kv)
        return qf_fail(err, QF_E_INPUT, "GGUF head_count %u is not a multiple of head_count_kv %u", hp->n_head, hp->n_head_kv);
    return QF_OK;
}

void qf_rope_llama3_factors(const qf_hparams *hp, float *out) {
    const double pi = 3.14159265358979323846;
    double low_wavelen = hp->rope_orig_ctx / hp->rope_low_freq_factor;
    double high_wavelen = hp->rope_orig_ctx / hp->rope_high_freq_factor;
    for (uint32_t i = 0; i < hp->head_dim / 2; i++) {
        /* float32 frequencies, as the reference converter computes them */
        float freq = (float)(1.0 / pow(hp->rope_theta, (double)(2 * i) / hp->head_dim));
        double wavelen = 2 * pi / freq;
        if (wavelen < high_wavelen) out[i] = 1.0f;
        else if (wavelen > low_wavelen) out[i] = hp->rope_factor;
        else {
            double smooth = (hp->rope_orig_ctx / wavelen - hp->rope_low_freq_factor) /
                            (hp->rope_high_freq_factor - hp->rope_low_freq_factor);
            out[i] = (float)(1.0 / ((1 - smooth) / hp->rope_factor + smooth));
        }
    }
}
