// SPDX-License-Identifier: Apache-2.0
// Pod networking through CNI. This version finds the network configuration and reports
// NetworkReady truthfully: ready only when a valid configuration exists and every plugin
// binary it names is installed.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "berth/plugin.hpp"
#include "plugins/common/plugin_util.h"

namespace berth::cni {

namespace fs = std::filesystem;

class CniPlugin {
 public:
  static sdk::Status Create(sdk::Host host, std::unique_ptr<CniPlugin>* out) {
    auto config = plugins::LoadConfig(host, "io.berth.cni", {"conf_dir", "bin_dirs"});
    if (!config.ok()) return config.status();
    auto conf_dir = plugins::StringOption(host, *config, "conf_dir", "/etc/cni/net.d");
    if (!conf_dir.ok()) return conf_dir.status();
    std::vector<std::string> bin_dirs = {"/opt/cni/bin", "/usr/lib/cni"};
    if (config->contains("bin_dirs")) {
      const auto& v = (*config)["bin_dirs"];
      bool ok = v.is_array() && !v.empty();
      for (const auto& e : v) ok = ok && e.is_string() && e.get<std::string>().starts_with("/");
      if (!ok) {
        return sdk::InvalidArgument(host.ConfigWhere("bin_dirs") +
                                    ": key \"bin_dirs\": expected a non-empty list of absolute "
                                    "paths, got " + v.dump());
      }
      bin_dirs = v.get<std::vector<std::string>>();
    }
    out->reset(new CniPlugin(host, *conf_dir, bin_dirs));
    return sdk::Status::Ok();
  }

  const void* GetInterface(std::string_view iface) {
    if (iface == BERTH_IFACE_NETWORK_V1) return sdk::NetworkTable<CniPlugin>();
    return nullptr;
  }

  // The first configuration file by name (as the CNI convention and the kubelet expect)
  // decides; it must parse and its plugin binaries must exist.
  sdk::Readiness Status() {
    std::error_code ec;
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(conf_dir_, ec)) {
      auto ext = e.path().extension();
      if (ext == ".conflist" || ext == ".conf" || ext == ".json") files.push_back(e.path());
    }
    std::sort(files.begin(), files.end());
    if (files.empty()) {
      return sdk::Readiness::NotReady("NetworkPluginNotReady",
                                      "cni: no network configuration in " + conf_dir_);
    }
    const fs::path& file = files.front();
    std::ifstream in(file);
    std::stringstream text;
    text << in.rdbuf();
    nlohmann::json j = nlohmann::json::parse(text.str(), nullptr, false);
    if (!j.is_object()) {
      return sdk::Readiness::NotReady("NetworkPluginNotReady",
                                      "cni: " + file.string() + " is not valid JSON");
    }
    std::vector<nlohmann::json> chain;
    if (j.contains("plugins")) {
      if (!j["plugins"].is_array() || j["plugins"].empty()) {
        return sdk::Readiness::NotReady("NetworkPluginNotReady",
                                        "cni: " + file.string() + " has an empty plugins list");
      }
      for (const auto& p : j["plugins"]) chain.push_back(p);
    } else {
      chain.push_back(j);
    }
    for (const auto& p : chain) {
      std::string type = p.is_object() ? p.value("type", "") : "";
      if (type.empty() || type.find('/') != std::string::npos) {
        return sdk::Readiness::NotReady("NetworkPluginNotReady",
                                        "cni: " + file.string() + ": a plugin has no valid type");
      }
      bool found = false;
      for (const std::string& d : bin_dirs_) found = found || ::access((d + "/" + type).c_str(), X_OK) == 0;
      if (!found) {
        std::string dirs;
        for (const std::string& d : bin_dirs_) dirs += (dirs.empty() ? "" : ":") + d;
        return sdk::Readiness::NotReady("NetworkPluginNotReady",
                                        "cni: plugin binary \"" + type + "\" (from " +
                                            file.string() + ") not found in " + dirs);
      }
    }
    return sdk::Readiness::Ready();
  }

 private:
  CniPlugin(sdk::Host host, std::string conf_dir, std::vector<std::string> bin_dirs)
      : host_(host), conf_dir_(std::move(conf_dir)), bin_dirs_(std::move(bin_dirs)) {}
  sdk::Host host_;
  std::string conf_dir_;
  std::vector<std::string> bin_dirs_;
};

}  // namespace berth::cni

BERTH_PLUGIN(berth::cni::CniPlugin, "io.berth.cni", BERTH_KIND_NETWORK, "0.1.0",
             "CNI 1.x pod networking", R"({"conf_dir":"/etc/cni/net.d","bin_dirs":["/opt/cni/bin","/usr/lib/cni"]})",
             BERTH_NO_REQUIRES)
