#!/usr/bin/env bash
# Installs every build and run dependency of gpt2q with apt-get (Debian 12), idempotently.
# Skips apt-get entirely when everything is already present.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config
  libhdf5-dev hdf5-tools
  libopenblas-openmp-dev libopenblas0-openmp
  libcjson-dev libutf8proc-dev libsimde-dev
  clang libclang-rt-14-dev libomp-dev
  gnuplot-nox bible-kjv
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#packages[@]} packages present"
  exit 0
fi

echo "deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "deps: done"
