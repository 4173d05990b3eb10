/* The recipe table (recipe.h). Each row says what it keeps at which type; the README explains why. */
#include "quantize/recipe.h"
#include "kernels/qtypes.h"

#include <string.h>
#include <strings.h>

#define R(roles, layers, models, type, why) {roles, QF_LAYERS_##layers, QF_MODELS_##models, type, why}
#define ROLE(r) QF_ROLE_BIT(QF_ROLE_##r)

/* llama-quantize's rules for Mixtral-like models (8 experts), shared by its K-quant mixes. */
#define LCPP_8_EXPERTS(attn_out_type)                                                                   \
    R(QF_ROLES_LCPP_ATTN_V, ALL, 8_EXPERTS, QF_T_Q8_0, "attn_v of an 8-expert model (llama.cpp: ~128 MB)"), \
    R(ROLE(ATTN_K), ALL, 8_EXPERTS, QF_T_Q8_0, "attn_k of an 8-expert model (llama.cpp: ~128 MB)"),       \
    R(ROLE(ATTN_OUT), ALL, 8_EXPERTS, attn_out_type, "attn_output of an 8-expert model")

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
    }
    return false;
}

uint32_t qf_recipe_type(const qf_recipe *r, const qf_hparams *hp, qf_role role, int layer, const char **why) {
    if (hp->tied_embeddings && role == QF_ROLE_TOKEN_EMBD) role = QF_ROLE_OUTPUT;
    for (const qf_recipe_rule *rule = r->rules; rule->roles; rule++) {
        if ((rule->roles & QF_ROLE_BIT(role)) && (layer < 0 || layer_selected(rule->layers, layer, hp->n_layer)) &&
            model_selected(rule->models, hp)) {
            *why = rule->why;
            return rule->type;
        }
    }
    *why = "recipe bulk type";
    return r->bulk;
}
