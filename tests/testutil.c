#include "testutil.h"

#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

const char *qf_test_root = ".";
const char *qf_test_scratch = ".";
int qf_test_checks, qf_test_failures;

static void mkdir_p(const char *path) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') { *p = '\0'; mkdir(tmp, 0755); *p = '/'; }
    }
    mkdir(tmp, 0755);
}

void qf_test_init(int argc, char **argv) {
    if (argc > 1) qf_test_root = argv[1];
    if (argc > 2) qf_test_scratch = argv[2];
    mkdir_p(qf_test_scratch);
}

int qf_test_finish(void) {
    printf("%d passed, %d failed\n", qf_test_checks - qf_test_failures, qf_test_failures);
    return qf_test_failures ? 1 : 0;
}

bool qf_test_shared(const char *rel, char *buf, size_t n) {
    snprintf(buf, n, "%s/../shared/%s", qf_test_root, rel);
    if (access(buf, R_OK) == 0) return true;
    printf("SKIP: ../shared/%s is absent (tests that need the shared checkpoints skip)\n", rel);
    return false;
}

const char *qf_test_path(const char *name, char *buf, size_t n) {
    snprintf(buf, n, "%s/%s", qf_test_scratch, name);
    return buf;
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb; (void)flag; (void)ftw;
    return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

const char *qf_test_fresh_dir(const char *name, char *buf, size_t n) {
    qf_test_path(name, buf, n);
    nftw(buf, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    mkdir_p(buf);
    return buf;
}

bool qf_test_write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return false;
    bool ok = fwrite(data, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

uint8_t *qf_test_read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(len > 0 ? (size_t)len : 1);
    if (buf && fread(buf, 1, (size_t)len, f) != (size_t)len) { free(buf); buf = NULL; }
    fclose(f);
    if (buf && n) *n = (size_t)len;
    return buf;
}

bool qf_test_file_exists(const char *path) { return access(path, F_OK) == 0; }

bool qf_test_same_file(const char *a, const char *b) {
    size_t na = 0, nb = 0;
    uint8_t *x = qf_test_read_file(a, &na), *y = qf_test_read_file(b, &nb);
    bool same = x && y && na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return same;
}

uint64_t qf_test_rand(uint64_t *s) {
    uint64_t x = *s ? *s : 0x9E3779B97F4A7C15ull;
    x ^= x >> 12; x ^= x << 25; x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

float qf_test_randn(uint64_t *s) {
    double u1 = ((qf_test_rand(s) >> 11) + 1.0) / 9007199254740993.0;
    double u2 = (qf_test_rand(s) >> 11) / 9007199254740992.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}
