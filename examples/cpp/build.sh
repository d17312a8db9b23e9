#!/usr/bin/env bash
# Build the C++ examples into examples/cpp/build/ (batch_run, cartpole, bench_latency, policy_info).
#
#   bash examples/cpp/build.sh
#
# Uses $ONNXRUNTIME_ROOT (a folder with include/ and lib/) when set; otherwise prepares ONNX
# Runtime 1.29.0 from the npm registry once (prepare_onnxruntime.sh; cached) and uses that.
# Idempotent: a second run only re-checks timestamps. Warnings are errors here.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

for tool in cmake g++; do
    command -v "$tool" >/dev/null || { echo "build.sh: $tool is not installed" >&2; exit 3; }
done

root=${ONNXRUNTIME_ROOT:-$(bash "$here/prepare_onnxruntime.sh")}
cmake -S "$here" -B "$here/build" --log-level=WARNING \
    -DONNXRUNTIME_ROOT="$root" -DPOLICYPORT_WERROR=ON -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$here/build" --parallel "$(nproc 2>/dev/null || echo 2)" >&2
echo "build.sh: built batch_run, cartpole, bench_latency, policy_info in $here/build (ONNX Runtime: $root)" >&2
