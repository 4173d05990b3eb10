#!/usr/bin/env bash
# The README stays truthful for users: no references to internal documents or issue numbers, the two
# commands and the install step are there, and every option the command reference shows is one the
# command's --help lists (so the reference cannot drift from the binary).
set -uo pipefail
root=$1; scratch=$2; qf=${QF_BIN:?}
readme=$root/README.md
fail=0
bad() { fail=$((fail+1)); echo "FAIL: $*"; }
grep -nE '\b[Ii]ssues?\b|DESIGN\.md' "$readme" && bad "internal references in README.md (above)"
grep -q '^bash build.sh demo' "$readme" && grep -q '^bash build.sh test' "$readme" || bad "the two commands are missing"
grep -q 'cmake --install build' "$readme" || bad "no install step (cmake --install build)"
grep -q '^### Reading the verify report' "$readme" || bad "no 'Reading the verify report' section"
# the command reference: the first ``` block after "## Commands"
mkdir -p "$scratch"
awk '/^## Commands/ {on=1; next} on && /^```/ {if (blk) exit; blk=1; next} on && blk' "$readme" >"$scratch/ref"
cmd=
while IFS= read -r line; do
    case $line in "qforge "*) cmd=$(awk '{print $2}' <<<"$line") ;; esac
    [ -n "$cmd" ] || continue
    help=$("$qf" $cmd --help 2>&1; [ "$cmd" = verify ] && "$qf" verify --integrity --help 2>&1)
    for opt in $(grep -oE -- '--[a-z][a-z0-9-]*' <<<"${line%%#*}"); do
        grep -qF -- "$opt" <<<"$help" || bad "README shows 'qforge $cmd ... $opt', which 'qforge $cmd --help' does not list"
    done
done <"$scratch/ref"
[ -s "$scratch/ref" ] || bad "no command reference block found"
[ $fail -eq 0 ] && echo "readme: ok"
[ $fail -eq 0 ]
