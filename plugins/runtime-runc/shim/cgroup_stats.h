// SPDX-License-Identifier: Apache-2.0
// The cgroup of a container process and what the shim reads from it: the OOM-kill counter
// (docs/shim.md §4) and the Stats metrics, encoded as containerd's
// io.containerd.cgroups.v1.Metrics / io.containerd.cgroups.v2.Metrics (hand-encoded: the
// shim carries no copy of those protos).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "shim/task/v2/shim.pb.h"

namespace berth::shim {

struct CgroupPaths {
  bool unified = false;                        // cgroup v2 only
  std::string unified_dir;                     // v2: /sys/fs/cgroup/<path>
  std::map<std::string, std::string> v1_dirs;  // v1: controller → directory
};

// The cgroups of `pid` from /proc/<pid>/cgroup; when that fails, linux.cgroupsPath of
// <bundle>/config.json (cgroupfs paths only).
CgroupPaths FindCgroups(pid_t pid, const std::string& bundle);

// v2 memory.events oom_kill, v1 memory.oom_control oom_kill; 0 when unreadable.
uint64_t ReadOomKillCount(const CgroupPaths& paths);

// The metrics Any of Task/Stats.
[[nodiscard]] absl::StatusOr<google::protobuf::Any> ReadCgroupMetrics(const CgroupPaths& paths,
                                                                      const std::string& id);

}  // namespace berth::shim
