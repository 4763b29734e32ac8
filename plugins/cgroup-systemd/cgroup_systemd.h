// SPDX-License-Identifier: Apache-2.0
// The systemd cgroup driver (docs/cgroup-drivers.md): cgroups paths in runc's systemd form
// "slice:prefix:name" (the OCI runtime makes the transient scope unit through systemd),
// statistics read from the scope's cgroup like the cgroupfs driver reads them, and removal by
// stopping the unit over D-Bus. The plugin (plugin.cc) wraps one instance.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "berth/plugin.hpp"
#include "plugins/cgroup-fs/cgroup_layout.h"
#include "plugins/cgroup-fs/cgroup_stats.h"
#include "plugins/cgroup-systemd/systemd_bus.h"
#include "plugins/cgroup-systemd/unit_names.h"

namespace berth::cgroup_systemd {

struct DriverOptions {
  // systemd's D-Bus address; "" for the system bus, then systemd's private socket.
  std::string bus_address;
  // Scope units are "<scope_prefix>-<id>.scope".
  std::string scope_prefix = std::string(kDefaultScopePrefix);
  // Where the cgroup hierarchies systemd manages are mounted, as seen by berthd.
  std::string cgroup_root = "/sys/fs/cgroup";
  // How long Remove waits for a scope to stop.
  std::chrono::milliseconds stop_timeout{10'000};
};

// Immutable once built; every method may be called from any number of threads at once (each
// D-Bus operation opens its own connection).
class CgroupSystemd {
 public:
  // Checks the options and detects the cgroup layout under cgroup_root (cgroup-fs's
  // DetectLayout). INVALID_ARGUMENT for a bad scope_prefix.
  [[nodiscard]] static absl::StatusOr<CgroupSystemd> Open(DriverOptions options);

  const cgroupfs::Layout& layout() const { return layout_; }
  const DriverOptions& options() const { return options_; }

  // Ready when the cgroup controllers a pod needs are mounted (as for the cgroupfs driver)
  // and systemd answers on D-Bus as the system manager running as PID 1 of its PID namespace
  // (its init.scope holds pid 1). Reasons: those of the cgroupfs driver,
  // SystemdUnreachable, SystemdNotInit.
  sdk::Readiness Readiness() const;

  // "<slice>:<scope_prefix>:<id>" (unit_names.h ScopeFor).
  [[nodiscard]] absl::StatusOr<std::string> CgroupPath(std::string_view cgroup_parent,
                                                       std::string_view id) const;

  // The figures of the scope's cgroup, read from the files under cgroup_root (no D-Bus).
  // `cgroups_path` may also name a slice (a pod's cgroup_parent: "kubepods-pod1.slice" or
  // its expanded path), whose cgroup holds the pod's scopes: the pod's figures. NOT_FOUND
  // when the cgroup does not exist; INVALID_ARGUMENT for a path in neither form.
  [[nodiscard]] absl::StatusOr<cgroupfs::CgroupStats> Stats(std::string_view cgroups_path) const;

  // Stops the scope (StopUnit "replace") when systemd has it loaded and waits at most
  // stop_timeout for it to stop, resets it when failed, then removes what is left of its
  // cgroup in every hierarchy (directories systemd does not manage, like cpuset or freezer
  // ones an OCI runtime made). OK when there is no such unit nor cgroup;
  // FAILED_PRECONDITION naming a pid when processes remain; UNAVAILABLE when systemd cannot
  // be reached and the cgroup still exists.
  [[nodiscard]] absl::Status Remove(std::string_view cgroups_path) const;

  // The scope's cgroup directory in the hierarchy of v1 `controller` ("memory"), or in the
  // cgroup2 hierarchy for "" (v2, or hybrid's unified); "" when that is not mounted.
  std::string ScopeDir(const ScopePath& scope, std::string_view controller) const;

  // A new D-Bus connection to systemd (SystemdBus::Open with bus_address).
  [[nodiscard]] absl::StatusOr<SystemdBus> Connect() const;

 private:
  CgroupSystemd(DriverOptions options, cgroupfs::Layout layout)
      : options_(std::move(options)), layout_(std::move(layout)) {}
  // Directory `rel` (relative to the hierarchy root) in the hierarchy of v1 `controller`, or
  // in the cgroup2 one for ""; "" when that is not mounted.
  std::string DirOf(const std::string& rel, std::string_view controller) const;
  // Does the scope's cgroup exist in any hierarchy? The first directory found, or "".
  std::string ExistingDir(const ScopePath& scope) const;
  // Removes the scope's cgroup directories left in every hierarchy.
  [[nodiscard]] absl::Status RemoveLeftovers(const ScopePath& scope) const;

  DriverOptions options_;
  cgroupfs::Layout layout_;
};

}  // namespace berth::cgroup_systemd
