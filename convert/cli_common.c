/* Helpers every qforge subcommand shares: error and usage lines, exit codes, option values, timing. */
#include "convert/cli.h"

#include <stdlib.h>
#include <string.h>

int qf_cli_fail(const char *cmd, const qf_error *err) {
    fprintf(stderr, "qforge %s: error: %s\n", cmd, err->msg[0] ? err->msg : qf_status_name(err->status));
    return qf_status_exit_code(err->status);
}

int qf_cli_usage(const char *cmd, const char *msg) {
    fprintf(stderr, "qforge %s: %s (see 'qforge %s --help')\n", cmd, msg, cmd);
    return 2;
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

double qf_cli_seconds_since(const struct timespec *t0) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) * 1e-9;
}
