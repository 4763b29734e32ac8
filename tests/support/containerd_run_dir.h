// SPDX-License-Identifier: Apache-2.0
// Debian's containerd-shim-runc-v2 puts its socket under /run/containerd/s and its state under
// /run/containerd/runc/<namespace>: every test that starts one (directly, through the SDK
// example or through berthd) shares that directory with the others running at the same time
// (ctest -j). A test holds a ContainerdRunDir while shims of its may run. The holder that ends
// last — the only one that gets the lock exclusively — removes the directories that nobody
// uses any more, and only empty ones: never a file, never a socket another test's shim still
// listens on, never what a containerd of the host keeps there.
//
// The same protocol in shell (tests/integration/sdk_example_test.sh): flock -s on the lock
// file while shims run, then flock -x -n and rmdir the empty directories.
#pragma once

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

namespace berth::testing {

inline constexpr char kContainerdRunDir[] = "/run/containerd";
inline constexpr char kContainerdRunDirLock[] = "/tmp/berth-containerd-run.lock";

class ContainerdRunDir {
 public:
  ContainerdRunDir() {
    fd_ = ::open(kContainerdRunDirLock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd_ >= 0) ::flock(fd_, LOCK_SH);
  }
  ~ContainerdRunDir() {
    if (fd_ < 0) return;
    // Others still hold it shared: their shims may be about to use the directories.
    if (::flock(fd_, LOCK_EX | LOCK_NB) == 0) RemoveEmptyDirectories(kContainerdRunDir);
    ::close(fd_);
  }
  ContainerdRunDir(const ContainerdRunDir&) = delete;
  ContainerdRunDir& operator=(const ContainerdRunDir&) = delete;

  // Removes `dir` and the directories under it that hold no file (depth first); what holds
  // anything else stays. Returns whether `dir` is gone.
  static bool RemoveEmptyDirectories(const std::filesystem::path& dir) {
    namespace fs = std::filesystem;
    std::error_code ec;
    if (!fs::is_directory(fs::symlink_status(dir, ec))) return false;
    std::vector<fs::path> children;
    for (const auto& e : fs::directory_iterator(dir, ec)) children.push_back(e.path());
    if (ec) return false;
    bool empty = true;
    for (const fs::path& c : children) {
      if (!RemoveEmptyDirectories(c)) empty = false;
    }
    return empty && ::rmdir(dir.c_str()) == 0;
  }

 private:
  int fd_ = -1;
};

}  // namespace berth::testing
