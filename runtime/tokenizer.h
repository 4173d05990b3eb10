/*
 * tokenizer.h — text to token ids, exactly as llama.cpp's llama_tokenize does it (src/llama-vocab.cpp),
 * from a qf_vocab (formats/vocab.h). Used by the reference runtime to reproduce llama-perplexity's token
 * stream, so the measuring instrument and qforge see the same ids.
 *
 * Models: "llama" (SentencePiece: U+2581 space escaping, dummy space prefix, score-ordered bigram merges,
 * <0xNN> byte fallback) and "gpt2" (BPE: the pre-tokenizer regexes llama.cpp names by tokenizer.ggml.pre,
 * run with PCRE2; merges by rank; byte-level BPE maps bytes to GPT-2's code points, while the
 * SentencePiece-style BPE of Gemma's tokenizer.json — pre "gemma4" / "granite-embed-multi-311m" — turns
 * spaces into U+2581, splits only at newline runs and falls back to <0xNN> tokens). Other models and
 * pre-tokenizers are refused with QF_E_UNSUPPORTED.
 *
 * Special tokens: qf_tokenize treats text that spells a control/unknown token as ordinary text
 * (llama-perplexity calls llama_tokenize with parse_special = false); user-defined tokens are still split
 * out first, as llama.cpp does. qf_tokenize_flags offers llama_tokenize's add_special and parse_special.
 *
 * Known differences from llama.cpp, all outside what real text exercises: Unicode categories come from
 * the PCRE2 build's Unicode version rather than llama.cpp's tables; invalid UTF-8 that llama.cpp decodes to
 * a surrogate or a code point above U+10FFFF becomes U+FFFD here (llama.cpp throws on the latter); the
 * lstrip/rstrip token attributes llama.cpp sets by model name (phi-3, jina) are not applied.
 */
#ifndef QF_TOKENIZER_H
#define QF_TOKENIZER_H

#include "formats/vocab.h"

typedef struct qf_tokenizer qf_tokenizer;

/* Build a tokenizer; it copies what it needs, so the vocab may be freed afterwards. Errors: QF_E_INPUT
 * for a malformed vocab (merge naming an unknown token, bad special id), QF_E_UNSUPPORTED for a model or
 * pre-tokenizer not handled, QF_E_NOMEM. *out is NULL on failure. */
qf_status qf_tokenizer_new(const qf_vocab *v, qf_tokenizer **out, qf_error *err);
void qf_tokenizer_free(qf_tokenizer *t);

/* Tokenize len bytes of UTF-8 (invalid sequences are tolerated as llama.cpp tolerates them). add_bos
 * prepends the BOS token when the vocab has one. *ids is malloc'd (never NULL on success, even for
 * n == 0); the caller frees it. Thread-safe for concurrent calls on one tokenizer. */
qf_status qf_tokenize(const qf_tokenizer *t, const char *text, size_t len, bool add_bos, int32_t **ids,
                      size_t *n, qf_error *err);

/* llama_tokenize's switches, for qf_tokenize_flags. */
enum {
    QF_TOKENIZE_ADD_SPECIAL = 1,   /* BOS / EOS where the vocab asks for them (qf_tokenizer_wants_bos/_eos) */
    QF_TOKENIZE_PARSE_SPECIAL = 2, /* text that spells a control or unknown token becomes that token */
};

/* As qf_tokenize, with llama_tokenize's add_special and parse_special as QF_TOKENIZE_* flags. */
qf_status qf_tokenize_flags(const qf_tokenizer *t, const char *text, size_t len, unsigned flags, int32_t **ids,
                            size_t *n, qf_error *err);

/* The token's piece as stored in the vocab (NUL-terminated), or NULL when id is out of range. */
const char *qf_token_text(const qf_tokenizer *t, int32_t id);
/* BOS id under llama.cpp's defaults (SPM: 1, BPE: 11 unless the vocab names one), or -1 when none. */
int32_t qf_tokenizer_bos(const qf_tokenizer *t);
uint32_t qf_tokenizer_n_vocab(const qf_tokenizer *t);
/* Whether llama.cpp would prepend BOS for this vocab (tokenizer.ggml.add_bos_token, else its per-model
 * default): what llama-perplexity does, so callers reproducing it pass this as add_bos. */
bool qf_tokenizer_wants_bos(const qf_tokenizer *t);
/* Whether llama.cpp would append EOS (tokenizer.ggml.add_eos_token; off by default). */
bool qf_tokenizer_wants_eos(const qf_tokenizer *t);

#endif
