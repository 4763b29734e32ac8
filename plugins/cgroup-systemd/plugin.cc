// SPDX-License-Identifier: Apache-2.0
// The systemd cgroup driver (transient units over D-Bus). Not applicable where systemd is
// not the init system.
#include <filesystem>

#include "berth/plugin.hpp"
#include "plugins/common/plugin_util.h"

namespace berth::cgroup_systemd {

class SystemdPlugin {
 public:
  static sdk::Status Create(sdk::Host host, std::unique_ptr<SystemdPlugin>* out) {
    auto config = plugins::LoadConfig(host, "io.berth.cgroup.systemd", {"system_dir"});
    if (!config.ok()) return config.status();
    // sd_booted() checks exactly this directory; configurable for tests that boot systemd
    // in a private mount namespace.
    auto dir = plugins::StringOption(host, *config, "system_dir", "/run/systemd/system");
    if (!dir.ok()) return dir.status();
    std::error_code ec;
    if (!std::filesystem::is_directory(*dir, ec)) {
      return sdk::NotApplicable("systemd is not the init system here (no " + *dir +
                                "); use cgroup_driver: cgroupfs");
    }
    out->reset(new SystemdPlugin(host));
    return sdk::Status::Ok();
  }

  const void* GetInterface(std::string_view iface) {
    if (iface == BERTH_IFACE_CGROUP_DRIVER_V1) return sdk::CgroupDriverTable<SystemdPlugin>();
    return nullptr;
  }
  sdk::Readiness Status() { return sdk::Readiness::Ready(); }
  std::string_view DriverName() const { return "systemd"; }
  sdk::Result<std::string> CgroupPath(std::string_view, std::string_view) {
    return sdk::Status(BERTH_UNIMPLEMENTED, "the systemd cgroup driver cannot place cgroups yet");
  }
  sdk::Result<std::string> Stats(std::string_view) {
    return sdk::Status(BERTH_UNIMPLEMENTED, "the systemd cgroup driver cannot place cgroups yet");
  }
  sdk::Status Remove(std::string_view) { return sdk::Status(BERTH_UNIMPLEMENTED, "the systemd cgroup driver cannot place cgroups yet"); }

 private:
  explicit SystemdPlugin(sdk::Host host) : host_(host) {}
  sdk::Host host_;
};

}  // namespace berth::cgroup_systemd

BERTH_PLUGIN(berth::cgroup_systemd::SystemdPlugin, "io.berth.cgroup.systemd",
             BERTH_KIND_CGROUP_DRIVER, "0.1.0", "systemd cgroup driver (transient scopes)",
             R"({"system_dir":"/run/systemd/system"})", BERTH_NO_REQUIRES)
