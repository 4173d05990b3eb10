/* The architecture table and the GGUF names of tensor roles (arch.h). */
#include "formats/arch.h"

#include <strings.h>

/* ---- roles ------------------------------------------------------------------------------------- */

typedef struct role_name {
    qf_role role;
    const char *gguf;  /* full name for global roles, suffix after "blk.<N>." for per-layer ones */
    bool layer;
    const char *label; /* the name without its ".weight"/".bias" */
} role_name;

static const role_name role_names[] = {
    {QF_ROLE_TOKEN_EMBD, "token_embd.weight", false, "token_embd"},
    {QF_ROLE_OUTPUT_NORM, "output_norm.weight", false, "output_norm"},
    {QF_ROLE_OUTPUT, "output.weight", false, "output"},
    {QF_ROLE_ROPE_FREQS, "rope_freqs.weight", false, "rope_freqs"},
    {QF_ROLE_ATTN_NORM, "attn_norm.weight", true, "attn_norm"},
    {QF_ROLE_ATTN_Q, "attn_q.weight", true, "attn_q"},
    {QF_ROLE_ATTN_OUT, "attn_output.weight", true, "attn_output"},
    {QF_ROLE_ATTN_K, "attn_k.weight", true, "attn_k"},
    {QF_ROLE_ATTN_V, "attn_v.weight", true, "attn_v"},
    {QF_ROLE_ATTN_Q_BIAS, "attn_q.bias", true, "attn_q_bias"},
    {QF_ROLE_ATTN_K_BIAS, "attn_k.bias", true, "attn_k_bias"},
    {QF_ROLE_ATTN_V_BIAS, "attn_v.bias", true, "attn_v_bias"},
    {QF_ROLE_ATTN_Q_NORM, "attn_q_norm.weight", true, "attn_q_norm"},
    {QF_ROLE_ATTN_K_NORM, "attn_k_norm.weight", true, "attn_k_norm"},
    {QF_ROLE_ATTN_Q_A, "attn_q_a.weight", true, "attn_q_a"},
    {QF_ROLE_ATTN_Q_A_NORM, "attn_q_a_norm.weight", true, "attn_q_a_norm"},
    {QF_ROLE_ATTN_Q_B, "attn_q_b.weight", true, "attn_q_b"},
    {QF_ROLE_ATTN_KV_A_MQA, "attn_kv_a_mqa.weight", true, "attn_kv_a_mqa"},
    {QF_ROLE_ATTN_KV_A_NORM, "attn_kv_a_norm.weight", true, "attn_kv_a_norm"},
    {QF_ROLE_ATTN_K_B, "attn_k_b.weight", true, "attn_k_b"},
    {QF_ROLE_ATTN_V_B, "attn_v_b.weight", true, "attn_v_b"},
    {QF_ROLE_ATTN_KV_B, "attn_kv_b.weight", true, "attn_kv_b"},
    {QF_ROLE_FFN_NORM, "ffn_norm.weight", true, "ffn_norm"},
    {QF_ROLE_FFN_GATE, "ffn_gate.weight", true, "ffn_gate"},
    {QF_ROLE_FFN_UP, "ffn_up.weight", true, "ffn_up"},
    {QF_ROLE_FFN_DOWN, "ffn_down.weight", true, "ffn_down"},
    {QF_ROLE_FFN_GATE_INP, "ffn_gate_inp.weight", true, "ffn_gate_inp"},
    {QF_ROLE_FFN_EXP_PROBS_B, "exp_probs_b.bias", true, "exp_probs_b"},
    {QF_ROLE_FFN_GATE_EXPS, "ffn_gate_exps.weight", true, "ffn_gate_exps"},
    {QF_ROLE_FFN_UP_EXPS, "ffn_up_exps.weight", true, "ffn_up_exps"},
    {QF_ROLE_FFN_DOWN_EXPS, "ffn_down_exps.weight", true, "ffn_down_exps"},
    {QF_ROLE_FFN_GATE_SHEXP, "ffn_gate_shexp.weight", true, "ffn_gate_shexp"},
    {QF_ROLE_FFN_UP_SHEXP, "ffn_up_shexp.weight", true, "ffn_up_shexp"},
    {QF_ROLE_FFN_DOWN_SHEXP, "ffn_down_shexp.weight", true, "ffn_down_shexp"},
    {QF_ROLE_FFN_GATE_INP_SHEXP, "ffn_gate_inp_shexp.weight", true, "ffn_gate_inp_shexp"},
};

static const role_name *role_entry(qf_role role) {
    for (size_t i = 0; i < QF_ARRAY_LEN(role_names); i++)
        if (role_names[i].role == role) return &role_names[i];
    return NULL;
}

void qf_arch_tensor_name(qf_role role, int layer, char *out, size_t out_len) {
    const role_name *r = role_entry(role);
    if (!r) snprintf(out, out_len, "?");
    else if (r->layer) snprintf(out, out_len, "blk.%d.%s", layer, r->gguf);
    else snprintf(out, out_len, "%s", r->gguf);
}

void qf_arch_role_from_gguf(const char *name, qf_role *role, int *layer) {
    *role = QF_ROLE_OTHER;
    *layer = -1;
    unsigned long blk = 0;
    int consumed = 0;
    bool per_layer = sscanf(name, "blk.%lu.%n", &blk, &consumed) == 1 && consumed > 0 && blk <= 1000000;
    const char *suffix = per_layer ? name + consumed : name;
    for (size_t i = 0; i < QF_ARRAY_LEN(role_names); i++) {
        if (role_names[i].layer == per_layer && !strcmp(suffix, role_names[i].gguf)) {
            *role = role_names[i].role;
            *layer = per_layer ? (int)blk : -1;
            return;
        }
    }
}

const char *qf_role_name(qf_role role) {
    const role_name *r = role_entry(role);
    return r ? r->label : "other";
}

bool qf_role_is_experts(qf_role role) {
    return role == QF_ROLE_FFN_GATE_EXPS || role == QF_ROLE_FFN_UP_EXPS || role == QF_ROLE_FFN_DOWN_EXPS;
}

/* ---- naming rules ------------------------------------------------------------------------------ */

#define RULE(hf, role) {hf, role, QF_MAP_COPY}
#define STACK(hf, role) {hf, role, QF_MAP_STACK}

/* Attention and dense FFN of the Llama family (Llama, Mistral, Qwen2/3, the MoE variants). */
#define GQA_RULES                                                                                       \
    RULE("input_layernorm.weight", QF_ROLE_ATTN_NORM), RULE("self_attn.q_proj.weight", QF_ROLE_ATTN_Q), \
    RULE("self_attn.k_proj.weight", QF_ROLE_ATTN_K), RULE("self_attn.v_proj.weight", QF_ROLE_ATTN_V),   \
    RULE("self_attn.o_proj.weight", QF_ROLE_ATTN_OUT), RULE("self_attn.q_proj.bias", QF_ROLE_ATTN_Q_BIAS), \
    RULE("self_attn.k_proj.bias", QF_ROLE_ATTN_K_BIAS), RULE("self_attn.v_proj.bias", QF_ROLE_ATTN_V_BIAS), \
    RULE("self_attn.q_norm.weight", QF_ROLE_ATTN_Q_NORM), RULE("self_attn.k_norm.weight", QF_ROLE_ATTN_K_NORM), \
    RULE("post_attention_layernorm.weight", QF_ROLE_FFN_NORM)
#define DENSE_RULES                                                                                     \
    RULE("mlp.gate_proj.weight", QF_ROLE_FFN_GATE), RULE("mlp.up_proj.weight", QF_ROLE_FFN_UP),         \
    RULE("mlp.down_proj.weight", QF_ROLE_FFN_DOWN)
/* Qwen-MoE and DeepSeek name their experts alike. */
#define EXPERT_RULES                                                                                    \
    RULE("mlp.gate.weight", QF_ROLE_FFN_GATE_INP),                                                      \
    STACK("mlp.experts.{E}.gate_proj.weight", QF_ROLE_FFN_GATE_EXPS),                                   \
    STACK("mlp.experts.{E}.up_proj.weight", QF_ROLE_FFN_UP_EXPS),                                       \
    STACK("mlp.experts.{E}.down_proj.weight", QF_ROLE_FFN_DOWN_EXPS)
#define END {NULL, QF_ROLE_OTHER, QF_MAP_COPY}

static const qf_name_rule llama_rules[] = {GQA_RULES, DENSE_RULES, END};

/* Llama and Mistral, and Mixtral's experts (llama.cpp writes Mixtral as "llama"). */
static const qf_name_rule mixtral_rules[] = {
    GQA_RULES, DENSE_RULES,
    RULE("block_sparse_moe.gate.weight", QF_ROLE_FFN_GATE_INP),
    STACK("block_sparse_moe.experts.{E}.w1.weight", QF_ROLE_FFN_GATE_EXPS),
    STACK("block_sparse_moe.experts.{E}.w3.weight", QF_ROLE_FFN_UP_EXPS),
    STACK("block_sparse_moe.experts.{E}.w2.weight", QF_ROLE_FFN_DOWN_EXPS),
    END,
};

static const qf_name_rule qwen_moe_rules[] = {
    GQA_RULES, DENSE_RULES, EXPERT_RULES,
    RULE("mlp.shared_expert.gate_proj.weight", QF_ROLE_FFN_GATE_SHEXP),
    RULE("mlp.shared_expert.up_proj.weight", QF_ROLE_FFN_UP_SHEXP),
    RULE("mlp.shared_expert.down_proj.weight", QF_ROLE_FFN_DOWN_SHEXP),
    RULE("mlp.shared_expert_gate.weight", QF_ROLE_FFN_GATE_INP_SHEXP),
    END,
};

/* DeepSeek-V2/V3: multi-head latent attention; kv_b_proj is split into attn_k_b (its nope rows per
 * head, transposed, for the absorbed form of attention) and attn_v_b (its v rows per head), as
 * llama.cpp's converter splits it. */
static const qf_name_rule deepseek2_rules[] = {
    RULE("input_layernorm.weight", QF_ROLE_ATTN_NORM),
    RULE("self_attn.q_proj.weight", QF_ROLE_ATTN_Q),
    RULE("self_attn.q_a_proj.weight", QF_ROLE_ATTN_Q_A),
    RULE("self_attn.q_a_layernorm.weight", QF_ROLE_ATTN_Q_A_NORM),
    RULE("self_attn.q_b_proj.weight", QF_ROLE_ATTN_Q_B),
    RULE("self_attn.kv_a_proj_with_mqa.weight", QF_ROLE_ATTN_KV_A_MQA),
    RULE("self_attn.kv_a_layernorm.weight", QF_ROLE_ATTN_KV_A_NORM),
    {"self_attn.kv_b_proj.weight", QF_ROLE_ATTN_K_B, QF_MAP_HEAD_COLS},
    {"self_attn.kv_b_proj.weight", QF_ROLE_ATTN_V_B, QF_MAP_HEAD_ROWS},
    RULE("self_attn.o_proj.weight", QF_ROLE_ATTN_OUT),
    RULE("post_attention_layernorm.weight", QF_ROLE_FFN_NORM),
    DENSE_RULES, EXPERT_RULES,
    RULE("mlp.gate.e_score_correction_bias", QF_ROLE_FFN_EXP_PROBS_B),
    RULE("mlp.shared_experts.gate_proj.weight", QF_ROLE_FFN_GATE_SHEXP),
    RULE("mlp.shared_experts.up_proj.weight", QF_ROLE_FFN_UP_SHEXP),
    RULE("mlp.shared_experts.down_proj.weight", QF_ROLE_FFN_DOWN_SHEXP),
    END,
};

/* ---- the table ---------------------------------------------------------------------------------- */

static const char *const llama_classes[] = {"LlamaForCausalLM", "LLaMAForCausalLM", "MistralForCausalLM",
                                            "MixtralForCausalLM", NULL};
static const char *const qwen2_classes[] = {"Qwen2ForCausalLM", NULL};
static const char *const qwen3_classes[] = {"Qwen3ForCausalLM", NULL};
static const char *const qwen2moe_classes[] = {"Qwen2MoeForCausalLM", NULL};
static const char *const qwen3moe_classes[] = {"Qwen3MoeForCausalLM", NULL};
static const char *const deepseek2_classes[] = {"DeepseekV2ForCausalLM", "DeepseekV3ForCausalLM", NULL};

/* llama.cpp writes Mixtral as "llama" with expert tensors: the row carries Mixtral's rules and the moe
 * flag, and a Llama checkpoint simply has no experts (n_expert = 0). */
static const qf_arch arch_table[] = {
    {.name = "llama", .hf_classes = llama_classes, .layer_rules = mixtral_rules, .attn = QF_ATTN_GQA, .moe = true,
     .hf_pairs = QF_ROPE_NEOX, .gguf_pairs = QF_ROPE_ADJACENT, .moe_norm = QF_MOE_NORM_ALWAYS},
    {.name = "qwen2", .hf_classes = qwen2_classes, .layer_rules = llama_rules, .attn = QF_ATTN_GQA,
     .hf_pairs = QF_ROPE_NEOX, .gguf_pairs = QF_ROPE_NEOX, .qkv_bias = true},
    {.name = "qwen3", .hf_classes = qwen3_classes, .layer_rules = llama_rules, .attn = QF_ATTN_GQA,
     .hf_pairs = QF_ROPE_NEOX, .gguf_pairs = QF_ROPE_NEOX, .qk_norm = true},
    {.name = "qwen2moe", .hf_classes = qwen2moe_classes, .layer_rules = qwen_moe_rules, .attn = QF_ATTN_GQA,
     .moe = true, .hf_pairs = QF_ROPE_NEOX, .gguf_pairs = QF_ROPE_NEOX, .qkv_bias = true, .shexp_gate = true,
     .moe_norm = QF_MOE_NORM_NEVER},
    {.name = "qwen3moe", .hf_classes = qwen3moe_classes, .layer_rules = qwen_moe_rules, .attn = QF_ATTN_GQA,
     .moe = true, .hf_pairs = QF_ROPE_NEOX, .gguf_pairs = QF_ROPE_NEOX, .qk_norm = true,
     .moe_norm = QF_MOE_NORM_ALWAYS},
    {.name = "deepseek2", .hf_classes = deepseek2_classes, .layer_rules = deepseek2_rules, .attn = QF_ATTN_MLA,
     .moe = true, .hf_pairs = QF_ROPE_ADJACENT, .gguf_pairs = QF_ROPE_ADJACENT, .moe_norm = QF_MOE_NORM_KEY,
     .mtp_layers = true},
};

const qf_arch *qf_arch_by_name(const char *name) {
    for (size_t i = 0; i < QF_ARRAY_LEN(arch_table); i++)
        if (strcmp(arch_table[i].name, name) == 0) return &arch_table[i];
    return NULL;
}

const qf_arch *qf_arch_at(size_t i) { return i < QF_ARRAY_LEN(arch_table) ? &arch_table[i] : NULL; }
