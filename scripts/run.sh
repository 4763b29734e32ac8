#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Sets everything up on Debian 12 (packages, build) and runs berthd in the foreground with
# its built-in default configuration: CRI on /run/berth/berth.sock. Extra arguments go to
# berthd (for example --log-level debug).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
exec "${BERTH_BUILD_DIR:-build}/bin/berthd" "$@"
