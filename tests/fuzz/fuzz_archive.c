/*
 * fuzz_archive.c — tensor sources as qforge convert opens them: the input is written to a file in a
 * private directory and opened with qf_source_open, which sends archives (.tar, .tar.gz, .tar.zst, .zip
 * ...: detected by content) to the libarchive backend and anything else to the safetensors backend.
 * An opened source is then used as the converter uses it, in index order: side files read, the
 * provenance digest taken, and the first rows of the first tensors decoded to F32 (FP8 scales applied).
 */
#include "fuzz_util.h"

#include "formats/source.h"

#define MAX_TENSORS 16
#define MAX_ROWS 8
#define MAX_TENSOR_BYTES (1u << 20)

static void read_side(qf_source *s, const char *name) {
    char *buf = NULL;
    size_t len = 0;
    qf_error err;
    qf_error_clear(&err);
    qf_status st = qf_source_read_file(s, name, &buf, &len, &err);
    if (st == QF_OK) {
        if (buf[len] != '\0') qf_fuzz_violation("side file without a terminating NUL", &err);
        qf_fuzz_touch(buf, len + 1);
        free(buf);
    } else if (st != QF_E_NOTFOUND) {
        qf_fuzz_check_failure(st, &err);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = qf_fuzz_path("input.bin");
    qf_fuzz_write(path, data, size);
    qf_source *s = NULL;
    qf_error err;
    qf_error_clear(&err);
    qf_status st = qf_source_open(path, &s, &err);
    qf_fuzz_check_failure(st, &err);
    if (st != QF_OK) {
        if (s) qf_fuzz_violation("a failed open returned a source", &err);
        return 0;
    }
    read_side(s, "config.json");
    read_side(s, "tokenizer.json");
    read_side(s, "tokenizer.model");
    char hex[65];
    qf_error_clear(&err);
    qf_fuzz_check_failure(qf_source_digest(s, hex, &err), &err);
    for (size_t i = 0; i < qf_source_n_tensors(s) && i < MAX_TENSORS; i++) {
        const qf_src_tensor *t = qf_source_tensor(s, i);
        if (qf_source_find(s, t->name) < 0) qf_fuzz_violation("tensor not found by its own name", &err);
        if (t->nbytes > MAX_TENSOR_BYTES) continue;
        uint64_t rows = QF_MIN(t->n_rows, (uint64_t)MAX_ROWS);
        float *dst = qf_malloc_n(rows * t->row_len, sizeof *dst);
        if (!dst) abort();
        qf_error_clear(&err);
        st = qf_source_rows(s, i, 0, rows, dst, &err);
        qf_fuzz_check_failure(st, &err);
        if (st == QF_OK && rows < t->n_rows) st = qf_source_rows(s, i, t->n_rows - 1, 1, dst, &err);
        qf_fuzz_check_failure(st, &err);
        qf_source_release(s, i);
        free(dst);
    }
    qf_source_close(s);
    return 0;
}
