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

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <unistd.h>

#define QF_OUTFILE_MAX_TEMPS 64

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

static void cleanup_handler(int sig) {
    int saved = errno;
    for (int i = 0; i < QF_OUTFILE_MAX_TEMPS; i++) {
        if (atomic_load(&g_slot_state[i]) == SLOT_ACTIVE) unlink(g_slot_path[i]);
    }
    /* Die of the same signal so the parent sees the real cause (exit status, core policy). The signal
     * is blocked while we run, so it is delivered, with the default action, as we return. */
    signal(sig, SIG_DFL);
    raise(sig);
    errno = saved;
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

static char *temp_name_for(const char *path) {
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    size_t dir_len = slash ? (size_t)(slash - path) + 1 : 0;
    size_t n = dir_len + strlen(base) + sizeof(".") + sizeof(".qf-XXXXXX");
    char *tmp = malloc(n);
    if (tmp) snprintf(tmp, n, "%.*s.%s.qf-XXXXXX", (int)dir_len, path, base);
    return tmp;
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

/* ---- public API -------------------------------------------------------------------------------- */

qf_status qf_outfile_open(const char *path, qf_outfile **out, qf_error *err) {
    *out = NULL;
    pthread_once(&g_umask_once, read_umask);
    qf_outfile *f = calloc(1, sizeof *f);
    if (!f) return qf_fail(err, QF_E_NOMEM, "%s: out of memory", path);
    f->fd = -1;
    f->slot = -1;
    f->path = qf_strndup(path, strlen(path));
    f->tmp = temp_name_for(path);
    if (!f->path || !f->tmp) {
        outfile_free(f);
        return qf_fail(err, QF_E_NOMEM, "%s: out of memory", path);
    }
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

qf_status qf_outfile_commit(qf_outfile *f, qf_error *err) {
    qf_status st = QF_OK;
    if (f->failed != QF_OK) {
        st = fail_file(f, err, "", 0);
        outfile_free(f);
        return st;
    }
    /* A reservation larger than what was written would leave zeros at the end. */
    if (f->reserved > f->written && ftruncate(f->fd, (off_t)f->written) != 0)
        st = fail_file(f, err, "truncating to the written size", errno);
    if (st == QF_OK && fdatasync(f->fd) != 0) st = fail_file(f, err, "fdatasync", errno);
    if (st == QF_OK) {
        int fd = f->fd;
        f->fd = -1;
        if (close(fd) != 0) st = fail_file(f, err, "close", errno);
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
