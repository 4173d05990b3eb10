/* cli_measure.c — `qforge measure`: the sensitivity table an automatic mix is solved from. */
#include "convert/cli.h"
#include "qforge.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char measure_help[] =
    "usage: qforge measure SRC -f TEXT -o TABLE.json [-i IMATRIX] [--types T,T,...] [--probe T]\n"
    "                      [--ctx-size N] [--chunks N] [--check] [--threads N]\n"
    "\n"
    "Measure what quantizing each tensor of SRC costs, for 'qforge quantize --sensitivity TABLE\n"
    "--target-size S' (or --target-bpw, --max-kld). SRC is quantized once per candidate type (with the\n"
    "imatrix the mix will use: give the same one to quantize), in a directory beside the output that is\n"
    "removed at the end. Per tensor and type it records the importance-weighted squared error of the\n"
    "rows, and, for the probe type, the true effect: that tensor alone quantized, the model run over\n"
    "TEXT, mean KL divergence from SRC's next-token distributions. The predicted cost of a type is the\n"
    "probe's KLD scaled by the ratio of the errors; the mix's, the sum over tensors. A few chunks of\n"
    "text suffice: one forward pass per tensor (per type with --check).\n"
    "\n"
    "  -m, --model SRC        the checkpoint, instead of the SRC argument\n"
    "  -f, --file, --text F   text the true effects are measured on (UTF-8; not the text you evaluate on)\n"
    "  -o, --output F         the table (JSON, schema qforge.sensitivity/1)\n"
    "  -i, --imatrix F        importance matrix (qforge calibrate, llama-imatrix): the candidates are\n"
    "                         quantized with it and the errors weighted by it\n"
    "      --types LIST       candidate types, comma-separated (default q2_K,q3_K,q4_K,q5_K,q6_K,q8_0;\n"
    "                         i-quants and qforge's own types too: iq4_xs, iq3_xxs, iq2_xxs, ...)\n"
    "      --probe T          the type whose true effect is measured for every tensor (default q3_K)\n"
    "  -c, --ctx-size, --ctx N\n"
    "                         tokens per chunk (default 512)\n"
    "      --chunks N         chunks of text (default 4: on the models measured, more chose the same mix)\n"
    "      --check            also measure every other type's true effect and report how well the\n"
    "                         predictions rank them (Spearman's rho); costs one pass per tensor per type\n"
    "      --no-escape        read the text literally (default: backslash escapes processed, as\n"
    "                         llama.cpp's -f)\n"
    QF_CLI_THREADS_HELP QF_CLI_QUIET_HELP QF_CLI_PROGRESS_HELP
    "\n"
    "Short flags mean the same in every qforge command and follow llama.cpp.\n";

enum { OPT_TYPES = QF_OPT_FIRST_FREE, OPT_PROBE, OPT_CHUNKS, OPT_CHECK, OPT_NO_ESCAPE };

#define MAX_TYPES 16

typedef struct measure_cli {
    qf_measure_model_opts o;
    qf_cli_common co;
    char *list;               /* --types, split in place */
    const char *types[MAX_TYPES];
} measure_cli;

static int split_types(const char *cmd, measure_cli *v) {
    size_t n = 0;
    for (char *save = NULL, *t = strtok_r(v->list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (n == MAX_TYPES) return qf_cli_usage(cmd, "--types lists at most 16 types");
        v->types[n++] = t;
    }
    if (!n) return qf_cli_usage(cmd, "--types needs at least one type");
    v->o.types = v->types;
    v->o.n_types = n;
    return 0;
}

static int parse_measure(int argc, char **argv, measure_cli *v) {
    static const struct option opts[] = {
        {"text", required_argument, 0, 'f'}, {"file", required_argument, 0, 'f'}, {"output", required_argument, 0, 'o'},
        {"imatrix", required_argument, 0, 'i'}, {"types", required_argument, 0, OPT_TYPES},
        {"probe", required_argument, 0, OPT_PROBE}, {"ctx", required_argument, 0, 'c'},
        {"ctx-size", required_argument, 0, 'c'}, {"chunks", required_argument, 0, OPT_CHUNKS},
        {"check", no_argument, 0, OPT_CHECK}, {"no-escape", no_argument, 0, OPT_NO_ESCAPE},
        QF_CLI_THREADS_OPTS, QF_CLI_MODEL_OPTS, QF_CLI_BASE_OPTS, QF_CLI_PROGRESS_OPTS, {0, 0, 0, 0}};
    const char *cmd = argv[0];
    int c, rc;
    long n;
    while ((c = qf_cli_getopt(cmd, argc, argv, "f:o:i:c:t:j:m:qh", opts)) != -1) {
        if ((rc = qf_cli_common_opt(cmd, c, optarg, &v->co)) >= 0) { if (rc) return rc; continue; }
        switch (c) {
        case 'f': v->o.text_path = optarg; break;
        case 'o': v->o.out = optarg; break;
        case 'i': v->o.imatrix = optarg; break;
        case OPT_TYPES: v->list = optarg; break;
        case OPT_PROBE: v->o.probe = optarg; break;
        case 'c':
            if (!qf_cli_long(cmd, "--ctx-size", optarg, 4, 1 << 20, &n)) return 2;
            v->o.ctx = (uint32_t)n;
            break;
        case OPT_CHUNKS:
            if (!qf_cli_long(cmd, "--chunks", optarg, 1, 1 << 24, &n)) return 2;
            v->o.chunks = (uint32_t)n;
            break;
        case OPT_CHECK: v->o.check = true; break;
        case OPT_NO_ESCAPE: v->o.no_escape = true; break;
        case 'h': fputs(measure_help, stdout); return -1;
        default: return 2;
        }
    }
    if (!(v->o.src = qf_cli_positional(cmd, argc, argv, &v->co, "SRC"))) return 2;
    if (!v->o.text_path) return qf_cli_usage(cmd, "no text given (-f TEXT)");
    if (!v->o.out) return qf_cli_usage(cmd, "no output given (-o TABLE.json)");
    if (v->list && (rc = split_types(cmd, v))) return rc;
    v->o.threads = v->co.threads;
    return 0;
}

int qf_cli_measure(int argc, char **argv) {
    measure_cli v = {0};
    int rc = parse_measure(argc, argv, &v);
    if (rc) return rc < 0 ? 0 : rc;
    qf_cli_progress p;
    qf_cli_progress_start(&p, argv[0], &v.co);
    v.o.progress = qf_cli_progress_bytes;
    v.o.count_progress = qf_cli_progress_count;
    v.o.progress_user = &p;
    v.o.warn = qf_cli_warn;
    v.o.warn_user = argv[0];
    qf_measure_model_result r;
    qf_error err;
    qf_status st = qf_measure_model(&v.o, &r, &err);
    qf_cli_progress_end(&p);
    if (st) return qf_cli_fail(argv[0], &err);
    if (v.co.quiet) return 0;
    fprintf(stderr, "qforge measure: wrote %s: %zu tensors; candidates %.1fs (%.1f MB), measurement %.1fs; rank "
            "correlation of the proxy with the probe's KLD %.3f", v.o.out, r.tensors, r.quantize_seconds,
            (double)r.candidate_bytes / 1e6, r.measure_seconds, r.rank_proxy);
    if (isfinite(r.rank_check)) fprintf(stderr, ", of the predictions with the other types' KLD %.3f", r.rank_check);
    fputc('\n', stderr);
    return 0;
}
