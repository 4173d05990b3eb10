/*
 * integrity.h — qforge integrity digests carried inside GGUF files (full definition: docs/integrity.md).
 *
 * Three metadata keys, which the GGUF writer appends after every other key:
 *   qforge.integrity.scheme         string    exactly QF_INTEGRITY_SCHEME
 *   qforge.integrity.header_sha256  string    64 lowercase hex digits
 *   qforge.integrity.tensor_sha256  [string]  one 64-hex-digit digest per tensor, in tensor-info order
 *
 * header digest = SHA-256 over, in file order:
 *   file bytes [0, 24)  (magic, version, n_tensors, n_kv — n_kv counts the three keys above)
 *   || every KV record (u64 key length, key, u32 value type, value) except the three keys above
 *   || the tensor-info section (all tensor infos, from the end of the last KV to the end of the last info)
 * tensor digest = SHA-256 over the tensor's nbytes data bytes (alignment padding excluded).
 * Not covered: the three records above (they are checked against what they describe), alignment
 * padding before the data section and after each tensor, and any bytes after the last padded tensor.
 */
#ifndef QF_INTEGRITY_H
#define QF_INTEGRITY_H

#include "formats/digest.h"
#include "formats/gguf.h"

/* Recompute the header digest of a parsed file from its bytes (definition above). */
qf_status qf_integrity_header_sha256(const qf_gguf *g, uint8_t out[32], qf_error *err);

/* The digests a file claims, borrowed from the reader (valid while g is open). */
typedef struct qf_integrity_keys {
    const qf_gguf_str *header;  /* the header_sha256 string */
    const qf_gguf_str *tensors; /* n_tensors strings */
    uint64_t n;
} qf_integrity_keys;

/* QF_E_NOTFOUND when the file has no qforge digests at all, QF_E_UNSUPPORTED for an unknown scheme,
 * QF_E_INPUT when a key has the wrong type or the digest count differs from the tensor count. The
 * digest strings themselves are not validated: a damaged one simply fails to match. */
qf_status qf_integrity_keys_get(const qf_gguf *g, qf_integrity_keys *k, qf_error *err);

/* Outcome of re-hashing a file. tensor_ok has n_tensors entries (owned; qf_integrity_result_free). */
typedef struct qf_integrity_result {
    bool header_ok;
    bool *tensor_ok;
    size_t n_tensors, n_bad;
    uint64_t bytes_hashed; /* header bytes + tensor bytes */
} qf_integrity_result;

/* Re-hash the header and every tensor (threads workers across tensors, 0 = all CPUs) straight from
 * the reader's mapping and compare with the stored digests. QF_OK when all match, QF_E_CHECK when any
 * differs (r says which), or the error of qf_integrity_keys_get. r is filled for QF_OK and QF_E_CHECK. */
qf_status qf_integrity_check(const qf_gguf *g, int threads, qf_integrity_result *r, qf_error *err);
void qf_integrity_result_free(qf_integrity_result *r);

/* The canonical manifest that signatures cover, built from the stored digests (malloc'd, *len bytes):
 *   "qforge-manifest-1\n" "scheme " SCHEME "\n" "header-sha256 " HEX "\n" "tensors " N "\n"
 *   then per tensor, in file order: HEX " " NAME "\n"                                              */
qf_status qf_integrity_manifest(const qf_gguf *g, const qf_integrity_keys *k, char **out, size_t *len,
                                qf_error *err);

/* Online CPUs when threads <= 0, else threads (capped at 1024). */
int qf_integrity_threads(int threads);

#endif
