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
test -f "$scratch/prefix/share/doc/keel/docs/format.md"
test -f "$scratch/prefix/include/keel/recovery/quarantine.h"
# Test machinery (testing/: the simulated file system, the fault proxy, the planted-bug
# registry, the key-value model; and wal/planted.h, the hooks) is not part of the
# package: neither its headers, where they are now or used to be, nor its code.
for machinery in testing io/sim_fs.h io/mem_fs.h wal/planted.h replication/fault_proxy.h; do
  if test -e "$scratch/prefix/include/keel/$machinery"; then
    echo "consumer: test machinery installed: include/keel/$machinery" >&2
    exit 1
  fi
done
if find "$scratch/prefix" -name '*.a' -exec nm -C {} + 2>/dev/null | grep -E ' [TW] .*(SimFileSystem|FaultProxy|ParsePlantedBug|KvStateMachine)'; then
  echo "consumer: an installed library holds test machinery" >&2
  exit 1
fi
# Installed headers include each other as <keel/...>: a quoted project path would need
# include/keel on the user's include path.
if grep -rn '^#include "' "$scratch/prefix/include/keel"; then
  echo "consumer: an installed header includes a project header without the keel/ prefix" >&2
  exit 1
fi
cmake -S "$source_dir/tests/consumer" -B "$scratch/build" -G Ninja -DCMAKE_PREFIX_PATH="$scratch/prefix" >/dev/null
cmake --build "$scratch/build" >/dev/null
"$scratch/build/consumer" "$scratch/log"
