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
inline constexpr char kRuntimeOptionsTypeUrl[] = "runtimeoptions.v1.Options";

struct HandlerOptions {
  std::string name;
  std::string binary = "runc";  // the OCI runtime, PATH or absolute
  std::string root;             // the runtime's --root; default /run/berth/<name>
  bool systemd_cgroup = false;
  std::string shim;  // the shim v2 binary, PATH or absolute
  // A handler of the shim v2 kind (io.berth.runtime.kata): the shim is the whole runtime;
  // `binary`, `root` and `systemd_cgroup` mean nothing.
  bool shim_only = false;
  std::string config_path;  // shim v2 kind: the runtime's configuration file (Kata's)
  // How long the shim's `start` may take (a VM runtime boots); 0 = the plugin's default.
  int64_t start_timeout_seconds = 0;
};

// Parses `runtimes: <name>: options:` (JSON object text, may be empty). `default_shim` is
// used when there is no `shim` key. INVALID_ARGUMENT naming the key for unknown keys and
// wrong types.
[[nodiscard]] absl::StatusOr<HandlerOptions> ParseHandlerOptions(std::string_view name,
                                                                 std::string_view options_json,
                                                                 const std::string& default_shim);

// The same for a handler of the shim v2 kind: `shim` (default `default_shim`),
// `config_path` (an absolute path: Kata's configuration file, given to the shim as
// KATA_CONF_FILE and as runtimeoptions.v1.Options) and `start_timeout` (a duration like "30s"
// or "2m", 1 s to 10 min: how long the shim's `start` may take).
[[nodiscard]] absl::StatusOr<HandlerOptions> ParseShimV2HandlerOptions(
    std::string_view name, std::string_view options_json, const std::string& default_shim);

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
// Shim v2 kind: runtimeoptions.v1.Options {config_path} when the handler names one and the
// request carries no options. Returns whether it did.
bool InjectRuntimeOptions(const HandlerOptions& handler,
                          containerd::task::v2::CreateTaskRequest* request);

}  // namespace berth::runc
