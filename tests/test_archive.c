/*
 * test_archive.c — the archive backend of the tensor source (formats/archive.c).
 *
 * A small model directory is generated in code (config, tokenizer files, two safetensors shards with
 * an index: F32, BF16, and an FP8 weight whose weight_scale_inv follows it in storage order), written
 * with libarchive into tar, tar.gz, tar.zst and zip, with and without a top-level folder, and read back
 * through the backend: raw table, every tensor's bytes, side files, pin/stream/reopen behaviour, and
 * windows (a tensor streamed in pieces, as conversion reads it).
 * A catalogue of malformed archives must fail with a one-line error naming the cause, and seeded
 * mutations of valid archives must fail or succeed without crashing. With ../shared present, a tar of
 * stories260K-fp8 must give the same raw table and bytes as qf_st_open on the directory, and the same
 * logical tensors and rows through qf_source.
 */
#include "testutil.h"

#include "formats/source_impl.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- fixture model ------------------------------------------------------------------------------ */

typedef struct fx_tensor {
    const char *name;
    qf_dtype dt;
    uint32_t n_dims;
    uint64_t shape[2];
    uint32_t shard;
    uint64_t offset, nbytes; /* filled by fx_build */
    uint8_t bytes[256];
} fx_tensor;

typedef struct blob {
    uint8_t *p;
    size_t n;
} blob;

#define SHARD0 "model-00001-of-00002.safetensors"
#define SHARD1 "model-00002-of-00002.safetensors"
static const char *const shard_names[2] = {SHARD0, SHARD1};

/* Storage order: the scale sits after its FP8 weight, so a streaming reader meets the weight first. */
static fx_tensor fx[] = {
    {"model.embed_tokens.weight", QF_DT_F32, 2, {4, 8}, 0, 0, 0, {0}},
    {"model.norm.weight", QF_DT_BF16, 1, {8, 0}, 0, 0, 0, {0}},
    {"model.layers.0.mlp.up_proj.weight", QF_DT_F8_E4M3, 2, {16, 8}, 1, 0, 0, {0}},
    {"model.layers.0.mlp.up_proj.weight_scale_inv", QF_DT_F32, 2, {1, 1}, 1, 0, 0, {0}},
    {"lm_head.weight", QF_DT_BF16, 2, {4, 8}, 1, 0, 0, {0}},
};
#define N_FX QF_ARRAY_LEN(fx)

static const char fx_config[] = "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\"}\n";
static const char fx_tokenizer[] = "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}}\n";
static const char fx_jinja[] = "{% for m in messages %}{{ m.content }}{% endfor %}";

static void blob_printf(blob *b, const char *fmt, ...) QF_PRINTF(2, 3);
static void blob_printf(blob *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    b->p = realloc(b->p, b->n + (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf((char *)b->p + b->n, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)n;
}

static void blob_append(blob *b, const void *p, size_t n) {
    b->p = realloc(b->p, b->n + n + 1);
    memcpy(b->p + b->n, p, n);
    b->n += n;
}

/* Fill tensor bytes (seeded) and offsets within each shard. */
static void fx_build(uint64_t seed) {
    uint64_t off[2] = {0, 0};
    for (size_t i = 0; i < N_FX; i++) {
        fx_tensor *t = &fx[i];
        uint64_t n = t->shape[0] * (t->n_dims == 2 ? t->shape[1] : 1);
        t->nbytes = n * qf_dtype_size(t->dt);
        t->offset = off[t->shard];
        off[t->shard] += t->nbytes;
        for (uint64_t k = 0; k < t->nbytes; k++) t->bytes[k] = (uint8_t)qf_test_rand(&seed);
        if (t->dt == QF_DT_F32)
            for (uint64_t k = 0; k < n; k++) {
                float v = k == 0 && t->n_dims == 2 && t->shape[0] == 1 ? 0.5f : qf_test_randn(&seed);
                memcpy(t->bytes + 4 * k, &v, 4);
            }
    }
}

/* The safetensors bytes of one shard; `header` replaces the generated JSON when non-NULL. */
static blob fx_shard(uint32_t shard, const char *header) {
    blob h = {0}, out = {0};
    if (header) blob_printf(&h, "%s", header);
    else {
        blob_printf(&h, "{\"__metadata__\":{\"format\":\"pt\"}");
        for (size_t i = 0; i < N_FX; i++) {
            if (fx[i].shard != shard) continue;
            blob_printf(&h, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%llu", fx[i].name, qf_dtype_name(fx[i].dt),
                        (unsigned long long)fx[i].shape[0]);
            if (fx[i].n_dims == 2) blob_printf(&h, ",%llu", (unsigned long long)fx[i].shape[1]);
            blob_printf(&h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)fx[i].offset,
                        (unsigned long long)(fx[i].offset + fx[i].nbytes));
        }
        blob_printf(&h, "}");
    }
    while (h.n % 8) blob_printf(&h, " ");
    uint8_t len[8];
    for (int k = 0; k < 8; k++) len[k] = (uint8_t)((uint64_t)h.n >> (8 * k));
    blob_append(&out, len, 8);
    blob_append(&out, h.p, h.n);
    for (size_t i = 0; i < N_FX; i++)
        if (fx[i].shard == shard) blob_append(&out, fx[i].bytes, (size_t)fx[i].nbytes);
    free(h.p);
    return out;
}

static blob fx_index(void) {
    blob b = {0};
    blob_printf(&b, "{\"metadata\": {\"total_size\": 0}, \"weight_map\": {");
    for (size_t i = 0; i < N_FX; i++)
        blob_printf(&b, "%s\"%s\": \"%s\"", i ? ", " : "", fx[i].name, shard_names[fx[i].shard]);
    blob_printf(&b, "}}\n");
    return b;
}

/* ---- archive writing ---------------------------------------------------------------------------- */

typedef enum { AK_TAR, AK_TGZ, AK_TZST, AK_ZIP } arch_kind;
static const char *const kind_ext[] = {"tar", "tar.gz", "tar.zst", "zip"};

typedef struct aentry {
    char path[4096 + 512];
    blob data;   /* borrowed; p == NULL with n > 0 writes n zero bytes */
    char type;   /* 'f' file, 'u' file of undeclared size, 'd' directory, 'l' symlink, 'h' hard link */
    const char *link;
} aentry;

typedef struct aset {
    aentry e[32];
    size_t n;
    blob owned[16];
    size_t n_owned;
} aset;

static void aset_add(aset *s, const char *path, blob data, char type, const char *link) {
    aentry *e = &s->e[s->n++];
    snprintf(e->path, sizeof e->path, "%s", path);
    e->data = data;
    e->type = type;
    e->link = link;
}

/* An owned copy of text or a blob kept alive for the set's lifetime. */
static blob aset_keep(aset *s, blob b) {
    s->owned[s->n_owned++] = b;
    return b;
}

static blob text_blob(const char *s) { return (blob){(uint8_t *)(uintptr_t)s, strlen(s)}; }

static void aset_free(aset *s) {
    for (size_t i = 0; i < s->n_owned; i++) free(s->owned[i].p);
    memset(s, 0, sizeof *s);
}

/* The fixture model under `prefix` ("" or "top/"), with optional replacements of shard 1's JSON
 * header and of the index text. `ftype` 'u' writes members without a declared size (zip only). */
static void fx_entries_ex(aset *s, const char *prefix, const char *shard1_header, const char *index, char ftype) {
    char p[256];
#define ADD(name, data) (snprintf(p, sizeof p, "%s%s", prefix, name), aset_add(s, p, data, ftype, NULL))
    if (prefix[0]) {
        snprintf(p, sizeof p, "%s", prefix);
        aset_add(s, p, (blob){0}, 'd', NULL);
    }
    ADD("config.json", text_blob(fx_config));
    ADD("tokenizer.json", text_blob(fx_tokenizer));
    ADD("chat_template.jinja", text_blob(fx_jinja));
    ADD("README.md", text_blob("not kept\n"));
    ADD(SHARD0, aset_keep(s, fx_shard(0, NULL)));
    ADD("model.safetensors.index.json", index ? text_blob(index) : aset_keep(s, fx_index()));
    ADD(SHARD1, aset_keep(s, fx_shard(1, shard1_header)));
#undef ADD
}

static void fx_entries(aset *s, const char *prefix, const char *shard1_header) {
    fx_entries_ex(s, prefix, shard1_header, NULL, 'f');
}

static bool write_archive(const char *out, arch_kind kind, const aset *s) {
    struct archive *a = archive_write_new();
    if (kind == AK_ZIP) archive_write_set_format_zip(a);
    else archive_write_set_format_pax_restricted(a);
    if (kind == AK_TGZ) archive_write_add_filter_gzip(a);
    if (kind == AK_TZST) archive_write_add_filter_zstd(a);
    bool ok = archive_write_open_filename(a, out) == ARCHIVE_OK;
    for (size_t i = 0; ok && i < s->n; i++) {
        const aentry *e = &s->e[i];
        struct archive_entry *ae = archive_entry_new();
        archive_entry_set_pathname(ae, e->path);
        archive_entry_set_mtime(ae, 1700000000, 0);
        archive_entry_set_perm(ae, e->type == 'd' ? 0755 : 0644);
        if (e->type == 'h') {
            archive_entry_set_filetype(ae, AE_IFREG);
            archive_entry_set_hardlink(ae, e->link);
            archive_entry_set_size(ae, 0);
        } else if (e->type == 'l') {
            archive_entry_set_filetype(ae, AE_IFLNK);
            archive_entry_set_symlink(ae, e->link);
        } else if (e->type == 'd') {
            archive_entry_set_filetype(ae, AE_IFDIR);
        } else {
            archive_entry_set_filetype(ae, AE_IFREG);
            if (e->type == 'f') archive_entry_set_size(ae, (la_int64_t)e->data.n);
        }
        ok = archive_write_header(a, ae) == ARCHIVE_OK;
        if (ok && (e->type == 'f' || e->type == 'u') && e->data.n && e->data.p)
            ok = archive_write_data(a, e->data.p, e->data.n) == (la_ssize_t)e->data.n;
        for (size_t done = 0, step; ok && !e->data.p && done < e->data.n; done += step) {
            static const uint8_t zeros[1 << 16];
            step = QF_MIN(sizeof zeros, e->data.n - done);
            ok = archive_write_data(a, zeros, step) == (la_ssize_t)step;
        }
        if (!ok) fprintf(stderr, "write_archive %s: %s\n", out, archive_error_string(a));
        archive_entry_free(ae);
    }
    ok = archive_write_close(a) == ARCHIVE_OK && ok;
    archive_write_free(a);
    return ok;
}

/* ---- reading helpers ---------------------------------------------------------------------------- */

static void check_error(qf_status st, const qf_error *err, const char *path, const char *expect, const char *what);
static bool write_streamed_zip(const char *path, const aset *s);

typedef struct opened {
    const qf_source_backend *ops;
    void *impl;
    qf_source_raw raw;
} opened;

static qf_status open_backend(const char *path, opened *o, qf_error *err) {
    memset(o, 0, sizeof *o);
    qf_error_clear(err);
    return qf_archive_backend_open(path, &o->ops, &o->impl, &o->raw, err);
}

/* Open and stream every tensor; the first failure's status (message in err). */
static qf_status open_and_stream(const char *path, qf_error *err) {
    opened o;
    qf_status st = open_backend(path, &o, err);
    for (size_t i = 0; st == QF_OK && i < o.raw.n; i++) {
        const uint8_t *d;
        st = o.ops->raw_bytes(o.impl, i, &d, err);
        if (st == QF_OK) o.ops->release(o.impl, i);
    }
    if (o.impl) o.ops->close(o.impl);
    return st;
}

static bool tensor_bytes_ok(opened *o, size_t i, const uint8_t *want, uint64_t n) {
    const uint8_t *d = NULL;
    qf_error err;
    qf_status st = o->ops->raw_bytes(o->impl, i, &d, &err);
    if (st != QF_OK) fprintf(stderr, "raw_bytes(%zu): %s\n", i, err.msg);
    return st == QF_OK && d && memcmp(d, want, (size_t)n) == 0;
}

/* ---- valid archives ----------------------------------------------------------------------------- */

static void check_table(const opened *o, const char *what) {
    CHECK_MSG(o->raw.n == N_FX && o->raw.sequential, "%s: %zu tensors", what, o->raw.n);
    for (size_t i = 0; i < N_FX && i < o->raw.n; i++) {
        const qf_st_tensor *t = &o->raw.tensors[i];
        bool same = strcmp(t->name, fx[i].name) == 0 && t->dtype == fx[i].dt && t->n_dims == fx[i].n_dims &&
                    t->shape[0] == fx[i].shape[0] && (t->n_dims < 2 || t->shape[1] == fx[i].shape[1]) &&
                    t->offset == fx[i].offset && t->nbytes == fx[i].nbytes && t->shard == fx[i].shard && !t->data;
        CHECK_MSG(same, "%s: raw tensor %zu is '%s' shard %u offset %llu", what, i, t->name, t->shard,
                  (unsigned long long)t->offset);
    }
}

static void check_side_files(opened *o, const char *what) {
    qf_error err;
    char *buf = NULL;
    size_t len = 0;
    CHECK_OK(o->ops->read_file(o->impl, "config.json", &buf, &len, &err), &err);
    CHECK_MSG(buf && len == strlen(fx_config) && strcmp(buf, fx_config) == 0, "%s: config.json", what);
    free(buf);
    buf = NULL;
    CHECK_OK(o->ops->read_file(o->impl, "chat_template.jinja", &buf, &len, &err), &err);
    CHECK_MSG(buf && strcmp(buf, fx_jinja) == 0, "%s: chat_template.jinja", what);
    free(buf);
    buf = NULL;
    CHECK_OK(o->ops->read_file(o->impl, "tokenizer.json", &buf, NULL, &err), &err);
    CHECK(buf && strcmp(buf, fx_tokenizer) == 0);
    free(buf);
    buf = NULL;
    CHECK(o->ops->read_file(o->impl, "README.md", &buf, &len, &err) == QF_E_NOTFOUND);
    CHECK(o->ops->read_file(o->impl, "tokenizer.model", &buf, &len, &err) == QF_E_NOTFOUND);
    CHECK_MSG(strstr(err.msg, "tokenizer.model") != NULL, "%s", err.msg);
    CHECK(o->ops->read_file(o->impl, SHARD0, &buf, &len, &err) == QF_E_NOTFOUND);
    CHECK(buf == NULL);
}

/* Everything a converter does with a valid archive, twice over (the second pass reopens). */
static void check_valid_archive(const char *path, const char *what) {
    CHECK_MSG(qf_archive_detect(path), "%s: not detected", what);
    opened o;
    qf_error err;
    qf_status st = open_backend(path, &o, &err);
    CHECK_MSG(st == QF_OK, "%s: open: %s", what, err.msg);
    if (st != QF_OK) return;
    check_table(&o, what);
    check_side_files(&o, what);
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < N_FX && i < o.raw.n; i++) {
            CHECK_MSG(tensor_bytes_ok(&o, i, fx[i].bytes, fx[i].nbytes), "%s: pass %d tensor %zu bytes", what, pass, i);
            o.ops->release(o.impl, i);
        }
    o.ops->close(o.impl);
}

static void test_formats(void) {
    for (arch_kind k = AK_TAR; k <= AK_ZIP; k++)
        for (int top = 0; top < 2; top++) {
            aset s = {0};
            fx_entries(&s, top ? "my-model/" : "", NULL);
            char name[64], path[1024], what[96];
            snprintf(name, sizeof name, "model%s.%s", top ? "-top" : "", kind_ext[k]);
            qf_test_path(name, path, sizeof path);
            snprintf(what, sizeof what, "%s", name);
            CHECK_MSG(write_archive(path, k, &s), "writing %s", name);
            check_valid_archive(path, what);
            aset_free(&s);
        }
}

/* "./" prefixes (tar -C dir .), a deeper folder, macOS "._" resource forks, and unrelated members
 * elsewhere (including a shard-looking file outside the model directory) must all be harmless. */
static void test_layout_variants(void) {
    aset s = {0};
    aset_add(&s, "./other/notes.txt", text_blob("hello"), 'f', NULL);
    aset_add(&s, "./other/garbage.safetensors", text_blob("not a safetensors file"), 'f', NULL);
    aset_add(&s, "./a/b/._config.json", text_blob("\x00\x05\x16\x07 resource fork"), 'f', NULL);
    aset_add(&s, "./a/b/._" SHARD0, text_blob("\x00\x05\x16\x07 resource fork"), 'f', NULL);
    fx_entries(&s, "./a//b/", NULL);
    aset_add(&s, "./other/more.json", text_blob("{}"), 'f', NULL);
    char path[1024];
    qf_test_path("variants.tar.gz", path, sizeof path);
    CHECK(write_archive(path, AK_TGZ, &s));
    check_valid_archive(path, "variants.tar.gz");
    aset_free(&s);
}

/* A single shard without an index, as many small repos ship: model.safetensors, or any one name. A
 * side file stored as a link is reported when read, not at open (the model may not need it). */
static void test_single_file(void) {
    for (size_t i = 0; i < N_FX; i++) fx[i].shard = 0;
    fx_build(7);
    static const char *const names[] = {"m/model.safetensors", "m/weights.safetensors"};
    for (size_t v = 0; v < 2; v++) {
        aset s = {0};
        aset_add(&s, "m/config.json", text_blob(fx_config), 'f', NULL);
        aset_add(&s, "m/tokenizer.json", (blob){0}, 'l', "../blobs/1234");
        aset_add(&s, names[v], aset_keep(&s, fx_shard(0, NULL)), 'f', NULL);
        char path[1024];
        qf_test_path(v ? "single-other.zip" : "single.zip", path, sizeof path);
        CHECK(write_archive(path, AK_ZIP, &s));
        opened o;
        qf_error err;
        CHECK_OK(open_backend(path, &o, &err), &err);
        if (o.impl) {
            CHECK(o.raw.n == N_FX);
            for (size_t i = 0; i < o.raw.n && i < N_FX; i++) {
                CHECK(o.raw.tensors[i].shard == 0 && o.raw.tensors[i].offset == fx[i].offset);
                CHECK(tensor_bytes_ok(&o, i, fx[i].bytes, fx[i].nbytes));
                o.ops->release(o.impl, i);
            }
            char *buf = NULL;
            check_error(o.ops->read_file(o.impl, "tokenizer.json", &buf, NULL, &err), &err, path, "stored as a link",
                        "linked side file");
            o.ops->close(o.impl);
        }
        aset_free(&s);
    }
    for (size_t i = 0; i < N_FX; i++) fx[i].shard = i < 2 ? 0 : 1;
    fx_build(1);
}

/* A side file over the 256 MiB cap (zeros, so the archives stay small) is refused when read; the
 * model still opens. Both a declared size and a streamed zip member of unknown size. */
static void test_side_file_limit(void) {
    for (int streamed = 0; streamed < 2; streamed++) {
        aset s = {0};
        fx_entries_ex(&s, "", NULL, NULL, streamed ? 'u' : 'f');
        aset_add(&s, "huge.txt", (blob){NULL, (256u << 20) + 1}, streamed ? 'u' : 'f', NULL);
        char path[1024];
        qf_test_path(streamed ? "huge-side.zip" : "huge-side.tar.gz", path, sizeof path);
        CHECK(streamed ? write_streamed_zip(path, &s) : write_archive(path, AK_TGZ, &s));
        opened o;
        qf_error err;
        CHECK_OK(open_backend(path, &o, &err), &err);
        if (o.impl) {
            char *buf = NULL;
            check_error(o.ops->read_file(o.impl, "huge.txt", &buf, NULL, &err), &err, path, "256 MiB limit",
                        "huge side file");
            CHECK_OK(o.ops->read_file(o.impl, "config.json", &buf, NULL, &err), &err);
            free(buf);
            o.ops->close(o.impl);
        }
        aset_free(&s);
    }
}

/* Pinned tensors are kept when streaming passes them; unpinned ones behind the stream cost a reopen.
 * The archive is renamed away mid-way so that any reopen shows up as a failure. */
/* The fixture as a .tar under name (with `prefix` as its top folder), opened; path and path.moved for
 * tests that rename it away to prove no reopen happens. False (nothing to free) when it fails. */
static bool open_fixture_tar(const char *name, const char *prefix, char *path, char *moved, opened *o) {
    aset s = {0};
    fx_entries(&s, prefix, NULL);
    qf_test_path(name, path, 1024);
    snprintf(moved, 1100, "%s.moved", path);
    bool ok = write_archive(path, AK_TAR, &s);
    aset_free(&s);
    qf_error err;
    CHECK(ok);
    CHECK_OK(open_backend(path, o, &err), &err);
    return ok && o->impl;
}

static void test_pin_and_order(void) {
    char path[1024], moved[1100];
    opened o;
    qf_error err;
    if (!open_fixture_tar("pin.tar", "top/", path, moved, &o)) return;
    const uint8_t *a = NULL, *b = NULL;
    o.ops->pin(o.impl, 0);
    o.ops->pin(o.impl, 3);                                   /* the scale after the FP8 weight */
    CHECK(tensor_bytes_ok(&o, 2, fx[2].bytes, fx[2].nbytes)); /* passes 0 (kept) and 1 (dropped) */
    CHECK(o.ops->raw_bytes(o.impl, 2, &a, &err) == QF_OK && o.ops->raw_bytes(o.impl, 2, &b, &err) == QF_OK && a == b);
    CHECK(rename(path, moved) == 0);
    CHECK(tensor_bytes_ok(&o, 0, fx[0].bytes, fx[0].nbytes)); /* pinned: no reopen needed */
    CHECK(tensor_bytes_ok(&o, 3, fx[3].bytes, fx[3].nbytes)); /* forward from 2 */
    o.ops->release(o.impl, 0);
    qf_status st = o.ops->raw_bytes(o.impl, 1, &a, &err);   /* behind, unpinned: must reopen, which fails */
    CHECK_MSG(st == QF_E_IO && strstr(err.msg, "pin.tar"), "%s: %s", qf_status_name(st), err.msg);
    CHECK(rename(moved, path) == 0);
    CHECK(tensor_bytes_ok(&o, 1, fx[1].bytes, fx[1].nbytes)); /* reopened */
    CHECK(tensor_bytes_ok(&o, 4, fx[4].bytes, fx[4].nbytes));
    CHECK(tensor_bytes_ok(&o, 2, fx[2].bytes, fx[2].nbytes)); /* still held: never released */
    CHECK(o.ops->raw_bytes(o.impl, N_FX, &a, &err) == QF_E_INTERNAL);
    for (size_t i = 0; i < N_FX; i++) o.ops->release(o.impl, i);
    o.ops->release(o.impl, N_FX + 5); /* out of range: ignored */
    o.ops->pin(o.impl, N_FX + 5);
    o.ops->close(o.impl);
}

/* Windows stream a tensor in pieces (what conversion does, so an archive never holds a large tensor):
 * forward windows read on without reopening; a whole tensor wanted meanwhile (the FP8 weight's scale,
 * stored after it) comes from a second stream; a window that moves backwards reopens the archive. */
static void test_windows(void) {
    char path[1024], moved[1100];
    opened o;
    qf_error err;
    if (!open_fixture_tar("window.tar", "", path, moved, &o)) return;
    const uint8_t *w = NULL, *sc = NULL;
    uint64_t half = fx[2].nbytes / 2;
    CHECK_OK(o.ops->window(o.impl, 2, 0, half, &w, &err), &err);
    CHECK(w && memcmp(w, fx[2].bytes, (size_t)half) == 0);
    CHECK_OK(o.ops->raw_bytes(o.impl, 3, &sc, &err), &err); /* after the window's tensor: the side stream */
    CHECK(sc && memcmp(sc, fx[3].bytes, (size_t)fx[3].nbytes) == 0);
    CHECK(rename(path, moved) == 0); /* from here on, any reopen fails */
    CHECK_OK(o.ops->window(o.impl, 2, half - 4, fx[2].nbytes, &w, &err), &err); /* overlapping, forward */
    CHECK(w && memcmp(w, fx[2].bytes + half - 4, (size_t)(fx[2].nbytes - half + 4)) == 0);
    qf_status st = o.ops->window(o.impl, 2, 0, 8, &w, &err); /* backwards: reopens */
    CHECK_MSG(st == QF_E_IO && strstr(err.msg, "window.tar"), "%s: %s", qf_status_name(st), err.msg);
    CHECK(rename(moved, path) == 0);
    CHECK_OK(o.ops->window(o.impl, 2, 0, 8, &w, &err), &err);
    CHECK(w && memcmp(w, fx[2].bytes, 8) == 0);
    CHECK(o.ops->window(o.impl, 2, 0, fx[2].nbytes + 1, &w, &err) == QF_E_INTERNAL);
    o.ops->release(o.impl, 2);
    CHECK(tensor_bytes_ok(&o, 4, fx[4].bytes, fx[4].nbytes)); /* the main stream goes on after a window */
    o.ops->close(o.impl);

    /* the same through qf_source: rows in windows of one row equal rows of the tensor read whole */
    qf_source *a = NULL, *b = NULL;
    CHECK_OK(qf_source_open(path, &a, &err), &err);
    CHECK_OK(qf_source_open(path, &b, &err), &err);
    for (size_t i = 0; a && b && i < qf_source_n_tensors(a); i++) {
        const qf_src_tensor *t = qf_source_tensor(a, i);
        float *whole = malloc(t->n_rows * t->row_len * sizeof *whole), *row = malloc(t->row_len * sizeof *row);
        CHECK_OK(qf_source_rows(a, i, 0, t->n_rows, whole, &err), &err);
        for (uint64_t r = 0; r < t->n_rows; r++) {
            CHECK_OK(qf_source_prepare_rows(b, i, r, 1, &err), &err);
            CHECK_OK(qf_source_rows(b, i, r, 1, row, &err), &err);
            CHECK_MSG(!memcmp(row, whole + r * t->row_len, t->row_len * sizeof *row), "'%s' row %llu", t->name,
                      (unsigned long long)r);
            if (r + 1 < t->n_rows) CHECK(qf_source_rows(b, i, r + 1, 1, row, &err) == QF_E_INTERNAL); /* not prepared */
        }
        qf_source_release(a, i);
        qf_source_release(b, i);
        free(whole);
        free(row);
    }
    qf_source_close(a);
    qf_source_close(b);
}

static void test_detect(void) {
    char path[1024];
    blob shard = fx_shard(0, NULL);
    qf_test_path(SHARD0, path, sizeof path);
    CHECK(qf_test_write_file(path, shard.p, shard.n));
    CHECK(!qf_archive_detect(path));
    free(shard.p);
    qf_test_path("config.json", path, sizeof path);
    CHECK(qf_test_write_file(path, fx_config, strlen(fx_config)));
    CHECK(!qf_archive_detect(path));
    qf_test_path("index.json", path, sizeof path);
    CHECK(qf_test_write_file(path, "  \n[1, 2]", 9));
    CHECK(!qf_archive_detect(path));
    qf_test_path("empty", path, sizeof path);
    CHECK(qf_test_write_file(path, "", 0));
    CHECK(!qf_archive_detect(path));
    qf_test_path("text.txt", path, sizeof path);
    CHECK(qf_test_write_file(path, "just some text\nline two\n", 24));
    CHECK(!qf_archive_detect(path));
    CHECK(!qf_archive_detect(qf_test_scratch)); /* a directory */
    qf_test_path("does-not-exist.tar", path, sizeof path);
    CHECK(!qf_archive_detect(path));
    CHECK(!qf_archive_detect(NULL));
    /* A damaged archive is still an archive (by magic), so the user gets an archive error. */
    qf_test_path("magic.tar.gz", path, sizeof path);
    CHECK(qf_test_write_file(path, "\x1f\x8b\x08\x00garbage", 12));
    CHECK(qf_archive_detect(path));
}

/* ---- malformed archives ------------------------------------------------------------------------- */

typedef struct bad_case {
    const char *name;
    const char *expect; /* substring of the error */
    arch_kind kind;
} bad_case;

/* Build the malformed variant `c` of the fixture into s. */
static void bad_entries(const bad_case *c, aset *s) {
    const char *n = c->name;
    if (!strcmp(n, "dotdot")) {
        fx_entries(s, "m/", NULL);
        aset_add(s, "m/../../etc/x.json", text_blob("{}"), 'f', NULL);
    } else if (!strcmp(n, "absolute")) {
        aset_add(s, "/abs/config.json", text_blob(fx_config), 'f', NULL);
    } else if (!strcmp(n, "two_configs")) {
        fx_entries(s, "a/", NULL);
        aset_add(s, "b/config.json", text_blob(fx_config), 'f', NULL);
    } else if (!strcmp(n, "no_config")) {
        aset_add(s, "m/tokenizer.json", text_blob(fx_tokenizer), 'f', NULL);
        aset_add(s, "m/model.safetensors", aset_keep(s, fx_shard(0, NULL)), 'f', NULL);
    } else if (!strcmp(n, "corrupt_header")) {
        fx_entries(s, "m/", "{\"x\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]");
    } else if (!strcmp(n, "header_past_data")) {
        /* the header claims more data than the member holds */
        fx_entries(s, "m/", "{\"model.layers.0.mlp.up_proj.weight\":{\"dtype\":\"F8_E4M3\",\"shape\":[16,8],"
                            "\"data_offsets\":[0,128]},\"lm_head.weight\":{\"dtype\":\"F32\",\"shape\":[4096],"
                            "\"data_offsets\":[128,16512]}}");
    } else if (!strcmp(n, "huge_header_len")) {
        fx_entries(s, "m/", NULL);
        uint8_t *p = s->owned[s->n_owned - 1].p;
        p[5] = 0x7f; /* u64 N becomes ~2^47 */
    } else if (!strcmp(n, "tiny_shard")) {
        aset_add(s, "m/config.json", text_blob(fx_config), 'f', NULL);
        aset_add(s, "m/model.safetensors", text_blob("abc"), 'f', NULL);
    } else if (!strcmp(n, "symlink_shard")) {
        aset_add(s, "m/config.json", text_blob(fx_config), 'f', NULL);
        aset_add(s, "m/model.safetensors", (blob){0}, 'l', "/home/user/.cache/blobs/abc");
    } else if (!strcmp(n, "hardlink_shard")) {
        aset_add(s, "m/config.json", text_blob(fx_config), 'f', NULL);
        aset_add(s, "m/real.bin", text_blob("x"), 'f', NULL);
        aset_add(s, "m/model.safetensors", (blob){0}, 'h', "m/real.bin");
    } else if (!strcmp(n, "duplicate")) {
        fx_entries(s, "m/", NULL);
        aset_add(s, "m/" SHARD0, s->e[5].data, 'f', NULL); /* e[0] is the folder */
    } else if (!strcmp(n, "missing_shard")) {
        fx_entries(s, "m/", NULL);
        s->n--; /* drop shard 1, the last entry */
    } else if (!strcmp(n, "no_shards")) {
        aset_add(s, "m/config.json", text_blob(fx_config), 'f', NULL);
    } else if (!strcmp(n, "several_no_index")) {
        aset_add(s, "m/config.json", text_blob(fx_config), 'f', NULL);
        aset_add(s, "m/" SHARD0, aset_keep(s, fx_shard(0, NULL)), 'f', NULL);
        aset_add(s, "m/" SHARD1, aset_keep(s, fx_shard(1, NULL)), 'f', NULL);
    } else if (!strcmp(n, "index_wrong_tensor")) {
        fx_entries(s, "m/", NULL);
        blob *ix = &s->owned[1];
        char *hit = strstr((char *)ix->p, "lm_head.weight");
        if (hit) hit[0] = 'x'; /* "xm_head.weight" is mapped but exists nowhere */
    } else if (!strcmp(n, "index_wrong_shard")) {
        fx_entries(s, "m/", NULL);
        blob *ix = &s->owned[1];
        char *hit = strstr((char *)ix->p, "\"model.norm.weight\": \"model-00001");
        if (hit) memcpy(hit + strlen("\"model.norm.weight\": \"model-0000"), "2", 1);
    } else if (!strcmp(n, "index_not_json")) {
        fx_entries(s, "m/", NULL);
        s->owned[1].p[0] = '[';
    } else if (!strcmp(n, "dotdot_zip")) {
        fx_entries(s, "", NULL);
        aset_add(s, "x/../config.json", text_blob(fx_config), 'f', NULL);
    } else if (!strcmp(n, "index_missing_tensor")) {
        fx_entries(s, "m/", NULL);
        blob *ix = &s->owned[1];
        char *hit = strstr((char *)ix->p, ", \"lm_head.weight\"");
        if (hit) memset(hit, ' ', strlen(", \"lm_head.weight\": \"" SHARD1 "\""));
    } else if (!strcmp(n, "index_bad_file")) {
        fx_entries_ex(s, "m/", NULL, "{\"weight_map\": {\"model.norm.weight\": \"../" SHARD0 "\"}}", 'f');
    } else if (!strcmp(n, "index_twice")) {
        fx_entries_ex(s, "m/", NULL, "{\"weight_map\": {\"lm_head.weight\": \"" SHARD1 "\", \"lm_head.weight\": \""
                      SHARD1 "\"}}", 'f');
    } else if (!strcmp(n, "tensor_in_both")) {
        /* shard 1's 196 data bytes re-described so that it also holds model.norm.weight */
        fx_entries(s, "m/", "{\"model.norm.weight\":{\"dtype\":\"BF16\",\"shape\":[8],\"data_offsets\":[0,16]},"
                            "\"x\":{\"dtype\":\"U8\",\"shape\":[180],\"data_offsets\":[16,196]}}");
    }
}

static const bad_case bad_cases[] = {
    {"dotdot", "'..' path component", AK_TAR},
    {"absolute", "absolute path", AK_TAR},
    {"two_configs", "several model directories", AK_TGZ},
    {"no_config", "no config.json", AK_ZIP},
    {"corrupt_header", "m/" SHARD1, AK_TZST},
    {"header_past_data", "m/" SHARD1, AK_TAR},
    {"huge_header_len", "header length", AK_TAR},
    {"tiny_shard", "fewer than the 8-byte", AK_TAR},
    {"symlink_shard", "stored as a link", AK_TAR},
    {"hardlink_shard", "stored as a link", AK_TAR},
    {"duplicate", "appears twice", AK_TAR},
    {"missing_shard", "not a safetensors member", AK_ZIP},
    {"no_shards", "no *.safetensors", AK_TAR},
    {"several_no_index", "no model.safetensors.index.json", AK_TAR},
    {"index_wrong_tensor", "no such tensor", AK_TAR},
    {"index_wrong_shard", "but it is in", AK_TGZ},
    {"index_not_json", "index.json: not valid JSON", AK_TAR},
    {"dotdot_zip", "'..'", AK_ZIP},
    {"symlink_shard", "stored as a link", AK_ZIP},
    {"index_missing_tensor", "not listed in the index", AK_TAR},
    {"index_bad_file", "not a file name", AK_TAR},
    {"index_twice", "twice", AK_TAR},
    {"tensor_in_both", "appears in both", AK_TAR},
};

/* Offset of a zip's central directory (its first "PK\1\2"), or n. */
static size_t central_directory_at(const uint8_t *p, size_t n) {
    for (size_t i = 0; i + 4 <= n; i++)
        if (memcmp(p + i, "PK\x01\x02", 4) == 0) return i;
    return n;
}

static void check_error(qf_status st, const qf_error *err, const char *path, const char *expect, const char *what) {
    CHECK_MSG(st != QF_OK, "%s: expected an error containing '%s'", what, expect);
    if (st == QF_OK) return;
    CHECK_MSG(strstr(err->msg, expect) != NULL, "%s: message '%s' lacks '%s'", what, err->msg, expect);
    CHECK_MSG(strstr(err->msg, path) != NULL, "%s: message '%s' does not name the archive", what, err->msg);
    CHECK_MSG(strchr(err->msg, '\n') == NULL, "%s: message is not one line", what);
}

static void test_malformed(void) {
    for (size_t i = 0; i < QF_ARRAY_LEN(bad_cases); i++) {
        const bad_case *c = &bad_cases[i];
        aset s = {0};
        bad_entries(c, &s);
        char name[128], path[1024];
        snprintf(name, sizeof name, "bad-%s.%s", c->name, kind_ext[c->kind]);
        qf_test_path(name, path, sizeof path);
        CHECK_MSG(write_archive(path, c->kind, &s), "writing %s", name);
        qf_error err;
        check_error(open_and_stream(path, &err), &err, path, c->expect, name);
        aset_free(&s);
    }
    char path[1024];
    qf_error err;
    qf_test_path("bad-garbage.tar.gz", path, sizeof path);
    CHECK(qf_test_write_file(path, "\x1f\x8b\x08\x00garbage that is not deflate", 31));
    check_error(open_and_stream(path, &err), &err, path, "archive", "garbage gzip");
    qf_test_path("bad-no-central-directory.zip", path, sizeof path);
    aset s = {0};
    fx_entries_ex(&s, "", NULL, NULL, 'u');
    CHECK(write_archive(path, AK_ZIP, &s));
    size_t n;
    uint8_t *b = qf_test_read_file(path, &n);
    CHECK(b && qf_test_write_file(path, b, central_directory_at(b, n)));
    free(b);
    aset_free(&s);
    check_error(open_and_stream(path, &err), &err, path, "ends early", "zip without central directory");
}

/* Cut a valid archive at many points: every prefix must fail cleanly (open or streaming). */
static void test_truncated(void) {
    for (arch_kind k = AK_TAR; k <= AK_ZIP; k++) {
        aset s = {0};
        fx_entries(&s, "t/", NULL);
        char name[64], path[1024], cut[1100];
        snprintf(name, sizeof name, "whole.%s", kind_ext[k]);
        qf_test_path(name, path, sizeof path);
        CHECK(write_archive(path, k, &s));
        aset_free(&s);
        size_t n;
        uint8_t *bytes = qf_test_read_file(path, &n);
        CHECK(bytes != NULL);
        if (!bytes) continue;
        /* The tar end-of-archive blocks (1024 bytes and more up to the 10240-byte record) are padding
         * whose loss libarchive tolerates, so tar cuts stop before them. */
        size_t limit = n, step = n / 37 + 1;
        if (k == AK_TAR)
            while (limit > 512 && bytes[limit - 1] == 0) limit--;
        /* A zip cut inside its central directory still holds every member whole, and libarchive's
         * streaming zip reader (the fallback without a central directory) reads them all: benign. */
        if (k == AK_ZIP) limit = central_directory_at(bytes, n);
        int failures = 0, cuts = 0;
        for (size_t len = 1; len < limit; len += step) {
            snprintf(cut, sizeof cut, "%s.cut", path);
            CHECK(qf_test_write_file(cut, bytes, len));
            qf_error err;
            qf_status st = open_and_stream(cut, &err);
            cuts++;
            if (st != QF_OK) failures++;
            CHECK_MSG(st != QF_OK, "%s cut at %zu of %zu: no error", name, len, n);
            if (st != QF_OK) CHECK_MSG(strstr(err.msg, cut) && !strchr(err.msg, '\n'), "%s", err.msg);
        }
        CHECK(cuts > 10 && failures == cuts);
        free(bytes);
    }
}

/* Seeded byte mutations of valid archives: anything may fail, nothing may crash or leak. */
static void test_mutations(void) {
    const char *env = getenv("QF_TEST_SEED");
    uint64_t seed = env ? strtoull(env, NULL, 0) : 0x5eed0a7c1e;
    printf("mutation seed %#llx (set QF_TEST_SEED to replay another)\n", (unsigned long long)seed);
    for (arch_kind k = AK_TAR; k <= AK_ZIP; k++) {
        char name[64], path[1024], mut[1100];
        snprintf(name, sizeof name, "whole.%s", kind_ext[k]);
        qf_test_path(name, path, sizeof path);
        snprintf(mut, sizeof mut, "%s.mut", path);
        size_t n;
        uint8_t *orig = qf_test_read_file(path, &n);
        if (!orig || n == 0) { free(orig); continue; }
        uint8_t *m = malloc(n);
        int ok = 0;
        for (int iter = 0; iter < 60; iter++) {
            memcpy(m, orig, n);
            int flips = 1 + (int)(qf_test_rand(&seed) % 4);
            for (int f = 0; f < flips; f++) m[qf_test_rand(&seed) % n] ^= (uint8_t)(1 + qf_test_rand(&seed) % 255);
            qf_test_write_file(mut, m, n);
            qf_error err;
            if (open_and_stream(mut, &err) == QF_OK) ok++;
            else CHECK_MSG(err.msg[0] && !strchr(err.msg, '\n'), "mutation %d of %s: bad message [%s]", iter, name, err.msg);
        }
        printf("%s: %d of 60 mutations still read fine\n", name, ok);
        free(m);
        free(orig);
    }
}

/* A zip written from a stream (members without declared sizes, data descriptors) and read without
 * its central directory: libarchive then streams it and never learns sizes up front. */

static bool write_streamed_zip(const char *path, const aset *s) {
    if (!write_archive(path, AK_ZIP, s)) return false;
    size_t n;
    uint8_t *b = qf_test_read_file(path, &n);
    /* keep the central directory's first signature, so the streaming reader sees a proper end */
    bool ok = b && qf_test_write_file(path, b, QF_MIN(n, central_directory_at(b, n) + 4));
    free(b);
    return ok;
}

static void test_streamed_zip(void) {
    aset s = {0};
    fx_entries_ex(&s, "z/", NULL, NULL, 'u');
    char path[1024];
    qf_test_path("streamed.zip", path, sizeof path);
    CHECK(write_streamed_zip(path, &s));
    check_valid_archive(path, "streamed.zip");
    aset_free(&s);
    /* the header length runs past the end of a member whose size nobody declared */
    blob shard = fx_shard(1, NULL);
    shard.n = 40;
    aset_add(&s, "z/config.json", text_blob(fx_config), 'u', NULL);
    aset_add(&s, "z/model.safetensors", shard, 'u', NULL);
    qf_test_path("streamed-short.zip", path, sizeof path);
    CHECK(write_streamed_zip(path, &s));
    qf_error err;
    check_error(open_and_stream(path, &err), &err, path, "ends inside its", "streamed-short.zip");
    free(shard.p);
    aset_free(&s);
}

/* A tensor larger than the first buffer allocation: the buffer grows as bytes arrive. */
static void test_big_tensor(void) {
    const uint64_t n = 3u << 20; /* F32 elements: 12 MiB */
    blob st = {0};
    char hdr[160];
    int hl = snprintf(hdr, sizeof hdr, "{\"big\":{\"dtype\":\"F32\",\"shape\":[%llu],\"data_offsets\":[0,%llu]}}",
                      (unsigned long long)n, (unsigned long long)(4 * n));
    while (hl % 8) hdr[hl++] = ' ';
    uint8_t len[8] = {(uint8_t)hl};
    blob_append(&st, len, 8);
    blob_append(&st, hdr, (size_t)hl);
    size_t data_at = st.n;
    st.p = realloc(st.p, st.n + 4 * n);
    uint64_t seed = 99;
    for (uint64_t i = 0; i < 4 * n; i += 8) {
        uint64_t r = qf_test_rand(&seed);
        memcpy(st.p + data_at + i, &r, 8);
    }
    st.n += 4 * n;
    for (arch_kind k = AK_TAR; k <= AK_TGZ; k++) {
        aset s = {0};
        aset_add(&s, "config.json", text_blob(fx_config), 'f', NULL);
        aset_add(&s, "model.safetensors", st, 'f', NULL);
        char name[64], path[1024];
        snprintf(name, sizeof name, "big.%s", kind_ext[k]);
        qf_test_path(name, path, sizeof path);
        CHECK(write_archive(path, k, &s));
        opened o;
        qf_error err;
        CHECK_OK(open_backend(path, &o, &err), &err);
        if (o.impl) {
            CHECK(o.raw.n == 1 && o.raw.tensors[0].nbytes == 4 * n);
            CHECK_MSG(o.raw.n == 1 && tensor_bytes_ok(&o, 0, st.p + data_at, 4 * n), "%s: big tensor bytes", name);
            o.ops->close(o.impl); /* with the buffer still held: close frees it */
        }
        aset_free(&s);
    }
    free(st.p);
}

/* The archive is replaced between open and streaming: pass 2 must notice, not misread. */
static void test_archive_changed(void) {
    char path[1024], other[1100];
    qf_test_path("changing.tar", path, sizeof path);
    snprintf(other, sizeof other, "%s.next", path);
    aset s = {0}, t = {0};
    fx_entries(&s, "m/", NULL);
    CHECK(write_archive(path, AK_TAR, &s));
    for (int variant = 0; variant < 2; variant++) {
        CHECK(write_archive(path, AK_TAR, &s));
        opened o;
        qf_error err;
        CHECK_OK(open_backend(path, &o, &err), &err);
        if (!o.impl) continue;
        fx_entries(&t, "m/", NULL);
        if (variant == 0) t.n--;                              /* shard 1 gone */
        else t.e[t.n - 1].data.n -= 4;                         /* shard 1 shorter */
        CHECK(write_archive(other, AK_TAR, &t) && rename(other, path) == 0);
        aset_free(&t);
        const uint8_t *d;
        qf_status st = o.ops->raw_bytes(o.impl, 4, &d, &err);
        const char *expect = variant == 0 ? "not found when re-reading" : "bytes now";
        check_error(st, &err, path, expect, variant == 0 ? "shard removed" : "shard shortened");
        o.ops->close(o.impl);
    }
    aset_free(&s);
}

/* ---- the shared FP8 checkpoint ------------------------------------------------------------------ */

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Tar a directory's files (sorted by name, so member order = the directory backend's shard order). */
static bool tar_directory(const char *dir, const char *top, const char *out) {
    DIR *d = opendir(dir);
    if (!d) return false;
    char *names[64];
    size_t n = 0;
    for (struct dirent *e; (e = readdir(d)) && n < QF_ARRAY_LEN(names);)
        if (e->d_name[0] != '.') names[n++] = strdup(e->d_name);
    closedir(d);
    qsort(names, n, sizeof *names, cmp_str);
    aset s = {0};
    bool ok = true;
    for (size_t i = 0; i < n && ok; i++) {
        char p[4096 + 256];
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        blob b = {0};
        b.p = qf_test_read_file(p, &b.n);
        ok = b.p != NULL && s.n_owned < QF_ARRAY_LEN(s.owned);
        if (!ok) { free(b.p); break; }
        snprintf(p, sizeof p, "%s/%s", top, names[i]);
        aset_add(&s, p, aset_keep(&s, b), 'f', NULL);
    }
    ok = ok && write_archive(out, AK_TAR, &s);
    aset_free(&s);
    for (size_t i = 0; i < n; i++) free(names[i]);
    return ok;
}

static void compare_with_directory(const char *dir, const char *tar) {
    qf_st_model *m = NULL;
    opened o;
    qf_error err;
    CHECK_OK(qf_st_open(dir, &m, &err), &err);
    CHECK_OK(open_backend(tar, &o, &err), &err);
    if (!m || !o.impl) { qf_st_close(m); if (o.impl) o.ops->close(o.impl); return; }
    CHECK_MSG(o.raw.n == qf_st_n_tensors(m), "%zu vs %zu tensors", o.raw.n, qf_st_n_tensors(m));
    for (size_t i = 0; i < o.raw.n && i < qf_st_n_tensors(m); i++) {
        const qf_st_tensor *a = &o.raw.tensors[i], *b = qf_st_tensor_at(m, i);
        bool same = strcmp(a->name, b->name) == 0 && a->dtype == b->dtype && a->n_dims == b->n_dims &&
                    memcmp(a->shape, b->shape, sizeof a->shape) == 0 && a->n_elems == b->n_elems &&
                    a->nbytes == b->nbytes && a->offset == b->offset && a->shard == b->shard;
        CHECK_MSG(same, "raw tensor %zu: '%s' vs '%s'", i, a->name, b->name);
        if (same) CHECK_MSG(tensor_bytes_ok(&o, i, b->data, b->nbytes), "bytes of '%s'", a->name);
        o.ops->release(o.impl, i);
    }
    char *x = NULL, *y = NULL;
    size_t nx = 0;
    char p[1100];
    snprintf(p, sizeof p, "%s/tokenizer.model", dir);
    size_t ny = 0;
    y = (char *)qf_test_read_file(p, &ny);
    CHECK_OK(o.ops->read_file(o.impl, "tokenizer.model", &x, &nx, &err), &err);
    CHECK(x && y && nx == ny && memcmp(x, y, nx) == 0);
    free(x);
    free(y);
    o.ops->close(o.impl);
    qf_st_close(m);
}

/* The logical view (FP8 folded with its scales) must not care where the bytes came from. */
static void compare_sources(const char *dir, const char *tar) {
    qf_source *a = NULL, *b = NULL;
    qf_error err;
    CHECK_OK(qf_source_open(dir, &a, &err), &err);
    CHECK_OK(qf_source_open(tar, &b, &err), &err);
    if (a && b) {
        CHECK(qf_source_sequential(b) && !qf_source_sequential(a));
        CHECK(qf_source_n_tensors(a) == qf_source_n_tensors(b));
        for (size_t i = 0; i < qf_source_n_tensors(a) && i < qf_source_n_tensors(b); i++) {
            const qf_src_tensor *ta = qf_source_tensor(a, i), *tb = qf_source_tensor(b, i);
            bool same = strcmp(ta->name, tb->name) == 0 && ta->n_rows == tb->n_rows && ta->row_len == tb->row_len &&
                        ta->scale_kind == tb->scale_kind;
            CHECK_MSG(same, "logical tensor %zu: '%s' vs '%s'", i, ta->name, tb->name);
            if (!same) continue;
            size_t n = (size_t)(ta->n_rows * ta->row_len);
            float *ra = malloc(n * sizeof *ra + 1), *rb = malloc(n * sizeof *rb + 1);
            CHECK_OK(qf_source_rows(a, i, 0, ta->n_rows, ra, &err), &err);
            for (uint64_t r = 0; r < tb->n_rows; r += 3) { /* windows of 3 rows, as conversion reads */
                uint64_t k = QF_MIN(3, tb->n_rows - r);
                CHECK_OK(qf_source_prepare_rows(b, i, r, k, &err), &err);
                CHECK_OK(qf_source_rows(b, i, r, k, rb + r * tb->row_len, &err), &err);
            }
            CHECK_MSG(memcmp(ra, rb, n * sizeof *ra) == 0, "rows of '%s' differ", ta->name);
            qf_source_release(a, i);
            qf_source_release(b, i);
            free(ra);
            free(rb);
        }
        char *x = NULL;
        size_t nx;
        CHECK_OK(qf_source_read_file(b, "config.json", &x, &nx, &err), &err);
        CHECK(x && strstr(x, "LlamaForCausalLM"));
        free(x);
    }
    qf_source_close(a);
    qf_source_close(b);
}

static void test_shared_model(void) {
    char dir[1024], tar[1024];
    if (!qf_test_shared("models/stories260K-fp8", dir, sizeof dir)) return;
    qf_test_path("stories260K-fp8.tar", tar, sizeof tar);
    CHECK(tar_directory(dir, "stories260K-fp8", tar));
    CHECK(qf_archive_detect(tar));
    compare_with_directory(dir, tar);
    compare_sources(dir, tar);
}

int main(int argc, char **argv) {
    qf_test_init(argc, argv);
    for (size_t i = 0; i < N_FX; i++) fx[i].shard = i < 2 ? 0 : 1;
    fx_build(1);
    test_formats();
    test_layout_variants();
    test_single_file();
    test_pin_and_order();
    test_windows();
    test_detect();
    test_malformed();
    test_truncated();
    test_mutations();
    test_streamed_zip();
    test_side_file_limit();
    test_big_tensor();
    test_archive_changed();
    test_shared_model();
    return qf_test_finish();
}
