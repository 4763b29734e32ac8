// SPDX-License-Identifier: Apache-2.0
// Who a container process runs as: the CRI security context fields and the image's User
// string resolved against the container rootfs's /etc/passwd and /etc/group. The files are
// read from inside the rootfs (symlinks resolved as if the rootfs were "/"), never from the
// host; nothing else touches the system.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace berth::cri {

struct PasswdEntry {
  std::string name;
  uint32_t uid = 0;
  uint32_t gid = 0;
  std::string home;
};

struct GroupEntry {
  std::string name;
  uint32_t gid = 0;
  std::vector<std::string> members;
};

// Lenient parsers of passwd(5) / group(5) text: malformed lines, comments and NIS compat
// lines ("+", "-") are skipped, as glibc's files backend does.
[[nodiscard]] std::vector<PasswdEntry> ParsePasswd(const std::string& text);
[[nodiscard]] std::vector<GroupEntry> ParseGroup(const std::string& text);

// Reads `path` (absolute, e.g. "/etc/passwd") inside `rootfs`, resolving every symlink and
// ".." as if `rootfs` were the root directory, so an image cannot point the lookup at a host
// file. Only regular files up to `max_bytes` are read. NOT_FOUND when the file is absent.
[[nodiscard]] absl::StatusOr<std::string> ReadFileInRootfs(const std::string& rootfs,
                                                           const std::string& path,
                                                           size_t max_bytes = 16 << 20);

// The user databases of one rootfs. Absent files are empty databases.
struct UserDatabase {
  std::vector<PasswdEntry> passwd;
  std::vector<GroupEntry> group;
  bool has_passwd = false;  // /etc/passwd exists (for messages)
  bool has_group = false;

  // Loads <rootfs>/etc/passwd and <rootfs>/etc/group; an empty rootfs gives empty databases.
  [[nodiscard]] static absl::StatusOr<UserDatabase> Load(const std::string& rootfs);

  const PasswdEntry* FindUser(const std::string& name) const;
  const PasswdEntry* FindUid(uint32_t uid) const;
  const GroupEntry* FindGroup(const std::string& name) const;
  // The gids of the groups that list `user` as a member, in file order.
  std::vector<uint32_t> GroupsOf(const std::string& user) const;
};

// What was asked for. The CRI fields win over the image's User; `field_prefix` names the
// security context in error messages (e.g. "linux.security_context").
struct UserRequest {
  std::optional<int64_t> run_as_user;
  std::string run_as_username;
  std::optional<int64_t> run_as_group;
  std::string image_user;  // OCI image config User: "", name, uid, uid:gid, name:group, ...
  std::vector<int64_t> supplemental_groups;
  bool strict_supplemental_groups = false;  // SupplementalGroupsPolicy Strict
  std::string field_prefix = "linux.security_context";
};

struct ResolvedUser {
  uint32_t uid = 0;
  uint32_t gid = 0;
  // Primary gid first, then /etc/group memberships (unless a group was given explicitly in
  // the image User or Strict is asked), then the security context's supplemental groups.
  // No duplicates.
  std::vector<uint32_t> additional_gids;
  std::string name;  // "" when the uid has no passwd entry
  std::string home;  // "" when the uid has no passwd entry
};

// INVALID_ARGUMENT naming the field for an unknown user or group name, a malformed User
// string, ids out of range, or run_as_group without a user.
[[nodiscard]] absl::StatusOr<ResolvedUser> ResolveUser(const UserRequest& request,
                                                       const UserDatabase& db);

}  // namespace berth::cri
