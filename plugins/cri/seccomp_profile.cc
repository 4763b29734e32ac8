// SPDX-License-Identifier: Apache-2.0
#include "plugins/cri/seccomp_profile.h"

#include <sys/utsname.h>

#include <algorithm>
#include <set>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "core/status_macros.h"

namespace berth::cri {
namespace {

using nlohmann::json;

constexpr int kEperm = 1;
constexpr int kEnosys = 38;
// CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID |
// CLONE_NEWNET: clone(2) may not make namespaces without CAP_SYS_ADMIN.
constexpr uint64_t kCloneNamespaceFlags = 0x7E020000;
constexpr uint64_t kAfVsock = 40;

// Allowed for every container. Names unknown to an architecture are skipped by the runtime
// (libseccomp resolves each name per architecture).
// clang-format off
constexpr const char* kAllowed[] = {
    "accept", "accept4", "access", "adjtimex", "alarm", "arch_prctl", "bind", "brk",
    "cachestat", "capget", "capset", "chdir", "chmod", "chown", "chown32", "clock_adjtime",
    "clock_adjtime64", "clock_getres", "clock_getres_time64", "clock_gettime",
    "clock_gettime64", "clock_nanosleep", "clock_nanosleep_time64", "close", "close_range",
    "connect", "copy_file_range", "creat", "dup", "dup2", "dup3", "epoll_create",
    "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait", "epoll_pwait2", "epoll_wait",
    "epoll_wait_old", "eventfd", "eventfd2", "execve", "execveat", "exit", "exit_group",
    "faccessat", "faccessat2", "fadvise64", "fadvise64_64", "fallocate", "fanotify_mark",
    "fchdir", "fchmod", "fchmodat", "fchmodat2", "fchown", "fchown32", "fchownat", "fcntl",
    "fcntl64", "fdatasync", "fgetxattr", "flistxattr", "flock", "fork", "fremovexattr",
    "fsetxattr", "fstat", "fstat64", "fstatat64", "fstatfs", "fstatfs64", "fsync", "ftruncate",
    "ftruncate64", "futex", "futex_requeue", "futex_time64", "futex_wait", "futex_waitv",
    "futex_wake", "futimesat", "get_mempolicy", "get_robust_list", "get_thread_area", "getcpu",
    "getcwd", "getdents", "getdents64", "getegid", "getegid32", "geteuid", "geteuid32",
    "getgid", "getgid32", "getgroups", "getgroups32", "getitimer", "getpeername", "getpgid",
    "getpgrp", "getpid", "getppid", "getpriority", "getrandom", "getresgid", "getresgid32",
    "getresuid", "getresuid32", "getrlimit", "getrusage", "getsid", "getsockname",
    "getsockopt", "gettid", "gettimeofday", "getuid", "getuid32", "getxattr",
    "inotify_add_watch", "inotify_init", "inotify_init1", "inotify_rm_watch", "io_cancel",
    "io_destroy", "io_getevents", "io_pgetevents", "io_pgetevents_time64", "io_setup",
    "io_submit", "ioctl", "ioprio_get", "ioprio_set", "ipc", "kill", "landlock_add_rule",
    "landlock_create_ruleset", "landlock_restrict_self", "lchown", "lchown32", "lgetxattr",
    "link", "linkat", "listen", "listxattr", "llistxattr", "_llseek", "lremovexattr", "lseek",
    "lsetxattr", "lstat", "lstat64", "madvise", "map_shadow_stack", "membarrier",
    "memfd_create", "memfd_secret", "mincore", "mkdir", "mkdirat", "mknod", "mknodat", "mlock",
    "mlock2", "mlockall", "mmap", "mmap2", "modify_ldt", "mprotect", "mq_getsetattr",
    "mq_notify", "mq_open", "mq_timedreceive", "mq_timedreceive_time64", "mq_timedsend",
    "mq_timedsend_time64", "mq_unlink", "mremap", "msgctl", "msgget", "msgrcv", "msgsnd",
    "msync", "munlock", "munlockall", "munmap", "name_to_handle_at", "nanosleep",
    "newfstatat", "_newselect", "open", "openat", "openat2", "pause", "pidfd_open",
    "pidfd_send_signal", "pipe", "pipe2", "pkey_alloc", "pkey_free", "pkey_mprotect", "poll",
    "ppoll", "ppoll_time64", "prctl", "pread64", "preadv", "preadv2", "prlimit64",
    "process_mrelease", "process_vm_readv", "process_vm_writev", "pselect6",
    "pselect6_time64", "ptrace", "pwrite64", "pwritev", "pwritev2", "read", "readahead",
    "readlink", "readlinkat", "readv", "recv", "recvfrom", "recvmmsg", "recvmmsg_time64",
    "recvmsg", "remap_file_pages", "removexattr", "rename", "renameat", "renameat2",
    "restart_syscall", "rmdir", "rseq", "rt_sigaction", "rt_sigpending", "rt_sigprocmask",
    "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait",
    "rt_sigtimedwait_time64", "rt_tgsigqueueinfo", "sched_get_priority_max",
    "sched_get_priority_min", "sched_getaffinity", "sched_getattr", "sched_getparam",
    "sched_getscheduler", "sched_rr_get_interval", "sched_rr_get_interval_time64",
    "sched_setaffinity", "sched_setattr", "sched_setparam", "sched_setscheduler", "sched_yield",
    "seccomp", "select", "semctl", "semget", "semop", "semtimedop", "semtimedop_time64", "send",
    "sendfile", "sendfile64", "sendmmsg", "sendmsg", "sendto", "set_robust_list",
    "set_thread_area", "set_tid_address", "setfsgid", "setfsgid32", "setfsuid", "setfsuid32",
    "setgid", "setgid32", "setgroups", "setgroups32", "setitimer", "setpgid", "setpriority",
    "setregid", "setregid32", "setresgid", "setresgid32", "setresuid", "setresuid32",
    "setreuid", "setreuid32", "setrlimit", "setsid", "setsockopt", "setuid", "setuid32",
    "setxattr", "shmat", "shmctl", "shmdt", "shmget", "shutdown", "sigaltstack", "signalfd",
    "signalfd4", "sigprocmask", "sigreturn", "socketcall", "socketpair", "splice", "stat",
    "stat64", "statfs", "statfs64", "statx", "symlink", "symlinkat", "sync", "sync_file_range",
    "syncfs", "sysinfo", "tee", "tgkill", "time", "timer_create", "timer_delete",
    "timer_getoverrun", "timer_gettime", "timer_gettime64", "timer_settime",
    "timer_settime64", "timerfd_create", "timerfd_gettime", "timerfd_gettime64",
    "timerfd_settime", "timerfd_settime64", "times", "tkill", "truncate", "truncate64",
    "ugetrlimit", "umask", "uname", "unlink", "unlinkat", "utime", "utimensat",
    "utimensat_time64", "utimes", "vfork", "vmsplice", "wait4", "waitid", "waitpid", "write",
    "writev",
    // arm and arm64 only
    "arm_fadvise64_64", "arm_sync_file_range", "breakpoint", "cacheflush", "set_tls",
    "sync_file_range2",
};
// clang-format on

// Syscalls governed by a capability: allowed only when the container's bounding set holds
// one of `caps`.
struct CapGroup {
  std::vector<const char*> caps;
  std::vector<const char*> names;
};

const std::vector<CapGroup>& CapGroups() {
  // clang-format off
  static const std::vector<CapGroup> groups = {
      {{"CAP_SYS_ADMIN"},
       {"bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick",
        "lookup_dcookie", "mount", "mount_setattr", "move_mount", "open_tree",
        "perf_event_open", "quotactl", "quotactl_fd", "setdomainname", "sethostname", "setns",
        "syslog", "umount", "umount2", "unshare"}},
      {{"CAP_SYS_BOOT"}, {"reboot"}},
      {{"CAP_SYS_CHROOT"}, {"chroot"}},
      {{"CAP_SYS_MODULE"}, {"delete_module", "init_module", "finit_module"}},
      {{"CAP_SYS_PACCT"}, {"acct"}},
      {{"CAP_SYS_PTRACE"}, {"kcmp", "pidfd_getfd", "process_madvise"}},
      {{"CAP_SYS_RAWIO"}, {"iopl", "ioperm"}},
      {{"CAP_SYS_TIME"}, {"settimeofday", "stime", "clock_settime", "clock_settime64"}},
      {{"CAP_SYS_TTY_CONFIG"}, {"vhangup"}},
      {{"CAP_SYS_NICE"}, {"mbind", "set_mempolicy", "set_mempolicy_home_node"}},
      {{"CAP_SYSLOG"}, {"syslog"}},
      {{"CAP_BPF"}, {"bpf"}},
      {{"CAP_PERFMON"}, {"perf_event_open"}},
      {{"CAP_DAC_READ_SEARCH"}, {"open_by_handle_at"}},
  };
  // clang-format on
  return groups;
}

json Arg(int index, uint64_t value, const char* op, uint64_t value_two = 0) {
  return {{"index", index}, {"value", value}, {"valueTwo", value_two}, {"op", op}};
}

json Rule(std::vector<std::string> names, const char* action, json args = nullptr) {
  json r = {{"names", std::move(names)}, {"action", action}};
  if (!args.is_null()) r["args"] = std::move(args);
  return r;
}

std::vector<std::string> NativeArches(const std::string& arch) {
  if (arch == "x86_64") return {"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"};
  if (arch == "aarch64") return {"SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"};
  if (arch == "i386" || arch == "i686") return {"SCMP_ARCH_X86"};
  if (arch == "armv7l" || arch == "arm") return {"SCMP_ARCH_ARM"};
  if (arch == "ppc64le") return {"SCMP_ARCH_PPC64LE"};
  if (arch == "s390x") return {"SCMP_ARCH_S390X", "SCMP_ARCH_S390"};
  if (arch == "riscv64") return {"SCMP_ARCH_RISCV64"};
  return {};
}

// The SCMP_ARCH of Docker's / Go's architecture names ("amd64", "arm64").
const std::set<std::string, std::less<>>& KnownArches() {
  static const std::set<std::string, std::less<>> arches = {
      "SCMP_ARCH_X86",     "SCMP_ARCH_X86_64",   "SCMP_ARCH_X32",         "SCMP_ARCH_ARM",
      "SCMP_ARCH_AARCH64", "SCMP_ARCH_MIPS",     "SCMP_ARCH_MIPS64",      "SCMP_ARCH_MIPS64N32",
      "SCMP_ARCH_MIPSEL",  "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC",
      "SCMP_ARCH_PPC64",   "SCMP_ARCH_PPC64LE",  "SCMP_ARCH_S390",        "SCMP_ARCH_S390X",
      "SCMP_ARCH_PARISC",  "SCMP_ARCH_PARISC64", "SCMP_ARCH_RISCV64",     "SCMP_ARCH_LOONGARCH64"};
  return arches;
}

const std::set<std::string, std::less<>>& KnownActions() {
  static const std::set<std::string, std::less<>> actions = {
      "SCMP_ACT_KILL",  "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD",
      "SCMP_ACT_TRAP",  "SCMP_ACT_ERRNO",        "SCMP_ACT_TRACE",
      "SCMP_ACT_ALLOW", "SCMP_ACT_LOG",          "SCMP_ACT_NOTIFY"};
  return actions;
}

const std::set<std::string, std::less<>>& KnownOps() {
  static const std::set<std::string, std::less<>> ops = {
      "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE",       "SCMP_CMP_EQ",
      "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ"};
  return ops;
}

const std::set<std::string, std::less<>>& KnownFlags() {
  static const std::set<std::string, std::less<>> flags = {
      "SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
      "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"};
  return flags;
}

absl::Status Bad(absl::string_view where, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(where, ": ", why));
}

// Docker's architecture names of "includes"/"excludes" "arches".
bool ArchMatches(const std::string& docker_arch, const std::string& arch) {
  if (docker_arch == arch) return true;
  if (arch == "x86_64")
    return docker_arch == "amd64" || docker_arch == "x32" || docker_arch == "386";
  if (arch == "aarch64") return docker_arch == "arm64" || docker_arch == "arm";
  return false;
}

// Docker's "includes" / "excludes" of a rule: does the rule apply?
absl::StatusOr<bool> DockerConditions(const json& rule, const std::string& where,
                                      const std::set<std::string>& caps, const std::string& arch) {
  auto list = [&](const json& obj, const char* key,
                  const std::string& w) -> absl::StatusOr<std::vector<std::string>> {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return std::vector<std::string>{};
    if (!it->is_array()) return Bad(w + "." + key, "not an array of strings");
    std::vector<std::string> out;
    for (const json& v : *it) {
      if (!v.is_string()) return Bad(w + "." + key, "not an array of strings");
      out.push_back(v.get<std::string>());
    }
    return out;
  };
  for (const char* which : {"includes", "excludes"}) {
    auto it = rule.find(which);
    if (it == rule.end() || it->is_null()) continue;
    const std::string w = where + "." + which;
    if (!it->is_object()) return Bad(w, "not an object");
    const bool include = std::string(which) == "includes";
    ASSIGN_OR_RETURN(std::vector<std::string> want_caps, list(*it, "caps", w));
    ASSIGN_OR_RETURN(std::vector<std::string> want_arches, list(*it, "arches", w));
    // includes: every cap held and the arch listed; excludes: any cap held or the arch listed.
    bool caps_hit = include ? true : false;
    for (const std::string& c : want_caps) {
      bool held = caps.count(c) > 0;
      if (include && !held) caps_hit = false;
      if (!include && held) caps_hit = true;
    }
    bool arch_hit = include ? want_arches.empty() : false;
    for (const std::string& a : want_arches) {
      if (ArchMatches(a, arch)) arch_hit = true;
    }
    if (include && (!caps_hit || !arch_hit)) return false;
    if (!include && (caps_hit || arch_hit)) return false;
  }
  return true;
}

}  // namespace

std::string HostSeccompArch() {
  struct utsname u;
  if (::uname(&u) != 0) return "";
  return u.machine;
}

json DefaultSeccompProfile(const std::vector<std::string>& capabilities, const std::string& arch) {
  const std::set<std::string> caps(capabilities.begin(), capabilities.end());
  const bool sys_admin = caps.count("CAP_SYS_ADMIN") > 0;

  std::set<std::string> allowed(std::begin(kAllowed), std::end(kAllowed));
  for (const CapGroup& g : CapGroups()) {
    if (std::any_of(g.caps.begin(), g.caps.end(),
                    [&](const char* c) { return caps.count(c) > 0; })) {
      allowed.insert(g.names.begin(), g.names.end());
    }
  }
  json syscalls = json::array();
  syscalls.push_back(
      Rule(std::vector<std::string>(allowed.begin(), allowed.end()), "SCMP_ACT_ALLOW"));
  // personality(2): the execution domains programs use (Linux, with ADDR_NO_RANDOMIZE,
  // UNAME26, PER_LINUX32) and the query 0xffffffff; not the others.
  for (uint64_t persona : {0x0ull, 0x0008ull, 0x20000ull, 0x20008ull, 0xffffffffull}) {
    syscalls.push_back(
        Rule({"personality"}, "SCMP_ACT_ALLOW", json::array({Arg(0, persona, "SCMP_CMP_EQ")})));
  }
  // socket(2) of every family but AF_VSOCK (host communication channels).
  syscalls.push_back(
      Rule({"socket"}, "SCMP_ACT_ALLOW", json::array({Arg(0, kAfVsock, "SCMP_CMP_NE")})));
  if (!sys_admin) {
    // clone(2) without namespace flags; clone3(2) cannot be filtered on its flags (they are
    // in a struct), so it reports ENOSYS and libcs fall back to clone(2).
    syscalls.push_back(Rule({"clone"}, "SCMP_ACT_ALLOW",
                            json::array({Arg(0, kCloneNamespaceFlags, "SCMP_CMP_MASKED_EQ", 0)})));
    json clone3 = Rule({"clone3"}, "SCMP_ACT_ERRNO");
    clone3["errnoRet"] = kEnosys;
    syscalls.push_back(std::move(clone3));
  }
  return {{"defaultAction", "SCMP_ACT_ERRNO"},
          {"defaultErrnoRet", kEperm},
          {"architectures", NativeArches(arch)},
          {"syscalls", std::move(syscalls)}};
}

absl::StatusOr<json> ParseSeccompProfile(const std::string& text,
                                         const std::vector<std::string>& capabilities,
                                         const std::string& arch) {
  json doc;
  try {
    doc = json::parse(text);
  } catch (const json::exception& e) {
    return Bad("not valid JSON", e.what());
  }
  if (!doc.is_object()) return Bad("profile", "not a JSON object");
  // A whole config.json or {"seccomp": {...}}: the seccomp object inside.
  if (auto l = doc.find("linux"); l != doc.end() && l->is_object() && l->contains("seccomp")) {
    doc = (*l)["seccomp"];
  } else if (auto s = doc.find("seccomp"); s != doc.end() && s->is_object()) {
    doc = *s;
  }
  if (!doc.is_object()) return Bad("profile", "not a JSON object");
  const std::set<std::string> caps(capabilities.begin(), capabilities.end());
  json out = json::object();

  auto action_of = [](const json& v, const std::string& where) -> absl::StatusOr<std::string> {
    if (!v.is_string()) return Bad(where, "not a string");
    std::string a = v.get<std::string>();
    if (KnownActions().count(a) == 0) {
      return Bad(where, absl::StrCat("unknown action \"", a, "\" (expected one of ",
                                     absl::StrJoin(KnownActions(), ", "), ")"));
    }
    return a;
  };
  auto errno_of = [](const json& v, const std::string& where) -> absl::StatusOr<uint64_t> {
    if (!v.is_number_unsigned() && !(v.is_number_integer() && v.get<int64_t>() >= 0)) {
      return Bad(where, "not a non-negative integer");
    }
    return v.get<uint64_t>();
  };

  auto da = doc.find("defaultAction");
  if (da == doc.end()) return Bad("defaultAction", "missing");
  ASSIGN_OR_RETURN(out["defaultAction"], action_of(*da, "defaultAction"));
  if (auto it = doc.find("defaultErrnoRet"); it != doc.end() && !it->is_null()) {
    ASSIGN_OR_RETURN(out["defaultErrnoRet"], errno_of(*it, "defaultErrnoRet"));
  }

  std::vector<std::string> arches;
  auto add_arch = [&](const json& v, const std::string& where) -> absl::Status {
    if (!v.is_string() || KnownArches().count(v.get<std::string>()) == 0) {
      return Bad(where, absl::StrCat("unknown architecture ", v.dump()));
    }
    if (std::find(arches.begin(), arches.end(), v.get<std::string>()) == arches.end()) {
      arches.push_back(v.get<std::string>());
    }
    return absl::OkStatus();
  };
  if (auto it = doc.find("architectures"); it != doc.end() && !it->is_null()) {
    if (!it->is_array()) return Bad("architectures", "not an array");
    for (size_t i = 0; i < it->size(); ++i) {
      RETURN_IF_ERROR(add_arch((*it)[i], absl::StrCat("architectures[", i, "]")));
    }
  }
  if (auto it = doc.find("archMap"); it != doc.end() && !it->is_null()) {
    // Docker: the entry of the host's native architecture with its sub-architectures.
    if (!it->is_array()) return Bad("archMap", "not an array");
    const std::vector<std::string> native = NativeArches(arch);
    for (size_t i = 0; i < it->size(); ++i) {
      const json& e = (*it)[i];
      const std::string w = absl::StrCat("archMap[", i, "]");
      if (!e.is_object() || !e.contains("architecture")) return Bad(w, "no architecture");
      const json& a = e["architecture"];
      if (!a.is_string() || KnownArches().count(a.get<std::string>()) == 0) {
        return Bad(w + ".architecture", absl::StrCat("unknown architecture ", a.dump()));
      }
      if (native.empty() || a.get<std::string>() != native.front()) continue;
      RETURN_IF_ERROR(add_arch(a, w + ".architecture"));
      if (auto sub = e.find("subArchitectures"); sub != e.end() && !sub->is_null()) {
        if (!sub->is_array()) return Bad(w + ".subArchitectures", "not an array");
        for (size_t j = 0; j < sub->size(); ++j) {
          RETURN_IF_ERROR(add_arch((*sub)[j], absl::StrCat(w, ".subArchitectures[", j, "]")));
        }
      }
    }
  }
  if (!arches.empty()) out["architectures"] = arches;

  if (auto it = doc.find("flags"); it != doc.end() && !it->is_null()) {
    if (!it->is_array()) return Bad("flags", "not an array");
    for (size_t i = 0; i < it->size(); ++i) {
      const json& f = (*it)[i];
      if (!f.is_string() || KnownFlags().count(f.get<std::string>()) == 0) {
        return Bad(absl::StrCat("flags[", i, "]"), absl::StrCat("unknown flag ", f.dump()));
      }
    }
    out["flags"] = *it;
  }
  for (const char* key : {"listenerPath", "listenerMetadata"}) {
    if (auto it = doc.find(key); it != doc.end() && !it->is_null()) {
      if (!it->is_string()) return Bad(key, "not a string");
      out[key] = *it;
    }
  }

  json syscalls = json::array();
  if (auto it = doc.find("syscalls"); it != doc.end() && !it->is_null()) {
    if (!it->is_array()) return Bad("syscalls", "not an array");
    for (size_t i = 0; i < it->size(); ++i) {
      const json& r = (*it)[i];
      const std::string w = absl::StrCat("syscalls[", i, "]");
      if (!r.is_object()) return Bad(w, "not an object");
      ASSIGN_OR_RETURN(bool applies, DockerConditions(r, w, caps, arch));
      json rule = json::object();
      std::vector<std::string> names;
      if (auto n = r.find("names"); n != r.end() && !n->is_null()) {
        if (!n->is_array()) return Bad(w + ".names", "not an array of strings");
        for (const json& v : *n) {
          if (!v.is_string() || v.get<std::string>().empty()) {
            return Bad(w + ".names", "not an array of syscall names");
          }
          names.push_back(v.get<std::string>());
        }
      }
      if (auto n = r.find("name"); n != r.end() && !n->is_null()) {
        if (!n->is_string() || n->get<std::string>().empty()) {
          return Bad(w + ".name", "not a syscall name");
        }
        names.push_back(n->get<std::string>());
      }
      if (names.empty()) return Bad(w, "no syscall names (\"names\")");
      auto a = r.find("action");
      if (a == r.end()) return Bad(w + ".action", "missing");
      ASSIGN_OR_RETURN(std::string action, action_of(*a, w + ".action"));
      rule["names"] = names;
      rule["action"] = action;
      if (auto e = r.find("errnoRet"); e != r.end() && !e->is_null()) {
        ASSIGN_OR_RETURN(rule["errnoRet"], errno_of(*e, w + ".errnoRet"));
      }
      if (auto args = r.find("args"); args != r.end() && !args->is_null()) {
        if (!args->is_array()) return Bad(w + ".args", "not an array");
        json out_args = json::array();
        for (size_t j = 0; j < args->size(); ++j) {
          const json& arg = (*args)[j];
          const std::string aw = absl::StrCat(w, ".args[", j, "]");
          if (!arg.is_object()) return Bad(aw, "not an object");
          auto idx = arg.find("index");
          if (idx == arg.end() || !idx->is_number_unsigned() || idx->get<uint64_t>() > 5) {
            return Bad(aw + ".index", "not an argument index 0..5");
          }
          json oa = {{"index", idx->get<uint64_t>()}};
          for (const char* vk : {"value", "valueTwo"}) {
            auto v = arg.find(vk);
            if (v == arg.end() || v->is_null()) {
              oa[vk] = 0;
            } else if (!v->is_number_unsigned()) {
              return Bad(absl::StrCat(aw, ".", vk), "not an unsigned integer");
            } else {
              oa[vk] = v->get<uint64_t>();
            }
          }
          auto op = arg.find("op");
          if (op == arg.end() || !op->is_string() ||
              KnownOps().count(op->get<std::string>()) == 0) {
            return Bad(aw + ".op", absl::StrCat("unknown operator ",
                                                op == arg.end() ? "(missing)" : op->dump()));
          }
          oa["op"] = *op;
          out_args.push_back(std::move(oa));
        }
        if (!out_args.empty()) rule["args"] = std::move(out_args);
      }
      if (applies) syscalls.push_back(std::move(rule));
    }
  }
  out["syscalls"] = std::move(syscalls);
  return out;
}

absl::StatusOr<json> ResolveSeccomp(const SeccompRequest& req,
                                    const std::vector<std::string>& capabilities,
                                    const SecurityEnv& env) {
  runtime::v1::SecurityProfile::ProfileType type;
  std::string path, field;
  if (req.profile != nullptr) {
    type = req.profile->profile_type();
    path = req.profile->localhost_ref();
    field = req.field + ".seccomp";
  } else {
    // The deprecated string: "" is unconfined (the kubelet's default for it).
    field = req.field + ".seccomp_profile_path";
    absl::string_view p = req.legacy_path;
    if (p.empty() || p == "unconfined") {
      type = runtime::v1::SecurityProfile::Unconfined;
    } else if (p == "runtime/default" || p == "docker/default") {
      type = runtime::v1::SecurityProfile::RuntimeDefault;
    } else if (absl::ConsumePrefix(&p, "localhost/")) {
      type = runtime::v1::SecurityProfile::Localhost;
      path = std::string(p);
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat(field, " \"", req.legacy_path,
                       "\": not a profile (expected \"\", \"unconfined\", \"runtime/default\", "
                       "\"docker/default\" or \"localhost/<absolute path>\")"));
    }
  }
  switch (type) {
    case runtime::v1::SecurityProfile::Unconfined:
      return json(nullptr);
    case runtime::v1::SecurityProfile::RuntimeDefault:
      return DefaultSeccompProfile(capabilities);
    case runtime::v1::SecurityProfile::Localhost:
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".profile_type: unknown value ", static_cast<int>(type)));
  }
  const std::string ref_field = req.profile != nullptr ? field + ".localhost_ref" : field;
  if (path.empty() || path[0] != '/') {
    return absl::InvalidArgumentError(absl::StrCat(
        ref_field, " \"", path,
        "\": a Localhost seccomp profile must be an absolute path to a JSON profile on the "
        "node"));
  }
  absl::StatusOr<std::string> text = env.read_file ? env.read_file(path) : ReadHostFile(path);
  if (!text.ok()) {
    if (absl::IsNotFound(text.status())) {
      return absl::InvalidArgumentError(
          absl::StrCat(ref_field, " \"", path,
                       "\": no such file on the node (write the seccomp profile there first)"));
    }
    return absl::InvalidArgumentError(absl::StrCat(
        ref_field, " \"", path, "\": cannot read the profile: ", text.status().message()));
  }
  absl::StatusOr<json> profile = ParseSeccompProfile(*text, capabilities);
  if (!profile.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        ref_field, " \"", path, "\": bad seccomp profile: ", profile.status().message()));
  }
  return *profile;
}

}  // namespace berth::cri
