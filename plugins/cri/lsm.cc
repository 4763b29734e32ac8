// SPDX-License-Identifier: Apache-2.0
#include "plugins/cri/lsm.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"

namespace berth::cri {
namespace {

bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

absl::Status NoAppArmor(absl::string_view field, absl::string_view profile) {
  return absl::FailedPreconditionError(absl::StrCat(
      "AppArmor is not enabled on this node; profile ", profile, " cannot be applied (", field,
      "): enable AppArmor on the node or ask for the RuntimeDefault or "
      "Unconfined profile"));
}

std::string RuntimeDefaultAppArmor(const LsmState& lsm) {
  return lsm.apparmor && lsm.apparmor_default_loaded ? kDefaultAppArmorProfile : "";
}

}  // namespace

absl::StatusOr<std::string> ReadHostFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    std::string what = absl::StrCat("open ", path, ": ", std::strerror(err));
    if (err == ENOENT || err == ENOTDIR) return absl::NotFoundError(what);
    if (err == EACCES || err == EPERM) return absl::PermissionDeniedError(what);
    return absl::UnavailableError(what);
  }
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      return absl::UnavailableError(absl::StrCat("read ", path, ": ", std::strerror(err)));
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > (16u << 20)) {
      ::close(fd);
      return absl::InvalidArgumentError(absl::StrCat(path, ": larger than 16 MiB"));
    }
  }
  ::close(fd);
  return out;
}

LsmState DetectLsm(const std::string& sys_root) {
  LsmState s;
  absl::StatusOr<std::string> enabled =
      ReadHostFile(sys_root + "/sys/module/apparmor/parameters/enabled");
  s.apparmor = enabled.ok() && absl::StripAsciiWhitespace(*enabled) == "Y" &&
               Exists(sys_root + "/sys/kernel/security/apparmor");
  s.selinux = Exists(sys_root + "/sys/fs/selinux/enforce");
  if (s.apparmor) {
    // Lines "<name> (<mode>)".
    absl::StatusOr<std::string> profiles =
        ReadHostFile(sys_root + "/sys/kernel/security/apparmor/profiles");
    s.apparmor_default_loaded =
        profiles.ok() &&
        (absl::StartsWith(*profiles, absl::StrCat(kDefaultAppArmorProfile, " ")) ||
         absl::StrContains(*profiles, absl::StrCat("\n", kDefaultAppArmorProfile, " ")));
  }
  return s;
}

LsmState LsmSupport() {
  static const LsmState state = DetectLsm("");
  return state;
}

absl::StatusOr<std::string> ResolveAppArmorProfile(const runtime::v1::SecurityProfile* profile,
                                                   const std::string& legacy,
                                                   const std::string& field, const LsmState& lsm) {
  if (profile != nullptr) {
    const std::string f = field + ".apparmor";
    switch (profile->profile_type()) {
      case runtime::v1::SecurityProfile::RuntimeDefault:
        return RuntimeDefaultAppArmor(lsm);
      case runtime::v1::SecurityProfile::Unconfined:
        return lsm.apparmor ? std::string("unconfined") : std::string();
      case runtime::v1::SecurityProfile::Localhost: {
        const std::string& name = profile->localhost_ref();
        if (name.empty()) {
          return absl::InvalidArgumentError(
              absl::StrCat(f,
                           ".localhost_ref: empty (a Localhost profile needs the name of "
                           "an AppArmor profile loaded on the node)"));
        }
        if (!lsm.apparmor) return NoAppArmor(f + ".localhost_ref", name);
        return name;
      }
      default:
        return absl::InvalidArgumentError(
            absl::StrCat(f, ".profile_type: unknown value ", profile->profile_type()));
    }
  }
  const std::string f = field + ".apparmor_profile";
  if (legacy.empty() || legacy == "runtime/default") return RuntimeDefaultAppArmor(lsm);
  if (legacy == "unconfined") return lsm.apparmor ? std::string("unconfined") : std::string();
  absl::string_view name = legacy;
  if (absl::ConsumePrefix(&name, "localhost/")) {
    if (name.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(f, " \"", legacy, "\": no profile name after localhost/"));
    }
    if (!lsm.apparmor) return NoAppArmor(f, name);
    return std::string(name);
  }
  return absl::InvalidArgumentError(
      absl::StrCat(f, " \"", legacy,
                   "\": not a profile (expected \"runtime/default\", \"unconfined\" or "
                   "\"localhost/<profile name>\")"));
}

absl::StatusOr<SelinuxLabels> ResolveSelinuxLabels(const runtime::v1::SELinuxOption* options,
                                                   const std::string& field, const LsmState& lsm) {
  if (options == nullptr || (options->user().empty() && options->role().empty() &&
                             options->type().empty() && options->level().empty())) {
    return SelinuxLabels{};
  }
  if (!lsm.selinux) {
    return absl::FailedPreconditionError(absl::StrCat(
        "SELinux is not enabled on this node; ", field, ".selinux_options (user \"",
        options->user(), "\", role \"", options->role(), "\", type \"", options->type(),
        "\", level \"", options->level(),
        "\") cannot be applied: remove seLinuxOptions or schedule the pod on an SELinux node"));
  }
  for (const auto& [name, value] :
       {std::pair<const char*, const std::string*>{"user", &options->user()},
        {"role", &options->role()},
        {"type", &options->type()}}) {
    if (value->find(':') != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(field, ".selinux_options.", name, " \"",
                                                     *value, "\": must not contain ':'"));
    }
  }
  auto or_default = [](const std::string& v, const char* d) { return v.empty() ? d : v; };
  const std::string user = or_default(options->user(), "system_u");
  const std::string level = or_default(options->level(), "s0");
  SelinuxLabels out;
  out.process = absl::StrCat(user, ":", or_default(options->role(), "system_r"), ":",
                             or_default(options->type(), "container_t"), ":", level);
  out.mount = absl::StrCat(user, ":object_r:container_file_t:", level);
  return out;
}

}  // namespace berth::cri
