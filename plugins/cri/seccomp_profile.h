// SPDX-License-Identifier: Apache-2.0
// Seccomp profiles of containers as OCI linux.seccomp objects: berth's RuntimeDefault profile
// (deny with EPERM by default, allow what Docker's and containerd's default profiles allow,
// capability-gated syscalls only with the capability) and Localhost profiles read from the
// node, in the OCI form or Docker's profile form.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cri/v1/api.pb.h"
#include "plugins/cri/lsm.h"

namespace berth::cri {

// The host's architecture as the profiles name it: "x86_64", "aarch64", or another uname
// machine string (then only that one native SCMP arch, when known).
[[nodiscard]] std::string HostSeccompArch();

// The RuntimeDefault profile for a container whose bounding set is `capabilities`
// ("CAP_SYS_ADMIN", ...), on `arch` (HostSeccompArch()).
[[nodiscard]] nlohmann::json DefaultSeccompProfile(const std::vector<std::string>& capabilities,
                                                   const std::string& arch = HostSeccompArch());

// A profile document (OCI linux.seccomp or Docker's format: "archMap", "name", "includes",
// "excludes", "comment") as a checked OCI linux.seccomp object. Docker conditions are
// evaluated against `capabilities` and `arch`. INVALID_ARGUMENT describing what is wrong.
[[nodiscard]] absl::StatusOr<nlohmann::json> ParseSeccompProfile(
    const std::string& text, const std::vector<std::string>& capabilities,
    const std::string& arch = HostSeccompArch());

// What a CRI request resolves to.
struct SeccompRequest {
  const runtime::v1::SecurityProfile* profile = nullptr;  // null when unset
  std::string legacy_path;  // the deprecated seccomp_profile_path, used when profile is null
  std::string field;        // "linux.security_context" (errors name <field>.seccomp...)
};

// linux.seccomp for the request; a null json = no filter (Unconfined). Localhost files are read
// through env.read_file (the host when null).
[[nodiscard]] absl::StatusOr<nlohmann::json> ResolveSeccomp(
    const SeccompRequest& req, const std::vector<std::string>& capabilities,
    const SecurityEnv& env);

}  // namespace berth::cri
