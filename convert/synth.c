/*
 * qf_synth_model: generated checkpoints of every supported family (Llama, Mistral, Qwen2/3, Mixtral,
 * Qwen2/3-MoE, DeepSeek-V2/V3, the last also in DeepSeek-V3's FP8 release layout with its MTP block),
 * written exactly as Hugging Face releases are laid out (config.json, tokenizer.json with a byte-level
 * BPE vocabulary trained here on a fixed text, tokenizer_config.json, safetensors, shards with an
 * index), so every path the demo and the tests exercise is the one real checkpoints take. The tensor
 * list is the architecture table's own (qf_arch_hf_tensors), so synth and the converter cannot drift.
 */
#include "formats/arch.h"
#include "formats/outfile.h"
#include "formats/safetensors.h"
#include "kernels/fpconv.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <sys/stat.h>

static const char training_text[] =
    "the quick brown fox jumps over the lazy dog. a model is a file of numbers that predicts the next "
    "word from the words before it. when the numbers are stored with fewer bits the file gets smaller "
    "and the predictions change a little. the job of a careful tool is to measure how much they change, "
    "to say so plainly, and to refuse to write a broken file. once upon a time there was a little girl "
    "who liked to read stories about dragons, ships and the sea. she read every night before she went "
    "to sleep, and in the morning she told her brother what she had read. they laughed and played in "
    "the garden until it was time for school. numbers, letters and words: 0 1 2 3 4 5 6 7 8 9 10 100.";

/* ---- byte-level BPE vocabulary ------------------------------------------------------------------ */

/* GPT-2's reversible byte -> printable code point map: printable bytes keep their value, the rest
 * are moved to 256 + k so every token is visible text. */
static uint32_t byte_to_cp(uint8_t b) {
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174) return b;
    uint32_t k = 0;
    for (uint32_t c = 0; c < b; c++)
        if (!((c >= 33 && c <= 126) || (c >= 161 && c <= 172) || c >= 174)) k++;
    return 256 + k;
}

static size_t put_utf8(uint32_t cp, char *out) {
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
}

typedef struct bpe {
    char **vocab;      /* token strings, id order */
    uint32_t n_vocab;
    char **merges;     /* "left right" */
    uint32_t n_merges;
    /* training state: words as sequences of token ids */
    uint32_t **words;
    uint32_t *word_len;
    uint32_t n_words;
} bpe;

static void bpe_free(bpe *b) {
    for (uint32_t i = 0; i < b->n_vocab; i++) free(b->vocab[i]);
    for (uint32_t i = 0; i < b->n_merges; i++) free(b->merges[i]);
    for (uint32_t i = 0; i < b->n_words; i++) free(b->words[i]);
    free(b->vocab); free(b->merges); free(b->words); free(b->word_len);
}

static char *concat(const char *a, const char *sep, const char *c) {
    size_t la = strlen(a), ls = strlen(sep), lc = strlen(c);
    char *s = malloc(la + ls + lc + 1);
    if (s) { memcpy(s, a, la); memcpy(s + la, sep, ls); memcpy(s + la + ls, c, lc + 1); }
    return s;
}

/* Split the text into words that carry their leading space, as the GPT-2 pre-tokenizer does. */
static bool bpe_words(bpe *b) {
    size_t n = strlen(training_text);
    b->words = calloc(n, sizeof *b->words);
    b->word_len = calloc(n, sizeof *b->word_len);
    if (!b->words || !b->word_len) return false;
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && training_text[j] != ' ') j++;
        uint32_t *w = malloc((j - i) * sizeof *w);
        if (!w) return false;
        for (size_t k = i; k < j; k++) w[k - i] = (uint8_t)training_text[k];
        b->words[b->n_words] = w;
        b->word_len[b->n_words++] = (uint32_t)(j - i);
        i = j;
    }
    return true;
}

/* One merge step: the most frequent adjacent pair (ties: lowest ids) becomes a new token. */
static bool bpe_merge_once(bpe *b) {
    uint32_t best_a = 0, best_b = 0, best_n = 0;
    for (uint32_t w = 0; w < b->n_words; w++) {
        for (uint32_t i = 0; i + 1 < b->word_len[w]; i++) {
            uint32_t x = b->words[w][i], y = b->words[w][i + 1], cnt = 0;
            for (uint32_t v = 0; v < b->n_words; v++)
                for (uint32_t k = 0; k + 1 < b->word_len[v]; k++)
                    cnt += b->words[v][k] == x && b->words[v][k + 1] == y;
            if (cnt > best_n || (cnt == best_n && (x < best_a || (x == best_a && y < best_b)))) {
                best_a = x; best_b = y; best_n = cnt;
            }
        }
    }
    if (best_n < 2) return false;
    uint32_t id = b->n_vocab;
    b->vocab[id] = concat(b->vocab[best_a], "", b->vocab[best_b]);
    b->merges[b->n_merges] = concat(b->vocab[best_a], " ", b->vocab[best_b]);
    if (!b->vocab[id] || !b->merges[b->n_merges]) return false;
    b->n_vocab++;
    b->n_merges++;
    for (uint32_t w = 0; w < b->n_words; w++) {
        uint32_t o = 0;
        for (uint32_t i = 0; i < b->word_len[w]; i++) {
            if (i + 1 < b->word_len[w] && b->words[w][i] == best_a && b->words[w][i + 1] == best_b) {
                b->words[w][o++] = id;
                i++;
            } else {
                b->words[w][o++] = b->words[w][i];
            }
        }
        b->word_len[w] = o;
    }
    return true;
}

static bool bpe_train(bpe *b, uint32_t n_vocab) {
    b->vocab = calloc(n_vocab, sizeof *b->vocab);
    b->merges = calloc(n_vocab, sizeof *b->merges);
    if (!b->vocab || !b->merges) return false;
    for (uint32_t c = 0; c < 256; c++) {
        char buf[4] = {0};
        buf[put_utf8(byte_to_cp((uint8_t)c), buf)] = '\0';
        if (!(b->vocab[b->n_vocab++] = strdup(buf))) return false;
    }
    if (!bpe_words(b)) return false;
    while (b->n_vocab < n_vocab && bpe_merge_once(b)) {}
    return true;
}

/* ---- files --------------------------------------------------------------------------------------- */

static qf_status write_text(const char *dir, const char *name, const char *text, qf_error *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    qf_outfile *f;
    qf_status st = qf_outfile_open(path, &f, err);
    if (st) return st;
    if ((st = qf_outfile_write(f, text, strlen(text), err))) { qf_outfile_abort(f); return st; }
    return qf_outfile_commit(f, err);
}

static qf_status write_json(const char *dir, const char *name, cJSON *root, qf_error *err) {
    char *s = cJSON_Print(root);
    cJSON_Delete(root);
    if (!s) return qf_fail(err, QF_E_NOMEM, "out of memory");
    qf_status st = write_text(dir, name, s, err);
    free(s);
    return st;
}

/* The families synth writes, by the name --arch takes. */
typedef struct synth_arch {
    const char *name, *hf_class, *model_type;
} synth_arch;

static const synth_arch synth_archs[] = {
    {"llama", "LlamaForCausalLM", "llama"},
    {"mistral", "MistralForCausalLM", "mistral"},
    {"qwen2", "Qwen2ForCausalLM", "qwen2"},
    {"qwen3", "Qwen3ForCausalLM", "qwen3"},
    {"mixtral", "MixtralForCausalLM", "mixtral"},
    {"qwen2moe", "Qwen2MoeForCausalLM", "qwen2_moe"},
    {"qwen3moe", "Qwen3MoeForCausalLM", "qwen3_moe"},
    {"deepseek-v2", "DeepseekV2ForCausalLM", "deepseek_v2"},
    {"deepseek-v3", "DeepseekV3ForCausalLM", "deepseek_v3"},
};

static const synth_arch *find_arch(const char *name) {
    for (size_t i = 0; i < QF_ARRAY_LEN(synth_archs); i++)
        if (!strcmp(synth_archs[i].name, name ? name : "llama")) return &synth_archs[i];
    return NULL;
}

static bool is(const synth_arch *a, const char *name) { return !strcmp(a->name, name); }

/* The hyper-parameters of the model to write: the options, and each family's own conventions at a
 * small scale (head width 32; DeepSeek: MLA ranks of the model width, 4 expert groups of which 2 are
 * kept, one leading dense layer, YaRN as V3 ships it). */
static qf_status synth_hparams(const qf_synth_opts *o, const synth_arch *sa, qf_hparams *hp, qf_error *err) {
    memset(hp, 0, sizeof *hp);
    for (size_t i = 0; qf_arch_at(i) && !hp->arch; i++)
        for (const char *const *c = qf_arch_at(i)->hf_classes; *c; c++)
            if (!strcmp(*c, sa->hf_class)) hp->arch = qf_arch_at(i);
    if (!hp->arch) return qf_fail(err, QF_E_INTERNAL, "synth: no architecture row for %s", sa->hf_class);
    bool ds = hp->arch->attn == QF_ATTN_MLA, v3 = is(sa, "deepseek-v3");
    hp->n_layer = o->n_layer;
    hp->n_embd = o->n_embd;
    hp->n_ff = o->n_ff;
    hp->n_vocab = o->n_vocab;
    hp->n_head = o->n_embd / 32;
    hp->n_head_kv = ds ? hp->n_head : o->n_embd / 64 ? o->n_embd / 64 : 1;
    hp->head_dim = 32;
    hp->head_dim_explicit = hp->arch->qk_norm;
    hp->n_rot = 32;
    hp->rms_eps = 1e-5f;
    hp->rope_theta = 10000.0f;
    hp->n_ctx_train = 512;
    hp->tied_embeddings = o->tied;
    if (hp->arch->moe && !is(sa, "llama") && !is(sa, "mistral")) {
        hp->n_expert = o->n_expert ? o->n_expert : 16;
        hp->n_expert_used = o->n_expert_used ? o->n_expert_used : 2;
        hp->n_ff_exp = o->n_ff_exp ? o->n_ff_exp : QF_MAX(64u, o->n_ff / 2);
        hp->gating = QF_GATING_SOFTMAX;
        hp->expert_weights_norm = hp->arch->moe_norm == QF_MOE_NORM_ALWAYS;
    }
    if (is(sa, "mixtral")) hp->n_ff = hp->n_ff_exp; /* Mixtral's experts take intermediate_size */
    if (hp->arch->shexp_gate) hp->n_ff_shexp = o->n_ff;
    if (ds) {
        hp->q_lora_rank = v3 ? o->n_embd : 0;
        hp->kv_lora_rank = o->n_embd;
        hp->qk_nope_dim = o->qk_nope_dim ? o->qk_nope_dim : 32;
        hp->qk_rope_dim = 16;
        hp->v_head_dim = o->v_head_dim ? o->v_head_dim : 32;
        hp->head_dim = hp->qk_nope_dim + hp->qk_rope_dim;
        hp->n_rot = 16;
        hp->n_expert_shared = 1;
        hp->n_ff_shexp = hp->n_ff_exp;
        hp->n_layer_dense_lead = o->n_layer > 1 ? 1 : 0;
        hp->rms_eps = 1e-6f;
        if (v3) {
            hp->n_expert_group = hp->n_expert % 4 ? 1 : 4;
            hp->n_expert_group_used = hp->n_expert_group > 1 ? 2 : 1;
            hp->gating = QF_GATING_SIGMOID;
            hp->expert_bias = true;
            hp->expert_weights_norm = true;
            hp->expert_weights_scale = 2.5f;
            hp->n_mtp_layers = o->n_mtp;
            hp->rope_scaling = QF_ROPE_SCALING_YARN;
            hp->rope_factor = 4.0f;
            hp->rope_orig_ctx = 128;
            hp->yarn_beta_fast = 32.0f;
            hp->yarn_beta_slow = 1.0f;
            hp->yarn_mscale = hp->yarn_mscale_all_dim = 1.0f;
        } else {
            hp->n_expert_group = hp->n_expert_group_used = 1;
            hp->expert_weights_scale = 1.0f;
        }
    }
    if (v3 && o->v3_geometry) {
        hp->n_embd = 7168;
        hp->n_head = hp->n_head_kv = 128;
        hp->q_lora_rank = 1536;
        hp->kv_lora_rank = 512;
        hp->qk_nope_dim = 128;
        hp->qk_rope_dim = hp->n_rot = 64;
        hp->head_dim = 192;
        hp->v_head_dim = 128;
        hp->n_ff = 18432;
        hp->n_expert = 256;
        hp->n_expert_used = 8;
        hp->n_ff_exp = hp->n_ff_shexp = 2048;
        hp->n_expert_group = 8;
        hp->n_expert_group_used = 4;
        hp->n_vocab = 129280;
        hp->rope_factor = 40.0f;
        hp->rope_orig_ctx = 4096;
        hp->n_ctx_train = 163840;
    }
    if (o->fp8) hp->fp8_block[0] = hp->fp8_block[1] = 128;
    return QF_OK;
}

static qf_status write_config(const qf_synth_opts *o, const synth_arch *sa, const qf_hparams *hp, const char *dtype,
                              qf_error *err) {
    cJSON *c = cJSON_CreateObject();
    cJSON *a = cJSON_AddArrayToObject(c, "architectures");
    cJSON_AddItemToArray(a, cJSON_CreateString(sa->hf_class));
    cJSON_AddStringToObject(c, "model_type", sa->model_type);
    cJSON_AddNumberToObject(c, "hidden_size", hp->n_embd);
    cJSON_AddNumberToObject(c, "intermediate_size", hp->n_ff);
    cJSON_AddNumberToObject(c, "num_hidden_layers", hp->n_layer);
    cJSON_AddNumberToObject(c, "num_attention_heads", hp->n_head);
    cJSON_AddNumberToObject(c, "num_key_value_heads", hp->n_head_kv);
    if (hp->head_dim_explicit) cJSON_AddNumberToObject(c, "head_dim", hp->head_dim);
    cJSON_AddNumberToObject(c, "vocab_size", hp->n_vocab);
    cJSON_AddNumberToObject(c, "max_position_embeddings", hp->n_ctx_train);
    cJSON_AddNumberToObject(c, "rms_norm_eps", hp->rms_eps);
    cJSON_AddNumberToObject(c, "rope_theta", hp->rope_theta);
    cJSON_AddBoolToObject(c, "tie_word_embeddings", hp->tied_embeddings);
    cJSON_AddNumberToObject(c, "bos_token_id", hp->n_vocab - 2);
    cJSON_AddNumberToObject(c, "eos_token_id", hp->n_vocab - 1);
    cJSON_AddStringToObject(c, "torch_dtype", dtype);
    if (hp->n_expert) {
        const char *count_key = is(sa, "mixtral") ? "num_local_experts" : hp->arch->attn == QF_ATTN_MLA ? "n_routed_experts" : "num_experts";
        cJSON_AddNumberToObject(c, count_key, hp->n_expert);
        cJSON_AddNumberToObject(c, "num_experts_per_tok", hp->n_expert_used);
        if (!is(sa, "mixtral")) cJSON_AddNumberToObject(c, "moe_intermediate_size", hp->n_ff_exp);
        if (!is(sa, "mixtral")) cJSON_AddBoolToObject(c, "norm_topk_prob", hp->expert_weights_norm);
        if (hp->arch->shexp_gate) cJSON_AddNumberToObject(c, "shared_expert_intermediate_size", hp->n_ff_shexp);
        if (hp->arch->shexp_gate || hp->arch->qk_norm) cJSON_AddNumberToObject(c, "decoder_sparse_step", 1);
    }
    if (hp->arch->attn == QF_ATTN_MLA) {
        bool v3 = hp->q_lora_rank > 0;
        if (v3) cJSON_AddNumberToObject(c, "q_lora_rank", hp->q_lora_rank);
        else cJSON_AddNullToObject(c, "q_lora_rank");
        cJSON_AddNumberToObject(c, "kv_lora_rank", hp->kv_lora_rank);
        cJSON_AddNumberToObject(c, "qk_nope_head_dim", hp->qk_nope_dim);
        cJSON_AddNumberToObject(c, "qk_rope_head_dim", hp->qk_rope_dim);
        cJSON_AddNumberToObject(c, "v_head_dim", hp->v_head_dim);
        cJSON_AddNumberToObject(c, "n_shared_experts", hp->n_expert_shared);
        cJSON_AddNumberToObject(c, "first_k_dense_replace", hp->n_layer_dense_lead);
        cJSON_AddNumberToObject(c, "moe_layer_freq", 1);
        cJSON_AddNumberToObject(c, "n_group", hp->n_expert_group);
        cJSON_AddNumberToObject(c, "topk_group", hp->n_expert_group_used);
        cJSON_AddStringToObject(c, "topk_method", v3 ? "noaux_tc" : "greedy");
        cJSON_AddStringToObject(c, "scoring_func", v3 ? "sigmoid" : "softmax");
        cJSON_AddNumberToObject(c, "routed_scaling_factor", hp->expert_weights_scale);
        cJSON_AddNumberToObject(c, "num_nextn_predict_layers", hp->n_mtp_layers);
    }
    if (hp->rope_scaling == QF_ROPE_SCALING_YARN) {
        cJSON *rs = cJSON_AddObjectToObject(c, "rope_scaling");
        cJSON_AddStringToObject(rs, "type", "yarn");
        cJSON_AddNumberToObject(rs, "factor", hp->rope_factor);
        cJSON_AddNumberToObject(rs, "original_max_position_embeddings", hp->rope_orig_ctx);
        cJSON_AddNumberToObject(rs, "beta_fast", hp->yarn_beta_fast);
        cJSON_AddNumberToObject(rs, "beta_slow", hp->yarn_beta_slow);
        cJSON_AddNumberToObject(rs, "mscale", hp->yarn_mscale);
        cJSON_AddNumberToObject(rs, "mscale_all_dim", hp->yarn_mscale_all_dim);
    }
    if (o->fp8) { /* as DeepSeek-V3 ships it */
        cJSON *q = cJSON_AddObjectToObject(c, "quantization_config");
        cJSON_AddStringToObject(q, "activation_scheme", "dynamic");
        cJSON_AddStringToObject(q, "fmt", "e4m3");
        cJSON_AddStringToObject(q, "quant_method", "fp8");
        cJSON *bs = cJSON_AddArrayToObject(q, "weight_block_size");
        cJSON_AddItemToArray(bs, cJSON_CreateNumber(128));
        cJSON_AddItemToArray(bs, cJSON_CreateNumber(128));
    }
    return write_json(o->dir, "config.json", c, err);
}

static qf_status write_tokenizer(const qf_synth_opts *o, qf_error *err) {
    bpe b = {0};
    if (!bpe_train(&b, o->n_vocab - 2)) { bpe_free(&b); return qf_fail(err, QF_E_NOMEM, "out of memory"); }
    cJSON *t = cJSON_CreateObject();
    cJSON_AddStringToObject(t, "version", "1.0");
    cJSON *added = cJSON_AddArrayToObject(t, "added_tokens");
    const char *specials[2] = {"<|begin_of_text|>", "<|end_of_text|>"};
    for (uint32_t i = 0; i < 2; i++) {
        cJSON *s = cJSON_CreateObject();
        cJSON_AddNumberToObject(s, "id", o->n_vocab - 2 + i);
        cJSON_AddStringToObject(s, "content", specials[i]);
        cJSON_AddBoolToObject(s, "single_word", false);
        cJSON_AddBoolToObject(s, "lstrip", false);
        cJSON_AddBoolToObject(s, "rstrip", false);
        cJSON_AddBoolToObject(s, "normalized", false);
        cJSON_AddBoolToObject(s, "special", true);
        cJSON_AddItemToArray(added, s);
    }
    cJSON_AddNullToObject(t, "normalizer");
    cJSON *pre = cJSON_AddObjectToObject(t, "pre_tokenizer");
    cJSON_AddStringToObject(pre, "type", "ByteLevel");
    cJSON_AddBoolToObject(pre, "add_prefix_space", false);
    cJSON_AddBoolToObject(pre, "trim_offsets", true);
    cJSON_AddBoolToObject(pre, "use_regex", true);
    cJSON *model = cJSON_AddObjectToObject(t, "model");
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddBoolToObject(model, "byte_fallback", false);
    cJSON *vocab = cJSON_AddObjectToObject(model, "vocab");
    /* Pad with unused tokens if the text ran out of merges before the requested size. */
    for (uint32_t i = 0; i < o->n_vocab - 2; i++) {
        char pad[32];
        snprintf(pad, sizeof pad, "<unused%u>", i);
        cJSON_AddNumberToObject(vocab, i < b.n_vocab ? b.vocab[i] : pad, i);
    }
    cJSON *merges = cJSON_AddArrayToObject(model, "merges");
    for (uint32_t i = 0; i < b.n_merges; i++) cJSON_AddItemToArray(merges, cJSON_CreateString(b.merges[i]));
    bpe_free(&b);
    qf_status st = write_json(o->dir, "tokenizer.json", t, err);
    if (st) return st;
    cJSON *tc = cJSON_CreateObject();
    cJSON_AddBoolToObject(tc, "add_bos_token", true);
    cJSON_AddBoolToObject(tc, "add_eos_token", false);
    cJSON_AddStringToObject(tc, "bos_token", specials[0]);
    cJSON_AddStringToObject(tc, "eos_token", specials[1]);
    cJSON_AddStringToObject(tc, "tokenizer_class", "PreTrainedTokenizerFast");
    return write_json(o->dir, "tokenizer_config.json", tc, err);
}

/* ---- weights ------------------------------------------------------------------------------------- */

/* A Gaussian from the xorshift state s (Box-Muller). */
static double randn(uint64_t *s) {
    *s ^= *s >> 12; *s ^= *s << 25; *s ^= *s >> 27;
    double u1 = ((*s * 0x2545F4914F6CDD1Dull) >> 11) * (1.0 / 9007199254740992.0) + 1e-300;
    *s ^= *s >> 12; *s ^= *s << 25; *s ^= *s >> 27;
    double u2 = ((*s * 0x2545F4914F6CDD1Dull) >> 11) * (1.0 / 9007199254740992.0);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

typedef struct synth_tensor {
    char name[224];
    qf_dtype dtype;
    uint32_t n_dims;
    uint64_t shape[2];
    double mean, sd;        /* of the values */
    bool fp8;               /* F8_E4M3 codes of value / block scale */
    bool scales;            /* the weight_scale_inv of the tensor before it */
    uint64_t rng;           /* value stream, advanced as the writer asks for bytes */
    uint64_t seed;          /* for the block scales */
} synth_tensor;

typedef struct synth_list {
    synth_tensor *t;
    size_t n, cap;
    const qf_synth_opts *o;
    qf_dtype dt;
    bool oom;
} synth_list;

static synth_tensor *add_tensor(synth_list *l, const char *name, uint32_t n_dims, const uint64_t *shape, qf_dtype dt) {
    if (l->n == l->cap) {
        size_t cap = l->cap * 2 + 64;
        synth_tensor *t = realloc(l->t, cap * sizeof *t);
        if (!t) { l->oom = true; return NULL; }
        l->t = t;
        l->cap = cap;
    }
    synth_tensor *t = &l->t[l->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->dtype = dt;
    t->n_dims = n_dims;
    t->shape[0] = shape[0];
    t->shape[1] = n_dims > 1 ? shape[1] : 0;
    t->rng = l->o->seed * 0x9E3779B97F4A7C15ull + 1 + l->n * 0x632BE59BD9B4E019ull;
    t->seed = t->rng ^ 0xD1B54A32D192ED03ull;
    return t;
}

/* Scaled like trained weights: unit-gain norms, fan-in-scaled projections, small biases. In the FP8
 * release layout the linear weights are E4M3 codes with one F32 scale per 128x128 block, as DeepSeek
 * ships them; embeddings, output, routers, norms and the MTP projection stay BF16, the router bias F32. */
static void add_one(void *ctx, const char *name, uint32_t n_dims, const uint64_t *shape, qf_role role) {
    synth_list *l = ctx;
    bool linear = n_dims == 2 && role != QF_ROLE_TOKEN_EMBD && role != QF_ROLE_OUTPUT && role != QF_ROLE_FFN_GATE_INP &&
                  role != QF_ROLE_FFN_GATE_INP_SHEXP;
    bool fp8 = l->o->fp8 && linear;
    qf_dtype dt = fp8 ? QF_DT_F8_E4M3 : role == QF_ROLE_FFN_EXP_PROBS_B ? QF_DT_F32 : l->dt;
    synth_tensor *t = add_tensor(l, name, n_dims, shape, dt);
    if (!t) return;
    bool norm = n_dims == 1 && role != QF_ROLE_FFN_EXP_PROBS_B && role != QF_ROLE_ATTN_Q_BIAS &&
                role != QF_ROLE_ATTN_K_BIAS && role != QF_ROLE_ATTN_V_BIAS;
    t->mean = norm ? 1.0 : 0.0;
    t->sd = norm ? 0.05 : n_dims == 2 ? 1.0 / sqrt((double)shape[1]) : role == QF_ROLE_FFN_EXP_PROBS_B ? 0.01 : 0.1;
    t->fp8 = fp8;
    if (!fp8) return;
    char sname[200];
    snprintf(sname, sizeof sname, "%s_scale_inv", name);
    uint64_t blocks[2] = {(shape[0] + 127) / 128, (shape[1] + 127) / 128};
    synth_tensor *s = add_tensor(l, sname, 2, blocks, QF_DT_F32);
    if (!s) return;
    s->scales = true;
    s->sd = l->t[l->n - 2].sd;
    s->seed = l->t[l->n - 2].seed;
}

/* The scale of block (br, bc): the value spread over E4M3's range, varied by up to 2x per block so
 * that the dequantization is exercised (one F32 per 128x128 block). */
static float block_scale(const synth_tensor *t, uint64_t br, uint64_t bc) {
    uint64_t h = t->seed ^ (br * 0x9E3779B97F4A7C15ull) ^ (bc * 0xC2B2AE3D27D4EB4Full);
    h ^= h >> 31; h *= 0xBF58476D1CE4E5B9ull; h ^= h >> 29;
    return (float)(t->sd * (4.0 + 4.0 * (double)(h >> 11) / 9007199254740992.0) / 448.0);
}

static qf_status fill_tensor(void *ctx, const qf_st_out_tensor *out, uint64_t off, uint8_t *buf, uint64_t n, qf_error *err) {
    synth_tensor *t = ctx;
    (void)err;
    uint32_t es = qf_dtype_size(t->dtype);
    uint64_t cols = t->n_dims > 1 ? t->shape[1] : t->shape[0];
    for (uint64_t i = off / es; i < (off + n) / es; i++) {
        uint64_t r = i / cols, c = i % cols;
        uint8_t *p = buf + (i * es - off);
        if (t->scales) {
            float s = block_scale(t, r, c);
            memcpy(p, &s, 4);
            continue;
        }
        float v = (float)(t->mean + t->sd * randn(&t->rng));
        if (t->fp8) p[0] = qf_f32_to_e4m3(v / block_scale(t, r / 128, c / 128));
        else if (t->dtype == QF_DT_F32) memcpy(p, &v, 4);
        else {
            uint16_t h = t->dtype == QF_DT_F16 ? qf_f32_to_f16(v) : qf_f32_to_bf16(v);
            memcpy(p, &h, 2);
        }
    }
    (void)out;
    return QF_OK;
}

/* DeepSeek's multi-token-prediction block carries its own embedding, norms and projections besides
 * the layer tensors. */
static void add_mtp_extras(synth_list *l, const qf_hparams *hp) {
    for (uint32_t k = 0; k < hp->n_mtp_layers; k++) {
        uint32_t L = hp->n_layer + k;
        uint64_t ee[2] = {hp->n_embd, 2ull * hp->n_embd}, ve[2] = {hp->n_vocab, hp->n_embd}, e[1] = {hp->n_embd};
        const struct { const char *suffix; uint32_t nd; const uint64_t *shape; qf_role role; } x[] = {
            {"eh_proj.weight", 2, ee, QF_ROLE_OUTPUT}, {"enorm.weight", 1, e, QF_ROLE_ATTN_NORM},
            {"hnorm.weight", 1, e, QF_ROLE_ATTN_NORM}, {"embed_tokens.weight", 2, ve, QF_ROLE_TOKEN_EMBD},
            {"shared_head.norm.weight", 1, e, QF_ROLE_OUTPUT_NORM}, {"shared_head.head.weight", 2, ve, QF_ROLE_OUTPUT}};
        for (size_t i = 0; i < QF_ARRAY_LEN(x); i++) {
            char name[160];
            snprintf(name, sizeof name, "model.layers.%u.%s", L, x[i].suffix);
            add_one(l, name, x[i].nd, x[i].shape, x[i].role);
        }
    }
}

static qf_status write_shards(const qf_synth_opts *o, synth_list *l, qf_error *err) {
    uint32_t shards = o->n_shards > 1 ? o->n_shards : 1;
    qf_st_out_tensor *out = qf_calloc_n(l->n, sizeof *out);
    if (!out) return qf_fail(err, QF_E_NOMEM, "out of memory");
    for (size_t i = 0; i < l->n; i++) {
        synth_tensor *t = &l->t[i];
        out[i] = (qf_st_out_tensor){.name = t->name, .dtype = t->dtype, .n_dims = t->n_dims,
                                    .shape = {t->shape[0], t->shape[1]}, .fill = fill_tensor, .ctx = t};
    }
    cJSON *index = cJSON_CreateObject(), *map = cJSON_AddObjectToObject(index, "weight_map");
    cJSON_AddObjectToObject(index, "metadata");
    qf_status st = QF_OK;
    for (uint32_t k = 0; !st && k < shards; k++) {
        /* consecutive runs of tensors; a weight keeps its scales in the same shard */
        size_t lo = l->n * k / shards, hi = l->n * (k + 1) / shards;
        while (lo > 0 && lo < l->n && l->t[lo].scales) lo++;
        while (hi < l->n && l->t[hi].scales) hi++;
        char file[64], path[4200];
        if (shards == 1) snprintf(file, sizeof file, "model.safetensors");
        else snprintf(file, sizeof file, "model-%05u-of-%05u.safetensors", k + 1, shards);
        snprintf(path, sizeof path, "%s/%s", o->dir, file);
        for (size_t i = lo; i < hi; i++) cJSON_AddStringToObject(map, l->t[i].name, file);
        st = qf_st_write(path, out + lo, hi - lo, err);
    }
    free(out);
    if (!st && shards > 1) return write_json(o->dir, "model.safetensors.index.json", index, err);
    cJSON_Delete(index);
    return st;
}

static qf_status write_weights(const qf_synth_opts *o, const qf_hparams *hp, qf_dtype dt, qf_error *err) {
    synth_list l = {.o = o, .dt = dt};
    qf_arch_hf_tensors(hp, add_one, &l);
    add_mtp_extras(&l, hp);
    qf_status st = l.oom ? qf_fail(err, QF_E_NOMEM, "out of memory") : write_shards(o, &l, err);
    free(l.t);
    return st;
}

/* The files synth writes. A directory that already holds any of them holds a model (perhaps a real
 * one), and synth never replaces a model: it writes into a new directory or one without these files. */
static const char *const k_outputs[] = {"config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors"};

static qf_status check_outputs(const char *dir, qf_error *err) {
    for (size_t i = 0; i < QF_ARRAY_LEN(k_outputs); i++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", dir, k_outputs[i]);
        struct stat sb;
        if (lstat(path, &sb) == 0)
            return qf_fail(err, QF_E_USAGE, "%s: the directory already holds a model (%s exists); synth writes only "
                           "into a new directory or one without %s, %s, %s or %s", dir, k_outputs[i], k_outputs[0],
                           k_outputs[1], k_outputs[2], k_outputs[3]);
        qf_status st = qf_outfile_check(path, NULL, 0, err);
        if (st != QF_OK) return st;
    }
    return QF_OK;
}

qf_status qf_synth_model(const qf_synth_opts *o, qf_error *err) {
    qf_dtype dt;
    if (!strcasecmp(o->dtype, "f32")) dt = QF_DT_F32;
    else if (!strcasecmp(o->dtype, "f16")) dt = QF_DT_F16;
    else if (!strcasecmp(o->dtype, "bf16")) dt = QF_DT_BF16;
    else return qf_fail(err, QF_E_USAGE, "synth: dtype '%s' is not f32, f16 or bf16", o->dtype);
    const synth_arch *sa = find_arch(o->arch);
    if (!sa) {
        char list[256] = "";
        for (size_t i = 0, k = 0; i < QF_ARRAY_LEN(synth_archs); i++)
            k += (size_t)snprintf(list + k, sizeof list - k, "%s%s", i ? ", " : "", synth_archs[i].name);
        return qf_fail(err, QF_E_USAGE, "synth: --arch '%s' is not one of %s", o->arch, list);
    }
    if (o->n_embd % 64 || o->n_vocab < 260 || o->n_layer == 0 || o->n_ff == 0)
        return qf_fail(err, QF_E_USAGE, "synth: dim must be a multiple of 64, vocab >= 260, layers and ff > 0");
    if ((o->fp8 || o->n_mtp || o->v3_geometry) && strcmp(sa->name, "deepseek-v3") != 0)
        return qf_fail(err, QF_E_USAGE, "synth: --fp8, --mtp and --v3-geometry write DeepSeek-V3's release layout or "
                       "widths: use --arch deepseek-v3");
    qf_hparams hp;
    qf_status st = synth_hparams(o, sa, &hp, err);
    if (!st && hp.n_expert && (hp.n_expert_used > hp.n_expert || hp.n_expert > QF_MAX_EXPERTS))
        st = qf_fail(err, QF_E_USAGE, "synth: --experts-used %u must not exceed --experts %u", hp.n_expert_used, hp.n_expert);
    if (st) return st;
    if (mkdir(o->dir, 0755) != 0 && errno != EEXIST)
        return qf_fail(err, QF_E_IO, "%s: cannot create directory: %s", o->dir, strerror(errno));
    qf_status chk = check_outputs(o->dir, err);
    if (chk != QF_OK) return chk;
    const char *torch_dtype = dt == QF_DT_F32 ? "float32" : dt == QF_DT_F16 ? "float16" : "bfloat16";
    st = write_config(o, sa, &hp, torch_dtype, err);
    if (!st) st = write_tokenizer(o, err);
    if (!st) st = write_weights(o, &hp, dt, err);
    return st;
}
