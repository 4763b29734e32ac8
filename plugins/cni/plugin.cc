// SPDX-License-Identifier: Apache-2.0
// Pod networking through CNI: registration only. The network is Network (cni_network.h);
// attachment records live in <root>/io.berth.cni/attachments.
#include "berth/plugin.hpp"

#include <memory>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "plugins/cni/cni_network.h"
#include "plugins/common/plugin_util.h"
#include "plugins/common/status_convert.h"

namespace berth::cni {
namespace {

using plugins::ToSdk;

berth_log_level ToHostLevel(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return BERTH_LOG_DEBUG;
    case LogLevel::kInfo:
      return BERTH_LOG_INFO;
    case LogLevel::kWarning:
      return BERTH_LOG_WARN;
    case LogLevel::kError:
      return BERTH_LOG_ERROR;
  }
  return BERTH_LOG_ERROR;
}

}  // namespace

class CniPlugin {
 public:
  static sdk::Status Create(sdk::Host host, std::unique_ptr<CniPlugin>* out) {
    auto config =
        plugins::LoadConfig(host, "io.berth.cni", {"conf_dir", "bin_dirs", "plugin_timeout"});
    if (!config.ok()) return config.status();
    NetworkOptions options;
    auto conf_dir = plugins::StringOption(host, *config, "conf_dir", options.conf_dir);
    if (!conf_dir.ok()) return conf_dir.status();
    if (conf_dir->empty() || (*conf_dir)[0] != '/') {
      return sdk::InvalidArgument(host.ConfigWhere("conf_dir") +
                                  ": key \"conf_dir\": expected an absolute path, got \"" +
                                  *conf_dir + "\"");
    }
    options.conf_dir = *conf_dir;
    if (config->contains("bin_dirs")) {
      const auto& v = (*config)["bin_dirs"];
      bool ok = v.is_array() && !v.empty();
      for (const auto& e : v) ok = ok && e.is_string() && e.get<std::string>().starts_with("/");
      if (!ok) {
        return sdk::InvalidArgument(host.ConfigWhere("bin_dirs") +
                                    ": key \"bin_dirs\": expected a non-empty list of absolute "
                                    "paths, got " +
                                    v.dump());
      }
      options.bin_dirs = v.get<std::vector<std::string>>();
    }
    auto timeout = plugins::StringOption(host, *config, "plugin_timeout", "2m");
    if (!timeout.ok()) return timeout.status();
    auto seconds = plugins::ParseDuration(*timeout);
    if (!seconds.ok() || *seconds <= 0) {
      return sdk::InvalidArgument(
          host.ConfigWhere("plugin_timeout") + ": key \"plugin_timeout\": \"" + *timeout +
          "\" is not a positive duration (" +
          (seconds.ok() ? std::string("zero") : seconds.status().message()) +
          "; e.g. \"90s\", \"2m\", \"1h\"): how long one CNI plugin may run before it is killed");
    }
    options.plugin_timeout = absl::Seconds(*seconds);
    options.cache_dir = host.RootDir() + "/attachments";
    // The runtime handlers' own configuration directories (runtimes: <handler>: cni_conf_dir;
    // the core checked that they are absolute and normal).
    std::vector<std::string> handler_dirs;
    if (auto runtimes = host.Section("runtimes"); runtimes.ok()) {
      nlohmann::json rj = nlohmann::json::parse(*runtimes, nullptr, false);
      nlohmann::json handlers = nlohmann::json::object();
      if (rj.is_object() && rj.contains("handlers") && rj["handlers"].is_object()) {
        handlers = rj["handlers"];
      }
      for (const auto& [name, entry] : handlers.items()) {
        if (!entry.is_object() || !entry.contains("cni_conf_dir")) continue;
        const nlohmann::json& dir = entry["cni_conf_dir"];
        if (!dir.is_string() || dir.get<std::string>().empty() ||
            dir.get<std::string>()[0] != '/') {
          return sdk::InvalidArgument(
              host.ConfigWhere(("/runtimes." + name + ".cni_conf_dir").c_str()) +
              ": key \"runtimes." + name +
              ".cni_conf_dir\": expected an absolute path, got " + dir.dump());
        }
        options.extra_conf_dirs.push_back(dir.get<std::string>());
        handler_dirs.push_back(name + ": " + dir.get<std::string>());
      }
    } else {
      host.Debug("CNI: no runtimes section (" + std::string(runtimes.status().message()) +
                 "): no handler has a configuration directory of its own");
    }
    auto log = [host](LogLevel level, std::string_view msg) { host.Log(ToHostLevel(level), msg); };
    absl::StatusOr<std::unique_ptr<Network>> network = Network::Create(options, log);
    if (!network.ok()) return ToSdk(network.status());
    std::string handlers_text;
    for (const std::string& h : handler_dirs) {
      handlers_text += (handlers_text.empty() ? "" : ", ") + h;
    }
    if (!handlers_text.empty()) {
      handlers_text = " (runtime handlers of their own: " + handlers_text + ")";
    }
    host.Info("CNI: configuration from " + options.conf_dir + handlers_text + ", plugins from " +
              JoinPaths(options.bin_dirs) + ", attachments recorded in " + options.cache_dir +
              ", plugin timeout " + absl::FormatDuration(options.plugin_timeout));
    out->reset(new CniPlugin(std::move(*network)));
    return sdk::Status::Ok();
  }

  const void* GetInterface(std::string_view iface) {
    if (iface == BERTH_IFACE_NETWORK_V1) return sdk::NetworkTable<CniPlugin>();
    return nullptr;
  }

  sdk::Readiness Status() { return network_->Status(); }

  // status() with every configuration directory (kinds.h): the readiness of conf_dir first
  // (what the SDK's loose status parser reads), then "conf_dirs" for it and each handler's
  // own directory.
  std::string StatusJson() {
    const nlohmann::json dirs = ConfDirStatuses(*network_);
    const nlohmann::json& own = dirs.at(network_->options().conf_dir);
    std::string out =
        sdk::Readiness{own["network_ready"].get<bool>(), own["reason"].get<std::string>(),
                       own["message"].get<std::string>()}
            .ToJson();
    out.pop_back();  // the closing brace
    return out + ",\"conf_dirs\":" + dirs.dump() + "}";
  }

  sdk::Result<std::string> Attach(std::string_view request_json) {
    absl::StatusOr<std::string> result = network_->Attach(request_json);
    if (!result.ok()) return ToSdk(result.status());
    return std::move(*result);
  }
  sdk::Status Detach(std::string_view request_json) {
    return ToSdk(network_->Detach(request_json));
  }
  sdk::Status Check(std::string_view request_json) { return ToSdk(network_->Check(request_json)); }
  sdk::Status Gc(std::string_view sandbox_ids_json) {
    return ToSdk(network_->Gc(sandbox_ids_json));
  }

 private:
  explicit CniPlugin(std::unique_ptr<Network> network) : network_(std::move(network)) {}

  std::unique_ptr<Network> network_;
};

}  // namespace berth::cni

BERTH_PLUGIN(berth::cni::CniPlugin, "io.berth.cni", BERTH_KIND_NETWORK, "0.1.0",
             "CNI 1.x pod networking",
             R"({"conf_dir":"/etc/cni/net.d","bin_dirs":["/opt/cni/bin","/usr/lib/cni"],)"
             R"("plugin_timeout":"2m"})",
             BERTH_NO_REQUIRES)
