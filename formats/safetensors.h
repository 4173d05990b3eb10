/*
 * safetensors.h — reader for Hugging Face safetensors files, single and sharded.
 *
 * File layout (https://github.com/huggingface/safetensors):
 *   u64 little-endian N | N bytes of UTF-8 JSON header | data buffer
 *   header: { "__metadata__": {str: str}?, "<name>": {"dtype": D, "shape": [u64...],
 *             "data_offsets": [begin, end]} ... }   offsets are relative to the data buffer.
 * Validation (all before any tensor byte is touched): N <= QF_ST_MAX_HEADER and within the file, JSON
 * parses and is an object, names unique and non-empty, dtype known, rank <= QF_ST_MAX_DIMS, element
 * count and byte size computed with overflow checks, end - begin == dtype size x elements, tensors lie
 * inside the data buffer, do not overlap and (as the spec asks) leave no holes.
 *
 * A shard set is described by model.safetensors.index.json: {"weight_map": {tensor: file}}; every named
 * file must exist, every tensor in the map must be found in its file, and no tensor may appear twice.
 */
#ifndef QF_SAFETENSORS_H
#define QF_SAFETENSORS_H

#include "qf_core.h"

#define QF_ST_MAX_HEADER (100u << 20) /* 100 MiB, as the reference implementation */
#define QF_ST_MAX_DIMS 8

/* Storage dtypes of safetensors, by their header names. */
typedef enum qf_dtype {
    QF_DT_F64, QF_DT_F32, QF_DT_F16, QF_DT_BF16, QF_DT_F8_E4M3, QF_DT_F8_E5M2,
    QF_DT_I64, QF_DT_I32, QF_DT_I16, QF_DT_I8, QF_DT_U64, QF_DT_U32, QF_DT_U16, QF_DT_U8, QF_DT_BOOL,
    QF_DT_COUNT
} qf_dtype;

const char *qf_dtype_name(qf_dtype dt);              /* "F32", "F8_E4M3", ... */
bool qf_dtype_from_name(const char *s, qf_dtype *dt); /* exact header spelling */
uint32_t qf_dtype_size(qf_dtype dt);                  /* bytes per element */
bool qf_dtype_is_float(qf_dtype dt);
/* Decode n elements of a floating or integer dtype at src (any alignment) into F32. */
void qf_dtype_decode(qf_dtype dt, const void *src, float *dst, uint64_t n);

typedef struct qf_st_tensor {
    const char *name;
    qf_dtype dtype;
    uint32_t n_dims;
    uint64_t shape[QF_ST_MAX_DIMS]; /* outermost first, as written in the header */
    uint64_t n_elems;
    uint64_t nbytes;
    uint64_t offset;                /* of the first byte, relative to the start of the data buffer */
    const uint8_t *data;            /* borrowed from the mapping (may be unaligned); NULL when parsed
                                       from a header alone */
    uint32_t shard;                 /* which file of a shard set */
} qf_st_tensor;

/* A parsed header. Tensors are sorted by offset (file order), which is also streaming order. */
typedef struct qf_st_header {
    qf_st_tensor *tensors;
    size_t n_tensors;
    char **meta_keys, **meta_vals;  /* __metadata__ string pairs */
    size_t n_meta;
    uint64_t data_start;            /* 8 + N */
    uint64_t data_len;              /* bytes of the data buffer */
} qf_st_header;

/* Parse and validate a header from memory. `label` names the file in messages. `json`/`json_len` are
 * the N header bytes; `file_size` is the whole file's size (so offsets can be checked without data). */
qf_status qf_st_header_parse(const char *label, const uint8_t *json, uint64_t json_len, uint64_t file_size,
                             qf_st_header *out, qf_error *err);
void qf_st_header_free(qf_st_header *h);

/* A set of mmap'd safetensors files opened as one model. */
typedef struct qf_st_model qf_st_model;

/* path: a .safetensors file, a model.safetensors.index.json, or a directory holding either. */
qf_status qf_st_open(const char *path, qf_st_model **out, qf_error *err);
void qf_st_close(qf_st_model *m);

size_t qf_st_n_tensors(const qf_st_model *m);
const qf_st_tensor *qf_st_tensor_at(const qf_st_model *m, size_t i); /* shard order, then offset */
const qf_st_tensor *qf_st_find(const qf_st_model *m, const char *name);
size_t qf_st_n_shards(const qf_st_model *m);
const char *qf_st_shard_path(const qf_st_model *m, size_t i);
/* Drop the pages of a tensor from this process's resident set once it has been consumed, so that
 * streaming a model keeps RSS bounded by the working set instead of the file size. */
void qf_st_release(const qf_st_model *m, const qf_st_tensor *t);

/* ---- writer ----------------------------------------------------------------------------------- */

typedef struct qf_st_out_tensor {
    const char *name;
    qf_dtype dtype;
    uint32_t n_dims;
    uint64_t shape[QF_ST_MAX_DIMS];
    const void *data;       /* dtype size x product(shape) bytes, or NULL: then fill() produces them */
    /* the bytes [off, off + n) of the tensor into buf, called with increasing offsets; lets a writer of
     * large generated checkpoints hold one chunk at a time */
    qf_status (*fill)(void *ctx, const struct qf_st_out_tensor *t, uint64_t off, uint8_t *buf, uint64_t n, qf_error *err);
    void *ctx;
} qf_st_out_tensor;

/* Write a safetensors file (atomically, via formats/outfile.h) holding the tensors in the given
 * order, with __metadata__ {"format": "pt"} as PyTorch writes it. */
qf_status qf_st_write(const char *path, const qf_st_out_tensor *t, size_t n, qf_error *err);

#endif
