/*
 * tokdata.h — tokenizer test data and helpers shared by test_vocab, test_tokenizer and tokcheck.
 *
 * llama.cpp's tokenizer test vectors (tests/test-tokenizer-0.cpp's files): NAME.inp holds the inputs,
 * each followed by "\n__ggml_vocab_test__\n" (the last one too); NAME.out holds one line per input, each
 * id written as a space and the decimal number.
 *
 * The released tokenizer families in ../shared/tokenizers (its README.md is the source of every value
 * below): the files as published, without config.json, so the model's config.json values the converter
 * also reads (vocab_size, bos/eos ids) are stated here.
 */
#ifndef QF_TOKDATA_H
#define QF_TOKDATA_H

#include "formats/vocab.h"
#include "runtime/tokenizer.h"

#include <stdio.h>

typedef struct qf_tok_vectors {
    char **inp;      /* inputs (NUL-terminated copies; inp_len holds the byte count) */
    size_t *inp_len;
    int32_t **ids;   /* expected ids per input; NULL when only inputs were loaded */
    size_t *n_ids;
    size_t n;
} qf_tok_vectors;

/* Inputs from inp_path and, unless out_path is NULL, the ids from out_path (as many lines as inputs).
 * false when a file cannot be read or the counts differ; *v is then freed. */
bool qf_tok_vectors_load(const char *inp_path, const char *out_path, qf_tok_vectors *v);
void qf_tok_vectors_free(qf_tok_vectors *v);
/* One .out line. */
void qf_tok_ids_write(FILE *f, const int32_t *ids, size_t n);


/* A whole file as a NUL-terminated string (malloc'd), or NULL. */
char *qf_test_read_text(const char *path, size_t *n);
/* A qf_file_reader over the directory ctx names, as the converter's source reads it. */
qf_status qf_test_dir_reader(void *ctx, const char *name, char **buf, size_t *len, qf_error *err);
/* config.json's vocab_size in dir, as the converter passes it (0 when absent). */
uint32_t qf_test_config_vocab_size(const char *dir);
/* The vocabulary alone in a GGUF (general.architecture llama), as the converter writes its keys. */
qf_status qf_test_write_vocab(const qf_vocab *v, const char *path, qf_error *err);
/* A GGUF's vocabulary and its tokenizer. */
qf_status qf_test_open_tokenizer(const char *path, qf_tokenizer **t, qf_error *err);

#define QF_TOK_MAX_LISTED 8

typedef struct qf_tok_family {
    const char *dir;          /* ../shared/tokenizers/<dir> */
    const char *arch;         /* config.json architectures[0] of the released model */
    const char *pre;          /* tokenizer.ggml.pre llama.cpp's converter writes for it */
    uint32_t vocab_size;      /* its config.json's vocab_size, bos_token_id, eos_token_id (-1: absent or a list) */
    int64_t bos_id, eos_id;
    /* Inputs (0-based) where llama.cpp, parse_special on, does not give expected.out (README: Qwen3's NFC
     * normalizer is not applied, '</s>' is forced CONTROL); -1 ends each list. */
    int llamacpp_deviations[QF_TOK_MAX_LISTED];
    /* Further inputs that differ with parse_special off: they spell control tokens (README). */
    int unparsed_deviations[QF_TOK_MAX_LISTED];
    /* Inputs whose ids do not decode back to the input: a literal U+2581 decodes to ' ' (Gemma). */
    int no_roundtrip[QF_TOK_MAX_LISTED];
    /* A control token no input spells: joins the inputs for one llama-tokenize call (llamacpp_tokenizers.sh). */
    const char *separator;
} qf_tok_family;

#define QF_TOK_N_FAMILIES 4
extern const qf_tok_family qf_tok_families[QF_TOK_N_FAMILIES];

bool qf_tok_listed(const int *list, int i);

/* A qf_file_reader over ../shared/tokenizers/<family dir>, with config.json made from the family's
 * values; ctx is a qf_tok_family_ctx. */
typedef struct qf_tok_family_ctx {
    const qf_tok_family *fam;
    char dir[4096];
} qf_tok_family_ctx;
qf_status qf_tok_family_reader(void *ctx, const char *name, char **buf, size_t *len, qf_error *err);

#endif
