// SPDX-License-Identifier: Apache-2.0
// The systemd cgroup driver: registration only; the driver is CgroupSystemd
// (cgroup_systemd.h, docs/cgroup-drivers.md). Not applicable where systemd is not the init
// system.
#include "berth/plugin.hpp"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "plugins/cgroup-fs/cgroup_fs.h"
#include "plugins/cgroup-systemd/cgroup_systemd.h"
#include "plugins/cgroup-systemd/transient_scope.h"
#include "plugins/common/plugin_util.h"
#include "plugins/common/status_convert.h"

namespace berth::cgroup_systemd {

using plugins::ToSdk;

class SystemdPlugin {
 public:
  static sdk::Status Create(sdk::Host host, std::unique_ptr<SystemdPlugin>* out) {
    auto config = plugins::LoadConfig(
        host, "io.berth.cgroup.systemd",
        {"system_dir", "bus_address", "scope_prefix", "cgroup_root", "stop_timeout"});
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
    DriverOptions options;
    auto bus = plugins::StringOption(host, *config, "bus_address", "");
    if (!bus.ok()) return bus.status();
    options.bus_address = std::move(*bus);
    auto prefix = plugins::StringOption(host, *config, "scope_prefix", options.scope_prefix);
    if (!prefix.ok()) return prefix.status();
    options.scope_prefix = std::move(*prefix);
    auto root = plugins::StringOption(host, *config, "cgroup_root", options.cgroup_root);
    if (!root.ok()) return root.status();
    options.cgroup_root = std::move(*root);
    auto timeout = plugins::StringOption(host, *config, "stop_timeout", "10s");
    if (!timeout.ok()) return timeout.status();
    auto seconds = plugins::ParseDuration(*timeout);
    if (!seconds.ok() || *seconds <= 0) {
      return sdk::InvalidArgument(host.ConfigWhere("stop_timeout") + ": stop_timeout \"" +
                                  *timeout +
                                  "\" is not a duration of 1s or more (\"10s\", "
                                  "\"1m\")");
    }
    options.stop_timeout = std::chrono::seconds(*seconds);

    absl::StatusOr<CgroupSystemd> driver = CgroupSystemd::Open(std::move(options));
    if (!driver.ok()) {
      sdk::Status s = ToSdk(driver.status());
      if (s.code() == BERTH_INVALID_ARGUMENT) {
        return sdk::InvalidArgument(host.ConfigWhere("scope_prefix") + ": " + s.message());
      }
      return s;
    }
    host.Info(absl::StrCat("systemd cgroup driver: ", driver->layout().Describe(), "; D-Bus: ",
                           driver->options().bus_address.empty()
                               ? "the system bus, else /run/systemd/private"
                               : driver->options().bus_address,
                           "; scopes ", driver->options().scope_prefix, "-<id>.scope"));
    out->reset(new SystemdPlugin(std::move(*driver)));
    return sdk::Status::Ok();
  }

  const void* GetInterface(std::string_view iface) {
    if (iface == BERTH_IFACE_CGROUP_DRIVER_V1) return sdk::CgroupDriverTable<SystemdPlugin>();
    return nullptr;
  }
  sdk::Readiness Status() { return driver_.Readiness(); }
  std::string_view DriverName() const { return "systemd"; }
  sdk::Result<std::string> CgroupPath(std::string_view parent, std::string_view id) {
    absl::StatusOr<std::string> path = driver_.CgroupPath(parent, id);
    if (!path.ok()) return ToSdk(path.status());
    return std::move(*path);
  }
  sdk::Result<std::string> Stats(std::string_view cgroups_path) {
    absl::StatusOr<cgroupfs::CgroupStats> stats = driver_.Stats(cgroups_path);
    if (!stats.ok()) return ToSdk(stats.status());
    return cgroupfs::StatsToJson(*stats);
  }
  sdk::Status Remove(std::string_view cgroups_path) { return ToSdk(driver_.Remove(cgroups_path)); }
  // A scope of its own for the process (a pod's shim) in the path's slice; a scope left by a
  // crash is joined instead.
  sdk::Status Enter(std::string_view cgroups_path, int64_t pid) {
    absl::StatusOr<ScopePath> scope = ParseCgroupsPath(cgroups_path);
    if (!scope.ok()) return ToSdk(scope.status());
    if (pid <= 0 || pid > INT32_MAX) {
      return sdk::InvalidArgument(absl::StrCat("pid ", pid, " is not a process id"));
    }
    absl::StatusOr<SystemdBus> bus = driver_.Connect();
    if (!bus.ok()) return ToSdk(bus.status());
    ScopeProperties props;
    props.description = absl::StrCat("berth: process ", pid, " of ", scope->name);
    absl::Status s = StartScope(*bus, scope->slice, scope->Unit(), static_cast<pid_t>(pid), props);
    if (absl::IsAlreadyExists(s)) s = AttachToUnit(*bus, scope->Unit(), static_cast<pid_t>(pid));
    if (!s.ok()) return ToSdk(s);
    // On cgroup v1 systemd realizes the scope only in the hierarchies it manages; like runc
    // for a container, the process also gets the scope's directory in the others (cpuset,
    // freezer...), which remove() takes away with the scope's leftovers.
    std::vector<std::string> rest;
    std::error_code ec;
    for (const std::string& base : driver_.layout().v1_hierarchies) {
      if (!std::filesystem::is_directory(base + scope->CgroupDir(), ec)) rest.push_back(base);
    }
    if (rest.empty()) return sdk::Status::Ok();
    return ToSdk(cgroupfs::EnterCgroupDirs(rest, scope->CgroupDir(), pid));
  }

 private:
  explicit SystemdPlugin(CgroupSystemd driver) : driver_(std::move(driver)) {}
  CgroupSystemd driver_;
};

}  // namespace berth::cgroup_systemd

BERTH_PLUGIN(berth::cgroup_systemd::SystemdPlugin, "io.berth.cgroup.systemd",
             BERTH_KIND_CGROUP_DRIVER, "0.1.0", "systemd cgroup driver (transient scopes)",
             R"({"system_dir":"/run/systemd/system","bus_address":"","scope_prefix":"berth",)"
             R"("cgroup_root":"/sys/fs/cgroup","stop_timeout":"10s"})",
             BERTH_NO_REQUIRES)
