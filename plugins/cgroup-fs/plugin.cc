// SPDX-License-Identifier: Apache-2.0
// The cgroupfs cgroup driver (cgroup v1, hybrid and v2). This version detects the layout.
#include <unistd.h>

#include <filesystem>

#include "berth/plugin.hpp"
#include "plugins/common/plugin_util.h"

namespace berth::cgroupfs {

class CgroupFsPlugin {
 public:
  static sdk::Status Create(sdk::Host host, std::unique_ptr<CgroupFsPlugin>* out) {
    auto config = plugins::LoadConfig(host, "io.berth.cgroup.fs", {"root"});
    if (!config.ok()) return config.status();
    auto root = plugins::StringOption(host, *config, "root", "/sys/fs/cgroup");
    if (!root.ok()) return root.status();
    std::error_code ec;
    if (!std::filesystem::is_directory(*root, ec)) {
      return sdk::NotApplicable("no cgroup filesystem at " + *root);
    }
    out->reset(new CgroupFsPlugin(host, *root));
    return sdk::Status::Ok();
  }

  const void* GetInterface(std::string_view iface) {
    if (iface == BERTH_IFACE_CGROUP_DRIVER_V1) return sdk::CgroupDriverTable<CgroupFsPlugin>();
    return nullptr;
  }

  // Ready when the controllers a pod needs are mounted: a v2 unified hierarchy, or the v1
  // cpu, memory and pids hierarchies.
  sdk::Readiness Status() {
    std::error_code ec;
    if (std::filesystem::exists(root_ + "/cgroup.controllers", ec)) return sdk::Readiness::Ready();
    std::string missing;
    for (const char* c : {"cpu", "memory", "pids"}) {
      if (!std::filesystem::exists(root_ + "/" + c, ec)) missing += std::string(" ") + c;
    }
    if (!missing.empty()) {
      return sdk::Readiness::NotReady("CgroupControllersMissing",
                                      "cgroup v1 controllers not mounted under " + root_ + ":" +
                                          missing);
    }
    return sdk::Readiness::Ready();
  }
  std::string_view DriverName() const { return "cgroupfs"; }
  sdk::Result<std::string> CgroupPath(std::string_view, std::string_view) {
    return sdk::Status(BERTH_UNIMPLEMENTED, "not yet");
  }
  sdk::Result<std::string> Stats(std::string_view) {
    return sdk::Status(BERTH_UNIMPLEMENTED, "not yet");
  }
  sdk::Status Remove(std::string_view) { return sdk::Status(BERTH_UNIMPLEMENTED, "not yet"); }

 private:
  CgroupFsPlugin(sdk::Host host, std::string root) : host_(host), root_(std::move(root)) {}
  sdk::Host host_;
  std::string root_;
};

}  // namespace berth::cgroupfs

BERTH_PLUGIN(berth::cgroupfs::CgroupFsPlugin, "io.berth.cgroup.fs", BERTH_KIND_CGROUP_DRIVER,
             "0.1.0", "cgroupfs cgroup driver (v1, hybrid, v2)", R"({"root":"/sys/fs/cgroup"})",
             BERTH_NO_REQUIRES)
