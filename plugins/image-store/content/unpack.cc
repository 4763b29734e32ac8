// SPDX-License-Identifier: Apache-2.0
#include "plugins/image-store/content/unpack.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/limits.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "berth/unique_fd.hpp"
#include "core/status_macros.h"
#include "plugins/image-store/content/content_store.h"

namespace berth::image {
namespace {

namespace fs = std::filesystem;
using core::ErrnoToStatus;

// How the pieces fit (see docs/unpack.md):
//
//   compressed bytes ──► `raw` libarchive reader (gzip/zstd filter + "raw" format: plain
//   decompression) ──► hashed for diff_id ──► `tar` libarchive reader (tar format, no
//   filter) ──► entries applied with *at() syscalls under a directory fd.
//
// The tar reader pulls its input through a callback that reads decompressed blocks from the
// raw reader, so every uncompressed byte passes through the hash exactly once; after the tar
// end-of-archive marker the rest of the stream (padding) is drained into the hash too. The
// diff_id is thus the digest of the whole uncompressed stream, whatever the compression.

constexpr size_t kReadSize = 256 << 10;
constexpr std::string_view kWhiteoutPrefix = ".wh.";
constexpr std::string_view kWhiteoutMetaPrefix = ".wh..wh.";
constexpr std::string_view kOpaqueMarker = ".wh..wh..opq";
constexpr char kOpaqueXattr[] = "trusted.overlay.opaque";

using Fd = sdk::UniqueFd;

struct ArchiveFree {
  void operator()(archive* a) const { archive_read_free(a); }
};
using ArchivePtr = std::unique_ptr<archive, ArchiveFree>;

absl::Status Annotate(const absl::Status& s, std::string_view prefix) {
  if (s.ok()) return s;
  return absl::Status(s.code(), absl::StrCat(std::string(prefix), std::string(s.message())));
}

bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

// ---- Compression detection -----------------------------------------------------------------

enum class Magic { kTar, kGzip, kZstd, kBzip2, kXz, kLz4, kCompress };

Magic Detect(std::string_view head) {
  auto has = [&](std::string_view m) { return StartsWith(head, m); };
  using namespace std::string_view_literals;
  if (has("\x1f\x8b"sv)) return Magic::kGzip;
  if (has("\x28\xb5\x2f\xfd"sv)) return Magic::kZstd;
  if (has("BZh"sv)) return Magic::kBzip2;
  if (has("\xfd"
          "7zXZ\x00"sv))
    return Magic::kXz;
  if (has("\x04\x22\x4d\x18"sv)) return Magic::kLz4;
  if (has("\x1f\x9d"sv)) return Magic::kCompress;
  return Magic::kTar;
}

// What the media type says, if it says anything.
std::optional<Compression> HintFromMediaType(std::string_view mt) {
  if (mt.empty()) return std::nullopt;
  if (mt.find("zstd") != std::string_view::npos) return Compression::kZstd;
  if (mt.find("gzip") != std::string_view::npos) return Compression::kGzip;
  if (mt.size() >= 3 && mt.substr(mt.size() - 3) == "tar") return Compression::kNone;
  return std::nullopt;
}

// ---- Input plumbing ------------------------------------------------------------------------

// The compressed bytes, with the first few peeked for detection.
class Source {
 public:
  explicit Source(const ChunkReader& reader) : reader_(reader) {}

  absl::Status Peek(size_t n) {
    while (head_.size() < n && !eof_) {
      absl::StatusOr<std::string_view> chunk = reader_();
      if (!chunk.ok()) return chunk.status();
      if (chunk->empty()) {
        eof_ = true;
      } else {
        head_.append(chunk->data(), chunk->size());
      }
    }
    return absl::OkStatus();
  }
  std::string_view head() const { return head_; }
  const absl::Status& status() const { return status_; }
  int64_t bytes() const { return bytes_; }

  static la_ssize_t Read(archive* a, void* self, const void** buf) {
    return static_cast<Source*>(self)->DoRead(a, buf);
  }

 private:
  la_ssize_t DoRead(archive* a, const void** buf) {
    if (!head_sent_) {
      head_sent_ = true;
      if (!head_.empty()) {
        *buf = head_.data();
        bytes_ += static_cast<int64_t>(head_.size());
        return static_cast<la_ssize_t>(head_.size());
      }
    }
    if (eof_) return 0;
    absl::StatusOr<std::string_view> chunk = reader_();
    if (!chunk.ok()) {
      status_ = chunk.status();
      archive_set_error(a, EIO, "reading the layer: %s", std::string(status_.message()).c_str());
      return -1;
    }
    if (chunk->empty()) {
      eof_ = true;
      return 0;
    }
    *buf = chunk->data();
    bytes_ += static_cast<int64_t>(chunk->size());
    return static_cast<la_ssize_t>(chunk->size());
  }

  const ChunkReader& reader_;
  std::string head_;
  bool head_sent_ = false;
  bool eof_ = false;
  absl::Status status_;
  int64_t bytes_ = 0;
};

// The decompressed stream: blocks read from the raw reader, hashed on their way to the tar
// reader.
class Decompressed {
 public:
  Decompressed(archive* raw, Digester hasher) : raw_(raw), hasher_(std::move(hasher)) {}

  static la_ssize_t Read(archive* tar, void* self, const void** buf) {
    auto* d = static_cast<Decompressed*>(self);
    la_ssize_t n = d->Next(buf);
    if (n < 0) archive_set_error(tar, EIO, "%s", d->error_.c_str());
    return n;
  }

  // Hashes whatever the tar reader did not need (the zero blocks after the end marker).
  // Returns false on a decompression error.
  bool Drain() {
    const void* buf;
    la_ssize_t n;
    while ((n = Next(&buf)) > 0) {
    }
    return n == 0;
  }

  int64_t bytes() const { return bytes_; }
  const std::string& error() const { return error_; }
  std::string Finish() { return hasher_.Finish(); }

 private:
  la_ssize_t Next(const void** buf) {
    if (eof_) return 0;
    if (!error_.empty()) return -1;
    for (;;) {
      const void* block = nullptr;
      size_t size = 0;
      la_int64_t offset = 0;
      int r = archive_read_data_block(raw_, &block, &size, &offset);
      if (r == ARCHIVE_EOF) {
        eof_ = true;
        return 0;
      }
      if (r < ARCHIVE_WARN) {
        const char* msg = archive_error_string(raw_);
        error_ = msg != nullptr ? msg : "decompression failed";
        return -1;
      }
      if (size == 0) continue;
      hasher_.Update(std::string_view(static_cast<const char*>(block), size));
      bytes_ += static_cast<int64_t>(size);
      *buf = block;
      return static_cast<la_ssize_t>(size);
    }
  }

  archive* raw_;
  Digester hasher_;
  int64_t bytes_ = 0;
  bool eof_ = false;
  std::string error_;
};

// The error status for a failed libarchive call: the reader's own error if the input
// failed, DATA_LOSS (truncated or corrupt archive) otherwise.
struct ErrorSource {
  const Source* source;
  const Decompressed* decompressed;

  absl::Status For(archive* tar, std::string_view what) const {
    if (!source->status().ok()) {
      return Annotate(source->status(), absl::StrCat(std::string(what), ": "));
    }
    std::string msg;
    if (!decompressed->error().empty()) {
      msg = absl::StrCat("decompression failed: ", decompressed->error());
    } else {
      const char* e = archive_error_string(tar);
      msg = e != nullptr ? e : "unknown libarchive error";
    }
    return absl::DataLossError(
        absl::StrCat(std::string(what), ": ", msg, " (truncated or corrupt layer)"));
  }
};

// ---- Paths ---------------------------------------------------------------------------------

// Splits an archive path into components: "" and "." dropped (so "./a//b/" is a/b and a
// leading "/" makes no difference: absolute paths are relative to the layer root, as Docker
// and containerd treat them); ".." refused anywhere.
absl::Status SplitPath(std::string_view path, std::vector<std::string>* out) {
  out->clear();
  if (path.size() > PATH_MAX) {
    return absl::InvalidArgumentError(
        absl::StrCat("path is ", path.size(), " bytes long (more than PATH_MAX)"));
  }
  size_t i = 0;
  while (i <= path.size()) {
    size_t slash = path.find('/', i);
    if (slash == std::string_view::npos) slash = path.size();
    std::string_view comp = path.substr(i, slash - i);
    if (comp == "..") {
      return absl::InvalidArgumentError(
          "path has a \"..\" component; a layer cannot refer to anything outside its root");
    }
    if (!comp.empty() && comp != ".") out->emplace_back(comp);
    i = slash + 1;
  }
  return absl::OkStatus();
}

std::string JoinPath(const std::vector<std::string>& comps, size_t n) {
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    if (i > 0) out += '/';
    out += comps[i];
  }
  return out;
}

// Names are bytes: libarchive gives them unconverted in the C locale (a pax UTF-8 name it
// cannot convert to the locale's charset is still returned as is, with a warning). The UTF-8
// form is the fallback for an entry that only has that one.
std::string PathOf(archive_entry* e) {
  const char* p = archive_entry_pathname(e);
  if (p == nullptr) p = archive_entry_pathname_utf8(e);
  return p != nullptr ? p : "";
}
std::string SymlinkOf(archive_entry* e) {
  const char* p = archive_entry_symlink(e);
  if (p == nullptr) p = archive_entry_symlink_utf8(e);
  return p != nullptr ? p : "";
}
// nullopt for an entry that is not a hard link.
std::optional<std::string> HardlinkOf(archive_entry* e) {
  const char* p = archive_entry_hardlink(e);
  if (p == nullptr) p = archive_entry_hardlink_utf8(e);
  if (p == nullptr) return std::nullopt;
  return std::string(p);
}

std::string ProcPath(int dirfd, const std::string& name) {
  return absl::StrCat("/proc/self/fd/", dirfd, "/", name);
}

// ---- The unpacker --------------------------------------------------------------------------

class Unpacker {
 public:
  Unpacker(Fd root, const UnpackOptions& opts, const ErrorSource& errors, UnpackResult* result)
      : root_(std::move(root)), opts_(opts), errors_(errors), result_(result) {
    struct stat st;
    root_dev_ = fstat(root_.get(), &st) == 0 ? st.st_dev : 0;
  }

  // Applies one entry; errors name it.
  absl::Status Apply(archive* tar, archive_entry* e) {
    entry_ = PathOf(e);
    return Annotate(DoApply(tar, e), absl::StrCat("entry \"", entry_, "\": "));
  }

  // Sets directory modes and times, deepest first (creating children changed them).
  absl::Status Finish();

  void Warn(std::string_view msg) {
    if (opts_.warn) opts_.warn(msg);
  }

 private:
  struct DirFixup {
    std::vector<std::string> comps;
    dev_t dev;
    ino_t ino;
    mode_t mode;
    timespec times[2];
  };

  absl::Status DoApply(archive* tar, archive_entry* e);
  absl::StatusOr<Fd> OpenParent(const std::vector<std::string>& comps, size_t n, bool create);
  absl::Status RemoveAll(int dirfd, const std::string& name);
  absl::Status RemoveExisting(int dirfd, const std::string& name, bool keep_dir, bool* kept);
  absl::Status ApplyRoot(archive_entry* e);
  absl::Status Whiteout(int dirfd, const std::string& name, archive_entry* e);
  absl::Status Opaque(int dirfd, const std::vector<std::string>& comps);
  // Native form: removes what is below directory `dfd` (archive path `path`) and was not
  // written by this layer.
  absl::Status RemoveUnwritten(int dfd, const std::string& path);
  absl::Status HardLink(int dirfd, const std::string& name, const std::string& link,
                        archive_entry* e);
  absl::Status Regular(archive* tar, int dirfd, const std::string& name, archive_entry* e);
  absl::Status Directory(int dirfd, const std::vector<std::string>& comps, archive_entry* e);
  absl::Status Symlink(int dirfd, const std::string& name, archive_entry* e);
  absl::Status Node(int dirfd, const std::string& name, archive_entry* e);
  absl::Status WriteData(archive* tar, int fd, archive_entry* e);
  absl::Status Chown(int fd, const char* name, archive_entry* e, int flags);
  // setter(name, value, size) returns 0 or -1 with errno.
  absl::Status Xattrs(archive_entry* e,
                      const std::function<int(const char*, const void*, size_t)>& setter);
  mode_t Mode(archive_entry* e) const {
    mode_t m = archive_entry_mode(e) & 07777;
    if (!opts_.preserve_ownership) m &= ~static_cast<mode_t>(S_ISUID | S_ISGID);
    return m;
  }
  static void Times(archive_entry* e, timespec ts[2]) {
    ts[1].tv_sec = archive_entry_mtime_is_set(e) ? archive_entry_mtime(e) : 0;
    ts[1].tv_nsec = archive_entry_mtime_is_set(e) ? archive_entry_mtime_nsec(e) : 0;
    if (archive_entry_atime_is_set(e)) {
      ts[0].tv_sec = archive_entry_atime(e);
      ts[0].tv_nsec = archive_entry_atime_nsec(e);
    } else {
      ts[0] = ts[1];
    }
  }
  absl::Status Errno(std::string_view what) { return ErrnoToStatus(errno, what); }

  Fd root_;
  dev_t root_dev_;
  const UnpackOptions& opts_;
  ErrorSource errors_;
  UnpackResult* result_;
  std::string entry_;
  std::vector<std::string> comps_;
  // The parent directory of the previous entry (entries come grouped by directory). Dropped
  // whenever a directory is removed, so it never names a directory that has been replaced.
  std::string cached_path_;
  Fd cached_fd_;
  std::vector<DirFixup> fixups_;
  // Native form: the archive paths this layer wrote (what an opaque directory keeps).
  std::set<std::string> written_;
};

// Opens comps[0..n) as a directory under the root without ever following a symlink: each
// component is opened with O_NOFOLLOW|O_DIRECTORY relative to the previous one, and ".." never
// occurs (SplitPath refuses it), so the walk can only go down inside the root.
absl::StatusOr<Fd> Unpacker::OpenParent(const std::vector<std::string>& comps, size_t n,
                                        bool create) {
  std::string key = JoinPath(comps, n);
  if (cached_fd_.valid() && key == cached_path_) {
    Fd dup(fcntl(cached_fd_.get(), F_DUPFD_CLOEXEC, 0));
    if (!dup.valid()) return Errno("dup of a directory fd");
    return dup;
  }
  Fd cur(fcntl(root_.get(), F_DUPFD_CLOEXEC, 0));
  if (!cur.valid()) return Errno("dup of the target directory fd");
  for (size_t i = 0; i < n; ++i) {
    const std::string& c = comps[i];
    int fd = openat(cur.get(), c.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT && create) {
      // A parent the layer did not list: created like containerd and Docker do (0755, owned
      // by the unpacking user); its own entry, if it comes later, sets the real attributes.
      if (mkdirat(cur.get(), c.c_str(), 0755) == 0) {
        // 0755 whatever the process umask.
        Fd made(openat(cur.get(), c.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (!made.valid() || fchmod(made.get(), 0755) != 0) {
          return Errno(absl::StrCat("chmod of parent directory \"", JoinPath(comps, i + 1), "\""));
        }
      } else if (errno != EEXIST) {
        return Errno(absl::StrCat("creating parent directory \"", JoinPath(comps, i + 1), "\""));
      }
      fd = openat(cur.get(), c.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    }
    if (fd < 0) {
      int err = errno;
      struct stat st;
      if ((err == ENOTDIR || err == ELOOP) &&
          fstatat(cur.get(), c.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
        if (S_ISLNK(st.st_mode)) {
          return absl::InvalidArgumentError(absl::StrCat(
              "path component \"", JoinPath(comps, i + 1),
              "\" is a symlink; a layer is never written through a symlink (it could lead "
              "outside the layer)"));
        }
        return absl::InvalidArgumentError(
            absl::StrCat("path component \"", JoinPath(comps, i + 1), "\" is not a directory"));
      }
      return ErrnoToStatus(err, absl::StrCat("opening directory \"", JoinPath(comps, i + 1), "\""));
    }
    cur = Fd(fd);
  }
  cached_path_ = key;
  cached_fd_ = Fd(fcntl(cur.get(), F_DUPFD_CLOEXEC, 0));
  return cur;
}

// Removes dirfd/name recursively, never following a symlink (unlinkat removes the link).
absl::Status Unpacker::RemoveAll(int dirfd, const std::string& name) {
  if (unlinkat(dirfd, name.c_str(), 0) == 0 || errno == ENOENT) return absl::OkStatus();
  if (errno != EISDIR && errno != EPERM) return Errno(absl::StrCat("removing \"", name, "\""));
  // A directory. Forget the cached parent: it may be inside.
  cached_fd_.Reset();
  cached_path_.clear();
  Fd dfd(openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dfd.valid()) return Errno(absl::StrCat("opening \"", name, "\" to remove it"));
  struct stat st;
  if (fstat(dfd.get(), &st) != 0) return Errno(absl::StrCat("stat \"", name, "\""));
  if (st.st_dev != root_dev_) {
    return absl::FailedPreconditionError(
        absl::StrCat("refusing to remove \"", name, "\": another filesystem is mounted there"));
  }
  std::vector<std::string> children;
  {
    int copy = fcntl(dfd.get(), F_DUPFD_CLOEXEC, 0);
    DIR* d = copy >= 0 ? fdopendir(copy) : nullptr;
    if (d == nullptr) {
      if (copy >= 0) close(copy);
      return Errno(absl::StrCat("listing \"", name, "\" to remove it"));
    }
    while (dirent* de = readdir(d)) {
      std::string_view n = de->d_name;
      if (n != "." && n != "..") children.emplace_back(n);
    }
    closedir(d);
  }
  for (const std::string& child : children) RETURN_IF_ERROR(RemoveAll(dfd.get(), child));
  if (unlinkat(dirfd, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) {
    return Errno(absl::StrCat("removing directory \"", name, "\""));
  }
  return absl::OkStatus();
}

// The OCI rule for an entry whose path exists: both directories → keep (attributes are
// replaced); otherwise remove what is there, then create.
absl::Status Unpacker::RemoveExisting(int dirfd, const std::string& name, bool keep_dir,
                                      bool* kept) {
  *kept = false;
  struct stat st;
  if (fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return Errno(absl::StrCat("stat \"", name, "\""));
  }
  if (keep_dir && S_ISDIR(st.st_mode)) {
    *kept = true;
    return absl::OkStatus();
  }
  return RemoveAll(dirfd, name);
}

absl::Status Unpacker::Chown(int fd, const char* name, archive_entry* e, int flags) {
  if (!opts_.preserve_ownership) return absl::OkStatus();
  uid_t uid = static_cast<uid_t>(archive_entry_uid(e));
  gid_t gid = static_cast<gid_t>(archive_entry_gid(e));
  if (fchownat(fd, name, uid, gid, flags) != 0) {
    return Errno(absl::StrCat("chown to ", uid, ":", gid,
                              " (unpacking needs CAP_CHOWN, or preserve_ownership=false)"));
  }
  return absl::OkStatus();
}

// Sets the entry's xattrs. trusted.overlay.* / user.overlay.* from the archive are dropped:
// they are overlayfs metadata (opaque, redirect, metacopy) that only whiteout translation may
// produce. A namespace the filesystem does not support (ENOTSUP), and an LSM refusing a
// security.* label (EPERM/EACCES), are skipped with a warning; security.capability is never
// skipped (a binary silently losing its capabilities is worse than a failed pull); anything
// else fails the entry.
absl::Status Unpacker::Xattrs(archive_entry* e,
                              const std::function<int(const char*, const void*, size_t)>& setter) {
  archive_entry_xattr_reset(e);
  const char* name = nullptr;
  const void* value = nullptr;
  size_t size = 0;
  std::vector<std::string> seen;
  while (archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK) {
    std::string_view n = name;
    // libarchive reports an xattr twice when the archive has both its LIBARCHIVE.xattr and
    // the SCHILY.xattr record (libarchive's own writer emits both).
    if (std::find(seen.begin(), seen.end(), n) != seen.end()) continue;
    seen.emplace_back(n);
    if (StartsWith(n, "trusted.overlay.") || StartsWith(n, "user.overlay.")) {
      ++result_->skipped_xattrs;
      Warn(absl::StrCat("entry \"", entry_, "\": dropped overlayfs xattr ", std::string(n),
                        " carried by the layer"));
      continue;
    }
    if (setter(name, value, size) == 0) continue;
    int err = errno;
    bool is_security = StartsWith(n, "security.");
    bool capability = n == "security.capability";
    if (!capability && (err == ENOTSUP || (is_security && (err == EPERM || err == EACCES)))) {
      ++result_->skipped_xattrs;
      Warn(absl::StrCat("entry \"", entry_, "\": xattr ", std::string(n),
                        " skipped: the filesystem refused it (", strerror(err), ")"));
      continue;
    }
    return ErrnoToStatus(err, absl::StrCat("setting xattr ", std::string(n)));
  }
  return absl::OkStatus();
}

absl::Status Unpacker::DoApply(archive* tar, archive_entry* e) {
  ++result_->entries;
  if (entry_.empty()) return absl::InvalidArgumentError("entry has no path");
  RETURN_IF_ERROR(SplitPath(entry_, &comps_));
  std::optional<std::string> hardlink = HardlinkOf(e);
  mode_t type = archive_entry_filetype(e);
  if (comps_.empty()) {
    if (hardlink || type != AE_IFDIR) {
      return absl::InvalidArgumentError("the layer root can only be a directory");
    }
    return ApplyRoot(e);
  }
  for (size_t i = 0; i + 1 < comps_.size(); ++i) {
    if (StartsWith(comps_[i], kWhiteoutPrefix)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "path component \"", comps_[i], "\" is a whiteout name; a whiteout has no children"));
    }
  }
  const std::string name = comps_.back();
  ASSIGN_OR_RETURN(Fd parent, OpenParent(comps_, comps_.size() - 1, /*create=*/true));
  if (name == kOpaqueMarker) return Opaque(parent.get(), comps_);
  if (StartsWith(name, kWhiteoutMetaPrefix)) {
    // AUFS bookkeeping (.wh..wh.plnk, .wh..wh.aufs): meaningless for overlayfs.
    Warn(absl::StrCat("entry \"", entry_, "\": whiteout metadata entry ignored"));
    return absl::OkStatus();
  }
  if (StartsWith(name, kWhiteoutPrefix)) {
    std::string target = name.substr(kWhiteoutPrefix.size());
    if (target.empty() || target == "." || target == "..") {
      return absl::InvalidArgumentError("whiteout without a valid name to delete");
    }
    return Whiteout(parent.get(), target, e);
  }
  if (opts_.apply_whiteouts) {
    // The entry and its parents (which it may have created without entries of their own).
    for (size_t n = 1; n <= comps_.size(); ++n) written_.insert(JoinPath(comps_, n));
  }
  if (hardlink) return HardLink(parent.get(), name, *hardlink, e);
  switch (type) {
    case AE_IFREG:
      return Regular(tar, parent.get(), name, e);
    case AE_IFDIR:
      return Directory(parent.get(), comps_, e);
    case AE_IFLNK:
      return Symlink(parent.get(), name, e);
    case AE_IFCHR:
    case AE_IFBLK:
    case AE_IFIFO:
      return Node(parent.get(), name, e);
    case AE_IFSOCK:
      Warn(absl::StrCat("entry \"", entry_, "\": socket skipped (sockets cannot be unpacked)"));
      return absl::OkStatus();
    default:
      return absl::InvalidArgumentError(absl::StrCat("unsupported entry type 0", type));
  }
}

absl::Status Unpacker::ApplyRoot(archive_entry* e) {
  RETURN_IF_ERROR(Chown(root_.get(), "", e, AT_EMPTY_PATH));
  int fd = root_.get();
  RETURN_IF_ERROR(Xattrs(
      e, [fd](const char* n, const void* v, size_t s) { return fsetxattr(fd, n, v, s, 0); }));
  struct stat st;
  if (fstat(root_.get(), &st) != 0) return Errno("stat of the target directory");
  DirFixup f{{}, st.st_dev, st.st_ino, Mode(e), {}};
  Times(e, f.times);
  fixups_.push_back(std::move(f));
  return absl::OkStatus();
}

absl::Status Unpacker::Whiteout(int dirfd, const std::string& name, archive_entry* e) {
  RETURN_IF_ERROR(RemoveAll(dirfd, name));
  if (opts_.apply_whiteouts) {
    ++result_->whiteouts;
    return absl::OkStatus();
  }
  if (mknodat(dirfd, name.c_str(), S_IFCHR | 0, makedev(0, 0)) != 0) {
    return Errno(
        absl::StrCat("creating the overlay whiteout (0/0 character device) \"", name, "\""));
  }
  RETURN_IF_ERROR(Chown(dirfd, name.c_str(), e, AT_SYMLINK_NOFOLLOW));
  ++result_->whiteouts;
  return absl::OkStatus();
}

// The directory's content from THIS layer stays: opaque only hides lower layers.
absl::Status Unpacker::Opaque(int dirfd, const std::vector<std::string>& comps) {
  Fd dfd(openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dfd.valid()) return Errno("opening the opaque directory");
  if (opts_.apply_whiteouts) {
    RETURN_IF_ERROR(RemoveUnwritten(dfd.get(), JoinPath(comps, comps.size() - 1)));
    ++result_->opaque_dirs;
    return absl::OkStatus();
  }
  if (fsetxattr(dfd.get(), kOpaqueXattr, "y", 1, 0) != 0) {
    return Errno(absl::StrCat("setting ", kOpaqueXattr, "=y on \"",
                              JoinPath(comps, comps.size() - 1),
                              "/\" (needs CAP_SYS_ADMIN and a filesystem with trusted xattrs)"));
  }
  ++result_->opaque_dirs;
  return absl::OkStatus();
}

absl::Status Unpacker::RemoveUnwritten(int dfd, const std::string& path) {
  std::vector<std::string> children;
  {
    int copy = fcntl(dfd, F_DUPFD_CLOEXEC, 0);
    DIR* d = copy >= 0 ? fdopendir(copy) : nullptr;
    if (d == nullptr) {
      if (copy >= 0) close(copy);
      return Errno(absl::StrCat("listing \"", path, "/\" to apply its opaque whiteout"));
    }
    while (dirent* de = readdir(d)) {
      std::string_view n = de->d_name;
      if (n != "." && n != "..") children.emplace_back(n);
    }
    closedir(d);
  }
  for (const std::string& child : children) {
    const std::string child_path = path.empty() ? child : absl::StrCat(path, "/", child);
    if (!written_.contains(child_path)) {
      RETURN_IF_ERROR(RemoveAll(dfd, child));
      continue;
    }
    // Written by this layer: a directory keeps only what this layer wrote below it too.
    Fd sub(openat(dfd, child.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!sub.valid()) continue;  // not a directory
    struct stat st;
    if (fstat(sub.get(), &st) != 0) return Errno(absl::StrCat("stat \"", child_path, "\""));
    if (st.st_dev != root_dev_) {
      return absl::FailedPreconditionError(absl::StrCat(
          "refusing to clear \"", child_path, "\": another filesystem is mounted there"));
    }
    RETURN_IF_ERROR(RemoveUnwritten(sub.get(), child_path));
  }
  return absl::OkStatus();
}

// A hard link's target is an archive path like any other: resolved under the root without
// following symlinks, and it must exist already (earlier in this layer, or in target_dir).
absl::Status Unpacker::HardLink(int dirfd, const std::string& name, const std::string& link,
                                archive_entry* e) {
  std::vector<std::string> lcomps;
  absl::Status split = SplitPath(link, &lcomps);
  if (!split.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("hard link target \"", link, "\": ", std::string(split.message())));
  }
  if (lcomps.empty()) {
    return absl::InvalidArgumentError("hard link to the layer root (a directory)");
  }
  absl::StatusOr<Fd> lparent = OpenParent(lcomps, lcomps.size() - 1, /*create=*/false);
  if (!lparent.ok()) {
    return absl::Status(
        lparent.status().code() == absl::StatusCode::kNotFound ? absl::StatusCode::kInvalidArgument
                                                               : lparent.status().code(),
        absl::StrCat("hard link target \"", link, "\": ", std::string(lparent.status().message())));
  }
  const std::string& lname = lcomps.back();
  struct stat lst;
  if (fstatat(lparent->get(), lname.c_str(), &lst, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) {
      return absl::InvalidArgumentError(absl::StrCat(
          "hard link target \"", link, "\" does not exist in the layer or the target"));
    }
    return Errno(absl::StrCat("stat of hard link target \"", link, "\""));
  }
  if (S_ISDIR(lst.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat("hard link target \"", link, "\" is a directory"));
  }
  struct stat st;
  if (fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_dev == lst.st_dev &&
      st.st_ino == lst.st_ino) {
    return absl::OkStatus();  // already that file
  }
  bool kept = false;
  RETURN_IF_ERROR(RemoveExisting(dirfd, name, /*keep_dir=*/false, &kept));
  // flags 0: a symlink target is linked itself, never followed.
  if (linkat(lparent->get(), lname.c_str(), dirfd, name.c_str(), 0) != 0) {
    return Errno(absl::StrCat("hard link to \"", link, "\""));
  }
  if (archive_entry_size_is_set(e) && archive_entry_size(e) > 0) {
    // Data on a hard link would be written through to an inode this entry does not own:
    // ignored, as GNU tar does.
    Warn(absl::StrCat("entry \"", entry_, "\": data of a hard link entry ignored"));
  }
  return absl::OkStatus();
}

absl::Status Unpacker::WriteData(archive* tar, int fd, archive_entry* e) {
  int64_t end = 0;
  for (;;) {
    const void* buf = nullptr;
    size_t size = 0;
    la_int64_t offset = 0;
    int r = archive_read_data_block(tar, &buf, &size, &offset);
    if (r == ARCHIVE_EOF) break;
    if (r < ARCHIVE_WARN) return errors_.For(tar, "reading file data");
    const char* p = static_cast<const char*>(buf);
    size_t left = size;
    off_t at = static_cast<off_t>(offset);
    while (left > 0) {
      ssize_t n = pwrite(fd, p, left, at);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Errno("writing file data");
      p += n;
      at += n;
      left -= static_cast<size_t>(n);
    }
    end = std::max<int64_t>(end, at);
  }
  // A sparse file may end in a hole.
  if (archive_entry_size_is_set(e) && archive_entry_size(e) > end) {
    if (ftruncate(fd, static_cast<off_t>(archive_entry_size(e))) != 0) {
      return Errno("extending sparse file");
    }
  }
  return absl::OkStatus();
}

absl::Status Unpacker::Regular(archive* tar, int dirfd, const std::string& name, archive_entry* e) {
  bool kept = false;
  RETURN_IF_ERROR(RemoveExisting(dirfd, name, /*keep_dir=*/false, &kept));
  Fd fd(openat(dirfd, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd.valid()) return Errno("creating file");
  RETURN_IF_ERROR(WriteData(tar, fd.get(), e));
  // Order matters: chown clears setuid/setgid and file capabilities, so it comes first.
  RETURN_IF_ERROR(Chown(fd.get(), "", e, AT_EMPTY_PATH));
  if (fchmod(fd.get(), Mode(e)) != 0) return Errno("chmod");
  int raw = fd.get();
  RETURN_IF_ERROR(Xattrs(
      e, [raw](const char* n, const void* v, size_t s) { return fsetxattr(raw, n, v, s, 0); }));
  timespec ts[2];
  Times(e, ts);
  if (futimens(fd.get(), ts) != 0) return Errno("setting times");
  return absl::OkStatus();
}

absl::Status Unpacker::Directory(int dirfd, const std::vector<std::string>& comps,
                                 archive_entry* e) {
  const std::string& name = comps.back();
  bool kept = false;
  RETURN_IF_ERROR(RemoveExisting(dirfd, name, /*keep_dir=*/true, &kept));
  if (!kept && mkdirat(dirfd, name.c_str(), 0700) != 0) return Errno("creating directory");
  Fd dfd(openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dfd.valid()) return Errno("opening directory");
  RETURN_IF_ERROR(Chown(dfd.get(), "", e, AT_EMPTY_PATH));
  int raw = dfd.get();
  RETURN_IF_ERROR(Xattrs(
      e, [raw](const char* n, const void* v, size_t s) { return fsetxattr(raw, n, v, s, 0); }));
  struct stat st;
  if (fstat(dfd.get(), &st) != 0) return Errno("stat of directory");
  // Mode and times wait until the end: a read-only directory must still receive its
  // children, and each child changes the directory's mtime.
  DirFixup f{comps, st.st_dev, st.st_ino, Mode(e), {}};
  Times(e, f.times);
  fixups_.push_back(std::move(f));
  return absl::OkStatus();
}

absl::Status Unpacker::Symlink(int dirfd, const std::string& name, archive_entry* e) {
  std::string target = SymlinkOf(e);
  if (target.empty()) {
    return absl::InvalidArgumentError("symlink without a target");
  }
  bool kept = false;
  RETURN_IF_ERROR(RemoveExisting(dirfd, name, /*keep_dir=*/false, &kept));
  // Stored verbatim (absolute, relative, dangling): a symlink is only data here; nothing in
  // this file ever resolves one.
  if (symlinkat(target.c_str(), dirfd, name.c_str()) != 0) return Errno("creating symlink");
  RETURN_IF_ERROR(Chown(dirfd, name.c_str(), e, AT_SYMLINK_NOFOLLOW));
  std::string path = ProcPath(dirfd, name);
  RETURN_IF_ERROR(Xattrs(e, [&path](const char* n, const void* v, size_t s) {
    return lsetxattr(path.c_str(), n, v, s, 0);
  }));
  timespec ts[2];
  Times(e, ts);
  if (utimensat(dirfd, name.c_str(), ts, AT_SYMLINK_NOFOLLOW) != 0) {
    return Errno("setting symlink times");
  }
  return absl::OkStatus();
}

absl::Status Unpacker::Node(int dirfd, const std::string& name, archive_entry* e) {
  bool kept = false;
  RETURN_IF_ERROR(RemoveExisting(dirfd, name, /*keep_dir=*/false, &kept));
  mode_t type = archive_entry_filetype(e);
  dev_t dev =
      type == AE_IFIFO ? 0 : makedev(archive_entry_rdevmajor(e), archive_entry_rdevminor(e));
  if (mknodat(dirfd, name.c_str(), type | (Mode(e) & 0777), dev) != 0) {
    return Errno(type == AE_IFIFO ? "creating fifo" : "creating device node");
  }
  RETURN_IF_ERROR(Chown(dirfd, name.c_str(), e, AT_SYMLINK_NOFOLLOW));
  // mknod applied the umask; the node was just created by us, so it is not a symlink.
  // (glibc emulates AT_SYMLINK_NOFOLLOW through /proc; without /proc, plain fchmodat.)
  if (fchmodat(dirfd, name.c_str(), Mode(e), AT_SYMLINK_NOFOLLOW) != 0 &&
      fchmodat(dirfd, name.c_str(), Mode(e), 0) != 0) {
    return Errno("chmod");
  }
  std::string path = ProcPath(dirfd, name);
  RETURN_IF_ERROR(Xattrs(e, [&path](const char* n, const void* v, size_t s) {
    return lsetxattr(path.c_str(), n, v, s, 0);
  }));
  timespec ts[2];
  Times(e, ts);
  if (utimensat(dirfd, name.c_str(), ts, AT_SYMLINK_NOFOLLOW) != 0) return Errno("setting times");
  return absl::OkStatus();
}

absl::Status Unpacker::Finish() {
  for (auto it = fixups_.rbegin(); it != fixups_.rend(); ++it) {
    const DirFixup& f = *it;
    Fd dfd;
    if (f.comps.empty()) {
      dfd = Fd(fcntl(root_.get(), F_DUPFD_CLOEXEC, 0));
    } else {
      absl::StatusOr<Fd> parent = OpenParent(f.comps, f.comps.size() - 1, /*create=*/false);
      if (!parent.ok()) continue;  // removed or replaced later in the layer
      dfd = Fd(openat(parent->get(), f.comps.back().c_str(),
                      O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    }
    if (!dfd.valid()) continue;
    struct stat st;
    if (fstat(dfd.get(), &st) != 0 || st.st_dev != f.dev || st.st_ino != f.ino) continue;
    std::string where = f.comps.empty() ? "the layer root" : JoinPath(f.comps, f.comps.size());
    if (fchmod(dfd.get(), f.mode) != 0) return Errno(absl::StrCat("chmod of \"", where, "\""));
    if (futimens(dfd.get(), f.times) != 0) {
      return Errno(absl::StrCat("setting times of \"", where, "\""));
    }
  }
  return absl::OkStatus();
}

// ---- Driver --------------------------------------------------------------------------------

absl::StatusOr<UnpackResult> Unpack(const ChunkReader& reader, const fs::path& target_dir,
                                    const UnpackOptions& opts, const std::string& layer) {
  std::string prefix = absl::StrCat("layer ", layer, ": ");
  auto warn = [&](std::string_view msg) {
    if (opts.warn) opts.warn(absl::StrCat(prefix, std::string(msg)));
  };
  UnpackOptions inner = opts;
  inner.warn = [&](std::string_view msg) { warn(msg); };

  if (opts.media_type.size() >= 10 &&
      opts.media_type.substr(opts.media_type.size() - 10) == "+encrypted") {
    return absl::UnimplementedError(
        absl::StrCat(prefix, "encrypted layers (", opts.media_type, ") are not supported"));
  }
  Fd root(open(target_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!root.valid()) {
    return ErrnoToStatus(errno,
                         absl::StrCat(prefix, "opening target directory ", target_dir.string()));
  }

  Source source(reader);
  RETURN_IF_ERROR(Annotate(source.Peek(8), prefix));
  if (source.head().empty()) return absl::DataLossError(absl::StrCat(prefix, "layer is empty"));

  UnpackResult result;
  switch (Detect(source.head())) {
    case Magic::kTar:
      result.compression = Compression::kNone;
      break;
    case Magic::kGzip:
      result.compression = Compression::kGzip;
      break;
    case Magic::kZstd:
      result.compression = Compression::kZstd;
      break;
    case Magic::kBzip2:
    case Magic::kXz:
    case Magic::kLz4:
    case Magic::kCompress: {
      static constexpr const char* kNames[] = {"", "", "", "bzip2", "xz", "lz4", "compress (.Z)"};
      return absl::InvalidArgumentError(
          absl::StrCat(prefix, "compressed with ", kNames[static_cast<int>(Detect(source.head()))],
                       ", which OCI layers cannot be (they are tar, tar+gzip or tar+zstd)"));
    }
  }
  if (std::optional<Compression> hint = HintFromMediaType(opts.media_type);
      hint && *hint != result.compression) {
    warn(absl::StrCat("media type ", opts.media_type, " does not match the content, which is ",
                      std::string(CompressionName(result.compression)), "; unpacking by content"));
  }

  ArchivePtr raw(archive_read_new());
  ArchivePtr tar(archive_read_new());
  if (!raw || !tar) return absl::ResourceExhaustedError(absl::StrCat(prefix, "archive_read_new"));
  int filter = ARCHIVE_FILTER_NONE;
  int r = ARCHIVE_OK;
  if (result.compression == Compression::kGzip) {
    r = archive_read_support_filter_gzip(raw.get());
    filter = ARCHIVE_FILTER_GZIP;
  } else if (result.compression == Compression::kZstd) {
    r = archive_read_support_filter_zstd(raw.get());
    filter = ARCHIVE_FILTER_ZSTD;
  }
  if (r != ARCHIVE_OK) {  // ARCHIVE_WARN: only an external program is available
    return absl::UnimplementedError(absl::StrCat(prefix, "this libarchive has no built-in ",
                                                 std::string(CompressionName(result.compression)),
                                                 " decompression"));
  }
  archive_read_support_format_raw(raw.get());
  if (archive_read_open(raw.get(), &source, nullptr, &Source::Read, nullptr) != ARCHIVE_OK) {
    if (!source.status().ok()) return Annotate(source.status(), prefix);
    return absl::DataLossError(
        absl::StrCat(prefix, "cannot open the layer stream: ", archive_error_string(raw.get())));
  }
  archive_entry* raw_entry = nullptr;
  r = archive_read_next_header(raw.get(), &raw_entry);
  if (r < ARCHIVE_WARN) {
    if (!source.status().ok()) return Annotate(source.status(), prefix);
    return absl::DataLossError(
        absl::StrCat(prefix, "cannot decompress the layer: ", archive_error_string(raw.get())));
  }
  if (archive_filter_code(raw.get(), 0) != filter) {
    return absl::DataLossError(absl::StrCat(
        prefix, "not a valid ", std::string(CompressionName(result.compression)), " stream"));
  }
  ASSIGN_OR_RETURN(Digester hasher, Digester::Create("sha256"));
  Decompressed decompressed(raw.get(), std::move(hasher));
  ErrorSource errors{&source, &decompressed};

  archive_read_support_format_tar(tar.get());
  if (archive_read_open(tar.get(), &decompressed, nullptr, &Decompressed::Read, nullptr) !=
      ARCHIVE_OK) {
    return errors.For(tar.get(), absl::StrCat(prefix, "not a tar archive"));
  }
  Unpacker unpacker(std::move(root), inner, errors, &result);
  for (;;) {
    archive_entry* e = nullptr;
    r = archive_read_next_header(tar.get(), &e);
    if (r == ARCHIVE_EOF) break;
    if (r == ARCHIVE_RETRY) continue;
    if (r < ARCHIVE_WARN) {
      return errors.For(
          tar.get(), absl::StrCat(prefix, "reading tar header after ", result.entries, " entries"));
    }
    if (r == ARCHIVE_WARN) {
      // Charset warnings are expected (names are kept as bytes, see PathOf); others, such as
      // a malformed pax record, are worth a line.
      const char* msg = archive_error_string(tar.get());
      std::string text = msg != nullptr ? msg : "";
      if (text.find("can't be converted") == std::string::npos) {
        warn(absl::StrCat("tar header warning at entry \"", PathOf(e), "\": ", text));
      }
    }
    RETURN_IF_ERROR(Annotate(unpacker.Apply(tar.get(), e), prefix));
  }
  if (!decompressed.Drain()) {
    return errors.For(tar.get(), absl::StrCat(prefix, "reading the end of the layer"));
  }
  if (!source.status().ok()) return Annotate(source.status(), prefix);
  RETURN_IF_ERROR(Annotate(unpacker.Finish(), prefix));
  result.bytes = decompressed.bytes();
  result.compressed_bytes = source.bytes();
  result.diff_id = decompressed.Finish();
  return result;
}

}  // namespace

std::string_view CompressionName(Compression c) {
  switch (c) {
    case Compression::kNone:
      return "uncompressed";
    case Compression::kGzip:
      return "gzip";
    case Compression::kZstd:
      return "zstd";
  }
  return "unknown";
}

absl::StatusOr<UnpackResult> UnpackLayer(const ChunkReader& read_chunk, const fs::path& target_dir,
                                         const UnpackOptions& options) {
  std::string layer = options.layer_name.empty() ? "stream" : options.layer_name;
  return Unpack(read_chunk, target_dir, options, layer);
}

absl::StatusOr<UnpackResult> UnpackLayer(const fs::path& blob, const fs::path& target_dir,
                                         const UnpackOptions& options) {
  std::string layer = options.layer_name.empty() ? blob.string() : options.layer_name;
  Fd fd(open(blob.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    return ErrnoToStatus(errno, absl::StrCat("layer ", layer, ": opening blob ", blob.string()));
  }
  std::string buf(kReadSize, '\0');
  ChunkReader reader = [&]() -> absl::StatusOr<std::string_view> {
    for (;;) {
      ssize_t n = read(fd.get(), buf.data(), buf.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return ErrnoToStatus(errno, absl::StrCat("reading blob ", blob.string()));
      return std::string_view(buf.data(), static_cast<size_t>(n));
    }
  };
  return Unpack(reader, target_dir, options, layer);
}

}  // namespace berth::image
