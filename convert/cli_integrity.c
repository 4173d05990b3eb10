/*
 * cli_integrity.c — `qforge verify FILE --integrity [--pubkey P] [--sig S] [--threads N] [--json]`:
 * parse, call qf_verify_integrity (qforge.h), print OK or every change, map the status to the exit
 * code (0 all match, 1 something changed or the signature fails, 2 unreadable/malformed file or no
 * qforge digests, 3 environment). `qforge verify` hands its arguments here when --integrity is present.
 */
#include "convert/cli.h"
#include "qforge.h"

#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char integrity_help[] =
    "usage: qforge verify FILE.gguf --integrity [--pubkey PUB.pem] [--sig FILE.sig] [--threads N] [--json]\n"
    "\n"
    "Re-hash the header, metadata and every tensor of a GGUF written by qforge and compare them with the\n"
    "SHA-256 digests it carries (qforge.integrity.* keys; docs/integrity.md). Names every tensor whose\n"
    "bytes changed and says whether the header/metadata changed. Streams from the file; tensors are\n"
    "hashed in parallel.\n"
    "\n"
    "  -k, --pubkey P     also check the detached Ed25519 signature (made by 'qforge sign') with the PEM\n"
    "                     public key P ('openssl pkey -in key.pem -pubout -out pub.pem')\n"
    "      --sig S        signature file (default FILE.sig)\n"
    "  -j, --threads N    hashing threads (default: all CPUs)\n"
    "      --json         machine-readable result on stdout\n"
    "\n"
    "Exit: 0 everything matches, 1 a tensor or the header changed or the signature fails,\n"
    "2 unreadable or malformed file, or a file without qforge digests, 3 I/O.\n";

typedef struct integrity_cli {
    qf_integrity_opts o;
    bool json;
} integrity_cli;

static int usage_error(const char *msg) {
    fprintf(stderr, "qforge verify: %s (see 'qforge verify --integrity --help')\n", msg);
    return 2;
}

/* 0 = run, -1 = help printed, 2 = usage error. */
static int parse(int argc, char **argv, integrity_cli *v) {
    static const struct option opts[] = {
        {"integrity", no_argument, 0, 'I'}, {"pubkey", required_argument, 0, 'k'}, {"sig", required_argument, 0, 's'},
        {"threads", required_argument, 0, 'j'}, {"json", no_argument, 0, 'J'}, {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    int c;
    optind = 1; /* the caller may have scanned argv with getopt already */
    while ((c = getopt_long(argc, argv, "k:j:h", opts, NULL)) != -1) {
        long t;
        switch (c) {
        case 'I': break;
        case 'k': v->o.pubkey = optarg; break;
        case 's': v->o.sig = optarg; break;
        case 'J': v->json = true; break;
        case 'j':
            if (!qf_cli_long("verify", "--threads", optarg, 0, 1024, &t)) return 2;
            v->o.threads = (int)t;
            break;
        case 'h': fputs(integrity_help, stdout); return -1;
        default: return usage_error("unknown option");
        }
    }
    if (optind + 1 != argc) return usage_error("expected exactly one FILE");
    if (v->o.sig && !v->o.pubkey) return usage_error("--sig needs --pubkey");
    v->o.path = argv[optind];
    return 0;
}

static const char *sig_word(qf_sig_state s) {
    switch (s) {
    case QF_SIG_OK: return "ok";
    case QF_SIG_BAD: return "bad";
    case QF_SIG_WRONG_KEY: return "wrong-key";
    default: return "not-checked";
    }
}

static void print_text(const integrity_cli *v, const qf_integrity_report *r, qf_status st, double secs) {
    const char *f = v->o.path;
    if (!r->header_ok) printf("%s: CHANGED header/metadata/tensor infos\n", f);
    for (size_t i = 0; i < r->n_bad; i++) printf("%s: CHANGED tensor %s\n", f, r->bad[i]);
    if (r->sig == QF_SIG_BAD) printf("%s: BAD signature\n", f);
    if (r->sig == QF_SIG_WRONG_KEY) printf("%s: signature made with another key than %s\n", f, v->o.pubkey);
    double mib = (double)r->bytes_hashed / 1048576.0;
    if (st == QF_OK)
        printf("%s: OK (header + %zu tensors, %.1f MiB in %.2f s%s)\n", f, r->n_tensors, mib, secs,
               r->sig == QF_SIG_OK ? "; signature OK" : "");
    else
        printf("%s: FAILED: %s, %zu of %zu tensors changed%s\n", f, r->header_ok ? "header ok" : "header/metadata changed",
               r->n_bad, r->n_tensors, r->sig == QF_SIG_NOT_CHECKED ? "" : r->sig == QF_SIG_OK ? ", signature ok" : ", signature fails");
}

/* Printed for every outcome, so scripts always get one JSON object; "error" holds the message. */
static void print_json(const integrity_cli *v, const qf_integrity_report *r, qf_status st, const qf_error *err) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "file", v->o.path);
    cJSON_AddBoolToObject(o, "ok", st == QF_OK);
    cJSON_AddStringToObject(o, "status", qf_status_name(st));
    bool report = st == QF_OK || st == QF_E_CHECK;
    if (report) {
        cJSON_AddBoolToObject(o, "header_ok", r->header_ok);
        cJSON_AddNumberToObject(o, "tensors", (double)r->n_tensors);
        cJSON *bad = cJSON_AddArrayToObject(o, "changed_tensors");
        for (size_t i = 0; i < r->n_bad; i++) cJSON_AddItemToArray(bad, cJSON_CreateString(r->bad[i]));
        cJSON_AddNumberToObject(o, "bytes_hashed", (double)r->bytes_hashed);
        cJSON_AddStringToObject(o, "signature", sig_word(r->sig));
    }
    if (st != QF_OK) cJSON_AddStringToObject(o, "error", err->msg);
    char *s = cJSON_Print(o);
    if (s) puts(s);
    free(s);
    cJSON_Delete(o);
}

int qf_cli_integrity(int argc, char **argv) {
    integrity_cli v = {0};
    int rc = parse(argc, argv, &v);
    if (rc) return rc < 0 ? 0 : rc;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    qf_integrity_report r;
    qf_error err;
    qf_status st = qf_verify_integrity(&v.o, &r, &err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    if (v.json) print_json(&v, &r, st, &err);
    else if (st == QF_OK || st == QF_E_CHECK) print_text(&v, &r, st, secs);
    if (st != QF_OK) fprintf(stderr, "qforge verify: error: %s\n", err.msg[0] ? err.msg : qf_status_name(st));
    qf_integrity_report_free(&r);
    return qf_status_exit_code(st);
}
