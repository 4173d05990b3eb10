/*
 * signature.c — sign a GGUF's digest manifest with Ed25519 and check such signatures (signature.h).
 *
 * What is signed is the manifest of the digests stored in the file, not the file: signing and checking
 * cost one pass of hashing (done anyway to verify the digests) plus a few hundred bytes of Ed25519, and
 * the manifest binds every byte the digests cover.
 */
#include "signature.h"
#include "formats/infile.h"
#include "formats/json.h"
#include "formats/outfile.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#define ED25519_SIG_BYTES 64
#define ED25519_SIG_B64 88 /* base64 of 64 bytes, with "==" */

/* ---- small helpers ----------------------------------------------------------------------------- */

static qf_status read_small_file(const char *path, const char *what, char **buf, size_t *len, qf_error *err) {
    qf_status st = qf_infile_read(path, QF_SIG_MAX_FILE, what, buf, len, err);
    if (st == QF_E_NOTFOUND) return qf_fail(err, st, "%s: cannot open the %s: %s", path, what, strerror(ENOENT));
    return st;
}

/* Never prompts: an encrypted key is refused with a message instead of blocking on a terminal. */
static int no_passphrase(char *buf, int size, int rwflag, void *u) {
    (void)buf; (void)size; (void)rwflag; (void)u;
    return -1;
}

#define QF_KEY_MAX_FILE (64u << 10) /* a PEM key is well under 1 KiB; an RSA-16384 one is ~13 KiB */

/* What a key that is not Ed25519 is, for the message: "a key of type RSA (2048 bits)". */
static void describe_key(EVP_PKEY *k, char *buf, size_t n) {
    const char *name = EVP_PKEY_get0_type_name(k);
    if (!name) name = OBJ_nid2sn(EVP_PKEY_get_id(k));
    int bits = EVP_PKEY_get_bits(k);
    size_t len = (size_t)snprintf(buf, n, "a key of type %s", name ? name : "unknown to OpenSSL");
    if (bits > 0 && len < n) snprintf(buf + len, n - len, " (%d bits)", bits);
}

static qf_status load_key(const char *path, bool private_key, EVP_PKEY **out, qf_error *err) {
    *out = NULL;
    const char *which = private_key ? "private" : "public";
    char what[32], *pem = NULL;
    size_t len = 0;
    snprintf(what, sizeof what, "%s key", which);
    qf_status st = qf_infile_read(path, QF_KEY_MAX_FILE, what, &pem, &len, err);
    if (st == QF_E_NOTFOUND) return qf_fail(err, st, "%s: cannot open the %s key: %s", path, which, strerror(ENOENT));
    if (st != QF_OK) return st;
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    EVP_PKEY *k = !bio ? NULL
                  : private_key ? PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL)
                                : PEM_read_bio_PUBKEY(bio, NULL, no_passphrase, NULL);
    BIO_free(bio);
    free(pem);
    if (!k)
        return qf_fail(err, QF_E_INPUT, "%s: not a PEM %s key (unencrypted; make one with %s)", path, which,
                       private_key ? "'openssl genpkey -algorithm ed25519 -out key.pem'"
                                   : "'openssl pkey -in key.pem -pubout -out pub.pem'");
    if (!EVP_PKEY_is_a(k, "ED25519")) {
        char desc[96];
        describe_key(k, desc, sizeof desc);
        EVP_PKEY_free(k);
        return qf_fail(err, QF_E_UNSUPPORTED, "%s: qforge signs with Ed25519 keys only, and this is %s; make one with "
                       "'openssl genpkey -algorithm ed25519 -out key.pem'", path, desc);
    }
    *out = k;
    return QF_OK;
}

static bool sha256_hex_of(const void *p, size_t n, char hex[QF_SHA256_HEX_LEN + 1]) {
    uint8_t d[32];
    unsigned dl = 0;
    if (EVP_Digest(p, n, d, &dl, EVP_sha256(), NULL) != 1 || dl != 32) return false;
    qf_sha256_hex(d, hex);
    return true;
}

/* SHA-256 of the DER SubjectPublicKeyInfo: the same for a private key and its public half. */
static qf_status key_fingerprint(EVP_PKEY *k, const char *path, char hex[QF_SHA256_HEX_LEN + 1], qf_error *err) {
    unsigned char *der = NULL;
    int n = i2d_PUBKEY(k, &der);
    bool ok = n > 0 && sha256_hex_of(der, (size_t)n, hex);
    OPENSSL_free(der);
    return ok ? QF_OK : qf_fail(err, QF_E_INTERNAL, "%s: cannot encode the public key", path);
}

/* The manifest of a file's or a split set's stored digests (qf_integrity_set_manifest) and its SHA-256. */
static qf_status build_manifest(const qf_gguf *g, char **m, size_t *mlen, char mhex[QF_SHA256_HEX_LEN + 1],
                                qf_error *err) {
    qf_status st = qf_integrity_set_manifest(g, m, mlen, err);
    if (st == QF_OK && !sha256_hex_of(*m, *mlen, mhex)) {
        free(*m);
        *m = NULL;
        st = qf_fail(err, QF_E_INTERNAL, "%s: SHA-256 of the manifest failed", qf_gguf_label(g));
    }
    return st;
}

/* ---- the signature file ------------------------------------------------------------------------ */

typedef struct sig_file {
    char fingerprint[QF_SHA256_HEX_LEN + 1];
    char manifest_sha[QF_SHA256_HEX_LEN + 1];
    uint8_t sig[ED25519_SIG_BYTES];
} sig_file;

/* A string member of exactly `len` characters (0 = any length up to cap - 1), copied into dst. */
static bool json_str(const cJSON *o, const char *name, size_t len, char *dst, size_t cap) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!cJSON_IsString(v) || !v->valuestring) return false;
    size_t n = strlen(v->valuestring);
    if ((len && n != len) || n >= cap) return false;
    memcpy(dst, v->valuestring, n + 1);
    return true;
}

/* Strict base64 of exactly 64 bytes: 88 characters ending in "==". */
static bool decode_sig(const char *b64, uint8_t out[ED25519_SIG_BYTES]) {
    uint8_t tmp[ED25519_SIG_B64];
    if (strlen(b64) != ED25519_SIG_B64 || b64[86] != '=' || b64[87] != '=') return false;
    if (EVP_DecodeBlock(tmp, (const unsigned char *)b64, ED25519_SIG_B64) != 66) return false;
    memcpy(out, tmp, ED25519_SIG_BYTES);
    return true;
}

static qf_status parse_sig_file(const char *path, sig_file *s, qf_error *err) {
    char *buf = NULL;
    size_t len = 0;
    qf_status st = read_small_file(path, "signature file", &buf, &len, err);
    if (st != QF_OK) return st;
    cJSON *o = NULL;
    st = qf_json_parse(path, buf, len, &o, err);
    free(buf);
    if (st != QF_OK) return st;
    char fmt[64], alg[32], b64[ED25519_SIG_B64 + 1];
    bool ok = cJSON_IsObject(o) && json_str(o, "format", 0, fmt, sizeof fmt) && json_str(o, "algorithm", 0, alg, sizeof alg);
    if (ok && (strcmp(fmt, QF_SIG_FORMAT) != 0 || strcmp(alg, "ed25519") != 0)) {
        cJSON_Delete(o);
        return qf_fail(err, QF_E_UNSUPPORTED, "%s: signature format '%s' / algorithm '%s' (expected %s / ed25519)", path,
                       fmt, alg, QF_SIG_FORMAT);
    }
    ok = ok && json_str(o, "public_key_sha256", QF_SHA256_HEX_LEN, s->fingerprint, sizeof s->fingerprint) &&
         json_str(o, "manifest_sha256", QF_SHA256_HEX_LEN, s->manifest_sha, sizeof s->manifest_sha) &&
         json_str(o, "signature", ED25519_SIG_B64, b64, sizeof b64) && decode_sig(b64, s->sig);
    cJSON_Delete(o);
    if (!ok)
        return qf_fail(err, QF_E_INPUT, "%s: not a qforge signature file (expected JSON with format, algorithm, "
                       "public_key_sha256, manifest_sha256 and a base64 64-byte signature)", path);
    return QF_OK;
}

static qf_status write_sig_file(const char *path, const sig_file *s, qf_error *err) {
    char b64[ED25519_SIG_B64 + 1];
    EVP_EncodeBlock((unsigned char *)b64, s->sig, ED25519_SIG_BYTES);
    char text[600];
    int n = snprintf(text, sizeof text,
                     "{\n  \"format\": \"%s\",\n  \"algorithm\": \"ed25519\",\n  \"public_key_sha256\": \"%s\",\n"
                     "  \"manifest_sha256\": \"%s\",\n  \"signature\": \"%s\"\n}\n",
                     QF_SIG_FORMAT, s->fingerprint, s->manifest_sha, b64);
    qf_outfile *f;
    qf_status st = qf_outfile_open(path, &f, err);
    if (st != QF_OK) return st;
    st = qf_outfile_write(f, text, (uint64_t)n, err);
    if (st != QF_OK) {
        qf_outfile_abort(f);
        return st;
    }
    return qf_outfile_commit(f, err);
}

/* ---- check ------------------------------------------------------------------------------------- */

static qf_status verify_bytes(EVP_PKEY *k, const sig_file *s, const char *m, size_t mlen, bool *good, qf_error *err) {
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx) return qf_fail(err, QF_E_NOMEM, "out of memory for a signature check");
    int r = EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, k);
    if (r == 1) r = EVP_DigestVerify(ctx, s->sig, ED25519_SIG_BYTES, (const unsigned char *)m, mlen);
    EVP_MD_CTX_free(ctx);
    *good = r == 1;
    return QF_OK; /* r == 0 and r < 0 both mean "does not verify" for a well-formed 64-byte signature */
}

qf_status qf_signature_check(const qf_gguf *g, const char *sig_path, const char *pub_path, qf_sig_state *state,
                             qf_error *err) {
    *state = QF_SIG_NOT_CHECKED;
    sig_file s;
    EVP_PKEY *pub = NULL;
    char fp[QF_SHA256_HEX_LEN + 1], mhex[QF_SHA256_HEX_LEN + 1];
    char *m = NULL;
    size_t mlen = 0;
    bool good = false;
    qf_status st = parse_sig_file(sig_path, &s, err);
    if (st == QF_OK) st = load_key(pub_path, false, &pub, err);
    if (st == QF_OK) st = key_fingerprint(pub, pub_path, fp, err);
    if (st == QF_OK && strcmp(fp, s.fingerprint) != 0) {
        *state = QF_SIG_WRONG_KEY;
        st = qf_fail(err, QF_E_CHECK, "%s: signed by key %.16s..., not by %s (%.16s...)", sig_path, s.fingerprint,
                     pub_path, fp);
    }
    if (st == QF_OK) st = build_manifest(g, &m, &mlen, mhex, err);
    if (st == QF_OK) st = verify_bytes(pub, &s, m, mlen, &good, err);
    if (st == QF_OK) {
        *state = good ? QF_SIG_OK : QF_SIG_BAD;
        if (!good)
            st = qf_fail(err, QF_E_CHECK, "%s: BAD signature for %s%s", sig_path, qf_gguf_label(g),
                         strcmp(mhex, s.manifest_sha) ? " (the file's digests differ from those that were signed)" : "");
    }
    free(m);
    EVP_PKEY_free(pub);
    return st;
}

/* ---- sign -------------------------------------------------------------------------------------- */

static qf_status sign_bytes(EVP_PKEY *k, const char *m, size_t mlen, sig_file *s, const char *key_path, qf_error *err) {
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx) return qf_fail(err, QF_E_NOMEM, "out of memory for signing");
    size_t n = ED25519_SIG_BYTES;
    bool ok = EVP_DigestSignInit(ctx, NULL, NULL, NULL, k) == 1 &&
              EVP_DigestSign(ctx, s->sig, &n, (const unsigned char *)m, mlen) == 1 && n == ED25519_SIG_BYTES;
    EVP_MD_CTX_free(ctx);
    return ok ? QF_OK : qf_fail(err, QF_E_INTERNAL, "%s: Ed25519 signing failed", key_path);
}

/* Signs only digests that were just re-verified, so a signature never vouches for damaged bytes. */
static qf_status verified(const qf_gguf *g, const qf_sign_opts *o, qf_error *err) {
    qf_integrity_result r;
    qf_status st = qf_integrity_check(g, o->threads, &(qf_integrity_progress){o->progress, o->progress_user}, &r, err);
    qf_integrity_result_free(&r); /* only the verdict matters here */
    if (st == QF_E_CHECK && err) {
        char msg[sizeof err->msg];
        snprintf(msg, sizeof msg, "%s", err->msg);
        qf_fail(err, QF_E_CHECK, "refusing to sign: %.700s", msg);
    }
    return st;
}

qf_status qf_sign(const qf_sign_opts *o, qf_error *err) {
    qf_error_clear(err);
    char def_out[4096];
    const char *out = o->out;
    if (!out) {
        if (snprintf(def_out, sizeof def_out, "%s.sig", o->path) >= (int)sizeof def_out)
            return qf_fail(err, QF_E_USAGE, "%s: path too long", o->path);
        out = def_out;
    }
    const char *inputs[] = {o->path, o->key}; /* the signature must replace neither */
    qf_status chk = qf_outfile_check(out, inputs, QF_ARRAY_LEN(inputs), err);
    if (chk != QF_OK) return chk;
    qf_gguf *g = NULL;
    EVP_PKEY *key = NULL;
    sig_file s;
    char *m = NULL;
    size_t mlen = 0;
    qf_status st = load_key(o->key, true, &key, err); /* first: a bad key should not cost a full hash */
    if (st == QF_OK) st = qf_gguf_open(o->path, &g, err);
    if (st == QF_OK) st = verified(g, o, err);
    if (st == QF_OK) st = key_fingerprint(key, o->key, s.fingerprint, err);
    if (st == QF_OK) st = build_manifest(g, &m, &mlen, s.manifest_sha, err);
    if (st == QF_OK) st = sign_bytes(key, m, mlen, &s, o->key, err);
    if (st == QF_OK) st = write_sig_file(out, &s, err);
    free(m);
    EVP_PKEY_free(key);
    qf_gguf_close(g);
    return st;
}
