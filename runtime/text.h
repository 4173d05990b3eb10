/*
 * text.h — evaluation and calibration text, read as llama.cpp's tools read `-f FILE`.
 */
#ifndef QF_RUNTIME_TEXT_H
#define QF_RUNTIME_TEXT_H

#include "qf_core.h"

/* Read a prompt file as llama-perplexity -f does: one trailing '\n' dropped, then (escape) backslash
 * escapes processed as llama.cpp's string_process_escapes does. *text is malloc'd and NUL-terminated. */
qf_status qf_text_load_prompt(const char *path, bool escape, char **text, size_t *len, qf_error *err);
/* The escape processing alone, in place; returns the new length. */
size_t qf_text_process_escapes(char *s, size_t len);

#endif
