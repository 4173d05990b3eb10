/*
 * fuzz_baselogits.c — saved base logits (verify --base-logits): qf_baselogits_parse on the bytes, and
 * qf_baselogits_load on them as a file (its size pre-check runs before any allocation the header asks
 * for). An accepted file is read as verify reads it: every record's ids must lie in the vocabulary and
 * its log-probabilities and tail mass in range. The input is parsed once more with its last 32 bytes
 * replaced by the SHA-256 of the rest, so mutations reach the header and record checks behind the digest.
 */
#include "fuzz_util.h"

#include "formats/baselogits.h"

#include <math.h>
#include <openssl/evp.h>

static void use(const qf_baselogits *b, const qf_error *err) {
    for (uint64_t i = 0; i < b->h.n_scored; i++) {
        qf_baselogits_rec r = qf_baselogits_at(b, i);
        if (!(r.nll >= 0) || !(r.tail >= 0 && r.tail <= 1)) qf_fuzz_violation("record out of range", err);
        for (uint32_t j = 0; j < b->h.k; j++)
            if (qf_baselogits_id(&r, j) >= b->h.n_vocab || !(qf_baselogits_logp(&r, j) <= 0))
                qf_fuzz_violation("entry out of range", err);
        for (uint32_t j = 0; j < b->h.route_layers * b->h.route_k; j++)
            if (qf_baselogits_expert(&r, j) >= b->h.n_expert) qf_fuzz_violation("expert out of range", err);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *copy = qf_fuzz_copy(data, size);
    qf_error err;
    qf_error_clear(&err);
    qf_baselogits b;
    qf_status st = qf_baselogits_parse("input", copy, size, &b, &err);
    qf_fuzz_check_failure(st, &err);
    if (st == QF_OK) use(&b, &err);
    qf_status st_mem = st;
    const char *path = qf_fuzz_path("input.qfbl");
    qf_fuzz_write(path, data, size);
    qf_error_clear(&err);
    st = qf_baselogits_load(path, &b, &err);
    qf_fuzz_check_failure(st, &err);
    if ((st == QF_OK) != (st_mem == QF_OK)) qf_fuzz_violation("file and memory parses disagree", &err);
    if (st == QF_OK) {
        use(&b, &err);
        qf_baselogits_free(&b);
    }
    if (size >= 32) { /* the same bytes, sealed */
        unsigned dl = 0;
        if (!EVP_Digest(copy, size - 32, copy + size - 32, &dl, EVP_sha256(), NULL)) abort();
        qf_error_clear(&err);
        st = qf_baselogits_parse("sealed", copy, size, &b, &err);
        qf_fuzz_check_failure(st, &err);
        if (st == QF_OK) use(&b, &err);
    }
    free(copy);
    return 0;
}
