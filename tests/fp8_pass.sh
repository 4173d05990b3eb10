#!/usr/bin/env bash
# fp8_pass.sh — FP8 pass-through on a real FP8 release (argv: repo root, scratch; env QF_BIN):
# qf-deepseek-a-fp8 (DeepSeek-V3's layout: E4M3 + F32 weight_scale_inv per 128x128 block) quantized with
# the fp8 recipe keeps the release's codes and scales (e4m3_b128; attn_k_b's 32-value rows e4m3_row),
# so the file is the checkpoint: qforge perplexity of the file equals perplexity run on the checkpoint
# directory (to 1e-6; it is bit-identical), verify against the checkpoint gives KLD 0 and 100% top-1,
# and the file is no larger than the checkpoint's tensors (the MTP layer it drops left out) plus the
# e4m3_b128 scales (4 bytes per 128 codes instead of per 128x128) and 1 MiB of metadata and F32 norms.
set -uo pipefail
ROOT=${1:?repo root}
SCRATCH=${2:?scratch dir}
QF=${QF_BIN:-$ROOT/build/qforge}
SHARED=$ROOT/../shared
TEXT=$SHARED/text/tinystories-valid-head.txt
SRC=$SHARED/models/qf-deepseek-a-fp8
[ -f "$TEXT" ] && [ -d "$SRC" ] || { echo "SKIP: ../shared qf-deepseek-a-fp8 or its text absent"; exit 77; }
rm -rf "$SCRATCH"; mkdir -p "$SCRATCH"
fails=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fails=$((fails + 1)); }
json_get() { python3 -c 'import json,sys; print(repr(json.load(open(sys.argv[1]))[sys.argv[2]]))' "$1" "$2"; }
G=$SCRATCH/fp8.gguf

"$QF" quantize "$SRC" -o "$G" --recipe fp8 -q || { echo "FAIL quantize --recipe fp8"; exit 1; }
"$QF" quantize "$SRC" -o "$SCRATCH/plan.gguf" --recipe fp8 --dry-run --json >"$SCRATCH/plan.json" || bad "dry run"
python3 - "$SCRATCH/plan.json" <<'PY' && ok "plan: every E4M3 weight passed through" || bad "plan: some E4M3 weight is re-quantized"
import json, sys
t = json.load(open(sys.argv[1]))["tensors"]
fp8 = [x for x in t if x["type"] in ("e4m3_b128", "e4m3_row", "e4m3_b32")]
print(f"{len(fp8)} FP8 tensors; types:", sorted({x["type"] for x in fp8}))
sys.exit(0 if fp8 and all("passed through" in x["reason"] for x in fp8) else 1)
PY

ppl() { "$QF" perplexity "$1" --text "$TEXT" --ctx 256 --chunks 20 --threads 2 --json 2>/dev/null >"$2"; }
ppl "$G" "$SCRATCH/gguf.json" || bad "perplexity of the fp8 file"
ppl "$SRC" "$SCRATCH/src.json" || bad "perplexity of the checkpoint"
a=$(json_get "$SCRATCH/gguf.json" ppl) b=$(json_get "$SCRATCH/src.json" ppl)
if python3 -c 'import sys; a,b=map(float,sys.argv[1:]); sys.exit(0 if abs(a/b-1) <= 1e-6 else 1)' "$a" "$b"; then
    ok "PPL fp8 file $a, checkpoint $b$([ "$a" = "$b" ] && echo ' (bit-identical)')"
else
    bad "PPL fp8 file $a, checkpoint $b (> 1e-6 apart)"
fi

"$QF" verify "$G" --base "$SRC" --file "$TEXT" --ctx 256 --chunks 20 --threads 2 --max-kld 0 --json "$SCRATCH/verify.json" -q \
    >/dev/null 2>&1 || bad "verify --max-kld 0 against the checkpoint"
kld=$(json_get "$SCRATCH/verify.json" kld_mean) top1=$(json_get "$SCRATCH/verify.json" same_top1_pct)
if [ "$kld" = "0" ] || [ "$kld" = "0.0" ]; then ok "verify: KLD $kld, same top-1 $top1%"; else bad "verify: KLD $kld"; fi

python3 - "$SRC" "$G" <<'PY' && ok "size" || bad "size: the file is larger than the checkpoint's tensors plus overhead"
import glob, json, os, struct, sys
src, gguf = sys.argv[1:]
n_layer = json.load(open(os.path.join(src, "config.json")))["num_hidden_layers"]
total = fp8 = 0
for f in sorted(glob.glob(os.path.join(src, "*.safetensors"))):
    with open(f, "rb") as fh:
        n = struct.unpack("<Q", fh.read(8))[0]
        header = json.loads(fh.read(n))
    for name, t in header.items():
        if name == "__metadata__" or name.startswith(f"model.layers.{n_layer}."):  # MTP: not converted
            continue
        size = t["data_offsets"][1] - t["data_offsets"][0]
        total += size
        fp8 += size if t["dtype"] == "F8_E4M3" else 0
size, limit = os.path.getsize(gguf), total + fp8 // 32 + (1 << 20)
print(f"fp8 file {size} bytes; checkpoint tensors {total} ({fp8} E4M3), +{100 * (size / total - 1):.2f}%; limit {limit}")
sys.exit(0 if size <= limit else 1)
PY

echo "$fails failed"
[ "$fails" -eq 0 ]
