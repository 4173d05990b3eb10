#!/usr/bin/env bash
# runtime_pp.sh — prompt-processing throughput of qforge's runtime vs llama.cpp on the same GGUFs (the
# dense qf-llama-a as q8_0 from `qforge convert` and q4_K from `qforge quantize`, the DeepSeek-V3-
# architecture qf-deepseek-a with the q4_k_m recipe), the same text and the same protocol (ctx 256,
# 20 chunks), one thread on each side.
#
# usage: bench/runtime_pp.sh [QFORGE_BIN] [SCRATCH]     (env: REF=llama.cpp reference dir, RUNS=best-of,
#                                                         JOBS="qf-llama-a:q8_0 qf-llama-a:q4_K qf-deepseek-a:q4_k_m")
# Our figure is qf_perplexity's eval time (forward passes only, scoring excluded), for the exact F32 path
# (default) and the 8-bit path (--act q8: activations quantized per 32-block, integer products, as
# llama.cpp does); llama.cpp's is the "prompt eval time" of llama_perf_context_print (llama_decode only).
# Both sides run at llama-perplexity's default -b 2048 (8 chunks of 256 per forward call; qforge's
# --batch means the same) and, for reference, llama-perplexity also at -b 256 (one chunk per call). The machine is shared, so every configuration runs RUNS times, the runs
# interleaved, and the best run of each counts.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
QF=${1:-${QF_BIN:-$ROOT/build/qforge}}
SCRATCH=${2:-$(mktemp -d)}
REF=${REF:-${QF_REF_DIR:-$HOME/.cache/qforge-ref}}
RUNS=${RUNS:-3}
JOBS=${JOBS:-qf-llama-a:q8_0 qf-llama-a:q4_K qf-deepseek-a:q4_k_m}
MODELS=$ROOT/../shared/models
TEXT=$ROOT/../shared/text/tinystories-valid-head.txt
[ -d "$MODELS" ] && [ -f "$TEXT" ] || { echo "SKIP: ../shared models/text absent"; exit 77; }
[ -x "$REF/bin/llama-perplexity" ] || { echo "SKIP: llama-perplexity not found under $REF"; exit 77; }
mkdir -p "$SCRATCH"

gguf_of() { # $1 = model, $2 = type or recipe (q4_k_m)
    local g=$SCRATCH/$1-$2.gguf
    if [ ! -f "$g" ]; then
        case $2 in
            q8_0) "$QF" convert "$MODELS/$1" -o "$g" --type q8_0 -q ;;
            *_k_m) "$QF" quantize "$MODELS/$1" --recipe "$2" -o "$g" -q ;;
            *) "$QF" quantize "$MODELS/$1" --type "$2" -o "$g" -q ;;
        esac
    fi
    echo "$g"
}
ours() { # $1 = gguf, $2 = f32|q8 -> "tokens/s ppl"
    "$QF" perplexity "$1" --text "$TEXT" --ctx 256 --chunks 20 --batch 2048 --threads 1 --act "$2" --json 2>/dev/null |
        python3 -c 'import json,sys; d=json.load(sys.stdin); print("%.1f %.4f" % (d["tokens_per_second"], d["ppl"]))'
}
llama() { # $1 = gguf, $2 = batch size -> "tokens/s ppl"
    LD_LIBRARY_PATH=$REF/bin "$REF/bin/llama-perplexity" -m "$1" -f "$TEXT" -c 256 -b "$2" --chunks 20 -t 1 -lv 5 2>&1 |
        awk '/prompt eval time/ { for (i = 1; i <= NF; i++) if ($i == "tokens" && $(i+1) == "per") tps = $(i-1) }
             /Final estimate/ { ppl = $(NF-2) } END { printf "%.1f %s\n", tps, ppl }' | tr -d '('
}
best() { sort -g -r | head -1; }

echo "text tinystories-valid-head.txt, ctx 256, 20 chunks, 1 thread each side, best of $RUNS interleaved runs"
printf '%-22s %-34s %12s %10s\n' file configuration tokens/s PPL
for job in $JOBS; do
    t=${job/:/-}
    g=$(gguf_of "${job%%:*}" "${job#*:}")
    declare -A res=()
    configs=("qforge --act f32 --batch 2048" "qforge --act q8 --batch 2048" "llama-perplexity -b 256" "llama-perplexity -b 2048")
    for _ in $(seq "$RUNS"); do
        res[0]+="$(ours "$g" f32)"$'\n'; res[1]+="$(ours "$g" q8)"$'\n'
        res[2]+="$(llama "$g" 256)"$'\n'; res[3]+="$(llama "$g" 2048)"$'\n'
    done
    tps=()
    for i in 0 1 2 3; do
        read -r v p <<<"$(printf '%s' "${res[$i]}" | best)"
        tps+=("$v")
        printf '%-22s %-34s %12s %10s\n' "$t" "${configs[$i]}" "$v" "$p"
    done
    python3 - "$t" "${tps[@]}" <<'PY'
import sys
t, f, q, l256, l2048 = sys.argv[1], *map(float, sys.argv[2:])
print("%-22s ratio qforge/llama.cpp: f32 %.2f (-b 256) %.2f (-b 2048); q8 %.2f (-b 256) %.2f (-b 2048)"
      % (t, f / l256, f / l2048, q / l256, q / l2048))
PY
    unset res
done
