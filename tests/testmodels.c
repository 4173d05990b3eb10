/* Generated checkpoints shared by the tests (testmodels.h). */
#include "testmodels.h"

#include "formats/safetensors.h"
#include "kernels/fpconv.h"

#include <math.h>

const char *qf_test_make_model(const char *name, uint32_t dim, uint32_t ff, const char *dtype, char *dir, size_t n) {
    qf_test_path(name, dir, n);
    qf_synth_opts o = {.dir = dir, .seed = 7, .n_layer = 2, .n_embd = dim, .n_ff = ff, .n_vocab = 320, .dtype = dtype};
    qf_error err;
    CHECK_OK(qf_synth_model(&o, &err), &err);
    return dir;
}

/* Rewrite a model's linear weights as FP8 E4M3 with DeepSeek 128x128 weight_scale_inv blocks (edge
 * blocks partial), keeping everything else; returns expected dequantized values through the test's
 * own decoder when asked. */
void qf_test_to_fp8(const char *dir) {
    char path[4096], out_path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    qf_st_model *m;
    qf_error err;
    CHECK_OK(qf_st_open(path, &m, &err), &err);
    size_t n = qf_st_n_tensors(m), k = 0;
    qf_st_out_tensor *out = calloc(2 * n, sizeof *out);
    void **bufs = calloc(2 * n, sizeof *bufs);
    for (size_t i = 0; i < n; i++) {
        const qf_st_tensor *t = qf_st_tensor_at(m, i);
        bool linear = t->n_dims == 2 && strstr(t->name, "layers.") != NULL;
        out[k] = (qf_st_out_tensor){.name = t->name, .dtype = t->dtype, .n_dims = t->n_dims, .data = t->data};
        memcpy(out[k].shape, t->shape, sizeof out[k].shape);
        if (!linear) { k++; continue; }
        uint64_t R = t->shape[0], C = t->shape[1], br = (R + 127) / 128, bc = (C + 127) / 128;
        float *x = malloc(R * C * sizeof(float)), *sc = calloc(br * bc, sizeof(float));
        uint8_t *q = malloc(R * C);
        qf_dtype_decode(t->dtype, t->data, x, R * C);
        for (uint64_t i2 = 0; i2 < R * C; i2++) {
            float *s = &sc[(i2 / C / 128) * bc + (i2 % C) / 128];
            *s = fmaxf(*s, fabsf(x[i2]) / 448.0f);
        }
        for (uint64_t i2 = 0; i2 < R * C; i2++) {
            float s = sc[(i2 / C / 128) * bc + (i2 % C) / 128];
            q[i2] = qf_f32_to_e4m3(s > 0 ? x[i2] / s : 0);
        }
        free(x);
        out[k].dtype = QF_DT_F8_E4M3;
        out[k].data = bufs[k] = q;
        k++;
        char *nm = malloc(strlen(t->name) + 11);
        sprintf(nm, "%s_scale_inv", t->name);
        out[k] = (qf_st_out_tensor){.name = nm, .dtype = QF_DT_F32, .n_dims = 2, .shape = {br, bc}, .data = sc};
        bufs[k++] = sc;
    }
    snprintf(out_path, sizeof out_path, "%s/model.fp8.tmp", dir);
    CHECK_OK(qf_st_write(out_path, out, k, &err), &err);
    for (size_t i = 0; i < k; i++) if (out[i].dtype == QF_DT_F32 && strstr(out[i].name, "_scale_inv")) free((void *)out[i].name);
    for (size_t i = 0; i < k; i++) free(bufs[i]);
    free(bufs);
    free(out);
    qf_st_close(m);
    CHECK(rename(out_path, path) == 0);
}

