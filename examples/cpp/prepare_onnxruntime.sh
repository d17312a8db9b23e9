#!/usr/bin/env bash
# Prepare an ONNXRUNTIME_ROOT (include/ + lib/) for building the C++ examples, from what the
# package registries carry, and print its path on stdout.
#
# ONNX Runtime's C/C++ headers are in none of its Python, npm or Debian packages. The npm
# package com.github.asus4.onnxruntime (a Unity plugin) carries ONNX Runtime's official release
# files: the Android package (onnxruntime.aar, whose headers/ folder holds the C and C++ API
# headers) and the Linux x64 libonnxruntime.so. We take exactly those two things from it.
#
# If you have ONNX Runtime's official release archive (onnxruntime-linux-x64-<v>.tgz) or any
# other install with include/ and lib/, skip this script: pass ONNXRUNTIME_ROOT to CMake.
#
# Pinned: the npm version and the sha256 of its tarball, checked before anything is unpacked.
# Cached: the prepared folder is reused on the next run (the check is one file test). Where:
#   $POLICYPORT_CACHE (default ${XDG_CACHE_HOME:-$HOME/.cache}/policyport)/onnxruntime-<v>-linux-x64
set -euo pipefail

ORT_VERSION=1.29.0
NPM_PACKAGE=com.github.asus4.onnxruntime
NPM_VERSION=0.4.9
TARBALL=${NPM_PACKAGE}-${NPM_VERSION}.tgz
TARBALL_SHA256=e59788788818fdde1b2e522e766a21ba0f7d8391de55737abf81e32cc801785d

die() { echo "prepare_onnxruntime: $*" >&2; exit 1; }

cache=${POLICYPORT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/policyport}
root=$cache/onnxruntime-${ORT_VERSION}-linux-x64
stamp=$root/.prepared-from-${NPM_PACKAGE}-${NPM_VERSION}-${TARBALL_SHA256:0:16}

if [[ -f $stamp ]]; then
    echo "$root"
    exit 0
fi

case "$(uname -s)-$(uname -m)" in
    Linux-x86_64) ;;
    *) die "this script prepares Linux x86_64 only (found $(uname -s)-$(uname -m)); download \
ONNX Runtime ${ORT_VERSION}'s release archive for your platform and pass -DONNXRUNTIME_ROOT=<it> to CMake" ;;
esac
command -v npm >/dev/null || die "npm is needed to fetch ${NPM_PACKAGE}@${NPM_VERSION} from the npm \
registry (or pass ONNXRUNTIME_ROOT=<folder with include/ and lib/> to build.sh)"

mkdir -p "$cache"
work=$(mktemp -d "$cache/.prepare-XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "prepare_onnxruntime: fetching ${NPM_PACKAGE}@${NPM_VERSION} (~150 MB) from npm" >&2
(cd "$work" && npm pack --silent "${NPM_PACKAGE}@${NPM_VERSION}" >/dev/null)
[[ -f $work/$TARBALL ]] || die "npm pack did not write $TARBALL"

actual=$(sha256sum "$work/$TARBALL" | cut -d' ' -f1)
[[ $actual == "$TARBALL_SHA256" ]] || die "sha256 mismatch for $TARBALL: expected \
$TARBALL_SHA256, got $actual. The registry's file is not the one this script was checked \
with; refusing to use it."

tar -xzf "$work/$TARBALL" -C "$work" \
    package/Plugins/Linux/x64/libonnxruntime.so package/Plugins/Android/onnxruntime.aar
rm "$work/$TARBALL"

stage=$work/root
mkdir -p "$stage/include" "$stage/lib"
# The .aar is a zip; unzip if present, else Python's zipfile (one of the two is everywhere).
aar=$work/package/Plugins/Android/onnxruntime.aar
if command -v unzip >/dev/null; then
    unzip -q -j "$aar" 'headers/*' -d "$stage/include"
else
    python3 - "$aar" "$stage/include" <<'PY' || die "neither unzip nor python3 could read onnxruntime.aar"
import os, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as aar:
    for name in aar.namelist():
        if name.startswith("headers/") and not name.endswith("/"):
            with open(os.path.join(sys.argv[2], os.path.basename(name)), "wb") as out:
                out.write(aar.read(name))
PY
fi
[[ -f $stage/include/onnxruntime_cxx_api.h ]] || die "onnxruntime.aar has no headers/onnxruntime_cxx_api.h"
api=$(echo "$ORT_VERSION" | cut -d. -f2)
grep -q "^#define ORT_API_VERSION ${api}\$" "$stage/include/onnxruntime_c_api.h" ||
    die "the headers are not ONNX Runtime ${ORT_VERSION}'s (ORT_API_VERSION is not ${api})"

# The official release archive's layout: the versioned library plus the two names the linker
# (libonnxruntime.so) and the loader (libonnxruntime.so.1, the soname) look for.
install -m 0644 "$work/package/Plugins/Linux/x64/libonnxruntime.so" "$stage/lib/libonnxruntime.so.${ORT_VERSION}"
ln -s "libonnxruntime.so.${ORT_VERSION}" "$stage/lib/libonnxruntime.so.1"
ln -s "libonnxruntime.so.1" "$stage/lib/libonnxruntime.so"
cat > "$stage/VERSION_SOURCE" <<INFO
ONNX Runtime ${ORT_VERSION} (official release files) taken from npm ${NPM_PACKAGE}@${NPM_VERSION}
tarball sha256 ${TARBALL_SHA256}
include/: onnxruntime.aar headers/    lib/: Plugins/Linux/x64/libonnxruntime.so
INFO
touch "$stage/$(basename "$stamp")"

# Publish with one rename, so nobody ever sees a half-prepared root. If another run published
# first, keep theirs; a folder without the stamp is left over from an interrupted older run.
if ! mv -T "$stage" "$root" 2>/dev/null && [[ ! -f $stamp ]]; then
    rm -rf "$root"
    mv -T "$stage" "$root" || die "could not move the prepared folder to $root"
fi
echo "prepare_onnxruntime: prepared $root" >&2
echo "$root"
