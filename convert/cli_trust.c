/*
 * cli_trust.c — `qforge sign`, `qforge pack`, `qforge unpack`: argument parsing, one summary line,
 * exit codes (0 ok, 1 a check failed, 2 bad input or usage, 3 environment). The work is qf_sign,
 * qf_pack and qf_unpack (qforge.h); formats and byte layouts are in docs/integrity.md.
 */
#include "convert/cli.h"
#include "qforge.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- sign -------------------------------------------------------------------------------------- */

static const char sign_help[] =
    "usage: qforge sign FILE.gguf --key KEY.pem [-o FILE.gguf.sig] [--threads N]\n"
    "\n"
    "Verify the file's qforge integrity digests, then write a detached Ed25519 signature over its\n"
    "digest manifest (header digest + every tensor's name and digest; docs/integrity.md). A file whose\n"
    "digests do not match is not signed (exit 1). Check with 'qforge verify FILE --integrity --pubkey P'.\n"
    "\n"
    "  -k, --key K            PEM Ed25519 private key, unencrypted:\n"
    "                           openssl genpkey -algorithm ed25519 -out key.pem\n"
    "                           openssl pkey -in key.pem -pubout -out pub.pem   (the key to publish)\n"
    "  -o, --output F         signature file (default FILE.gguf.sig), written atomically\n"
    "  -t, -j, --threads N    hashing threads (default: all CPUs)\n"
    QF_CLI_QUIET_HELP QF_CLI_PROGRESS_HELP;

int qf_cli_sign(int argc, char **argv) {
    static const struct option opts[] = {{"key", required_argument, 0, 'k'}, {"output", required_argument, 0, 'o'},
                                         QF_CLI_THREADS_OPTS, QF_CLI_BASE_OPTS, QF_CLI_PROGRESS_OPTS, {0, 0, 0, 0}};
    qf_sign_opts o = {0};
    qf_cli_common co = {0};
    int c, rc;
    while ((c = qf_cli_getopt("sign", argc, argv, "k:o:t:j:qh", opts)) != -1) {
        if ((rc = qf_cli_common_opt("sign", c, optarg, &co)) >= 0) { if (rc) return rc; continue; }
        switch (c) {
        case 'k': o.key = optarg; break;
        case 'o': o.out = optarg; break;
        case 'h': fputs(sign_help, stdout); return 0;
        default: return 2;
        }
    }
    o.threads = co.threads;
    if (optind + 1 != argc) return qf_cli_usage("sign", "expected exactly one FILE");
    if (!o.key) return qf_cli_usage("sign", "--key KEY.pem is required");
    o.path = argv[optind];
    qf_error err;
    qf_cli_progress p;
    qf_cli_progress_start(&p, "sign", &co);
    o.progress = qf_cli_progress_bytes;
    o.progress_user = &p;
    qf_status st = qf_sign(&o, &err);
    qf_cli_progress_end(&p);
    if (st != QF_OK) return qf_cli_fail("sign", &err);
    if (!co.quiet) fprintf(stderr, "qforge: signed %s -> %s%s\n", o.path, o.out ? o.out : o.path, o.out ? "" : ".sig");
    return 0;
}

/* ---- pack / unpack ----------------------------------------------------------------------------- */

static const char pack_help[] =
    "usage: qforge pack FILE -o FILE.qfz [--level L] [--chunk-mib M] [--threads N] [-q]\n"
    "\n"
    "Compress a file (typically a GGUF) into a qforge transport pack: independent zstd frames of M MiB\n"
    "each plus an index of offsets and per-frame SHA-256, so 'qforge unpack' runs in parallel and checks\n"
    "every frame as it streams. Plain 'zstd -d FILE.qfz' also restores the file. Prints the ratio and MB/s.\n"
    "\n"
    "  -o, --output F         the pack (written atomically)\n"
    "  -l, --level L          zstd level 1..19 (default 3)\n"
    "      --chunk-mib M      uncompressed MiB per frame, 1..256 (default 4)\n"
    "  -t, -j, --threads N    compression threads (default: all CPUs); the pack's bytes do not depend\n"
    "                         on N\n"
    QF_CLI_QUIET_HELP QF_CLI_PROGRESS_HELP;

static const char unpack_help[] =
    "usage: qforge unpack FILE.qfz -o FILE [--threads N] [-q]\n"
    "\n"
    "Restore a file from a qforge pack, decompressing frames in parallel. Every frame must decode to its\n"
    "indexed size and SHA-256, and a GGUF carrying qforge integrity digests is re-verified before the\n"
    "output appears. On any failure no output is left behind. Exit 1: damaged data (a frame that does\n"
    "not decode or fails its SHA-256, a damaged index, a GGUF whose digests fail or that carries digests\n"
    "but does not parse); 2: a malformed or truncated pack, or one claiming more bytes than zstd can\n"
    "encode in its frames (at most 32768:1, which bounds the output by the pack's size).\n"
    "\n"
    "  -o, --output F         the restored file (written atomically)\n"
    "  -t, -j, --threads N    decompression threads (default: all CPUs)\n"
    QF_CLI_QUIET_HELP QF_CLI_PROGRESS_HELP;

typedef struct pack_cli {
    qf_pack_opts o;
    qf_cli_common co;
} pack_cli;

enum { OPT_CHUNK_MIB = QF_OPT_FIRST_FREE };

/* 0 = run, -1 = help printed, 2 = usage error. */
static int parse_pack(const char *cmd, bool packing, int argc, char **argv, pack_cli *p) {
    static const struct option opts[] = {
        {"output", required_argument, 0, 'o'}, {"level", required_argument, 0, 'l'},
        {"chunk-mib", required_argument, 0, OPT_CHUNK_MIB}, QF_CLI_THREADS_OPTS, QF_CLI_BASE_OPTS,
        QF_CLI_PROGRESS_OPTS, {0, 0, 0, 0}};
    long v;
    int c, rc;
    while ((c = qf_cli_getopt(cmd, argc, argv, packing ? "o:l:t:j:qh" : "o:t:j:qh", opts)) != -1) {
        if (c == '?') return 2;
        if ((c == 'l' || c == OPT_CHUNK_MIB) && !packing) return qf_cli_usage(cmd, "--level and --chunk-mib are pack options");
        if ((rc = qf_cli_common_opt(cmd, c, optarg, &p->co)) >= 0) { if (rc) return rc; continue; }
        switch (c) {
        case 'o': p->o.out = optarg; break;
        case 'l': if (!qf_cli_long(cmd, "--level", optarg, 1, 19, &v)) return 2; p->o.level = (int)v; break;
        case OPT_CHUNK_MIB: if (!qf_cli_long(cmd, "--chunk-mib", optarg, 1, 256, &v)) return 2; p->o.chunk_mib = (uint32_t)v; break;
        case 'h': fputs(packing ? pack_help : unpack_help, stdout); return -1;
        default: return 2;
        }
    }
    p->o.threads = p->co.threads;
    if (optind + 1 != argc) return qf_cli_usage(cmd, "expected exactly one FILE");
    if (!p->o.out) return qf_cli_usage(cmd, "-o OUTPUT is required");
    p->o.src = argv[optind];
    return 0;
}

static void print_pack_summary(bool packing, const pack_cli *p, const qf_pack_stats *s, double secs) {
    double raw_mib = (double)s->raw_bytes / 1048576.0, packed_mib = (double)s->packed_bytes / 1048576.0;
    double ratio = s->packed_bytes ? (double)s->raw_bytes / (double)s->packed_bytes : 0;
    double mbs = secs > 0 ? (double)s->raw_bytes / 1e6 / secs : 0;
    if (packing)
        fprintf(stderr, "qforge: packed %s -> %s: %.1f MiB -> %.1f MiB, ratio %.3f, %llu frames, %.2f s, %.0f MB/s\n",
                p->o.src, p->o.out, raw_mib, packed_mib, ratio, (unsigned long long)s->frames, secs, mbs);
    else
        fprintf(stderr, "qforge: unpacked %s -> %s: %.1f MiB, %llu frames SHA-256 verified%s, %.2f s, %.0f MB/s\n",
                p->o.src, p->o.out, raw_mib, (unsigned long long)s->frames,
                s->gguf_checked ? ", GGUF integrity digests verified" : "", secs, mbs);
}

static int run_pack(const char *cmd, bool packing, int argc, char **argv) {
    pack_cli p = {0};
    int rc = parse_pack(cmd, packing, argc, argv, &p);
    if (rc) return rc < 0 ? 0 : rc;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    qf_pack_stats s;
    qf_error err;
    qf_cli_progress pr;
    qf_cli_progress_start(&pr, cmd, &p.co);
    p.o.progress = qf_cli_progress_bytes;
    p.o.progress_user = &pr;
    qf_status st = packing ? qf_pack(&p.o, &s, &err) : qf_unpack(&p.o, &s, &err);
    qf_cli_progress_end(&pr);
    if (st != QF_OK) return qf_cli_fail(cmd, &err);
    if (!p.co.quiet) print_pack_summary(packing, &p, &s, qf_cli_seconds_since(&t0));
    return 0;
}

int qf_cli_pack(int argc, char **argv) { return run_pack("pack", true, argc, argv); }
int qf_cli_unpack(int argc, char **argv) { return run_pack("unpack", false, argc, argv); }
