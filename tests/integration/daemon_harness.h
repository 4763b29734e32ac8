// SPDX-License-Identifier: Apache-2.0
// Starts the real berthd on a private root, state and socket under a temporary directory,
// and always cleans up: the daemon it started (by PID only) and the directory.
#pragma once

#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/test_support.h"

namespace berth::testing {

namespace fs = std::filesystem;

// Runs argv with stdout+stderr into `log`; returns the child's pid. `as_uid` >= 0 drops to
// that uid/gid first.
inline pid_t Spawn(const std::vector<std::string>& argv, const fs::path& log, int as_uid = -1) {
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid == 0) {
    // If the test process dies (a crash, a timeout kill), so does what it started.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(125);
    int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, 0);
    if (as_uid >= 0) {
      if (setgroups(0, nullptr) != 0 || setgid(as_uid) != 0 || setuid(as_uid) != 0) _exit(126);
    }
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  return pid;
}

// Waits for pid to exit; returns its wait status, or nullopt after the timeout.
inline std::optional<int> WaitExit(pid_t pid, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r < 0) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return std::nullopt;
}

inline bool CanConnect(const fs::path& socket) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, socket.c_str(), sizeof(addr.sun_path) - 1);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return ok;
}

// Runs a command to completion (bounded); returns {exit code, output}.
inline std::pair<int, std::string> RunCommand(const std::vector<std::string>& argv, const fs::path& log,
                                       int as_uid = -1) {
  std::error_code ec;
  fs::remove(log, ec);
  pid_t pid = Spawn(argv, log, as_uid);
  auto st = WaitExit(pid, std::chrono::seconds(30));
  if (!st) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    return {-1, ReadFile(log)};
  }
  return {WIFEXITED(*st) ? WEXITSTATUS(*st) : 128 + WTERMSIG(*st), ReadFile(log)};
}

// One berthd on its own root/state/socket.
class Daemon {
 public:
  explicit Daemon(fs::path dir) : dir_(std::move(dir)) {}
  ~Daemon() { Stop(); }

  fs::path socket() const { return dir_ / "berth.sock"; }
  fs::path log() const { return dir_ / "berthd.log"; }
  fs::path config() const { return dir_ / "config.yaml"; }
  fs::path root() const { return dir_ / "root"; }
  fs::path state() const { return dir_ / "state"; }
  pid_t pid() const { return pid_; }

  std::vector<std::string> Args(std::vector<std::string> extra = {}) const {
    std::vector<std::string> a = {BERTHD_BIN, "--root", root().string(), "--state",
                                  state().string(), "--socket", socket().string()};
    if (fs::exists(config())) {
      a.push_back("--config");
      a.push_back(config().string());
    }
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }

  // Starts berthd and waits (bounded) until the socket accepts connections. Returns false
  // if berthd exited or never got ready; log() says why.
  bool Start(std::vector<std::string> extra = {}) {
    pid_ = Spawn(Args(std::move(extra)), log());
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
    while (std::chrono::steady_clock::now() < deadline) {
      if (CanConnect(socket())) return true;
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        exit_status_ = status;
        pid_ = -1;
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return false;
  }

  // SIGTERM, then SIGKILL if it does not stop in time. Returns the wait status.
  std::optional<int> Stop(int sig = SIGTERM) {
    if (pid_ <= 0) return exit_status_;
    kill(pid_, sig);
    auto st = WaitExit(pid_, std::chrono::seconds(10));
    if (!st) {
      kill(pid_, SIGKILL);
      int status = 0;
      waitpid(pid_, &status, 0);
      st = std::nullopt;
    }
    pid_ = -1;
    exit_status_ = st;
    return st;
  }

  std::string Log() const { return ReadFile(log()); }

 private:
  fs::path dir_;
  pid_t pid_ = -1;
  std::optional<int> exit_status_;
};

// A CNI configuration that Debian's plugins satisfy (nothing is executed by berthd yet).
inline std::string BridgeConflist() {
  return R"({"cniVersion":"1.0.0","name":"berth-test","plugins":[)"
         R"({"type":"bridge","bridge":"berthtest0","isGateway":true,)"
         R"("ipam":{"type":"host-local","subnet":"10.99.0.0/16"}},)"
         R"({"type":"portmap","capabilities":{"portMappings":true}}]})";
}

// A configuration with every built-in plugin and CNI pointed at `cni_dir`.
inline std::string BaseConfig(const fs::path& cni_dir, const std::string& extra_cri = "",
                              const std::string& runtimes = "") {
  std::string c = "log_level: info\nplugins:\n"
                  "  io.berth.cri:\n    cgroup_driver: cgroupfs\n" + extra_cri +
                  "  io.berth.image-store: {}\n"
                  "  io.berth.snapshotter.overlay: {}\n"
                  "  io.berth.cni:\n    conf_dir: " + cni_dir.string() + "\n"
                  "  io.berth.cgroup.fs: {}\n"
                  "  io.berth.cgroup.systemd: {}\n"
                  "  io.berth.runtime.runc: {}\n";
  if (runtimes.empty()) {
    c += "runtimes:\n  runc:\n    plugin: io.berth.runtime.runc\n    options:\n"
         "      binary: runc\ndefault_runtime: runc\n";
  } else {
    c += runtimes;
  }
  return c;
}

}  // namespace berth::testing
