/*
 * test_json.c — qf_json_parse, the strict parser every JSON file of a model goes through (json.h):
 * each rule refuses what it must with a one-line message naming the file and the key, and accepts what
 * it must not refuse (an escaped backslash before "u0000", equal keys in different objects).
 */
#include "testutil.h"
#include "formats/json.h"

static void refused(const char *text, const char *part) {
    cJSON *j = (cJSON *)1;
    qf_error err = {0};
    qf_status st = qf_json_parse("cfg.json", text, strlen(text), &j, &err);
    CHECK_MSG(st == QF_E_INPUT && !j && strstr(err.msg, "cfg.json: ") == err.msg && strstr(err.msg, part) &&
                  !strchr(err.msg, '\n'),
              "%s -> %s: %s (expected '%s')", text, qf_status_name(st), err.msg, part);
}

static void accepted(const char *text) {
    cJSON *j = NULL;
    qf_error err = {0};
    CHECK_OK(qf_json_parse("cfg.json", text, strlen(text), &j, &err), &err);
    CHECK(j != NULL);
    cJSON_Delete(j);
}

int main(int argc, char **argv) {
    qf_test_init(argc, argv);
    accepted("{\"rope_theta\": 10000, \"rope_scaling\": {\"rope_theta\": 1}}  \n");
    accepted("[{\"a\": 1}, {\"a\": 2}]");
    accepted("{\"a\\\\u0000\": \"\\\\u0000\"}"); /* a backslash, then the text u0000: no NUL */
    accepted("{\"a\": \"\\u0001\\u00e9\"}");

    refused("\xef\xbb\xbf{\"a\": 1}", "byte-order mark");
    refused("{\"rope_theta\": 10000, \"rope_theta\": 500000}", "key 'rope_theta' is defined twice (at the top level)");
    refused("{\"q\": {\"weight_block_size\": [1], \"weight_block_size\": [2]}}",
            "key 'weight_block_size' is defined twice (in 'q')");
    refused("{\"added_tokens\": [{\"id\": 1}, {\"id\": 2, \"id\": 3}]}", "key 'id' is defined twice (in 'added_tokens[1]')");
    /* many members: the sorted path */
    refused("{\"a\":1,\"b\":1,\"c\":1,\"d\":1,\"e\":1,\"f\":1,\"g\":1,\"h\":1,\"i\":1,\"e\":2}", "key 'e' is defined twice");
    refused("{\"weight\\u0000evil\": 1}", "key \"weight\\u0000evil\" contains \\u0000 (NUL)");
    refused("{\"name\": \"a\\u0000b\"}", "string \"a\\u0000b\" contains \\u0000 (NUL)");
    refused("{\"a\": \"tab\there\"}", "raw control character 0x09 inside a string");
    refused("{\"a\": 1} x", "data after the JSON value at byte 9");
    refused("{\"a\": 1", "not valid JSON");
    refused("", "not valid JSON");

    /* the value bound (the array counts as one): one past it is refused before cJSON builds anything */
    size_t n = (size_t)QF_JSON_MAX_VALUES, len = 2 * n + 1;
    char *big = malloc(len + 1);
    if (big) {
        big[0] = '[';
        for (size_t i = 0; i < n; i++) { big[1 + 2 * i] = '0'; big[2 + 2 * i] = ','; }
        big[len - 1] = ']';
        big[len] = '\0';
        refused(big, "more than 4194304 JSON values");
        big[len - 3] = ']'; /* one value fewer: at the bound, parsed */
        cJSON *j = NULL;
        qf_error err = {0};
        CHECK_OK(qf_json_parse("big.json", big, len - 2, &j, &err), &err);
        CHECK(j && cJSON_GetArraySize(j) == (int)QF_JSON_MAX_VALUES - 1);
        cJSON_Delete(j);
        free(big);
    }
    /* the byte bound is checked before the text is read at all */
    cJSON *j = NULL;
    qf_error err = {0};
    CHECK(qf_json_parse("huge.json", "{}", (size_t)QF_JSON_MAX_BYTES + 1, &j, &err) == QF_E_INPUT &&
          strstr(err.msg, "exceed the limit"));
    return qf_test_finish();
}
