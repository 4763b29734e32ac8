// SPDX-License-Identifier: Apache-2.0
// Runtime handlers declared from `runtimes:`; shared by the runc and Kata plugins.
#pragma once

#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "plugins/common/plugin_util.h"

namespace berth::plugins {

// One handler: the binary it runs (runc, crun, a shim v2 binary) and its options.
struct HandlerSpec {
  std::string name;
  std::string binary;  // as configured; resolved through PATH when used
  nlohmann::json options;
};

class HandlerTable {
 public:
  // Parses a handler's options: `binary_key` (default `default_binary`) plus `known` keys.
  sdk::Status Add(std::string_view name, std::string_view options_json, const char* binary_key,
                  const std::string& default_binary, std::initializer_list<std::string_view> known) {
    nlohmann::json j = nlohmann::json::parse(options_json, nullptr, false);
    if (j.is_null()) j = nlohmann::json::object();
    if (!j.is_object()) return sdk::InvalidArgument("options must be a mapping");
    for (auto& [key, value] : j.items()) {
      bool ok = key == binary_key;
      for (std::string_view k : known) ok = ok || k == key;
      if (!ok) {
        std::string list = binary_key;
        for (std::string_view k : known) list += ", " + std::string(k);
        return sdk::InvalidArgument("unknown option \"" + key + "\" (known: " + list + ")");
      }
    }
    HandlerSpec spec{std::string(name), default_binary, j};
    if (j.contains(binary_key)) {
      if (!j[binary_key].is_string() || j[binary_key].get<std::string>().empty()) {
        return sdk::InvalidArgument(std::string("option \"") + binary_key +
                                    "\": expected a program name or absolute path");
      }
      spec.binary = j[binary_key].get<std::string>();
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (handlers_.count(spec.name) != 0) {
      return sdk::Status(BERTH_ALREADY_EXISTS, "handler " + spec.name + " is already declared");
    }
    handlers_[spec.name] = std::move(spec);
    return sdk::Status::Ok();
  }

  // The handler declared as `name`, if any.
  std::optional<HandlerSpec> Get(std::string_view name) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = handlers_.find(std::string(name));
    if (it == handlers_.end()) return std::nullopt;
    return it->second;
  }

  // The declared handler names, sorted, for error messages.
  std::vector<std::string> Names() const {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<std::string> out;
    for (const auto& [name, spec] : handlers_) out.push_back(name);
    return out;
  }

  // Ready when the handler's binary can be executed.
  sdk::Readiness Status(std::string_view name) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = handlers_.find(std::string(name));
    if (it == handlers_.end()) {
      return sdk::Readiness::NotReady("UnknownRuntimeHandler",
                                      "no runtime handler named " + std::string(name));
    }
    if (FindExecutable(it->second.binary).empty()) {
      return sdk::Readiness::NotReady(
          "RuntimeBinaryNotFound",
          "binary \"" + it->second.binary + "\" not found or not executable (PATH or absolute)");
    }
    return sdk::Readiness::Ready();
  }

 private:
  mutable std::mutex mu_;
  std::map<std::string, HandlerSpec> handlers_;
};

}  // namespace berth::plugins
