#!/usr/bin/env bash
# Files qforge quantizes with ggml types only load in llama.cpp (the reference in ../shared/ref), and
# llama.cpp's perplexity on them agrees with qforge's own runtime: qf-llama-a quantized with the q4_k_m,
# q3_k_m and int3-mix recipes and uniform q4_K / q6_K / the nine i-quant types, and the DeepSeek-V3-architecture qf-deepseek-a
# (MLA, MoE) with q8_0, q4_k_m and q3_k_m. Two checks per file:
#  - exact: llama.cpp's PPL on the file dequantized to F32 (by qforge) equals our runtime's on the
#    quantized file within 2e-6 relative: our runtime computes the dequantized model exactly, as
#    llama.cpp's F32 path does (the dequantization itself is bit-identical with ggml's: test_kernels_ggml);
#  - llama.cpp on the quantized file within 1%: its integer kernels approximate (activations quantized to
#    8 bits, ...). Measured: within 0.25% everywhere except qf-deepseek-a q3_k_m, 0.54%, where
#    llama-quantize's choice (and so ours) puts attn_k_b, whose rows are 32 long, in Q4_0, and llama.cpp's
#    Q4_0 product there deviates that much from exact (with attn_k_b in Q8_0 the gap is 0.05%).
set -euo pipefail
root=$1; scratch=$2; qf=${QF_BIN:?}
ref=${QF_REF_DIR:-$HOME/.cache/qforge-ref}
. "$(dirname "$0")/lib/llamacpp.sh"
models=$root/../shared/models
text=$root/../shared/text/tinystories-valid-head.txt
for m in qf-llama-a qf-deepseek-a; do
    if [ ! -d "$models/$m" ]; then echo "SKIP: ../shared/models/$m is absent"; exit 77; fi
done
if [ ! -x "$ref/bin/llama-perplexity" ]; then echo "SKIP: llama.cpp reference not installed at $ref"; exit 77; fi
rm -rf "$scratch"; mkdir -p "$scratch"
pass=0; fail=0
within() { [ -n "$2" ] && python3 -c "import sys; a, b, t = map(float, sys.argv[1:]); sys.exit(abs(a / b - 1) > t)" "$1" "$2" "$3"; }
for job in "qf-llama-a -r q4_k_m" "qf-llama-a -r q3_k_m" "qf-llama-a -r int3-mix" "qf-llama-a --type q4_K" \
           "qf-llama-a --type q6_K" "qf-llama-a --type iq4_nl" "qf-llama-a --type iq4_xs" "qf-llama-a --type iq3_xxs" \
           "qf-llama-a --type iq3_s" "qf-llama-a --type iq2_xxs" "qf-llama-a --type iq2_xs" "qf-llama-a --type iq2_s" \
           "qf-llama-a --type iq1_s" "qf-llama-a --type iq1_m" \
           "qf-deepseek-a -r q8_0" "qf-deepseek-a -r q4_k_m" "qf-deepseek-a -r q3_k_m"; do
    set -- $job
    model=$models/$1; spec="$2 $3"; name=$1-$3
    out=$scratch/$name.gguf
    # shellcheck disable=SC2086 # spec is two words on purpose
    "$qf" quantize "$model" $spec -o "$out" -q
    ours=$("$qf" perplexity "$out" --text "$text" --ctx 256 --chunks 10 --json 2>/dev/null \
           | python3 -c 'import json,sys; print(json.load(sys.stdin)["ppl"])')
    "$qf" convert "$out" -o "$scratch/f32.gguf" --type f32 -q
    exact=$(llama_ppl "$scratch/f32.gguf" "$text" 256 10)
    theirs=$(llama_ppl "$out" "$text" 256 10)
    if within "$ours" "$exact" 2e-6 && within "$ours" "$theirs" 0.01; then
        echo "$name: qforge PPL $ours; llama.cpp on it dequantized $exact, on it $theirs"; pass=$((pass+1))
    else
        echo "FAIL $name: qforge PPL $ours; llama.cpp on it dequantized '${exact:-none}', on it '${theirs:-none (did not load)}'"
        fail=$((fail+1))
    fi
    rm -f "$out" "$scratch/f32.gguf"
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
