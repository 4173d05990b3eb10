#!/usr/bin/env bash
# memory_verify.sh — verify's default batch keeps a model's logits buffer under 64 MiB
# (QF_VERIFY_LOGITS_BYTES): on a 32000-token vocabulary the peak RSS of a live verify (two models) stays
# under 200 MiB (555 MB with the old default batch of 2048), and of a verify from saved base logits (one
# model) under 140 MiB. Peak RSS is measured (getrusage of the child), nothing is timed; ASan runs leave
# memory_* tests out (shadow memory).
# Usage (ctest): memory_verify.sh REPO_ROOT SCRATCH_DIR, with QF_BIN set to the qforge binary.
set -u
scratch=${2:?scratch dir}
qf=${QF_BIN:?QF_BIN must name the qforge binary}
rm -rf "$scratch" && mkdir -p "$scratch"
failed=0

# peak RSS in KiB of a command (its output discarded); exits 1 if the command fails
peak_rss() {
    python3 -c '
import resource, subprocess, sys
rc = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss if rc == 0 else -1)' "$@"
}
check() { # what, limit KiB, command...
    local what=$1 limit=$2
    shift 2
    local rss
    rss=$(peak_rss "$@")
    if [ "$rss" -lt 0 ]; then echo "FAIL: $what: the command failed: $*"; failed=1
    elif [ "$rss" -gt "$limit" ]; then echo "FAIL: $what peaked at $rss KiB (limit $limit)"; failed=1
    else echo "ok: $what: $rss KiB (limit $limit)"; fi
}

m=$scratch/model
"$qf" synth "$m" --vocab 32000 --dim 64 --ff 128 --layers 1 >/dev/null &&
    "$qf" quantize "$m" -o "$scratch/q4.gguf" --type q4_0 -q || { echo "setup failed"; exit 1; }
python3 -c "
import random
random.seed(1)
w='once upon a time there was a little girl who liked to read stories about dragons ships and the sea'.split()
print(' '.join(random.choice(w) for _ in range(9000)))" >"$scratch/text.txt"
t=$scratch/text.txt
check "live verify, default batch" 204800 "$qf" verify "$scratch/q4.gguf" --base "$m" --text "$t" --ctx 128 --chunks 20
"$qf" verify "$scratch/q4.gguf" --base "$m" --text "$t" --ctx 128 --chunks 20 --save-base "$scratch/b.qfbl" >/dev/null 2>&1 ||
    { echo "FAIL: verify --save-base"; exit 1; }
check "verify from base logits" 143360 "$qf" verify "$scratch/q4.gguf" --base-logits "$scratch/b.qfbl" --text "$t"
exit $failed
