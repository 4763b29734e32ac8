// SPDX-License-Identifier: Apache-2.0
// Where the cgroup hierarchies are mounted under a cgroup root (docs/cgroups.md §1): cgroup v1
// (one hierarchy per controller or controller group), hybrid (v1 controllers plus a cgroup2
// mount that holds few or no controllers) or v2 (the unified hierarchy at the root).
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace berth::cgroupfs {

enum class CgroupVersion {
  kNone,    // nothing recognisable under the root
  kV1,      // v1 controller hierarchies only
  kHybrid,  // v1 controller hierarchies and a cgroup2 mount (systemd's "unified")
  kV2,      // the unified hierarchy mounted at the root
};

// "none", "v1", "hybrid", "v2".
std::string_view CgroupVersionName(CgroupVersion version);

struct Layout {
  std::string root;
  CgroupVersion version = CgroupVersion::kNone;
  // The cgroup2 mount: the root itself (v2), its cgroup2 subdirectory (hybrid), or empty.
  std::string unified;
  // v1: controller name ("memory", "cpuacct", and "systemd" for the named hierarchy) to the
  // directory of its hierarchy, with symbolic links resolved ("/sys/fs/cgroup/cpu,cpuacct").
  std::map<std::string, std::string, std::less<>> v1_controllers;
  // v1: every hierarchy directory once, named ones included, in a stable order. A cgroup is
  // created (by the OCI runtime) and removed (by us) in each of them.
  std::vector<std::string> v1_hierarchies;

  // The hierarchy directory of a v1 controller, or "" when it is not mounted.
  std::string V1Dir(std::string_view controller) const;
  // Every hierarchy directory a cgroup lives in: the v1 ones and, when mounted, the cgroup2.
  std::vector<std::string> AllHierarchies() const;
  // One line for the log: "cgroup v1 hybrid at /sys/fs/cgroup (cgroup2 at ...)".
  std::string Describe() const;
};

// Detects the layout under `root` from the files there, so a fake tree in a temporary
// directory works as well as /sys/fs/cgroup:
//   <root>/cgroup.controllers exists                      -> v2;
//   subdirectories holding cgroup.procs (v1 hierarchies),  -> v1, or hybrid when one of the
//   named by their controllers ("cpu,cpuacct", "memory")     subdirectories also holds
//                                                             cgroup.controllers (cgroup2).
// kNone when neither is found. An error only when the root cannot be read.
[[nodiscard]] absl::StatusOr<Layout> DetectLayout(const std::string& root);

}  // namespace berth::cgroupfs
