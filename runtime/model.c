/* model.c — open a model for the runtime from a GGUF file or a Hugging Face checkpoint (see runtime.h). */
#include "runtime/runtime.h"

#include "kernels/blocks.h"
#include "kernels/fpconv.h"
#include "runtime/rt_kern.h"

#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>

/* ---- weight rows ------------------------------------------------------------------------------- */

void qf_rt_weight_rows(const qf_rt_weight *w, uint64_t r0, uint64_t n, float *dst) {
    if (w->tt) {
        for (uint64_t r = 0; r < n; r++)
            w->tt->dequantize(w->data + (r0 + r) * w->row_bytes, dst + r * w->row_len, (int64_t)w->row_len);
        return;
    }
    /* Every tensor was prepared at open and rows are in range by construction, so this cannot fail. */
    qf_source_rows(w->src, w->src_idx, r0, n, dst, NULL);
}

/* ---- rows for the 8-bit path (rt_kern.h: qf_rt_wq) ---------------------------------------------------- */

bool qf_rt_weight_has_q8(const qf_rt_weight *w) {
    return w->tt && (w->tt->id == QF_T_Q8_0 || w->tt->id == QF_T_Q4_K || w->tt->id == QF_T_Q6_K);
}

/* qf_f16_to_f32 for the scales of the decoders below, inline: normal halves by moving their bits (exact:
 * every half is a float), the rest through the library. The decoders run once per panel and per pass,
 * and the call was as costly as the decoding itself. */
static inline float half_to_float(uint16_t h) {
    uint32_t e = (h >> 10) & 0x1f;
    if (e == 0 || e == 31) return qf_f16_to_f32(h);
    uint32_t bits = (uint32_t)(h & 0x8000) << 16 | (e + 112) << 23 | (uint32_t)(h & 0x3ff) << 13;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* Q8_0: level + 128 (so it is unsigned), or the level itself when sgn; one scale per 32. */
static void q8_0_row(const uint8_t *src, uint64_t K, uint8_t *q, float *d, bool sgn) {
    const qf_block_q8_0 *b = (const qf_block_q8_0 *)src;
    for (uint64_t i = 0; i < K / QF_QK; i++) {
        d[i] = half_to_float(b[i].d);
        if (sgn) memcpy(q + i * QF_QK, b[i].qs, QF_QK);
        else
            for (int l = 0; l < QF_QK; l++) q[i * QF_QK + (uint64_t)l] = (uint8_t)(b[i].qs[l] ^ 0x80);
    }
}

/* Q4_K's 6-bit scale and min of sub-block j (ggml's get_scale_min_k4 layout). */
static void k4_scale_min(const uint8_t *s, int j, int *sc, int *mn) {
    if (j < 4) {
        *sc = s[j] & 63;
        *mn = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0xF) | (s[j - 4] >> 6) << 4;
        *mn = (s[j + 4] >> 4) | (s[j] >> 6) << 4;
    }
}

/* Q4_K: levels 0..15 as stored, scale d * sc and min term -(dmin * m) per 32; in each 64-element chunk
 * byte l holds element l (low nibble) and element l + 32 (high nibble). */
static void q4_K_row(const uint8_t *src, uint64_t K, uint8_t *q, float *d, float *m) {
    const qf_block_q4_K *b = (const qf_block_q4_K *)src;
    for (uint64_t i = 0; i < K / QF_QK_K; i++, q += QF_QK_K, d += 8, m += 8) {
        float bd = half_to_float(b[i].d), bm = half_to_float(b[i].dmin);
        for (int j = 0; j < 8; j++) {
            int sc, mn;
            k4_scale_min(b[i].scales, j, &sc, &mn);
            d[j] = bd * (float)sc;
            m[j] = -(bm * (float)mn);
        }
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) {
                uint8_t v = b[i].qs[c * 32 + l];
                q[c * 64 + l] = v & 0xF;
                q[c * 64 + 32 + l] = v >> 4;
            }
    }
}

/* Q6_K: levels 0..63 (= signed level + 32), scale d * sc per 16. Element e of a super-block: 128-half
 * c = e / 128, quarter r = (e % 128) / 32, lane l = e % 32; low 4 bits in ql, high 2 bits in qh. */
static void q6_K_row(const uint8_t *src, uint64_t K, uint8_t *q, float *d, bool sgn) {
    uint8_t off = sgn ? 32 : 0; /* signed: level - 32 as int8 (two's complement in the byte) */
    const qf_block_q6_K *b = (const qf_block_q6_K *)src;
    for (uint64_t i = 0; i < K / QF_QK_K; i++, q += QF_QK_K, d += 16) {
        float bd = half_to_float(b[i].d);
        for (int j = 0; j < 16; j++) d[j] = bd * (float)b[i].scales[j];
        for (int c = 0; c < 2; c++)
            for (int r = 0; r < 4; r++)
                for (int l = 0; l < 32; l++) {
                    int lo = (b[i].ql[c * 64 + (r & 1) * 32 + l] >> (4 * (r >> 1))) & 0xF;
                    int hi = (b[i].qh[c * 32 + l] >> (2 * r)) & 3;
                    q[c * 128 + r * 32 + l] = (uint8_t)((lo | hi << 4) - off);
                }
    }
}

void qf_rt_weight_rows_q8(const qf_rt_weight *w, uint64_t r0, uint64_t n, uint64_t rows, bool sgn, uint8_t *q,
                          float *s, qf_rt_wq *out) {
    uint64_t K = w->row_len, lds = K / 16;
    uint32_t id = w->tt->id;
    uint32_t off = sgn ? 0 : id == QF_T_Q8_0 ? 128 : id == QF_T_Q6_K ? 32 : 0;
    *out = (qf_rt_wq){.q = q, .ldq = K, .d = s, .m = id == QF_T_Q4_K ? s + rows * lds : NULL, .lds = lds,
                      .sub = id == QF_T_Q6_K ? 16 : 32, .off = off, .sgn = sgn};
    for (uint64_t r = 0; r < n; r++) {
        const uint8_t *src = w->data + (r0 + r) * w->row_bytes;
        uint8_t *qr = q + r * K;
        float *dr = s + r * lds;
        if (id == QF_T_Q8_0) q8_0_row(src, K, qr, dr, sgn);
        else if (id == QF_T_Q4_K) q4_K_row(src, K, qr, dr, s + (rows + r) * lds);
        else q6_K_row(src, K, qr, dr, sgn);
    }
    if (n < rows) {
        memset(q + n * K, 0, (rows - n) * K);
        memset(s + n * lds, 0, (rows - n) * lds * sizeof(float));
        memset(s + (rows + n) * lds, 0, (rows - n) * lds * sizeof(float));
    }
}

/* ---- finding tensors by role ------------------------------------------------------------------- */

/* HF tensors indexed by (role, layer): slot = (layer + 1) * QF_ROLE_COUNT + role. */
typedef struct hf_index {
    long *slot;
    size_t n_slots;
} hf_index;

static size_t slot_of(qf_role role, int layer) { return (size_t)(layer + 1) * QF_ROLE_COUNT + (size_t)role; }

static qf_status hf_index_build(qf_rt_model *m, hf_index *ix, qf_error *err) {
    ix->n_slots = slot_of(0, (int)m->hp.n_layer);
    ix->slot = qf_malloc_n(ix->n_slots, sizeof *ix->slot);
    if (!ix->slot) return qf_fail(err, QF_E_NOMEM, "out of memory");
    for (size_t i = 0; i < ix->n_slots; i++) ix->slot[i] = -1;
    for (size_t i = 0; i < qf_source_n_tensors(m->src); i++) {
        const qf_src_tensor *t = qf_source_tensor(m->src, i);
        char gname[256];
        qf_role role;
        int layer;
        qf_status st = qf_arch_map_tensor(&m->hp, t->name, gname, sizeof gname, &role, &layer, err);
        if (st == QF_E_NOTFOUND) continue; /* not part of the graph (rotary inv_freq buffers) */
        if (st) {
            char why[sizeof err->msg];
            snprintf(why, sizeof why, "%s", err ? err->msg : "unknown tensor");
            return qf_fail(err, st, "%s: %s", m->label, why);
        }
        ix->slot[slot_of(role, layer)] = (long)i;
    }
    return QF_OK;
}

static qf_status gguf_weight(qf_rt_model *m, const char *name, qf_rt_weight *w, qf_error *err) {
    const qf_gguf_tensor *t = qf_gguf_find_tensor(m->gguf, name);
    if (!t) return QF_E_NOTFOUND;
    const qf_qtype_traits *tt = qf_qtype_get(t->type);
    if (!tt || !tt->dequantize)
        return qf_fail(err, QF_E_UNSUPPORTED, "%s: tensor '%s' has type %s, which this build cannot dequantize", m->label,
                       name, tt ? tt->name : "(unknown)");
    w->tt = tt;
    w->data = t->data;
    w->row_len = t->ne[0];
    w->n_rows = t->ne[1] * t->ne[2] * t->ne[3]; /* the reader checked the product for overflow */
    if (!qf_qtype_row_bytes(tt, w->row_len, &w->row_bytes))
        return qf_fail(err, QF_E_INPUT, "%s: tensor '%s' row length %llu does not fit type %s", m->label, name,
                       (unsigned long long)w->row_len, tt->name);
    return QF_OK;
}

static qf_status src_weight(qf_rt_model *m, const hf_index *ix, qf_role role, int layer, qf_rt_weight *w,
                            qf_error *err) {
    long i = ix->slot[slot_of(role, layer)];
    if (i < 0) return QF_E_NOTFOUND;
    const qf_src_tensor *t = qf_source_tensor(m->src, (size_t)i);
    if (!qf_dtype_is_float(t->dtype))
        return qf_fail(err, QF_E_UNSUPPORTED, "%s: tensor '%s' has dtype %s; the runtime reads float tensors only",
                       m->label, t->name, qf_dtype_name(t->dtype));
    w->src = m->src;
    w->src_idx = (size_t)i;
    w->row_len = t->row_len;
    w->n_rows = t->n_rows;
    return QF_OK;
}

/* Look up (role, layer) in whichever storage the model has; QF_E_NOTFOUND without a message. */
static qf_status find_weight(qf_rt_model *m, const hf_index *ix, qf_role role, int layer, qf_rt_weight *w,
                             qf_error *err) {
    memset(w, 0, sizeof *w);
    if (m->src) return src_weight(m, ix, role, layer, w, err);
    char name[128];
    qf_arch_tensor_name(role, layer, name, sizeof name);
    return gguf_weight(m, name, w, err);
}

static void role_label(qf_role role, int layer, char *out, size_t n) { qf_arch_tensor_name(role, layer, out, n); }

/* A matrix of rows x cols; optional ones may be absent (then w->n_rows == 0). */
static qf_status bind_matrix(qf_rt_model *m, const hf_index *ix, qf_role role, int layer, uint64_t rows, uint64_t cols,
                             bool optional, qf_rt_weight *w, qf_error *err) {
    qf_status st = find_weight(m, ix, role, layer, w, err);
    char name[128];
    role_label(role, layer, name, sizeof name);
    if (st == QF_E_NOTFOUND && optional) return QF_OK;
    if (st == QF_E_NOTFOUND) return qf_fail(err, QF_E_INPUT, "%s: required tensor '%s' is missing", m->label, name);
    if (st) return st;
    if (w->n_rows != rows || w->row_len != cols)
        return qf_fail(err, QF_E_INPUT, "%s: tensor '%s' is %llu x %llu, the hyper-parameters need %llu x %llu", m->label,
                       name, (unsigned long long)w->n_rows, (unsigned long long)w->row_len, (unsigned long long)rows,
                       (unsigned long long)cols);
    return QF_OK;
}

/* A 1-D tensor of n values copied to F32; *out stays NULL when optional and absent. */
static qf_status bind_vector(qf_rt_model *m, const hf_index *ix, qf_role role, int layer, uint64_t n, bool optional,
                             float **out, qf_error *err) {
    qf_rt_weight w;
    *out = NULL;
    qf_status st = bind_matrix(m, ix, role, layer, 1, n, optional, &w, err);
    if (st || w.n_rows == 0) return st;
    if (!(*out = qf_malloc_n(n, sizeof(float)))) return qf_fail(err, QF_E_NOMEM, "out of memory");
    qf_rt_weight_rows(&w, 0, 1, *out);
    return QF_OK;
}

static qf_status bind_layer(qf_rt_model *m, const hf_index *ix, int l, qf_error *err) {
    const qf_hparams *hp = &m->hp;
    qf_rt_layer *L = &m->layers[l];
    uint64_t E = hp->n_embd, F = hp->n_ff, QD = (uint64_t)hp->n_head * hp->head_dim;
    uint64_t KD = (uint64_t)hp->n_head_kv * hp->head_dim;
    bool bias = hp->arch->qkv_bias;
    qf_status st;
    if ((st = bind_vector(m, ix, QF_ROLE_ATTN_NORM, l, E, false, &L->attn_norm, err)) ||
        (st = bind_vector(m, ix, QF_ROLE_FFN_NORM, l, E, false, &L->ffn_norm, err)) ||
        (st = bind_matrix(m, ix, QF_ROLE_ATTN_Q, l, QD, E, false, &L->wq, err)) ||
        (st = bind_matrix(m, ix, QF_ROLE_ATTN_K, l, KD, E, false, &L->wk, err)) ||
        (st = bind_matrix(m, ix, QF_ROLE_ATTN_V, l, KD, E, false, &L->wv, err)) ||
        (st = bind_matrix(m, ix, QF_ROLE_ATTN_OUT, l, E, QD, false, &L->wo, err)) ||
        (st = bind_matrix(m, ix, QF_ROLE_FFN_GATE, l, F, E, false, &L->wg, err)) ||
        (st = bind_matrix(m, ix, QF_ROLE_FFN_UP, l, F, E, false, &L->wu, err)) ||
        (st = bind_matrix(m, ix, QF_ROLE_FFN_DOWN, l, E, F, false, &L->wd, err)) ||
        (st = bind_vector(m, ix, QF_ROLE_ATTN_Q_BIAS, l, QD, !bias, &L->bq, err)) ||
        (st = bind_vector(m, ix, QF_ROLE_ATTN_K_BIAS, l, KD, !bias, &L->bk, err)) ||
        (st = bind_vector(m, ix, QF_ROLE_ATTN_V_BIAS, l, KD, !bias, &L->bv, err)))
        return st;
    return QF_OK;
}

/* Rotary embedding setup: pair layout, llama3 frequency divisors, linear position scaling. */
static qf_status bind_rope(qf_rt_model *m, const hf_index *ix, qf_error *err) {
    const qf_hparams *hp = &m->hp;
    /* HF rows are in rotate-half order for every architecture; llama.cpp permutes llama's q/k rows so
     * that its "normal" rope (adjacent pairs) applies, and leaves qwen2's alone (NEOX rope). */
    m->rope_neox = m->src != NULL || !hp->arch->permute_qk;
    m->rope_scale = 1.0f;
    if (hp->rope_scaling == QF_ROPE_SCALING_YARN)
        return qf_fail(err, QF_E_UNSUPPORTED, "%s: YaRN rope scaling is not implemented by the runtime", m->label);
    if (hp->rope_scaling == QF_ROPE_SCALING_LINEAR) m->rope_scale = 1.0f / hp->rope_factor;
    uint64_t half = hp->head_dim / 2;
    if (m->gguf) return bind_vector(m, ix, QF_ROLE_ROPE_FREQS, -1, half, true, &m->rope_div, err);
    if (hp->rope_scaling != QF_ROPE_SCALING_LLAMA3) return QF_OK;
    if (!(m->rope_div = qf_malloc_n(half, sizeof(float)))) return qf_fail(err, QF_E_NOMEM, "out of memory");
    qf_rope_llama3_factors(hp, m->rope_div);
    return QF_OK;
}

static qf_status bind_all(qf_rt_model *m, const hf_index *ix, qf_error *err) {
    const qf_hparams *hp = &m->hp;
    if (hp->head_dim == 0 || hp->head_dim % 2 || hp->n_head_kv == 0 || hp->n_head % hp->n_head_kv)
        return qf_fail(err, QF_E_INPUT, "%s: head_dim %u / heads %u / kv heads %u do not describe a valid attention",
                       m->label, hp->head_dim, hp->n_head, hp->n_head_kv);
    qf_status st = bind_matrix(m, ix, QF_ROLE_TOKEN_EMBD, -1, hp->n_vocab, hp->n_embd, false, &m->tok_embd, err);
    if (!st) st = bind_matrix(m, ix, QF_ROLE_OUTPUT, -1, hp->n_vocab, hp->n_embd, true, &m->output, err);
    if (!st) st = bind_vector(m, ix, QF_ROLE_OUTPUT_NORM, -1, hp->n_embd, false, &m->output_norm, err);
    if (!st) st = bind_rope(m, ix, err);
    if (st) return st;
    if (m->output.n_rows == 0) m->output = m->tok_embd; /* tied embeddings */
    if (!(m->layers = qf_calloc_n(hp->n_layer, sizeof *m->layers))) return qf_fail(err, QF_E_NOMEM, "out of memory");
    for (uint32_t l = 0; l < hp->n_layer; l++)
        if ((st = bind_layer(m, ix, (int)l, err))) return st;
    return QF_OK;
}

/* ---- opening ------------------------------------------------------------------------------------ */

static bool is_gguf_file(const char *path) {
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) return false;
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    unsigned char b[4] = {0};
    size_t n = fread(b, 1, 4, f);
    fclose(f);
    return n == 4 && memcmp(b, "GGUF", 4) == 0;
}

static qf_status open_gguf(qf_rt_model *m, const char *path, qf_error *err) {
    qf_status st = qf_gguf_open(path, &m->gguf, err);
    if (!st) st = qf_hparams_from_gguf(m->gguf, &m->hp, err);
    if (!st) st = qf_vocab_load_gguf(m->gguf, &m->vocab, err);
    if (st) return st;
    if (m->hp.n_vocab == 0) return qf_fail(err, QF_E_INPUT, "%s: no 2-D token_embd.weight tensor", path);
    return bind_all(m, NULL, err);
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

static qf_status open_hf(qf_rt_model *m, const char *path, qf_error *err) {
    hf_index ix = {0};
    qf_status st = qf_source_open(path, &m->src, err);
    if (!st) st = open_hf_config(m, err);
    if (!st) st = qf_vocab_load_hf(source_reader, m->src, m->hp.n_vocab, &m->vocab, err);
    /* Prepare every tensor now, in storage order: archives stream forward only, and afterwards rows
     * may be read from many threads at once. */
    for (size_t i = 0; !st && i < qf_source_n_tensors(m->src); i++) st = qf_source_prepare(m->src, i, err);
    if (!st) st = hf_index_build(m, &ix, err);
    if (!st) st = bind_all(m, &ix, err);
    free(ix.slot);
    return st;
}

qf_status qf_rt_model_open(const char *path, qf_rt_model **out, qf_error *err) {
    *out = NULL;
    qf_rt_model *m = calloc(1, sizeof *m);
    if (!m) return qf_fail(err, QF_E_NOMEM, "out of memory");
    snprintf(m->label, sizeof m->label, "%s", path);
    struct stat sb;
    qf_status st;
    if (stat(path, &sb) != 0) st = qf_fail(err, QF_E_NOTFOUND, "%s: %s", path, strerror(errno));
    else st = is_gguf_file(path) ? open_gguf(m, path, err) : open_hf(m, path, err);
    if (st) { qf_rt_model_close(m); return st; }
    *out = m;
    return QF_OK;
}

void qf_rt_model_close(qf_rt_model *m) {
    if (!m) return;
    for (uint32_t l = 0; m->layers && l < m->hp.n_layer; l++) {
        qf_rt_layer *L = &m->layers[l];
        free(L->attn_norm); free(L->ffn_norm); free(L->bq); free(L->bk); free(L->bv);
    }
    free(m->layers);
    free(m->output_norm);
    free(m->rope_div);
    qf_vocab_free(&m->vocab);
    qf_source_close(m->src);
    qf_gguf_close(m->gguf);
    free(m);
}
