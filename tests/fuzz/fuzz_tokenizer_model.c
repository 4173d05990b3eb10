/*
 * fuzz_tokenizer_model.c — SentencePiece tokenizer.model (protobuf ModelProto) through
 * qf_vocab_load_hf: once alone, once beside tokenizer_config.json / added_tokens.json that add tokens
 * and with a config vocab_size that pads the table, so the paths after the protobuf parse see the
 * pieces it accepted.
 */
#include "fuzz_reader.h"

static const char TOKENIZER_CONFIG[] =
    "{\"add_bos_token\":true,\"bos_token\":\"<s>\",\"eos_token\":{\"content\":\"</s>\"},\"add_prefix_space\":true,"
    "\"added_tokens_decoder\":{\"20\":{\"content\":\"<|im_start|>\",\"special\":true},"
    "\"21\":{\"content\":\"\\u2581x\",\"special\":false}}}";
static const char ADDED_TOKENS[] = "{\"<extra>\": 22}";
static const char CONFIG[] = "{\"vocab_size\":40,\"bos_token_id\":1,\"eos_token_id\":2,\"pad_token_id\":39}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0; /* the reader table uses length 0 for "strlen" */
    const qf_fuzz_file alone[] = {{"tokenizer.model", data, size}, {NULL, NULL, 0}};
    qf_fuzz_vocab(alone, 0);
    const qf_fuzz_file with[] = {{"tokenizer.model", data, size}, {"tokenizer_config.json", TOKENIZER_CONFIG, 0},
                                 {"added_tokens.json", ADDED_TOKENS, 0}, {"config.json", CONFIG, 0},
                                 {NULL, NULL, 0}};
    qf_fuzz_vocab(with, 40);
    return 0;
}
