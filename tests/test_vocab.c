/*
 * test_vocab.c — formats/vocab.c against llama.cpp's converter output and hand-made tokenizers.
 *
 *  1. stories260K (SentencePiece): every tokenizer.* key and array element of our GGUF equals the GGUF
 *     llama.cpp's convert_hf_to_gguf.py wrote (shared/models/reference-gguf); skips if shared is absent.
 *     QF_VOCAB_REF_DIR + QF_VOCAB_REF_GGUF (env) run the same comparison on another pair, e.g. a
 *     qf-llama-a GGUF made with shared/ref/llamacpp_convert.py --vocab-only.
 *  2. synthetic byte-level BPE tokenizer.json files (GPT-2, Llama 3, Qwen2, DeepSeek V3 pre-tokenizers,
 *     both merge forms, added tokens, post-processor template): the keys written;
 *  3. a synthetic tokenizer.model built here byte by byte: types, padding, added tokens;
 *  4. malformed inputs: bad JSON, truncated/mutated protobuf, duplicate and out-of-range ids, missing
 *     files, GGUFs with inconsistent tokenizer arrays; each must give a one-line error, never a crash.
 */
#include "testutil.h"
#include "tokdata.h"

#include "formats/vocab.h"

#include <cjson/cJSON.h>


/* ---- file readers ------------------------------------------------------------------------------------ */

/* An in-memory "directory": name/content pairs, NULL-terminated; len 0 means strlen(content). */
typedef struct mem_file {
    const char *name;
    const char *data;
    size_t len;
} mem_file;

static qf_status mem_reader(void *ctx, const char *name, char **buf, size_t *len, qf_error *err) {
    for (const mem_file *f = ctx; f->name; f++) {
        if (strcmp(f->name, name) != 0) continue;
        size_t n = f->len ? f->len : strlen(f->data);
        *buf = malloc(n + 1);
        if (!*buf) return qf_fail(err, QF_E_NOMEM, "oom");
        memcpy(*buf, f->data, n);
        (*buf)[n] = '\0';
        *len = n;
        return QF_OK;
    }
    return QF_E_NOTFOUND;
}

/* ---- GGUF helpers ------------------------------------------------------------------------------------ */

static size_t vtype_size(qf_gguf_vtype t) {
    switch (t) {
    case QF_GGUF_U8: case QF_GGUF_I8: case QF_GGUF_BOOL: return 1;
    case QF_GGUF_U16: case QF_GGUF_I16: return 2;
    case QF_GGUF_U32: case QF_GGUF_I32: case QF_GGUF_F32: return 4;
    case QF_GGUF_U64: case QF_GGUF_I64: case QF_GGUF_F64: return 8;
    default: return 0;
    }
}

/* One key's value, scalar or array, compared exactly (floats bit for bit). Returns the mismatch count. */
static int compare_kv(const qf_gguf_kv *a, const qf_gguf_kv *b) {
    if (a->type != b->type) {
        fprintf(stderr, "  %s: type %d vs reference %d\n", a->key, a->type, b->type);
        return 1;
    }
    if (a->type == QF_GGUF_STRING)
        return a->v.str.len == b->v.str.len && memcmp(a->v.str.ptr, b->v.str.ptr, a->v.str.len) == 0
                   ? 0 : (fprintf(stderr, "  %s: '%s' vs reference '%s'\n", a->key, a->v.str.ptr, b->v.str.ptr), 1);
    if (a->type != QF_GGUF_ARRAY) {
        size_t sz = vtype_size(a->type);
        bool same = a->type == QF_GGUF_BOOL ? a->v.b == b->v.b : memcmp(&a->v, &b->v, sz) == 0;
        if (a->type == QF_GGUF_U32 || a->type == QF_GGUF_I32) same = a->v.u64 == b->v.u64;
        if (!same) fprintf(stderr, "  %s: scalar differs (%llu vs %llu)\n", a->key, (unsigned long long)a->v.u64,
                           (unsigned long long)b->v.u64);
        return !same;
    }
    if (a->arr_type != b->arr_type || a->n != b->n) {
        fprintf(stderr, "  %s: array of %llu x type %d vs reference %llu x type %d\n", a->key,
                (unsigned long long)a->n, a->arr_type, (unsigned long long)b->n, b->arr_type);
        return 1;
    }
    int bad = 0;
    for (uint64_t i = 0; i < a->n; i++) {
        bool same;
        if (a->arr_type == QF_GGUF_STRING) {
            const qf_gguf_str *x = (const qf_gguf_str *)a->v.arr + i, *y = (const qf_gguf_str *)b->v.arr + i;
            same = x->len == y->len && memcmp(x->ptr, y->ptr, x->len) == 0;
            if (!same && bad < 5) fprintf(stderr, "  %s[%llu]: '%s' vs reference '%s'\n", a->key, (unsigned long long)i, x->ptr, y->ptr);
        } else {
            size_t sz = vtype_size(a->arr_type);
            same = memcmp((const uint8_t *)a->v.arr + i * sz, (const uint8_t *)b->v.arr + i * sz, sz) == 0;
            if (!same && bad < 5) fprintf(stderr, "  %s[%llu] differs\n", a->key, (unsigned long long)i);
        }
        bad += !same;
    }
    return bad;
}

static bool is_tokenizer_key(const char *k) { return strncmp(k, "tokenizer.", 10) == 0; }

/* Every tokenizer.* key of `ref` is in `ours` with the same type and value, and `ours` has no others. */
static void compare_tokenizer_keys(const qf_gguf *ours, const qf_gguf *ref, const char *label) {
    int n_ref = 0, n_ours = 0;
    for (size_t i = 0; i < qf_gguf_n_kv(ref); i++) {
        const qf_gguf_kv *r = qf_gguf_kv_at(ref, i);
        if (!is_tokenizer_key(r->key)) continue;
        n_ref++;
        const qf_gguf_kv *o = qf_gguf_find_kv(ours, r->key);
        CHECK_MSG(o != NULL, "%s: key %s missing from our GGUF", label, r->key);
        if (o) CHECK_MSG(compare_kv(o, r) == 0, "%s: key %s differs from llama.cpp's", label, r->key);
    }
    for (size_t i = 0; i < qf_gguf_n_kv(ours); i++) {
        const qf_gguf_kv *o = qf_gguf_kv_at(ours, i);
        if (!is_tokenizer_key(o->key)) continue;
        n_ours++;
        CHECK_MSG(qf_gguf_find_kv(ref, o->key) != NULL, "%s: we write %s, llama.cpp does not", label, o->key);
    }
    printf("%s: %d tokenizer keys in the reference, %d in ours\n", label, n_ref, n_ours);
}

/* Build from an HF directory, write, and compare with a GGUF llama.cpp's converter wrote. */
static void check_against_reference(const char *hf_dir, const char *ref_path, const char *label) {
    qf_error err = {0};
    qf_vocab v;
    char out[4096];
    snprintf(out, sizeof out, "%s/%s.vocab.gguf", qf_test_scratch, label);
    qf_status st = qf_vocab_load_hf(qf_test_dir_reader, (void *)hf_dir, qf_test_config_vocab_size(hf_dir), &v, &err);
    CHECK_OK(st, &err);
    if (st) return;
    CHECK_OK(qf_test_write_vocab(&v, out, &err), &err);
    qf_gguf *ours = NULL, *ref = NULL;
    CHECK_OK(qf_gguf_open(out, &ours, &err), &err);
    CHECK_OK(qf_gguf_open(ref_path, &ref, &err), &err);
    if (ours && ref) compare_tokenizer_keys(ours, ref, label);
    /* reading the reference back gives the vocabulary we built */
    qf_vocab r;
    if (ref) {
        CHECK_OK(qf_vocab_load_gguf(ref, &r, &err), &err);
        CHECK(r.n_tokens == v.n_tokens && strcmp(r.model, v.model) == 0 && strcmp(r.pre, v.pre) == 0);
        bool same = r.n_tokens == v.n_tokens;
        for (uint32_t i = 0; same && i < v.n_tokens; i++)
            same = strcmp(r.tokens[i], v.tokens[i]) == 0 && r.types[i] == v.types[i] &&
                   memcmp(&r.scores[i], &v.scores[i], sizeof(float)) == 0;
        CHECK_MSG(same, "%s: qf_vocab_load_gguf(reference) differs from qf_vocab_load_hf", label);
        CHECK(r.bos_id == v.bos_id && r.eos_id == v.eos_id && r.unk_id == v.unk_id && r.pad_id == v.pad_id);
        CHECK(r.add_bos == v.add_bos && r.add_eos == v.add_eos && r.add_sep == v.add_sep);
        qf_vocab_free(&r);
    }
    qf_gguf_close(ours);
    qf_gguf_close(ref);
    qf_vocab_free(&v);
}

static void test_stories260k(void) {
    char dir[4096], ref[4096];
    if (!qf_test_shared("models/stories260K", dir, sizeof dir) ||
        !qf_test_shared("models/reference-gguf/stories260K.llamacpp-f32.gguf", ref, sizeof ref))
        return;
    check_against_reference(dir, ref, "stories260K");
}

static void test_env_reference(void) {
    const char *dir = getenv("QF_VOCAB_REF_DIR"), *ref = getenv("QF_VOCAB_REF_GGUF");
    if (!dir || !ref || !qf_test_file_exists(ref)) {
        printf("SKIP: QF_VOCAB_REF_DIR/QF_VOCAB_REF_GGUF not set (optional second reference comparison)\n");
        return;
    }
    check_against_reference(dir, ref, "env-reference");
}

/* ---- synthetic byte-level BPE ----------------------------------------------------------------------- */

static qf_status load_mem(const mem_file *files, uint32_t vocab_size, qf_vocab *v, qf_error *err) {
    return qf_vocab_load_hf(mem_reader, (void *)files, vocab_size, v, err);
}

/* Write v, read it back, and compare every field. */
static void check_round_trip(const qf_vocab *v, const char *label) {
    char path[4096];
    qf_error err = {0};
    snprintf(path, sizeof path, "%s/%s.gguf", qf_test_scratch, label);
    CHECK_OK(qf_test_write_vocab(v, path, &err), &err);
    qf_gguf *g = NULL;
    CHECK_OK(qf_gguf_open(path, &g, &err), &err);
    if (!g) return;
    qf_vocab r;
    qf_status st = qf_vocab_load_gguf(g, &r, &err);
    CHECK_OK(st, &err);
    if (!st) {
        bool same = r.n_tokens == v->n_tokens && r.n_merges == v->n_merges && !strcmp(r.model, v->model) &&
                    !strcmp(r.pre, v->pre) && !r.scores == !v->scores;
        for (uint32_t i = 0; same && i < v->n_tokens; i++)
            same = !strcmp(r.tokens[i], v->tokens[i]) && r.types[i] == v->types[i] &&
                   (!v->scores || r.scores[i] == v->scores[i]);
        for (uint64_t i = 0; same && i < v->n_merges; i++) same = !strcmp(r.merges[i], v->merges[i]);
        same = same && r.bos_id == v->bos_id && r.eos_id == v->eos_id && r.unk_id == v->unk_id &&
               r.pad_id == v->pad_id && r.eot_id == v->eot_id && r.sep_id == v->sep_id && r.mask_id == v->mask_id &&
               r.eom_id == v->eom_id && r.add_bos == v->add_bos && r.add_eos == v->add_eos && r.add_sep == v->add_sep &&
               r.add_space_prefix == v->add_space_prefix && !r.chat_template == !v->chat_template &&
               (!v->chat_template || !strcmp(r.chat_template, v->chat_template));
        CHECK_MSG(same, "%s: GGUF round trip changed the vocabulary", label);
        qf_vocab_free(&r);
    }
    qf_gguf_close(g);
}

static const char GPT2_TOKENIZER[] =
    "{\"version\":\"1.0\",\"added_tokens\":[{\"id\":6,\"content\":\"<|endoftext|>\",\"special\":true,\"normalized\":false}],"
    "\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":true},"
    "\"post_processor\":{\"type\":\"ByteLevel\",\"add_prefix_space\":true,\"trim_offsets\":false,\"use_regex\":true},"
    "\"model\":{\"type\":\"BPE\",\"vocab\":{\"!\":0,\"a\":1,\"b\":2,\"ab\":3,\"\\u0120\":4,\"\\u0120ab\":5,\"<|endoftext|>\":6},"
    "\"merges\":[\"a b\",\"\\u0120 ab\"]}}";

static void test_bpe_gpt2(void) {
    const mem_file files[] = {
        { "tokenizer.json", GPT2_TOKENIZER, 0 },
        { "tokenizer_config.json", "{\"bos_token\":\"<|endoftext|>\",\"eos_token\":\"<|endoftext|>\","
                                   "\"unk_token\":\"<|endoftext|>\",\"add_prefix_space\":false,"
                                   "\"chat_template\":\"{{ messages }}\"}", 0 },
        { "config.json", "{\"vocab_size\":7,\"bos_token_id\":6,\"eos_token_id\":6}", 0 },
        { NULL, NULL, 0 },
    };
    qf_vocab v;
    qf_error err = {0};
    qf_status st = load_mem(files, 7, &v, &err);
    CHECK_OK(st, &err);
    if (st) return;
    CHECK(!strcmp(v.model, "gpt2") && !strcmp(v.pre, "gpt-2"));
    CHECK(v.n_tokens == 7 && v.scores == NULL);
    CHECK(!strcmp(v.tokens[4], "\xc4\xa0") && !strcmp(v.tokens[6], "<|endoftext|>"));
    CHECK(v.types[0] == QF_TOK_NORMAL && v.types[5] == QF_TOK_NORMAL && v.types[6] == QF_TOK_CONTROL);
    CHECK(v.n_merges == 2 && !strcmp(v.merges[0], "a b") && !strcmp(v.merges[1], "\xc4\xa0 ab"));
    CHECK(v.bos_id == 6 && v.eos_id == 6 && v.unk_id == 6 && v.pad_id == -1 && v.eot_id == -1);
    /* a ByteLevel post-processor states nothing about bos/eos */
    CHECK(v.add_bos == -1 && v.add_eos == -1 && v.add_sep == -1);
    CHECK(v.add_space_prefix == 0);
    CHECK(v.chat_template && !strcmp(v.chat_template, "{{ messages }}"));
    check_round_trip(&v, "bpe-gpt2");
    qf_vocab_free(&v);

    /* without config.json's vocab_size the table is exactly the tokenizer's */
    st = load_mem(files, 0, &v, &err);
    CHECK_OK(st, &err);
    if (!st) CHECK(v.n_tokens == 7);
    qf_vocab_free(&v);
}

#define LLAMA3_RE "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+"
#define QWEN2_RE "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+"

/* A Llama-3-like tokenizer.json whose pre_tokenizer is `pre` (a JSON object). */
static char *llama3_like(const char *pre) {
    static const char fmt[] =
        "{\"added_tokens\":["
        "{\"id\":6,\"content\":\"<|begin_of_text|>\",\"special\":true,\"normalized\":false},"
        "{\"id\":7,\"content\":\"<|end_of_text|>\",\"special\":true,\"normalized\":false},"
        "{\"id\":8,\"content\":\"<|reserved_0|>\",\"special\":false,\"normalized\":false},"
        "{\"id\":9,\"content\":\"hello\\u2581world\",\"special\":false,\"normalized\":true}],"
        "\"pre_tokenizer\":%s,"
        "\"post_processor\":{\"type\":\"Sequence\",\"processors\":["
        "{\"type\":\"ByteLevel\",\"add_prefix_space\":true,\"trim_offsets\":false,\"use_regex\":true},"
        "{\"type\":\"TemplateProcessing\","
        "\"single\":[{\"SpecialToken\":{\"id\":\"<|begin_of_text|>\",\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],"
        "\"pair\":[{\"SpecialToken\":{\"id\":\"<|begin_of_text|>\",\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}},"
        "{\"SpecialToken\":{\"id\":\"<|begin_of_text|>\",\"type_id\":1}},{\"Sequence\":{\"id\":\"B\",\"type_id\":1}}]}]},"
        "\"model\":{\"type\":\"BPE\",\"ignore_merges\":true,\"vocab\":{\"!\":0,\"a\":1,\"b\":2,\"ab\":3,\"\\u0120\":4,\"\\u0120ab\":5},"
        "\"merges\":[[\"a\",\"b\"],[\"\\u0120\",\"ab\"],[\"a b\",\"c\"]]}}";
    size_t n = sizeof fmt + strlen(pre);
    char *s = malloc(n);
    if (s) snprintf(s, n, fmt, pre);
    return s;
}

static const char LLAMA3_CONFIG[] =
    "{\"bos_token\":\"<|begin_of_text|>\",\"eos_token\":\"<|end_of_text|>\",\"chat_template\":["
    "{\"name\":\"tool_use\",\"template\":\"T\"},{\"name\":\"default\",\"template\":\"D\"}]}";

static void test_bpe_llama3(void) {
    char *tj = llama3_like("{\"type\":\"Sequence\",\"pretokenizers\":["
                           "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"" LLAMA3_RE "\"},\"behavior\":\"Isolated\",\"invert\":false},"
                           "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":false}]}");
    const mem_file files[] = {
        { "tokenizer.json", tj, 0 },
        { "tokenizer_config.json", LLAMA3_CONFIG, 0 },
        { "config.json", "{\"vocab_size\":12,\"bos_token_id\":6,\"eos_token_id\":[7,8]}", 0 },
        { NULL, NULL, 0 },
    };
    qf_vocab v;
    qf_error err = {0};
    qf_status st = load_mem(files, 12, &v, &err);
    CHECK_OK(st, &err);
    if (!st) {
        CHECK(!strcmp(v.model, "gpt2") && !strcmp(v.pre, "llama-bpe"));
        CHECK(v.n_tokens == 12);
        CHECK(v.types[6] == QF_TOK_CONTROL && v.types[7] == QF_TOK_CONTROL);
        CHECK(v.types[8] == QF_TOK_CONTROL);                 /* not special, but looks special */
        CHECK(v.types[9] == QF_TOK_USER_DEFINED && !strcmp(v.tokens[9], "hello world"));
        CHECK(v.types[10] == QF_TOK_UNUSED && !strcmp(v.tokens[10], "[PAD10]") && !strcmp(v.tokens[11], "[PAD11]"));
        CHECK(v.n_merges == 3 && !strcmp(v.merges[0], "a b") && !strcmp(v.merges[1], "\xc4\xa0 ab") &&
              !strcmp(v.merges[2], "a\xc4\xa0" "b c"));
        CHECK(v.bos_id == 6 && v.eos_id == 7); /* eos from tokenizer_config; config.json's list is ignored */
        CHECK(v.add_bos == 1 && v.add_sep == 0 && v.add_eos == -1);
        CHECK(v.chat_template && !strcmp(v.chat_template, "D"));
        check_round_trip(&v, "bpe-llama3");
        qf_vocab_free(&v);
    }
    free(tj);
}

/* pre_tokenizer JSON -> expected tokenizer.ggml.pre (NULL = unsupported). */
static void check_pre(const char *pre_json, const char *want, const char *label) {
    char *tj = llama3_like(pre_json);
    const mem_file files[] = { { "tokenizer.json", tj, 0 }, { NULL, NULL, 0 } };
    qf_vocab v;
    qf_error err = {0};
    qf_status st = load_mem(files, 0, &v, &err);
    if (want) {
        CHECK_OK(st, &err);
        if (!st) CHECK_MSG(!strcmp(v.pre, want), "%s: pre '%s', expected '%s'", label, v.pre, want);
    } else {
        CHECK_MSG(st == QF_E_UNSUPPORTED, "%s: status %s", label, qf_status_name(st));
        CHECK_MSG(strstr(err.msg, "tokenizer.json") && strstr(err.msg, "pre-tokenizer"), "%s: message '%s'", label, err.msg);
        CHECK_MSG(strlen(err.msg) < 300 && !strchr(err.msg, '\n'), "%s: message not one short line", label);
    }
    if (!st) qf_vocab_free(&v);
    free(tj);
}

static void test_bpe_pre_tokenizers(void) {
    check_pre("{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":\"" QWEN2_RE "\"},"
              "\"behavior\":\"Isolated\",\"invert\":false},{\"type\":\"ByteLevel\",\"use_regex\":false}]}",
              "qwen2", "qwen2");
    check_pre("{\"type\":\"Sequence\",\"pretokenizers\":["
              "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"\\\\p{N}{1,3}\"},\"behavior\":\"Isolated\",\"invert\":false},"
              "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"[\\u4e00-\\u9fa5\\u3040-\\u309f\\u30a0-\\u30ff]+\"},\"behavior\":\"Isolated\",\"invert\":false},"
              "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"[!\\\"#$%&'()*+,\\\\-./:;<=>?@\\\\[\\\\\\\\\\\\]^_`{|}~][A-Za-z]+|"
              "[^\\r\\n\\\\p{L}\\\\p{P}\\\\p{S}]?[\\\\p{L}\\\\p{M}]+| ?[\\\\p{P}\\\\p{S}]+[\\r\\n]*|\\\\s*[\\r\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"},"
              "\"behavior\":\"Isolated\",\"invert\":false},"
              "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":false}]}",
              "deepseek-v3", "deepseek-v3");
    /* the GPT-2 regex spelled out in a Split is the same pre-tokenizer as ByteLevel's built-in one */
    check_pre("{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":"
              "\"'s|'t|'re|'ve|'m|'ll|'d| ?\\\\p{L}+| ?\\\\p{N}+| ?[^\\\\s\\\\p{L}\\\\p{N}]+|\\\\s+(?!\\\\S)\"},"
              "\"behavior\":\"Isolated\",\"invert\":false},{\"type\":\"ByteLevel\",\"use_regex\":false}]}",
              "gpt-2", "gpt-2 via Split");
    check_pre("{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":\"\\\\p{L}+|[0-9]\"},"
              "\"behavior\":\"Isolated\",\"invert\":false},{\"type\":\"ByteLevel\",\"use_regex\":false}]}",
              NULL, "unknown regex");
    check_pre("{\"type\":\"Metaspace\",\"replacement\":\"\\u2581\"}", NULL, "not byte-level");
    /* the Llama 3 regex followed by a ByteLevel that applies the GPT-2 regex too is a different thing */
    check_pre("{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":\"" LLAMA3_RE "\"},"
              "\"behavior\":\"Isolated\",\"invert\":false},{\"type\":\"ByteLevel\",\"use_regex\":true}]}",
              NULL, "llama3 + gpt2 regex");
}

/* A Gemma-3-like tokenizer.json: SentencePiece-style BPE (normalizer ' ' -> U+2581, byte fallback). */
static char *spm_bpe_like(const char *normalizer, const char *pre, bool byte_fallback) {
    static const char fmt[] =
        "{\"added_tokens\":[{\"id\":0,\"content\":\"<bos>\",\"special\":true,\"normalized\":false},"
        "{\"id\":5,\"content\":\"\\u2581\\u2581\",\"special\":false,\"normalized\":false}],"
        "\"normalizer\":%s,\"pre_tokenizer\":%s,"
        "\"model\":{\"type\":\"BPE\",\"byte_fallback\":%s,\"vocab\":{\"<bos>\":0,\"<0x41>\":1,\"\\u2581\":2,\"a\":3,"
        "\"\\u2581a\":4,\"\\u2581\\u2581\":5},\"merges\":[[\"\\u2581\",\"a\"],[\"\\u2581\",\"\\u2581\"]]}}";
    size_t n = sizeof fmt + strlen(normalizer) + strlen(pre) + 8;
    char *s = malloc(n);
    if (s) snprintf(s, n, fmt, normalizer, pre, byte_fallback ? "true" : "false");
    return s;
}

static void test_bpe_spm_style(void) {
    static const char replace[] = "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\\u2581\"}";
    static const char split[] = "{\"type\":\"Split\",\"pattern\":{\"String\":\" \"},\"behavior\":\"MergedWithPrevious\",\"invert\":false}";
    static const struct { const char *norm, *pre; bool fallback; const char *want; } cases[] = {
        { replace, split, true, "granite-embed-multi-311m" },  /* Gemma 3 */
        { replace, "null", true, "granite-embed-multi-311m" }, /* no pre-tokenizer at all: the same */
        { replace, split, false, NULL },                       /* no byte fallback: not SentencePiece-style */
        /* Llama-2-style: a dummy prefix U+2581, which llama.cpp's gemma4 type does not add */
        { "{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\",\"prepend\":\"\\u2581\"},"
          "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\\u2581\"}]}", "null", true, NULL },
        { "null", split, true, NULL },
    };
    for (size_t i = 0; i < QF_ARRAY_LEN(cases); i++) {
        char *tj = spm_bpe_like(cases[i].norm, cases[i].pre, cases[i].fallback);
        const mem_file files[] = { { "tokenizer.json", tj, 0 }, { NULL, NULL, 0 } };
        qf_vocab v;
        qf_error err = {0};
        qf_status st = load_mem(files, 8, &v, &err);
        if (cases[i].want) {
            CHECK_OK(st, &err);
            if (!st) {
                CHECK_MSG(!strcmp(v.model, "gpt2") && !strcmp(v.pre, cases[i].want), "case %zu: %s %s", i, v.model, v.pre);
                CHECK(v.n_tokens == 8 && !v.scores && v.types[0] == QF_TOK_CONTROL && v.types[1] == QF_TOK_NORMAL);
                /* a non-special added token: U+2581 written as ' ', as llama.cpp matches it against raw text */
                CHECK(v.types[5] == QF_TOK_USER_DEFINED && !strcmp(v.tokens[5], "  "));
                CHECK(v.types[6] == QF_TOK_UNUSED && !strcmp(v.tokens[7], "[PAD7]"));
                CHECK(v.n_merges == 2 && !strcmp(v.merges[0], "\xe2\x96\x81 a"));
                check_round_trip(&v, "bpe-spm-style");
                qf_vocab_free(&v);
            }
        } else {
            CHECK_MSG(st == QF_E_UNSUPPORTED && strstr(err.msg, "tokenizer.json") && !strchr(err.msg, '\n'),
                      "case %zu: %s '%s'", i, qf_status_name(st), err.msg);
            if (!st) qf_vocab_free(&v);
        }
        free(tj);
    }
}

/* ---- synthetic SentencePiece model ------------------------------------------------------------------- */

typedef struct pbuf {
    uint8_t b[4096];
    size_t n;
} pbuf;

static void pb_put_varint(pbuf *p, uint64_t v) {
    do {
        uint8_t byte = v & 0x7f;
        v >>= 7;
        p->b[p->n++] = byte | (v ? 0x80 : 0);
    } while (v);
}

static void pb_put_bytes(pbuf *p, uint32_t field, const void *data, size_t len) {
    pb_put_varint(p, (uint64_t)field << 3 | 2);
    pb_put_varint(p, len);
    memcpy(p->b + p->n, data, len);
    p->n += len;
}

static void pb_put_piece(pbuf *p, const char *text, float score, int type) {
    pbuf m = { .n = 0 };
    uint32_t bits;
    pb_put_bytes(&m, 1, text, strlen(text));
    pb_put_varint(&m, 2 << 3 | 5);
    memcpy(&bits, &score, 4);
    for (int i = 0; i < 4; i++) m.b[m.n++] = (uint8_t)(bits >> (8 * i));
    if (type != 1) { pb_put_varint(&m, 3 << 3 | 0); pb_put_varint(&m, (uint64_t)type); }
    pb_put_bytes(p, 1, m.b, m.n);
}

/* <unk> <s> </s> <0x41> ▁a b(USER_DEFINED) c(UNUSED); byte_fallback; add_dummy_prefix false. */
static void make_spm(pbuf *p) {
    p->n = 0;
    pb_put_piece(p, "<unk>", 0, 2);
    pb_put_piece(p, "<s>", 0, 3);
    pb_put_piece(p, "</s>", 0, 3);
    pb_put_piece(p, "<0x41>", 0, 6);
    pb_put_piece(p, "\xe2\x96\x81" "a", -1.5f, 1);
    pb_put_piece(p, "b", -2.25f, 4);
    pb_put_piece(p, "c", -3.0f, 5);
    pbuf t = { .n = 0 };
    pb_put_varint(&t, 35 << 3 | 0); pb_put_varint(&t, 1);             /* byte_fallback */
    pb_put_varint(&t, 43 << 3 | 0); pb_put_varint(&t, (uint64_t)-1);  /* pad_id = -1, 10-byte varint */
    pb_put_bytes(p, 2, t.b, t.n);
    pbuf nz = { .n = 0 };
    pb_put_varint(&nz, 3 << 3 | 0); pb_put_varint(&nz, 0);            /* add_dummy_prefix = false */
    pb_put_bytes(p, 3, nz.b, nz.n);
}

static void test_spm_synthetic(void) {
    pbuf spm;
    make_spm(&spm);
    const mem_file files[] = {
        { "tokenizer.model", (const char *)spm.b, spm.n },
        { "added_tokens.json", "{\"<extra>\": 10, \"<far>\": 99}", 0 },
        { "tokenizer_config.json", "{\"add_bos_token\":true,\"add_eos_token\":false,\"bos_token\":\"<s>\","
                                   "\"eos_token\":{\"content\":\"</s>\",\"lstrip\":false},\"add_prefix_space\":true,"
                                   "\"added_tokens_decoder\":{\"8\":{\"content\":\"<|im_start|>\",\"special\":false},"
                                   "\"9\":{\"content\":\"\\u2581x\",\"special\":false},"
                                   "\"2\":{\"content\":\"</s>\",\"special\":true}}}", 0 },
        { "config.json", "{\"vocab_size\":12,\"bos_token_id\":1,\"eos_token_id\":2,\"pad_token_id\":50}", 0 },
        { NULL, NULL, 0 },
    };
    qf_vocab v;
    qf_error err = {0};
    qf_status st = load_mem(files, 12, &v, &err);
    CHECK_OK(st, &err);
    if (st) return;
    CHECK(!strcmp(v.model, "llama") && !strcmp(v.pre, "default") && v.n_tokens == 12 && v.scores);
    static const int32_t types[12] = { 2, 3, 3, 6, 1, 1, 5, 5, 3, 4, 4, 5 };
    for (int i = 0; i < 12; i++) CHECK_MSG(v.types[i] == types[i], "token %d type %d, expected %d", i, v.types[i], types[i]);
    CHECK(!strcmp(v.tokens[3], "<0x41>") && !strcmp(v.tokens[4], "\xe2\x96\x81" "a"));
    CHECK(v.scores[4] == -1.5f && v.scores[5] == -2.25f && v.scores[6] == -3.0f);
    CHECK(!strcmp(v.tokens[7], "[PAD7]") && v.scores[7] == -10000.0f);
    CHECK(!strcmp(v.tokens[8], "<|im_start|>") && v.scores[8] == -1000.0f);
    CHECK(!strcmp(v.tokens[9], " x") && v.scores[9] == -1000.0f);
    CHECK(!strcmp(v.tokens[10], "<extra>") && v.scores[10] == -1000.0f);
    CHECK(!strcmp(v.tokens[11], "[PAD11]"));
    /* no tokenizer.json: tokenizer_config's *_token cannot resolve, ids come from config.json; pad 50 is
     * out of range and skipped as the converter skips it */
    CHECK(v.bos_id == 1 && v.eos_id == 2 && v.unk_id == -1 && v.pad_id == -1);
    CHECK(v.add_bos == 1 && v.add_eos == 0 && v.add_sep == -1 && v.add_space_prefix == 1);
    check_round_trip(&v, "spm-synthetic");
    qf_vocab_free(&v);

    /* without vocab_size: exactly the pieces */
    const mem_file only[] = { { "tokenizer.model", (const char *)spm.b, spm.n }, { NULL, NULL, 0 } };
    st = load_mem(only, 0, &v, &err);
    CHECK_OK(st, &err);
    if (!st) CHECK(v.n_tokens == 7 && v.bos_id == -1 && v.add_bos == -1);
    qf_vocab_free(&v);
}

/* ---- malformed inputs -------------------------------------------------------------------------------- */

/* Expect status `want` and a one-line message containing `needle`. */
static void expect_fail(const mem_file *files, uint32_t vocab_size, qf_status want, const char *needle, const char *label) {
    qf_vocab v;
    qf_error err = {0};
    qf_status st = load_mem(files, vocab_size, &v, &err);
    CHECK_MSG(st == want, "%s: status %s, expected %s (%s)", label, qf_status_name(st), qf_status_name(want), err.msg);
    CHECK_MSG(strstr(err.msg, needle) != NULL, "%s: message '%s' lacks '%s'", label, err.msg, needle);
    CHECK_MSG(!strchr(err.msg, '\n'), "%s: message has several lines", label);
    CHECK(v.tokens == NULL && v.n_tokens == 0); /* nothing left behind */
    if (st == QF_OK) qf_vocab_free(&v);
}

static void test_malformed_json(void) {
    const mem_file none[] = { { "config.json", "{}", 0 }, { NULL, NULL, 0 } };
    expect_fail(none, 0, QF_E_NOTFOUND, "tokenizer.model", "no tokenizer files");

    const mem_file bad_json[] = { { "tokenizer.json", "{\"model\": {\"type\": \"BPE\",", 0 }, { NULL, NULL, 0 } };
    expect_fail(bad_json, 0, QF_E_INPUT, "tokenizer.json: not valid JSON", "truncated tokenizer.json");

    pbuf spm;
    make_spm(&spm);
    const mem_file bad_tc[] = { { "tokenizer.model", (const char *)spm.b, spm.n },
                                { "tokenizer_config.json", "[1, 2]", 0 }, { NULL, NULL, 0 } };
    expect_fail(bad_tc, 0, QF_E_INPUT, "tokenizer_config.json: top level is not a JSON object", "array config");

    const mem_file neg_added[] = { { "tokenizer.model", (const char *)spm.b, spm.n },
                                   { "added_tokens.json", "{\"<x>\": -3}", 0 }, { NULL, NULL, 0 } };
    expect_fail(neg_added, 0, QF_E_INPUT, "added_tokens.json", "negative added token id");

    const mem_file str_added[] = { { "tokenizer.model", (const char *)spm.b, spm.n },
                                   { "added_tokens.json", "{\"<x>\": \"7\"}", 0 }, { NULL, NULL, 0 } };
    expect_fail(str_added, 0, QF_E_INPUT, "added_tokens.json", "string added token id");

    const mem_file bad_dec[] = { { "tokenizer.model", (const char *)spm.b, spm.n },
                                 { "tokenizer_config.json", "{\"added_tokens_decoder\":{\"x1\":{\"content\":\"a\"}}}", 0 },
                                 { NULL, NULL, 0 } };
    expect_fail(bad_dec, 0, QF_E_INPUT, "added_tokens_decoder", "non-numeric decoder key");

    static const char *const bpe_cases[][3] = {
        { "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":0}},\"pre_tokenizer\":{\"type\":\"ByteLevel\"}}",
          "duplicate id 0", "duplicate id" },
        { "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1}},\"added_tokens\":[{\"id\":5,\"content\":\"a\"}],"
          "\"pre_tokenizer\":{\"type\":\"ByteLevel\"}}", "appears with ids", "same text two ids" },
        { "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":7}},\"pre_tokenizer\":{\"type\":\"ByteLevel\"}}",
          "not below", "id gap without vocab_size" },
        { "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":-1}},\"pre_tokenizer\":{\"type\":\"ByteLevel\"}}",
          "model.vocab['b']", "negative id" },
        { "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[1,2]},\"pre_tokenizer\":{\"type\":\"ByteLevel\"}}",
          "merges", "numeric merges" },
        { "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[\"a b\",[\"a\"]]},\"pre_tokenizer\":{\"type\":\"ByteLevel\"}}",
          "model.merges[1]", "mixed merges" },
        { "{\"model\":{\"type\":\"BPE\",\"vocab\":[\"a\"]},\"pre_tokenizer\":{\"type\":\"ByteLevel\"}}",
          "model.vocab", "vocab not an object" },
        { "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}},\"added_tokens\":[{\"id\":1}],\"pre_tokenizer\":{\"type\":\"ByteLevel\"}}",
          "added_tokens[0]", "added token without content" },
    };
    for (size_t i = 0; i < QF_ARRAY_LEN(bpe_cases); i++) {
        const mem_file f[] = { { "tokenizer.json", bpe_cases[i][0], 0 }, { NULL, NULL, 0 } };
        expect_fail(f, 0, QF_E_INPUT, bpe_cases[i][1], bpe_cases[i][2]);
    }
    /* an id at or above config.json's vocab_size */
    const mem_file big[] = { { "tokenizer.json", GPT2_TOKENIZER, 0 }, { NULL, NULL, 0 } };
    expect_fail(big, 5, QF_E_INPUT, "vocab_size 5", "id above vocab_size");
    const mem_file wordpiece[] = { { "tokenizer.json", "{\"model\":{\"type\":\"WordPiece\",\"vocab\":{}}}", 0 }, { NULL, NULL, 0 } };
    expect_fail(wordpiece, 0, QF_E_UNSUPPORTED, "WordPiece", "WordPiece model");
}

static void test_malformed_spm(void) {
    pbuf spm;
    make_spm(&spm);
    /* every truncation: never a crash; the full prefix set includes valid messages that end early */
    int errors = 0;
    for (size_t cut = 0; cut < spm.n; cut++) {
        const mem_file f[] = { { "tokenizer.model", (const char *)spm.b, cut ? cut : 1 }, { NULL, NULL, 0 } };
        qf_vocab v;
        qf_error err = {0};
        qf_status st = load_mem(f, 0, &v, &err);
        if (st) {
            errors++;
            CHECK_MSG(strstr(err.msg, "tokenizer.model") && !strchr(err.msg, '\n'), "cut %zu: '%s'", cut, err.msg);
        } else {
            qf_vocab_free(&v);
        }
    }
    CHECK(errors > (int)spm.n / 2);

    /* cut inside the first piece's text */
    const mem_file cut[] = { { "tokenizer.model", (const char *)spm.b, 6 }, { NULL, NULL, 0 } };
    expect_fail(cut, 0, QF_E_INPUT, "runs past the end", "truncated piece");

    /* seeded mutation fuzzing: flip bytes, never crash */
    uint64_t seed = 0x5eed1234ull, state = seed;
    for (int round = 0; round < 2000; round++) {
        pbuf m = spm;
        int flips = 1 + (int)(qf_test_rand(&state) % 4);
        for (int k = 0; k < flips; k++) m.b[qf_test_rand(&state) % m.n] = (uint8_t)qf_test_rand(&state);
        const mem_file f[] = { { "tokenizer.model", (const char *)m.b, m.n }, { NULL, NULL, 0 } };
        qf_vocab v;
        qf_error err = {0};
        qf_status st = load_mem(f, 40, &v, &err);
        if (st == QF_OK) qf_vocab_free(&v);
        else if (!err.msg[0]) { CHECK_MSG(false, "seed %llx round %d: error without message", (unsigned long long)seed, round); break; }
    }

    /* duplicate piece, byte piece without byte_fallback, no UNKNOWN piece */
    pbuf d = { .n = 0 };
    pb_put_piece(&d, "<unk>", 0, 2);
    pb_put_piece(&d, "a", 0, 1);
    pb_put_piece(&d, "a", 0, 1);
    const mem_file dup[] = { { "tokenizer.model", (const char *)d.b, d.n }, { NULL, NULL, 0 } };
    expect_fail(dup, 0, QF_E_INPUT, "duplicates piece 1", "duplicate piece");
    d.n = 0;
    pb_put_piece(&d, "<unk>", 0, 2);
    pb_put_piece(&d, "<0x00>", 0, 6);
    const mem_file byte[] = { { "tokenizer.model", (const char *)d.b, d.n }, { NULL, NULL, 0 } };
    expect_fail(byte, 0, QF_E_INPUT, "byte_fallback", "byte piece without byte_fallback");
    d.n = 0;
    pb_put_piece(&d, "a", 0, 1);
    const mem_file nounk[] = { { "tokenizer.model", (const char *)d.b, d.n }, { NULL, NULL, 0 } };
    expect_fail(nounk, 0, QF_E_INPUT, "UNKNOWN", "no unknown piece");
    const mem_file text[] = { { "tokenizer.model", "this is not a protobuf", 0 }, { NULL, NULL, 0 } };
    expect_fail(text, 0, QF_E_INPUT, "tokenizer.model", "text file as tokenizer.model");
}

/* ---- GGUF validation on read --------------------------------------------------------------------------- */

typedef enum { BAD_SCORES_LEN, BAD_TYPES_LEN, BAD_BOS_RANGE, BAD_TYPES_ELEM, BAD_NO_TOKENS, BAD_TYPE_VALUE,
               BAD_TOKENS_TYPE, BAD_COUNT } gguf_corruption;

/* Write a small vocabulary GGUF with one named corruption. */
static void write_corrupt(const char *path, gguf_corruption c, qf_error *err) {
    const char *toks[3] = { "<unk>", "a", "b" };
    float scores[3] = { 0, -1, -2 };
    int32_t types[4] = { 2, 1, c == BAD_TYPE_VALUE ? 9 : 1, 1 };
    uint8_t types_u8[3] = { 2, 1, 1 };
    qf_gguf_writer *w;
    if (qf_gguf_writer_open(path, &w, err)) return;
    qf_gguf_set_str(w, "tokenizer.ggml.model", "llama", err);
    if (c == BAD_TOKENS_TYPE) qf_gguf_set_arr(w, "tokenizer.ggml.tokens", QF_GGUF_F32, scores, 3, err);
    else if (c != BAD_NO_TOKENS) qf_gguf_set_arr_str(w, "tokenizer.ggml.tokens", toks, 3, err);
    qf_gguf_set_arr(w, "tokenizer.ggml.scores", QF_GGUF_F32, scores, c == BAD_SCORES_LEN ? 2 : 3, err);
    if (c == BAD_TYPES_ELEM) qf_gguf_set_arr(w, "tokenizer.ggml.token_type", QF_GGUF_U8, types_u8, 3, err);
    else qf_gguf_set_arr(w, "tokenizer.ggml.token_type", QF_GGUF_I32, types, c == BAD_TYPES_LEN ? 4 : 3, err);
    qf_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", c == BAD_BOS_RANGE ? 3 : 1, err);
    qf_gguf_begin_data(w, err);
    qf_gguf_writer_finish(w, err);
}

static void test_gguf_validation(void) {
    static const struct { const char *needle; } want[BAD_COUNT] = {
        [BAD_SCORES_LEN] = { "tokenizer.ggml.scores" }, [BAD_TYPES_LEN] = { "tokenizer.ggml.token_type" },
        [BAD_BOS_RANGE] = { "tokenizer.ggml.bos_token_id" }, [BAD_TYPES_ELEM] = { "tokenizer.ggml.token_type" },
        [BAD_NO_TOKENS] = { "tokenizer.ggml.tokens" }, [BAD_TYPE_VALUE] = { "tokenizer.ggml.token_type" },
        [BAD_TOKENS_TYPE] = { "tokenizer.ggml.tokens" },
    };
    for (int c = 0; c < BAD_COUNT; c++) {
        char path[4096];
        qf_error err = {0};
        snprintf(path, sizeof path, "%s/corrupt-%d.gguf", qf_test_scratch, c);
        write_corrupt(path, (gguf_corruption)c, &err);
        qf_gguf *g = NULL;
        CHECK_OK(qf_gguf_open(path, &g, &err), &err);
        if (!g) continue;
        qf_vocab v;
        qf_status st = qf_vocab_load_gguf(g, &v, &err);
        CHECK_MSG(st == QF_E_INPUT, "corruption %d: status %s", c, qf_status_name(st));
        CHECK_MSG(strstr(err.msg, want[c].needle) && !strchr(err.msg, '\n'), "corruption %d: message '%s'", c, err.msg);
        CHECK(v.tokens == NULL && v.n_tokens == 0);
        if (st == QF_OK) qf_vocab_free(&v);
        qf_gguf_close(g);
    }
}

/* ---- released tokenizers (../shared/tokenizers) ------------------------------------------------------
 * llama.cpp's converter needs transformers' AutoTokenizer for these (get_vocab_base, and the pre-tokenizer
 * hash), which Debian does not package, so what it writes is stated here from its code (conversion/base.py
 * get_vocab_base, gguf-py SpecialVocab) and ../shared/tokenizers/README.md; tests/llamacpp_tokenizers.sh
 * runs gguf-py's own SpecialVocab on the same files, and llama.cpp's GGUFs of the same Llama 3 and Qwen
 * vocabularies are compared below where the reference is installed. */

typedef struct released_keys {
    const char *dir;
    uint32_t n_control, n_user, n_unused; /* token types; the rest are NORMAL */
    uint64_t n_merges;
    int64_t bos, eos, unk, pad;
    int8_t add_bos, add_eos, add_sep;     /* -1: not written */
    const char *merge0;                   /* merges[0] as written */
} released_keys;

static const released_keys k_released[QF_TOK_N_FAMILIES] = {
    /* 818 added tokens, all <｜…｜> or <|…|>: CONTROL; ids 128815.. padded. No template: add_* from the config */
    { "deepseek-v3", 818, 0, 129280 - 128815, 127741, 0, 1, -1, 1, 1, 0, -1, "\xc4\xa0 t" },
    /* 256 special added tokens; template "<|begin_of_text|> $A" (add_bos), pair "… $A <bos> $B" (add_sep off) */
    { "llama3", 256, 0, 0, 280147, 128000, 128009, -1, -1, 1, -1, 0, "\xc4\xa0 \xc4\xa0" },
    /* 14 special + 6 special-looking <|fim_…|>/<|repo_name|>/<|file_sep|>; <tool_call> </tool_call>
     * <tool_response> </tool_response> <think> </think> USER_DEFINED; bos from config.json */
    { "qwen3", 20, 6, 151936 - 151669, 151387, 151643, 151645, -1, 151643, 0, -1, -1, "\xc4\xa0 \xc4\xa0" },
    /* 9 special, <mask> and 6242 <unusedN> special-looking; the other 163 added tokens USER_DEFINED
     * (U+2581 runs written as spaces); merges from pairs, no spaces in them */
    { "gemma3", 6252, 163, 262208 - 262145, 514906, 2, 106, 3, 0, 1, 0, 0,
      "\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n \n" },
};

/* The tokenizer keys the converter writes for a gpt2 vocabulary: exactly these (given values). */
static void check_key_set(const qf_gguf *g, const released_keys *k, bool chat_template) {
    const char *want[16];
    int n = 0;
    want[n++] = "tokenizer.ggml.model", want[n++] = "tokenizer.ggml.pre", want[n++] = "tokenizer.ggml.tokens";
    want[n++] = "tokenizer.ggml.token_type", want[n++] = "tokenizer.ggml.merges";
    if (k->bos >= 0) want[n++] = "tokenizer.ggml.bos_token_id";
    if (k->eos >= 0) want[n++] = "tokenizer.ggml.eos_token_id";
    if (k->unk >= 0) want[n++] = "tokenizer.ggml.unknown_token_id";
    if (k->pad >= 0) want[n++] = "tokenizer.ggml.padding_token_id";
    if (k->add_bos >= 0) want[n++] = "tokenizer.ggml.add_bos_token";
    if (k->add_eos >= 0) want[n++] = "tokenizer.ggml.add_eos_token";
    if (k->add_sep >= 0) want[n++] = "tokenizer.ggml.add_sep_token";
    if (chat_template) want[n++] = "tokenizer.chat_template";
    int found = 0;
    for (size_t i = 0; i < qf_gguf_n_kv(g); i++) {
        const char *key = qf_gguf_kv_at(g, i)->key;
        if (!is_tokenizer_key(key)) continue;
        bool listed = false;
        for (int j = 0; j < n; j++) listed |= strcmp(key, want[j]) == 0;
        CHECK_MSG(listed, "%s: we write %s, llama.cpp's converter does not", k->dir, key);
        found += listed;
    }
    CHECK_MSG(found == n, "%s: %d of the %d tokenizer keys llama.cpp's converter writes", k->dir, found, n);
}

/* tokenizer_config.json's chat_template string (the released files all carry one). */
static char *config_chat_template(const char *dir) {
    char *buf = NULL, *out = NULL;
    size_t len;
    qf_error err = {0};
    if (qf_test_dir_reader((void *)dir, "tokenizer_config.json", &buf, &len, &err)) return NULL;
    cJSON *j = cJSON_ParseWithLength(buf, len);
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(j, "chat_template");
    if (cJSON_IsString(ct)) out = strdup(ct->valuestring);
    cJSON_Delete(j);
    free(buf);
    return out;
}

static void check_released_vocab(const qf_tok_family *fam, const released_keys *k, const qf_vocab *v,
                                 const char *dir) {
    uint32_t n_type[8] = { 0 };
    for (uint32_t i = 0; i < v->n_tokens; i++) n_type[v->types[i] & 7]++;
    CHECK_MSG(!strcmp(v->model, "gpt2") && !strcmp(v->pre, fam->pre), "%s: model '%s' pre '%s', llama.cpp: gpt2 %s",
              fam->dir, v->model, v->pre, fam->pre);
    CHECK_MSG(v->n_tokens == fam->vocab_size && !v->scores, "%s: %u tokens (vocab_size %u)", fam->dir, v->n_tokens,
              fam->vocab_size);
    CHECK_MSG(n_type[QF_TOK_CONTROL] == k->n_control && n_type[QF_TOK_USER_DEFINED] == k->n_user &&
              n_type[QF_TOK_UNUSED] == k->n_unused && n_type[QF_TOK_NORMAL] == v->n_tokens - k->n_control - k->n_user - k->n_unused,
              "%s: types control %u user %u unused %u normal %u, expected %u %u %u", fam->dir, n_type[QF_TOK_CONTROL],
              n_type[QF_TOK_USER_DEFINED], n_type[QF_TOK_UNUSED], n_type[QF_TOK_NORMAL], k->n_control, k->n_user,
              k->n_unused);
    for (uint32_t i = 0; i < v->n_tokens; i++) {
        char pad[32];
        snprintf(pad, sizeof pad, "[PAD%u]", i);
        if (v->types[i] == QF_TOK_UNUSED && strcmp(v->tokens[i], pad)) {
            CHECK_MSG(false, "%s: unused token %u is '%s', not %s", fam->dir, i, v->tokens[i], pad);
            break;
        }
        if (v->types[i] == QF_TOK_USER_DEFINED && strstr(v->tokens[i], "\xe2\x96\x81")) {
            CHECK_MSG(false, "%s: user-defined token %u keeps a U+2581", fam->dir, i);
            break;
        }
    }
    CHECK_MSG(v->n_merges == k->n_merges && v->n_merges && !strcmp(v->merges[0], k->merge0), "%s: %llu merges, first '%s'",
              fam->dir, (unsigned long long)v->n_merges, v->n_merges ? v->merges[0] : "");
    CHECK_MSG(v->bos_id == k->bos && v->eos_id == k->eos && v->unk_id == k->unk && v->pad_id == k->pad &&
              v->sep_id == -1 && v->mask_id == -1 && v->eot_id == -1 && v->eom_id == -1,
              "%s: ids bos %lld eos %lld unk %lld pad %lld sep %lld mask %lld eot %lld eom %lld", fam->dir,
              (long long)v->bos_id, (long long)v->eos_id, (long long)v->unk_id, (long long)v->pad_id,
              (long long)v->sep_id, (long long)v->mask_id, (long long)v->eot_id, (long long)v->eom_id);
    CHECK_MSG(v->add_bos == k->add_bos && v->add_eos == k->add_eos && v->add_sep == k->add_sep &&
              v->add_space_prefix == -1, "%s: add_bos %d add_eos %d add_sep %d add_space_prefix %d", fam->dir,
              v->add_bos, v->add_eos, v->add_sep, v->add_space_prefix);
    char *ct = config_chat_template(dir);
    CHECK_MSG(ct && v->chat_template && !strcmp(ct, v->chat_template), "%s: chat template differs from the config's",
              fam->dir);
    free(ct);
}

/* llama.cpp's own GGUF of a vocabulary (REF/llama.cpp-src/models/ggml-vocab-NAME.gguf): tokens, types and
 * merges equal ours over [0, n) (all of them when n is 0). */
static void check_against_llamacpp_vocab(const char *name, const qf_vocab *v, uint32_t n, const char *label) {
    const char *ref = getenv("QF_REF_DIR"), *home = getenv("HOME");
    char path[4096];
    if (ref) snprintf(path, sizeof path, "%s/llama.cpp-src/models/ggml-vocab-%s.gguf", ref, name);
    else snprintf(path, sizeof path, "%s/.cache/qforge-ref/llama.cpp-src/models/ggml-vocab-%s.gguf", home ? home : "", name);
    if (!qf_test_file_exists(path)) {
        printf("SKIP: %s: no llama.cpp reference vocabulary at %s (bash ../shared/ref/setup_ref.sh)\n", label, path);
        return;
    }
    qf_gguf *g = NULL;
    qf_vocab r;
    qf_error err = {0};
    CHECK_OK(qf_gguf_open(path, &g, &err), &err);
    if (!g) return;
    qf_status st = qf_vocab_load_gguf(g, &r, &err);
    CHECK_OK(st, &err);
    qf_gguf_close(g);
    if (st) return;
    uint32_t upto = n ? n : v->n_tokens, tok_diff = 0, type_diff = 0;
    uint64_t merge_diff = 0;
    CHECK_MSG(upto <= r.n_tokens && upto <= v->n_tokens, "%s: %u tokens, llama.cpp's %u", label, v->n_tokens, r.n_tokens);
    if (!n) CHECK_MSG(r.n_tokens == v->n_tokens, "%s: %u tokens, llama.cpp's %u", label, v->n_tokens, r.n_tokens);
    for (uint32_t i = 0; i < upto && i < r.n_tokens && i < v->n_tokens; i++) {
        tok_diff += strcmp(r.tokens[i], v->tokens[i]) != 0;
        type_diff += r.types[i] != v->types[i];
    }
    CHECK_MSG(r.n_merges == v->n_merges, "%s: %llu merges, llama.cpp's %llu", label, (unsigned long long)v->n_merges,
              (unsigned long long)r.n_merges);
    for (uint64_t i = 0; i < r.n_merges && i < v->n_merges; i++) merge_diff += strcmp(r.merges[i], v->merges[i]) != 0;
    printf("%s vs llama.cpp's ggml-vocab-%s.gguf: tokens 0..%u: %u texts and %u types differ; %llu of %llu merges differ\n",
           label, name, upto - 1, tok_diff, type_diff, (unsigned long long)merge_diff, (unsigned long long)r.n_merges);
    CHECK(tok_diff == 0 && type_diff == 0 && merge_diff == 0);
    qf_vocab_free(&r);
}

static void test_released(void) {
    for (int f = 0; f < QF_TOK_N_FAMILIES; f++) {
        const qf_tok_family *fam = &qf_tok_families[f];
        const released_keys *k = &k_released[f];
        char rel[256], out[4096];
        qf_tok_family_ctx ctx = { .fam = fam };
        snprintf(rel, sizeof rel, "tokenizers/%s", fam->dir);
        if (!qf_test_shared(rel, ctx.dir, sizeof ctx.dir)) return;
        CHECK(!strcmp(k->dir, fam->dir));
        qf_vocab v, r;
        qf_error err = {0};
        qf_status st = qf_vocab_load_hf(qf_tok_family_reader, &ctx, fam->vocab_size, &v, &err);
        CHECK_OK(st, &err);
        if (st) continue;
        check_released_vocab(fam, k, &v, ctx.dir);
        /* written and read back: the same keys, and nothing else */
        snprintf(out, sizeof out, "%s/%s.vocab.gguf", qf_test_scratch, fam->dir);
        CHECK_OK(qf_test_write_vocab(&v, out, &err), &err);
        qf_gguf *g = NULL;
        CHECK_OK(qf_gguf_open(out, &g, &err), &err);
        if (g) {
            check_key_set(g, k, v.chat_template != NULL);
            CHECK_OK(qf_vocab_load_gguf(g, &r, &err), &err);
            if (!err.status) { check_released_vocab(fam, k, &r, ctx.dir); qf_vocab_free(&r); }
            qf_gguf_close(g);
        }
        if (!strcmp(fam->dir, "llama3")) check_against_llamacpp_vocab("llama-bpe", &v, 0, fam->dir);
        /* llama.cpp's is Qwen1.5's: same base vocabulary and merges, other added tokens from 151646 */
        if (!strcmp(fam->dir, "qwen3")) check_against_llamacpp_vocab("qwen2", &v, 151646, fam->dir);
        printf("%-12s model gpt2, pre %s, %u tokens, %llu merges: every tokenizer.ggml.* key as llama.cpp's "
               "converter writes it\n", fam->dir, v.pre, v.n_tokens, (unsigned long long)v.n_merges);
        qf_vocab_free(&v);
    }
}

int main(int argc, char **argv) {
    qf_test_init(argc, argv);
    test_bpe_gpt2();
    test_bpe_llama3();
    test_bpe_pre_tokenizers();
    test_bpe_spm_style();
    test_spm_synthetic();
    test_malformed_json();
    test_malformed_spm();
    test_gguf_validation();
    test_env_reference();
    test_stories260k();
    test_released();
    return qf_test_finish();
}
