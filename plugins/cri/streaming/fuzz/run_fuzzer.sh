#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds the SPDY session fuzz target with Debian's clang and libFuzzer (ASan + UBSan) in a
# temporary directory and runs it for SECONDS (default 30) from the seed corpus.
#
#   run_fuzzer.sh [SECONDS] [-- LIBFUZZER_ARGS...]
#   run_fuzzer.sh --replay INPUT...      runs the target once on each file (a finding)
#
# Exit status: 0 nothing found; 1 a crash, leak, timeout or failed invariant (the input that
# triggered it is kept, and its path printed); 77 clang or libFuzzer is not installed
# (scripts/setup.sh installs both: packages clang and libclang-rt-14-dev).
# Environment: CXX (default clang++), BERTH_FUZZ_KEEP=1 keeps the work directory.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../../../.." && pwd)
seconds=30
replay=0
if [ "${1:-}" = "--replay" ]; then
  replay=1
  shift
  [ $# -gt 0 ] || { echo "run_fuzzer.sh: --replay needs input files" >&2; exit 2; }
elif [ $# -gt 0 ] && [ "$1" != "--" ]; then
  seconds=$1
  shift
fi
[ "$replay" = 0 ] && [ "${1:-}" = "--" ] && shift
case "$seconds" in '' | *[!0-9]* | 0)  # libFuzzer reads 0 as "no limit"
  echo "run_fuzzer.sh: SECONDS must be a positive number, not '$seconds'" >&2
  exit 2
  ;;
esac

skip() {
  echo "run_fuzzer.sh: SKIP: $*" >&2
  exit 77
}
cxx=${CXX:-}
if [ -z "$cxx" ]; then
  for c in clang++ clang++-14; do
    if command -v "$c" >/dev/null; then
      cxx=$c
      break
    fi
  done
fi
[ -n "$cxx" ] || skip "no clang++ (apt-get install clang libclang-rt-14-dev)"
command -v pkg-config >/dev/null || skip "no pkg-config"
absl="absl_status absl_statusor absl_strings absl_str_format absl_flat_hash_map absl_flat_hash_set"
# shellcheck disable=SC2086
pkg-config --exists $absl zlib || skip "Abseil or zlib development files missing (libabsl-dev, zlib1g-dev)"

work=$(mktemp -d "${TMPDIR:-/tmp}/berth-spdy-fuzz-XXXXXX")
keep=${BERTH_FUZZ_KEEP:-0}
cleanup() { [ "$keep" = 1 ] || rm -rf "$work"; }
trap cleanup EXIT

# libFuzzer itself (libclang_rt.fuzzer, from libclang-rt-14-dev) may be missing while clang is
# there: only then is this a skip; a failure to build berth's sources is an error.
echo 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }' \
  >"$work/probe.cc"
"$cxx" -fsanitize=fuzzer,address,undefined "$work/probe.cc" -o "$work/probe" 2>"$work/probe.log" ||
  skip "$cxx cannot link a libFuzzer target: $(tail -n 3 "$work/probe.log")"

echo "run_fuzzer.sh: building with $cxx in $work"
# shellcheck disable=SC2046,SC2086
"$cxx" -std=c++20 -g -O1 -Wall -Wextra -Werror -fno-omit-frame-pointer \
  -fsanitize=fuzzer,address,undefined \
  -fno-sanitize-recover=undefined -I"$root" $(pkg-config --cflags $absl zlib) \
  "$here/spdy_session_fuzzer.cc" \
  "$root/plugins/cri/streaming/spdy_frame.cc" \
  "$root/plugins/cri/streaming/spdy_header_block.cc" \
  "$root/plugins/cri/streaming/spdy.cc" \
  $(pkg-config --libs $absl zlib) -o "$work/spdy_session_fuzzer"

if [ "$replay" = 1 ]; then
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 "$work/spdy_session_fuzzer" "$@"
  exit $?
fi

# New inputs go to a scratch corpus; the seeds in the tree are only read.
mkdir -p "$work/corpus" "$work/artifacts"
status=0
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  "$work/spdy_session_fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
  -max_len=4096 -dict="$here/spdy.dict" -print_final_stats=1 \
  -artifact_prefix="$work/artifacts/" "$@" "$work/corpus" "$here/corpus" || status=$?
if [ "$status" -ne 0 ]; then
  keep=1
  echo "run_fuzzer.sh: the fuzzer failed (exit $status); inputs that triggered it:" >&2
  for f in "$work"/artifacts/*; do
    [ -e "$f" ] || continue
    echo "  $f ($(stat -c %s "$f") bytes): $(od -An -tx1 -v "$f" | tr -d ' \n' | head -c 512)" >&2
  done
  echo "run_fuzzer.sh: replay with: $0 0 -- ARTIFACT" >&2
  exit 1
fi
echo "run_fuzzer.sh: nothing found in ${seconds}s ($(find "$work/corpus" -type f | wc -l) new corpus inputs)"
