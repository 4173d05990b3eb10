/*
 * replay.c — the regression driver for a fuzz target without libFuzzer: linked with one target's
 * LLVMFuzzerTestOneInput, it feeds it every file named on the command line and every regular file in
 * the directories named there (sorted, not recursive), one by one, in this process. It runs under gcc
 * as well as clang, so ctest replays each target's corpus in the normal and in the ASan+UBSan build.
 *
 *   replay_<target> [-q] PATH...     exit 0: all inputs ran; 1: a path could not be read or no input
 *                                    was found (a corpus that silently vanished must not pass)
 * A crash, a sanitizer report or a violated target contract aborts the process and names the input
 * last printed (inputs are announced on stderr before they run, unless -q).
 */
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool quiet;
static unsigned long n_inputs;
static unsigned long long n_bytes;

static bool run_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) { fprintf(stderr, "replay: %s: %s\n", path, strerror(errno)); return false; }
    size_t cap = 4096, len = 0;
    uint8_t *buf = malloc(cap);
    for (size_t got; buf && (got = fread(buf + len, 1, cap - len, f)) > 0;) {
        len += got;
        if (len == cap) {
            uint8_t *grown = realloc(buf, cap *= 2);
            if (!grown) free(buf);
            buf = grown;
        }
    }
    bool ok = buf && !ferror(f);
    fclose(f);
    if (!ok) { fprintf(stderr, "replay: %s: read failed\n", path); free(buf); return false; }
    /* An exactly sized copy: the targets copy again, but an overread of the caller's buffer by a target
     * that forgets to should still be caught. */
    uint8_t *exact = malloc(len ? len : 1);
    if (!exact) { free(buf); return false; }
    memcpy(exact, buf, len);
    free(buf);
    if (!quiet) fprintf(stderr, "replay: %s (%zu bytes)\n", path, len);
    LLVMFuzzerTestOneInput(exact, len);
    free(exact);
    n_inputs++;
    n_bytes += len;
    return true;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static bool run_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) { fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno)); return false; }
    char **names = NULL;
    size_t n = 0, cap = 0;
    bool ok = true;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        if (n == cap) {
            char **grown = realloc(names, (cap = cap ? 2 * cap : 64) * sizeof *names);
            if (!grown) { ok = false; break; }
            names = grown;
        }
        size_t len = strlen(dir) + strlen(e->d_name) + 2;
        if (!(names[n] = malloc(len))) { ok = false; break; }
        snprintf(names[n++], len, "%s/%s", dir, e->d_name);
    }
    closedir(d);
    if (n) qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n; i++) {
        struct stat sb;
        if (ok && stat(names[i], &sb) == 0 && S_ISREG(sb.st_mode)) ok = run_file(names[i]);
        free(names[i]);
    }
    free(names);
    return ok;
}

int main(int argc, char **argv) {
    bool ok = true;
    for (int i = 1; i < argc && ok; i++) {
        if (!strcmp(argv[i], "-q")) { quiet = true; continue; }
        struct stat sb;
        if (stat(argv[i], &sb) != 0) { fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno)); ok = false; }
        else ok = S_ISDIR(sb.st_mode) ? run_dir(argv[i]) : run_file(argv[i]);
    }
    if (ok && n_inputs == 0) { fprintf(stderr, "replay: no inputs found\n"); ok = false; }
    printf("replay: %lu inputs (%llu bytes) %s\n", n_inputs, n_bytes, ok ? "ran clean" : "FAILED");
    return ok ? 0 : 1;
}
