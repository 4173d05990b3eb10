/*
 * recipe.h — named quantization mixes: which stored type each tensor role gets, and why.
 *
 * A recipe is a bulk type plus first-match rules over (tensor role, layer selection, model
 * selection). Adding a recipe is one table row in recipe.c. The recipes named after llama.cpp's mixes
 * choose exactly the types llama-quantize chooses (tests/llamacpp_recipes.sh compares them on every
 * architecture family). Policies that hold for every recipe live in plan.c, not here: 1-D
 * tensors (norms, biases) stay F32 and MoE routers are never quantized; rows that do not fit a type's
 * block fall back along the traits table's chain (kernels/qtypes.h: qf_qtype_fallback).
 */
#ifndef QF_RECIPE_H
#define QF_RECIPE_H

#include "formats/arch.h"

/* Which layers a rule applies to; n = number of layers. */
typedef enum qf_layer_sel {
    QF_LAYERS_ALL = 0,
    QF_LAYERS_MORE_BITS,   /* first n/8, last n/8 and every third in between (llama.cpp's use_more_bits) */
    QF_LAYERS_FIRST_8TH,   /* layer < n/8 */
    QF_LAYERS_FIRST_16TH,  /* layer < n/16 */
    QF_LAYERS_FIRST_2,     /* layer < 2 */
    QF_LAYERS_FIRST_4,     /* layer < 4 */
    QF_LAYERS_FFN_DOWN_8TH, /* the first n/8 ffn_down tensors in llama.cpp's order (by layer, then name):
                               llama-quantize's IQ1/IQ2 mixes count tensors, not layers, so in MoE layers
                               routed and shared ffn_down count one each */
} qf_layer_sel;

/* Which models (and runs) a rule applies to. llama.cpp's mixes have rules for Mixtral-like models
 * (exactly 8 experts) and for Llama 70B (80 layers, grouped KV heads: its attn_v is 8x smaller than
 * attn_q); its i-quant mixes keep more bits for some tensors when no imatrix is given. */
typedef enum qf_model_sel {
    QF_MODELS_ALL = 0,
    QF_MODELS_MOE,         /* routed experts */
    QF_MODELS_DENSE,       /* none */
    QF_MODELS_8_EXPERTS,
    QF_MODELS_LLAMA_70B,
    QF_MODELS_GQA4,        /* at least 4 query heads per KV head (llama.cpp's n_gqa() >= 4) */
    QF_MODELS_LLAMA_70B_GQA4,   /* both */
    QF_MODELS_GQA4_OR_4_EXPERTS, /* GQA4, or at least 4 routed experts */
    QF_MODELS_UNCALIBRATED, /* quantized without an imatrix (or Hessian) */
} qf_model_sel;

#define QF_ROLE_BIT(r) (1ull << (r))
/* Roles by what they do, across attention kinds and FFN kinds. */
#define QF_ROLES_ATTN_GQA (QF_ROLE_BIT(QF_ROLE_ATTN_Q) | QF_ROLE_BIT(QF_ROLE_ATTN_K) | QF_ROLE_BIT(QF_ROLE_ATTN_V) | QF_ROLE_BIT(QF_ROLE_ATTN_OUT))
#define QF_ROLES_ATTN_MLA (QF_ROLE_BIT(QF_ROLE_ATTN_Q_A) | QF_ROLE_BIT(QF_ROLE_ATTN_Q_B) | QF_ROLE_BIT(QF_ROLE_ATTN_KV_A_MQA) | \
                           QF_ROLE_BIT(QF_ROLE_ATTN_K_B) | QF_ROLE_BIT(QF_ROLE_ATTN_V_B) | QF_ROLE_BIT(QF_ROLE_ATTN_KV_B))
#define QF_ROLES_ATTN (QF_ROLES_ATTN_GQA | QF_ROLES_ATTN_MLA)
#define QF_ROLES_FFN (QF_ROLE_BIT(QF_ROLE_FFN_GATE) | QF_ROLE_BIT(QF_ROLE_FFN_UP) | QF_ROLE_BIT(QF_ROLE_FFN_DOWN))
#define QF_ROLES_EXPS (QF_ROLE_BIT(QF_ROLE_FFN_GATE_EXPS) | QF_ROLE_BIT(QF_ROLE_FFN_UP_EXPS) | QF_ROLE_BIT(QF_ROLE_FFN_DOWN_EXPS))
#define QF_ROLES_SHEXP (QF_ROLE_BIT(QF_ROLE_FFN_GATE_SHEXP) | QF_ROLE_BIT(QF_ROLE_FFN_UP_SHEXP) | QF_ROLE_BIT(QF_ROLE_FFN_DOWN_SHEXP))
#define QF_ROLES_EMBD_OUT (QF_ROLE_BIT(QF_ROLE_TOKEN_EMBD) | QF_ROLE_BIT(QF_ROLE_OUTPUT))
/* llama-quantize's categories, which it finds by name: "attn_v"-like (attn_v, and the unsplit kv_b),
 * and "ffn_down" (dense, routed and shared alike). MLA's split attn_k_b/attn_v_b are in none. */
#define QF_ROLES_LCPP_ATTN_V (QF_ROLE_BIT(QF_ROLE_ATTN_V) | QF_ROLE_BIT(QF_ROLE_ATTN_KV_B))
#define QF_ROLES_LCPP_FFN_DOWN (QF_ROLE_BIT(QF_ROLE_FFN_DOWN) | QF_ROLE_BIT(QF_ROLE_FFN_DOWN_EXPS) | QF_ROLE_BIT(QF_ROLE_FFN_DOWN_SHEXP))

typedef struct qf_recipe_rule {
    uint64_t roles;         /* QF_ROLE_BIT mask; 0 ends the list */
    qf_layer_sel layers;
    qf_model_sel models;
    uint32_t type;
    const char *why;
    uint32_t unfit;         /* taken instead where a row does not hold whole blocks of `type` (llama.cpp's
                               output rule: Q8_0, not Q5_K's own fallback); 0 = type's fallback chain */
} qf_recipe_rule;

typedef struct qf_recipe {
    const char *name;
    const char *summary;    /* one line for --help */
    uint32_t bulk;          /* type of 2-D weights no rule matches */
    int file_type;          /* general.file_type of a mix named after llama.cpp's (its llama_ftype); 0 = the
                               bulk type's */
    qf_recipe_rule rules[16];
} qf_recipe;

const qf_recipe *qf_recipe_by_name(const char *name); /* case-insensitive */
size_t qf_recipe_count(void);
const qf_recipe *qf_recipe_at(size_t i);

/* What a recipe is asked about: one 2-D tensor of a model and run. */
typedef struct qf_recipe_query {
    const qf_hparams *hp;
    qf_role role;
    int layer;              /* block index, -1 outside the blocks */
    int ffn_down_index;     /* for ffn_down roles: how many ffn_down tensors come before it in llama.cpp's
                               order (by layer, then name); -1 for other roles */
    uint64_t row;           /* row length (ne[0]) */
    bool calibrated;        /* an imatrix (or Hessian) is given */
} qf_recipe_query;

/* The type a recipe gives the tensor `q`, with the reason: the first rule whose roles, layers and
 * models all match (its `unfit` type where the row does not fit its blocks), else the bulk type. Tied
 * embeddings are quantized like the output they double as. */
uint32_t qf_recipe_type(const qf_recipe *r, const qf_recipe_query *q, const char **why);

#endif
