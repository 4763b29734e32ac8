// SPDX-License-Identifier: Apache-2.0
// Runtime probe for the runc plugin: which OCI runtime a binary is (`<binary> --version`), how
// the host's cgroups are laid out, and whether that runtime can create containers here.
//
// The case this exists for (docs/adr/0005-crun-on-hybrid-cgroups.md): on a "hybrid" host
// (cgroup v1 controllers on a tmpfs at /sys/fs/cgroup plus a cgroup2 mount at
// /sys/fs/cgroup/unified whose cgroup.controllers is not empty, e.g. "hugetlb"), crun 1.8.1
// refuses every create/run with "cgroups in hybrid mode not supported, drop all controllers
// from cgroupv2", whatever its --cgroup-manager. runc works there. crun decides this with
// statfs("/sys/fs/cgroup") == TMPFS, statfs("/sys/fs/cgroup/unified") == CGROUP2 and a
// non-empty /sys/fs/cgroup/unified/cgroup.controllers. Run in a new mount namespace in which
// /sys/fs/cgroup is made recursively slave and the cgroup2 mount at .../unified is detached,
// crun sees a pure v1 layout and works (create/start/exec/kill/delete, memory limits in the v1
// memory controller). ApplyCrunHybridWorkaroundInChild does exactly that in the child that is
// about to exec crun. What it changes compared with runc is listed in the ADR (the container
// gets no cgroup of its own in the cgroup2 hierarchy).
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace berth::runc {

// ---- Which runtime -------------------------------------------------------------------------

enum class RuntimeKind { kOther, kRunc, kCrun };

struct RuntimeIdentity {
  RuntimeKind kind = RuntimeKind::kOther;
  // The first word of the first line ("runc", "crun", "youki", ...).
  std::string name;
  // The word after "version" on the first line ("1.1.5+ds1", "1.8.1").
  std::string version;
  // The value of a "spec: X" line, if any ("1.0.2-dev").
  std::string spec_version;
};

// Pure: parses the stdout of `<runtime> --version`. The first non-empty line must read
// "<name> version <version>" (a colon after "version" is accepted); INVALID_ARGUMENT otherwise.
[[nodiscard]] absl::StatusOr<RuntimeIdentity> ParseRuntimeVersion(std::string_view output);

// Runs `<binary> --version` (binary: a path, or a name looked up in PATH) with `timeout` and
// parses its stdout. NOT_FOUND / PERMISSION_DENIED when it cannot be run, DEADLINE_EXCEEDED
// when it did not finish in time, FAILED_PRECONDITION (with its stderr) on a non-zero exit.
[[nodiscard]] absl::StatusOr<RuntimeIdentity> IdentifyRuntime(
    const std::string& binary, std::chrono::milliseconds timeout = std::chrono::milliseconds(3000));

// ---- Cgroup layout -------------------------------------------------------------------------

// kV1: controllers mounted (type "cgroup") on a tmpfs at the root, no cgroup2 at <root>/unified.
// kHybrid: the same plus a cgroup2 mount at <root>/unified. kV2: cgroup2 mounted at the root.
// kUnknown: anything else (nothing mounted, an unexpected filesystem).
enum class CgroupLayout { kUnknown, kV1, kHybrid, kV2 };

std::string_view CgroupLayoutName(CgroupLayout layout);

inline constexpr char kCgroupRoot[] = "/sys/fs/cgroup";
inline constexpr char kUnifiedDir[] = "unified";

// What /proc/<pid>/mountinfo says about `root` and the mounts directly below it. Only visible
// mounts count: a mount hidden by a later one at the same place (or under a root that was
// mounted over) is ignored.
struct CgroupMountView {
  CgroupLayout layout = CgroupLayout::kUnknown;
  // Filesystem type of the mount at `root`; empty when `root` is not a mount point.
  std::string root_fstype;
  // How many mounts are stacked at <root>/unified with type cgroup2 (0: none; normally 1).
  int unified_cgroup2_mounts = 0;
  // Controllers of the v1 ("cgroup") mounts directly below `root`, from their superblock
  // options, e.g. "cpu", "memory", "name=systemd"; sorted, no duplicates.
  std::vector<std::string> v1_controllers;
};

// Pure: parses mountinfo text (the format of proc(5) /proc/<pid>/mountinfo; octal escapes in
// mount points are decoded). `root` is an absolute path without a trailing slash.
// INVALID_ARGUMENT, naming the line, for a malformed line.
[[nodiscard]] absl::StatusOr<CgroupMountView> ParseCgroupMountinfo(std::string_view mountinfo,
                                                                   std::string_view root);

// Pure: the words of a cgroup.controllers file ("hugetlb\n" -> {"hugetlb"}).
std::vector<std::string> ParseCgroupControllers(std::string_view text);

struct CgroupHost {
  std::string root;
  // From statfs, the way crun decides: CGROUP2_SUPER_MAGIC at `root` -> kV2; TMPFS_MAGIC at
  // `root` and CGROUP2_SUPER_MAGIC at <root>/unified -> kHybrid; TMPFS_MAGIC otherwise -> kV1;
  // any other filesystem -> kUnknown.
  CgroupLayout layout = CgroupLayout::kUnknown;
  // kHybrid only: <root>/unified/cgroup.controllers.
  std::vector<std::string> unified_controllers;
  // From the mountinfo text that was given.
  CgroupMountView mounts;
};

// Probes `root` with statfs (following symlinks, so a test can build a fake tree from a tmpfs
// directory and symlinks) and classifies `mountinfo` for the same root. An error when `root`
// cannot be statfs'd, or when hybrid and the controllers file cannot be read.
[[nodiscard]] absl::StatusOr<CgroupHost> ProbeCgroupHost(const std::string& root,
                                                         std::string_view mountinfo);
// The same with /proc/self/mountinfo.
[[nodiscard]] absl::StatusOr<CgroupHost> ProbeCgroupHost(const std::string& root = kCgroupRoot);

// ---- Verdict -------------------------------------------------------------------------------

enum class Readiness { kReady, kReadyWithWorkaround, kNotReady };

std::string_view ReadinessName(Readiness readiness);

inline constexpr char kReasonCrunHybridUnsupported[] = "CrunHybridCgroupsUnsupported";
inline constexpr char kReasonCrunHybridWorkaround[] = "CrunHybridCgroupsWorkaround";

struct RuntimeReadiness {
  Readiness readiness = Readiness::kReady;
  // CRI-style reason: empty when plainly ready, otherwise one of the kReason* constants.
  std::string reason;
  // For people: what the runtime refuses, what berth does about it, what to change.
  std::string message;
};

// True when the hybrid workaround can be applied on `host`: statfs says kHybrid, mountinfo
// shows a tmpfs mounted at the root and exactly one cgroup2 mount at <root>/unified.
bool CrunHybridWorkaroundApplicable(const CgroupHost& host);

// Pure. runc and unknown runtimes: ready (this probe knows of no problem with them). crun:
//  - layout kHybrid with a non-empty unified_controllers: kReadyWithWorkaround with reason
//    kReasonCrunHybridWorkaround when `allow_crun_workaround` and the workaround is applicable
//    (the caller must then wrap crun create/run with ApplyCrunHybridWorkaroundInChild);
//    otherwise kNotReady with reason kReasonCrunHybridUnsupported.
//  - anything else (v1, v2, hybrid whose cgroup2 holds no controller, unknown): ready.
RuntimeReadiness EvaluateRuntimeReadiness(const RuntimeIdentity& runtime, const CgroupHost& host,
                                          bool allow_crun_workaround = true);

// ---- Workaround ----------------------------------------------------------------------------

// For the child between fork/clone and execve of crun (not for posix_spawn, which has no
// hook). Async-signal-safe: only the unshare, mount, umount2 and statfs system calls, no
// allocation.
//  1. unshare(CLONE_NEWNS): a private copy of the caller's mount table. Propagation of every
//     other mount stays as it is, so shared volumes (Bidirectional propagation) behave as
//     with runc.
//  2. mount(NULL, cgroup_root, NULL, MS_REC | MS_SLAVE): nothing done below cgroup_root in
//     this namespace can reach the host's namespace. Mandatory: on a host where
//     /sys/fs/cgroup is shared (systemd hosts), skipping it would unmount the host's cgroup2.
//  3. umount2(unified, MNT_DETACH), repeated while statfs still finds a cgroup2 there
//     (stacked mounts), so crun's statfs of `unified` sees the tmpfs below.
// Returns 0, or the errno of the step that failed (the namespace is then in an unknown state:
// do not exec crun, _exit instead). Needs CAP_SYS_ADMIN. Both paths must be absolute and
// prepared (c_str()) before the fork.
int ApplyCrunHybridWorkaroundInChild(const char* cgroup_root, const char* unified) noexcept;

}  // namespace berth::runc
