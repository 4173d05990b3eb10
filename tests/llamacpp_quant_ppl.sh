#!/usr/bin/env bash
# Files qforge quantizes with ggml types only load in llama.cpp (the reference in ../shared/ref), and
# llama.cpp's perplexity on them agrees with qforge's own runtime within 0.5% (issues 4 and 5):
# qf-llama-a quantized with the q4_k_m, q3_k_m and int3-mix recipes and uniform q4_K / q6_K.
set -euo pipefail
root=$1; scratch=$2; qf=${QF_BIN:?}
ref=${QF_REF_DIR:-$HOME/.cache/qforge-ref}
. "$(dirname "$0")/lib/llamacpp.sh"
model=$root/../shared/models/qf-llama-a
text=$root/../shared/text/tinystories-valid-head.txt
if [ ! -d "$model" ]; then echo "SKIP: ../shared/models/qf-llama-a is absent"; exit 77; fi
if [ ! -x "$ref/bin/llama-perplexity" ]; then echo "SKIP: llama.cpp reference not installed at $ref"; exit 77; fi
rm -rf "$scratch"; mkdir -p "$scratch"
pass=0; fail=0
for spec in "-r q4_k_m" "-r q3_k_m" "-r int3-mix" "--type q4_K" "--type q6_K"; do
    name=${spec#* }
    out=$scratch/$name.gguf
    # shellcheck disable=SC2086 # spec is two words on purpose
    "$qf" quantize "$model" $spec -o "$out" -q
    ours=$("$qf" perplexity "$out" --text "$text" --ctx 256 --chunks 10 --json 2>/dev/null \
           | python3 -c 'import json,sys; print(json.load(sys.stdin)["ppl"])')
    theirs=$(llama_ppl "$out" "$text" 256 10)
    if [ -n "$theirs" ] && python3 -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); sys.exit(0 if abs(a/b-1) <= 0.005 else 1)" "$ours" "$theirs"; then
        echo "$name: qforge PPL $ours, llama.cpp PPL $theirs"; pass=$((pass+1))
    else
        echo "FAIL $name: qforge PPL $ours, llama.cpp PPL '${theirs:-none (did not load)}'"; fail=$((fail+1))
    fi
    rm -f "$out"
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
