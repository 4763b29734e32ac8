// SPDX-License-Identifier: Apache-2.0
// systemd unit names as the systemd cgroup driver uses them (docs/cgroup-drivers.md §2):
// slice names and their place in the cgroup tree, and the OCI linux.cgroupsPath in runc's
// systemd form "slice:prefix:name", which names the transient scope unit
// "<prefix>-<name>.scope" in that slice.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace berth::cgroup_systemd {

// The slice of a process group whose sandbox config names no cgroup_parent (crictl without
// linux.cgroup_parent). containerd and CRI-O use system.slice for this too.
inline constexpr std::string_view kDefaultSlice = "system.slice";
// The root slice; its cgroup is the root of the hierarchy.
inline constexpr std::string_view kRootSlice = "-.slice";
// The scope prefix when the configuration names none (scope_prefix).
inline constexpr std::string_view kDefaultScopePrefix = "berth";
// systemd refuses unit names of this length or more (including the suffix).
inline constexpr size_t kUnitNameMax = 256;

// Checks a slice unit name: letters, digits, '_', '.', '-' and '\' (the unit name
// characters without ':', which separates the fields of a cgroups path), ends in ".slice",
// shorter than kUnitNameMax; its prefix is not empty and has no empty dash-separated part
// (no leading or trailing '-', no "--"), the root slice "-.slice" aside.
// INVALID_ARGUMENT naming `what` and the fault.
[[nodiscard]] absl::Status ValidateSliceName(std::string_view slice, std::string_view what);

// The cgroup of a (valid) slice relative to the hierarchy root, following systemd's dash
// rule: "kubepods-burstable-pod1.slice" ->
// "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice"; "-.slice" -> "".
[[nodiscard]] absl::StatusOr<std::string> SliceCgroupPath(std::string_view slice);

// The slice a process group goes in, from the kubelet's cgroup_parent: kDefaultSlice when
// empty; the name itself when it is a slice name; the last component of an expanded slice
// path ("/kubepods.slice/kubepods-burstable.slice", as SliceCgroupPath gives) when the
// components nest as the dash rule says. Anything else is INVALID_ARGUMENT; a cgroupfs path
// ("/kubepods/burstable/pod1") says that the kubelet and berth disagree on the cgroup
// driver and how to make them agree.
[[nodiscard]] absl::StatusOr<std::string> ParentSlice(std::string_view cgroup_parent);

// Checks a scope prefix (scope_prefix in the configuration): 1 to 64 letters, digits, '_',
// '.' or '-'. INVALID_ARGUMENT naming the fault.
[[nodiscard]] absl::Status ValidateScopePrefix(std::string_view prefix);

// A transient scope as named by a cgroups path "slice:prefix:name".
struct ScopePath {
  std::string slice;   // "kubepods-besteffort-pod1.slice"
  std::string prefix;  // "berth"
  std::string name;    // the sandbox or container id

  // "<prefix>-<name>.scope".
  std::string Unit() const;
  // "slice:prefix:name".
  std::string CgroupsPath() const;
  // The scope's cgroup relative to the hierarchy root:
  // "/kubepods.slice/.../kubepods-besteffort-pod1.slice/berth-<name>.scope".
  std::string CgroupDir() const;
};

// The cgroups path of process group `id` (letters, digits, '_', '.', '-') in the slice
// ParentSlice(cgroup_parent) gives, with `prefix` (already valid). INVALID_ARGUMENT naming
// the fault; the unit name must stay shorter than kUnitNameMax.
[[nodiscard]] absl::StatusOr<ScopePath> ScopeFor(std::string_view cgroup_parent,
                                                 std::string_view prefix, std::string_view id);

// Parses a cgroups path of this driver, "slice:prefix:name" (as ScopeFor makes).
// INVALID_ARGUMENT naming the fault, with a hint when it is a cgroupfs path.
[[nodiscard]] absl::StatusOr<ScopePath> ParseCgroupsPath(std::string_view cgroups_path);

}  // namespace berth::cgroup_systemd
