// SPDX-License-Identifier: Apache-2.0
#include "plugins/cgroup-fs/cgroup_fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "berth/unique_fd.hpp"
#include "core/status_macros.h"
#include "plugins/cgroup-fs/absl_view.h"
#include "plugins/cgroup-fs/cgroup_path.h"

namespace berth::cgroupfs {
namespace {

// How long an empty but busy cgroup is retried: exiting tasks leave it a few ms after
// cgroup.procs stops listing them.
constexpr int kBusyRetries = 10;
constexpr auto kBusyPause = std::chrono::milliseconds(20);

bool IsDirectory(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// The first pid of <dir>/cgroup.procs and how many it lists (counted in the first 64 KiB).
struct Procs {
  std::string first;
  size_t count = 0;
};
Procs ReadProcs(const std::string& dir) {
  Procs procs;
  sdk::UniqueFd fd(::open((dir + "/cgroup.procs").c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return procs;
  std::string text(size_t{64} * 1024, '\0');
  size_t len = 0;
  while (len < text.size()) {
    ssize_t n = ::read(fd.get(), text.data() + len, text.size() - len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    len += static_cast<size_t>(n);
  }
  text.resize(len);
  for (absl::string_view pid : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    if (procs.count++ == 0) procs.first = std::string(pid);
  }
  return procs;
}

// The names of the subdirectories (child cgroups) of `dir`; ENOENT gives none.
absl::StatusOr<std::vector<std::string>> ChildCgroups(const std::string& dir) {
  std::vector<std::string> children;
  std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir.c_str()), &::closedir);
  if (d == nullptr) {
    if (errno == ENOENT) return children;
    return core::ErrnoToStatus(errno, absl::StrCat("list cgroup directory ", dir));
  }
  while (dirent* e = ::readdir(d.get())) {
    std::string_view name = e->d_name;
    if (name == "." || name == "..") continue;
    bool is_dir = e->d_type == DT_DIR;
    if (e->d_type == DT_UNKNOWN) {
      struct stat st {};
      is_dir = ::fstatat(::dirfd(d.get()), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
               S_ISDIR(st.st_mode);
    }
    if (is_dir) children.emplace_back(name);
  }
  return children;
}

// Removes the cgroup directory `dir` of `cgroups_path`, its child cgroups first.
absl::Status RemoveTree(const std::string& dir, absl::string_view cgroups_path) {
  ASSIGN_OR_RETURN(std::vector<std::string> children, ChildCgroups(dir));
  for (const std::string& child : children) {
    RETURN_IF_ERROR(RemoveTree(absl::StrCat(dir, "/", child), cgroups_path));
  }
  for (int attempt = 0;; ++attempt) {
    if (::rmdir(dir.c_str()) == 0) return absl::OkStatus();
    int err = errno;
    if (err == ENOENT) return absl::OkStatus();
    if (err == EBUSY) {
      Procs procs = ReadProcs(dir);
      if (procs.count > 0) {
        return absl::FailedPreconditionError(absl::StrCat(
            "cgroup ", cgroups_path, " still holds processes: pid ", procs.first,
            procs.count > 1 ? absl::StrCat(" and ", procs.count - 1, " more") : "", " in ", dir,
            "/cgroup.procs; stop the container's task (or kill those processes) first"));
      }
      if (attempt < kBusyRetries) {
        std::this_thread::sleep_for(kBusyPause);
        continue;
      }
      return absl::UnavailableError(absl::StrCat(
          "cgroup ", cgroups_path, ": ", dir,
          " is still busy (EBUSY) though its cgroup.procs lists no process: tasks are still "
          "exiting or a child cgroup was just created; retry"));
    }
    if (err == ENOTEMPTY) {
      return absl::FailedPreconditionError(absl::StrCat(
          "cannot remove cgroup ", cgroups_path, ": ", dir,
          " holds files (ENOTEMPTY), so it is not on a cgroup filesystem; check the root "
          "option of io.berth.cgroup.fs"));
    }
    return core::ErrnoToStatus(err,
                               absl::StrCat("remove cgroup ", cgroups_path, " (rmdir ", dir, ")"));
  }
}

// Words of a space-separated list file such as cgroup.controllers; empty when unreadable.
std::vector<std::string> ReadWords(const std::string& path) {
  std::vector<std::string> words;
  sdk::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return words;
  char buf[4096];
  ssize_t n;
  do {
    n = ::read(fd.get(), buf, sizeof(buf));
  } while (n < 0 && errno == EINTR);
  if (n <= 0) return words;
  for (absl::string_view w : absl::StrSplit(absl::string_view(buf, static_cast<size_t>(n)),
                                            absl::ByAnyChar(" \n"), absl::SkipEmpty())) {
    words.emplace_back(w);
  }
  return words;
}

// The cgroup's directory under hierarchy `base` ("/" is the hierarchy root itself).
std::string Join(const std::string& base, std::string_view cgroups_path) {
  return cgroups_path == "/" ? base : absl::StrCat(base, AbslView(cgroups_path));
}

}  // namespace

absl::StatusOr<CgroupFs> CgroupFs::Open(const std::string& root) {
  ASSIGN_OR_RETURN(Layout layout, DetectLayout(root));
  return CgroupFs(std::move(layout));
}

sdk::Readiness CgroupFs::Readiness() const {
  const Layout& l = layout_;
  if (l.version == CgroupVersion::kNone) {
    return sdk::Readiness::NotReady(
        "CgroupHierarchyMissing",
        absl::StrCat("no cgroup hierarchy under ", l.root, ": neither ", l.root,
                     "/cgroup.controllers (cgroup v2) nor v1 controller directories; mount "
                     "the cgroup filesystems (or set root for io.berth.cgroup.fs) and restart "
                     "berthd"));
  }
  std::vector<std::string> missing;
  if (l.version == CgroupVersion::kV2) {
    std::vector<std::string> have = ReadWords(l.root + "/cgroup.controllers");
    for (const char* c : {"cpu", "memory", "pids"}) {
      if (std::find(have.begin(), have.end(), c) == have.end()) missing.emplace_back(c);
    }
    if (!missing.empty()) {
      return sdk::Readiness::NotReady(
          "CgroupControllersMissing",
          absl::StrCat("cgroup v2 controllers not available in ", l.root,
                       "/cgroup.controllers: ", absl::StrJoin(missing, " "),
                       " (a controller still mounted as a v1 hierarchy is not available in "
                       "cgroup2; unmount it there, or boot with "
                       "systemd.unified_cgroup_hierarchy=1)"));
    }
    return sdk::Readiness::Ready();
  }
  for (const char* c : {"cpu", "cpuacct", "memory", "pids"}) {
    std::string dir = l.V1Dir(c);
    if (dir.empty() || !IsDirectory(dir)) missing.emplace_back(c);
  }
  if (!missing.empty()) {
    return sdk::Readiness::NotReady(
        "CgroupControllersMissing",
        absl::StrCat("cgroup v1 controllers not mounted under ", l.root, ": ",
                     absl::StrJoin(missing, " "), " (mount them, e.g. mount -t cgroup -o ",
                     missing.front(), " cgroup ", l.root, "/", missing.front(),
                     ", and restart berthd)"));
  }
  return sdk::Readiness::Ready();
}

absl::Status CgroupFs::CheckLayout() const {
  if (layout_.version != CgroupVersion::kNone) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "no cgroup hierarchy under ", layout_.root,
      " (neither cgroup v2 nor v1 controllers); mount the cgroup filesystems and restart "
      "berthd"));
}

absl::StatusOr<std::string> CgroupFs::CgroupPath(std::string_view parent,
                                                 std::string_view id) const {
  return ContainerCgroupPath(parent, id);
}

absl::StatusOr<CgroupStats> CgroupFs::Stats(std::string_view cgroups_path) const {
  RETURN_IF_ERROR(ValidateCgroupPath(cgroups_path, "cgroups path"));
  RETURN_IF_ERROR(CheckLayout());
  absl::StatusOr<CgroupStats> stats;
  if (layout_.version == CgroupVersion::kV2) {
    stats = ReadV2Stats(Join(layout_.unified, cgroups_path));
  } else {
    V1StatsDirs dirs;
    auto dir = [&](const char* controller) {
      std::string base = layout_.V1Dir(controller);
      return base.empty() ? base : Join(base, cgroups_path);
    };
    dirs.cpuacct = dir("cpuacct");
    dirs.memory = dir("memory");
    dirs.pids = dir("pids");
    if (!layout_.unified.empty()) dirs.unified = Join(layout_.unified, cgroups_path);  // PSI
    stats = ReadV1Stats(dirs);
  }
  if (absl::IsNotFound(stats.status())) {
    return absl::NotFoundError(absl::StrCat("cgroup ", AbslView(cgroups_path), " does not exist (",
                                            stats.status().message(), ")"));
  }
  return stats;
}

absl::Status CgroupFs::Remove(std::string_view cgroups_path) const {
  RETURN_IF_ERROR(ValidateCgroupPath(cgroups_path, "cgroups path"));
  if (cgroups_path == "/") return absl::InvalidArgumentError("refusing to remove the root cgroup");
  RETURN_IF_ERROR(CheckLayout());
  // Every hierarchy is tried, so that one failing (permissions, say) does not keep the
  // others; the first error is returned.
  absl::Status first;
  for (const std::string& base : layout_.AllHierarchies()) {
    absl::Status s = RemoveTree(Join(base, cgroups_path), AbslView(cgroups_path));
    if (first.ok()) first = s;
  }
  return first;
}

namespace {

absl::StatusOr<std::string> ReadSmall(const std::string& path) {
  sdk::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return core::ErrnoToStatus(errno, "read " + path);
  char buf[4096];
  ssize_t n;
  do {
    n = ::read(fd.get(), buf, sizeof buf);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return core::ErrnoToStatus(errno, "read " + path);
  std::string text(buf, static_cast<size_t>(n));
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

absl::Status WriteSmall(const std::string& path, std::string_view value) {
  sdk::UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd.valid()) return core::ErrnoToStatus(errno, "open " + path);
  ssize_t n;
  do {
    n = ::write(fd.get(), value.data(), value.size());
  } while (n < 0 && errno == EINTR);
  if (n < 0) return core::ErrnoToStatus(errno, absl::StrCat("write ", AbslView(value), " to ", path));
  return absl::OkStatus();
}

// A v1 cpuset cgroup starts with empty cpuset.cpus and cpuset.mems, and no process can join
// it until they are set: copy them down from the nearest ancestor that has them.
absl::Status InheritCpuset(const std::string& base, const std::string& dir) {
  for (const char* file : {"cpuset.cpus", "cpuset.mems"}) {
    const std::string own = absl::StrCat(dir, "/", file);
    absl::StatusOr<std::string> value = ReadSmall(own);
    if (!value.ok()) return absl::OkStatus();  // not a cpuset hierarchy
    if (!value->empty()) continue;
    std::vector<std::string> chain;  // dir and its ancestors below base, deepest first
    for (std::string d = dir; d.size() > base.size(); d = d.substr(0, d.rfind('/'))) {
      chain.push_back(d);
    }
    std::string inherited;
    size_t first_set = chain.size();
    for (size_t i = 0; i < chain.size(); ++i) {
      absl::StatusOr<std::string> v = ReadSmall(absl::StrCat(chain[i], "/", file));
      if (v.ok() && !v->empty()) {
        inherited = *v;
        first_set = i;
        break;
      }
    }
    if (inherited.empty()) {
      ASSIGN_OR_RETURN(inherited, ReadSmall(absl::StrCat(base, "/", file)));
    }
    // Top-down: a cpuset may only hold what its parent holds.
    for (size_t i = first_set; i-- > 0;) {
      RETURN_IF_ERROR(WriteSmall(absl::StrCat(chain[i], "/", file), inherited));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CgroupFs::Enter(std::string_view cgroups_path, int64_t pid) const {
  RETURN_IF_ERROR(ValidateCgroupPath(cgroups_path, "cgroups path"));
  if (cgroups_path == "/") return absl::InvalidArgumentError("refusing to move a process to the root cgroup");
  RETURN_IF_ERROR(CheckLayout());
  return EnterCgroupDirs(layout_.AllHierarchies(), cgroups_path, pid);
}

absl::Status EnterCgroupDirs(const std::vector<std::string>& hierarchies,
                             std::string_view cgroups_path, int64_t pid) {
  if (pid <= 0) return absl::InvalidArgumentError(absl::StrCat("pid ", pid, " is not a process"));
  if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) {
    return absl::NotFoundError(absl::StrCat("process ", pid, " is gone"));
  }
  const std::string pid_text = absl::StrCat(pid);
  for (const std::string& base : hierarchies) {
    const std::string dir = Join(base, cgroups_path);
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) {
      return core::ErrnoToStatus(ec.value(), absl::StrCat("create cgroup ", AbslView(cgroups_path), " (", dir, ")"));
    }
    RETURN_IF_ERROR(InheritCpuset(base, dir));
    absl::Status s = WriteSmall(dir + "/cgroup.procs", pid_text);
    if (!s.ok()) {
      if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) {
        return absl::NotFoundError(absl::StrCat("process ", pid, " is gone"));
      }
      return absl::Status(s.code(), absl::StrCat("move process ", pid, " into cgroup ",
                                                 AbslView(cgroups_path), ": ", s.message()));
    }
  }
  return absl::OkStatus();
}

}  // namespace berth::cgroupfs
