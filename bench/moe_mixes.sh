#!/usr/bin/env bash
# The DeepSeek deployment mixes made straight from an FP8 release (one pass, no BF16 copy), against
# that release: PPL ratio and KLD on held-out text (qforge verify, base = the FP8 checkpoint itself),
# file size and bits per weight. The seeds' budget: fp8-int4 / q8-int4 within +1% PPL, int3-mix within
# +6% (DeepSeek-V3: 8.2 -> 8.7).
#
#   bash bench/moe_mixes.sh [QFORGE_BIN]      # default build/qforge; ~3 min on 2 cores
#
# Environment: MM_MODEL [../shared/models/qf-deepseek-a-fp8], MM_CAL [tinyshakespeare.txt] (MM_CAL_CHUNKS
# [60] x 256 tokens), MM_EVAL [gutenberg/pg1661.txt and wikitext-2-raw-test.txt, both held out from
# training], MM_EVAL_CHUNKS [30], MM_RECIPES [fp8 fp8-int4 q8-int4 int3-mix q4_k_m], MM_KEEP (a directory
# to keep the files in).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
qf=${1:-$here/build/qforge}
shared=$here/../shared
model=${MM_MODEL:-$shared/models/qf-deepseek-a-fp8}
cal=${MM_CAL:-$shared/text/tinyshakespeare.txt}
evals=${MM_EVAL:-"$shared/text/gutenberg/pg1661.txt $shared/text/wikitext-2-raw-test.txt"}
chunks=${MM_EVAL_CHUNKS:-30}
recipes=${MM_RECIPES:-"fp8 fp8-int4 q8-int4 int3-mix q4_k_m"}
[ -d "$model" ] || { echo "SKIP: $model is absent"; exit 0; }
work=${MM_KEEP:-$(mktemp -d)}
mkdir -p "$work"
[ -n "${MM_KEEP:-}" ] || trap 'rm -rf "$work"' EXIT
"$qf" calibrate "$model" -f "$cal" -c 256 --chunks "${MM_CAL_CHUNKS:-60}" -o "$work/im.gguf" -q
src_bytes=$(python3 -c "
import json, sys, subprocess
r = json.loads(subprocess.run([sys.argv[1], 'inspect', sys.argv[2], '--json'], capture_output=True, text=True).stdout)
print(r['totals']['bytes'], r['totals']['parameters'])" "$qf" "$model")
read -r sbytes sparams <<<"$src_bytes"
printf '| recipe | file bytes | bpw |'; for e in $evals; do printf ' %s PPL ratio | KLD |' "$(basename "$e" .txt)"; done; echo
printf '|---|---:|---:|'; for e in $evals; do printf -- '---:|---:|'; done; echo
printf '| source (FP8 release, incl. MTP) | %s | %.3f |' "$sbytes" "$(python3 -c "print(8*$sbytes/$sparams)")"
for e in $evals; do printf ' 1 | 0 |'; done; echo
for r in $recipes; do
    imx=(--imatrix "$work/im.gguf")
    [ "$r" = fp8 ] && imx=() # FP8 passes through: nothing is quantized, an imatrix would be refused
    "$qf" quantize "$model" --recipe "$r" "${imx[@]}" -o "$work/$r.gguf" -q
    bpw=$("$qf" inspect "$work/$r.gguf" --json | python3 -c 'import json,sys; print("%.3f" % json.load(sys.stdin)["totals"]["bpw"])')
    printf '| %s | %s | %s |' "$r" "$(stat -c %s "$work/$r.gguf")" "$bpw"
    for e in $evals; do
        "$qf" verify "$work/$r.gguf" --base "$model" -f "$e" -c 256 --chunks "$chunks" --json "$work/$r.json" -q >/dev/null 2>&1 ||
            { echo "verify failed for $r" >&2; exit 1; }
        python3 -c 'import json,sys; v=json.load(open(sys.argv[1])); print(" %.5f | %.6f |" % (v["ppl_ratio"], v["kld_mean"]), end="")' "$work/$r.json"
    done
    echo
done
