/* Generated checkpoints shared by the tests (testmodels.h). */
#include "testmodels.h"

#include "formats/safetensors.h"
#include "kernels/fpconv.h"

#include <math.h>

const char *qf_test_make_model(const char *name, uint32_t dim, uint32_t ff, const char *dtype, char *dir, size_t n) {
    qf_test_fresh_dir(name, dir, n);
    qf_synth_opts o = {.dir = dir, .seed = 7, .n_layer = 2, .n_embd = dim, .n_ff = ff, .n_vocab = 320, .dtype = dtype};
    qf_error err;
    CHECK_OK(qf_synth_model(&o, &err), &err);
    return dir;
}

/* Scale grid of a layout: rows x cols of scale values over an R x C weight. */
static void scale_grid(qf_test_fp8_layout layout, uint64_t R, uint64_t C, uint64_t *sr, uint64_t *sc) {
    *sr = *sc = 1;
    switch (layout) {
    case QF_TEST_FP8_BLOCK128: *sr = (R + 127) / 128; *sc = (C + 127) / 128; break;
    case QF_TEST_FP8_CHANNEL: *sr = R; *sc = 1; break;
    case QF_TEST_FP8_TENSOR: *sr = 1; *sc = 1; break;
    }
}

static uint64_t scale_index(qf_test_fp8_layout layout, uint64_t r, uint64_t c, uint64_t sc) {
    switch (layout) {
    case QF_TEST_FP8_BLOCK128: return (r / 128) * sc + c / 128;
    case QF_TEST_FP8_CHANNEL: return r;
    default: return 0;
    }
}

/* One weight as E4M3 values plus amax/448 scales on the layout's grid. */
static void fp8_encode(const qf_st_tensor *t, qf_test_fp8_layout layout, uint8_t **q_out, float **sc_out, uint64_t *sr,
                       uint64_t *scc) {
    uint64_t R = t->shape[0], C = t->shape[1];
    scale_grid(layout, R, C, sr, scc);
    float *x = malloc(R * C * sizeof(float)), *sc = calloc(*sr * *scc, sizeof(float));
    uint8_t *q = malloc(R * C);
    qf_dtype_decode(t->dtype, t->data, x, R * C);
    for (uint64_t i = 0; i < R * C; i++) {
        float *s = &sc[scale_index(layout, i / C, i % C, *scc)];
        *s = fmaxf(*s, fabsf(x[i]) / 448.0f);
    }
    for (uint64_t i = 0; i < R * C; i++) {
        float s = sc[scale_index(layout, i / C, i % C, *scc)];
        q[i] = qf_f32_to_e4m3(s > 0 ? x[i] / s : 0);
    }
    free(x);
    *q_out = q;
    *sc_out = sc;
}

void qf_test_to_fp8_layout(const char *dir, qf_test_fp8_layout layout) {
    char path[4096], out_path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    qf_st_model *m;
    qf_error err;
    CHECK_OK(qf_st_open(path, &m, &err), &err);
    if (!m) return;
    size_t n = qf_st_n_tensors(m), k = 0;
    qf_st_out_tensor *out = calloc(2 * n, sizeof *out);
    void **bufs = calloc(4 * n, sizeof *bufs);
    size_t n_bufs = 0;
    for (size_t i = 0; i < n; i++) {
        const qf_st_tensor *t = qf_st_tensor_at(m, i);
        bool linear = t->n_dims == 2 && strstr(t->name, "layers.") != NULL;
        out[k] = (qf_st_out_tensor){.name = t->name, .dtype = t->dtype, .n_dims = t->n_dims, .data = t->data};
        memcpy(out[k].shape, t->shape, sizeof out[k].shape);
        if (!linear) { k++; continue; }
        uint8_t *q = NULL;
        float *sc = NULL;
        uint64_t sr = 1, scc = 1;
        fp8_encode(t, layout, &q, &sc, &sr, &scc);
        out[k].dtype = QF_DT_F8_E4M3;
        out[k++].data = bufs[n_bufs++] = q;
        /* DeepSeek names the block scales "<w>_scale_inv"; compressed-tensors "<prefix>.weight_scale" */
        char *nm = malloc(strlen(t->name) + 16);
        if (layout == QF_TEST_FP8_BLOCK128) sprintf(nm, "%s_scale_inv", t->name);
        else sprintf(nm, "%s_scale", t->name);
        bufs[n_bufs++] = nm;
        bufs[n_bufs++] = sc;
        out[k] = (qf_st_out_tensor){.name = nm, .dtype = QF_DT_F32, .data = sc};
        if (layout == QF_TEST_FP8_BLOCK128) { out[k].n_dims = 2; out[k].shape[0] = sr; out[k].shape[1] = scc; }
        else if (layout == QF_TEST_FP8_CHANNEL) { out[k].n_dims = 2; out[k].shape[0] = sr; out[k].shape[1] = 1; }
        else out[k].n_dims = 0; /* a 0-d tensor, as compressed-tensors writes per-tensor scales */
        k++;
    }
    snprintf(out_path, sizeof out_path, "%s/model.fp8.tmp", dir);
    CHECK_OK(qf_st_write(out_path, out, k, &err), &err);
    for (size_t i = 0; i < n_bufs; i++) free(bufs[i]);
    free(bufs);
    free(out);
    qf_st_close(m);
    CHECK(rename(out_path, path) == 0);
}

void qf_test_to_fp8(const char *dir) { qf_test_to_fp8_layout(dir, QF_TEST_FP8_BLOCK128); }

void qf_test_set_weight(const char *dir, const char *name, uint64_t index, float v) {
    char path[4096], out_path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    snprintf(out_path, sizeof out_path, "%s/model.edit.tmp", dir);
    qf_st_model *m;
    qf_error err;
    CHECK_OK(qf_st_open(path, &m, &err), &err);
    if (!m) return;
    size_t n = qf_st_n_tensors(m);
    qf_st_out_tensor *out = calloc(n, sizeof *out);
    uint8_t *edited = NULL;
    for (size_t i = 0; i < n; i++) {
        const qf_st_tensor *t = qf_st_tensor_at(m, i);
        out[i] = (qf_st_out_tensor){.name = t->name, .dtype = t->dtype, .n_dims = t->n_dims, .data = t->data};
        memcpy(out[i].shape, t->shape, sizeof out[i].shape);
        if (strcmp(t->name, name) != 0) continue;
        CHECK_MSG(t->dtype == QF_DT_F32 || t->dtype == QF_DT_BF16, "%s: only F32/BF16 tensors are edited", name);
        size_t esz = t->dtype == QF_DT_F32 ? 4 : 2;
        edited = malloc(t->nbytes);
        memcpy(edited, t->data, t->nbytes);
        if (t->dtype == QF_DT_F32) memcpy(edited + index * esz, &v, esz);
        else { uint16_t h = qf_f32_to_bf16(v); memcpy(edited + index * esz, &h, esz); }
        out[i].data = edited;
    }
    CHECK_MSG(edited != NULL, "%s: no tensor '%s'", path, name);
    CHECK_OK(qf_st_write(out_path, out, n, &err), &err);
    free(edited);
    free(out);
    qf_st_close(m);
    CHECK(rename(out_path, path) == 0);
}
