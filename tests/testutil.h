/*
 * testutil.h — the small harness every tests/test_*.c program uses.
 *
 * argv[1] = repository root, argv[2] = a scratch directory for this program (created, emptied).
 * CHECK* record a failure with file:line and go on; qf_test_finish() prints the counts and returns the
 * exit code. Tests that need ../shared call qf_test_shared(); when it is absent they print
 * "SKIP: ..." and return 77, which ctest reports as skipped.
 */
#ifndef QF_TESTUTIL_H
#define QF_TESTUTIL_H

#include "qf_core.h"

extern const char *qf_test_root;    /* repository root */
extern const char *qf_test_scratch; /* per-program scratch directory */
extern int qf_test_checks, qf_test_failures;

void qf_test_init(int argc, char **argv);
int qf_test_finish(void);
/* Path of a file under ../shared (relative to the repo root) in buf; false (and a SKIP line) if absent. */
bool qf_test_shared(const char *rel, char *buf, size_t n);
/* Scratch path for a file name. */
const char *qf_test_path(const char *name, char *buf, size_t n);
/* Scratch path for a directory that starts out empty: whatever an earlier run left there is removed
 * (qforge synth refuses to write over a model, so reruns need this). */
const char *qf_test_fresh_dir(const char *name, char *buf, size_t n);
bool qf_test_write_file(const char *path, const void *data, size_t n);
/* Read a whole file (malloc'd); NULL on failure. */
uint8_t *qf_test_read_file(const char *path, size_t *n);
bool qf_test_file_exists(const char *path);
/* Both files exist and hold the same bytes. */
bool qf_test_same_file(const char *a, const char *b);
/* Deterministic PRNG for generated data (xorshift64*); print the seed in messages. */
uint64_t qf_test_rand(uint64_t *state);
float qf_test_randn(uint64_t *state);

#define CHECK(cond) \
    do { qf_test_checks++; if (!(cond)) { qf_test_failures++; \
        fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); } } while (0)
#define CHECK_MSG(cond, ...) \
    do { qf_test_checks++; if (!(cond)) { qf_test_failures++; \
        fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
        fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)
#define CHECK_OK(expr, errp) \
    do { qf_status st_ = (expr); qf_test_checks++; if (st_ != QF_OK) { qf_test_failures++; \
        fprintf(stderr, "%s:%d: %s -> %s: %s\n", __FILE__, __LINE__, #expr, qf_status_name(st_), \
                (errp)->msg); } } while (0)

#endif
