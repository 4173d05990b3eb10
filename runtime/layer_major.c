/* layer_major.c — planning a layer-major run (qforge.h: qf_layer_major_info): whether to go layer-major,
 * what it keeps resident, and how many chunks a group may hold within the memory bound. The passes
 * themselves are graph.c's (qf_rt_lm_*). */
#include "runtime/runtime.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool qf_parse_size(const char *s, uint64_t *out) {
    if (!s || !isdigit((unsigned char)*s)) return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno) return false;
    int shift = 0;
    switch (toupper((unsigned char)*end)) {
    case 'K': shift = 10; break;
    case 'M': shift = 20; break;
    case 'G': shift = 30; break;
    case 'T': shift = 40; break;
    default: break;
    }
    if (shift) {
        end++;
        if (end[0] == 'i' && end[1] == 'B') end += 2;
        else if (toupper((unsigned char)end[0]) == 'B') end++;
    } else if (toupper((unsigned char)*end) == 'B') end++;
    if (*end || v == 0 || (shift && v > (UINT64_MAX >> shift))) return false;
    *out = (uint64_t)v << shift;
    return true;
}

/* The tightest memory limit of this process's cgroup and its ancestors (cgroup v2 memory.max, v1
 * memory.limit_in_bytes), or UINT64_MAX: a container's limit binds the page cache a run may keep as RAM
 * does, and /proc/meminfo does not show it. */
static uint64_t cgroup_limit(void) {
    FILE *f = fopen("/proc/self/cgroup", "r");
    if (!f) return UINT64_MAX;
    char line[4096], path[4096 + 64] = "";
    const char *knob = NULL;
    while (fgets(line, sizeof line, f)) { /* "0::/path" (v2) or "N:memory:/path" (v1) */
        line[strcspn(line, "\n")] = 0;
        char *a = strchr(line, ':'), *b = a ? strchr(a + 1, ':') : NULL;
        if (!b) continue;
        *b = 0;
        if (!strcmp(a + 1, "memory")) {
            snprintf(path, sizeof path, "/sys/fs/cgroup/memory%s", b + 1);
            knob = "memory.limit_in_bytes";
            break;
        }
        if (a + 1 == b && !knob) {
            snprintf(path, sizeof path, "/sys/fs/cgroup%s", b + 1);
            knob = "memory.max";
        }
    }
    fclose(f);
    uint64_t lim = UINT64_MAX;
    for (size_t len = strlen(path); knob && len > 0;) {
        char file[sizeof path + 32];
        snprintf(file, sizeof file, "%.*s/%s", (int)len, path, knob);
        unsigned long long v;
        FILE *k = fopen(file, "r");
        if (k && fscanf(k, "%llu", &v) == 1 && v < lim) lim = v; /* "max" (v2) reads as no number */
        if (k) fclose(k);
        while (len > 0 && path[len - 1] != '/') len--; /* up one level */
        if (len > 0) len--;
        if (len <= strlen("/sys/fs/cgroup")) break;
    }
    return lim;
}

/* Memory a run may count on, in bytes: MemAvailable of /proc/meminfo, or the cgroup's limit where that is
 * lower. QF_MEM_AVAILABLE (a size) stands in for both, so that the automatic choice can be tested on any
 * machine. 0 when unknown. */
uint64_t qf_rt_mem_available(void) {
    uint64_t v = 0;
    const char *env = getenv("QF_MEM_AVAILABLE");
    if (env && qf_parse_size(env, &v)) return v;
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return 0;
    char line[256];
    unsigned long long kb;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) { v = (uint64_t)kb << 10; break; }
    fclose(f);
    return v ? QF_MIN(v, cgroup_limit()) : 0;
}

/* The largest share of the weights resident at once, layers read one at a time, and all of them. Of
 * the embedding only the rows of the group's tokens are read, while the output projection is read
 * whole (at the end): it counts as a layer. */
static void weight_sizes(const qf_rt_model *m, uint64_t *largest, uint64_t *all) {
    *largest = qf_rt_output_bytes(m);
    *all = qf_rt_layer_bytes(m, -1);
    for (uint32_t l = 0; l < m->hp.n_layer; l++) {
        uint64_t b = qf_rt_layer_bytes(m, (int)l);
        *largest = QF_MAX(*largest, b);
        *all += b;
    }
}

void qf_rt_lm_decide(const qf_rt_model *const *m, int n, const qf_layer_major_opts *o, qf_layer_major_info *info) {
    memset(info, 0, sizeof *info);
    for (int i = 0; i < n; i++) {
        uint64_t largest, all;
        weight_sizes(m[i], &largest, &all);
        info->weights_bytes += all + qf_rt_model_owned_bytes(m[i]);
        info->layer_bytes += largest;
    }
    info->mem_available = qf_rt_mem_available();
    info->on = o->on || o->max_memory;
    if (!info->on && info->mem_available && info->weights_bytes > info->mem_available) info->on = info->automatic = true;
    info->limit = o->max_memory ? o->max_memory : info->mem_available;
}

static void mib(char *buf, size_t n, uint64_t b) { snprintf(buf, n, "%.1f MiB", (double)b / (1 << 20)); }

qf_status qf_rt_lm_plan(qf_rt_ctx *const *c, const qf_rt_model *const *m, int n, uint32_t n_chunks,
                        const qf_layer_major_opts *o, qf_layer_major_info *info, qf_error *err) {
    /* the hidden states are held pass by pass, each as wide as the context's buffers */
    uint32_t per_pass = qf_rt_ctx_pass_seqs(c[0]);
    uint64_t pass_bytes = 0;
    info->n_chunks = n_chunks;
    for (int i = 0; i < n; i++) {
        info->buffer_bytes += qf_rt_ctx_bytes(c[i]) + qf_rt_model_owned_bytes(m[i]);
        pass_bytes += qf_rt_lm_pass_bytes(c[i]);
    }
    info->chunk_bytes = pass_bytes / per_pass;
    uint64_t fixed = info->layer_bytes + info->buffer_bytes, passes = (n_chunks + per_pass - 1) / per_pass;
    if (info->limit && !o->max_memory && info->limit < fixed + pass_bytes) {
        /* the machine cannot hold one layer: its pages stream through the page cache within the layer
         * anyway, so only the hidden states are bounded by what is there, and each group still reads
         * every weight once */
        uint64_t room = info->limit > info->buffer_bytes ? info->limit - info->buffer_bytes : 0;
        passes = QF_MAX(1, QF_MIN(passes, room / pass_bytes));
    } else if (info->limit) {
        if (info->limit < fixed + pass_bytes) {
            char a[32], b[32], d[32], need[32], lim[32];
            mib(a, sizeof a, info->layer_bytes), mib(b, sizeof b, info->buffer_bytes), mib(d, sizeof d, pass_bytes);
            mib(need, sizeof need, fixed + pass_bytes), mib(lim, sizeof lim, info->limit);
            return qf_fail(err, QF_E_USAGE, "--max-memory of %s is too small for a layer-major run: one layer's weights "
                           "(%s), the buffers (%s) and the hidden states of one pass of %u chunk%s (%s) need at least %s",
                           lim, a, b, per_pass, per_pass > 1 ? "s" : "", d, need);
        }
        passes = QF_MIN(passes, (info->limit - fixed) / pass_bytes);
    }
    info->chunks_per_group = (uint32_t)QF_MIN((uint64_t)n_chunks, passes * per_pass);
    info->n_groups = (n_chunks + info->chunks_per_group - 1) / info->chunks_per_group;
    info->resident_bytes = fixed + passes * pass_bytes;
    qf_status st = QF_OK;
    for (int i = 0; !st && i < n; i++) st = qf_rt_lm_reserve(c[i], info->chunks_per_group, err);
    return st;
}
