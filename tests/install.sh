#!/usr/bin/env bash
# `cmake --install BUILD --prefix DIR` puts a working qforge in DIR/bin (the README's install step).
set -uo pipefail
root=$1; scratch=$2; qf=${QF_BIN:?}
rm -rf "$scratch"; mkdir -p "$scratch"
build=$(dirname "$qf")
[ -f "$build/CMakeCache.txt" ] || { echo "SKIP: $qf is not in a CMake build tree"; exit 77; }
cmake --install "$build" --prefix "$scratch/prefix" >"$scratch/install.log" 2>&1 || { cat "$scratch/install.log"; echo "FAIL: cmake --install"; exit 1; }
v=$("$scratch/prefix/bin/qforge" --version 2>&1) || { echo "FAIL: installed qforge does not run: $v"; exit 1; }
want=$("$qf" --version)
[ "$v" = "$want" ] || { echo "FAIL: installed qforge says '$v', the build '$want'"; exit 1; }
echo "install: $scratch/prefix/bin/qforge runs ($v)"
