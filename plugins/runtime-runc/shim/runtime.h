// SPDX-License-Identifier: Apache-2.0
// Invoking the OCI runtime (runc, crun or any runc-compatible CLI):
//   <binary> --root <root> [--systemd-cgroup] --log <file> --log-format json <cmd> ...
// A failure carries the runtime's own message (the last "error" entry of its JSON log, else
// its stderr).
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "plugins/runtime-runc/shim/loop.h"

namespace berth::shim {

struct RuntimeConfig {
  std::string binary = "runc";  // as configured (name or path)
  std::string root;             // empty: the runtime's default
  bool systemd_cgroup = false;
  std::string log_dir;  // where per-invocation JSON logs go
  // Run `create` and `run` in a mount namespace without the cgroup2 mount: crun on a
  // hybrid cgroup host (docs/shim.md §7, ADR 0005). Set by DecideCgroup2Hiding().
  bool hide_cgroup2 = false;
};

struct RuntimeIo {
  int stdin_fd = -1;   // -1: /dev/null
  int stdout_fd = -1;  // -1: captured and returned
  int stderr_fd = -1;  // -1: captured (used for the error message)
};

// The runtime's argv prefix (binary resolved), or FAILED_PRECONDITION naming the binary.
[[nodiscard]] absl::StatusOr<std::vector<std::string>> RuntimeArgv(const RuntimeConfig& config,
                                                                   const std::string& log_file);

// Sets config->hide_cgroup2 when this runtime is crun and the host is a hybrid cgroup
// host where ADR 0005's workaround applies; an error when crun cannot run here at all. The
// verdict is computed once per runtime binary (`<binary> --version`) and cached, unless
// the environment carries the runtime plugin's verdict (BERTH_SHIM_HIDE_CGROUP2=1 or 0).
[[nodiscard]] absl::Status DecideCgroup2Hiding(EventLoop* loop, RuntimeConfig* config);

// The hidden `berth-shim hide-cgroup2 -- <runtime argv>` command: applies the workaround
// to its own (single-threaded) process and execs the runtime. Returns only on failure.
int HideCgroup2Main(int argc, char** argv);

// Runs `<runtime> <args>` to completion; returns its captured stdout. `what` describes the
// operation for errors ("create of container abc").
[[nodiscard]] absl::StatusOr<std::string> RunRuntime(EventLoop* loop, const RuntimeConfig& config,
                                                     const std::vector<std::string>& args,
                                                     const RuntimeIo& io, const std::string& what);

}  // namespace berth::shim
