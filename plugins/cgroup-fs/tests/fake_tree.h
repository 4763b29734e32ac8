// SPDX-License-Identifier: Apache-2.0
// Fake cgroup trees for the tests: directories and control files in a temporary directory,
// laid out as on a cgroup v2, v1 or hybrid host.
#pragma once

#include <sys/stat.h>

#include <filesystem>
#include <string>
#include <vector>

#include "tests/support/test_support.h"

namespace berth::cgroupfs::testing {

namespace fs = std::filesystem;
using ::berth::testing::TempDir;
using ::berth::testing::WriteFile;

// A v2 root: cgroup.controllers listing `controllers` at the top.
inline void MakeV2Root(const fs::path& root, const std::string& controllers) {
  WriteFile(root / "cgroup.controllers", controllers + "\n");
  WriteFile(root / "cgroup.procs", "1\n");
}

// A v1 hierarchy directory (a controller or controller group, or "systemd").
inline void MakeV1Hierarchy(const fs::path& root, const std::string& name) {
  WriteFile(root / name / "cgroup.procs", "1\n");
}

// The usual v1 layout of a systemd host: cpu,cpuacct co-mounted with links, memory, pids,
// the named systemd hierarchy; with a cgroup2 "unified" mount when hybrid.
inline void MakeV1Root(const fs::path& root, bool hybrid) {
  MakeV1Hierarchy(root, "cpu,cpuacct");
  fs::create_directory_symlink("cpu,cpuacct", root / "cpu");
  fs::create_directory_symlink("cpu,cpuacct", root / "cpuacct");
  MakeV1Hierarchy(root, "memory");
  MakeV1Hierarchy(root, "pids");
  MakeV1Hierarchy(root, "systemd");
  if (hybrid) WriteFile(root / "unified" / "cgroup.controllers", "hugetlb\n");
}

}  // namespace berth::cgroupfs::testing
