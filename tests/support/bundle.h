// SPDX-License-Identifier: Apache-2.0
// An OCI bundle for runtime tests: a temporary directory with a busybox-static rootfs and a
// config.json built with nlohmann::json. Header-only; needs nlohmann_json and
// tests/support/test_support.h.
//
//   berth::testing::BundleOptions o;
//   o.args = {"sh", "-c", "exit 3"};
//   o.annotations["io.kubernetes.cri.sandbox-id"] = "pod1";
//   berth::testing::Bundle b("exit3", o);
//   if (!b.ok()) GTEST_SKIP() << b.error();
//   ... runc --root <tmp> create --bundle b.str() ...
//
// The rootfs holds /bin/busybox (a copy of the host's /bin/busybox from the
// Debian package busybox-static) and symlinks for the usual applets, plus empty /proc, /dev,
// /sys, /tmp, /etc with passwd and group. The config.json is a minimal valid runtime-spec
// 1.0 document: namespaces pid/ipc/uts/mount/network, the default mounts (proc, dev, devpts,
// shm, mqueue, sysfs), masked and read-only paths as runc's `runc spec` has them.
#pragma once

#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "tests/support/test_support.h"

namespace berth::testing {

// Where the host's statically linked busybox lives (Debian: busybox-static).
inline constexpr const char* kHostBusybox = "/bin/busybox";

// Applets linked into <rootfs>/bin next to busybox.
inline const std::vector<std::string>& BusyboxApplets() {
  static const std::vector<std::string> kApplets = {
      "sh",     "ash",    "sleep",    "echo",  "cat",   "yes",      "head",   "tail",
      "dd",     "true",   "false",    "ls",    "ps",    "kill",     "env",    "id",
      "mkdir",  "rm",     "touch",    "wc",    "seq",   "printf",   "tr",     "sed",
      "grep",   "awk",    "hostname", "mount", "stat",  "test",     "[",      "sync",
      "tee",    "setsid", "timeout",  "stty",  "tty",   "readlink", "uname",  "pwd",
      "ln",     "cp",     "mv",       "chmod", "xargs", "usleep",   "md5sum", "sha256sum",
      "base64", "od",     "hexdump",  "nproc", "free",  "pidof"};
  return kApplets;
}

struct BundleOptions {
  std::vector<std::string> args = {"sh", "-c", "true"};
  std::vector<std::string> env = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"};
  std::string cwd = "/";
  bool terminal = false;
  // linux.cgroupsPath; empty leaves it out (runc then picks a path named for the id).
  std::string cgroups_path;
  // linux.resources.memory.limit in bytes; 0 leaves it out. Swap is set to the same value
  // so that the limit is hard (no swap escape) when the host has swap accounting.
  int64_t memory_limit_bytes = 0;
  std::map<std::string, std::string> annotations;
  bool readonly_rootfs = false;
  std::string hostname = "berth-test";
  // Leave out the network namespace (share the host's), e.g. to debug.
  bool host_network = false;
  // Leave out the pid namespace: the container's processes are ordinary host processes
  // (signals with default dispositions work on its first process; orphans are reparented
  // to the nearest subreaper outside the container).
  bool host_pid = false;
};

// Builds the config.json document for `o` (rootfs path "rootfs", relative to the bundle).
inline nlohmann::json MakeOciSpec(const BundleOptions& o) {
  using nlohmann::json;
  json caps =
      json::array({"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_CHOWN",
                   "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_SETGID", "CAP_SETUID",
                   "CAP_SETPCAP", "CAP_NET_RAW", "CAP_SYS_CHROOT", "CAP_MKNOD", "CAP_SETFCAP"});
  json process = {
      {"terminal", o.terminal},
      {"user", {{"uid", 0}, {"gid", 0}}},
      {"args", o.args},
      {"env", o.env},
      {"cwd", o.cwd},
      {"capabilities", {{"bounding", caps}, {"effective", caps}, {"permitted", caps}}},
      {"rlimits", json::array({{{"type", "RLIMIT_NOFILE"}, {"hard", 1024}, {"soft", 1024}}})},
      {"noNewPrivileges", true},
  };
  json mounts = json::array({
      {{"destination", "/proc"}, {"type", "proc"}, {"source", "proc"}},
      {{"destination", "/dev"},
       {"type", "tmpfs"},
       {"source", "tmpfs"},
       {"options", {"nosuid", "strictatime", "mode=755", "size=65536k"}}},
      {{"destination", "/dev/pts"},
       {"type", "devpts"},
       {"source", "devpts"},
       {"options", {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}}},
      {{"destination", "/dev/shm"},
       {"type", "tmpfs"},
       {"source", "shm"},
       {"options", {"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}}},
      {{"destination", "/dev/mqueue"},
       {"type", "mqueue"},
       {"source", "mqueue"},
       {"options", {"nosuid", "noexec", "nodev"}}},
      {{"destination", "/sys"},
       {"type", "sysfs"},
       {"source", "sysfs"},
       {"options", {"nosuid", "noexec", "nodev", "ro"}}},
  });
  json namespaces = json::array({{{"type", "ipc"}}, {{"type", "uts"}}, {{"type", "mount"}}});
  if (!o.host_pid) namespaces.push_back({{"type", "pid"}});
  if (!o.host_network) namespaces.push_back({{"type", "network"}});
  json linux_section = {
      {"namespaces", namespaces},
      {"maskedPaths",
       {"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
        "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
        "/proc/scsi"}},
      {"readonlyPaths", {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}},
  };
  json resources = {{"devices", json::array({{{"allow", false}, {"access", "rwm"}}})}};
  if (o.memory_limit_bytes > 0) {
    resources["memory"] = {{"limit", o.memory_limit_bytes}};
  }
  linux_section["resources"] = resources;
  if (!o.cgroups_path.empty()) linux_section["cgroupsPath"] = o.cgroups_path;
  json spec = {
      {"ociVersion", "1.0.2"},
      {"process", process},
      {"root", {{"path", "rootfs"}, {"readonly", o.readonly_rootfs}}},
      {"hostname", o.hostname},
      {"mounts", mounts},
      {"linux", linux_section},
  };
  if (!o.annotations.empty()) spec["annotations"] = o.annotations;
  return spec;
}

// An OCI process document (what `runc exec --process` and the shim's Exec take).
inline nlohmann::json MakeOciProcess(const std::vector<std::string>& args, bool terminal = false,
                                     const std::vector<std::string>& env = {
                                         "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}) {
  return {{"terminal", terminal},
          {"user", {{"uid", 0}, {"gid", 0}}},
          {"args", args},
          {"env", env},
          {"cwd", "/"}};
}

// Fills `rootfs` with busybox and its applet links. Returns "" or what went wrong.
inline std::string PopulateBusyboxRootfs(const std::filesystem::path& rootfs) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (::access(kHostBusybox, X_OK) != 0) {
    return std::string(kHostBusybox) + " not found (install the Debian package busybox-static)";
  }
  for (const char* d : {"bin", "proc", "dev", "sys", "tmp", "etc", "root", "usr/bin", "var"}) {
    fs::create_directories(rootfs / d, ec);
    if (ec) return "mkdir " + (rootfs / d).string() + ": " + ec.message();
  }
  fs::permissions(rootfs / "tmp", fs::perms::all | fs::perms::sticky_bit, ec);
  const fs::path busybox = rootfs / "bin" / "busybox";
  // A copy, not a hard link: the rootfs is writable and must not reach the host's file.
  fs::copy_file(kHostBusybox, busybox, fs::copy_options::overwrite_existing, ec);
  if (ec) {
    return "copy " + std::string(kHostBusybox) + " to " + busybox.string() + ": " + ec.message();
  }
  fs::permissions(busybox,
                  fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                      fs::perms::others_read | fs::perms::others_exec,
                  ec);
  for (const std::string& applet : BusyboxApplets()) {
    fs::create_symlink("busybox", rootfs / "bin" / applet, ec);
    if (ec) return "symlink " + (rootfs / "bin" / applet).string() + ": " + ec.message();
  }
  std::ofstream(rootfs / "etc" / "passwd") << "root:x:0:0:root:/root:/bin/sh\n";
  std::ofstream(rootfs / "etc" / "group") << "root:x:0:\n";
  std::ofstream(rootfs / "etc" / "hosts") << "127.0.0.1 localhost\n";
  return "";
}

// Is `path` (absolute, no symlinks) a mount point? From /proc/self/mountinfo.
inline bool IsMountPoint(const std::filesystem::path& path) {
  std::ifstream info("/proc/self/mountinfo");
  std::string line;
  while (std::getline(info, line)) {
    // id parent major:minor root mount-point ...
    size_t pos = 0;
    for (int field = 0; field < 4 && pos != std::string::npos; ++field) {
      pos = line.find(' ', pos);
      if (pos != std::string::npos) ++pos;
    }
    if (pos == std::string::npos) continue;
    const size_t end = line.find(' ', pos);
    if (line.compare(pos, end - pos, path.string()) == 0) return true;
  }
  return false;
}

// A bundle directory <tmp>/berth-bundle-<what>-XXXXXX/{config.json,rootfs/}, removed on
// destruction (the caller must have deleted the container and unmounted rootfs first; a
// rootfs that is still a mount point is left alone rather than emptied through the mount).
class Bundle {
 public:
  explicit Bundle(const std::string& what = "test", const BundleOptions& options = {})
      : dir_("bundle-" + what), options_(options) {
    if (dir_.path().empty()) {
      error_ = "mkdtemp for bundle " + what + " failed";
      return;
    }
    error_ = PopulateBusyboxRootfs(rootfs());
    if (!error_.empty()) return;
    spec_ = MakeOciSpec(options_);
    error_ = WriteConfig();
  }
  ~Bundle() {
    // Never recurse into a still-mounted rootfs (a bind mount would be emptied at its source).
    if (IsMountPoint(rootfs())) dir_.Release();
  }
  Bundle(const Bundle&) = delete;
  Bundle& operator=(const Bundle&) = delete;

  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }

  const std::filesystem::path& path() const { return dir_.path(); }
  std::string str() const { return dir_.str(); }
  std::filesystem::path rootfs() const { return dir_.path() / "rootfs"; }
  std::filesystem::path config_path() const { return dir_.path() / "config.json"; }
  const BundleOptions& options() const { return options_; }

  // The spec; change it and call WriteConfig() again.
  nlohmann::json& spec() { return spec_; }
  // Writes spec() to config.json. Returns "" or what went wrong.
  std::string WriteConfig() {
    std::ofstream f(config_path(), std::ios::trunc);
    f << spec_.dump(2);
    f.close();
    if (!f) return "write " + config_path().string() + " failed";
    return "";
  }
  // A file or directory next to config.json, for fifos, logs and the like.
  std::string File(const std::string& name) const { return dir_.File(name); }

 private:
  // TempDir with a way to leave the directory behind.
  class Dir : public TempDir {
   public:
    using TempDir::TempDir;
    void Release() { released_ = true; }
    ~Dir() {
      if (released_) LeakPath();
    }

   private:
    void LeakPath() {
      // TempDir removes path() in its destructor; point it at nothing instead.
      std::filesystem::path* p = const_cast<std::filesystem::path*>(&path());
      p->clear();
    }
    bool released_ = false;
  };

  Dir dir_;
  BundleOptions options_;
  nlohmann::json spec_;
  std::string error_;
};

}  // namespace berth::testing
