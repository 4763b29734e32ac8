// SPDX-License-Identifier: Apache-2.0
#include "plugins/cgroup-fs/cgroup_layout.h"

#include <dirent.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "core/status_macros.h"

namespace berth::cgroupfs {
namespace {

bool Exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

bool IsDirectory(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// The path with symbolic links resolved, or the path itself when that fails.
std::string Resolve(const std::string& path) {
  char buf[PATH_MAX];
  return ::realpath(path.c_str(), buf) != nullptr ? std::string(buf) : path;
}

}  // namespace

std::string_view CgroupVersionName(CgroupVersion version) {
  switch (version) {
    case CgroupVersion::kNone:
      return "none";
    case CgroupVersion::kV1:
      return "v1";
    case CgroupVersion::kHybrid:
      return "hybrid";
    case CgroupVersion::kV2:
      return "v2";
  }
  return "?";
}

std::string Layout::V1Dir(std::string_view controller) const {
  auto it = v1_controllers.find(controller);
  return it == v1_controllers.end() ? std::string() : it->second;
}

std::vector<std::string> Layout::AllHierarchies() const {
  std::vector<std::string> out = v1_hierarchies;
  if (!unified.empty()) out.push_back(unified);
  return out;
}

std::string Layout::Describe() const {
  switch (version) {
    case CgroupVersion::kNone:
      return absl::StrCat("no cgroup hierarchy under ", root);
    case CgroupVersion::kV2:
      return absl::StrCat("cgroup v2 (unified) at ", root);
    case CgroupVersion::kV1:
    case CgroupVersion::kHybrid: {
      std::vector<std::string> names;
      for (const auto& [name, dir] : v1_controllers) names.push_back(name);
      std::string out = absl::StrCat("cgroup v1 at ", root, " (", absl::StrJoin(names, " "), ")");
      if (version == CgroupVersion::kHybrid)
        absl::StrAppend(&out, ", hybrid: cgroup2 at ", unified);
      return out;
    }
  }
  return "?";
}

absl::StatusOr<Layout> DetectLayout(const std::string& root) {
  Layout layout;
  layout.root = root;
  while (layout.root.size() > 1 && layout.root.back() == '/') layout.root.pop_back();
  if (Exists(layout.root + "/cgroup.controllers")) {
    layout.version = CgroupVersion::kV2;
    layout.unified = layout.root;
    return layout;
  }
  std::unique_ptr<DIR, int (*)(DIR*)> dir(::opendir(layout.root.c_str()), &::closedir);
  if (dir == nullptr) {
    return core::ErrnoToStatus(errno, absl::StrCat("cannot list the cgroup root ", layout.root));
  }
  // Entries sorted, so that the hierarchy order (and the log line) does not depend on readdir.
  std::vector<std::string> names;
  while (dirent* e = ::readdir(dir.get())) {
    std::string_view name = e->d_name;
    if (name == "." || name == "..") continue;
    if (e->d_type != DT_DIR && e->d_type != DT_LNK && e->d_type != DT_UNKNOWN) continue;
    names.emplace_back(name);
  }
  std::sort(names.begin(), names.end());
  for (const std::string& name : names) {
    std::string path = layout.root + "/" + name;
    if (!IsDirectory(path)) continue;
    if (Exists(path + "/cgroup.controllers")) {
      if (layout.unified.empty()) layout.unified = Resolve(path);
      continue;
    }
    if (!Exists(path + "/cgroup.procs")) continue;
    std::string real = Resolve(path);
    if (std::find(layout.v1_hierarchies.begin(), layout.v1_hierarchies.end(), real) ==
        layout.v1_hierarchies.end()) {
      layout.v1_hierarchies.push_back(real);
    }
    // "cpu,cpuacct" holds two controllers; "cpu" may be a link to it. "name=systemd" is
    // mounted as "systemd".
    for (absl::string_view controller : absl::StrSplit(name, ',', absl::SkipEmpty())) {
      layout.v1_controllers.try_emplace(std::string(controller), real);
    }
  }
  if (!layout.v1_hierarchies.empty()) {
    layout.version = layout.unified.empty() ? CgroupVersion::kV1 : CgroupVersion::kHybrid;
  } else {
    // A cgroup2 mount below a root without v1 hierarchies is not a layout we place cgroups
    // in: the root option should name the cgroup2 mount itself.
    layout.unified.clear();
  }
  return layout;
}

}  // namespace berth::cgroupfs
