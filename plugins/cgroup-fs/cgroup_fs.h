// SPDX-License-Identifier: Apache-2.0
// The cgroupfs driver (docs/cgroups.md): cgroup paths under the kubelet's parents, statistics
// and removal of the cgroups the OCI runtime created, on cgroup v1, hybrid and v2 hosts.
// The plugin (plugin.cc) wraps one instance; tests build it over fake trees.
#pragma once

#include <string>
#include <string_view>

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

 private:
  // The operation needs a layout; FAILED_PRECONDITION when none was detected.
  [[nodiscard]] absl::Status CheckLayout() const;

  Layout layout_;
};

}  // namespace berth::cgroupfs
