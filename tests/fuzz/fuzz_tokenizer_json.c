/*
 * fuzz_tokenizer_json.c — the Hugging Face JSON tokenizer files through qf_vocab_load_hf. The input is
 * served three ways, each beside valid companions so the parser gets past the files it does not vary:
 *   1. as tokenizer.json alone (byte-level BPE vocabulary, merges, pre-tokenizer, post-processor);
 *   2. as tokenizer_config.json beside a valid tokenizer.json (special tokens, chat template, added
 *      tokens) and a config.json stating token ids;
 *   3. as config.json beside both (its *_token_id keys and vocab_size padding).
 */
#include "fuzz_reader.h"

static const char TOKENIZER[] =
    "{\"version\":\"1.0\",\"added_tokens\":[{\"id\":6,\"content\":\"<|endoftext|>\",\"special\":true}],"
    "\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":true},"
    "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<|endoftext|>\","
    "\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],\"pair\":[],\"special_tokens\":{}},"
    "\"model\":{\"type\":\"BPE\",\"vocab\":{\"!\":0,\"a\":1,\"b\":2,\"ab\":3,\"\\u0120\":4,\"\\u0120ab\":5,"
    "\"<|endoftext|>\":6},\"merges\":[\"a b\",\"\\u0120 ab\"]}}";

static const char TOKENIZER_CONFIG[] =
    "{\"bos_token\":\"<|endoftext|>\",\"eos_token\":{\"content\":\"<|endoftext|>\"},\"add_bos_token\":true,"
    "\"chat_template\":\"{{ messages }}\",\"added_tokens_decoder\":{\"6\":{\"content\":\"<|endoftext|>\","
    "\"special\":true}}}";

static const char CONFIG[] = "{\"vocab_size\":9,\"bos_token_id\":6,\"eos_token_id\":6}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0; /* the reader table uses length 0 for "strlen" */
    const qf_fuzz_file as_tokenizer[] = {{"tokenizer.json", data, size}, {NULL, NULL, 0}};
    qf_fuzz_vocab(as_tokenizer, 0);
    const qf_fuzz_file as_config[] = {{"tokenizer.json", TOKENIZER, 0}, {"tokenizer_config.json", data, size},
                                      {"config.json", CONFIG, 0}, {NULL, NULL, 0}};
    qf_fuzz_vocab(as_config, 9);
    const qf_fuzz_file as_model_config[] = {{"tokenizer.json", TOKENIZER, 0},
                                            {"tokenizer_config.json", TOKENIZER_CONFIG, 0},
                                            {"config.json", data, size}, {NULL, NULL, 0}};
    qf_fuzz_vocab(as_model_config, 0);
    return 0;
}
