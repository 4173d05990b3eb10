/*
 * qf_synth_model: the built-in default model. A small random Llama checkpoint written exactly as
 * Hugging Face releases are laid out (config.json, tokenizer.json with a byte-level BPE vocabulary
 * trained here on a fixed text, tokenizer_config.json, model.safetensors), so every path the demo and
 * the tests exercise is the one real checkpoints take.
 */
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

typedef struct synth_arch {
    const char *name, *hf_class, *model_type;
    bool qkv_bias;
} synth_arch;

static const synth_arch synth_archs[] = {
    {"llama", "LlamaForCausalLM", "llama", false},
    {"mistral", "MistralForCausalLM", "mistral", false},
    {"qwen2", "Qwen2ForCausalLM", "qwen2", true},
};

static const synth_arch *find_arch(const char *name) {
    for (size_t i = 0; i < QF_ARRAY_LEN(synth_archs); i++)
        if (!strcmp(synth_archs[i].name, name ? name : "llama")) return &synth_archs[i];
    return NULL;
}

static qf_status write_config(const qf_synth_opts *o, const char *dtype, qf_error *err) {
    const synth_arch *arch = find_arch(o->arch);
    cJSON *c = cJSON_CreateObject();
    cJSON *a = cJSON_AddArrayToObject(c, "architectures");
    cJSON_AddItemToArray(a, cJSON_CreateString(arch->hf_class));
    cJSON_AddStringToObject(c, "model_type", arch->model_type);
    cJSON_AddNumberToObject(c, "hidden_size", o->n_embd);
    cJSON_AddNumberToObject(c, "intermediate_size", o->n_ff);
    cJSON_AddNumberToObject(c, "num_hidden_layers", o->n_layer);
    cJSON_AddNumberToObject(c, "num_attention_heads", o->n_embd / 32);
    cJSON_AddNumberToObject(c, "num_key_value_heads", o->n_embd / 64 ? o->n_embd / 64 : 1);
    cJSON_AddNumberToObject(c, "vocab_size", o->n_vocab);
    cJSON_AddNumberToObject(c, "max_position_embeddings", 512);
    cJSON_AddNumberToObject(c, "rms_norm_eps", 1e-5);
    cJSON_AddNumberToObject(c, "rope_theta", 10000.0);
    cJSON_AddBoolToObject(c, "tie_word_embeddings", o->tied);
    cJSON_AddNumberToObject(c, "bos_token_id", o->n_vocab - 2);
    cJSON_AddNumberToObject(c, "eos_token_id", o->n_vocab - 1);
    cJSON_AddStringToObject(c, "torch_dtype", dtype);
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

static double randn(uint64_t *s) {
    *s ^= *s >> 12; *s ^= *s << 25; *s ^= *s >> 27;
    double u1 = ((*s * 0x2545F4914F6CDD1Dull) >> 11) * (1.0 / 9007199254740992.0) + 1e-300;
    *s ^= *s >> 12; *s ^= *s << 25; *s ^= *s >> 27;
    double u2 = ((*s * 0x2545F4914F6CDD1Dull) >> 11) * (1.0 / 9007199254740992.0);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static void *random_tensor(qf_dtype dt, uint64_t n, double mean, double stddev, uint64_t *rng) {
    uint32_t es = qf_dtype_size(dt);
    uint8_t *p = qf_malloc_n(n, es);
    for (uint64_t i = 0; p && i < n; i++) {
        float v = (float)(mean + stddev * randn(rng));
        if (dt == QF_DT_F32) memcpy(p + 4 * i, &v, 4);
        else {
            uint16_t h = dt == QF_DT_F16 ? qf_f32_to_f16(v) : qf_f32_to_bf16(v);
            memcpy(p + 2 * i, &h, 2);
        }
    }
    return p;
}

typedef struct synth_tensor {
    char name[96];
    uint64_t rows, cols; /* rows == 0: 1-D */
    bool norm;
} synth_tensor;

static qf_status write_weights(const qf_synth_opts *o, qf_dtype dt, qf_error *err) {
    uint32_t q = o->n_embd, kv = (o->n_embd / 64 ? o->n_embd / 64 : 1) * 32;
    bool bias = find_arch(o->arch)->qkv_bias;
    size_t n = 3 + (9 + (bias ? 3 : 0)) * (size_t)o->n_layer;
    synth_tensor *ts = calloc(n, sizeof *ts);
    qf_st_out_tensor *out = calloc(n, sizeof *out);
    if (!ts || !out) { free(ts); free(out); return qf_fail(err, QF_E_NOMEM, "out of memory"); }
    size_t k = 0;
    ts[k++] = (synth_tensor){"model.embed_tokens.weight", o->n_vocab, o->n_embd, false};
    for (uint32_t l = 0; l < o->n_layer; l++) {
        const struct { const char *suffix; uint64_t rows, cols; bool norm; } layer[] = {
            {"input_layernorm.weight", 0, o->n_embd, true}, {"self_attn.q_proj.weight", q, o->n_embd, false},
            {"self_attn.k_proj.weight", kv, o->n_embd, false}, {"self_attn.v_proj.weight", kv, o->n_embd, false},
            {"self_attn.o_proj.weight", o->n_embd, q, false}, {"post_attention_layernorm.weight", 0, o->n_embd, true},
            {"mlp.gate_proj.weight", o->n_ff, o->n_embd, false}, {"mlp.up_proj.weight", o->n_ff, o->n_embd, false},
            {"mlp.down_proj.weight", o->n_embd, o->n_ff, false}};
        for (size_t i = 0; i < QF_ARRAY_LEN(layer); i++) {
            ts[k] = (synth_tensor){"", layer[i].rows, layer[i].cols, layer[i].norm};
            snprintf(ts[k++].name, sizeof ts[0].name, "model.layers.%u.%s", l, layer[i].suffix);
        }
        const struct { const char *suffix; uint64_t len; } biases[] = {
            {"self_attn.q_proj.bias", q}, {"self_attn.k_proj.bias", kv}, {"self_attn.v_proj.bias", kv}};
        for (size_t i = 0; bias && i < QF_ARRAY_LEN(biases); i++) {
            ts[k] = (synth_tensor){"", 0, biases[i].len, false};
            snprintf(ts[k++].name, sizeof ts[0].name, "model.layers.%u.%s", l, biases[i].suffix);
        }
    }
    ts[k++] = (synth_tensor){"model.norm.weight", 0, o->n_embd, true};
    if (!o->tied) ts[k++] = (synth_tensor){"lm_head.weight", o->n_vocab, o->n_embd, false};
    n = k;
    uint64_t rng = o->seed * 0x9E3779B97F4A7C15ull + 1;
    qf_status st = QF_OK;
    for (size_t i = 0; i < n && !st; i++) {
        uint64_t elems = (ts[i].rows ? ts[i].rows : 1) * ts[i].cols;
        out[i] = (qf_st_out_tensor){.name = ts[i].name, .dtype = dt, .n_dims = ts[i].rows ? 2 : 1,
                                    .shape = {ts[i].rows ? ts[i].rows : ts[i].cols, ts[i].cols}};
        /* Scaled like trained weights: unit-gain norms, fan-in-scaled projections. */
        double sd = ts[i].norm ? 0.05 : ts[i].rows ? 1.0 / sqrt((double)ts[i].cols) : 0.1; /* biases: small */
        out[i].data = random_tensor(dt, elems, ts[i].norm ? 1.0 : 0.0, sd, &rng);
        if (!out[i].data) st = qf_fail(err, QF_E_NOMEM, "out of memory");
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", o->dir);
    if (!st) st = qf_st_write(path, out, n, err);
    for (size_t i = 0; i < n; i++) free((void *)out[i].data);
    free(out);
    free(ts);
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
    if (!find_arch(o->arch)) return qf_fail(err, QF_E_USAGE, "synth: arch '%s' is not llama, mistral or qwen2", o->arch);
    if (o->n_embd % 64 || o->n_vocab < 260 || o->n_layer == 0 || o->n_ff == 0)
        return qf_fail(err, QF_E_USAGE, "synth: dim must be a multiple of 64, vocab >= 260, layers and ff > 0");
    if (mkdir(o->dir, 0755) != 0 && errno != EEXIST)
        return qf_fail(err, QF_E_IO, "%s: cannot create directory: %s", o->dir, strerror(errno));
    qf_status chk = check_outputs(o->dir, err);
    if (chk != QF_OK) return chk;
    const char *torch_dtype = dt == QF_DT_F32 ? "float32" : dt == QF_DT_F16 ? "float16" : "bfloat16";
    qf_status st = write_config(o, torch_dtype, err);
    if (!st) st = write_tokenizer(o, err);
    if (!st) st = write_weights(o, dt, err);
    return st;
}
