// SPDX-License-Identifier: Apache-2.0
#include "plugins/snapshotter-overlay/snapshotter.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <climits>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <utility>

#include "berth/mount.hpp"
#include "berth/unique_fd.hpp"
#include "plugins/common/mountinfo.h"
#include "plugins/common/plugin_util.h"

namespace berth::overlay {
namespace {

using nlohmann::json;

#define OVL_RETURN_IF_ERROR(expr)              \
  do {                                         \
    ::berth::sdk::Status ovl_status_ = (expr); \
    if (!ovl_status_.ok()) return ovl_status_; \
  } while (0)

// Store buckets (private to this plugin).
constexpr const char* kSnapshotsBucket = "snapshots";  // key -> Record JSON
constexpr const char* kParentsBucket = "parents";      // parent "\0" child -> ""
constexpr const char* kMetaBucket = "meta";            // "next_id" -> decimal
constexpr std::string_view kNextId = "next_id";
constexpr std::string_view kTmpPrefix = "tmp-";

std::string Quote(std::string_view s) { return "\"" + sdk::JsonEscape(s) + "\""; }

std::string ChildKey(std::string_view parent, std::string_view child) {
  std::string k(parent);
  k.push_back('\0');
  k.append(child);
  return k;
}

bool ValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      n = 1, cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2, cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3, cp = c & 0x07;
    } else {
      return false;
    }
    if (i + n >= s.size()) return false;
    for (size_t k = 1; k <= n; ++k) {
      unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    static constexpr uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += n + 1;
  }
  return true;
}

// Keys and names are opaque: they only ever appear in the store, never in a path.
sdk::Status ValidateKey(std::string_view key, std::string_view what) {
  if (key.empty()) return sdk::InvalidArgument(std::string(what) + " is empty");
  if (key.size() > Snapshotter::kMaxKeyBytes) {
    return sdk::InvalidArgument(std::string(what) + " is " + std::to_string(key.size()) +
                                " bytes long; at most " +
                                std::to_string(Snapshotter::kMaxKeyBytes) + " are allowed");
  }
  if (key.find('\0') != std::string_view::npos) {
    return sdk::InvalidArgument(std::string(what) + " " + Quote(key) + " contains a NUL byte");
  }
  if (!ValidUtf8(key)) {
    return sdk::InvalidArgument(std::string(what) + " " + Quote(key) + " is not valid UTF-8");
  }
  return sdk::Status::Ok();
}

sdk::Result<json> ParseLabels(std::string_view text) {
  if (text.empty()) return json::object();
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded()) {
    return sdk::InvalidArgument("labels are not valid JSON: " + std::string(text.substr(0, 200)));
  }
  if (!j.is_object()) {
    return sdk::InvalidArgument("labels must be a JSON object of strings, got " +
                                j.dump().substr(0, 200));
  }
  for (auto& [k, v] : j.items()) {
    if (!v.is_string()) {
      return sdk::InvalidArgument("label " + Quote(k) +
                                  " is not a string: " + v.dump().substr(0, 200));
    }
    if (k.size() + v.get_ref<const std::string&>().size() > Snapshotter::kMaxLabelBytes) {
      return sdk::InvalidArgument("label " + Quote(k.substr(0, 64)) + ": key and value exceed " +
                                  std::to_string(Snapshotter::kMaxLabelBytes) + " bytes");
    }
  }
  return j;
}

std::string NowRfc3339() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  tm t{};
  gmtime_r(&ts.tv_sec, &t);
  char buf[64];
  size_t n = strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &t);
  snprintf(buf + n, sizeof(buf) - n, ".%09ldZ", static_cast<long>(ts.tv_nsec));
  return buf;
}

// ---- directory trees ----------------------------------------------------------------------

// Is this directory entry the root of another mount than its parent's (dev `parent_dev`)?
bool IsMountRoot(const struct statx& stx, dev_t parent_dev) {
  if ((stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) != 0 &&
      (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT) != 0) {
    return true;
  }
  return makedev(stx.stx_dev_major, stx.stx_dev_minor) != parent_dev;
}

int StatxAt(int dirfd, const char* name, struct statx* stx) {
  return ::statx(dirfd, name, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT, STATX_BASIC_STATS, stx);
}

// Entry names of the directory `fd` (which this function closes).
sdk::Result<std::vector<std::string>> ReadDir(int fd, const std::string& path) {
  DIR* d = ::fdopendir(fd);
  if (d == nullptr) {
    sdk::Status s = sdk::ErrnoToStatus(errno, "open directory " + path);
    ::close(fd);
    return s;
  }
  std::vector<std::string> names;
  errno = 0;
  while (dirent* e = ::readdir(d)) {
    std::string_view n = e->d_name;
    if (n != "." && n != "..") names.emplace_back(n);
  }
  int err = errno;
  ::closedir(d);
  if (err != 0) return sdk::ErrnoToStatus(err, "read directory " + path);
  return names;
}

struct TreeUsage {
  int64_t size = 0;    // st_blocks * 512: what the files occupy on disk
  int64_t inodes = 0;  // each inode once (hard links are counted once)
};

// Calls fn(name, stx) for every entry of directory `fd` (closed here), in name order;
// entries removed while we walk are skipped. Stops at fn's first error and returns it.
sdk::Status ForEachEntry(int fd, const std::string& path,
                         const std::function<sdk::Status(const std::string&,
                                                         const struct statx&)>& fn) {
  sdk::UniqueFd dir(fd);
  int dup_fd = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (dup_fd < 0) return sdk::ErrnoToStatus(errno, "dup directory fd of " + path);
  auto names = ReadDir(dup_fd, path);
  if (!names.ok()) return names.status();
  for (const std::string& name : *names) {
    struct statx stx {};
    if (StatxAt(fd, name.c_str(), &stx) != 0) {
      if (errno == ENOENT) continue;  // removed while we walk
      return sdk::ErrnoToStatus(errno, "stat " + path + "/" + name);
    }
    sdk::Status s = fn(name, stx);
    if (!s.ok()) return s;
  }
  return sdk::Status::Ok();
}

// Adds what is below directory `fd` (closed here) on the same mount to `u`.
sdk::Status SumTree(int fd, dev_t dev, const std::string& path,
                    std::set<std::pair<dev_t, uint64_t>>* seen, TreeUsage* u) {
  return ForEachEntry(fd, path, [&](const std::string& name, const struct statx& stx) {
    bool dir = S_ISDIR(stx.stx_mode);
    if (dir && IsMountRoot(stx, dev)) return sdk::Status::Ok();  // another filesystem
    if (!dir && stx.stx_nlink > 1 && !seen->insert({dev, stx.stx_ino}).second) {
      return sdk::Status::Ok();  // a hard link counted already
    }
    u->size += static_cast<int64_t>(stx.stx_blocks) * 512;
    u->inodes += 1;
    if (!dir) return sdk::Status::Ok();
    int child = ::openat(fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (child < 0) {
      if (errno == ENOENT) return sdk::Status::Ok();
      return sdk::ErrnoToStatus(errno, "open " + path + "/" + name);
    }
    return SumTree(child, dev, path + "/" + name, seen, u);
  });
}

// The usage of the tree at `path`, its root included, without following symlinks or
// entering other mounts.
sdk::Result<TreeUsage> DiskUsage(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return sdk::ErrnoToStatus(errno, "open " + path + " to measure its usage");
  struct statx stx {};
  if (::statx(fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS, &stx) != 0) {
    sdk::Status s = sdk::ErrnoToStatus(errno, "stat " + path);
    ::close(fd);
    return s;
  }
  TreeUsage u;
  u.size = static_cast<int64_t>(stx.stx_blocks) * 512;
  u.inodes = 1;
  std::set<std::pair<dev_t, uint64_t>> seen;
  OVL_RETURN_IF_ERROR(SumTree(fd, makedev(stx.stx_dev_major, stx.stx_dev_minor), path, &seen, &u));
  return u;
}

// Empties directory `fd` (closed here). Refuses to descend into another mount: a failed
// unmount is never followed by a recursive delete of what is still mounted.
sdk::Status EmptyDir(int fd, dev_t dev, const std::string& path) {
  return ForEachEntry(fd, path, [&](const std::string& name, const struct statx& stx) {
    if (!S_ISDIR(stx.stx_mode)) {
      if (::unlinkat(fd, name.c_str(), 0) != 0 && errno != ENOENT) {
        return sdk::ErrnoToStatus(errno, "remove " + path + "/" + name);
      }
      return sdk::Status::Ok();
    }
    if (IsMountRoot(stx, dev)) {
      return sdk::FailedPrecondition(path + "/" + name +
                                     " is a mount point; unmount it, then remove " + path);
    }
    int child = ::openat(fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (child < 0) return sdk::ErrnoToStatus(errno, "open " + path + "/" + name);
    sdk::Status s = EmptyDir(child, dev, path + "/" + name);
    if (!s.ok()) return s;
    if (::unlinkat(fd, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) {
      return sdk::ErrnoToStatus(errno, "remove directory " + path + "/" + name);
    }
    return sdk::Status::Ok();
  });
}

// Removes the tree at `path` (absent is fine) without crossing into other mounts.
sdk::Status RemoveTree(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return sdk::Status::Ok();
    if ((errno == ENOTDIR || errno == ELOOP) && ::unlink(path.c_str()) == 0) {
      return sdk::Status::Ok();
    }
    return sdk::ErrnoToStatus(errno, "open " + path + " to remove it");
  }
  struct statx stx {};
  if (::statx(fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS, &stx) != 0) {
    sdk::Status s = sdk::ErrnoToStatus(errno, "stat " + path);
    ::close(fd);
    return s;
  }
  OVL_RETURN_IF_ERROR(EmptyDir(fd, makedev(stx.stx_dev_major, stx.stx_dev_minor), path));
  if (::rmdir(path.c_str()) != 0 && errno != ENOENT) {
    return sdk::ErrnoToStatus(errno, "remove directory " + path);
  }
  return sdk::Status::Ok();
}

// ---- copying a tree (native layout) ---------------------------------------------------------

struct CopyState {
  dev_t dev = 0;    // the source tree's filesystem: other mounts are not entered
  int dst_root = -1;
  // Files with several links: (dev, inode) -> the path of the first copy, below dst_root.
  std::map<std::pair<dev_t, uint64_t>, std::string> links;
};

// An entry's xattrs: a directory through its fd, anything else through the path
// /proc/self/fd/<dir>/<name> with the l* calls (which never follow a final symlink).
struct XattrTarget {
  int fd;            // the directory itself when name is empty
  std::string name;  // the entry in directory fd
  std::string Path() const { return "/proc/self/fd/" + std::to_string(fd) + "/" + name; }
  ssize_t List(char* buf, size_t n) const {
    return name.empty() ? ::flistxattr(fd, buf, n) : ::llistxattr(Path().c_str(), buf, n);
  }
  ssize_t Get(const char* key, void* buf, size_t n) const {
    return name.empty() ? ::fgetxattr(fd, key, buf, n) : ::lgetxattr(Path().c_str(), key, buf, n);
  }
  int Set(const char* key, const void* value, size_t n) const {
    return name.empty() ? ::fsetxattr(fd, key, value, n, 0)
                        : ::lsetxattr(Path().c_str(), key, value, n, 0);
  }
};

sdk::Status CopyXattrs(const XattrTarget& from, const XattrTarget& to, const std::string& what) {
  std::vector<char> names(4096);
  ssize_t n;
  while ((n = from.List(names.data(), names.size())) < 0 && errno == ERANGE) {
    names.resize(names.size() * 4);
  }
  if (n < 0) {
    if (errno == ENOTSUP) return sdk::Status::Ok();
    return sdk::ErrnoToStatus(errno, "list the xattrs of " + what);
  }
  std::vector<char> value(4096);
  for (ssize_t i = 0; i < n;) {
    const std::string name(names.data() + i);
    i += static_cast<ssize_t>(name.size()) + 1;
    ssize_t v;
    while ((v = from.Get(name.c_str(), value.data(), value.size())) < 0 && errno == ERANGE) {
      value.resize(value.size() * 4);
    }
    if (v < 0) return sdk::ErrnoToStatus(errno, "read xattr " + name + " of " + what);
    if (to.Set(name.c_str(), value.data(), static_cast<size_t>(v)) != 0) {
      return sdk::ErrnoToStatus(errno, "copy xattr " + name + " of " + what);
    }
  }
  return sdk::Status::Ok();
}

// Owner, then mode (chown clears setuid bits), xattrs and times of dst_dir/name (an entry
// just made from `stx`); name "" for dst_dir itself.
sdk::Status CopyMeta(int src_dir, int dst_dir, const std::string& name, const struct statx& stx,
                     const std::string& what) {
  const char* n = name.c_str();
  if (::fchownat(dst_dir, n, stx.stx_uid, stx.stx_gid,
                 name.empty() ? AT_EMPTY_PATH : AT_SYMLINK_NOFOLLOW) != 0) {
    return sdk::ErrnoToStatus(errno, "chown the copy of " + what);
  }
  // A symlink's mode means nothing; anything else is ours, just made, and not a symlink.
  if (!S_ISLNK(stx.stx_mode) &&
      (name.empty() ? ::fchmod(dst_dir, stx.stx_mode & 07777)
                    : ::fchmodat(dst_dir, n, stx.stx_mode & 07777, 0)) != 0) {
    return sdk::ErrnoToStatus(errno, "chmod the copy of " + what);
  }
  sdk::Status x = CopyXattrs({src_dir, name}, {dst_dir, name}, what);
  if (!x.ok()) return x;
  const timespec times[2] = {{stx.stx_atime.tv_sec, stx.stx_atime.tv_nsec},
                             {stx.stx_mtime.tv_sec, stx.stx_mtime.tv_nsec}};
  if ((name.empty() ? ::futimens(dst_dir, times)
                    : ::utimensat(dst_dir, n, times, AT_SYMLINK_NOFOLLOW)) != 0) {
    return sdk::ErrnoToStatus(errno, "set the times of the copy of " + what);
  }
  return sdk::Status::Ok();
}

sdk::Status CopyFileData(int src, int dst, const std::string& what) {
  for (;;) {
    ssize_t n = ::copy_file_range(src, nullptr, dst, nullptr, 1 << 30, 0);
    if (n > 0) continue;
    if (n == 0) return sdk::Status::Ok();
    if (errno == EINTR) continue;
    if (errno != EXDEV && errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP) {
      return sdk::ErrnoToStatus(errno, "copy " + what);
    }
    break;  // not supported here: plain reads and writes
  }
  std::vector<char> buf(1 << 16);
  for (;;) {
    ssize_t n = ::read(src, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return sdk::ErrnoToStatus(errno, "read " + what);
    if (n == 0) return sdk::Status::Ok();
    for (ssize_t done = 0; done < n;) {
      ssize_t w = ::write(dst, buf.data() + done, static_cast<size_t>(n - done));
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) return sdk::ErrnoToStatus(errno, "write the copy of " + what);
      done += w;
    }
  }
}

// Copies what is below directory `src` into directory `dst` (neither is closed here); `rel` is
// dst's path below the copy's root, `path` src's path for messages. Symlinks are copied, never
// followed; sockets are skipped; other mounts are not entered.
sdk::Status CopyDir(int src, int dst, const std::string& rel, const std::string& path,
                    CopyState* st) {
  int list = ::fcntl(src, F_DUPFD_CLOEXEC, 0);
  if (list < 0) return sdk::ErrnoToStatus(errno, "dup directory fd of " + path);
  return ForEachEntry(list, path, [&](const std::string& name, const struct statx& stx) {
    const std::string what = path + "/" + name;
    const std::string child_rel = rel.empty() ? name : rel + "/" + name;
    const mode_t type = stx.stx_mode & S_IFMT;
    if (type == S_IFDIR) {
      if (IsMountRoot(stx, st->dev)) return sdk::Status::Ok();
      if (::mkdirat(dst, name.c_str(), 0700) != 0) {
        return sdk::ErrnoToStatus(errno, "create the copy of " + what);
      }
      sdk::UniqueFd s(::openat(src, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      sdk::UniqueFd d(::openat(dst, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!s.valid() || !d.valid()) return sdk::ErrnoToStatus(errno, "open " + what);
      sdk::Status c = CopyDir(s.get(), d.get(), child_rel, what, st);
      if (!c.ok()) return c;
      return CopyMeta(s.get(), d.get(), "", stx, what);  // times after the children
    }
    if (type == S_IFREG) {
      const std::pair<dev_t, uint64_t> inode{makedev(stx.stx_dev_major, stx.stx_dev_minor),
                                             stx.stx_ino};
      if (stx.stx_nlink > 1) {
        auto it = st->links.find(inode);
        if (it != st->links.end()) {
          if (::linkat(st->dst_root, it->second.c_str(), dst, name.c_str(), 0) != 0) {
            return sdk::ErrnoToStatus(errno, "link the copy of " + what);
          }
          return sdk::Status::Ok();
        }
        st->links.emplace(inode, child_rel);
      }
      sdk::UniqueFd s(::openat(src, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
      if (!s.valid()) return sdk::ErrnoToStatus(errno, "open " + what);
      sdk::UniqueFd d(
          ::openat(dst, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
      if (!d.valid()) return sdk::ErrnoToStatus(errno, "create the copy of " + what);
      sdk::Status c = CopyFileData(s.get(), d.get(), what);
      if (!c.ok()) return c;
      return CopyMeta(src, dst, name, stx, what);
    }
    if (type == S_IFLNK) {
      std::vector<char> target(PATH_MAX + 1);
      ssize_t n = ::readlinkat(src, name.c_str(), target.data(), target.size());
      if (n < 0) return sdk::ErrnoToStatus(errno, "read the symlink " + what);
      if (::symlinkat(std::string(target.data(), static_cast<size_t>(n)).c_str(), dst,
                      name.c_str()) != 0) {
        return sdk::ErrnoToStatus(errno, "create the copy of " + what);
      }
      return CopyMeta(src, dst, name, stx, what);
    }
    if (type == S_IFCHR || type == S_IFBLK || type == S_IFIFO) {
      if (::mknodat(dst, name.c_str(), type | (stx.stx_mode & 07777),
                    makedev(stx.stx_rdev_major, stx.stx_rdev_minor)) != 0) {
        return sdk::ErrnoToStatus(errno, "create the copy of " + what);
      }
      return CopyMeta(src, dst, name, stx, what);
    }
    return sdk::Status::Ok();  // a socket: nothing a copy could carry
  });
}

// Copies the tree at `from` (an existing directory) into the empty directory `to`, the root's
// owner, mode, xattrs and times included.
sdk::Status CopyTree(const std::string& from, const std::string& to) {
  sdk::UniqueFd src(::open(from.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!src.valid()) return sdk::ErrnoToStatus(errno, "open " + from + " to copy it");
  sdk::UniqueFd dst(::open(to.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dst.valid()) return sdk::ErrnoToStatus(errno, "open " + to);
  struct statx stx {};
  if (::statx(src.get(), "", AT_EMPTY_PATH, STATX_BASIC_STATS, &stx) != 0) {
    return sdk::ErrnoToStatus(errno, "stat " + from);
  }
  CopyState st;
  st.dev = makedev(stx.stx_dev_major, stx.stx_dev_minor);
  st.dst_root = dst.get();
  sdk::Status c = CopyDir(src.get(), dst.get(), "", from, &st);
  if (!c.ok()) return c;
  return CopyMeta(src.get(), dst.get(), "", stx, from);
}

sdk::Status FsyncDir(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return sdk::ErrnoToStatus(errno, "open " + path + " to sync it");
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return sdk::ErrnoToStatus(err, "fsync " + path);
  return sdk::Status::Ok();
}

using plugins::UnescapeMountinfo;

// The mount point of the filesystem holding `path`: the mount whose id statx reports, or
// else the longest mount point that is a prefix of the path.
std::string MountPointOf(const std::string& path) {
  struct statx stx {};
  bool have_id = ::statx(AT_FDCWD, path.c_str(), 0, STATX_MNT_ID, &stx) == 0 &&
                 (stx.stx_mask & STATX_MNT_ID) != 0;
  char* real = ::realpath(path.c_str(), nullptr);
  std::string resolved = real != nullptr ? real : path;
  ::free(real);
  std::ifstream in("/proc/self/mountinfo");
  std::string line, best;
  while (std::getline(in, line)) {
    size_t p0 = line.find(' ');
    if (p0 == std::string::npos) continue;
    // Fields: id parent major:minor root mountpoint ...
    size_t p1 = line.find(' ', p0 + 1);
    size_t p2 = p1 == std::string::npos ? p1 : line.find(' ', p1 + 1);
    size_t p3 = p2 == std::string::npos ? p2 : line.find(' ', p2 + 1);
    size_t p4 = p3 == std::string::npos ? p3 : line.find(' ', p3 + 1);
    if (p4 == std::string::npos) continue;
    std::string mountpoint = UnescapeMountinfo(std::string_view(line).substr(p3 + 1, p4 - p3 - 1));
    if (have_id && line.substr(0, p0) == std::to_string(stx.stx_mnt_id)) return mountpoint;
    bool prefix = mountpoint == "/" ||
                  (resolved.compare(0, mountpoint.size(), mountpoint) == 0 &&
                   (resolved.size() == mountpoint.size() || resolved[mountpoint.size()] == '/'));
    if (prefix && mountpoint.size() >= best.size()) best = mountpoint;
  }
  return best.empty() ? "/" : best;
}

std::string_view KindName(int kind) {
  switch (kind) {
    case 0:
      return "committed";
    case 1:
      return "active";
    default:
      return "view";
  }
}

}  // namespace

bool KernelHasOverlay() {
  std::ifstream f("/proc/filesystems");
  std::string line;
  while (std::getline(f, line)) {
    if (line.size() >= 7 && line.compare(line.size() - 7, 7, "overlay") == 0) return true;
  }
  return false;
}

// ---- records --------------------------------------------------------------------------------

std::string Snapshotter::Encode(const Record& r) {
  json j = {{"id", r.id},
            {"kind", KindName(static_cast<int>(r.kind))},
            {"parent", r.parent},
            {"labels", r.labels},
            {"created", r.created}};
  if (r.size >= 0) j["size"] = r.size;
  if (r.inodes >= 0) j["inodes"] = r.inodes;
  return j.dump();
}

sdk::Result<Snapshotter::Record> Snapshotter::Decode(std::string_view key, std::string_view value) {
  json j = json::parse(value, nullptr, false);
  auto bad = [&] {
    return sdk::Status(BERTH_DATA_LOSS, "the stored record of snapshot " + Quote(key) +
                                            " is unreadable: " + std::string(value.substr(0, 200)));
  };
  if (!j.is_object() || !j.contains("id") || !j["id"].is_number_unsigned() || !j.contains("kind") ||
      !j["kind"].is_string()) {
    return bad();
  }
  Record r;
  r.id = j["id"].get<uint64_t>();
  std::string kind = j["kind"].get<std::string>();
  if (kind == "committed")
    r.kind = Kind::kCommitted;
  else if (kind == "active")
    r.kind = Kind::kActive;
  else if (kind == "view")
    r.kind = Kind::kView;
  else
    return bad();
  if (j.contains("parent") && j["parent"].is_string()) r.parent = j["parent"].get<std::string>();
  if (j.contains("labels") && j["labels"].is_object()) r.labels = j["labels"];
  if (j.contains("created") && j["created"].is_string()) {
    r.created = j["created"].get<std::string>();
  }
  if (j.contains("size") && j["size"].is_number_integer()) r.size = j["size"].get<int64_t>();
  if (j.contains("inodes") && j["inodes"].is_number_integer()) {
    r.inodes = j["inodes"].get<int64_t>();
  }
  return r;
}

std::string Snapshotter::Info(std::string_view name, const Record& r) {
  json j = {{"name", std::string(name)},
            {"parent", r.parent},
            {"kind", KindName(static_cast<int>(r.kind))},
            {"labels", r.labels},
            {"created", r.created}};
  return j.dump();
}

sdk::Result<Snapshotter::Record> Snapshotter::Get(sdk::Txn& txn, std::string_view key) {
  auto v = txn.Get(kSnapshotsBucket, key);
  if (!v.ok()) return v.status();
  if (!v->has_value()) return sdk::NotFound("snapshot " + Quote(key) + " not found");
  return Decode(key, **v);
}

sdk::Result<std::vector<uint64_t>> Snapshotter::Chain(sdk::Txn& txn,
                                                      const std::string& parent) const {
  std::vector<uint64_t> ids;
  std::string cur = parent;
  while (!cur.empty()) {
    auto r = Get(txn, cur);
    if (!r.ok()) {
      return sdk::Status(BERTH_DATA_LOSS, "the parent chain of snapshot " + Quote(parent) +
                                              " is broken at " + Quote(cur) + ": " +
                                              r.status().message());
    }
    ids.push_back(r->id);
    if (ids.size() > 100000) {
      return sdk::Status(BERTH_DATA_LOSS, "the parent chain of " + Quote(parent) + " loops");
    }
    cur = r->parent;
  }
  return ids;
}

// ---- life cycle -----------------------------------------------------------------------------

Snapshotter::Snapshotter(sdk::Host host, Layout layout, std::string root)
    : host_(host), layout_(layout), root_(std::move(root)), snapshots_(root_ + "/snapshots") {
  tmp_seed_ = std::random_device{}();
  tmp_seed_ = (tmp_seed_ << 32) ^ std::random_device{}();
  index_off_ = layout_ == Layout::kOverlay &&
               ::access("/sys/module/overlay/parameters/index", F_OK) == 0;
}

Snapshotter::~Snapshotter() = default;

sdk::Status Snapshotter::Create(sdk::Host host, std::unique_ptr<Snapshotter>* out) {
  return Create(host, Layout::kOverlay, kPluginId, out);
}

sdk::Status Snapshotter::Create(sdk::Host host, Layout layout, const char* plugin_id,
                                std::unique_ptr<Snapshotter>* out) {
  auto config = plugins::LoadConfig(host, plugin_id, {});
  if (!config.ok()) return config.status();
  if (layout == Layout::kOverlay && !KernelHasOverlay()) {
    return sdk::NotApplicable(
        "the kernel offers no overlay filesystem (/proc/filesystems; try modprobe overlay)");
  }
  std::unique_ptr<Snapshotter> s(new Snapshotter(host, layout, host.RootDir()));
  if (::mkdir(s->snapshots_.c_str(), 0700) != 0 && errno != EEXIST) {
    return sdk::ErrnoToStatus(errno, "create the snapshot directory " + s->snapshots_);
  }
  OVL_RETURN_IF_ERROR(s->Recover());
  if (layout == Layout::kOverlay) s->Probe();
  *out = std::move(s);
  return sdk::Status::Ok();
}

const void* Snapshotter::GetInterface(std::string_view iface) {
  if (iface == BERTH_IFACE_SNAPSHOTTER_V1) return sdk::SnapshotterTable<Snapshotter>();
  return nullptr;
}

std::string Snapshotter::Dir(uint64_t id) const { return snapshots_ + "/" + std::to_string(id); }
std::string Snapshotter::Fs(uint64_t id) const { return Dir(id) + "/fs"; }

std::string Snapshotter::TmpName() {
  char buf[64];
  snprintf(buf, sizeof(buf), "%.*s%016llx-%llu", static_cast<int>(kTmpPrefix.size()),
           kTmpPrefix.data(), static_cast<unsigned long long>(tmp_seed_),
           static_cast<unsigned long long>(tmp_counter_.fetch_add(1)));
  return buf;
}

sdk::Status Snapshotter::Recover() {
  // What the store knows.
  std::set<uint64_t> known;
  uint64_t max_id = 0, next_id = 1;
  bool all_readable = true;  // else no directory can be called an orphan
  {
    auto txn = host_.Begin(false);
    if (!txn.ok()) return txn.status();
    OVL_RETURN_IF_ERROR(
        txn->Scan(kSnapshotsBucket, "", [&](std::string_view k, std::string_view v) {
          auto r = Decode(k, v);
          if (!r.ok()) {
            host_.Error(r.status().message() + "; no snapshot directory is removed at this start");
            all_readable = false;
            return true;
          }
          known.insert(r->id);
          max_id = std::max(max_id, r->id);
          return true;
        }));
    auto next = txn->Get(kMetaBucket, kNextId);
    if (!next.ok()) return next.status();
    if (next->has_value()) next_id = std::strtoull((*next)->c_str(), nullptr, 10);
  }
  // What the disk holds.
  int fd = ::open(snapshots_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return sdk::ErrnoToStatus(errno, "open " + snapshots_);
  auto names = ReadDir(fd, snapshots_);
  if (!names.ok()) return names.status();
  std::set<uint64_t> on_disk;
  for (const std::string& name : *names) {
    std::string path = snapshots_ + "/" + name;
    bool numeric = !name.empty() && name.size() <= 19 &&
                   name.find_first_not_of("0123456789") == std::string::npos;
    if (name.rfind(kTmpPrefix, 0) == 0) {
      sdk::Status s = RemoveTree(path);
      if (s.ok()) {
        host_.Info("removed " + path + ", left by an interrupted operation");
      } else {
        host_.Error("cannot remove the leftover " + path + ": " + s.message());
      }
    } else if (numeric) {
      uint64_t id = std::strtoull(name.c_str(), nullptr, 10);
      max_id = std::max(max_id, id);
      if (known.count(id) != 0 || !all_readable) {
        on_disk.insert(id);
        continue;
      }
      sdk::Status s = RemoveTree(path);
      if (s.ok()) {
        host_.Info("removed " + path + ": no snapshot uses it (interrupted prepare or remove)");
      } else {
        host_.Error("cannot remove the orphaned snapshot directory " + path + ": " + s.message());
      }
    } else {
      host_.Warn("unexpected entry " + path + " in the snapshot directory; left alone");
    }
  }
  for (uint64_t id : known) {
    if (on_disk.count(id) == 0) {
      host_.Error("snapshot directory " + Dir(id) + " is missing; the snapshot using it " +
                  "cannot be mounted (remove it and pull its image again)");
    }
  }
  // Never hand out an id that is (or was) on disk or in the store.
  if (next_id <= max_id) {
    auto txn = host_.Begin(true);
    if (!txn.ok()) return txn.status();
    OVL_RETURN_IF_ERROR(txn->Put(kMetaBucket, kNextId, std::to_string(max_id + 1)));
    OVL_RETURN_IF_ERROR(txn->Commit());
  }
  return sdk::Status::Ok();
}

void Snapshotter::Probe() {
  if (::geteuid() != 0) return;  // cannot mount; nothing to learn
  std::string dir = snapshots_ + "/" + TmpName();
  for (const char* sub : {"", "/l1", "/l2", "/u", "/w", "/m"}) {
    if (::mkdir((dir + sub).c_str(), 0700) != 0) {
      probe_error_ =
          sdk::ErrnoToStatus(errno, "create overlay probe directory " + dir + sub).message();
      (void)RemoveTree(dir);
      return;
    }
  }
  // The relative form with "chdir", as deep layer chains use it.
  sdk::MountSpec m{"overlay", "overlay", {}, dir};
  if (index_off_) m.options.push_back("index=off");
  m.options.insert(m.options.end(), {"lowerdir=l1:l2", "upperdir=u", "workdir=w"});
  sdk::Status s = sdk::MountAll({m}, dir + "/m");
  if (s.ok()) {
    sdk::Status u = sdk::Unmount(dir + "/m");
    if (!u.ok()) {
      host_.Error("overlay probe: " + u.message() + "; leaving " + dir + " in place");
      return;
    }
  } else if (s.code() == BERTH_PERMISSION_DENIED) {
    host_.Debug("overlay probe skipped: " + s.message());
  } else {
    probe_error_ = "overlayfs cannot be mounted from " + snapshots_ + ": " + s.message() +
                   " (is the directory on a filesystem overlayfs cannot use as its upper "
                   "layer, such as overlayfs itself?)";
    host_.Error(probe_error_);
  }
  sdk::Status r = RemoveTree(dir);
  if (!r.ok()) host_.Warn("overlay probe: " + r.message());
}

sdk::Readiness Snapshotter::Status() {
  if (layout_ == Layout::kOverlay && !KernelHasOverlay()) {
    return sdk::Readiness::NotReady("OverlayUnavailable",
                                    "the kernel no longer lists overlay in /proc/filesystems");
  }
  if (::access(snapshots_.c_str(), W_OK) != 0) {
    return sdk::Readiness::NotReady(
        "SnapshotDirNotWritable",
        sdk::ErrnoToStatus(errno, "snapshot directory " + snapshots_ + " is not writable")
            .message());
  }
  if (!probe_error_.empty()) return sdk::Readiness::NotReady("OverlayMountFailed", probe_error_);
  return sdk::Readiness::Ready();
}

// ---- snapshots ------------------------------------------------------------------------------

std::string Snapshotter::MountsJson(const Record& r, const std::vector<uint64_t>& chain) const {
  auto bind = [](const std::string& source, bool ro) {
    return json::array({{{"type", "bind"},
                         {"source", source},
                         {"options", json::array({"rbind", ro ? "ro" : "rw"})}}})
        .dump();
  };
  // Native: every snapshot holds its whole tree.
  if (chain.empty() || layout_ == Layout::kNative) return bind(Fs(r.id), r.kind == Kind::kView);
  if (r.kind == Kind::kView && chain.size() == 1) return bind(Fs(chain[0]), true);
  auto options = [&](const std::string& base) {
    std::vector<std::string> o;
    if (index_off_) o.push_back("index=off");
    if (r.kind == Kind::kActive) {
      o.push_back("workdir=" + base + std::to_string(r.id) + "/work");
      o.push_back("upperdir=" + base + std::to_string(r.id) + "/fs");
    }
    std::string lower = "lowerdir=";
    for (size_t i = 0; i < chain.size(); ++i) {
      if (i > 0) lower += ':';
      lower += base + std::to_string(chain[i]) + "/fs";
    }
    o.push_back(std::move(lower));
    return o;
  };
  std::vector<std::string> absolute = options(snapshots_ + "/");
  size_t bytes = 0;
  for (const std::string& o : absolute) bytes += o.size() + 1;
  // Overlay splits its options at ',' and lowerdir at ':'; a directory with those (or a
  // backslash) in its path is only safe in the relative form.
  bool plain = snapshots_.find_first_of(",:\\") == std::string::npos;
  json m = {{"type", "overlay"}, {"source", "overlay"}};
  if (bytes <= kMaxAbsoluteOptionBytes && plain) {
    m["options"] = absolute;
  } else {
    m["options"] = options("");
    m["chdir"] = snapshots_;
  }
  return json::array({m}).dump();
}

sdk::Result<std::string> Snapshotter::CreateSnapshot(Kind kind, std::string_view key,
                                                     std::string_view parent,
                                                     std::string_view labels_json) {
  const std::string op = kind == Kind::kActive ? "prepare" : "view";
  OVL_RETURN_IF_ERROR(ValidateKey(key, op + ": snapshot key"));
  if (!parent.empty()) OVL_RETURN_IF_ERROR(ValidateKey(parent, op + ": parent"));
  auto labels = ParseLabels(labels_json);
  if (!labels.ok())
    return sdk::InvalidArgument(op + " " + Quote(key) + ": " + labels.status().message());

  // Built under a tmp- name, invisible until the store says otherwise.
  std::string dir = snapshots_ + "/" + TmpName();
  if (::mkdir(dir.c_str(), 0700) != 0) {
    return sdk::ErrnoToStatus(errno, op + " " + Quote(key) + ": create " + dir);
  }
  struct Cleanup {
    const std::string* path;
    Snapshotter* self;
    ~Cleanup() {
      if (path == nullptr) return;
      sdk::Status s = RemoveTree(*path);
      if (!s.ok()) self->host_.Warn("cleanup after a failed snapshot creation: " + s.message());
    }
  } cleanup{&dir, this};
  const bool native = layout_ == Layout::kNative;
  if (::mkdir((dir + "/fs").c_str(), 0755) != 0 ||
      (kind == Kind::kActive && !native && ::mkdir((dir + "/work").c_str(), 0700) != 0)) {
    return sdk::ErrnoToStatus(errno, op + " " + Quote(key) + ": create directories in " + dir);
  }
  // Native: the parent's tree is copied first, outside the store's write transaction.
  uint64_t copied_from = 0;
  if (native && !parent.empty()) {
    sdk::Status c = CopyParent(parent, dir + "/fs", &copied_from);
    if (!c.ok()) return sdk::Status(c.code(), op + " " + Quote(key) + ": " + c.message());
  }

  auto txn = host_.Begin(true);
  if (!txn.ok()) return txn.status();
  auto existing = txn->Get(kSnapshotsBucket, key);
  if (!existing.ok()) return existing.status();
  if (existing->has_value()) {
    return sdk::Status(BERTH_ALREADY_EXISTS, op + ": snapshot " + Quote(key) + " already exists");
  }
  std::vector<uint64_t> chain;
  if (!parent.empty()) {
    auto p = Get(*txn, parent);
    if (!p.ok()) {
      if (p.status().code() == BERTH_NOT_FOUND) {
        return sdk::NotFound(op + " " + Quote(key) + ": parent snapshot " + Quote(parent) +
                             " not found");
      }
      return p.status();
    }
    if (p->kind != Kind::kCommitted) {
      return sdk::FailedPrecondition(op + " " + Quote(key) + ": parent " + Quote(parent) + " is " +
                                     (p->kind == Kind::kActive ? "an active snapshot" : "a view") +
                                     "; only committed snapshots can be parents (commit it first)");
    }
    auto c = Chain(*txn, std::string(parent));
    if (!c.ok()) return c.status();
    chain = std::move(*c);
    if (native && chain[0] != copied_from) {
      return sdk::Status(BERTH_ABORTED, op + " " + Quote(key) + ": parent " + Quote(parent) +
                                            " was replaced while it was copied; try again");
    }
    // Overlay shows the upper directory's owner and mode at the root of the mount: take
    // them from the layer below, as the image has them.
    struct stat st {};
    if (!native && ::stat(Fs(chain[0]).c_str(), &st) == 0) {
      if (::chown((dir + "/fs").c_str(), st.st_uid, st.st_gid) != 0 ||
          ::chmod((dir + "/fs").c_str(), st.st_mode & 07777) != 0) {
        return sdk::ErrnoToStatus(errno,
                                  op + " " + Quote(key) + ": copy the owner of " + Fs(chain[0]));
      }
    }
  }
  auto next = txn->Get(kMetaBucket, kNextId);
  if (!next.ok()) return next.status();
  uint64_t id = next->has_value() ? std::strtoull((*next)->c_str(), nullptr, 10) : 1;
  if (id == 0) id = 1;
  OVL_RETURN_IF_ERROR(txn->Put(kMetaBucket, kNextId, std::to_string(id + 1)));

  Record r;
  r.id = id;
  r.kind = kind;
  r.parent = std::string(parent);
  r.labels = std::move(*labels);
  r.created = NowRfc3339();
  OVL_RETURN_IF_ERROR(txn->Put(kSnapshotsBucket, key, Encode(r)));
  if (!parent.empty()) OVL_RETURN_IF_ERROR(txn->Put(kParentsBucket, ChildKey(parent, key), ""));

  // Rename, then commit: a crash in between leaves a numbered directory the store does not
  // know, which Recover removes.
  std::string final_dir = Dir(id);
  if (::rename(dir.c_str(), final_dir.c_str()) != 0) {
    return sdk::ErrnoToStatus(errno,
                              op + " " + Quote(key) + ": rename " + dir + " to " + final_dir);
  }
  dir = final_dir;  // what Cleanup removes from now on
  OVL_RETURN_IF_ERROR(FsyncDir(snapshots_));
  OVL_RETURN_IF_ERROR(txn->Commit());
  cleanup.path = nullptr;
  return MountsJson(r, chain);
}

sdk::Status Snapshotter::CopyParent(std::string_view parent, const std::string& fs,
                                    uint64_t* parent_id) {
  {
    auto txn = host_.Begin(false);
    if (!txn.ok()) return txn.status();
    auto p = Get(*txn, parent);
    if (!p.ok() || p->kind != Kind::kCommitted) return sdk::Status::Ok();
    *parent_id = p->id;
  }
  sdk::Status s = CopyTree(Fs(*parent_id), fs);
  if (!s.ok()) return sdk::Status(s.code(), "copy parent " + Quote(parent) + ": " + s.message());
  return sdk::Status::Ok();
}

sdk::Result<std::string> Snapshotter::Prepare(std::string_view key, std::string_view parent,
                                              std::string_view labels_json) {
  return CreateSnapshot(Kind::kActive, key, parent, labels_json);
}

sdk::Result<std::string> Snapshotter::View(std::string_view key, std::string_view parent,
                                           std::string_view labels_json) {
  return CreateSnapshot(Kind::kView, key, parent, labels_json);
}

sdk::Result<std::string> Snapshotter::Mounts(std::string_view key) {
  OVL_RETURN_IF_ERROR(ValidateKey(key, "mounts: snapshot key"));
  auto txn = host_.Begin(false);
  if (!txn.ok()) return txn.status();
  auto r = Get(*txn, key);
  if (!r.ok()) return r.status();
  if (r->kind == Kind::kCommitted) {
    return sdk::FailedPrecondition("mounts: snapshot " + Quote(key) +
                                   " is committed; mount a view of it or prepare an active "
                                   "snapshot on it");
  }
  std::vector<uint64_t> chain;
  if (!r->parent.empty()) {
    auto c = Chain(*txn, r->parent);
    if (!c.ok()) return c.status();
    chain = std::move(*c);
  }
  return MountsJson(*r, chain);
}

sdk::Status Snapshotter::Commit(std::string_view name, std::string_view key,
                                std::string_view labels_json) {
  OVL_RETURN_IF_ERROR(ValidateKey(name, "commit: name"));
  OVL_RETURN_IF_ERROR(ValidateKey(key, "commit: snapshot key"));
  auto labels = ParseLabels(labels_json);
  if (!labels.ok()) {
    return sdk::InvalidArgument("commit " + Quote(key) + ": " + labels.status().message());
  }
  auto check = [&](const sdk::Result<Record>& r) -> sdk::Status {
    if (!r.ok()) return r.status();
    if (r.value().kind != Kind::kActive) {
      return sdk::FailedPrecondition(
          "commit " + Quote(key) + " as " + Quote(name) + ": " + Quote(key) + " is " +
          (r.value().kind == Kind::kView ? "a view" : "already committed") +
          "; only active snapshots can be committed");
    }
    return sdk::Status::Ok();
  };
  uint64_t id = 0;
  {
    auto txn = host_.Begin(false);
    if (!txn.ok()) return txn.status();
    auto r = Get(*txn, key);
    OVL_RETURN_IF_ERROR(check(r));
    id = r->id;
  }
  // Measured once: a committed layer never changes.
  auto usage = DiskUsage(Fs(id));
  if (!usage.ok()) return usage.status();

  auto txn = host_.Begin(true);
  if (!txn.ok()) return txn.status();
  auto r = Get(*txn, key);
  OVL_RETURN_IF_ERROR(check(r));
  if (r->id != id) {
    return sdk::Status(BERTH_ABORTED, "commit " + Quote(key) +
                                          ": the snapshot was replaced while it was measured");
  }
  auto existing = txn->Get(kSnapshotsBucket, name);
  if (!existing.ok()) return existing.status();
  if (existing->has_value()) {
    return sdk::Status(BERTH_ALREADY_EXISTS,
                       "commit " + Quote(key) + ": snapshot " + Quote(name) + " already exists");
  }
  Record c = std::move(*r);
  c.kind = Kind::kCommitted;
  c.labels = std::move(*labels);
  c.created = NowRfc3339();
  c.size = usage->size;
  c.inodes = usage->inodes;
  OVL_RETURN_IF_ERROR(txn->Delete(kSnapshotsBucket, key));
  OVL_RETURN_IF_ERROR(txn->Put(kSnapshotsBucket, name, Encode(c)));
  if (!c.parent.empty()) {
    OVL_RETURN_IF_ERROR(txn->Delete(kParentsBucket, ChildKey(c.parent, key)));
    OVL_RETURN_IF_ERROR(txn->Put(kParentsBucket, ChildKey(c.parent, name), ""));
  }
  return txn->Commit();
}

sdk::Status Snapshotter::Remove(std::string_view key) {
  OVL_RETURN_IF_ERROR(ValidateKey(key, "remove: snapshot key"));
  uint64_t id = 0;
  {
    auto txn = host_.Begin(true);
    if (!txn.ok()) return txn.status();
    auto r = Get(*txn, key);
    if (!r.ok()) return r.status();
    std::vector<std::string> children;
    OVL_RETURN_IF_ERROR(
        txn->Scan(kParentsBucket, ChildKey(key, ""), [&](std::string_view k, std::string_view) {
          children.emplace_back(k.substr(key.size() + 1));
          return children.size() < 3;
        }));
    if (!children.empty()) {
      std::string list;
      for (const std::string& c : children) list += (list.empty() ? "" : ", ") + Quote(c);
      return sdk::FailedPrecondition("remove " + Quote(key) + ": it is the parent of " + list +
                                     (children.size() >= 3 ? " and maybe more" : "") +
                                     "; remove those first");
    }
    OVL_RETURN_IF_ERROR(txn->Delete(kSnapshotsBucket, key));
    if (!r->parent.empty())
      OVL_RETURN_IF_ERROR(txn->Delete(kParentsBucket, ChildKey(r->parent, key)));
    OVL_RETURN_IF_ERROR(txn->Commit());
    id = r->id;
  }
  // The snapshot is gone; its directory is garbage now, removed here or at the next start.
  sdk::Status s = RemoveTree(Dir(id));
  if (!s.ok()) {
    host_.Warn("removed snapshot " + Quote(key) +
               " but not its directory (retried at the next "
               "start): " +
               s.message());
  }
  return sdk::Status::Ok();
}

sdk::Result<std::string> Snapshotter::Stat(std::string_view key) {
  OVL_RETURN_IF_ERROR(ValidateKey(key, "stat: snapshot key"));
  auto txn = host_.Begin(false);
  if (!txn.ok()) return txn.status();
  auto r = Get(*txn, key);
  if (!r.ok()) return r.status();
  return Info(key, *r);
}

sdk::Result<std::string> Snapshotter::Usage(std::string_view key) {
  OVL_RETURN_IF_ERROR(ValidateKey(key, "usage: snapshot key"));
  Record r;
  {
    auto txn = host_.Begin(false);
    if (!txn.ok()) return txn.status();
    auto got = Get(*txn, key);
    if (!got.ok()) return got.status();
    r = std::move(*got);
  }
  int64_t size = r.size, inodes = r.inodes;
  if (r.kind != Kind::kCommitted || size < 0 || inodes < 0) {
    auto u = DiskUsage(Fs(r.id));
    if (!u.ok()) return u.status();
    size = u->size;
    inodes = u->inodes;
  }
  return json{{"size", size}, {"inodes", inodes}}.dump();
}

sdk::Result<std::string> Snapshotter::Walk() {
  auto txn = host_.Begin(false);
  if (!txn.ok()) return txn.status();
  std::string out = "[";
  OVL_RETURN_IF_ERROR(txn->Scan(kSnapshotsBucket, "", [&](std::string_view k, std::string_view v) {
    auto r = Decode(k, v);
    if (!r.ok()) {
      host_.Error("walk: " + r.status().message());
      return true;
    }
    if (out.size() > 1) out += ',';
    out += Info(k, *r);
    return true;
  }));
  out += ']';
  return out;
}

sdk::Result<std::string> Snapshotter::FsUsage() {
  auto u = DiskUsage(snapshots_);
  if (!u.ok()) return u.status();
  return json{
      {"mountpoint", MountPointOf(snapshots_)}, {"used_bytes", u->size}, {"inodes_used", u->inodes}}
      .dump();
}

}  // namespace berth::overlay
