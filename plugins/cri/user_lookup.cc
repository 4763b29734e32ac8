// SPDX-License-Identifier: Apache-2.0
#include "plugins/cri/user_lookup.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "core/status_macros.h"

namespace berth::cri {
namespace {

// The largest valid uid/gid: (uid_t)-1 means "no change" to the kernel.
constexpr int64_t kMaxId = 4294967294LL;
constexpr int kMaxSymlinks = 40;

std::string ErrnoText(int err) {
  std::string s = std::strerror(err);
  if (!s.empty()) s[0] = absl::ascii_tolower(static_cast<unsigned char>(s[0]));
  return s;
}

bool ParseId(absl::string_view text, uint32_t* out) {
  if (text.empty() || !std::all_of(text.begin(), text.end(), absl::ascii_isdigit)) return false;
  uint64_t v = 0;
  if (!absl::SimpleAtoi(text, &v) || v > static_cast<uint64_t>(kMaxId)) return false;
  *out = static_cast<uint32_t>(v);
  return true;
}

bool IsNumeric(absl::string_view text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), absl::ascii_isdigit);
}

absl::StatusOr<uint32_t> CheckId(int64_t v, absl::string_view field) {
  if (v < 0 || v > kMaxId) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " ", v, ": out of range (an id is 0..", kMaxId, ")"));
  }
  return static_cast<uint32_t>(v);
}

std::string MissingUserText(const UserDatabase& db) {
  return db.has_passwd ? "no such user in the image's /etc/passwd"
                       : "the image has no /etc/passwd to look the name up in (use a numeric "
                         "uid)";
}

std::string MissingGroupText(const UserDatabase& db) {
  return db.has_group ? "no such group in the image's /etc/group"
                      : "the image has no /etc/group to look the name up in (use a numeric "
                        "gid)";
}

}  // namespace

std::vector<PasswdEntry> ParsePasswd(const std::string& text) {
  std::vector<PasswdEntry> out;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty() || line[0] == '#' || line[0] == '+' || line[0] == '-') continue;
    std::vector<absl::string_view> f = absl::StrSplit(line, ':');
    if (f.size() < 4 || f[0].empty()) continue;
    PasswdEntry e;
    if (!ParseId(f[2], &e.uid) || !ParseId(f[3], &e.gid)) continue;
    e.name = std::string(f[0]);
    if (f.size() > 5) e.home = std::string(f[5]);
    out.push_back(std::move(e));
  }
  return out;
}

std::vector<GroupEntry> ParseGroup(const std::string& text) {
  std::vector<GroupEntry> out;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty() || line[0] == '#' || line[0] == '+' || line[0] == '-') continue;
    std::vector<absl::string_view> f = absl::StrSplit(line, ':');
    if (f.size() < 3 || f[0].empty()) continue;
    GroupEntry e;
    if (!ParseId(f[2], &e.gid)) continue;
    e.name = std::string(f[0]);
    if (f.size() > 3) {
      for (absl::string_view m : absl::StrSplit(f[3], ',', absl::SkipWhitespace())) {
        e.members.emplace_back(absl::StripAsciiWhitespace(m));
      }
    }
    out.push_back(std::move(e));
  }
  return out;
}

absl::StatusOr<std::string> ReadFileInRootfs(const std::string& rootfs, const std::string& path,
                                             size_t max_bytes) {
  const std::string what = absl::StrCat(path, " in rootfs ", rootfs);
  std::vector<std::string> resolved;
  std::deque<std::string> pending;
  for (absl::string_view c : absl::StrSplit(path, '/', absl::SkipEmpty())) pending.emplace_back(c);
  auto host_path = [&](const std::vector<std::string>& comps) {
    return comps.empty() ? std::string(rootfs)
                         : absl::StrCat(rootfs, "/", absl::StrJoin(comps, "/"));
  };
  int links = 0;
  while (!pending.empty()) {
    std::string comp = std::move(pending.front());
    pending.pop_front();
    if (comp == ".") continue;
    if (comp == "..") {
      if (!resolved.empty()) resolved.pop_back();  // ".." of the root is the root
      continue;
    }
    resolved.push_back(comp);
    const std::string host = host_path(resolved);
    struct stat st {};
    if (::lstat(host.c_str(), &st) != 0) {
      int err = errno;
      if (err == ENOENT || err == ENOTDIR) return absl::NotFoundError(what + ": not found");
      return absl::InternalError(absl::StrCat("lstat ", host, ": ", ErrnoText(err)));
    }
    if (!S_ISLNK(st.st_mode)) continue;
    if (++links > kMaxSymlinks) {
      return absl::InvalidArgumentError(what + ": too many levels of symbolic links");
    }
    char buf[PATH_MAX];
    ssize_t n = ::readlink(host.c_str(), buf, sizeof(buf));
    if (n < 0) {
      return absl::InternalError(absl::StrCat("readlink ", host, ": ", ErrnoText(errno)));
    }
    absl::string_view target(buf, static_cast<size_t>(n));
    resolved.pop_back();
    if (!target.empty() && target[0] == '/') resolved.clear();  // absolute: from the rootfs
    std::vector<absl::string_view> parts = absl::StrSplit(target, '/', absl::SkipEmpty());
    for (auto it = parts.rbegin(); it != parts.rend(); ++it) pending.emplace_front(*it);
  }
  const std::string host = host_path(resolved);
  int fd = ::open(host.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) {
    int err = errno;
    if (err == ENOENT) return absl::NotFoundError(what + ": not found");
    return absl::InternalError(absl::StrCat("open ", host, ": ", ErrnoText(err)));
  }
  std::string data;
  struct stat st {};
  absl::Status status;
  if (::fstat(fd, &st) != 0) {
    status = absl::InternalError(absl::StrCat("fstat ", host, ": ", ErrnoText(errno)));
  } else if (!S_ISREG(st.st_mode)) {
    status = absl::InvalidArgumentError(what + ": not a regular file");
  } else {
    char buf[65536];
    for (;;) {
      ssize_t n = ::read(fd, buf, sizeof(buf));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        status = absl::InternalError(absl::StrCat("read ", host, ": ", ErrnoText(errno)));
        break;
      }
      if (n == 0) break;
      data.append(buf, static_cast<size_t>(n));
      if (data.size() > max_bytes) {
        status = absl::InvalidArgumentError(
            absl::StrCat(what, ": larger than ", max_bytes, " bytes, not read"));
        break;
      }
    }
  }
  ::close(fd);
  if (!status.ok()) return status;
  return data;
}

absl::StatusOr<UserDatabase> UserDatabase::Load(const std::string& rootfs) {
  UserDatabase db;
  if (rootfs.empty()) return db;
  absl::StatusOr<std::string> passwd = ReadFileInRootfs(rootfs, "/etc/passwd");
  if (passwd.ok()) {
    db.passwd = ParsePasswd(*passwd);
    db.has_passwd = true;
  } else if (!absl::IsNotFound(passwd.status())) {
    return passwd.status();
  }
  absl::StatusOr<std::string> group = ReadFileInRootfs(rootfs, "/etc/group");
  if (group.ok()) {
    db.group = ParseGroup(*group);
    db.has_group = true;
  } else if (!absl::IsNotFound(group.status())) {
    return group.status();
  }
  return db;
}

const PasswdEntry* UserDatabase::FindUser(const std::string& name) const {
  for (const PasswdEntry& e : passwd) {
    if (e.name == name) return &e;
  }
  return nullptr;
}

const PasswdEntry* UserDatabase::FindUid(uint32_t uid) const {
  for (const PasswdEntry& e : passwd) {
    if (e.uid == uid) return &e;
  }
  return nullptr;
}

const GroupEntry* UserDatabase::FindGroup(const std::string& name) const {
  for (const GroupEntry& e : group) {
    if (e.name == name) return &e;
  }
  return nullptr;
}

std::vector<uint32_t> UserDatabase::GroupsOf(const std::string& user) const {
  std::vector<uint32_t> out;
  for (const GroupEntry& e : group) {
    if (std::find(e.members.begin(), e.members.end(), user) != e.members.end()) {
      out.push_back(e.gid);
    }
  }
  return out;
}

absl::StatusOr<ResolvedUser> ResolveUser(const UserRequest& req, const UserDatabase& db) {
  const std::string& p = req.field_prefix;
  if (req.run_as_group.has_value() && !req.run_as_user.has_value() && req.run_as_username.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(p, ".run_as_group is set without ", p, ".run_as_user or ", p,
                     ".run_as_username (the CRI requires a user when a group is given)"));
  }
  if (req.run_as_user.has_value() && !req.run_as_username.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        p, ".run_as_user and ", p, ".run_as_username are both set (", "only one of them may be)"));
  }
  ResolvedUser r;
  bool use_group_file = true;
  auto take = [&r](const PasswdEntry& e) {
    r.uid = e.uid;
    r.gid = e.gid;
    r.name = e.name;
    r.home = e.home;
  };
  if (!req.run_as_username.empty()) {
    const PasswdEntry* e = db.FindUser(req.run_as_username);
    if (e == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat(p, ".run_as_username \"", req.run_as_username, "\": ", MissingUserText(db)));
    }
    take(*e);
  } else if (req.run_as_user.has_value()) {
    ASSIGN_OR_RETURN(r.uid, CheckId(*req.run_as_user, p + ".run_as_user"));
    if (const PasswdEntry* e = db.FindUid(r.uid)) take(*e);
  } else {
    const std::string field = absl::StrCat("image config User \"", req.image_user, "\"");
    absl::string_view user = req.image_user;
    absl::string_view group;
    bool has_group = false;
    if (size_t colon = user.find(':'); colon != absl::string_view::npos) {
      group = user.substr(colon + 1);
      user = user.substr(0, colon);
      has_group = true;
      if (user.empty() || group.empty()) {
        return absl::InvalidArgumentError(
            field + ": malformed (expected user, uid, user:group or uid:gid)");
      }
    }
    if (user.empty()) {
      if (const PasswdEntry* e = db.FindUid(0)) take(*e);
      r.uid = 0;
      r.gid = 0;
    } else if (IsNumeric(user)) {
      if (!ParseId(user, &r.uid)) {
        return absl::InvalidArgumentError(field + ": uid out of range");
      }
      if (const PasswdEntry* e = db.FindUid(r.uid)) take(*e);
    } else {
      const PasswdEntry* e = db.FindUser(std::string(user));
      if (e == nullptr) {
        return absl::InvalidArgumentError(
            absl::StrCat(field, ": user \"", user, "\": ", MissingUserText(db)));
      }
      take(*e);
    }
    if (has_group) {
      use_group_file = false;  // OCI image spec: an explicit group replaces the defaults
      if (IsNumeric(group)) {
        if (!ParseId(group, &r.gid)) {
          return absl::InvalidArgumentError(field + ": gid out of range");
        }
      } else {
        const GroupEntry* g = db.FindGroup(std::string(group));
        if (g == nullptr) {
          return absl::InvalidArgumentError(
              absl::StrCat(field, ": group \"", group, "\": ", MissingGroupText(db)));
        }
        r.gid = g->gid;
      }
    }
  }
  if (req.run_as_group.has_value()) {
    ASSIGN_OR_RETURN(r.gid, CheckId(*req.run_as_group, p + ".run_as_group"));
  }
  auto add = [&r](uint32_t gid) {
    if (std::find(r.additional_gids.begin(), r.additional_gids.end(), gid) ==
        r.additional_gids.end()) {
      r.additional_gids.push_back(gid);
    }
  };
  add(r.gid);
  if (use_group_file && !req.strict_supplemental_groups && !r.name.empty()) {
    for (uint32_t gid : db.GroupsOf(r.name)) add(gid);
  }
  for (size_t i = 0; i < req.supplemental_groups.size(); ++i) {
    ASSIGN_OR_RETURN(uint32_t gid, CheckId(req.supplemental_groups[i],
                                           absl::StrCat(p, ".supplemental_groups[", i, "]")));
    add(gid);
  }
  return r;
}

}  // namespace berth::cri
