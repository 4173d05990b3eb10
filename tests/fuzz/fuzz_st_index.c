/*
 * fuzz_st_index.c — shard indexes: the input is written as model.safetensors.index.json into a private
 * directory that also holds two small valid shards, and opened with qf_st_open. safetensors.c parses
 * indexes only from files (there is no in-memory entry point), so the target goes through the file
 * system like a user's checkout would.
 *
 * Shards beside the index (fixed, written once):
 *   model-00001-of-00002.safetensors: "a" F32 [2], "b" U8 [3]
 *   model-00002-of-00002.safetensors: "c" BF16 [2, 2]
 * so {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": ..., "c": "model-00002-..."}} opens.
 */
#include "fuzz_util.h"

#include "formats/safetensors.h"

static void write_shard(const char *name, const char *json, const uint8_t *data, size_t data_len) {
    size_t jl = strlen(json), n = 8 + jl + data_len;
    uint8_t *buf = malloc(n);
    if (!buf) abort();
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)((uint64_t)jl >> (8 * i));
    memcpy(buf + 8, json, jl);
    memcpy(buf + 8 + jl, data, data_len);
    qf_fuzz_write(qf_fuzz_path(name), buf, n);
    free(buf);
}

static void setup(void) {
    static bool done;
    if (done) return;
    done = true;
    static const uint8_t d1[11] = {0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0, 1, 2, 3};
    write_shard("model-00001-of-00002.safetensors",
                "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                "\"b\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[8,11]}}", d1, sizeof d1);
    static const uint8_t d2[8] = {0x80, 0x3f, 0, 0x40, 0x40, 0x40, 0x80, 0x40};
    write_shard("model-00002-of-00002.safetensors",
                "{\"__metadata__\":{\"format\":\"pt\"},\"c\":{\"dtype\":\"BF16\",\"shape\":[2,2],"
                "\"data_offsets\":[0,8]}}", d2, sizeof d2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    setup();
    const char *index = qf_fuzz_path("model.safetensors.index.json");
    qf_fuzz_write(index, data, size);
    qf_st_model *m = NULL;
    qf_error err;
    qf_error_clear(&err);
    qf_status st = qf_st_open(index, &m, &err);
    qf_fuzz_check_failure(st, &err);
    if (st == QF_OK) {
        for (size_t i = 0; i < qf_st_n_tensors(m); i++) {
            const qf_st_tensor *t = qf_st_tensor_at(m, i);
            if (qf_st_find(m, t->name) != t || t->shard >= qf_st_n_shards(m))
                qf_fuzz_violation("tensor table and name index disagree", &err);
            qf_fuzz_touch(t->data, t->nbytes);
        }
        for (size_t i = 0; i < qf_st_n_shards(m); i++) qf_fuzz_touch(qf_st_shard_path(m, i), 1);
    } else if (m) {
        qf_fuzz_violation("a failed open returned a model", &err);
    }
    qf_st_close(m);
    return 0;
}
