// SPDX-License-Identifier: Apache-2.0
//
// berthd's configuration file (/etc/berth/config.yaml by default): parsing, validation and
// defaults.
//
//   version: 1                      # integer; only 1 is known
//   root: /var/lib/berth            # absolute path
//   state: /run/berth               # absolute path
//   socket: /run/berth/berth.sock   # absolute path, shorter than sun_path (108 bytes)
//   log_level: info                 # trace|debug|info|warn|error
//   plugin_dirs: []                 # absolute paths; empty = the host decides
//   plugins:                        # plugin id -> that plugin's settings (mapping or nothing)
//     io.berth.cri: {}
//   runtimes:                       # RuntimeClass handler -> entry
//     runc:
//       plugin: io.berth.runtime.runc
//       snapshotter: overlayfs      # optional: a snapshotter's name or plugin id
//       cni_conf_dir: /etc/cni/x    # optional: absolute, no ".."
//       options: {}
//   default_runtime: runc
//
// Every key is optional. An empty file (or one holding only comments) is a valid
// configuration: all the built-in defaults, and NO plugins and NO runtimes, because the
// built-in default plugin set and runtime table are the daemon's business, not this module's:
// `plugins_given` / `runtimes_given` say whether the file had those keys at all, and when a
// key is absent the caller fills in its defaults.
//
// Plugin settings and runtime options become JSON following the YAML 1.2 core schema: plain
// scalars true/True/TRUE/false/... are booleans, null/~/empty are null, decimal, 0x and 0o
// integers and decimal floats are numbers, everything else (including yes/no/on/off) is a
// string; quoted scalars are always strings. .inf and .nan are refused (JSON has neither).
//
// Errors are INVALID_ARGUMENT with messages of the form
//   config.yaml:7: key "runtimes.runc.plugin": invalid plugin id "Runc" (...)
#pragma once

#include <cstddef>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace berth::core {

inline constexpr std::string_view kDefaultConfigFile = "/etc/berth/config.yaml";
// sizeof(sockaddr_un::sun_path) is 108, including the terminating NUL.
inline constexpr std::size_t kMaxSocketPathLength = 107;

enum class LogLevel { kTrace, kDebug, kInfo, kWarn, kError };

// Accepts trace, debug, info, warn, error (ASCII case-insensitively). The error message is
// `expected one of trace, debug, info, warn, error, got "verbose"`.
[[nodiscard]] absl::StatusOr<LogLevel> ParseLogLevel(std::string_view s);
std::string_view LogLevelName(LogLevel level);

// Reverse-DNS plugin id: at least two '.'-separated segments of [a-z0-9_-], each starting
// and ending with [a-z0-9]; at most 128 bytes. "io.berth.runtime.runc". The registry uses it too.
[[nodiscard]] bool IsValidPluginId(std::string_view id);
// RuntimeClass handler: a DNS-1123 label ([a-z0-9-], starting and ending alnum, <= 63).
[[nodiscard]] bool IsValidHandlerName(std::string_view name);

struct RuntimeEntry {
  std::string name;    // the handler, the key under `runtimes`
  std::string plugin;  // a plugin id
  // The snapshotter of this handler's pods and images: a snapshotter's name ("overlayfs") or
  // plugin id; empty: the default one. Checked against the running snapshotters by the image
  // store when it starts (a plugin id also by the daemon, which enables that plugin).
  std::string snapshotter = {};
  // The CNI configuration directory of this handler's pods: absolute, lexically normal (no
  // "." or ".." component, no trailing '/'); empty: the network plugin's own conf_dir.
  std::string cni_conf_dir = {};
  nlohmann::json options = nlohmann::json::object();
  int line = 0;  // of the handler key; 0 when not from a file
};

struct PluginSection {
  std::string id;
  nlohmann::json config = nlohmann::json::object();  // always an object
  int line = 0;                                      // of the id key; 0 when not from a file
};

struct Config {
  std::string file = "<built-in>";  // path it came from, or "<built-in>"
  int version = 1;
  std::filesystem::path root = "/var/lib/berth";
  std::filesystem::path state = "/run/berth";
  std::filesystem::path socket = "/run/berth/berth.sock";
  LogLevel log_level = LogLevel::kInfo;
  std::vector<std::filesystem::path> plugin_dirs;  // empty: the host decides
  std::map<std::string, PluginSection> plugins;    // ordered by id
  bool plugins_given = false;                      // the file had a `plugins` key (possibly empty)
  std::map<std::string, RuntimeEntry> runtimes;    // ordered by handler name
  bool runtimes_given = false;                     // the file had a `runtimes` key (possibly empty)
  // When the file does not set it: "runc", or the only entry of a one-entry `runtimes`.
  // Checked against `runtimes` only when that is non-empty; otherwise the caller checks it
  // against its default runtime table.
  std::string default_runtime = "runc";

  // "FILE:LINE" of a dotted key path such as "plugins.io.berth.cri.cgroup_driver",
  // "runtimes.runc.plugin" or "plugin_dirs[1]"; falls back to the nearest recorded ancestor;
  // "FILE" when there is none (e.g. for the built-in configuration).
  [[nodiscard]] std::string Where(std::string_view key_path) const;

  // The whole configuration as YAML, top-level keys in schema order. `plugins` / `runtimes`
  // are left out when neither given nor filled in. ParseConfig(ToYaml()) yields SameSettings()
  // (given that a non-empty `plugins` / `runtimes` has its *_given flag set).
  [[nodiscard]] std::string ToYaml() const;

  // Key path -> 1-based line, filled by the parser: "root", "plugins", "plugins." + id,
  // "plugins." + id + ".a.b", "plugins." + id + ".list[0]", "runtimes.runc.options.x", ...
  std::map<std::string, int> lines;
};

// True when a and b hold the same settings; `file`, `lines` and the `line` members are
// ignored.
[[nodiscard]] bool SameSettings(const Config& a, const Config& b);

// Parses and validates `text`; `file_name` is used in messages (and stored in Config::file).
// Never throws.
[[nodiscard]] absl::StatusOr<Config> ParseConfig(std::string_view text, std::string_view file_name);

// Reads and parses `file`. NOT_FOUND / PERMISSION_DENIED naming the file when it cannot be
// opened; INVALID_ARGUMENT when it is a directory or larger than 16 MiB. Never throws.
[[nodiscard]] absl::StatusOr<Config> LoadConfigFile(const std::filesystem::path& file);

}  // namespace berth::core
