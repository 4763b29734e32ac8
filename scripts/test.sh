#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Sets everything up on Debian 12 (packages, build) and runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
cd "${BERTH_BUILD_DIR:-build}"
# ctest prints the final "N tests passed, N tests failed" summary.
ctest --output-on-failure -j"$(nproc)" --timeout 600
