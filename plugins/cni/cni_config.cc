// SPDX-License-Identifier: Apache-2.0
#include "plugins/cni/cni_config.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "plugins/cni/file_util.h"

namespace berth::cni {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// A configuration file larger than this is not a configuration.
constexpr size_t kMaxConfigBytes = 1 << 20;

std::string SupportedList() {
  std::string out;
  for (size_t i = 0; i < std::size(kSupportedVersions); ++i) {
    if (i > 0) out += i + 1 == std::size(kSupportedVersions) ? " and " : ", ";
    out += kSupportedVersions[i];
  }
  return out;
}

bool IsSupported(std::string_view v) {
  return std::find(std::begin(kSupportedVersions), std::end(kSupportedVersions), v) !=
         std::end(kSupportedVersions);
}

// The CNI rule for network names (and container ids): an alphanumeric, then alphanumerics,
// '_', '.' or '-'.
bool IsValidName(std::string_view s) {
  if (s.empty() || !std::isalnum(static_cast<unsigned char>(s[0]))) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-';
  });
}

// A binary name: not empty, no path separator, not "." or "..".
bool IsPlainType(std::string_view s) {
  return !s.empty() && s != "." && s != ".." && s.find('/') == std::string_view::npos &&
         s.find('\\') == std::string_view::npos;
}

// nlohmann's messages start with "[json.exception.parse_error.101] ": the operator needs
// what follows.
std::string JsonErrorText(const std::exception& e) {
  std::string what = e.what();
  if (what.starts_with("[json.exception.")) {
    size_t end = what.find("] ");
    if (end != std::string::npos) what.erase(0, end + 2);
  }
  return what;
}

// disableCheck / disableGC: a boolean, or the strings "true"/"false" that libcni accepts.
absl::StatusOr<bool> FlagValue(const json& list, const char* key, const std::string& source) {
  if (!list.contains(key)) return false;
  const json& v = list[key];
  if (v.is_boolean()) return v.get<bool>();
  if (v.is_string() && (v == "true" || v == "false")) return v == "true";
  return absl::FailedPreconditionError(source + ": \"" + key + "\" must be true or false, got " +
                                       v.dump());
}

std::string PluginLabel(size_t index, size_t count, const json& plugin) {
  std::string label = "plugin " + std::to_string(index + 1) + " of " + std::to_string(count);
  if (plugin.is_object() && plugin.contains("type") && plugin["type"].is_string()) {
    label += " (\"" + plugin["type"].get<std::string>() + "\")";
  }
  return label;
}

}  // namespace

int CompareVersions(std::string_view a, std::string_view b) {
  auto next = [](std::string_view& s) -> long {
    if (s.empty()) return 0;
    size_t dot = s.find('.');
    std::string_view part = s.substr(0, dot);
    s = dot == std::string_view::npos ? std::string_view() : s.substr(dot + 1);
    if (part.empty() || part.size() > 9 ||
        !std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return -1;
    }
    return std::stol(std::string(part));
  };
  while (!a.empty() || !b.empty()) {
    long x = next(a), y = next(b);
    if (x != y) return x < y ? -1 : 1;
  }
  return 0;
}

json PluginRequestConfig(const NetworkConfig& config, size_t index, const json& capability_args,
                         const json& prev_result) {
  json request = json::object();
  json declared = json::object();
  json runtime_config = json::object();
  for (const auto& [key, value] : config.plugins.at(index).items()) {
    if (key == "capabilities") {
      declared = value;
    } else if (key == "runtimeConfig" && value.is_object()) {
      runtime_config = value;  // reserved, but kept as libcni does: ours is laid over it
    } else if (key != "prevResult" && !key.starts_with("cni.dev/")) {
      request[key] = value;
    }
  }
  request["name"] = config.name;
  request["cniVersion"] = config.cni_version;
  for (const auto& [cap, enabled] : declared.items()) {
    if (enabled == true && capability_args.contains(cap))
      runtime_config[cap] = capability_args[cap];
  }
  if (!runtime_config.empty()) request["runtimeConfig"] = std::move(runtime_config);
  if (!prev_result.is_null()) request["prevResult"] = prev_result;
  return request;
}

std::string JoinPaths(const std::vector<std::string>& dirs) {
  std::string out;
  for (const std::string& d : dirs) out += (out.empty() ? "" : ":") + d;
  return out;
}

absl::StatusOr<NetworkConfig> ParseNetworkConfig(std::string_view bytes, std::string_view source) {
  const std::string src(source);
  auto fail = [&src](const std::string& what) {
    return absl::FailedPreconditionError(src + ": " + what);
  };
  json j;
  try {
    j = json::parse(bytes);
  } catch (const json::exception& e) {
    if (bytes.find_first_not_of(" \t\r\n") == std::string_view::npos) {
      return fail("the file is empty");
    }
    return fail("invalid JSON: " + JsonErrorText(e));
  }
  if (!j.is_object()) return fail("not a JSON object");

  NetworkConfig config;
  config.source = src;
  json list;
  if (j.contains("plugins")) {
    list = std::move(j);
    config.bytes = std::string(bytes);
  } else if (j.contains("type")) {
    // A single plugin configuration (.conf): a list of one.
    list = json::object();
    for (const char* key : {"cniVersion", "cniVersions", "name"}) {
      if (j.contains(key)) list[key] = j[key];
    }
    list["plugins"] = json::array({j});
    config.bytes = list.dump();
  } else {
    return fail(
        "neither a configuration list (no \"plugins\") nor a single plugin configuration "
        "(no \"type\")");
  }

  if (!list.contains("name") || !list["name"].is_string()) {
    return fail("the network has no \"name\" (a string)");
  }
  config.name = list["name"].get<std::string>();
  if (!IsValidName(config.name)) {
    return fail("network name \"" + config.name +
                "\" is not valid (a letter or digit, then letters, digits, '_', '.' or '-')");
  }

  if (!list.contains("cniVersion") || !list["cniVersion"].is_string()) {
    return fail("network \"" + config.name + "\" has no \"cniVersion\" (a string; berth supports " +
                SupportedList() + ")");
  }
  std::vector<std::string> candidates = {list["cniVersion"].get<std::string>()};
  if (list.contains("cniVersions")) {
    const json& vs = list["cniVersions"];
    bool ok = vs.is_array();
    for (const json& v : vs) ok = ok && v.is_string();
    if (!ok) return fail("\"cniVersions\" must be a list of version strings, got " + vs.dump());
    for (const json& v : vs) candidates.push_back(v.get<std::string>());
  }
  for (const std::string& v : candidates) {
    if (IsSupported(v) &&
        (config.cni_version.empty() || CompareVersions(v, config.cni_version) > 0)) {
      config.cni_version = v;
    }
  }
  if (config.cni_version.empty()) {
    const std::string& v = candidates.front();
    if (CompareVersions(v, kSupportedVersions[0]) < 0) {
      return fail("cniVersion \"" + v + "\" of network \"" + config.name +
                  "\" is too old: berth supports " + SupportedList() +
                  " (plugin chaining needs 0.3.0 or later; update the configuration)");
    }
    return fail("cniVersion \"" + v + "\" of network \"" + config.name +
                "\" is not supported: berth supports " + SupportedList());
  }

  ASSIGN_OR_RETURN(config.disable_check, FlagValue(list, "disableCheck", src));
  ASSIGN_OR_RETURN(config.disable_gc, FlagValue(list, "disableGC", src));

  const json& plugins = list["plugins"];
  if (!plugins.is_array()) return fail("\"plugins\" must be a list, got " + plugins.dump());
  if (plugins.empty()) {
    return fail("\"plugins\" of network \"" + config.name +
                "\" is empty: a network needs at least one plugin");
  }
  for (size_t i = 0; i < plugins.size(); ++i) {
    const json& p = plugins[i];
    const std::string label = PluginLabel(i, plugins.size(), p);
    if (!p.is_object()) return fail(label + " is not a JSON object");
    if (!p.contains("type") || !p["type"].is_string()) {
      return fail(label + " has no \"type\" (the name of its binary)");
    }
    const std::string type = p["type"].get<std::string>();
    if (!IsPlainType(type)) {
      return fail(label + ": \"type\" must be a plain binary name, not a path");
    }
    if (p.contains("capabilities") && !p["capabilities"].is_object()) {
      return fail(label + ": \"capabilities\" must be an object of booleans, got " +
                  p["capabilities"].dump());
    }
    config.plugins.push_back(p);
  }
  return config;
}

absl::StatusOr<std::string> FindConfigFile(const std::string& conf_dir) {
  std::error_code ec;
  fs::directory_iterator it(conf_dir, ec);
  if (ec) {
    if (ec == std::errc::no_such_file_or_directory) {
      return absl::FailedPreconditionError(
          "no CNI network configuration in " + conf_dir +
          ": the directory does not exist (install a network add-on, or set conf_dir of "
          "io.berth.cni)");
    }
    return absl::FailedPreconditionError("no CNI network configuration in " + conf_dir +
                                         ": cannot read the directory: " + ec.message());
  }
  std::vector<std::string> files;
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    if (ec) break;
    const fs::path& p = it->path();
    const std::string ext = p.extension().string();
    if (ext != ".conflist" && ext != ".conf" && ext != ".json") continue;
    std::error_code sec;
    if (!fs::is_regular_file(p, sec)) continue;  // follows symlinks; skips directories
    files.push_back(p.filename().string());
  }
  if (ec) {
    return absl::FailedPreconditionError("no CNI network configuration in " + conf_dir +
                                         ": cannot read the directory: " + ec.message());
  }
  if (files.empty()) {
    return absl::FailedPreconditionError(
        "no CNI network configuration in " + conf_dir +
        " (no .conflist, .conf or .json file; install a network add-on)");
  }
  std::sort(files.begin(), files.end());
  return (fs::path(conf_dir) / files.front()).string();
}

absl::StatusOr<std::string> FindPluginBinary(std::string_view type,
                                             const std::vector<std::string>& bin_dirs) {
  for (const std::string& dir : bin_dirs) {
    std::string path = dir + "/" + std::string(type);
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        ::access(path.c_str(), X_OK) == 0) {
      return path;
    }
  }
  return absl::NotFoundError("CNI plugin binary \"" + std::string(type) + "\" not found in " +
                             JoinPaths(bin_dirs));
}

absl::Status CheckPluginBinaries(const NetworkConfig& config,
                                 const std::vector<std::string>& bin_dirs) {
  const std::string hint =
      " (install the CNI plugins, or add their directory to bin_dirs of io.berth.cni)";
  for (size_t i = 0; i < config.plugins.size(); ++i) {
    const json& p = config.plugins[i];
    const std::string type = p["type"].get<std::string>();
    if (!FindPluginBinary(type, bin_dirs).ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat(config.source, ": plugin binary \"", type, "\" (plugin ", i + 1, " of ",
                       config.plugins.size(), ") not found in ", JoinPaths(bin_dirs), hint));
    }
    if (p.contains("ipam") && p["ipam"].is_object() && p["ipam"].contains("type") &&
        p["ipam"]["type"].is_string()) {
      const std::string ipam = p["ipam"]["type"].get<std::string>();
      if (IsPlainType(ipam) && !FindPluginBinary(ipam, bin_dirs).ok()) {
        return absl::FailedPreconditionError(
            absl::StrCat(config.source, ": IPAM plugin binary \"", ipam, "\" (of plugin \"", type,
                         "\") not found in ", JoinPaths(bin_dirs), hint));
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<NetworkConfig> LoadNetworkConfig(const std::string& conf_dir,
                                                const std::vector<std::string>& bin_dirs) {
  ASSIGN_OR_RETURN(std::string file, FindConfigFile(conf_dir));
  absl::StatusOr<std::string> bytes = ReadFile(file, kMaxConfigBytes);
  if (!bytes.ok()) {
    return absl::FailedPreconditionError("CNI network configuration " + file + " cannot be read: " +
                                         std::string(bytes.status().message()));
  }
  ASSIGN_OR_RETURN(NetworkConfig config, ParseNetworkConfig(*bytes, file));
  RETURN_IF_ERROR(CheckPluginBinaries(config, bin_dirs));
  return config;
}

}  // namespace berth::cni
