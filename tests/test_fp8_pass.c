/*
 * FP8 pass-through (quantize/plan.c, run.c): a DeepSeek-V3 FP8 release (E4M3 + one F32 weight_scale_inv
 * per 128x128 block, made by qforge synth) quantized with the fp8 recipe keeps the release's bytes: every
 * group of an e4m3_b128 / e4m3_row row is the source's scale for it and the source's codes, checked
 * here against the safetensors bytes read directly, for plain weights, stacked experts and both halves
 * of kv_b_proj (attn_v_b: rows of it; attn_k_b: columns of it). Where a split does not align with the
 * 128-row blocks the tensor is quantized the normal way instead.
 */
#include "testutil.h"

#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "kernels/qtypes.h"

#include <math.h>

typedef struct model {
    uint32_t nope, v;      /* head widths: kv_b_proj holds per head nope k rows, then v rows */
    qf_st_model *st;
} model;

/* The GGUF names of the weights an FP8 release stores as E4M3, and the HF tensor each comes from. */
static const struct { const char *gguf, *hf; } names[] = {
    {"attn_q_a", "self_attn.q_a_proj"}, {"attn_q_b", "self_attn.q_b_proj"},
    {"attn_kv_a_mqa", "self_attn.kv_a_proj_with_mqa"}, {"attn_output", "self_attn.o_proj"},
    {"attn_k_b", "self_attn.kv_b_proj"}, {"attn_v_b", "self_attn.kv_b_proj"},
    {"ffn_gate", "mlp.gate_proj"}, {"ffn_up", "mlp.up_proj"}, {"ffn_down", "mlp.down_proj"},
    {"ffn_gate_shexp", "mlp.shared_experts.gate_proj"}, {"ffn_up_shexp", "mlp.shared_experts.up_proj"},
    {"ffn_down_shexp", "mlp.shared_experts.down_proj"},
    {"ffn_gate_exps", "mlp.experts.%u.gate_proj"}, {"ffn_up_exps", "mlp.experts.%u.up_proj"},
    {"ffn_down_exps", "mlp.experts.%u.down_proj"},
};

static const qf_st_tensor *hf(const model *m, int layer, const char *fmt, unsigned expert, bool scale) {
    char part[96], name[160];
    snprintf(part, sizeof part, fmt, expert);
    snprintf(name, sizeof name, "model.layers.%d.%s.weight%s", layer, part, scale ? "_scale_inv" : "");
    const qf_st_tensor *t = qf_st_find(m->st, name);
    CHECK_MSG(t != NULL, "%s missing", name);
    return t;
}

/* Row r of the GGUF tensor t from the release, the mapping written out here on its own from llama.cpp's
 * converter's definitions: the source weight and scale tensors, and where value i of the row is in them. */
typedef struct src_row {
    const qf_st_tensor *w, *s;
    uint64_t row, col;     /* of value 0 */
    bool down;             /* values run down a column (attn_k_b) instead of along a row */
} src_row;

static bool source_row(const model *m, const qf_gguf_tensor *t, int layer, const char *kind, const char *fmt,
                       uint64_t r, src_row *o) {
    unsigned expert = 0;
    *o = (src_row){.row = r};
    if (strstr(kind, "_exps")) { expert = (unsigned)(r / t->ne[1]); o->row = r % t->ne[1]; }
    if (!strcmp(kind, "attn_v_b")) o->row = (r / m->v) * (m->nope + m->v) + m->nope + r % m->v;
    if (!strcmp(kind, "attn_k_b")) { /* ne = [nope, kv_lora, heads]: row (h, c) is column c of head h's k rows */
        o->row = (r / t->ne[1]) * (m->nope + m->v);
        o->col = r % t->ne[1];
        o->down = true;
    }
    o->w = hf(m, layer, fmt, expert, false);
    o->s = hf(m, layer, fmt, expert, true);
    return o->w && o->s && o->w->dtype == QF_DT_F8_E4M3 && o->s->dtype == QF_DT_F32;
}

static void source_elem(const src_row *o, uint64_t i, uint8_t *code, float *scale) {
    uint64_t row = o->row + (o->down ? i : 0), col = o->col + (o->down ? 0 : i);
    *code = o->w->data[row * o->w->shape[1] + col];
    memcpy(scale, o->s->data + ((row / 128) * o->s->shape[1] + col / 128) * sizeof(float), sizeof(float));
}

/* Every group of every row of t is the source's scale for it, then the source's codes. */
static bool same_bytes(const model *m, const qf_gguf_tensor *t, int layer, const char *kind, const char *fmt) {
    const qf_qtype_traits *tt = qf_qtype_get(t->type);
    uint64_t len = t->ne[0], g = qf_qtype_e4m3_group(tt, len), rows = t->ne[1] * t->ne[2], rb;
    CHECK(qf_qtype_row_bytes(tt, len, &rb));
    for (uint64_t r = 0; r < rows; r++) {
        const uint8_t *out = t->data + r * rb;
        src_row o;
        if (!source_row(m, t, layer, kind, fmt, r, &o)) return false;
        for (uint64_t c = 0; c < len; c += g, out += sizeof(float) + g) {
            for (uint64_t i = c; i < c + g; i++) {
                uint8_t code;
                float scale;
                source_elem(&o, i, &code, &scale);
                if (memcmp(out, &scale, sizeof scale) != 0 || out[sizeof(float) + i - c] != code) {
                    CHECK_MSG(false, "%s: row %llu, value %llu is not the source's (code %02x, scale %g)", t->name,
                              (unsigned long long)r, (unsigned long long)i, code, (double)scale);
                    return false;
                }
            }
        }
    }
    return true;
}

/* Quantize a generated release with the fp8 recipe; every E4M3 weight of it must be passed through
 * (checked byte for byte) except those named in `requantized`, which must be e4m3_b32. */
static void check_release(const char *name, uint32_t nope, uint32_t v, uint32_t shards, const char *requantized) {
    char dir[4096], out[4096], file[128];
    qf_test_fresh_dir(name, dir, sizeof dir);
    qf_synth_opts so = {.dir = dir, .seed = 5, .n_layer = 2, .n_embd = 256, .n_ff = 384, .n_vocab = 320,
                        .dtype = "bf16", .arch = "deepseek-v3", .n_expert = 4, .n_ff_exp = 256, .fp8 = true,
                        .n_shards = shards, .qk_nope_dim = nope, .v_head_dim = v};
    qf_error err;
    CHECK_OK(qf_synth_model(&so, &err), &err);
    snprintf(file, sizeof file, "%s.gguf", name);
    qf_test_path(file, out, sizeof out);
    qf_convert_opts o = {.src = dir, .out = out, .recipe = "fp8", .threads = 2};
    CHECK_OK(qf_convert(&o, &err), &err);
    model m = {.nope = nope, .v = v};
    qf_gguf *g = NULL;
    CHECK_OK(qf_st_open(dir, &m.st, &err), &err);
    CHECK_OK(qf_gguf_open(out, &g, &err), &err);
    if (!g || !m.st) goto done;
    size_t passed = 0, weights = 0;
    for (size_t k = 0; k < qf_gguf_n_tensors(g); k++) {
        const qf_gguf_tensor *t = qf_gguf_tensor_at(g, k);
        int layer, at = 0;
        char kind[64];
        if (sscanf(t->name, "blk.%d.%63[a-z_].weight%n", &layer, kind, &at) != 2 || t->name[at]) continue;
        for (size_t j = 0; j < QF_ARRAY_LEN(names); j++) {
            if (strcmp(kind, names[j].gguf)) continue;
            weights++;
            const char *type = qf_qtype_get(t->type)->name;
            if (requantized && !strcmp(kind, requantized)) {
                CHECK_MSG(!strcmp(type, "e4m3_b32"), "%s: %s, expected e4m3_b32 (the split crosses blocks)",
                          t->name, type);
                continue;
            }
            bool exact = qf_qtype_get(t->type)->e4m3_groups;
            CHECK_MSG(exact, "%s: %s, expected the release's bytes as e4m3_b128 / e4m3_row", t->name, type);
            CHECK_MSG(strcmp(type, "e4m3_b128") == 0 || (t->ne[0] % 128 && !strcmp(type, "e4m3_row")),
                      "%s: %s for rows of %llu", t->name, type, (unsigned long long)t->ne[0]);
            if (exact && same_bytes(&m, t, layer, kind, names[j].hf)) passed++;
        }
    }
    /* 2 layers: 6 attention weights each, the dense layer's 3, the MoE layer's 3 shared and 3 stacked */
    CHECK_MSG(weights == 21, "%s: %zu E4M3 weights in the file, expected 21", name, weights);
    CHECK_MSG(passed == weights - (requantized ? 2 : 0), "%s: %zu of %zu weights hold the release's bytes", name,
              passed, weights);
done:
    qf_gguf_close(g);
    qf_st_close(m.st);
}

/* A NaN code (0x7F) in a passed-through weight refuses the tensor, naming it, as the quantizer refuses a
 * NaN, and leaves no output. */
static void check_nan_code(void) {
    char dir[4096], out[4096];
    qf_test_fresh_dir("fp8pass_nan", dir, sizeof dir);
    qf_synth_opts so = {.dir = dir, .seed = 6, .n_layer = 2, .n_embd = 256, .n_ff = 384, .n_vocab = 320,
                        .dtype = "bf16", .arch = "deepseek-v3", .n_expert = 4, .n_ff_exp = 256, .fp8 = true};
    qf_error err;
    CHECK_OK(qf_synth_model(&so, &err), &err);
    qf_st_model *st = NULL;
    CHECK_OK(qf_st_open(dir, &st, &err), &err);
    const qf_st_tensor *w = st ? qf_st_find(st, "model.layers.0.mlp.up_proj.weight") : NULL;
    CHECK(w && w->dtype == QF_DT_F8_E4M3);
    if (!w) { qf_st_close(st); return; }
    char path[4096];
    snprintf(path, sizeof path, "%s", qf_st_shard_path(st, w->shard));
    uint64_t at = w->offset + 5;
    qf_st_close(st);
    size_t n;
    uint8_t *file = qf_test_read_file(path, &n), nan = 0x7F;
    CHECK(file && n > 8);
    if (!file) return;
    uint64_t header;
    memcpy(&header, file, sizeof header);
    file[8 + header + at] = nan;
    CHECK(qf_test_write_file(path, file, n));
    free(file);
    qf_test_path("fp8pass_nan.gguf", out, sizeof out);
    remove(out);
    qf_convert_opts o = {.src = dir, .out = out, .recipe = "fp8"};
    qf_status s = qf_convert(&o, &err);
    CHECK_MSG(s == QF_E_INPUT && strstr(err.msg, "blk.0.ffn_up.weight") && strstr(err.msg, "NaN"), "%d '%s'", s,
              err.msg);
    CHECK(!qf_test_file_exists(out));
}

int main(int argc, char **argv) {
    qf_test_init(argc, argv);
    /* qf-deepseek-a's widths (attn_k_b rows of 32: one scale each, e4m3_row), sharded as released */
    check_release("fp8pass_ds", 32, 32, 2, NULL);
    /* DeepSeek-V3's 128 + 128: attn_k_b rows are 128 rows of kv_b_proj within one block: e4m3_b128 */
    check_release("fp8pass_128", 128, 128, 1, NULL);
    /* 128 + 64: head 1's k rows are 192..319 of kv_b_proj, across the block boundary at 256, so
     * attn_k_b has no one scale per group and is decoded and quantized; attn_v_b (rows) still passes */
    check_release("fp8pass_split", 128, 64, 1, "attn_k_b");
    check_nan_code();
    return qf_test_finish();
}
