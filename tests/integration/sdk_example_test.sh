#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# The SDK, as a third party uses it: install the `sdk` component into a scratch prefix,
# build sdk/examples/event-journal out of tree against it (CMake package, then pkg-config),
# run berthd with the plugin and check that it loads, runs, journals its own event, keeps
# its counter in the metadata store across a restart, and that its configuration errors
# name the file and line. The same for the SDK's ttrpc component: build sdk/examples/shim-client
# against the install (find_package(berth-sdk COMPONENTS ttrpc) + berth::ttrpc, then g++ with
# pkg-config berth-ttrpc), check that it compiles against the installed lite protobuf
# well-known types and links no full libprotobuf, and run it: with a shim binary that does
# not exist (the precise error), then against /usr/bin/containerd-shim-runc-v2 (start,
# Task.Connect printing the shim's pid, Task.Shutdown, the shim's delete command).
#
# usage: sdk_example_test.sh BERTH_SOURCE_DIR BUILD_DIR
# Needs root (berthd does); exits 77 (skipped) otherwise. No network is used.
# KEEP_TMP=1 keeps the scratch directory for inspection.
set -euo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 BERTH_SOURCE_DIR BUILD_DIR" >&2
  exit 2
fi
SRC=$(cd "$1" && pwd)
BUILD=$(cd "$2" && pwd)
BERTHD="$BUILD/bin/berthd"
BERTHCTL="$BUILD/bin/berthctl"
EXAMPLE="$SRC/sdk/examples/event-journal"
PLUGIN_ID=io.example.event-journal

if [[ $(id -u) -ne 0 ]]; then
  echo "SKIP: berthd must run as root"
  exit 77
fi
for tool in cmake g++ pkg-config nm; do
  if ! command -v "$tool" >/dev/null; then
    echo "FAIL: $tool is not installed"
    exit 1
  fi
done
for f in "$BERTHD" "$BERTHCTL"; do
  if [[ ! -x $f ]]; then
    echo "FAIL: $f not built (cmake --build $BUILD)"
    exit 1
  fi
done

TMP=$(mktemp -d /tmp/berth-sdk-example.XXXXXX)
BERTHD_PID=""
SHIM_PIDS=()  # "pid:container-id" of the shims that shim-client started
FAILURES=0

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  local rc=$?
  if [[ -n $BERTHD_PID ]] && kill -0 "$BERTHD_PID" 2>/dev/null; then
    kill -TERM "$BERTHD_PID" 2>/dev/null || true
    for _ in $(seq 50); do
      kill -0 "$BERTHD_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$BERTHD_PID" 2>/dev/null || true
    wait "$BERTHD_PID" 2>/dev/null || true
  fi
  # A shim left running by a failed check: only one of ours (its command line names our id).
  local entry
  for entry in "${SHIM_PIDS[@]}"; do
    if our_shim "${entry%%:*}" "${entry#*:}"; then
      kill -KILL "${entry%%:*}" 2>/dev/null || true
    fi
  done
  if [[ ${KEEP_TMP:-0} == 1 ]]; then
    echo "kept $TMP"
  else
    rm -rf "$TMP"
  fi
  exit "$rc"
}
trap cleanup EXIT

pass() { echo "PASS: $*"; }
fail() {
  echo "FAIL: $*"
  FAILURES=$((FAILURES + 1))
}
# fatal MESSAGE [LOG]: the rest of the test cannot run.
fatal() {
  echo "FAIL: $1"
  if [[ $# -gt 1 && -f $2 ]]; then
    echo "---- $2 (last 40 lines)"
    tail -n 40 "$2"
    echo "----"
  fi
  exit 1
}
show() {
  echo "---- $1 (last 40 lines)"
  tail -n 40 "$1" || true
  echo "----"
}

# ---- 1. install the SDK component --------------------------------------------------------
PREFIX="$TMP/prefix"
cmake --install "$BUILD" --prefix "$PREFIX" --component sdk >"$TMP/install.log" 2>&1 ||
  fatal "cmake --install --component sdk" "$TMP/install.log"
CONFIG_DIR=$(dirname "$(find "$PREFIX" -name berth-sdk-config.cmake -print -quit)")
PC_FILE=$(find "$PREFIX" -name berth-sdk.pc -print -quit)
if [[ -f $PREFIX/include/berth/plugin.hpp && -f $CONFIG_DIR/berth-sdk-config.cmake && -n $PC_FILE ]]; then
  pass "sdk component installed: headers, CMake package ($CONFIG_DIR), pkg-config ($PC_FILE)"
else
  fatal "sdk component incomplete under $PREFIX" "$TMP/install.log"
fi

# ---- 2. build the example with CMake, against the installed SDK only -----------------------
EXBUILD="$TMP/exbuild"
cmake -S "$EXAMPLE" -B "$EXBUILD" -DCMAKE_PREFIX_PATH="$PREFIX" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  >"$TMP/configure.log" 2>&1 || fatal "configuring the example" "$TMP/configure.log"
FOUND_DIR=$(sed -n 's/^berth-sdk_DIR:PATH=//p' "$EXBUILD/CMakeCache.txt")
if [[ $FOUND_DIR == "$PREFIX"/* ]]; then
  pass "find_package(berth-sdk) found the scratch install ($FOUND_DIR)"
else
  fail "find_package(berth-sdk) found $FOUND_DIR, not the install under $PREFIX"
fi
cmake --build "$EXBUILD" >"$TMP/build.log" 2>&1 || fatal "building the example" "$TMP/build.log"
SO="$EXBUILD/event-journal.so"
[[ -f $SO ]] || fatal "the CMake build made no $SO" "$TMP/build.log"
pass "example built out of tree with CMake (-Wall -Wextra -Werror)"
EXPORTS=$(nm -D --defined-only "$SO" | awk '{print $NF}' | sort | tr '\n' ' ')
if [[ $EXPORTS == "berth_plugin_entry " ]]; then
  pass "the plugin exports only berth_plugin_entry"
else
  fail "the plugin exports: $EXPORTS(want only berth_plugin_entry)"
fi

# ---- 3. build it again with pkg-config ------------------------------------------------------
PC_DIR=$(dirname "$PC_FILE")  # lib/pkgconfig or lib/<multiarch>/pkgconfig
PCBUILD="$TMP/pcbuild"
mkdir -p "$PCBUILD"
PC_INCLUDEDIR=$(PKG_CONFIG_PATH="$PC_DIR" pkg-config --variable=includedir berth-sdk)
PC_FLAGS=$(PKG_CONFIG_PATH="$PC_DIR" pkg-config --cflags --libs berth-sdk)
if [[ $PC_INCLUDEDIR == "$PREFIX"/* ]]; then
  pass "pkg-config berth-sdk points into the install prefix ($PC_INCLUDEDIR)"
else
  # The .pc file has the configure-time prefix baked in, so an SDK installed with
  # `cmake --install --prefix` elsewhere is not found through it.
  fail "berth-sdk.pc is not relocatable: installed under $PREFIX it says includedir=$PC_INCLUDEDIR" \
    "(sdk/berth-sdk.pc.in uses @CMAKE_INSTALL_PREFIX@ from configure time)"
  # Go on with pkgconf's --define-prefix so that the rest of this check still runs.
  PC_FLAGS=$(PKG_CONFIG_PATH="$PC_DIR" pkg-config --define-prefix --cflags --libs berth-sdk)
fi
# shellcheck disable=SC2086 # PC_FLAGS is a list of flags
if g++ -std=c++20 -shared -fPIC -O2 -pthread -Wall -Wextra -Werror -o "$PCBUILD/event-journal.so" \
  "$EXAMPLE/plugin.cc" $PC_FLAGS >"$TMP/pc-build.log" 2>&1; then
  pass "example built with g++ \$(pkg-config --cflags --libs berth-sdk)"
else
  fail "g++ with pkg-config flags ($PC_FLAGS)"
  show "$TMP/pc-build.log"
fi

# ---- 4. the ttrpc component: installed files, and plain plugins unaffected ---------------
SHIM_EXAMPLE="$SRC/sdk/examples/shim-client"
LIBDIR=$(dirname "$PC_DIR")
missing=""
for f in "$LIBDIR/libberth_ttrpc.a" "$LIBDIR/libberth_shim_proto.a" \
  "$PREFIX/include/berth/ttrpc/shim.h" "$PREFIX/include/berth/ttrpc/client.h" \
  "$PREFIX/include/berth/shim-proto/shim/task/v2/shim.pb.h" \
  "$PREFIX/include/berth/shim-proto/google/protobuf/any.pb.h" \
  "$PREFIX/share/berth-sdk/proto/shim/task/v2/shim.proto" \
  "$CONFIG_DIR/berth-ttrpc-targets.cmake" "$PC_DIR/berth-ttrpc.pc"; do
  [[ -f $f ]] || missing+=" ${f#"$PREFIX"/}"
done
if [[ -z $missing ]]; then
  pass "ttrpc installed: libberth_ttrpc.a, libberth_shim_proto.a, headers, .proto files, berth-ttrpc.pc"
else
  fail "the sdk component lacks:$missing"
fi
# The lite well-known types must not shadow the system's full ones for anyone else.
if [[ ! -e $PREFIX/include/google ]]; then
  pass "no google/ directory in the install's include/ (lite WKT headers only under berth/shim-proto)"
else
  fail "$PREFIX/include/google exists: lite headers would shadow the system's protobuf"
fi
# find_package(berth-sdk) without COMPONENTS ttrpc (the event-journal build) looks for none
# of the ttrpc component's dependencies.
if ! grep -Eq '^(absl_DIR|PROTOBUF_LITE_[A-Z_]*):' "$EXBUILD/CMakeCache.txt"; then
  pass "plain find_package(berth-sdk) did not look for absl or protobuf-lite"
else
  fail "plain find_package(berth-sdk) looked for the ttrpc component's dependencies" \
    "($(grep -Eo '^(absl_DIR|PROTOBUF_LITE_[A-Z_]*)' "$EXBUILD/CMakeCache.txt" | tr '\n' ' '))"
fi

# uses_lite_wkt DEPFILE: the compiler read the installed lite Any/Empty, not the system's.
uses_lite_wkt() {
  grep -q "$PREFIX/include/berth/shim-proto/google/protobuf/empty\.pb\.h" "$1" &&
    ! grep -Eq '(^| )/usr/(local/)?include/google/protobuf/(any|empty|timestamp)\.pb\.h' "$1"
}
# check_shim_client_binary WHAT BINARY DEPFILE
check_shim_client_binary() {
  if [[ -n $3 ]] && uses_lite_wkt "$3"; then
    pass "$1: compiled against the installed lite Any/Empty/Timestamp headers"
  else
    fail "$1: did not compile against $PREFIX/include/berth/shim-proto/google/protobuf/*.pb.h"
  fi
  # ldd's whole output first: `ldd | grep -q` under pipefail fails when grep leaves early and
  # ldd gets SIGPIPE.
  local libs
  libs=$(ldd "$2")
  if [[ $libs == *libprotobuf-lite.so* && $libs != *libprotobuf.so* ]]; then
    pass "$1: links libprotobuf-lite and not the full libprotobuf"
  else
    fail "$1: protobuf libraries: $(grep -o 'libprotobuf[^ ]*' <<<"$libs" | tr '\n' ' ')"
  fi
}

# ---- 5. build the shim-client example with CMake and with pkg-config ---------------------
SCBUILD="$TMP/shim-client-cmake"
SC_CMAKE=""
if cmake -S "$SHIM_EXAMPLE" -B "$SCBUILD" -DCMAKE_PREFIX_PATH="$PREFIX" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$TMP/sc-configure.log" 2>&1 &&
  cmake --build "$SCBUILD" >"$TMP/sc-build.log" 2>&1 && [[ -x $SCBUILD/shim-client ]]; then
  SC_CMAKE="$SCBUILD/shim-client"
  pass "shim-client built out of tree with find_package(berth-sdk COMPONENTS ttrpc) + berth::ttrpc"
  if grep -q "$LIBDIR/libberth_ttrpc\.a" "$SCBUILD/CMakeFiles/shim-client.dir/link.txt" &&
    grep -q "$LIBDIR/libberth_shim_proto\.a" "$SCBUILD/CMakeFiles/shim-client.dir/link.txt"; then
    pass "shim-client (CMake) linked the installed libberth_ttrpc.a and libberth_shim_proto.a"
  else
    fail "shim-client (CMake) did not link the static libraries under $LIBDIR"
  fi
  check_shim_client_binary "shim-client (CMake)" "$SC_CMAKE" \
    "$SCBUILD/CMakeFiles/shim-client.dir/main.cc.o.d"
else
  fail "configuring or building sdk/examples/shim-client with CMake"
  show "$TMP/sc-configure.log"
  show "$TMP/sc-build.log"
fi

SC_PC=""
TTRPC_FLAGS=$(PKG_CONFIG_PATH="$PC_DIR" pkg-config --cflags --libs berth-ttrpc 2>"$TMP/sc-pc.log") ||
  TTRPC_FLAGS=""
# shellcheck disable=SC2086 # TTRPC_FLAGS is a list of flags
if [[ -z $TTRPC_FLAGS ]]; then
  fail "pkg-config --cflags --libs berth-ttrpc"
  show "$TMP/sc-pc.log"
elif g++ -std=c++20 -O2 -Wall -Wextra -Werror -MD -MF "$PCBUILD/shim-client.d" \
  -o "$PCBUILD/shim-client" "$SHIM_EXAMPLE/main.cc" $TTRPC_FLAGS >"$TMP/sc-pc.log" 2>&1; then
  SC_PC="$PCBUILD/shim-client"
  pass "shim-client built with g++ \$(pkg-config --cflags --libs berth-ttrpc)"
  check_shim_client_binary "shim-client (pkg-config)" "$SC_PC" "$PCBUILD/shim-client.d"
else
  fail "g++ with pkg-config berth-ttrpc flags ($TTRPC_FLAGS)"
  show "$TMP/sc-pc.log"
fi

# ---- 6. run shim-client against containerd-shim-runc-v2 ----------------------------------
RUNC_SHIM=/usr/bin/containerd-shim-runc-v2

# make_bundle DIR: an OCI bundle the shim accepts for start/Connect/Shutdown/delete.
make_bundle() {
  mkdir -p "$1"
  if ! { command -v runc >/dev/null && runc spec --bundle "$1" 2>/dev/null; }; then
    echo '{"ociVersion":"1.0.2","process":{"args":["true"],"cwd":"/"},"root":{"path":"rootfs"}}' \
      >"$1/config.json"
  fi
  # containerd-shim-runc-v2 writes the runc binary's name here at Create; its `delete`
  # command reads it, and shim-client creates no container.
  echo runc >"$1/runtime"
}

# our_shim PID ID: PID is a containerd-shim-runc-v2 started for our container id.
our_shim() {
  local cmdline
  cmdline=$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null) || return 1
  [[ $cmdline == *containerd-shim-runc-v2* && $cmdline == *" -id $2 "* ]]
}

# Expected error for a shim binary that does not exist: RunCommand's exec failure, wrapped
# by StartShim with the command, container and bundle.
NOSHIM="$TMP/no-such-shim"
for bin in "$SC_CMAKE" "$SC_PC"; do
  [[ -n $bin ]] || continue
  bundle="$TMP/bundles/sc-missing-$$"
  [[ -d $bundle ]] || make_bundle "$bundle"
  want="shim-client: FAILED_PRECONDITION: shim $NOSHIM start for container sc-missing-$$ (bundle $bundle): cannot run $NOSHIM in $bundle: No such file or directory"
  rc=0
  timeout 30 "$bin" "$NOSHIM" "$bundle" >"$TMP/sc-missing.out" 2>"$TMP/sc-missing.err" || rc=$?
  if [[ $rc -eq 1 && $(cat "$TMP/sc-missing.err") == "$want" && ! -s $TMP/sc-missing.out ]]; then
    pass "$bin with a missing shim binary: exit 1 and the precise error"
  else
    fail "$bin with a missing shim binary: exit $rc, stderr:"
    cat "$TMP/sc-missing.err"
    echo "want: $want"
  fi
done

if [[ ! -x $RUNC_SHIM ]]; then
  echo "SKIP: $RUNC_SHIM is not installed; shim-client not run against a real shim"
else
  # /run/containerd is shared with the other tests that start shims (ctest -j): hold the lock
  # of tests/support/shared_host_state.h shared while ours run.
  exec 9>>/tmp/berth-containerd-run.lock
  flock -s 9
  n=0
  for bin in "$SC_CMAKE" "$SC_PC"; do
    [[ -n $bin ]] || continue
    n=$((n + 1))
    id="sc-$$-$n"  # the bundle's directory name is the container id
    bundle="$TMP/bundles/$id"
    make_bundle "$bundle"
    rc=0
    timeout 90 "$bin" "$RUNC_SHIM" "$bundle" >"$TMP/$id.out" 2>"$TMP/$id.err" || rc=$?
    shim_pid=$(sed -n 's/^shim pid: \([0-9][0-9]*\)$/\1/p' "$TMP/$id.out")
    address=$(sed -n 's/^shim address: //p' "$TMP/$id.out")
    [[ -n $shim_pid ]] && SHIM_PIDS+=("$shim_pid:$id")
    if [[ $rc -eq 0 && -n $shim_pid && $shim_pid -gt 1 ]]; then
      pass "$bin: StartShim, Task.Connect (shim pid $shim_pid), Task.Shutdown"
    else
      fail "$bin against $RUNC_SHIM: exit $rc, shim pid '${shim_pid}'"
      show "$TMP/$id.out"
      show "$TMP/$id.err"
    fi
    # The shim's own log (through ShimLog) names the pid that Task.Connect reported.
    if [[ -n $shim_pid ]] && grep -Eq "^shim log: .*[ \"]pid=$shim_pid( |\$)" "$TMP/$id.err"; then
      pass "$bin: the shim's log, read from <bundle>/log, names the same pid $shim_pid"
    elif [[ -n $shim_pid ]]; then
      echo "NOTE: the shim's log does not mention pid=$shim_pid (its format may have changed)"
    fi
    if grep -Eq '^shim delete: exit status [0-9]+$' "$TMP/$id.out"; then
      pass "$bin: the shim's delete command ran ($(sed -n 's/^shim delete: //p' "$TMP/$id.out"))"
    else
      fail "$bin: no 'shim delete: exit status N' line"
    fi
    if [[ -n $shim_pid ]] && our_shim "$shim_pid" "$id"; then
      fail "shim $shim_pid still running after shim-client exited; killing it"
      kill -KILL "$shim_pid" 2>/dev/null || true
    fi
    sock=${address#unix://}
    if [[ $sock == /run/containerd/s/* && -e $sock ]]; then
      echo "NOTE: the shim left its socket $sock; removing it"
      rm -f "$sock"
    fi
  done
  # The last user removes the empty directories the shims leave (never a file: a containerd
  # may be using them); while another test holds the lock, they stay.
  if flock -x -n 9; then
    find /run/containerd -depth -type d -empty -delete 2>/dev/null || true
  fi
  exec 9>&-
fi

# ---- 7. configuration ----------------------------------------------------------------------
mkdir -p "$TMP/net.d"
JOURNAL="$TMP/journal.jsonl"
cat >"$TMP/config.yaml" <<EOF
version: 1
log_level: info
plugins:
  io.berth.cri: {}
  io.berth.image-store: {}
  io.berth.snapshotter.overlay: {}
  io.berth.cni: {conf_dir: $TMP/net.d}
  io.berth.cgroup.fs: {}
  io.berth.runtime.runc: {}
  $PLUGIN_ID: {path: $JOURNAL}
EOF

# has_state FILE STATE: a plugin table (berthd --list-plugins, berthctl plugins) has a row
# for the plugin with STATE in one of its columns.
has_state() {
  awk -v id="$PLUGIN_ID" -v st="$2" \
    '$1 == id { for (i = 2; i <= NF; i++) if ($i == st) ok = 1 } END { exit !ok }' "$1"
}

# berthd --list-plugins: both builds load (descriptor, ABI, exported entry) and are enabled.
for dir in "$EXBUILD" "$PCBUILD"; do
  [[ -f $dir/event-journal.so ]] || continue
  if "$BERTHD" --config "$TMP/config.yaml" --plugin-dir "$dir" --list-plugins \
    >"$TMP/list.out" 2>&1 &&
    has_state "$TMP/list.out" enabled; then
    pass "berthd --list-plugins loads $dir/event-journal.so"
  else
    fail "berthd --list-plugins with $dir/event-journal.so"
    show "$TMP/list.out"
  fi
done

SOCK="$TMP/berth.sock"
# start_berthd LOG: starts berthd in the background and waits (10 s at most) for its socket.
start_berthd() {
  local log=$1
  "$BERTHD" --config "$TMP/config.yaml" --root "$TMP/root" --state "$TMP/state" \
    --socket "$SOCK" --plugin-dir "$EXBUILD" >"$log" 2>&1 &
  BERTHD_PID=$!
  for _ in $(seq 100); do
    [[ -S $SOCK ]] && return 0
    kill -0 "$BERTHD_PID" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$BERTHD_PID" 2>/dev/null; then
    fatal "berthd (pid $BERTHD_PID) did not create $SOCK within 10 s" "$log"
  fi
  local rc=0
  wait "$BERTHD_PID" || rc=$?
  BERTHD_PID=""
  fatal "berthd exited with status $rc before serving" "$log"
}

# stop_berthd LOG: SIGTERM, then waits (15 s at most) and checks a clean exit.
stop_berthd() {
  local log=$1 rc=0
  kill -TERM "$BERTHD_PID"
  for _ in $(seq 150); do
    kill -0 "$BERTHD_PID" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$BERTHD_PID" 2>/dev/null; then
    fatal "berthd (pid $BERTHD_PID) still running 15 s after SIGTERM" "$log"
  fi
  wait "$BERTHD_PID" || rc=$?
  BERTHD_PID=""
  if [[ $rc -eq 0 ]]; then
    pass "berthd exited with status 0 on SIGTERM"
  else
    fail "berthd exited with status $rc on SIGTERM"
    show "$log"
  fi
  if [[ ! -e $SOCK ]]; then
    pass "berthd removed its socket"
  else
    fail "$SOCK still exists after berthd exited"
  fi
}

# wait_for_line FILE ERE: waits (5 s at most) for a line of FILE to match ERE.
wait_for_line() {
  for _ in $(seq 50); do
    grep -Eq "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# started_line_re PID: the journal line of the started event of berthd PID.
started_line_re() {
  local ts='"time":"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?Z"'
  echo "^\{$ts,\"topic\":\"/event-journal/started\",\"payload\":\{\"pid\":$1\}\}$"
}

# ---- 8. first run ---------------------------------------------------------------------------
LOG1="$TMP/berthd-1.log"
start_berthd "$LOG1"
pass "berthd is serving on $SOCK (pid $BERTHD_PID)"
PID1=$BERTHD_PID

if "$BERTHCTL" --socket "$SOCK" plugins >"$TMP/plugins.out" 2>&1 &&
  has_state "$TMP/plugins.out" running; then
  pass "berthctl plugins lists $PLUGIN_ID as running"
else
  fail "berthctl plugins does not list $PLUGIN_ID as running"
  show "$TMP/plugins.out"
fi

if wait_for_line "$JOURNAL" "$(started_line_re "$PID1")"; then
  pass "the journal holds the /event-journal/started event of pid $PID1"
else
  fail "no /event-journal/started line for pid $PID1 in $JOURNAL"
  show "$JOURNAL"
fi
if grep -q "\[$PLUGIN_ID\] .*events written so far: 0\$" "$LOG1"; then
  pass "first start: the plugin reports 0 events written so far"
else
  fail "first start: no \"events written so far: 0\" in berthd's log"
  show "$LOG1"
fi

stop_berthd "$LOG1"
# Two events: its own /event-journal/started, and berthd's /berthd/stopping.
if grep -q "\[$PLUGIN_ID\] stopped: events written so far: 2" "$LOG1"; then
  pass "first stop: the plugin wrote 2 events (started, /berthd/stopping)"
else
  fail "first stop: no \"stopped: events written so far: 2\" in berthd's log"
  show "$LOG1"
fi

# ---- 9. restart: the counter comes back from the metadata store -----------------------------
LOG2="$TMP/berthd-2.log"
start_berthd "$LOG2"
PID2=$BERTHD_PID
if wait_for_line "$LOG2" "\[$PLUGIN_ID\] .*events written so far: 2\$"; then
  pass "restart: the counter persisted (events written so far: 2)"
else
  fail "restart: no \"events written so far: 2\" in berthd's log"
  show "$LOG2"
fi
if wait_for_line "$JOURNAL" "$(started_line_re "$PID2")" && [[ $(wc -l <"$JOURNAL") -eq 3 ]] &&
  grep -Eq "$(started_line_re "$PID1")" <(head -n 1 "$JOURNAL") &&
  grep -q '"topic":"/berthd/stopping"' <(sed -n 2p "$JOURNAL"); then
  pass "restart: the journal was appended to (started $PID1, /berthd/stopping, started $PID2)"
else
  fail "restart: expected 3 journal lines (started $PID1, /berthd/stopping, started $PID2)"
  show "$JOURNAL"
fi
stop_berthd "$LOG2"

# ---- 10. configuration errors name the file and line -----------------------------------------
BAD="$TMP/bad"
mkdir -p "$BAD"
sed "s|^  $PLUGIN_ID: .*|  $PLUGIN_ID:\n    path: relative/x|" "$TMP/config.yaml" >"$BAD/config.yaml"
BAD_LINE=$(grep -n 'path: relative/x' "$BAD/config.yaml" | cut -d: -f1)

rc=0
"$BERTHD" --config "$BAD/config.yaml" --plugin-dir "$EXBUILD" --check-config \
  >"$BAD/check.out" 2>&1 || rc=$?
if [[ $rc -ne 0 ]] && grep -Eq "config\.yaml:[0-9]+" "$BAD/check.out"; then
  if grep -q "config.yaml:$BAD_LINE:" "$BAD/check.out"; then
    pass "berthd --check-config refuses a relative path at config.yaml:$BAD_LINE"
  else
    pass "berthd --check-config refuses a relative path, naming config.yaml and a line"
  fi
else
  fail "berthd --check-config exited $rc for path: relative/x (want non-zero naming config.yaml:LINE)"
  show "$BAD/check.out"
fi

# run_refused OUT: runs berthd with $BAD/config.yaml (10 s at most); sets RC to its status,
# or to "running" (after stopping it) when it started instead of refusing.
run_refused() {
  RC=0
  "$BERTHD" --config "$BAD/config.yaml" --root "$BAD/root" --state "$BAD/state" \
    --socket "$BAD/berth.sock" --plugin-dir "$EXBUILD" >"$1" 2>&1 &
  BERTHD_PID=$!
  for _ in $(seq 100); do
    kill -0 "$BERTHD_PID" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$BERTHD_PID" 2>/dev/null; then
    kill -TERM "$BERTHD_PID"
    wait "$BERTHD_PID" || true
    RC=running
  else
    wait "$BERTHD_PID" || RC=$?
  fi
  BERTHD_PID=""
}

# The same refusal when berthd really starts (the plugin's init runs): non-zero, no socket.
run_refused "$BAD/start.out"
if [[ $RC != 0 && $RC != running ]] &&
  grep -q "config.yaml:$BAD_LINE: key \"path\": expected an absolute file path" "$BAD/start.out" &&
  [[ ! -e $BAD/berth.sock ]]; then
  pass "berthd refuses to start with path: relative/x (config.yaml:$BAD_LINE)"
else
  fail "berthd (status $RC) did not refuse path: relative/x with the expected message"
  show "$BAD/start.out"
fi

# An unknown key is refused likewise.
sed "s|^  $PLUGIN_ID: .*|  $PLUGIN_ID:\n    path: $JOURNAL\n    colour: blue|" "$TMP/config.yaml" \
  >"$BAD/config.yaml"
BAD_LINE=$(grep -n 'colour: blue' "$BAD/config.yaml" | cut -d: -f1)
run_refused "$BAD/start2.out"
if [[ $RC != 0 && $RC != running ]] &&
  grep -q "config.yaml:$BAD_LINE: unknown key \"colour\"" "$BAD/start2.out"; then
  pass "berthd refuses an unknown key (config.yaml:$BAD_LINE)"
else
  fail "berthd (status $RC) did not refuse an unknown key with the expected message"
  show "$BAD/start2.out"
fi

echo
if [[ $FAILURES -eq 0 ]]; then
  echo "PASS: sdk_example_test: all checks passed"
  exit 0
fi
echo "FAIL: sdk_example_test: $FAILURES check(s) failed"
exit 1
