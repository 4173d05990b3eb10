/*
 * cli.h — what the qforge subcommands share. Each command takes (argc, argv) with argv[0] = the command
 * name, parses its options with qf_cli_getopt and returns the process exit code (qf_status_exit_code of
 * the library's status; 0 ok, 1 check failed, 2 bad input, 3 environment).
 *
 * Short flags mean one thing in every command and follow llama.cpp where the idea is the same:
 *   -m --model   -f --file/--text   -c --ctx-size/--ctx   -t --threads (-j too)   -b --batch-size/--batch
 *   -o --output  -q --quiet         -h --help
 * and, where a command has them, -n --dry-run, -r --recipe, -T --tensor-type, -i --imatrix,
 * -H --hessian, -k --key/--pubkey, -l --level. --type has no short form: llama.cpp's -t is threads.
 * tests/cli_flags.sh checks the table against every command's --help.
 *
 * Standard streams: results go to stdout; progress, warnings, summaries and errors to stderr. When a
 * command prints JSON on stdout, every other line goes to stderr so stdout parses as one JSON value.
 */
#ifndef QF_CLI_H
#define QF_CLI_H

#include "qforge.h"

#include <getopt.h>
#include <stdio.h>
#include <time.h>

/* "qforge CMD: error: MSG" on stderr (MSG escaped: it may quote file contents); the exit code for the
 * error's status. */
int qf_cli_fail(const char *cmd, const qf_error *err);
/* "qforge CMD: MSG (see 'qforge CMD --help')" on stderr; returns 2. */
int qf_cli_usage(const char *cmd, const char *msg);
/* "qforge CMD: warning: MSG" on stderr, escaped. `user` is the command name (a qf_warn_fn). */
void qf_cli_warn(void *user, const char *msg);
double qf_cli_seconds_since(const struct timespec *t0);
/* A report file written atomically (formats/outfile.h); "-" is stdout. _text adds a newline. False on
 * failure, with *err saying why (err->code preset by the caller for a failed stdout write). */
bool qf_cli_write_file(const char *path, const char *data, size_t len, qf_error *err);
bool qf_cli_write_text(const char *path, const char *text, qf_error *err);

/* getopt_long that reports a bad option in one line naming it ("option '--output' needs a value",
 * "unknown option '--frobnicate'") and then returns '?'; the caller returns 2. */
int qf_cli_getopt(const char *cmd, int argc, char **argv, const char *shortopts, const struct option *longopts);

/* ---- options every command shares ------------------------------------------------------------------ */

typedef enum qf_cli_progress_mode {
    QF_PROGRESS_AUTO = 0, /* bar when stderr is a terminal, lines otherwise */
    QF_PROGRESS_NONE,
    QF_PROGRESS_BAR,
    QF_PROGRESS_LINES,
} qf_cli_progress_mode;

typedef struct qf_cli_common {
    bool quiet;                    /* -q: no progress, no summary line */
    qf_cli_progress_mode progress; /* --progress */
    int threads;                   /* -t/-j/--threads; 0 = all CPUs */
    const char *model;             /* -m/--model: the positional MODEL/SRC given as an option */
} qf_cli_common;

/* Option values for the long-only options (outside the char range getopt uses for short ones). */
enum { QF_OPT_PROGRESS = 1000, QF_OPT_LAYER_MAJOR, QF_OPT_MAX_MEMORY, QF_OPT_BACKEND, QF_OPT_FIRST_FREE = 1100 };

#define QF_CLI_BASE_OPTS {"quiet", no_argument, 0, 'q'}, {"help", no_argument, 0, 'h'}
#define QF_CLI_PROGRESS_OPTS {"progress", required_argument, 0, QF_OPT_PROGRESS}
#define QF_CLI_THREADS_OPTS {"threads", required_argument, 0, 't'}
#define QF_CLI_MODEL_OPTS {"model", required_argument, 0, 'm'}

#define QF_CLI_QUIET_HELP \
    "  -q, --quiet            no summary line, and no progress unless --progress asks for it (errors\n" \
    "                         and warnings still print)\n"
#define QF_CLI_PROGRESS_HELP \
    "      --progress=MODE    none | bar (one redrawn line; the default on a terminal) | lines (a plain\n" \
    "                         line per tenth of the work and at least once a minute; the default when\n" \
    "                         stderr is not a terminal, e.g. in CI logs)\n"
#define QF_CLI_THREADS_HELP \
    "  -t, -j, --threads N    worker threads (default: all CPUs); results do not depend on N\n"

/* perplexity, verify, calibrate: --layer-major and --max-memory SIZE. */
#define QF_CLI_LAYER_MAJOR_OPTS \
    {"layer-major", no_argument, 0, QF_OPT_LAYER_MAJOR}, {"max-memory", required_argument, 0, QF_OPT_MAX_MEMORY}
#define QF_CLI_LAYER_MAJOR_HELP \
    "      --layer-major      push every chunk through layer l before layer l+1: each layer's weights\n" \
    "                         are read once (per group) and dropped from memory after it; resident\n" \
    "                         memory is one layer's weights + the hidden states of all chunks (printed\n" \
    "                         before the run). Same results. Chosen by itself when the weights exceed\n" \
    "                         MemAvailable\n" \
    "      --max-memory SIZE  layer-major within SIZE (e.g. 8G, 512M): the chunks go in groups, each\n" \
    "                         layer-major (each weight read once per group); implies --layer-major\n"
/* 0 handled, 2 bad value (message printed), -1 not one of them. */
int qf_cli_layer_major_opt(const char *cmd, int c, const char *arg, qf_layer_major_opts *o);
/* The plan of a layer-major run on stderr, one "qforge CMD: layer-major: ..." line (qf_layer_major_opts'
 * on_plan; user: a qf_cli_lm). Printed under -q too when the mode was chosen automatically. */
typedef struct qf_cli_lm {
    const char *cmd;
    bool quiet;
} qf_cli_lm;
void qf_cli_layer_major_plan(void *user, const qf_layer_major_info *info);

/* perplexity, verify, calibrate: --backend auto|cpu|cuda (QF_BACKEND when not given; default auto). */
#define QF_CLI_BACKEND_OPTS {"backend", required_argument, 0, QF_OPT_BACKEND}
#define QF_CLI_BACKEND_HELP \
    "      --backend B        auto (default) | cpu | cuda: where the forward passes run. auto takes the\n" \
    "                         GPU when this build has the CUDA backend and a device is there, else the\n" \
    "                         CPU (saying so once on stderr); cuda without one is an error. The\n" \
    "                         environment variable QF_BACKEND sets it when the option is not given\n"
typedef struct qf_cli_backend {
    const char *cmd;
    bool quiet;         /* no line saying where the run goes */
    const char *arg;    /* --backend's value; NULL when not given */
} qf_cli_backend;
/* QF_OPT_BACKEND: 0 handled (value checked later), -1 not it. */
int qf_cli_backend_opt(int c, const char *arg, qf_cli_backend *b);
/* The backend options of a run from --backend, else QF_BACKEND, else auto; where the run goes is said
 * once on stderr (unless quiet) through o->on_choice. 0, or 2 after the usage line for a bad value. */
int qf_cli_backend_opts(qf_cli_backend *b, qf_backend_opts *o);

/* Handle -q, --progress, -t/-j/--threads and -m/--model: 0 handled, 2 bad value (message printed),
 * -1 not one of them. */
int qf_cli_common_opt(const char *cmd, int c, const char *arg, qf_cli_common *co);
/* The one positional argument, or -m's value: NULL (message printed) when there is not exactly one. */
const char *qf_cli_positional(const char *cmd, int argc, char **argv, const qf_cli_common *co, const char *what);
/* Parse an integer option value in lo..hi; false after printing the usage line. */
bool qf_cli_long(const char *cmd, const char *opt, const char *s, long lo, long hi, long *out);

/* ---- progress on stderr ------------------------------------------------------------------------------ */

typedef struct qf_cli_progress {
    const char *cmd;
    qf_cli_progress_mode mode; /* resolved: NONE, BAR or LINES */
    struct timespec start;
    double last_draw, last_line;
    int last_tenth;            /* tenths of the work reported by LINES so far */
    bool open_bar;             /* a bar line is on screen without its newline */
    uint64_t last_done;        /* bytes: a smaller `done` starts a new phase (unpack, then its digest check) */
    bool end_shown;            /* bytes: the phase's final state was shown */
} qf_cli_progress;

void qf_cli_progress_start(qf_cli_progress *p, const char *cmd, const qf_cli_common *co);
/* qf_progress_fn for work counted in bytes (convert, quantize, hashing, pack/unpack): MiB done/total,
 * MiB/s, ETA. */
void qf_cli_progress_bytes(void *p, const char *tensor, uint64_t done, uint64_t total);
/* qf_progress_fn for work counted in chunks (calibrate): n/N, chunks/s, ETA. */
void qf_cli_progress_count(void *p, const char *what, uint64_t done, uint64_t total);
/* qf_chunk_fn (perplexity, verify): chunk n/N, running PPL, ETA. */
void qf_cli_progress_chunks(void *p, uint32_t chunk, uint32_t n_chunks, double ppl);
/* End an open bar line (before printing anything else on stderr after a failure). */
void qf_cli_progress_end(qf_cli_progress *p);

/* ---- subcommands ------------------------------------------------------------------------------------- */

int qf_cli_convert(int argc, char **argv);   /* cli_convert.c */
int qf_cli_quantize(int argc, char **argv);  /* cli_convert.c */
int qf_cli_calibrate(int argc, char **argv); /* cli_convert.c */
int qf_cli_measure(int argc, char **argv);   /* cli_measure.c */
int qf_cli_perplexity(int argc, char **argv);
int qf_cli_verify(int argc, char **argv);
/* `qforge verify FILE --integrity ...` (cli_integrity.c): qf_cli_verify hands argv over unchanged
 * when --integrity is among the arguments. */
int qf_cli_integrity(int argc, char **argv);
int qf_cli_sign(int argc, char **argv);   /* cli_trust.c */
int qf_cli_pack(int argc, char **argv);   /* cli_trust.c */
int qf_cli_unpack(int argc, char **argv); /* cli_trust.c */
int qf_cli_report(int argc, char **argv); /* cli_report.c: verify reports -> one SVG picture */

#endif
