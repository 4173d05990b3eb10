#!/usr/bin/env bash
# The released tokenizers of ../shared/tokenizers (DeepSeek-V3, Llama 3, Qwen3, Gemma 3) against llama.cpp
# (the reference in ../shared/ref):
#  1. vocabulary: for each family's files beside a config.json with its release's architecture, vocab_size
#     and token ids, every tokenizer.* key qforge writes equals what llama.cpp's converter code writes
#     (tests/lib/llamacpp_vocab.py: the converter class's own set_vocab, with a stand-in for transformers'
#     AutoTokenizer; needs /usr/bin/python3 with numpy and torch, else that part prints SKIP);
#  2. tokenization: a generated checkpoint with the family's tokenizer files and vocab_size is converted by
#     `qforge convert`, and llama-tokenize, loading that GGUF, must give qforge's ids (tokcheck ids) on
#     all 113 inputs with parse_special, and with parse_special off on every input where the two modes
#     differ. The checkpoint is a Llama one: qforge converts no DeepSeek, Qwen3 or Gemma 3 architecture
#     yet, and the tokenizer does not depend on it. With parse_special, one llama-tokenize call per family
#     takes all inputs, joined by a control token that llama.cpp cuts out before anything else, so that
#     each input is tokenized on its own (the call's leading separator also shows whether BOS comes first).
# How qforge's ids compare with the independent expected ids is test_tokenizer's part.
set -euo pipefail
root=$1; scratch=$2; qf=${QF_BIN:?}; tc=${QF_TOKCHECK:?}
ref=${QF_REF_DIR:-$HOME/.cache/qforge-ref}
toks=$root/../shared/tokenizers
if [ ! -d "$toks" ]; then echo "SKIP: ../shared/tokenizers is absent"; exit 77; fi
if [ ! -x "$ref/bin/llama-tokenize" ]; then echo "SKIP: llama.cpp reference not installed at $ref"; exit 77; fi
rm -rf "$scratch"; mkdir -p "$scratch"; cd "$scratch"
pass=0; fail=0
ok() { echo "$1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; fail=$((fail + 1)); }

# config.json DIR ARCH VOCAB BOS EOS: set the release's values (an id of -1 is left out)
set_config() {
    python3 - "$@" <<'PY'
import json, sys
d, arch, vocab, bos, eos = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
try:
    c = json.load(open(f"{d}/config.json"))
except FileNotFoundError:
    c = {}
if arch != "-":
    c["architectures"] = [arch]
c["vocab_size"] = vocab
for k, v in (("bos_token_id", bos), ("eos_token_id", eos)):
    c.pop(k, None)
    if v >= 0:
        c[k] = v
json.dump(c, open(f"{d}/config.json", "w"), indent=1)
PY
}

"$tc" families > families.tsv
vocab_jobs=()
while IFS=$'\t' read -r fam arch pre vocab bos eos sep; do
    # 1. the vocabulary qforge writes for the release's files and config values
    mkdir -p "vocab-$fam"
    cp "$toks/$fam/tokenizer.json" "$toks/$fam/tokenizer_config.json" "vocab-$fam/"
    set_config "vocab-$fam" "$arch" "$vocab" "$bos" "$eos"
    "$tc" vocab "vocab-$fam" "vocab-$fam.gguf"
    vocab_jobs+=("vocab-$fam" "$pre" "vocab-$fam.gguf")

    # 2. a converted checkpoint with these tokenizer files
    "$qf" synth "model-$fam" --vocab "$vocab" --dim 64 --ff 64 --layers 1 --tied --dtype bf16 >/dev/null
    cp "$toks/$fam/tokenizer.json" "$toks/$fam/tokenizer_config.json" "model-$fam/"
    set_config "model-$fam" - "$vocab" "$bos" "$eos"
    "$qf" convert "model-$fam" -o "$fam.gguf" -q
    "$tc" ids "$fam.gguf" "$toks/inputs.inp" --parse-special > "$fam.qforge.out"
    "$tc" ids "$fam.gguf" "$toks/inputs.inp" --parse-special --add-special > "$fam.qforge-bos.out"
    "$tc" ids "$fam.gguf" "$toks/inputs.inp" > "$fam.qforge-plain.out"
    if python3 - "$ref/bin/llama-tokenize" "$fam" "$sep" "$toks/inputs.inp" <<'PY'
import json, subprocess, sys
tool, fam, sep, inp = sys.argv[1], sys.argv[2], sys.argv[3].encode(), sys.argv[4]
inputs = open(inp, "rb").read().split(b"\n__ggml_vocab_test__\n")[:-1]
lines = lambda path: open(path).read().split("\n")[:-1]
ours, ours_bos, ours_plain = lines(f"{fam}.qforge.out"), lines(f"{fam}.qforge-bos.out"), lines(f"{fam}.qforge-plain.out")
assert not any(sep in x for x in inputs), f"the separator {sep!r} occurs in an input"

def llama(text, *flags):
    open("prompt.txt", "wb").write(text)
    r = subprocess.run([tool, "-m", f"{fam}.gguf", "-f", "prompt.txt", "--ids", "--log-disable", "--no-escape", *flags],
                       capture_output=True, check=True)
    return json.loads(r.stdout)

# all inputs at once, BOS as the vocab says: [BOS] SEP in0 SEP in1 ...
sep_ids = llama(sep, "--no-bos")
if len(sep_ids) != 1:
    sys.exit(f"{fam}: llama.cpp does not take the separator {sep!r} as one token: {sep_ids}")
ids = llama(sep + sep.join(inputs))
at = ids.index(sep_ids[0]) if sep_ids[0] in ids else len(ids)
bos, parts = ids[:at], [[]]
for i in ids[at + 1:]:
    if i == sep_ids[0]:
        parts.append([])
    else:
        parts[-1].append(i)
got = ["".join(f" {i}" for i in p) for p in parts]
if len(got) != len(inputs):
    sys.exit(f"{fam}: llama-tokenize gave {len(got)} pieces for {len(inputs)} inputs")
same = [i for i in range(len(inputs)) if got[i] == ours[i]]
want_bos = ours_bos[0].split()[:len(ours_bos[0].split()) - len(ours[0].split())]
print(f"{fam}: llama.cpp on our GGUF, parse_special: {len(same)}/{len(inputs)} inputs give qforge's ids; "
      f"BOS {bos if bos else 'none'} (qforge: {[int(x) for x in want_bos] if want_bos else 'none'})")
bad = [i for i in range(len(inputs)) if i not in same]
for i in bad[:5]:
    print(f"  input {i}: llama.cpp{got[i][:120]}\n  qforge   {ours[i][:120]}")
# parse_special off, one call per input where the modes differ for qforge
modes = [i for i in range(len(inputs)) if ours_plain[i] != ours[i]]
plain_bad = [i for i in modes if "".join(f" {x}" for x in llama(inputs[i], "--no-parse-special", "--no-bos")) != ours_plain[i]]
print(f"{fam}: parse_special off: {len(modes) - len(plain_bad)}/{len(modes)} inputs where the modes differ "
      f"({modes}) give qforge's ids")
sys.exit(1 if bad or plain_bad or [int(x) for x in want_bos] != bos else 0)
PY
    then ok "$fam: llama-tokenize and qforge agree"; else bad "$fam: llama-tokenize and qforge differ"; fi
done < families.tsv

if /usr/bin/python3 -c 'import numpy, torch' 2>/dev/null; then
    if /usr/bin/python3 "$root/tests/lib/llamacpp_vocab.py" "$ref/llama.cpp-src" "${vocab_jobs[@]}" 2>converter.log; then
        ok "every tokenizer.* key equals what llama.cpp's converter writes, all families"
    else
        bad "tokenizer.* keys differ from llama.cpp's converter (converter log: $scratch/converter.log)"
    fi
else
    echo "SKIP (vocabulary keys): /usr/bin/python3 lacks numpy or torch, which llama.cpp's converter imports"
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
