// SPDX-License-Identifier: Apache-2.0
#include "core/instance_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace berth::core {
namespace {

std::string ProcessName(pid_t pid) {
  std::ifstream f(absl::StrCat("/proc/", pid, "/comm"));
  std::string name;
  std::getline(f, name);
  return name.empty() ? "?" : name;
}

std::string ReadPid(int fd) {
  char buf[32] = {};
  ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
  if (n <= 0) return "unknown";
  std::string s(buf, n);
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

}  // namespace

InstanceLock::~InstanceLock() {
  // The files stay: unlinking a lock file races with a process that has just opened it.
  for (const Held& h : held_) ::close(h.fd);
}

absl::Status InstanceLock::Acquire(const std::filesystem::path& lock_file,
                                   std::string_view what) {
  int fd = ::open(lock_file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return ErrnoToStatus(errno, absl::StrCat("cannot open lock file ", lock_file.string()));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int e = errno;
    std::string pid = ReadPid(fd);
    ::close(fd);
    if (e == EWOULDBLOCK) {
      return absl::FailedPreconditionError(absl::StrCat(
          "another berthd (pid ", pid, ") already uses ", std::string(what), " (lock ", lock_file.string(),
          "); stop it first or choose another ",
          std::string(what.substr(0, what.find(' ')))));
    }
    return ErrnoToStatus(e, absl::StrCat("cannot lock ", lock_file.string()));
  }
  std::string me = absl::StrCat(getpid(), "\n");
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, me.data(), me.size(), 0) < 0) {
    int e = errno;
    ::close(fd);
    return ErrnoToStatus(e, absl::StrCat("cannot write lock file ", lock_file.string()));
  }
  held_.push_back(Held{lock_file, fd});
  return absl::OkStatus();
}

absl::Status InstanceLock::ClaimSocket(const std::filesystem::path& socket) {
  RETURN_IF_ERROR(Acquire(socket.string() + ".lock", "socket " + socket.string()));
  struct stat st;
  if (::lstat(socket.c_str(), &st) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return ErrnoToStatus(errno, absl::StrCat("cannot inspect ", socket.string()));
  }
  if (!S_ISSOCK(st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat(
        socket.string(), " exists and is not a socket; refusing to replace it"));
  }
  // We hold the lock, so no berthd serves it. Is anything else listening?
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoToStatus(errno, "socket");
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, socket.c_str(), sizeof(addr.sun_path) - 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    ucred cred{};
    socklen_t len = sizeof(cred);
    std::string who = "an unknown process";
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 && cred.pid > 0) {
      who = absl::StrCat("pid ", cred.pid, " (", ProcessName(cred.pid), ")");
    }
    ::close(fd);
    return absl::FailedPreconditionError(absl::StrCat(
        "socket ", socket.string(), " is being served by ", who,
        "; stop it first or choose another --socket"));
  }
  ::close(fd);
  if (::unlink(socket.c_str()) != 0 && errno != ENOENT) {
    return ErrnoToStatus(errno, absl::StrCat("cannot remove stale socket ", socket.string()));
  }
  return absl::OkStatus();
}

}  // namespace berth::core
