#!/usr/bin/env bash
# Build the C++ examples into examples/cpp/build/ (batch_run, cartpole, bench_latency, policy_info).
#
#   bash examples/cpp/build.sh              # release build, in examples/cpp/build
#   bash examples/cpp/build.sh --sanitize   # AddressSanitizer + UBSan, in examples/cpp/build-sanitize
#
# Uses $ONNXRUNTIME_ROOT (a folder with include/ and lib/) when set; otherwise prepares ONNX
# Runtime 1.29.0 from the npm registry once (prepare_onnxruntime.sh; cached) and uses that.
# Idempotent: a second run only re-checks timestamps. Warnings are errors here.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

build=$here/build
options=(-DCMAKE_BUILD_TYPE=Release)
if [[ ${1:-} == --sanitize ]]; then
    build=$here/build-sanitize
    options=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DPOLICYPORT_SANITIZE=ON)
elif [[ $# -gt 0 ]]; then
    echo "usage: build.sh [--sanitize]" >&2
    exit 2
fi

for tool in cmake g++; do
    command -v "$tool" >/dev/null || { echo "build.sh: $tool is not installed" >&2; exit 3; }
done

root=${ONNXRUNTIME_ROOT:-$(bash "$here/prepare_onnxruntime.sh")}
cmake -S "$here" -B "$build" --log-level=WARNING \
    -DONNXRUNTIME_ROOT="$root" -DPOLICYPORT_WERROR=ON "${options[@]}" >/dev/null
cmake --build "$build" --parallel "$(nproc 2>/dev/null || echo 2)" >&2
echo "build.sh: built batch_run, cartpole, bench_latency, policy_info, sequence_run in $build (ONNX Runtime: $root)" >&2
