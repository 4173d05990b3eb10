#!/usr/bin/env bash
# Automatic mixes end to end on generated models (dense Llama and a DeepSeek-V3-style MoE with MLA):
# qforge measure writes a table whose predictions match what it measured with --check; quantize
# --sensitivity --target-size never exceeds the size and its predicted KLD tracks verify's; a larger
# target predicts and measures less loss; --max-kld meets its bound; the plan is the same for any thread
# count and the file the same bytes; pins win; bad combinations and tables are one line, exit 2, no file.
set -uo pipefail
source "$1/tests/lib/cli_test.sh"
cli_test_setup "$@"

make_text cal.txt 11
make_text eval.txt 12
kld() { python3 -c "import json,sys; d = json.load(open(sys.argv[1])); print(d['results']['kld_mean'] if 'results' in d else d['kld_mean'])" "$1"; }
size() { stat -c %s "$1"; }

for arch in llama deepseek-v3; do
    m=$arch
    if [ $arch = llama ]; then
        "$qf" synth $m --dim 128 --ff 256 --vocab 300 --layers 3 >/dev/null || exit 1
    else
        "$qf" synth $m --arch deepseek-v3 --dim 128 --ff 256 --vocab 300 --layers 3 --experts 8 --experts-used 2 >/dev/null || exit 1
    fi
    "$qf" calibrate $m -f cal.txt -c 64 --chunks 8 -o $m.im.gguf -q || { bad "$arch: calibrate"; continue; }
    expect 0 "$arch: measure" -- "$qf" measure $m -f cal.txt -i $m.im.gguf -c 64 --chunks 4 --check -o $m.sens.json -t 2
    has "$arch: measure summary" "rank correlation"
    [ -z "$(ls -A . | grep qforge-measure)" ] && ok || bad "$arch: candidates left behind: $(ls -A)"
    python3 - $m.sens.json <<'PY' && ok || bad "$arch: table"
import json, sys
s = json.load(open(sys.argv[1]))
assert s["schema"] == "qforge.sensitivity/1" and s["probe"] == "q3_K", s["probe"]
assert s["rank_check"] > 0.9, s["rank_check"]          # the cost model ranks what --check measured
pred = meas = 0
for t in s["tensors"]:
    ty = t["types"]
    assert [c["bytes"] for c in ty] == sorted(c["bytes"] for c in ty), t["name"]
    for c in ty:
        assert c["kld"] is not None and c["err"] >= 0
        if c["type"] == s["probe"]:  # the probe's prediction is its measurement
            assert abs(t["gain"] * c["err"] - c["kld"]) <= 1e-9 * max(1, c["kld"]), t["name"]
        if c["type"] == "q4_K":
            pred += t["gain"] * c["err"]; meas += c["kld"]
assert 0.5 < pred / meas < 2, (pred, meas)            # summed predictions at another type
PY
    "$qf" quantize $m --recipe q4_k_m -i $m.im.gguf -o $m.q4km.gguf -q || bad "$arch: q4_k_m"
    "$qf" quantize $m --type q6_K -i $m.im.gguf -o $m.q6k.gguf -q || bad "$arch: q6_K"
    for ref in q4km q6k; do
        target=$(size $m.$ref.gguf)
        expect 0 "$arch: solve to $ref's size" -- "$qf" quantize $m --sensitivity $m.sens.json --target-size $target \
            -i $m.im.gguf -o $m.auto-$ref.gguf
        has "$arch: predicted KLD printed" "predicted KLD"
        [ "$(size $m.auto-$ref.gguf)" -le "$target" ] && ok || bad "$arch: $(size $m.auto-$ref.gguf) > $target"
        "$qf" verify $m.auto-$ref.gguf --base $m -f eval.txt -c 64 --chunks 6 --json $m.auto-$ref.v.json -q >/dev/null ||
            bad "$arch: verify auto-$ref"
        $meta $m.auto-$ref.gguf | grep -q 'qforge.recipe.*auto' && ok || bad "$arch: qforge.recipe is not auto"
    done
    # a recipe's size as the budget: no larger than the recipe's file, loses less than its own types (as
    # predicted, and as verify measures)
    expect 0 "$arch: q4_k_m's size, measured types" -- "$qf" quantize $m --recipe q4_k_m --sensitivity $m.sens.json \
        -i $m.im.gguf -o $m.q4km-sized.gguf
    pr=$(sed -n "s/.*predicted KLD \([0-9.e-]*\) (q4_k_m's own types: \([0-9.e-]*\)).*/\1 \2/p" <<<"$out")
    python3 -c "import sys; a, b = map(float, sys.argv[1:]); sys.exit(0 if a < b else 1)" $pr && ok ||
        bad "$arch: the solved q4_k_m-sized mix does not predict less than the recipe's types: '$pr'"
    [ "$(size $m.q4km-sized.gguf)" -le "$(size $m.q4km.gguf)" ] && ok ||
        bad "$arch: $(size $m.q4km-sized.gguf) bytes > q4_k_m's $(size $m.q4km.gguf)"
    $meta $m.q4km-sized.gguf | grep -q 'qforge.recipe.*auto:q4_k_m' && ok || bad "$arch: qforge.recipe is not auto:q4_k_m"
    for f in q4km q4km-sized; do
        "$qf" verify $m.$f.gguf --base $m -f eval.txt -c 64 --chunks 6 --json $m.$f.v.json -q >/dev/null || bad "$arch: verify $f"
    done
    python3 -c "import sys; a, b = map(float, sys.argv[1:]); sys.exit(0 if b < a else 1)" \
        "$(kld $m.q4km.v.json)" "$(kld $m.q4km-sized.v.json)" && ok ||
        bad "$arch: q4_k_m's size with measured types lost more: $(kld $m.q4km.v.json) -> $(kld $m.q4km-sized.v.json)"
    python3 -c "import sys; a, b = map(float, sys.argv[1:]); sys.exit(0 if b < a else 1)" \
        "$(kld $m.auto-q4km.v.json)" "$(kld $m.auto-q6k.v.json)" && ok ||
        bad "$arch: a larger target did not lower the KLD: $(kld $m.auto-q4km.v.json) -> $(kld $m.auto-q6k.v.json)"
    # the same plan for any thread count, and the same bytes
    "$qf" quantize $m --sensitivity $m.sens.json --target-bpw 6 -i $m.im.gguf -n --json -t 1 >p1.json 2>/dev/null
    "$qf" quantize $m --sensitivity $m.sens.json --target-bpw 6 -i $m.im.gguf -n --json -t 2 >p2.json 2>/dev/null
    cmp -s p1.json p2.json && ok || bad "$arch: plans differ across thread counts"
    python3 - p1.json <<'PY' && ok || bad "$arch: plan JSON"
import json, sys
p = json.load(open(sys.argv[1]))
assert p["totals"]["bpw"] <= 6, p["totals"]["bpw"]
solved = [t for t in p["tensors"] if t["predicted_kld"] is not None]
assert solved and all(t["reason"].startswith("solver:") for t in solved)
assert all(t["type"] == "f32" for t in p["tensors"] if len(t["ne"]) == 1)
PY
    "$qf" quantize $m --sensitivity $m.sens.json --target-bpw 6 -i $m.im.gguf -o t1.gguf -t 1 -q &&
        "$qf" quantize $m --sensitivity $m.sens.json --target-bpw 6 -i $m.im.gguf -o t2.gguf -t 2 -q &&
        cmp -s t1.gguf t2.gguf && ok || bad "$arch: files differ across thread counts"
    # --max-kld: the bound predicted met; a pin wins over the solver
    "$qf" quantize $m --sensitivity $m.sens.json --max-kld 0.01 -T 'token_embd=q8_0' -i $m.im.gguf -n --json \
        >pk.json 2>pk.err && ok || bad "$arch: --max-kld: $(cat pk.err)"
    python3 - pk.json <<'PY' && ok || bad "$arch: --max-kld plan"
import json, sys
p = json.load(open(sys.argv[1]))
ks = [t["predicted_kld"] for t in p["tensors"] if t["predicted_kld"] is not None]
assert sum(ks) <= 0.01, sum(ks)
e = [t for t in p["tensors"] if t["name"] == "token_embd.weight"][0]
assert e["type"] == "q8_0" and e["predicted_kld"] is None and "override" in e["reason"], e
PY
done

# ---- refusals: one line, exit 2, nothing written --------------------------------------------------------
one() { # WANT ARGS...
    local want=$1; shift
    "$qf" "$@" >out.txt 2>err.txt; local rc=$?
    if [ $rc -eq 2 ] && [ "$(wc -l <err.txt)" -eq 1 ] && grep -qF -- "$want" err.txt && [ ! -e bad.gguf ]; then ok
    else bad "qforge $*: exit $rc, expected one line with '$want': $(cat err.txt)"; fi
}
one "needs a budget" quantize llama --sensitivity llama.sens.json -o bad.gguf
one "need --sensitivity" quantize llama --target-size 1M -o bad.gguf
one "keeps the recipe's size: drop --target-size" quantize llama --sensitivity llama.sens.json --target-size 1M --recipe q4_k_m -o bad.gguf
one "drop --type" quantize llama --sensitivity llama.sens.json --type q4_K -o bad.gguf
one "below the smallest mix" quantize llama --sensitivity llama.sens.json --target-size 200K -o bad.gguf
one "--target-size takes a size" quantize llama --sensitivity llama.sens.json --target-size 12Q -o bad.gguf
one "has no tensor" quantize deepseek-v3 --sensitivity llama.sens.json --target-size 10M -o bad.gguf
one "not a qforge sensitivity table" quantize llama --sensitivity p1.json --target-size 10M -o bad.gguf
one "--probe q4_0 is not among" measure llama -f cal.txt -o bad.json --types q2_K,q4_K --probe q4_0
one "not a quantized type" measure llama -f cal.txt -o bad.json --types q2_K,f16
[ ! -e bad.json ] && ok || bad "a refused measure wrote its table"
cli_test_finish auto_mix
