#!/usr/bin/env bash
# quantize as a llama-quantize user drives it: a mix name given to --type is pointed at --recipe; an
# already-quantized GGUF is refused without --allow-requantize (dequantizing to a float type is not
# requantizing); --tensor-type patterns are PCRE2 (\d, lookahead) and one that decides no tensor warns,
# or fails the run with --strict before anything is written; quantize.imatrix.* integer keys are u32,
# the types llama-quantize itself writes (compared with a llama-quantize run when the reference is built).
set -uo pipefail
source "$1/tests/lib/cli_test.sh"
cli_test_setup "$@"

ref=${QF_REF_DIR:-$HOME/.cache/qforge-ref}
"$qf" synth m --dim 256 --ff 512 --vocab 300 >/dev/null || exit 1
"$qf" convert m -o f32.gguf --type f32 -q && "$qf" quantize f32.gguf -o q8.gguf --type q8_0 -q || exit 1

# ---- a recipe name given as a type --------------------------------------------------------------------
expect 2 "--type Q4_K_M" -- "$qf" quantize m --type Q4_K_M -o x.gguf
has "--type Q4_K_M" "use --recipe q4_k_m"
[ ! -e x.gguf ] && ok || bad "--type Q4_K_M left x.gguf"
expect 2 "--type Q5_K_S" -- "$qf" quantize m --type Q5_K_S -o x.gguf
has "--type Q5_K_S" "use --recipe q5_k_s"
expect 2 "--type IQ2_M" -- "$qf" quantize m --type IQ2_M -o x.gguf
has "--type IQ2_M" "use --recipe iq2_m"
expect 2 "--type IQ3_XS (neither a type nor a recipe)" -- "$qf" quantize m --type IQ3_XS -o x.gguf
has "--type IQ3_XS" "--recipe q8_0, q4_k_m"
expect 0 "--recipe Q4_K_M (llama-quantize's spelling)" -- "$qf" quantize m --recipe Q4_K_M --dry-run

# ---- requantizing -------------------------------------------------------------------------------------
expect 2 "requantize q8_0 -> q4_K" -- "$qf" quantize q8.gguf --type q4_K -o r.gguf
has "requantize" "is already q8_0; quantizing it again to q4_K"
has "requantize" "--allow-requantize"
[ ! -e r.gguf ] && ok || bad "refused requantize left r.gguf"
expect 2 "requantize q8_0 -> q8_0 (re-encoded too)" -- "$qf" quantize q8.gguf --type q8_0 -o r.gguf
expect 2 "requantize in --dry-run as in the run" -- "$qf" quantize q8.gguf --type q4_K --dry-run
expect 0 "--allow-requantize" -- "$qf" quantize q8.gguf --type q4_K -o r.gguf --allow-requantize -q
expect 0 "dequantizing to f16 is not requantizing" -- "$qf" convert q8.gguf --type f16 -o d.gguf -q
expect 0 "f32 GGUF quantizes" -- "$qf" quantize f32.gguf --type q4_K -o k.gguf -q

# ---- --tensor-type: PCRE2, first match wins, unmatched overrides ---------------------------------------
plan_types() { # prints "name type" for each tensor of a --dry-run --json plan on stdin
    python3 -c 'import json,sys; [print(t["name"], t["type"]) for t in json.load(sys.stdin)["tensors"]]'
}
"$qf" quantize m --type q4_K -T 'blk\.\d\.attn_v=q8_0' -T '(?<=blk\.1\.)ffn_(?!down)=q5_K' --dry-run --json 2>err.txt |
    plan_types >types.txt
[ ! -s err.txt ] && ok || bad "PCRE2 overrides warned: $(cat err.txt)"
[ "$(grep -c 'attn_v.weight q8_0' types.txt)" -eq 2 ] && ok || bad "\\d did not match both attn_v: $(cat types.txt)"
grep -q "blk.1.ffn_gate.weight q5_K" types.txt && grep -q "blk.1.ffn_up.weight q5_K" types.txt &&
    grep -q "blk.1.ffn_down.weight q4_K" types.txt && grep -q "blk.0.ffn_gate.weight q4_K" types.txt && ok ||
    bad "lookbehind/lookahead override: $(cat types.txt)"
expect 0 "an override that decides nothing" -- "$qf" quantize m --type q4_K -T 'attn_z=q8_0' -T 'norm=q8_0' -o w.gguf -q
[ "$(grep -c "warning: --tensor-type '.*' decides no tensor" <<<"$out")" -eq 2 ] && ok || bad "no warning per unused override: $out"
has "unused override" "attn_z=q8_0"
expect 2 "--strict" -- "$qf" quantize m --type q4_K -T 'attn_z=q8_0' -o s.gguf --strict -q
has "--strict" "--tensor-type 'attn_z=q8_0' decides no tensor"
[ ! -e s.gguf ] && ok || bad "--strict left s.gguf"
expect 0 "shadowed override warns too" -- "$qf" quantize m --type q4_K -T 'attn=q8_0' -T 'attn_v=q6_K' --dry-run
has "shadowed" "'attn_v=q6_K' decides no tensor"
expect 2 "bad regex" -- "$qf" quantize m --type q4_K -T '(attn=q8_0' --dry-run
has "bad regex" "bad regular expression"

# ---- quantize.imatrix.* keys as llama-quantize writes them ---------------------------------------------
make_text text.txt 9
"$qf" calibrate f32.gguf -f text.txt -c 64 --chunks 4 -o im.gguf -q || bad "calibrate"
"$qf" quantize f32.gguf --recipe q4_k_m --imatrix im.gguf -o qi.gguf -q || bad "quantize --imatrix"
$meta qi.gguf >qi.json
python3 - qi.json <<'PY' && ok || bad "quantize.imatrix.* types"
import json, sys
kv = json.load(open(sys.argv[1]))["kv"]
assert kv["quantize.imatrix.entries_count"]["type"] == "u32", kv["quantize.imatrix.entries_count"]
assert kv["quantize.imatrix.chunks_count"] == {"type": "u32", "value": 4}, kv["quantize.imatrix.chunks_count"]
assert kv["quantize.imatrix.file"]["type"] == "str"
PY
if [ -x "$ref/bin/llama-quantize" ]; then
    LD_LIBRARY_PATH=$ref/bin "$ref/bin/llama-quantize" --imatrix im.gguf f32.gguf ql.gguf Q4_K_M 1 >ql.log 2>&1 ||
        bad "llama-quantize: $(tail -3 ql.log)"
    $meta ql.gguf >ql.json
    python3 - qi.json ql.json <<'PY' && ok || bad "key types differ from llama-quantize's"
import json, sys
ours, theirs = (json.load(open(p))["kv"] for p in sys.argv[1:3])
keys = [k for k in theirs if k.startswith("quantize.imatrix.")]
assert keys, "llama-quantize wrote no quantize.imatrix.* keys"
for k in keys:
    assert ours[k]["type"] == theirs[k]["type"], (k, ours[k], theirs[k])
PY
else
    echo "SKIP: $ref/bin/llama-quantize is absent (bash ../shared/ref/setup_ref.sh): key types checked against the source only"
fi

cli_test_finish quantize_options
