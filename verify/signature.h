/*
 * signature.h — detached Ed25519 signatures over a GGUF's digest manifest (docs/integrity.md).
 *
 * Signature file (JSON, one object):
 *   {"format": "qforge-signature-1", "algorithm": "ed25519",
 *    "public_key_sha256": HEX  (SHA-256 of the signer's DER SubjectPublicKeyInfo),
 *    "manifest_sha256": HEX    (SHA-256 of the signed manifest: informational, for diagnosis),
 *    "signature": BASE64       (64 bytes: Ed25519 over the manifest bytes, formats/integrity.h)}
 * qf_sign (qforge.h) writes it; verification is part of qf_verify_integrity.
 */
#ifndef QF_SIGNATURE_H
#define QF_SIGNATURE_H

#include "formats/gguf.h"
#include "formats/integrity.h"

#define QF_SIG_FORMAT "qforge-signature-1"
#define QF_SIG_MAX_FILE (64u << 10) /* a signature file is ~300 bytes; anything far larger is not one */

/* Check sig_path against the manifest of g's stored digests (a split set's: every part's) and the
 * public key in pub_path.
 * QF_OK and *state = QF_SIG_OK when it verifies; QF_E_CHECK with *state = QF_SIG_BAD or
 * QF_SIG_WRONG_KEY; QF_E_NOTFOUND / QF_E_INPUT / QF_E_UNSUPPORTED for missing or malformed files. */
qf_status qf_signature_check(const qf_gguf *g, const char *sig_path, const char *pub_path, qf_sig_state *state,
                             qf_error *err);

#endif
