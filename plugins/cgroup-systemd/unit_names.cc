// SPDX-License-Identifier: Apache-2.0
#include "plugins/cgroup-systemd/unit_names.h"

#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "plugins/cgroup-fs/absl_view.h"

namespace berth::cgroup_systemd {
namespace {

constexpr absl::string_view kSliceSuffix = ".slice";
constexpr absl::string_view kScopeSuffix = ".scope";
constexpr size_t kScopePrefixMax = 64;

// Debian's Abseil has its own absl::string_view; the plugin boundary uses std::string_view.
constexpr auto A = cgroupfs::AbslView;
std::string_view S(absl::string_view s) { return {s.data(), s.size()}; }

bool IsAlnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}
// Characters of a slice name: systemd's unit name characters except ':'.
bool IsSliceChar(char c) { return IsAlnum(c) || c == '_' || c == '.' || c == '-' || c == '\\'; }
// Characters of a sandbox or container id and of the scope prefix.
bool IsIdChar(char c) { return IsAlnum(c) || c == '_' || c == '.' || c == '-'; }

// The text quoted for a message: escaped, and cut when very long.
std::string Quote(absl::string_view s) {
  constexpr size_t kMax = 300;
  if (s.size() > kMax) return absl::StrCat("\"", absl::CHexEscape(s.substr(0, kMax)), "...\"");
  return absl::StrCat("\"", absl::CHexEscape(s), "\"");
}

// What to do when the kubelet's cgroup driver is not berth's.
constexpr absl::string_view kAlignDrivers =
    "the kubelet and berth disagree on the cgroup driver (berth's is systemd, the kubelet's "
    "is apparently cgroupfs). Make them agree: set cgroupDriver: systemd in the kubelet "
    "configuration (a kubelet 1.31 or later asks berth through the RuntimeConfig RPC instead "
    "and follows it; 1.28 to 1.30 do with the feature gate KubeletCgroupDriverFromCRI=true), "
    "or set cgroup_driver: cgroupfs for io.berth.cri in berth's configuration";

absl::Status DriverMismatch(absl::string_view parent, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("cgroup_parent ", Quote(parent), " is ", what,
                                                 ", not a systemd slice name: ", kAlignDrivers));
}

}  // namespace

absl::Status ValidateSliceName(std::string_view slice_in, std::string_view what_in) {
  const absl::string_view slice = A(slice_in), what = A(what_in);
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " ", Quote(slice), " is not a valid systemd slice name: ", why));
  };
  if (slice.empty()) return bad("it is empty");
  if (slice.size() >= kUnitNameMax) {
    return bad(
        absl::StrCat("it is ", slice.size(), " bytes long (", kUnitNameMax - 1, " at most)"));
  }
  for (char c : slice) {
    if (c == '/') return bad("'/' is not allowed (give the slice unit name, like kubepods.slice)");
    if (c == ':') return bad("':' is not allowed (it separates the fields of a cgroups path)");
    if (!IsSliceChar(c)) {
      return bad(absl::StrCat("character ", Quote(absl::string_view(&c, 1)),
                              " is not allowed (letters, digits, '_', '.', '-' and '\\' are)"));
    }
  }
  if (!absl::EndsWith(slice, kSliceSuffix)) return bad("it must end in .slice");
  if (slice == A(kRootSlice)) return absl::OkStatus();
  absl::string_view prefix = slice.substr(0, slice.size() - kSliceSuffix.size());
  if (prefix.empty()) return bad("the name before .slice is empty");
  if (prefix.front() == '.') return bad("it must not start with '.'");
  if (prefix.front() == '-' || prefix.back() == '-' || absl::StrContains(prefix, "--")) {
    return bad("'-' separates parent slices, so it cannot lead, trail or be doubled");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> SliceCgroupPath(std::string_view slice_in) {
  if (absl::Status s = ValidateSliceName(slice_in, "slice"); !s.ok()) return s;
  const absl::string_view slice = A(slice_in);
  if (slice == A(kRootSlice)) return std::string();
  absl::string_view prefix = slice.substr(0, slice.size() - kSliceSuffix.size());
  std::string path;
  // Every dash ends the name of a parent: "a-b-c" -> "/a.slice/a-b.slice/a-b-c.slice".
  for (size_t i = 0; i <= prefix.size(); ++i) {
    if (i == prefix.size() || prefix[i] == '-') {
      absl::StrAppend(&path, "/", prefix.substr(0, i), kSliceSuffix);
    }
  }
  return path;
}

absl::StatusOr<std::string> ParentSlice(std::string_view parent_in) {
  const absl::string_view parent = A(parent_in);
  if (parent.empty()) return std::string(kDefaultSlice);
  if (absl::StartsWith(parent, "/")) {
    std::vector<absl::string_view> parts = absl::StrSplit(parent.substr(1), '/');
    bool all_slices = true;
    for (absl::string_view part : parts) all_slices = all_slices && absl::EndsWith(part, ".slice");
    if (!all_slices) return DriverMismatch(parent, "a cgroupfs path");
    // An expanded slice path: accepted when it is exactly the nesting of its last slice.
    absl::string_view leaf = parts.back();
    if (absl::Status s = ValidateSliceName(S(leaf), "the last slice of cgroup_parent"); !s.ok()) {
      return s;
    }
    absl::StatusOr<std::string> expanded = SliceCgroupPath(S(leaf));
    if (!expanded.ok()) return expanded.status();
    if (*expanded != parent) {
      return absl::InvalidArgumentError(
          absl::StrCat("cgroup_parent ", Quote(parent),
                       " is a path of slices that do not nest as systemd "
                       "nests ",
                       leaf, " (", *expanded, "); give the slice name alone, like ", leaf));
    }
    return std::string(leaf);
  }
  if (!absl::EndsWith(parent, kSliceSuffix) && !absl::StrContains(parent, ':')) {
    return DriverMismatch(parent, "not a slice (no .slice suffix)");
  }
  if (absl::Status s = ValidateSliceName(S(parent), "cgroup_parent"); !s.ok()) return s;
  return std::string(parent);
}

absl::Status ValidateScopePrefix(std::string_view prefix_in) {
  const absl::string_view prefix = A(prefix_in);
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("scope_prefix ", Quote(prefix), " cannot prefix a scope unit name: ", why));
  };
  if (prefix.empty()) return bad("it is empty");
  if (prefix.size() > kScopePrefixMax) {
    return bad(
        absl::StrCat("it is ", prefix.size(), " bytes long (", kScopePrefixMax, " at most)"));
  }
  for (char c : prefix) {
    if (!IsIdChar(c)) return bad("only letters, digits, '_', '.' and '-' are allowed");
  }
  return absl::OkStatus();
}

std::string ScopePath::Unit() const { return absl::StrCat(prefix, "-", name, kScopeSuffix); }

std::string ScopePath::CgroupsPath() const { return absl::StrCat(slice, ":", prefix, ":", name); }

std::string ScopePath::CgroupDir() const {
  absl::StatusOr<std::string> dir = SliceCgroupPath(slice);
  return absl::StrCat(dir.ok() ? *dir : std::string(), "/", Unit());
}

absl::StatusOr<ScopePath> ScopeFor(std::string_view cgroup_parent, std::string_view prefix,
                                   std::string_view id_in) {
  ScopePath scope;
  absl::StatusOr<std::string> slice = ParentSlice(cgroup_parent);
  if (!slice.ok()) return slice.status();
  scope.slice = std::move(*slice);
  scope.prefix = std::string(prefix);
  const absl::string_view id = A(id_in);
  if (id.empty()) return absl::InvalidArgumentError("empty sandbox or container id");
  for (char c : id) {
    if (!IsIdChar(c)) {
      return absl::InvalidArgumentError(
          absl::StrCat("id ", Quote(id),
                       " cannot name a scope unit: only letters, digits, '_', '.' and '-' "
                       "are allowed"));
    }
  }
  scope.name = std::string(id);
  if (size_t len = scope.Unit().size(); len >= kUnitNameMax) {
    return absl::InvalidArgumentError(absl::StrCat("id ", Quote(id), " makes the unit name ", len,
                                                   " bytes long (", kUnitNameMax - 1, " at most)"));
  }
  return scope;
}

absl::StatusOr<ScopePath> ParseCgroupsPath(std::string_view path_in) {
  const absl::string_view path = A(path_in);
  std::vector<absl::string_view> fields = absl::StrSplit(path, ':');
  if (fields.size() != 3) {
    std::string hint =
        absl::StartsWith(path, "/")
            ? " (this is a cgroupfs path: was the container created while berth used the "
              "cgroupfs driver? Remove it with that driver, or recreate the pod)"
            : "";
    return absl::InvalidArgumentError(
        absl::StrCat("cgroups path ", Quote(path),
                     " is not in the systemd driver's form \"slice:prefix:name\"", hint));
  }
  if (absl::Status s = ValidateSliceName(S(fields[0]), "the slice of cgroups path"); !s.ok()) {
    return s;
  }
  if (absl::Status s = ValidateScopePrefix(S(fields[1])); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cgroups path ", Quote(path), ": ", s.message()));
  }
  if (absl::EndsWith(fields[2], kSliceSuffix)) {
    return absl::InvalidArgumentError(
        absl::StrCat("cgroups path ", Quote(path),
                     " names a slice, not a scope; this driver only makes "
                     "scopes"));
  }
  absl::StatusOr<ScopePath> scope = ScopeFor(S(fields[0]), S(fields[1]), S(fields[2]));
  if (!scope.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cgroups path ", Quote(path), ": ", scope.status().message()));
  }
  return scope;
}

}  // namespace berth::cgroup_systemd
