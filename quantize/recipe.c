/* The recipe table (recipe.h). Each row says what it keeps at which type; the README explains why. */
#include "quantize/recipe.h"
#include "kernels/qtypes.h"

#include <strings.h>

static const qf_recipe recipes[] = {
    {.name = "q8_0", .summary = "every weight Q8_0 (8.5 bpw): near-lossless", .bulk = QF_T_Q8_0},
    {.name = "q4_k_m", .summary = "llama.cpp's Q4_K_M mix: Q4_K bulk, Q6_K for output and half the attn_v/ffn_down",
     .bulk = QF_T_Q4_K,
     .rules = {
         {QF_ROLE_BIT(QF_ROLE_OUTPUT), QF_LAYERS_ALL, QF_T_Q6_K, "output: errors reach every logit"},
         {QF_ROLE_BIT(QF_ROLE_ATTN_V) | QF_ROLE_BIT(QF_ROLE_FFN_DOWN), QF_LAYERS_MORE_BITS, QF_T_Q6_K,
          "attn_v/ffn_down in a sensitive layer"},
     }},
    {.name = "q3_k_m", .summary = "llama.cpp's Q3_K_M mix: Q3_K bulk, Q4_K/Q5_K for attn_v, attn_output, ffn_down; Q6_K output",
     .bulk = QF_T_Q3_K,
     .rules = {
         {QF_ROLE_BIT(QF_ROLE_OUTPUT), QF_LAYERS_ALL, QF_T_Q6_K, "output: errors reach every logit"},
         {QF_ROLE_BIT(QF_ROLE_ATTN_V), QF_LAYERS_FIRST_2, QF_T_Q5_K, "attn_v of the first two layers"},
         {QF_ROLE_BIT(QF_ROLE_ATTN_V), QF_LAYERS_ALL, QF_T_Q4_K, "attn_v: small and sensitive"},
         {QF_ROLE_BIT(QF_ROLE_FFN_DOWN), QF_LAYERS_FIRST_16TH, QF_T_Q5_K, "ffn_down of the first layers"},
         {QF_ROLE_BIT(QF_ROLE_FFN_DOWN), QF_LAYERS_ALL, QF_T_Q4_K, "ffn_down: sensitive"},
         {QF_ROLE_BIT(QF_ROLE_ATTN_OUT), QF_LAYERS_ALL, QF_T_Q4_K, "attn_output: sensitive"},
     }},
    {.name = "fp8", .summary = "every linear weight FP8 E4M3 (32-blocks, E8M0 scales); embeddings and output BF16 as FP8 releases ship them",
     .bulk = QF_T_E4M3_B32,
     .rules = {
         {QF_ROLES_EMBD_OUT, QF_LAYERS_ALL, QF_T_BF16, "embeddings/output: kept BF16 as in FP8 releases"},
     }},
    {.name = "fp8-int4", .summary = "attention FP8 E4M3, FFN/expert weights INT4 (Q4_K), embeddings/output Q8_0: the local-deployment mix",
     .bulk = QF_T_Q4_K,
     .rules = {
         {QF_ROLES_ATTN, QF_LAYERS_ALL, QF_T_E4M3_B32, "attention projection: FP8"},
         {QF_ROLES_FFN, QF_LAYERS_ALL, QF_T_Q4_K, "FFN/expert weight: INT4"},
         {QF_ROLES_EMBD_OUT, QF_LAYERS_ALL, QF_T_Q8_0, "embeddings/output: 8-bit"},
     }},
    {.name = "int3-mix", .summary = "INT3 (Q3_K) bulk; attn_v, ffn_down of sensitive layers and attn_output at Q4_K/Q5_K; Q6_K output",
     .bulk = QF_T_Q3_K,
     .rules = {
         {QF_ROLE_BIT(QF_ROLE_OUTPUT), QF_LAYERS_ALL, QF_T_Q6_K, "output: errors reach every logit"},
         {QF_ROLE_BIT(QF_ROLE_TOKEN_EMBD), QF_LAYERS_ALL, QF_T_Q4_K, "embeddings: one row read per token"},
         {QF_ROLE_BIT(QF_ROLE_ATTN_V) | QF_ROLE_BIT(QF_ROLE_FFN_DOWN), QF_LAYERS_MORE_BITS, QF_T_Q5_K,
          "attn_v/ffn_down in a sensitive layer"},
         {QF_ROLE_BIT(QF_ROLE_ATTN_V) | QF_ROLE_BIT(QF_ROLE_ATTN_OUT), QF_LAYERS_ALL, QF_T_Q4_K, "attn_v/attn_output"},
     }},
};

const qf_recipe *qf_recipe_by_name(const char *name) {
    for (size_t i = 0; i < QF_ARRAY_LEN(recipes); i++)
        if (strcasecmp(recipes[i].name, name) == 0) return &recipes[i];
    return NULL;
}

size_t qf_recipe_count(void) { return QF_ARRAY_LEN(recipes); }
const qf_recipe *qf_recipe_at(size_t i) { return i < QF_ARRAY_LEN(recipes) ? &recipes[i] : NULL; }

static bool layer_selected(qf_layer_sel sel, int layer, uint32_t n) {
    int nl = (int)n;
    switch (sel) {
    case QF_LAYERS_ALL: return true;
    case QF_LAYERS_MORE_BITS: return layer < nl / 8 || layer >= 7 * nl / 8 || (layer - nl / 8) % 3 == 2;
    case QF_LAYERS_FIRST_8TH: return layer < nl / 8;
    case QF_LAYERS_FIRST_16TH: return layer < nl / 16;
    case QF_LAYERS_FIRST_2: return layer < 2;
    }
    return false;
}

uint32_t qf_recipe_type(const qf_recipe *r, qf_role role, int layer, uint32_t n_layer, bool tied, const char **why) {
    if (tied && role == QF_ROLE_TOKEN_EMBD) role = QF_ROLE_OUTPUT;
    for (const qf_recipe_rule *rule = r->rules; rule->roles; rule++) {
        if ((rule->roles & QF_ROLE_BIT(role)) && (layer < 0 || layer_selected(rule->layers, layer, n_layer))) {
            *why = rule->why;
            return rule->type;
        }
    }
    *why = "recipe bulk type";
    return r->bulk;
}
