/*
 * source_impl.h — the contract between formats/source.c (logical tensors, FP8 scale folding, row
 * decoding) and its storage backends (mmap'd safetensors in safetensors.c's qf_st_model; archives in
 * archive.c). Not a public header.
 *
 * A backend exposes a *raw* tensor table — every tensor of every safetensors file, scale tensors
 * included — in storage order (shard/member order, then offset), and hands out raw bytes on request.
 *
 * Sequential backends (archives) read forward only. Raw tensors the source will need out of order
 * (FP8 scale tensors) are pinned first with pin(); a sequential backend keeps a pinned tensor's bytes
 * in memory when streaming passes it. raw_bytes(r) returns bytes valid until release(r); requesting an
 * unpinned tensor that streaming has already passed is an error (QF_E_INTERNAL: caller bug). A
 * random-access backend's bytes are a mapping that lasts until close(); its release(r) only drops pages
 * (qf_source_plain_view lends them on that promise). window()
 * streams a tensor in pieces instead (qf_source_prepare_rows), so an archive never holds a large one.
 */
#ifndef QF_SOURCE_IMPL_H
#define QF_SOURCE_IMPL_H

#include "formats/source.h"
#include "formats/gguf.h"

typedef struct qf_source_backend {
    qf_status (*read_file)(void *impl, const char *name, char **buf, size_t *len, qf_error *err);
    void (*pin)(void *impl, size_t r);
    qf_status (*raw_bytes)(void *impl, size_t r, const uint8_t **data, qf_error *err);
    /* Sequential backends: bytes [lo, hi) of raw tensor r in *data, valid until the next window or
     * release(r), without holding the whole tensor. Successive windows of one tensor move forward
     * (lo never decreases). NULL for random-access backends. */
    qf_status (*window)(void *impl, size_t r, uint64_t lo, uint64_t hi, const uint8_t **data, qf_error *err);
    void (*release)(void *impl, size_t r);
    void (*close)(void *impl);
} qf_source_backend;

typedef struct qf_source_raw {
    const qf_st_tensor *tensors; /* owned by the backend; `data` unused by the source */
    size_t n;
    bool sequential;
    const uint32_t *qtypes;      /* GGUF backend: ggml type id per raw tensor (dtype is then only nominal);
                                    NULL for safetensors backends */
    const qf_gguf *gguf;         /* GGUF backend: the open file, for its metadata; NULL otherwise */
} qf_source_raw;

/* Archive backend (archive.c). True if `path` names a file libarchive should open (by content). */
bool qf_archive_detect(const char *path);
qf_status qf_archive_backend_open(const char *path, const qf_source_backend **ops, void **impl,
                                  qf_source_raw *raw, qf_error *err);

#endif
