// SPDX-License-Identifier: Apache-2.0
//
// Header-only helpers to perform the mounts a snapshotter returns (berth/kinds.h):
//
//     [{"type": "overlay", "source": "overlay", "options": ["lowerdir=...", ...],
//       "chdir": "/abs/dir"}, ...]
//
// ParseMounts reads that JSON without a JSON library (only the keys "type", "source",
// "options" and "chdir" are used; other keys are skipped). MountAll mounts every entry on
// `target`, in order. An entry with "chdir" is mounted from a short-lived thread that first
// unshares its filesystem attributes (unshare(CLONE_FS)) and then chdir()s there, so that
// the relative paths in its options resolve against that directory while the process's
// working directory never changes. Unmount removes every mount stacked on a target.
//
// Linux only; mount(2) needs CAP_SYS_ADMIN.
#pragma once

#include <errno.h>
#include <sched.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "berth/plugin.hpp"

namespace berth::sdk {

// One entry of a snapshotter's mounts array.
struct MountSpec {
  std::string type;
  std::string source;
  std::vector<std::string> options;
  std::string chdir;  // empty: paths in options are absolute
};

// "<what>: <strerror> (<ERRNAME>)" with a code chosen from the errno.
inline Status ErrnoToStatus(int err, std::string_view what) {
  const char* name = ::strerrorname_np(err);
  std::string msg = std::string(what) + ": " + ::strerror(err) + " (" + (name ? name : "?") + ")";
  switch (err) {
    case ENOENT:
      return {BERTH_NOT_FOUND, std::move(msg)};
    case EEXIST:
      return {BERTH_ALREADY_EXISTS, std::move(msg)};
    case EPERM:
    case EACCES:
      return {BERTH_PERMISSION_DENIED, std::move(msg)};
    case EINVAL:
    case ENAMETOOLONG:
      return {BERTH_INVALID_ARGUMENT, std::move(msg)};
    case ENOSPC:
    case EDQUOT:
    case ENOMEM:
    case EMFILE:
    case ENFILE:
      return {BERTH_RESOURCE_EXHAUSTED, std::move(msg)};
    case EBUSY:
    case ENOTEMPTY:
    case EROFS:
      return {BERTH_FAILED_PRECONDITION, std::move(msg)};
    default:
      return {BERTH_INTERNAL, std::move(msg)};
  }
}

namespace mount_internal {

// A reader for the subset of JSON the mounts form needs; it accepts any valid JSON value
// where it skips one.
class JsonReader {
 public:
  explicit JsonReader(std::string_view text) : s_(text) {}

  void Ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r'))
      ++i_;
  }
  bool Peek(char c) {
    Ws();
    return i_ < s_.size() && s_[i_] == c;
  }
  bool Consume(char c) {
    if (!Peek(c)) return false;
    ++i_;
    return true;
  }
  bool AtEnd() {
    Ws();
    return i_ == s_.size();
  }
  size_t pos() const { return i_; }

  bool String(std::string* out) {
    if (!Consume('"')) return false;
    out->clear();
    while (i_ < s_.size()) {
      unsigned char c = static_cast<unsigned char>(s_[i_++]);
      if (c == '"') return true;
      if (c < 0x20) return false;
      if (c != '\\') {
        out->push_back(static_cast<char>(c));
        continue;
      }
      if (i_ >= s_.size()) return false;
      char e = s_[i_++];
      switch (e) {
        case '"':
          out->push_back('"');
          break;
        case '\\':
          out->push_back('\\');
          break;
        case '/':
          out->push_back('/');
          break;
        case 'b':
          out->push_back('\b');
          break;
        case 'f':
          out->push_back('\f');
          break;
        case 'n':
          out->push_back('\n');
          break;
        case 'r':
          out->push_back('\r');
          break;
        case 't':
          out->push_back('\t');
          break;
        case 'u': {
          uint32_t cp = 0;
          if (!Hex4(&cp)) return false;
          if (cp >= 0xD800 && cp <= 0xDBFF) {  // a surrogate pair
            uint32_t lo = 0;
            if (i_ + 1 >= s_.size() || s_[i_] != '\\' || s_[i_ + 1] != 'u') return false;
            i_ += 2;
            if (!Hex4(&lo) || lo < 0xDC00 || lo > 0xDFFF) return false;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            return false;
          }
          if (cp == 0) return false;  // no NUL in paths or options
          AppendUtf8(cp, out);
          break;
        }
        default:
          return false;
      }
    }
    return false;
  }

  // Skips one value of any type.
  bool Skip(int depth = 0) {
    if (depth > 64) return false;
    Ws();
    if (i_ >= s_.size()) return false;
    char c = s_[i_];
    std::string tmp;
    if (c == '"') return String(&tmp);
    if (c == '{' || c == '[') {
      char close = c == '{' ? '}' : ']';
      ++i_;
      if (Consume(close)) return true;
      do {
        if (c == '{' && (!String(&tmp) || !Consume(':'))) return false;
        if (!Skip(depth + 1)) return false;
      } while (Consume(','));
      return Consume(close);
    }
    // true, false, null or a number: a run of literal characters.
    size_t start = i_;
    while (i_ < s_.size() &&
           std::string_view("+-.0123456789eEtrufalsn").find(s_[i_]) != std::string_view::npos) {
      ++i_;
    }
    return i_ > start;
  }

 private:
  bool Hex4(uint32_t* out) {
    if (i_ + 4 > s_.size()) return false;
    uint32_t v = 0;
    for (int k = 0; k < 4; ++k) {
      char h = s_[i_++];
      v <<= 4;
      if (h >= '0' && h <= '9')
        v |= static_cast<uint32_t>(h - '0');
      else if (h >= 'a' && h <= 'f')
        v |= static_cast<uint32_t>(h - 'a' + 10);
      else if (h >= 'A' && h <= 'F')
        v |= static_cast<uint32_t>(h - 'A' + 10);
      else
        return false;
    }
    *out = v;
    return true;
  }
  static void AppendUtf8(uint32_t cp, std::string* out) {
    if (cp < 0x80) {
      out->push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }

  std::string_view s_;
  size_t i_ = 0;
};

// The mount(2) arguments an option list means.
struct MountArgs {
  unsigned long flags = 0;        // applied by the first mount(2) call
  unsigned long propagation = 0;  // MS_SHARED, MS_PRIVATE, ... (| MS_REC), a second call
  std::string data;               // the options that are not flags, comma-separated
};

inline MountArgs ParseOptions(const MountSpec& m) {
  struct Flag {
    std::string_view name;
    bool clear;
    unsigned long flag;
  };
  static constexpr Flag kFlags[] = {
      {"async", true, MS_SYNCHRONOUS},
      {"atime", true, MS_NOATIME},
      {"bind", false, MS_BIND},
      {"defaults", false, 0},
      {"dev", true, MS_NODEV},
      {"diratime", true, MS_NODIRATIME},
      {"dirsync", false, MS_DIRSYNC},
      {"exec", true, MS_NOEXEC},
      {"mand", false, MS_MANDLOCK},
      {"noatime", false, MS_NOATIME},
      {"nodev", false, MS_NODEV},
      {"nodiratime", false, MS_NODIRATIME},
      {"noexec", false, MS_NOEXEC},
      {"nomand", true, MS_MANDLOCK},
      {"norelatime", true, MS_RELATIME},
      {"nostrictatime", true, MS_STRICTATIME},
      {"nosuid", false, MS_NOSUID},
      {"rbind", false, MS_BIND | MS_REC},
      {"relatime", false, MS_RELATIME},
      {"remount", false, MS_REMOUNT},
      {"ro", false, MS_RDONLY},
      {"rw", true, MS_RDONLY},
      {"strictatime", false, MS_STRICTATIME},
      {"suid", true, MS_NOSUID},
      {"sync", false, MS_SYNCHRONOUS},
  };
  static constexpr Flag kPropagation[] = {
      {"private", false, MS_PRIVATE},       {"rprivate", false, MS_PRIVATE | MS_REC},
      {"shared", false, MS_SHARED},         {"rshared", false, MS_SHARED | MS_REC},
      {"slave", false, MS_SLAVE},           {"rslave", false, MS_SLAVE | MS_REC},
      {"unbindable", false, MS_UNBINDABLE}, {"runbindable", false, MS_UNBINDABLE | MS_REC},
  };
  MountArgs a;
  if (m.type == "bind") a.flags |= MS_BIND;
  for (const std::string& o : m.options) {
    bool known = false;
    for (const Flag& f : kFlags) {
      if (o != f.name) continue;
      known = true;
      if (f.clear) {
        a.flags &= ~f.flag;
      } else {
        a.flags |= f.flag;
      }
    }
    for (const Flag& f : kPropagation) {
      if (o != f.name) continue;
      known = true;
      a.propagation |= f.flag;
    }
    if (!known) {
      if (!a.data.empty()) a.data += ',';
      a.data += o;
    }
  }
  return a;
}

// The flags a read-only bind remount must keep: the kernel refuses to clear locked ones.
inline unsigned long LockedFlags(const std::string& target) {
  struct statvfs st {};
  if (::statvfs(target.c_str(), &st) != 0) return 0;
  unsigned long flags = 0;
  if (st.f_flag & ST_NOSUID) flags |= MS_NOSUID;
  if (st.f_flag & ST_NODEV) flags |= MS_NODEV;
  if (st.f_flag & ST_NOEXEC) flags |= MS_NOEXEC;
  if (st.f_flag & ST_NOATIME) flags |= MS_NOATIME;
  if (st.f_flag & ST_NODIRATIME) flags |= MS_NODIRATIME;
  if (st.f_flag & ST_RELATIME) flags |= MS_RELATIME;
  return flags;
}

inline std::string Shorten(const std::string& s, size_t max = 240) {
  return s.size() <= max ? s : s.substr(0, max) + "... (" + std::to_string(s.size()) + " bytes)";
}

// Performs one mount on `target` (absolute) from the calling thread.
inline Status MountOne(const MountSpec& m, const std::string& target) {
  MountArgs a = ParseOptions(m);
  const char* type = m.type.empty() ? nullptr : m.type.c_str();
  const char* data = a.data.empty() ? nullptr : a.data.c_str();
  std::string what = "mount " + (m.type.empty() ? std::string("?") : m.type) + " of \"" + m.source +
                     "\" on " + target;
  if (!m.chdir.empty()) what += " (from " + m.chdir + ")";
  // mount(2) copies one page of options and silently drops the rest: an overlay would come
  // up with fewer layers than asked for.
  long page = ::sysconf(_SC_PAGESIZE);
  if (page > 0 && a.data.size() >= static_cast<size_t>(page)) {
    return InvalidArgument(what + " refused: its options take " + std::to_string(a.data.size()) +
                           " bytes, and the kernel reads at most " + std::to_string(page - 1) +
                           " (a snapshotter uses paths relative to \"chdir\" for deep layer "
                           "chains)");
  }
  if ((a.flags & MS_REMOUNT) == 0 || data != nullptr) {
    unsigned long first = a.flags;
    // A bind ignores every flag but MS_REC on its first call; ro comes with a remount.
    if (first & MS_BIND) first &= MS_BIND | MS_REC;
    if (::mount(m.source.c_str(), target.c_str(), type, first, data) != 0) {
      int err = errno;
      Status s = ErrnoToStatus(err, what + " failed");
      if (a.data.empty()) return s;
      return {s.code(), s.message() + "; options: " + Shorten(a.data)};
    }
  }
  if (a.propagation != 0 &&
      ::mount(nullptr, target.c_str(), nullptr, a.propagation, nullptr) != 0) {
    Status s = ErrnoToStatus(errno, what + ": setting propagation failed");
    ::umount2(target.c_str(), MNT_DETACH);
    return s;
  }
  constexpr unsigned long kBindFlags = MS_BIND | MS_REMOUNT;
  unsigned long extra = a.flags & ~(MS_BIND | MS_REC | MS_REMOUNT);
  if ((a.flags & MS_BIND) != 0 && (a.flags & MS_REMOUNT) == 0 && extra != 0) {
    if (::mount(nullptr, target.c_str(), nullptr, kBindFlags | extra | LockedFlags(target),
                nullptr) != 0) {
      Status s = ErrnoToStatus(errno, what + ": read-only/flags remount of the bind failed");
      ::umount2(target.c_str(), MNT_DETACH);
      return s;
    }
  }
  return Status::Ok();
}

// Runs MountOne on a thread of its own whose working directory is m.chdir.
inline Status MountFromDir(const MountSpec& m, const std::string& target) {
  Status result;
  try {
    std::thread t([&] {
      if (::unshare(CLONE_FS) != 0) {
        result = ErrnoToStatus(errno, "unshare(CLONE_FS) before mounting from " + m.chdir);
        return;
      }
      if (::chdir(m.chdir.c_str()) != 0) {
        result = ErrnoToStatus(errno, "chdir to " + m.chdir + " before mounting on " + target);
        return;
      }
      result = MountOne(m, target);
    });
    t.join();
  } catch (const std::exception& e) {
    return Internal(std::string("cannot start the mount thread: ") + e.what());
  }
  return result;
}

}  // namespace mount_internal

// Parses the mounts JSON array. INVALID_ARGUMENT, with the byte offset, when malformed.
inline Result<std::vector<MountSpec>> ParseMounts(std::string_view json) {
  mount_internal::JsonReader r(json);
  auto bad = [&r](std::string_view what) {
    return InvalidArgument("mounts JSON: " + std::string(what) + " at byte " +
                           std::to_string(r.pos()));
  };
  std::vector<MountSpec> out;
  if (!r.Consume('[')) return bad("expected an array");
  if (!r.Consume(']')) {
    do {
      MountSpec m;
      if (!r.Consume('{')) return bad("expected an object");
      if (!r.Consume('}')) {
        do {
          std::string key;
          if (!r.String(&key) || !r.Consume(':')) return bad("expected \"key\":");
          if (key == "type" || key == "source" || key == "chdir") {
            std::string* field = key == "type" ? &m.type : key == "source" ? &m.source : &m.chdir;
            if (!r.String(field)) return bad("expected a string for \"" + key + "\"");
          } else if (key == "options") {
            if (!r.Consume('[')) return bad("expected an array for \"options\"");
            if (!r.Consume(']')) {
              do {
                std::string o;
                if (!r.String(&o)) return bad("expected a string option");
                m.options.push_back(std::move(o));
              } while (r.Consume(','));
              if (!r.Consume(']')) return bad("expected ] after the options");
            }
          } else if (!r.Skip()) {
            return bad("malformed value of \"" + key + "\"");
          }
        } while (r.Consume(','));
        if (!r.Consume('}')) return bad("expected }");
      }
      if (m.type.empty()) return bad("a mount without \"type\"");
      if (!m.chdir.empty() && m.chdir[0] != '/') return bad("\"chdir\" is not absolute");
      out.push_back(std::move(m));
    } while (r.Consume(','));
    if (!r.Consume(']')) return bad("expected ]");
  }
  if (!r.AtEnd()) return bad("trailing characters");
  return out;
}

// Performs parsed mounts on `target`, in order (each on top of the previous one). On
// failure, the mounts this call made are undone.
inline Status MountAll(const std::vector<MountSpec>& mounts, const std::string& target) {
  if (target.empty()) return InvalidArgument("mount target is empty");
  std::string abs_target = target;
  if (abs_target[0] != '/') {  // a relative target would resolve against "chdir"
    char* cwd = ::getcwd(nullptr, 0);
    if (cwd == nullptr) return ErrnoToStatus(errno, "getcwd for mount target " + target);
    abs_target = std::string(cwd) + "/" + target;
    ::free(cwd);
  }
  size_t done = 0;
  for (const MountSpec& m : mounts) {
    Status s = m.chdir.empty() ? mount_internal::MountOne(m, abs_target)
                               : mount_internal::MountFromDir(m, abs_target);
    if (!s.ok()) {
      for (; done > 0; --done) ::umount2(abs_target.c_str(), MNT_DETACH);
      return s;
    }
    ++done;
  }
  return Status::Ok();
}

// Parses `mounts_json` (a snapshotter's mounts) and performs the mounts on `target`.
inline Status MountAll(std::string_view mounts_json, const std::string& target) {
  Result<std::vector<MountSpec>> mounts = ParseMounts(mounts_json);
  if (!mounts.ok()) return mounts.status();
  return MountAll(*mounts, target);
}

// Unmounts everything stacked on `target` (umount2 with `flags`, e.g. MNT_DETACH). A target
// that is not (or no longer) a mount point, or does not exist, is not an error.
inline Status Unmount(const std::string& target, int flags = 0) {
  for (int i = 0; i < 256; ++i) {
    if (::umount2(target.c_str(), flags | UMOUNT_NOFOLLOW) == 0) continue;
    int err = errno;
    if (err == EINVAL || err == ENOENT) return Status::Ok();
    return ErrnoToStatus(err, "unmount " + target);
  }
  return FailedPrecondition("unmount " + target + ": still mounted after 256 unmounts");
}

}  // namespace berth::sdk
