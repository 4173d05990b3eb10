#!/usr/bin/env bash
# llama.cpp loads qforge's split output by its first part (the model loader's split handling,
# src/llama-model-loader.cpp) and measures the same perplexity as on the unsplit file; where the
# reference ships llama-gguf-split, its split of the unsplit file has the same layout and tensor bytes.
set -uo pipefail
ref=${QF_REF_DIR:-$HOME/.cache/qforge-ref}
if [ ! -x "$ref/bin/llama-perplexity" ]; then echo "SKIP: llama.cpp reference not installed at $ref"; exit 77; fi
. "$(dirname "$0")/lib/checks.sh"
. "$root/tests/lib/llamacpp.sh"
export LD_LIBRARY_PATH="$ref/bin${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
LLAMA_LOG=$PWD/llama.log

"$qf" synth m --dim 128 --ff 256 --vocab 300 --layers 2 >/dev/null || exit 1
python3 -c "
import random; r = random.Random(7)
w = ['the','cat','sat','on','a','mat','and','dog','ran','far','away','home','red','blue','fish','old']
print(' '.join(r.choice(w) for _ in range(3000)))" >text.txt
"$qf" convert m -o one.gguf --type q8_0 -q && "$qf" convert m -o s.gguf --type q8_0 --split-max-tensors 4 -q || exit 1
a=$(llama_ppl one.gguf text.txt 64 4); b=$(llama_ppl s-00001-of-00006.gguf text.txt 64 4)
[ -n "$a" ] && ok || bad "llama.cpp did not load one.gguf"
[ -n "$b" ] && ok || bad "llama.cpp did not load the split: $(tail -3 "$LLAMA_LOG")"
# it read the other parts: without the last one the first does not load
mkdir short && cp s-0000[1-5]-of-00006.gguf short/
[ -z "$(llama_ppl short/s-00001-of-00006.gguf text.txt 64 4 2>/dev/null)" ] && ok || bad "llama.cpp loaded a set without its last part"
[ -n "$a" ] && [ "$a" = "$b" ] && ok || bad "llama.cpp PPL of the split '$b', of the unsplit file '$a'"
if [ -x "$ref/bin/llama-gguf-split" ]; then
    "$ref/bin/llama-gguf-split" --split --split-max-tensors 4 one.gguf theirs >split.log 2>&1 || bad "llama-gguf-split: $(tail -2 split.log)"
    for k in 1 2 3 4 5 6; do
        f=$(printf -- '-%05d-of-00006.gguf' $k)
        python3 - "$root/tests/lib" "s$f" "theirs$f" <<'PY' && ok || bad "part $k differs from llama-gguf-split's"
import sys; sys.path.insert(0, sys.argv[1]); import gguf_meta
a, b = gguf_meta.read(sys.argv[2]), gguf_meta.read(sys.argv[3])
for key in ("split.no", "split.count", "split.tensors.count"): assert a["kv"][key] == b["kv"][key], key
assert [(t["name"], t["type"], t["ne"], t["offset"]) for t in a["tensors"]] == [(t["name"], t["type"], t["ne"], t["offset"]) for t in b["tensors"]]
da, db = open(sys.argv[2], "rb").read()[a["data_offset"]:], open(sys.argv[3], "rb").read()[b["data_offset"]:]
assert da == db
PY
    done
else
    echo "SKIP: no llama-gguf-split in $ref/bin: the comparison with its output did not run"
fi
finish llamacpp_split
