/*
 * gguf.h — GGUF v3 reader (mmap, fully validated) and streaming writer.
 *
 * Layout (little-endian; https://github.com/ggml-org/ggml/blob/master/docs/gguf.md):
 *   u32 magic "GGUF" | u32 version (2 or 3 read, 3 written) | u64 n_tensors | u64 n_kv
 *   n_kv x { string key | u32 value_type | value }
 *       string = u64 len | len bytes (no NUL); array = u32 elem_type | u64 n | n values (nested allowed)
 *   n_tensors x { string name | u32 n_dims | n_dims x u64 ne (ne[0] = row length) | u32 ggml type |
 *                 u64 offset (relative to the data section, multiple of alignment) }
 *   padding to `general.alignment` (u32, default 32) | data section
 * Reader validation mirrors llama.cpp's gguf reader and goes further: magic, version, counts bounded by
 * the file size, string lengths in bounds, duplicate keys and tensor names, n_dims in 1..4, every ne > 0
 * with an overflow-free product, known type id (kernels/qtypes.h), row length divisible by the block
 * size, offsets aligned, in bounds and contiguous in tensor-info order.
 */
#ifndef QF_GGUF_H
#define QF_GGUF_H

#include "qf_core.h"

#define QF_GGUF_MAGIC 0x46554747u /* "GGUF" read as a little-endian u32 */
#define QF_GGUF_VERSION 3
#define QF_GGUF_DEFAULT_ALIGNMENT 32
#define QF_GGUF_MAX_DIMS 4

typedef enum qf_gguf_vtype {
    QF_GGUF_U8 = 0, QF_GGUF_I8 = 1, QF_GGUF_U16 = 2, QF_GGUF_I16 = 3, QF_GGUF_U32 = 4, QF_GGUF_I32 = 5,
    QF_GGUF_F32 = 6, QF_GGUF_BOOL = 7, QF_GGUF_STRING = 8, QF_GGUF_ARRAY = 9, QF_GGUF_U64 = 10,
    QF_GGUF_I64 = 11, QF_GGUF_F64 = 12, QF_GGUF_VTYPE_COUNT
} qf_gguf_vtype;

typedef struct qf_gguf_str {
    const char *ptr; /* NUL-terminated copy (strings in GGUF are not NUL-terminated on disk) */
    uint64_t len;
} qf_gguf_str;

/* One metadata value. Scalars live in the union; arrays point at n packed elements of arr_type
 * (qf_gguf_str for strings). Nested arrays are validated by the reader but exposed only as n. */
/* Scalar members by type: U8/U16/U32/U64 in v.u64, I8/I16/I32/I64 in v.i64 (sign-extended), F32/F64 in
 * v.f64, BOOL in v.b. Array elements keep their on-disk width (bool arrays: one 0/1 byte each); for
 * nested arrays arr_type is ARRAY and v.arr is NULL. */
typedef struct qf_gguf_kv {
    const char *key;
    qf_gguf_vtype type;
    qf_gguf_vtype arr_type; /* when type == ARRAY */
    uint64_t n;             /* array length */
    union {
        uint64_t u64; int64_t i64; double f64; bool b;
        qf_gguf_str str;
        const void *arr;
    } v;
    uint64_t rec_off, rec_len; /* file offset and byte length of the whole record (key, type, value);
                                * 0, 0 for values built in memory. Digests hash these exact bytes. */
} qf_gguf_kv;

typedef struct qf_gguf_tensor {
    const char *name;
    uint32_t type;          /* ggml / qforge type id (kernels/qtypes.h) */
    uint32_t n_dims;
    uint64_t ne[QF_GGUF_MAX_DIMS]; /* ne[0] is the row length; unused dims are 1 */
    uint64_t offset;        /* relative to the data section */
    uint64_t nbytes;
    const uint8_t *data;    /* borrowed from the mapping */
} qf_gguf_tensor;

typedef struct qf_gguf qf_gguf;

/* A file that is the first part of a split set (split.count > 1, split.no 0; formats/gguf_split.h)
 * opens the whole set: the other parts are found by name as llama.cpp finds them, each checked to be
 * part k of this set (split.no, split.count, split.tensors.count, qforge.split.set_sha256), and the
 * handle then is one model: the first part's keys, every part's tensors in order (data in each part's
 * mapping), each name once. File-level accessors (version, alignment, data offset, file bytes, spans,
 * rec_off) describe the first part; qf_gguf_part gives each part as a file. Another part of a set is
 * refused (open the set by its first part); a missing part is QF_E_NOTFOUND naming it. */
qf_status qf_gguf_open(const char *path, qf_gguf **out, qf_error *err);
/* One file as it is, a part of a split set too (its own keys and tensors): for what works on files, not
 * models (pack and unpack's digest check of the one file they carry). */
qf_status qf_gguf_open_file(const char *path, qf_gguf **out, qf_error *err);
/* 1 for a single file; for a set its parts, each a file of its own (part 0 the first), borrowed. */
size_t qf_gguf_n_parts(const qf_gguf *g);
const qf_gguf *qf_gguf_part(const qf_gguf *g, size_t k);
/* The part that holds tensor i of the set (0 for a single file). */
size_t qf_gguf_tensor_part(const qf_gguf *g, size_t i);
/* Parse a GGUF held in memory (borrowed; must outlive the handle). Used by tests and fuzzers. */
qf_status qf_gguf_open_mem(const char *label, const uint8_t *buf, uint64_t len, qf_gguf **out, qf_error *err);
void qf_gguf_close(qf_gguf *g);

uint32_t qf_gguf_version(const qf_gguf *g);
uint32_t qf_gguf_alignment(const qf_gguf *g);
uint64_t qf_gguf_data_offset(const qf_gguf *g); /* absolute file offset of the data section */
size_t qf_gguf_n_kv(const qf_gguf *g);
const qf_gguf_kv *qf_gguf_kv_at(const qf_gguf *g, size_t i);
const qf_gguf_kv *qf_gguf_find_kv(const qf_gguf *g, const char *key);
size_t qf_gguf_n_tensors(const qf_gguf *g);
const qf_gguf_tensor *qf_gguf_tensor_at(const qf_gguf *g, size_t i);
const qf_gguf_tensor *qf_gguf_find_tensor(const qf_gguf *g, const char *name);
/* The label given at open (the path), for messages. */
const char *qf_gguf_label(const qf_gguf *g);
/* The whole file as parsed (borrowed from the mapping); *len = its size. */
const uint8_t *qf_gguf_file_bytes(const qf_gguf *g, uint64_t *len);
/* Drop the resident pages of [p, p + n) (bytes of this file's mapping) once a streaming pass is done
 * with them, so one pass over a file larger than RAM keeps a bounded RSS; the page cache keeps them if
 * memory allows and pointers stay valid (pages fault back in). Whole pages inside the range only; a
 * no-op for qf_gguf_open_mem buffers. */
void qf_gguf_drop_pages(const qf_gguf *g, const void *p, uint64_t n);
/* File offset and length of the tensor-info section: from the end of the last KV record to the end of
 * the last tensor info (before alignment padding). */
void qf_gguf_tensor_info_span(const qf_gguf *g, uint64_t *off, uint64_t *len);

/* Typed getters: QF_OK, QF_E_NOTFOUND if absent, QF_E_INPUT (message names the key) on a type
 * mismatch. Integer getters accept any integer type whose value fits. */
qf_status qf_gguf_get_u32(const qf_gguf *g, const char *key, uint32_t *v, qf_error *err);
qf_status qf_gguf_get_i64(const qf_gguf *g, const char *key, int64_t *v, qf_error *err);
qf_status qf_gguf_get_f32(const qf_gguf *g, const char *key, float *v, qf_error *err);
qf_status qf_gguf_get_bool(const qf_gguf *g, const char *key, bool *v, qf_error *err);
qf_status qf_gguf_get_str(const qf_gguf *g, const char *key, const char **v, qf_error *err);
qf_status qf_gguf_get_arr(const qf_gguf *g, const char *key, qf_gguf_vtype elem, const void **arr,
                          uint64_t *n, qf_error *err);

/* ---- writer ---------------------------------------------------------------------------------------
 * Usage: open -> set_* / add_tensor (any order) -> begin_data -> write_tensor_data for each tensor, in
 * add order, in as many pieces as convenient -> finish. The file appears under `path` only after
 * finish() succeeded (temp file + fsync + rename + directory fsync); abort() or any failure removes it.
 * Keys keep insertion order; setting an existing key replaces its value in place. */
typedef struct qf_gguf_writer qf_gguf_writer;

qf_status qf_gguf_writer_open(const char *path, qf_gguf_writer **out, qf_error *err);
/* Integrity digests (formats/integrity.h) are on by default: begin_data() drops any
 * qforge.integrity.* digest key set by the caller and appends the five keys of scheme 2 last, the two
 * digests as placeholders that finish() patches once every tensor has streamed through. Turning them off (only before
 * begin_data) makes the writer write exactly the keys it was given, e.g. for byte-identical rewrites of
 * files from other tools. */
qf_status qf_gguf_writer_set_digests(qf_gguf_writer *w, bool on, qf_error *err);
qf_status qf_gguf_set_u32(qf_gguf_writer *w, const char *key, uint32_t v, qf_error *err);
qf_status qf_gguf_set_i32(qf_gguf_writer *w, const char *key, int32_t v, qf_error *err);
qf_status qf_gguf_set_u64(qf_gguf_writer *w, const char *key, uint64_t v, qf_error *err);
qf_status qf_gguf_set_f32(qf_gguf_writer *w, const char *key, float v, qf_error *err);
qf_status qf_gguf_set_bool(qf_gguf_writer *w, const char *key, bool v, qf_error *err);
qf_status qf_gguf_set_str(qf_gguf_writer *w, const char *key, const char *v, qf_error *err);
/* Arrays of scalars: elem is the element type, data holds n packed little-endian values. */
qf_status qf_gguf_set_arr(qf_gguf_writer *w, const char *key, qf_gguf_vtype elem, const void *data, uint64_t n,
                          qf_error *err);
qf_status qf_gguf_set_arr_str(qf_gguf_writer *w, const char *key, const char *const *strs, uint64_t n,
                              qf_error *err);
/* Copy a value read from another GGUF (used when re-writing a file). */
qf_status qf_gguf_set_kv(qf_gguf_writer *w, const qf_gguf_kv *kv, qf_error *err);
/* Declare a tensor. ne[0] is the row length; nbytes must equal the type's size for that shape. */
qf_status qf_gguf_add_tensor(qf_gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                             const uint64_t *ne, qf_error *err);
/* Write header, metadata and tensor infos; after this no set_* or add_tensor is accepted. */
qf_status qf_gguf_begin_data(qf_gguf_writer *w, qf_error *err);
/* Append bytes of the current tensor; padding between tensors is inserted automatically. */
qf_status qf_gguf_write_tensor_data(qf_gguf_writer *w, const void *buf, uint64_t n, qf_error *err);
qf_status qf_gguf_writer_finish(qf_gguf_writer *w, qf_error *err); /* frees w */
void qf_gguf_writer_abort(qf_gguf_writer *w);                      /* frees w, removes the temp file */

/* A split output (formats/gguf_split.h): llama.cpp's layout, parts PREFIX-00001-of-0000N.gguf ... with
 * PREFIX = `out` without ".gguf". Keys and tensors are given as to any writer (the model's keys go to the
 * first part); begin_data computes the set identity, and the tensor bytes then stream to one part at a
 * time. Every part is written as a file of its own (temp file, its own digests) and sealed when its last
 * tensor is done; finish() renames all of them into place, abort() or any failure removes all. With
 * `only`, part `only` alone is written, byte for byte as in the whole run: feed only the tensors
 * qf_gguf_writer_wants() says it holds. */
typedef struct qf_gguf_split {
    uint32_t n_parts;        /* 1..QF_SPLIT_MAX_PARTS */
    const uint32_t *part_of; /* the part (0-based) of each tensor, in add order (qf_split_layout) */
    size_t n_tensors;        /* entries of part_of: the tensors that will be added */
    uint32_t only;           /* 0: write every part; k: part k (1-based) alone */
} qf_gguf_split;
qf_status qf_gguf_writer_open_split(const char *out, const qf_gguf_split *s, qf_gguf_writer **w, qf_error *err);
/* Whether tensor i (add order) is written: always, except for parts an `only` split leaves out. */
bool qf_gguf_writer_wants(const qf_gguf_writer *w, size_t i);

#endif
