/*
 * arch.h — what a model architecture is, as data the converter, the plan, the runtime and the
 * calibrator all read.
 *
 * An architecture is one row of the table in arch.c: the Hugging Face classes it covers, its GGUF
 * name, the rules that name its tensors (HF -> GGUF, including N expert tensors stacked into one 3-D
 * GGUF tensor and DeepSeek's kv_b_proj split into attn_k_b / attn_v_b), its layer kinds (attention:
 * GQA or MLA; FFN: dense or mixture-of-experts with its router) and how its rotary pairs are laid out.
 * Model hyper-parameters come from config.json or from a GGUF's <arch>.* keys (hparams.c), so every
 * stage can read either. The tensors a model must have, with their GGUF shapes, follow from the row
 * and the hyper-parameters (tensor_map.c), for HF sources and GGUF files alike.
 */
#ifndef QF_ARCH_H
#define QF_ARCH_H

#include "formats/gguf.h"

/* What a tensor is for: recipes pick types by role, the runtime finds weights by role. The GGUF name
 * of each role is in arch.c's role table (blk.N.<suffix> for per-layer roles). */
typedef enum qf_role {
    QF_ROLE_OTHER = 0,
    QF_ROLE_TOKEN_EMBD, QF_ROLE_OUTPUT_NORM, QF_ROLE_OUTPUT, QF_ROLE_ROPE_FREQS,
    /* attention, both kinds */
    QF_ROLE_ATTN_NORM, QF_ROLE_ATTN_Q, QF_ROLE_ATTN_OUT,
    /* GQA */
    QF_ROLE_ATTN_K, QF_ROLE_ATTN_V,
    QF_ROLE_ATTN_Q_BIAS, QF_ROLE_ATTN_K_BIAS, QF_ROLE_ATTN_V_BIAS,
    QF_ROLE_ATTN_Q_NORM, QF_ROLE_ATTN_K_NORM,
    /* MLA (multi-head latent attention) */
    QF_ROLE_ATTN_Q_A, QF_ROLE_ATTN_Q_A_NORM, QF_ROLE_ATTN_Q_B,
    QF_ROLE_ATTN_KV_A_MQA, QF_ROLE_ATTN_KV_A_NORM, QF_ROLE_ATTN_K_B, QF_ROLE_ATTN_V_B,
    QF_ROLE_ATTN_KV_B, /* the unsplit kv_b of old GGUF files: read, never written */
    /* FFN, dense */
    QF_ROLE_FFN_NORM, QF_ROLE_FFN_GATE, QF_ROLE_FFN_UP, QF_ROLE_FFN_DOWN,
    /* FFN, mixture of experts */
    QF_ROLE_FFN_GATE_INP, QF_ROLE_FFN_EXP_PROBS_B,
    QF_ROLE_FFN_GATE_EXPS, QF_ROLE_FFN_UP_EXPS, QF_ROLE_FFN_DOWN_EXPS,
    QF_ROLE_FFN_GATE_SHEXP, QF_ROLE_FFN_UP_SHEXP, QF_ROLE_FFN_DOWN_SHEXP, QF_ROLE_FFN_GATE_INP_SHEXP,
    QF_ROLE_COUNT
} qf_role;

typedef enum qf_rope_scaling {
    QF_ROPE_SCALING_NONE = 0, QF_ROPE_SCALING_LINEAR, QF_ROPE_SCALING_YARN, QF_ROPE_SCALING_LLAMA3
} qf_rope_scaling;

typedef enum qf_attn_kind { QF_ATTN_GQA = 0, QF_ATTN_MLA } qf_attn_kind;

/* How the two members of a rotary pair sit in a head: adjacent (2i, 2i+1; ggml's "normal" rope) or
 * half a rotated span apart (i, i + n_rot/2; "neox", HF's rotate-half). */
typedef enum qf_rope_pairs { QF_ROPE_ADJACENT = 0, QF_ROPE_NEOX } qf_rope_pairs;

/* Expert scoring (llama.cpp's expert_gating_func values: 1 softmax, 2 sigmoid). */
typedef enum qf_gating { QF_GATING_SOFTMAX = 1, QF_GATING_SIGMOID = 2 } qf_gating;

/* Whether the selected experts' weights are renormalised to sum 1: a fixed fact of some families in
 * llama.cpp, read from config/GGUF for the others. */
typedef enum qf_moe_norm { QF_MOE_NORM_KEY = 0, QF_MOE_NORM_ALWAYS, QF_MOE_NORM_NEVER } qf_moe_norm;

/* Group score of group-limited routing: the sum of each group's two best (DeepSeek-V3 noaux_tc, and
 * what llama.cpp computes for every deepseek2 file) or its best alone (DeepSeek-V2
 * group_limited_greedy). */
typedef enum qf_group_score { QF_GROUP_TOP2_SUM = 0, QF_GROUP_MAX } qf_group_score;

/* How HF tensors become GGUF tensors. */
typedef enum qf_map_kind {
    QF_MAP_COPY = 0,     /* one source, same rows */
    QF_MAP_STACK,        /* N sources (one per expert, "{E}" in the pattern) stacked into a 3-D tensor */
    QF_MAP_HEAD_ROWS,    /* MLA attn_v_b: the v rows of each head of kv_b_proj */
    QF_MAP_HEAD_COLS,    /* MLA attn_k_b: the nope rows of each head of kv_b_proj, transposed */
} qf_map_kind;

/* One HF -> GGUF naming rule. Per-layer patterns are the part after "model.layers.<N>."; "{E}" stands
 * for an expert index. Several rules may match one HF name (one-to-many). */
typedef struct qf_name_rule {
    const char *hf;
    qf_role role;
    qf_map_kind map;
} qf_name_rule;

typedef struct qf_arch {
    const char *name;                  /* GGUF general.architecture */
    const char *const *hf_classes;     /* config.json "architectures" entries, NULL-terminated */
    const qf_name_rule *layer_rules;   /* terminated by a rule with hf == NULL */
    qf_attn_kind attn;
    bool moe;                          /* FFN layers may be mixture-of-experts (from the leading dense count on) */
    qf_rope_pairs hf_pairs;            /* rotary pair layout of the HF checkpoint's q/k rows */
    qf_rope_pairs gguf_pairs;          /* what llama.cpp's rope for this GGUF arch expects */
    bool qkv_bias;                     /* q/k/v projections carry biases (Qwen2) */
    bool qk_norm;                      /* per-head RMSNorm of q and k before rope (Qwen3) */
    bool shexp_gate;                   /* a sigmoid gate scales the shared expert (Qwen2-MoE) */
    qf_moe_norm moe_norm;
    bool mtp_layers;                   /* layers numbered from num_hidden_layers on are multi-token
                                          prediction blocks: skipped, as llama.cpp skips them */
} qf_arch;

/* Limits on routing that every stage relies on (bounded per-token work and buffers). */
#define QF_MAX_EXPERTS 65536
#define QF_MAX_EXPERTS_USED 256
#define QF_MAX_EXPERT_GROUPS 256

typedef struct qf_hparams {
    const qf_arch *arch;
    char name[128];                /* general.name */
    uint32_t n_layer, n_embd, n_ff, n_head, n_head_kv, head_dim, n_vocab, n_ctx_train;
    bool head_dim_explicit;        /* config.json states head_dim (then key/value_length are written) */
    float rms_eps, rope_theta;
    bool tied_embeddings;
    uint32_t n_rot;                /* rotated dimensions per head: head_dim, or MLA's qk_rope_head_dim */
    qf_rope_pairs hf_pairs;        /* the HF checkpoint's pair layout (the arch's, or config's rope_interleave) */
    qf_rope_scaling rope_scaling;
    float rope_factor;             /* linear / yarn / llama3 factor */
    uint32_t rope_orig_ctx;        /* yarn / llama3 original_max_position_embeddings */
    float rope_low_freq_factor, rope_high_freq_factor; /* llama3 */
    float yarn_beta_fast, yarn_beta_slow; /* yarn correction range (defaults 32, 1) */
    float yarn_mscale, yarn_mscale_all_dim; /* DeepSeek's YaRN magnitude terms (0 = absent) */
    /* MLA */
    uint32_t q_lora_rank;          /* 0: q is one projection (DeepSeek-V2-Lite) */
    uint32_t kv_lora_rank, qk_nope_dim, qk_rope_dim, v_head_dim;
    /* mixture of experts */
    uint32_t n_expert, n_expert_used, n_ff_exp, n_ff_shexp, n_expert_shared, n_layer_dense_lead;
    uint32_t n_expert_group, n_expert_group_used;
    qf_gating gating;
    bool expert_weights_norm;
    float expert_weights_scale;    /* routed_scaling_factor; 0 = none */
    bool expert_bias;              /* selection bias per expert (e_score_correction_bias -> exp_probs_b) */
    qf_group_score group_score;
    uint32_t n_mtp_layers;         /* num_nextn_predict_layers (skipped) */
    uint32_t fp8_block[2];         /* quantization_config.weight_block_size, {0,0} if absent */
} qf_hparams;

const qf_arch *qf_arch_by_name(const char *gguf_name);
/* The i-th row of the table, NULL past the end (help texts, tests). */
const qf_arch *qf_arch_at(size_t i);

/* ---- hyper-parameters (hparams.c) ------------------------------------------------------------------ */

/* Parse config.json text. `label` names the file in messages. */
qf_status qf_hparams_from_hf(const char *label, const char *json, size_t len, qf_hparams *hp, qf_error *err);
/* Only quantization_config.weight_block_size of a config.json ({0,0} when absent): sources need it
 * even for architectures qforge cannot convert (inspect). */
qf_status qf_hf_fp8_block(const char *label, const char *json, size_t len, uint32_t block[2], qf_error *err);
/* Write general.architecture and the <arch>.* hyper-parameter keys llama.cpp expects. */
qf_status qf_hparams_write_gguf(const qf_hparams *hp, qf_gguf_writer *w, qf_error *err);
/* Read them back from a GGUF. */
qf_status qf_hparams_from_gguf(const qf_gguf *g, qf_hparams *hp, qf_error *err);

/* How a model ranks expert groups when it is not DeepSeek-V3's (top-2 sum) rule, which is the only one
 * llama.cpp has: "max" (V2's group_limited_greedy). Read by qforge's runtime; llama.cpp ignores it. */
#define QF_KEY_EXPERT_GROUP_SCORE "qforge.expert_group_score"
/* True when the group limit restricts nothing (every group stays selectable): written as ungrouped. */
static inline bool qf_hparams_groups_inert(const qf_hparams *hp) {
    return hp->n_expert_group > 1 && hp->n_expert_group_used >= hp->n_expert_group;
}
/* True when llama.cpp routes this model's tokens otherwise than the model does (conversion warns). */
static inline bool qf_hparams_llamacpp_routes_otherwise(const qf_hparams *hp) {
    return hp->n_expert_group > 1 && !qf_hparams_groups_inert(hp) && hp->group_score == QF_GROUP_MAX;
}

/* Rows of the llama.cpp "rope_freqs.weight" tensor for llama3 rope scaling: head_dim/2 factors. */
void qf_rope_llama3_factors(const qf_hparams *hp, float *out);

/* The layer kinds. */
static inline bool qf_layer_is_moe(const qf_hparams *hp, int layer) {
    return hp->arch->moe && hp->n_expert > 0 && layer >= (int)hp->n_layer_dense_lead;
}
/* Per-head q/k width of the attention (MLA: nope + rope for q/k, v_head_dim for v). */
static inline uint32_t qf_attn_dk(const qf_hparams *hp) {
    return hp->arch->attn == QF_ATTN_MLA ? hp->qk_nope_dim + hp->qk_rope_dim : hp->head_dim;
}
static inline uint32_t qf_attn_dv(const qf_hparams *hp) {
    return hp->arch->attn == QF_ATTN_MLA ? hp->v_head_dim : hp->head_dim;
}

/* ---- tensor names (arch.c) ----------------------------------------------------------------------- */

/* GGUF name for a role (and layer), e.g. (QF_ROLE_ATTN_Q, 3) -> "blk.3.attn_q.weight". */
void qf_arch_tensor_name(qf_role role, int layer, char *out, size_t out_len);
/* Role and layer of a GGUF tensor name ("blk.3.attn_q.weight" -> ATTN_Q, 3); QF_ROLE_OTHER and -1 for
 * names outside the table. */
void qf_arch_role_from_gguf(const char *name, qf_role *role, int *layer);
/* Short role name for messages and reports ("attn_q", "ffn_down_exps"). */
const char *qf_role_name(qf_role role);
/* Roles stacked over experts (3-D tensors, one matrix per expert). */
bool qf_role_is_experts(qf_role role);

/* ---- the tensors of a model (tensor_map.c) ---------------------------------------------------------- */

/* One GGUF tensor of a model, and where its data comes from. For QF_MAP_STACK the sources are the
 * experts in order; the head maps read one source (kv_b_proj) with `heads` groups of `stride` rows,
 * taking `take` rows from row `offset` of each group. */
typedef struct qf_tensor_spec {
    char name[96];
    qf_role role;
    int layer;
    qf_map_kind map;
    uint32_t n_dims;
    uint64_t ne[4];               /* GGUF order: ne[0] = row length */
    size_t first_src, n_src;      /* indices into qf_tensor_map.src */
    uint32_t heads, stride, offset, take; /* head maps */
    /* rotate-half -> adjacent pairs (llama.cpp's q/k permutation): in each of permute_heads equal groups
     * of rows, the permute_rot rows from permute_offset on; permute_heads 0 = rows as stored */
    uint32_t permute_heads, permute_offset, permute_rot;
} qf_tensor_spec;

typedef struct qf_tensor_map {
    qf_tensor_spec *t;
    size_t n;
    size_t *src;                  /* source tensor indices, referenced by the specs */
    size_t n_src_refs;
    size_t n_skipped;             /* source tensors left out on purpose (MTP layers, rotary buffers) */
    char skipped_note[160];       /* what was left out and why, for --dry-run; "" when nothing */
} qf_tensor_map;

/* The source shape of tensor i as the map needs it: name, dims in HF order (row-major, last = row). */
typedef struct qf_tensor_shape {
    const char *name;
    uint32_t n_dims;
    const uint64_t *shape;
} qf_tensor_shape;
typedef const qf_tensor_shape *(*qf_tensor_shape_fn)(void *ctx, size_t i);

/* Map an HF checkpoint's n tensors (shape_of(ctx, i)) to the GGUF tensors of the model, in source
 * storage order (a stacked tensor takes the place of its first expert). Every tensor the model needs
 * must be present with the shape the hyper-parameters imply, and no tensor may be left over:
 * errors name the tensor and what was expected (QF_E_INPUT), or the unknown tensor (QF_E_UNSUPPORTED).
 * `label` (the source) starts every message. */
qf_status qf_tensor_map_hf(const qf_hparams *hp, size_t n, qf_tensor_shape_fn shape_of, void *ctx, const char *label,
                           qf_tensor_map *map, qf_error *err);
/* The same checks for a GGUF file's n tensors (GGUF names, shapes in HF order): an identity map, with
 * the checks llama.cpp's loader makes: every required tensor with its exact shape, nothing unknown or
 * extra. */
qf_status qf_tensor_map_gguf(const qf_hparams *hp, size_t n, qf_tensor_shape_fn shape_of, void *ctx, const char *label,
                             qf_tensor_map *map, qf_error *err);
void qf_tensor_map_free(qf_tensor_map *map);

/* The inverse: the tensors an HF checkpoint of this configuration consists of (the names its family
 * uses, shapes in HF order), in checkpoint order, then the multi-token-prediction blocks
 * (hp->n_mtp_layers, laid out as a MoE layer): qforge synth writes checkpoints from it. */
typedef void (*qf_hf_tensor_fn)(void *ctx, const char *name, uint32_t n_dims, const uint64_t *shape, qf_role role);
void qf_arch_hf_tensors(const qf_hparams *hp, qf_hf_tensor_fn fn, void *ctx);
/* The spec for (role, layer), or NULL. */
const qf_tensor_spec *qf_tensor_map_find(const qf_tensor_map *map, qf_role role, int layer);

#endif
