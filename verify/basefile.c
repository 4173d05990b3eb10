/* Digests and protocol checks that tie a base-logits file to a verify run (basefile.h). */
#include "verify/basefile.h"
#include "formats/digest.h"
#include "formats/gguf.h"

#include <openssl/evp.h>

/* SHA-256 over a sequence of pieces, as one message. */
typedef struct sha { EVP_MD_CTX *md; bool ok; } sha;

static sha sha_begin(void) {
    sha s = {EVP_MD_CTX_new(), false};
    s.ok = s.md && EVP_DigestInit_ex(s.md, EVP_sha256(), NULL);
    return s;
}
static void sha_put(sha *s, const void *p, size_t n) { s->ok = s->ok && EVP_DigestUpdate(s->md, p, n); }
static void sha_str(sha *s, const char *str) { sha_put(s, str, strlen(str) + 1); }
static qf_status sha_end(sha *s, uint8_t out[32], qf_error *err) {
    unsigned n = 0;
    s->ok = s->ok && EVP_DigestFinal_ex(s->md, out, &n);
    EVP_MD_CTX_free(s->md);
    return s->ok ? QF_OK : qf_fail(err, QF_E_INTERNAL, "OpenSSL SHA-256 unavailable");
}

static void hex(const uint8_t d[32], char out[17]) { /* a short form for messages */
    for (int i = 0; i < 8; i++) snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* One GGUF file: its stored digests when it has them, else the SHA-256 of its bytes. */
static qf_status gguf_file_identity(sha *s, const qf_gguf *g, qf_error *err) {
    const qf_gguf_kv *h = qf_gguf_find_kv(g, QF_INTEGRITY_KEY_HEADER);
    const qf_gguf_kv *t = qf_gguf_find_kv(g, QF_INTEGRITY_KEY_TENSORS);
    if (h && t && h->type == QF_GGUF_STRING && t->type == QF_GGUF_ARRAY && t->arr_type == QF_GGUF_STRING) {
        sha_str(s, "gguf-digests");
        sha_str(s, h->v.str.ptr);
        for (uint64_t i = 0; i < t->n; i++) sha_str(s, ((const qf_gguf_str *)t->v.arr)[i].ptr);
        return QF_OK;
    }
    char digest[QF_SHA256_HEX_LEN + 1];
    qf_status st = qf_sha256_file_hex(qf_gguf_label(g), digest, err);
    if (st) return st;
    sha_str(s, "gguf-file");
    sha_str(s, digest);
    return QF_OK;
}

qf_status qf_base_identity(const qf_rt_model *m, uint8_t out[32], qf_error *err) {
    sha s = sha_begin();
    char digest[QF_SHA256_HEX_LEN + 1];
    qf_status st = QF_OK;
    if (m->gguf) {
        /* a split set: every part, each by its own digests (the first part's cover only its tensors) */
        if (qf_gguf_n_parts(m->gguf) > 1) sha_str(&s, "gguf-split-set");
        for (size_t k = 0; !st && k < qf_gguf_n_parts(m->gguf); k++) st = gguf_file_identity(&s, qf_gguf_part(m->gguf, k), err);
    } else if (!(st = qf_source_digest(m->src, digest, err))) {
        sha_str(&s, "source");
        sha_str(&s, digest);
    }
    qf_status st2 = sha_end(&s, out, err);
    return st ? st : st2;
}

static qf_status vocab_digest(const qf_vocab *v, uint8_t out[32], qf_error *err) {
    sha s = sha_begin();
    uint8_t n[4] = {(uint8_t)v->n_tokens, (uint8_t)(v->n_tokens >> 8), (uint8_t)(v->n_tokens >> 16),
                    (uint8_t)(v->n_tokens >> 24)};
    sha_put(&s, n, sizeof n);
    for (uint32_t i = 0; i < v->n_tokens; i++) sha_str(&s, v->tokens[i]);
    return sha_end(&s, out, err);
}

static qf_status tokens_digest(const int32_t *t, size_t n, uint8_t out[32], qf_error *err) {
    sha s = sha_begin();
    for (size_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)t[i];
        uint8_t le[4] = {(uint8_t)u, (uint8_t)(u >> 8), (uint8_t)(u >> 16), (uint8_t)(u >> 24)};
        sha_put(&s, le, sizeof le);
    }
    return sha_end(&s, out, err);
}

static qf_status text_digest(const char *path, uint8_t out[32], qf_error *err) {
    char h[QF_SHA256_HEX_LEN + 1];
    qf_status st = qf_sha256_file_hex(path, h, err);
    for (int i = 0; !st && i < 32; i++) {
        unsigned v;
        sscanf(h + 2 * i, "%2x", &v);
        out[i] = (uint8_t)v;
    }
    return st;
}

static uint32_t run_flags(const qf_base_run *r) {
    return (r->no_escape ? QF_BASELOGITS_FLAG_NO_ESCAPE : 0) | (r->act_q8 ? QF_BASELOGITS_FLAG_ACT_Q8 : 0) |
           (r->bos ? QF_BASELOGITS_FLAG_BOS : 0);
}

qf_status qf_base_header(const qf_base_run *run, const qf_rt_model *m, const char *label, uint32_t k,
                         qf_baselogits_header *h, qf_error *err) {
    memset(h, 0, sizeof *h);
    *h = (qf_baselogits_header){.k = k, .n_vocab = run->n_vocab, .ctx = run->ctx, .n_chunks = run->n_chunks,
                                .first = run->first, .flags = run_flags(run), .n_tokens = run->n_tokens,
                                .n_scored = (uint64_t)run->n_chunks * (run->ctx - 1 - run->first)};
    if (k < 1 || k > run->n_vocab || k > QF_BASELOGITS_MAX_K)
        return qf_fail(err, QF_E_USAGE, "--base-topk %u: keep between 1 and %u tokens (the vocabulary has %u)", k,
                       QF_BASELOGITS_MAX_K, run->n_vocab);
    snprintf(h->label, sizeof h->label, "%s", label);
    qf_status st = qf_base_identity(m, h->base, err);
    if (!st) st = vocab_digest(run->vocab, h->vocab, err);
    if (!st) st = text_digest(run->text_path, h->text, err);
    if (!st) st = tokens_digest(run->tokens, run->n_tokens, h->tokens, err);
    return st;
}

qf_status qf_base_check(const char *path, const qf_baselogits_header *h, const qf_base_run *run, qf_error *err) {
    uint8_t d[32];
    char a[17], b[17];
    qf_status st = vocab_digest(run->vocab, d, err);
    if (st) return st;
    if (memcmp(d, h->vocab, 32) || h->n_vocab != run->n_vocab)
        return qf_fail(err, QF_E_INPUT, "%s: its base (%s) has another vocabulary than this model (%u tokens, %u logits "
                       "here; %u logits there): they must share one", path, h->label, run->vocab->n_tokens,
                       run->n_vocab, h->n_vocab);
    if ((st = text_digest(run->text_path, d, err))) return st;
    if (memcmp(d, h->text, 32)) {
        hex(h->text, a);
        hex(d, b);
        return qf_fail(err, QF_E_INPUT, "%s: computed on another text (SHA-256 %s...), not %s (%s...)", path, a,
                       run->text_path, b);
    }
    uint32_t f = run_flags(run);
    if ((f ^ h->flags) & QF_BASELOGITS_FLAG_ACT_Q8)
        return qf_fail(err, QF_E_INPUT, "%s: computed with --act %s; this run asks for --act %s", path,
                       h->flags & QF_BASELOGITS_FLAG_ACT_Q8 ? "q8" : "f32", run->act_q8 ? "q8" : "f32");
    if ((f ^ h->flags) & QF_BASELOGITS_FLAG_NO_ESCAPE)
        return qf_fail(err, QF_E_INPUT, "%s: computed %s --no-escape; this run %s it", path,
                       h->flags & QF_BASELOGITS_FLAG_NO_ESCAPE ? "with" : "without", run->no_escape ? "gives" : "omits");
    if (h->ctx != run->ctx || h->n_chunks != run->n_chunks)
        return qf_fail(err, QF_E_INPUT, "%s: computed with --ctx %u over %u chunks; this run asks for --ctx %u over %u",
                       path, h->ctx, h->n_chunks, run->ctx, run->n_chunks);
    if ((st = tokens_digest(run->tokens, run->n_tokens, d, err))) return st;
    if (memcmp(d, h->tokens, 32) || h->n_tokens != run->n_tokens || (f ^ h->flags) & QF_BASELOGITS_FLAG_BOS)
        return qf_fail(err, QF_E_INPUT, "%s: the text tokenizes differently here (%zu tokens) than for its base (%llu): "
                       "another tokenizer or another qforge", path, run->n_tokens, (unsigned long long)h->n_tokens);
    return QF_OK;
}
