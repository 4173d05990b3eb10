#!/usr/bin/env bash
# The dependency order between folders, checked: a folder may include headers only from the folders
# listed for it (plus include/). CMake links the per-folder libraries in the same order.
#   kernels   -> (nothing)
#   formats   -> kernels
#   verify    -> formats, kernels
#   quantize  -> formats, kernels
#   calibrate -> verify, formats, kernels    (calibration runs the reference runtime)
#   convert   -> everything (the front door)
set -euo pipefail
root=$1
declare -A allowed=(
    [kernels]="kernels"
    [formats]="formats kernels"
    [verify]="verify formats kernels"
    [quantize]="quantize formats kernels"
    [calibrate]="calibrate verify formats kernels"
    [convert]="convert calibrate quantize verify formats kernels"
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
    done < <(grep -H '#include "[a-z_]*/' "$root/$dir"/*.[ch] 2>/dev/null || true)
done
echo "layering: $checked includes checked"
echo "$((checked-bad)) passed, $bad failed"
[ "$bad" -eq 0 ]
