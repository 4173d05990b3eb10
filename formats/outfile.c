/*
 * outfile.c — atomic, durable output files (see outfile.h for the contract).
 *
 * Sequence: mkstemp beside the destination -> write-all loop -> (optional) posix_fallocate ->
 * fdatasync -> checked close -> rename -> fsync(directory). Any failed step unlinks the temp file.
 *
 * Signal cleanup needs the one piece of global state in the library: a fixed table of temp paths that
 * a signal handler may unlink. The table is preallocated and each slot is guarded by a lock-free
 * atomic state, so the handler touches nothing but async-signal-safe calls and plain memory, and
 * concurrent threads can claim slots without a lock.
 */
#include "outfile.h"
#include "formats/infile.h"

#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <unistd.h>

/* A split output holds every part's temp until the last is done; past this many, the extra temps lose
 * only the signal cleanup (the dead-owner sweep of a later run still removes them). */
#define QF_OUTFILE_MAX_TEMPS 512

#if ATOMIC_INT_LOCK_FREE != 2
#error "signal cleanup needs lock-free atomic int"
#endif

enum { SLOT_FREE = 0, SLOT_FILLING = 1, SLOT_ACTIVE = 2 };

static atomic_int g_slot_state[QF_OUTFILE_MAX_TEMPS];
static char g_slot_path[QF_OUTFILE_MAX_TEMPS][PATH_MAX];

struct qf_outfile {
    int fd;               /* -1 once closed */
    char *path;           /* final destination */
    char *tmp;            /* temp file beside it */
    uint64_t written;     /* bytes handed to write() so far */
    uint64_t reserved;    /* bytes posix_fallocate'd (file may be longer than written) */
    int slot;             /* signal-registry slot, -1 if the registry was full */
    qf_status failed;     /* sticky: a failed step already removed the temp file */
    qf_error fail_err;
};

/* ---- signal registry --------------------------------------------------------------------------- */

/* Returns the slot or -1. A full registry only loses signal cleanup, not correctness, so callers go on. */
static int registry_add(const char *tmp) {
    if (strlen(tmp) >= PATH_MAX) return -1;
    for (int i = 0; i < QF_OUTFILE_MAX_TEMPS; i++) {
        int expect = SLOT_FREE;
        if (atomic_compare_exchange_strong(&g_slot_state[i], &expect, SLOT_FILLING)) {
            /* The path is complete before the slot turns ACTIVE, so the handler never reads half a name. */
            memcpy(g_slot_path[i], tmp, strlen(tmp) + 1);
            atomic_store(&g_slot_state[i], SLOT_ACTIVE);
            return i;
        }
    }
    return -1;
}

static void registry_remove(int slot) {
    if (slot >= 0) atomic_store(&g_slot_state[slot], SLOT_FREE);
}

static void unlink_temps(void) {
    for (int i = 0; i < QF_OUTFILE_MAX_TEMPS; i++) {
        if (atomic_load(&g_slot_state[i]) == SLOT_ACTIVE) unlink(g_slot_path[i]);
    }
}

static void cleanup_handler(int sig) {
    int saved = errno;
    unlink_temps();
    /* Die of the same signal so the parent sees the real cause (exit status, core policy). The signal
     * is blocked while we run, so it is delivered, with the default action, as we return. */
    signal(sig, SIG_DFL);
    raise(sig);
    errno = saved;
}

static void say(const char *s) {
    ssize_t r = write(STDERR_FILENO, s, strlen(s));
    (void)r;
}

/* A mapped input that another process truncated faults on the pages past its new end. That is an I/O
 * failure of one named file, not a crash: one line, no temp file left, exit status 3. A SIGBUS at any
 * other address is a real fault and keeps its default action. */
static void sigbus_handler(int sig, siginfo_t *info, void *uctx) {
    (void)uctx;
    unlink_temps();
    const char *path = info ? qf_infile_mapped_path(info->si_addr) : NULL;
    if (path) {
        say("qforge: error: ");
        say(path);
        say(": the file was truncated while qforge was reading it (another process changed it); no output was "
            "written\n");
        _exit(3);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

void qf_outfile_install_signal_cleanup(void) {
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGXFSZ};
    for (size_t i = 0; i < QF_ARRAY_LEN(sigs); i++) {
        struct sigaction old, sa;
        /* A signal the parent chose to ignore (nohup, SIGXFSZ -> EFBIG) stays ignored. */
        if (sigaction(sigs[i], NULL, &old) != 0 || old.sa_handler == SIG_IGN) continue;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = cleanup_handler;
        sigemptyset(&sa.sa_mask);
        sigaction(sigs[i], &sa, NULL);
    }
    struct sigaction bus;
    memset(&bus, 0, sizeof bus);
    bus.sa_sigaction = sigbus_handler;
    bus.sa_flags = SA_SIGINFO;
    sigemptyset(&bus.sa_mask);
    sigaction(SIGBUS, &bus, NULL);
}

/* ---- helpers ----------------------------------------------------------------------------------- */

static mode_t g_umask;
static pthread_once_t g_umask_once = PTHREAD_ONCE_INIT;

/* umask can only be read by setting it; do that once, before worker threads create files. */
static void read_umask(void) {
    g_umask = umask(022);
    umask(g_umask);
}

static qf_status io_fail(qf_error *err, const char *what, const char *path, int e) {
    return qf_fail(err, QF_E_IO, "%s: %s failed: %s", path, what, strerror(e));
}

/* Directory part of `path` ("." when there is none) in a new string. */
static char *dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return qf_strndup(".", 1);
    if (slash == path) return qf_strndup("/", 1);
    return qf_strndup(path, (size_t)(slash - path));
}

/* ---- temp names: whose they are, and whether that process is gone ------------------------------ */

/* A temp file is "<dir>/.<name>.qf-tmp.<host>.<boot>.<pidns>.<pid>.<start>.XXXXXX": the machine, the
 * boot, the PID namespace and the process (PID plus its start time, so a reused PID is not mistaken
 * for the dead owner) that created it. A later run removes a temp only when all of this proves the
 * owner dead: same host name, same boot, same PID namespace, and that PID absent or started at another
 * time. A temp from another machine on a shared file system, another container, an earlier boot (the
 * host name may be shared) or a system without /proc is never touched. */
#define TEMP_TAG ".qf-tmp."
#define TEMP_BASE_MAX 96 /* of the output's name, so the temp name stays under NAME_MAX */

typedef struct temp_owner {
    char host[33], boot[9], pidns[24], pid[24], start[24];
} temp_owner;


static bool read_small(const char *path, char *buf, size_t n) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    ssize_t r = read(fd, buf, n - 1);
    close(fd);
    if (r <= 0) return false;
    buf[r] = '\0';
    return true;
}

/* Field 22 (starttime, clock ticks after boot) of /proc/<pid>/stat; the command name before it may
 * hold spaces and parentheses, so fields are counted after its last ')'. */
static bool proc_start_time(const char *pid, char *out, size_t n) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%s/stat", pid);
    if (!read_small(path, buf, sizeof buf)) return false;
    const char *p = strrchr(buf, ')');
    for (int field = 2; p && field < 22; field++) p = strchr(p + 1, ' ');
    if (!p) return false;
    size_t len = strspn(p + 1, "0123456789");
    if (len == 0 || len >= n) return false;
    memcpy(out, p + 1, len);
    out[len] = '\0';
    return true;
}

/* Host names may hold dots, which separate the fields: anything outside [A-Za-z0-9-] becomes '-'. */
static void sanitize_host(char *h) {
    for (char *c = h; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '-')) *c = '-';
}

/* This process's identity, read afresh at each open (a forked child is another owner). False when /proc
 * cannot tell all of it: then no temp can be proven dead. */
static bool read_self(temp_owner *o) {
    char buf[128];
    if (gethostname(o->host, sizeof o->host) != 0 || !o->host[0]) snprintf(o->host, sizeof o->host, "unknown");
    o->host[sizeof o->host - 1] = '\0';
    sanitize_host(o->host);
    bool ok = read_small("/proc/sys/kernel/random/boot_id", buf, sizeof buf) && strlen(buf) >= 8;
    snprintf(o->boot, sizeof o->boot, "%.8s", ok ? buf : "x");
    ssize_t r = readlink("/proc/self/ns/pid", buf, sizeof buf - 1); /* "pid:[4026531836]" */
    buf[r > 0 ? r : 0] = '\0';
    const char *digits = strchr(buf, '[');
    size_t len = digits ? strspn(digits + 1, "0123456789") : 0;
    ok = ok && len > 0 && len < sizeof o->pidns;
    snprintf(o->pidns, sizeof o->pidns, "%.*s", ok ? (int)len : 1, ok ? digits + 1 : "x");
    snprintf(o->pid, sizeof o->pid, "%ld", (long)getpid());
    ok = ok && proc_start_time("self", o->start, sizeof o->start);
    if (!ok) snprintf(o->start, sizeof o->start, "x");
    return ok;
}

static char *temp_name_for(const char *path, const temp_owner *o) {
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    int dir_len = slash ? (int)(slash - path) + 1 : 0;
    int n = snprintf(NULL, 0, "%.*s.%.*s" TEMP_TAG "%s.%s.%s.%s.%s.XXXXXX", dir_len, path, TEMP_BASE_MAX, base, o->host,
                     o->boot, o->pidns, o->pid, o->start);
    char *tmp = n > 0 ? malloc((size_t)n + 1) : NULL;
    if (tmp)
        snprintf(tmp, (size_t)n + 1, "%.*s.%.*s" TEMP_TAG "%s.%s.%s.%s.%s.XXXXXX", dir_len, path, TEMP_BASE_MAX, base,
                 o->host, o->boot, o->pidns, o->pid, o->start);
    return tmp;
}

/* The owner named by a temp file's name; false when the name is not one of ours. */
static bool parse_owner(const char *name, temp_owner *o) {
    const char *tag = NULL;
    for (const char *p = strstr(name, TEMP_TAG); p; p = strstr(p + 1, TEMP_TAG)) tag = p;
    if (!tag || name[0] != '.') return false;
    char *fields[6] = {o->host, o->boot, o->pidns, o->pid, o->start, NULL};
    size_t caps[5] = {sizeof o->host, sizeof o->boot, sizeof o->pidns, sizeof o->pid, sizeof o->start};
    const char *p = tag + strlen(TEMP_TAG);
    for (int i = 0; i < 5; i++) {
        size_t len = strcspn(p, ".");
        if (len == 0 || len >= caps[i] || p[len] != '.') return false;
        memcpy(fields[i], p, len);
        fields[i][len] = '\0';
        p += len + 1;
    }
    return strlen(p) == 6 && strspn(o->pid, "0123456789") == strlen(o->pid);
}

/* Provably dead: same host, boot and PID namespace as us, and the PID is gone or was started anew. */
static bool owner_dead(const temp_owner *o, const temp_owner *me) {
    if (strcmp(o->host, me->host) || strcmp(o->boot, me->boot) || strcmp(o->pidns, me->pidns))
        return false;
    char start[24];
    if (proc_start_time(o->pid, start, sizeof start)) return strcmp(start, o->start) != 0;
    char path[64];
    snprintf(path, sizeof path, "/proc/%s", o->pid);
    return access(path, F_OK) != 0 && errno == ENOENT;
}

/* Temps that dead qforge runs (SIGKILL, power loss of a container) left in dir: only regular files of
 * this user, named by us, whose owner is provably gone. Best effort: errors change nothing. */
static void remove_stale_temps(const char *dir, const temp_owner *me) {
    DIR *d = opendir(dir);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d));) {
        temp_owner o;
        struct stat sb;
        if (!parse_owner(e->d_name, &o) || !owner_dead(&o, me)) continue;
        if (fstatat(dirfd(d), e->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(sb.st_mode) || sb.st_uid != geteuid())
            continue;
        unlinkat(dirfd(d), e->d_name, 0);
    }
    closedir(d);
}

static void outfile_free(qf_outfile *f) {
    free(f->path);
    free(f->tmp);
    free(f);
}

/* Close (if open) and remove the temp file; leaves `f` allocated. */
static void discard_temp(qf_outfile *f) {
    if (f->fd >= 0) {
        close(f->fd);
        f->fd = -1;
    }
    unlink(f->tmp);
    registry_remove(f->slot);
    f->slot = -1;
}

/* Record the first failure, remove the temp file and return the status for the caller. */
static qf_status fail_file(qf_outfile *f, qf_error *err, const char *what, int e) {
    if (f->failed == QF_OK) {
        f->failed = qf_fail(&f->fail_err, QF_E_IO, "%s: %s failed (temp file %s): %s", f->path, what, f->tmp,
                            strerror(e));
        discard_temp(f);
    }
    if (err) *err = f->fail_err;
    return f->failed;
}

static qf_status fsync_dir(const char *path, qf_error *err) {
    char *dir = dir_of(path);
    if (!dir) return qf_fail(err, QF_E_NOMEM, "%s: out of memory", path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    qf_status st = QF_OK;
    if (fd < 0) {
        st = io_fail(err, "opening the directory for fsync", dir, errno);
    } else {
        /* Some filesystems cannot fsync a directory (EINVAL); there is nothing more to make durable. */
        if (fsync(fd) != 0 && errno != EINVAL)
            st = io_fail(err, "fsync of the directory after renaming the output into place", dir, errno);
        close(fd);
    }
    free(dir);
    return st;
}

/* ---- the output check every writer makes ------------------------------------------------------- */

/* The final rename replaces whatever has the name; only a regular file may be replaced (as root,
 * `-o /dev/null` would otherwise replace the system's /dev/null with a model). */
static qf_status check_replaceable(const char *path, qf_error *err) {
    struct stat sb;
    if (stat(path, &sb) != 0) {
        if (errno == ENOENT) return QF_OK;
        return qf_fail(err, errno == ENOTDIR ? QF_E_USAGE : QF_E_IO, "%s: cannot use it as the output: %s", path,
                       strerror(errno));
    }
    if (S_ISDIR(sb.st_mode))
        return qf_fail(err, QF_E_USAGE, "%s: is a directory; the output must name a file in it", path);
    if (!S_ISREG(sb.st_mode))
        return qf_fail(err, QF_E_USAGE, "%s: exists and is %s; qforge replaces only regular files", path,
                       qf_file_kind(sb.st_mode));
    return QF_OK;
}

/* realpath of path's directory + "/" + its last component: one spelling per location, also for a file
 * that does not exist yet. NULL when the directory does not resolve. */
static char *canonical(const char *path) {
    char *dir = dir_of(path), real[PATH_MAX];
    const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
    char *res = NULL;
    if (dir && realpath(dir, real)) {
        size_t n = strlen(real) + strlen(base) + 2;
        if ((res = malloc(n))) snprintf(res, n, "%s/%s", strcmp(real, "/") ? real : "", base);
    }
    free(dir);
    return res;
}

static bool same_location(const char *a, const char *b) {
    struct stat x, y;
    if (stat(a, &x) == 0 && stat(b, &y) == 0) return x.st_dev == y.st_dev && x.st_ino == y.st_ino;
    char *ca = canonical(a), *cb = canonical(b);
    bool same = ca && cb && strcmp(ca, cb) == 0;
    free(ca);
    free(cb);
    return same;
}

/* The model directory an input is read from, if it is one: a directory, or the directory of a
 * safetensors file or shard index (its shards, config and tokenizer are read from beside it). */
static char *source_dir_of(const char *input) {
    struct stat sb;
    if (stat(input, &sb) != 0) return NULL;
    if (S_ISDIR(sb.st_mode)) return qf_strndup(input, strlen(input));
    size_t n = strlen(input);
    static const char *const model_files[] = {".safetensors", ".safetensors.index.json"};
    for (size_t i = 0; i < QF_ARRAY_LEN(model_files); i++) {
        size_t m = strlen(model_files[i]);
        if (n >= m && !strcmp(input + n - m, model_files[i])) return dir_of(input);
    }
    return NULL;
}

/* The name of a file model directory `dir` reads (qf_model_dir_reads) that is, through whatever links,
 * the file `target` (dev/ino); false when none is. */
static bool dir_reads_file(const char *dir, const struct stat *target, char *hit, size_t n) {
    DIR *d = opendir(dir);
    if (!d) return false;
    bool found = false;
    for (struct dirent *e; !found && (e = readdir(d));) {
        struct stat sb;
        if (!qf_model_dir_reads(e->d_name) || snprintf(hit, n, "%s/%s", dir, e->d_name) >= (int)n) continue;
        found = stat(hit, &sb) == 0 && sb.st_dev == target->st_dev && sb.st_ino == target->st_ino;
    }
    closedir(d);
    return found;
}

/* Model files are often links (a Hugging Face cache entry's snapshots link into its blobs): the file the
 * output would replace must not be one a model directory reads, itself or through a link. */
static bool reads_through_link(const char *src_dir, const struct stat *target, char *hit, size_t n) {
    if (dir_reads_file(src_dir, target, hit, n)) return true;
    char snaps[PATH_MAX];
    if (snprintf(snaps, sizeof snaps, "%s/snapshots", src_dir) >= (int)sizeof snaps) return false;
    DIR *d = opendir(snaps);
    bool found = false;
    for (struct dirent *e; d && !found && (e = readdir(d));) {
        char snap[PATH_MAX];
        if (e->d_name[0] == '.' || snprintf(snap, sizeof snap, "%s/%s", snaps, e->d_name) >= (int)sizeof snap) continue;
        found = dir_reads_file(snap, target, hit, n);
    }
    if (d) closedir(d);
    return found;
}

static qf_status check_against_input(const char *out, const char *base, const char *out_dir, const char *in,
                                     qf_error *err) {
    if (same_location(out, in))
        return qf_fail(err, QF_E_USAGE, "%s: the output is the input %s; write it to another file", out, in);
    char *src_dir = source_dir_of(in);
    struct stat a, b;
    bool inside = src_dir && stat(src_dir, &a) == 0 && stat(out_dir, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
    if (inside && qf_model_dir_reads(base)) {
        free(src_dir);
        return qf_fail(err, QF_E_USAGE, "%s: writing it would change the model directory %s that is being read (a "
                       "model directory's %s is part of the model); write it elsewhere", out, in, base);
    }
    struct stat target;
    char hit[PATH_MAX];
    bool linked = src_dir && stat(out, &target) == 0 && reads_through_link(src_dir, &target, hit, sizeof hit);
    free(src_dir);
    if (linked)
        return qf_fail(err, QF_E_USAGE, "%s: is the file the model %s reads as %s (through a link); write the output "
                       "elsewhere", out, in, hit);
    return QF_OK;
}

qf_status qf_outfile_check(const char *out, const char *const *inputs, size_t n_inputs, qf_error *err) {
    if (!out || !out[0]) return qf_fail(err, QF_E_USAGE, "the output path is empty");
    size_t len = strlen(out);
    const char *slash = strrchr(out, '/'), *base = slash ? slash + 1 : out;
    if (out[len - 1] == '/' || !strcmp(base, ".") || !strcmp(base, ".."))
        return qf_fail(err, QF_E_USAGE, "%s: names a directory; the output must name a file", out);
    qf_status st = check_replaceable(out, err);
    if (st != QF_OK) return st;
    char *dir = dir_of(out);
    if (!dir) return qf_fail(err, QF_E_NOMEM, "%s: out of memory", out);
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        st = qf_fail(err, QF_E_USAGE, "%s: the directory %s does not exist", out, dir);
    else if (access(dir, W_OK | X_OK) != 0)
        st = qf_fail(err, QF_E_IO, "%s: cannot create files in %s: %s", out, dir, strerror(errno));
    for (size_t i = 0; st == QF_OK && i < n_inputs; i++)
        if (inputs[i] && strcmp(inputs[i], "-") != 0) st = check_against_input(out, base, dir, inputs[i], err);
    free(dir);
    return st;
}

/* ---- public API -------------------------------------------------------------------------------- */

qf_status qf_outfile_open(const char *path, qf_outfile **out, qf_error *err) {
    *out = NULL;
    pthread_once(&g_umask_once, read_umask);
    qf_outfile *f = calloc(1, sizeof *f);
    if (!f) return qf_fail(err, QF_E_NOMEM, "%s: out of memory", path);
    f->fd = -1;
    f->slot = -1;
    qf_status chk = check_replaceable(path, err);
    if (chk != QF_OK) {
        free(f);
        return chk;
    }
    temp_owner me;
    bool known = read_self(&me);
    f->path = qf_strndup(path, strlen(path));
    f->tmp = temp_name_for(path, &me);
    if (!f->path || !f->tmp) {
        outfile_free(f);
        return qf_fail(err, QF_E_NOMEM, "%s: out of memory", path);
    }
    char *dir = known ? dir_of(path) : NULL;
    if (dir) remove_stale_temps(dir, &me);
    free(dir);
    f->fd = mkostemp(f->tmp, O_CLOEXEC);
    if (f->fd < 0) {
        qf_status st = qf_fail(err, QF_E_IO, "%s: creating the temp file %s failed: %s", path, f->tmp, strerror(errno));
        outfile_free(f);
        return st;
    }
    f->slot = registry_add(f->tmp);
    /* mkstemp creates 0600; the output should get the permissions a plain create would give it. */
    if (fchmod(f->fd, 0644 & ~g_umask) != 0) {
        qf_status st = qf_fail(err, QF_E_IO, "%s: fchmod of the temp file %s failed: %s", path, f->tmp, strerror(errno));
        discard_temp(f);
        outfile_free(f);
        return st;
    }
    *out = f;
    return QF_OK;
}

void qf_outfile_reserve(qf_outfile *f, uint64_t size) {
    if (f->failed != QF_OK || size <= f->reserved || size > (uint64_t)INT64_MAX) return;
    int e = posix_fallocate(f->fd, 0, (off_t)size);
    if (e == 0) {
        f->reserved = size;
    } else if (e != EOPNOTSUPP && e != EINVAL) {
        /* A full disk is reported by the next write or commit, whichever comes first. */
        fail_file(f, NULL, "reserving space (posix_fallocate)", e);
    }
}

qf_status qf_outfile_write(qf_outfile *f, const void *buf, uint64_t n, qf_error *err) {
    if (f->failed != QF_OK) return fail_file(f, err, "", 0);
    const uint8_t *p = buf;
    while (n > 0) {
        size_t chunk = (size_t)QF_MIN(n, (uint64_t)1 << 30);
        ssize_t r = write(f->fd, p, chunk);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return fail_file(f, err, "write", r < 0 ? errno : ENOSPC);
        p += r;
        n -= (uint64_t)r;
        f->written += (uint64_t)r;
    }
    return QF_OK;
}

uint64_t qf_outfile_written(const qf_outfile *f) { return f->written; }

qf_status qf_outfile_pwrite(qf_outfile *f, const void *buf, uint64_t n, uint64_t off, qf_error *err) {
    if (f->failed != QF_OK) return fail_file(f, err, "", 0);
    if (!qf_range_in(off, n, f->written))
        return qf_fail(err, QF_E_INTERNAL, "%s: patch of %llu bytes at offset %llu lies beyond the %llu bytes written",
                       f->path, (unsigned long long)n, (unsigned long long)off, (unsigned long long)f->written);
    const uint8_t *p = buf;
    while (n > 0) {
        size_t chunk = (size_t)QF_MIN(n, (uint64_t)1 << 30);
        ssize_t r = pwrite(f->fd, p, chunk, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return fail_file(f, err, "pwrite", r < 0 ? errno : ENOSPC);
        p += r;
        n -= (uint64_t)r;
        off += (uint64_t)r;
    }
    return QF_OK;
}

const char *qf_outfile_path(const qf_outfile *f) { return f->path; }

const char *qf_outfile_temp_path(const qf_outfile *f) { return f->tmp; }

qf_status qf_outfile_seal(qf_outfile *f, qf_error *err) {
    if (f->failed != QF_OK) return fail_file(f, err, "", 0);
    if (f->fd < 0) return QF_OK; /* sealed before */
    /* A reservation larger than what was written would leave zeros at the end. */
    if (f->reserved > f->written && ftruncate(f->fd, (off_t)f->written) != 0)
        return fail_file(f, err, "truncating to the written size", errno);
    if (fdatasync(f->fd) != 0) return fail_file(f, err, "fdatasync", errno);
    int fd = f->fd;
    f->fd = -1;
    return close(fd) != 0 ? fail_file(f, err, "close", errno) : QF_OK;
}

qf_status qf_outfile_commit(qf_outfile *f, qf_error *err) {
    qf_status st = qf_outfile_seal(f, err);
    /* Checked again at the last moment: something else may have taken the name since open(). */
    qf_error why;
    if (st == QF_OK && (st = check_replaceable(f->path, &why)) != QF_OK) {
        discard_temp(f);
        if (err) *err = why;
    }
    if (st == QF_OK && rename(f->tmp, f->path) != 0) {
        int e = errno;
        st = fail_file(f, err, "rename into place", e);
    }
    if (st == QF_OK) {
        registry_remove(f->slot);
        st = fsync_dir(f->path, err);
    }
    outfile_free(f);
    return st;
}

void qf_outfile_abort(qf_outfile *f) {
    if (!f) return;
    if (f->failed == QF_OK) discard_temp(f);
    outfile_free(f);
}
