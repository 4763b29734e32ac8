// SPDX-License-Identifier: Apache-2.0
#include "plugins/cgroup-fs/cgroup_path.h"

#include <limits.h>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "plugins/cgroup-fs/absl_view.h"

namespace berth::cgroupfs {
namespace {

// systemd's syntax: slice units in the path ("/kubepods.slice/kubepods-burstable.slice"), or
// runc's "slice:prefix:name" triple.
bool LooksLikeSystemd(absl::string_view path) {
  if (!path.empty() && path.front() != '/' && absl::StrContains(path, ':')) return true;
  for (absl::string_view segment : absl::StrSplit(path, '/')) {
    if (absl::EndsWith(segment, ".slice")) return true;
  }
  return false;
}

bool IsIdChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '.' || c == '-';
}

}  // namespace

absl::Status ValidateCgroupPath(std::string_view path_in, std::string_view what_in) {
  const absl::string_view path = AbslView(path_in), what = AbslView(what_in);
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " \"", absl::CHexEscape(path), "\" is not a cgroupfs path: ", why));
  };
  if (LooksLikeSystemd(path)) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " \"", absl::CHexEscape(path),
        "\" is in systemd syntax (a .slice unit) but berth's cgroup driver is cgroupfs: the "
        "kubelet's cgroup driver is probably systemd. Make them agree: cgroupDriver: cgroupfs "
        "in the kubelet configuration, or cgroup_driver: systemd for io.berth.cri in berth's "
        "configuration"));
  }
  if (path.empty() || path.front() != '/') {
    return bad("it must be absolute, like /kubepods/burstable/pod<uid>");
  }
  if (path == "/") return absl::OkStatus();
  for (absl::string_view segment : absl::StrSplit(path.substr(1), '/')) {
    if (segment.empty()) return bad("empty path segment (\"//\" or a trailing \"/\")");
    if (segment == "." || segment == "..") {
      return bad(absl::StrCat("\"", segment, "\" segments are not allowed"));
    }
    if (segment.size() > NAME_MAX) {
      return bad(
          absl::StrCat("a segment is ", segment.size(), " bytes long (", NAME_MAX, " at most)"));
    }
    for (char c : segment) {
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
        return bad("control characters are not allowed");
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ContainerCgroupPath(std::string_view parent_in,
                                                std::string_view id_in) {
  if (parent_in.empty()) parent_in = kDefaultParent;
  if (absl::Status s = ValidateCgroupPath(parent_in, "cgroup_parent"); !s.ok()) return s;
  const absl::string_view parent = AbslView(parent_in), id = AbslView(id_in);
  if (id.empty()) return absl::InvalidArgumentError("empty sandbox or container id");
  if (id.size() > NAME_MAX || id == "." || id == "..") {
    return absl::InvalidArgumentError(absl::StrCat("id \"", absl::CHexEscape(id.substr(0, 80)),
                                                   "\" cannot name a cgroup directory"));
  }
  for (char c : id) {
    if (!IsIdChar(c)) {
      return absl::InvalidArgumentError(
          absl::StrCat("id \"", absl::CHexEscape(id),
                       "\" cannot name a cgroup: only letters, digits, '_', "
                       "'.' and '-' are allowed"));
    }
  }
  if (parent == "/") return absl::StrCat("/", id);
  return absl::StrCat(parent, "/", id);
}

}  // namespace berth::cgroupfs
