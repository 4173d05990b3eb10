#!/usr/bin/env bash
# llama.cpp (the external reference in ../shared/ref) loads qforge's F32 and F16 conversions of the
# checkpoints named in MODELS below and reproduces the perplexity recorded in each REFERENCE.json: within
# 1e-4 relative for F32 (exact attention and KV cache: the same numbers up to summation order) and 0.5%
# for F16 (its rounding of the weights).
# This proves tensor names, the Q/K permutation, FP8 dequantization and the tokenizer metadata.
# The list is explicit on purpose: a checkpoint joins it when its architecture lands, and a named
# checkpoint that is missing from ../shared/models fails the test (it is never skipped silently).
# usage: llamacpp_agreement.sh REPO_ROOT SCRATCH   (env QF_BIN = qforge binary, QF_REF_DIR = reference)
set -euo pipefail
root=$1; scratch=$2; mkdir -p "$scratch"
shared=$root/../shared
qf=${QF_BIN:?QF_BIN must name the qforge binary}
ref=${QF_REF_DIR:-$HOME/.cache/qforge-ref}
. "$(dirname "$0")/lib/llamacpp.sh"
if [ ! -d "$shared/models" ]; then echo "SKIP: ../shared/models is absent"; exit 77; fi
if [ ! -x "$ref/bin/llama-perplexity" ]; then
    echo "SKIP: llama.cpp reference not installed at $ref (run: bash ../shared/ref/setup_ref.sh)"; exit 77
fi
text=$shared/text/tinystories-valid-head.txt
MODELS=(stories260K stories260K-bf16 stories260K-f16-sharded stories260K-fp8 qf-llama-a qf-llama-a-fp8
        qf-deepseek-a qf-deepseek-a-fp8)
pass=0; fail=0
for model in "${MODELS[@]}"; do
    dir=$shared/models/$model
    if [ ! -f "$dir/REFERENCE.json" ]; then echo "FAIL $model: $dir/REFERENCE.json is missing"; fail=$((fail+1)); continue; fi
    want=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['texts']['tinystories-valid-head.txt']['ppl'])" "$dir/REFERENCE.json")
    for type in f32 f16; do
        out=$scratch/$model-$type.gguf
        "$qf" convert "$dir" -o "$out" --type "$type" -q
        got=$(llama_ppl "$out" "$text" 256 20)
        if [ -z "$got" ]; then echo "FAIL $model $type: llama-perplexity produced no estimate"; fail=$((fail+1)); continue; fi
        tol=$([ "$type" = f32 ] && echo 1e-4 || echo 5e-3)
        verdict=$(python3 -c "import sys; g,w,t=map(float,sys.argv[1:4]); print('ok' if abs(g/w-1)<=t else 'bad', '%+.4f%%' % (100*(g/w-1)))" "$got" "$want" "$tol")
        echo "$model $type: llama.cpp PPL $got, REFERENCE.json $want (${verdict#* }, limit $tol)"
        if [ "${verdict%% *}" = ok ]; then pass=$((pass+1)); else fail=$((fail+1)); echo "FAIL $model $type"; fi
        rm -f "$out"
    done
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
