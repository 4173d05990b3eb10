#!/usr/bin/env bash
# runtime_ppl.sh — the perplexity and verify commands end to end (argv: repo root, scratch; env QF_BIN):
#   * qforge perplexity on q8_0 GGUFs agrees with llama.cpp's llama-perplexity on the same files (0.5%)
#     when the reference build is installed (../shared/ref/README.md; skipped otherwise)
#   * QF_ISA=scalar (and, for --act q8, QF_ISA=avx2) gives the same bits as the default kernels
#   * verify: self-comparison passes (exit 0), a failed threshold exits 1, mismatched vocabularies and
#     usage errors exit 2; the JSON and JUnit reports parse and hold their fields
set -uo pipefail
ROOT=${1:?repo root}
SCRATCH=${2:?scratch dir}
QF=${QF_BIN:-$ROOT/build/qforge}
REF=${QF_REF_DIR:-$HOME/.cache/qforge-ref}
SHARED=$ROOT/../shared
TEXT=$SHARED/text/tinystories-valid-head.txt
S260=$SHARED/models/stories260K
QLA=$SHARED/models/qf-llama-a
[ -f "$TEXT" ] && [ -d "$S260" ] || { echo "SKIP: ../shared models/text absent"; exit 77; }
mkdir -p "$SCRATCH"
fails=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fails=$((fails + 1)); }
json_get() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

for m in "$S260" "$QLA"; do
    [ -d "$m" ] || continue
    n=$(basename "$m")
    for t in f32 q8_0; do
        [ -f "$SCRATCH/$n-$t.gguf" ] || "$QF" convert "$m" -o "$SCRATCH/$n-$t.gguf" --type $t -q || bad "convert $n $t"
    done
done

# ---- perplexity vs llama.cpp on the same q8_0 files -------------------------------------------------
for n in stories260K qf-llama-a; do
    g=$SCRATCH/$n-q8_0.gguf
    [ -f "$g" ] || continue
    "$QF" perplexity "$g" --text "$TEXT" --ctx 256 --chunks 20 --threads 2 --json >"$SCRATCH/$n.ppl.json" 2>/dev/null ||
        { bad "perplexity $n q8_0"; continue; }
    ours=$(json_get "$SCRATCH/$n.ppl.json" ppl)
    if [ -x "$REF/bin/llama-perplexity" ]; then
        theirs=$(LD_LIBRARY_PATH=$REF/bin "$REF/bin/llama-perplexity" -m "$g" -f "$TEXT" -c 256 --chunks 20 -t 2 2>&1 |
                 awk '/Final estimate/ { print $(NF-2) }')
        if python3 -c 'import sys; a,b=map(float,sys.argv[1:]); sys.exit(0 if abs(a/b-1) <= 5e-3 else 1)' "$ours" "${theirs:-nan}"; then
            ok "$n q8_0: qforge $ours vs llama-perplexity $theirs"
        else
            bad "$n q8_0: qforge $ours vs llama-perplexity ${theirs:-?} (> 0.5%)"
        fi
    else
        echo "SKIP llama.cpp agreement: $REF/bin/llama-perplexity absent"
    fi
done

# ---- the 8-bit path (--act q8) vs llama.cpp, which quantizes activations too, on q8_0 and q4_K ----------
if [ -d "$QLA" ] && [ -x "$REF/bin/llama-perplexity" ]; then
    g4=$SCRATCH/qf-llama-a-q4_K.gguf
    [ -f "$g4" ] || "$QF" convert "$QLA" -o "$g4" --type q4_K -q || bad "convert qf-llama-a q4_K"
    for g in "$SCRATCH/qf-llama-a-q8_0.gguf" "$g4"; do
        [ -f "$g" ] || continue
        ours=$("$QF" perplexity "$g" --text "$TEXT" --ctx 256 --chunks 20 --threads 2 --act q8 --json 2>/dev/null |
               python3 -c 'import json,sys; print(json.load(sys.stdin)["ppl"])')
        theirs=$(LD_LIBRARY_PATH=$REF/bin "$REF/bin/llama-perplexity" -m "$g" -f "$TEXT" -c 256 --chunks 20 -t 2 2>&1 |
                 awk '/Final estimate/ { print $(NF-2) }')
        if python3 -c 'import sys; a,b=map(float,sys.argv[1:]); sys.exit(0 if abs(a/b-1) <= 5e-3 else 1)' "${ours:-nan}" "${theirs:-nan}"; then
            ok "$(basename "$g") --act q8: qforge $ours vs llama-perplexity $theirs"
        else
            bad "$(basename "$g") --act q8: qforge ${ours:-?} vs llama-perplexity ${theirs:-?} (> 0.5%)"
        fi
    done
else
    echo "SKIP --act q8 vs llama.cpp: qf-llama-a or $REF/bin/llama-perplexity absent"
fi
a=$("$QF" perplexity "$SCRATCH/stories260K-q8_0.gguf" --text "$TEXT" --ctx 256 --chunks 2 --act q8 --json 2>/dev/null | python3 -c 'import json,sys; print(repr(json.load(sys.stdin)["ppl"]))')
for isa in scalar avx2; do # the reference and the AVX2 integer tile (used where VNNI is absent)
    b=$(QF_ISA=$isa "$QF" perplexity "$SCRATCH/stories260K-q8_0.gguf" --text "$TEXT" --ctx 256 --chunks 2 --act q8 --json 2>/dev/null | python3 -c 'import json,sys; print(repr(json.load(sys.stdin)["ppl"]))')
    [ -n "$a" ] && [ "$a" = "$b" ] && ok "--act q8: QF_ISA=$isa PPL $b identical" || bad "--act q8: QF_ISA=$isa PPL $b vs $a"
done
"$QF" perplexity "$S260" --text "$TEXT" --act q4 >/dev/null 2>&1
rc=$?
[ $rc -eq 2 ] && ok "--act q4 is a usage error (exit 2)" || bad "--act q4 exit $rc"

# ---- the scalar kernels give the same bits -----------------------------------------------------------
a=$("$QF" perplexity "$S260" --text "$TEXT" --ctx 256 --chunks 5 --json 2>/dev/null | python3 -c 'import json,sys; print(repr(json.load(sys.stdin)["ppl"]))')
b=$(QF_ISA=scalar "$QF" perplexity "$S260" --text "$TEXT" --ctx 256 --chunks 5 --json 2>/dev/null | python3 -c 'import json,sys; print(repr(json.load(sys.stdin)["ppl"]))')
[ -n "$a" ] && [ "$a" = "$b" ] && ok "QF_ISA=scalar PPL $b identical" || bad "QF_ISA=scalar PPL $b vs $a"

# ---- an archive of the HF directory is read in place, with the same bits --------------------------------
if tar -czf "$SCRATCH/stories260K.tar.gz" -C "$SHARED/models" stories260K 2>/dev/null; then
    c=$("$QF" perplexity "$SCRATCH/stories260K.tar.gz" --text "$TEXT" --ctx 256 --chunks 5 --json 2>/dev/null | python3 -c 'import json,sys; print(repr(json.load(sys.stdin)["ppl"]))')
    [ -n "$a" ] && [ "$a" = "$c" ] && ok "tar.gz of the HF directory: PPL $c identical" || bad "archive PPL $c vs $a"
fi

# ---- verify ------------------------------------------------------------------------------------------
F32=$SCRATCH/stories260K-f32.gguf
Q8=$SCRATCH/stories260K-q8_0.gguf
"$QF" verify "$F32" --base "$F32" --text "$TEXT" --ctx 256 --chunks 4 --max-kld 0 --min-top1 100 \
    --max-ppl-increase 0 --json "$SCRATCH/self.json" --junit "$SCRATCH/self.xml" >/dev/null 2>&1
rc=$?
[ $rc -eq 0 ] && ok "verify self exit 0" || bad "verify self exit $rc"
python3 - "$SCRATCH/self.json" "$SCRATCH/self.xml" <<'PY' && ok "self reports parse" || bad "self reports"
import json, sys, xml.etree.ElementTree as ET
d = json.load(open(sys.argv[1]))
for k in ("ppl_model", "ppl_base", "ppl_ratio", "kld_mean", "kld_median", "kld_p99", "kld_max", "same_top1_pct",
          "rms_dp_pct", "checks", "pass"):
    assert k in d, k
assert d["kld_mean"] == 0 and d["same_top1_pct"] == 100 and d["pass"] is True and len(d["checks"]) == 3
s = ET.parse(sys.argv[2]).getroot().find("testsuite")  # one testcase per metric, three of them gated
assert s.get("tests") == "10" and s.get("failures") == "0" and len(s.findall("testcase")) == 10
PY
"$QF" verify "$Q8" --base "$F32" --text "$TEXT" --ctx 256 --chunks 4 --max-kld 0 --json "$SCRATCH/q8.json" \
    --junit "$SCRATCH/q8.xml" >/dev/null 2>&1
rc=$?
[ $rc -eq 1 ] && ok "verify q8_0 vs f32 --max-kld 0 exit 1" || bad "verify q8_0 --max-kld 0 exit $rc"
python3 - "$SCRATCH/q8.json" "$SCRATCH/q8.xml" <<'PY' && ok "failing reports parse" || bad "failing reports"
import json, sys, xml.etree.ElementTree as ET
d = json.load(open(sys.argv[1]))
assert d["pass"] is False and d["kld_mean"] > 0 and d["checks"][0]["name"] == "max_kld"
s = ET.parse(sys.argv[2]).getroot().find("testsuite")
assert s.get("tests") == "10" and s.get("failures") == "1"
assert [c.get("name") for c in s.findall("testcase") if c.find("failure") is not None] == ["kld_mean"]
PY
if [ -d "$QLA" ]; then
    "$QF" verify "$SCRATCH/qf-llama-a-q8_0.gguf" --base "$F32" --text "$TEXT" --ctx 256 --chunks 2 >/dev/null 2>"$SCRATCH/vocab.err"
    rc=$?
    [ $rc -eq 2 ] && grep -q "vocabularies differ" "$SCRATCH/vocab.err" && ok "mismatched vocabularies exit 2" ||
        bad "mismatched vocabularies exit $rc: $(cat "$SCRATCH/vocab.err")"
fi
"$QF" verify "$F32" --text "$TEXT" >/dev/null 2>&1; rc=$?
[ $rc -eq 2 ] && ok "verify without --base exit 2" || bad "verify without --base exit $rc"
"$QF" perplexity "$F32" --text "$TEXT" --ctx abc >/dev/null 2>&1; rc=$?
[ $rc -eq 2 ] && ok "bad --ctx exit 2" || bad "bad --ctx exit $rc"

[ $fails -eq 0 ] && echo "runtime_ppl: all passed" || echo "runtime_ppl: $fails failed"
exit $((fails > 0))
