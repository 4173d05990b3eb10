/*
 * basefile.h — what ties a base-logits file (formats/baselogits.h) to a verify run: the digests that
 * identify the base model, its vocabulary, the text and its tokens, and the run's protocol, filled in
 * when saving and compared when loading, so a file made for another base, text or setting is refused
 * (internal to verify/).
 */
#ifndef QF_VERIFY_BASEFILE_H
#define QF_VERIFY_BASEFILE_H

#include "formats/baselogits.h"
#include "runtime/runtime.h"

/* The run a file is made in or used for. */
typedef struct qf_base_run {
    const char *text_path;
    const qf_vocab *vocab;
    uint32_t n_vocab;          /* logits per position */
    const int32_t *tokens;     /* the whole text's tokens */
    size_t n_tokens;
    uint32_t ctx, n_chunks, first;
    bool no_escape, act_q8, bos;
} qf_base_run;

/* SHA-256 identifying a model: a GGUF by the qforge digests it carries (header and every tensor), or by
 * all its bytes when it carries none; an HF checkpoint by qforge's source digest (its tensor table and
 * config/tokenizer files: the value qforge.source_sha256 records in files made from it). */
qf_status qf_base_identity(const qf_rt_model *m, uint8_t out[32], qf_error *err);

/* The header of a file for this run, from base model m (opened from `label`) keeping k tokens. */
qf_status qf_base_header(const qf_base_run *run, const qf_rt_model *m, const char *label, uint32_t k,
                         qf_baselogits_header *h, qf_error *err);

/* QF_OK when the file (path, header h) was made in this run's setting; otherwise QF_E_INPUT naming what
 * differs (text, tokens, vocabulary, ctx, chunks, --act, --no-escape). */
qf_status qf_base_check(const char *path, const qf_baselogits_header *h, const qf_base_run *run, qf_error *err);

#endif
