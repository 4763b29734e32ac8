#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Runs every benchmark against a build tree and prints their figures.
set -euo pipefail
build=${1:-build}
"$build/bin/berth_bench_startup" --runs "${BERTH_BENCH_RUNS:-10}"
"$build/bin/berth_bench_pull" "$@"
"$build/bin/berth_bench_shim" --runs "${BERTH_BENCH_RUNS:-10}"
"$build/bin/berth_bench_pods" --runs "${BERTH_BENCH_RUNS:-20}"
"$build/bin/berth_bench_stream"
"$build/bin/berth_bench_spec"
