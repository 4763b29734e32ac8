// SPDX-License-Identifier: Apache-2.0
// cgroupfs cgroup paths (docs/cgroups.md §2): the kubelet's pod parent
// ("/kubepods/burstable/pod<uid>") plus a sandbox or container id, the OCI
// linux.cgroupsPath the runtime creates in every hierarchy.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace berth::cgroupfs {

// The parent of a process group whose sandbox config names none (crictl without
// linux.cgroup_parent, for one).
inline constexpr std::string_view kDefaultParent = "/berth";

// Checks a cgroups path in cgroupfs syntax: absolute, no empty, "." or ".." segment, each
// segment at most NAME_MAX bytes without control characters, no systemd ".slice" syntax.
// "/" alone is accepted (the root cgroup). INVALID_ARGUMENT naming `what` and the fault.
[[nodiscard]] absl::Status ValidateCgroupPath(std::string_view path, std::string_view what);

// "<parent>/<id>", with kDefaultParent for an empty parent. INVALID_ARGUMENT when the parent
// is not a valid cgroupfs path (with a hint when it is a systemd one) or the id is empty or
// holds anything but letters, digits, '_', '.' and '-'.
[[nodiscard]] absl::StatusOr<std::string> ContainerCgroupPath(std::string_view parent,
                                                              std::string_view id);

}  // namespace berth::cgroupfs
