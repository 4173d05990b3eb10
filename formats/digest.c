/* digest.c — SHA-256 helpers and the names of the integrity scheme (digest.h). */
#include "formats/digest.h"
#include "formats/infile.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <unistd.h>

int qf_integrity_scheme_of(const char *s, uint64_t len) {
    if (len == strlen(QF_INTEGRITY_SCHEME_1) && !memcmp(s, QF_INTEGRITY_SCHEME_1, (size_t)len)) return 1;
    if (len == strlen(QF_INTEGRITY_SCHEME_2) && !memcmp(s, QF_INTEGRITY_SCHEME_2, (size_t)len)) return 2;
    return 0;
}

bool qf_integrity_is_key(const char *key, int scheme) {
    if (!strcmp(key, QF_INTEGRITY_KEY_SCHEME) || !strcmp(key, QF_INTEGRITY_KEY_HEADER) ||
        !strcmp(key, QF_INTEGRITY_KEY_TENSORS))
        return true;
    return scheme >= 2 && (!strcmp(key, QF_INTEGRITY_KEY_NAMES) || !strcmp(key, QF_INTEGRITY_KEY_TYPES));
}

void qf_sha256_hex(const uint8_t digest[32], char hex[QF_SHA256_HEX_LEN + 1]) {
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        hex[2 * i] = digits[digest[i] >> 4];
        hex[2 * i + 1] = digits[digest[i] & 15];
    }
    hex[QF_SHA256_HEX_LEN] = '\0';
}

void qf_sha256_buf_hex(const void *data, size_t len, char hex[QF_SHA256_HEX_LEN + 1]) {
    uint8_t d[32];
    unsigned int dl = 0;
    EVP_Digest(data, len, d, &dl, EVP_sha256(), NULL);
    qf_sha256_hex(d, hex);
}

qf_status qf_sha256_file_hex(const char *path, char hex[QF_SHA256_HEX_LEN + 1], qf_error *err) {
    int fd;
    uint64_t size;
    qf_status st = qf_infile_open(path, &fd, &size, err);
    if (st != QF_OK) return st;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char buf[1 << 16], d[32];
    unsigned int dl = 0;
    ssize_t n;
    bool ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    while (ok && ((n = read(fd, buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR)))
        if (n > 0) ok = EVP_DigestUpdate(md, buf, (size_t)n);
    ok = ok && n == 0 && EVP_DigestFinal_ex(md, d, &dl);
    close(fd);
    EVP_MD_CTX_free(md);
    if (!ok) return qf_fail(err, QF_E_IO, "%s: cannot read it through for its SHA-256", path);
    qf_sha256_hex(d, hex);
    return QF_OK;
}
