/*
 * fuzz_tokenizer.c — text encoded with a vocabulary (runtime/tokenizer.h, what perplexity, verify and
 * calibrate run on user text). Two vocabularies are built once: the byte-level BPE of a model written
 * by qforge synth (GPT-2 pre-tokenizer regexes, merges by rank) and a SentencePiece ("llama") one with
 * byte fallback and a user-defined token. The first input byte picks the vocabulary, the second whether
 * BOS is added, the rest is the text. Besides no crash and no sanitizer report: tokenizing never fails
 * (any byte string is text), every id names a token, and there are at most three ids per input byte
 * (an invalid one becomes U+FFFD) plus BOS and SentencePiece's dummy prefix.
 */
#include "fuzz_util.h"

#include "formats/infile.h"
#include "runtime/tokenizer.h"

static qf_status dir_reader(void *ctx, const char *name, char **buf, size_t *len, qf_error *err) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", (const char *)ctx, name);
    qf_error e;
    qf_status st = qf_infile_read(path, 1u << 26, "file", buf, len, &e);
    if (st != QF_OK && st != QF_E_NOTFOUND && err) *err = e;
    return st;
}

static qf_tokenizer *bpe_tokenizer(void) {
    static const char *const files[] = {"config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors"};
    for (size_t i = 0; i < QF_ARRAY_LEN(files); i++) qf_fuzz_path(files[i]); /* removed at exit */
    qf_synth_opts so = {.dir = qf_fuzz_dir(), .seed = 3, .n_layer = 1, .n_embd = 64, .n_ff = 64, .n_vocab = 400,
                        .dtype = "f32"};
    qf_error err;
    qf_vocab v;
    qf_tokenizer *t = NULL;
    if (qf_synth_model(&so, &err) != QF_OK || qf_vocab_load_hf(dir_reader, (void *)qf_fuzz_dir(), 400, &v, &err) != QF_OK)
        qf_fuzz_violation("building the BPE vocabulary", &err);
    if (qf_tokenizer_new(&v, &t, &err) != QF_OK) qf_fuzz_violation("BPE tokenizer", &err);
    qf_vocab_free(&v);
    return t;
}

static char *copy_str(const char *s) {
    char *d = qf_strndup(s, strlen(s));
    if (!d) abort();
    return d;
}

/* <unk> <s> </s>, the 256 byte tokens, a user-defined token, then pieces with falling scores. */
static qf_tokenizer *spm_tokenizer(void) {
    static const char *const pieces[] = {"\xe2\x96\x81", "\xe2\x96\x81t", "\xe2\x96\x81th", "\xe2\x96\x81the", "e", "h",
                                         "t", "a", "\xe2\x96\x81" "a", "he", "in", "\xe2\x96\x81in", "ing", "er", "o",
                                         "n", "\xc3\xa9", "\xe6\x97\xa5\xe6\x9c\xac"};
    const uint32_t n = 3 + 256 + 1 + (uint32_t)QF_ARRAY_LEN(pieces);
    qf_vocab v = {.n_tokens = n, .bos_id = 1, .eos_id = 2, .unk_id = 0, .pad_id = -1, .eot_id = -1, .sep_id = -1,
                  .mask_id = -1, .eom_id = -1, .add_bos = -1, .add_eos = -1, .add_space_prefix = -1, .add_sep = -1};
    snprintf(v.model, sizeof v.model, "llama");
    v.tokens = calloc(n, sizeof *v.tokens);
    v.scores = calloc(n, sizeof *v.scores);
    v.types = calloc(n, sizeof *v.types);
    if (!v.tokens || !v.scores || !v.types) abort();
    const char *specials[] = {"<unk>", "<s>", "</s>"};
    const int32_t special_types[] = {QF_TOK_UNKNOWN, QF_TOK_CONTROL, QF_TOK_CONTROL};
    uint32_t k = 0;
    for (; k < 3; k++) { v.tokens[k] = copy_str(specials[k]); v.types[k] = special_types[k]; }
    for (uint32_t b = 0; b < 256; b++, k++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        v.tokens[k] = copy_str(name);
        v.types[k] = QF_TOK_BYTE;
    }
    v.tokens[k] = copy_str("<|x|>");
    v.types[k++] = QF_TOK_USER_DEFINED;
    for (size_t i = 0; i < QF_ARRAY_LEN(pieces); i++, k++) {
        v.tokens[k] = copy_str(pieces[i]);
        v.types[k] = QF_TOK_NORMAL;
        v.scores[k] = -(float)i;
    }
    qf_error err;
    qf_tokenizer *t = NULL;
    if (qf_tokenizer_new(&v, &t, &err) != QF_OK) qf_fuzz_violation("SPM tokenizer", &err);
    qf_vocab_free(&v);
    return t;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static qf_tokenizer *toks[2];
    if (!toks[0]) {
        toks[0] = bpe_tokenizer();
        toks[1] = spm_tokenizer();
    }
    if (size < 2) return 0;
    const qf_tokenizer *t = toks[data[0] & 1];
    bool add_bos = data[1] & 1;
    size_t len = size - 2;
    char *text = (char *)qf_fuzz_copy(data + 2, len);
    int32_t *ids = NULL;
    size_t n = 0;
    qf_error err;
    qf_error_clear(&err);
    qf_status st = qf_tokenize(t, text, len, add_bos, &ids, &n, &err);
    if (st != QF_OK) qf_fuzz_violation("tokenizing text failed", &err);
    if (!ids) qf_fuzz_violation("no id array", &err);
    /* an invalid byte becomes U+FFFD (3 bytes, up to 3 byte tokens); BOS and the dummy prefix add 2 */
    if (n > 3 * len + 2) qf_fuzz_violation("more ids than the text can hold", &err);
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || (uint32_t)ids[i] >= qf_tokenizer_n_vocab(t) || !qf_token_text(t, ids[i]))
            qf_fuzz_violation("an id names no token", &err);
    free(ids);
    free(text);
    return 0;
}
