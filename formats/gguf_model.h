/*
 * gguf_model.h — a GGUF model's metadata, read and checked once for every command that takes one
 * (perplexity, verify, calibrate, and quantize/convert re-quantizing a GGUF), so that a file llama.cpp
 * would refuse to load is refused by all of them alike, and never copied into a new file.
 */
#ifndef QF_GGUF_MODEL_H
#define QF_GGUF_MODEL_H

#include "formats/arch.h"
#include "formats/vocab.h"

/* Hyper-parameters (qf_hparams_from_gguf: the architecture's keys, rope.dimension_count against the
 * head size, ...), the vocabulary (qf_vocab_load_gguf: the token list, token types, special ids
 * inside it), and their agreement: as many tokens as token_embd.weight has rows. Tensor names and
 * shapes are qf_tensor_map_gguf's part. Errors start with `label`. On success the caller frees *vocab. */
qf_status qf_gguf_model_meta(const qf_gguf *g, const char *label, qf_hparams *hp, qf_vocab *vocab, qf_error *err);

#endif
