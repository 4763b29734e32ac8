// SPDX-License-Identifier: Apache-2.0
#include "plugins/runtime-runc/runtime_probe.h"

#include <linux/magic.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/statfs.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <optional>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/status_macros.h"
#include "plugins/common/mountinfo.h"
#include "plugins/runtime-runc/shim/exec_sync.h"

namespace berth::runc {
namespace {

constexpr size_t kMaxVersionOutput = 64 << 10;
constexpr size_t kMaxStderrInError = 512;
// Stacked cgroup2 mounts at <root>/unified that the child workaround removes at most.
constexpr int kMaxStackedUnified = 8;

constexpr char kCrunHybridError[] =
    "cgroups in hybrid mode not supported, drop all controllers from cgroupv2";

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

std::string_view Trim(std::string_view s) {
  while (!s.empty() && IsSpace(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsSpace(s.back())) s.remove_suffix(1);
  return s;
}

// Splits on runs of `sep` (or any whitespace when sep is 0); no empty pieces.
std::vector<std::string_view> Words(std::string_view s, char sep = 0) {
  std::vector<std::string_view> out;
  size_t i = 0;
  auto is_sep = [sep](char c) { return sep == 0 ? IsSpace(c) : c == sep; };
  while (i < s.size()) {
    while (i < s.size() && is_sep(s[i])) ++i;
    size_t start = i;
    while (i < s.size() && !is_sep(s[i])) ++i;
    if (i > start) out.push_back(s.substr(start, i - start));
  }
  return out;
}

std::vector<std::string_view> Lines(std::string_view s) {
  std::vector<std::string_view> out;
  while (!s.empty()) {
    size_t nl = s.find('\n');
    out.push_back(s.substr(0, nl));
    if (nl == std::string_view::npos) break;
    s.remove_prefix(nl + 1);
  }
  return out;
}

std::string NormalizeRoot(std::string_view root) {
  std::string r(root);
  while (r.size() > 1 && r.back() == '/') r.pop_back();
  return r;
}

struct MountEntry {
  long id = 0;
  long parent = 0;
  std::string mount_point;
  std::string fstype;
  std::string super_options;
};

bool ParseLong(std::string_view s, long* out) {
  if (s.empty() || s.size() > 18) return false;
  long v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  *out = v;
  return true;
}

absl::StatusOr<std::vector<MountEntry>> ParseMountinfoEntries(std::string_view text) {
  std::vector<MountEntry> entries;
  int line_no = 0;
  for (std::string_view line : Lines(text)) {
    ++line_no;
    if (Trim(line).empty()) continue;
    std::vector<std::string_view> f = Words(line, ' ');
    // id parent major:minor root mount-point options [optional...] - fstype source super-options
    size_t sep = 6;
    while (sep < f.size() && f[sep] != "-") ++sep;
    MountEntry e;
    if (f.size() < 6 || sep + 2 >= f.size() || !ParseLong(f[0], &e.id) ||
        !ParseLong(f[1], &e.parent)) {
      return absl::InvalidArgumentError(
          absl::StrCat("mountinfo line ", line_no, " is malformed: \"", std::string(line), "\""));
    }
    e.mount_point = plugins::UnescapeMountinfo(f[4]);
    e.fstype = std::string(f[sep + 1]);
    e.super_options = sep + 3 < f.size() ? std::string(f[sep + 3]) : std::string();
    entries.push_back(std::move(e));
  }
  return entries;
}

// The stack of mounts at `path` that starts with a mount whose parent is `parent_id` (any
// parent when nullopt), bottom first. Mounts hidden under another parent are not followed.
std::vector<const MountEntry*> StackAt(const std::vector<MountEntry>& entries,
                                       const std::string& path, std::optional<long> parent_id) {
  std::vector<const MountEntry*> at;
  for (const MountEntry& e : entries) {
    if (e.mount_point == path) at.push_back(&e);
  }
  const MountEntry* bottom = nullptr;
  for (const MountEntry* e : at) {
    bool parent_is_here =
        std::any_of(at.begin(), at.end(), [e](const MountEntry* o) { return o->id == e->parent; });
    if (parent_id ? e->parent == *parent_id : !parent_is_here) bottom = e;  // last one wins
  }
  std::vector<const MountEntry*> stack;
  for (const MountEntry* cur = bottom; cur != nullptr && stack.size() <= at.size();) {
    stack.push_back(cur);
    const MountEntry* next = nullptr;
    for (const MountEntry* o : at) {
      if (o->parent == cur->id) next = o;
    }
    cur = next;
  }
  return stack;
}

bool IsV1Option(std::string_view opt) {
  static constexpr std::string_view kNotControllers[] = {"rw",
                                                         "ro",
                                                         "none",
                                                         "xattr",
                                                         "noprefix",
                                                         "clone_children",
                                                         "cpuset_v2_mode",
                                                         "favordynmods",
                                                         "nofavordynmods"};
  if (opt.empty() || opt.substr(0, 14) == "release_agent=") return false;
  return std::find(std::begin(kNotControllers), std::end(kNotControllers), opt) ==
         std::end(kNotControllers);
}

std::string ReadWholeFile(const std::string& path, bool* ok) {
  std::ifstream f(path, std::ios::binary);
  *ok = static_cast<bool>(f);
  std::stringstream s;
  if (*ok) s << f.rdbuf();
  return s.str();
}

std::string ControllersText(const std::vector<std::string>& controllers) {
  return controllers.empty() ? std::string("none") : absl::StrJoin(controllers, ", ");
}

}  // namespace

// ---- Which runtime -------------------------------------------------------------------------

absl::StatusOr<RuntimeIdentity> ParseRuntimeVersion(std::string_view output) {
  std::vector<std::string_view> lines = Lines(output);
  auto first =
      std::find_if(lines.begin(), lines.end(), [](std::string_view l) { return !Trim(l).empty(); });
  if (first == lines.end()) {
    return absl::InvalidArgumentError("runtime --version printed nothing");
  }
  std::vector<std::string_view> w = Words(*first);
  if (w.size() < 3 || (w[1] != "version" && w[1] != "version:")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "unrecognized runtime --version output (want \"<name> version <version>\"): \"",
        std::string(Trim(*first)), "\""));
  }
  RuntimeIdentity id;
  id.name = std::string(w[0]);
  id.version = std::string(w[2]);
  if (id.name == "runc") {
    id.kind = RuntimeKind::kRunc;
  } else if (id.name == "crun") {
    id.kind = RuntimeKind::kCrun;
  }
  for (auto it = first + 1; it != lines.end(); ++it) {
    std::string_view l = Trim(*it);
    if (l.substr(0, 5) == "spec:") {
      id.spec_version = std::string(Trim(l.substr(5)));
      break;
    }
  }
  return id;
}

absl::StatusOr<RuntimeIdentity> IdentifyRuntime(const std::string& binary,
                                                std::chrono::milliseconds timeout) {
  shim::ExecSyncOptions options;
  options.argv = {binary, "--version"};
  options.timeout = timeout;
  options.max_output_bytes = kMaxVersionOutput;
  options.drain_grace = std::min(timeout, std::chrono::milliseconds(500));
  ASSIGN_OR_RETURN(shim::ExecSyncResult result, shim::ExecSync(options));
  if (result.timed_out) {
    return absl::DeadlineExceededError(
        absl::StrCat("\"", binary, " --version\" did not finish in ", timeout.count(), " ms"));
  }
  if (result.exit_code != 0) {
    std::string err(Trim(result.stderr_data));
    if (err.size() > kMaxStderrInError) err = err.substr(0, kMaxStderrInError) + "...";
    return absl::FailedPreconditionError(
        absl::StrCat("\"", binary, " --version\" exited with ", result.exit_code, ": ", err));
  }
  absl::StatusOr<RuntimeIdentity> id = ParseRuntimeVersion(result.stdout_data);
  if (!id.ok()) {
    return absl::Status(id.status().code(),
                        absl::StrCat(binary, ": ", std::string(id.status().message())));
  }
  return id;
}

// ---- Cgroup layout -------------------------------------------------------------------------

std::string_view CgroupLayoutName(CgroupLayout layout) {
  switch (layout) {
    case CgroupLayout::kV1:
      return "v1";
    case CgroupLayout::kHybrid:
      return "hybrid";
    case CgroupLayout::kV2:
      return "v2";
    case CgroupLayout::kUnknown:
      break;
  }
  return "unknown";
}

absl::StatusOr<CgroupMountView> ParseCgroupMountinfo(std::string_view mountinfo,
                                                     std::string_view root_in) {
  const std::string root = NormalizeRoot(root_in);
  if (root.empty() || root.front() != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("cgroup root must be an absolute path: \"", root, "\""));
  }
  ASSIGN_OR_RETURN(std::vector<MountEntry> entries, ParseMountinfoEntries(mountinfo));

  CgroupMountView view;
  std::vector<const MountEntry*> root_stack = StackAt(entries, root, std::nullopt);
  if (root_stack.empty()) return view;
  const MountEntry& top = *root_stack.back();
  view.root_fstype = top.fstype;
  if (top.fstype == "cgroup2") {
    view.layout = CgroupLayout::kV2;
    return view;
  }
  if (top.fstype != "tmpfs") return view;

  const std::string prefix = root == "/" ? root : root + "/";
  const std::string unified = prefix + kUnifiedDir;
  std::vector<std::string> children;
  for (const MountEntry& e : entries) {
    if (e.parent != top.id || e.mount_point.size() <= prefix.size() ||
        e.mount_point.compare(0, prefix.size(), prefix) != 0 ||
        e.mount_point.find('/', prefix.size()) != std::string::npos) {
      continue;
    }
    if (std::find(children.begin(), children.end(), e.mount_point) == children.end()) {
      children.push_back(e.mount_point);
    }
  }
  for (const std::string& child : children) {
    std::vector<const MountEntry*> stack = StackAt(entries, child, top.id);
    if (stack.empty()) continue;
    if (child == unified) {
      for (auto it = stack.rbegin(); it != stack.rend() && (*it)->fstype == "cgroup2"; ++it) {
        ++view.unified_cgroup2_mounts;
      }
    }
    if (stack.back()->fstype != "cgroup") continue;
    for (std::string_view opt : Words(stack.back()->super_options, ',')) {
      if (IsV1Option(opt)) view.v1_controllers.emplace_back(opt);
    }
  }
  std::sort(view.v1_controllers.begin(), view.v1_controllers.end());
  view.v1_controllers.erase(std::unique(view.v1_controllers.begin(), view.v1_controllers.end()),
                            view.v1_controllers.end());
  if (view.unified_cgroup2_mounts > 0) {
    view.layout = CgroupLayout::kHybrid;
  } else if (!view.v1_controllers.empty()) {
    view.layout = CgroupLayout::kV1;
  }
  return view;
}

std::vector<std::string> ParseCgroupControllers(std::string_view text) {
  std::vector<std::string> out;
  for (std::string_view w : Words(text)) out.emplace_back(w);
  return out;
}

absl::StatusOr<CgroupHost> ProbeCgroupHost(const std::string& root_in, std::string_view mountinfo) {
  CgroupHost host;
  host.root = NormalizeRoot(root_in);
  ASSIGN_OR_RETURN(host.mounts, ParseCgroupMountinfo(mountinfo, host.root));

  struct statfs st {};
  if (::statfs(host.root.c_str(), &st) != 0) {
    return core::ErrnoToStatus(errno, absl::StrCat("statfs ", host.root));
  }
  if (st.f_type == CGROUP2_SUPER_MAGIC) {
    host.layout = CgroupLayout::kV2;
  } else if (st.f_type == TMPFS_MAGIC) {
    const std::string unified = absl::StrCat(host.root, "/", kUnifiedDir);
    struct statfs ust {};
    if (::statfs(unified.c_str(), &ust) == 0 && ust.f_type == CGROUP2_SUPER_MAGIC) {
      host.layout = CgroupLayout::kHybrid;
      bool ok = false;
      const std::string path = unified + "/cgroup.controllers";
      std::string text = ReadWholeFile(path, &ok);
      if (!ok) return absl::NotFoundError(absl::StrCat("cannot read ", path));
      host.unified_controllers = ParseCgroupControllers(text);
    } else {
      host.layout = CgroupLayout::kV1;
    }
  }
  return host;
}

absl::StatusOr<CgroupHost> ProbeCgroupHost(const std::string& root) {
  bool ok = false;
  std::string mountinfo = ReadWholeFile("/proc/self/mountinfo", &ok);
  if (!ok) return absl::NotFoundError("cannot read /proc/self/mountinfo");
  return ProbeCgroupHost(root, mountinfo);
}

// ---- Verdict -------------------------------------------------------------------------------

std::string_view ReadinessName(Readiness readiness) {
  switch (readiness) {
    case Readiness::kReady:
      return "ready";
    case Readiness::kReadyWithWorkaround:
      return "ready-with-workaround";
    case Readiness::kNotReady:
      break;
  }
  return "not-ready";
}

bool CrunHybridWorkaroundApplicable(const CgroupHost& host) {
  return host.layout == CgroupLayout::kHybrid && host.mounts.root_fstype == "tmpfs" &&
         host.mounts.unified_cgroup2_mounts == 1;
}

RuntimeReadiness EvaluateRuntimeReadiness(const RuntimeIdentity& runtime, const CgroupHost& host,
                                          bool allow_crun_workaround) {
  RuntimeReadiness verdict;
  if (runtime.kind != RuntimeKind::kCrun || host.layout != CgroupLayout::kHybrid ||
      host.unified_controllers.empty()) {
    return verdict;
  }
  const std::string unified = absl::StrCat(host.root, "/", kUnifiedDir);
  const std::string what = absl::StrCat(
      "crun ", runtime.version,
      " rejects this host's hybrid cgroups (v1 controllers on a tmpfs at ", host.root,
      ", a cgroup2 mount at ", unified,
      " holding controllers: ", ControllersText(host.unified_controllers),
      "): every create/run fails, whatever --cgroup-manager, with \"", kCrunHybridError, "\".");
  const std::string remedy =
      "Use runc here, or a host with cgroup v2 only or cgroup v1 only (no controller in the "
      "cgroup2 hierarchy).";

  if (allow_crun_workaround && CrunHybridWorkaroundApplicable(host)) {
    verdict.readiness = Readiness::kReadyWithWorkaround;
    verdict.reason = kReasonCrunHybridWorkaround;
    verdict.message = absl::StrCat(
        what, " berth runs crun create and run in a new mount namespace where ", host.root,
        " is made rslave and the cgroup2 mount at ", unified,
        " is detached, so crun uses the v1 controllers only; containers get no cgroup of their "
        "own in the cgroup2 hierarchy (no per-container ",
        ControllersText(host.unified_controllers), " or pressure accounting there). ", remedy);
    return verdict;
  }
  verdict.readiness = Readiness::kNotReady;
  verdict.reason = kReasonCrunHybridUnsupported;
  std::string why;
  if (!allow_crun_workaround) {
    why = "The mount-namespace workaround is disabled. ";
  } else if (host.mounts.root_fstype != "tmpfs") {
    why = absl::StrCat("The mount-namespace workaround does not apply: ", host.root,
                       " is not a tmpfs mount point in /proc/self/mountinfo. ");
  } else {
    why = absl::StrCat("The mount-namespace workaround does not apply: /proc/self/mountinfo shows ",
                       host.mounts.unified_cgroup2_mounts, " cgroup2 mounts at ", unified,
                       " (want exactly 1). ");
  }
  verdict.message = absl::StrCat(what, " ", why, remedy);
  return verdict;
}

// ---- Workaround ----------------------------------------------------------------------------

int ApplyCrunHybridWorkaroundInChild(const char* cgroup_root, const char* unified) noexcept {
  if (::unshare(CLONE_NEWNS) != 0) return errno;
  // Must precede the umount: with a shared /sys/fs/cgroup the umount would propagate to the
  // caller's namespace.
  if (::mount(nullptr, cgroup_root, nullptr, MS_REC | MS_SLAVE, nullptr) != 0) return errno;
  if (::umount2(unified, MNT_DETACH) != 0) return errno;
  for (int i = 0; i < kMaxStackedUnified; ++i) {
    struct statfs st;
    if (::statfs(unified, &st) != 0 || st.f_type != CGROUP2_SUPER_MAGIC) return 0;
    if (::umount2(unified, MNT_DETACH) != 0) return errno;
  }
  return EBUSY;
}

}  // namespace berth::runc
