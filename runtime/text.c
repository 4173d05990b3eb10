/* text.c — prompt files read as llama.cpp's tools read them (text.h). */
#include "runtime/text.h"
#include "formats/infile.h"
#include "runtime/tokenizer.h"

#include <stdlib.h>
#include <string.h>

/* \xNN as llama.cpp reads it: strtol over the two characters must consume both. */
static bool hex_escape(const char *s, size_t i, size_t len, char *out) {
    if (!(i + 2 < len)) return false;
    char x[3] = {s[i + 1], s[i + 2], 0};
    char *end = NULL;
    long v = strtol(x, &end, 16);
    if (end != x + 2) return false;
    *out = (char)v;
    return true;
}

size_t qf_text_process_escapes(char *s, size_t len) {
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] != '\\' || i + 1 >= len) { s[o++] = s[i]; continue; }
        char c = s[++i], h;
        if (c == 'x' && hex_escape(s, i, len, &h)) { i += 2; s[o++] = h; continue; }
        switch (c) {
        case 'n': s[o++] = '\n'; break;
        case 'r': s[o++] = '\r'; break;
        case 't': s[o++] = '\t'; break;
        case '\'': case '"': case '\\': s[o++] = c; break;
        default: s[o++] = '\\'; s[o++] = c; break; /* not an escape (a bad \x too): keep both */
        }
    }
    return o;
}

/* Texts are read whole (and tokenized whole); 256 MiB is over a hundred times wikitext-2's test set.
 * Only regular files: a FIFO or /dev/zero would block or grow without end. */
#define QF_TEXT_MAX_BYTES (256ull << 20)

qf_status qf_text_load_prompt(const char *path, bool escape, char **text, size_t *len, qf_error *err) {
    *text = NULL;
    *len = 0;
    char *buf;
    size_t n;
    qf_status st = qf_infile_read(path, QF_TEXT_MAX_BYTES, "text file", &buf, &n, err);
    if (st != QF_OK) return st;
    if (n > 0 && buf[n - 1] == '\n') n--;
    if (escape) n = qf_text_process_escapes(buf, n);
    buf[n] = '\0';
    *text = buf;
    *len = n;
    return QF_OK;
}

qf_status qf_text_tokens(const qf_vocab *v, const char *label, const char *path, bool escape, int32_t **tokens,
                         size_t *n, bool *add_bos, int32_t *bos, qf_error *err) {
    char *text = NULL;
    size_t len = 0;
    qf_tokenizer *tok = NULL;
    *tokens = NULL;
    *n = 0;
    qf_status st = qf_text_load_prompt(path, escape, &text, &len, err);
    if (!st) st = qf_tokenizer_new(v, &tok, err);
    if (!st) {
        *add_bos = qf_tokenizer_wants_bos(tok);
        *bos = qf_tokenizer_bos(tok);
        st = qf_tokenize(tok, text, len, *add_bos, tokens, n, err);
    }
    if (!st && *add_bos && *bos < 0)
        st = qf_fail(err, QF_E_INPUT, "%s: the vocabulary asks for BOS but names no BOS token", label);
    qf_tokenizer_free(tok);
    free(text);
    return st;
}
