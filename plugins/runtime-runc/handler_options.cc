// SPDX-License-Identifier: Apache-2.0
#include "plugins/runtime-runc/handler_options.h"

#include "absl/strings/str_cat.h"
#include "plugins/common/plugin_util.h"
#include "shim/runc/options.pb.h"
#include "shim/runtimeoptions/v1/api.pb.h"

namespace berth::runc {

absl::StatusOr<HandlerOptions> ParseHandlerOptions(std::string_view name,
                                                   std::string_view options_json,
                                                   const std::string& default_shim) {
  HandlerOptions h;
  h.name = std::string(name);
  h.root = absl::StrCat("/run/berth/", h.name);
  h.shim = default_shim;
  const std::string where = absl::StrCat("runtime handler \"", h.name, "\": ");
  if (h.name.empty() || h.name.find('/') != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("runtime handler name \"", h.name, "\" must be non-empty and contain no '/'"));
  }
  nlohmann::json j = options_json.empty() ? nlohmann::json::object()
                                          : nlohmann::json::parse(options_json, nullptr, false);
  if (j.is_null()) j = nlohmann::json::object();
  if (!j.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, "options must be a mapping, got ", std::string(options_json)));
  }
  for (auto& [key, value] : j.items()) {
    if (key == "binary" || key == "root" || key == "shim") {
      if (!value.is_string() || value.get<std::string>().empty()) {
        return absl::InvalidArgumentError(absl::StrCat(
            where, "option \"", key, "\": expected a non-empty string, got ", value.dump()));
      }
      std::string v = value.get<std::string>();
      if (key == "root" && v.front() != '/') {
        return absl::InvalidArgumentError(
            absl::StrCat(where, "option \"root\": expected an absolute path, got \"", v, "\""));
      }
      (key == "binary" ? h.binary : key == "root" ? h.root : h.shim) = v;
    } else if (key == "systemd_cgroup") {
      if (!value.is_boolean()) {
        return absl::InvalidArgumentError(absl::StrCat(
            where, "option \"systemd_cgroup\": expected true or false, got ", value.dump()));
      }
      h.systemd_cgroup = value.get<bool>();
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          where, "unknown option \"", key, "\" (known: binary, root, systemd_cgroup, shim)"));
    }
  }
  return h;
}

absl::StatusOr<HandlerOptions> ParseShimV2HandlerOptions(std::string_view name,
                                                         std::string_view options_json,
                                                         const std::string& default_shim) {
  HandlerOptions h;
  h.name = std::string(name);
  h.binary.clear();
  h.shim = default_shim;
  h.shim_only = true;
  const std::string where = absl::StrCat("runtime handler \"", h.name, "\": ");
  if (h.name.empty() || h.name.find('/') != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("runtime handler name \"", h.name, "\" must be non-empty and contain no '/'"));
  }
  nlohmann::json j = options_json.empty() ? nlohmann::json::object()
                                          : nlohmann::json::parse(options_json, nullptr, false);
  if (j.is_null()) j = nlohmann::json::object();
  if (!j.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, "options must be a mapping, got ", std::string(options_json)));
  }
  for (auto& [key, value] : j.items()) {
    if (key != "shim" && key != "config_path" && key != "start_timeout") {
      return absl::InvalidArgumentError(absl::StrCat(
          where, "unknown option \"", key, "\" (known: shim, config_path, start_timeout)"));
    }
    if (key == "start_timeout") {
      sdk::Result<int64_t> seconds = value.is_string()
                                         ? plugins::ParseDuration(value.get<std::string>())
                                         : sdk::Result<int64_t>(sdk::InvalidArgument("not a string"));
      if (!seconds.ok() || *seconds < 1 || *seconds > 600) {
        return absl::InvalidArgumentError(absl::StrCat(
            where, "option \"start_timeout\": expected a duration from 1s to 10m (e.g. \"2m\"), got ",
            value.dump()));
      }
      h.start_timeout_seconds = *seconds;
      continue;
    }
    if (!value.is_string() || value.get<std::string>().empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, "option \"", key, "\": expected a non-empty string, got ", value.dump()));
    }
    std::string v = value.get<std::string>();
    if (key == "config_path" && v.front() != '/') {
      return absl::InvalidArgumentError(absl::StrCat(
          where, "option \"config_path\": expected an absolute path, got \"", v, "\""));
    }
    (key == "shim" ? h.shim : h.config_path) = v;
  }
  return h;
}

absl::StatusOr<std::string> ResolveExecutable(std::string_view what, const std::string& name,
                                              std::string_view handler) {
  std::string path = plugins::FindExecutable(name);
  if (path.empty()) {
    return absl::NotFoundError(
        absl::StrCat(std::string(what), " \"", name, "\" of runtime handler \"",
                     std::string(handler), "\" not found or not executable",
                     name.find('/') == std::string::npos ? " (looked up in PATH)" : ""));
  }
  return path;
}

bool InjectRuncOptions(const HandlerOptions& handler, const std::string& binary,
                       containerd::task::v2::CreateTaskRequest* request) {
  if (request->has_options() && !request->options().type_url().empty()) return false;
  containerd::runc::v1::Options options;
  options.set_binary_name(binary);
  options.set_root(handler.root);
  options.set_systemd_cgroup(handler.systemd_cgroup);
  google::protobuf::Any* any = request->mutable_options();
  any->set_type_url(kRuncOptionsTypeUrl);
  any->set_value(options.SerializeAsString());
  return true;
}

}  // namespace berth::runc

namespace berth::runc {

bool InjectRuntimeOptions(const HandlerOptions& handler,
                          containerd::task::v2::CreateTaskRequest* request) {
  if (handler.config_path.empty()) return false;
  if (request->has_options() && !request->options().type_url().empty()) return false;
  runtimeoptions::v1::Options options;
  options.set_config_path(handler.config_path);
  google::protobuf::Any* any = request->mutable_options();
  any->set_type_url(kRuntimeOptionsTypeUrl);
  any->set_value(options.SerializeAsString());
  return true;
}

}  // namespace berth::runc
