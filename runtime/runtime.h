/*
 * runtime.h — the reference runtime: a llama-family forward pass (llama 1/2/3, Mistral, Qwen2) over
 * weights of any stored type, read where they lie (internal to libqforge; qforge.h exposes perplexity
 * and verify on top of it).
 *
 * A model is opened from a GGUF file (mmap'd; rows dequantized with the traits table) or from a Hugging
 * Face checkpoint through a tensor source (rows decoded to F32 by qf_source_rows, FP8 scales folded in).
 * No dequantized copy of a weight matrix is ever made: the matmul dequantizes a few rows at a time into
 * per-thread scratch. Only 1-D tensors (norm weights, biases, rope factors) are copied to F32 at open.
 *
 * Activations are stored feature-major: a matrix of `rows` features by `ld` token columns, element
 * (f, t) at [f * ld + t]. The token dimension is padded to a multiple of the matmul tile, so kernels run
 * whole tiles; padding columns hold finite junk nobody reads. Logits come out the same way: the logit of
 * vocabulary entry v for the j-th output token is at [v * ld + j].
 *
 * Determinism: every output element is one sequential F32 chain over its reduction (FMA per step in the
 * matmul, one fixed order elsewhere); threads split rows and heads, never a reduction, so results do not
 * depend on the thread count or on the ISA chosen (scalar fmaf matches the SIMD FMA bit for bit).
 */
#ifndef QF_RUNTIME_RUNTIME_H
#define QF_RUNTIME_RUNTIME_H

#include "formats/arch.h"
#include "formats/source.h"
#include "formats/vocab.h"
#include "kernels/qtypes.h"

/* A weight matrix of n_rows outputs by row_len inputs, wherever it is stored. */
typedef struct qf_rt_weight {
    uint64_t n_rows, row_len;
    const qf_qtype_traits *tt; /* GGUF: type of the rows; NULL for a source tensor */
    const uint8_t *data;       /* GGUF: first row, borrowed from the mapping */
    uint64_t row_bytes;        /* GGUF: bytes of one row */
    qf_source *src;            /* HF: the source and the tensor's index in it */
    size_t src_idx;
} qf_rt_weight;

typedef struct qf_rt_layer {
    float *attn_norm, *ffn_norm;     /* [n_embd] */
    float *bq, *bk, *bv;             /* [n_head*head_dim], [n_head_kv*head_dim] x2; NULL without biases */
    qf_rt_weight wq, wk, wv, wo, wg, wu, wd;
} qf_rt_layer;

typedef struct qf_rt_model {
    char label[512];          /* path for messages */
    qf_hparams hp;
    qf_vocab vocab;
    qf_gguf *gguf;            /* exactly one of gguf / src is set */
    qf_source *src;
    qf_rt_weight tok_embd, output;
    float *output_norm;       /* [n_embd] */
    float *rope_div;          /* [head_dim/2] frequency divisors (llama3 rope_freqs), NULL = all 1 */
    float rope_scale;         /* linear position scale (1/factor), 1 = none */
    bool rope_neox;           /* rotate-half pairs (i, i+hd/2) instead of adjacent pairs (2i, 2i+1) */
    qf_rt_layer *layers;
} qf_rt_model;

/* Open a model: a GGUF file, an HF directory / .safetensors / shard index, or an archive of one.
 * The model borrows nothing from the caller; close it with qf_rt_model_close. */
qf_status qf_rt_model_open(const char *path, qf_rt_model **out, qf_error *err);
void qf_rt_model_close(qf_rt_model *m);

/* Dequantize rows [r0, r0 + n) of w into dst[n][row_len]. Thread-safe once the model is open. */
void qf_rt_weight_rows(const qf_rt_weight *w, uint64_t r0, uint64_t n, float *dst);

/* The 8-bit path (rt_kern.h) takes Q8_0, Q4_K and Q6_K rows; other types stay on the F32 path. */
bool qf_rt_weight_has_q8(const qf_rt_weight *w);
/* Decode rows [r0, r0 + n) of such a weight into a panel of `rows` >= n rows: q (rows * row_len bytes)
 * and s (2 * rows * row_len / 16 floats), rows n .. rows-1 zeroed (levels and scales: kernels that read
 * whole panels get zeros there); levels unsigned, or signed when sgn (rt_kern.h: qf_rt_wq). Described in
 * *out. Thread-safe once the model is open. */
struct qf_rt_wq;
void qf_rt_weight_rows_q8(const qf_rt_weight *w, uint64_t r0, uint64_t n, uint64_t rows, bool sgn, uint8_t *q,
                          float *s, struct qf_rt_wq *out);

typedef struct qf_rt_ctx qf_rt_ctx;

/* An evaluation context: a pool of n_threads threads (the caller's thread is one of them), and
 *   n_batch < n_ctx:  KV cache for n_ctx positions, scratch for batches of up to n_batch tokens;
 *   n_batch >= n_ctx: n_batch / n_ctx sequences of up to n_ctx tokens per call (qf_rt_eval_seqs), run
 *                     through the layers in passes of P = max(1, 512 / n_ctx) sequences (as llama.cpp's
 *                     physical batch), with P KV cache slots of n_ctx positions (slot 0 also serves
 *                     qf_rt_eval).
 * Memory, in floats: logits n_vocab * n_batch; KV 2 * n_layer * n_head_kv * head_dim * P * n_ctx;
 * activations about (6 * n_embd + 6 * max(n_embd, n_ff)) per token of a pass. */
qf_status qf_rt_ctx_new(const qf_rt_model *m, uint32_t n_ctx, uint32_t n_batch, int n_threads, qf_rt_ctx **out,
                        qf_error *err);
void qf_rt_ctx_free(qf_rt_ctx *c);

/* Opt-in 8-bit path: every matmul input is quantized to 8 bits per block of 32 features (as llama.cpp
 * quantizes activations for Q8_0 weights) and multiplied with Q8_0 / Q4_K / Q6_K weights in integer
 * arithmetic; other weight types, attention and everything else stay F32. Faster, not exact: results
 * move by about as much as llama.cpp's differ from the exact F32 path. Still the same bits for any
 * thread count, batch size and ISA. Off by default. */
void qf_rt_ctx_set_act_q8(qf_rt_ctx *c, bool on);

/* Forget every cached position (start of a new sequence). */
void qf_rt_ctx_clear(qf_rt_ctx *c);

/* Run n tokens at positions pos0 .. pos0+n-1 (the cache must hold exactly positions < pos0). Logits
 * are computed for the batch tokens with index >= out_from only (n - out_from outputs, none if
 * out_from >= n); *logits receives them feature-major with leading dimension *ld (valid until the next
 * call). Token ids are checked against the vocabulary. */
qf_status qf_rt_eval(qf_rt_ctx *c, const int32_t *tokens, uint32_t n, uint32_t pos0, uint32_t out_from,
                     const float **logits, size_t *ld, qf_error *err);

/* Run n_seq independent sequences of len tokens (tokens[s * len + t]), each from position 0 of its own
 * cache slot, attending only to itself: the same bits as running them one by one with qf_rt_eval, while
 * every weight row read serves n_seq times more tokens. Logits come for tokens out_from .. len-1 of each
 * sequence: output j of sequence s in column s * (len - out_from) + j. The cache is left empty for
 * qf_rt_eval (start at position 0). */
qf_status qf_rt_eval_seqs(qf_rt_ctx *c, const int32_t *tokens, uint32_t n_seq, uint32_t len, uint32_t out_from,
                          const float **logits, size_t *ld, qf_error *err);

/* Called before every matrix product with its input: x holds row_len features of n tokens,
 * feature-major with leading dimension ld ((f, t) at x[f * ld + t]); under qf_rt_eval_seqs, once per
 * sequence. Weights that read the same input (q/k/v, gate/up) are reported with the same `call` number, so an observer can do per-input
 * work once. Calibration accumulates activation statistics through it. NULL removes the observer. */
typedef void (*qf_rt_observer)(void *user, const qf_rt_weight *w, uint64_t call, const float *x, size_t ld, uint32_t n);
void qf_rt_ctx_set_observer(qf_rt_ctx *c, qf_rt_observer fn, void *user);

/* Seconds spent inside qf_rt_eval since the context was made (forward pass only). */
double qf_rt_eval_seconds(const qf_rt_ctx *c);

/* Run fn(arg, i, n) on each of the context's n threads (i = 0 on the caller) and wait: lets scoring
 * code reuse the pool. The function must split its work by i alone (determinism). */
void qf_rt_parallel(qf_rt_ctx *c, void (*fn)(void *arg, int ith, int nth), void *arg);
int qf_rt_n_threads(const qf_rt_ctx *c);

#endif
