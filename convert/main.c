/*
 * qforge — the command-line front end. It parses arguments, shows progress on a TTY, calls one
 * libqforge operation through qforge.h and maps its status to the exit code:
 *   0 ok, 1 a check failed, 2 bad input or usage, 3 environment (I/O, memory).
 */
#include "convert/cli.h"
#include "qforge.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

void qf_outfile_install_signal_cleanup(void); /* formats/outfile.h; the CLI owns signal handling */

typedef int (*command_fn)(int argc, char **argv);

typedef struct command {
    const char *name;
    command_fn run;
    const char *summary;
} command;

static int parse_threads(const char *cmd, const char *s, int *out) {
    long v;
    if (!qf_cli_long(cmd, "--threads", s, 0, 1024, &v)) return 2;
    *out = (int)v;
    return 0;
}

/* ---- progress ---------------------------------------------------------------------------------- */

typedef struct progress {
    struct timespec start;
    double last;
} progress;

static void show_progress(void *user, const char *tensor, uint64_t done, uint64_t total) {
    progress *p = user;
    double s = qf_cli_seconds_since(&p->start);
    if (done < total && s - p->last < 0.1) return;
    p->last = s;
    double mb = (double)done / 1048576.0, rate = s > 0 ? mb / s : 0;
    double eta = rate > 0 ? ((double)total / 1048576.0 - mb) / rate : 0;
    fprintf(stderr, "\r\033[K%5.1f%%  %8.1f MiB  %7.1f MiB/s  ETA %4.0fs  %s", total ? 100.0 * (double)done / (double)total : 100.0,
            mb, rate, eta, tensor);
    if (done >= total) fputc('\n', stderr);
}

/* ---- convert ----------------------------------------------------------------------------------- */

static const char convert_help[] =
    "usage: qforge convert SRC -o OUT.gguf [--type f32|f16|bf16|q8_0] [--threads N] [--dry-run]\n"
    "\n"
    "Convert a Hugging Face checkpoint to GGUF, streaming tensor by tensor.\n"
    "SRC is a model directory, a .safetensors file, a model.safetensors.index.json, or an archive\n"
    "(.tar, .tar.gz, .tar.zst, .zip) holding one model directory (read without unpacking it).\n"
    "FP8 checkpoints (E4M3 + weight_scale_inv blocks, or compressed-tensors weight_scale) are\n"
    "dequantized on the fly.\n"
    "\n"
    "  -o, --output FILE   output GGUF (written to a temp file, fsynced, renamed when complete)\n"
    "  -t, --type T        type of 2-D weights (default f16); 1-D tensors stay F32; rows that do not\n"
    "                      fit a type's blocks fall back (K-quants -> Q5_0/Q5_1/Q8_0, then F16)\n"
    "  -j, --threads N     worker threads (default: all CPUs); output bytes do not depend on N\n"
    "  -n, --dry-run       print the plan (tensor, shape, type, bytes, reason) and write nothing\n"
    "      --clamp-overflow  clamp weights beyond the type's range (f16: |x| > 65504) instead of refusing\n"
    "                      (exit 2); the file records it (qforge.clamp_overflow, qforge.clamped)\n"
    "  -q, --quiet         no progress display\n";

static const char quantize_help[] =
    "usage: qforge quantize SRC -o OUT.gguf (--type T | --recipe R) [--tensor-type REGEX=T]...\n"
    "                       [--imatrix F] [--method rtn|weighted] [--dry-run] [--threads N]\n"
    "\n"
    "Quantize a checkpoint (HF directory/archive, BF16 or FP8 block-scaled) to GGUF in one streaming\n"
    "pass. 1-D tensors (norms, biases) stay F32. Rows that do not fit a type's blocks fall back\n"
    "(Q2_K/Q3_K/Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, then F16); --dry-run shows each reason.\n"
    "\n"
    "  -o, --output FILE         output GGUF (temp file, fsync, rename)\n"
    "  -t, --type T              one type for every 2-D weight\n"
    "  -r, --recipe R            a named mix (below)\n"
    "  -T, --tensor-type RE=T    POSIX extended regex on the GGUF tensor name; first match wins and\n"
    "                            beats the recipe (repeatable), e.g. 'attn_v=q8_0' or 'blk\\.0\\.=q6_K'\n"
    "  -i, --imatrix F           importance matrix in llama.cpp's GGUF layout (qforge calibrate or\n"
    "                            llama-imatrix); tensors it lacks are quantized as with rtn\n"
    "  -m, --method M            rtn (no calibration: plain error, or magnitude-weighted below 4 bpw)\n"
    "                            | weighted (imatrix-weighted scale search, hedged by magnitude below\n"
    "                            4 bpw; default with --imatrix)\n"
    "                            | gptq (Hessian error feedback; default with --hessian)\n"
    "  -H, --hessian F           GPTQ Hessians from 'qforge calibrate --hessian'; GPTQ holds one weight\n"
    "                            matrix as F32 plus its n x n Hessian twice in doubles\n"
    "      --gptq-damp X         diagonal damping as a fraction of mean diag(H) (default 0.01)\n"
    "      --gptq-order O        natural | energy (blocks by descending input energy; default natural)\n"
    "  -j, --threads N           worker threads; output bytes do not depend on N\n"
    "  -n, --dry-run             print the plan and totals (size, bpw) and write nothing\n"
    "      --clamp-overflow      clamp weights beyond a type's range (its F16 scales would be Inf:\n"
    "                            q8_0 |x| > 8.3e6, q4_0 > 5.2e5, f16 > 65504, ...) instead of refusing\n"
    "                            (exit 2); the file records it (qforge.clamp_overflow, qforge.clamped)\n"
    "  -q, --quiet               no progress display\n";

static void print_quantize_help(void) {
    fputs(quantize_help, stdout);
    printf("\nrecipes:\n");
    const char *summary;
    for (size_t i = 0; qf_recipe_name(i, &summary); i++) printf("  %-10s %s\n", qf_recipe_name(i, &summary), summary);
    printf("\ntypes:");
    for (size_t i = 0; qf_writable_type_name(i); i++) printf(" %s", qf_writable_type_name(i));
    printf("\n");
}

#define QF_MAX_OVERRIDES 256

/* convert and quantize share one implementation; quantize accepts the recipe/imatrix options. */
static int run_convert(int argc, char **argv, bool quantize) {
    static const struct option opts[] = {
        {"output", required_argument, 0, 'o'}, {"type", required_argument, 0, 't'},
        {"recipe", required_argument, 0, 'r'}, {"tensor-type", required_argument, 0, 'T'},
        {"imatrix", required_argument, 0, 'i'}, {"method", required_argument, 0, 'm'},
        {"hessian", required_argument, 0, 'H'}, {"gptq-damp", required_argument, 0, 'D'},
        {"gptq-order", required_argument, 0, 'O'},
        {"threads", required_argument, 0, 'j'}, {"dry-run", no_argument, 0, 'n'},
        {"clamp-overflow", no_argument, 0, 'X'},
        {"quiet", no_argument, 0, 'q'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *cmd = quantize ? "quantize" : "convert";
    const char *overrides[QF_MAX_OVERRIDES];
    qf_convert_opts o = {.type = quantize ? NULL : "f16", .tensor_types = overrides};
    bool quiet = false;
    int c;
    while ((c = getopt_long(argc, argv, quantize ? "o:t:r:T:i:m:H:j:nqh" : "o:t:j:nqh", opts, NULL)) != -1) {
        switch (c) {
        case 'o': o.out = optarg; break;
        case 't': o.type = optarg; break;
        case 'r': case 'T': case 'i': case 'm': case 'H': case 'D': case 'O':
            if (!quantize) return qf_cli_usage(cmd, "that option belongs to 'qforge quantize'");
            if (c == 'r') o.recipe = optarg;
            else if (c == 'H') o.hessian = optarg;
            else if (c == 'D') {
                char *end;
                o.gptq_damp = strtod(optarg, &end);
                if (*end || !(o.gptq_damp > 0 && o.gptq_damp < 10)) return qf_cli_usage(cmd, "--gptq-damp takes a number in (0, 10)");
            } else if (c == 'O') {
                if (strcmp(optarg, "natural") && strcmp(optarg, "energy")) return qf_cli_usage(cmd, "--gptq-order is natural or energy");
                o.gptq_block_order = !strcmp(optarg, "energy");
            }
            else if (c == 'i') o.imatrix = optarg;
            else if (c == 'm') o.method = optarg;
            else if (o.n_tensor_types == QF_MAX_OVERRIDES) return qf_cli_usage(cmd, "too many --tensor-type options");
            else overrides[o.n_tensor_types++] = optarg;
            break;
        case 'j': if (parse_threads(cmd, optarg, &o.threads)) return 2; break;
        case 'n': o.dry_run = true; break;
        case 'X': o.clamp_overflow = true; break;
        case 'q': quiet = true; break;
        case 'h': if (quantize) print_quantize_help(); else fputs(convert_help, stdout); return 0;
        default: return qf_cli_usage(cmd, "unknown option");
        }
    }
    if (optind + 1 != argc) return qf_cli_usage(cmd, "expected exactly one SRC");
    if (quantize && !o.type == !o.recipe) return qf_cli_usage(cmd, "give exactly one of --type or --recipe");
    o.src = argv[optind];
    progress p = {0};
    clock_gettime(CLOCK_MONOTONIC, &p.start);
    if (!quiet && isatty(STDERR_FILENO)) { o.progress = show_progress; o.progress_user = &p; }
    qf_error err;
    if (qf_convert(&o, &err) != QF_OK) return qf_cli_fail(argv[0], &err);
    if (!o.dry_run && !quiet) fprintf(stderr, "qforge: wrote %s in %.2fs\n", o.out, qf_cli_seconds_since(&p.start));
    return 0;
}

static int cmd_convert(int argc, char **argv) { return run_convert(argc, argv, false); }
static int cmd_quantize(int argc, char **argv) { return run_convert(argc, argv, true); }

/* ---- inspect ----------------------------------------------------------------------------------- */

static const char inspect_help[] =
    "usage: qforge inspect FILE [--json] [--all]\n"
    "\n"
    "Describe a GGUF file or a safetensors checkpoint (file, directory, shard index or archive):\n"
    "metadata, a tensor table (name, type, shape, bytes, bits per weight) and totals.\n"
    "\n"
    "  --json   machine-readable output on stdout\n"
    "  --all    print long metadata arrays (vocabularies) in full\n";

static int cmd_inspect(int argc, char **argv) {
    static const struct option opts[] = {
        {"json", no_argument, 0, 'J'}, {"all", no_argument, 0, 'a'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    qf_inspect_opts o = {.no_values = true};
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'J': o.json = true; break;
        case 'a': o.no_values = false; break;
        case 'h': fputs(inspect_help, stdout); return 0;
        default: return qf_cli_usage("inspect", "unknown option");
        }
    }
    if (optind + 1 != argc) return qf_cli_usage("inspect", "expected exactly one FILE");
    o.path = argv[optind];
    qf_error err;
    if (qf_inspect(&o, stdout, &err) != QF_OK) return qf_cli_fail(argv[0], &err);
    return 0;
}

/* ---- synth ------------------------------------------------------------------------------------- */

static const char synth_help[] =
    "usage: qforge synth DIR [--seed S] [--layers N] [--dim D] [--ff F] [--vocab V] [--dtype T]\n"
    "                    [--arch llama|mistral|qwen2] [--tied]\n"
    "\n"
    "Write a small random Llama checkpoint in Hugging Face layout (config.json, tokenizer.json,\n"
    "model.safetensors) to DIR: the built-in default model for demos and tests.\n";

static int cmd_synth(int argc, char **argv) {
    static const struct option opts[] = {
        {"seed", required_argument, 0, 's'}, {"layers", required_argument, 0, 'l'}, {"dim", required_argument, 0, 'd'},
        {"ff", required_argument, 0, 'f'}, {"vocab", required_argument, 0, 'v'}, {"dtype", required_argument, 0, 't'},
        {"arch", required_argument, 0, 'a'}, {"tied", no_argument, 0, 'T'},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    qf_synth_opts o = {.seed = 1, .n_layer = 2, .n_embd = 256, .n_ff = 512, .n_vocab = 512, .dtype = "bf16"};
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        char *end = NULL;
        unsigned long v = optarg ? strtoul(optarg, &end, 10) : 0;
        bool bad = optarg && (*end || v == 0 || v > (1ul << 20));
        switch (c) {
        case 's': o.seed = v; break;
        case 'l': o.n_layer = (uint32_t)v; break;
        case 'd': o.n_embd = (uint32_t)v; break;
        case 'f': o.n_ff = (uint32_t)v; break;
        case 'v': o.n_vocab = (uint32_t)v; break;
        case 't': o.dtype = optarg; bad = false; break;
        case 'a': o.arch = optarg; bad = false; break;
        case 'T': o.tied = true; break;
        case 'h': fputs(synth_help, stdout); return 0;
        default: return qf_cli_usage("synth", "unknown option");
        }
        if (bad) return qf_cli_usage("synth", "numeric options take a positive integer");
    }
    if (optind + 1 != argc) return qf_cli_usage("synth", "expected exactly one DIR");
    o.dir = argv[optind];
    qf_error err;
    if (qf_synth_model(&o, &err) != QF_OK) return qf_cli_fail(argv[0], &err);
    return 0;
}

/* ---- calibrate --------------------------------------------------------------------------------- */

static const char calibrate_help[] =
    "usage: qforge calibrate MODEL --text F -o IMATRIX.gguf [--ctx N] [--chunks N] [--hessian H.gguf]\n"
    "                        [--threads N]\n"
    "\n"
    "Run MODEL (GGUF or HF checkpoint, FP8 included) over calibration text and record, for every linear\n"
    "layer input, the per-column sum of squared activations and the token count, in llama.cpp's GGUF\n"
    "imatrix layout (llama-quantize --imatrix reads it; qforge quantize --imatrix reads llama-imatrix's).\n"
    "Chunks of ctx tokens start with BOS, as llama-imatrix does. Do not calibrate on the text you\n"
    "evaluate on.\n"
    "\n"
    "  -f, --text F        calibration text (UTF-8)\n"
    "  -o, --output F      importance matrix to write\n"
    "  -c, --ctx N         tokens per chunk (default 512)\n"
    "      --chunks N      chunks to run (default: all that fit)\n"
    "  -H, --hessian F     also write GPTQ Hessians (sum of x x^T per layer input) to F. Memory and file\n"
    "                      size: 8 n^2 bytes while collecting and 4 n^2 in the file per distinct input,\n"
    "                      i.e. per layer 3 d^2 + f^2 floats for width d and FFN width f\n"
    "  -j, --threads N     worker threads (results do not depend on N)\n"
    "  -q, --quiet         no progress display\n";

static int parse_u32(const char *cmd, const char *opt, const char *s, uint32_t *out) {
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (*end || v == 0 || v > 1u << 24) {
        char msg[96];
        snprintf(msg, sizeof msg, "%s takes a positive integer", opt);
        return qf_cli_usage(cmd, msg);
    }
    *out = (uint32_t)v;
    return 0;
}

static int cmd_calibrate(int argc, char **argv) {
    static const struct option opts[] = {
        {"text", required_argument, 0, 'f'}, {"output", required_argument, 0, 'o'}, {"ctx", required_argument, 0, 'c'},
        {"chunks", required_argument, 0, 'C'}, {"hessian", required_argument, 0, 'H'},
        {"threads", required_argument, 0, 'j'}, {"quiet", no_argument, 0, 'q'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    qf_calibrate_opts o = {0};
    bool quiet = false;
    int c;
    while ((c = getopt_long(argc, argv, "f:o:c:H:j:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'f': o.text_path = optarg; break;
        case 'o': o.out = optarg; break;
        case 'c': if (parse_u32("calibrate", "--ctx", optarg, &o.ctx)) return 2; break;
        case 'C': if (parse_u32("calibrate", "--chunks", optarg, &o.chunks)) return 2; break;
        case 'H': o.hessian_out = optarg; break;
        case 'j': if (parse_threads("calibrate", optarg, &o.threads)) return 2; break;
        case 'q': quiet = true; break;
        case 'h': fputs(calibrate_help, stdout); return 0;
        default: return qf_cli_usage("calibrate", "unknown option");
        }
    }
    if (optind + 1 != argc) return qf_cli_usage("calibrate", "expected exactly one MODEL");
    if (!o.text_path || !o.out) return qf_cli_usage("calibrate", "--text and -o are required");
    o.model = argv[optind];
    progress p = {0};
    clock_gettime(CLOCK_MONOTONIC, &p.start);
    if (!quiet && isatty(STDERR_FILENO)) { o.progress = show_progress; o.progress_user = &p; }
    qf_error err;
    if (qf_calibrate(&o, &err) != QF_OK) return qf_cli_fail(argv[0], &err);
    if (!quiet) fprintf(stderr, "qforge: wrote %s%s%s in %.2fs\n", o.out, o.hessian_out ? " and " : "",
                        o.hessian_out ? o.hessian_out : "", qf_cli_seconds_since(&p.start));
    return 0;
}

/* ---- dispatch ---------------------------------------------------------------------------------- */

static const command commands[] = {
    {"convert", cmd_convert, "HF checkpoint (dir, shards, archive, FP8) -> GGUF"},
    {"quantize", cmd_quantize, "checkpoint -> quantized GGUF (types, recipes, overrides, imatrix, GPTQ)"},
    {"calibrate", cmd_calibrate, "activation statistics over text: importance matrix (+ GPTQ Hessians)"},
    {"inspect", cmd_inspect, "describe a GGUF or safetensors file"},
    {"synth", cmd_synth, "write a small random Llama checkpoint (built-in demo model)"},
    {"perplexity", qf_cli_perplexity, "perplexity of a GGUF or HF model (llama-perplexity protocol)"},
    {"verify", qf_cli_verify, "compare a model with its base: PPL, KLD, top-1; thresholds gate"},
    {"sign", qf_cli_sign, "Ed25519 detached signature over a GGUF's integrity digests"},
    {"pack", qf_cli_pack, "zstd transport pack (.qfz): parallel, indexed, SHA-256 per frame"},
    {"unpack", qf_cli_unpack, "restore a .qfz pack, verifying every frame and the GGUF's digests"},
};

static void print_help(FILE *out) {
    fprintf(out, "qforge %s — released LLM checkpoints to verified quantized GGUF files\n\nusage: qforge COMMAND [options]\n\n",
            QF_VERSION_STRING);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\n'qforge COMMAND --help' describes one command. Exit codes: 0 ok, 1 check failed, 2 bad input,\n"
                 "3 environment (I/O, memory).\n");
}

int main(int argc, char **argv) {
    if (argc < 2) { print_help(stderr); return 2; }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) { print_help(stdout); return 0; }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) { printf("qforge %s\n", QF_VERSION_STRING); return 0; }
    qf_outfile_install_signal_cleanup();
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "qforge: '%s' is not a command\n\n", argv[1]);
    print_help(stderr);
    return 2;
}
