#!/usr/bin/env bash
# The README's picture (docs/report-qf-llama-a.svg): qf-llama-a as qforge's automatic mixes at four sizes
# (the curve; `qforge measure` + `quantize --sensitivity --target-bpw`), six of qforge's recipes and, as
# the llama.cpp series, two of llama-quantize's mixes (same importance matrix), each verified against
# the BF16 checkpoint, then drawn by `qforge report`; the map shows the automatic mix at 4.75 bpw.
#
#   bash bench/report_picture.sh [QFORGE_BIN] [OUT.svg]    # defaults: build/qforge, docs/report-qf-llama-a.svg
#
# Protocol: importance matrix from `qforge calibrate` on ../shared/text/tinyshakespeare.txt (RP_CAL_CHUNKS
# x RP_CTX tokens); KLD from `qforge verify --base HF_DIR` on tinystories-valid-head.txt (RP_CHUNKS x
# RP_CTX tokens; not the calibration text). The llama.cpp rows need ~/.cache/qforge-ref (QF_REF_DIR) and
# are left out, with a note, without it.
# Environment: RP_CTX [256] RP_CAL_CHUNKS [64] RP_CHUNKS [20] RP_THREADS [nproc]
#   RP_KEEP  a directory to keep the intermediate files in; a rerun reuses what is there (default: temp dir)
# About a minute on 2 cores.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
qf=${1:-$here/build/qforge}
qf=$(realpath "$qf" 2>/dev/null || echo "$qf") # the verify and report steps run in the work directory
out=${2:-$here/docs/report-qf-llama-a.svg}
shared=${RP_SHARED:-$here/../shared}
ref=${QF_REF_DIR:-$HOME/.cache/qforge-ref}
model=$shared/models/qf-llama-a
ctx=${RP_CTX:-256} cal_chunks=${RP_CAL_CHUNKS:-64} chunks=${RP_CHUNKS:-20} threads=${RP_THREADS:-$(nproc)}
cal=$shared/text/tinyshakespeare.txt eval=$shared/text/tinystories-valid-head.txt

[ -x "$qf" ] || { echo "error: qforge binary '$qf' not found (build first, or pass its path)" >&2; exit 2; }
for f in "$model/config.json" "$cal" "$eval"; do
    [ -f "$f" ] || { echo "SKIP: $f is absent (the shared models and texts)"; exit 0; }
done
if [ -n "${RP_KEEP:-}" ]; then work=$RP_KEEP; mkdir -p "$work"
else work=$(mktemp -d); trap 'rm -rf "$work"' EXIT; fi
t0=$SECONDS
log() { printf '[%4ds] %s\n' "$((SECONDS - t0))" "$*" >&2; }
# once FILE CMD...: run CMD unless FILE exists already (RP_KEEP reruns)
once() { local f=$1; shift; [ -s "$f" ] || "$@"; }

log "calibrate ($cal_chunks x $ctx tokens of $(basename "$cal"))"
once "$work/imatrix.gguf" "$qf" calibrate "$model" -f "$cal" -c "$ctx" --chunks "$cal_chunks" -o "$work/imatrix.gguf" -j "$threads" -q
recipes="q8_0 q6_k q5_k_m q4_k_m q3_k_m q2_k"
for r in $recipes; do
    log "qforge quantize --recipe $r"
    once "$work/qforge-$r.gguf" "$qf" quantize "$model" -r "$r" --imatrix "$work/imatrix.gguf" -o "$work/qforge-$r.gguf" -j "$threads" -q
done
log "measure (4 x $ctx tokens of $(basename "$cal"))"
once "$work/sens.json" "$qf" measure "$model" -f "$cal" -c "$ctx" -i "$work/imatrix.gguf" -o "$work/sens.json" -j "$threads" -q
autos="4.25 4.75 5.35 6.5"
for b in $autos; do
    log "qforge quantize --sensitivity --target-bpw $b"
    once "$work/auto-$b.gguf" "$qf" quantize "$model" --sensitivity "$work/sens.json" --target-bpw "$b" \
        --imatrix "$work/imatrix.gguf" -o "$work/auto-$b.gguf" -j "$threads" -q
done
ref_files=()
if [ -x "$ref/bin/llama-quantize" ]; then
    once "$work/base-f32.gguf" "$qf" convert "$model" -o "$work/base-f32.gguf" --type f32 -q
    for t in Q4_K_M Q3_K_M; do
        log "llama-quantize $t (qforge's imatrix)"
        once "$work/llamacpp-$t.gguf" "$ref/bin/llama-quantize" --imatrix "$work/imatrix.gguf" "$work/base-f32.gguf" \
            "$work/llamacpp-$t.gguf" "$t" "$threads" >"$work/llamacpp-$t.log" 2>&1
        ref_files+=("$work/llamacpp-$t.gguf")
    done
else
    echo "note: $ref/bin/llama-quantize is absent: no llama.cpp series" >&2
fi
reports=()
for g in $(for b in $autos; do echo "$work/auto-$b.gguf"; done) $(for r in $recipes; do echo "$work/qforge-$r.gguf"; done) \
         "${ref_files[@]}"; do
    j=${g%.gguf}.verify.json
    log "verify $(basename "$g") ($chunks x $ctx tokens of $(basename "$eval"))"
    # relative names, so that the picture names no temp directory (same inputs, same bytes)
    once "$j" bash -c 'cd "$1" && shift && exec "$@"' _ "$work" "$qf" verify "$(basename "$g")" --base "$model" -f "$eval" \
        -c "$ctx" --chunks "$chunks" -j "$threads" --json "$(basename "$j")" -q --progress=none >/dev/null
    reports+=("$(basename "$j")")
done
log "report -> $out"
case $out in /*) ;; *) out=$PWD/$out ;; esac
cd "$work"
"$qf" report -o "$out" --title "qf-llama-a: bits per weight vs KLD (tinystories, $chunks x $ctx tokens)" \
    --map auto-4.75.gguf "${reports[@]}"
