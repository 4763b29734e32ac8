#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Sets everything up on Debian 12 (packages, build) and runs berthd in the foreground with
# its built-in default configuration: CRI on /run/berth/berth.sock. Extra arguments go to
# berthd (for example --log-level debug).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
# A pod network for pods without host networking: berth's default (a bridge on 10.88.0.0/16,
# host-local addresses, portmap, bandwidth) when the node has no CNI configuration yet.
conf_dir=/etc/cni/net.d
if ! ls "$conf_dir"/*.conflist "$conf_dir"/*.conf "$conf_dir"/*.json >/dev/null 2>&1; then
  install -D -m 0644 packaging/cni/10-berth.conflist "$conf_dir/10-berth.conflist"
  echo "run.sh: installed the default pod network $conf_dir/10-berth.conflist"
fi
exec "${BERTH_BUILD_DIR:-build}/bin/berthd" "$@"
