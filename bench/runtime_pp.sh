#!/usr/bin/env bash
# runtime_pp.sh — prompt-processing throughput of qforge's reference runtime vs llama.cpp on the same
# q8_0 GGUF of qf-llama-a, the same text and the same protocol (ctx 256, 20 chunks), one thread each.
#
# usage: bench/runtime_pp.sh [QFORGE_BIN] [SCRATCH]     (env: REF=llama.cpp reference dir, RUNS=best-of)
# Our figure is qf_perplexity's eval time (forward passes only, scoring excluded); llama.cpp's is the
# "prompt eval time" of llama_perf_context_print (llama_decode only). llama-perplexity runs twice: with
# -b 256 (one chunk per batch, exactly our batching) and with its default -b 2048 (8 chunks per batch).
# The machine is shared, so each side runs RUNS times interleaved and the best run counts.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
QF=${1:-${QF_BIN:-$ROOT/build/qforge}}
SCRATCH=${2:-$(mktemp -d)}
REF=${REF:-${QF_REF_DIR:-$HOME/.cache/qforge-ref}}
RUNS=${RUNS:-3}
MODEL=$ROOT/../shared/models/qf-llama-a
TEXT=$ROOT/../shared/text/tinystories-valid-head.txt
[ -d "$MODEL" ] && [ -f "$TEXT" ] || { echo "SKIP: ../shared models/text absent"; exit 77; }
[ -x "$REF/bin/llama-perplexity" ] || { echo "SKIP: llama-perplexity not found under $REF"; exit 77; }
mkdir -p "$SCRATCH"
GGUF=$SCRATCH/qf-llama-a-q8_0.gguf
[ -f "$GGUF" ] || "$QF" convert "$MODEL" -o "$GGUF" --type q8_0 -q

ours() {
    "$QF" perplexity "$GGUF" --text "$TEXT" --ctx 256 --chunks 20 --threads 1 --json 2>/dev/null |
        python3 -c 'import json,sys; d=json.load(sys.stdin); print("%.1f %.4f" % (d["tokens_per_second"], d["ppl"]))'
}
llama() { # $1 = batch size
    LD_LIBRARY_PATH=$REF/bin "$REF/bin/llama-perplexity" -m "$GGUF" -f "$TEXT" -c 256 -b "$1" --chunks 20 -t 1 -lv 5 2>&1 |
        awk '/prompt eval time/ { for (i = 1; i <= NF; i++) if ($i == "tokens" && $(i+1) == "per") tps = $(i-1) }
             /Final estimate/ { ppl = $(NF-2) } END { printf "%.1f %s\n", tps, ppl }' | tr -d '('
}
best() { sort -g -r | head -1; }

o=(); l256=(); l2048=()
for _ in $(seq "$RUNS"); do
    o+=("$(ours)"); l256+=("$(llama 256)"); l2048+=("$(llama 2048)")
done
O=$(printf '%s\n' "${o[@]}" | best); L1=$(printf '%s\n' "${l256[@]}" | best); L2=$(printf '%s\n' "${l2048[@]}" | best)
read -r ot oppl <<<"$O"; read -r l1t l1ppl <<<"$L1"; read -r l2t l2ppl <<<"$L2"
echo "model: qf-llama-a q8_0 ($GGUF), text: tinystories-valid-head.txt, ctx 256, 20 chunks, 1 thread, best of $RUNS"
printf '%-34s %10s tokens/s   PPL %s\n' "qforge perplexity (batch 256)" "$ot" "$oppl"
printf '%-34s %10s tokens/s   PPL %s\n' "llama-perplexity -b 256" "$l1t" "$l1ppl"
printf '%-34s %10s tokens/s   PPL %s\n' "llama-perplexity -b 2048 (default)" "$l2t" "$l2ppl"
python3 -c "import sys; o,a,b=map(float,sys.argv[1:]); print('ratio qforge/llama.cpp: %.2f (vs -b 256), %.2f (vs -b 2048)' % (o/a, o/b))" "$ot" "$l1t" "$l2t"
