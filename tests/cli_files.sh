#!/usr/bin/env bash
# Nothing the user had is ever lost, through the CLI: every command that writes refuses, with exit 2
# and one line naming the path, an output that is empty, a directory, a device, FIFO or socket, in a
# missing directory, one of its inputs (also through a link or another spelling), or a file of a model
# directory it reads; the refusal comes before any input is read (a bad input next to a bad output
# reports the output), and every input is byte for byte what it was. Inputs that are not regular files
# (a FIFO as model or text, /dev/zero as text) are refused at once instead of blocking or growing.
set -uo pipefail
. "$(dirname "$0")/lib/checks.sh"
# refused DESCRIPTION 'expected message part' -- COMMAND...: exit 2, one stderr line holding the part
refused() {
    local what=$1 part=$2; shift 3
    local err rc
    err=$(timeout "${QF_CLI_TIMEOUT:-120}" "$@" 2>&1 >/dev/null); rc=$? # a blocked read would hang for ever
    if [ "$rc" -ne 2 ]; then bad "$what: exit $rc, expected 2: $err"; return; fi
    if [ "$(printf '%s\n' "$err" | wc -l)" -ne 1 ]; then bad "$what: not one line: $err"; return; fi
    if grep -qF -- "$part" <<<"$err"; then ok; else bad "$what: message lacks '$part': $err"; fi
}
sums() { find m m.gguf m.gguf.sig t.txt key.pem m.qfz -type f -print0 2>/dev/null | sort -z | xargs -0 sha256sum; }

"$qf" synth m --dim 64 --ff 128 --vocab 300 --layers 1 >/dev/null && "$qf" convert m -o m.gguf -q || exit 1
printf 'the quick brown fox jumps over the lazy dog. %.0s' $(seq 200) > t.txt
openssl genpkey -algorithm ed25519 -out key.pem 2>/dev/null || exit 1
"$qf" pack m.gguf -o m.qfz -q && "$qf" sign m.gguf --key key.pem 2>/dev/null || exit 1
mkfifo fifo
before=$(sums)

# ---- outputs that are not files ----
refused "convert -o ''" "output path is empty" -- "$qf" convert m -o '' -q
refused "convert -o ." "names a directory" -- "$qf" convert m -o . -q
refused "convert -o DIR" "is a directory" -- "$qf" convert m -o m -q
refused "convert -o DIR/" "names a directory" -- "$qf" convert m -o m/ -q
refused "convert -o FIFO" "is a FIFO" -- "$qf" convert m -o fifo -q
# Never the system's /dev/null: a qforge without this check would replace it. A node of our own (as
# root) is what `-o /dev/null` would meet.
if [ "$(id -u)" -eq 0 ] && mknod null c 1 3 2>/dev/null; then
    refused "quantize -o a device (root)" "is a character device" -- "$qf" quantize m.gguf -o null --type q8_0 -q
    [ -c null ] && ok || bad "the device node was replaced"
fi
python3 -c "import socket; s=socket.socket(socket.AF_UNIX); s.bind('sock')" 2>/dev/null &&
    refused "convert -o socket" "is a socket" -- "$qf" convert m -o sock -q
refused "convert -o in a missing directory" "does not exist" -- "$qf" convert m -o nodir/x.gguf -q
refused "calibrate -o DIR" "is a directory" -- "$qf" calibrate m.gguf --text t.txt -o m
refused "pack -o FIFO" "is a FIFO" -- "$qf" pack m.gguf -o fifo
refused "unpack -o ." "names a directory" -- "$qf" unpack m.qfz -o .
refused "sign -o FIFO" "is a FIFO" -- "$qf" sign m.gguf --key key.pem -o fifo
refused "verify --json FIFO" "is a FIFO" -- "$qf" verify m.gguf --base m --text t.txt --ctx 16 --json fifo
refused "verify --junit DIR" "is a directory" -- "$qf" verify m.gguf --base m --text t.txt --ctx 16 --junit m

# ---- outputs that are inputs ----
ln -sf m.gguf link.gguf
refused "quantize m.gguf -o m.gguf" "the output is the input" -- "$qf" quantize m.gguf -o m.gguf --type q8_0 -q
refused "quantize -o a link to the input" "the output is the input" -- "$qf" quantize m.gguf -o link.gguf --type q8_0 -q
refused "quantize -o another spelling" "the output is the input" -- "$qf" quantize m.gguf -o ./m/../m.gguf --type q8_0 -q
refused "convert DIR -o DIR/model.safetensors" "would change the model directory" -- \
    "$qf" convert m -o m/model.safetensors -q
refused "convert DIR -o DIR/config.json" "would change the model directory" -- "$qf" convert m -o m/config.json -q
refused "calibrate M -o M" "the output is the input" -- "$qf" calibrate m.gguf --text t.txt -o m.gguf
refused "calibrate --text T -o T" "the output is the input" -- "$qf" calibrate m.gguf --text t.txt -o t.txt
refused "calibrate -o X --hessian X" "the output is the input" -- \
    "$qf" calibrate m.gguf --text t.txt -o x.gguf --hessian x.gguf
refused "verify --json onto the model" "the output is the input" -- \
    "$qf" verify m.gguf --base m --text t.txt --ctx 16 --json m.gguf
refused "verify --junit onto the text" "the output is the input" -- \
    "$qf" verify m.gguf --base m --text t.txt --ctx 16 --junit t.txt
refused "verify --json and --junit one file" "the output is the input" -- \
    "$qf" verify m.gguf --base m --text t.txt --ctx 16 --json r.xml --junit r.xml
refused "synth over a model directory" "already holds a model" -- "$qf" synth m
refused "sign -o the model" "the output is the input" -- "$qf" sign m.gguf --key key.pem -o m.gguf
refused "sign -o the key" "the output is the input" -- "$qf" sign m.gguf --key key.pem -o key.pem
refused "pack -o the input" "the output is the input" -- "$qf" pack m.gguf -o m.gguf
refused "unpack -o the input" "the output is the input" -- "$qf" unpack m.qfz -o m.qfz

# ---- the output is checked before any input is read ----
refused "bad output and bad input: convert" "names a directory" -- "$qf" convert no-such-model -o . -q
refused "bad output and bad input: calibrate" "is a directory" -- "$qf" calibrate no-such.gguf --text t.txt -o m
refused "bad output and bad input: verify" "is a FIFO" -- \
    "$qf" verify no-such.gguf --base m --text t.txt --json fifo

[ "$(sums)" = "$before" ] && ok || bad "an input changed: $(diff <(echo "$before") <(sums))"
ls -a . m | grep -q '\.qf-' && bad "temp file left: $(ls -a . m | grep '\.qf-')" || ok
[ ! -e x.gguf ] && [ ! -e r.xml ] && ok || bad "a refused command left an output"

# ---- inputs that are not regular files ----
refused "convert FIFO" "FIFO" -- "$qf" convert fifo -o y.gguf -q
refused "inspect FIFO" "FIFO" -- "$qf" inspect fifo
refused "perplexity FIFO" "FIFO" -- "$qf" perplexity fifo --text t.txt
refused "perplexity --text FIFO" "FIFO" -- "$qf" perplexity m.gguf --text fifo
refused "perplexity --text /dev/zero" "character device" -- "$qf" perplexity m.gguf --text /dev/zero
refused "calibrate --text FIFO" "FIFO" -- "$qf" calibrate m.gguf --text fifo -o y.gguf
refused "quantize --imatrix FIFO" "FIFO" -- "$qf" quantize m.gguf --type q4_0 --imatrix fifo -o y.gguf -q
refused "verify --integrity --pubkey FIFO" "FIFO" -- "$qf" verify m.gguf --integrity --pubkey fifo
refused "sign --key FIFO" "FIFO" -- "$qf" sign m.gguf --key fifo -o y.sig
refused "unpack FIFO" "FIFO" -- "$qf" unpack fifo -o y.gguf
cp -r m mf && rm mf/config.json && mkfifo mf/config.json
refused "convert a model whose config.json is a FIFO" "FIFO" -- "$qf" convert mf -o y.gguf -q
[ ! -e y.gguf ] && ok || bad "a refused input left an output"
# model files reached through links: a directory whose safetensors links elsewhere, and a Hugging Face
# cache entry whose snapshot links into its blobs; the link's target is the model too
mkdir -p linked hub/models--o--n/blobs hub/models--o--n/snapshots/abc hub/models--o--n/refs
cp m/config.json m/tokenizer.json m/tokenizer_config.json linked/
cp m/model.safetensors weights.st && ln -s ../weights.st linked/model.safetensors
for f in config.json tokenizer.json tokenizer_config.json model.safetensors; do
    cp "m/$f" "hub/models--o--n/blobs/b-$f" && ln -s "../../blobs/b-$f" "hub/models--o--n/snapshots/abc/$f"
done
echo abc >hub/models--o--n/refs/main
sum=$(sha256sum weights.st hub/models--o--n/blobs/b-model.safetensors)
refused "convert onto the file a model's link points at" "through a link" -- "$qf" convert linked -o weights.st -q
refused "convert onto an HF cache blob" "through a link" -- "$qf" convert hub/models--o--n -o hub/models--o--n/blobs/b-model.safetensors -q
refused "quantize onto an HF cache entry's config blob" "through a link" -- "$qf" quantize hub/models--o--n --type q8_0 -o hub/models--o--n/blobs/b-config.json -q
[ "$(sha256sum weights.st hub/models--o--n/blobs/b-model.safetensors)" = "$sum" ] && ok || bad "a linked model file was changed"

finish cli_files
