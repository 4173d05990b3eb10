/*
 * source.h — a tensor source: where a checkpoint's tensors and side files come from, hidden behind one
 * interface so nothing upstream cares about the input format.
 *
 * Backends: an HF directory (also a Hugging Face hub cache entry, read from its refs/main snapshot) /
 * single .safetensors / shard index (mmap'd), an archive (.tar, .tar.gz,
 * .tar.zst, .zip) holding one HF directory, streamed through libarchive without unpacking to disk, or a
 * GGUF file (mmap'd; any stored type, rows dequantized through the traits table; GGUF tensor names).
 *
 * Tensors are exposed *logically*: an FP8 weight and its scale tensor (DeepSeek "weight_scale_inv" with
 * one F32 per block, or compressed-tensors "weight_scale" per tensor / per output channel) appear as
 * one tensor whose rows qf_source_rows() returns already dequantized to F32; the scale tensors do not
 * appear on their own. Rows: a tensor of shape [d0, ..., dk] has row_len = dk and n_rows = d0*...*dk-1
 * (1 for a 1-D tensor).
 *
 * Sequential sources (archives) deliver tensor data only in index order: call qf_source_rows() for
 * tensor i, then qf_source_release(i), then move on to a later index. Random-access sources accept
 * any order. Index order is storage order for every backend, so callers that follow it are optimal
 * everywhere.
 */
#ifndef QF_SOURCE_H
#define QF_SOURCE_H

#include "formats/safetensors.h"

typedef enum qf_scale_kind {
    QF_SCALE_NONE = 0,
    QF_SCALE_BLOCK,   /* scale[ceil(rows/b0)][ceil(cols/b1)], value = fp8 * scale (DeepSeek scale_inv) */
    QF_SCALE_TENSOR,  /* one scale for the whole tensor */
    QF_SCALE_CHANNEL, /* one scale per row (output channel) */
} qf_scale_kind;

typedef struct qf_src_tensor {
    const char *name;
    qf_dtype dtype;         /* storage dtype of the values (before scaling) */
    uint32_t n_dims;
    uint64_t shape[QF_ST_MAX_DIMS];
    uint64_t n_rows, row_len;
    qf_scale_kind scale_kind;
    uint32_t block[2];      /* QF_SCALE_BLOCK: rows x cols per scale */
    uint64_t nbytes;        /* stored bytes of the values */
    uint32_t qtype;         /* GGUF sources: the stored ggml type id (dtype is F32/F16/BF16 for those
                               types and QF_DT_COUNT for block types); UINT32_MAX for safetensors */
} qf_src_tensor;

typedef struct qf_source qf_source;

/* The largest side file (config.json, tokenizer files, ...) a source reads into memory. */
#define QF_SOURCE_MAX_SIDE_FILE (256ull << 20)

qf_status qf_source_open(const char *path, qf_source **out, qf_error *err);
void qf_source_close(qf_source *s);

const char *qf_source_label(const qf_source *s); /* path for messages (an HF cache entry: its snapshot) */
/* "ORG/NAME" when the checkpoint is a Hugging Face hub cache entry (models--ORG--NAME, or one of its
 * snapshots/COMMIT directories), else NULL. A cache entry is read from the snapshot refs/main names. */
const char *qf_source_repo_id(const qf_source *s);
bool qf_source_sequential(const qf_source *s);
size_t qf_source_n_tensors(const qf_source *s);
const qf_src_tensor *qf_source_tensor(const qf_source *s, size_t i);
/* Index of a tensor by name, or -1. */
long qf_source_find(const qf_source *s, const char *name);

/* Read a side file of the model directory (config.json, tokenizer.json, tokenizer.model, ...) into a
 * malloc'd, NUL-terminated buffer the caller frees. QF_E_NOTFOUND if the model has no such file. */
qf_status qf_source_read_file(qf_source *s, const char *name, char **buf, size_t *len, qf_error *err);

/* Fetch tensor i's bytes (and its scales) so that qf_source_rows() may then be called for it from
 * several threads at once. qf_source_rows() prepares on its own when called from one thread. */
qf_status qf_source_prepare(qf_source *s, size_t i, qf_error *err);
/* Make rows [row0, row0+n) of tensor i, and only those, readable by qf_source_rows (from several
 * threads) until the next call for tensor i or its release. A sequential source (archive) streams
 * them instead of holding the tensor whole, so memory follows the rows asked for, not the tensor;
 * successive calls for one tensor must not move row0 backwards. A sequential source holds one such
 * window: preparing another tensor's rows ends the last one's (reading those is then an internal
 * error, never stale bytes). Random-access sources prepare the whole tensor (a mapping costs nothing). */
qf_status qf_source_prepare_rows(qf_source *s, size_t i, uint64_t row0, uint64_t n, qf_error *err);
/* A hint that rows [row0, row0+n) of tensor i (n = UINT64_MAX: to its end) will be read soon: a mapped
 * file starts reading them from disk now (MADV_WILLNEED), in large requests and while other work goes
 * on, instead of page fault by page fault when they are read. No effect on sequential sources or on
 * results; nothing to undo. */
void qf_source_advise(qf_source *s, size_t i, uint64_t row0, uint64_t n);
/* Rows [row0, row0+n) of tensor i as F32 (dtype decoded, FP8 scales applied) into dst[n*row_len]. */
qf_status qf_source_rows(qf_source *s, size_t i, uint64_t row0, uint64_t n, float *dst, qf_error *err);
/* FP8 pass-through (quantize/plan.c, run.c): rows [row0, row0+n) of an F8_E4M3 safetensors tensor as its
 * stored codes, codes[n*row_len], and for each group of g values of a row the one scale they are
 * multiplied by, scales[n*row_len/g] (1 without a scale tensor), so that qf_source_rows' value is exactly
 * e4m3(code) * scale. QF_E_INTERNAL where g does not divide a row, where a group spans two source scales,
 * or for any other tensor. Rows are prepared as for qf_source_rows. */
qf_status qf_source_fp8_rows(qf_source *s, size_t i, uint64_t row0, uint64_t n, uint64_t g, uint8_t *codes,
                             float *scales, qf_error *err);
/* The F32, F16 or BF16 type (QF_T_*) whose bytes t's stored values are, unscaled: a safetensors tensor
 * of that dtype without a scale tensor, or a GGUF tensor of that type; UINT32_MAX for any other. */
uint32_t qf_src_plain_type(const qf_src_tensor *t);
/* Stored-bytes pass-through (quantize/plan.c, run.c): rows [row0, row0+n) of a tensor of a plain type
 * (qf_src_plain_type) as stored, n * row_len values of its size into dst: the bytes qf_source_rows
 * decodes. QF_E_INTERNAL for any other tensor. Rows are prepared as for qf_source_rows. */
qf_status qf_source_plain_rows(qf_source *s, size_t i, uint64_t row0, uint64_t n, void *dst, qf_error *err);
/* The same rows where the source holds them, without a copy: *rows points into its mapping of the file
 * and stays valid until the source is closed (a release only drops pages; the next touch reads them
 * again). *rows = NULL where the source has no such lasting bytes (a sequential source's window lives
 * only until the stream moves on): copy them with qf_source_plain_rows instead. */
qf_status qf_source_plain_view(qf_source *s, size_t i, uint64_t row0, uint64_t n, const void **rows, qf_error *err);
/* True if one scale covers n consecutive values of t from index lo along `axis` (0: rows, at any fixed
 * column; 1: columns, within any row): always for no / per-tensor scales, along columns for per-row ones,
 * within one block for block scales. */
bool qf_src_scale_uniform(const qf_src_tensor *t, int axis, uint64_t lo, uint64_t n);
/* Tensor i is no longer needed: drop its pages / buffers. */
void qf_source_release(qf_source *s, size_t i);

/* The GGUF file a GGUF source reads (its metadata and GGUF tensor names), or NULL for HF sources. */
const struct qf_gguf *qf_source_gguf(const qf_source *s);


/* Hex SHA-256 over the source's tensor headers and side files, identifying the input (provenance). */
qf_status qf_source_digest(qf_source *s, char hex[65], qf_error *err);

#endif
