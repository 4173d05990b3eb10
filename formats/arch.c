/* Architecture table, config.json parsing and HF -> GGUF tensor naming (see arch.h). */
#include "formats/arch.h"
#include "formats/json.h"

#include <cjson/cJSON.h>
#include <math.h>

static const char *const llama_classes[] = {"LlamaForCausalLM", "LLaMAForCausalLM", "MistralForCausalLM", NULL};
static const char *const qwen2_classes[] = {"Qwen2ForCausalLM", NULL};

static const qf_arch arch_table[] = {
    {.name = "llama", .hf_classes = llama_classes, .permute_qk = true, .qkv_bias = false},
    {.name = "qwen2", .hf_classes = qwen2_classes, .permute_qk = false, .qkv_bias = true},
};

const qf_arch *qf_arch_by_name(const char *name) {
    for (size_t i = 0; i < QF_ARRAY_LEN(arch_table); i++)
        if (strcmp(arch_table[i].name, name) == 0) return &arch_table[i];
    return NULL;
}

static const qf_arch *arch_by_hf_class(const char *cls) {
    for (size_t i = 0; i < QF_ARRAY_LEN(arch_table); i++)
        for (const char *const *c = arch_table[i].hf_classes; *c; c++)
            if (strcmp(*c, cls) == 0) return &arch_table[i];
    return NULL;
}

/* ---- config.json ------------------------------------------------------------------------------ */

typedef struct cfg_ctx {
    const char *label;
    const cJSON *root;
    qf_error *err;
} cfg_ctx;

/* Read a positive integer that fits u32. Absent -> QF_E_NOTFOUND (message set only if required). */
static qf_status cfg_u32(const cfg_ctx *c, const cJSON *obj, const char *key, bool required, uint32_t *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v))
        return required ? qf_fail(c->err, QF_E_INPUT, "%s: required key '%s' is missing", c->label, key)
                        : QF_E_NOTFOUND;
    double d = cJSON_IsNumber(v) ? v->valuedouble : -1;
    if (d < 1 || d > 4294967295.0 || d != floor(d))
        return qf_fail(c->err, QF_E_INPUT, "%s: key '%s' must be a positive integer below 2^32", c->label, key);
    *out = (uint32_t)d;
    return QF_OK;
}

static qf_status cfg_float(const cfg_ctx *c, const cJSON *obj, const char *key, float dflt, float *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) { *out = dflt; return QF_OK; }
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return qf_fail(c->err, QF_E_INPUT, "%s: key '%s' must be a finite number", c->label, key);
    *out = (float)v->valuedouble;
    return QF_OK;
}

static qf_status cfg_rope_scaling(const cfg_ctx *c, qf_hparams *hp) {
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(c->root, "rope_scaling");
    if (!rs || cJSON_IsNull(rs)) return QF_OK;
    if (!cJSON_IsObject(rs)) return qf_fail(c->err, QF_E_INPUT, "%s: 'rope_scaling' must be an object or null", c->label);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(rs, "rope_type");
    if (!cJSON_IsString(t)) t = cJSON_GetObjectItemCaseSensitive(rs, "type");
    if (!cJSON_IsString(t)) return qf_fail(c->err, QF_E_INPUT, "%s: 'rope_scaling' has no string 'rope_type'", c->label);
    const char *type = t->valuestring;
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
    st = cfg_u32(c, rs, "original_max_position_embeddings", hp->rope_scaling == QF_ROPE_SCALING_YARN, &hp->rope_orig_ctx);
    return st == QF_E_NOTFOUND ? QF_OK : st;
}

static qf_status cfg_fp8_block(const cfg_ctx *c, qf_hparams *hp) {
    const cJSON *qc = cJSON_GetObjectItemCaseSensitive(c->root, "quantization_config");
    if (!qc || cJSON_IsNull(qc)) return QF_OK;
    const cJSON *bs = cJSON_GetObjectItemCaseSensitive(qc, "weight_block_size");
    if (!bs || cJSON_IsNull(bs)) return QF_OK;
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

static qf_status cfg_check_shape(const cfg_ctx *c, const qf_hparams *hp) {
    if (hp->n_head % hp->n_head_kv != 0)
        return qf_fail(c->err, QF_E_INPUT, "%s: num_attention_heads %u is not a multiple of num_key_value_heads %u",
                       c->label, hp->n_head, hp->n_head_kv);
    if (hp->head_dim % 2 != 0)
        return qf_fail(c->err, QF_E_INPUT, "%s: head_dim %u must be even for rotary embeddings", c->label, hp->head_dim);
    if (hp->n_layer > 100000 || hp->n_head > 65536)
        return qf_fail(c->err, QF_E_INPUT, "%s: num_hidden_layers %u / num_attention_heads %u out of range", c->label,
                       hp->n_layer, hp->n_head);
    return QF_OK;
}

static qf_status cfg_parse(const cfg_ctx *c, qf_hparams *hp) {
    const cJSON *archs = cJSON_GetObjectItemCaseSensitive(c->root, "architectures");
    const cJSON *a0 = cJSON_IsArray(archs) ? cJSON_GetArrayItem(archs, 0) : NULL;
    if (!cJSON_IsString(a0))
        return qf_fail(c->err, QF_E_INPUT, "%s: 'architectures' must be a non-empty array of strings", c->label);
    hp->arch = arch_by_hf_class(a0->valuestring);
    if (!hp->arch)
        return qf_fail(c->err, QF_E_UNSUPPORTED,
                       "%s: architecture '%s' is not supported (supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM)",
                       c->label, a0->valuestring);
    qf_status st;
    if ((st = cfg_u32(c, c->root, "hidden_size", true, &hp->n_embd)) ||
        (st = cfg_u32(c, c->root, "intermediate_size", true, &hp->n_ff)) ||
        (st = cfg_u32(c, c->root, "num_hidden_layers", true, &hp->n_layer)) ||
        (st = cfg_u32(c, c->root, "num_attention_heads", true, &hp->n_head)) ||
        (st = cfg_u32(c, c->root, "vocab_size", true, &hp->n_vocab)))
        return st;
    hp->n_head_kv = hp->n_head;
    if ((st = cfg_u32(c, c->root, "num_key_value_heads", false, &hp->n_head_kv)) && st != QF_E_NOTFOUND) return st;
    hp->head_dim = hp->n_embd / hp->n_head;
    st = cfg_u32(c, c->root, "head_dim", false, &hp->head_dim);
    if (st && st != QF_E_NOTFOUND) return st;
    hp->head_dim_explicit = st == QF_OK;
    hp->n_ctx_train = 0;
    if ((st = cfg_u32(c, c->root, "max_position_embeddings", false, &hp->n_ctx_train)) && st != QF_E_NOTFOUND) return st;
    if ((st = cfg_float(c, c->root, "rms_norm_eps", 1e-6f, &hp->rms_eps)) ||
        (st = cfg_float(c, c->root, "rope_theta", 10000.0f, &hp->rope_theta)))
        return st;
    const cJSON *tie = cJSON_GetObjectItemCaseSensitive(c->root, "tie_word_embeddings");
    if (tie && !cJSON_IsBool(tie) && !cJSON_IsNull(tie))
        return qf_fail(c->err, QF_E_INPUT, "%s: 'tie_word_embeddings' must be true or false", c->label);
    hp->tied_embeddings = cJSON_IsTrue(tie);
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

qf_status qf_hparams_write_gguf(const qf_hparams *hp, qf_gguf_writer *w, qf_error *err) {
    char k[128];
    qf_status st;
#define SET_U32(suffix, v) do { arch_key(k, sizeof k, hp, suffix); if ((st = qf_gguf_set_u32(w, k, v, err))) return st; } while (0)
#define SET_F32(suffix, v) do { arch_key(k, sizeof k, hp, suffix); if ((st = qf_gguf_set_f32(w, k, v, err))) return st; } while (0)
    if ((st = qf_gguf_set_str(w, "general.architecture", hp->arch->name, err)) ||
        (st = qf_gguf_set_str(w, "general.type", "model", err)) ||
        (st = qf_gguf_set_str(w, "general.name", hp->name, err)))
        return st;
    SET_U32("block_count", hp->n_layer);
    if (hp->n_ctx_train) SET_U32("context_length", hp->n_ctx_train);
    SET_U32("embedding_length", hp->n_embd);
    SET_U32("feed_forward_length", hp->n_ff);
    SET_U32("attention.head_count", hp->n_head);
    SET_U32("attention.head_count_kv", hp->n_head_kv);
    SET_F32("rope.freq_base", hp->rope_theta);
    SET_F32("attention.layer_norm_rms_epsilon", hp->rms_eps);
    if (hp->head_dim_explicit) {
        SET_U32("attention.key_length", hp->head_dim);
        SET_U32("attention.value_length", hp->head_dim);
    }
    if (hp->rope_scaling == QF_ROPE_SCALING_LINEAR || hp->rope_scaling == QF_ROPE_SCALING_YARN) {
        arch_key(k, sizeof k, hp, "rope.scaling.type");
        if ((st = qf_gguf_set_str(w, k, rope_scaling_name(hp->rope_scaling), err))) return st;
        SET_F32("rope.scaling.factor", hp->rope_factor);
        if (hp->rope_scaling == QF_ROPE_SCALING_YARN) SET_U32("rope.scaling.original_context_length", hp->rope_orig_ctx);
    }
    /* llama.cpp's converter writes these two for the llama family only. */
    if (hp->arch->permute_qk) {
        SET_U32("vocab_size", hp->n_vocab);
        SET_U32("rope.dimension_count", hp->head_dim);
    }
#undef SET_U32
#undef SET_F32
    return QF_OK;
}

static qf_status gguf_u32_opt(const qf_gguf *g, const char *key, uint32_t *v, qf_error *err) {
    qf_status st = qf_gguf_get_u32(g, key, v, err);
    return st == QF_E_NOTFOUND ? QF_OK : st;
}

qf_status qf_hparams_from_gguf(const qf_gguf *g, qf_hparams *hp, qf_error *err) {
    memset(hp, 0, sizeof *hp);
    const char *arch = NULL, *name = NULL;
    qf_status st = qf_gguf_get_str(g, "general.architecture", &arch, err);
    if (st == QF_E_NOTFOUND) return qf_fail(err, QF_E_INPUT, "GGUF has no general.architecture key");
    if (st) return st;
    if (!(hp->arch = qf_arch_by_name(arch)))
        return qf_fail(err, QF_E_UNSUPPORTED, "GGUF architecture '%s' is not supported (llama, qwen2)", arch);
    if (qf_gguf_get_str(g, "general.name", &name, NULL) == QF_OK) snprintf(hp->name, sizeof hp->name, "%s", name);
    char k[128];
    struct { const char *suffix; uint32_t *dst; } req[] = {
        {"block_count", &hp->n_layer}, {"embedding_length", &hp->n_embd}, {"feed_forward_length", &hp->n_ff},
        {"attention.head_count", &hp->n_head},
    };
    for (size_t i = 0; i < QF_ARRAY_LEN(req); i++) {
        arch_key(k, sizeof k, hp, req[i].suffix);
        st = qf_gguf_get_u32(g, k, req[i].dst, err);
        if (st == QF_E_NOTFOUND) return qf_fail(err, QF_E_INPUT, "GGUF is missing required key '%s'", k);
        if (st) return st;
        if (*req[i].dst == 0) return qf_fail(err, QF_E_INPUT, "GGUF key '%s' must be positive", k);
    }
    hp->n_head_kv = hp->n_head;
    hp->head_dim = hp->n_embd / hp->n_head;
    arch_key(k, sizeof k, hp, "attention.head_count_kv");
    if ((st = gguf_u32_opt(g, k, &hp->n_head_kv, err))) return st;
    arch_key(k, sizeof k, hp, "attention.key_length");
    if ((st = gguf_u32_opt(g, k, &hp->head_dim, err))) return st;
    arch_key(k, sizeof k, hp, "context_length");
    if ((st = gguf_u32_opt(g, k, &hp->n_ctx_train, err))) return st;
    hp->rms_eps = 1e-5f;
    hp->rope_theta = 10000.0f;
    arch_key(k, sizeof k, hp, "attention.layer_norm_rms_epsilon");
    if ((st = qf_gguf_get_f32(g, k, &hp->rms_eps, err)) && st != QF_E_NOTFOUND) return st;
    arch_key(k, sizeof k, hp, "rope.freq_base");
    if ((st = qf_gguf_get_f32(g, k, &hp->rope_theta, err)) && st != QF_E_NOTFOUND) return st;
    const char *rs = NULL;
    arch_key(k, sizeof k, hp, "rope.scaling.type");
    if (qf_gguf_get_str(g, k, &rs, NULL) == QF_OK && strcmp(rs, "none") != 0) {
        hp->rope_scaling = strcmp(rs, "linear") == 0 ? QF_ROPE_SCALING_LINEAR
                           : strcmp(rs, "yarn") == 0 ? QF_ROPE_SCALING_YARN : QF_ROPE_SCALING_NONE;
        if (hp->rope_scaling == QF_ROPE_SCALING_NONE)
            return qf_fail(err, QF_E_UNSUPPORTED, "GGUF key '%s' = '%s' is not supported", k, rs);
        arch_key(k, sizeof k, hp, "rope.scaling.factor");
        if ((st = qf_gguf_get_f32(g, k, &hp->rope_factor, err))) return st;
    }
    const qf_gguf_tensor *out = qf_gguf_find_tensor(g, "output.weight");
    hp->tied_embeddings = out == NULL;
    const qf_gguf_tensor *emb = qf_gguf_find_tensor(g, "token_embd.weight");
    if (emb && emb->n_dims == 2) hp->n_vocab = (uint32_t)emb->ne[1];
    if (hp->n_head_kv == 0 || hp->n_head % hp->n_head_kv)
        return qf_fail(err, QF_E_INPUT, "GGUF head_count %u is not a multiple of head_count_kv %u", hp->n_head, hp->n_head_kv);
    return QF_OK;
}

/* ---- tensor names ------------------------------------------------------------------------------ */

typedef struct name_rule {
    const char *hf;   /* suffix after "model.layers.<i>." for per-layer rules, full name otherwise */
    const char *gguf; /* suffix after "blk.<i>." / full name */
    qf_role role;
} name_rule;

static const name_rule global_rules[] = {
    {"model.embed_tokens.weight", "token_embd.weight", QF_ROLE_TOKEN_EMBD},
    {"model.norm.weight", "output_norm.weight", QF_ROLE_OUTPUT_NORM},
    {"lm_head.weight", "output.weight", QF_ROLE_OUTPUT},
};

static const name_rule layer_rules[] = {
    {"input_layernorm.weight", "attn_norm.weight", QF_ROLE_ATTN_NORM},
    {"self_attn.q_proj.weight", "attn_q.weight", QF_ROLE_ATTN_Q},
    {"self_attn.k_proj.weight", "attn_k.weight", QF_ROLE_ATTN_K},
    {"self_attn.v_proj.weight", "attn_v.weight", QF_ROLE_ATTN_V},
    {"self_attn.o_proj.weight", "attn_output.weight", QF_ROLE_ATTN_OUT},
    {"self_attn.q_proj.bias", "attn_q.bias", QF_ROLE_ATTN_Q_BIAS},
    {"self_attn.k_proj.bias", "attn_k.bias", QF_ROLE_ATTN_K_BIAS},
    {"self_attn.v_proj.bias", "attn_v.bias", QF_ROLE_ATTN_V_BIAS},
    {"post_attention_layernorm.weight", "ffn_norm.weight", QF_ROLE_FFN_NORM},
    {"mlp.gate_proj.weight", "ffn_gate.weight", QF_ROLE_FFN_GATE},
    {"mlp.up_proj.weight", "ffn_up.weight", QF_ROLE_FFN_UP},
    {"mlp.down_proj.weight", "ffn_down.weight", QF_ROLE_FFN_DOWN},
};

/* Buffers HF keeps in some checkpoints that are recomputed at run time. */
static bool is_dropped(const char *suffix) { return strcmp(suffix, "self_attn.rotary_emb.inv_freq") == 0; }

qf_status qf_arch_map_tensor(const qf_hparams *hp, const char *hf, char *out, size_t out_len, qf_role *role,
                             int *layer, qf_error *err) {
    *layer = -1;
    for (size_t i = 0; i < QF_ARRAY_LEN(global_rules); i++) {
        if (strcmp(hf, global_rules[i].hf) == 0) {
            snprintf(out, out_len, "%s", global_rules[i].gguf);
            *role = global_rules[i].role;
            return QF_OK;
        }
    }
    unsigned long blk;
    int consumed = 0;
    if (sscanf(hf, "model.layers.%lu.%n", &blk, &consumed) == 1 && consumed > 0 && blk < hp->n_layer) {
        const char *suffix = hf + consumed;
        for (size_t i = 0; i < QF_ARRAY_LEN(layer_rules); i++) {
            if (strcmp(suffix, layer_rules[i].hf) == 0) {
                snprintf(out, out_len, "blk.%lu.%s", blk, layer_rules[i].gguf);
                *role = layer_rules[i].role;
                *layer = (int)blk;
                return QF_OK;
            }
        }
        if (is_dropped(suffix)) return QF_E_NOTFOUND;
    }
    return qf_fail(err, QF_E_UNSUPPORTED, "tensor '%s' has no GGUF name in architecture '%s'", hf, hp->arch->name);
}

void qf_arch_role_from_gguf(const char *name, qf_role *role, int *layer) {
    *role = QF_ROLE_OTHER;
    *layer = -1;
    if (!strcmp(name, "rope_freqs.weight")) { *role = QF_ROLE_ROPE_FREQS; return; }
    for (size_t i = 0; i < QF_ARRAY_LEN(global_rules); i++)
        if (!strcmp(name, global_rules[i].gguf)) { *role = global_rules[i].role; return; }
    unsigned long blk;
    int consumed = 0;
    if (sscanf(name, "blk.%lu.%n", &blk, &consumed) != 1 || consumed == 0 || blk > 1000000) return;
    for (size_t i = 0; i < QF_ARRAY_LEN(layer_rules); i++) {
        if (!strcmp(name + consumed, layer_rules[i].gguf)) {
            *role = layer_rules[i].role;
            *layer = (int)blk;
            return;
        }
    }
}

void qf_arch_tensor_name(qf_role role, int layer, char *out, size_t out_len) {
    if (role == QF_ROLE_ROPE_FREQS) { snprintf(out, out_len, "rope_freqs.weight"); return; }
    for (size_t i = 0; i < QF_ARRAY_LEN(global_rules); i++)
        if (global_rules[i].role == role) { snprintf(out, out_len, "%s", global_rules[i].gguf); return; }
    for (size_t i = 0; i < QF_ARRAY_LEN(layer_rules); i++)
        if (layer_rules[i].role == role) { snprintf(out, out_len, "blk.%d.%s", layer, layer_rules[i].gguf); return; }
    snprintf(out, out_len, "?");
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
