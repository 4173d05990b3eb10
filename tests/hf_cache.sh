#!/usr/bin/env bash
# A Hugging Face hub cache entry as huggingface_hub lays it out (models--ORG--NAME/refs/main ->
# snapshots/COMMIT/, whose files are symlinks into blobs/) converts like the plain directory, reading the
# snapshot refs/main names, with general.name NAME and general.organization ORG instead of the commit
# hash; the snapshot directory given directly does the same; broken entries get one clear error.
set -uo pipefail
root=$1; scratch=$2; qf=${QF_BIN:?}
rm -rf "$scratch"; mkdir -p "$scratch"; cd "$scratch" || exit 1
meta="python3 $root/tests/lib/gguf_meta.py"
pass=0; fail=0
ok() { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "FAIL: $*"; }
expect() {
    local want=$1 what=$2; shift 3
    out=$("$@" 2>&1); local rc=$?
    if [ "$rc" -eq "$want" ]; then ok; else bad "$what: exit $rc, expected $want: $out"; fi
}
has() { if grep -qF -- "$2" <<<"$out"; then ok; else bad "$1: output lacks '$2': $out"; fi; }
# kv FILE KEY: "TYPE VALUE" of a metadata key
kv() { $meta "$1" | python3 -c 'import json,sys; d=json.load(sys.stdin)["kv"].get(sys.argv[1]); print(d and "%s %s" % (d["type"], d["value"]))' "$2"; }

"$qf" synth plain --dim 64 --ff 128 --vocab 300 >/dev/null || exit 1
# the cache layout: blobs named by content, snapshot files linking to them, refs/main naming the commit
hub=hub/models--acme-labs--Tiny-Llama-7B
commit=0123456789abcdef0123456789abcdef01234567
mkdir -p "$hub/blobs" "$hub/snapshots/$commit" "$hub/refs" "$hub/snapshots/fedcba9876543210fedcba9876543210fedcba98"
for f in plain/*; do
    b=$(sha256sum "$f" | cut -d' ' -f1)
    cp "$f" "$hub/blobs/$b"
    ln -s "../../blobs/$b" "$hub/snapshots/$commit/$(basename "$f")"
done
printf '%s' "$commit" > "$hub/refs/main"

"$qf" convert plain -o plain.gguf --type f32 -q || exit 1
expect 0 "convert the cache entry" -- "$qf" convert "$hub" -o hub.gguf --type f32 -q
[ "$(kv hub.gguf general.name)" = "str Tiny-Llama-7B" ] && ok || bad "general.name: $(kv hub.gguf general.name)"
[ "$(kv hub.gguf general.organization)" = "str acme-labs" ] && ok || bad "general.organization: $(kv hub.gguf general.organization)"
[ "$(kv hub.gguf qforge.source_sha256)" = "$(kv plain.gguf qforge.source_sha256)" ] && ok || bad "source digest differs from the plain directory"
python3 - "$root/tests/lib" plain.gguf hub.gguf <<'PY' && ok || bad "tensor data differs from the plain directory's conversion"
import sys
sys.path.insert(0, sys.argv[1])
import gguf_meta
a, b = (gguf_meta.read(p) for p in sys.argv[2:4])
da, db = (open(p, 'rb').read()[m["data_offset"]:] for p, m in zip(sys.argv[2:4], (a, b)))
assert a["tensors"] == b["tensors"] and da == db, "tensor table or data differ"
PY
expect 0 "the snapshot directory itself" -- "$qf" convert "$hub/snapshots/$commit/" -o snap.gguf --type f32 -q
[ "$(kv snap.gguf general.name)" = "str Tiny-Llama-7B" ] && ok || bad "snapshot general.name: $(kv snap.gguf general.name)"
expect 0 "inspect the cache entry" -- "$qf" inspect "$hub"
has "inspect" "snapshots/$commit"

# broken entries
printf 'fedcba9876543210fedcba9876543210fedcba99\n' > "$hub/refs/main"
expect 2 "refs/main names a missing snapshot" -- "$qf" convert "$hub" -o bad.gguf -q
has "missing snapshot" "refs/main names commit fedcba9876543210fedcba9876543210fedcba99, whose snapshot directory is missing"
printf '../../etc\n' > "$hub/refs/main"
expect 2 "refs/main is not a commit" -- "$qf" convert "$hub" -o bad.gguf -q
has "not a commit" "does not hold a commit hash"
rm "$hub/refs/main"
expect 2 "no refs/main" -- "$qf" convert "$hub" -o bad.gguf -q
has "no refs/main" "without refs/main: give the snapshot directory"
[ ! -e bad.gguf ] && ok || bad "a broken cache entry left bad.gguf"
printf '%s' "$commit" > "$hub/refs/main"

echo "hf_cache: $pass passed, $fail failed"
[ $fail -eq 0 ]
