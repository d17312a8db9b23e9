#!/usr/bin/env bash
# Fuzz the metadata reader (fuzz_metadata.cpp: read_onnx_metadata + describe_artifact) with
# libFuzzer, AddressSanitizer and UBSan, for a fixed budget.
#
#   bash examples/cpp/fuzz.sh SEED_DIR [SECONDS]     # default 30 s
#
# SEED_DIR holds ONNX files to start from (the tests write real artifacts' metadata and the
# hostile corpus there). Builds examples/cpp/build-fuzz/fuzz_metadata with clang++ (Debian:
# apt-get install -y clang libclang-rt-14-dev; scripts/test-deps installs them), runs it with
# a fixed seed, and exits with libFuzzer's status: 0 when no input crashed, hung (over 10 s)
# or broke an invariant. Crashing inputs are written to build-fuzz/artifacts/.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
seeds=${1:?usage: fuzz.sh SEED_DIR [SECONDS]}
budget=${2:-30}

clang=$(command -v clang++ || command -v clang++-14 || true)
if [[ -z $clang ]]; then
    echo "fuzz.sh: clang++ is not installed (Debian: apt-get install -y clang libclang-rt-14-dev," \
        "or run scripts/test-deps as root)" >&2
    exit 3
fi
out=$here/build-fuzz
mkdir -p "$out/corpus" "$out/artifacts"
"$clang" -std=c++17 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
    -I"$here" "$here/policyport_metadata.cpp" "$here/fuzz_metadata.cpp" -o "$out/fuzz_metadata"
# -seed fixes the run (the same budget explores the same inputs on a machine of the same speed).
exec "$out/fuzz_metadata" -seed=1 -max_total_time="$budget" -timeout=10 -rss_limit_mb=2048 \
    -max_len=65536 -print_final_stats=1 -artifact_prefix="$out/artifacts/" "$out/corpus" "$seeds"
