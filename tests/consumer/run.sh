#!/usr/bin/env bash
# Installs the build into a scratch prefix, builds tests/consumer against it
# with find_package(keel), and runs it. Arguments: SOURCE_DIR BUILD_DIR.
set -euo pipefail
source_dir="$1"
build_dir="$2"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
cmake --install "$build_dir" --prefix "$scratch/prefix" >/dev/null
test -f "$scratch/prefix/include/keel/wal/log.h"
test -f "$scratch/prefix/include/keel/io/io.h"
test -f "$scratch/prefix/include/keel/version.h"
test -f "$scratch/prefix/include/keel/recovery/quarantine.h"
cmake -S "$source_dir/tests/consumer" -B "$scratch/build" -G Ninja -DCMAKE_PREFIX_PATH="$scratch/prefix" >/dev/null
cmake --build "$scratch/build" >/dev/null
"$scratch/build/consumer" "$scratch/log"
