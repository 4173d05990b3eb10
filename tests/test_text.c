/*
 * Text that came from a file never reaches the terminal raw (convert/report.h): qf_text_escape's cases
 * one by one, then the real CLI on a GGUF whose metadata key, string value, architecture and tensor
 * name carry terminal control sequences and invalid UTF-8 — inspect (text and JSON), verify
 * --integrity (text and JSON) after a changed byte, and an error message quoting the architecture.
 */
#include "testutil.h"

#include "convert/report.h"
#include "formats/gguf.h"
#include "kernels/qtypes.h"

#include <cjson/cJSON.h>

static void expect_escape(const char *in, size_t len, unsigned flags, const char *want) {
    char out[256];
    size_t n = qf_text_escape(in, len, flags, out, sizeof out);
    CHECK_MSG(strcmp(out, want) == 0 && n == strlen(want), "flags %u: got \"%s\" (%zu), want \"%s\"", flags, out, n, want);
}

static void unit_cases(void) {
    expect_escape("plain name.weight", 17, QF_TEXT_TERMINAL, "plain name.weight");
    expect_escape("a\x1b[2Jb", 6, QF_TEXT_TERMINAL, "a\\x1b[2Jb");
    expect_escape("\n\t\r\x07\x7f", 5, QF_TEXT_TERMINAL, "\\n\\t\\r\\x07\\x7f");
    expect_escape("x\0y", 3, QF_TEXT_TERMINAL, "x\\x00y");
    expect_escape("caf\xc3\xa9 \xe2\x96\x81 \xf0\x9f\x98\x80", 14, QF_TEXT_TERMINAL, "caf\xc3\xa9 \xe2\x96\x81 \xf0\x9f\x98\x80");
    expect_escape("\xc2\x9b" "31m", 5, QF_TEXT_TERMINAL, "\\u{009b}31m");          /* C1 CSI */
    expect_escape("ab\xe2\x80\xae" "cd", 7, QF_TEXT_TERMINAL, "ab\\u{202e}cd");     /* right-to-left override */
    expect_escape("\xef\xbb\xbfx", 4, QF_TEXT_TERMINAL, "\\u{feff}x");               /* BOM */
    expect_escape("\xff", 1, QF_TEXT_TERMINAL, "\\xff");
    expect_escape("\xc0\xaf", 2, QF_TEXT_TERMINAL, "\\xc0\\xaf");                     /* overlong '/' */
    expect_escape("\xed\xa0\x80", 3, QF_TEXT_TERMINAL, "\\xed\\xa0\\x80");            /* surrogate */
    expect_escape("\xf4\x90\x80\x80", 4, QF_TEXT_TERMINAL, "\\xf4\\x90\\x80\\x80");   /* past U+10FFFF */
    expect_escape("\xe2\x82", 2, QF_TEXT_TERMINAL, "\\xe2\\x82");                     /* truncated */
    expect_escape("\x80z", 2, QF_TEXT_TERMINAL, "\\x80z");                            /* stray continuation */
    expect_escape("a\"b\\c", 5, QF_TEXT_TERMINAL, "a\"b\\c");
    expect_escape("a\"b\\c", 5, QF_TEXT_QUOTED, "a\\\"b\\\\c");
    expect_escape("\x1b\n\xc3\xa9\xff", 5, QF_TEXT_JSON, "\x1b\n\xc3\xa9\\xff"); /* JSON: only invalid UTF-8 */
    char small[6];
    CHECK(qf_text_escape("\x1b\x1b", 2, 0, small, sizeof small) == 8 && strcmp(small, "\\x1b\\") == 0);
    /* qf_text_put writes in pieces; a long value with multi-byte characters at every offset must come
     * out exactly as the one-shot escape */
    char longs[1000];
    size_t n = 0;
    for (int i = 0; n + 4 < sizeof longs; i++) {
        const char *pieces[] = {"ab", "\xc3\xa9", "\xe2\x80\xae", "\x1b", "\xf0\x9f\x98\x80", "\xff"};
        const char *p = pieces[i % 6];
        memcpy(longs + n, p, strlen(p));
        n += strlen(p);
    }
    longs[n] = '\0';
    char *want = qf_text_escaped(longs, QF_TEXT_QUOTED), *got = NULL;
    size_t got_len = 0;
    FILE *f = open_memstream(&got, &got_len);
    qf_text_put(f, longs, n, QF_TEXT_QUOTED);
    fclose(f);
    CHECK(want && got && strcmp(want, got) == 0);
    free(want);
    free(got);
}

/* Output of a command line (stdout and stderr together), malloc'd. */
static char *run(const char *cmd, int *rc) {
    FILE *p = popen(cmd, "r");
    if (!p) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    size_t got;
    while (buf && (got = fread(buf + n, 1, cap - n, p)) > 0) {
        n += got;
        if (n == cap) buf = realloc(buf, (cap *= 2) + 1);
    }
    int status = pclose(p);
    *rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128;
    if (buf) buf[n] = '\0';
    return buf;
}

/* No byte a terminal would act on: C0 (but newline), DEL, C1 (U+0080..U+009F), RLO, bytes never in UTF-8. */
static bool terminal_safe(const char *s) {
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if ((*p < 0x20 && *p != '\n') || *p == 0x7f || *p >= 0xf5 || (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) ||
            (p[0] == 0xe2 && p[1] == 0x80 && p[2] == 0xae))
            return false;
    return true;
}

#define EVIL_NAME "blk.0.\x1b[2J\xff.weight"
#define EVIL_VALUE "red\x1b[31m\xc2\x9b" "1m\xe2\x80\xae"

static void write_evil_gguf(const char *path, const char *arch) {
    qf_gguf_writer *w;
    qf_error err;
    CHECK_OK(qf_gguf_writer_open(path, &w, &err), &err);
    uint64_t ne[1] = {8};
    float data[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    CHECK_OK(qf_gguf_set_str(w, "general.architecture", arch, &err), &err);
    CHECK_OK(qf_gguf_set_str(w, "evil.\x1b]0;title\x07key", EVIL_VALUE, &err), &err);
    CHECK_OK(qf_gguf_add_tensor(w, EVIL_NAME, QF_T_F32, 1, ne, &err), &err);
    CHECK_OK(qf_gguf_begin_data(w, &err), &err);
    CHECK_OK(qf_gguf_write_tensor_data(w, data, sizeof data, &err), &err);
    CHECK_OK(qf_gguf_writer_finish(w, &err), &err);
}

static void cli_cases(const char *qf) {
    char path[4096], cmd[9000];
    qf_test_path("evil.gguf", path, sizeof path);
    write_evil_gguf(path, "llama");
    int rc;
    snprintf(cmd, sizeof cmd, "'%s' inspect '%s' 2>&1", qf, path);
    char *out = run(cmd, &rc);
    CHECK_MSG(out && rc == 0 && terminal_safe(out), "inspect printed raw control bytes or invalid UTF-8 (rc %d)", rc);
    CHECK(out && strstr(out, "blk.0.\\x1b[2J\\xff.weight") && strstr(out, "evil.\\x1b]0;title\\x07key") &&
          strstr(out, "\"red\\x1b[31m\\u{009b}1m\\u{202e}\""));
    free(out);

    snprintf(cmd, sizeof cmd, "'%s' inspect '%s' --json 2>/dev/null", qf, path);
    out = run(cmd, &rc);
    cJSON *j = out ? cJSON_Parse(out) : NULL;
    CHECK_MSG(j && rc == 0, "inspect --json does not parse");
    const cJSON *t0 = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "tensors"), 0);
    const char *name = cJSON_GetStringValue(cJSON_GetObjectItem(t0, "name"));
    CHECK_MSG(name && strcmp(name, "blk.0.\x1b[2J\\xff.weight") == 0, "JSON name %s", name ? name : "(none)");
    CHECK(out && !strchr(out, '\xff')); /* valid UTF-8 throughout */
    cJSON_Delete(j);
    free(out);

    /* change a data byte: verify --integrity names the tensor, escaped */
    size_t n;
    uint8_t *b = qf_test_read_file(path, &n);
    CHECK(b && n > 8);
    if (b) { b[n - 1] ^= 0x40; qf_test_write_file(path, b, n); }
    free(b);
    snprintf(cmd, sizeof cmd, "'%s' verify '%s' --integrity 2>&1", qf, path);
    out = run(cmd, &rc);
    CHECK_MSG(out && rc == 1 && terminal_safe(out) && strstr(out, "CHANGED tensor blk.0.\\x1b[2J\\xff.weight"),
              "verify --integrity: rc %d, %s", rc, out ? out : "");
    free(out);
    snprintf(cmd, sizeof cmd, "'%s' verify '%s' --integrity --json 2>/dev/null", qf, path);
    out = run(cmd, &rc);
    j = out ? cJSON_Parse(out) : NULL;
    CHECK_MSG(j && rc == 1 && !strchr(out, '\xff'), "verify --integrity --json: rc %d", rc);
    cJSON_Delete(j);
    free(out);

    /* an error message quoting file contents (qf_fail already turns C0 controls into '?') */
    write_evil_gguf(path, "ll\x1b\xc2\x9b" "ama\xff");
    snprintf(cmd, sizeof cmd, "'%s' quantize '%s' -o '%s.out' --type q8_0 2>&1", qf, path, path);
    out = run(cmd, &rc);
    CHECK_MSG(out && rc == 2 && terminal_safe(out) && strstr(out, "ll?\\u{009b}ama\\xff"), "error line: rc %d, %s", rc,
              out ? out : "");
    free(out);
}

int main(int argc, char **argv) {
    qf_test_init(argc, argv);
    unit_cases();
    const char *qf = getenv("QF_BIN");
    if (qf) cli_cases(qf);
    else printf("  QF_BIN not set: CLI cases skipped\n");
    return qf_test_finish();
}
