# Shared by shell tests; sourced, not a test. Takes the test's arguments (repository root, scratch
# directory) and QF_BIN, starts in an emptied scratch directory, and counts checks: ok, bad MESSAGE,
# and finish NAME (prints the counts; its status is the test's).
root=$1; scratch=$2; qf=${QF_BIN:?}
rm -rf "$scratch"; mkdir -p "$scratch"; cd "$scratch" || exit 1
pass=0; fail=0
ok() { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "FAIL: $*"; }
finish() { echo "$1: $pass passed, $fail failed"; [ "$fail" -eq 0 ]; }
