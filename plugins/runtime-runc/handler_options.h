// SPDX-License-Identifier: Apache-2.0
// The options of a runc-compatible runtime handler (docs/shim.md §6) and what they turn
// into: the containerd.runc.v1.Options a Task/Create carries to the shim.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "shim/task/v2/shim.pb.h"

namespace berth::runc {

inline constexpr char kRuncOptionsTypeUrl[] = "containerd.runc.v1.Options";

struct HandlerOptions {
  std::string name;
  std::string binary = "runc";  // the OCI runtime, PATH or absolute
  std::string root;             // the runtime's --root; default /run/berth/<name>
  bool systemd_cgroup = false;
  std::string shim;  // the shim v2 binary, PATH or absolute
};

// Parses `runtimes: <name>: options:` (JSON object text, may be empty). `default_shim` is
// used when there is no `shim` key. INVALID_ARGUMENT naming the key for unknown keys and
// wrong types.
[[nodiscard]] absl::StatusOr<HandlerOptions> ParseHandlerOptions(std::string_view name,
                                                                 std::string_view options_json,
                                                                 const std::string& default_shim);

// Resolves a program name through PATH (an absolute path is checked as is). NOT_FOUND
// naming what it is (`what`: "runtime binary", "shim binary") and the handler.
[[nodiscard]] absl::StatusOr<std::string> ResolveExecutable(std::string_view what,
                                                            const std::string& name,
                                                            std::string_view handler);

// Puts containerd.runc.v1.Options {binary_name, root, systemd_cgroup} into the request's
// `options` unless it already carries options (a caller's own options win). `binary` is the
// resolved runtime path. Returns whether it did.
bool InjectRuncOptions(const HandlerOptions& handler, const std::string& binary,
                       containerd::task::v2::CreateTaskRequest* request);

}  // namespace berth::runc
