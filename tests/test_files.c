/*
 * test_files.c — the input and output discipline every command shares (formats/infile.h, outfile.h):
 *   1. inputs: only regular files (a FIFO without a writer is refused at once instead of blocking,
 *      devices and directories too); whole reads are bounded by the stated limit
 *   2. qf_outfile_check: empty / "." / "x/" / directory / FIFO / socket / device outputs, a missing
 *      directory, the output equal to an input (same file, other spelling, hard and symbolic links),
 *      two outputs that are one file, and files that would change a model directory being read
 *   3. a mapped input truncated by another process while it is read (SIGBUS) becomes a one-line I/O
 *      error naming the file, exit status 3, and no temp file is left (GGUF and safetensors readers)
 */
#include "testutil.h"
#include "formats/gguf.h"
#include "formats/infile.h"
#include "formats/outfile.h"
#include "formats/safetensors.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- 1. inputs --------------------------------------------------------------------------------- */

static void test_inputs(void) {
    char fifo[4200], dir[4200], file[4200];
    char root[4096];
    qf_test_fresh_dir("in", root, sizeof root);
    snprintf(fifo, sizeof fifo, "%s/fifo", root);
    snprintf(dir, sizeof dir, "%s/dir", root);
    snprintf(file, sizeof file, "%s/in.txt", root);
    CHECK(mkfifo(fifo, 0644) == 0);
    CHECK(mkdir(dir, 0755) == 0);
    CHECK(qf_test_write_file(file, "0123456789", 10));
    int fd;
    uint64_t size;
    qf_error err = {0};
    /* no writer: a plain open(O_RDONLY) would block here for ever */
    CHECK(qf_infile_open(fifo, &fd, &size, &err) == QF_E_INPUT && strstr(err.msg, "FIFO") && strstr(err.msg, fifo));
    CHECK(qf_infile_open(dir, &fd, &size, &err) == QF_E_INPUT && strstr(err.msg, "not a regular file"));
    CHECK(qf_infile_open("/dev/zero", &fd, &size, &err) == QF_E_INPUT && strstr(err.msg, "character device"));
    CHECK(qf_infile_open("/no/such/file", &fd, &size, &err) == QF_E_NOTFOUND);
    CHECK_OK(qf_infile_open(file, &fd, &size, &err), &err);
    CHECK(size == 10 && fd >= 0 && (fcntl(fd, F_GETFL) & O_NONBLOCK) == 0);
    if (fd >= 0) close(fd);
    char *buf = NULL;
    size_t len = 0;
    CHECK_OK(qf_infile_read(file, 10, "test file", &buf, &len, &err), &err);
    CHECK(buf && len == 10 && buf[10] == '\0' && !memcmp(buf, "0123456789", 10));
    free(buf);
    CHECK(qf_infile_read(file, 9, "test file", &buf, &len, &err) == QF_E_INPUT && !buf &&
          strstr(err.msg, "test file of 10 bytes exceeds the limit of 9 bytes"));
    CHECK(qf_infile_read("/dev/zero", 1 << 20, "text", &buf, &len, &err) == QF_E_INPUT && !buf);
    CHECK(qf_infile_has_magic(file, "0123", 4) && !qf_infile_has_magic(file, "1234", 4));
    CHECK(!qf_infile_has_magic(fifo, "GGUF", 4));
    qf_gguf *g = NULL;
    CHECK(qf_gguf_open(fifo, &g, &err) == QF_E_INPUT && !g);
    qf_st_model *m = NULL;
    CHECK(qf_st_open(fifo, &m, &err) == QF_E_INPUT && !m);
}

/* ---- 2. the output check ------------------------------------------------------------------------- */

static void expect_refused(const char *out, const char *const *in, size_t n, qf_status want, const char *part) {
    qf_error err = {0};
    qf_status st = qf_outfile_check(out, in, n, &err);
    CHECK_MSG(st == want && strstr(err.msg, part) && !strchr(err.msg, '\n'), "-o '%s': %s: %s (expected %s, '%s')", out,
              qf_status_name(st), err.msg, qf_status_name(want), part);
}

static void expect_allowed(const char *out, const char *const *in, size_t n) {
    qf_error err = {0};
    CHECK_OK(qf_outfile_check(out, in, n, &err), &err);
}

/* A hard link and a symbolic link (relative, as `ln -s m.gguf link.gguf` makes it) to target. */
static bool link_path_ok(const char *target, const char *hard, const char *sym) {
    const char *slash = strrchr(target, '/');
    return link(target, hard) == 0 && symlink(slash ? slash + 1 : target, sym) == 0;
}

static void test_output_check(void) {
    char d[4096], model[4200], fifo[4200], sock[4200], model_st[4400], cfg[4400], text[4200], link[4200],
        hard[4200], spelled[4400], gguf[4200], other[4200];
    qf_test_fresh_dir("out", d, sizeof d);
    snprintf(model, sizeof model, "%s/model", d);
    CHECK(mkdir(model, 0755) == 0);
    snprintf(model_st, sizeof model_st, "%s/model.safetensors", model);
    snprintf(cfg, sizeof cfg, "%s/config.json", model);
    CHECK(qf_test_write_file(model_st, "x", 1) && qf_test_write_file(cfg, "{}", 2));
    snprintf(fifo, sizeof fifo, "%s/fifo", d);
    CHECK(mkfifo(fifo, 0644) == 0);
    snprintf(sock, sizeof sock, "%s/sock", d);
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    bool have_sock = strlen(sock) < sizeof sa.sun_path;
    if (have_sock) {
        memcpy(sa.sun_path, sock, strlen(sock) + 1); /* fits: checked above */
        have_sock = bind(s, (struct sockaddr *)&sa, sizeof sa) == 0;
    }
    close(s);

    expect_refused("", NULL, 0, QF_E_USAGE, "empty");
    expect_refused(NULL, NULL, 0, QF_E_USAGE, "empty");
    expect_refused(".", NULL, 0, QF_E_USAGE, "names a directory");
    expect_refused("sub/.", NULL, 0, QF_E_USAGE, "names a directory");
    expect_refused("x/", NULL, 0, QF_E_USAGE, "names a directory");
    expect_refused(d, NULL, 0, QF_E_USAGE, "is a directory");
    expect_refused(fifo, NULL, 0, QF_E_USAGE, "FIFO");
    if (have_sock) expect_refused(sock, NULL, 0, QF_E_USAGE, "socket");
    if (geteuid() == 0) { /* a device node of our own, so nothing of the system is ever at stake */
        char dev[4200];
        snprintf(dev, sizeof dev, "%s/null", d);
        if (mknod(dev, S_IFCHR | 0666, makedev(1, 3)) == 0) expect_refused(dev, NULL, 0, QF_E_USAGE, "character device");
    }
    char missing[4200];
    snprintf(missing, sizeof missing, "%s/no/such/dir/x.gguf", d);
    expect_refused(missing, NULL, 0, QF_E_USAGE, "does not exist");

    /* the output is an input: same path, another spelling, a hard link, a symbolic link */
    snprintf(gguf, sizeof gguf, "%s/m.gguf", d);
    snprintf(text, sizeof text, "%s/t.txt", d);
    CHECK(qf_test_write_file(gguf, "GGUF", 4) && qf_test_write_file(text, "t", 1));
    const char *in[] = {gguf, NULL, "-", text};
    expect_refused(gguf, in, 4, QF_E_USAGE, "the output is the input");
    expect_refused(text, in, 4, QF_E_USAGE, "the output is the input");
    snprintf(spelled, sizeof spelled, "%s/model/../m.gguf", d);
    expect_refused(spelled, in, 1, QF_E_USAGE, "the output is the input");
    snprintf(hard, sizeof hard, "%s/hard.gguf", d);
    snprintf(link, sizeof link, "%s/link.gguf", d);
    CHECK(link_path_ok(gguf, hard, link));
    expect_refused(hard, in, 1, QF_E_USAGE, "the output is the input");
    expect_refused(link, in, 1, QF_E_USAGE, "the output is the input");
    /* two outputs that do not exist yet but are one file */
    snprintf(other, sizeof other, "%s/new.gguf", d);
    char other2[4400];
    snprintf(other2, sizeof other2, "%s/model/../new.gguf", d);
    const char *outs[] = {other2};
    expect_refused(other, outs, 1, QF_E_USAGE, "the output is the input");
    expect_allowed(other, in, 4);

    /* a model directory being read: its weights, index, config and tokenizer files are off limits,
     * other files in it (a GGUF beside the checkpoint, as llama.cpp's converter writes) are not */
    const char *dir_in[] = {model};
    static const char *const part_of_model[] = {"model.safetensors", "model-00001-of-00002.safetensors",
                                                "model.safetensors.index.json", "config.json", "tokenizer.json",
                                                "tokenizer_config.json", "tokenizer.model"};
    for (size_t i = 0; i < QF_ARRAY_LEN(part_of_model); i++) {
        char p[4500];
        snprintf(p, sizeof p, "%s/%s", model, part_of_model[i]);
        expect_refused(p, dir_in, 1, QF_E_USAGE, "would change the model directory");
    }
    char beside[4500];
    snprintf(beside, sizeof beside, "%s/model-f16.gguf", model);
    expect_allowed(beside, dir_in, 1);
    const char *file_in[] = {model_st}; /* a single .safetensors reads config and tokenizer beside it */
    snprintf(beside, sizeof beside, "%s/tokenizer.json", model);
    expect_refused(beside, file_in, 1, QF_E_USAGE, "would change the model directory");
    snprintf(beside, sizeof beside, "%s/report.json", d); /* a report next to a model file is fine */
    const char *gguf_in[] = {gguf};
    expect_allowed(beside, gguf_in, 1);
}

/* ---- 3. truncated while mapped ----------------------------------------------------------------- */

static int count_temps(const char *dir) {
    int n = 0;
    DIR *dd = opendir(dir);
    for (struct dirent *e; dd && (e = readdir(dd));) n += strstr(e->d_name, ".qf-") != NULL;
    if (dd) closedir(dd);
    return n;
}

/* A GGUF of one 4 MiB tensor: its data spans many pages past the header. */
static bool write_big_gguf(const char *path) {
    qf_error err = {0};
    qf_gguf_writer *w = NULL;
    uint64_t ne[2] = {1024, 1024};
    float *row = calloc(1024, sizeof *row);
    bool ok = row && qf_gguf_writer_open(path, &w, &err) == QF_OK && qf_gguf_add_tensor(w, "t", 0, 2, ne, &err) == QF_OK &&
              qf_gguf_begin_data(w, &err) == QF_OK;
    for (int r = 0; ok && r < 1024; r++) ok = qf_gguf_write_tensor_data(w, row, 1024 * sizeof *row, &err) == QF_OK;
    ok = ok && qf_gguf_writer_finish(w, &err) == QF_OK;
    if (!ok && w) qf_gguf_writer_abort(w);
    free(row);
    return ok;
}

/* Child: an output is being written (its temp exists), the input is mapped, another process cuts the
 * input short, and the next read of its data faults. */
static void child_read_truncated(const char *input, const char *out, bool gguf) {
    qf_outfile_install_signal_cleanup();
    qf_error err = {0};
    qf_outfile *f;
    if (qf_outfile_open(out, &f, &err) != QF_OK || qf_outfile_write(f, "partial", 7, &err) != QF_OK) _exit(20);
    const uint8_t *data = NULL;
    uint64_t n = 0;
    qf_gguf *g = NULL;
    qf_st_model *m = NULL;
    if (gguf) {
        if (qf_gguf_open(input, &g, &err) != QF_OK) _exit(21);
        data = qf_gguf_tensor_at(g, 0)->data;
        n = qf_gguf_tensor_at(g, 0)->nbytes;
    } else {
        if (qf_st_open(input, &m, &err) != QF_OK) _exit(21);
        data = qf_st_tensor_at(m, 0)->data;
        n = qf_st_tensor_at(m, 0)->nbytes;
    }
    if (truncate(input, 4096) != 0) _exit(22);
    volatile uint8_t sum = 0;
    for (uint64_t i = 0; i < n; i += 4096) sum += data[i]; /* faults past the new end */
    _exit(23 + (sum & 0)); /* reached only if nothing faulted */
}

static void test_truncated_input(bool gguf) {
    char dir[4096], input[4200], out[4200], errfile[4200];
    qf_test_fresh_dir(gguf ? "trunc-gguf" : "trunc-st", dir, sizeof dir);
    snprintf(input, sizeof input, "%s/in.%s", dir, gguf ? "gguf" : "safetensors");
    snprintf(out, sizeof out, "%s/out.bin", dir);
    snprintf(errfile, sizeof errfile, "%s.stderr", dir);
    if (gguf) {
        CHECK(write_big_gguf(input));
    } else {
        float *z = calloc(1 << 20, sizeof *z);
        qf_st_out_tensor t = {.name = "t", .dtype = QF_DT_F32, .n_dims = 2, .shape = {1024, 1024}, .data = z};
        qf_error err = {0};
        CHECK_OK(qf_st_write(input, &t, 1, &err), &err);
        free(z);
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(errfile, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || dup2(fd, STDERR_FILENO) < 0) _exit(30);
        child_read_truncated(input, out, gguf);
    }
    int ws = 0;
    while (waitpid(pid, &ws, 0) < 0 && errno == EINTR) {}
    size_t len = 0;
    char *msg = (char *)qf_test_read_file(errfile, &len);
    CHECK_MSG(WIFEXITED(ws) && WEXITSTATUS(ws) == 3, "%s: wait status 0x%x (a SIGBUS death is 0x%x)", input, ws, SIGBUS);
    CHECK_MSG(msg && strstr(msg, input) && strstr(msg, "truncated while qforge was reading it") &&
              strchr(msg, '\n') == msg + len - 1, "stderr: '%.*s'", (int)len, msg ? msg : "");
    CHECK_MSG(count_temps(dir) == 0 && !qf_test_file_exists(out), "%s: a temp file or output was left", dir);
    free(msg);
}

int main(int argc, char **argv) {
    qf_test_init(argc, argv);
    test_inputs();
    test_output_check();
    test_truncated_input(true);
    test_truncated_input(false);
    return qf_test_finish();
}
