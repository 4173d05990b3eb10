/*
 * recipe.h — named quantization mixes: which stored type each tensor role gets, and why.
 *
 * A recipe is a bulk type plus first-match rules over (tensor role, layer selection). Adding a recipe
 * is one table row in recipe.c. Policies that hold for every recipe live in plan.c, not here: 1-D
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
} qf_layer_sel;

#define QF_ROLE_BIT(r) (1ull << (r))
#define QF_ROLES_ATTN (QF_ROLE_BIT(QF_ROLE_ATTN_Q) | QF_ROLE_BIT(QF_ROLE_ATTN_K) | QF_ROLE_BIT(QF_ROLE_ATTN_V) | QF_ROLE_BIT(QF_ROLE_ATTN_OUT))
#define QF_ROLES_FFN (QF_ROLE_BIT(QF_ROLE_FFN_GATE) | QF_ROLE_BIT(QF_ROLE_FFN_UP) | QF_ROLE_BIT(QF_ROLE_FFN_DOWN))
#define QF_ROLES_EMBD_OUT (QF_ROLE_BIT(QF_ROLE_TOKEN_EMBD) | QF_ROLE_BIT(QF_ROLE_OUTPUT))

typedef struct qf_recipe_rule {
    uint64_t roles;         /* QF_ROLE_BIT mask; 0 ends the list */
    qf_layer_sel layers;
    uint32_t type;
    const char *why;
} qf_recipe_rule;

typedef struct qf_recipe {
    const char *name;
    const char *summary;    /* one line for --help */
    uint32_t bulk;          /* type of 2-D weights no rule matches */
    qf_recipe_rule rules[8];
} qf_recipe;

const qf_recipe *qf_recipe_by_name(const char *name); /* case-insensitive */
size_t qf_recipe_count(void);
const qf_recipe *qf_recipe_at(size_t i);

/* The type a recipe gives a 2-D tensor of `role` in `layer` (of n_layer), with the reason. Tied
 * embeddings are quantized like the output they double as. */
uint32_t qf_recipe_type(const qf_recipe *r, qf_role role, int layer, uint32_t n_layer, bool tied, const char **why);

#endif
