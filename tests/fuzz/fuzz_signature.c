/*
 * fuzz_signature.c — detached signature files (qforge sign's JSON) through qf_verify_integrity, which
 * parses the file, checks the key fingerprint and the Ed25519 signature over the manifest of a fixed
 * GGUF (sig_fixture.h). Besides the shared contract, a signature that verifies must come with a clean
 * report and QF_SIG_OK; a failed check (bad signature, another key) must say which.
 */
#include "fuzz_util.h"
#include "sig_fixture.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static bool ready;
    const char *gguf = qf_fuzz_path("signed.gguf"), *pub = qf_fuzz_path("pub.pem"), *sig = qf_fuzz_path("input.sig");
    if (!ready) {
        if (!qf_sig_fixture_gguf(gguf) || !qf_sig_fixture_keys(NULL, pub)) abort();
        ready = true;
    }
    qf_fuzz_write(sig, data, size);
    qf_integrity_opts o = {.path = gguf, .pubkey = pub, .sig = sig, .threads = 1};
    qf_integrity_report rep;
    qf_error err;
    qf_error_clear(&err);
    qf_status st = qf_verify_integrity(&o, &rep, &err);
    if (st == QF_OK && (rep.sig != QF_SIG_OK || rep.n_bad || !rep.header_ok))
        qf_fuzz_violation("verified, but the report disagrees", &err);
    if (st == QF_E_CHECK && rep.sig != QF_SIG_BAD && rep.sig != QF_SIG_WRONG_KEY)
        qf_fuzz_violation("a failed check on an intact file, but no signature verdict", &err);
    if (st == QF_E_CHECK && (!err.msg[0] || strchr(err.msg, '\n'))) qf_fuzz_violation("check message", &err);
    if (st != QF_E_CHECK) qf_fuzz_check_failure(st, &err);
    qf_integrity_report_free(&rep);
    return 0;
}
