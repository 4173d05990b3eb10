/*
 * cli_integrity.c — `qforge verify FILE --integrity [--pubkey P] [--sig S] [--threads N] [--json]`:
 * parse, call qf_verify_integrity (qforge.h), print OK or every change, map the status to the exit
 * code (0 all match, 1 something changed or the signature fails, 2 unreadable/malformed file or no
 * qforge digests, 3 environment). `qforge verify` hands its arguments here when --integrity is present.
 */
#include "convert/cli.h"
#include "convert/report.h"
#include "qforge.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char integrity_help[] =
    "usage: qforge verify FILE.gguf --integrity [--pubkey PUB.pem] [--sig FILE.sig] [--threads N] [--json]\n"
    "\n"
    "Re-hash a GGUF written by qforge and compare it with the SHA-256 digests it carries (qforge.integrity.*\n"
    "keys; docs/integrity.md). Files of scheme 2 (qforge writes no other) have every byte covered: header,\n"
    "metadata, tensor infos, each tensor with its padding, and the file's length, so any changed, added or\n"
    "removed byte fails. Older files of scheme 1 leave padding and bytes appended at the end uncovered; the\n"
    "OK line says which scheme a file has. Names every tensor whose bytes changed, matching digests to\n"
    "tensors by name, and says when another tool rewrote the file (reordered or re-encoded tensors, keys\n"
    "after the digests) instead of listing every tensor as changed. Streams from the file; tensors are\n"
    "hashed in parallel.\n"
    "\n"
    "  -k, --pubkey P         also check the detached Ed25519 signature (made by 'qforge sign') with the\n"
    "                         PEM public key P ('openssl pkey -in key.pem -pubout -out pub.pem')\n"
    "      --sig S            signature file (default FILE.sig)\n"
    "  -t, -j, --threads N    hashing threads (default: all CPUs)\n"
    "      --json             one JSON object on stdout whatever the outcome (schema qforge.integrity/1)\n"
    "  -q, --quiet            print nothing when everything matches (and no progress unless --progress)\n"
    QF_CLI_PROGRESS_HELP
    "\n"
    "Exit: 0 everything matches, 1 a tensor or the header changed, the file was rewritten, or the signature fails,\n"
    "2 unreadable or malformed file, or a file without qforge digests, 3 I/O.\n";

typedef struct integrity_cli {
    qf_integrity_opts o;
    bool json;
    qf_cli_common co;
} integrity_cli;

enum { OPT_INTEGRITY = QF_OPT_FIRST_FREE, OPT_SIG, OPT_JSON };

static int usage_error(const char *msg) {
    fprintf(stderr, "qforge verify: %s (see 'qforge verify --integrity --help')\n", msg);
    return 2;
}

/* 0 = run, -1 = help printed, 2 = usage error. */
static int parse(int argc, char **argv, integrity_cli *v) {
    static const struct option opts[] = {
        {"integrity", no_argument, 0, OPT_INTEGRITY}, {"pubkey", required_argument, 0, 'k'},
        {"sig", required_argument, 0, OPT_SIG}, {"json", no_argument, 0, OPT_JSON}, QF_CLI_THREADS_OPTS,
        QF_CLI_BASE_OPTS, QF_CLI_PROGRESS_OPTS, {0, 0, 0, 0}};
    int c, rc;
    optind = 1; /* the caller may have scanned argv with getopt already */
    while ((c = qf_cli_getopt("verify", argc, argv, "k:t:j:qh", opts)) != -1) {
        if ((rc = qf_cli_common_opt("verify", c, optarg, &v->co)) >= 0) { if (rc) return rc; continue; }
        switch (c) {
        case OPT_INTEGRITY: break;
        case 'k': v->o.pubkey = optarg; break;
        case OPT_SIG: v->o.sig = optarg; break;
        case OPT_JSON: v->json = true; break;
        case 'h': fputs(integrity_help, stdout); return -1;
        default: return 2;
        }
    }
    if (optind + 1 != argc) return usage_error("expected exactly one FILE");
    if (v->o.sig && !v->o.pubkey) return usage_error("--sig needs --pubkey");
    v->o.path = argv[optind];
    v->o.threads = v->co.threads;
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

/* "FILE: " with the file name as given, escaped like everything else that is printed. */
static void file_prefix(const char *f) {
    qf_text_put(stdout, f, strlen(f), QF_TEXT_TERMINAL);
    fputs(": ", stdout);
}

/* A name that came from the file, escaped (terminal injection). */
static void put_name(const char *name) { qf_text_put(stdout, name, strlen(name), QF_TEXT_TERMINAL); }

static const char *verdict_word(qf_tensor_verdict v) {
    switch (v) {
    case QF_TENSOR_RETYPED: return "RE-ENCODED (stored in another type than qforge wrote)";
    case QF_TENSOR_UNCOVERED: return "NOT COVERED (no digest names it)";
    default: return "CHANGED";
    }
}

static void print_text(const integrity_cli *v, const qf_integrity_report *r, qf_status st, double secs) {
    const char *f = v->o.path;
    if (r->rewritten) {
        file_prefix(f);
        printf("REWRITTEN by another tool since qforge wrote it: its qforge digests describe that file, not this one\n");
    }
    if (!r->header_ok) { file_prefix(f); printf("CHANGED header/metadata/tensor infos%s\n", r->scheme >= 2 ? "/padding/length" : ""); }
    /* Re-encoded tensors are what a rewrite does on purpose: one line for all of them; the others, whose
     * bytes changed in place or that no digest covers, one line each. */
    size_t n_retyped = 0;
    for (size_t i = 0; i < r->n_bad; i++) n_retyped += r->bad_verdict[i] == QF_TENSOR_RETYPED;
    for (size_t i = 0, shown = 0; n_retyped && i < r->n_bad; i++) {
        if (r->bad_verdict[i] != QF_TENSOR_RETYPED) continue;
        if (shown == 0) { file_prefix(f); printf("%s %zu tensors: ", verdict_word(QF_TENSOR_RETYPED), n_retyped); }
        else if (shown < 3) printf(", ");
        put_name(r->bad[i]);
        if (++shown == 3 || shown == n_retyped) printf("%s\n", n_retyped > shown ? ", ..." : "");
        if (shown == 3) break;
    }
    for (size_t i = 0; i < r->n_bad; i++) {
        if (r->bad_verdict[i] == QF_TENSOR_RETYPED) continue;
        file_prefix(r->bad_file[i]); /* a split set's part holding the tensor */
        printf("%s tensor ", verdict_word(r->bad_verdict[i]));
        put_name(r->bad[i]);
        putchar('\n');
    }
    if (r->n_missing) { file_prefix(f); printf("MISSING %zu tensors the digests describe\n", r->n_missing); }
    if (r->sig == QF_SIG_BAD) { file_prefix(f); printf("BAD signature\n"); }
    if (r->sig == QF_SIG_WRONG_KEY) {
        file_prefix(f);
        printf("signature made with another key than ");
        put_name(v->o.pubkey);
        putchar('\n');
    }
    double mib = (double)r->bytes_hashed / 1048576.0;
    const char *scheme = r->scheme >= 2 ? "scheme 2: every byte covered" : "scheme 1: padding and file length not covered";
    if (st == QF_OK && v->co.quiet) return;
    char parts[48] = "";
    if (r->n_parts > 1) snprintf(parts, sizeof parts, " in a split set of %zu parts", r->n_parts);
    file_prefix(f);
    if (st == QF_OK)
        printf("OK (%s; header + %zu tensors%s, %.1f MiB in %.2f s%s)\n", scheme, r->n_tensors, parts, mib, secs,
               r->sig == QF_SIG_OK ? "; signature OK" : "");
    else
        printf("FAILED: %s%s, %zu of %zu tensors %s%s (%s)\n", r->rewritten ? "rewritten by another tool, " : "",
               r->header_ok ? "header ok" : "header/metadata changed", r->n_bad, r->n_tensors,
               r->rewritten ? "not as qforge wrote them" : "changed",
               r->sig == QF_SIG_NOT_CHECKED ? "" : r->sig == QF_SIG_OK ? ", signature ok" : ", signature fails", scheme);
}

/* Printed for every outcome, so scripts always get one JSON object; "error" holds the message. */
static void print_json(const integrity_cli *v, const qf_integrity_report *r, qf_status st, const qf_error *err) {
    cJSON *o = qf_report_new("qforge.integrity/1");
    if (!o) return;
    qf_error derr;
    if (st != QF_E_NOTFOUND && st != QF_E_IO) qf_report_add_file(o, "file", v->o.path, &derr);
    qf_json_add_text(o, "file", v->o.path);
    cJSON_AddBoolToObject(o, "ok", st == QF_OK);
    cJSON_AddStringToObject(o, "status", qf_status_name(st));
    bool report = st == QF_OK || st == QF_E_CHECK;
    if (report) {
        cJSON_AddNumberToObject(o, "scheme", r->scheme);
        cJSON_AddBoolToObject(o, "header_ok", r->header_ok);
        cJSON_AddBoolToObject(o, "rewritten", r->rewritten);
        cJSON_AddNumberToObject(o, "tensors", (double)r->n_tensors);
        cJSON_AddNumberToObject(o, "parts", (double)r->n_parts);
        static const struct { const char *key; qf_tensor_verdict v; } lists[] = {
            {"changed_tensors", QF_TENSOR_CHANGED}, {"re_encoded_tensors", QF_TENSOR_RETYPED},
            {"uncovered_tensors", QF_TENSOR_UNCOVERED}};
        for (size_t l = 0; l < sizeof lists / sizeof lists[0]; l++) {
            cJSON *a = cJSON_AddArrayToObject(o, lists[l].key);
            for (size_t i = 0; i < r->n_bad; i++)
                if (r->bad_verdict[i] == lists[l].v) cJSON_AddItemToArray(a, qf_json_text(r->bad[i]));
        }
        cJSON_AddNumberToObject(o, "missing_tensors", (double)r->n_missing);
        cJSON_AddNumberToObject(o, "bytes_hashed", (double)r->bytes_hashed);
        cJSON_AddStringToObject(o, "signature", sig_word(r->sig));
    }
    if (st != QF_OK) qf_json_add_text(o, "error", err->msg);
    qf_report_print(o, stdout);
}

int qf_cli_integrity(int argc, char **argv) {
    integrity_cli v = {0};
    int rc = parse(argc, argv, &v);
    if (rc) return rc < 0 ? 0 : rc;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    qf_cli_progress p;
    qf_cli_progress_start(&p, "verify", &v.co);
    v.o.progress = qf_cli_progress_bytes;
    v.o.progress_user = &p;
    qf_integrity_report r;
    qf_error err;
    qf_status st = qf_verify_integrity(&v.o, &r, &err);
    qf_cli_progress_end(&p);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    if (v.json) print_json(&v, &r, st, &err);
    else if (st == QF_OK || st == QF_E_CHECK) print_text(&v, &r, st, secs);
    qf_integrity_report_free(&r);
    return st != QF_OK ? qf_cli_fail("verify", &err) : 0;
}
