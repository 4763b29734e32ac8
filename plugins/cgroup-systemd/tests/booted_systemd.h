// SPDX-License-Identifier: Apache-2.0
// A real systemd for the tests, booted as PID 1 of private namespaces on a host where
// systemd is not the init (docs/cgroup-drivers.md §7 has the recipe):
//
//  - a cgroup "berthtest<hex>" is made in every hierarchy of the host's /sys/fs/cgroup; the
//    booting child joins it, then unshares its PID, mount, cgroup, UTS, IPC and network
//    namespaces, so everything systemd creates (init.scope, slices, scopes) stays inside
//    that subtree and its hostname or loopback setup stays in the namespaces;
//  - its child, PID 1 of the new PID namespace, makes every mount private, mounts a fresh
//    /proc with /proc/sys and /sys bound read-only (systemd would raise global sysctls such
//    as fs.file-max), a tmpfs on /sys/fs/cgroup with each host hierarchy mounted again (now
//    rooted at the subtree), binds <tmp>/run onto /run, makes a /dev of its own (tmpfs, the
//    host's null, zero, full, random, urandom and tty, files of <tmp> as console and kmsg:
//    systemd's output and log), binds a copy of /etc/machine-id over it, and execs
//    /lib/systemd/systemd with container=berth-test and --unit=berth-test.target, an empty
//    target in <tmp>/run/systemd/system, so that nothing else is started;
//  - systemd's private socket is <tmp>/run/systemd/private, but systemd drops peers whose
//    pid it cannot see, so the tests reach it through a bridge started in its namespaces:
//    bus_address() is "unixexec:" nsenter --pid --mount + systemd-stdio-bridge;
//  - cgroup_root() is a directory of links to the subtree in each hierarchy, laid out as
//    /sys/fs/cgroup, which the driver reads as it would read /sys/fs/cgroup on a host.
//
// The destructor kills systemd (SIGKILL to the namespace's PID 1 ends every process in it),
// removes the subtree's cgroups deepest first and the temporary directory. Nothing is
// mounted in the host's mount namespace.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace berth::cgroup_systemd::testing {

// A process started in systemd's PID namespace.
struct NsProcess {
  pid_t host_pid = 0;  // as this process sees it
  pid_t ns_pid = 0;    // as systemd sees it
};

// A command run to completion inside systemd's namespaces.
struct CommandResult {
  int exit_code = -1;  // -1: killed by a signal or timed out
  std::string output;  // stdout and stderr
};

class BootedSystemd {
 public:
  // Boots and waits (bounded) until systemd answers on D-Bus and has reached its target.
  // An error says which step failed (with systemd's log when it got that far).
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<BootedSystemd>> Boot();
  ~BootedSystemd();
  BootedSystemd(const BootedSystemd&) = delete;
  BootedSystemd& operator=(const BootedSystemd&) = delete;

  pid_t init_pid() const { return init_pid_; }
  const std::string& subtree() const { return subtree_; }
  const std::string& bus_address() const { return bus_address_; }
  std::string system_dir() const { return tmp_ + "/run/systemd/system"; }
  std::string cgroup_root() const { return tmp_ + "/cgroup"; }
  std::string temp_dir() const { return tmp_; }
  // What systemd logged (its /dev/kmsg).
  std::string Log() const;
  // The host directory of `rel` (a path relative to systemd's cgroup root) in the hierarchy
  // mounted at /sys/fs/cgroup/<mount> on the host ("memory", "unified").
  std::string HostCgroupDir(const std::string& mount, const std::string& rel) const;

  // Starts `argv` (absolute program path) in systemd's PID namespace, in the subtree's root
  // cgroup, with SIGTERM ignored when asked. A helper child of this process (outside the
  // namespace) is its parent until it exits; the destructor reaps the helpers.
  [[nodiscard]] absl::StatusOr<NsProcess> Spawn(const std::vector<std::string>& argv,
                                                bool ignore_sigterm = false) const;
  // Runs `argv` in systemd's PID, mount and cgroup namespaces with cwd `cwd`, for at most
  // `timeout` (then killed).
  [[nodiscard]] absl::StatusOr<CommandResult> RunInside(const std::vector<std::string>& argv,
                                                        const std::string& cwd,
                                                        std::chrono::seconds timeout) const;

 private:
  BootedSystemd() = default;

  std::string tmp_;
  std::string subtree_;
  std::string bus_address_;
  // Host hierarchy mount points ("/sys/fs/cgroup/memory") holding the subtree.
  std::vector<std::string> hierarchies_;
  pid_t child_pid_ = 0;                 // the unsharing child, parent of systemd
  mutable std::vector<pid_t> helpers_;  // parents of Spawn's processes
  pid_t init_pid_ = 0;                  // systemd (host pid)
};

}  // namespace berth::cgroup_systemd::testing
