/*
 * digest.h — SHA-256 in hex and the names of the qforge integrity scheme (docs/integrity.md), shared
 * by the GGUF writer (which computes digests as it streams) and the checker (integrity.h), so that
 * neither depends on the other.
 */
#ifndef QF_DIGEST_H
#define QF_DIGEST_H

#include "qf_core.h"

#define QF_INTEGRITY_KEY_SCHEME "qforge.integrity.scheme"
#define QF_INTEGRITY_KEY_HEADER "qforge.integrity.header_sha256"
#define QF_INTEGRITY_KEY_TENSORS "qforge.integrity.tensor_sha256"
#define QF_INTEGRITY_KEY_NAMES "qforge.integrity.tensor_names" /* scheme 2 */
#define QF_INTEGRITY_KEY_TYPES "qforge.integrity.tensor_types" /* scheme 2 */
/* Each string names its exact definition (docs/integrity.md); a reader that does not know it must not
 * guess. Scheme 1 (read, no longer written) left the padding and the file's length uncovered. */
#define QF_INTEGRITY_SCHEME_1 "qforge-integrity-1 sha256 header=bytes[0,24)+kv-records-except-integrity+tensor-infos tensor=data-without-padding"
#define QF_INTEGRITY_SCHEME_2 "qforge-integrity-2 sha256 header=bytes[0,24)+kv-records-except-integrity+tensor-infos+padding-to-data+u64le(file-size) tensor=data+padding-to-alignment names+types"
#define QF_INTEGRITY_SCHEME QF_INTEGRITY_SCHEME_2 /* what the writer writes */
#define QF_SHA256_HEX_LEN 64

/* The scheme number (1 or 2) of a scheme string of len bytes, or 0 when it is neither. */
int qf_integrity_scheme_of(const char *s, uint64_t len);

/* True for the records the header digest of that scheme skips: the scheme's own keys (3 in scheme 1,
 * 5 in scheme 2). Every other key, qforge.integrity.* included, is covered. */
bool qf_integrity_is_key(const char *key, int scheme);

/* Lowercase hex of a 32-byte digest, NUL-terminated (65 bytes). */
void qf_sha256_hex(const uint8_t digest[32], char hex[QF_SHA256_HEX_LEN + 1]);
/* Hex SHA-256 of a buffer, and of a whole file read in pieces (provenance of imatrix/Hessian/text). */
void qf_sha256_buf_hex(const void *data, size_t len, char hex[QF_SHA256_HEX_LEN + 1]);
qf_status qf_sha256_file_hex(const char *path, char hex[QF_SHA256_HEX_LEN + 1], qf_error *err);

#endif
