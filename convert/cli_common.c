/* Helpers every qforge subcommand shares: error, warning and usage lines, option parsing (cli.h). */
#include "convert/cli.h"
#include "convert/report.h"
#include "formats/outfile.h"

#include <stdlib.h>
#include <string.h>

int qf_cli_fail(const char *cmd, const qf_error *err) {
    const char *msg = err->msg[0] ? err->msg : qf_status_name(err->status);
    fprintf(stderr, "qforge %s: error: ", cmd);
    qf_text_put(stderr, msg, strlen(msg), QF_TEXT_TERMINAL);
    fputc('\n', stderr);
    return qf_status_exit_code(err->status);
}

int qf_cli_usage(const char *cmd, const char *msg) {
    fprintf(stderr, "qforge %s: ", cmd);
    qf_text_put(stderr, msg, strlen(msg), QF_TEXT_TERMINAL);
    fprintf(stderr, " (see 'qforge %s --help')\n", cmd);
    return 2;
}

void qf_cli_warn(void *user, const char *msg) {
    fprintf(stderr, "qforge %s: warning: ", (const char *)user);
    qf_text_put(stderr, msg, strlen(msg), QF_TEXT_TERMINAL);
    fputc('\n', stderr);
}

/* Report files are outputs like any other (formats/outfile.h): a temp file renamed when complete. */
bool qf_cli_write_file(const char *path, const char *data, size_t len, qf_error *err) {
    if (strcmp(path, "-") == 0) return fwrite(data, 1, len, stdout) == len && fflush(stdout) == 0;
    qf_outfile *f;
    if (qf_outfile_open(path, &f, err) != QF_OK) return false;
    if (qf_outfile_write(f, data, len, err) != QF_OK) {
        qf_outfile_abort(f);
        return false;
    }
    return qf_outfile_commit(f, err) == QF_OK;
}

bool qf_cli_write_text(const char *path, const char *text, qf_error *err) {
    size_t n = strlen(text);
    char *line = malloc(n + 2);
    if (!line) return false;
    memcpy(line, text, n);
    memcpy(line + n, "\n", 2);
    bool ok = qf_cli_write_file(path, line, n + 1, err);
    free(line);
    return ok;
}

double qf_cli_seconds_since(const struct timespec *t0) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) * 1e-9;
}

/* How many long options `name` (without "--", up to '=') names: exact match, else unique prefix. */
static int long_matches(const struct option *longopts, const char *name, size_t len) {
    int n = 0;
    for (const struct option *o = longopts; o->name; o++) {
        if (strlen(o->name) == len && !strncmp(o->name, name, len)) return 1;
        n += !strncmp(o->name, name, len);
    }
    return n;
}

int qf_cli_getopt(const char *cmd, int argc, char **argv, const char *shortopts, const struct option *longopts) {
    char spec[128];
    /* leading ':' = report a missing value as ':'; it goes after an ordering prefix ('-' returns
     * arguments in order as code 1, '+' stops at the first), which getopt reads first */
    if (shortopts[0] == '-' || shortopts[0] == '+') snprintf(spec, sizeof spec, "%c:%s", shortopts[0], shortopts + 1);
    else snprintf(spec, sizeof spec, ":%s", shortopts);
    opterr = 0;                                     /* and let us print the one line */
    int before = optind;
    int c = getopt_long(argc, argv, spec, longopts, NULL);
    if (c != '?' && c != ':') return c;
    /* getopt moves past a long option even when it fails; a short one is named by optopt */
    const char *cur = optind >= 1 && optind - 1 < argc ? argv[optind - 1] : "";
    char msg[256], name[96];
    if (optind != before && !strncmp(cur, "--", 2)) {
        size_t len = strcspn(cur + 2, "=");
        snprintf(name, sizeof name, "--%.*s", (int)(len < 80 ? len : 80), cur + 2);
        int n = long_matches(longopts, cur + 2, len);
        if (c == ':') snprintf(msg, sizeof msg, "option '%s' needs a value", name);
        else if (n > 1) snprintf(msg, sizeof msg, "option '%s' is ambiguous", name);
        else if (n == 1 && cur[2 + len] == '=') snprintf(msg, sizeof msg, "option '%s' takes no value", name);
        else snprintf(msg, sizeof msg, "unknown option '%s'", name);
    } else if (c == ':') {
        snprintf(msg, sizeof msg, "option '-%c' needs a value", optopt);
    } else if (optopt > 0x20 && optopt < 0x7f) {
        snprintf(msg, sizeof msg, "unknown option '-%c'", optopt);
    } else {
        snprintf(msg, sizeof msg, "unknown option '%s'", cur);
    }
    qf_cli_usage(cmd, msg);
    return '?';
}

bool qf_cli_long(const char *cmd, const char *opt, const char *s, long lo, long hi, long *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (*s && !*end && v >= lo && v <= hi) {
        *out = v;
        return true;
    }
    char msg[128];
    snprintf(msg, sizeof msg, "%s takes an integer in %ld..%ld", opt, lo, hi);
    qf_cli_usage(cmd, msg);
    return false;
}

static int parse_threads(const char *cmd, const char *arg, int *out) {
    char *end;
    long v = strtol(arg, &end, 10);
    if (*arg && !*end && v >= 0 && v <= 1024) {
        *out = (int)v;
        return 0;
    }
    char msg[200];
    /* convert/quantize once read -t as --type: a type name here gets the way to say it now */
    if (*arg && *end)
        snprintf(msg, sizeof msg, "-t/--threads takes an integer in 0..1024 (-t is threads, as in llama.cpp; a weight type is --type %.40s)", arg);
    else snprintf(msg, sizeof msg, "-t/--threads takes an integer in 0..1024");
    return qf_cli_usage(cmd, msg);
}

int qf_cli_common_opt(const char *cmd, int c, const char *arg, qf_cli_common *co) {
    switch (c) {
    case 'q': co->quiet = true; return 0;
    case 't': case 'j': return parse_threads(cmd, arg, &co->threads);
    case 'm': co->model = arg; return 0;
    case QF_OPT_PROGRESS:
        if (!strcmp(arg, "none")) co->progress = QF_PROGRESS_NONE;
        else if (!strcmp(arg, "bar")) co->progress = QF_PROGRESS_BAR;
        else if (!strcmp(arg, "lines")) co->progress = QF_PROGRESS_LINES;
        else return qf_cli_usage(cmd, "--progress is none, bar or lines");
        return 0;
    default: return -1;
    }
}

int qf_cli_layer_major_opt(const char *cmd, int c, const char *arg, qf_layer_major_opts *o) {
    switch (c) {
    case QF_OPT_LAYER_MAJOR: o->on = true; return 0;
    case QF_OPT_MAX_MEMORY:
        if (!qf_parse_size(arg, &o->max_memory))
            return qf_cli_usage(cmd, "--max-memory takes a size such as 8G, 512M or 65536 (bytes)");
        return 0;
    default: return -1;
    }
}

int qf_cli_backend_opt(int c, const char *arg, qf_cli_backend *b) {
    if (c != QF_OPT_BACKEND) return -1;
    b->arg = arg;
    return 0;
}

/* qf_backend_opts' on_choice: a line when the run is not where a plain CPU run would be, or when auto
 * stayed on the CPU (and why). */
static void backend_choice(void *user, qf_backend got, const char *why, const char *device) {
    const qf_cli_backend *b = user;
    if (b->quiet) return;
    if (got == QF_BACKEND_CUDA) fprintf(stderr, "qforge %s: running on CUDA device %s\n", b->cmd, device);
    else if (why[0]) fprintf(stderr, "qforge %s: running on the CPU: %s\n", b->cmd, why);
}

int qf_cli_backend_opts(qf_cli_backend *b, qf_backend_opts *o) {
    const char *env = getenv("QF_BACKEND"), *v = b->arg ? b->arg : env && env[0] ? env : "auto";
    if (!qf_backend_parse(v, &o->want)) {
        char msg[160];
        snprintf(msg, sizeof msg, "%s takes auto, cpu or cuda, not '%.40s'", b->arg ? "--backend" : "QF_BACKEND", v);
        return qf_cli_usage(b->cmd, msg);
    }
    o->on_choice = backend_choice;
    o->user = b;
    return 0;
}

/* A size in the unit that shows it best: KiB below 1 MiB, GiB from 1 GiB. */
static const char *human(char buf[32], uint64_t b) {
    static const char *const unit[] = {"KiB", "MiB", "GiB"};
    int u = b >= (1ull << 30) ? 2 : b >= (1ull << 20) ? 1 : 0;
    snprintf(buf, 32, "%.1f %s", (double)b / (double)(1ull << (10 * (u + 1))), unit[u]);
    return buf;
}

void qf_cli_layer_major_plan(void *user, const qf_layer_major_info *i) {
    const qf_cli_lm *u = user;
    char a[32], b[32], c[32], d[32];
    if (u->quiet && !i->automatic) return;
    if (i->automatic)
        fprintf(stderr, "qforge %s: layer-major: chosen because the weights (%s) exceed the available memory (%s)\n", u->cmd,
                human(a, i->weights_bytes), human(b, i->mem_available));
    fprintf(stderr, "qforge %s: layer-major: resident about %s = one layer's weights %s + buffers %s + hidden states %s "
            "per chunk x %u chunks per group; %u chunks in %u group%s", u->cmd, human(a, i->resident_bytes),
            human(b, i->layer_bytes), human(c, i->buffer_bytes), human(d, i->chunk_bytes), i->chunks_per_group,
            i->n_chunks, i->n_groups, i->n_groups == 1 ? "" : "s");
    if (i->n_groups > 1) fprintf(stderr, " (within %s)", human(a, i->limit));
    fputc('\n', stderr);
}

const char *qf_cli_positional(const char *cmd, int argc, char **argv, const qf_cli_common *co, const char *what) {
    int n = argc - optind + (co->model != NULL);
    char msg[160];
    if (n == 1) return co->model ? co->model : argv[optind];
    if (co->model && n > 1) snprintf(msg, sizeof msg, "%s given twice (as -m/--model and as an argument)", what);
    else snprintf(msg, sizeof msg, "expected exactly one %s", what);
    qf_cli_usage(cmd, msg);
    return NULL;
}
