#!/usr/bin/env bash
# Installs the Debian packages keel needs to build, test, fuzz and bench,
# skipping those already present. Run as root on Debian 12.
set -euo pipefail

packages=(
  g++ cmake ninja-build pkg-config git
  liburing-dev libxxhash-dev libzstd-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libcli11-dev nlohmann-json3-dev
  clang-14 libclang-rt-14-dev
  librocksdb-dev libleveldb-dev time
  libcurl4-openssl-dev libssl-dev openssl etcd-server etcd-client
  redis-tools
)

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed"; then
    missing+=("$package")
  fi
done

if ((${#missing[@]} == 0)); then
  exit 0
fi
echo "keel: installing missing Debian packages: ${missing[*]}" >&2
if [[ $(id -u) -ne 0 ]]; then
  echo "keel: run as root (or install the packages above yourself)" >&2
  exit 2
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
