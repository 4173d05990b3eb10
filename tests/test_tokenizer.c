/*
 * test_tokenizer.c — verify/tokenizer.c against llama.cpp.
 *
 *  1. llama.cpp's own tokenizer vectors (../shared/tokenizer-tests/ggml-vocab-*.gguf + .inp/.out, written by
 *     its test-tokenizer-0 with add_special = false, parse_special = false): every input, every vocab we
 *     support, must give the recorded ids; unsupported vocabs print SKIP with the reason.
 *  2. Real text: the shared checkpoints' REFERENCE.json records the first ids and the total count of the
 *     perplexity texts tokenized whole with BOS, as llama-perplexity -f passes them.
 *  3. Hand-made vocabs: SPM tie-breaking and byte fallback, user-defined token splitting, malformed vocabs
 *     (clear errors), and invalid UTF-8 / random bytes (no crash, stable results).
 */
#include "testutil.h"
#include "tokdata.h"
#include "runtime/tokenizer.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <time.h>

/* ---- helpers ------------------------------------------------------------------------------------ */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void print_ids(const char *label, const int32_t *ids, size_t n) {
    fprintf(stderr, "    %s (%zu):", label, n);
    for (size_t i = 0; i < n && i < 40; i++) fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, n > 40 ? " ...\n" : "\n");
}

static bool same_ids(const int32_t *a, size_t na, const int32_t *b, size_t nb) {
    return na == nb && (na == 0 || memcmp(a, b, na * sizeof *a) == 0);
}

/* Tokenize and compare with an expected list; prints both on mismatch. */
static bool expect_ids(const qf_tokenizer *t, const char *text, size_t len, bool bos, const int32_t *want, size_t nwant,
                       const char *label) {
    int32_t *ids = NULL;
    size_t n = 0;
    qf_error err = {0};
    qf_status st = qf_tokenize(t, text, len, bos, &ids, &n, &err);
    bool ok = st == QF_OK && same_ids(ids, n, want, nwant);
    if (!ok) {
        fprintf(stderr, "  %s: input '%.*s' (%zu bytes): %s\n", label, (int)QF_MIN(len, 80), text, len,
                st ? err.msg : "ids differ");
        print_ids("want", want, nwant);
        if (!st) print_ids("got ", ids, n);
    }
    free(ids);
    return ok;
}

/* ---- 1. llama.cpp tokenizer vectors -------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void run_vector_file(const char *dir, const char *name) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    qf_tokenizer *t = NULL;
    qf_error err = {0};
    qf_status st = qf_test_open_tokenizer(path, &t, &err);
    char probe[4300];
    snprintf(probe, sizeof probe, "%s.inp", path);
    bool has_vectors = qf_test_file_exists(probe);
    if (st == QF_E_UNSUPPORTED) {
        printf("SKIP: %s: %s\n", name, err.msg);
        return;
    }
    CHECK_MSG(st == QF_OK, "%s: %s", name, err.msg);
    if (st) return;
    if (!has_vectors) {
        printf("%-32s builds (no .inp/.out vectors to compare)\n", name);
        qf_tokenizer_free(t);
        return;
    }
    char inp[4300], out[4300];
    snprintf(inp, sizeof inp, "%s.inp", path);
    snprintf(out, sizeof out, "%s.out", path);
    qf_tok_vectors v;
    bool loaded = qf_tok_vectors_load(inp, out, &v);
    CHECK_MSG(loaded, "%s: cannot read the .inp/.out pair (input/output counts differ?)", name);
    size_t pass = 0;
    for (size_t i = 0; loaded && i < v.n; i++)
        pass += expect_ids(t, v.inp[i], v.inp_len[i], false, v.ids[i], v.n_ids[i], name);
    printf("%-32s %zu/%zu inputs match llama.cpp\n", name, pass, loaded ? v.n : 0);
    CHECK_MSG(loaded && pass == v.n, "%s: %zu of %zu inputs differ", name, v.n - pass, v.n);
    if (loaded) qf_tok_vectors_free(&v);
    qf_tokenizer_free(t);
}

static void run_vector_dir(const char *dir) {
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    if (!d) return;
    char *names[256];
    size_t n = 0;
    for (struct dirent *e; (e = readdir(d)) && n < QF_ARRAY_LEN(names);) {
        size_t l = strlen(e->d_name);
        if (strncmp(e->d_name, "ggml-vocab-", 11) == 0 && l > 5 && strcmp(e->d_name + l - 5, ".gguf") == 0)
            names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n; i++) { if (names[i]) run_vector_file(dir, names[i]); free(names[i]); }
}

/* The shared copy of llama.cpp's vectors; QF_TOKENIZER_VECTORS may name another directory of them (e.g.
 * a llama.cpp checkout's models/, which holds more vocabs) to run as well. */
static void test_vectors(void) {
    char dir[4096];
    const char *extra = getenv("QF_TOKENIZER_VECTORS");
    if (qf_test_shared("tokenizer-tests", dir, sizeof dir)) run_vector_dir(dir);
    if (extra && *extra) { printf("-- vectors in %s\n", extra); run_vector_dir(extra); }
}

/* ---- 2. real text -------------------------------------------------------------------------------- */

/* What llama-perplexity -f does to the file before tokenizing: drop one trailing newline, then
 * string_process_escapes (\n \r \t \' \" \\ \xNN; anything else keeps its backslash). */
static size_t perplexity_text(char *s, size_t n) {
    if (n && s[n - 1] == '\n') n--;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\' || i + 1 >= n) { s[o++] = s[i]; continue; }
        char c = s[++i];
        switch (c) {
            case 'n': s[o++] = '\n'; continue;
            case 'r': s[o++] = '\r'; continue;
            case 't': s[o++] = '\t'; continue;
            case '\'': case '"': case '\\': s[o++] = c; continue;
            default: break;
        }
        if (c == 'x' && i + 2 < n && isxdigit((unsigned char)s[i + 1]) && isxdigit((unsigned char)s[i + 2])) {
            char hex[3] = { s[i + 1], s[i + 2], 0 };
            s[o++] = (char)strtol(hex, NULL, 16);
            i += 2;
            continue;
        }
        s[o++] = '\\';
        s[o++] = c;
    }
    return o;
}

static void check_text(const qf_tokenizer *t, const char *model, const char *text_name, const cJSON *ref) {
    char path[4096], rel[512];
    snprintf(rel, sizeof rel, "text/%s", text_name);
    if (!qf_test_shared(rel, path, sizeof path)) return;
    size_t n;
    char *s = qf_test_read_text(path, &n);
    CHECK(s != NULL);
    if (!s) return;
    n = perplexity_text(s, n);
    int32_t *ids = NULL;
    size_t nid = 0;
    qf_error err = {0};
    double t0 = now_s();
    qf_status st = qf_tokenize(t, s, n, qf_tokenizer_wants_bos(t), &ids, &nid, &err);
    double dt = now_s() - t0;
    CHECK_OK(st, &err);
    const cJSON *first = cJSON_GetObjectItemCaseSensitive(ref, "first_tokens");
    const cJSON *total = cJSON_GetObjectItemCaseSensitive(ref, "tokens_total");
    size_t want_total = cJSON_IsNumber(total) ? (size_t)total->valuedouble : 0;
    size_t nfirst = (size_t)cJSON_GetArraySize(first), match = 0;
    for (size_t i = 0; i < nfirst && i < nid; i++)
        match += ids[i] == (int32_t)cJSON_GetArrayItem(first, (int)i)->valuedouble;
    printf("%-14s %-28s %zu tokens (reference %zu), first %zu/%zu match, %.3f s for %zu bytes\n", model, text_name,
           nid, want_total, match, nfirst, dt, n);
    CHECK_MSG(nid == want_total, "%s %s: %zu tokens, reference %zu", model, text_name, nid, want_total);
    CHECK_MSG(match == nfirst && nfirst > 0, "%s %s: first tokens differ", model, text_name);
    free(ids);
    free(s);
}

static void test_real_text(const char *model) {
    char dir[4096], rel[256], ref_path[4200];
    snprintf(rel, sizeof rel, "models/%s", model);
    if (!qf_test_shared(rel, dir, sizeof dir)) return;
    qf_vocab v;
    qf_error err = {0};
    qf_status st = qf_vocab_load_hf(qf_test_dir_reader, dir, qf_test_config_vocab_size(dir), &v, &err);
    CHECK_OK(st, &err);
    if (st) return;
    qf_tokenizer *t = NULL;
    st = qf_tokenizer_new(&v, &t, &err);
    qf_vocab_free(&v);
    CHECK_OK(st, &err);
    if (st) return;
    CHECK(qf_tokenizer_wants_bos(t) && qf_tokenizer_bos(t) >= 0);
    snprintf(ref_path, sizeof ref_path, "%s/REFERENCE.json", dir);
    size_t n;
    char *js = qf_test_read_text(ref_path, &n);
    cJSON *ref = js ? cJSON_ParseWithLength(js, n) : NULL;
    CHECK_MSG(ref != NULL, "%s: cannot parse", ref_path);
    const cJSON *texts = cJSON_GetObjectItemCaseSensitive(ref, "texts"), *e;
    cJSON_ArrayForEach(e, texts) check_text(t, model, e->string, e);
    cJSON_Delete(ref);
    free(js);
    qf_tokenizer_free(t);
}

/* The HF-built and llama.cpp-converted vocabularies of one model tokenize alike. */
static void test_hf_matches_gguf(void) {
    char dir[4096], gg[4096];
    if (!qf_test_shared("models/stories260K", dir, sizeof dir) ||
        !qf_test_shared("models/reference-gguf/stories260K.llamacpp-f32.gguf", gg, sizeof gg)) return;
    qf_vocab v;
    qf_error err = {0};
    qf_tokenizer *a = NULL, *b = NULL;
    CHECK_OK(qf_vocab_load_hf(qf_test_dir_reader, dir, qf_test_config_vocab_size(dir), &v, &err), &err);
    if (err.status) return;
    CHECK_OK(qf_tokenizer_new(&v, &a, &err), &err);
    qf_vocab_free(&v);
    CHECK_OK(qf_test_open_tokenizer(gg, &b, &err), &err);
    static const char text[] = "Once upon a time, there was a little girl named Lily.\nShe  liked \xc3\xa9t\xc3\xa9 \xe2\x82\xac 42!";
    int32_t *x = NULL, *y = NULL;
    size_t nx = 0, ny = 0;
    if (a && b) {
        CHECK_OK(qf_tokenize(a, text, sizeof text - 1, true, &x, &nx, &err), &err);
        CHECK_OK(qf_tokenize(b, text, sizeof text - 1, true, &y, &ny, &err), &err);
        CHECK(same_ids(x, nx, y, ny));
        CHECK(qf_tokenizer_n_vocab(a) == qf_tokenizer_n_vocab(b));
    }
    free(x); free(y);
    qf_tokenizer_free(a);
    qf_tokenizer_free(b);
}

/* ---- 3. hand-made vocabs ------------------------------------------------------------------------ */

typedef struct { const char *text; float score; int32_t type; } tok_def;

/* A qf_vocab over static strings (only the arrays are allocated; free with free_small). */
static qf_vocab small_vocab(const char *model, const char *pre, const tok_def *toks, uint32_t n, const char **merges,
                            uint64_t n_merges) {
    qf_vocab v;
    memset(&v, 0, sizeof v);
    snprintf(v.model, sizeof v.model, "%s", model);
    snprintf(v.pre, sizeof v.pre, "%s", pre);
    v.n_tokens = n;
    v.tokens = calloc(n, sizeof *v.tokens);
    v.scores = calloc(n, sizeof *v.scores);
    v.types = calloc(n, sizeof *v.types);
    for (uint32_t i = 0; i < n && v.tokens && v.scores && v.types; i++) {
        v.tokens[i] = (char *)toks[i].text;
        v.scores[i] = toks[i].score;
        v.types[i] = toks[i].type ? toks[i].type : QF_TOK_NORMAL;
    }
    v.merges = (char **)merges;
    v.n_merges = n_merges;
    v.bos_id = v.eos_id = v.unk_id = v.pad_id = v.eot_id = v.sep_id = v.mask_id = v.eom_id = -1;
    v.add_bos = v.add_eos = v.add_space_prefix = v.add_sep = -1;
    return v;
}

static void free_small(qf_vocab *v) { free(v->tokens); free(v->scores); free(v->types); }

/* The tokenizer of a small_vocab (NULL, with the failure recorded, when it cannot be built). */
static qf_tokenizer *small_tokenizer(const char *model, const char *pre, const tok_def *toks, uint32_t n,
                                     const char **merges, uint64_t n_merges) {
    qf_vocab v = small_vocab(model, pre, toks, n, merges, n_merges);
    qf_tokenizer *t = NULL;
    qf_error err = {0};
    CHECK_OK(qf_tokenizer_new(&v, &t, &err), &err);
    free_small(&v);
    return t;
}

static const tok_def k_spm[] = {
    { "<unk>", 0, QF_TOK_UNKNOWN }, { "<s>", 0, QF_TOK_CONTROL }, { "</s>", 0, QF_TOK_CONTROL },
    { "<0x41>", 0, QF_TOK_BYTE }, { "<0xC3>", 0, QF_TOK_BYTE }, { "<0xA9>", 0, QF_TOK_BYTE },
    { "\xe2\x96\x81", -1, 0 }, { "a", -2, 0 }, { "b", -2, 0 }, { "ab", -3, 0 }, { "ba", -3, 0 },
    { "\xe2\x96\x81" "a", -4, 0 }, { "<sep>", 0, QF_TOK_USER_DEFINED }, { "x", -2, 0 },
};

static void test_spm_small(void) {
    qf_tokenizer *t = small_tokenizer("llama", "", k_spm, QF_ARRAY_LEN(k_spm), NULL, 0);
    if (!t) return;
    CHECK(qf_tokenizer_bos(t) == 1 && qf_tokenizer_wants_bos(t) && qf_tokenizer_n_vocab(t) == QF_ARRAY_LEN(k_spm));
    CHECK(strcmp(qf_token_text(t, 9), "ab") == 0 && qf_token_text(t, -1) == NULL && qf_token_text(t, 99) == NULL);
    /* "▁aba": "ab" and "ba" score alike and beat "▁a"; the leftmost pair wins, leaving ▁ ab a */
    CHECK(expect_ids(t, "aba", 3, false, (const int32_t[]){ 6, 9, 7 }, 3, "spm tie"));
    /* byte fallback: 'A' has only <0x41>; 'é' (C3 A9) only its bytes; 'Z' has nothing -> <unk> */
    CHECK(expect_ids(t, "A\xc3\xa9Z", 4, true, (const int32_t[]){ 1, 6, 3, 4, 5, 0 }, 6, "spm bytes"));
    /* user-defined tokens are split out, and the text after one gets the dummy prefix again (llama.cpp's
     * is_prev_special); control-token text stays plain text */
    CHECK(expect_ids(t, "a<sep>a", 7, false, (const int32_t[]){ 11, 12, 11 }, 3, "spm user-defined"));
    CHECK(expect_ids(t, "<s>", 3, false, (const int32_t[]){ 6, 0, 0, 0 }, 4, "spm control text"));
    CHECK(expect_ids(t, "", 0, true, (const int32_t[]){ 1 }, 1, "spm empty"));
    /* invalid UTF-8: lone continuation / truncated lead bytes are single-byte symbols with byte fallback */
    CHECK(expect_ids(t, "\xa9\xc3", 2, false, (const int32_t[]){ 6, 5, 4 }, 3, "spm invalid utf-8"));
    qf_tokenizer_free(t);
}

/* Byte-level BPE vocab: GPT-2 maps ' ' to U+0120 "Ġ". */
static const tok_def k_bpe[] = {
    { "a", 0, 0 }, { "b", 0, 0 }, { "\xc4\xa0", 0, 0 }, { "ab", 0, 0 }, { "\xc4\xa0" "a", 0, 0 },
    { "\xc4\xa0" "ab", 0, 0 }, { "<|user|>", 0, QF_TOK_USER_DEFINED }, { "!", 0, 0 }, { "\xc3\xaf", 0, 0 },
    { "\xc2\xbf", 0, 0 }, { "\xc2\xbd", 0, 0 }, { "<|endoftext|>", 0, QF_TOK_CONTROL },
};
static const char *k_bpe_merges[] = { "a b", "\xc4\xa0 a", "\xc4\xa0" "a b" };

static void test_bpe_small(void) {
    qf_tokenizer *t = small_tokenizer("gpt2", "gpt-2", k_bpe, QF_ARRAY_LEN(k_bpe), k_bpe_merges, QF_ARRAY_LEN(k_bpe_merges));
    if (!t) return;
    CHECK(!qf_tokenizer_wants_bos(t) && qf_tokenizer_bos(t) == 11); /* llama.cpp's BPE default id 11 */
    /* "ab ab": words "ab" and " ab"; rank 0 (a b) applies before " a" + "b" would */
    CHECK(expect_ids(t, "ab ab", 5, false, (const int32_t[]){ 3, 2, 3 }, 3, "bpe ranks"));
    CHECK(expect_ids(t, " a!", 3, false, (const int32_t[]){ 4, 7 }, 2, "bpe words"));
    /* user-defined token split out; control-token text is plain text (here: no tokens for '<', '|'...) */
    CHECK(expect_ids(t, "a<|user|>a", 10, false, (const int32_t[]){ 0, 6, 0 }, 3, "bpe user-defined"));
    /* invalid byte -> U+FFFD (EF BF BD) -> GPT-2 "ï¿½" */
    CHECK(expect_ids(t, "\xff", 1, false, (const int32_t[]){ 8, 9, 10 }, 3, "bpe invalid utf-8"));
    qf_tokenizer_free(t);
}

/* Merges are matched by text, as llama.cpp's bpe_ranks are: a merge may name or make text that is no token
 * (the converter rewrites added tokens such as Gemma's U+2581 runs, which merges still name). Here "a a"
 * makes "aa", no token, and "aa b" then makes the token "aab". */
static void test_bpe_merge_through_non_token(void) {
    static const tok_def toks[] = { { "a", 0, 0 }, { "b", 0, 0 }, { "aab", 0, 0 } };
    const char *merges[] = { "a a", "aa b", "zz a" };
    qf_tokenizer *t = small_tokenizer("gpt2", "gpt-2", toks, QF_ARRAY_LEN(toks), merges, QF_ARRAY_LEN(merges));
    if (!t) return;
    CHECK(expect_ids(t, "aab", 3, false, (const int32_t[]){ 2 }, 1, "merge through a non-token"));
    CHECK(expect_ids(t, "aa", 2, false, (const int32_t[]){ 0, 0 }, 2, "non-token result falls back to bytes"));
    qf_tokenizer_free(t);
}

/* SentencePiece-style BPE (Gemma's tokenizer.json as llama.cpp's gemma4 pre-tokenizer type runs it):
 * spaces become U+2581, no GPT-2 byte mapping, <0xNN> byte fallback, a newline-only word that is a token
 * stays whole, BOS whatever add_bos says; and llama_tokenize's add_special / parse_special. */
static void test_bpe_spm_style(void) {
    static const tok_def toks[] = {
        { "<bos>", 0, QF_TOK_CONTROL }, { "\xe2\x96\x81", 0, 0 }, { "a", 0, 0 }, { "\xe2\x96\x81" "a", 0, 0 },
        { "\n", 0, 0 }, { "\n\n", 0, 0 }, { "<0x42>", 0, 0 }, { "<eos>", 0, QF_TOK_CONTROL },
    };
    const char *merges[] = { "\xe2\x96\x81 a" };
    qf_vocab v = small_vocab("gpt2", "granite-embed-multi-311m", toks, QF_ARRAY_LEN(toks), merges, 1);
    v.bos_id = 0, v.eos_id = 7, v.add_bos = 0;
    qf_tokenizer *t = NULL;
    qf_error err = {0};
    CHECK_OK(qf_tokenizer_new(&v, &t, &err), &err);
    free_small(&v);
    if (!t) return;
    CHECK(qf_tokenizer_wants_bos(t) && !qf_tokenizer_wants_eos(t)); /* llama.cpp forces add_bos for gemma4 */
    CHECK(expect_ids(t, "a a", 3, false, (const int32_t[]){ 2, 3 }, 2, "spm-style spaces"));
    CHECK(expect_ids(t, "\n\n", 2, false, (const int32_t[]){ 5 }, 1, "spm-style newline word"));
    CHECK(expect_ids(t, "a\n\na", 4, false, (const int32_t[]){ 2, 5, 2 }, 3, "spm-style newline split"));
    /* 'B' only as <0x42>; 'C' has no token at all and is dropped, as llama.cpp drops it */
    CHECK(expect_ids(t, "BC", 2, false, (const int32_t[]){ 6 }, 1, "spm-style byte fallback"));
    int32_t *ids = NULL;
    size_t n = 0;
    CHECK_OK(qf_tokenize_flags(t, "<eos>a", 6, QF_TOKENIZE_ADD_SPECIAL | QF_TOKENIZE_PARSE_SPECIAL, &ids, &n, &err), &err);
    CHECK(same_ids(ids, n, (const int32_t[]){ 0, 7, 2 }, 3));
    free(ids);
    CHECK_OK(qf_tokenize_flags(t, "<eos>a", 6, 0, &ids, &n, &err), &err); /* control text stays text */
    CHECK(same_ids(ids, n, (const int32_t[]){ 2 }, 1));
    free(ids);
    qf_tokenizer_free(t);
}

static void expect_new_fails(qf_vocab *v, qf_status want, const char *needle, const char *label) {
    qf_tokenizer *t = NULL;
    qf_error err = {0};
    qf_status st = qf_tokenizer_new(v, &t, &err);
    CHECK_MSG(st == want && t == NULL && strstr(err.msg, needle), "%s: got %s '%s', want %s containing '%s'", label,
              qf_status_name(st), err.msg, qf_status_name(want), needle);
    qf_tokenizer_free(t);
}

static void test_malformed(void) {
    const char *nospace[] = { "ab" };
    qf_vocab v = small_vocab("gpt2", "gpt-2", k_bpe, QF_ARRAY_LEN(k_bpe), nospace, 1);
    expect_new_fails(&v, QF_E_INPUT, "not two space-separated tokens", "merge without space");
    v.merges = NULL, v.n_merges = 0;
    v.bos_id = 1000;
    expect_new_fails(&v, QF_E_INPUT, "outside the", "bos id out of range");
    v.bos_id = -1;
    snprintf(v.pre, sizeof v.pre, "no-such-pre");
    expect_new_fails(&v, QF_E_UNSUPPORTED, "no-such-pre", "unknown pre-tokenizer");
    snprintf(v.model, sizeof v.model, "bert");
    expect_new_fails(&v, QF_E_UNSUPPORTED, "'bert'", "WPM model");
    v.tokens[1] = NULL;
    snprintf(v.model, sizeof v.model, "gpt2");
    expect_new_fails(&v, QF_E_INPUT, "token 1 has no text", "NULL token text");
    free_small(&v);
}

/* Every pre-tokenizer the table names compiles under PCRE2 and splits mixed text. */
static void test_all_pre(void) {
    static const char *const pres[] = {
        "", "default", "llama-bpe", "dbrx", "deepseek-llm", "deepseek-coder", "falcon", "starcoder", "gpt-2",
        "qwen2", "qwen35", "chatglm-bpe", "bloom", "viking", "tekken", "seed-coder", "grok-2", "ufakzeka",
        "bailingmoe", "minicpm5", "deepseek-v3", "joyai-llm", "granite-embed-multi-311m", "gemma4", "sarvam-moe",
    };
    static const char text[] = "Hello world! It's 1234567 \t\n\n  x \xc3\xbc\xe4\xb8\xad\xe6\x96\x87\xe3\x80\x80"
                               "\xd9\xa1\xd9\xa2 ab   \xc2\x85\xff";
    for (size_t i = 0; i < QF_ARRAY_LEN(pres); i++) {
        qf_vocab v = small_vocab("gpt2", pres[i], k_bpe, QF_ARRAY_LEN(k_bpe), k_bpe_merges, QF_ARRAY_LEN(k_bpe_merges));
        qf_tokenizer *t = NULL;
        qf_error err = {0};
        qf_status st = qf_tokenizer_new(&v, &t, &err);
        CHECK_MSG(st == QF_OK, "pre '%s': %s", pres[i], err.msg);
        int32_t *ids = NULL;
        size_t n = 0;
        if (t) CHECK_OK(qf_tokenize(t, text, sizeof text - 1, true, &ids, &n, &err), &err);
        CHECK_MSG(!t || n > 0, "pre '%s': no tokens", pres[i]);
        free(ids);
        qf_tokenizer_free(t);
        free_small(&v);
    }
}

/* Random bytes through both kinds: no crash, deterministic, BPE output only valid ids. */
static void test_random_bytes(void) {
    qf_vocab vs = small_vocab("llama", "", k_spm, QF_ARRAY_LEN(k_spm), NULL, 0);
    qf_vocab vb = small_vocab("gpt2", "llama-bpe", k_bpe, QF_ARRAY_LEN(k_bpe), k_bpe_merges, QF_ARRAY_LEN(k_bpe_merges));
    qf_tokenizer *ts = NULL, *tb = NULL;
    qf_error err = {0};
    CHECK_OK(qf_tokenizer_new(&vs, &ts, &err), &err);
    CHECK_OK(qf_tokenizer_new(&vb, &tb, &err), &err);
    free_small(&vs);
    free_small(&vb);
    uint64_t seed = 0x5eed7011, state = seed;
    char buf[512];
    for (int iter = 0; iter < 400 && ts && tb; iter++) {
        size_t n = qf_test_rand(&state) % sizeof buf;
        for (size_t i = 0; i < n; i++) {
            uint64_t r = qf_test_rand(&state);
            buf[i] = (char)(r % 4 == 0 ? " \n\t'a"[r % 5] : (char)(r >> 8)); /* mix separators into noise */
        }
        const qf_tokenizer *tt[2] = { ts, tb };
        for (int k = 0; k < 2; k++) {
            int32_t *a = NULL, *b = NULL;
            size_t na = 0, nb = 0;
            qf_status s1 = qf_tokenize(tt[k], buf, n, true, &a, &na, &err);
            qf_status s2 = qf_tokenize(tt[k], buf, n, true, &b, &nb, &err);
            CHECK_MSG(s1 == QF_OK && s2 == QF_OK && same_ids(a, na, b, nb), "seed %llx iter %d kind %d: %s",
                      (unsigned long long)seed, iter, k, err.msg);
            for (size_t i = 0; i < na; i++) CHECK(a[i] >= 0 && (uint32_t)a[i] < qf_tokenizer_n_vocab(tt[k]));
            free(a);
            free(b);
        }
    }
    qf_tokenizer_free(ts);
    qf_tokenizer_free(tb);
}

/* ---- 4. released tokenizers (../shared/tokenizers) ------------------------------------------------- */

/* GPT-2's bytes_to_unicode, inverted: code point -> byte, -1 where no byte maps there. */
static void gpt2_unicode_to_byte(int16_t inv[324]) {
    int next = 256;
    for (int i = 0; i < 324; i++) inv[i] = -1;
    for (int b = 0; b < 256; b++) {
        bool keep = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        inv[keep ? b : next++] = (int16_t)b;
    }
}

/* Next code point of s (valid UTF-8 assumed: token texts are), advancing *i. */
static uint32_t next_cpt(const char *s, size_t *i) {
    const uint8_t *u = (const uint8_t *)s + *i;
    uint32_t n = u[0] < 0x80 ? 1 : u[0] < 0xE0 ? 2 : u[0] < 0xF0 ? 3 : 4;
    uint32_t cp = n == 1 ? u[0] : n == 2 ? u[0] & 0x1Fu : n == 3 ? u[0] & 0x0Fu : u[0] & 0x07u;
    for (uint32_t k = 1; k < n; k++) cp = cp << 6 | (u[k] & 0x3Fu);
    *i += n;
    return cp;
}

typedef struct { char *v; size_t n, cap; } bytebuf;

static bool buf_put(bytebuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = (b->n + n + 1) * 2;
        char *v = realloc(b->v, cap);
        if (!v) return false;
        b->v = v, b->cap = cap;
    }
    memcpy(b->v + b->n, s, n);
    b->n += n;
    return true;
}

/* The bytes a NORMAL token stands for: byte-level BPE maps its code points back through GPT-2's table;
 * SentencePiece-style BPE reads <0xNN> as that byte and U+2581 as ' '. false when a code point maps to
 * no byte. */
static bool normal_piece(const char *tok, bool byte_level, const int16_t inv[324], bytebuf *out) {
    unsigned hex;
    char c;
    if (!byte_level && strlen(tok) == 6 && sscanf(tok, "<0x%2X%c", &hex, &c) == 2 && c == '>') {
        c = (char)hex;
        return buf_put(out, &c, 1);
    }
    bool ok = true;
    for (size_t i = 0; ok && tok[i];) {
        size_t at = i;
        uint32_t cp = next_cpt(tok, &i);
        if (!byte_level) ok = cp == 0x2581 ? buf_put(out, " ", 1) : buf_put(out, tok + at, i - at);
        else if (cp < 324 && inv[cp] >= 0) { c = (char)inv[cp]; ok = buf_put(out, &c, 1); }
        else ok = false;
    }
    return ok;
}

/* The text ids spell, as llama.cpp's token_to_piece(special = true) writes it: control and user-defined
 * tokens as their text, the others through normal_piece. NULL if some id has no such text. */
static char *detokenize(const qf_vocab *v, bool byte_level, const int32_t *ids, size_t n, size_t *out_len) {
    int16_t inv[324];
    gpt2_unicode_to_byte(inv);
    bytebuf b = { 0 };
    bool ok = buf_put(&b, "", 0);
    for (size_t i = 0; ok && i < n; i++) {
        if (ids[i] < 0 || (uint32_t)ids[i] >= v->n_tokens) { ok = false; break; }
        const char *tok = v->tokens[ids[i]];
        int32_t type = v->types[ids[i]];
        ok = type == QF_TOK_CONTROL || type == QF_TOK_USER_DEFINED ? buf_put(&b, tok, strlen(tok))
                                                                    : normal_piece(tok, byte_level, inv, &b);
    }
    if (!ok) { free(b.v); return NULL; }
    *out_len = b.n;
    return b.v;
}

/* The input with every U+2581 as ' ': what a SentencePiece-style decode gives back (README: Gemma 99). */
static char *spaces_for_spm_space(const char *s, size_t n, size_t *out_n) {
    char *o = malloc(n + 1);
    size_t k = 0;
    for (size_t i = 0; o && i < n; i++) {
        if (i + 2 < n && !memcmp(s + i, "\xe2\x96\x81", 3)) { o[k++] = ' '; i += 2; }
        else o[k++] = s[i];
    }
    *out_n = k;
    return o;
}

typedef struct { size_t agree, listed, roundtrip; } family_counts;

/* One mode over all inputs: ids against the expected ids, every difference a documented one; and the ids
 * spell the input again (with U+2581 as ' ' where README says so). */
static family_counts check_mode(const qf_tok_family *fam, const qf_vocab *v, const qf_tokenizer *t,
                                const qf_tok_vectors *want, unsigned flags, const char *mode) {
    family_counts c = { 0, 0, 0 };
    bool byte_level = strcmp(fam->pre, "granite-embed-multi-311m") != 0;
    for (size_t i = 0; i < want->n; i++) {
        int32_t *ids = NULL;
        size_t n = 0, dn = 0, rn = 0;
        qf_error err = {0};
        CHECK_OK(qf_tokenize_flags(t, want->inp[i], want->inp_len[i], flags, &ids, &n, &err), &err);
        bool same = same_ids(ids, n, want->ids[i], want->n_ids[i]);
        bool listed = qf_tok_listed(fam->llamacpp_deviations, (int)i) ||
                      (!(flags & QF_TOKENIZE_PARSE_SPECIAL) && qf_tok_listed(fam->unparsed_deviations, (int)i));
        c.agree += same;
        c.listed += !same && listed;
        if (!same && !listed) {
            fprintf(stderr, "  %s %s input %zu: '%.60s'\n", fam->dir, mode, i, want->inp[i]);
            print_ids("want", want->ids[i], want->n_ids[i]);
            print_ids("got ", ids, n);
        }
        CHECK_MSG(same || listed, "%s %s: input %zu differs from expected ids and is no documented deviation",
                  fam->dir, mode, i);
        /* skip the BOS that add_special put in front */
        size_t skip = (flags & QF_TOKENIZE_ADD_SPECIAL) && n && ids[0] == qf_tokenizer_bos(t) ? 1 : 0;
        char *text = detokenize(v, byte_level, ids + skip, n - skip, &dn);
        char *back = qf_tok_listed(fam->no_roundtrip, (int)i) ? spaces_for_spm_space(want->inp[i], want->inp_len[i], &rn)
                                                              : qf_strndup(want->inp[i], rn = want->inp_len[i]);
        bool rt = text && back && dn == rn && memcmp(text, back, dn) == 0;
        c.roundtrip += rt;
        CHECK_MSG(rt, "%s %s: input %zu: the ids do not spell the input again", fam->dir, mode, i);
        free(text);
        free(back);
        free(ids);
    }
    return c;
}

/* The family's vocabulary built from its files, written to a GGUF and read back (as llama.cpp and the
 * runtime see it), and its tokenizer. */
static qf_status family_tokenizer(qf_tok_family_ctx *ctx, const char *gguf, qf_vocab *v, qf_tokenizer **t) {
    qf_vocab hf;
    qf_error err = {0};
    qf_gguf *g = NULL;
    qf_status st = qf_vocab_load_hf(qf_tok_family_reader, ctx, ctx->fam->vocab_size, &hf, &err);
    if (st) { CHECK_OK(st, &err); return st; }
    st = qf_test_write_vocab(&hf, gguf, &err);
    qf_vocab_free(&hf);
    if (!st) st = qf_gguf_open(gguf, &g, &err);
    if (!st) st = qf_vocab_load_gguf(g, v, &err);
    qf_gguf_close(g);
    if (!st && (st = qf_tokenizer_new(v, t, &err))) qf_vocab_free(v);
    CHECK_OK(st, &err);
    return st;
}

static void test_released_family(const qf_tok_family *fam) {
    char rel[256];
    qf_tok_family_ctx ctx = { .fam = fam };
    snprintf(rel, sizeof rel, "tokenizers/%s", fam->dir);
    if (!qf_test_shared(rel, ctx.dir, sizeof ctx.dir)) return;
    char inp[4200], exp[4200], exp_special[4200], gguf[4200];
    snprintf(inp, sizeof inp, "%s/../inputs.inp", ctx.dir);
    snprintf(exp, sizeof exp, "%s/expected.out", ctx.dir);
    snprintf(exp_special, sizeof exp_special, "%s/expected-with-special.out", ctx.dir);
    snprintf(gguf, sizeof gguf, "%s/%s.vocab.gguf", qf_test_scratch, fam->dir);
    qf_tok_vectors want, want_special;
    bool loaded = qf_tok_vectors_load(inp, exp, &want);
    CHECK_MSG(loaded, "%s: cannot read %s with %s", fam->dir, inp, exp);
    if (!loaded) return;
    CHECK_MSG(qf_tok_vectors_load(inp, exp_special, &want_special), "%s: cannot read %s", fam->dir, exp_special);
    CHECK_MSG(want.n == 113 && want_special.n == want.n, "%s: %zu inputs, README states 113", fam->dir, want.n);
    qf_vocab v;
    qf_tokenizer *t = NULL;
    qf_status st = family_tokenizer(&ctx, gguf, &v, &t);
    if (!st) {
        /* add_special adds BOS exactly where the expected ids start with one (no family adds EOS) */
        bool bos = want_special.n && want_special.n_ids[0] > 0 && want.n_ids[0] + 1 == want_special.n_ids[0];
        CHECK_MSG(qf_tokenizer_wants_bos(t) == bos && !qf_tokenizer_wants_eos(t), "%s: add_bos %d, expected %d",
                  fam->dir, qf_tokenizer_wants_bos(t), bos);
        family_counts a = check_mode(fam, &v, t, &want, QF_TOKENIZE_PARSE_SPECIAL, "parse_special");
        family_counts b = check_mode(fam, &v, t, &want_special, QF_TOKENIZE_PARSE_SPECIAL | QF_TOKENIZE_ADD_SPECIAL,
                                     "add_special");
        family_counts c = check_mode(fam, &v, t, &want, 0, "no parse_special");
        printf("%-12s %zu/%zu expected.out (%zu documented llama.cpp deviations), %zu/%zu "
               "expected-with-special.out, %zu/%zu with parse_special off (%zu documented); ids spell the input "
               "again: %zu/%zu/%zu\n", fam->dir, a.agree, want.n, a.listed, b.agree, want.n, c.agree, want.n,
               c.listed, a.roundtrip, b.roundtrip, c.roundtrip);
    }
    if (!st) {
        qf_tokenizer_free(t);
        qf_vocab_free(&v);
    }
    qf_tok_vectors_free(&want);
    qf_tok_vectors_free(&want_special);
}

static void test_released(void) {
    for (int i = 0; i < QF_TOK_N_FAMILIES; i++) test_released_family(&qf_tok_families[i]);
}

int main(int argc, char **argv) {
    qf_test_init(argc, argv);
    test_spm_small();
    test_bpe_small();
    test_bpe_merge_through_non_token();
    test_bpe_spm_style();
    test_malformed();
    test_all_pre();
    test_random_bytes();
    test_vectors();
    test_real_text("qf-llama-a");
    test_real_text("stories260K");
    test_hf_matches_gguf();
    test_released();
    return qf_test_finish();
}
