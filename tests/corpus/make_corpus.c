/*
 * make_corpus.c — generates qforge's input corpora from code, so that no binary blob is edited by hand:
 *
 *   make_corpus malformed DIR   the committed malformed-input corpus (tests/corpus/): one small file or
 *                               model directory per named corruption, across every input format, and
 *                               DIR/MANIFEST.tsv with one line per CLI run:
 *                                   FILE <TAB> convert|inspect <TAB> substring the one-line error must hold
 *                               tests/corpus_cli.sh runs the real CLI on each line.
 *   make_corpus seeds DIR       valid fixtures, one folder per fuzz target (DIR/<target>/), used as the
 *                               fuzzers' seed corpus and replayed by ctest (tests/fuzz/replay.c).
 *
 * Both modes are deterministic: same binary, same bytes (archives carry fixed times and owners).
 * Regenerate the committed corpus with
 *     build/tests/make_corpus malformed tests/corpus
 * which first removes the format folders it owns (never other files), then commit the result.
 *
 * The valid base every directory case starts from is a tiny Llama checkpoint (hidden 4, one layer,
 * vocabulary 8, F32) that `qforge convert` accepts; each case changes one thing.
 */
#include "formats/arch.h"
#include "formats/gguf.h"
#include "formats/hessian.h"
#include "formats/imatrix.h"
#include "formats/infile.h"
#include "formats/safetensors.h"
#include "formats/vocab.h"
#include "kernels/qtypes.h"
#include "../fuzz/sig_fixture.h"

#include <archive.h>
#include <math.h>
#include <openssl/evp.h>
#include <archive_entry.h>
#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- byte buffers -------------------------------------------------------------------------------- */

typedef struct buf {
    uint8_t *p;
    size_t n, cap;
} buf;

static void die(const char *fmt, ...) QF_PRINTF(1, 2);
static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("make_corpus: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void b_put(buf *b, const void *p, size_t n) {
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->n + n + 1) * 2;
        if (!(b->p = realloc(b->p, b->cap))) die("out of memory");
    }
    if (n) memcpy(b->p + b->n, p, n);
    b->n += n;
    b->p[b->n] = 0; /* text builders can use p as a C string */
}

static void b_printf(buf *b, const char *fmt, ...) QF_PRINTF(2, 3);
static void b_printf(buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *tmp = malloc((size_t)n + 1);
    if (!tmp) die("out of memory");
    va_start(ap, fmt);
    vsnprintf(tmp, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b_put(b, tmp, (size_t)n);
    free(tmp);
}

static void b_u8(buf *b, uint8_t v) { b_put(b, &v, 1); }
static void b_u32(buf *b, uint32_t v) {
    uint8_t le[4];
    for (int i = 0; i < 4; i++) le[i] = (uint8_t)(v >> (8 * i));
    b_put(b, le, 4);
}
static void b_u64(buf *b, uint64_t v) {
    uint8_t le[8];
    for (int i = 0; i < 8; i++) le[i] = (uint8_t)(v >> (8 * i));
    b_put(b, le, 8);
}
static void b_zeros(buf *b, size_t n) {
    static const uint8_t z[256];
    for (size_t k; n; n -= k) b_put(b, z, k = QF_MIN(n, sizeof z));
}
static void b_free(buf *b) { free(b->p); memset(b, 0, sizeof *b); }
static buf b_text(const char *s) { buf b = {0}; b_put(&b, s, strlen(s)); return b; }

/* ---- output -------------------------------------------------------------------------------------- */

static const char *out_root;
static buf manifest;
static unsigned n_cases;

static void mkdirs(const char *path) { /* every parent of path */
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *s = tmp + 1; *s; s++) {
        if (*s != '/') continue;
        *s = 0;
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST) die("mkdir %s: %s", tmp, strerror(errno));
        *s = '/';
    }
}

static void write_rel(const char *rel, const void *p, size_t n) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", out_root, rel);
    mkdirs(path);
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(p, 1, n, f) != n) || fclose(f) != 0) die("write %s: %s", path, strerror(errno));
}

static void write_buf(const char *rel, const buf *b) { write_rel(rel, b->p, b->n); }
static void write_text(const char *rel, const char *s) { write_rel(rel, s, strlen(s)); }

/* One CLI run: `qforge CMD FILE` must exit 2 with one stderr line holding `expect`. A known failure
 * carries a fourth column "known: why" (corpus_cli.sh reports it as XFAIL, and XPASS once fixed). */
static void expect_known(const char *file, const char *cmd, const char *substr, const char *known) {
    if (strchr(substr, '\t') || strchr(substr, '\n')) die("%s: expected text holds a tab or newline", file);
    b_printf(&manifest, "%s\t%s\t%s", file, cmd, substr);
    if (known) b_printf(&manifest, "\tknown: %s", known);
    b_printf(&manifest, "\n");
    n_cases++;
}
static void expect(const char *file, const char *cmd, const char *substr) { expect_known(file, cmd, substr, NULL); }

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb; (void)flag; (void)ftw;
    if (remove(path) != 0) die("remove %s: %s", path, strerror(errno));
    return 0;
}

/* The generator owns these folders of the output directory; anything else there is left alone. */
static void clear_owned(const char *const *dirs, size_t n) {
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", out_root, dirs[i]);
        struct stat sb;
        if (stat(path, &sb) == 0 && nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
            die("cannot clear %s", path);
    }
}

/* ---- safetensors ----------------------------------------------------------------------------------- */

/* u64 length | header | data, the header padded with spaces to a multiple of 8 as the Python writer does. */
static buf st_image(const char *header, const void *data, size_t data_len) {
    buf h = b_text(header), out = {0};
    while (h.n % 8) b_put(&h, " ", 1);
    b_u64(&out, h.n);
    b_put(&out, h.p, h.n);
    b_put(&out, data, data_len);
    b_free(&h);
    return out;
}

/* A tensor of the generated models: F32 values from a fixed formula, so files are reproducible. */
typedef struct tensor_spec {
    const char *name;
    const char *dtype; /* safetensors spelling */
    uint32_t n_dims;
    uint64_t shape[2];
} tensor_spec;

static size_t dtype_bytes(const char *dt) {
    qf_dtype d;
    if (!qf_dtype_from_name(dt, &d)) die("dtype %s", dt);
    return qf_dtype_size(d);
}

static uint64_t spec_elems(const tensor_spec *t) { return t->n_dims == 2 ? t->shape[0] * t->shape[1] : t->shape[0]; }

static void fill_values(buf *data, const tensor_spec *t, uint32_t salt) {
    uint64_t n = spec_elems(t);
    size_t es = dtype_bytes(t->dtype);
    for (uint64_t i = 0; i < n; i++) {
        /* small values of both signs; exact in F32, nonzero in F8 */
        float v = (float)((int)((i * 7 + salt * 13) % 17) - 8) / 16.0f;
        uint8_t bytes[8];
        double dv = v;
        if (es == 8) memcpy(bytes, &dv, 8);
        else if (es == 4) memcpy(bytes, &v, 4);
        else if (es == 2) { uint32_t u; memcpy(&u, &v, 4); bytes[0] = (uint8_t)(u >> 16); bytes[1] = (uint8_t)(u >> 24); }
        else bytes[0] = (uint8_t)(0x30 + (i % 16)); /* E4M3 0.5 .. 1.9 */
        b_put(data, bytes, es);
    }
}

/* A safetensors file holding `n` tensors in order (BF16 takes the high half of the F32 value). */
static buf st_model(const tensor_spec *t, size_t n, uint32_t salt) {
    buf h = {0}, d = {0};
    b_printf(&h, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (size_t i = 0; i < n; i++) {
        size_t begin = d.n;
        fill_values(&d, &t[i], salt + (uint32_t)i);
        b_printf(&h, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%llu", t[i].name, t[i].dtype,
                 (unsigned long long)t[i].shape[0]);
        if (t[i].n_dims == 2) b_printf(&h, ",%llu", (unsigned long long)t[i].shape[1]);
        b_printf(&h, "],\"data_offsets\":[%zu,%zu]}", begin, d.n);
    }
    b_printf(&h, "}");
    buf out = st_image((const char *)h.p, d.p, d.n);
    b_free(&h);
    b_free(&d);
    return out;
}

/* ---- the tiny Llama base model --------------------------------------------------------------------- */

static const tensor_spec LLAMA[] = {
    {"model.embed_tokens.weight", "F32", 2, {8, 4}},
    {"model.layers.0.input_layernorm.weight", "F32", 1, {4, 0}},
    {"model.layers.0.self_attn.q_proj.weight", "F32", 2, {4, 4}},
    {"model.layers.0.self_attn.k_proj.weight", "F32", 2, {4, 4}},
    {"model.layers.0.self_attn.v_proj.weight", "F32", 2, {4, 4}},
    {"model.layers.0.self_attn.o_proj.weight", "F32", 2, {4, 4}},
    {"model.layers.0.post_attention_layernorm.weight", "F32", 1, {4, 0}},
    {"model.layers.0.mlp.gate_proj.weight", "F32", 2, {8, 4}},
    {"model.layers.0.mlp.up_proj.weight", "F32", 2, {8, 4}},
    {"model.layers.0.mlp.down_proj.weight", "F32", 2, {4, 8}},
    {"model.norm.weight", "F32", 1, {4, 0}},
    {"lm_head.weight", "F32", 2, {8, 4}},
};

#define CFG_HEAD "{\"architectures\":[\"LlamaForCausalLM\"],\"model_type\":\"llama\","
#define CFG_SIZES "\"hidden_size\":4,\"intermediate_size\":8,\"num_hidden_layers\":1,\"num_attention_heads\":2,"
#define CFG_REST "\"num_key_value_heads\":2,\"vocab_size\":8,\"max_position_embeddings\":64,\"rms_norm_eps\":1e-05," \
                 "\"rope_theta\":10000.0,\"tie_word_embeddings\":false,\"bos_token_id\":1,\"eos_token_id\":2}"
static const char CONFIG[] = CFG_HEAD CFG_SIZES CFG_REST;

/* Byte-level BPE with 8 tokens, as tokenizers' ByteLevel models write it (U+0120 stands for a space). */
#define TOK_ADDED "\"added_tokens\":[{\"id\":0,\"content\":\"<unk>\",\"special\":true},{\"id\":1,\"content\":\"<s>\"," \
                  "\"special\":true},{\"id\":2,\"content\":\"</s>\",\"special\":true}],"
#define TOK_PRE "\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true," \
                "\"use_regex\":true},"
#define TOK_VOCAB "{\"<unk>\":0,\"<s>\":1,\"</s>\":2,\"a\":3,\"b\":4,\"ab\":5,\"\\u0120\":6,\"\\u0120ab\":7}"
#define TOK_MERGES "[\"a b\",\"\\u0120 ab\"]"
static const char TOKENIZER[] = "{\"version\":\"1.0\"," TOK_ADDED TOK_PRE
                                "\"model\":{\"type\":\"BPE\",\"vocab\":" TOK_VOCAB ",\"merges\":" TOK_MERGES "}}";
static const char TOKENIZER_CONFIG[] = "{\"bos_token\":\"<s>\",\"eos_token\":\"</s>\",\"unk_token\":\"<unk>\","
                                       "\"add_bos_token\":true,\"add_eos_token\":false}";

static buf llama_weights(void) { return st_model(LLAMA, QF_ARRAY_LEN(LLAMA), 1); }

/* The base model in `dir` (relative); any of config/tokenizer may be replaced (NULL: left out). */
static void base_model(const char *dir, const char *config, const char *tokenizer, bool with_weights) {
    char rel[512];
    if (with_weights) {
        buf w = llama_weights();
        snprintf(rel, sizeof rel, "%s/model.safetensors", dir);
        write_buf(rel, &w);
        b_free(&w);
    }
    if (config) { snprintf(rel, sizeof rel, "%s/config.json", dir); write_text(rel, config); }
    if (tokenizer) { snprintf(rel, sizeof rel, "%s/tokenizer.json", dir); write_text(rel, tokenizer); }
}

/* ---- malformed safetensors files ----------------------------------------------------------------- */

#define NO_LEN UINT64_MAX
#define ONE_F32 "\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]"
#define T(body) "{\"t\":{" body "}}"

typedef struct st_case {
    const char *name;
    const char *header;  /* NULL: the file is the first `header_len` bytes of 01 02 03 04 05 00 00 00 */
    size_t header_len;   /* 0: strlen(header); set to include NUL bytes */
    uint64_t data_len;   /* zero bytes after the header */
    uint64_t len_field;  /* NO_LEN: the header's true length */
    const char *expect;
    bool convert_too;    /* also run through `qforge convert` */
} st_case;

static const st_case ST_CASES[] = {
    {"empty_file", NULL, 0, 0, NO_LEN, "shorter than the 8-byte header length", true},
    {"short_prefix", NULL, 5, 0, NO_LEN, "shorter than the 8-byte header length", false},
    {"len_past_file", "{}", 0, 0, 1000, "header length 1000 runs past the end of the file", true},
    {"len_over_cap", "{}", 0, 0, (100u << 20) + 1, "exceeds the 104857600-byte limit", false},
    {"len_u64_max", "{}", 0, 0, UINT64_MAX - 1, "exceeds the 104857600-byte limit", false},
    {"len_zero", "{}", 0, 0, 0, "not valid JSON", false},
    {"len_short", T(ONE_F32), 0, 4, 10, "not valid JSON", false},
    {"not_json", "hello world", 0, 0, NO_LEN, "not valid JSON", false},
    {"json_unterminated", "{\"t\":{\"dtype\":\"F32\"", 0, 0, NO_LEN, "not valid JSON", true},
    {"json_array", "[1,2]", 0, 0, NO_LEN, "header JSON is an array, expected an object", false},
    {"json_string", "\"x\"", 0, 0, NO_LEN, "header JSON is a string", false},
    {"json_number", "42", 0, 0, NO_LEN, "header JSON is 42", false},
    {"json_trailing", "{} {}", 0, 0, NO_LEN, "data after the JSON value at byte 3", false},
    /* parser differentials: cJSON would skip the mark and cut the name at the NUL; Python refuses both */
    {"bom_header", "\xef\xbb\xbf{\"a\":{" ONE_F32 "}}", 0, 4, NO_LEN, "starts with a UTF-8 byte-order mark", true},
    {"name_escaped_nul", "{\"weight\\u0000evil\":{" ONE_F32 "}}", 0, 4, NO_LEN,
     "key \"weight\\u0000evil\" contains \\u0000 (NUL)", true},
    {"control_char", "{\"a\x01\":{}}", 0, 0, NO_LEN, "control character 0x01", false},
    {"nul_padding", "{}\0\0", 4, 0, NO_LEN, "control character 0x00", false},
    {"invalid_utf8", "{\"\xff\":{}}", 0, 0, NO_LEN, "not valid UTF-8 at byte 2", false},
    {"overlong_utf8", "{\"\xc0\xaf\":{}}", 0, 0, NO_LEN, "not valid UTF-8", false},
    {"surrogate_utf8", "{\"\xed\xa0\x80\":{}}", 0, 0, NO_LEN, "not valid UTF-8", false},
    {"entry_number", "{\"t\":5}", 0, 0, NO_LEN, "tensor 't': entry is 5, expected an object", false},
    {"dtype_missing", T("\"shape\":[1],\"data_offsets\":[0,4]"), 0, 4, NO_LEN, "dtype is missing", true},
    {"dtype_unknown", T("\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]"), 0, 4, NO_LEN,
     "unknown dtype \"F33\"", false},
    {"dtype_lowercase", T("\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]"), 0, 4, NO_LEN,
     "unknown dtype \"f32\"", false},
    {"dtype_number", T("\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]"), 0, 4, NO_LEN,
     "dtype is 32, expected a string", false},
    {"dtype_e8m0", T("\"dtype\":\"F8_E8M0\",\"shape\":[1],\"data_offsets\":[0,1]"), 0, 1, NO_LEN,
     "dtype F8_E8M0 is not supported", true},
    {"dtype_c64", T("\"dtype\":\"C64\",\"shape\":[1],\"data_offsets\":[0,8]"), 0, 8, NO_LEN,
     "dtype C64 is not supported", false},
    {"shape_missing", T("\"dtype\":\"F32\",\"data_offsets\":[0,4]"), 0, 4, NO_LEN, "shape is missing", false},
    {"shape_number", T("\"dtype\":\"F32\",\"shape\":1,\"data_offsets\":[0,4]"), 0, 4, NO_LEN,
     "shape is 1, expected an array", false},
    {"shape_negative", T("\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]"), 0, 4, NO_LEN,
     "shape[0] is -1", false},
    {"shape_fraction", T("\"dtype\":\"F32\",\"shape\":[2,2.5],\"data_offsets\":[0,4]"), 0, 4, NO_LEN,
     "shape[1] is 2.5", false},
    {"shape_float_one", T("\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]"), 0, 4, NO_LEN,
     "is not a plain integer", false},
    {"shape_exponent", T("\"dtype\":\"U8\",\"shape\":[1e2],\"data_offsets\":[0,100]"), 0, 100, NO_LEN,
     "is not a plain integer", false},
    {"shape_leading_zero", T("\"dtype\":\"U8\",\"shape\":[04],\"data_offsets\":[0,4]"), 0, 4, NO_LEN,
     "is not a plain integer", false},
    {"shape_string", T("\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]"), 0, 4, NO_LEN,
     "shape[0] is a string", false},
    {"shape_null", T("\"dtype\":\"F32\",\"shape\":[null],\"data_offsets\":[0,4]"), 0, 4, NO_LEN,
     "shape[0] is null", false},
    {"shape_2pow53", T("\"dtype\":\"U8\",\"shape\":[9007199254740993],\"data_offsets\":[0,4]"), 0, 4, NO_LEN,
     "expected an integer in [0, 2^53)", false},
    {"shape_1e400", T("\"dtype\":\"U8\",\"shape\":[1E400],\"data_offsets\":[0,4]"), 0, 4, NO_LEN,
     "shape[0] is inf", false},
    {"shape_product_overflow", T("\"dtype\":\"U8\",\"shape\":[4294967296,4294967296,2],\"data_offsets\":[0,4]"), 0,
     4, NO_LEN, "has more elements than fit in 64 bits", true},
    {"bytes_overflow", T("\"dtype\":\"F64\",\"shape\":[2147483648,2147483648],\"data_offsets\":[0,8]"), 0, 8,
     NO_LEN, "takes more bytes than fit in 64 bits", false},
    {"rank_9", T("\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]"), 0, 1, NO_LEN,
     "shape has 9 dimensions, at most 8", false},
    {"offsets_missing", T("\"dtype\":\"F32\",\"shape\":[1]"), 0, 4, NO_LEN, "data_offsets is missing", false},
    {"offsets_object", T("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":{}"), 0, 4, NO_LEN,
     "data_offsets is an object", false},
    {"offsets_one", T("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4]"), 0, 4, NO_LEN,
     "data_offsets has 1 entries", false},
    {"offsets_three", T("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]"), 0, 8, NO_LEN,
     "data_offsets has 3 entries", false},
    {"offsets_negative", T("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]"), 0, 4, NO_LEN,
     "data_offsets[0] is -4", false},
    {"offsets_fraction", T("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4.5]"), 0, 4, NO_LEN,
     "data_offsets[1] is 4.5", false},
    {"offsets_huge", T("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[18446744073709551612,0]"), 0, 4, NO_LEN,
     "data_offsets[0] is 1.8446744073709552e+19", false},
    {"offsets_reversed", T("\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,0]"), 0, 4, NO_LEN,
     "data_offsets [4, 0] end before they begin", false},
    {"offsets_wrong_span", T("\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]"), 0, 4, NO_LEN,
     "span 4 bytes, but F32 [2] needs 8", true},
    {"offsets_past_data", T("\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]"), 0, 4, NO_LEN,
     "data_offsets [0, 8] exceed the data buffer (4 bytes)", true},
    {"data_truncated", T("\"dtype\":\"U8\",\"shape\":[9000],\"data_offsets\":[0,9000]"), 0, 1000, NO_LEN,
     "exceed the data buffer (1000 bytes)", false},
    {"overlap", "{\"a\":{" ONE_F32 "},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[2,10]}}", 0, 10,
     NO_LEN, "overlap tensor 'a' which ends at 4", true},
    {"same_span_twice", "{\"a\":{" ONE_F32 "},\"b\":{" ONE_F32 "}}", 0, 4, NO_LEN, "overlap tensor 'a'", false},
    {"hole_at_start", T("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]"), 0, 8, NO_LEN,
     "bytes [0, 4) of the data buffer belong to no tensor", false},
    {"hole_between", "{\"a\":{" ONE_F32 "},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 0, 12,
     NO_LEN, "hole before tensor 'b'", true},
    {"trailing_bytes", T(ONE_F32), 0, 9, NO_LEN, "data buffer is 9 bytes but tensors cover only 4", false},
    {"data_without_tensors", "{}", 0, 16, NO_LEN, "data buffer is 16 bytes but tensors cover only 0", false},
    {"duplicate_name", "{\"a\":{" ONE_F32 "},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 0, 8,
     NO_LEN, "key 'a' is defined twice (at the top level)", true},
    {"empty_name", "{\"\":{" ONE_F32 "}}", 0, 4, NO_LEN, "a tensor has an empty name", false},
    {"metadata_array", "{\"__metadata__\":[\"pt\"]}", 0, 0, NO_LEN, "__metadata__ is an array", false},
    {"metadata_number_value", "{\"__metadata__\":{\"format\":1}}", 0, 0, NO_LEN,
     "__metadata__ key 'format' is 1, expected a string", false},
    {"metadata_nested", "{\"__metadata__\":{\"a\":{\"b\":\"c\"}}}", 0, 0, NO_LEN, "__metadata__ key 'a' is an object",
     false},
    {"metadata_twice", "{\"__metadata__\":{},\"__metadata__\":{}}", 0, 0, NO_LEN, "key '__metadata__' is defined twice", false},
    {"name_with_newline", "{\"a\\nb\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 0, 4, NO_LEN,
     "tensor 'a?b': data_offsets [0, 4] span 4 bytes", false},
    {"deep_nesting", NULL, 1, 0, NO_LEN, "not valid JSON", false}, /* header built below */
};

static void gen_safetensors(void) {
    char deep[4001];
    memset(deep, '[', 2000); /* past cJSON's nesting limit of 1000 */
    memset(deep + 2000, ']', 2000);
    deep[4000] = 0;
    for (size_t i = 0; i < QF_ARRAY_LEN(ST_CASES); i++) {
        const st_case *c = &ST_CASES[i];
        static const uint8_t raw[8] = {1, 2, 3, 4, 5, 0, 0, 0};
        const char *header = strcmp(c->name, "deep_nesting") ? c->header : deep;
        buf f = {0};
        if (!header) {
            b_put(&f, raw, c->header_len);
        } else {
            size_t hl = c->header_len && c->header ? c->header_len : strlen(header);
            b_u64(&f, c->len_field == NO_LEN ? hl : c->len_field);
            b_put(&f, header, hl); /* unpadded: several cases name exact byte positions */
            b_zeros(&f, (size_t)c->data_len);
        }
        char rel[256];
        snprintf(rel, sizeof rel, "safetensors/%s.safetensors", c->name);
        write_buf(rel, &f);
        b_free(&f);
        expect(rel, "inspect", c->expect);
        if (c->convert_too) expect(rel, "convert", c->expect);
    }
}

/* ---- malformed GGUF files ------------------------------------------------------------------------ */

/* A small valid GGUF described field by field, so each case changes one thing:
 *   kv: general.architecture = "llama", llama.block_count = 1 (u32), then the case's extra keys
 *   tensors: tok_embd.weight F32 [8, 3] | blk.0.attn_q.weight Q8_0 [64, 2] | output_norm.weight F16 [8]
 *   alignment 32, so data offsets 0, 96, 256 and a 272-byte data section. */
typedef struct gg_tensor {
    const char *name;
    uint64_t name_len;    /* 0: strlen(name); else written as the length (name bytes as far as they go) */
    uint32_t n_dims;
    uint64_t ne[5];
    uint32_t type;
    int64_t offset_delta; /* added to the correct offset */
} gg_tensor;

typedef struct gg_spec {
    uint32_t magic, version;
    bool counts_set;
    uint64_t n_tensors, n_kv;
    buf kv;
    uint64_t nkv;
    gg_tensor t[3];
    uint32_t alignment;  /* layout alignment (the file's claim is a key) */
    int64_t data_delta;  /* bytes added to or cut from the data section */
    int64_t truncate;    /* >= 0: keep only this many bytes */
} gg_spec;

static void gg_str(buf *b, const char *s) { b_u64(b, strlen(s)); b_put(b, s, strlen(s)); }
static void gg_key(gg_spec *s, const char *key, uint32_t type) { gg_str(&s->kv, key); b_u32(&s->kv, type); s->nkv++; }

static void gg_default(gg_spec *s) {
    memset(s, 0, sizeof *s);
    s->magic = QF_GGUF_MAGIC;
    s->version = 3;
    s->alignment = 32;
    s->truncate = -1;
    gg_key(s, "general.architecture", QF_GGUF_STRING);
    gg_str(&s->kv, "llama");
    gg_key(s, "llama.block_count", QF_GGUF_U32);
    b_u32(&s->kv, 1);
    s->t[0] = (gg_tensor){.name = "tok_embd.weight", .n_dims = 2, .ne = {8, 3}, .type = QF_T_F32};
    s->t[1] = (gg_tensor){.name = "blk.0.attn_q.weight", .n_dims = 2, .ne = {64, 2}, .type = QF_T_Q8_0};
    s->t[2] = (gg_tensor){.name = "output_norm.weight", .n_dims = 1, .ne = {8}, .type = QF_T_F16};
}

/* Bytes a tensor occupies; shapes the reader refuses get a token size so nothing large is built. */
static uint64_t gg_nbytes(const gg_tensor *t) {
    const qf_qtype_traits *tr = qf_qtype_get(t->type);
    uint64_t rb;
    if (!tr || t->n_dims < 1 || t->n_dims > 4 || !qf_qtype_row_bytes(tr, t->ne[0], &rb)) return 32;
    for (uint32_t d = 1; d < t->n_dims; d++)
        if (!qf_mul_ok(rb, t->ne[d], &rb)) return 32;
    return rb > 4096 ? 32 : rb;
}

static uint64_t pad_to(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

static buf gg_build(gg_spec *s) {
    buf out = {0};
    b_u32(&out, s->magic);
    b_u32(&out, s->version);
    b_u64(&out, s->counts_set ? s->n_tensors : 3);
    b_u64(&out, s->counts_set ? s->n_kv : s->nkv);
    b_put(&out, s->kv.p, s->kv.n);
    uint64_t off = 0;
    for (int i = 0; i < 3; i++) {
        const gg_tensor *t = &s->t[i];
        size_t real = strlen(t->name);
        b_u64(&out, t->name_len ? t->name_len : real);
        b_put(&out, t->name, t->name_len && t->name_len < real ? (size_t)t->name_len : real);
        b_u32(&out, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims && d < 5; d++) b_u64(&out, t->ne[d]);
        b_u32(&out, t->type);
        b_u64(&out, off + (uint64_t)t->offset_delta);
        off = pad_to(off + gg_nbytes(t), s->alignment);
    }
    b_zeros(&out, (size_t)(pad_to(out.n, s->alignment) - out.n));
    int64_t data = (int64_t)off + s->data_delta;
    for (int64_t i = 0; i < data; i++) b_u8(&out, (uint8_t)(i * 7)); /* F16 0x0700.. are finite */
    if (s->truncate >= 0 && (size_t)s->truncate < out.n) out.n = (size_t)s->truncate;
    b_free(&s->kv);
    return out;
}

typedef enum gg_case_id {
    G_BAD_MAGIC_GGUE, G_VERSION_0, G_VERSION_1, G_VERSION_4, G_BYTESWAPPED, G_TRUNC_VERSION, G_TRUNC_COUNTS,
    G_HUGE_N_TENSORS, G_HUGE_N_KV, G_N_KV_PLUS_ONE, G_KEY_LEN_HUGE, G_KEY_EMPTY, G_KEY_NUL, G_DUP_KEY,
    G_VALUE_TYPE_13, G_ARRAY_ELEM_TYPE_99, G_ARRAY_LEN_HUGE, G_STR_VALUE_LEN_HUGE, G_STR_ELEM_LEN_HUGE,
    G_NESTED_DEEP, G_BOOL_2, G_BOOL_ARRAY_9, G_ALIGN_48, G_ALIGN_0, G_ALIGN_U64, G_ALIGN_64_MISPLACED, G_NDIMS_0,
    G_NDIMS_5, G_NE_ZERO, G_NE_OVERFLOW, G_TYPE_4, G_TYPE_HUGE, G_ROW_NOT_BLOCK_MULTIPLE, G_NAME_64,
    G_NAME_LEN_HUGE, G_DUP_TENSOR, G_MISALIGNED_OFFSET, G_OVERLAP, G_GAP, G_DATA_PAST_EOF, G_TRUNC_BEFORE_DATA,
    G_TRUNC_TENSOR_INFO, G_KEY_NEWLINE, G_COUNT
} gg_case_id;

static const struct {
    const char *name, *expect;
} GG_CASES[G_COUNT] = {
    [G_BAD_MAGIC_GGUE] = {"bad_magic_ggue", "bad magic"},
    [G_VERSION_0] = {"version_0", "unsupported version 0"},
    [G_VERSION_1] = {"version_1", "version 1"},
    [G_VERSION_4] = {"version_4", "unsupported version 4"},
    [G_BYTESWAPPED] = {"version_byteswapped", "byte-swapped"},
    [G_TRUNC_VERSION] = {"truncated_version", "truncated: version"},
    [G_TRUNC_COUNTS] = {"truncated_counts", "truncated: n_tensors"},
    [G_HUGE_N_TENSORS] = {"huge_n_tensors", "n_tensors 1152921504606846976 needs at least 32 bytes each"},
    [G_HUGE_N_KV] = {"huge_n_kv", "n_kv 18446744073709551615 needs at least 13 bytes each"},
    [G_N_KV_PLUS_ONE] = {"n_kv_plus_one", "tensor name length"},
    [G_KEY_LEN_HUGE] = {"key_len_huge", "key length 4611686018427387904 exceeds"},
    [G_KEY_EMPTY] = {"key_empty", "key is empty"},
    [G_KEY_NUL] = {"key_nul", "key contains a NUL byte at position 1"},
    [G_DUP_KEY] = {"duplicate_key", "key 'general.architecture': duplicate key"},
    [G_VALUE_TYPE_13] = {"value_type_13", "value type 13 is not a valid value type"},
    [G_ARRAY_ELEM_TYPE_99] = {"array_elem_type_99", "array element type 99 is not a valid"},
    [G_ARRAY_LEN_HUGE] = {"array_len_huge", "array of 2305843009213693952 u32 elements"},
    [G_STR_VALUE_LEN_HUGE] = {"string_len_huge", "string value length 18446744073709551615 exceeds"},
    [G_STR_ELEM_LEN_HUGE] = {"string_elem_len_huge", "string element length 9999 exceeds"},
    [G_NESTED_DEEP] = {"nested_arrays_deep", "arrays nested more than 8 levels deep"},
    [G_BOOL_2] = {"bool_2", "bool value 2 is not 0 or 1"},
    [G_BOOL_ARRAY_9] = {"bool_array_9", "bool value 9 at element 1"},
    [G_ALIGN_48] = {"alignment_48", "alignment 48 is not a power of two"},
    [G_ALIGN_0] = {"alignment_0", "alignment 0 is not a power of two"},
    [G_ALIGN_U64] = {"alignment_u64", "alignment must be of type u32, found u64"},
    [G_ALIGN_64_MISPLACED] = {"alignment_64_misplaced", "not a multiple of the alignment 64"},
    [G_NDIMS_0] = {"n_dims_0", "n_dims 0 is outside 1..4"},
    [G_NDIMS_5] = {"n_dims_5", "n_dims 5 is outside 1..4"},
    [G_NE_ZERO] = {"ne_zero", "ne[1] is 0"},
    [G_NE_OVERFLOW] = {"ne_overflow", "element count overflows at ne[1]"},
    [G_TYPE_4] = {"type_4", "type id 4 is not a known tensor type"},
    [G_TYPE_HUGE] = {"type_huge", "type id 4294967295 is not a known"},
    [G_ROW_NOT_BLOCK_MULTIPLE] = {"row_not_block_multiple", "row length ne[0] = 48 is not a multiple of the q8_0 block size 32"},
    [G_NAME_64] = {"tensor_name_64", "(llama.cpp allows at most 63)"},
    [G_NAME_LEN_HUGE] = {"tensor_name_len_huge", "tensor name length 1099511627776 exceeds"},
    [G_DUP_TENSOR] = {"duplicate_tensor", "tensor 'tok_embd.weight': duplicate tensor name"},
    [G_MISALIGNED_OFFSET] = {"misaligned_offset", "offset 104 is not a multiple of the alignment 32"},
    [G_OVERLAP] = {"overlapping_offset", "offset 0 is not contiguous: expected 96"},
    [G_GAP] = {"gap_between_tensors", "offset 128 is not contiguous: expected 96"},
    [G_DATA_PAST_EOF] = {"data_past_eof", "tensor 'output_norm.weight': data at file offset"},
    [G_TRUNC_BEFORE_DATA] = {"truncated_before_data", "extends past the end of the file"},
    [G_TRUNC_TENSOR_INFO] = {"truncated_tensor_info", "tensor 'output_norm.weight': truncated"},
    [G_KEY_NEWLINE] = {"key_with_newline", "value type 13 is not a valid value type"},
};

static void gg_array_head(gg_spec *s, const char *key, uint32_t elem, uint64_t n) {
    gg_key(s, key, QF_GGUF_ARRAY);
    b_u32(&s->kv, elem);
    b_u64(&s->kv, n);
}

static void gg_apply(gg_case_id c, gg_spec *s) {
    gg_tensor *t0 = &s->t[0], *t1 = &s->t[1], *t2 = &s->t[2];
    switch (c) {
    case G_BAD_MAGIC_GGUE: s->magic = 0x45554747u; break; /* "GGUE" */
    case G_VERSION_0: s->version = 0; break;
    case G_VERSION_1: s->version = 1; break;
    case G_VERSION_4: s->version = 4; break;
    case G_BYTESWAPPED: s->version = 0x03000000u; break;
    case G_TRUNC_VERSION: s->truncate = 6; break;
    case G_TRUNC_COUNTS: s->truncate = 14; break;
    case G_HUGE_N_TENSORS: s->counts_set = true; s->n_tensors = 1ull << 60; s->n_kv = s->nkv; break;
    case G_HUGE_N_KV: s->counts_set = true; s->n_tensors = 3; s->n_kv = UINT64_MAX; break;
    case G_N_KV_PLUS_ONE: s->counts_set = true; s->n_tensors = 3; s->n_kv = s->nkv + 1; break;
    case G_KEY_LEN_HUGE: b_u64(&s->kv, 1ull << 62); s->nkv++; break;
    case G_KEY_EMPTY: gg_key(s, "", QF_GGUF_U32); b_u32(&s->kv, 1); break;
    case G_KEY_NUL:
        b_u64(&s->kv, 3);
        b_put(&s->kv, "a\0b", 3);
        b_u32(&s->kv, QF_GGUF_U8);
        b_u8(&s->kv, 1);
        s->nkv++;
        break;
    case G_DUP_KEY: gg_key(s, "general.architecture", QF_GGUF_STRING); gg_str(&s->kv, "gpt2"); break;
    case G_VALUE_TYPE_13: gg_key(s, "k", 13); b_u32(&s->kv, 0); break;
    case G_ARRAY_ELEM_TYPE_99: gg_array_head(s, "k", 99, 1); b_u32(&s->kv, 0); break;
    case G_ARRAY_LEN_HUGE: gg_array_head(s, "k", QF_GGUF_U32, 1ull << 61); break;
    case G_STR_VALUE_LEN_HUGE: gg_key(s, "k", QF_GGUF_STRING); b_u64(&s->kv, UINT64_MAX); break;
    case G_STR_ELEM_LEN_HUGE:
        gg_array_head(s, "k", QF_GGUF_STRING, 2);
        gg_str(&s->kv, "ok");
        b_u64(&s->kv, 9999);
        break;
    case G_NESTED_DEEP:
        gg_key(s, "k", QF_GGUF_ARRAY);
        for (int i = 0; i < 100; i++) { b_u32(&s->kv, QF_GGUF_ARRAY); b_u64(&s->kv, 1); }
        b_zeros(&s->kv, 64);
        break;
    case G_BOOL_2: gg_key(s, "k", QF_GGUF_BOOL); b_u8(&s->kv, 2); break;
    case G_BOOL_ARRAY_9: gg_array_head(s, "k", QF_GGUF_BOOL, 3); b_u8(&s->kv, 1); b_u8(&s->kv, 9); b_u8(&s->kv, 0); break;
    case G_ALIGN_48: gg_key(s, "general.alignment", QF_GGUF_U32); b_u32(&s->kv, 48); break;
    case G_ALIGN_0: gg_key(s, "general.alignment", QF_GGUF_U32); b_u32(&s->kv, 0); break;
    case G_ALIGN_U64: gg_key(s, "general.alignment", QF_GGUF_U64); b_u64(&s->kv, 32); break;
    case G_ALIGN_64_MISPLACED: gg_key(s, "general.alignment", QF_GGUF_U32); b_u32(&s->kv, 64); break;
    case G_NDIMS_0: t0->n_dims = 0; break;
    case G_NDIMS_5: t1->n_dims = 5; t1->ne[2] = t1->ne[3] = t1->ne[4] = 1; break;
    case G_NE_ZERO: t0->ne[1] = 0; break;
    case G_NE_OVERFLOW: t0->ne[0] = 1ull << 32; t0->ne[1] = 1ull << 32; break;
    case G_TYPE_4: t0->type = 4; break;
    case G_TYPE_HUGE: t0->type = 0xFFFFFFFFu; break;
    case G_ROW_NOT_BLOCK_MULTIPLE: t1->ne[0] = 48; break;
    case G_NAME_64: t2->name = "0123456789012345678901234567890123456789012345678901234567890123"; break;
    case G_NAME_LEN_HUGE: t0->name_len = 1ull << 40; break;
    case G_DUP_TENSOR: t1->name = "tok_embd.weight"; break;
    case G_MISALIGNED_OFFSET: t1->offset_delta = 8; break;
    case G_OVERLAP: t1->offset_delta = -96; break;
    case G_GAP: t1->offset_delta = 32; break;
    case G_DATA_PAST_EOF: s->data_delta = -40; break;
    case G_TRUNC_BEFORE_DATA: s->data_delta = -272; break;
    case G_TRUNC_TENSOR_INFO: s->truncate = 24 + (int64_t)s->kv.n + 3 * 8 + 15 + 4 + 16 + 4 + 8 + 19 + 4 + 16 + 4 + 8 + 18 + 4 + 3; break;
    case G_KEY_NEWLINE: gg_key(s, "general.na\nme", 13); b_u32(&s->kv, 0); break;
    case G_COUNT: break;
    }
}

static void gen_gguf(void) {
    for (int c = 0; c < G_COUNT; c++) {
        gg_spec s;
        gg_default(&s);
        gg_apply((gg_case_id)c, &s);
        buf f = gg_build(&s);
        char rel[256];
        snprintf(rel, sizeof rel, "gguf/%s.gguf", GG_CASES[c].name);
        write_buf(rel, &f);
        b_free(&f);
        expect(rel, "inspect", GG_CASES[c].expect);
    }
}

/* ---- shard index sets ----------------------------------------------------------------------------- */

#define SHARD1 "model-00001-of-00002.safetensors"
#define SHARD2 "model-00002-of-00002.safetensors"
#define N_FIRST 6 /* LLAMA[0..5] in shard 1, the rest in shard 2 */

/* The base model as two shards plus an index naming every tensor; `index` replaces the index text. */
static void shard_set(const char *dir, const char *index, bool shard2, bool side_files) {
    char rel[512];
    buf a = st_model(LLAMA, N_FIRST, 1), b = st_model(LLAMA + N_FIRST, QF_ARRAY_LEN(LLAMA) - N_FIRST, 1 + N_FIRST);
    snprintf(rel, sizeof rel, "%s/" SHARD1, dir);
    write_buf(rel, &a);
    if (shard2) { snprintf(rel, sizeof rel, "%s/" SHARD2, dir); write_buf(rel, &b); }
    b_free(&a);
    b_free(&b);
    buf ix = {0};
    if (index) {
        b_printf(&ix, "%s", index);
    } else {
        b_printf(&ix, "{\"metadata\":{\"total_size\":0},\"weight_map\":{");
        for (size_t i = 0; i < QF_ARRAY_LEN(LLAMA); i++)
            b_printf(&ix, "%s\"%s\":\"%s\"", i ? "," : "", LLAMA[i].name, i < N_FIRST ? SHARD1 : SHARD2);
        b_printf(&ix, "}}");
    }
    snprintf(rel, sizeof rel, "%s/model.safetensors.index.json", dir);
    write_buf(rel, &ix);
    b_free(&ix);
    if (side_files) base_model(dir, CONFIG, TOKENIZER, false);
}

/* The generated index with one substitution (first occurrence of `from` becomes `to`). */
static char *index_with(const char *from, const char *to) {
    buf ix = {0};
    b_printf(&ix, "{\"weight_map\":{");
    for (size_t i = 0; i < QF_ARRAY_LEN(LLAMA); i++)
        b_printf(&ix, "%s\"%s\":\"%s\"", i ? "," : "", LLAMA[i].name, i < N_FIRST ? SHARD1 : SHARD2);
    b_printf(&ix, "}}");
    char *hit = strstr((char *)ix.p, from);
    if (!hit) die("index_with: '%s' not found", from);
    buf out = {0};
    b_put(&out, ix.p, (size_t)(hit - (char *)ix.p));
    b_printf(&out, "%s%s", to, hit + strlen(from));
    b_free(&ix);
    return (char *)out.p;
}

static void gen_index(void) {
    struct {
        const char *name, *cmd, *expect;
        char *index; /* NULL: the generated one */
        bool shard2;
    } cases[] = {
        {"missing_shard", "convert", SHARD2 " is missing", NULL, false},
        {"tensor_not_in_shard", "convert", "but that file has no such tensor",
         index_with("\"lm_head.weight\"", "\"lm_head.weight\":\"" SHARD2 "\",\"ghost.weight\""), true},
        {"tensor_in_wrong_shard", "convert", "but it is in",
         index_with("\"model.norm.weight\":\"" SHARD2 "\"", "\"model.norm.weight\":\"" SHARD1 "\""), true},
        {"unlisted_tensor", "inspect", "is not listed in the index weight_map",
         index_with(",\"lm_head.weight\":\"" SHARD2 "\"", ""), true},
        {"listed_twice", "convert", "key 'lm_head.weight' is defined twice (in 'weight_map')",
         index_with("\"lm_head.weight\"", "\"lm_head.weight\":\"" SHARD2 "\",\"lm_head.weight\""), true},
        {"path_traversal", "convert", "expected a file name in the index's directory",
         index_with("\"" SHARD1 "\"", "\"../" SHARD1 "\""), true},
        {"shard_name_dotdot", "inspect", "expected a file name", index_with("\"" SHARD1 "\"", "\"..\""), true},
        {"shard_name_empty", "inspect", "expected a file name", index_with("\"" SHARD1 "\"", "\"\""), true},
        {"map_value_number", "convert", "weight_map['model.embed_tokens.weight'] is 1",
         index_with("\"" SHARD1 "\"", "1"), true},
        {"no_weight_map", "convert", "\"weight_map\" is missing", strdup("{\"metadata\":{}}"), true},
        {"weight_map_array", "inspect", "\"weight_map\" is an array", strdup("{\"weight_map\":[]}"), true},
        {"empty_weight_map", "convert", "weight_map is empty", strdup("{\"weight_map\":{}}"), true},
        {"index_not_json", "convert", "not valid JSON", strdup("{\"weight_map\":"), true},
        {"index_top_array", "inspect", "\"weight_map\" is missing", strdup("[1,2,3]"), true},
        {"shard_is_index", "convert", "model.safetensors.index.json",
         index_with("\"" SHARD1 "\"", "\"model.safetensors.index.json\""), true},
    };
    for (size_t i = 0; i < QF_ARRAY_LEN(cases); i++) {
        char dir[256];
        snprintf(dir, sizeof dir, "index/%s", cases[i].name);
        shard_set(dir, cases[i].index, cases[i].shard2, true);
        free(cases[i].index);
        expect(dir, cases[i].cmd, cases[i].expect);
    }

    /* A shard inside a valid set whose own header is broken. */
    shard_set("index/bad_shard_header", NULL, true, true);
    static const uint8_t bad[16] = {0xff, 0xff, 0, 0, 0, 0, 0, 0, '{', '}'};
    write_rel("index/bad_shard_header/" SHARD2, bad, sizeof bad);
    expect("index/bad_shard_header", "convert", SHARD2 ": header length 65535 runs past the end of the file");

    /* Directories without an index: several shards, or none at all. */
    buf a = st_model(LLAMA, N_FIRST, 1), b = st_model(LLAMA + N_FIRST, QF_ARRAY_LEN(LLAMA) - N_FIRST, 7);
    write_buf("index/two_files_no_index/" SHARD1, &a);
    write_buf("index/two_files_no_index/" SHARD2, &b);
    base_model("index/two_files_no_index", CONFIG, TOKENIZER, false);
    expect("index/two_files_no_index", "convert", "but no model.safetensors.index.json");
    b_free(&a);
    b_free(&b);
    base_model("index/no_weights", CONFIG, TOKENIZER, false);
    expect("index/no_weights", "convert", "directory holds no .safetensors file");
}

/* ---- config.json ---------------------------------------------------------------------------------- */

static void gen_config(void) {
    static const struct {
        const char *name, *config, *expect;
    } cases[] = {
        {"not_json", "{\"architectures\": [\"LlamaForCausalLM\"", "config.json: not valid JSON"},
        {"top_array", "[\"LlamaForCausalLM\"]", "config.json: top level is not a JSON object (it is an array)"},
        {"empty_file", "", "config.json: not valid JSON"},
        {"architectures_missing", "{" CFG_SIZES CFG_REST, "'architectures' must be a non-empty array of strings"},
        {"architectures_empty", "{\"architectures\":[]," CFG_SIZES CFG_REST, "'architectures' must be a non-empty array"},
        {"architectures_number", "{\"architectures\":[7]," CFG_SIZES CFG_REST, "'architectures' must be"},
        {"architecture_unsupported", "{\"architectures\":[\"GPTNeoXForCausalLM\"]," CFG_SIZES CFG_REST,
         "architecture 'GPTNeoXForCausalLM' is not supported"},
        {"architecture_with_newline", "{\"architectures\":[\"Llama\\nForCausalLM\"]," CFG_SIZES CFG_REST,
         "architecture 'Llama?ForCausalLM' is not supported"},
        {"hidden_size_missing", CFG_HEAD "\"intermediate_size\":8,\"num_hidden_layers\":1,\"num_attention_heads\":2,"
         CFG_REST, "required key 'hidden_size' is missing"},
        {"hidden_size_zero", CFG_HEAD "\"hidden_size\":0,\"intermediate_size\":8,\"num_hidden_layers\":1,"
         "\"num_attention_heads\":2," CFG_REST, "key 'hidden_size' must be a positive integer below 2^32"},
        {"hidden_size_fraction", CFG_HEAD "\"hidden_size\":4.5,\"intermediate_size\":8,\"num_hidden_layers\":1,"
         "\"num_attention_heads\":2," CFG_REST, "key 'hidden_size' must be a positive integer"},
        {"hidden_size_string", CFG_HEAD "\"hidden_size\":\"4\",\"intermediate_size\":8,\"num_hidden_layers\":1,"
         "\"num_attention_heads\":2," CFG_REST, "key 'hidden_size' must be a positive integer"},
        {"hidden_size_2pow32", CFG_HEAD "\"hidden_size\":4294967296,\"intermediate_size\":8,\"num_hidden_layers\":1,"
         "\"num_attention_heads\":2," CFG_REST, "key 'hidden_size' must be a positive integer below 2^32"},
        {"layers_negative", CFG_HEAD "\"hidden_size\":4,\"intermediate_size\":8,\"num_hidden_layers\":-1,"
         "\"num_attention_heads\":2," CFG_REST, "key 'num_hidden_layers' must be a positive integer"},
        {"layers_huge", CFG_HEAD "\"hidden_size\":4,\"intermediate_size\":8,\"num_hidden_layers\":4000000000,"
         "\"num_attention_heads\":2," CFG_REST, "out of range"},
        {"vocab_size_missing", CFG_HEAD CFG_SIZES "\"num_key_value_heads\":2}", "required key 'vocab_size' is missing"},
        {"kv_heads_not_divisor", CFG_HEAD CFG_SIZES "\"num_key_value_heads\":3,\"vocab_size\":8}",
         "num_attention_heads 2 is not a multiple of num_key_value_heads 3"},
        {"head_dim_odd", CFG_HEAD CFG_SIZES "\"head_dim\":3,\"vocab_size\":8}", "head_dim 3 must be even"},
        {"rms_eps_string", CFG_HEAD CFG_SIZES "\"vocab_size\":8,\"rms_norm_eps\":\"1e-5\"}",
         "key 'rms_norm_eps' must be a finite number"},
        {"rope_theta_huge", CFG_HEAD CFG_SIZES "\"vocab_size\":8,\"rope_theta\":1e999}",
         "key 'rope_theta' must be a finite number"},
        {"tie_embeddings_string", CFG_HEAD CFG_SIZES "\"vocab_size\":8,\"tie_word_embeddings\":\"yes\"}",
         "'tie_word_embeddings' must be true or false"},
        /* Python's json keeps the last of two equal keys, cJSON the first: refused, whichever it is */
        {"duplicate_key", CFG_HEAD CFG_SIZES "\"vocab_size\":8,\"rope_theta\":10000,\"rope_theta\":500000}",
         "config.json: key 'rope_theta' is defined twice (at the top level)"},
        {"duplicate_nested_key", CFG_HEAD CFG_SIZES
         "\"vocab_size\":8,\"rope_scaling\":{\"rope_type\":\"linear\",\"factor\":2,\"factor\":8}}",
         "key 'factor' is defined twice (in 'rope_scaling')"},
        {"bom", "\xef\xbb\xbf" CFG_HEAD CFG_SIZES "\"vocab_size\":8}", "config.json: starts with a UTF-8 byte-order mark"},
        {"vocab_size_2pow32", CFG_HEAD CFG_SIZES "\"vocab_size\":4294967295}", "vocab_size 4294967295"},
        {"rope_scaling_array", CFG_HEAD CFG_SIZES "\"vocab_size\":8,\"rope_scaling\":[1]}",
         "'rope_scaling' must be an object or null"},
        {"rope_scaling_no_type", CFG_HEAD CFG_SIZES "\"vocab_size\":8,\"rope_scaling\":{\"factor\":2}}",
         "'rope_scaling' has no string 'rope_type'"},
        {"rope_scaling_dynamic", CFG_HEAD CFG_SIZES "\"vocab_size\":8,\"rope_scaling\":{\"type\":\"dynamic\",\"factor\":2}}",
         "rope_scaling type 'dynamic' is not supported"},
        {"rope_linear_no_factor", CFG_HEAD CFG_SIZES "\"vocab_size\":8,\"rope_scaling\":{\"rope_type\":\"linear\"}}",
         "rope_scaling 'linear' needs a positive 'factor'"},
        {"rope_yarn_no_original", CFG_HEAD CFG_SIZES
         "\"vocab_size\":8,\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4}}",
         "required key 'original_max_position_embeddings' is missing"},
        {"fp8_block_one_entry", CFG_HEAD CFG_SIZES "\"vocab_size\":8,\"quantization_config\":{\"weight_block_size\":[128]}}",
         "quantization_config.weight_block_size must be [rows, cols]"},
        {"fp8_block_zero", CFG_HEAD CFG_SIZES "\"vocab_size\":8,\"quantization_config\":{\"weight_block_size\":[128,0]}}",
         "weight_block_size[1] must be an integer in 1..65536"},
    };
    for (size_t i = 0; i < QF_ARRAY_LEN(cases); i++) {
        char dir[256];
        snprintf(dir, sizeof dir, "config/%s", cases[i].name);
        base_model(dir, cases[i].config, TOKENIZER, true);
        expect(dir, "convert", cases[i].expect);
    }
    base_model("config/missing", NULL, TOKENIZER, true);
    expect("config/missing", "convert", "no config.json beside the weights");
}

/* ---- tokenizer.json, tokenizer_config.json, tokenizer.model ------------------------------------------- */

#define TOK_WITH_MODEL(model) "{\"version\":\"1.0\"," TOK_PRE "\"model\":" model "}"
#define BPE(vocab, merges) TOK_WITH_MODEL("{\"type\":\"BPE\",\"vocab\":" vocab ",\"merges\":" merges "}")

static void gen_tokenizer_json(void) {
    static const struct {
        const char *name, *tokenizer, *expect;
    } cases[] = {
        {"not_json", "{\"model\": {\"type\": \"BPE\",", "tokenizer.json: not valid JSON"},
        {"top_array", "[{\"model\":{}}]", "tokenizer.json: top level is not a JSON object"},
        {"vocab_duplicate_key", BPE("{\"a\":0,\"b\":1,\"a\":2}", "[]"),
         "tokenizer.json: key 'a' is defined twice (in 'model.vocab')"},
        {"vocab_missing", TOK_WITH_MODEL("{\"type\":\"BPE\"}"), "model.vocab is missing or not an object"},
        {"vocab_array", BPE("[\"a\",\"b\"]", "[]"), "model.vocab is missing or not an object"},
        {"id_negative", BPE("{\"<unk>\":0,\"a\":-1}", "[]"), "model.vocab['a'] is not an id"},
        {"id_fraction", BPE("{\"<unk>\":0,\"a\":1.5}", "[]"), "model.vocab['a'] is not an id"},
        {"id_string", BPE("{\"<unk>\":0,\"a\":\"1\"}", "[]"), "model.vocab['a'] is not an id"},
        {"id_huge", BPE("{\"<unk>\":0,\"a\":99999999999}", "[]"), "model.vocab['a'] is not an id"},
        {"id_duplicate", BPE("{\"<unk>\":0,\"a\":1,\"b\":1,\"c\":2,\"d\":3,\"e\":4,\"f\":5,\"g\":6,\"h\":7}", "[]"),
         "duplicate id 1"},
        {"token_with_newline", BPE("{\"<unk>\":0,\"a\\nb\":1,\"b\":1}", "[]"), "duplicate id 1"},
        {"id_beyond_vocab_size", BPE("{\"<unk>\":0,\"a\":1,\"b\":9}", "[]"), "vocab_size 8"},
        {"added_two_ids", "{\"version\":\"1.0\",\"added_tokens\":[{\"id\":7,\"content\":\"a\",\"special\":true}],"
         TOK_PRE "\"model\":{\"type\":\"BPE\",\"vocab\":" TOK_VOCAB ",\"merges\":" TOK_MERGES "}}",
         "appears with ids"},
        {"added_no_content", "{\"version\":\"1.0\",\"added_tokens\":[{\"id\":1}]," TOK_PRE
         "\"model\":{\"type\":\"BPE\",\"vocab\":" TOK_VOCAB ",\"merges\":" TOK_MERGES "}}",
         "added_tokens[0] lacks string content"},
        {"added_not_array", "{\"version\":\"1.0\",\"added_tokens\":{}," TOK_PRE
         "\"model\":{\"type\":\"BPE\",\"vocab\":" TOK_VOCAB ",\"merges\":" TOK_MERGES "}}",
         "added_tokens is not an array"},
        {"merges_numbers", BPE(TOK_VOCAB, "[1,2]"), "merges"},
        {"merges_mixed", BPE(TOK_VOCAB, "[\"a b\",[\"a\"]]"), "model.merges[1]"},
        {"model_wordpiece", TOK_WITH_MODEL("{\"type\":\"WordPiece\",\"vocab\":" TOK_VOCAB "}"), "WordPiece"},
        {"model_unigram", TOK_WITH_MODEL("{\"type\":\"Unigram\",\"vocab\":[[\"a\",-1.0]]}"), "Unigram"},
    };
    for (size_t i = 0; i < QF_ARRAY_LEN(cases); i++) {
        char dir[256];
        snprintf(dir, sizeof dir, "tokenizer/%s", cases[i].name);
        base_model(dir, CONFIG, cases[i].tokenizer, true);
        expect(dir, "convert", cases[i].expect);
    }
    base_model("tokenizer/missing", CONFIG, NULL, true);
    expect("tokenizer/missing", "convert", "neither tokenizer.model nor tokenizer.json exists");

    static const struct {
        const char *name, *config, *expect;
    } tc_cases[] = {
        {"config_not_json", "{\"bos_token\":", "tokenizer_config.json: not valid JSON"},
        {"config_top_array", "[1,2]", "tokenizer_config.json: top level is not a JSON object"},
    };
    for (size_t i = 0; i < QF_ARRAY_LEN(tc_cases); i++) {
        char dir[256], rel[300];
        snprintf(dir, sizeof dir, "tokenizer/%s", tc_cases[i].name);
        base_model(dir, CONFIG, TOKENIZER, true);
        snprintf(rel, sizeof rel, "%s/tokenizer_config.json", dir);
        write_text(rel, tc_cases[i].config);
        expect(dir, "convert", tc_cases[i].expect);
    }
}

/* Protobuf pieces of a SentencePiece ModelProto (field numbers in formats/vocab.c). */
static void pb_varint(buf *b, uint64_t v) {
    do {
        uint8_t byte = v & 0x7f;
        v >>= 7;
        b_u8(b, byte | (v ? 0x80 : 0));
    } while (v);
}
static void pb_bytes(buf *b, uint32_t field, const void *p, size_t n) {
    pb_varint(b, (uint64_t)field << 3 | 2);
    pb_varint(b, n);
    b_put(b, p, n);
}
static void pb_piece(buf *b, const char *text, float score, int type) {
    buf m = {0};
    pb_bytes(&m, 1, text, strlen(text));
    pb_varint(&m, 2 << 3 | 5);
    uint32_t bits;
    memcpy(&bits, &score, 4);
    b_u32(&m, bits);
    if (type != 1) { pb_varint(&m, 3 << 3); pb_varint(&m, (uint64_t)type); }
    pb_bytes(b, 1, m.p, m.n);
    b_free(&m);
}

/* Eight pieces, as the base model's vocabulary: <unk> <s> </s> ▁a b ab ▁ ▁ab, byte_fallback off. */
static buf spm_model(void) {
    buf b = {0};
    pb_piece(&b, "<unk>", 0, 2);
    pb_piece(&b, "<s>", 0, 3);
    pb_piece(&b, "</s>", 0, 3);
    pb_piece(&b, "\xe2\x96\x81" "a", -1, 1);
    pb_piece(&b, "b", -2, 1);
    pb_piece(&b, "ab", -3, 1);
    pb_piece(&b, "\xe2\x96\x81", -4, 1);
    pb_piece(&b, "\xe2\x96\x81" "ab", -5, 1);
    buf t = {0};
    pb_varint(&t, 3 << 3); pb_varint(&t, 1); /* model_type UNIGRAM */
    pb_bytes(&b, 2, t.p, t.n);
    b_free(&t);
    return b;
}

static void gen_spm(void) {
    struct {
        const char *name, *expect;
        buf model;
    } cases[] = {
        {"text_file", "tokenizer.model", b_text("this is not a protobuf\n")},
        {"empty_file", "tokenizer.model", {0}},
        {"cut_in_piece", "runs past the end", {0}},
        {"duplicate_piece", "duplicates piece 1", {0}},
        {"byte_piece_without_fallback", "byte_fallback", {0}},
        {"no_unknown_piece", "pieces of type UNKNOWN, expected exactly 1", {0}},
        {"two_unknown_pieces", "2 pieces of type UNKNOWN", {0}},
        {"empty_piece", "piece 1 is empty", {0}},
        {"nul_in_piece", "contains a NUL byte", {0}},
        {"group_wire_type", "unsupported wire type (group)", {0}},
        {"varint_11_bytes", "truncated field key", {0}},
        {"field_number_zero", "invalid field number", {0}},
        {"score_wrong_wire_type", "field 2 has wire type 0, expected 5", {0}},
        {"trainer_id_out_of_range", "special id out of int32 range", {0}},
        {"more_pieces_than_vocab_size", "vocab", {0}},
    };
    buf good = spm_model();
    for (size_t i = 0; i < QF_ARRAY_LEN(cases); i++) {
        buf *m = &cases[i].model;
        const char *n = cases[i].name;
        if (!strcmp(n, "cut_in_piece")) b_put(m, good.p, 6);
        else if (!strcmp(n, "duplicate_piece")) {
            pb_piece(m, "<unk>", 0, 2); pb_piece(m, "a", 0, 1); pb_piece(m, "a", 0, 1);
        } else if (!strcmp(n, "byte_piece_without_fallback")) {
            pb_piece(m, "<unk>", 0, 2); pb_piece(m, "<0x00>", 0, 6);
        } else if (!strcmp(n, "no_unknown_piece")) {
            pb_piece(m, "a", 0, 1);
        } else if (!strcmp(n, "two_unknown_pieces")) {
            pb_piece(m, "<unk>", 0, 2); pb_piece(m, "<unk2>", 0, 2);
        } else if (!strcmp(n, "empty_piece")) {
            pb_piece(m, "<unk>", 0, 2); pb_piece(m, "", 0, 1);
        } else if (!strcmp(n, "nul_in_piece")) {
            pb_piece(m, "<unk>", 0, 2);
            buf p = {0};
            pb_bytes(&p, 1, "a\0b", 3);
            pb_bytes(m, 1, p.p, p.n);
            b_free(&p);
        } else if (!strcmp(n, "group_wire_type")) {
            b_put(m, good.p, good.n); pb_varint(m, 5 << 3 | 3);
        } else if (!strcmp(n, "varint_11_bytes")) {
            b_put(m, good.p, good.n);
            for (int k = 0; k < 10; k++) b_u8(m, 0xff);
            b_u8(m, 0x01);
        } else if (!strcmp(n, "field_number_zero")) {
            b_put(m, good.p, good.n); pb_varint(m, 0 << 3 | 0); pb_varint(m, 1);
        } else if (!strcmp(n, "score_wrong_wire_type")) {
            buf p = {0};
            pb_bytes(&p, 1, "<unk>", 5);
            pb_varint(&p, 2 << 3 | 0); pb_varint(&p, 7);
            pb_bytes(m, 1, p.p, p.n);
            b_free(&p);
        } else if (!strcmp(n, "trainer_id_out_of_range")) {
            b_put(m, good.p, good.n);
            buf t = {0};
            pb_varint(&t, 40 << 3); pb_varint(&t, 1ull << 40);
            pb_bytes(m, 2, t.p, t.n);
            b_free(&t);
        } else if (!strcmp(n, "more_pieces_than_vocab_size")) {
            b_put(m, good.p, good.n);
            pb_piece(m, "extra", -6, 1); /* 9 pieces, config.json says 8 */
        }
        char dir[256], rel[300];
        snprintf(dir, sizeof dir, "spm/%s", n);
        base_model(dir, CONFIG, NULL, true);
        snprintf(rel, sizeof rel, "%s/tokenizer.model", dir);
        write_buf(rel, m);
        b_free(m);
        expect(dir, "convert", cases[i].expect);
    }
    b_free(&good);
}

/* ---- checkpoints whose files parse but do not form a model ------------------------------------------ */

/* The base tensors with one edit: `drop` (a name) left out, `rename` changes a name, `swap` replaces
 * one tensor's spec, `extra` adds one. */
typedef struct model_edit {
    const char *drop;
    const char *rename_from, *rename_to;
    const tensor_spec *swap;
    const tensor_spec *extra, *extra2;
} model_edit;

static buf edited_weights(const model_edit *e) {
    tensor_spec t[QF_ARRAY_LEN(LLAMA) + 2];
    size_t n = 0;
    for (size_t i = 0; i < QF_ARRAY_LEN(LLAMA); i++) {
        if (e->drop && !strcmp(LLAMA[i].name, e->drop)) continue;
        t[n] = LLAMA[i];
        if (e->rename_from && !strcmp(t[n].name, e->rename_from)) t[n].name = e->rename_to;
        if (e->swap && !strcmp(t[n].name, e->swap->name)) t[n] = *e->swap;
        n++;
    }
    if (e->extra) t[n++] = *e->extra;
    if (e->extra2) t[n++] = *e->extra2;
    return st_model(t, n, 3);
}

static void gen_model(void) {
    static const tensor_spec embd_wide = {"model.embed_tokens.weight", "F32", 2, {8, 6}};
    static const tensor_spec q_1d = {"model.layers.0.self_attn.q_proj.weight", "F32", 1, {16, 0}};
    static const tensor_spec norm_i32 = {"model.norm.weight", "I32", 1, {4, 0}};
    static const tensor_spec unknown = {"model.layers.0.mlp.extra_proj.weight", "F32", 2, {4, 4}};
    static const tensor_spec fp8_up = {"model.layers.0.mlp.up_proj.weight", "F8_E4M3", 2, {8, 4}};
    static const tensor_spec scale_ok = {"model.layers.0.mlp.up_proj.weight_scale_inv", "F32", 2, {1, 1}};
    static const tensor_spec scale_shape = {"model.layers.0.mlp.up_proj.weight_scale_inv", "F32", 2, {2, 3}};
    static const tensor_spec scale_fp8 = {"model.layers.0.mlp.up_proj.weight_scale_inv", "F8_E4M3", 2, {1, 1}};
    static const tensor_spec scale_3 = {"model.layers.0.mlp.up_proj.weight_scale_inv", "F32", 1, {3, 0}};
    static const struct {
        const char *name, *expect;
        model_edit edit;
    } cases[] = {
        {"missing_embedding", "has no tensor for GGUF 'token_embd.weight'", {.drop = "model.embed_tokens.weight"}},
        {"missing_layer_tensor", "layer 0 has no tensor for GGUF 'blk.0.ffn_up.weight'",
         {.drop = "model.layers.0.mlp.up_proj.weight"}},
        {"embedding_wrong_shape", "tensor 'model.embed_tokens.weight' has shape [8, 6]; config.json implies [8, 4]",
         {.swap = &embd_wide}},
        {"projection_1d", "tensor 'model.layers.0.self_attn.q_proj.weight' has shape [16]", {.swap = &q_1d}},
        {"norm_integer_dtype", "tensor 'model.norm.weight' has dtype I32", {.swap = &norm_i32}},
        {"unknown_tensor", "model.layers.0.mlp.extra_proj.weight", {.extra = &unknown}},
        {"layer_beyond_config", "model.layers.7.mlp.up_proj.weight",
         {.rename_from = "model.layers.0.mlp.up_proj.weight", .rename_to = "model.layers.7.mlp.up_proj.weight"}},
        {"fp8_scale_wrong_shape", "scale tensor 'model.layers.0.mlp.up_proj.weight_scale_inv' has shape [2, 3]",
         {.swap = &fp8_up, .extra = &scale_shape}},
        {"fp8_scale_is_fp8", "has dtype F8_E4M3; expected F32, BF16 or F16", {.swap = &fp8_up, .extra = &scale_fp8}},
        {"fp8_scale_fits_nothing", "fits neither per-tensor, per-channel nor block scaling",
         {.swap = &fp8_up, .extra = &scale_3}},
    };
    for (size_t i = 0; i < QF_ARRAY_LEN(cases); i++) {
        char dir[256], rel[300];
        snprintf(dir, sizeof dir, "model/%s", cases[i].name);
        base_model(dir, CONFIG, TOKENIZER, false);
        buf w = edited_weights(&cases[i].edit);
        snprintf(rel, sizeof rel, "%s/model.safetensors", dir);
        write_buf(rel, &w);
        b_free(&w);
        expect(dir, "convert", cases[i].expect);
    }

    /* An FP8 weight whose block scale is infinite: found only when its rows are decoded. */
    model_edit e = {.swap = &fp8_up, .extra = &scale_ok};
    buf w = edited_weights(&e);
    /* the scale is the last 4 bytes of the file (added last); make it +inf */
    static const uint8_t inf[4] = {0, 0, 0x80, 0x7f};
    memcpy(w.p + w.n - 4, inf, 4);
    base_model("model/fp8_scale_infinite", CONFIG, TOKENIZER, false);
    write_buf("model/fp8_scale_infinite/model.safetensors", &w);
    b_free(&w);
    expect("model/fp8_scale_infinite", "convert", "holds a non-finite value at index 0");
}

/* ---- DeepSeek-V3 (MLA + MoE) checkpoints that do not form their model -------------------------------- */

/* One MoE layer: 2 heads (nope 2, rope 2, v 2), q/kv latent rank 4, 4 experts of width 4 top-2, one
 * shared expert; every tensor with the shape this config implies. */
#define DS_CONFIG(kv_lora) "{\"architectures\":[\"DeepseekV3ForCausalLM\"],\"model_type\":\"deepseek_v3\"," \
    "\"hidden_size\":4,\"intermediate_size\":8,\"num_hidden_layers\":1,\"num_attention_heads\":2," \
    "\"num_key_value_heads\":2,\"vocab_size\":8,\"q_lora_rank\":4,\"kv_lora_rank\":" kv_lora "," \
    "\"qk_nope_head_dim\":2,\"qk_rope_head_dim\":2,\"v_head_dim\":2,\"n_routed_experts\":4," \
    "\"num_experts_per_tok\":2,\"moe_intermediate_size\":4,\"n_shared_experts\":1,\"first_k_dense_replace\":0," \
    "\"n_group\":1,\"topk_group\":1,\"topk_method\":\"noaux_tc\",\"scoring_func\":\"sigmoid\"," \
    "\"norm_topk_prob\":true,\"routed_scaling_factor\":2.5,\"rms_norm_eps\":1e-06,\"tie_word_embeddings\":false}"

#define DS_EXPERT(e) \
    {"model.layers.0.mlp.experts." #e ".gate_proj.weight", "F32", 2, {4, 4}}, \
    {"model.layers.0.mlp.experts." #e ".up_proj.weight", "F32", 2, {4, 4}}, \
    {"model.layers.0.mlp.experts." #e ".down_proj.weight", "F32", 2, {4, 4}}

static const tensor_spec DEEPSEEK[] = {
    {"model.embed_tokens.weight", "F32", 2, {8, 4}},
    {"model.layers.0.input_layernorm.weight", "F32", 1, {4, 0}},
    {"model.layers.0.self_attn.q_a_proj.weight", "F32", 2, {4, 4}},
    {"model.layers.0.self_attn.q_a_layernorm.weight", "F32", 1, {4, 0}},
    {"model.layers.0.self_attn.q_b_proj.weight", "F32", 2, {8, 4}},
    {"model.layers.0.self_attn.kv_a_proj_with_mqa.weight", "F32", 2, {6, 4}},
    {"model.layers.0.self_attn.kv_a_layernorm.weight", "F32", 1, {4, 0}},
    {"model.layers.0.self_attn.kv_b_proj.weight", "F32", 2, {8, 4}},
    {"model.layers.0.self_attn.o_proj.weight", "F32", 2, {4, 4}},
    {"model.layers.0.post_attention_layernorm.weight", "F32", 1, {4, 0}},
    {"model.layers.0.mlp.gate.weight", "F32", 2, {4, 4}},
    {"model.layers.0.mlp.gate.e_score_correction_bias", "F32", 1, {4, 0}},
    DS_EXPERT(0), DS_EXPERT(1), DS_EXPERT(2), DS_EXPERT(3),
    {"model.layers.0.mlp.shared_experts.gate_proj.weight", "F32", 2, {4, 4}},
    {"model.layers.0.mlp.shared_experts.up_proj.weight", "F32", 2, {4, 4}},
    {"model.layers.0.mlp.shared_experts.down_proj.weight", "F32", 2, {4, 4}},
    {"model.norm.weight", "F32", 1, {4, 0}},
    {"lm_head.weight", "F32", 2, {8, 4}},
};

static buf deepseek_weights(const model_edit *e) {
    tensor_spec t[QF_ARRAY_LEN(DEEPSEEK) + 2];
    size_t n = 0;
    for (size_t i = 0; i < QF_ARRAY_LEN(DEEPSEEK); i++) {
        if (e->drop && !strcmp(DEEPSEEK[i].name, e->drop)) continue;
        t[n] = DEEPSEEK[i];
        if (e->rename_from && !strcmp(t[n].name, e->rename_from)) t[n].name = e->rename_to;
        if (e->swap && !strcmp(t[n].name, e->swap->name)) t[n] = *e->swap;
        n++;
    }
    if (e->extra) t[n++] = *e->extra;
    return st_model(t, n, 5);
}

static void gen_deepseek(void) {
    static const tensor_spec router_3 = {"model.layers.0.mlp.gate.weight", "F32", 2, {3, 4}};
    static const tensor_spec kv_b_wide = {"model.layers.0.self_attn.kv_b_proj.weight", "F32", 2, {8, 5}};
    static const tensor_spec dense_up = {"model.layers.0.mlp.up_proj.weight", "F32", 2, {8, 4}};
    static const tensor_spec expert_wide = {"model.layers.0.mlp.experts.1.down_proj.weight", "F32", 2, {4, 5}};
    static const struct {
        const char *name, *config, *expect;
        model_edit edit;
    } cases[] = {
        {"deepseek_missing_expert", DS_CONFIG("4"), "layer 0 has no expert 2 for GGUF 'blk.0.ffn_up_exps.weight'",
         {.drop = "model.layers.0.mlp.experts.2.up_proj.weight"}},
        {"deepseek_expert_out_of_range", DS_CONFIG("4"), "names expert 4, but the config has 4 experts",
         {.rename_from = "model.layers.0.mlp.experts.3.gate_proj.weight",
          .rename_to = "model.layers.0.mlp.experts.4.gate_proj.weight"}},
        {"deepseek_router_wrong_shape", DS_CONFIG("4"),
         "tensor 'model.layers.0.mlp.gate.weight' has shape [3, 4]; config.json implies [4, 4]", {.swap = &router_3}},
        {"deepseek_kv_b_wrong_shape", DS_CONFIG("4"),
         "tensor 'model.layers.0.self_attn.kv_b_proj.weight' has shape [8, 5]; config.json implies [8, 4]",
         {.swap = &kv_b_wide}},
        {"deepseek_config_disagrees", DS_CONFIG("6"),
         "tensor 'model.layers.0.self_attn.kv_a_proj_with_mqa.weight' has shape [6, 4]; config.json implies [8, 4]", {0}},
        {"deepseek_dense_in_moe_layer", DS_CONFIG("4"), "layer 0 is a mixture-of-experts layer", {.extra = &dense_up}},
        {"deepseek_expert_wrong_shape", DS_CONFIG("4"),
         "tensor 'model.layers.0.mlp.experts.1.down_proj.weight' (an expert) has shape [4, 5]; config.json implies [4, 4]",
         {.swap = &expert_wide}},
    };
    for (size_t i = 0; i < QF_ARRAY_LEN(cases); i++) {
        char dir[256], rel[300];
        snprintf(dir, sizeof dir, "model/%s", cases[i].name);
        base_model(dir, cases[i].config, TOKENIZER, false);
        buf w = deepseek_weights(&cases[i].edit);
        snprintf(rel, sizeof rel, "%s/model.safetensors", dir);
        write_buf(rel, &w);
        b_free(&w);
        expect(dir, "convert", cases[i].expect);
    }
}

/* ---- archives ------------------------------------------------------------------------------------- */

typedef enum { AK_TAR, AK_TGZ, AK_TZST, AK_ZIP } arch_kind;

typedef struct member {
    const char *path;
    buf data;
    char type; /* 'f' file, 'd' directory, 'l' symlink, 'h' hard link */
    const char *link;
} member;

/* Written with fixed times, owners and modes, and without tar's 10 KiB record padding. */
static buf archive_bytes(arch_kind kind, const member *m, size_t n) {
    struct archive *a = archive_write_new();
    if (kind == AK_ZIP) archive_write_set_format_zip(a);
    else archive_write_set_format_pax_restricted(a);
    if (kind == AK_TGZ) {
        archive_write_add_filter_gzip(a);
        archive_write_set_options(a, "gzip:!timestamp"); /* else the gzip header holds the current time */
    }
    if (kind == AK_TZST) archive_write_add_filter_zstd(a);
    archive_write_set_bytes_in_last_block(a, 1);
    size_t cap = 1 << 20, used = 0;
    uint8_t *mem = malloc(cap);
    if (!mem || archive_write_open_memory(a, mem, cap, &used) != ARCHIVE_OK) die("archive: %s", archive_error_string(a));
    for (size_t i = 0; i < n; i++) {
        struct archive_entry *e = archive_entry_new();
        archive_entry_set_pathname(e, m[i].path);
        archive_entry_set_mtime(e, 1700000000, 0);
        archive_entry_set_uid(e, 0);
        archive_entry_set_gid(e, 0);
        archive_entry_set_perm(e, m[i].type == 'd' ? 0755 : 0644);
        if (m[i].type == 'd') archive_entry_set_filetype(e, AE_IFDIR);
        else if (m[i].type == 'l') { archive_entry_set_filetype(e, AE_IFLNK); archive_entry_set_symlink(e, m[i].link); }
        else if (m[i].type == 'h') {
            archive_entry_set_filetype(e, AE_IFREG);
            archive_entry_set_hardlink(e, m[i].link);
            archive_entry_set_size(e, 0);
        } else { archive_entry_set_filetype(e, AE_IFREG); archive_entry_set_size(e, (la_int64_t)m[i].data.n); }
        if (archive_write_header(a, e) != ARCHIVE_OK) die("archive header %s: %s", m[i].path, archive_error_string(a));
        if (m[i].type == 'f' && m[i].data.n &&
            archive_write_data(a, m[i].data.p, m[i].data.n) != (la_ssize_t)m[i].data.n)
            die("archive data %s: %s", m[i].path, archive_error_string(a));
        archive_entry_free(e);
    }
    if (archive_write_close(a) != ARCHIVE_OK) die("archive close: %s", archive_error_string(a));
    archive_write_free(a);
    buf out = {0};
    b_put(&out, mem, used);
    free(mem);
    return out;
}

/* The base model's members under `top` ("m/" or ""), with optional replacements. */
typedef struct model_members {
    member m[12];
    size_t n;
    buf owned[8];
    size_t n_owned;
} model_members;

static buf *mm_keep(model_members *mm, buf b) { mm->owned[mm->n_owned] = b; return &mm->owned[mm->n_owned++]; }

static void mm_add(model_members *mm, const char *path, buf data, char type, const char *link) {
    mm->m[mm->n++] = (member){path, data, type, link};
}

static void mm_base(model_members *mm, const char *config, bool sharded) {
    memset(mm, 0, sizeof *mm);
    mm_add(mm, "m/", (buf){0}, 'd', NULL);
    mm_add(mm, "m/config.json", *mm_keep(mm, b_text(config)), 'f', NULL);
    mm_add(mm, "m/tokenizer.json", *mm_keep(mm, b_text(TOKENIZER)), 'f', NULL);
    if (!sharded) {
        mm_add(mm, "m/model.safetensors", *mm_keep(mm, llama_weights()), 'f', NULL);
        return;
    }
    buf ix = {0};
    b_printf(&ix, "{\"weight_map\":{");
    for (size_t i = 0; i < QF_ARRAY_LEN(LLAMA); i++)
        b_printf(&ix, "%s\"%s\":\"%s\"", i ? "," : "", LLAMA[i].name, i < N_FIRST ? SHARD1 : SHARD2);
    b_printf(&ix, "}}");
    mm_add(mm, "m/model.safetensors.index.json", *mm_keep(mm, ix), 'f', NULL);
    mm_add(mm, "m/" SHARD1, *mm_keep(mm, st_model(LLAMA, N_FIRST, 1)), 'f', NULL);
    mm_add(mm, "m/" SHARD2, *mm_keep(mm, st_model(LLAMA + N_FIRST, QF_ARRAY_LEN(LLAMA) - N_FIRST, 7)), 'f', NULL);
}

static void mm_free(model_members *mm) {
    for (size_t i = 0; i < mm->n_owned; i++) b_free(&mm->owned[i]);
}

static const char *const KIND_EXT[] = {"tar", "tar.gz", "tar.zst", "zip"};

static void write_archive(const char *name, arch_kind kind, const model_members *mm, const char *cmd, const char *expect_text) {
    char rel[256];
    snprintf(rel, sizeof rel, "archive/%s.%s", name, KIND_EXT[kind]);
    buf a = archive_bytes(kind, mm->m, mm->n);
    write_buf(rel, &a);
    b_free(&a);
    expect(rel, cmd, expect_text);
}

static void gen_archive(void) {
    model_members mm;
    mm_base(&mm, CONFIG, false);
    mm_add(&mm, "m/../../etc/x.json", *mm_keep(&mm, b_text("{}")), 'f', NULL);
    write_archive("dotdot", AK_TAR, &mm, "convert", "'..' path component");
    mm_free(&mm);

    memset(&mm, 0, sizeof mm);
    mm_add(&mm, "/abs/config.json", *mm_keep(&mm, b_text(CONFIG)), 'f', NULL);
    write_archive("absolute_path", AK_TAR, &mm, "convert", "absolute path");
    mm_free(&mm);

    mm_base(&mm, CONFIG, false);
    mm_add(&mm, "other/config.json", *mm_keep(&mm, b_text(CONFIG)), 'f', NULL);
    write_archive("two_model_dirs", AK_TGZ, &mm, "convert", "several model directories");
    mm_free(&mm);

    mm_base(&mm, CONFIG, false);
    mm.m[1] = (member){"m/notes.txt", *mm_keep(&mm, b_text("notes\n")), 'f', NULL};
    write_archive("no_config", AK_ZIP, &mm, "convert", "no config.json");
    mm_free(&mm);

    mm_base(&mm, CONFIG, false);
    mm.m[3].data = *mm_keep(&mm, st_image("{\"x\": {\"dtype\": \"F32\", \"shape\": [1]", NULL, 0));
    write_archive("shard_header_unterminated", AK_TZST, &mm, "convert", "not valid JSON");
    mm_free(&mm);

    mm_base(&mm, CONFIG, false);
    mm.m[3].data.p[5] = 0x7f; /* the u64 header length becomes ~2^47 */
    write_archive("shard_header_length_huge", AK_TAR, &mm, "inspect", "header length");
    mm_free(&mm);

    mm_base(&mm, CONFIG, false);
    mm.m[3].data = *mm_keep(&mm, b_text("abc"));
    write_archive("shard_three_bytes", AK_TAR, &mm, "convert", "fewer than the 8-byte");
    mm_free(&mm);

    mm_base(&mm, CONFIG, false);
    mm.m[3] = (member){"m/model.safetensors", {0}, 'l', "/home/user/.cache/huggingface/blobs/abc"};
    write_archive("shard_symlink", AK_TAR, &mm, "convert", "stored as a link");
    mm_free(&mm);

    mm_base(&mm, CONFIG, false);
    mm.m[3] = (member){"m/real.bin", *mm_keep(&mm, b_text("x")), 'f', NULL};
    mm_add(&mm, "m/model.safetensors", (buf){0}, 'h', "m/real.bin");
    write_archive("shard_hardlink", AK_TAR, &mm, "convert", "stored as a link");
    mm_free(&mm);

    mm_base(&mm, CONFIG, false);
    mm_add(&mm, "m/model.safetensors", mm.m[3].data, 'f', NULL);
    write_archive("member_twice", AK_TAR, &mm, "convert", "appears twice");
    mm_free(&mm);

    mm_base(&mm, CONFIG, true);
    mm.n--; /* the second shard */
    write_archive("index_shard_missing", AK_ZIP, &mm, "convert", SHARD2);
    mm_free(&mm);

    mm_base(&mm, CONFIG, false);
    mm.n--;
    write_archive("no_weights", AK_TAR, &mm, "convert", "no *.safetensors");
    mm_free(&mm);

    mm_base(&mm, CONFIG, false);
    mm_add(&mm, "m/extra.safetensors", mm.m[3].data, 'f', NULL);
    mm.m[3].path = "m/weights.safetensors";
    write_archive("two_shards_no_index", AK_TAR, &mm, "convert", "no model.safetensors.index.json");
    mm_free(&mm);

    mm_base(&mm, CONFIG, true);
    char *hit = strstr((char *)mm.m[3].data.p, "lm_head.weight");
    if (hit) hit[0] = 'x';
    write_archive("index_names_absent_tensor", AK_TAR, &mm, "convert", "no such tensor");
    mm_free(&mm);

    mm_base(&mm, "{\"architectures\": ", false);
    write_archive("config_not_json", AK_TGZ, &mm, "convert", "config.json");
    mm_free(&mm);

    /* Byte-level damage: a cut tar, a cut gzip stream, a zip without its central directory. */
    mm_base(&mm, CONFIG, false);
    buf whole = archive_bytes(AK_TAR, mm.m, mm.n);
    whole.n = 512 * 4 + 700; /* inside model.safetensors' data (4th member) */
    write_buf("archive/cut_in_weights.tar", &whole);
    expect("archive/cut_in_weights.tar", "convert", "cut_in_weights.tar");
    b_free(&whole);
    whole = archive_bytes(AK_TGZ, mm.m, mm.n);
    whole.n = whole.n * 2 / 3;
    write_buf("archive/cut_gzip.tar.gz", &whole);
    expect("archive/cut_gzip.tar.gz", "convert", "cut_gzip.tar.gz");
    b_free(&whole);
    whole = archive_bytes(AK_ZIP, mm.m, mm.n);
    for (size_t i = 0; i + 4 <= whole.n; i++)
        if (!memcmp(whole.p + i, "PK\x01\x02", 4)) { whole.n = i; break; }
    write_buf("archive/zip_without_directory.zip", &whole);
    expect("archive/zip_without_directory.zip", "convert", "zip_without_directory.zip");
    b_free(&whole);
    mm_free(&mm);

    static const uint8_t garbage[] = "\x1f\x8b\x08\x00garbage that is not deflate";
    write_rel("archive/gzip_garbage.tar.gz", garbage, sizeof garbage - 1);
    expect("archive/gzip_garbage.tar.gz", "convert", "gzip_garbage.tar.gz");
}

/* ---- saved base logits (verify --base-logits) ------------------------------------------------------ */

/* A small valid file: k = 2 of a vocabulary of 8, one chunk of 8 (3 scored positions), label "base",
 * and (version 2) the routes of MoE layers 1 and 2, 2 of 4 experts per token; built field by field
 * (formats/baselogits.h); `edit` changes one thing before the digest is sealed. */
typedef enum bl_edit {
    BL_VALID, BL_K_ZERO, BL_K_OVER_VOCAB, BL_FIRST, BL_FLAGS, BL_SCORED, BL_LABEL_NUL, BL_ID_RANGE, BL_ID_REPEAT,
    BL_LOGP_POSITIVE, BL_LOGP_NAN, BL_LOGP_RISING, BL_NLL_NEGATIVE, BL_TAIL_OVER_ONE, BL_MASS, BL_ROUTE_K,
    BL_ROUTE_ORDER, BL_EXPERT_RANGE, BL_EXPERT_REPEAT,
} bl_edit;

static void b_f32(buf *b, float f) { uint32_t u; memcpy(&u, &f, sizeof u); b_u32(b, u); }

static buf bl_file(bl_edit e, uint32_t flags, uint32_t version) {
    buf b = {0};
    b_put(&b, "QFBLOGIT", 8);
    b_u32(&b, version);
    b_u32(&b, e == BL_K_ZERO ? 0 : e == BL_K_OVER_VOCAB ? 9 : 2); /* k */
    b_u32(&b, 8);                                                 /* n_vocab */
    b_u32(&b, 8);                                                 /* ctx */
    b_u32(&b, 1);                                                 /* n_chunks */
    b_u32(&b, e == BL_FIRST ? 3 : 4);                             /* first */
    b_u32(&b, e == BL_FLAGS ? 0x80 : flags);
    b_u64(&b, 9);                                                 /* n_tokens */
    b_u64(&b, e == BL_SCORED ? 4 : 3);                            /* n_scored */
    for (int d = 0; d < 4; d++) for (int i = 0; i < 32; i++) b_u8(&b, (uint8_t)(d * 32 + i));
    uint32_t routes = version > 1 ? 2 : 0, rk = e == BL_ROUTE_K ? 5 : 2;
    if (version > 1) { b_u32(&b, routes); b_u32(&b, rk); b_u32(&b, 4); }
    b_u32(&b, 4);
    b_put(&b, e == BL_LABEL_NUL ? "ba\0e" : "base", 4);
    for (uint32_t l = 0; l < routes; l++) b_u32(&b, e == BL_ROUTE_ORDER ? 2 - l : 1 + l);
    uint32_t k = e == BL_K_ZERO ? 0 : e == BL_K_OVER_VOCAB ? 9 : 2;
    for (uint32_t r = 0; r < (e == BL_SCORED ? 4u : 3u); r++) {
        b_f32(&b, e == BL_NLL_NEGATIVE && r == 1 ? -0.5f : 1.25f);
        b_f32(&b, e == BL_TAIL_OVER_ONE && r == 2 ? 1.5f : 0.25f);
        for (uint32_t j = 0; j < k; j++) b_u32(&b, e == BL_ID_RANGE && j == 1 ? 8 : e == BL_ID_REPEAT ? r : r + j);
        for (uint32_t j = 0; j < k; j++) {
            float lp = j == 0 ? logf(0.5f) : logf(0.25f);
            if (e == BL_LOGP_POSITIVE && j == 0) lp = 0.5f;
            if (e == BL_LOGP_NAN && j == 1) lp = NAN;
            if (e == BL_LOGP_RISING) lp = j == 0 ? logf(0.25f) : logf(0.5f);
            if (e == BL_MASS) lp = logf(0.1f);
            b_f32(&b, lp);
        }
        for (uint32_t j = 0; j < routes * rk; j++) {
            uint16_t x = (uint16_t)((r + j) % 4);
            if (e == BL_EXPERT_RANGE && r == 2 && j == 3) x = 4;
            if (e == BL_EXPERT_REPEAT && r == 1 && j == 1) x = (uint16_t)r;
            b_u8(&b, (uint8_t)x);
            b_u8(&b, 0);
        }
    }
    uint8_t d[32];
    unsigned dl = 0;
    EVP_Digest(b.p, b.n, d, &dl, EVP_sha256(), NULL);
    b_put(&b, d, sizeof d);
    return b;
}

static buf bl_edited(bl_edit e) { return bl_file(e, 4, 2); }

/* The expectations of tests/verify_base.sh: file, then a substring of verify --base-logits FILE's error. */
static buf bl_expect;

static void bl_case(const char *name, buf b, const char *substr) {
    char rel[256];
    snprintf(rel, sizeof rel, "baselogits/%s.qfbl", name);
    write_buf(rel, &b);
    b_free(&b);
    b_printf(&bl_expect, "%s\t%s\n", rel, substr);
    n_cases++;
}

static void gen_baselogits(void) {
    b_printf(&bl_expect, "# Generated by tests/corpus/make_corpus.c; regenerate, do not edit.\n"
                         "# file (relative to tests/corpus)\tsubstring of verify --base-logits FILE's one-line error\n");
    static const struct { bl_edit e; const char *name, *want; } edits[] = {
        {BL_K_ZERO, "k_zero", "does not fit a vocabulary"},
        {BL_K_OVER_VOCAB, "k_over_vocab", "does not fit a vocabulary"},
        {BL_FIRST, "first_not_half", "not a verify run"},
        {BL_FLAGS, "unknown_flags", "unknown flags 0x80"},
        {BL_SCORED, "scored_mismatch", "do not fit 1 chunks of 8"},
        {BL_LABEL_NUL, "label_nul", "label holds a NUL byte"},
        {BL_ID_RANGE, "id_outside_vocab", "token id 8 is outside the vocabulary"},
        {BL_ID_REPEAT, "id_repeated", "is repeated"},
        {BL_LOGP_POSITIVE, "logp_positive", "non-increasing"},
        {BL_LOGP_NAN, "logp_nan", "not finite"},
        {BL_LOGP_RISING, "logp_rising", "non-increasing"},
        {BL_NLL_NEGATIVE, "nll_negative", "out of range"},
        {BL_TAIL_OVER_ONE, "tail_over_one", "out of range"},
        {BL_MASS, "mass_not_one", "probabilities sum to"},
        {BL_ROUTE_K, "route_k_over_experts", "not a mixture-of-experts layout"},
        {BL_ROUTE_ORDER, "route_layers_descending", "not ascending (1 after 2)"},
        {BL_EXPERT_RANGE, "expert_outside", "layer 2's expert 4 is outside the layer's experts"},
        {BL_EXPERT_REPEAT, "expert_repeated", "layer 1's expert 1 is repeated"},
    };
    for (size_t i = 0; i < QF_ARRAY_LEN(edits); i++) bl_case(edits[i].name, bl_edited(edits[i].e), edits[i].want);
    bl_case("empty", (buf){0}, "not a qforge base-logits file");
    bl_case("gguf_magic", b_text("GGUF\3\0\0\0 and then some bytes"), "not a qforge base-logits file");
    buf b = bl_edited(BL_VALID);
    b.p[8] = 3;
    bl_case("version_3", b, "base-logits version 3");
    b = bl_edited(BL_VALID);
    b.n = 100;
    bl_case("short_header", b, "shorter than a base-logits header");
    b = bl_edited(BL_VALID);
    b.n -= 1;
    bl_case("truncated", b, "implies another size");
    b = bl_edited(BL_VALID);
    b_put(&b, "x", 1);
    bl_case("trailing_byte", b, "implies another size");
    b = bl_edited(BL_VALID);
    b.p[192] = 0xff, b.p[193] = 0xff, b.p[194] = 0xff, b.p[195] = 0x7f;
    bl_case("label_huge", b, "implies another size");
    b = bl_edited(BL_VALID);
    b.p[b.n - 40] ^= 1;
    bl_case("digest_mismatch", b, "SHA-256 does not match");
    write_buf("BASELOGITS.tsv", &bl_expect);
    b_free(&bl_expect);
}

/* ---- seeds: valid inputs for the fuzz targets --------------------------------------------------- */

static void seed(const char *target, const char *name, const void *p, size_t n) {
    char rel[512];
    snprintf(rel, sizeof rel, "%s/%s", target, name);
    write_rel(rel, p, n);
    n_cases++;
}
static void seed_buf(const char *target, const char *name, buf *b) { seed(target, name, b->p, b->n); b_free(b); }
static void seed_text(const char *target, const char *name, const char *s) { seed(target, name, s, strlen(s)); }

static const tensor_spec ALLTYPES[] = {
    {"u8.first", "U8", 1, {3, 0}}, /* odd length first: every later tensor is unaligned */
    {"f64.vec", "F64", 1, {3, 0}},   {"f32.mat", "F32", 2, {2, 3}},   {"f16.vec", "F16", 1, {5, 0}},
    {"bf16.mat", "BF16", 2, {2, 2}}, {"e4m3.vec", "F8_E4M3", 1, {6, 0}}, {"e5m2.vec", "F8_E5M2", 1, {5, 0}},
    {"i64.vec", "I64", 1, {2, 0}},   {"i32.vec", "I32", 1, {2, 0}},   {"i16.vec", "I16", 1, {2, 0}},
    {"i8.vec", "I8", 1, {2, 0}},     {"u64.vec", "U64", 1, {2, 0}},   {"u32.vec", "U32", 1, {1, 0}},
    {"u16.vec", "U16", 1, {2, 0}},   {"bool.vec", "BOOL", 1, {3, 0}}, {"empty.mat", "F32", 2, {0, 4}},
};

/* The base weights with up_proj stored as FP8 E4M3 and its block scale after it. */
static buf fp8_weights(bool per_tensor_scale) {
    tensor_spec t[QF_ARRAY_LEN(LLAMA) + 1];
    size_t n = 0;
    for (size_t i = 0; i < QF_ARRAY_LEN(LLAMA); i++) {
        t[n++] = LLAMA[i];
        if (strcmp(LLAMA[i].name, "model.layers.0.mlp.up_proj.weight") != 0) continue;
        t[n - 1].dtype = "F8_E4M3";
        t[n++] = per_tensor_scale ? (tensor_spec){"model.layers.0.mlp.up_proj.weight_scale", "F32", 1, {1, 0}}
                                  : (tensor_spec){"model.layers.0.mlp.up_proj.weight_scale_inv", "F32", 2, {1, 1}};
    }
    return st_model(t, n, 5);
}

static void seeds_safetensors(void) {
    const char *tg = "safetensors";
    buf b = st_model(ALLTYPES, QF_ARRAY_LEN(ALLTYPES), 0);
    seed_buf(tg, "alltypes.safetensors", &b);
    b = llama_weights();
    seed_buf(tg, "llama.safetensors", &b);
    b = fp8_weights(false);
    seed_buf(tg, "fp8.safetensors", &b);
    b = st_image("{}", NULL, 0);
    seed_buf(tg, "empty.safetensors", &b);
    b = st_image("{\"__metadata__\":{\"format\":\"pt\",\"note\":\"\\u00fc \\\" \\\\\"}}", NULL, 0);
    seed_buf(tg, "metadata_only.safetensors", &b);
    b = st_image("{\"__metadata__\":null,\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}",
                 "\0\0\x28\x42", 4);
    seed_buf(tg, "scalar.safetensors", &b);
}

static void seeds_index(void) {
    const char *tg = "st_index"; /* shards as tests/fuzz/fuzz_st_index.c writes them */
    seed_text(tg, "valid.json", "{\"metadata\":{\"total_size\":19},\"weight_map\":{\"a\":\"model-00001-of-00002.safetensors\","
                                "\"b\":\"model-00001-of-00002.safetensors\",\"c\":\"model-00002-of-00002.safetensors\"}}");
    seed_text(tg, "one_shard.json", "{\"weight_map\":{\"c\":\"model-00002-of-00002.safetensors\"}}");
    seed_text(tg, "wrong_shard.json", "{\"weight_map\":{\"a\":\"model-00002-of-00002.safetensors\","
                                      "\"b\":\"model-00001-of-00002.safetensors\",\"c\":\"model-00002-of-00002.safetensors\"}}");
    seed_text(tg, "missing.json", "{\"weight_map\":{\"a\":\"model-00003-of-00003.safetensors\"}}");
}

/* Side files of the base model for qf_vocab_load_hf. */
static qf_status base_reader(void *ctx, const char *name, char **out, size_t *len, qf_error *err) {
    (void)ctx;
    const char *text = !strcmp(name, "tokenizer.json") ? TOKENIZER
                     : !strcmp(name, "tokenizer_config.json") ? TOKENIZER_CONFIG
                     : !strcmp(name, "config.json") ? CONFIG : NULL;
    if (!text) return QF_E_NOTFOUND;
    if (!(*out = strdup(text))) return qf_fail(err, QF_E_NOMEM, "out of memory");
    *len = strlen(text);
    return QF_OK;
}

/* ---- GGUF models llama.cpp refuses to load ------------------------------------------------------ */

/* One change to the base model written as a GGUF (hyper-parameters and vocabulary through qforge's
 * own writers, every tensor of the Llama layout). */
typedef struct gguf_model_edit {
    int64_t bos;            /* >= 0: tokenizer.ggml.bos_token_id */
    int32_t token_type;     /* != 0: every token's type */
    uint32_t fewer_tokens;  /* tokens dropped from the end of the list (scores and types too) */
    bool no_tokens;         /* tokenizer.ggml.model only: no token list */
    uint32_t rope_dim;      /* != 0: llama.rope.dimension_count */
    bool attn_q_3d;         /* blk.0.attn_q.weight stored 3-D (same bytes) */
    bool extra_tensor;      /* a tensor no Llama model has */
} gguf_model_edit;

/* The vocabulary writer refuses what the edits make, so they replace its keys afterwards. */
static qf_status write_edited_vocab(qf_vocab *v, const gguf_model_edit *e, qf_gguf_writer *w, qf_error *err) {
    if (e->no_tokens) return qf_gguf_set_str(w, "tokenizer.ggml.model", v->model, err);
    uint32_t n = v->n_tokens;
    v->n_tokens -= e->fewer_tokens;
    qf_status st = qf_vocab_write_gguf(v, w, err);
    v->n_tokens = n;
    if (!st && e->bos >= 0) st = qf_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)e->bos, err);
    if (!st && e->token_type) {
        int32_t types[64];
        for (uint32_t i = 0; i < n; i++) types[i] = e->token_type;
        st = qf_gguf_set_arr(w, "tokenizer.ggml.token_type", QF_GGUF_I32, types, n, err);
    }
    return st;
}

static void gguf_model(const char *rel, const gguf_model_edit *e) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", out_root, rel);
    mkdirs(path);
    qf_error err;
    qf_hparams hp;
    qf_vocab v;
    if (qf_hparams_from_hf("config.json", CONFIG, strlen(CONFIG), &hp, &err) != QF_OK) die("%s", err.msg);
    snprintf(hp.name, sizeof hp.name, "corpus");
    if (qf_vocab_load_hf(base_reader, NULL, hp.n_vocab, &v, &err) != QF_OK) die("%s", err.msg);
    static const char *const gguf_names[QF_ARRAY_LEN(LLAMA)] = {
        "token_embd.weight", "blk.0.attn_norm.weight", "blk.0.attn_q.weight", "blk.0.attn_k.weight",
        "blk.0.attn_v.weight", "blk.0.attn_output.weight", "blk.0.ffn_norm.weight", "blk.0.ffn_gate.weight",
        "blk.0.ffn_up.weight", "blk.0.ffn_down.weight", "output_norm.weight", "output.weight"};
    qf_gguf_writer *w = NULL;
    qf_status st = qf_gguf_writer_open(path, &w, &err);
    if (!st) st = qf_hparams_write_gguf(&hp, w, &err);
    if (!st && e->rope_dim) st = qf_gguf_set_u32(w, "llama.rope.dimension_count", e->rope_dim, &err);
    if (!st) st = write_edited_vocab(&v, e, w, &err);
    uint64_t elems[QF_ARRAY_LEN(LLAMA) + 1];
    size_t n_t = 0;
    for (; !st && n_t < QF_ARRAY_LEN(LLAMA); n_t++) {
        const tensor_spec *t = &LLAMA[n_t];
        uint64_t ne[3] = {t->n_dims == 2 ? t->shape[1] : t->shape[0], t->n_dims == 2 ? t->shape[0] : 1, 1};
        uint32_t dims = t->n_dims;
        if (e->attn_q_3d && !strcmp(gguf_names[n_t], "blk.0.attn_q.weight")) { ne[1] = 2; ne[2] = 2; dims = 3; }
        elems[n_t] = ne[0] * ne[1] * ne[2];
        st = qf_gguf_add_tensor(w, gguf_names[n_t], QF_T_F32, dims, ne, &err);
    }
    if (!st && e->extra_tensor) {
        static const uint64_t ne[2] = {4, 4};
        elems[n_t++] = 16;
        st = qf_gguf_add_tensor(w, "blk.0.junk.weight", QF_T_F32, 2, ne, &err);
    }
    if (!st) st = qf_gguf_begin_data(w, &err);
    for (size_t i = 0; !st && i < n_t; i++) {
        float x[64];
        for (uint64_t k = 0; k < elems[i]; k++) x[k] = 0.125f * (float)((k * 7 + i) % 9) - 0.5f;
        st = qf_gguf_write_tensor_data(w, x, elems[i] * sizeof(float), &err);
    }
    if (!st) st = qf_gguf_writer_finish(w, &err);
    else qf_gguf_writer_abort(w);
    if (st) die("writing %s: %s", path, err.msg);
    qf_vocab_free(&v);
}

/* Model GGUFs with one defect each: every command that reads a GGUF model refuses them alike (the
 * checks of formats/gguf_model.h and the tensor map), so that re-quantizing never copies them into a
 * new, freshly signed file. */
static void gen_gguf_model(void) {
    static const struct {
        const char *name, *expect;
        gguf_model_edit edit;
    } cases[] = {
        {"tokens_missing", "tokenizer.ggml.tokens: missing", {.bos = -1, .no_tokens = true}},
        {"bos_outside_vocab", "tokenizer.ggml.bos_token_id: id 99 is outside the 8 tokens", {.bos = 99}},
        {"token_type_9", "tokenizer.ggml.token_type: token 0 has type 9", {.bos = -1, .token_type = 9}},
        {"fewer_tokens_than_rows", "the vocabulary has 6 tokens but token_embd.weight has 8 rows",
         {.bos = -1, .fewer_tokens = 2}},
        {"rope_dim_not_head", "rope.dimension_count 4 differs from the head size 2", {.bos = -1, .rope_dim = 4}},
        {"attn_q_3d", "tensor 'blk.0.attn_q.weight' has shape (ne) 4 x 2 x 2", {.bos = -1, .attn_q_3d = true}},
        {"extra_tensor", "tensor 'blk.0.junk.weight' is not part of a llama model", {.bos = -1, .extra_tensor = true}},
    };
    gguf_model("gguf_model/valid.gguf", &(gguf_model_edit){.bos = -1}); /* the base: corpus_cli.sh runs it */
    for (size_t i = 0; i < QF_ARRAY_LEN(cases); i++) {
        char rel[256];
        snprintf(rel, sizeof rel, "gguf_model/%s.gguf", cases[i].name);
        gguf_model(rel, &cases[i].edit);
        expect(rel, "convert", cases[i].expect);
        expect(rel, "perplexity", cases[i].expect);
    }
}

static void seeds_gguf(void) {
    const char *tg = "gguf";
    gg_spec s;
    gg_default(&s);
    buf b = gg_build(&s);
    seed_buf(tg, "small.gguf", &b);

    /* A converter-like file: hyper-parameters and vocabulary through qforge's own writers, and tensors
     * of several stored types (zero bytes are valid blocks of every type). */
    char path[4096];
    snprintf(path, sizeof path, "%s/%s/converted.gguf", out_root, tg);
    mkdirs(path);
    qf_error err;
    qf_hparams hp;
    qf_vocab v;
    if (qf_hparams_from_hf("config.json", CONFIG, strlen(CONFIG), &hp, &err) != QF_OK) die("%s", err.msg);
    snprintf(hp.name, sizeof hp.name, "seed");
    if (qf_vocab_load_hf(base_reader, NULL, hp.n_vocab, &v, &err) != QF_OK) die("%s", err.msg);
    static const struct { const char *name; uint32_t type, n_dims; uint64_t ne[2]; } ts[] = {
        {"token_embd.weight", QF_T_F32, 2, {4, 8}}, {"output_norm.weight", QF_T_F32, 1, {4, 1}},
        {"blk.0.attn_q.weight", QF_T_F16, 2, {4, 4}}, {"blk.0.attn_k.weight", QF_T_BF16, 2, {4, 4}},
        {"blk.0.ffn_up.weight", QF_T_Q8_0, 2, {32, 2}}, {"blk.0.ffn_down.weight", QF_T_Q4_0, 2, {32, 1}},
        {"blk.0.ffn_gate.weight", QF_T_Q4_K, 2, {256, 1}},
    };
    qf_gguf_writer *w = NULL;
    qf_status st = qf_gguf_writer_open(path, &w, &err);
    if (!st) st = qf_hparams_write_gguf(&hp, w, &err);
    if (!st) st = qf_vocab_write_gguf(&v, w, &err);
    for (size_t i = 0; !st && i < QF_ARRAY_LEN(ts); i++) st = qf_gguf_add_tensor(w, ts[i].name, ts[i].type, ts[i].n_dims, ts[i].ne, &err);
    if (!st) st = qf_gguf_begin_data(w, &err);
    for (size_t i = 0; !st && i < QF_ARRAY_LEN(ts); i++) {
        uint64_t rb;
        if (!qf_qtype_row_bytes(qf_qtype_get(ts[i].type), ts[i].ne[0], &rb)) die("row bytes");
        buf z = {0};
        b_zeros(&z, (size_t)(rb * ts[i].ne[1]));
        st = qf_gguf_write_tensor_data(w, z.p, z.n, &err);
        b_free(&z);
    }
    if (!st) st = qf_gguf_writer_finish(w, &err);
    else qf_gguf_writer_abort(w);
    if (st) die("writing %s: %s", path, err.msg);
    qf_vocab_free(&v);
    n_cases++;
}

static void seeds_tokenizers(void) {
    const char *tg = "tokenizer_json";
    seed_text(tg, "bpe.json", TOKENIZER);
    seed_text(tg, "tokenizer_config.json", TOKENIZER_CONFIG);
    seed_text(tg, "config.json", CONFIG);
    seed_text(tg, "template_processing.json",
              "{\"added_tokens\":[{\"id\":1,\"content\":\"<s>\",\"special\":true}],\"normalizer\":null,"
              "\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":"
              "{\"Regex\":\"\\\\p{N}{1,3}\"},\"behavior\":\"Isolated\"},{\"type\":\"ByteLevel\",\"add_prefix_space\":false}]},"
              "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\","
              "\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],\"pair\":[{\"SpecialToken\":{\"id\":\"<s>\","
              "\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}},{\"Sequence\":{\"id\":\"B\",\"type_id\":1}}],"
              "\"special_tokens\":{\"<s>\":{\"id\":\"<s>\",\"ids\":[1],\"tokens\":[\"<s>\"]}}},"
              "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"<s>\":1,\"b\":2,\"ab\":3},\"merges\":[[\"a\",\"b\"]]}}");
    seed_text(tg, "roberta.json",
              "{\"added_tokens\":[{\"id\":0,\"content\":\"<s>\",\"special\":true},{\"id\":2,\"content\":\"</s>\","
              "\"special\":true},{\"id\":5,\"content\":\"<mask>\",\"special\":true}],\"pre_tokenizer\":"
              "{\"type\":\"ByteLevel\"},\"post_processor\":{\"type\":\"RobertaProcessing\",\"sep\":[\"</s>\",2],"
              "\"cls\":[\"<s>\",0]},\"model\":{\"type\":\"BPE\",\"vocab\":{\"<s>\":0,\"a\":1,\"</s>\":2,\"b\":3,"
              "\"ab\":4,\"<mask>\":5},\"merges\":[\"a b\"]}}");
    seed_text(tg, "config_chat.json",
              "{\"bos_token\":{\"content\":\"<s>\",\"lstrip\":false},\"eos_token\":\"</s>\",\"pad_token\":null,"
              "\"add_bos_token\":true,\"add_eos_token\":true,\"add_prefix_space\":false,"
              "\"chat_template\":[{\"name\":\"default\",\"template\":\"{{ m }}\"},{\"name\":\"tool_use\",\"template\":\"t\"}],"
              "\"added_tokens_decoder\":{\"1\":{\"content\":\"<s>\",\"special\":true}}}");

    tg = "tokenizer_model";
    buf m = spm_model();
    seed_buf(tg, "basic.model", &m);
    m = (buf){0};
    pb_piece(&m, "<unk>", 0, 2);
    pb_piece(&m, "<s>", 0, 3);
    pb_piece(&m, "</s>", 0, 3);
    pb_piece(&m, "<0x41>", 0, 6);
    pb_piece(&m, "\xe2\x96\x81" "a", -1.5f, 1);
    pb_piece(&m, "b", -2.25f, 4);
    pb_piece(&m, "c", -3.0f, 5);
    buf t = {0};
    pb_varint(&t, 35 << 3); pb_varint(&t, 1);               /* byte_fallback */
    pb_varint(&t, 43 << 3); pb_varint(&t, (uint64_t)-1);    /* pad_id -1 as a 10-byte varint */
    pb_varint(&t, 40 << 3); pb_varint(&t, 0);
    pb_bytes(&m, 2, t.p, t.n);
    b_free(&t);
    pb_varint(&t, 3 << 3); pb_varint(&t, 0);                /* add_dummy_prefix false */
    pb_bytes(&m, 3, t.p, t.n);
    b_free(&t);
    seed_buf(tg, "byte_fallback.model", &m);
}

static void seeds_config(void) {
    const char *tg = "config";
    seed_text(tg, "llama.json", CONFIG);
    seed_text(tg, "qwen2.json", "{\"architectures\":[\"Qwen2ForCausalLM\"]," CFG_SIZES "\"num_key_value_heads\":1,"
                                "\"vocab_size\":8,\"tie_word_embeddings\":true,\"rope_theta\":1000000.0}");
    seed_text(tg, "llama3.json", CFG_HEAD CFG_SIZES "\"vocab_size\":8,\"head_dim\":2,\"rope_scaling\":{\"rope_type\":"
                                 "\"llama3\",\"factor\":8.0,\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,"
                                 "\"original_max_position_embeddings\":8192}}");
    seed_text(tg, "yarn.json", CFG_HEAD CFG_SIZES "\"vocab_size\":8,\"rope_scaling\":{\"type\":\"yarn\",\"factor\":4,"
                               "\"original_max_position_embeddings\":32}}");
    seed_text(tg, "linear.json", CFG_HEAD CFG_SIZES "\"vocab_size\":8,\"rope_scaling\":{\"type\":\"linear\",\"factor\":2}}");
    seed_text(tg, "fp8.json", CFG_HEAD CFG_SIZES "\"vocab_size\":8,\"quantization_config\":{\"quant_method\":\"fp8\","
                              "\"weight_block_size\":[128,128]}}");
    seed_text(tg, "mistral.json", "{\"architectures\":[\"MistralForCausalLM\"]," CFG_SIZES "\"num_key_value_heads\":1,"
                                  "\"vocab_size\":8,\"rope_scaling\":null,\"tie_word_embeddings\":null}");
}

static void seeds_archive(void) {
    const char *tg = "archive";
    model_members mm;
    for (int sharded = 0; sharded < 2; sharded++) {
        mm_base(&mm, CONFIG, sharded);
        for (arch_kind k = AK_TAR; k <= AK_ZIP; k++) {
            if (sharded && (k == AK_TGZ || k == AK_TZST)) continue;
            char name[64];
            snprintf(name, sizeof name, "model%s.%s", sharded ? "-sharded" : "", KIND_EXT[k]);
            buf a = archive_bytes(k, mm.m, mm.n);
            seed_buf(tg, name, &a);
        }
        mm_free(&mm);
    }
    mm_base(&mm, "{\"architectures\":[\"LlamaForCausalLM\"],\"quantization_config\":{\"weight_block_size\":[4,2]}}", false);
    mm.m[3].data = *mm_keep(&mm, fp8_weights(false));
    buf a = archive_bytes(AK_TAR, mm.m, mm.n);
    seed_buf(tg, "fp8-block.tar", &a);
    mm_free(&mm);
    mm_base(&mm, CONFIG, false);
    mm.m[3].data = *mm_keep(&mm, fp8_weights(true));
    a = archive_bytes(AK_ZIP, mm.m, mm.n);
    seed_buf(tg, "fp8-tensor.zip", &a);
    mm_free(&mm);
    buf w = llama_weights();
    seed_buf(tg, "plain.safetensors", &w);
}

/* An importance matrix (two weights, one with two expert matrices) and a small Hessian file (for the
 * hessian target), written by the library's own writers so the seeds are exactly what qforge
 * calibrate produces, and the same kind of data in llama.cpp's legacy imatrix.dat layout. */
static void seeds_imatrix(void) {
    char dir[4096], path[4200];
    snprintf(dir, sizeof dir, "%s/imatrix/x", out_root);
    mkdirs(dir);
    qf_imatrix im = {.chunk_count = 2, .chunk_size = 8};
    if (!qf_imatrix_add(&im, "blk.0.attn_q.weight", 8, 1) || !qf_imatrix_add(&im, "blk.0.ffn_up_exps.weight", 4, 2))
        exit(3);
    qf_imatrix_entry *a = &im.e[0], *b = &im.e[1]; /* entries move while the set grows */
    for (uint32_t j = 0; j < 8; j++) a->sum2[j] = 1.0 + j;
    a->counts[0] = 16;
    for (uint32_t j = 0; j < 8; j++) b->sum2[j] = 0.5 * j;
    b->counts[1] = 16; /* expert 0 saw no token: all-ones weights */
    qf_error err;
    snprintf(path, sizeof path, "%s/imatrix/small.imatrix.gguf", out_root);
    if (qf_imatrix_save(path, &im, &err)) { fprintf(stderr, "make_corpus: %s\n", err.msg); exit(3); }
    qf_imatrix_free(&im);
    qf_hessian_set hs = {0};
    qf_hessian *h = qf_hessian_add(&hs, "blk.0.attn_in", 4);
    if (!h) exit(3);
    for (uint32_t i = 0; i < 4; i++) h->h[i * 4 + i] = 2.0 + i;
    h->count = 8;
    snprintf(path, sizeof path, "%s/hessian/x", out_root);
    mkdirs(path);
    snprintf(path, sizeof path, "%s/hessian/small.hessian.gguf", out_root);
    if (qf_hessian_save(path, &hs, &err)) { fprintf(stderr, "make_corpus: %s\n", err.msg); exit(3); }
    qf_hessian_free(&hs);
    n_cases += 2;
    /* llama.cpp's legacy imatrix.dat (formats/imatrix.c has the layout): two entries, chunk count, dataset */
    buf d = {0};
    b_u32(&d, 2);
    static const char *const names[] = {"blk.0.attn_q.weight", "output.weight"};
    for (int e = 0; e < 2; e++) {
        b_u32(&d, (uint32_t)strlen(names[e]));
        b_put(&d, names[e], strlen(names[e]));
        b_u32(&d, 4);     /* ncall */
        b_u32(&d, 4 + 4 * (uint32_t)e); /* nval */
        for (int j = 0; j < 4 + 4 * e; j++) { float v = 0.25f * (float)(j + 1); b_put(&d, &v, 4); }
    }
    b_u32(&d, 4);
    b_u32(&d, 8);
    b_put(&d, "wiki.txt", 8);
    seed_buf("imatrix", "small.imatrix.dat", &d);
}

/* Transport packs made by qf_pack: of a GGUF (its digests re-verified on unpack), of a file of several
 * frames, and of an empty file. */
static void seeds_qfz(void) {
    char src[4200], path[4200], dir[4096];
    snprintf(dir, sizeof dir, "%s/qfz/x", out_root);
    mkdirs(dir);
    qf_error err;
    qf_pack_stats st;
    struct { const char *src_name, *name; size_t size; } packs[] = {
        {"gguf/small.gguf", "small-gguf.qfz", 0}, {"qfz/frames.src", "frames.qfz", (2u << 20) + 777},
        {"qfz/empty.src", "empty.qfz", 0}};
    for (size_t i = 0; i < QF_ARRAY_LEN(packs); i++) {
        snprintf(src, sizeof src, "%s/%s", out_root, packs[i].src_name);
        if (strncmp(packs[i].src_name, "qfz/", 4) == 0) { /* generated here, removed after packing */
            buf b = {0};
            for (size_t k = 0; k < packs[i].size; k++) b_u8(&b, (uint8_t)((k * 131) ^ (k >> 9)));
            write_rel(packs[i].src_name, b.p, b.n);
            b_free(&b);
        }
        snprintf(path, sizeof path, "%s/qfz/%s", out_root, packs[i].name);
        qf_pack_opts o = {.src = src, .out = path, .threads = 1, .chunk_mib = 1};
        if (qf_pack(&o, &st, &err)) { fprintf(stderr, "make_corpus: %s\n", err.msg); exit(3); }
        if (strncmp(packs[i].src_name, "qfz/", 4) == 0) unlink(src);
        n_cases++;
    }
}

/* Signature files for the fixed GGUF and key of tests/fuzz/sig_fixture.h: a good one, one by another
 * key, one whose signature bytes are damaged. */
static void seeds_signature(void) {
    char dir[4096], gguf[4200], key[4200], pub[4200], sig[4200], other[4200], opub[4200];
    snprintf(dir, sizeof dir, "%s/signature/x", out_root);
    mkdirs(dir);
    snprintf(gguf, sizeof gguf, "%s/signature.gguf", out_root);
    snprintf(key, sizeof key, "%s/signature.key.pem", out_root);
    snprintf(pub, sizeof pub, "%s/signature.pub.pem", out_root);
    snprintf(other, sizeof other, "%s/signature.other.pem", out_root);
    snprintf(opub, sizeof opub, "%s/signature.otherpub.pem", out_root);
    EVP_PKEY *k2 = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    FILE *f = fopen(other, "wb");
    bool ok = k2 && f && PEM_write_PrivateKey(f, k2, NULL, NULL, 0, NULL, NULL) == 1;
    if (f) fclose(f);
    EVP_PKEY_free(k2);
    if (!ok || !qf_sig_fixture_gguf(gguf) || !qf_sig_fixture_keys(key, pub)) die("signature fixture");
    qf_error err;
    const char *keys[] = {key, other}, *names[] = {"good.sig", "other-key.sig"};
    for (int i = 0; i < 2; i++) {
        snprintf(sig, sizeof sig, "%s/signature/%s", out_root, names[i]);
        qf_sign_opts so = {.path = gguf, .key = keys[i], .out = sig, .threads = 1};
        if (qf_sign(&so, &err)) die("%s", err.msg);
        n_cases++;
    }
    size_t n = 0;
    char *b = NULL;
    snprintf(sig, sizeof sig, "%s/signature/good.sig", out_root);
    if (qf_infile_read(sig, 1 << 16, "signature", &b, &n, &err)) die("%s", err.msg);
    char *p = strstr(b, "\"signature\": \"");
    if (!p) die("good.sig has no signature");
    p[15] = p[15] == 'A' ? 'B' : 'A';
    seed("signature", "damaged.sig", b, n);
    free(b);
    unlink(gguf);
    unlink(key);
    unlink(pub);
    unlink(other);
    unlink(opub);
}

/* Hessian files whose matrices GPTQ can run (32 and 64 columns: Q8_0 blocks), one positive definite
 * and one only semi-definite (a zero column, which damping must absorb). */
static void seeds_hessian(void) {
    char dir[4096], path[4200];
    snprintf(dir, sizeof dir, "%s/hessian/x", out_root);
    mkdirs(dir);
    qf_error err;
    for (int v = 0; v < 2; v++) {
        qf_hessian_set hs = {0};
        uint32_t n = v ? 64 : 32;
        qf_hessian *h = qf_hessian_add(&hs, v ? "blk.0.ffn_in" : "blk.0.attn_in", n);
        if (!h) exit(3);
        for (uint32_t i = 0; i < n; i++)
            for (uint32_t j = 0; j < n; j++)
                h->h[(uint64_t)i * n + j] = (v && (i == 5 || j == 5)) ? 0.0 : (i == j ? 2.0 + i : 1.0 / (1 + i + j));
        h->count = 64;
        snprintf(path, sizeof path, "%s/hessian/%s.hessian.gguf", out_root, v ? "semidefinite64" : "definite32");
        if (qf_hessian_save(path, &hs, &err)) { fprintf(stderr, "make_corpus: %s\n", err.msg); exit(3); }
        qf_hessian_free(&hs);
        n_cases++;
    }
}

/* Text for fuzz_tokenizer: byte 0 picks the vocabulary (even: BPE, odd: SentencePiece), byte 1 BOS. */
static void seeds_tokenizer(void) {
    static const struct { const char *name, *text; size_t len; } texts[] = {
        {"bpe-ascii", "\x00" "\x01" "the quick brown fox jumps over the lazy dog. 0 1 2 100.", 0},
        {"bpe-unicode", "\x00" "\x00" "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80  \t\n  x", 0},
        {"spm-ascii", "\x01" "\x01" "the thing in the inn", 0},
        {"spm-user-token", "\x01" "\x00" "a<|x|>b <|x|> \xe6\x97\xa5\xe6\x9c\xac", 0},
        {"spm-invalid-utf8", "\x01" "\x01" "\xff\xfe\xc3 \xed\xa0\x80 end", 0},
    };
    for (size_t i = 0; i < QF_ARRAY_LEN(texts); i++) {
        size_t n = 2 + strlen(texts[i].text + 2);
        seed("tokenizer", texts[i].name, texts[i].text, n);
    }
}

/* Valid base-logits files: flags differ; routes, and version 1 without them. */
static void seeds_baselogits(void) {
    buf b = bl_file(BL_VALID, 4, 2);
    seed_buf("baselogits", "small.qfbl", &b);
    b = bl_file(BL_VALID, 3, 2);
    seed_buf("baselogits", "flags.qfbl", &b);
    b = bl_file(BL_VALID, 4, 1);
    seed_buf("baselogits", "version1.qfbl", &b);
}

/* ---- main ------------------------------------------------------------------------------------------ */

int main(int argc, char **argv) {
    if (argc != 3 || (strcmp(argv[1], "malformed") && strcmp(argv[1], "seeds"))) {
        fprintf(stderr, "usage: make_corpus malformed|seeds DIR\n");
        return 2;
    }
    out_root = argv[2];
    char probe[4096];
    snprintf(probe, sizeof probe, "%s/x", out_root);
    mkdirs(probe); /* the output directory and its parents */
    if (!strcmp(argv[1], "seeds")) {
        static const char *const owned[] = {"safetensors", "st_index", "gguf", "tokenizer_json", "tokenizer_model",
                                            "config", "archive", "imatrix", "qfz", "signature", "hessian",
                                            "tokenizer", "baselogits"};
        clear_owned(owned, QF_ARRAY_LEN(owned));
        seeds_safetensors();
        seeds_index();
        seeds_gguf();
        seeds_tokenizers();
        seeds_config();
        seeds_archive();
        seeds_imatrix();
        seeds_qfz();
        seeds_signature();
        seeds_hessian();
        seeds_tokenizer();
        seeds_baselogits();
        printf("make_corpus: %u seed files in %s\n", n_cases, out_root);
        return 0;
    }
    static const char *const owned[] = {"safetensors", "gguf", "index", "config", "tokenizer", "spm", "model",
                                        "archive", "baselogits", "gguf_model"};
    clear_owned(owned, QF_ARRAY_LEN(owned));
    b_printf(&manifest, "# Generated by tests/corpus/make_corpus.c; regenerate, do not edit.\n"
                        "# file (relative to tests/corpus)\tcommand\tsubstring of the one-line error\n");
    gen_safetensors();
    gen_gguf();
    gen_index();
    gen_config();
    gen_tokenizer_json();
    gen_spm();
    gen_model();
    gen_deepseek();
    gen_gguf_model();
    gen_archive();
    gen_baselogits();
    write_buf("MANIFEST.tsv", &manifest);
    b_free(&manifest);
    printf("make_corpus: %u CLI cases in %s/MANIFEST.tsv\n", n_cases, out_root);
    return 0;
}
