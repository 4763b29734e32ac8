// SPDX-License-Identifier: Apache-2.0
// The CNI network configuration: finding it in conf_dir (the first .conflist, .conf or .json
// file by name, as the kubelet and the CNI convention expect), parsing and validating it, and
// wrapping a single-plugin .conf into a list.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace berth::cni {

// The CNI specification versions berth speaks, oldest first. 0.3.0 is the first with
// plugin chaining and the rich result; older configurations are refused.
inline constexpr std::string_view kSupportedVersions[] = {"0.3.0", "0.3.1", "0.4.0", "1.0.0",
                                                          "1.1.0"};

// A validated network configuration list.
struct NetworkConfig {
  // Where it came from, for messages: the file, or the cache record it was stored in.
  std::string source;
  // The list's "name".
  std::string name;
  // The version in use: the highest supported one of "cniVersion" and "cniVersions".
  std::string cni_version;
  bool disable_check = false;
  bool disable_gc = false;
  // The plugin configuration objects, in order (each has a plain string "type").
  std::vector<nlohmann::json> plugins;
  // The list as JSON text: the file's bytes for a list, the wrapped list for a single
  // plugin. Parsing these bytes again gives the same configuration (the attachment cache
  // stores them).
  std::string bytes;
};

// Compares dotted numeric versions ("0.4.0" < "1.0.0"); a missing part counts as 0 and a
// part that is not a number as -1.
int CompareVersions(std::string_view a, std::string_view b);

// Parses and validates a configuration: a list (an object with "plugins") or a single
// plugin configuration (an object with "type"), which becomes a list of one. Checks the
// name, the version and every plugin's "type"; not whether binaries exist.
// FAILED_PRECONDITION "<source>: <what is wrong>".
[[nodiscard]] absl::StatusOr<NetworkConfig> ParseNetworkConfig(std::string_view bytes,
                                                               std::string_view source);

// The configuration file in use: the first .conflist/.conf/.json file of conf_dir in
// lexical (byte) order. FAILED_PRECONDITION naming conf_dir when there is none.
[[nodiscard]] absl::StatusOr<std::string> FindConfigFile(const std::string& conf_dir);

// The plugin binary `type` in the first of bin_dirs that holds an executable file of that
// name. NOT_FOUND naming the directories otherwise.
[[nodiscard]] absl::StatusOr<std::string> FindPluginBinary(
    std::string_view type, const std::vector<std::string>& bin_dirs);

// Checks that the binaries the configuration runs exist: every plugin's type and the IPAM
// plugin it delegates to ("ipam": {"type": ...}). FAILED_PRECONDITION naming the binary,
// the plugin and the directories.
[[nodiscard]] absl::Status CheckPluginBinaries(const NetworkConfig& config,
                                               const std::vector<std::string>& bin_dirs);

// FindConfigFile + read + ParseNetworkConfig + CheckPluginBinaries: the configuration new
// attachments use. FAILED_PRECONDITION naming the directory or the file and what is wrong.
[[nodiscard]] absl::StatusOr<NetworkConfig> LoadNetworkConfig(
    const std::string& conf_dir, const std::vector<std::string>& bin_dirs);

// The request configuration of plugin `index` (SPEC.md section 3, "Deriving request
// configuration"): its object with the list's "name" and "cniVersion", without
// "capabilities" and "cni.dev/" keys; "runtimeConfig" holding those of capability_args the
// plugin declares in its "capabilities" (left out when there are none); "prevResult" when
// prev_result is not null.
nlohmann::json PluginRequestConfig(const NetworkConfig& config, size_t index,
                                   const nlohmann::json& capability_args,
                                   const nlohmann::json& prev_result);

// "a:b:c".
std::string JoinPaths(const std::vector<std::string>& dirs);

}  // namespace berth::cni
