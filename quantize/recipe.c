/* The recipe table (recipe.h). Each row says what it keeps at which type; the README explains why. */
#include "quantize/recipe.h"
#include "kernels/qtypes.h"

#include <string.h>
#include <strings.h>

#define R(roles, layers, models, type, why) {roles, QF_LAYERS_##layers, QF_MODELS_##models, type, why, 0}
/* llama-quantize's output rule for its low-bit i-quant mixes: Q5_K, and Q8_0 where rows do not fit it. */
#define LCPP_IQ_OUTPUT {ROLE(OUTPUT), QF_LAYERS_ALL, QF_MODELS_ALL, QF_T_Q5_K, "output: errors reach every logit (Q8_0 where rows do not fit Q5_K)", QF_T_Q8_0}
#define ROLE(r) QF_ROLE_BIT(QF_ROLE_##r)

/* llama-quantize's rules for Mixtral-like models (8 experts), shared by its K-quant mixes. */
#define LCPP_8_EXPERTS(attn_out_type)                                                                   \
    R(QF_ROLES_LCPP_ATTN_V, ALL, 8_EXPERTS, QF_T_Q8_0, "attn_v of an 8-expert model (llama.cpp: ~128 MB)"), \
    R(ROLE(ATTN_K), ALL, 8_EXPERTS, QF_T_Q8_0, "attn_k of an 8-expert model (llama.cpp: ~128 MB)"),       \
    R(ROLE(ATTN_OUT), ALL, 8_EXPERTS, attn_out_type, "attn_output of an 8-expert model")

/* llama-quantize's IQ1/IQ2 mixes (one branch of its rules): `low` for embeddings, attn_v where few query
 * heads share it, and the first eighth of ffn_down; Q4_K attn_v where many heads or experts read it. */
#define LCPP_IQ2(low, attn_out_type)                                                                         \
    LCPP_IQ_OUTPUT,                                                                                          \
    R(ROLE(TOKEN_EMBD), ALL, ALL, low, "embeddings: one row read per token"),                               \
    R(QF_ROLES_LCPP_ATTN_V, ALL, GQA4_OR_4_EXPERTS, QF_T_Q4_K, "attn_v shared by 4+ query heads, or of a MoE model"), \
    R(QF_ROLES_LCPP_ATTN_V, ALL, ALL, low, "attn_v: small and sensitive"),                                  \
    R(ROLE(ATTN_K), ALL, 8_EXPERTS, QF_T_Q4_K, "attn_k of an 8-expert model"),                              \
    R(QF_ROLES_LCPP_FFN_DOWN, FFN_DOWN_8TH, ALL, low, "ffn_down: the first eighth of them"),              \
    R(ROLE(ATTN_OUT), ALL, 8_EXPERTS, QF_T_Q5_K, "attn_output of an 8-expert model"),                      \
    R(ROLE(ATTN_OUT), ALL, ALL, attn_out_type, "attn_output: sensitive")

/* llama-quantize's IQ4_NL / IQ4_XS mixes. */
#define LCPP_IQ4                                                                                             \
    R(ROLE(OUTPUT), ALL, ALL, QF_T_Q6_K, "output: errors reach every logit"),                               \
    LCPP_8_EXPERTS(QF_T_Q5_K),                                                                               \
    R(QF_ROLES_LCPP_ATTN_V, ALL, GQA4, QF_T_Q5_K, "attn_v shared by 4+ query heads"),                       \
    R(QF_ROLES_LCPP_FFN_DOWN, FIRST_8TH, UNCALIBRATED, QF_T_Q5_K, "ffn_down of the first eighth, no imatrix")

static const qf_recipe recipes[] = {
    {.name = "q8_0", .summary = "every weight Q8_0 (8.5 bpw): near-lossless", .bulk = QF_T_Q8_0},
    {.name = "q4_k_m", .summary = "llama.cpp's Q4_K_M mix: Q4_K bulk, Q6_K for output and half the attn_v/ffn_down",
     .bulk = QF_T_Q4_K, .file_type = 15,
     .rules = {
         R(ROLE(OUTPUT), ALL, ALL, QF_T_Q6_K, "output: errors reach every logit"),
         LCPP_8_EXPERTS(QF_T_Q5_K),
         R(QF_ROLES_LCPP_ATTN_V, MORE_BITS, ALL, QF_T_Q6_K, "attn_v in a sensitive layer"),
         R(QF_ROLES_LCPP_ATTN_V, ALL, LLAMA_70B, QF_T_Q5_K, "attn_v of a 70B Llama: 8 heads share it"),
         R(QF_ROLES_LCPP_FFN_DOWN, MORE_BITS, ALL, QF_T_Q6_K, "ffn_down in a sensitive layer"),
     }},
    {.name = "q3_k_m", .summary = "llama.cpp's Q3_K_M mix: Q3_K bulk, Q4_K/Q5_K for attn_v, attn_output, ffn_down; Q6_K output",
     .bulk = QF_T_Q3_K, .file_type = 12,
     .rules = {
         R(ROLE(OUTPUT), ALL, ALL, QF_T_Q6_K, "output: errors reach every logit"),
         LCPP_8_EXPERTS(QF_T_Q5_K),
         R(QF_ROLES_LCPP_ATTN_V, FIRST_2, ALL, QF_T_Q5_K, "attn_v of the first two layers"),
         R(QF_ROLES_LCPP_ATTN_V, ALL, LLAMA_70B, QF_T_Q5_K, "attn_v of a 70B Llama: 8 heads share it"),
         R(QF_ROLES_LCPP_ATTN_V, ALL, ALL, QF_T_Q4_K, "attn_v: small and sensitive"),
         R(QF_ROLES_LCPP_FFN_DOWN, FIRST_16TH, ALL, QF_T_Q5_K, "ffn_down of the first layers"),
         R(QF_ROLES_LCPP_FFN_DOWN, ALL, ALL, QF_T_Q4_K, "ffn_down: sensitive"),
         R(ROLE(ATTN_OUT), ALL, ALL, QF_T_Q4_K, "attn_output: sensitive"),
     }},
    {.name = "q2_k", .summary = "llama.cpp's Q2_K mix: Q2_K bulk; Q3_K attn_v (Q4_K with 4+ query heads per KV head), "
                                "ffn_down, attn_output; Q6_K output", .bulk = QF_T_Q2_K, .file_type = 10,
     .rules = {
         R(ROLE(OUTPUT), ALL, ALL, QF_T_Q6_K, "output: errors reach every logit"),
         LCPP_8_EXPERTS(QF_T_Q5_K),
         R(QF_ROLES_LCPP_ATTN_V, ALL, LLAMA_70B, QF_T_Q5_K, "attn_v of a 70B Llama: 8 heads share it"),
         R(QF_ROLES_LCPP_ATTN_V, ALL, GQA4, QF_T_Q4_K, "attn_v shared by 4+ query heads"),
         R(QF_ROLES_LCPP_ATTN_V, ALL, ALL, QF_T_Q3_K, "attn_v: small and sensitive"),
         R(QF_ROLES_LCPP_FFN_DOWN, ALL, ALL, QF_T_Q3_K, "ffn_down: sensitive"),
         R(ROLE(ATTN_OUT), ALL, ALL, QF_T_Q3_K, "attn_output: sensitive"),
     }},
    {.name = "q3_k_s", .summary = "llama.cpp's Q3_K_S mix: Q3_K everywhere but output (Q6_K)", .bulk = QF_T_Q3_K,
     .file_type = 11,
     .rules = {
         R(ROLE(OUTPUT), ALL, ALL, QF_T_Q6_K, "output: errors reach every logit"),
         LCPP_8_EXPERTS(QF_T_Q5_K),
         R(QF_ROLES_LCPP_ATTN_V, ALL, LLAMA_70B, QF_T_Q5_K, "attn_v of a 70B Llama: 8 heads share it"),
     }},
    {.name = "q3_k_l", .summary = "llama.cpp's Q3_K_L mix: Q3_K bulk, Q5_K attn_v, ffn_down, attn_output; Q6_K output",
     .bulk = QF_T_Q3_K, .file_type = 13,
     .rules = {
         R(ROLE(OUTPUT), ALL, ALL, QF_T_Q6_K, "output: errors reach every logit"),
         LCPP_8_EXPERTS(QF_T_Q3_K), /* llama.cpp leaves attn_output of 8-expert Q3_K_L at the bulk type */
         R(QF_ROLES_LCPP_ATTN_V | QF_ROLES_LCPP_FFN_DOWN | ROLE(ATTN_OUT), ALL, ALL, QF_T_Q5_K,
           "attn_v/ffn_down/attn_output: sensitive"),
     }},
    {.name = "q4_k_s", .summary = "llama.cpp's Q4_K_S mix: Q4_K bulk, Q5_K attn_v of the first 4 layers and ffn_down of "
                                  "the first eighth; Q6_K output", .bulk = QF_T_Q4_K, .file_type = 14,
     .rules = {
         R(ROLE(OUTPUT), ALL, ALL, QF_T_Q6_K, "output: errors reach every logit"),
         LCPP_8_EXPERTS(QF_T_Q5_K),
         R(QF_ROLES_LCPP_ATTN_V, ALL, LLAMA_70B, QF_T_Q5_K, "attn_v of a 70B Llama: 8 heads share it"),
         R(QF_ROLES_LCPP_ATTN_V, FIRST_4, ALL, QF_T_Q5_K, "attn_v of the first four layers"),
         R(QF_ROLES_LCPP_FFN_DOWN, FIRST_8TH, ALL, QF_T_Q5_K, "ffn_down of the first eighth of the layers"),
     }},
    {.name = "q5_k_s", .summary = "llama.cpp's Q5_K_S mix: Q5_K everywhere but output (Q6_K)", .bulk = QF_T_Q5_K,
     .file_type = 16,
     .rules = {
         R(ROLE(OUTPUT), ALL, ALL, QF_T_Q6_K, "output: errors reach every logit"),
         LCPP_8_EXPERTS(QF_T_Q5_K),
     }},
    {.name = "q5_k_m", .summary = "llama.cpp's Q5_K_M mix: Q5_K bulk, Q6_K for output and half the attn_v/ffn_down",
     .bulk = QF_T_Q5_K, .file_type = 17,
     .rules = {
         R(ROLE(OUTPUT), ALL, ALL, QF_T_Q6_K, "output: errors reach every logit"),
         LCPP_8_EXPERTS(QF_T_Q5_K),
         R(QF_ROLES_LCPP_ATTN_V | QF_ROLES_LCPP_FFN_DOWN, MORE_BITS, ALL, QF_T_Q6_K, "attn_v/ffn_down in a sensitive layer"),
     }},
    {.name = "q6_k", .summary = "llama.cpp's Q6_K mix: Q6_K everywhere", .bulk = QF_T_Q6_K, .file_type = 18,
     .rules = {
         LCPP_8_EXPERTS(QF_T_Q6_K),
     }},
    {.name = "iq4_xs", .summary = "llama.cpp's IQ4_XS mix: IQ4_XS bulk, Q5_K attn_v with 4+ query heads per KV head "
                                  "(and first-eighth ffn_down without an imatrix); Q6_K output",
     .bulk = QF_T_IQ4_XS, .file_type = 30, .rules = {LCPP_IQ4}},
    {.name = "iq4_nl", .summary = "llama.cpp's IQ4_NL mix: as iq4_xs, IQ4_NL bulk (32-blocks)",
     .bulk = QF_T_IQ4_NL, .file_type = 25, .rules = {LCPP_IQ4}},
    {.name = "iq3_s", .summary = "llama.cpp's IQ3_S mix: IQ3_S bulk, Q4_K attn_v with 4+ query heads per KV head; Q6_K output",
     .bulk = QF_T_IQ3_S, .file_type = 26,
     .rules = {
         R(ROLE(OUTPUT), ALL, ALL, QF_T_Q6_K, "output: errors reach every logit"),
         LCPP_8_EXPERTS(QF_T_Q5_K),
         R(QF_ROLES_LCPP_ATTN_V, ALL, LLAMA_70B_GQA4, QF_T_Q5_K, "attn_v of a 70B Llama: 8 heads share it"),
         R(QF_ROLES_LCPP_ATTN_V, ALL, GQA4, QF_T_Q4_K, "attn_v shared by 4+ query heads"),
     }},
    {.name = "iq3_m", .summary = "llama.cpp's IQ3_M mix: IQ3_S bulk, Q4_K attn_v, attn_output and first-eighth ffn_down; "
                                 "Q6_K output",
     .bulk = QF_T_IQ3_S, .file_type = 27,
     .rules = {
         R(ROLE(OUTPUT), ALL, ALL, QF_T_Q6_K, "output: errors reach every logit"),
         LCPP_8_EXPERTS(QF_T_Q5_K),
         R(QF_ROLES_LCPP_ATTN_V, ALL, LLAMA_70B, QF_T_Q5_K, "attn_v of a 70B Llama: 8 heads share it"),
         R(QF_ROLES_LCPP_ATTN_V, ALL, ALL, QF_T_Q4_K, "attn_v: small and sensitive"),
         R(QF_ROLES_LCPP_FFN_DOWN, FIRST_8TH, ALL, QF_T_Q4_K, "ffn_down of the first eighth of the layers"),
         R(QF_ROLES_LCPP_FFN_DOWN, MORE_BITS, 8_EXPERTS, QF_T_Q4_K, "ffn_down of an 8-expert model in a sensitive layer"),
         R(ROLE(ATTN_OUT), ALL, ALL, QF_T_Q4_K, "attn_output: sensitive"),
     }},
    {.name = "iq3_xxs", .summary = "llama.cpp's IQ3_XXS mix: IQ3_XXS bulk, IQ2_S attn_q/attn_k, IQ3_S attn_output and "
                                   "embeddings, Q4_K attn_v with 4+ query heads per KV head; Q5_K output",
     .bulk = QF_T_IQ3_XXS, .file_type = 23,
     .rules = {
         LCPP_IQ_OUTPUT,
         R(ROLE(TOKEN_EMBD), ALL, ALL, QF_T_IQ3_S, "embeddings: one row read per token"),
         LCPP_8_EXPERTS(QF_T_Q5_K),
         R(QF_ROLES_LCPP_ATTN_V, ALL, LLAMA_70B_GQA4, QF_T_Q5_K, "attn_v of a 70B Llama: 8 heads share it"),
         R(QF_ROLES_LCPP_ATTN_V, ALL, GQA4, QF_T_Q4_K, "attn_v shared by 4+ query heads"),
         R(QF_ROLES_LCPP_ATTN_V, ALL, UNCALIBRATED, QF_T_IQ3_S, "attn_v without an imatrix"),
         R(ROLE(ATTN_Q) | ROLE(ATTN_K), ALL, ALL, QF_T_IQ2_S, "attn_q/attn_k: scores survive coarse weights"),
         R(QF_ROLES_LCPP_FFN_DOWN, FIRST_8TH, UNCALIBRATED, QF_T_Q4_K, "ffn_down of the first eighth, no imatrix"),
         R(QF_ROLES_LCPP_FFN_DOWN, ALL, UNCALIBRATED, QF_T_Q3_K, "ffn_down without an imatrix"),
         R(ROLE(ATTN_OUT), ALL, ALL, QF_T_IQ3_S, "attn_output: sensitive"),
     }},
    {.name = "iq2_m", .summary = "llama.cpp's IQ2_M mix: IQ2_S bulk, IQ3_S embeddings, attn_v, attn_output, first "
                                 "ffn_down; Q5_K output", .bulk = QF_T_IQ2_S, .file_type = 29,
     .rules = {LCPP_IQ2(QF_T_IQ3_S, QF_T_IQ3_S)}},
    {.name = "iq2_s", .summary = "llama.cpp's IQ2_S mix: IQ2_XS bulk, IQ3_S embeddings, attn_v, attn_output, first "
                                 "ffn_down; Q5_K output", .bulk = QF_T_IQ2_XS, .file_type = 28,
     .rules = {LCPP_IQ2(QF_T_IQ3_S, QF_T_IQ3_S)}},
    {.name = "iq2_xs", .summary = "llama.cpp's IQ2_XS mix: IQ2_XS bulk, Q2_K embeddings, attn_v, first ffn_down; "
                                  "Q5_K output", .bulk = QF_T_IQ2_XS, .file_type = 20,
     .rules = {LCPP_IQ2(QF_T_Q2_K, QF_T_IQ2_XS)}},
    {.name = "iq2_xxs", .summary = "llama.cpp's IQ2_XXS mix: IQ2_XXS bulk, Q2_K embeddings, attn_v, first ffn_down; "
                                   "Q5_K output", .bulk = QF_T_IQ2_XXS, .file_type = 19,
     .rules = {LCPP_IQ2(QF_T_Q2_K, QF_T_IQ2_XXS)}},
    {.name = "iq1_m", .summary = "llama.cpp's IQ1_M mix: IQ1_M bulk, IQ2_XXS attn_output, Q2_K embeddings, attn_v, "
                                 "first ffn_down; Q5_K output", .bulk = QF_T_IQ1_M, .file_type = 31,
     .rules = {LCPP_IQ2(QF_T_Q2_K, QF_T_IQ2_XXS)}},
    {.name = "iq1_s", .summary = "llama.cpp's IQ1_S mix: IQ1_S bulk, IQ2_XXS attn_output, Q2_K embeddings, attn_v, "
                                 "first ffn_down; Q5_K output", .bulk = QF_T_IQ1_S, .file_type = 24,
     .rules = {LCPP_IQ2(QF_T_Q2_K, QF_T_IQ2_XXS)}},
    {.name = "fp8", .summary = "every linear weight FP8 E4M3 (32-blocks, E8M0 scales); embeddings and output BF16 as FP8 releases ship them",
     .bulk = QF_T_E4M3_B32,
     .rules = {
         R(QF_ROLES_EMBD_OUT, ALL, ALL, QF_T_BF16, "embeddings/output: kept BF16 as in FP8 releases"),
     }},
    /* DeepSeek-V3's local deployment: its routed experts are ~88% of the weights and each runs for few
     * tokens, so they take 4 bits; everything every token passes through keeps 8. */
    {.name = "fp8-int4", .summary = "MoE: routed experts INT4 (Q4_K), attention, shared experts and dense layers FP8 E4M3; "
                                    "dense models: attention FP8, FFN INT4; embeddings/output Q8_0",
     .bulk = QF_T_Q4_K,
     .rules = {
         R(QF_ROLES_EMBD_OUT, ALL, ALL, QF_T_Q8_0, "embeddings/output: 8-bit"),
         R(QF_ROLES_EXPS, ALL, ALL, QF_T_Q4_K, "routed expert: INT4"),
         R(QF_ROLES_ATTN, ALL, ALL, QF_T_E4M3_B32, "attention: FP8"),
         R(QF_ROLES_SHEXP | QF_ROLES_FFN, ALL, MOE, QF_T_E4M3_B32, "shared expert / dense FFN of a MoE model: FP8"),
         R(QF_ROLES_FFN, ALL, DENSE, QF_T_Q4_K, "FFN of a dense model: INT4"),
     }},
    {.name = "q8-int4", .summary = "fp8-int4 with Q8_0 for its 8-bit part, so llama.cpp loads it: routed experts (dense: FFN) "
                                   "Q4_K, the rest Q8_0",
     .bulk = QF_T_Q4_K,
     .rules = {
         R(QF_ROLES_EMBD_OUT, ALL, ALL, QF_T_Q8_0, "embeddings/output: 8-bit"),
         R(QF_ROLES_EXPS, ALL, ALL, QF_T_Q4_K, "routed expert: INT4"),
         R(QF_ROLES_ATTN, ALL, ALL, QF_T_Q8_0, "attention: 8-bit"),
         R(QF_ROLES_SHEXP | QF_ROLES_FFN, ALL, MOE, QF_T_Q8_0, "shared expert / dense FFN of a MoE model: 8-bit"),
         R(QF_ROLES_FFN, ALL, DENSE, QF_T_Q4_K, "FFN of a dense model: INT4"),
     }},
    {.name = "int3-mix", .summary = "INT3 (Q3_K) bulk. MoE: routed experts Q3_K (ffn_down_exps Q4_K), attention, shared "
                                    "experts and dense layers Q6_K. Dense: sensitive attn_v/ffn_down Q5_K, other attn_v/"
                                    "attn_output Q4_K. Embeddings Q4_K, output Q6_K",
     .bulk = QF_T_Q3_K,
     .rules = {
         R(ROLE(OUTPUT), ALL, ALL, QF_T_Q6_K, "output: errors reach every logit"),
         R(ROLE(TOKEN_EMBD), ALL, ALL, QF_T_Q4_K, "embeddings: one row read per token"),
         R(ROLE(FFN_DOWN_EXPS), ALL, ALL, QF_T_Q4_K, "ffn_down_exps: one step above the other expert weights"),
         R(QF_ROLES_ATTN | QF_ROLES_SHEXP | QF_ROLES_FFN, ALL, MOE, QF_T_Q6_K,
           "attention / shared expert / dense FFN of a MoE model: every token passes through it"),
         R(ROLE(ATTN_V) | ROLE(FFN_DOWN), MORE_BITS, ALL, QF_T_Q5_K, "attn_v/ffn_down in a sensitive layer"),
         R(ROLE(ATTN_V) | ROLE(ATTN_OUT), ALL, ALL, QF_T_Q4_K, "attn_v/attn_output"),
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
    case QF_LAYERS_FIRST_4: return layer < 4;
    case QF_LAYERS_FFN_DOWN_8TH: break; /* a position among tensors, not a layer: rule_matches */
    }
    return false;
}

static bool model_selected(qf_model_sel sel, const qf_hparams *hp) {
    switch (sel) {
    case QF_MODELS_ALL: return true;
    case QF_MODELS_MOE: return hp->n_expert > 1;
    case QF_MODELS_DENSE: return hp->n_expert <= 1;
    case QF_MODELS_8_EXPERTS: return hp->n_expert == 8;
    case QF_MODELS_LLAMA_70B: /* llama.cpp's LLM_TYPE_70B: Llama with 80 layers and grouped KV heads */
        return !strcmp(hp->arch->name, "llama") && hp->n_layer == 80 && hp->n_head_kv != hp->n_head;
    case QF_MODELS_GQA4: return hp->n_head_kv && hp->n_head / hp->n_head_kv >= 4;
    case QF_MODELS_LLAMA_70B_GQA4: return model_selected(QF_MODELS_LLAMA_70B, hp) && model_selected(QF_MODELS_GQA4, hp);
    case QF_MODELS_GQA4_OR_4_EXPERTS: return model_selected(QF_MODELS_GQA4, hp) || hp->n_expert >= 4;
    case QF_MODELS_UNCALIBRATED: break; /* a property of the run: rule_matches */
    }
    return false;
}

static bool rule_matches(const qf_recipe_rule *rule, const qf_recipe_query *q, qf_role role) {
    if (!(rule->roles & QF_ROLE_BIT(role))) return false;
    if (rule->layers == QF_LAYERS_FFN_DOWN_8TH) {
        if (q->ffn_down_index < 0 || q->ffn_down_index >= (int)(q->hp->n_layer / 8)) return false;
    } else if (q->layer >= 0 && !layer_selected(rule->layers, q->layer, q->hp->n_layer)) {
        return false;
    }
    return rule->models == QF_MODELS_UNCALIBRATED ? !q->calibrated : model_selected(rule->models, q->hp);
}

uint32_t qf_recipe_type(const qf_recipe *r, const qf_recipe_query *q, const char **why) {
    qf_role role = q->hp->tied_embeddings && q->role == QF_ROLE_TOKEN_EMBD ? QF_ROLE_OUTPUT : q->role;
    for (const qf_recipe_rule *rule = r->rules; rule->roles; rule++) {
        if (!rule_matches(rule, q, role)) continue;
        *why = rule->why;
        if (rule->unfit && q->row % qf_qtype_get(rule->type)->blck != 0) return rule->unfit;
        return rule->type;
    }
    *why = "recipe bulk type";
    return r->bulk;
}
