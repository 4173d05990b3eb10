/*
 * arch.h — the architecture description the converter and the runtime share.
 *
 * One row per GGUF architecture: which Hugging Face classes map to it and how its tensors are named and
 * laid out. Model hyper-parameters come from config.json (qf_hparams_from_hf) or from a GGUF's
 * <arch>.* keys (qf_hparams_from_gguf), so the runtime can run either without conversion.
 */
#ifndef QF_ARCH_H
#define QF_ARCH_H

#include "formats/gguf.h"

/* What a tensor is for: recipes pick types by role, the runtime finds weights by role. */
typedef enum qf_role {
    QF_ROLE_OTHER = 0,
    QF_ROLE_TOKEN_EMBD, QF_ROLE_OUTPUT_NORM, QF_ROLE_OUTPUT, QF_ROLE_ROPE_FREQS,
    QF_ROLE_ATTN_NORM, QF_ROLE_ATTN_Q, QF_ROLE_ATTN_K, QF_ROLE_ATTN_V, QF_ROLE_ATTN_OUT,
    QF_ROLE_ATTN_Q_BIAS, QF_ROLE_ATTN_K_BIAS, QF_ROLE_ATTN_V_BIAS,
    QF_ROLE_FFN_NORM, QF_ROLE_FFN_GATE, QF_ROLE_FFN_UP, QF_ROLE_FFN_DOWN,
    QF_ROLE_COUNT
} qf_role;

typedef enum qf_rope_scaling {
    QF_ROPE_SCALING_NONE = 0, QF_ROPE_SCALING_LINEAR, QF_ROPE_SCALING_YARN, QF_ROPE_SCALING_LLAMA3
} qf_rope_scaling;

typedef struct qf_arch {
    const char *name;              /* GGUF general.architecture */
    const char *const *hf_classes; /* config.json "architectures" entries, NULL-terminated */
    bool permute_qk;               /* HF stores q/k rows in rotate-half order; ggml's normal rope wants
                                      pairs interleaved, so llama.cpp's converter permutes them */
    bool qkv_bias;                 /* q/k/v projections carry biases (Qwen2) */
} qf_arch;

typedef struct qf_hparams {
    const qf_arch *arch;
    char name[128];                /* general.name */
    uint32_t n_layer, n_embd, n_ff, n_head, n_head_kv, head_dim, n_vocab, n_ctx_train;
    bool head_dim_explicit;        /* config.json states head_dim (then key/value_length are written) */
    float rms_eps, rope_theta;
    bool tied_embeddings;
    qf_rope_scaling rope_scaling;
    float rope_factor;             /* linear / yarn / llama3 factor */
    uint32_t rope_orig_ctx;        /* yarn / llama3 original_max_position_embeddings */
    float rope_low_freq_factor, rope_high_freq_factor; /* llama3 */
    uint32_t fp8_block[2];         /* quantization_config.weight_block_size, {0,0} if absent */
} qf_hparams;

const qf_arch *qf_arch_by_name(const char *gguf_name);

/* Parse config.json text. `label` names the file in messages. */
qf_status qf_hparams_from_hf(const char *label, const char *json, size_t len, qf_hparams *hp, qf_error *err);
/* Only quantization_config.weight_block_size of a config.json ({0,0} when absent): sources need it
 * even for architectures qforge cannot convert (inspect). */
qf_status qf_hf_fp8_block(const char *label, const char *json, size_t len, uint32_t block[2], qf_error *err);
/* Write general.architecture and the <arch>.* hyper-parameter keys llama.cpp expects. */
qf_status qf_hparams_write_gguf(const qf_hparams *hp, qf_gguf_writer *w, qf_error *err);
/* Read them back from a GGUF. */
qf_status qf_hparams_from_gguf(const qf_gguf *g, qf_hparams *hp, qf_error *err);

/* Map an HF tensor name to its GGUF name and role. QF_E_NOTFOUND: the tensor is not part of the
 * inference graph and is dropped (e.g. rotary inv_freq buffers); QF_E_UNSUPPORTED: an unknown tensor
 * (message names it). `layer` receives the block index or -1. */
qf_status qf_arch_map_tensor(const qf_hparams *hp, const char *hf_name, char *out, size_t out_len,
                             qf_role *role, int *layer, qf_error *err);

/* Role and layer of a GGUF tensor name ("blk.3.attn_q.weight" -> ATTN_Q, 3); QF_ROLE_OTHER and -1 for
 * names outside the table. */
void qf_arch_role_from_gguf(const char *name, qf_role *role, int *layer);

/* GGUF name for a role (and layer), e.g. (QF_ROLE_ATTN_Q, 3) -> "blk.3.attn_q.weight". */
void qf_arch_tensor_name(qf_role role, int layer, char *out, size_t out_len);

/* Rows of the llama.cpp "rope_freqs.weight" tensor for llama3 rope scaling: head_dim/2 factors. */
void qf_rope_llama3_factors(const qf_hparams *hp, float *out);

#endif
