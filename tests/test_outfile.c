/*
 * test_outfile.c — atomic output: commit, abort, write failure, and death by signal mid-write.
 * Each case works in its own subdirectory of the scratch dir so "no temp file left" is a directory scan.
 * Also: temps that runs killed outright left behind are removed by the next run in that directory,
 * but only when their owner is provably gone; only regular files are ever replaced.
 */
#include "testutil.h"
#include "formats/outfile.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *case_dir(const char *name, char *buf, size_t n) {
    qf_test_path(name, buf, n);
    mkdir(buf, 0755);
    /* a rerun must start clean */
    DIR *d = opendir(buf);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.' && (e->d_name[1] == '\0' || (e->d_name[1] == '.' && e->d_name[2] == '\0'))) continue;
        char p[4200];
        snprintf(p, sizeof p, "%s/%s", buf, e->d_name);
        unlink(p);
    }
    if (d) closedir(d);
    return buf;
}

/* Number of qforge temp files in dir. */
static int count_temps(const char *dir) {
    int n = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) n += strstr(e->d_name, ".qf-") != NULL;
    if (d) closedir(d);
    return n;
}

static bool file_is(const char *path, const char *content) {
    size_t n;
    uint8_t *b = qf_test_read_file(path, &n);
    bool ok = b && n == strlen(content) && memcmp(b, content, n) == 0;
    free(b);
    return ok;
}

static void test_commit(void) {
    char dir[4096], path[4200];
    case_dir("commit", dir, sizeof dir);
    snprintf(path, sizeof path, "%s/out.bin", dir);
    qf_error err = {0};
    qf_outfile *f;
    CHECK_OK(qf_outfile_open(path, &f, &err), &err);
    if (!f) return;
    CHECK(strcmp(qf_outfile_path(f), path) == 0);
    CHECK(count_temps(dir) == 1);
    CHECK(!qf_test_file_exists(path));
    qf_outfile_reserve(f, 1 << 20); /* larger than written: commit must trim it */
    CHECK_OK(qf_outfile_write(f, "hello ", 6, &err), &err);
    CHECK_OK(qf_outfile_write(f, "world", 5, &err), &err);
    CHECK(qf_outfile_written(f) == 11);
    CHECK_OK(qf_outfile_commit(f, &err), &err);
    CHECK(file_is(path, "hello world"));
    CHECK(count_temps(dir) == 0);
    mode_t um = umask(022);
    umask(um);
    struct stat sb;
    CHECK(stat(path, &sb) == 0 && (sb.st_mode & 0777) == (0644 & ~um));

    /* replacing an existing file, and a bare relative name (no directory part) */
    CHECK_OK(qf_outfile_open(path, &f, &err), &err);
    if (f) {
        CHECK(file_is(path, "hello world")); /* untouched until commit */
        CHECK_OK(qf_outfile_write(f, "new", 3, &err), &err);
        CHECK(file_is(path, "hello world"));
        CHECK_OK(qf_outfile_commit(f, &err), &err);
        CHECK(file_is(path, "new"));
    }
    char cwd[4096];
    if (getcwd(cwd, sizeof cwd) && chdir(dir) == 0) {
        CHECK_OK(qf_outfile_open("rel.bin", &f, &err), &err);
        if (f) {
            CHECK_OK(qf_outfile_write(f, "r", 1, &err), &err);
            CHECK_OK(qf_outfile_commit(f, &err), &err);
        }
        CHECK(file_is("rel.bin", "r"));
        CHECK(chdir(cwd) == 0);
    }
    CHECK(count_temps(dir) == 0);
}

static void test_abort(void) {
    char dir[4096], path[4200];
    case_dir("abort", dir, sizeof dir);
    snprintf(path, sizeof path, "%s/out.bin", dir);
    CHECK(qf_test_write_file(path, "old", 3));
    qf_error err = {0};
    qf_outfile *f;
    CHECK_OK(qf_outfile_open(path, &f, &err), &err);
    if (!f) return;
    CHECK_OK(qf_outfile_write(f, "new content", 11, &err), &err);
    qf_outfile_abort(f);
    CHECK(file_is(path, "old"));
    CHECK(count_temps(dir) == 0);
    qf_outfile_abort(NULL);
}

static void test_open_fails(void) {
    char dir[4096], path[4200];
    case_dir("openfail", dir, sizeof dir);
    snprintf(path, sizeof path, "%s/no/such/dir/out.bin", dir);
    qf_error err = {0};
    qf_outfile *f = (qf_outfile *)1;
    qf_status st = qf_outfile_open(path, &f, &err);
    printf("open in a missing directory: %s: %s\n", qf_status_name(st), err.msg);
    CHECK(st == QF_E_IO);
    CHECK(f == NULL);
    CHECK(strstr(err.msg, "no/such/dir") && strstr(err.msg, strerror(ENOENT)));
}

/* Runs fn in a child; returns its wait status. */
static int in_child(void (*fn)(const char *), const char *arg) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        fn(arg);
        _exit(0);
    }
    int ws = 0;
    while (waitpid(pid, &ws, 0) < 0 && errno == EINTR) {}
    return ws;
}

/* Child: file size limit with SIGXFSZ ignored, so write() fails with EFBIG instead of killing us. */
static void child_write_too_big(const char *path) {
    struct rlimit rl = {4096, 4096};
    signal(SIGXFSZ, SIG_IGN);
    if (setrlimit(RLIMIT_FSIZE, &rl) != 0) _exit(10);
    qf_outfile_install_signal_cleanup();
    qf_error err = {0};
    qf_outfile *f;
    if (qf_outfile_open(path, &f, &err) != QF_OK) _exit(11);
    static char buf[16384];
    qf_status st = qf_outfile_write(f, buf, sizeof buf, &err);
    printf("write past RLIMIT_FSIZE: %s: %s\n", qf_status_name(st), err.msg);
    fflush(stdout);
    if (st != QF_E_IO || !strstr(err.msg, ".out.bin.qf-") || !strstr(err.msg, strerror(EFBIG))) _exit(12);
    if (qf_outfile_write(f, "x", 1, &err) != QF_E_IO) _exit(13); /* failure is sticky */
    if (qf_outfile_commit(f, &err) != QF_E_IO) _exit(14);
    _exit(0);
}

static void child_reserve_too_big(const char *path) {
    struct rlimit rl = {4096, 4096};
    signal(SIGXFSZ, SIG_IGN);
    if (setrlimit(RLIMIT_FSIZE, &rl) != 0) _exit(10);
    qf_error err = {0};
    qf_outfile *f;
    if (qf_outfile_open(path, &f, &err) != QF_OK) _exit(11);
    qf_outfile_reserve(f, 1 << 20);
    qf_status st = qf_outfile_write(f, "x", 1, &err);
    qf_status st2 = qf_outfile_commit(f, &err);
    printf("reserve past RLIMIT_FSIZE: write %s, commit %s: %s\n", qf_status_name(st), qf_status_name(st2), err.msg);
    fflush(stdout);
    /* fallocate may be unsupported on this filesystem; then write and commit both succeed */
    if ((st == QF_OK) != (st2 == QF_OK)) _exit(12);
    _exit(st2 == QF_OK ? 20 : 0);
}

/* Child: same limit, SIGXFSZ at its default: the cleanup handler must remove the temp and re-raise. */
static void child_killed_by_xfsz(const char *path) {
    struct rlimit rl = {4096, 4096};
    signal(SIGXFSZ, SIG_DFL);
    if (setrlimit(RLIMIT_FSIZE, &rl) != 0) _exit(10);
    qf_outfile_install_signal_cleanup();
    qf_error err = {0};
    qf_outfile *f;
    if (qf_outfile_open(path, &f, &err) != QF_OK) _exit(11);
    static char buf[16384];
    qf_outfile_write(f, buf, sizeof buf, &err);
    _exit(12); /* not reached: SIGXFSZ kills us */
}

static void test_write_failure(void) {
    char dir[4096], path[4200];
    case_dir("writefail", dir, sizeof dir);
    snprintf(path, sizeof path, "%s/out.bin", dir);
    int ws = in_child(child_write_too_big, path);
    CHECK_MSG(WIFEXITED(ws) && WEXITSTATUS(ws) == 0, "child status 0x%x", ws);
    CHECK(!qf_test_file_exists(path));
    CHECK(count_temps(dir) == 0);

    ws = in_child(child_killed_by_xfsz, path);
    CHECK_MSG(WIFSIGNALED(ws) && WTERMSIG(ws) == SIGXFSZ, "child status 0x%x", ws);
    CHECK(!qf_test_file_exists(path));
    CHECK(count_temps(dir) == 0);

    ws = in_child(child_reserve_too_big, path);
    CHECK_MSG(WIFEXITED(ws) && (WEXITSTATUS(ws) == 0 || WEXITSTATUS(ws) == 20), "child status 0x%x", ws);
    CHECK(count_temps(dir) == 0);
    if (WIFEXITED(ws) && WEXITSTATUS(ws) == 20) CHECK(file_is(path, "x"));
    else CHECK(!qf_test_file_exists(path));
}

static int g_ready_fd = -1;

/* Child: writes some data, tells the parent, then keeps writing until killed. */
static void child_write_forever(const char *path) {
    qf_outfile_install_signal_cleanup();
    qf_error err = {0};
    qf_outfile *f;
    if (qf_outfile_open(path, &f, &err) != QF_OK) _exit(11);
    static char buf[4096];
    if (qf_outfile_write(f, buf, sizeof buf, &err) != QF_OK) _exit(12);
    if (write(g_ready_fd, "r", 1) != 1) _exit(13);
    for (;;) {
        usleep(1000);
        if (qf_outfile_write(f, buf, 16, &err) != QF_OK) _exit(14);
    }
}

static int kill_mid_write(const char *path, int sig) {
    int fds[2];
    if (pipe(fds) != 0) return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        g_ready_fd = fds[1];
        child_write_forever(path);
        _exit(0);
    }
    close(fds[1]);
    char c;
    ssize_t r;
    while ((r = read(fds[0], &c, 1)) < 0 && errno == EINTR) {}
    close(fds[0]);
    kill(pid, sig);
    int ws = 0;
    while (waitpid(pid, &ws, 0) < 0 && errno == EINTR) {}
    return r == 1 ? ws : -1;
}

static void test_signals(void) {
    static const int sigs[] = {SIGTERM, SIGINT, SIGHUP};
    for (size_t i = 0; i < QF_ARRAY_LEN(sigs); i++) {
        char dir[4096], path[4200], name[32];
        snprintf(name, sizeof name, "signal%d", sigs[i]);
        case_dir(name, dir, sizeof dir);
        snprintf(path, sizeof path, "%s/out.bin", dir);
        int ws = kill_mid_write(path, sigs[i]);
        CHECK_MSG(ws != -1 && WIFSIGNALED(ws) && WTERMSIG(ws) == sigs[i], "signal %d: wait status 0x%x", sigs[i], ws);
        CHECK_MSG(count_temps(dir) == 0, "signal %d left a temp file", sigs[i]);
        CHECK(!qf_test_file_exists(path));
    }
    /* SIGKILL cannot be caught: the temp may stay, but nothing appears under the final name */
    char dir[4096], path[4200];
    case_dir("sigkill", dir, sizeof dir);
    snprintf(path, sizeof path, "%s/out.bin", dir);
    CHECK(qf_test_write_file(path, "old", 3));
    int ws = kill_mid_write(path, SIGKILL);
    CHECK(ws != -1 && WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL);
    CHECK(file_is(path, "old"));
    printf("SIGKILL left %d temp file(s) (expected: uncatchable)\n", count_temps(dir));
    case_dir("sigkill", dir, sizeof dir);
}

/* ---- temps of dead runs ------------------------------------------------------------------------ */

/* The identity fields of our own temp names: everything between ".qf-tmp." and the random suffix. */
static bool own_tag(const char *dir, char *tag, size_t n) {
    char path[4200];
    snprintf(path, sizeof path, "%s/probe.bin", dir);
    qf_error err = {0};
    qf_outfile *f;
    if (qf_outfile_open(path, &f, &err) != QF_OK) return false;
    const char *t = strstr(qf_outfile_temp_path(f), ".qf-tmp.");
    bool ok = t && strlen(t) > 7 + 8 && strlen(t) - 7 < n;
    if (ok) snprintf(tag, n, "%.*s", (int)(strlen(t) - 7), t + 8); /* without the ".XXXXXX" */
    qf_outfile_abort(f);
    return ok;
}

/* Replace field i (0 host, 1 boot, 2 pidns, 3 pid, 4 start) of a tag. */
static void set_field(const char *tag, int field, const char *value, char *out, size_t n) {
    char parts[5][64] = {{0}};
    const char *p = tag;
    for (int i = 0; i < 5; i++) {
        size_t len = strcspn(p, ".");
        snprintf(parts[i], sizeof parts[i], "%.*s", (int)len, p);
        p += len + (p[len] == '.');
    }
    snprintf(parts[field], sizeof parts[field], "%s", value);
    snprintf(out, n, "%s.%s.%s.%s.%s", parts[0], parts[1], parts[2], parts[3], parts[4]);
}

static void plant(const char *dir, const char *name) {
    char path[8600];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    CHECK(qf_test_write_file(path, "stale", 5));
}

static bool present(const char *dir, const char *name) {
    char path[8600];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return qf_test_file_exists(path);
}

/* A PID that is certainly not running now: a child that has exited and been reaped. */
static pid_t dead_pid(void) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) _exit(0);
    int ws;
    while (waitpid(pid, &ws, 0) < 0 && errno == EINTR) {}
    return pid;
}

static void test_killed_run_temp(void) {
    /* the case that matters: a run killed outright leaves its temp, the next run in that directory
     * removes it */
    char dir[4096], path[4200];
    qf_error err = {0};
    qf_outfile *f;
    case_dir("stale-kill", dir, sizeof dir);
    snprintf(path, sizeof path, "%s/out.bin", dir);
    int ws = kill_mid_write(path, SIGKILL);
    CHECK(ws != -1 && WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL);
    CHECK(count_temps(dir) == 1);
    CHECK_OK(qf_outfile_open(path, &f, &err), &err);
    CHECK_MSG(count_temps(dir) == 1, "%d temps: the killed run's was not removed", count_temps(dir));
    if (f) {
        CHECK_OK(qf_outfile_write(f, "x", 1, &err), &err);
        CHECK_OK(qf_outfile_commit(f, &err), &err);
    }
    CHECK(count_temps(dir) == 0);
}

/* Which temps count as provably dead, by the fields of their names. */
static void test_stale_temps(void) {
    char dir[4096], tag[256], t[400], name[4400], pid[32];
    case_dir("stale", dir, sizeof dir);
    size_t tl = own_tag(dir, tag, sizeof tag) ? strlen(tag) : 0;
    if (tl < 2 || strstr(tag, ".x.") || !strcmp(tag + tl - 2, ".x")) {
        printf("SKIP stale temps: no /proc identity on this system (temps are then never removed)\n");
        return;
    }
    struct { const char *what; int field; const char *value; bool removed; } cases[] = {
        {"owner exited", 3, NULL, true},                  /* value: a reaped child's PID */
        {"PID reused by another process", 4, "1", true},  /* our PID, another start time */
        {"owner alive (this process)", -1, NULL, false},
        {"another host (shared file system)", 0, "otherhost", false},
        {"an earlier boot of a host of this name", 1, "00000000", false},
        {"another PID namespace (container)", 2, "1", false},
    };
    char names[QF_ARRAY_LEN(cases)][600];
    for (size_t i = 0; i < QF_ARRAY_LEN(cases); i++) {
        const char *v = cases[i].value;
        if (cases[i].field == 3) { snprintf(pid, sizeof pid, "%ld", (long)dead_pid()); v = pid; }
        if (cases[i].field >= 0) set_field(tag, cases[i].field, v, t, sizeof t);
        else snprintf(t, sizeof t, "%s", tag);
        snprintf(names[i], sizeof names[i], ".model.gguf.qf-tmp.%s.Ab%zu3xY", t, i);
        plant(dir, names[i]);
    }
    /* not ours at all: the old naming, and a directory that looks like a temp */
    plant(dir, ".model.gguf.qf-Ab12xY");
    snprintf(name, sizeof name, "%s/.d.qf-tmp.%s.dirdir", dir, tag);
    CHECK(mkdir(name, 0755) == 0);
    char path[4200];
    snprintf(path, sizeof path, "%s/model.gguf", dir);
    qf_error err = {0};
    qf_outfile *f;
    CHECK_OK(qf_outfile_open(path, &f, &err), &err); /* opening cleans the directory */
    for (size_t i = 0; i < QF_ARRAY_LEN(cases); i++)
        CHECK_MSG(present(dir, names[i]) != cases[i].removed, "%s: temp %s", cases[i].what,
                  cases[i].removed ? "kept" : "removed");
    CHECK(present(dir, ".model.gguf.qf-Ab12xY"));
    CHECK(qf_test_file_exists(name));
    if (f) qf_outfile_abort(f);
    rmdir(name);
}

/* ---- what may be replaced ---------------------------------------------------------------------- */

static void test_replace_only_regular(void) {
    char dir[4096], fifo[4200], sub[4200];
    case_dir("replace", dir, sizeof dir);
    snprintf(fifo, sizeof fifo, "%s/fifo", dir);
    snprintf(sub, sizeof sub, "%s/sub", dir);
    rmdir(sub); /* case_dir removes files only */
    CHECK(mkfifo(fifo, 0644) == 0);
    CHECK(mkdir(sub, 0755) == 0);
    qf_error err = {0};
    qf_outfile *f = NULL;
    CHECK(qf_outfile_open(fifo, &f, &err) == QF_E_USAGE && strstr(err.msg, "FIFO") && !f);
    CHECK(qf_outfile_open(sub, &f, &err) == QF_E_USAGE && strstr(err.msg, "is a directory") && !f);
    CHECK(count_temps(dir) == 0);
    /* something non-regular takes the name between open and commit: the commit refuses it */
    char late[4200];
    snprintf(late, sizeof late, "%s/late", dir);
    CHECK_OK(qf_outfile_open(late, &f, &err), &err);
    if (f) {
        CHECK_OK(qf_outfile_write(f, "x", 1, &err), &err);
        CHECK(mkfifo(late, 0644) == 0);
        CHECK(qf_outfile_commit(f, &err) == QF_E_USAGE && strstr(err.msg, "FIFO"));
    }
    struct stat sb;
    CHECK(stat(late, &sb) == 0 && S_ISFIFO(sb.st_mode));
    CHECK(stat(fifo, &sb) == 0 && S_ISFIFO(sb.st_mode));
    CHECK(count_temps(dir) == 0);
}

int main(int argc, char **argv) {
    qf_test_init(argc, argv);
    test_commit();
    test_abort();
    test_open_fails();
    test_write_failure();
    test_signals();
    test_killed_run_temp();
    test_stale_temps();
    test_replace_only_regular();
    return qf_test_finish();
}
