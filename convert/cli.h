/*
 * cli.h — subcommands implemented outside main.c. Each takes (argc, argv) with argv[0] = the command
 * name, parses its own options with getopt_long, and returns the process exit code
 * (qf_status_exit_code of the library's status; 0 ok, 1 check failed, 2 bad input, 3 environment).
 */
#ifndef QF_CLI_H
#define QF_CLI_H

#include "qforge.h"

#include <stdio.h>
#include <time.h>

/* "qforge CMD: error: MSG" on stderr; returns the exit code for the error's status. */
int qf_cli_fail(const char *cmd, const qf_error *err);
/* "qforge CMD: MSG (see 'qforge CMD --help')" on stderr; returns 2. */
int qf_cli_usage(const char *cmd, const char *msg);
/* Parse an integer option value in lo..hi; false after printing the usage line. */
bool qf_cli_long(const char *cmd, const char *opt, const char *s, long lo, long hi, long *out);
double qf_cli_seconds_since(const struct timespec *t0);

int qf_cli_perplexity(int argc, char **argv);
int qf_cli_verify(int argc, char **argv);
/* `qforge verify FILE --integrity ...` (cli_integrity.c): qf_cli_verify hands argv over unchanged
 * when --integrity is among the arguments. */
int qf_cli_integrity(int argc, char **argv);
int qf_cli_sign(int argc, char **argv);   /* cli_trust.c */
int qf_cli_pack(int argc, char **argv);   /* cli_trust.c */
int qf_cli_unpack(int argc, char **argv); /* cli_trust.c */

#endif
