#!/usr/bin/env bash
# The recipes that carry llama.cpp's names (q4_k_m, q3_k_m, q2_k, q3_k_s/l, q4_k_s, q5_k_s/m, q6_k) choose,
# tensor for tensor, the types llama-quantize chooses for its mix of that name on the same F32 file
# (../shared/ref's build), and write its general.file_type. Q4_K_M and Q3_K_M are compared on every
# architecture family: dense Llama (and an 80-layer GQA Llama, llama.cpp's "70B" rule), Qwen2, Mixtral
# (8 experts: its own attn_v/attn_k/attn_output rules), Qwen2-MoE (shared expert), Qwen3-MoE,
# DeepSeek-V2 and DeepSeek-V3 (MLA, routed and shared experts, a leading dense layer). Models are
# generated (qforge synth) with rows that fit every block size except where a fallback is meant. The
# other mixes, whose rules are a subset of the same conditions, on the models where those conditions
# differ: dense Llama, the 70B rule, 8 experts, DeepSeek-V3.
set -uo pipefail
source "$1/tests/lib/cli_test.sh"
cli_test_setup "$@"
ref=${QF_REF_DIR:-$HOME/.cache/qforge-ref}
if [ ! -x "$ref/bin/llama-quantize" ]; then echo "SKIP: llama-quantize not installed under $ref"; exit 77; fi

all="q4_k_m q3_k_m q2_k q3_k_s q3_k_l q4_k_s q5_k_s q5_k_m q6_k"
models=(
    "llama|$all|--dim 256 --ff 512 --layers 8"
    "llama70|q4_k_m q3_k_m q2_k q3_k_s q4_k_s q5_k_m|--dim 256 --ff 512 --layers 80"
    "qwen2|q4_k_m q3_k_m|--arch qwen2 --dim 256 --ff 512 --layers 4"
    "mixtral|$all|--arch mixtral --dim 256 --ff 512 --layers 4 --experts 8"
    "qwen2moe|q4_k_m q3_k_m|--arch qwen2moe --dim 256 --ff 512 --ff-exp 256 --layers 4 --experts 8"
    "qwen3moe|q4_k_m q3_k_m|--arch qwen3moe --dim 256 --ff 512 --ff-exp 256 --layers 4 --experts 16"
    "dsv2|q4_k_m q3_k_m|--arch deepseek-v2 --dim 256 --ff 512 --ff-exp 256 --layers 4 --experts 16"
    "dsv3|$all|--arch deepseek-v3 --dim 256 --ff 512 --ff-exp 256 --layers 5 --experts 16"
)
for m in "${models[@]}"; do
    IFS='|' read -r name mixes args <<<"$m"
    set -- $args
    "$qf" synth "$name" --vocab 512 "$@" -q && "$qf" convert "$name" -o "$name.gguf" --type f32 -q ||
        { bad "$name: synth/convert failed"; continue; }
    for mix in $mixes; do
        "$qf" quantize "$name.gguf" -o "$name-ours-$mix.gguf" --recipe $mix -q ||
            { bad "$name $mix: qforge quantize failed"; continue; }
        "$ref/bin/llama-quantize" "$name.gguf" "$name-llama-$mix.gguf" "${mix^^}" >"$name-$mix.log" 2>&1 ||
            { bad "$name $mix: llama-quantize failed: $(tail -2 "$name-$mix.log")"; continue; }
        diff=$(python3 - "$root/tests/lib" "$name-ours-$mix.gguf" "$name-llama-$mix.gguf" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
from gguf_meta import read
files = [read(p) for p in sys.argv[2:4]]
ours, theirs = ({t["name"]: t["type"] for t in f["tensors"]} for f in files)
names = sorted(set(ours) | set(theirs))
bad = [f"{n}: ours {ours.get(n)} llama.cpp {theirs.get(n)}" for n in names if ours.get(n) != theirs.get(n)]
ft = [f["kv"].get("general.file_type", {}).get("value") for f in files]
if ft[0] != ft[1]: bad.insert(0, f"general.file_type: ours {ft[0]} llama.cpp {ft[1]}")
print("; ".join(bad[:6]) + (f" (+{len(bad) - 6} more)" if len(bad) > 6 else ""))
PY
)
        if [ -z "$diff" ]; then ok; else bad "$name $mix: types differ from llama-quantize's: $diff"; fi
    done
done
cli_test_finish llamacpp_recipes
