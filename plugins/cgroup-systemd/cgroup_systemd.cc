// SPDX-License-Identifier: Apache-2.0
#include "plugins/cgroup-systemd/cgroup_systemd.h"

#include <sys/stat.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "plugins/cgroup-fs/absl_view.h"
#include "plugins/cgroup-fs/cgroup_fs.h"

namespace berth::cgroup_systemd {
namespace {

bool IsDirectory(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool Stopped(const std::optional<UnitState>& state) {
  return !state || state->active_state == "inactive" || state->active_state == "failed";
}

// The same status with `context` before its message.
absl::Status Annotate(const absl::Status& s, std::string_view context) {
  return absl::Status(s.code(), absl::StrCat(cgroupfs::AbslView(context), ": ", s.message()));
}

}  // namespace

absl::StatusOr<CgroupSystemd> CgroupSystemd::Open(DriverOptions options) {
  RETURN_IF_ERROR(ValidateScopePrefix(options.scope_prefix));
  ASSIGN_OR_RETURN(cgroupfs::Layout layout, cgroupfs::DetectLayout(options.cgroup_root));
  return CgroupSystemd(std::move(options), std::move(layout));
}

absl::StatusOr<SystemdBus> CgroupSystemd::Connect() const {
  return SystemdBus::Open(options_.bus_address);
}

sdk::Readiness CgroupSystemd::Readiness() const {
  sdk::Readiness cgroups = cgroupfs::CgroupFs(layout_).Readiness();
  if (!cgroups.ready) return cgroups;
  absl::StatusOr<SystemdBus> bus = Connect();
  if (!bus.ok()) {
    return sdk::Readiness::NotReady("SystemdUnreachable", std::string(bus.status().message()));
  }
  // Only the system manager has init.scope, and pid 1 is in it when that manager is the
  // init of its PID namespace (pids in the reply are systemd's own).
  absl::StatusOr<std::vector<UnitProcess>> init = bus->UnitProcesses("init.scope");
  bool pid1 = init.ok() && std::any_of(init->begin(), init->end(),
                                       [](const UnitProcess& p) { return p.pid == 1; });
  if (!pid1) {
    if (!init.ok() && !absl::IsNotFound(init.status())) {
      return sdk::Readiness::NotReady(
          "SystemdUnreachable", absl::StrCat("systemd ", bus->version(), " on ", bus->address(),
                                             " does not answer: ", init.status().message()));
    }
    return sdk::Readiness::NotReady(
        "SystemdNotInit",
        absl::StrCat("systemd ", bus->version(), " on ", bus->address(),
                     " is not the system manager running as PID 1 (its init.scope does not "
                     "hold pid 1), so it does not own the cgroup tree; point bus_address of "
                     "io.berth.cgroup.systemd at the init's systemd, or use cgroup_driver: "
                     "cgroupfs"));
  }
  return sdk::Readiness::Ready();
}

absl::StatusOr<std::string> CgroupSystemd::CgroupPath(std::string_view cgroup_parent,
                                                      std::string_view id) const {
  ASSIGN_OR_RETURN(ScopePath scope, ScopeFor(cgroup_parent, options_.scope_prefix, id));
  return scope.CgroupsPath();
}

std::string CgroupSystemd::ScopeDir(const ScopePath& scope, std::string_view controller) const {
  return DirOf(scope.CgroupDir(), controller);
}

std::string CgroupSystemd::DirOf(const std::string& rel, std::string_view controller) const {
  std::string base = controller.empty() || layout_.version == cgroupfs::CgroupVersion::kV2
                         ? layout_.unified
                         : layout_.V1Dir(controller);
  return base.empty() ? base : base + rel;
}

std::string CgroupSystemd::ExistingDir(const ScopePath& scope) const {
  const std::string rel = scope.CgroupDir();
  for (const std::string& base : layout_.AllHierarchies()) {
    if (IsDirectory(base + rel)) return base + rel;
  }
  return "";
}

absl::StatusOr<cgroupfs::CgroupStats> CgroupSystemd::Stats(std::string_view cgroups_path) const {
  // A container's scope ("slice:prefix:name"), or a pod's slice: the CRI asks for a pod's
  // figures with the kubelet's cgroup_parent, a slice name or the slice's expanded path.
  std::string rel, what;
  if (!cgroups_path.empty() && cgroups_path.find(':') == std::string_view::npos) {
    ASSIGN_OR_RETURN(std::string slice, ParentSlice(cgroups_path));
    ASSIGN_OR_RETURN(rel, SliceCgroupPath(slice));
    what = absl::StrCat("systemd slice ", slice);
  } else {
    ASSIGN_OR_RETURN(ScopePath scope, ParseCgroupsPath(cgroups_path));
    rel = scope.CgroupDir();
    what =
        absl::StrCat("systemd scope ", scope.Unit(), " (cgroups path ", scope.CgroupsPath(), ")");
  }
  if (layout_.version == cgroupfs::CgroupVersion::kNone) {
    return absl::FailedPreconditionError(absl::StrCat(
        "no cgroup hierarchy under ", layout_.root,
        " (neither cgroup v2 nor v1 controllers); mount the cgroup filesystems (or set "
        "cgroup_root of io.berth.cgroup.systemd) and restart berthd"));
  }
  absl::StatusOr<cgroupfs::CgroupStats> stats;
  if (layout_.version == cgroupfs::CgroupVersion::kV2) {
    stats = cgroupfs::ReadV2Stats(DirOf(rel, ""));
  } else {
    cgroupfs::V1StatsDirs dirs;
    dirs.cpuacct = DirOf(rel, "cpuacct");
    dirs.memory = DirOf(rel, "memory");
    dirs.pids = DirOf(rel, "pids");
    dirs.unified = DirOf(rel, "");  // the hybrid host's cgroup2 mount (PSI); "" on pure v1
    stats = cgroupfs::ReadV1Stats(dirs);
  }
  if (absl::IsNotFound(stats.status())) {
    return absl::NotFoundError(
        absl::StrCat(what, " has no cgroup: ", stats.status().message(),
                     "; the unit is not running (its processes exited, or it was never started)"));
  }
  return stats;
}

absl::Status CgroupSystemd::RemoveLeftovers(const ScopePath& scope) const {
  if (layout_.version == cgroupfs::CgroupVersion::kNone) return absl::OkStatus();
  // cgroup-fs's removal (child cgroups first, EBUSY retries, the pid that stays) over a
  // layout rebased on the slice's directory: its path syntax check refuses ".slice"
  // segments, which are this driver's everyday paths.
  ASSIGN_OR_RETURN(std::string slice_dir, SliceCgroupPath(scope.slice));
  cgroupfs::Layout rebased = layout_;
  for (std::string& h : rebased.v1_hierarchies) h += slice_dir;
  if (!rebased.unified.empty()) rebased.unified += slice_dir;
  absl::Status s = cgroupfs::CgroupFs(std::move(rebased)).Remove("/" + scope.Unit());
  if (!s.ok()) {
    return Annotate(s, absl::StrCat("remove the cgroup of systemd scope ", scope.Unit(),
                                    " (cgroups path ", scope.CgroupsPath(), ")"));
  }
  return absl::OkStatus();
}

absl::Status CgroupSystemd::Remove(std::string_view cgroups_path) const {
  ASSIGN_OR_RETURN(ScopePath scope, ParseCgroupsPath(cgroups_path));
  const std::string unit = scope.Unit();
  const std::string context =
      absl::StrCat("remove systemd scope ", unit, " (cgroups path ", scope.CgroupsPath(), ")");
  absl::StatusOr<SystemdBus> bus = Connect();
  if (!bus.ok()) {
    // Without systemd nothing can be stopped; nothing needs to be when no cgroup is left.
    std::string dir = ExistingDir(scope);
    if (dir.empty()) return absl::OkStatus();
    return absl::UnavailableError(
        absl::StrCat(context, ": its cgroup ", dir,
                     " still exists and systemd cannot be reached: ", bus.status().message()));
  }
  ASSIGN_OR_RETURN(std::optional<std::string> object, bus->FindUnit(unit));
  if (object) {
    absl::StatusOr<UnitState> state = bus->GetUnitState(*object, unit);
    if (!state.ok() && !absl::IsNotFound(state.status())) {
      return Annotate(state.status(), context);
    }
    if (state.ok() && !Stopped(*state)) {
      absl::StatusOr<std::string> job = bus->StopUnit(unit, "replace");
      if (!job.ok() && !absl::IsNotFound(job.status())) return Annotate(job.status(), context);
      absl::StatusOr<std::optional<UnitState>> stopped =
          bus->WaitForUnit(unit, options_.stop_timeout, Stopped);
      if (absl::IsDeadlineExceeded(stopped.status())) {
        absl::StatusOr<std::vector<UnitProcess>> procs = bus->UnitProcesses(unit);
        std::string who = "processes remain";
        if (procs.ok() && !procs->empty()) {
          const UnitProcess& p = procs->front();
          who = absl::StrCat(
              "pid ", p.pid, " (", p.command, ")",
              procs->size() > 1 ? absl::StrCat(" and ", procs->size() - 1, " more processes remain")
                                : " remains");
        }
        return absl::FailedPreconditionError(absl::StrCat(
            context, ": the unit did not stop within ", options_.stop_timeout.count(), " ms and ",
            who, " in it (", stopped.status().message(),
            "); systemd sends SIGKILL once the unit's TimeoutStopSec (90 s by default) has "
            "passed. Retry later, or kill what remains"));
      }
      if (!stopped.ok()) return Annotate(stopped.status(), context);
    }
    // A scope whose processes were killed ends "failed" and stays loaded until reset.
    if (absl::Status s = bus->ResetFailedUnit(unit); !s.ok()) return Annotate(s, context);
  }
  return RemoveLeftovers(scope);
}

}  // namespace berth::cgroup_systemd
