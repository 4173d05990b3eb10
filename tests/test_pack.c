/*
 * test_pack.c — qforge transport packs (.qfz, formats/qfz.h).
 *   1. round trips byte-identical with 1, 2 and 4 threads; the pack's bytes do not depend on threads;
 *      empty and non-GGUF files; plain zstd decoding of a pack gives the file back
 *   2. damage: a flipped byte in a frame, the index, the header; a frame that decodes cleanly but to
 *      other bytes (per-frame SHA-256); a GGUF whose own digests fail; a pack of a tampered GGUF.
 *      Each fails with the right status, leaves no output and keeps an existing output untouched
 *   3. truncation at every structural boundary and a sample of other lengths; trailing bytes; not a pack
 *   4. seeded single-byte mutations of a small pack (QF_PACK_SEED replays): never accepted
 */
#include "testutil.h"
#include "formats/gguf.h"
#include "formats/qfz.h"

#include <dirent.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

static bool make_model(const char *name, const char *type, char *out, size_t n) {
    char dir[4096];
    qf_test_fresh_dir("synth", dir, sizeof dir);
    qf_synth_opts so = {.dir = dir, .seed = 11, .n_layer = 2, .n_embd = 256, .n_ff = 512, .n_vocab = 512, .dtype = "bf16"};
    qf_error err = {0};
    CHECK_OK(qf_synth_model(&so, &err), &err);
    qf_test_path(name, out, n);
    qf_convert_opts co = {.src = dir, .out = out, .type = type, .threads = 2};
    qf_status st = qf_convert(&co, &err);
    CHECK_OK(st, &err);
    return st == QF_OK;
}

static qf_status pack(const char *src, const char *out, int threads, uint32_t chunk_mib, qf_pack_stats *s, qf_error *err) {
    qf_pack_opts o = {.src = src, .out = out, .threads = threads, .chunk_mib = chunk_mib};
    return qf_pack(&o, s, err);
}

static qf_status unpack(const char *src, const char *out, int threads, qf_pack_stats *s, qf_error *err) {
    qf_pack_opts o = {.src = src, .out = out, .threads = threads};
    return qf_unpack(&o, s, err);
}

/* No ".qf-" temp file may survive a failed unpack. */
static int temps_left(void) {
    DIR *d = opendir(qf_test_scratch);
    struct dirent *e;
    int n = 0;
    while (d && (e = readdir(d))) n += strstr(e->d_name, ".qf-") != NULL;
    if (d) closedir(d);
    return n;
}

/* ---- 1. round trips ---------------------------------------------------------------------------- */

static void test_round_trips(const char *model) {
    char p1[4096], p2[4096], p4[4096], out[4096];
    qf_error err = {0};
    qf_pack_stats s;
    qf_test_path("m1.qfz", p1, sizeof p1);
    qf_test_path("m2.qfz", p2, sizeof p2);
    qf_test_path("m4.qfz", p4, sizeof p4);
    qf_test_path("restored.gguf", out, sizeof out);
    CHECK_OK(pack(model, p1, 1, 1, &s, &err), &err);
    printf("pack: %llu -> %llu bytes in %llu frames of 1 MiB\n", (unsigned long long)s.raw_bytes,
           (unsigned long long)s.packed_bytes, (unsigned long long)s.frames);
    CHECK(s.frames >= 3 && s.packed_bytes < s.raw_bytes);
    CHECK_OK(pack(model, p2, 2, 1, &s, &err), &err);
    CHECK_OK(pack(model, p4, 4, 1, &s, &err), &err);
    CHECK(qf_test_same_file(p1, p2) && qf_test_same_file(p1, p4));
    for (int t = 1; t <= 4; t *= 2) {
        unlink(out);
        CHECK_OK(unpack(p1, out, t, &s, &err), &err);
        CHECK_MSG(qf_test_same_file(model, out), "round trip with %d threads", t);
        CHECK(s.gguf_checked && s.frames >= 3);
    }
    /* plain zstd reads the pack as a zstd stream (skippable frames are skipped) */
    size_t n = 0, mn = 0;
    uint8_t *packed = qf_test_read_file(p1, &n), *m = qf_test_read_file(model, &mn);
    uint8_t *raw = malloc(mn + 1);
    size_t got = raw && packed ? ZSTD_decompress(raw, mn + 1, packed, n) : 0;
    CHECK(raw && !ZSTD_isError(got) && got == mn && m && memcmp(raw, m, mn) == 0);
    free(packed);
    free(raw);
    free(m);

    /* an empty file and a file that is not a GGUF */
    char e[4096], ep[4096], eo[4096];
    CHECK(qf_test_write_file(qf_test_path("empty", e, sizeof e), "", 0));
    CHECK_OK(pack(e, qf_test_path("empty.qfz", ep, sizeof ep), 2, 0, &s, &err), &err);
    CHECK(s.frames == 0);
    CHECK_OK(unpack(ep, qf_test_path("empty.out", eo, sizeof eo), 2, &s, &err), &err);
    CHECK(qf_test_same_file(e, eo) && !s.gguf_checked);
    char text[300000];
    for (size_t i = 0; i < sizeof text; i++) text[i] = (char)('a' + (i * 7 + i / 13) % 26);
    CHECK(qf_test_write_file(e, text, sizeof text));
    CHECK_OK(pack(e, ep, 2, 0, &s, &err), &err);
    CHECK(s.packed_bytes < sizeof text / 4);
    CHECK_OK(unpack(ep, eo, 2, &s, &err), &err);
    CHECK(qf_test_same_file(e, eo) && !s.gguf_checked);

    /* the output may not be the input (the rename would replace the file being read) */
    CHECK(pack(e, e, 1, 0, &s, &err) == QF_E_USAGE && strstr(err.msg, "the output is the input"));
    CHECK(unpack(ep, ep, 1, &s, &err) == QF_E_USAGE);
    CHECK(qf_test_same_file(e, eo));

    /* options and missing inputs */
    CHECK(pack(e, ep, 1, 257, &s, &err) == QF_E_USAGE);
    qf_pack_opts lo = {.src = e, .out = ep, .level = 99};
    CHECK(qf_pack(&lo, &s, &err) == QF_E_USAGE && strstr(err.msg, "level"));
    CHECK(pack(qf_test_path("no-such-file", e, sizeof e), ep, 1, 0, &s, &err) == QF_E_NOTFOUND && strstr(err.msg, "no-such-file"));
    CHECK(temps_left() == 0);
}

/* ---- 2. damage --------------------------------------------------------------------------------- */

typedef struct pack_view {
    uint8_t *b;
    size_t n;
    uint64_t chunk, raw_size, n_frames, index_off;
} pack_view;

/* Reads the layout straight from the bytes, as docs/integrity.md describes it. */
static bool view(const char *path, pack_view *v) {
    v->b = qf_test_read_file(path, &v->n);
    if (!v->b || v->n < 72) return false;
    memcpy(&v->chunk, v->b + 8 + 16, 8);
    memcpy(&v->raw_size, v->b + 8 + 24, 8);
    memcpy(&v->n_frames, v->b + 8 + 32, 8);
    memcpy(&v->index_off, v->b + 8 + 40, 8);
    return v->index_off + 8 + v->n_frames * 64 + 48 == v->n;
}

static uint64_t entry_u64(const pack_view *v, uint64_t i, int field) {
    uint64_t x;
    memcpy(&x, v->b + v->index_off + 8 + i * 64 + 8 * (uint64_t)field, 8);
    return x;
}

/* Unpack must fail with `want` (or any failure if want == QF_OK), leave `out` as it was, and no temp. */
static void expect_fail(const char *label, const char *packed, qf_status want, const char *msg_part) {
    char out[4096];
    qf_test_path("keep.out", out, sizeof out);
    CHECK(qf_test_write_file(out, "previous", 8));
    qf_error err = {0};
    qf_pack_stats s;
    qf_status st = unpack(packed, out, 2, &s, &err);
    CHECK_MSG(st != QF_OK && (want == QF_OK || st == want), "%s: %s: %s", label, qf_status_name(st), err.msg);
    CHECK_MSG(!msg_part || strstr(err.msg, msg_part), "%s: message '%s' lacks '%s'", label, err.msg, msg_part);
    CHECK_MSG(strstr(err.msg, packed) != NULL, "%s: message does not name the pack: %s", label, err.msg);
    size_t n = 0;
    uint8_t *b = qf_test_read_file(out, &n);
    CHECK_MSG(b && n == 8 && memcmp(b, "previous", 8) == 0, "%s: existing output changed", label);
    free(b);
    CHECK_MSG(temps_left() == 0, "%s: temp file left behind", label);
    printf("damage: %-34s -> %-12s %s\n", label, qf_status_name(st), err.msg);
}

static void write_variant(const char *path, const pack_view *v, size_t off, uint8_t x) {
    v->b[off] ^= x;
    CHECK(qf_test_write_file(path, v->b, v->n));
    v->b[off] ^= x;
}

/* Replaces the last frame with a valid zstd frame of different bytes and rebuilds the index hash: only
 * the frame's SHA-256 can tell. Built from the documented layout, independently of qfz.c. */
static bool forge_last_frame(const pack_view *v, const char *path) {
    uint64_t last = v->n_frames - 1, off = entry_u64(v, last, 0), csize = entry_u64(v, last, 1),
             rsize = entry_u64(v, last, 3);
    uint8_t *raw = malloc(rsize);
    if (!raw || ZSTD_decompress(raw, rsize, v->b + off, csize) != rsize) {
        free(raw);
        return false;
    }
    raw[rsize / 2] ^= 0x40;
    size_t cap = ZSTD_compressBound(rsize);
    uint8_t *frame = malloc(cap);
    ZSTD_CCtx *cc = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(cc, ZSTD_c_checksumFlag, 1);
    size_t fn = ZSTD_compress2(cc, frame, cap, raw, rsize);
    ZSTD_freeCCtx(cc);
    uint64_t idx_len = 8 + v->n_frames * 64 + 48, new_index = off + fn;
    size_t total = (size_t)(new_index + idx_len);
    uint8_t *b = malloc(total);
    memcpy(b, v->b, (size_t)off);
    memcpy(b + off, frame, fn);
    memcpy(b + new_index, v->b + v->index_off, (size_t)idx_len);
    memcpy(b + 8 + 40, &new_index, 8);                          /* header index_off */
    uint64_t fn64 = fn;
    memcpy(b + new_index + 8 + last * 64 + 8, &fn64, 8);        /* entry comp_size; sha kept */
    uint8_t *tr = b + new_index + 8 + v->n_frames * 64;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    EVP_DigestUpdate(md, b + 8, 64);
    EVP_DigestUpdate(md, b + new_index + 8, (size_t)(v->n_frames * 64));
    EVP_DigestFinal_ex(md, tr + 8, NULL);
    EVP_MD_CTX_free(md);
    bool ok = !ZSTD_isError(fn) && qf_test_write_file(path, b, total);
    free(raw);
    free(frame);
    free(b);
    return ok;
}

static void test_damage(const char *model) {
    char p[4096], bad[4096];
    qf_error err = {0};
    qf_pack_stats s;
    qf_test_path("d.qfz", p, sizeof p);
    qf_test_path("bad.qfz", bad, sizeof bad);
    CHECK_OK(pack(model, p, 2, 1, &s, &err), &err);
    pack_view v;
    CHECK(view(p, &v));
    if (v.n_frames < 3) {
        free(v.b);
        return;
    }
    uint64_t f1 = entry_u64(&v, 1, 0), f1n = entry_u64(&v, 1, 1);
    /* damaged frame bytes are damaged data: a failed check (exit 1), as unpack --help says */
    write_variant(bad, &v, (size_t)(f1 + f1n / 2), 0x08);
    expect_fail("flipped byte inside frame 1", bad, QF_E_CHECK, "frame 1");
    write_variant(bad, &v, (size_t)(f1 + f1n - 1), 0x01); /* the frame's XXH64 checksum */
    expect_fail("flipped frame checksum", bad, QF_E_CHECK, "frame 1");
    write_variant(bad, &v, (size_t)(f1 + 4), 0x02);        /* the frame header */
    expect_fail("flipped frame header", bad, QF_E_CHECK, "damaged");
    write_variant(bad, &v, (size_t)(v.index_off + 8 + 64 + 40), 0x10);
    expect_fail("flipped frame SHA in the index", bad, QF_E_CHECK, "index or header is damaged");
    write_variant(bad, &v, 8 + 24, 0x01);                  /* raw_size */
    expect_fail("flipped raw size in the header", bad, QF_E_CHECK, "index or header is damaged");
    write_variant(bad, &v, 8 + 16 + 3, 0x01);              /* chunk size 17 MiB: frame count no longer adds up */
    expect_fail("flipped chunk size in the header", bad, QF_E_INPUT, NULL);
    write_variant(bad, &v, 8 + 60, 0x01);                  /* reserved */
    expect_fail("flipped reserved header byte", bad, QF_E_INPUT, "reserved");
    write_variant(bad, &v, 0, 0x01);
    expect_fail("flipped skippable magic", bad, QF_E_INPUT, "not a qforge pack");
    CHECK(forge_last_frame(&v, bad));
    expect_fail("re-compressed frame, other bytes", bad, QF_E_CHECK, "fails its SHA-256");
    free(v.b);

    /* a GGUF damaged before packing: frames are self-consistent, the GGUF's own digests are not */
    char t[4096], tp[4096];
    qf_test_path("tampered.gguf", t, sizeof t);
    size_t n = 0;
    uint8_t *g = qf_test_read_file(model, &n);
    if (g) {
        g[n - 1000] ^= 0x04; /* inside the last tensor's data */
        CHECK(qf_test_write_file(t, g, n));
        free(g);
        CHECK_OK(pack(t, qf_test_path("tampered.qfz", tp, sizeof tp), 2, 1, &s, &err), &err);
        expect_fail("pack of a tampered GGUF", tp, QF_E_CHECK, "integrity check failed");
    }
    /* a GGUF that carries digests but no longer parses cannot have them checked: that fails too */
    g = qf_test_read_file(model, &n);
    qf_gguf *pg = NULL;
    if (g && qf_gguf_open_mem("m", g, n, &pg, &err) == QF_OK) {
        uint64_t off, len;
        qf_gguf_tensor_info_span(pg, &off, &len);
        const qf_gguf_tensor *t0 = qf_gguf_tensor_at(pg, 0);
        uint64_t type_at = off + 8 + strlen(t0->name) + 4 + 8 * t0->n_dims; /* first info's u32 type */
        qf_gguf_close(pg);
        uint32_t bogus = 4; /* a removed ggml type id: the reader refuses the file */
        memcpy(g + type_at, &bogus, 4);
        CHECK(qf_test_write_file(t, g, n));
        CHECK_OK(pack(t, tp, 2, 1, &s, &err), &err);
        expect_fail("pack of a GGUF that does not parse", tp, QF_E_CHECK, "carries qforge integrity digests but does not parse");
    }
    free(g);
}

/* A pack built from the documented layout whose header and index claim raw_size bytes in frames of
 * comp bytes each (the frames are filler: unpack must refuse before it decodes or reserves anything). */
static bool forge_claim(const char *path, uint64_t chunk, uint64_t raw_size, uint64_t comp) {
    uint64_t n_frames = (raw_size + chunk - 1) / chunk, index_off = 72 + n_frames * comp;
    size_t total = (size_t)(index_off + 8 + n_frames * 64 + 48);
    uint8_t *b = calloc(1, total);
    if (!b) return false;
    uint32_t skip = 0x184D2A5Eu, hlen = 64, ilen = (uint32_t)(n_frames * 64 + 48), version = 1;
    memcpy(b, &skip, 4);
    memcpy(b + 4, &hlen, 4);
    memcpy(b + 8, "QFZPACK", 8);
    memcpy(b + 8 + 8, &version, 4);
    memcpy(b + 8 + 16, &chunk, 8);
    memcpy(b + 8 + 24, &raw_size, 8);
    memcpy(b + 8 + 32, &n_frames, 8);
    memcpy(b + 8 + 40, &index_off, 8);
    uint8_t *idx = b + index_off;
    memcpy(idx, &skip, 4);
    memcpy(idx + 4, &ilen, 4);
    for (uint64_t i = 0; i < n_frames; i++) {
        uint64_t e[4] = {72 + i * comp, comp, i * chunk, i + 1 < n_frames ? chunk : raw_size - i * chunk};
        memcpy(idx + 8 + i * 64, e, sizeof e);
    }
    uint8_t *tr = idx + 8 + n_frames * 64;
    memcpy(tr, &n_frames, 8);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    EVP_DigestUpdate(md, b + 8, 64);
    EVP_DigestUpdate(md, idx + 8, (size_t)(n_frames * 64));
    EVP_DigestFinal_ex(md, tr + 8, NULL);
    EVP_MD_CTX_free(md);
    memcpy(tr + 40, "QFZINDEX", 8);
    bool ok = qf_test_write_file(path, b, total);
    free(b);
    return ok;
}

/* What unpack writes, reserves and buffers is bounded by the pack's own size: a 388-byte pack used to
 * reserve the 1 GiB its header claimed. */
static void test_claims(void) {
    char p[4096];
    qf_test_path("claim.qfz", p, sizeof p);
    CHECK(forge_claim(p, 256u << 20, 1ull << 30, 5));
    struct stat sb;
    CHECK(stat(p, &sb) == 0 && sb.st_size < 1024);
    expect_fail("1 GiB claimed by a tiny pack", p, QF_E_INPUT, "more than zstd can encode");
    CHECK(forge_claim(p, 1u << 20, 3u << 20, 31)); /* 32 bytes would be just enough for 1 MiB */
    expect_fail("1 MiB per 31-byte frame", p, QF_E_INPUT, "at most 32768:1");
}

/* ---- 3. truncation ----------------------------------------------------------------------------- */

static void test_truncation(const char *model) {
    char p[4096], cut[4096], out[4096];
    qf_error err = {0};
    qf_pack_stats s;
    qf_test_path("t.qfz", p, sizeof p);
    qf_test_path("cut.qfz", cut, sizeof cut);
    qf_test_path("cut.out", out, sizeof out);
    CHECK_OK(pack(model, p, 2, 1, &s, &err), &err);
    pack_view v;
    CHECK(view(p, &v));
    size_t lens[64];
    int k = 0;
    size_t fixed[] = {0, 1, 4, 8, 71, 72, 73, (size_t)v.index_off - 1, (size_t)v.index_off, (size_t)v.index_off + 8,
                      v.n - 48, v.n - 1};
    for (size_t i = 0; i < QF_ARRAY_LEN(fixed); i++) lens[k++] = fixed[i];
    uint64_t seed = 99;
    while (k < 40) lens[k++] = (size_t)(qf_test_rand(&seed) % v.n);
    int clean = 0;
    for (int i = 0; i < k; i++) {
        CHECK(qf_test_write_file(cut, v.b, lens[i]));
        unlink(out);
        qf_status st = unpack(cut, out, 2, &s, &err);
        bool ok = st == QF_E_INPUT && (strstr(err.msg, "truncated") || strstr(err.msg, "not a qforge pack")) &&
                  !qf_test_file_exists(out);
        CHECK_MSG(ok, "cut at %zu of %zu: %s: %s", lens[i], v.n, qf_status_name(st), err.msg);
        clean += ok;
    }
    printf("truncation: %d/%d cut lengths refused cleanly (e.g. %s)\n", clean, k, err.msg);
    /* trailing bytes after the index */
    uint8_t *longer = malloc(v.n + 5);
    memcpy(longer, v.b, v.n);
    memset(longer + v.n, 0, 5);
    CHECK(qf_test_write_file(cut, longer, v.n + 5));
    free(longer);
    CHECK(unpack(cut, out, 2, &s, &err) == QF_E_INPUT && strstr(err.msg, "unexpected bytes after the index"));
    /* not a pack */
    CHECK(unpack(model, out, 2, &s, &err) == QF_E_INPUT && strstr(err.msg, "not a qforge pack"));
    free(v.b);
    CHECK(temps_left() == 0);
}

/* ---- 4. mutations ------------------------------------------------------------------------------ */

static void test_mutations(void) {
    const char *se = getenv("QF_PACK_SEED");
    uint64_t seed = se ? strtoull(se, NULL, 0) : 0x9ACCu;
    printf("mutations: seed %llu (QF_PACK_SEED replays)\n", (unsigned long long)seed);
    char src[4096], p[4096], m[4096], out[4096];
    static uint8_t data[(5u << 20) / 2];
    for (size_t i = 0; i < sizeof data; i++) data[i] = (uint8_t)((i * 31) ^ (i >> 7));
    CHECK(qf_test_write_file(qf_test_path("mut.src", src, sizeof src), data, sizeof data));
    qf_error err = {0};
    qf_pack_stats s;
    /* 2.5 MiB in 1 MiB chunks: three frames, so mutations hit frames, boundaries and the index */
    qf_pack_opts o = {.src = src, .out = qf_test_path("mut.qfz", p, sizeof p), .threads = 2, .chunk_mib = 1};
    CHECK_OK(qf_pack(&o, &s, &err), &err);
    size_t n = 0;
    uint8_t *b = qf_test_read_file(p, &n);
    qf_test_path("mut-bad.qfz", m, sizeof m);
    qf_test_path("mut.out", out, sizeof out);
    int refused = 0, iters = 300;
    for (int i = 0; i < iters && b; i++) {
        size_t off = (size_t)(qf_test_rand(&seed) % n);
        uint8_t x = (uint8_t)(1 + qf_test_rand(&seed) % 255);
        b[off] ^= x;
        qf_test_write_file(m, b, n);
        b[off] ^= x;
        unlink(out);
        qf_status st = unpack(m, out, 2, &s, &err);
        bool ok = st != QF_OK && !qf_test_file_exists(out);
        CHECK_MSG(ok, "mutation %d: byte %zu ^= 0x%02x accepted (%s)", i, off, x, qf_status_name(st));
        refused += ok;
    }
    printf("mutations: %d/%d single-byte changes refused\n", refused, iters);
    free(b);
}

int main(int argc, char **argv) {
    qf_test_init(argc, argv);
    char model[4096];
    if (make_model("model.gguf", "f32", model, sizeof model)) {
        test_round_trips(model);
        test_damage(model);
        test_truncation(model);
    }
    test_mutations();
    test_claims();
    return qf_test_finish();
}
