#!/usr/bin/env bash
# Progress on stderr when it is not a terminal (ctest's pipes, CI logs): plain lines, each complete on
# its own (n/N, rate, ETA, running PPL for evaluation), a bounded number of them, and the last at 100%;
# --progress=none|bar|lines on every long-running command; -q silences it; stdout never carries it.
set -uo pipefail
source "$1/tests/lib/cli_test.sh"
cli_test_setup "$@"

"$qf" synth m --dim 64 --ff 128 --vocab 300 >/dev/null || exit 1
make_text text.txt 5

# lines PATTERN DESCRIPTION -- COMMAND...: stderr (not a terminal here) holds 1..12 progress lines, each
# matching PATTERN, the last at 100%; stdout holds none of them.
lines() {
    local pat=$1 what=$2; shift 3
    "$@" >out.txt 2>err.txt; local rc=$?
    local n; n=$(grep -cE "$pat" err.txt)
    if [ $rc -ne 0 ]; then bad "$what: exit $rc: $(cat err.txt)"
    elif [ "$n" -lt 1 ] || [ "$n" -gt 12 ]; then bad "$what: $n progress lines (want 1..12): $(cat err.txt)"
    elif ! grep -E "$pat" err.txt | tail -1 | grep -q "(100%)"; then bad "$what: last line not at 100%: $(cat err.txt)"
    elif grep -qE "$pat" out.txt; then bad "$what: progress on stdout"
    elif grep -q $'\r' err.txt; then bad "$what: carriage returns in a log"
    else ok; fi
}
lines '^qforge convert: [0-9.]+/[0-9.]+ (KiB|MiB) \([0-9]+%\), [0-9.]+ (KiB|MiB)/s, ETA [0-9:?]+, ' convert -- \
    "$qf" convert m -o f32.gguf --type f32
lines '^qforge quantize: [0-9.]+/[0-9.]+ (KiB|MiB) \([0-9]+%\), ' quantize -- "$qf" quantize f32.gguf -o q8.gguf --type q8_0
lines '^qforge calibrate: calibration chunk [0-9]+/[0-9]+ \([0-9]+%\), [0-9.]+/s, ETA ' calibrate -- \
    "$qf" calibrate f32.gguf -f text.txt -c 64 --chunks 5 -o im.gguf
lines '^qforge perplexity: chunk [0-9]+/5 \([0-9]+%\), PPL [0-9.]+, [0-9.]+ chunks/s, ETA ' perplexity -- \
    "$qf" perplexity f32.gguf -f text.txt -c 64 --chunks 5
grep -q "^Final estimate: PPL = " out.txt && ok || bad "perplexity stdout: $(cat out.txt)"
lines '^qforge verify: chunk [0-9]+/5 \([0-9]+%\), PPL [0-9.]+, ' verify -- \
    "$qf" verify q8.gguf --base f32.gguf -f text.txt -c 64 --chunks 5
# hashing, signing and transport packs report bytes; unpack then reports its digest check of the output
B='[0-9.]+/[0-9.]+ (KiB|MiB) \([0-9]+%\), [0-9.]+ (KiB|MiB)/s, ETA [0-9:?]+'
lines "^qforge verify: $B, q8.gguf\$" "verify --integrity" -- "$qf" verify q8.gguf --integrity
openssl genpkey -algorithm ed25519 -out key.pem 2>/dev/null || bad "openssl genpkey failed"
lines "^qforge sign: $B, q8.gguf\$" sign -- "$qf" sign q8.gguf --key key.pem
lines "^qforge pack: $B, q8.gguf\$" pack -- "$qf" pack q8.gguf -o q8.qfz
lines "^qforge unpack: $B, q8.qfz\$" unpack -- "$qf" unpack q8.qfz -o back.gguf
grep -qE "^qforge unpack: $B, back.gguf\$" err.txt && grep -E "back.gguf\$" err.txt | tail -1 | grep -q "(100%)" && ok ||
    bad "unpack: no progress of the digest check: $(cat err.txt)"

# --progress=lines is also what a run of many chunks gets: at most one line per tenth
lines '^qforge perplexity: chunk [0-9]+/40 ' "40 chunks" -- "$qf" perplexity f32.gguf -f text.txt -c 32 --chunks 40

# --progress=none and -q: nothing but the result
"$qf" perplexity f32.gguf -f text.txt -c 64 --chunks 3 --progress=none >out.txt 2>err.txt
grep -qE "chunk [0-9]+/" err.txt && bad "--progress=none printed progress: $(cat err.txt)" || ok
"$qf" convert m -o f32b.gguf --type f32 -q 2>err.txt; [ -s err.txt ] && bad "-q printed: $(cat err.txt)" || ok
# -q with an explicit --progress keeps the progress
"$qf" convert m -o f32c.gguf --type f32 -q --progress=lines 2>err.txt
grep -q "(100%)" err.txt && ! grep -q "wrote" err.txt && ok || bad "-q --progress=lines: $(cat err.txt)"
# --progress=bar redraws one line (carriage return + erase), ending in a newline
"$qf" convert m -o f32d.gguf --type f32 --progress=bar 2>err.txt
grep -q $'\r\033\\[K' err.txt && [ "$(tail -c 1 err.txt | od -An -c | tr -d ' ')" = '\n' ] && ok || bad "bar: $(od -c err.txt | head -3)"

cli_test_finish cli_progress
