/*
 * qforge — the command-line front end. It parses arguments, shows progress on stderr, calls one
 * libqforge operation through qforge.h and maps its status to the exit code:
 *   0 ok, 1 a check failed, 2 bad input or usage, 3 environment (I/O, memory).
 */
#include "convert/cli.h"
#include "qforge.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void qf_outfile_install_signal_cleanup(void); /* formats/outfile.h; the CLI owns signal handling */

typedef int (*command_fn)(int argc, char **argv);

typedef struct command {
    const char *name;
    command_fn run;
    const char *summary;
} command;

/* ---- inspect ----------------------------------------------------------------------------------- */

static const char inspect_help[] =
    "usage: qforge inspect FILE [--json] [--all]\n"
    "\n"
    "Describe a GGUF file or a safetensors checkpoint (file, directory, HF cache entry, shard index or\n"
    "archive): metadata with its types, a tensor table (name, type, shape, bytes, bits per weight) and\n"
    "totals. Text from the file (keys, strings, tensor names) is printed with control bytes and invalid\n"
    "UTF-8 escaped.\n"
    "\n"
    "      --json             one JSON object on stdout (schema qforge.inspect/1: the same keys for GGUF\n"
    "                         and safetensors; metadata values keep their GGUF type)\n"
    "      --all              print long metadata arrays (vocabularies) in full\n"
    "  -q, --quiet            accepted as by every command (inspect prints its description only)\n";

enum { OPT_JSON = QF_OPT_FIRST_FREE, OPT_ALL };

static int cmd_inspect(int argc, char **argv) {
    static const struct option opts[] = {
        {"json", no_argument, 0, OPT_JSON}, {"all", no_argument, 0, OPT_ALL}, QF_CLI_BASE_OPTS, {0, 0, 0, 0}};
    qf_inspect_opts o = {.no_values = true};
    qf_cli_common co = {0};
    int c;
    while ((c = qf_cli_getopt("inspect", argc, argv, "qh", opts)) != -1) {
        switch (c) {
        case OPT_JSON: o.json = true; break;
        case OPT_ALL: o.no_values = false; break;
        case 'q': co.quiet = true; break;
        case 'h': fputs(inspect_help, stdout); return 0;
        default: return 2;
        }
    }
    if (!(o.path = qf_cli_positional("inspect", argc, argv, &co, "FILE"))) return 2;
    qf_error err;
    if (qf_inspect(&o, stdout, &err) != QF_OK) return qf_cli_fail(argv[0], &err);
    return 0;
}

/* ---- synth ------------------------------------------------------------------------------------- */

static const char synth_help[] =
    "usage: qforge synth DIR [--arch A] [--seed S] [--layers N] [--dim D] [--ff F] [--vocab V] [--dtype T]\n"
    "                    [--tied] [--experts N] [--experts-used K] [--ff-exp F] [--fp8] [--shards N] [--mtp N]\n"
    "                    [--v3-geometry]\n"
    "\n"
    "Write a small random checkpoint in Hugging Face layout (config.json, tokenizer.json, safetensors) to\n"
    "DIR: the built-in model for demos and tests, of any family the converter supports.\n"
    "\n"
    "  --arch A          llama (default), mistral, qwen2, qwen3, mixtral, qwen2moe, qwen3moe, deepseek-v2,\n"
    "                    deepseek-v3\n"
    "  --experts N       routed experts of the MoE families (default 16), --experts-used K per token (2)\n"
    "  --ff-exp F        expert FFN width (default ff / 2)\n"
    "  --fp8             deepseek-v3 in DeepSeek's FP8 release layout (E4M3 + 128x128 weight_scale_inv)\n"
    "  --shards N        N safetensors shards and a model.safetensors.index.json\n"
    "  --mtp N           deepseek-v3: N multi-token-prediction layers after the last, as released\n"
    "  --v3-geometry     deepseek-v3 at DeepSeek-V3's real widths (hidden 7168, MLA 1536/512, 128 heads,\n"
    "                    256 experts of 2048, vocab 129280); --layers 2 = one dense + one MoE layer,\n"
    "                    ~15.8 GB with --fp8. For benchmarks (bench/v3_geometry.sh)\n"
    "  -q, --quiet       accepted as by every command (synth prints nothing on success)\n";

enum { OPT_SEED = QF_OPT_FIRST_FREE, OPT_LAYERS, OPT_DIM, OPT_FF, OPT_VOCAB, OPT_DTYPE, OPT_ARCH, OPT_TIED,
       OPT_EXPERTS, OPT_EXPERTS_USED, OPT_FF_EXP, OPT_FP8, OPT_SHARDS, OPT_MTP, OPT_V3_GEOMETRY };

static int cmd_synth(int argc, char **argv) {
    static const struct option opts[] = {
        {"seed", required_argument, 0, OPT_SEED}, {"layers", required_argument, 0, OPT_LAYERS},
        {"dim", required_argument, 0, OPT_DIM}, {"ff", required_argument, 0, OPT_FF},
        {"vocab", required_argument, 0, OPT_VOCAB}, {"dtype", required_argument, 0, OPT_DTYPE},
        {"arch", required_argument, 0, OPT_ARCH}, {"tied", no_argument, 0, OPT_TIED},
        {"experts", required_argument, 0, OPT_EXPERTS}, {"experts-used", required_argument, 0, OPT_EXPERTS_USED},
        {"ff-exp", required_argument, 0, OPT_FF_EXP}, {"fp8", no_argument, 0, OPT_FP8},
        {"shards", required_argument, 0, OPT_SHARDS}, {"mtp", required_argument, 0, OPT_MTP},
        {"v3-geometry", no_argument, 0, OPT_V3_GEOMETRY}, QF_CLI_BASE_OPTS, {0, 0, 0, 0}};
    qf_synth_opts o = {.seed = 1, .n_layer = 2, .n_embd = 256, .n_ff = 512, .n_vocab = 512, .dtype = "bf16"};
    qf_cli_common co = {0};
    int c;
    while ((c = qf_cli_getopt("synth", argc, argv, "qh", opts)) != -1) {
        char *end = NULL;
        unsigned long v = optarg ? strtoul(optarg, &end, 10) : 0;
        bool bad = optarg && (!*optarg || *end || v == 0 || v > (1ul << 20));
        switch (c) {
        case OPT_SEED: o.seed = v; break;
        case OPT_LAYERS: o.n_layer = (uint32_t)v; break;
        case OPT_DIM: o.n_embd = (uint32_t)v; break;
        case OPT_FF: o.n_ff = (uint32_t)v; break;
        case OPT_VOCAB: o.n_vocab = (uint32_t)v; break;
        case OPT_DTYPE: o.dtype = optarg; bad = false; break;
        case OPT_ARCH: o.arch = optarg; bad = false; break;
        case OPT_TIED: o.tied = true; break;
        case 'q': co.quiet = true; break;
        case OPT_EXPERTS: o.n_expert = (uint32_t)v; break;
        case OPT_EXPERTS_USED: o.n_expert_used = (uint32_t)v; break;
        case OPT_FF_EXP: o.n_ff_exp = (uint32_t)v; break;
        case OPT_FP8: o.fp8 = true; break;
        case OPT_SHARDS: o.n_shards = (uint32_t)v; break;
        case OPT_MTP: o.n_mtp = (uint32_t)v; break;
        case OPT_V3_GEOMETRY: o.v3_geometry = true; break;
        case 'h': fputs(synth_help, stdout); return 0;
        default: return 2;
        }
        if (bad) return qf_cli_usage("synth", "numeric options take a positive integer");
    }
    if (!(o.dir = qf_cli_positional("synth", argc, argv, &co, "DIR"))) return 2;
    qf_error err;
    if (qf_synth_model(&o, &err) != QF_OK) return qf_cli_fail(argv[0], &err);
    return 0;
}

/* ---- dispatch ---------------------------------------------------------------------------------- */

static const command commands[] = {
    {"convert", qf_cli_convert, "HF checkpoint (dir, shards, archive, FP8) -> GGUF"},
    {"quantize", qf_cli_quantize, "checkpoint -> quantized GGUF (types, recipes, overrides, imatrix, GPTQ)"},
    {"calibrate", qf_cli_calibrate, "activation statistics over text: importance matrix (+ GPTQ Hessians)"},
    {"measure", qf_cli_measure, "per-tensor quantization cost (sensitivity) for quantize's automatic mixes"},
    {"inspect", cmd_inspect, "describe a GGUF or safetensors file"},
    {"synth", cmd_synth, "write a small random checkpoint of any supported family (demo and test model)"},
    {"perplexity", qf_cli_perplexity, "perplexity of a GGUF or HF model (llama-perplexity protocol)"},
    {"verify", qf_cli_verify, "compare a model with its base: PPL, KLD, top-1; thresholds gate"},
    {"report", qf_cli_report, "one SVG picture: bits per weight vs KLD of verified files, quant-type map"},
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
                 "3 environment (I/O, memory).\n"
                 "Short flags mean one thing in every command and follow llama.cpp: -m model, -f text file,\n"
                 "-c context size, -t threads (-j too), -b batch size, -o output, -q quiet. --type has no short\n"
                 "form. Results go to stdout; progress, warnings and errors to stderr.\n");
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
