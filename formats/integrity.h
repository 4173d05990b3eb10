/*
 * integrity.h — qforge integrity digests carried inside GGUF files (full definition: docs/integrity.md).
 *
 * Scheme 2 (written): five metadata keys, which the GGUF writer appends after every other key:
 *   qforge.integrity.scheme         string    exactly QF_INTEGRITY_SCHEME_2
 *   qforge.integrity.header_sha256  string    64 lowercase hex digits
 *   qforge.integrity.tensor_sha256  [string]  one 64-hex-digit digest per tensor, in tensor-info order
 *   qforge.integrity.tensor_names   [string]  the name of the tensor each digest belongs to
 *   qforge.integrity.tensor_types   [u32]     its ggml type id
 * header digest = SHA-256 over, in file order:
 *   file bytes [0, 24)  (magic, version, n_tensors, n_kv — n_kv counts the five keys above)
 *   || every KV record (u64 key length, key, u32 value type, value) except the five keys above
 *   || the tensor-info section || the padding from its end to the data section
 *   || the file's length as a u64 little-endian
 * tensor digest = SHA-256 over the tensor's nbytes data bytes and the padding after it, up to the next
 * multiple of the alignment (for the last tensor too: a scheme-2 file ends there).
 * So every byte of the file is covered except the five records, each of which is checked against
 * what it describes. Scheme 1 (read, no longer written) had only the first three keys, its header
 * digest stopped after the tensor infos and its tensor digests after the data: padding and bytes
 * appended at the end were not covered.
 */
#ifndef QF_INTEGRITY_H
#define QF_INTEGRITY_H

#include "formats/digest.h"
#include "formats/gguf.h"

/* Recompute the header digest of a parsed file from its bytes, by the definition of that scheme. */
qf_status qf_integrity_header_sha256(const qf_gguf *g, int scheme, uint8_t out[32], qf_error *err);

/* The digests a file claims, borrowed from the reader (valid while g is open). */
typedef struct qf_integrity_keys {
    int scheme;                 /* 1 or 2 */
    const qf_gguf_str *header;  /* the header_sha256 string */
    const qf_gguf_str *tensors; /* n digest strings */
    const qf_gguf_str *names;   /* scheme 2: n tensor names; NULL in scheme 1 */
    const uint32_t *types;      /* scheme 2: n type ids; NULL in scheme 1 */
    uint64_t n;
} qf_integrity_keys;

/* QF_E_NOTFOUND when the file has no qforge digests at all, QF_E_UNSUPPORTED for an unknown scheme,
 * QF_E_INPUT when a key has the wrong type or the arrays disagree in length. The digest strings
 * themselves are not validated: a damaged one simply fails to match. The digest count may differ from
 * the file's tensor count (a file another tool rewrote); qf_integrity_check says so. */
qf_status qf_integrity_keys_get(const qf_gguf *g, qf_integrity_keys *k, qf_error *err);

/* What became of each tensor: qf_tensor_verdict (qforge.h). */
/* Outcome of re-hashing a file. verdict has n_tensors entries, in file order (owned;
 * qf_integrity_result_free). Tensors are matched to digests by name in scheme 2, by position in
 * scheme 1. */
typedef struct qf_integrity_result {
    int scheme;
    bool header_ok;
    uint8_t *verdict;         /* qf_tensor_verdict per tensor */
    size_t n_tensors, n_bad;  /* n_bad: tensors whose verdict is not OK */
    size_t n_changed, n_retyped, n_uncovered;
    size_t n_missing;         /* digests whose tensor the file no longer has */
    /* Another tool rewrote the file (header changed, and tensors reordered, added, removed or
     * re-encoded, or keys written after the digest keys): its digests describe the file qforge wrote. */
    bool rewritten;
    bool reordered, keys_not_last;
    uint64_t bytes_hashed;    /* header bytes + tensor bytes */
} qf_integrity_result;

/* Progress of the hashing, in bytes, reported from the calling thread. */
typedef struct qf_integrity_progress {
    qf_progress_fn fn;
    void *user;
} qf_integrity_progress;

/* Re-hash the header and every tensor (threads workers across tensors, 0 = all CPUs) straight from
 * the reader's mapping and compare with the stored digests; progress may be NULL. QF_OK when all
 * match, QF_E_CHECK when any differs (r says which and whether the file was rewritten), or the error
 * of qf_integrity_keys_get. r is filled for QF_OK and QF_E_CHECK. */
qf_status qf_integrity_check(const qf_gguf *g, int threads, const qf_integrity_progress *progress,
                             qf_integrity_result *r, qf_error *err);
void qf_integrity_result_free(qf_integrity_result *r);

/* The canonical manifest that signatures cover, built from the stored digests (malloc'd, *len bytes):
 *   "qforge-manifest-1\n" "scheme " SCHEME "\n" "header-sha256 " HEX "\n" "tensors " N "\n"
 *   then per tensor, in file order: HEX " " NAME "\n"
 * QF_E_CHECK when the file's tensors are not the ones the digests describe (nothing to sign). */
qf_status qf_integrity_manifest(const qf_gguf *g, const qf_integrity_keys *k, char **out, size_t *len,
                                qf_error *err);

/* Split sets (formats/gguf_split.h; docs/integrity.md): qf_integrity_check of a set checks every part
 * against its own digests and the set's identity (qforge.split.set_sha256, which every part carries)
 * against the parts: SHA-256 over the first part's KV records except split.no, the identity itself and
 * the digest keys, then per part u64 tensor count and each tensor's record (qf_split_tensor_record).
 * Verdicts are in set order; the error names the first part that failed and its first changed tensor. */
qf_status qf_integrity_set_sha256(const qf_gguf *set, uint8_t out[32], qf_error *err);
/* What signatures cover: a single file's manifest (qf_integrity_manifest of its stored digests), or for
 * a set "qforge-split-manifest-1\n" "set-sha256 " HEX "\n" "parts " N "\n" then per part "part " K "\n"
 * and that part's manifest. malloc'd. */
qf_status qf_integrity_set_manifest(const qf_gguf *g, char **out, size_t *len, qf_error *err);

/* Online CPUs when threads <= 0, else threads (capped at 1024). */
int qf_integrity_threads(int threads);

#endif
