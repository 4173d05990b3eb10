/*
 * fuzz_safetensors.c — the safetensors header parser (qf_st_header_parse) on whole file images:
 *   u64 N | N bytes of JSON header | data buffer
 * exactly as qf_st_open hands a mapped file over. An accepted header must describe tensors that lie in
 * the buffer, in file order and without holes; every tensor is then decoded to F32, so a bound the
 * parser got wrong shows up as an ASan report on the exactly sized input copy.
 *
 * Under libFuzzer a custom mutator keeps N consistent after most mutations (see below); the replay
 * driver does not need it and never compiles it.
 */
#include "fuzz_util.h"

#include "formats/safetensors.h"

static uint64_t le64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 8) return 0;
    uint8_t *buf = qf_fuzz_copy(data, size);
    qf_st_header h;
    qf_error err;
    qf_error_clear(&err);
    uint64_t n = le64(buf); /* unchecked, as qf_st_open passes it: the parser must bound it itself */
    qf_status st = qf_st_header_parse("fuzz.safetensors", buf + 8, n, size, &h, &err);
    qf_fuzz_check_failure(st, &err);
    if (st == QF_OK) {
        if (h.data_start != 8 + n || h.data_start + h.data_len != size)
            qf_fuzz_violation("data buffer does not end at the end of the file", &err);
        uint64_t expect = 0;
        for (size_t i = 0; i < h.n_tensors; i++) {
            const qf_st_tensor *t = &h.tensors[i];
            uint64_t nb;
            if (t->offset != expect || !qf_mul_ok(t->n_elems, qf_dtype_size(t->dtype), &nb) || nb != t->nbytes ||
                !qf_range_in(t->offset, t->nbytes, h.data_len) || !t->name || !t->name[0])
                qf_fuzz_violation("accepted tensor table is inconsistent", &err);
            expect = t->offset + t->nbytes;
            float *out = qf_malloc_n(t->n_elems, sizeof *out);
            if (!out) abort();
            qf_dtype_decode(t->dtype, buf + h.data_start + t->offset, out, t->n_elems);
            free(out);
        }
        if (expect != h.data_len) qf_fuzz_violation("accepted data buffer has a tail no tensor covers", &err);
        for (size_t i = 0; i < h.n_meta; i++) {
            qf_fuzz_touch(h.meta_keys[i], strlen(h.meta_keys[i]) + 1);
            qf_fuzz_touch(h.meta_vals[i], strlen(h.meta_vals[i]) + 1);
        }
        qf_st_header_free(&h);
    } else if (h.tensors || h.n_tensors) {
        qf_fuzz_violation("a failed parse left a tensor table behind", &err);
    }
    free(buf);
    return 0;
}

#ifdef QF_LIBFUZZER
size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size);

/* Byte mutations of the JSON change its length, after which N no longer fits and the parser stops at
 * the first check. So: mutate, then (three times in four) set N to end right after the outermost JSON
 * object, found by brace matching outside strings; data after it stays the data buffer. */
size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed) {
    size = LLVMFuzzerMutate(data, size, max_size);
    if (size < 10 || seed % 4 == 0) return size;
    int depth = 0;
    bool in_str = false;
    for (size_t i = 8; i < size; i++) {
        uint8_t c = data[i];
        if (in_str) {
            if (c == '\\') i++;
            else if (c == '"') in_str = false;
        } else if (c == '"') {
            in_str = true;
        } else if (c == '{' || c == '[') {
            depth++;
        } else if ((c == '}' || c == ']') && --depth == 0) {
            uint64_t n = i + 1 - 8;
            for (int k = 0; k < 8; k++) data[k] = (uint8_t)(n >> (8 * k));
            break;
        }
    }
    return size;
}
#endif
