#!/usr/bin/env bash
# qforge pack / unpack through the CLI: byte-identical round trips with 1 and 2 threads, plain zstd
# reading a pack, a corrupted frame and a truncated pack failing with no output, exit codes, and the
# streaming bound: peak RSS of pack, unpack and verify --integrity on a ~140 MB GGUF stays far below
# the file size.
set -uo pipefail
root=$1; scratch=$2; qf=${QF_BIN:?}
rm -rf "$scratch"; mkdir -p "$scratch"; cd "$scratch" || exit 1
pass=0; fail=0
ok() { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "FAIL: $*"; }
expect() { # CODE DESCRIPTION -- COMMAND...
    local want=$1 what=$2; shift 3
    out=$("$@" 2>&1); local rc=$?
    if [ "$rc" -eq "$want" ]; then ok; else bad "$what: exit $rc, expected $want: $out"; fi
}
has() { if grep -qF -- "$2" <<<"$out"; then ok; else bad "$1: output lacks '$2': $out"; fi; }
same() { if cmp -s "$2" "$3"; then ok; else bad "$1: $2 and $3 differ"; fi; }

"$qf" synth m --dim 256 --ff 512 --vocab 512 >/dev/null && "$qf" convert m -o m.gguf --type f16 -q || exit 1

expect 0 "pack -j1" -- "$qf" pack m.gguf -o m1.qfz --threads 1 --chunk-mib 1
has "pack -j1" "ratio"
expect 0 "pack -j2" -- "$qf" pack m.gguf -o m2.qfz --threads 2 --chunk-mib 1
same "pack bytes independent of threads" m1.qfz m2.qfz
for t in 1 2; do
    expect 0 "unpack -j$t" -- "$qf" unpack m1.qfz -o out$t.gguf --threads $t
    has "unpack -j$t" "GGUF integrity digests verified"
    same "round trip -j$t" m.gguf out$t.gguf
done
if command -v zstd >/dev/null; then
    zstd -d -q -f m1.qfz -o z.gguf && same "zstd -d of a pack" m.gguf z.gguf
fi

# a corrupted frame: flip a byte in the middle of the file (inside some frame)
size=$(stat -c %s m1.qfz)
cp m1.qfz bad.qfz
python3 - bad.qfz $((size / 2)) <<'PY'
import sys
p, off = sys.argv[1], int(sys.argv[2])
b = bytearray(open(p, 'rb').read()); b[off] ^= 0x10; open(p, 'wb').write(b)
PY
rm -f bad.out
"$qf" unpack bad.qfz -o bad.out >/dev/null 2>err.txt; rc=$?
[ "$rc" -eq 1 ] && ok || bad "corrupt frame: exit $rc, expected 1 (damaged data is a failed check)"
[ ! -e bad.out ] && ok || bad "corrupt frame left an output"
grep -q "bad.qfz: frame" err.txt && ok || bad "corrupt frame message: $(cat err.txt)"
ls -a | grep -q '\.qf-' && bad "temp file left behind" || ok

# truncated pack
head -c $((size - 100)) m1.qfz > cut.qfz
expect 2 "truncated pack" -- "$qf" unpack cut.qfz -o cut.out
has "truncated pack" "cut.qfz: truncated"
[ ! -e cut.out ] && ok || bad "truncated pack left an output"
expect 2 "not a pack" -- "$qf" unpack m.gguf -o x.out
has "not a pack" "not a qforge pack"
expect 2 "missing input" -- "$qf" pack nope.gguf -o x.qfz
has "missing input" "nope.gguf"
expect 2 "no -o" -- "$qf" pack m.gguf
expect 2 "bad level" -- "$qf" pack m.gguf -o x.qfz --level 40
expect 2 "unpack takes no level" -- "$qf" unpack m1.qfz -o x.out --level 3
expect 0 "pack help" -- "$qf" pack --help
expect 0 "unpack help" -- "$qf" unpack --help

# streaming bound on a file of ~140 MB (two 32 MiB-class tensors and small layers)
"$qf" synth big --vocab 65536 --dim 1024 --ff 1024 --layers 2 --dtype bf16 >/dev/null &&
    "$qf" convert big -o big.gguf --type q8_0 -q --threads 2 && rm -rf big || exit 1
bytes=$(stat -c %s big.gguf)
limit=$((64 * 1024 * 1024)) # (threads + 2) x 8 MiB buffers or 2 x 16 MiB hashed pieces, plus libraries
rss() { # peak RSS in bytes of one command
    python3 - "$@" <<'PY'
import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)
PY
}
check_rss() {
    local what=$1; shift
    local r; r=$(rss "$@") || { bad "$what failed"; return; }
    awk -v w="$what" -v r="$r" -v l="$limit" -v b="$bytes" 'BEGIN {
        printf "%s: peak RSS %.1f MiB for a %.1f MiB file (limit %.0f MiB)\n", w, r/1048576, b/1048576, l/1048576 }'
    if [ "$r" -le "$limit" ]; then ok; else bad "$what: peak RSS over the limit"; fi
}
check_rss "pack -j2" "$qf" pack big.gguf -o big.qfz --threads 2
check_rss "unpack -j2" "$qf" unpack big.qfz -o big.out --threads 2
same "big round trip" big.gguf big.out
if "$qf" verify --integrity --help 2>/dev/null | grep -q -- "--integrity"; then
    check_rss "verify --integrity -j2" "$qf" verify big.gguf --integrity --threads 2
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
