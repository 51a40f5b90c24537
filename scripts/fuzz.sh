#!/usr/bin/env bash
# Builds the libFuzzer targets (the "fuzz" preset, clang-14) and runs each one
# for a bounded time on a copy of its seed corpus, so that nothing libFuzzer
# writes lands in the repository.
#
#   scripts/fuzz.sh [seconds-per-target]     (default 30)
#
# Exits non-zero when a build fails or a target finds a crash, a leak, a
# sanitizer report, a broken invariant or a timeout; the reproducer is kept
# under the printed work directory (crash-*, leak-*, timeout-*).
set -euo pipefail

seconds="${1:-30}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
  echo "fuzz.sh: seconds must be a positive integer, got '$seconds'" >&2
  exit 2
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
cmake --preset fuzz >/dev/null
cmake --build --preset fuzz

work="$(mktemp -d "${TMPDIR:-/tmp}/keel-fuzz-XXXXXX")"
echo "fuzz.sh: working in $work"
status=0
for corpus in tests/fuzz/corpus/*/; do
  name="$(basename "$corpus")"
  target="build/fuzz/tests/fuzz/${name}_fuzz"
  if [ ! -x "$target" ]; then
    echo "fuzz.sh: no target $target for corpus $corpus" >&2
    status=2
    continue
  fi
  mkdir -p "$work/$name/corpus" "$work/$name/artifacts"
  cp "$corpus"* "$work/$name/corpus/"
  echo "fuzz.sh: $name for ${seconds}s"
  # max_len: a whole 64 KiB segment plus the input's flags, two at most.
  if ! "$target" "$work/$name/corpus" \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=140000 \
      -artifact_prefix="$work/$name/artifacts/" -print_final_stats=1 \
      >"$work/$name/log.txt" 2>&1; then
    echo "fuzz.sh: $name FAILED; the log and the reproducer are in $work/$name:" >&2
    tail -n 40 "$work/$name/log.txt" >&2
    ls -l "$work/$name/artifacts" >&2
    status=1
    continue
  fi
  grep -E '^stat::number_of_executed_runs|^#[0-9]+.*DONE' "$work/$name/log.txt" || true
done
if [ "$status" -eq 0 ]; then
  rm -rf "$work"
  echo "fuzz.sh: no findings"
fi
exit "$status"
