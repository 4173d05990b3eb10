/*
 * vocab.h — a model's tokenizer vocabulary as GGUF stores it (tokenizer.ggml.*), built from Hugging
 * Face files (tokenizer.json, tokenizer.model, tokenizer_config.json, special_tokens_map.json,
 * added_tokens.json, config.json) or read back from a GGUF.
 *
 * Models: "llama" = SentencePiece (scores, byte-fallback tokens <0xNN>) from tokenizer.model; "gpt2" = BPE
 * from tokenizer.json (merges, pre-tokenizer named by tokenizer.ggml.pre as llama.cpp spells it): byte-level
 * BPE, or the SentencePiece-style BPE Gemma 3 ships (pre "granite-embed-multi-311m", as llama.cpp's converter
 * names it for that vocabulary).
 */
#ifndef QF_VOCAB_H
#define QF_VOCAB_H

#include "formats/gguf.h"

/* llama.cpp's token types (tokenizer.ggml.token_type). */
enum { QF_TOK_NORMAL = 1, QF_TOK_UNKNOWN = 2, QF_TOK_CONTROL = 3, QF_TOK_USER_DEFINED = 4,
       QF_TOK_UNUSED = 5, QF_TOK_BYTE = 6 };

typedef struct qf_vocab {
    char model[16];          /* tokenizer.ggml.model */
    char pre[32];            /* tokenizer.ggml.pre ("" = not written) */
    uint32_t n_tokens;
    char **tokens;           /* UTF-8 pieces, NUL-terminated */
    float *scores;           /* NULL when the model has none */
    int32_t *types;
    uint64_t n_merges;
    char **merges;           /* "left right" pairs, BPE only */
    int64_t bos_id, eos_id, unk_id, pad_id, eot_id; /* -1 when absent */
    int8_t add_bos, add_eos; /* -1 = not stated */
    int8_t add_space_prefix; /* -1 = not stated */
    char *chat_template;     /* NULL when absent */
    /* Further keys llama.cpp's converter writes (SpecialVocab): tokenizer.ggml.seperator_token_id,
     * mask_token_id, eom_token_id (-1 when absent) and add_sep_token (-1 = not stated). */
    int64_t sep_id, mask_id, eom_id;
    int8_t add_sep;
} qf_vocab;

/* Reads side files by name; returns QF_E_NOTFOUND when the file does not exist. */
typedef qf_status (*qf_file_reader)(void *ctx, const char *name, char **buf, size_t *len, qf_error *err);

/* Build from HF files. vocab_size: config.json's vocab_size (0 if unknown); the vocabulary is padded
 * with unused "[PAD<i>]" tokens up to it, as llama.cpp's converter does. */
qf_status qf_vocab_load_hf(qf_file_reader rd, void *ctx, uint32_t vocab_size, qf_vocab *out, qf_error *err);
qf_status qf_vocab_load_gguf(const qf_gguf *g, qf_vocab *out, qf_error *err);
qf_status qf_vocab_write_gguf(const qf_vocab *v, qf_gguf_writer *w, qf_error *err);
void qf_vocab_free(qf_vocab *v);

#endif
