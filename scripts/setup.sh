#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs every Debian 12 package berth needs to build, run and test. Idempotent.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh: must run as root (it installs Debian packages with apt-get)" >&2
  exit 1
fi

PACKAGES=(
  # toolchain
  build-essential cmake pkg-config git ca-certificates lld
  # the SPDY parser's fuzz target: clang with libFuzzer (plugins/cri/streaming/fuzz)
  clang libclang-rt-14-dev libabsl-dev
  # libraries
  libgrpc++-dev libprotobuf-dev libprotoc-dev protobuf-compiler protobuf-compiler-grpc
  libboost-dev libboost-filesystem-dev libboost-system-dev
  libspdlog-dev libfmt-dev libyaml-cpp-dev libarchive-dev libgtest-dev libgmock-dev
  libcurl4-openssl-dev libssl-dev libsqlite3-dev libsystemd-dev nlohmann-json3-dev
  libtomlplusplus-dev libzstd-dev zlib1g-dev libseccomp-dev libcap-dev
  # runtime and test components
  runc crun containernetworking-plugins iptables iproute2 docker-registry
  busybox-static apache2-utils containerd systemd procps util-linux sqlite3 curl python3 zstd openssl
)

missing=()
for p in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) || status=""
  [[ $status == *"install ok installed"* ]] || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# docker-registry's package starts a service on a fixed port when systemd runs it; the
# tests start their own instances, so make sure no packaged one is left running.
