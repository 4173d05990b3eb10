#!/usr/bin/env bash
# The recipes that carry llama.cpp's names (q4_k_m, q3_k_m) choose, tensor for tensor, the types
# llama-quantize chooses for its Q4_K_M / Q3_K_M on the same F32 file (../shared/ref's build), on every
# architecture family: dense Llama (and an 80-layer GQA Llama, llama.cpp's "70B" rule), Qwen2, Mixtral
# (8 experts: its own attn_v/attn_k/attn_output rules), Qwen2-MoE (shared expert), Qwen3-MoE,
# DeepSeek-V2 and DeepSeek-V3 (MLA, routed and shared experts, a leading dense layer). Models are
# generated (qforge synth) with rows that fit every block size except where a fallback is meant.
set -uo pipefail
source "$1/tests/lib/cli_test.sh"
cli_test_setup "$@"
ref=${QF_REF_DIR:-$HOME/.cache/qforge-ref}
if [ ! -x "$ref/bin/llama-quantize" ]; then echo "SKIP: llama-quantize not installed under $ref"; exit 77; fi

models=(
    "llama --dim 256 --ff 512 --layers 8"
    "llama70 --dim 256 --ff 512 --layers 80"
    "qwen2 --arch qwen2 --dim 256 --ff 512 --layers 4"
    "mixtral --arch mixtral --dim 256 --ff 512 --layers 4 --experts 8"
    "qwen2moe --arch qwen2moe --dim 256 --ff 512 --ff-exp 256 --layers 4 --experts 8"
    "qwen3moe --arch qwen3moe --dim 256 --ff 512 --ff-exp 256 --layers 4 --experts 16"
    "dsv2 --arch deepseek-v2 --dim 256 --ff 512 --ff-exp 256 --layers 4 --experts 16"
    "dsv3 --arch deepseek-v3 --dim 256 --ff 512 --ff-exp 256 --layers 5 --experts 16"
)
for m in "${models[@]}"; do
    set -- $m
    name=$1; shift
    "$qf" synth "$name" --vocab 512 "$@" -q && "$qf" convert "$name" -o "$name.gguf" --type f32 -q ||
        { bad "$name: synth/convert failed"; continue; }
    for mix in q4_k_m q3_k_m; do
        "$qf" quantize "$name.gguf" -o "$name-ours-$mix.gguf" --recipe $mix -q ||
            { bad "$name $mix: qforge quantize failed"; continue; }
        "$ref/bin/llama-quantize" "$name.gguf" "$name-llama-$mix.gguf" "${mix^^}" >"$name-$mix.log" 2>&1 ||
            { bad "$name $mix: llama-quantize failed: $(tail -2 "$name-$mix.log")"; continue; }
        diff=$(python3 - "$root/tests/lib" "$name-ours-$mix.gguf" "$name-llama-$mix.gguf" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
from gguf_meta import read
ours, theirs = ({t["name"]: t["type"] for t in read(p)["tensors"]} for p in sys.argv[2:4])
names = sorted(set(ours) | set(theirs))
bad = [f"{n}: ours {ours.get(n)} llama.cpp {theirs.get(n)}" for n in names if ours.get(n) != theirs.get(n)]
print("; ".join(bad[:6]) + (f" (+{len(bad) - 6} more)" if len(bad) > 6 else ""))
PY
)
        if [ -z "$diff" ]; then ok; else bad "$name $mix: types differ from llama-quantize's: $diff"; fi
    done
done
cli_test_finish llamacpp_recipes
