/*
 * fuzz_util.h — helpers shared by the fuzz targets in tests/fuzz/ (header-only: each target stays one
 * .c file that links either against libFuzzer or against replay.c's main).
 *
 * Contract every target checks besides "no crash, no leak, no sanitizer report": a parser that fails
 * returns a status an input can cause (bad input, unsupported, not found; never internal or I/O on a
 * readable temp file) with a non-empty one-line message. A violation calls qf_fuzz_violation(), which
 * aborts, so libFuzzer records the input as a crash and the replay driver fails.
 */
#ifndef QF_FUZZ_UTIL_H
#define QF_FUZZ_UTIL_H

#include "qf_core.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static inline void qf_fuzz_violation(const char *what, const qf_error *err) {
    fprintf(stderr, "fuzz contract violated: %s [%s: %s]\n", what, qf_status_name(err->status), err->msg);
    abort();
}

/* A failing parse must say why, on one line, with a status that input can cause. */
static inline void qf_fuzz_check_failure(qf_status st, const qf_error *err) {
    if (st == QF_OK) return;
    if (st != QF_E_INPUT && st != QF_E_UNSUPPORTED && st != QF_E_NOTFOUND)
        qf_fuzz_violation("unexpected status for a malformed input", err);
    if (err->status != st) qf_fuzz_violation("error record status differs from the returned status", err);
    if (!err->msg[0]) qf_fuzz_violation("error without a message", err);
    if (strchr(err->msg, '\n')) qf_fuzz_violation("error message spans several lines", err);
}

/* An exactly sized heap copy, so that ASan sees a read one byte past the input. */
static inline uint8_t *qf_fuzz_copy(const uint8_t *data, size_t size) {
    uint8_t *p = malloc(size ? size : 1);
    if (!p) abort();
    if (size) memcpy(p, data, size);
    return p;
}

/* A private directory for targets that must go through the file system, made once per process and
 * removed at exit together with the files the target wrote (names registered with qf_fuzz_path).
 * /dev/shm when it exists keeps the per-input writes off the disk. */
#define QF_FUZZ_MAX_FILES 16
static char qf_fuzz_dir_buf[256];
static char qf_fuzz_files[QF_FUZZ_MAX_FILES][320];
static int qf_fuzz_n_files;

static inline void qf_fuzz_cleanup(void) {
    for (int i = 0; i < qf_fuzz_n_files; i++) unlink(qf_fuzz_files[i]);
    if (qf_fuzz_dir_buf[0]) rmdir(qf_fuzz_dir_buf);
}

static inline const char *qf_fuzz_dir(void) {
    if (qf_fuzz_dir_buf[0]) return qf_fuzz_dir_buf;
    const char *base = getenv("TMPDIR");
    struct stat sb;
    if (!base || !base[0]) base = stat("/dev/shm", &sb) == 0 && S_ISDIR(sb.st_mode) ? "/dev/shm" : "/tmp";
    snprintf(qf_fuzz_dir_buf, sizeof qf_fuzz_dir_buf, "%s/qf-fuzz-XXXXXX", base);
    if (!mkdtemp(qf_fuzz_dir_buf)) {
        fprintf(stderr, "fuzz: cannot create a directory under %s: %s\n", base, strerror(errno));
        abort();
    }
    atexit(qf_fuzz_cleanup);
    return qf_fuzz_dir_buf;
}

/* Path of `name` inside the private directory, registered for removal at exit. */
static inline const char *qf_fuzz_path(const char *name) {
    for (int i = 0; i < qf_fuzz_n_files; i++) {
        const char *slash = strrchr(qf_fuzz_files[i], '/');
        if (slash && strcmp(slash + 1, name) == 0) return qf_fuzz_files[i];
    }
    if (qf_fuzz_n_files == QF_FUZZ_MAX_FILES) abort();
    char *p = qf_fuzz_files[qf_fuzz_n_files++];
    snprintf(p, sizeof qf_fuzz_files[0], "%s/%s", qf_fuzz_dir(), name);
    return p;
}

static inline void qf_fuzz_write(const char *path, const void *data, size_t size) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) { fprintf(stderr, "fuzz: cannot write %s: %s\n", path, strerror(errno)); abort(); }
    const uint8_t *p = data;
    while (size) {
        ssize_t w = write(fd, p, size);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) { fprintf(stderr, "fuzz: write %s: %s\n", path, strerror(errno)); abort(); }
        p += w;
        size -= (size_t)w;
    }
    close(fd);
}

/* Read the bytes at p so that a pointer into freed or unmapped memory is reported here. */
static inline uint64_t qf_fuzz_touch(const void *p, uint64_t n) {
    const volatile uint8_t *b = p;
    uint64_t h = 0;
    for (uint64_t i = 0; i < n; i++) h = h * 31 + b[i];
    return h;
}

#endif
