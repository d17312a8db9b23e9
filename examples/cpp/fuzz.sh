#!/usr/bin/env bash
# Fuzz the metadata reader (fuzz_metadata.cpp: read_onnx_metadata + describe_artifact) with
# libFuzzer, AddressSanitizer and UBSan, for a fixed budget.
#
#   bash examples/cpp/fuzz.sh SEED_DIR [SECONDS]     # default 30 s
#
# SEED_DIR holds ONNX files to start from (the tests write real artifacts' metadata and the
# hostile corpus there). Builds examples/cpp/build-fuzz/fuzz_metadata with clang++ (Debian:
# apt-get install -y clang libclang-rt-14-dev; scripts/test-deps installs them), runs it with
# a fixed seed from SEED_DIR alone (a fresh temporary corpus each run, deleted afterwards, so
# that every run, local or CI, explores the same inputs), and exits with libFuzzer's status:
# 0 when no input crashed, hung (over 10 s), allocated too much or broke an invariant.
# Crashing inputs are written to build-fuzz/artifacts/.
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
mkdir -p "$out/artifacts"
"$clang" -std=c++17 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
    -I"$here" "$here/policyport_metadata.cpp" "$here/fuzz_metadata.cpp" -o "$out/fuzz_metadata"
# New inputs go to a fresh folder, not one kept across runs: a corpus that grows run after run
# makes each run explore something else (and a CI run something else than a local one).
corpus=$(mktemp -d "${TMPDIR:-/tmp}/policyport-fuzz-corpus.XXXXXX")
trap 'rm -rf "$corpus"' EXIT
# -seed fixes the run (the same budget explores the same inputs on a machine of the same speed).
# -malloc_limit_mb=16: no single allocation may reach 16 MiB. An input is at most 64 KiB
# (-max_len) and the reader allocates only from the bytes it holds: its largest buffer, the
# parsed JSON of one value, takes at most ~32 bytes per byte of text (a 96-byte node per "[],"),
# about 2-3 MiB (measured: nothing reaches 1 MiB in 750,000 full-length runs). A buffer sized
# from what the file *declares* (2^22 float32s is 16 MiB; one row may declare 2^24 elements,
# 4096 noise blocks, a length field up to 2^53) trips it, with the allocation's stack trace.
# -rss_limit_mb=2048 bounds the total (ASan's quarantine alone keeps up to 256 MB).
# The fuzzer runs as a child of this shell, not by `exec`: Linux keeps a process's peak RSS
# (getrusage's ru_maxrss, what libFuzzer compares with -rss_limit_mb) across exec, and a
# process started by fork/vfork + exec starts from its parent's, so an exec'd fuzzer started
# by a 2.3 GB pytest reported "out-of-memory (used: 2313Mb)" a second after starting, with
# 25 MB live. A forked child starts from this small shell's instead.
status=0
"$out/fuzz_metadata" -seed=1 -max_total_time="$budget" -timeout=10 -rss_limit_mb=2048 \
    -malloc_limit_mb=16 -max_len=65536 -print_final_stats=1 -artifact_prefix="$out/artifacts/" \
    "$corpus" "$seeds" || status=$?
exit "$status"
