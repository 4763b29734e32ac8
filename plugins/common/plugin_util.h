// SPDX-License-Identifier: Apache-2.0
// Small helpers the built-in plugins share (configuration checks, binary lookup).
#pragma once

#include <unistd.h>

#include <filesystem>
#include <initializer_list>
#include <set>
#include <string>

#include "berth/plugin.hpp"
#include "nlohmann/json.hpp"

namespace berth::plugins {

// Parses the plugin's configuration and refuses keys outside `known`, naming the line.
inline sdk::Result<nlohmann::json> LoadConfig(const sdk::Host& host, std::string_view plugin_id,
                                              std::initializer_list<std::string_view> known) {
  auto text = host.Config();
  if (!text.ok()) return text.status();
  nlohmann::json j = nlohmann::json::parse(*text, nullptr, false);
  if (!j.is_object()) return sdk::Internal("configuration is not a JSON object");
  for (auto& [key, value] : j.items()) {
    bool ok = false;
    std::string list;
    for (std::string_view k : known) {
      ok = ok || k == key;
      list += (list.empty() ? "" : ", ") + std::string(k);
    }
    if (!ok) {
      return sdk::InvalidArgument(host.ConfigWhere(key.c_str()) + ": unknown key \"" + key +
                                  "\" for plugin " + std::string(plugin_id) + " (known keys: " +
                                  (list.empty() ? "none" : list) + ")");
    }
  }
  return j;
}

// A string option, or `fallback`; INVALID_ARGUMENT naming the line when not a string.
inline sdk::Result<std::string> StringOption(const sdk::Host& host, const nlohmann::json& j,
                                             const char* key, std::string fallback) {
  if (!j.contains(key)) return fallback;
  if (!j[key].is_string()) {
    return sdk::InvalidArgument(host.ConfigWhere(key) + ": key \"" + key +
                                "\": expected a string, got " + j[key].dump());
  }
  return j[key].get<std::string>();
}

// Parses a Go-style duration of whole seconds or more ("90s", "1m", "1h30m") into seconds.
inline sdk::Result<int64_t> ParseDuration(std::string_view text) {
  if (text.empty()) return sdk::InvalidArgument("empty duration");
  int64_t total = 0;
  size_t i = 0;
  while (i < text.size()) {
    size_t start = i;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') ++i;
    if (i == start || i - start > 9) return sdk::InvalidArgument("bad duration");
    int64_t n = std::stoll(std::string(text.substr(start, i - start)));
    if (i >= text.size()) return sdk::InvalidArgument("duration needs a unit (s, m, h)");
    char unit = text[i++];
    if (unit == 's') total += n;
    else if (unit == 'm') total += n * 60;
    else if (unit == 'h') total += n * 3600;
    else return sdk::InvalidArgument("unknown duration unit");
  }
  return total;
}

// Resolves a program name through PATH (or returns an absolute path as is); empty if absent.
inline std::string FindExecutable(const std::string& name) {
  if (name.empty()) return "";
  if (name.find('/') != std::string::npos) {
    return ::access(name.c_str(), X_OK) == 0 ? name : "";
  }
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  size_t start = 0;
  while (start <= dirs.size()) {
    size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    std::string candidate = dirs.substr(start, end - start) + "/" + name;
    if (end > start && ::access(candidate.c_str(), X_OK) == 0) return candidate;
    start = end + 1;
  }
  return "";
}

}  // namespace berth::plugins
