/*
 * fuzz_gguf.c — the GGUF reader (qf_gguf_open_mem) on an exactly sized copy of the input, then the two
 * readers that interpret an accepted file's metadata: hyper-parameters (qf_hparams_from_gguf) and the
 * tokenizer vocabulary (qf_vocab_load_gguf). Everything an accepted file exposes is read back — every
 * key, string, array element and tensor byte — so a pointer the reader got wrong is reported here.
 */
#include "fuzz_util.h"

#include "formats/arch.h"
#include "formats/gguf.h"
#include "formats/vocab.h"

static uint64_t elem_bytes(qf_gguf_vtype t) {
    switch (t) {
    case QF_GGUF_U8: case QF_GGUF_I8: case QF_GGUF_BOOL: return 1;
    case QF_GGUF_U16: case QF_GGUF_I16: return 2;
    case QF_GGUF_U32: case QF_GGUF_I32: case QF_GGUF_F32: return 4;
    case QF_GGUF_U64: case QF_GGUF_I64: case QF_GGUF_F64: return 8;
    case QF_GGUF_STRING: return sizeof(qf_gguf_str);
    default: return 0;
    }
}

static void touch_kvs(const qf_gguf *g) {
    qf_error err;
    qf_error_clear(&err);
    for (size_t i = 0; i < qf_gguf_n_kv(g); i++) {
        const qf_gguf_kv *kv = qf_gguf_kv_at(g, i);
        if (qf_gguf_find_kv(g, kv->key) != kv) qf_fuzz_violation("key lookup finds another record", &err);
        qf_fuzz_touch(kv->key, strlen(kv->key) + 1);
        if (kv->type == QF_GGUF_STRING) qf_fuzz_touch(kv->v.str.ptr, kv->v.str.len + 1);
        if (kv->type == QF_GGUF_ARRAY && kv->arr_type == QF_GGUF_STRING) {
            const qf_gguf_str *s = kv->v.arr;
            for (uint64_t k = 0; k < kv->n; k++) qf_fuzz_touch(s[k].ptr, s[k].len + 1);
        } else if (kv->type == QF_GGUF_ARRAY && kv->arr_type != QF_GGUF_ARRAY && kv->n) {
            qf_fuzz_touch(kv->v.arr, kv->n * elem_bytes(kv->arr_type));
        }
        /* the typed getters must refuse, not abort, on every type mismatch */
        uint32_t u32;
        int64_t i64;
        float f32;
        bool b;
        const char *str;
        const void *arr;
        uint64_t n;
        qf_gguf_get_u32(g, kv->key, &u32, NULL);
        qf_gguf_get_i64(g, kv->key, &i64, NULL);
        qf_gguf_get_f32(g, kv->key, &f32, NULL);
        qf_gguf_get_bool(g, kv->key, &b, NULL);
        qf_gguf_get_str(g, kv->key, &str, NULL);
        for (int t = 0; t < QF_GGUF_VTYPE_COUNT; t++) qf_gguf_get_arr(g, kv->key, (qf_gguf_vtype)t, &arr, &n, NULL);
    }
}

static void touch_tensors(const qf_gguf *g) {
    qf_error err;
    qf_error_clear(&err);
    for (size_t i = 0; i < qf_gguf_n_tensors(g); i++) {
        const qf_gguf_tensor *t = qf_gguf_tensor_at(g, i);
        if (qf_gguf_find_tensor(g, t->name) != t) qf_fuzz_violation("tensor lookup finds another record", &err);
        qf_fuzz_touch(t->name, strlen(t->name) + 1);
        qf_fuzz_touch(t->data, t->nbytes);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *buf = qf_fuzz_copy(data, size);
    qf_gguf *g = NULL;
    qf_error err;
    qf_error_clear(&err);
    qf_status st = qf_gguf_open_mem("fuzz.gguf", buf, size, &g, &err);
    qf_fuzz_check_failure(st, &err);
    if (st == QF_OK) {
        if (qf_gguf_data_offset(g) > size) qf_fuzz_violation("data section starts past the end", &err);
        touch_kvs(g);
        touch_tensors(g);
        qf_hparams hp;
        qf_error_clear(&err);
        qf_fuzz_check_failure(qf_hparams_from_gguf(g, &hp, &err), &err);
        qf_vocab v;
        qf_error_clear(&err);
        st = qf_vocab_load_gguf(g, &v, &err);
        qf_fuzz_check_failure(st, &err);
        if (st == QF_OK) {
            for (uint32_t i = 0; i < v.n_tokens; i++) qf_fuzz_touch(v.tokens[i], strlen(v.tokens[i]) + 1);
            for (uint64_t i = 0; i < v.n_merges; i++) qf_fuzz_touch(v.merges[i], strlen(v.merges[i]) + 1);
            qf_vocab_free(&v);
        }
        qf_gguf_close(g);
    } else if (g) {
        qf_fuzz_violation("a failed open returned a handle", &err);
    }
    free(buf);
    return 0;
}
