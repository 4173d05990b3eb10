#!/usr/bin/env bash
# A Hugging Face hub cache entry as huggingface_hub lays it out (models--ORG--NAME/refs/main ->
# snapshots/COMMIT/, whose files are symlinks into blobs/) converts like the plain directory, reading the
# snapshot refs/main names, with general.name NAME and general.organization ORG instead of the commit
# hash; the snapshot directory given directly does the same; broken entries get one clear error. Then
# --name and llama-quantize's --override-kv KEY=TYPE:VALUE, checked with an independent GGUF reader.
set -uo pipefail
source "$1/tests/lib/cli_test.sh"
cli_test_setup "$@"
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
expect 0 "inspect --json of the cache entry" -- "$qf" inspect "$hub" --json
has "inspect --json" '"repo_id":	"acme-labs/Tiny-Llama-7B"'

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

# ---- --name -------------------------------------------------------------------------------------------
expect 0 "--name" -- "$qf" convert "$hub" -o named.gguf --name "My Model" -q
[ "$(kv named.gguf general.name)" = "str My Model" ] && ok || bad "--name: $(kv named.gguf general.name)"
expect 0 "--name on a GGUF source" -- "$qf" quantize plain.gguf -o named8.gguf --type q8_0 --name Other -q
[ "$(kv named8.gguf general.name)" = "str Other" ] && ok || bad "--name (GGUF): $(kv named8.gguf general.name)"

# ---- --override-kv KEY=TYPE:VALUE ---------------------------------------------------------------------
expect 0 "--override-kv" -- "$qf" convert plain -o ov.gguf --type f32 -q --override-kv llama.context_length=int:4096 \
    --override-kv llama.rope.freq_base=float:500000 --override-kv tokenizer.ggml.add_bos_token=bool:false \
    --override-kv general.license=str:apache-2.0 --override-kv my.count=int:7
[ "$(kv ov.gguf llama.context_length)" = "u32 4096" ] && ok || bad "int: $(kv ov.gguf llama.context_length)"
[ "$(kv ov.gguf llama.rope.freq_base)" = "f32 500000.0" ] && ok || bad "float: $(kv ov.gguf llama.rope.freq_base)"
[ "$(kv ov.gguf tokenizer.ggml.add_bos_token)" = "bool False" ] && ok || bad "bool: $(kv ov.gguf tokenizer.ggml.add_bos_token)"
[ "$(kv ov.gguf general.license)" = "str apache-2.0" ] && ok || bad "str: $(kv ov.gguf general.license)"
[ "$(kv ov.gguf my.count)" = "u32 7" ] && ok || bad "new int key: $(kv ov.gguf my.count)"
python3 - ov.gguf <<PY && ok || bad "qforge.override_kv records the overrides"
import json, subprocess, sys
kv = json.loads(subprocess.check_output(["python3", "$root/tests/lib/gguf_meta.py", sys.argv[1]]))["kv"]
assert kv["qforge.override_kv"]["value"][0] == "llama.context_length=int:4096", kv["qforge.override_kv"]
PY
expect 0 "the overridden file passes its own integrity check" -- "$qf" verify ov.gguf --integrity -q
# a GGUF source decides the written type: llama.context_length made i32 in a copy stays i32
python3 - plain.gguf i32.gguf <<'PY' || bad "patching a key type"
import sys
b = bytearray(open(sys.argv[1], 'rb').read())
k = b'llama.context_length'
at = b.index(k) + len(k)
assert b[at:at + 4] == b'\x04\0\0\0'   # u32
b[at] = 5                              # i32, same width
open(sys.argv[2], 'wb').write(b)
PY
expect 0 "int keeps a GGUF key's type" -- "$qf" quantize i32.gguf -o ov8.gguf --type q8_0 -q \
    --override-kv llama.context_length=int:-5
[ "$(kv ov8.gguf llama.context_length)" = "i32 -5" ] && ok || bad "GGUF key type: $(kv ov8.gguf llama.context_length)"
expect 2 "out of the key's range" -- "$qf" quantize i32.gguf -o x.gguf --type q8_0 -q \
    --override-kv llama.context_length=int:3000000000
has "range" "is not an integer in -2147483648..2147483647"
expect 2 "qforge.* keys" -- "$qf" convert plain -o x.gguf -q --override-kv qforge.source_sha256=str:0
has "qforge.* keys" "cannot be overridden"
expect 2 "bad type" -- "$qf" convert plain -o x.gguf -q --override-kv a.b=i32:1
has "bad type" "TYPE is int, float, bool or str"
expect 2 "not an int" -- "$qf" convert plain -o x.gguf -q --override-kv a.b=int:12x
expect 2 "negative for u32" -- "$qf" convert plain -o x.gguf -q --override-kv a.b=int:-1
expect 2 "bool spelling" -- "$qf" convert plain -o x.gguf -q --override-kv a.b=bool:yes
expect 2 "no TYPE:" -- "$qf" convert plain -o x.gguf -q --override-kv a.b=7
expect 2 "a str for a GGUF int key" -- "$qf" quantize plain.gguf -o x.gguf --type q8_0 -q \
    --override-kv llama.block_count=str:two
has "kind" "as another kind of value"
[ ! -e x.gguf ] && ok || bad "a refused override left x.gguf"

cli_test_finish hf_cache
