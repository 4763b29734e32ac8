// SPDX-License-Identifier: Apache-2.0
// Linux security modules of the node (AppArmor, SELinux) and what CRI security profiles ask of
// them. berthd does not load AppArmor profiles or manage SELinux policy: it names a profile or
// a label in the OCI spec and the runtime applies it. On a node without the module, requests
// that can only be met by confinement fail with FAILED_PRECONDITION; requests for the node's
// default (RuntimeDefault, Unconfined) run unconfined, as containerd does.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "cri/v1/api.pb.h"

namespace berth::cri {

// Which LSMs the node can apply to containers.
inline constexpr char kDefaultAppArmorProfile[] = "berth-default";

struct LsmState {
  bool apparmor = false;  // /sys/module/apparmor/parameters/enabled is "Y" and securityfs has it
  bool selinux = false;   // /sys/fs/selinux/enforce exists (enforcing or permissive)
  // kDefaultAppArmorProfile is loaded (listed in /sys/kernel/security/apparmor/profiles).
  // berthd does not load it: without it RuntimeDefault runs without an AppArmor profile.
  bool apparmor_default_loaded = false;
};

// The node's LSMs, read once (under `sys_root`, "" = the real /sys; for tests).
[[nodiscard]] LsmState DetectLsm(const std::string& sys_root = "");
// The real node's LSMs, detected on first call and cached: what the CRI Status RPC reports.
[[nodiscard]] LsmState LsmSupport();

// What the security-profile step of the spec builder reads from the node; every member has a
// default that is the real host, so tests inject only what they fake.
struct SecurityEnv {
  // nullopt = LsmSupport().
  std::optional<LsmState> lsm;
  // Reads a Localhost seccomp profile. Null = read the host file. Must return NOT_FOUND for a
  // missing file.
  std::function<absl::StatusOr<std::string>(const std::string& path)> read_file;
};

// The AppArmor profile name for process.apparmorProfile ("" = none) from the CRI profile
// (`profile`, null when unset) or else the deprecated string (`legacy`: "", "runtime/default",
// "unconfined", "localhost/<name>"). `field` names the request field in errors.
// RuntimeDefault is kDefaultAppArmorProfile when the node has AppArmor and that profile is
// loaded, else none; Localhost without AppArmor is FAILED_PRECONDITION.
[[nodiscard]] absl::StatusOr<std::string> ResolveAppArmorProfile(
    const runtime::v1::SecurityProfile* profile, const std::string& legacy,
    const std::string& field, const LsmState& lsm);

// The SELinux process and mount labels ("user:role:type:level") for the options; both empty
// when no option is set. Options without SELinux on the node: FAILED_PRECONDITION. Unset
// parts take the container defaults system_u, system_r / object_r, container_t /
// container_file_t, s0.
struct SelinuxLabels {
  std::string process, mount;
};
[[nodiscard]] absl::StatusOr<SelinuxLabels> ResolveSelinuxLabels(
    const runtime::v1::SELinuxOption* options, const std::string& field, const LsmState& lsm);

// Reads a whole file; NOT_FOUND when it does not exist, another code on other errors.
[[nodiscard]] absl::StatusOr<std::string> ReadHostFile(const std::string& path);

}  // namespace berth::cri
