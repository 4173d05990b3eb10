/*
 * infile.c — opening, reading and mapping input files (infile.h).
 *
 * The mapping registry is the second piece of global state in the library (the first is outfile.c's
 * temp-file table, for the same reason): a signal handler must be able to name the file whose mapping
 * faulted. It is a fixed table of slots guarded by lock-free atomic states, so the handler reads only
 * plain memory and registering never takes a lock.
 */
#include "formats/infile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define QF_INFILE_MAX_MAPS 1024 /* DeepSeek-V3 has 163 shards; a full table only loses the file name */
#define QF_INFILE_PATH 512      /* longer names are cut in the message */

enum { SLOT_FREE = 0, SLOT_FILLING = 1, SLOT_ACTIVE = 2 };

static atomic_int g_map_state[QF_INFILE_MAX_MAPS];
static uintptr_t g_map_base[QF_INFILE_MAX_MAPS];
static uint64_t g_map_size[QF_INFILE_MAX_MAPS];
static char g_map_path[QF_INFILE_MAX_MAPS][QF_INFILE_PATH];

const char *qf_file_kind(mode_t m) {
    if (S_ISDIR(m)) return "a directory";
    if (S_ISFIFO(m)) return "a FIFO (named pipe)";
    if (S_ISCHR(m)) return "a character device";
    if (S_ISBLK(m)) return "a block device";
    if (S_ISSOCK(m)) return "a socket";
    return "a special file";
}

qf_status qf_infile_open(const char *path, int *fd, uint64_t *size, qf_error *err) {
    *fd = -1;
    *size = 0;
    /* O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer before we can look at it */
    int f = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (f < 0)
        return qf_fail(err, errno == ENOENT || errno == ENOTDIR ? QF_E_NOTFOUND : QF_E_IO, "%s: cannot open: %s", path,
                       strerror(errno));
    struct stat sb;
    if (fstat(f, &sb) != 0) {
        int e = errno;
        close(f);
        return qf_fail(err, QF_E_IO, "%s: fstat failed: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(f);
        return qf_fail(err, QF_E_INPUT, "%s: not a regular file: it is %s", path, qf_file_kind(sb.st_mode));
    }
    int flags = fcntl(f, F_GETFL);
    if (flags >= 0) fcntl(f, F_SETFL, flags & ~O_NONBLOCK);
    *fd = f;
    *size = (uint64_t)sb.st_size;
    return QF_OK;
}

qf_status qf_infile_read(const char *path, uint64_t limit, const char *what, char **buf, size_t *len, qf_error *err) {
    *buf = NULL;
    *len = 0;
    int fd;
    uint64_t size;
    qf_status st = qf_infile_open(path, &fd, &size, err);
    if (st != QF_OK) return st;
    char *b = NULL;
    if (size > limit || size >= SIZE_MAX)
        st = qf_fail(err, QF_E_INPUT, "%s: %s of %llu bytes exceeds the limit of %llu bytes", path, what,
                     (unsigned long long)size, (unsigned long long)limit);
    else if (!(b = malloc((size_t)size + 1)))
        st = qf_fail(err, QF_E_NOMEM, "%s: out of memory reading %llu bytes", path, (unsigned long long)size);
    size_t got = 0;
    while (st == QF_OK && got < size) {
        ssize_t r = read(fd, b + got, (size_t)QF_MIN(size - got, (uint64_t)1 << 30));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) st = qf_fail(err, QF_E_IO, "%s: read failed: %s", path, strerror(errno));
        else if (r == 0) st = qf_fail(err, QF_E_IO, "%s: the file shrank while being read", path);
        else got += (size_t)r;
    }
    close(fd);
    if (st != QF_OK) {
        free(b);
        return st;
    }
    b[got] = '\0';
    *buf = b;
    *len = got;
    return QF_OK;
}

bool qf_infile_has_magic(const char *path, const void *magic, size_t n) {
    int fd;
    uint64_t size;
    if (qf_infile_open(path, &fd, &size, NULL) != QF_OK) return false;
    uint8_t head[16];
    bool yes = n <= sizeof head && size >= n && read(fd, head, n) == (ssize_t)n && memcmp(head, magic, n) == 0;
    close(fd);
    return yes;
}

/* ---- mappings ---------------------------------------------------------------------------------- */

static void registry_add(const char *path, const void *map, uint64_t size) {
    for (int i = 0; i < QF_INFILE_MAX_MAPS; i++) {
        int expect = SLOT_FREE;
        if (!atomic_compare_exchange_strong(&g_map_state[i], &expect, SLOT_FILLING)) continue;
        g_map_base[i] = (uintptr_t)map;
        g_map_size[i] = size;
        snprintf(g_map_path[i], QF_INFILE_PATH, "%s", path);
        atomic_store(&g_map_state[i], SLOT_ACTIVE); /* fields complete before the handler may read them */
        return;
    }
}

static void registry_remove(const void *map) {
    for (int i = 0; i < QF_INFILE_MAX_MAPS; i++)
        if (atomic_load(&g_map_state[i]) == SLOT_ACTIVE && g_map_base[i] == (uintptr_t)map) {
            atomic_store(&g_map_state[i], SLOT_FREE);
            return;
        }
}

qf_status qf_infile_map(const char *path, int fd, uint64_t size, void **map, qf_error *err) {
    *map = NULL;
    if (size == 0 || size > SIZE_MAX)
        return qf_fail(err, QF_E_UNSUPPORTED, "%s: a file of %llu bytes cannot be mapped", path, (unsigned long long)size);
    void *p = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED)
        return qf_fail(err, QF_E_IO, "%s: mmap of %llu bytes failed: %s", path, (unsigned long long)size, strerror(errno));
    registry_add(path, p, size);
    *map = p;
    return QF_OK;
}

void qf_infile_unmap(void *map, uint64_t size) {
    if (!map) return;
    registry_remove(map);
    munmap(map, (size_t)size);
}

const char *qf_infile_mapped_path(const void *addr) {
    uintptr_t a = (uintptr_t)addr;
    for (int i = 0; i < QF_INFILE_MAX_MAPS; i++)
        if (atomic_load(&g_map_state[i]) == SLOT_ACTIVE && a >= g_map_base[i] && a - g_map_base[i] < g_map_size[i])
            return g_map_path[i];
    return NULL;
}

const char *const qf_model_side_files[QF_MODEL_SIDE_FILES] = {"config.json", "tokenizer.json", "tokenizer.model",
                                                              "tokenizer_config.json", "special_tokens_map.json",
                                                              "added_tokens.json"};

bool qf_model_dir_reads(const char *name) {
    size_t n = strlen(name), k = strlen(".safetensors");
    if ((n > k && !strcmp(name + n - k, ".safetensors")) || !strcmp(name, "model.safetensors.index.json") ||
        !strcmp(name, "generation_config.json"))
        return true;
    for (size_t f = 0; f < QF_MODEL_SIDE_FILES; f++)
        if (!strcmp(name, qf_model_side_files[f])) return true;
    return false;
}
