/*
 * sig_fixture.h — the fixed file and key the signature fuzz target checks signatures against, shared
 * with tests/corpus/make_corpus.c so that its seeds (signatures made with this key over this file) are
 * valid for the target: a small GGUF with qforge digests and an Ed25519 key from a fixed seed. Both
 * are deterministic, so a seed signs the same manifest in every build.
 */
#ifndef QF_SIG_FIXTURE_H
#define QF_SIG_FIXTURE_H

#include "formats/gguf.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>

static const uint8_t qf_sig_fixture_seed[32] = {0x51, 0x46, 0x4f, 0x52, 0x47, 0x45, 0x2d, 0x66, 0x75, 0x7a, 0x7a,
                                                0x2d, 0x73, 0x69, 0x67, 0x6e, 0x61, 0x74, 0x75, 0x72, 0x65, 0x2d,
                                                0x6b, 0x65, 0x79, 0x2d, 0x30, 0x30, 0x30, 0x30, 0x30, 0x31};

/* The GGUF: two small F32 tensors and a name, digests on (the writer's default). */
static inline bool qf_sig_fixture_gguf(const char *path) {
    qf_error err;
    qf_gguf_writer *w = NULL;
    float a[8] = {1, -2, 3, -4, 5, -6, 7, -8}, b[32];
    for (int i = 0; i < 32; i++) b[i] = (float)i / 8.0f;
    uint64_t ne_a[1] = {8}, ne_b[2] = {8, 4};
    bool ok = qf_gguf_writer_open(path, &w, &err) == QF_OK && qf_gguf_set_str(w, "general.name", "sig", &err) == QF_OK &&
              qf_gguf_add_tensor(w, "a.weight", 0, 1, ne_a, &err) == QF_OK &&
              qf_gguf_add_tensor(w, "b.weight", 0, 2, ne_b, &err) == QF_OK && qf_gguf_begin_data(w, &err) == QF_OK &&
              qf_gguf_write_tensor_data(w, a, sizeof a, &err) == QF_OK &&
              qf_gguf_write_tensor_data(w, b, sizeof b, &err) == QF_OK;
    if (!ok) {
        if (w) qf_gguf_writer_abort(w);
        return false;
    }
    return qf_gguf_writer_finish(w, &err) == QF_OK;
}

/* The key as PEM files: the private one (NULL: not written) and the public one. */
static inline bool qf_sig_fixture_keys(const char *priv_path, const char *pub_path) {
    EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, qf_sig_fixture_seed, sizeof qf_sig_fixture_seed);
    FILE *a = priv_path ? fopen(priv_path, "wb") : NULL, *b = fopen(pub_path, "wb");
    bool ok = k && b && (!priv_path || (a && PEM_write_PrivateKey(a, k, NULL, NULL, 0, NULL, NULL) == 1)) &&
              PEM_write_PUBKEY(b, k) == 1;
    if (a) ok = fclose(a) == 0 && ok;
    if (b) ok = fclose(b) == 0 && ok;
    EVP_PKEY_free(k);
    return ok;
}

#endif
