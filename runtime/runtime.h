/*
 * runtime.h — the runtime: a forward pass over every architecture of the table (formats/arch.h) with
 * weights of any stored type, read where they lie (internal to libqforge; qforge.h exposes perplexity,
 * verify and calibrate on top of it).
 *
 * A model is opened from a GGUF file (mmap'd; rows dequantized with the traits table) or from a Hugging
 * Face checkpoint through a tensor source (rows decoded to F32 by qf_source_rows, FP8 scales folded in).
 * No dequantized copy of a weight matrix is made, with one exception: an MLA layer's attn_k_b of a GGUF
 * file is stored transposed (for llama.cpp's absorbed attention) and is held once as F32 in the other
 * orientation (n_head * qk_nope * kv_lora floats per layer). 1-D tensors are copied to F32 at open.
 *
 * The forward pass (graph.c) is written in the operations of a backend (backend.h): matrix products
 * over a stored type, the expert-grouped product, attention, norms, rope, activations, buffers. The
 * CPU backend (cpu*.c) is the reference; the CUDA backend (cuda/) implements them on a GPU.
 *
 * Activations are stored feature-major: a matrix of `rows` features by `ld` token columns, element
 * (f, t) at [f * ld + t]. The token dimension is padded to a multiple of the matmul tile, so kernels run
 * whole tiles; padding columns hold finite junk nobody reads. Logits come out the same way: the logit of
 * vocabulary entry v for the j-th output token is at [v * ld + j].
 *
 * Determinism: every output element is one sequential F32 chain over its reduction (FMA per step in the
 * matmul, one fixed order elsewhere); threads split rows and heads, never a reduction, so results do not
 * depend on the thread count or on the ISA chosen (scalar fmaf matches the SIMD FMA bit for bit). A
 * token's routed experts are summed in ascending expert order whatever the threads do. The CUDA backend
 * keeps these bits (runtime/cuda/cu_kernels.h) except in products over 8 token columns or fewer, which it
 * sums in a tree (a warp per row): equal up to rounding.
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
    const qf_qtype_traits *tt; /* GGUF (or a copy the model owns): type of the rows; NULL for a source tensor */
    const uint8_t *data;       /* GGUF: first row, borrowed from the mapping (or owned, see runtime.h) */
    uint64_t row_bytes;        /* GGUF: bytes of one row */
    qf_source *src;            /* HF: the source and the tensor's index in it */
    size_t src_idx;
    /* row map (MLA from HF: the k or v rows of each head of kv_b_proj): logical row r is stored row
     * (r / group) * stride + offset + r % group; group 0 = rows as stored */
    uint32_t group, stride, offset;
    int expert;                /* expert index within its layer's stack, or -1 */
    qf_role role;              /* what it is, for observers and messages */
    int layer;
} qf_rt_weight;

typedef struct qf_rt_attn {
    float *norm;                      /* [n_embd] */
    /* GQA */
    qf_rt_weight wq, wk, wv, wo;
    float *bq, *bk, *bv;              /* biases, NULL without them */
    float *q_norm, *k_norm;           /* per-head RMSNorm weights [head_dim], NULL without them */
    /* MLA: q = wq_b(norm(wq_a x)) or wq x; [kv_c | k_pe] = wkv_a x; k_nope = wkb norm(kv_c), v = wvb norm(kv_c) */
    qf_rt_weight wq_a, wq_b, wkv_a, wkb, wvb;
    float *q_a_norm, *kv_a_norm;
    void *owned;                      /* wkb's transposed copy, when the model made one */
} qf_rt_attn;

typedef struct qf_rt_ffn {
    float *norm;                      /* [n_embd] */
    qf_rt_weight wg, wu, wd;          /* the dense FFN, or a MoE layer's shared expert (n_rows 0 without) */
    bool moe;
    qf_rt_weight router;              /* [n_expert] x n_embd */
    float *expert_bias;               /* [n_expert] selection bias, or NULL */
    qf_rt_weight *eg, *eu, *ed;       /* [n_expert] each: the experts' gate, up, down */
    qf_rt_weight shexp_gate;          /* 1 x n_embd sigmoid gate of the shared expert, n_rows 0 without */
} qf_rt_ffn;

typedef struct qf_rt_layer {
    qf_rt_attn a;
    qf_rt_ffn f;
} qf_rt_layer;

typedef struct qf_rt_model {
    char label[512];          /* path for messages */
    qf_hparams hp;
    qf_vocab vocab;
    qf_gguf *gguf;            /* exactly one of gguf / src is set */
    qf_source *src;
    qf_rt_weight tok_embd, output;
    float *output_norm;       /* [n_embd] */
    double *rope_freq;        /* [n_rot / 2] angle per position of each rotary pair (scalings applied) */
    float rope_mscale;        /* cos/sin magnitude (YaRN), 1 = none */
    float attn_scale;         /* softmax scale of q.k */
    bool rope_neox;           /* rotate-half pairs (i, i + n_rot/2) instead of adjacent pairs (2i, 2i+1) */
    qf_rt_layer *layers;
} qf_rt_model;

/* Open a model: a GGUF file, an HF directory / .safetensors / shard index, or an archive of one.
 * The model borrows nothing from the caller; close it with qf_rt_model_close. */
qf_status qf_rt_model_open(const char *path, qf_rt_model **out, qf_error *err);
void qf_rt_model_close(qf_rt_model *m);

/* Dequantize rows [r0, r0 + n) of w into dst[n][row_len]. Thread-safe once the model is open. */
void qf_rt_weight_rows(const qf_rt_weight *w, uint64_t r0, uint64_t n, float *dst);

/* The 8-bit path (rt_kern.h) takes the types whose traits say int8_path (Q8_0, Q4_K, Q6_K: their
 * decoders are below); other types stay on the F32 path. */
bool qf_rt_weight_has_q8(const qf_rt_weight *w);
/* Decode rows [r0, r0 + n) of such a weight into a panel of `rows` >= n rows: q (rows * row_len bytes)
 * and s (2 * rows * row_len / 16 floats), rows n .. rows-1 zeroed (levels and scales: kernels that read
 * whole panels get zeros there); levels unsigned, or signed when sgn (rt_kern.h: qf_rt_wq). Described in
 * *out. Thread-safe once the model is open. */
struct qf_rt_wq;
void qf_rt_weight_rows_q8(const qf_rt_weight *w, uint64_t r0, uint64_t n, uint64_t rows, bool sgn, uint8_t *q,
                          float *s, struct qf_rt_wq *out);

/* Every weight matrix of the model in a fixed order (layer by layer, experts in order), for callers
 * that treat them alike (calibration). Returns the count; out may be NULL to count. */
size_t qf_rt_model_weights(const qf_rt_model *m, const qf_rt_weight **out);

typedef struct qf_rt_ctx qf_rt_ctx;

/* An evaluation context: a pool of n_threads threads (the caller's thread is one of them), and
 *   n_batch < n_ctx:  KV cache for n_ctx positions, scratch for batches of up to n_batch tokens;
 *   n_batch >= n_ctx: n_batch / n_ctx sequences of up to n_ctx tokens per call (qf_rt_eval_seqs), run
 *                     through the layers in passes of P = max(1, 1024 / n_ctx) sequences, with P KV
 *                     cache slots of n_ctx positions (slot 0 also serves qf_rt_eval).
 * Memory, in floats: logits n_vocab * n_batch; KV n_layer * n_head_kv * (dk + dv) * P * n_ctx;
 * activations a few times the widest layer (attention, FFN, experts) per token of a pass. */
qf_status qf_rt_ctx_new(const qf_rt_model *m, uint32_t n_ctx, uint32_t n_batch, int n_threads, qf_rt_ctx **out,
                        qf_error *err);
void qf_rt_ctx_free(qf_rt_ctx *c);

/* The backend a run takes (CPU or CUDA, never AUTO): cpu_only says the run asks for something only the
 * CPU backend does (the 8-bit activations), which AUTO then keeps on the CPU and CUDA refuses
 * (QF_E_USAGE); CUDA without a usable device is QF_E_UNSUPPORTED naming why. The choice is told to
 * o->on_choice by qf_rt_backend_announce, which runs call when their work starts (after every input is
 * checked, so that a refused input stays a one-line error). */
typedef struct qf_rt_backend_choice {
    qf_backend got;
    char why[256];      /* AUTO stayed on the CPU: why; "" otherwise */
    char device[256];   /* CUDA: the device; "" otherwise */
} qf_rt_backend_choice;
qf_status qf_rt_backend_pick(const qf_backend_opts *o, bool cpu_only, qf_rt_backend_choice *c, qf_error *err);
void qf_rt_backend_announce(const qf_backend_opts *o, const qf_rt_backend_choice *c);

/* A context on a chosen backend: qf_rt_ctx_new (or qf_rt_ctx_new_layer_major, below) on the CPU are this
 * with backend QF_BACKEND_CPU. Threads serve the CPU backend's products and qf_rt_parallel either way. */
typedef struct qf_rt_ctx_opts {
    uint32_t n_ctx, n_batch;
    int n_threads;
    bool layer_major;
    qf_backend backend;     /* CPU or CUDA (qf_rt_backend_pick) */
} qf_rt_ctx_opts;
qf_status qf_rt_ctx_open(const qf_rt_model *m, const qf_rt_ctx_opts *o, qf_rt_ctx **out, qf_error *err);
qf_backend qf_rt_ctx_backend(const qf_rt_ctx *c);

/* Opt-in 8-bit path of the CPU backend (other backends ignore it): every matmul input is quantized to 8
 * bits per block of 32 features (as llama.cpp quantizes activations for Q8_0 weights) and multiplied
 * with Q8_0 / Q4_K / Q6_K weights in integer arithmetic; other weight types, attention and everything
 * else stay F32. Faster, not exact: results move by about as much as llama.cpp's differ from the exact
 * F32 path. Still the same bits for any thread count, batch size and ISA. Off by default. */
void qf_rt_ctx_set_act_q8(qf_rt_ctx *c, bool on);

/* Forget every cached position (start of a new sequence). */
void qf_rt_ctx_clear(qf_rt_ctx *c);

/* Run n tokens at positions pos0 .. pos0+n-1 (the cache must hold exactly positions < pos0). Logits
 * are computed for the batch tokens with index >= out_from only (n - out_from outputs, none if
 * out_from >= n); *logits receives them feature-major with leading dimension *ld (valid until the next
 * call). Token ids are checked against the vocabulary. A non-finite value anywhere in the pass is an
 * error (QF_E_CHECK) naming the first layer and tensor where it appeared. */
qf_status qf_rt_eval(qf_rt_ctx *c, const int32_t *tokens, uint32_t n, uint32_t pos0, uint32_t out_from,
                     const float **logits, size_t *ld, qf_error *err);

/* Run n_seq independent sequences of len tokens (tokens[s * len + t]), each from position 0 of its own
 * cache slot, attending only to itself: the same bits as running them one by one with qf_rt_eval, while
 * every weight row read serves n_seq times more tokens. Logits come for tokens out_from .. len-1 of each
 * sequence: output j of sequence s in column s * (len - out_from) + j. The cache is left empty for
 * qf_rt_eval (start at position 0). */
qf_status qf_rt_eval_seqs(qf_rt_ctx *c, const int32_t *tokens, uint32_t n_seq, uint32_t len, uint32_t out_from,
                          const float **logits, size_t *ld, qf_error *err);

/* What a calibration (or any other) observer is told, from the thread driving the run:
 *   matmul: before every matrix product, its input x (row_len features of n tokens, feature-major with
 *     leading dimension ld); under qf_rt_eval_seqs once per sequence; for a routed expert once per
 *     expert with exactly the tokens routed to it. Weights that read the same input (q/k/v, gate/up)
 *     are reported with the same `call` number, so per-input work can be done once.
 *   route: after a MoE layer's routing, per real token (padding never reported) the n_used experts it
 *     selected (experts[t * n_used + k]), in the order of selection. */
typedef struct qf_rt_observer {
    void (*matmul)(void *user, const qf_rt_weight *w, uint64_t call, const float *x, size_t ld, uint32_t n);
    void (*route)(void *user, int layer, const uint16_t *experts, uint32_t n_used, uint32_t n_tokens);
    /* head: MLA's per-head matrices as llama.cpp's absorbed attention applies them (this runtime's
     *   expanded form multiplies the latent instead): attn_k_b (w = the layer's wkb) to head h's q_nope,
     *   qk_nope_dim features; attn_v_b (wvb) to head h's attention-weighted latent, kv_lora_rank
     *   features, computed only while this callback is set and only for passes from position 0. */
    void (*head)(void *user, const qf_rt_weight *w, uint32_t h, const float *x, size_t ld, uint32_t n);
    void *user;
} qf_rt_observer;
/* NULL removes the observer. One with `head` set on an MLA model makes the context hold the latent
 * attention outputs (n_head x kv_lora_rank per token); without the memory for them the next eval fails. */
void qf_rt_ctx_set_observer(qf_rt_ctx *c, const qf_rt_observer *obs);

/* ---- layer-major evaluation ----------------------------------------------------------------------
 * A context from qf_rt_ctx_new_layer_major holds the hidden state of a group of sequences of n_ctx tokens
 * (in passes of qf_rt_ctx_pass_seqs sequences, as qf_rt_eval_seqs runs them) and a KV cache of one layer:
 *   qf_rt_lm_reserve(n)   room for groups of up to n sequences
 *   qf_rt_lm_begin        embed a group (tokens[s * n_ctx + t])
 *   qf_rt_lm_layer(l)     every pass of the group through layer l, l = 0 .. n_layer-1 in order; the
 *                         layer's weights are released after it (mapped pages dropped: they fault back
 *                         in, from the page cache or the file, if a later group reads them)
 *   qf_rt_lm_logits(p)    pass p's logits for tokens out_from .. n_ctx-1 of each of its sequences,
 *                         output j of its k-th sequence (sequence *seq0 + k) in column k * (n_ctx -
 *                         out_from) + j, valid until the next call
 * The same bits as qf_rt_eval_seqs over the same sequences, and observers are told the same things in
 * the same order per weight (a weight belongs to one layer). qf_rt_eval / qf_rt_eval_seqs refuse such a
 * context, and these calls refuse the others. n_batch sets the pass width as for qf_rt_ctx_new (at least
 * one whole sequence). */
qf_status qf_rt_ctx_new_layer_major(const qf_rt_model *m, uint32_t n_ctx, uint32_t n_batch, int n_threads,
                                    qf_rt_ctx **out, qf_error *err);
uint32_t qf_rt_ctx_pass_seqs(const qf_rt_ctx *c);
uint64_t qf_rt_ctx_bytes(const qf_rt_ctx *c);       /* buffers the context holds */
uint64_t qf_rt_lm_pass_bytes(const qf_rt_ctx *c);   /* the hidden state of one pass */
qf_status qf_rt_lm_reserve(qf_rt_ctx *c, uint32_t n_seq, qf_error *err);
qf_status qf_rt_lm_begin(qf_rt_ctx *c, const int32_t *tokens, uint32_t n_seq, qf_error *err);
qf_status qf_rt_lm_layer(qf_rt_ctx *c, uint32_t l, qf_error *err);
uint32_t qf_rt_lm_passes(const qf_rt_ctx *c);
qf_status qf_rt_lm_logits(qf_rt_ctx *c, uint32_t pass, uint32_t out_from, const float **logits, size_t *ld,
                          uint32_t *seq0, uint32_t *n_seq, qf_error *err);
/* Keep every layer's weights resident (no release after a layer): for callers that run the same layers
 * many times over (sensitivity measurement). */
void qf_rt_lm_keep_weights(qf_rt_ctx *c, bool keep);
/* dst continues from where src's group stands: its sequences and hidden states (same model, n_ctx and
 * pass width; dst reserved for the group). The next qf_rt_lm_layer of dst may be any layer. */
qf_status qf_rt_lm_copy(qf_rt_ctx *dst, const qf_rt_ctx *src, qf_error *err);

/* Paging a model one layer at a time (layer -1: the embedding and the output projection). Bytes of the
 * layer's weights as stored (what reading it touches); bytes of the copies the model holds in memory
 * (MLA's transposed k_b). Acquire makes a released layer readable from every thread again (sources
 * whose tensors are prepared); release drops its mapped pages (never a copy, never an archive's). */
uint64_t qf_rt_layer_bytes(const qf_rt_model *m, int layer);
uint64_t qf_rt_model_owned_bytes(const qf_rt_model *m);
uint64_t qf_rt_output_bytes(const qf_rt_model *m);  /* the output projection alone */
/* The file offsets [*lo, *hi) layer `layer`'s stored weights span within the model's file (a GGUF; of a
 * split set the first part); false when none lies in it. */
bool qf_rt_layer_file_span(const qf_rt_model *m, int layer, uint64_t *lo, uint64_t *hi);

/* The SHA-256 of the model's file (a report's identity of it), taken front to back in step with a
 * layer-major run: before layer l runs, qf_rt_digest_layer hashes the file up to the layer's end through
 * the mapping the layer then reads, so a file larger than RAM is read from disk once, not twice. Pages it
 * touched that are not the layer's are dropped as it goes (the layer drops its own after its pass).
 * Open gives NULL (and QF_OK) when the path is not a regular file. A model that is not a GGUF mapping is
 * hashed by reading the file at finish. */
typedef struct qf_rt_digest qf_rt_digest;
qf_status qf_rt_digest_open(const qf_rt_model *m, const char *path, qf_rt_digest **out, qf_error *err);
qf_status qf_rt_digest_layer(qf_rt_digest *d, int layer, qf_error *err);
qf_status qf_rt_digest_finish(qf_rt_digest *d, char hex[65], qf_error *err); /* the rest; frees d */
void qf_rt_digest_free(qf_rt_digest *d);
qf_status qf_rt_model_acquire(const qf_rt_model *m, int layer, qf_error *err);
void qf_rt_model_release(const qf_rt_model *m, int layer);

/* layer_major.c: MemAvailable in bytes (QF_MEM_AVAILABLE overrides it), 0 unknown; the decision (fills
 * info's on, automatic, weights_bytes, layer_bytes, mem_available, limit); with the layer-major contexts
 * made (one per model, same n_ctx and n_batch), the groups: the rest of info, and each context's
 * hidden store reserved. QF_E_USAGE when the bound cannot hold one pass. */
uint64_t qf_rt_mem_available(void);
void qf_rt_lm_decide(const qf_rt_model *const *m, int n, const qf_layer_major_opts *o, qf_layer_major_info *info);
qf_status qf_rt_lm_plan(qf_rt_ctx *const *c, const qf_rt_model *const *m, int n, uint32_t n_chunks,
                        const qf_layer_major_opts *o, qf_layer_major_info *info, qf_error *err);

/* Seconds spent inside qf_rt_eval since the context was made (forward pass only). */
double qf_rt_eval_seconds(const qf_rt_ctx *c);

/* Run fn(arg, i, n) on each of the context's n threads (i = 0 on the caller) and wait: lets scoring
 * code reuse the pool. The function must split its work by i alone (determinism). */
void qf_rt_parallel(qf_rt_ctx *c, void (*fn)(void *arg, int ith, int nth), void *arg);
int qf_rt_n_threads(const qf_rt_ctx *c);

#endif
