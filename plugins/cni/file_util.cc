// SPDX-License-Identifier: Apache-2.0
#include "plugins/cni/file_util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <string>

#include "berth/unique_fd.hpp"
#include "core/status_macros.h"

namespace berth::cni {
namespace {

using core::ErrnoToStatus;

std::string DirOf(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

absl::Status WriteAll(int fd, std::string_view data, const std::string& path) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoToStatus(errno, "write " + path);
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

absl::Status SyncDir(const std::string& dir) {
  sdk::UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoToStatus(errno, "open directory " + dir);
  if (::fsync(fd.get()) != 0) return ErrnoToStatus(errno, "fsync directory " + dir);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> ReadFile(const std::string& path, size_t max_size) {
  sdk::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoToStatus(errno, "open " + path);
  std::string data;
  char buf[16384];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoToStatus(errno, "read " + path);
    }
    if (n == 0) break;
    if (data.size() + static_cast<size_t>(n) > max_size) {
      return absl::FailedPreconditionError(path + " is larger than " + std::to_string(max_size) +
                                           " bytes");
    }
    data.append(buf, static_cast<size_t>(n));
  }
  return data;
}

absl::Status WriteFileDurably(const std::string& path, std::string_view data) {
  const std::string dir = DirOf(path);
  std::string tmp = dir + "/.tmp-XXXXXX";
  sdk::UniqueFd fd(::mkostemp(tmp.data(), O_CLOEXEC));
  if (!fd.valid()) return ErrnoToStatus(errno, "create a temporary file in " + dir);
  absl::Status s = WriteAll(fd.get(), data, tmp);
  if (s.ok() && ::fchmod(fd.get(), 0600) != 0) s = ErrnoToStatus(errno, "chmod " + tmp);
  if (s.ok() && ::fsync(fd.get()) != 0) s = ErrnoToStatus(errno, "fsync " + tmp);
  fd.Reset();
  if (s.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) {
    s = ErrnoToStatus(errno, "rename " + tmp + " to " + path);
  }
  if (!s.ok()) {
    ::unlink(tmp.c_str());
    return s;
  }
  return SyncDir(dir);
}

absl::Status RemoveFileDurably(const std::string& path) {
  if (::unlink(path.c_str()) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return ErrnoToStatus(errno, "remove " + path);
  }
  return SyncDir(DirOf(path));
}

absl::Status MakeDirs(const std::string& path, mode_t mode) {
  if (path.empty()) return absl::InvalidArgumentError("empty directory path");
  for (size_t pos = 1; pos <= path.size(); ++pos) {
    if (pos != path.size() && path[pos] != '/') continue;
    std::string prefix = path.substr(0, pos);
    if (::mkdir(prefix.c_str(), mode) == 0 || errno == EEXIST) continue;
    return ErrnoToStatus(errno, "mkdir " + prefix);
  }
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return ErrnoToStatus(errno, "stat " + path);
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(path + " exists and is not a directory");
  }
  return absl::OkStatus();
}

}  // namespace berth::cni
