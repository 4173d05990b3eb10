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
/* Names the exact definition above; a reader that does not know the string must not guess. */
#define QF_INTEGRITY_SCHEME "qforge-integrity-1 sha256 header=bytes[0,24)+kv-records-except-integrity+tensor-infos tensor=data-without-padding"
#define QF_SHA256_HEX_LEN 64

/* True for the three keys the header digest skips. */
bool qf_integrity_is_key(const char *key);

/* Lowercase hex of a 32-byte digest, NUL-terminated (65 bytes). */
void qf_sha256_hex(const uint8_t digest[32], char hex[QF_SHA256_HEX_LEN + 1]);
/* Hex SHA-256 of a buffer, and of a whole file read in pieces (provenance of imatrix/Hessian/text). */
void qf_sha256_buf_hex(const void *data, size_t len, char hex[QF_SHA256_HEX_LEN + 1]);
qf_status qf_sha256_file_hex(const char *path, char hex[QF_SHA256_HEX_LEN + 1], qf_error *err);

#endif
