/* model.c — open a model for the runtime from a GGUF file or a Hugging Face checkpoint (runtime.h).
 *
 * Both kinds go through the tensor map of formats/ (arch.h): it checks that the file holds exactly the
 * tensors the architecture's row and the hyper-parameters imply, with their shapes, as llama.cpp's
 * loader does, so a file qforge runs is one llama.cpp would load. The weights are then bound by role,
 * per layer kind. */
#include "runtime/runtime.h"

#include "formats/gguf_model.h"
#include "formats/infile.h"
#include "kernels/qtypes.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <sys/stat.h>

/* ---- binding ------------------------------------------------------------------------------------- */

typedef struct binder {
    qf_rt_model *m;
    qf_tensor_map map;
    qf_error *err;
} binder;

static qf_status gguf_weight(binder *b, const qf_tensor_spec *t, qf_rt_weight *w) {
    qf_rt_model *m = b->m;
    const qf_gguf_tensor *g = qf_gguf_tensor_at(m->gguf, b->map.src[t->first_src]);
    const qf_qtype_traits *tt = qf_qtype_get(g->type);
    if (!tt || !tt->dequantize)
        return qf_fail(b->err, QF_E_UNSUPPORTED, "%s: tensor '%s' has type %s, which this build cannot dequantize",
                       m->label, g->name, tt ? tt->name : "(unknown)");
    w->tt = tt;
    w->data = g->data;
    w->row_len = g->ne[0];
    w->n_rows = g->ne[1] * g->ne[2] * g->ne[3]; /* the reader checked the product for overflow */
    if (!qf_qtype_row_bytes(tt, w->row_len, &w->row_bytes))
        return qf_fail(b->err, QF_E_INPUT, "%s: tensor '%s' row length %llu does not fit type %s", m->label, g->name,
                       (unsigned long long)w->row_len, tt->name);
    return QF_OK;
}

static qf_status source_weight(binder *b, size_t src, qf_rt_weight *w) {
    const qf_src_tensor *t = qf_source_tensor(b->m->src, src);
    if (!qf_dtype_is_float(t->dtype))
        return qf_fail(b->err, QF_E_UNSUPPORTED, "%s: tensor '%s' has dtype %s; the runtime reads float tensors only",
                       b->m->label, t->name, qf_dtype_name(t->dtype));
    w->src = b->m->src;
    w->src_idx = src;
    w->row_len = t->row_len;
    w->n_rows = t->n_rows;
    return QF_OK;
}

/* The matrix of (role, layer); experts of a stacked one as n_expert separate matrices. Absent
 * optional ones keep n_rows 0 (the map already refused missing required tensors). */
static qf_status bind_matrix(binder *b, qf_role role, int layer, qf_rt_weight *w) {
    memset(w, 0, sizeof *w);
    w->role = role;
    w->layer = layer;
    w->expert = -1;
    const qf_tensor_spec *t = qf_tensor_map_find(&b->map, role, layer);
    if (!t) return QF_OK;
    return b->m->gguf ? gguf_weight(b, t, w) : source_weight(b, b->map.src[t->first_src], w);
}

static qf_status bind_experts(binder *b, qf_role role, int layer, qf_rt_weight **out) {
    uint32_t n = b->m->hp.n_expert;
    qf_rt_weight *w = qf_calloc_n(n, sizeof *w);
    if (!(*out = w)) return qf_fail(b->err, QF_E_NOMEM, "out of memory");
    const qf_tensor_spec *t = qf_tensor_map_find(&b->map, role, layer);
    qf_rt_weight all;
    qf_status st = b->m->gguf ? bind_matrix(b, role, layer, &all) : QF_OK;
    for (uint32_t e = 0; !st && e < n; e++) {
        if (b->m->gguf) { /* matrix e of the 3-D tensor */
            w[e] = all;
            w[e].n_rows = all.n_rows / n;
            w[e].data = all.data + (uint64_t)e * w[e].n_rows * all.row_bytes;
        } else {
            st = source_weight(b, b->map.src[t->first_src + e], &w[e]);
            w[e].role = role;
            w[e].layer = layer;
        }
        w[e].expert = (int)e;
    }
    return st;
}

/* A 1-D tensor copied to F32; *out stays NULL when it is absent. */
static qf_status bind_vector(binder *b, qf_role role, int layer, float **out) {
    qf_rt_weight w;
    *out = NULL;
    qf_status st = bind_matrix(b, role, layer, &w);
    if (st || w.n_rows == 0) return st;
    uint64_t n = w.n_rows * w.row_len; /* a [1, n] tensor is a vector too (the shared-expert gate) */
    if (!(*out = qf_malloc_n(n, sizeof(float)))) return qf_fail(b->err, QF_E_NOMEM, "out of memory");
    qf_rt_weight_rows(&w, 0, w.n_rows, *out);
    return QF_OK;
}

/* MLA's per-head key and value expansions of the latent. From an HF checkpoint (or an old GGUF with
 * the unsplit attn_kv_b) both are row maps of kv_b_proj; from a llama.cpp GGUF attn_v_b is used as it
 * is and attn_k_b, stored transposed for the absorbed attention, is transposed back once into F32. */
static qf_status bind_mla_kv(binder *b, int l, qf_rt_attn *A) {
    const qf_hparams *hp = &b->m->hp;
    uint32_t H = hp->n_head, nope = hp->qk_nope_dim, dv = hp->v_head_dim, R = hp->kv_lora_rank;
    const qf_tensor_spec *kb = qf_tensor_map_find(&b->map, QF_ROLE_ATTN_K_B, l);
    qf_status st;
    if (!b->m->gguf || !kb) {
        qf_role whole = b->m->gguf ? QF_ROLE_ATTN_KV_B : QF_ROLE_ATTN_V_B; /* HF: both specs read kv_b_proj */
        if ((st = bind_matrix(b, whole, l, &A->wkb))) return st;
        A->wvb = A->wkb;
        A->wkb.group = nope;
        A->wvb.group = dv;
        A->wkb.stride = A->wvb.stride = nope + dv;
        A->wkb.offset = 0;
        A->wvb.offset = nope;
        A->wkb.n_rows = (uint64_t)H * nope;
        A->wvb.n_rows = (uint64_t)H * dv;
        A->wkb.role = QF_ROLE_ATTN_K_B;
        A->wvb.role = QF_ROLE_ATTN_V_B;
        return QF_OK;
    }
    qf_rt_weight t;
    if ((st = bind_matrix(b, QF_ROLE_ATTN_V_B, l, &A->wvb)) || (st = bind_matrix(b, QF_ROLE_ATTN_K_B, l, &t))) return st;
    float *kt = qf_malloc_n((uint64_t)H * nope, (uint64_t)R * sizeof(float)), *row = qf_malloc_n(nope, sizeof(float));
    if (!kt || !row) { free(kt); free(row); return qf_fail(b->err, QF_E_NOMEM, "out of memory transposing attn_k_b"); }
    for (uint32_t h = 0; h < H; h++)
        for (uint32_t j = 0; j < R; j++) {
            qf_rt_weight_rows(&t, (uint64_t)h * R + j, 1, row);
            for (uint32_t i = 0; i < nope; i++) kt[((uint64_t)h * nope + i) * R + j] = row[i];
        }
    free(row);
    A->owned = kt;
    A->wkb = (qf_rt_weight){.n_rows = (uint64_t)H * nope, .row_len = R, .tt = qf_qtype_get(QF_T_F32),
                            .data = (const uint8_t *)kt, .row_bytes = (uint64_t)R * sizeof(float), .expert = -1,
                            .role = QF_ROLE_ATTN_K_B, .layer = l};
    return QF_OK;
}

static qf_status bind_attn(binder *b, int l, qf_rt_attn *A) {
    qf_status st;
    if ((st = bind_vector(b, QF_ROLE_ATTN_NORM, l, &A->norm)) || (st = bind_matrix(b, QF_ROLE_ATTN_OUT, l, &A->wo)) ||
        (st = bind_matrix(b, QF_ROLE_ATTN_Q, l, &A->wq)))
        return st;
    if (b->m->hp.arch->attn == QF_ATTN_GQA) {
        if ((st = bind_matrix(b, QF_ROLE_ATTN_K, l, &A->wk)) || (st = bind_matrix(b, QF_ROLE_ATTN_V, l, &A->wv)) ||
            (st = bind_vector(b, QF_ROLE_ATTN_Q_BIAS, l, &A->bq)) || (st = bind_vector(b, QF_ROLE_ATTN_K_BIAS, l, &A->bk)) ||
            (st = bind_vector(b, QF_ROLE_ATTN_V_BIAS, l, &A->bv)) || (st = bind_vector(b, QF_ROLE_ATTN_Q_NORM, l, &A->q_norm)) ||
            (st = bind_vector(b, QF_ROLE_ATTN_K_NORM, l, &A->k_norm)))
            return st;
        return QF_OK;
    }
    if ((st = bind_matrix(b, QF_ROLE_ATTN_Q_A, l, &A->wq_a)) || (st = bind_matrix(b, QF_ROLE_ATTN_Q_B, l, &A->wq_b)) ||
        (st = bind_matrix(b, QF_ROLE_ATTN_KV_A_MQA, l, &A->wkv_a)) ||
        (st = bind_vector(b, QF_ROLE_ATTN_Q_A_NORM, l, &A->q_a_norm)) ||
        (st = bind_vector(b, QF_ROLE_ATTN_KV_A_NORM, l, &A->kv_a_norm)))
        return st;
    return bind_mla_kv(b, l, A);
}

static qf_status bind_ffn(binder *b, int l, qf_rt_ffn *F) {
    qf_status st = bind_vector(b, QF_ROLE_FFN_NORM, l, &F->norm);
    if (st) return st;
    F->moe = qf_layer_is_moe(&b->m->hp, l);
    if (!F->moe) {
        if ((st = bind_matrix(b, QF_ROLE_FFN_GATE, l, &F->wg)) || (st = bind_matrix(b, QF_ROLE_FFN_UP, l, &F->wu)) ||
            (st = bind_matrix(b, QF_ROLE_FFN_DOWN, l, &F->wd)))
            return st;
        return QF_OK;
    }
    if ((st = bind_matrix(b, QF_ROLE_FFN_GATE_INP, l, &F->router)) ||
        (st = bind_vector(b, QF_ROLE_FFN_EXP_PROBS_B, l, &F->expert_bias)) ||
        (st = bind_experts(b, QF_ROLE_FFN_GATE_EXPS, l, &F->eg)) || (st = bind_experts(b, QF_ROLE_FFN_UP_EXPS, l, &F->eu)) ||
        (st = bind_experts(b, QF_ROLE_FFN_DOWN_EXPS, l, &F->ed)) || (st = bind_matrix(b, QF_ROLE_FFN_GATE_SHEXP, l, &F->wg)) ||
        (st = bind_matrix(b, QF_ROLE_FFN_UP_SHEXP, l, &F->wu)) || (st = bind_matrix(b, QF_ROLE_FFN_DOWN_SHEXP, l, &F->wd)) ||
        (st = bind_matrix(b, QF_ROLE_FFN_GATE_INP_SHEXP, l, &F->shexp_gate)))
        return st;
    return QF_OK;
}

/* ---- rotary embeddings and the attention scale ---------------------------------------------------- */

/* yarn_get_mscale of DeepSeek's and HF's code: the attention temperature of a YaRN factor. */
static double yarn_mscale(double factor, double m) { return factor <= 1 ? 1.0 : 0.1 * m * log(factor) + 1.0; }

/* The YaRN ramp of pair i (ggml_rope_yarn_corr_dims and rope_yarn_ramp; HF's find_correction_range and
 * linear_ramp_mask are the same formula): 1 keeps the pair's frequency, 0 divides it by the factor. */
static double yarn_ramp(const qf_hparams *hp, uint32_t i) {
    double n = hp->n_rot, two_pi = 6.283185307179586, ctx = hp->rope_orig_ctx, base = hp->rope_theta;
    double lo = floor(n * log(ctx / (hp->yarn_beta_fast * two_pi)) / (2 * log(base)));
    double hi = ceil(n * log(ctx / (hp->yarn_beta_slow * two_pi)) / (2 * log(base)));
    lo = QF_MAX(0.0, lo);
    hi = QF_MIN(n - 1, hi);
    double y = ((double)i - lo) / QF_MAX(0.001, hi - lo);
    return 1.0 - QF_MIN(1.0, QF_MAX(0.0, y));
}

/* The cos/sin magnitude and the softmax scale. An HF checkpoint follows its family's reference code
 * (DeepSeek's for MLA: cos/sin x mscale(mscale)/mscale(mscale_all_dim), softmax x mscale(mscale_all_dim)^2;
 * transformers' YaRN otherwise: cos/sin x mscale(1)); a GGUF follows llama.cpp, which for deepseek2
 * takes mscale equal to mscale_all_dim (so cos/sin stay unscaled) and otherwise scales cos/sin by
 * mscale(1). The two agree for every released DeepSeek config. */
static void attn_scales(qf_rt_model *m) {
    const qf_hparams *hp = &m->hp;
    double dk = qf_attn_dk(hp), f = hp->rope_factor, cs = 1.0, sm = 1.0 / sqrt(dk);
    bool yarn = hp->rope_scaling == QF_ROPE_SCALING_YARN, mla = hp->arch->attn == QF_ATTN_MLA;
    if (yarn && mla && m->src) {
        cs = yarn_mscale(f, hp->yarn_mscale) / yarn_mscale(f, hp->yarn_mscale_all_dim);
        if (hp->yarn_mscale_all_dim != 0) sm *= yarn_mscale(f, hp->yarn_mscale_all_dim) * yarn_mscale(f, hp->yarn_mscale_all_dim);
    } else if (yarn && mla) {
        double m_all = hp->yarn_mscale_all_dim, ln = log(f);
        double af = (m_all != 0 ? yarn_mscale(f, m_all != 1 ? m_all : 1) / yarn_mscale(f, m_all) : yarn_mscale(f, 1)) / (1 + 0.1 * ln);
        cs = af * (1 + 0.1 * ln);
        double ms = cs * (1 + 0.1 * m_all * ln);
        sm = ms * ms / sqrt(dk);
    } else if (yarn) {
        cs = yarn_mscale(f, 1);
    }
    m->rope_mscale = (float)cs;
    m->attn_scale = (float)sm;
}

/* Angle per position of each rotary pair: theta^(-2i/n_rot), with linear, llama3 (rope_freqs) or YaRN
 * scaling. */
static qf_status bind_rope(binder *b) {
    qf_rt_model *m = b->m;
    const qf_hparams *hp = &m->hp;
    uint32_t half = hp->n_rot / 2;
    qf_rope_pairs pairs = m->src ? hp->hf_pairs : hp->arch->gguf_pairs;
    m->rope_neox = pairs == QF_ROPE_NEOX;
    float *div = NULL;
    qf_status st = QF_OK;
    if (m->gguf) st = bind_vector(b, QF_ROLE_ROPE_FREQS, -1, &div);
    else if (hp->rope_scaling == QF_ROPE_SCALING_LLAMA3) {
        if (!(div = qf_malloc_n(half, sizeof(float)))) return qf_fail(b->err, QF_E_NOMEM, "out of memory");
        qf_rope_llama3_factors(hp, div);
    }
    if (!st && !(m->rope_freq = qf_malloc_n(half, sizeof(double)))) st = qf_fail(b->err, QF_E_NOMEM, "out of memory");
    for (uint32_t i = 0; !st && i < half; i++) {
        double freq = pow((double)hp->rope_theta, -2.0 * i / (double)hp->n_rot);
        if (hp->rope_scaling == QF_ROPE_SCALING_LINEAR) freq /= hp->rope_factor;
        if (hp->rope_scaling == QF_ROPE_SCALING_YARN) {
            double ramp = yarn_ramp(hp, i);
            freq = freq / hp->rope_factor * (1 - ramp) + freq * ramp;
        }
        if (div) freq /= div[i];
        m->rope_freq[i] = freq;
    }
    free(div);
    attn_scales(m);
    return st;
}

static qf_status bind_all(binder *b) {
    qf_rt_model *m = b->m;
    const qf_hparams *hp = &m->hp;
    qf_status st;
    if ((st = bind_matrix(b, QF_ROLE_TOKEN_EMBD, -1, &m->tok_embd)) || (st = bind_matrix(b, QF_ROLE_OUTPUT, -1, &m->output)) ||
        (st = bind_vector(b, QF_ROLE_OUTPUT_NORM, -1, &m->output_norm)) || (st = bind_rope(b)))
        return st;
    if (m->output.n_rows == 0) m->output = m->tok_embd; /* tied embeddings */
    m->output.role = QF_ROLE_OUTPUT;
    if (!(m->layers = qf_calloc_n(hp->n_layer, sizeof *m->layers))) return qf_fail(b->err, QF_E_NOMEM, "out of memory");
    for (uint32_t l = 0; l < hp->n_layer; l++)
        if ((st = bind_attn(b, (int)l, &m->layers[l].a)) || (st = bind_ffn(b, (int)l, &m->layers[l].f))) return st;
    return QF_OK;
}

/* The weight matrices of layer l in a fixed order (experts in order); l = -1: the embedding and the
 * output projection (the same matrix twice when tied). */
static size_t layer_weights(const qf_rt_model *m, int l, const qf_rt_weight **out) {
    size_t n = 0;
#define ADD(w) do { if ((w)->n_rows) { if (out) out[n] = (w); n++; } } while (0)
    if (l < 0) {
        ADD(&m->tok_embd);
        ADD(&m->output);
        return n;
    }
    const qf_rt_attn *A = &m->layers[l].a;
    const qf_rt_ffn *F = &m->layers[l].f;
    const qf_rt_weight *attn[] = {&A->wq, &A->wk, &A->wv, &A->wq_a, &A->wq_b, &A->wkv_a, &A->wkb, &A->wvb, &A->wo};
    for (size_t i = 0; i < QF_ARRAY_LEN(attn); i++) ADD(attn[i]);
    const qf_rt_weight *ffn[] = {&F->wg, &F->wu, &F->wd, &F->router, &F->shexp_gate};
    for (size_t i = 0; i < QF_ARRAY_LEN(ffn); i++) ADD(ffn[i]);
    for (uint32_t e = 0; F->moe && e < m->hp.n_expert; e++) {
        ADD(&F->eg[e]);
        ADD(&F->eu[e]);
        ADD(&F->ed[e]);
    }
#undef ADD
    return n;
}

size_t qf_rt_model_weights(const qf_rt_model *m, const qf_rt_weight **out) {
    size_t n = 0;
    for (uint32_t l = 0; m->layers && l < m->hp.n_layer; l++) n += layer_weights(m, (int)l, out ? out + n : NULL);
    return n;
}

/* ---- paging: one layer's weights at a time (layer-major evaluation) ------------------------------- */

/* A weight read from the model's file, as opposed to a copy the model holds (MLA's transposed k_b):
 * only those have pages to drop. */
static bool mapped(const qf_rt_model *m, const qf_rt_weight *w) {
    if (w->src) return true;
    return w->tt && !(w->layer >= 0 && w->data == (const uint8_t *)m->layers[w->layer].a.owned);
}

/* Rows of the stored tensor a row-mapped weight spans (runtime.h: the row map). */
static uint64_t stored_rows(const qf_rt_weight *w) { return w->group ? w->n_rows / w->group * w->stride : w->n_rows; }

/* The stored bytes behind w; weights sharing a source tensor (MLA's k and v halves of kv_b_proj) are
 * counted by the first of them. */
static uint64_t stored_bytes(const qf_rt_weight *w, const qf_rt_weight *prev) {
    if (w->src) return prev && prev->src == w->src && prev->src_idx == w->src_idx ? 0 : qf_source_tensor(w->src, w->src_idx)->nbytes;
    return stored_rows(w) * w->row_bytes;
}

/* Weights of one layer, into a buffer of the widest layer's count. */
typedef struct layer_list {
    const qf_rt_weight *w[64];
    const qf_rt_weight **p;
    size_t n;
} layer_list;

static bool list_layer(const qf_rt_model *m, int l, layer_list *ls) {
    size_t n = layer_weights(m, l, NULL);
    ls->p = n <= QF_ARRAY_LEN(ls->w) ? ls->w : qf_malloc_n(n, sizeof *ls->p);
    if (!ls->p) return false;
    ls->n = layer_weights(m, l, ls->p);
    return true;
}

static void list_free(layer_list *ls) {
    if (ls->p != ls->w) free(ls->p);
}

uint64_t qf_rt_layer_bytes(const qf_rt_model *m, int layer) {
    layer_list ls;
    uint64_t sum = 0;
    if (!list_layer(m, layer, &ls)) return 0;
    for (size_t i = 0; i < ls.n; i++)
        if (mapped(m, ls.p[i]) && !(i && ls.p[i]->data && ls.p[i]->data == ls.p[i - 1]->data))
            sum += stored_bytes(ls.p[i], i ? ls.p[i - 1] : NULL);
    list_free(&ls);
    return sum;
}

bool qf_rt_layer_file_span(const qf_rt_model *m, int layer, uint64_t *lo, uint64_t *hi) {
    uint64_t len = 0;
    const uint8_t *base = m->gguf ? qf_gguf_file_bytes(m->gguf, &len) : NULL;
    layer_list ls;
    *lo = UINT64_MAX;
    *hi = 0;
    if (!base || !list_layer(m, layer, &ls)) return false;
    for (size_t i = 0; i < ls.n; i++) {
        const qf_rt_weight *w = ls.p[i];
        uintptr_t at = (uintptr_t)w->data, from = (uintptr_t)base;
        if (!mapped(m, w) || at < from || at - from >= len) continue;
        *lo = QF_MIN(*lo, (uint64_t)(at - from));
        *hi = QF_MAX(*hi, QF_MIN((uint64_t)(at - from) + stored_rows(w) * w->row_bytes, len));
    }
    list_free(&ls);
    return *hi > 0;
}

uint64_t qf_rt_output_bytes(const qf_rt_model *m) { return mapped(m, &m->output) ? stored_bytes(&m->output, NULL) : 0; }

uint64_t qf_rt_model_owned_bytes(const qf_rt_model *m) {
    uint64_t sum = 0;
    for (uint32_t l = 0; l < m->hp.n_layer; l++) {
        const qf_rt_weight *kb = &m->layers[l].a.wkb;
        if (m->layers[l].a.owned) sum += stored_rows(kb) * kb->row_bytes;
    }
    return sum;
}

qf_status qf_rt_model_acquire(const qf_rt_model *m, int layer, qf_error *err) {
    if (!m->src || qf_source_sequential(m->src)) return QF_OK; /* GGUF pages fault back in by themselves */
    layer_list ls;
    if (!list_layer(m, layer, &ls)) return qf_fail(err, QF_E_NOMEM, "out of memory");
    qf_status st = QF_OK;
    for (size_t i = 0; !st && i < ls.n; i++) st = qf_source_prepare(m->src, ls.p[i]->src_idx, err);
    list_free(&ls);
    return st;
}

void qf_rt_model_release(const qf_rt_model *m, int layer) {
    /* an archive was read into memory once, forward only: nothing of it may be dropped */
    if (m->src && qf_source_sequential(m->src)) return;
    layer_list ls;
    if (!list_layer(m, layer, &ls)) return; /* dropping pages is an economy, never needed for results */
    for (size_t i = 0; i < ls.n; i++) {
        const qf_rt_weight *w = ls.p[i];
        if (!mapped(m, w)) continue;
        if (w->src) qf_source_release(m->src, w->src_idx);
        else qf_gguf_drop_pages(m->gguf, w->data, stored_rows(w) * w->row_bytes);
    }
    list_free(&ls);
}

/* ---- opening ------------------------------------------------------------------------------------ */

typedef struct shape_ctx {
    const qf_rt_model *m;
    qf_tensor_shape cur;
    uint64_t shape[4];
} shape_ctx;

static const qf_tensor_shape *gguf_shape(void *ctx, size_t i) {
    shape_ctx *s = ctx;
    const qf_gguf_tensor *t = qf_gguf_tensor_at(s->m->gguf, i);
    for (uint32_t d = 0; d < t->n_dims; d++) s->shape[d] = t->ne[t->n_dims - 1 - d];
    s->cur = (qf_tensor_shape){.name = t->name, .n_dims = t->n_dims, .shape = s->shape};
    return &s->cur;
}

static const qf_tensor_shape *source_shape(void *ctx, size_t i) {
    shape_ctx *s = ctx;
    const qf_src_tensor *t = qf_source_tensor(s->m->src, i);
    s->cur = (qf_tensor_shape){.name = t->name, .n_dims = t->n_dims, .shape = t->shape};
    return &s->cur;
}

static qf_status open_gguf(qf_rt_model *m, const char *path, binder *b, qf_error *err) {
    qf_status st = qf_gguf_open(path, &m->gguf, err);
    if (st) return qf_fail_prefix(err, st, path);
    if ((st = qf_gguf_model_meta(m->gguf, path, &m->hp, &m->vocab, err))) return st;
    shape_ctx sc = {.m = m};
    if ((st = qf_tensor_map_gguf(&m->hp, qf_gguf_n_tensors(m->gguf), gguf_shape, &sc, path, &b->map, err))) return st;
    return bind_all(b);
}

static qf_status source_reader(void *ctx, const char *name, char **buf, size_t *len, qf_error *err) {
    return qf_source_read_file(ctx, name, buf, len, err);
}

static qf_status open_hf_config(qf_rt_model *m, qf_error *err) {
    char *cfg = NULL;
    size_t len = 0;
    qf_status st = qf_source_read_file(m->src, "config.json", &cfg, &len, err);
    if (st == QF_E_NOTFOUND)
        return qf_fail(err, QF_E_INPUT, "%s: no config.json beside the weights; it names the architecture", m->label);
    if (st) return st;
    char label[600];
    snprintf(label, sizeof label, "%s: config.json", m->label);
    st = qf_hparams_from_hf(label, cfg, len, &m->hp, err);
    free(cfg);
    return st;
}

static qf_status open_hf(qf_rt_model *m, const char *path, binder *b, qf_error *err) {
    qf_status st = qf_source_open(path, &m->src, err);
    if (!st) st = open_hf_config(m, err);
    if (!st) st = qf_vocab_load_hf(source_reader, m->src, m->hp.n_vocab, &m->vocab, err);
    /* Prepare every tensor now, in storage order: archives stream forward only, and afterwards rows
     * may be read from many threads at once. */
    for (size_t i = 0; !st && i < qf_source_n_tensors(m->src); i++) st = qf_source_prepare(m->src, i, err);
    shape_ctx sc = {.m = m};
    if (!st) st = qf_tensor_map_hf(&m->hp, qf_source_n_tensors(m->src), source_shape, &sc, m->label, &b->map, err);
    if (!st) st = bind_all(b);
    return st;
}

qf_status qf_rt_model_open(const char *path, qf_rt_model **out, qf_error *err) {
    *out = NULL;
    qf_rt_model *m = calloc(1, sizeof *m);
    if (!m) return qf_fail(err, QF_E_NOMEM, "out of memory");
    snprintf(m->label, sizeof m->label, "%s", path);
    binder b = {.m = m, .err = err};
    struct stat sb;
    qf_status st;
    if (stat(path, &sb) != 0) st = qf_fail(err, QF_E_NOTFOUND, "%s: %s", path, strerror(errno));
    else st = qf_infile_has_magic(path, "GGUF", 4) ? open_gguf(m, path, &b, err) : open_hf(m, path, &b, err);
    qf_tensor_map_free(&b.map);
    if (st) { qf_rt_model_close(m); return st; }
    *out = m;
    return QF_OK;
}

void qf_rt_model_close(qf_rt_model *m) {
    if (!m) return;
    for (uint32_t l = 0; m->layers && l < m->hp.n_layer; l++) {
        qf_rt_attn *A = &m->layers[l].a;
        qf_rt_ffn *F = &m->layers[l].f;
        float *vecs[] = {A->norm, A->bq, A->bk, A->bv, A->q_norm, A->k_norm, A->q_a_norm, A->kv_a_norm, F->norm, F->expert_bias};
        for (size_t i = 0; i < QF_ARRAY_LEN(vecs); i++) free(vecs[i]);
        free(A->owned);
        free(F->eg);
        free(F->eu);
        free(F->ed);
    }
    free(m->layers);
    free(m->output_norm);
    free(m->rope_freq);
    qf_vocab_free(&m->vocab);
    qf_source_close(m->src);
    qf_gguf_close(m->gguf);
    free(m);
}
