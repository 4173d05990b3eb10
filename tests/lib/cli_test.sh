# Shared by the CLI shell tests; sourced, not a test. `cli_test_setup "$@"` takes ctest's arguments
# (repository root, scratch directory), sets $root $scratch $qf (QF_BIN) and $meta (the independent
# GGUF reader, tests/lib/gguf_meta.py), and enters a fresh scratch directory. Checks count with ok/bad;
# cli_test_finish NAME prints the counts and gives the exit status.
cli_test_setup() {
    root=$1; scratch=$2; qf=${QF_BIN:?QF_BIN must name the qforge binary}
    meta="python3 $root/tests/lib/gguf_meta.py"
    rm -rf "$scratch"; mkdir -p "$scratch"; cd "$scratch" || exit 1
    pass=0; fail=0
}
ok() { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "FAIL: $*"; }
# expect CODE DESCRIPTION -- COMMAND...: runs COMMAND, its stdout+stderr in $out, checks the exit code
expect() {
    local want=$1 what=$2; shift 3
    out=$("$@" 2>&1); local rc=$?
    if [ "$rc" -eq "$want" ]; then ok; else bad "$what: exit $rc, expected $want: $out"; fi
}
# has DESCRIPTION TEXT: $out contains TEXT
has() { if grep -qF -- "$2" <<<"$out"; then ok; else bad "$1: output lacks '$2': $out"; fi; }
# make_text FILE SEED: about 4000 words of text the synth vocabulary tokenizes (enough for tens of chunks)
make_text() {
    python3 -c "
import random, sys; r = random.Random(int(sys.argv[1]))
w = ['the','cat','sat','on','a','mat','and','dog','ran','far','away','home','red','blue','fish','old']
print(' '.join(r.choice(w) for _ in range(4000)))" "$2" >"$1"
}
cli_test_finish() {
    echo "$1: $pass passed, $fail failed"
    [ "$fail" -eq 0 ]
}
