// SPDX-License-Identifier: Apache-2.0
// The cgroupfs driver (docs/cgroups.md): cgroup paths under the kubelet's parents, statistics
// and removal of the cgroups the OCI runtime created, on cgroup v1, hybrid and v2 hosts.
// The plugin (plugin.cc) wraps one instance; tests build it over fake trees.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "berth/plugin.hpp"
#include "plugins/cgroup-fs/cgroup_layout.h"
#include "plugins/cgroup-fs/cgroup_stats.h"

namespace berth::cgroupfs {

// Immutable once built; every method may be called from any number of threads at once.
class CgroupFs {
 public:
  // Detects the layout under `root` (/sys/fs/cgroup, or a fake tree).
  [[nodiscard]] static absl::StatusOr<CgroupFs> Open(const std::string& root);
  explicit CgroupFs(Layout layout) : layout_(std::move(layout)) {}

  const Layout& layout() const { return layout_; }

  // Ready when the controllers a pod needs are there: cpu, memory and pids in the root's
  // cgroup.controllers (v2); the cpu, cpuacct, memory and pids hierarchies (v1, hybrid).
  sdk::Readiness Readiness() const;

  // "<parent>/<id>" (cgroup_path.h).
  [[nodiscard]] absl::StatusOr<std::string> CgroupPath(std::string_view parent,
                                                       std::string_view id) const;

  // The cgroup's figures. NOT_FOUND naming the path when it does not exist;
  // INVALID_ARGUMENT for a path that is not a cgroupfs one.
  [[nodiscard]] absl::StatusOr<CgroupStats> Stats(std::string_view cgroups_path) const;

  // Removes the cgroup from every hierarchy, child cgroups first. OK when it does not exist;
  // FAILED_PRECONDITION naming a pid when processes remain; UNAVAILABLE when the kernel
  // still reports it busy without a process (tasks exiting), to be retried.
  [[nodiscard]] absl::Status Remove(std::string_view cgroups_path) const;
  // Moves process `pid` into the cgroup, creating its directory in every hierarchy (a new
  // v1 cpuset cgroup gets its parent's cpus and mems first, or no process could join it).
  // A hierarchy that refuses the process (a v1 one the kernel does not let us write) is
  // an error naming it; NOT_FOUND when the process is gone.
  [[nodiscard]] absl::Status Enter(std::string_view cgroups_path, int64_t pid) const;

 private:
  // The operation needs a layout; FAILED_PRECONDITION when none was detected.
  [[nodiscard]] absl::Status CheckLayout() const;

  Layout layout_;
};

// What Enter does once the path is checked: `cgroups_path` (absolute, relative to each
// hierarchy's root) made in each of `hierarchies` and `pid` written to its cgroup.procs.
// The systemd driver uses it for the v1 hierarchies systemd does not manage.
[[nodiscard]] absl::Status EnterCgroupDirs(const std::vector<std::string>& hierarchies,
                                           std::string_view cgroups_path, int64_t pid);

}  // namespace berth::cgroupfs
