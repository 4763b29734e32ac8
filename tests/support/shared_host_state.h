// SPDX-License-Identifier: Apache-2.0
// Host state that tests running at the same time (ctest -j) share and that no single test may
// remove while another could be using it. A test holds the guard while it may use that state;
// the holder that ends last — the only one that gets the lock exclusively — removes what the
// tests left there, and only what provably nobody uses any more.
//
// - ContainerdRunDir: Debian's containerd-shim-runc-v2 puts its socket under /run/containerd/s
//   and its state under /run/containerd/runc/<namespace>. The last holder removes the empty
//   directories: never a file, never a socket another test's shim listens on, never what a
//   containerd of the host keeps there. The same protocol in shell, for
//   tests/integration/sdk_example_test.sh: flock -s on the lock file while shims run, then
//   flock -x -n and delete the empty directories.
// - PortmapChains: the CNI portmap plugin creates top-level nat chains (CNI-HOSTPORT-DNAT,
//   -MASQ, -SETMARK) and jumps to them from PREROUTING, OUTPUT and POSTROUTING, and never
//   removes them. The last holder removes them if the tests made them (a marker under /run
//   says so: a node that had them before keeps them) and no pod's hostPort rule is left.
#pragma once

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

namespace berth::testing {

// A shared flock on `path` for the guard's life; Last() tries to make it exclusive.
class SharedLock {
 public:
  explicit SharedLock(const char* path) {
    fd_ = ::open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd_ >= 0) ::flock(fd_, LOCK_SH);
  }
  ~SharedLock() {
    if (fd_ >= 0) ::close(fd_);
  }
  SharedLock(const SharedLock&) = delete;
  SharedLock& operator=(const SharedLock&) = delete;
  // Whether no other holder is left (then this one holds the lock exclusively).
  bool Last() { return fd_ >= 0 && ::flock(fd_, LOCK_EX | LOCK_NB) == 0; }

 private:
  int fd_ = -1;
};

inline constexpr char kContainerdRunDir[] = "/run/containerd";

class ContainerdRunDir {
 public:
  ContainerdRunDir() : lock_("/tmp/berth-containerd-run.lock") {}
  ~ContainerdRunDir() {
    if (lock_.Last()) RemoveEmptyDirectories(kContainerdRunDir);
  }

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
  SharedLock lock_;
};

class PortmapChains {
 public:
  PortmapChains() : lock_("/tmp/berth-portmap-chains.lock") {
    // Chains that exist without the marker were the node's before any test.
    if (!ChainExists()) ::close(::open(kMarker, O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
  }
  ~PortmapChains() {
    if (!lock_.Last() || ::access(kMarker, F_OK) != 0) return;
    if (ChainExists()) {
      // A hostPort rule of a pod still there: something leaked (the tests that count iptables
      // rules say so); leave everything as it is.
      if (!OnlyPortmapsOwnRules()) return;
      for (const char* rule :
           {"PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT",
            "OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT",
            "POSTROUTING -m comment --comment \"CNI portfwd requiring masquerade\" "
            "-j CNI-HOSTPORT-MASQ"}) {
        // Concurrent ADDs can insert a jump twice: delete until none is left.
        for (int i = 0; i < 16 && Iptables(std::string("-t nat -D ") + rule) == 0; ++i) {
        }
      }
      for (const char* chain : {"CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-MASQ", "CNI-HOSTPORT-SETMARK"}) {
        Iptables(std::string("-t nat -F ") + chain);
        Iptables(std::string("-t nat -X ") + chain);
      }
    }
    ::unlink(kMarker);
  }
  PortmapChains(const PortmapChains&) = delete;
  PortmapChains& operator=(const PortmapChains&) = delete;

 private:
  static constexpr char kMarker[] = "/run/berth-test-made-portmap-chains";

  static int Iptables(const std::string& args) {
    return std::system(("/usr/sbin/iptables -w " + args + " >/dev/null 2>&1").c_str());
  }
  static bool ChainExists() { return Iptables("-t nat -S CNI-HOSTPORT-DNAT") == 0; }
  // CNI-HOSTPORT-DNAT holds one jump per pod with hostPorts; empty, only portmap's fixed
  // rules are left.
  static bool OnlyPortmapsOwnRules() {
    FILE* p = ::popen("/usr/sbin/iptables -w -t nat -S CNI-HOSTPORT-DNAT 2>/dev/null", "r");
    if (p == nullptr) return false;
    std::string out;
    char buf[512];
    while (std::fgets(buf, sizeof buf, p) != nullptr) out += buf;
    const int rc = ::pclose(p);
    return rc == 0 && out.find("-A ") == std::string::npos;
  }

  SharedLock lock_;
};

}  // namespace berth::testing
