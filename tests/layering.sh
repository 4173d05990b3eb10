#!/usr/bin/env bash
# The dependency order between folders, checked: a folder may include headers only from the folders
# listed for it (plus include/). CMake links the per-folder libraries in the same order.
#   kernels   -> (nothing)
#   formats   -> kernels
#   runtime   -> formats, kernels           (model loading, the graph, tokenizer, CPU backend)
#   runtime/cuda -> runtime, formats, kernels (the CUDA backend: its own library, linked by the
#                                              backend table runtime/backends.c)
#   verify    -> runtime, formats, kernels  (the judge: perplexity, KLD, gates, integrity)
#   quantize  -> formats, kernels
#   calibrate -> runtime, formats, kernels  (calibration runs the runtime, not the judge)
#   convert   -> everything (the front door)
set -euo pipefail
root=$1
declare -A allowed=(
    [kernels]="kernels"
    [formats]="formats kernels"
    [runtime]="runtime formats kernels"
    [runtime/cuda]="runtime formats kernels"
    [verify]="verify runtime formats kernels"
    [quantize]="quantize formats kernels"
    [calibrate]="calibrate runtime formats kernels"
    [convert]="convert calibrate quantize verify runtime formats kernels"
)
bad=0; checked=0
for dir in "${!allowed[@]}"; do
    [ -d "$root/$dir" ] || continue
    while IFS= read -r line; do
        file=${line%%:*}
        inc=$(sed -n 's/.*#include "\([a-z_]*\)\/.*/\1/p' <<<"$line")
        [ -n "$inc" ] || continue
        checked=$((checked+1))
        if ! grep -qw "$inc" <<<"${allowed[$dir]}"; then
            echo "layering violation: $file includes $inc/ (allowed for $dir/: ${allowed[$dir]})"; bad=$((bad+1))
        fi
    done < <(grep -H '#include "[a-z_]*/' "$root/$dir"/*.{c,h,cu,cuh} 2>/dev/null || true)
done
# The CUDA backend is reached through the backend table only (runtime/backends.c makes it; backend.h
# declares it), so nothing else depends on the CUDA library.
others=$(grep -rl 'qf_be_cuda_' "$root"/{kernels,formats,runtime,verify,quantize,calibrate,convert} --include='*.[ch]' 2>/dev/null |
    grep -v -e '/runtime/backends\.c$' -e '/runtime/backend\.h$' -e '/runtime/cuda/' || true)
checked=$((checked+1))
if [ -n "$others" ]; then
    echo "layering violation: outside the backend table, these name the CUDA backend: $others"; bad=$((bad+1))
fi
echo "layering: $checked includes and rules checked"
echo "$((checked-bad)) passed, $bad failed"
[ "$bad" -eq 0 ]
