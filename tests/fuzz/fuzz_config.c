/*
 * fuzz_config.c — config.json through qf_hparams_from_hf and qf_hf_fp8_block, on an exactly sized copy
 * without a terminating NUL (both take a length). An accepted configuration is then used the way the
 * converter uses it: a tensor list of HF names over every layer (dense, MoE, MLA, out-of-range and
 * malformed ones) is mapped against it, and llama3 rope factors are computed when the file asks for
 * them.
 */
#include "fuzz_util.h"

#include "formats/arch.h"

static const char *const NAMES[] = {
    "model.embed_tokens.weight", "model.norm.weight", "lm_head.weight", "model.layers.%u.self_attn.q_proj.weight",
    "model.layers.%u.self_attn.k_proj.weight", "model.layers.%u.self_attn.v_proj.weight",
    "model.layers.%u.self_attn.o_proj.weight", "model.layers.%u.self_attn.q_proj.bias",
    "model.layers.%u.mlp.gate_proj.weight", "model.layers.%u.mlp.up_proj.weight",
    "model.layers.%u.mlp.down_proj.weight", "model.layers.%u.input_layernorm.weight",
    "model.layers.%u.post_attention_layernorm.weight", "model.layers.%u.self_attn.rotary_emb.inv_freq",
    "model.layers.%u.self_attn.kv_b_proj.weight", "model.layers.%u.self_attn.q_a_proj.weight",
    "model.layers.%u.mlp.experts.%u.gate_proj.weight", "model.layers.%u.block_sparse_moe.experts.%u.w2.weight",
    "model.layers.%u.mlp.gate.weight", "model.layers.%u.mlp.experts.01.up_proj.weight",
    "model.layers.99999999999.mlp.up_proj.weight", "model.layers.-1.mlp.up_proj.weight", "model.layers..weight",
    "unknown.tensor"};

typedef struct fake {
    char names[QF_ARRAY_LEN(NAMES) * 3][160];
    uint64_t shapes[QF_ARRAY_LEN(NAMES) * 3][2];
    qf_tensor_shape cur;
} fake;

static const qf_tensor_shape *fake_shape(void *ctx, size_t i) {
    fake *f = ctx;
    f->cur = (qf_tensor_shape){.name = f->names[i], .n_dims = 2, .shape = f->shapes[i]};
    return &f->cur;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *json = (char *)qf_fuzz_copy(data, size);
    qf_hparams hp;
    qf_error err;
    qf_error_clear(&err);
    uint32_t block[2];
    qf_status st = qf_hf_fp8_block("fuzz/config.json", json, size, block, &err);
    qf_fuzz_check_failure(st, &err);
    qf_error_clear(&err);
    st = qf_hparams_from_hf("fuzz/config.json", json, size, &hp, &err);
    qf_fuzz_check_failure(st, &err);
    if (st == QF_OK) {
        if (!hp.arch || hp.n_head == 0 || hp.n_head_kv == 0) qf_fuzz_violation("accepted config lacks heads", &err);
        uint32_t layers[3] = {0, hp.n_layer - 1, hp.n_layer};
        static fake f;
        size_t n = 0;
        for (size_t i = 0; i < QF_ARRAY_LEN(NAMES); i++)
            for (size_t l = 0; l < 3; l++, n++) {
                snprintf(f.names[n], sizeof f.names[n], NAMES[i], layers[l], layers[l] % 7);
                f.shapes[n][0] = hp.n_embd;
                f.shapes[n][1] = (uint64_t)hp.n_embd * (i % 3 + 1);
            }
        qf_tensor_map map;
        qf_error e2;
        qf_error_clear(&e2);
        qf_status ms = qf_tensor_map_hf(&hp, n, fake_shape, &f, "fuzz", &map, &e2);
        qf_fuzz_check_failure(ms, &e2);
        if (ms == QF_OK) qf_tensor_map_free(&map);
        /* one float per rotary pair; a head_dim beyond any model's is not worth the allocation here */
        if (hp.rope_scaling == QF_ROPE_SCALING_LLAMA3 && hp.head_dim <= (1u << 16)) {
            float *fac = qf_malloc_n(hp.head_dim / 2 + 1, sizeof *fac);
            if (!fac) abort();
            qf_rope_llama3_factors(&hp, fac);
            free(fac);
        }
    }
    free(json);
    return 0;
}
