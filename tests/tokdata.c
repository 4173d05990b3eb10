/* Tokenizer test data (tokdata.h). */
#include "tokdata.h"

#include "testutil.h"

#include <cjson/cJSON.h>

char *qf_test_read_text(const char *path, size_t *n) {
    uint8_t *d = qf_test_read_file(path, n);
    if (!d) return NULL;
    char *s = realloc(d, *n + 1);
    if (!s) { free(d); return NULL; }
    s[*n] = '\0';
    return s;
}

qf_status qf_test_dir_reader(void *ctx, const char *name, char **buf, size_t *len, qf_error *err) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", (const char *)ctx, name);
    if (!qf_test_file_exists(path)) return QF_E_NOTFOUND;
    if (!(*buf = qf_test_read_text(path, len))) return qf_fail(err, QF_E_IO, "%s: cannot read", path);
    return QF_OK;
}

uint32_t qf_test_config_vocab_size(const char *dir) {
    char *buf = NULL;
    size_t len = 0;
    qf_error err = {0};
    if (qf_test_dir_reader((void *)dir, "config.json", &buf, &len, &err)) return 0;
    cJSON *j = cJSON_ParseWithLength(buf, len);
    const cJSON *vs = cJSON_GetObjectItemCaseSensitive(j, "vocab_size");
    uint32_t n = cJSON_IsNumber(vs) && vs->valuedouble > 0 && vs->valuedouble < 4e9 ? (uint32_t)vs->valuedouble : 0;
    cJSON_Delete(j);
    free(buf);
    return n;
}

qf_status qf_test_write_vocab(const qf_vocab *v, const char *path, qf_error *err) {
    qf_gguf_writer *w = NULL;
    qf_status st = qf_gguf_writer_open(path, &w, err);
    if (st) return st;
    if ((st = qf_gguf_set_str(w, "general.architecture", "llama", err)) || (st = qf_vocab_write_gguf(v, w, err)) ||
        (st = qf_gguf_begin_data(w, err))) {
        qf_gguf_writer_abort(w);
        return st;
    }
    return qf_gguf_writer_finish(w, err);
}

qf_status qf_test_open_tokenizer(const char *path, qf_tokenizer **t, qf_error *err) {
    qf_gguf *g = NULL;
    qf_vocab v;
    qf_status st = qf_gguf_open(path, &g, err);
    if (!st) st = qf_vocab_load_gguf(g, &v, err);
    qf_gguf_close(g);
    if (st) return st;
    st = qf_tokenizer_new(&v, t, err);
    qf_vocab_free(&v);
    return st;
}

void qf_tok_vectors_free(qf_tok_vectors *v) {
    for (size_t i = 0; i < v->n; i++) {
        free(v->inp[i]);
        if (v->ids) free(v->ids[i]);
    }
    free(v->inp); free(v->inp_len); free(v->ids); free(v->n_ids);
    memset(v, 0, sizeof *v);
}

static bool add_input(qf_tok_vectors *v, const char *s, size_t n) {
    size_t k = v->n;
    char **inp = realloc(v->inp, (k + 1) * sizeof *inp);
    if (inp) v->inp = inp;
    size_t *il = realloc(v->inp_len, (k + 1) * sizeof *il);
    if (il) v->inp_len = il;
    if (!inp || !il || !(v->inp[k] = qf_strndup(s, n))) return false;
    v->inp_len[k] = n;
    v->n++;
    return true;
}

/* test-tokenizer-0's read_tests: split on the separator; a trailing separator ends the list. */
static bool parse_inputs(qf_tok_vectors *v, const char *inp, size_t ni) {
    static const char sep[] = "\n__ggml_vocab_test__\n";
    for (size_t pos = 0; pos < ni;) {
        const char *next = memmem(inp + pos, ni - pos, sep, sizeof sep - 1);
        size_t end = next ? (size_t)(next - inp) : ni;
        if (!add_input(v, inp + pos, end - pos)) return false;
        pos = next ? end + sizeof sep - 1 : ni;
    }
    return true;
}

static size_t count_lines(const char *s, size_t n) {
    size_t lines = 0;
    for (size_t i = 0; i < n; i++) lines += s[i] == '\n';
    return lines + (n && s[n - 1] != '\n');
}

/* Output lines: ids separated by spaces; line k pairs with input k. */
static bool parse_outputs(qf_tok_vectors *v, char *out, size_t n) {
    size_t lines = count_lines(out, n);
    if (lines != v->n) return false;
    v->ids = calloc(lines ? lines : 1, sizeof *v->ids);
    v->n_ids = calloc(lines ? lines : 1, sizeof *v->n_ids);
    if (!v->ids || !v->n_ids) return false;
    char *p = out;
    for (size_t k = 0; k < lines; k++) {
        char *eol = strchr(p, '\n');
        if (eol) *eol = '\0';
        v->ids[k] = malloc((strlen(p) / 2 + 1) * sizeof **v->ids);
        if (!v->ids[k]) return false;
        for (char *q = p, *e;; q = e) {
            long id = strtol(q, &e, 10);
            if (e == q) break;
            v->ids[k][v->n_ids[k]++] = (int32_t)id;
        }
        p = eol ? eol + 1 : p + strlen(p);
    }
    return true;
}

bool qf_tok_vectors_load(const char *inp_path, const char *out_path, qf_tok_vectors *v) {
    size_t ni = 0, no = 0;
    memset(v, 0, sizeof *v);
    char *inp = qf_test_read_text(inp_path, &ni), *out = out_path ? qf_test_read_text(out_path, &no) : NULL;
    bool ok = inp && (out || !out_path) && parse_inputs(v, inp, ni) && (!out_path || parse_outputs(v, out, no));
    free(inp);
    free(out);
    if (!ok) qf_tok_vectors_free(v);
    return ok;
}

void qf_tok_ids_write(FILE *f, const int32_t *ids, size_t n) {
    for (size_t i = 0; i < n; i++) fprintf(f, " %d", ids[i]);
    fputc('\n', f);
}

/* Values from ../shared/tokenizers/README.md; config.json ids as the released models' config.json states
 * them (Gemma 3's eos_token_id is a list, which the converter skips). */
const qf_tok_family qf_tok_families[QF_TOK_N_FAMILIES] = {
    { "deepseek-v3", "DeepseekV3ForCausalLM", "deepseek-v3", 129280, 0, 1, { -1 }, { 99, -1 }, { -1 },
      "<\xef\xbd\x9cplace\xe2\x96\x81holder\xe2\x96\x81no\xe2\x96\x81" "100\xef\xbd\x9c>" },
    { "llama3", "LlamaForCausalLM", "llama-bpe", 128256, 128000, 128009, { -1 }, { 101, -1 }, { -1 }, "<|reserved_special_token_100|>" },
    { "qwen3", "Qwen3ForCausalLM", "qwen2", 151936, 151643, 151645, { 89, 91, 92, 103, -1 }, { 98, -1 }, { -1 }, "<|box_start|>" },
    { "gemma3", "Gemma3ForCausalLM", "granite-embed-multi-311m", 262208, 2, -1, { -1 }, { 100, 103, -1 }, { 99, -1 }, "<start_of_image>" },
};

bool qf_tok_listed(const int *list, int i) {
    for (int k = 0; k < QF_TOK_MAX_LISTED && list[k] >= 0; k++)
        if (list[k] == i) return true;
    return false;
}

static qf_status copy_out(const char *s, char **buf, size_t *len, qf_error *err) {
    if (!(*buf = strdup(s))) return qf_fail(err, QF_E_NOMEM, "out of memory");
    *len = strlen(s);
    return QF_OK;
}

qf_status qf_tok_family_reader(void *ctx, const char *name, char **buf, size_t *len, qf_error *err) {
    const qf_tok_family_ctx *c = ctx;
    if (strcmp(name, "config.json") == 0) {
        char cfg[256];
        int n = snprintf(cfg, sizeof cfg, "{\"architectures\": [\"%s\"], \"vocab_size\": %u", c->fam->arch,
                         c->fam->vocab_size);
        if (c->fam->bos_id >= 0) n += snprintf(cfg + n, sizeof cfg - (size_t)n, ", \"bos_token_id\": %lld", (long long)c->fam->bos_id);
        if (c->fam->eos_id >= 0) n += snprintf(cfg + n, sizeof cfg - (size_t)n, ", \"eos_token_id\": %lld", (long long)c->fam->eos_id);
        snprintf(cfg + n, sizeof cfg - (size_t)n, "}");
        return copy_out(cfg, buf, len, err);
    }
    return qf_test_dir_reader((void *)c->dir, name, buf, len, err);
}
