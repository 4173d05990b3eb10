#!/usr/bin/env bash
# Command-line conventions every qforge command keeps (convert/cli.h):
#   - a bad option (missing value, unknown, ambiguous, value given to a flag) is one stderr line that
#     names it, exit 2;
#   - a short flag means one thing in every command (read from each command's --help), and the
#     llama.cpp flags mean what they mean there: -m model, -f text file, -c context size, -t threads,
#     -b batch size, plus -o output, -q quiet; the long spellings of llama.cpp (--ctx-size,
#     --batch-size, --file, --threads, --chunks) and qforge's older ones (--ctx, --batch, --text, -j) work
#     and give the same results;
#   - -q is accepted by every command and silences the summary line.
set -uo pipefail
source "$1/tests/lib/cli_test.sh"
cli_test_setup "$@"

# ---- one line naming the option, exit 2 -------------------------------------------------------------
one_line() { # WANT_SUBSTRING ARGS...
    local want=$1; shift
    "$qf" "$@" >out.txt 2>err.txt </dev/null; local rc=$?
    local n; n=$(wc -l <err.txt)
    if [ $rc -eq 2 ] && [ "$n" -eq 1 ] && grep -qF -- "$want" err.txt && [ ! -s out.txt ]; then ok
    else bad "qforge $*: exit $rc, $n stderr lines, expected 1 naming '$want': $(cat err.txt)"; fi
}
one_line "'-o' needs a value" convert m -o
one_line "'--type' needs a value" convert m --type
one_line "'--recipe' needs a value" quantize m --recipe
one_line "'-T' needs a value" quantize m -T
one_line "'-f' needs a value" calibrate m -f
one_line "'--dim' needs a value" synth d --dim
one_line "use --arch deepseek-v3" synth d --v3-geometry
one_line "'-c' needs a value" perplexity m -c
one_line "'--ctx-size' needs a value" perplexity m --ctx-size
one_line "'--base' needs a value" verify m --base
one_line "'--pubkey' needs a value" verify m --integrity --pubkey
one_line "'--key' needs a value" sign m --key
one_line "'-o' needs a value" pack m -o
one_line "'--progress' needs a value" quantize m --progress
one_line "unknown option '--frobnicate'" convert m --frobnicate
one_line "unknown option '-x'" inspect m -x
one_line "unknown option '-l'" unpack m -l 3
one_line "'--json' takes no value" inspect m --json=yes
one_line "'--t' is ambiguous" quantize m --t q8_0
one_line "-t is threads, as in llama.cpp; a weight type is --type q8_0" convert m -t q8_0
one_line "-m is --model, as in llama.cpp; the quantization method is --method" quantize m -m rtn --type q8_0
one_line "MODEL given twice" perplexity a -m b -f t
one_line "--progress is none, bar or lines" convert m --progress=fancy

# ---- one meaning per short flag, llama.cpp's where the idea is the same ------------------------------
for c in convert quantize calibrate inspect synth perplexity verify sign pack unpack; do
    "$qf" $c --help >"help.$c" 2>&1 || bad "$c --help exit $?"
done
"$qf" verify --integrity --help >help.integrity 2>&1 || bad "verify --integrity --help"
python3 - help.* <<'PY' && ok || bad "short flags (above)"
import re, sys
meaning = {}   # short flag -> {long name: [commands]}
for path in sys.argv[1:]:
    for line in open(path):
        m = re.match(r'^\s+((?:-[A-Za-z], )+)--([a-z][\w-]*)', line)
        if not m:
            continue
        for short in re.findall(r'-([A-Za-z])', m.group(1)):
            meaning.setdefault(short, {}).setdefault(m.group(2), []).append(path[5:])
# the one documented pair of names for one idea: the Ed25519 key (private to sign, public to check)
same = {'k': {'key', 'pubkey'}}
bad = [f"-{s}: " + ", ".join(f"--{l} ({' '.join(c)})" for l, c in longs.items())
       for s, longs in meaning.items() if len(longs) > 1 and set(longs) != same.get(s)]
llama = {'m': 'model', 'f': 'file', 'c': 'ctx-size', 't': 'threads', 'b': 'batch-size', 'o': 'output', 'q': 'quiet'}
for s, l in llama.items():
    if set(meaning.get(s, {})) != {l}:
        bad.append(f"-{s} should be --{l} (llama.cpp), is {sorted(meaning.get(s, {}))}")
for b in bad:
    print("  " + b)
sys.exit(1 if bad else 0)
PY
# every command takes -q (here with --help, which must still print the help)
for c in convert quantize calibrate inspect synth perplexity verify sign pack unpack; do
    "$qf" $c -q --help >/dev/null 2>&1 && ok || bad "$c does not accept -q"
done
"$qf" verify --integrity -q --help >/dev/null 2>&1 && ok || bad "verify --integrity does not accept -q"

# ---- the aliases work and mean the same ---------------------------------------------------------------
"$qf" synth m --dim 64 --ff 128 --vocab 300 >/dev/null || exit 1
make_text text.txt 7
"$qf" convert m -o m.gguf --type f32 -j 1 -q 2>err.txt && [ ! -s err.txt ] && ok || bad "convert -q printed: $(cat err.txt)"
"$qf" convert -m m -o m2.gguf --type f32 -t 1 -q && cmp -s m.gguf m2.gguf && ok || bad "convert -m SRC -t 1 differs"
ppl() { "$qf" perplexity "$@" --json 2>/dev/null | python3 -c 'import json,sys; print(repr(json.load(sys.stdin)["ppl"]))'; }
a=$(ppl m.gguf --text text.txt --ctx 64 --batch 128 --threads 1 --chunks 3)
b=$(ppl -m m.gguf -f text.txt -c 64 -b 128 -t 1 --chunks 3)
c=$(ppl -m m.gguf --file text.txt --ctx-size 64 --batch-size 128 -j 1 --chunks 3)
[ -n "$a" ] && [ "$a" = "$b" ] && [ "$a" = "$c" ] && ok || bad "perplexity aliases: '$a' '$b' '$c'"
"$qf" calibrate -m m.gguf -f text.txt -c 64 --chunks 3 -t 1 -o im1.gguf -q &&
    "$qf" calibrate m.gguf --text text.txt --ctx 64 --chunks 3 -j 1 -o im2.gguf -q && cmp -s im1.gguf im2.gguf && ok ||
    bad "calibrate aliases differ"
"$qf" verify -m m.gguf --base m.gguf -f text.txt -c 64 --chunks 2 -t 1 -q >v.txt 2>v.err && grep -q "same top-1  = 100" v.txt &&
    [ ! -s v.err ] && ok || bad "verify -m/-f/-c/-t -q: $(cat v.txt v.err)"

cli_test_finish cli_flags
