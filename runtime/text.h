/*
 * text.h — evaluation and calibration text, read as llama.cpp's tools read `-f FILE`.
 */
#ifndef QF_RUNTIME_TEXT_H
#define QF_RUNTIME_TEXT_H

#include "qf_core.h"
#include "formats/vocab.h"

/* Read a prompt file as llama-perplexity -f does: one trailing '\n' dropped, then (escape) backslash
 * escapes processed as llama.cpp's string_process_escapes does. *text is malloc'd and NUL-terminated. */
qf_status qf_text_load_prompt(const char *path, bool escape, char **text, size_t *len, qf_error *err);
/* A text file as the evaluation tools tokenize it: read as qf_text_load_prompt reads it, tokenized with
 * the vocabulary's tokenizer, BOS first where the vocabulary asks for one (*add_bos, *bos: -1 without).
 * *tokens is malloc'd. */
qf_status qf_text_tokens(const qf_vocab *v, const char *label, const char *path, bool escape, int32_t **tokens,
                         size_t *n, bool *add_bos, int32_t *bos, qf_error *err);
/* The escape processing alone, in place; returns the new length. */
size_t qf_text_process_escapes(char *s, size_t len);

#endif
