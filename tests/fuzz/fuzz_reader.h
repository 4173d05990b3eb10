/*
 * fuzz_reader.h — an in-memory qf_file_reader for the tokenizer targets: a NULL-terminated table of
 * (name, bytes, length) served as the side files of a model directory. Like qf_source_read_file, it
 * hands out a malloc'd copy with a NUL after the last byte; absent names are QF_E_NOTFOUND.
 */
#ifndef QF_FUZZ_READER_H
#define QF_FUZZ_READER_H

#include "fuzz_util.h"

#include "formats/vocab.h"

typedef struct qf_fuzz_file {
    const char *name;
    const void *data;
    size_t len; /* 0: strlen(data) */
} qf_fuzz_file;

static inline qf_status qf_fuzz_reader(void *ctx, const char *name, char **buf, size_t *len, qf_error *err) {
    for (const qf_fuzz_file *f = ctx; f->name; f++) {
        if (strcmp(f->name, name) != 0) continue;
        size_t n = f->len ? f->len : strlen(f->data);
        char *p = malloc(n + 1);
        if (!p) return qf_fail(err, QF_E_NOMEM, "%s: out of memory", name);
        memcpy(p, f->data, n);
        p[n] = '\0';
        *buf = p;
        *len = n;
        return QF_OK;
    }
    return QF_E_NOTFOUND;
}

/* Load a vocabulary from `files`; on success read every string it built, then free it. */
static inline void qf_fuzz_vocab(const qf_fuzz_file *files, uint32_t vocab_size) {
    qf_vocab v;
    qf_error err;
    qf_error_clear(&err);
    qf_status st = qf_vocab_load_hf(qf_fuzz_reader, (void *)files, vocab_size, &v, &err);
    qf_fuzz_check_failure(st, &err);
    if (st != QF_OK) {
        if (v.tokens || v.n_tokens || v.merges) qf_fuzz_violation("a failed load left tokens behind", &err);
        return;
    }
    if (vocab_size && v.n_tokens < vocab_size) qf_fuzz_violation("vocabulary shorter than vocab_size", &err);
    for (uint32_t i = 0; i < v.n_tokens; i++) {
        qf_fuzz_touch(v.tokens[i], strlen(v.tokens[i]) + 1);
        qf_fuzz_touch(&v.types[i], sizeof v.types[i]);
        if (v.scores) qf_fuzz_touch(&v.scores[i], sizeof v.scores[i]);
    }
    for (uint64_t i = 0; i < v.n_merges; i++) qf_fuzz_touch(v.merges[i], strlen(v.merges[i]) + 1);
    if (v.chat_template) qf_fuzz_touch(v.chat_template, strlen(v.chat_template) + 1);
    const int64_t ids[] = {v.bos_id, v.eos_id, v.unk_id, v.pad_id, v.eot_id, v.sep_id, v.mask_id, v.eom_id};
    for (size_t i = 0; i < QF_ARRAY_LEN(ids); i++)
        if (ids[i] < -1 || ids[i] >= (int64_t)v.n_tokens) qf_fuzz_violation("special token id out of range", &err);
    qf_vocab_free(&v);
}

#endif
