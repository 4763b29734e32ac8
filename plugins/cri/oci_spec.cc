// SPDX-License-Identifier: Apache-2.0
#include "plugins/cri/oci_spec.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <type_traits>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "core/status_macros.h"
#include "plugins/common/mountinfo.h"
#include "plugins/cri/cdi.h"
#include "plugins/cri/lsm.h"
#include "plugins/cri/seccomp_profile.h"
#include "plugins/cri/user_lookup.h"

namespace berth::cri {
namespace {

using nlohmann::json;

constexpr char kOciVersion[] = "1.0.2";
constexpr char kDefaultPath[] = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
constexpr int kSandboxOomScoreAdj = -998;
constexpr int64_t kSandboxCpuShares = 2;
constexpr int64_t kMaxCpuShares = 262144;
constexpr int64_t kMinCfsMicros = 1000;     // the kernel's lower bound of period and quota
constexpr int64_t kMaxCfsPeriod = 1000000;  // 1 s, the kernel's upper bound of the period

constexpr char kAnnotationPrefix[] = "io.kubernetes.cri.";

// Capability names by number (capability.h). Order is the output order.
// clang-format off
constexpr const char* kKnownCapabilities[] = {
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN",
    "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON",
    "CAP_BPF", "CAP_CHECKPOINT_RESTORE"};
// clang-format on

// Paths hidden from and made read-only for unprivileged containers: kernel interfaces that
// leak host information or allow host changes.
const std::vector<std::string>& DefaultMaskedPaths() {
  // clang-format off
  static const std::vector<std::string> paths = {
      "/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys",
      "/proc/latency_stats", "/proc/sched_debug", "/proc/scsi", "/proc/timer_list",
      "/proc/timer_stats", "/sys/devices/virtual/powercap", "/sys/firmware"};
  // clang-format on
  return paths;
}

const std::vector<std::string>& DefaultReadonlyPaths() {
  static const std::vector<std::string> paths = {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                                                 "/proc/sysrq-trigger"};
  return paths;
}

absl::Status Invalid(absl::string_view field, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", why));
}

absl::Status InvalidValue(absl::string_view field, absl::string_view value, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(field, " \"", value, "\": ", why));
}

std::string ErrnoText(int err) {
  std::string s = std::strerror(err);
  if (!s.empty()) s[0] = absl::ascii_tolower(static_cast<unsigned char>(s[0]));
  return s;
}

// An absolute container path without "." and empty components; ".." is refused (a mount
// destination that climbs is either a mistake or an attempt to leave the rootfs).
absl::StatusOr<std::string> CleanContainerPath(absl::string_view path, absl::string_view field) {
  if (path.empty()) return Invalid(field, "empty (an absolute path is required)");
  if (path[0] != '/') return InvalidValue(field, path, "must be an absolute path");
  std::vector<absl::string_view> parts;
  for (absl::string_view c : absl::StrSplit(path, '/', absl::SkipEmpty())) {
    if (c == ".") continue;
    if (c == "..") return InvalidValue(field, path, "must not contain \"..\"");
    parts.push_back(c);
  }
  return absl::StrCat("/", absl::StrJoin(parts, "/"));
}

size_t Depth(absl::string_view clean_path) {
  return clean_path == "/"
             ? 0
             : static_cast<size_t>(std::count(clean_path.begin(), clean_path.end(), '/'));
}

// ---------------------------------------------------------------------------------------
// Image config

// The "config" object of an image config document, or the document itself when it is
// already that object.
json ImageConfigObject(const json& image_config) {
  if (image_config.is_object()) {
    auto it = image_config.find("config");
    if (it != image_config.end() && it->is_object()) return *it;
    if (it == image_config.end() && !image_config.contains("rootfs")) return image_config;
  }
  return json::object();
}

absl::StatusOr<std::vector<std::string>> StringArray(const json& obj, const char* key) {
  std::vector<std::string> out;
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return out;
  if (!it->is_array()) return Invalid(absl::StrCat("image config ", key), "not an array");
  for (const json& v : *it) {
    if (!v.is_string()) {
      return Invalid(absl::StrCat("image config ", key), "not an array of strings");
    }
    out.push_back(v.get<std::string>());
  }
  return out;
}

absl::StatusOr<std::string> StringField(const json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return std::string();
  if (!it->is_string()) return Invalid(absl::StrCat("image config ", key), "not a string");
  return it->get<std::string>();
}

// ---------------------------------------------------------------------------------------
// Process

absl::StatusOr<json> MergeArgs(const runtime::v1::ContainerConfig& config, const json& image) {
  ASSIGN_OR_RETURN(std::vector<std::string> entrypoint, StringArray(image, "Entrypoint"));
  ASSIGN_OR_RETURN(std::vector<std::string> cmd, StringArray(image, "Cmd"));
  std::vector<std::string> args;
  if (config.command_size() > 0) {
    args.assign(config.command().begin(), config.command().end());
    args.insert(args.end(), config.args().begin(), config.args().end());
  } else if (config.args_size() > 0) {
    args = entrypoint;
    args.insert(args.end(), config.args().begin(), config.args().end());
  } else {
    args = entrypoint;
    args.insert(args.end(), cmd.begin(), cmd.end());
  }
  if (args.empty()) {
    return absl::InvalidArgumentError(
        "no command specified: the container config has no command or args and the image "
        "config has no Entrypoint or Cmd");
  }
  return json(args);
}

absl::string_view EnvKey(absl::string_view entry) { return entry.substr(0, entry.find('=')); }

// An ordered environment where a later Set of a key replaces the value in place.
class Environment {
 public:
  void Set(std::string entry) {
    std::string key(EnvKey(entry));
    auto it = index_.find(key);
    if (it != index_.end()) {
      entries_[it->second] = std::move(entry);
      return;
    }
    index_.emplace(std::move(key), entries_.size());
    entries_.push_back(std::move(entry));
  }
  bool Has(const std::string& key) const { return index_.count(key) > 0; }
  const std::vector<std::string>& entries() const { return entries_; }

 private:
  std::vector<std::string> entries_;
  std::map<std::string, size_t> index_;
};

json UserJson(const ResolvedUser& u) {
  return json{{"uid", u.uid}, {"gid", u.gid}, {"additionalGids", u.additional_gids}};
}

int ClampOomScoreAdj(int64_t v, const SpecInputs& in) {
  int64_t lo = std::clamp<int64_t>(in.oom_score_adj_min, -1000, 1000);
  return static_cast<int>(std::clamp<int64_t>(v, lo, 1000));
}

// ---------------------------------------------------------------------------------------
// Capabilities

// "net_admin", "CAP_NET_ADMIN" -> "CAP_NET_ADMIN"; "all" -> "ALL".
std::string NormalizeCapability(absl::string_view name) {
  std::string up = absl::AsciiStrToUpper(absl::StripAsciiWhitespace(name));
  if (up == "ALL" || absl::StartsWith(up, "CAP_")) return up;
  return absl::StrCat("CAP_", up);
}

size_t CapabilityRank(const std::string& cap) {
  for (size_t i = 0; i < std::size(kKnownCapabilities); ++i) {
    if (cap == kKnownCapabilities[i]) return i;
  }
  return std::size(kKnownCapabilities);
}

bool IsKnownCapability(const std::string& cap) {
  return CapabilityRank(cap) < std::size(kKnownCapabilities);
}

// A capability set printed in kernel order (unknown names last, by name).
struct CapOrder {
  bool operator()(const std::string& a, const std::string& b) const {
    size_t ra = CapabilityRank(a), rb = CapabilityRank(b);
    return ra != rb ? ra < rb : a < b;
  }
};
using CapSet = std::set<std::string, CapOrder>;

// What berthd may hand out: its bounding set, or every known capability when not given.
CapSet CapabilityUniverse(const SpecInputs& in) {
  CapSet all;
  if (in.host_capabilities.empty()) {
    all.insert(std::begin(kKnownCapabilities), std::end(kKnownCapabilities));
  } else {
    for (const std::string& c : in.host_capabilities) all.insert(NormalizeCapability(c));
  }
  return all;
}

json CapabilitiesJson(const CapSet& caps, const CapSet& ambient) {
  json list(std::vector<std::string>(caps.begin(), caps.end()));
  json out = {{"bounding", list}, {"effective", list}, {"permitted", list}};
  if (!ambient.empty()) {
    json amb(std::vector<std::string>(ambient.begin(), ambient.end()));
    out["inheritable"] = amb;
    out["ambient"] = amb;
  }
  return out;
}

json DefaultCapabilitiesJson(const SpecInputs& in) {
  CapSet universe = CapabilityUniverse(in);
  CapSet caps;
  for (const std::string& c : DefaultCapabilities()) {
    if (universe.count(c) > 0) caps.insert(c);
  }
  return CapabilitiesJson(caps, {});
}

// Kubernetes semantics: add ALL starts from everything, drop ALL from nothing; then the
// named additions, then the named drops (a capability both added and dropped is dropped).
absl::StatusOr<json> ContainerCapabilities(const runtime::v1::LinuxContainerSecurityContext& sc,
                                           const SpecInputs& in) {
  const CapSet universe = CapabilityUniverse(in);
  if (sc.privileged()) return CapabilitiesJson(universe, {});
  const runtime::v1::Capability& req = sc.capabilities();
  const std::string base = "linux.security_context.capabilities.";
  auto check = [&](const std::string& list, int i, absl::string_view raw,
                   bool allow_all) -> absl::StatusOr<std::string> {
    std::string cap = NormalizeCapability(raw);
    std::string field = absl::StrCat(base, list, "[", i, "]");
    if (cap == "ALL") {
      if (allow_all) return cap;
      return InvalidValue(field, raw, "ALL is not accepted here");
    }
    if (!IsKnownCapability(cap) && universe.count(cap) == 0) {
      return InvalidValue(field, raw, "unknown capability");
    }
    return cap;
  };
  std::vector<std::string> add, drop, ambient;
  bool add_all = false, drop_all = false;
  for (int i = 0; i < req.add_capabilities_size(); ++i) {
    ASSIGN_OR_RETURN(std::string cap, check("add_capabilities", i, req.add_capabilities(i), true));
    if (cap == "ALL") {
      add_all = true;
    } else if (universe.count(cap) == 0) {
      return InvalidValue(absl::StrCat(base, "add_capabilities[", i, "]"), req.add_capabilities(i),
                          "berthd does not hold this capability (it is not in berthd's "
                          "bounding set), so it cannot give it to a container");
    } else {
      add.push_back(cap);
    }
  }
  for (int i = 0; i < req.add_ambient_capabilities_size(); ++i) {
    ASSIGN_OR_RETURN(std::string cap,
                     check("add_ambient_capabilities", i, req.add_ambient_capabilities(i), false));
    if (universe.count(cap) == 0) {
      return InvalidValue(absl::StrCat(base, "add_ambient_capabilities[", i, "]"),
                          req.add_ambient_capabilities(i),
                          "berthd does not hold this capability (it is not in berthd's "
                          "bounding set), so it cannot give it to a container");
    }
    ambient.push_back(cap);
  }
  for (int i = 0; i < req.drop_capabilities_size(); ++i) {
    ASSIGN_OR_RETURN(std::string cap,
                     check("drop_capabilities", i, req.drop_capabilities(i), true));
    if (cap == "ALL") {
      drop_all = true;
    } else {
      drop.push_back(cap);
    }
  }
  CapSet caps;
  for (const std::string& c : DefaultCapabilities()) {
    if (universe.count(c) > 0) caps.insert(c);
  }
  if (add_all) caps = universe;
  if (drop_all) caps.clear();
  caps.insert(add.begin(), add.end());
  caps.insert(ambient.begin(), ambient.end());
  CapSet ambient_set(ambient.begin(), ambient.end());
  for (const std::string& c : drop) {
    caps.erase(c);
    ambient_set.erase(c);
  }
  return CapabilitiesJson(caps, ambient_set);
}

// ---------------------------------------------------------------------------------------
// Namespaces

json Namespace(const char* type, const std::string& path = "") {
  json ns = {{"type", type}};
  if (!path.empty()) ns["path"] = path;
  return ns;
}

// User namespaces. NODE (the kubelet's hostUsers: true) is the host's user namespace. POD
// (hostUsers: false) asks for a user namespace with the kubelet's id mappings, which berth
// cannot give correctly yet: the rootfs would have to be id-mapped (the overlay snapshotter
// mounts layers owned by host uid 0, which a mapped root sees as the overflow id 65534 and
// cannot write), and runc 1.1 cannot id-map the pod's volume mounts (runc >= 1.2 can). The
// mappings are checked first, so a malformed request is INVALID_ARGUMENT either way.
absl::Status CheckUserNamespace(const runtime::v1::NamespaceOption& opt) {
  if (!opt.has_userns_options()) return absl::OkStatus();
  const runtime::v1::UserNamespace& u = opt.userns_options();
  const std::string f = "linux.security_context.namespace_options.userns_options";
  if (u.mode() == runtime::v1::NODE) {
    if (u.uids_size() > 0 || u.gids_size() > 0) {
      return Invalid(f, "mode NODE (the host's user namespace) takes no uids or gids mappings");
    }
    return absl::OkStatus();
  }
  if (u.mode() != runtime::v1::POD) {
    return Invalid(f + ".mode", absl::StrCat(runtime::v1::NamespaceMode_Name(u.mode()),
                                             " is not a user namespace mode (NODE or POD)"));
  }
  for (const auto& [list, name] :
       {std::pair<const google::protobuf::RepeatedPtrField<runtime::v1::IDMapping>*, const char*>{
            &u.uids(), "uids"},
        {&u.gids(), "gids"}}) {
    if (list->empty()) {
      return Invalid(absl::StrCat(f, ".", name),
                     "mode POD needs id mappings (the kubelet allocates them)");
    }
    for (int i = 0; i < list->size(); ++i) {
      const runtime::v1::IDMapping& m = (*list)[i];
      const std::string mf = absl::StrCat(f, ".", name, "[", i, "]");
      if (m.length() == 0) return Invalid(mf + ".length", "0 (a mapping maps at least one id)");
      if (uint64_t{m.host_id()} + m.length() > (uint64_t{1} << 32) ||
          uint64_t{m.container_id()} + m.length() > (uint64_t{1} << 32)) {
        return Invalid(mf, "the range goes past the last id 4294967295");
      }
    }
  }
  return absl::FailedPreconditionError(absl::StrCat(
      f,
      ": mode POD (a user namespace, the pod's hostUsers: false) is not supported by this "
      "node: berth cannot id-map the container rootfs (the image layers are owned by host "
      "uid 0 and would show as 65534 to a mapped root) and runc 1.1 cannot id-map volume "
      "mounts (runc >= 1.2 can). The runtime handler says user_namespaces: false in Status; "
      "run the pod with hostUsers: true"));
}

// The namespaces a sandbox and its containers treat alike: network (with uts), ipc, a
// mount namespace of their own, and cgroup when asked for.
void AppendSharedNamespaces(const runtime::v1::NamespaceOption& opt, const SpecInputs& in,
                            json* out) {
  if (opt.network() != runtime::v1::NODE) {
    out->push_back(Namespace("network", in.net_ns_path));
    out->push_back(Namespace("uts", in.uts_ns_path));
  }
  if (opt.ipc() != runtime::v1::NODE) out->push_back(Namespace("ipc", in.ipc_ns_path));
  out->push_back(Namespace("mount"));
  if (in.cgroup_namespace) out->push_back(Namespace("cgroup"));
}

absl::StatusOr<json> SandboxNamespaces(const runtime::v1::NamespaceOption& opt,
                                       const SpecInputs& in) {
  json out = json::array();
  RETURN_IF_ERROR(CheckUserNamespace(opt));
  if (opt.pid() != runtime::v1::NODE) out.push_back(Namespace("pid", in.pid_ns_path));
  AppendSharedNamespaces(opt, in, &out);
  return out;
}

absl::StatusOr<json> ContainerNamespaces(const runtime::v1::NamespaceOption& opt,
                                         const SpecInputs& in) {
  const std::string field = "linux.security_context.namespace_options";
  json out = json::array();
  RETURN_IF_ERROR(CheckUserNamespace(opt));
  switch (opt.pid()) {
    case runtime::v1::NODE:
      break;
    case runtime::v1::CONTAINER:
      out.push_back(Namespace("pid"));
      break;
    case runtime::v1::TARGET:
      if (in.pid_ns_path.empty()) {
        return Invalid(absl::StrCat(field, ".pid"),
                       absl::StrCat("TARGET (target_id \"", opt.target_id(),
                                    "\") but the target container's pid namespace was not "
                                    "found (is it running?)"));
      }
      out.push_back(Namespace("pid", in.pid_ns_path));
      break;
    case runtime::v1::POD:
      out.push_back(Namespace("pid", in.pid_ns_path));
      break;
    default:
      return Invalid(absl::StrCat(field, ".pid"), absl::StrCat("unknown mode ", opt.pid()));
  }
  AppendSharedNamespaces(opt, in, &out);
  return out;
}

// ---------------------------------------------------------------------------------------
// Sysctls

enum class SysctlNs { kNet, kIpc };

absl::StatusOr<SysctlNs> ClassifySysctl(const std::string& key, absl::string_view field) {
  if (key.empty()) return Invalid(field, "empty sysctl name");
  for (char c : key) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '/' && c != '_' &&
        c != '-') {
      return InvalidValue(field, key, "invalid character in sysctl name");
    }
  }
  for (absl::string_view c : absl::StrSplit(key, absl::ByAnyChar("./"))) {
    if (c.empty()) return InvalidValue(field, key, "empty component in sysctl name");
  }
  std::string dotted = key;
  std::replace(dotted.begin(), dotted.end(), '/', '.');
  if (absl::StartsWith(dotted, "net.")) return SysctlNs::kNet;
  if (absl::StartsWith(dotted, "kernel.shm") || absl::StartsWith(dotted, "kernel.msg") ||
      dotted == "kernel.sem" || absl::StartsWith(dotted, "fs.mqueue.")) {
    return SysctlNs::kIpc;
  }
  return InvalidValue(field, key,
                      "not an allowed namespaced sysctl (kernel.shm*, kernel.msg*, kernel.sem, "
                      "fs.mqueue.*, net.*)");
}

// The sandbox's sysctls that belong to namespaces the spec creates (`net_new`/`ipc_new`).
absl::StatusOr<json> Sysctls(const runtime::v1::PodSandboxConfig& sandbox, bool net_new,
                             bool ipc_new) {
  const runtime::v1::NamespaceOption& opt = sandbox.linux().security_context().namespace_options();
  // Sorted, for a deterministic first error.
  std::map<std::string, std::string> sorted(sandbox.linux().sysctls().begin(),
                                            sandbox.linux().sysctls().end());
  json out = json::object();
  for (const auto& [key, value] : sorted) {
    std::string field = absl::StrCat("linux.sysctls[\"", key, "\"]");
    ASSIGN_OR_RETURN(SysctlNs ns, ClassifySysctl(key, field));
    if (ns == SysctlNs::kNet) {
      if (opt.network() == runtime::v1::NODE) {
        return Invalid(field,
                       "the pod uses the host's network namespace; setting it would "
                       "change the node");
      }
      if (net_new) out[key] = value;
    } else {
      if (opt.ipc() == runtime::v1::NODE) {
        return Invalid(field,
                       "the pod uses the host's IPC namespace; setting it would "
                       "change the node");
      }
      if (ipc_new) out[key] = value;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// Mounts

struct MountEntry {
  std::string destination;  // clean
  json spec;
};

void AddMount(std::vector<MountEntry>* mounts, const std::string& dest, const char* type,
              const std::string& source, const std::vector<std::string>& options) {
  json m = {{"destination", dest}, {"type", type}, {"source", source}};
  if (!options.empty()) m["options"] = options;
  mounts->push_back({dest, std::move(m)});
}

// proc, /dev, devpts, /dev/shm, mqueue, sysfs and the cgroup tree; `taken` are destinations
// the request mounts itself (they win).
void AddDefaultMounts(std::vector<MountEntry>* mounts, bool privileged, bool host_ipc,
                      const SpecInputs& in, const std::set<std::string>& taken) {
  auto add = [&](const std::string& dest, const char* type, const std::string& source,
                 const std::vector<std::string>& options) {
    if (taken.count(dest) == 0) AddMount(mounts, dest, type, source, options);
  };
  const std::string sys_mode = privileged ? "rw" : "ro";
  add("/proc", "proc", "proc", {"nosuid", "noexec", "nodev"});
  add("/dev", "tmpfs", "tmpfs", {"nosuid", "strictatime", "mode=755", "size=65536k"});
  add("/dev/pts", "devpts", "devpts",
      {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"});
  if (host_ipc) {
    add("/dev/shm", "bind", "/dev/shm", {"rbind", "rprivate", "rw"});
  } else if (!in.shm_path.empty()) {
    add("/dev/shm", "bind", in.shm_path, {"rbind", "rprivate", "nosuid", "nodev", "noexec", "rw"});
  } else {
    add("/dev/shm", "tmpfs", "shm", {"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"});
  }
  add("/dev/mqueue", "mqueue", "mqueue", {"nosuid", "noexec", "nodev"});
  add("/sys", "sysfs", "sysfs", {"nosuid", "noexec", "nodev", sys_mode});
  add("/sys/fs/cgroup", "cgroup", "cgroup", {"nosuid", "noexec", "nodev", "relatime", sys_mode});
}

absl::StatusOr<std::string> PropagationOption(runtime::v1::MountPropagation p,
                                              absl::string_view field) {
  switch (p) {
    case runtime::v1::PROPAGATION_PRIVATE:
      return std::string("rprivate");
    case runtime::v1::PROPAGATION_HOST_TO_CONTAINER:
      return std::string("rslave");
    case runtime::v1::PROPAGATION_BIDIRECTIONAL:
      return std::string("rshared");
    default:
      return Invalid(field, absl::StrCat("unknown propagation mode ", static_cast<int>(p)));
  }
}

// The mount under which `path` (resolved) lies, from `mountinfo_path`: the mount point and the
// optional fields ("shared:3 master:1"). Stacked mounts: the last, i.e. the top one.
struct HoldingMount {
  std::string mount_point;
  std::string propagation;
};

absl::StatusOr<HoldingMount> MountHolding(const std::string& path,
                                          const std::string& mountinfo_path) {
  std::ifstream f(mountinfo_path);
  if (!f) {
    return absl::InternalError(
        absl::StrCat("cannot read ", mountinfo_path, ": ", ErrnoText(errno)));
  }
  HoldingMount best;
  bool found = false;
  std::string line;
  while (std::getline(f, line)) {
    std::vector<absl::string_view> fields = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (fields.size() < 7) continue;
    const std::string mp =
        plugins::UnescapeMountinfo(std::string_view(fields[4].data(), fields[4].size()));
    const bool under = mp == "/" || path == mp || absl::StartsWith(path, mp + "/");
    if (!under || (found && mp.size() < best.mount_point.size())) continue;
    std::vector<absl::string_view> optional;
    for (size_t i = 6; i < fields.size() && fields[i] != "-"; ++i) optional.push_back(fields[i]);
    best = {mp, absl::StrJoin(optional, " ")};
    found = true;
  }
  if (!found) return absl::InternalError(absl::StrCat("no mount holds ", path));
  return best;
}

// Propagation between the node and the container happens only through a peer group: a
// BIDIRECTIONAL source must be on a shared mount, a HOST_TO_CONTAINER one on a shared or slave
// mount. Otherwise the request would silently not propagate.
absl::Status CheckPropagationSource(const std::string& src, runtime::v1::MountPropagation p,
                                    const std::string& field, const SpecInputs& in) {
  if (p != runtime::v1::PROPAGATION_BIDIRECTIONAL &&
      p != runtime::v1::PROPAGATION_HOST_TO_CONTAINER) {
    return absl::OkStatus();
  }
  char resolved[PATH_MAX];
  if (::realpath(src.c_str(), resolved) == nullptr) {
    return InvalidValue(field, src, ErrnoText(errno));
  }
  ASSIGN_OR_RETURN(HoldingMount m, MountHolding(resolved, in.mountinfo_path));
  const bool shared = absl::StrContains(m.propagation, "shared:");
  const bool slave = absl::StrContains(m.propagation, "master:");
  const std::string where = absl::StrCat(field, " \"", src, "\"",
                                         src == resolved ? "" : absl::StrCat(" (", resolved, ")"),
                                         " is on the mount ", m.mount_point, ", which is ");
  if (p == runtime::v1::PROPAGATION_BIDIRECTIONAL && !shared) {
    return absl::FailedPreconditionError(absl::StrCat(
        where,
        "not shared: PROPAGATION_BIDIRECTIONAL needs a shared mount to propagate mounts "
        "back to the node (make it one: mount --make-rshared ",
        m.mount_point, ")"));
  }
  if (!shared && !slave) {
    return absl::FailedPreconditionError(absl::StrCat(
        where,
        "neither shared nor slave: PROPAGATION_HOST_TO_CONTAINER would see no mount made "
        "on the node later (make it shared: mount --make-rshared ",
        m.mount_point, ")"));
  }
  return absl::OkStatus();
}

// The CRI mounts, validated, with their clean destinations; `rootfs_propagation` becomes
// The directory `sub_path` names inside an image volume's root `root`: relative, no "..",
// resolved without leaving the image (a symlink pointing outside is refused), and existing.
absl::StatusOr<std::string> ImageSubPath(const std::string& root, const std::string& sub_path,
                                         const std::string& field) {
  if (sub_path.front() == '/') return InvalidValue(field, sub_path, "must be a relative path");
  std::string current = root;
  for (absl::string_view part : absl::StrSplit(sub_path, '/', absl::SkipEmpty())) {
    if (part == ".") continue;
    if (part == "..") return InvalidValue(field, sub_path, "must not contain \"..\"");
    current = absl::StrCat(current, "/", part);
  }
  char resolved[PATH_MAX];
  if (::realpath(current.c_str(), resolved) == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(field, " \"", sub_path,
                                                   "\": not found in the image (",
                                                   std::strerror(errno), ")"));
  }
  char root_resolved[PATH_MAX];
  if (::realpath(root.c_str(), root_resolved) == nullptr) {
    return absl::InternalError(absl::StrCat("image volume root ", root, ": ", std::strerror(errno)));
  }
  const std::string r(resolved), base(root_resolved);
  if (r != base && !absl::StartsWith(r, base + "/")) {
    return InvalidValue(field, sub_path, "leads out of the image (a symlink?)");
  }
  return r;
}

// "rshared" or "rslave" when a mount needs it (otherwise it stays empty).
absl::StatusOr<std::vector<MountEntry>> CriMounts(const runtime::v1::ContainerConfig& config,
                                                  const SpecInputs& in,
                                                  std::string* rootfs_propagation) {
  std::vector<MountEntry> out;
  std::map<std::string, int> seen;
  for (int i = 0; i < config.mounts_size(); ++i) {
    const runtime::v1::Mount& m = config.mounts(i);
    const std::string f = absl::StrCat("mounts[", i, "]");
    if (m.has_image() && !m.image().image().empty()) {
      // An image volume: the image's content, read-only, optionally a subdirectory of it.
      auto src = in.image_mount_sources.find(i);
      if (src == in.image_mount_sources.end()) {
        return absl::FailedPreconditionError(
            absl::StrCat(f, ".image \"", m.image().image(), "\": the image volume was not prepared"));
      }
      if (m.uidmappings_size() > 0 || m.gidmappings_size() > 0) {
        return absl::UnimplementedError(
            absl::StrCat(f, ".uidMappings/gidMappings: id-mapped mounts are not supported yet"));
      }
      ASSIGN_OR_RETURN(std::string dest,
                       CleanContainerPath(m.container_path(), f + ".container_path"));
      if (dest == "/") {
        return InvalidValue(f + ".container_path", m.container_path(),
                            "an image volume cannot replace the root filesystem");
      }
      std::string source = src->second;
      if (!m.image_sub_path().empty()) {
        ASSIGN_OR_RETURN(std::string sub, ImageSubPath(src->second, m.image_sub_path(),
                                                       f + ".image_sub_path"));
        source = sub;
      }
      if (seen.count(dest) != 0) {
        return InvalidValue(f + ".container_path", m.container_path(),
                            absl::StrCat("also the destination of mounts[", seen[dest], "]"));
      }
      seen[dest] = i;
      AddMount(&out, dest, "bind", source, {"rbind", "rprivate", "ro"});
      continue;
    }
    if (m.uidmappings_size() > 0 || m.gidmappings_size() > 0) {
      return absl::UnimplementedError(
          absl::StrCat(f, ".uidMappings/gidMappings: id-mapped mounts are not supported yet"));
    }
    ASSIGN_OR_RETURN(std::string dest,
                     CleanContainerPath(m.container_path(), f + ".container_path"));
    if (dest == "/") {
      return InvalidValue(f + ".container_path", m.container_path(),
                          "cannot mount over the container's root");
    }
    if (auto [it, fresh] = seen.emplace(dest, i); !fresh) {
      return InvalidValue(f + ".container_path", m.container_path(),
                          absl::StrCat("mounted twice (also mounts[", it->second, "])"));
    }
    const std::string& src = m.host_path();
    if (src.empty()) return Invalid(f + ".host_path", "empty (an absolute host path is required)");
    if (src[0] != '/') return InvalidValue(f + ".host_path", src, "must be an absolute path");
    struct stat st {};
    if (::stat(src.c_str(), &st) != 0) {
      return InvalidValue(f + ".host_path", src, ErrnoText(errno));
    }
    ASSIGN_OR_RETURN(std::string propagation,
                     PropagationOption(m.propagation(), f + ".propagation"));
    RETURN_IF_ERROR(CheckPropagationSource(src, m.propagation(), f + ".host_path", in));
    std::vector<std::string> options = {"rbind", propagation, m.readonly() ? "ro" : "rw"};
    if (m.recursive_read_only()) {
      if (!m.readonly()) {
        return Invalid(f + ".recursive_read_only", "requires readonly to be set too");
      }
      if (m.propagation() != runtime::v1::PROPAGATION_PRIVATE) {
        return Invalid(f + ".recursive_read_only", "requires propagation PROPAGATION_PRIVATE");
      }
      if (!in.runtime_supports_rro) {
        return absl::UnimplementedError(absl::StrCat(
            f,
            ".recursive_read_only: the runtime handler cannot make mounts recursively "
            "read-only (needs the \"rro\" mount option: runc >= 1.2 and Linux >= 5.12)"));
      }
      options.push_back("rro");
    }
    if (propagation == "rshared") {
      *rootfs_propagation = "rshared";
    } else if (propagation == "rslave" && rootfs_propagation->empty()) {
      *rootfs_propagation = "rslave";
    }
    // selinux_relabel: the SELinux hook's business (HOOK(security-profiles)).
    json spec = {{"destination", dest}, {"type", "bind"}, {"source", src}, {"options", options}};
    out.push_back({dest, std::move(spec)});
  }
  return out;
}

json SortedMounts(std::vector<MountEntry> mounts) {
  std::stable_sort(mounts.begin(), mounts.end(), [](const MountEntry& a, const MountEntry& b) {
    return Depth(a.destination) < Depth(b.destination);
  });
  json out = json::array();
  for (MountEntry& m : mounts) out.push_back(std::move(m.spec));
  return out;
}

absl::StatusOr<std::set<std::string>> ImageVolumePaths(const json& image) {
  std::set<std::string> out;
  auto it = image.find("Volumes");
  if (it == image.end() || it->is_null()) return out;
  if (!it->is_object()) return Invalid("image config Volumes", "not an object");
  for (const auto& [path, unused] : it->items()) {
    ASSIGN_OR_RETURN(std::string clean, CleanContainerPath(path, "image config Volumes"));
    if (clean != "/") out.insert(clean);
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// Devices and resources

// The device cgroup rules every container starts with: nothing, except mknod and the
// devices a process expects (null, zero, full, random, urandom, tty, console, ptmx, the
// pseudo terminals, tun).
json DefaultDeviceRules() {
  auto rule = [](const char* type, int64_t major, int64_t minor, const char* access) {
    json r = {{"allow", true}, {"type", type}, {"access", access}};
    if (major >= 0) r["major"] = major;
    if (minor >= 0) r["minor"] = minor;
    return r;
  };
  return json::array({
      {{"allow", false}, {"access", "rwm"}},
      rule("c", -1, -1, "m"),
      rule("b", -1, -1, "m"),
      rule("c", 1, 3, "rwm"),
      rule("c", 1, 5, "rwm"),
      rule("c", 1, 7, "rwm"),
      rule("c", 1, 8, "rwm"),
      rule("c", 1, 9, "rwm"),
      rule("c", 5, 0, "rwm"),
      rule("c", 5, 1, "rwm"),
      rule("c", 5, 2, "rwm"),
      rule("c", 136, -1, "rwm"),
      rule("c", 10, 200, "rwm"),
  });
}

absl::Status AddDevices(const runtime::v1::ContainerConfig& config, json* linux_devices,
                        json* rules) {
  for (int i = 0; i < config.devices_size(); ++i) {
    const runtime::v1::Device& d = config.devices(i);
    const std::string f = absl::StrCat("devices[", i, "]");
    ASSIGN_OR_RETURN(std::string dest,
                     CleanContainerPath(d.container_path(), f + ".container_path"));
    const std::string& src = d.host_path();
    if (src.empty()) return Invalid(f + ".host_path", "empty (an absolute host path is required)");
    struct stat st {};
    if (::stat(src.c_str(), &st) != 0) {
      return InvalidValue(f + ".host_path", src, ErrnoText(errno));
    }
    if (S_ISDIR(st.st_mode)) {
      return InvalidValue(f + ".host_path", src,
                          "is a directory (directories of devices are not supported yet; "
                          "list each device)");
    }
    if (!S_ISCHR(st.st_mode) && !S_ISBLK(st.st_mode)) {
      return InvalidValue(f + ".host_path", src, "not a character or block device");
    }
    std::string access = d.permissions().empty() ? "rwm" : d.permissions();
    std::string seen;
    for (char c : access) {
      if ((c != 'r' && c != 'w' && c != 'm') || seen.find(c) != std::string::npos) {
        return InvalidValue(f + ".permissions", d.permissions(),
                            "must be made of r, w and m, each at most once");
      }
      seen.push_back(c);
    }
    const char* type = S_ISCHR(st.st_mode) ? "c" : "b";
    const int64_t major = ::major(st.st_rdev), minor = ::minor(st.st_rdev);
    linux_devices->push_back({{"path", dest},
                              {"type", type},
                              {"major", major},
                              {"minor", minor},
                              {"fileMode", st.st_mode & 07777},
                              {"uid", st.st_uid},
                              {"gid", st.st_gid}});
    rules->push_back(
        {{"allow", true}, {"type", type}, {"major", major}, {"minor", minor}, {"access", access}});
  }
  return absl::OkStatus();
}

// The node's device nodes under `dir` for a privileged container, at the same paths under
// /dev (containerd's HostDevices): character and block devices, recursively, but not the
// directories pts, shm, fd, mqueue, .lxc, .lxd-mounts, .udev, nor console; symlinks are not
// followed. Sorted by path; `skip` are container paths the request maps itself.
void AddHostDevices(const std::string& dir, const std::string& container_dir,
                    const std::set<std::string>& skip, json* out) {
  namespace fs = std::filesystem;
  std::error_code ec;
  std::vector<std::string> names;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    names.push_back(it->path().filename().string());
  }
  std::sort(names.begin(), names.end());
  static const std::set<std::string> kSkipDirs = {"pts",  "shm",         "fd",   "mqueue",
                                                  ".lxc", ".lxd-mounts", ".udev"};
  for (const std::string& name : names) {
    const std::string host = absl::StrCat(dir, "/", name);
    const std::string dest = absl::StrCat(container_dir, "/", name);
    struct stat st {};
    if (::lstat(host.c_str(), &st) != 0) continue;  // gone meanwhile
    if (S_ISDIR(st.st_mode)) {
      if (kSkipDirs.count(name) == 0) AddHostDevices(host, dest, skip, out);
      continue;
    }
    if (name == "console" || (!S_ISCHR(st.st_mode) && !S_ISBLK(st.st_mode))) continue;
    if (skip.count(dest) > 0) continue;
    out->push_back({{"path", dest},
                    {"type", S_ISCHR(st.st_mode) ? "c" : "b"},
                    {"major", static_cast<int64_t>(::major(st.st_rdev))},
                    {"minor", static_cast<int64_t>(::minor(st.st_rdev))},
                    {"fileMode", st.st_mode & 07777},
                    {"uid", st.st_uid},
                    {"gid", st.st_gid}});
  }
}

// "0-3,5,7-8"
bool ValidCpuList(absl::string_view list) {
  for (absl::string_view item : absl::StrSplit(list, ',')) {
    item = absl::StripAsciiWhitespace(item);
    std::vector<absl::string_view> range = absl::StrSplit(item, absl::MaxSplits('-', 1));
    uint32_t lo = 0, hi = 0;
    auto number = [](absl::string_view s, uint32_t* v) {
      return !s.empty() && std::all_of(s.begin(), s.end(), absl::ascii_isdigit) &&
             absl::SimpleAtoi(s, v);
    };
    if (!number(range[0], &lo)) return false;
    if (range.size() == 2 && (!number(range[1], &hi) || hi < lo)) return false;
  }
  return true;
}

bool ValidPageSize(absl::string_view size) {
  if (size.size() < 3 || !absl::EndsWith(size, "B")) return false;
  char unit = size[size.size() - 2];
  if (absl::string_view("KMGTP").find(unit) == absl::string_view::npos) return false;
  absl::string_view digits = size.substr(0, size.size() - 2);
  return !digits.empty() && std::all_of(digits.begin(), digits.end(), absl::ascii_isdigit);
}

// linux.resources of a container (devices are added by the caller).
absl::StatusOr<json> ContainerResources(const runtime::v1::LinuxContainerResources& r,
                                        const SpecInputs& in) {
  const std::string f = "linux.resources.";
  json out = json::object();
  json cpu = json::object();
  if (r.cpu_period() != 0) {
    if (r.cpu_period() < kMinCfsMicros || r.cpu_period() > kMaxCfsPeriod) {
      return Invalid(f + "cpu_period", absl::StrCat(r.cpu_period(), " µs is outside ",
                                                    kMinCfsMicros, "..", kMaxCfsPeriod));
    }
    cpu["period"] = r.cpu_period();
  }
  if (r.cpu_quota() != 0) {
    if (r.cpu_quota() == -1) {
      cpu["quota"] = -1;  // unlimited
    } else if (r.cpu_quota() < kMinCfsMicros) {
      return Invalid(f + "cpu_quota", absl::StrCat(r.cpu_quota(),
                                                   " µs is below the kernel's "
                                                   "minimum of ",
                                                   kMinCfsMicros, " µs (-1 means unlimited)"));
    } else {
      cpu["quota"] = r.cpu_quota();
    }
  }
  if (r.cpu_shares() != 0) {
    if (r.cpu_shares() < 0 || r.cpu_shares() > kMaxCpuShares) {
      return Invalid(f + "cpu_shares",
                     absl::StrCat(r.cpu_shares(), " is outside 1..", kMaxCpuShares));
    }
    cpu["shares"] = r.cpu_shares();
  }
  if (!r.cpuset_cpus().empty()) {
    if (!ValidCpuList(r.cpuset_cpus())) {
      return InvalidValue(f + "cpuset_cpus", r.cpuset_cpus(), "not a CPU list like 0-3,5");
    }
    cpu["cpus"] = r.cpuset_cpus();
  }
  if (!r.cpuset_mems().empty()) {
    if (!ValidCpuList(r.cpuset_mems())) {
      return InvalidValue(f + "cpuset_mems", r.cpuset_mems(), "not a node list like 0-1");
    }
    cpu["mems"] = r.cpuset_mems();
  }
  if (!cpu.empty()) out["cpu"] = cpu;

  json memory = json::object();
  if (r.memory_limit_in_bytes() < 0) {
    return Invalid(f + "memory_limit_in_bytes",
                   absl::StrCat(r.memory_limit_in_bytes(), " is negative"));
  }
  if (r.memory_limit_in_bytes() > 0) memory["limit"] = r.memory_limit_in_bytes();
  if (r.memory_swap_limit_in_bytes() != 0) {
    if (r.memory_swap_limit_in_bytes() < -1) {
      return Invalid(
          f + "memory_swap_limit_in_bytes",
          absl::StrCat(r.memory_swap_limit_in_bytes(), " is negative (-1 means unlimited)"));
    }
    if (r.memory_swap_limit_in_bytes() > 0 && r.memory_limit_in_bytes() > 0 &&
        r.memory_swap_limit_in_bytes() < r.memory_limit_in_bytes()) {
      return Invalid(
          f + "memory_swap_limit_in_bytes",
          absl::StrCat(r.memory_swap_limit_in_bytes(), " is below memory_limit_in_bytes ",
                       r.memory_limit_in_bytes(), " (it limits memory plus swap)"));
    }
    memory["swap"] = r.memory_swap_limit_in_bytes();
  }
  if (!memory.empty()) out["memory"] = memory;

  if (r.hugepage_limits_size() > 0) {
    json limits = json::array();
    for (int i = 0; i < r.hugepage_limits_size(); ++i) {
      const runtime::v1::HugepageLimit& h = r.hugepage_limits(i);
      if (!ValidPageSize(h.page_size())) {
        return InvalidValue(absl::StrCat(f, "hugepage_limits[", i, "].page_size"), h.page_size(),
                            "not a page size like 2MB or 1GB");
      }
      limits.push_back({{"pageSize", h.page_size()}, {"limit", h.limit()}});
    }
    out["hugepageLimits"] = limits;
  }
  if (r.unified_size() > 0) {
    std::map<std::string, std::string> unified(r.unified().begin(), r.unified().end());
    for (const auto& [key, value] : unified) {
      if (key.empty() || key == "." || key == ".." || key.find('/') != std::string::npos) {
        return InvalidValue(f + "unified", key, "not a cgroup v2 file name");
      }
    }
    out["unified"] = unified;
  }
  if (in.pids_limit > 0) out["pids"] = {{"limit", in.pids_limit}};
  return out;
}

// ---------------------------------------------------------------------------------------
// Annotations

void AddSandboxAnnotations(const runtime::v1::PodSandboxConfig& sandbox, const SpecInputs& in,
                           json* annotations) {
  auto set = [&](const char* key, const std::string& value) {
    (*annotations)[absl::StrCat(kAnnotationPrefix, key)] = value;
  };
  set("sandbox-id", in.sandbox_id);
  set("sandbox-name", sandbox.metadata().name());
  set("sandbox-namespace", sandbox.metadata().namespace_());
  set("sandbox-uid", sandbox.metadata().uid());
}

// ---------------------------------------------------------------------------------------
// HOOK(security-profiles): seccomp (linux.seccomp), AppArmor (process.apparmorProfile) and
// SELinux (process.selinuxLabel, linux.mountLabel), for sandboxes and containers alike, from
// the CRI fields (or their deprecated strings). The seccomp profile is built for the spec's
// process.capabilities.bounding, so this runs last. Privileged: no seccomp filter and no LSM
// confinement, whatever is asked.
struct SecurityRequest {
  const runtime::v1::SecurityProfile* seccomp = nullptr;
  const runtime::v1::SecurityProfile* apparmor = nullptr;
  const runtime::v1::SELinuxOption* selinux = nullptr;
  std::string seccomp_profile_path;  // deprecated; used when seccomp is unset
  std::string apparmor_profile;      // deprecated; used when apparmor is unset
  bool privileged = false;
  std::string field;  // "linux.security_context"
};

template <typename SecurityContext>
SecurityRequest SecurityRequestOf(const SecurityContext& sc) {
  SecurityRequest r;
  r.seccomp = sc.has_seccomp() ? &sc.seccomp() : nullptr;
  r.apparmor = sc.has_apparmor() ? &sc.apparmor() : nullptr;
  r.selinux = sc.has_selinux_options() ? &sc.selinux_options() : nullptr;
  // The deprecated strings are still part of the CRI: old kubelets send only them.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  r.seccomp_profile_path = sc.seccomp_profile_path();
  if constexpr (std::is_same_v<SecurityContext, runtime::v1::LinuxContainerSecurityContext>) {
    r.apparmor_profile = sc.apparmor_profile();
  }
#pragma GCC diagnostic pop
  r.privileged = sc.privileged();
  r.field = "linux.security_context";
  return r;
}

absl::Status ApplySecurityProfiles(const SecurityRequest& req, const SpecInputs& in, json* spec) {
  if (req.privileged) return absl::OkStatus();
  const LsmState lsm = in.security.lsm ? *in.security.lsm : LsmSupport();

  std::vector<std::string> bounding;
  const json& caps = (*spec)["process"]["capabilities"];
  if (caps.is_object() && caps.contains("bounding") && caps["bounding"].is_array()) {
    for (const json& c : caps["bounding"]) {
      if (c.is_string()) bounding.push_back(c.get<std::string>());
    }
  }
  ASSIGN_OR_RETURN(json seccomp, ResolveSeccomp({req.seccomp, req.seccomp_profile_path, req.field},
                                                bounding, in.security));
  ASSIGN_OR_RETURN(std::string apparmor,
                   ResolveAppArmorProfile(req.apparmor, req.apparmor_profile, req.field, lsm));
  ASSIGN_OR_RETURN(SelinuxLabels selinux, ResolveSelinuxLabels(req.selinux, req.field, lsm));

  if (!seccomp.is_null()) (*spec)["linux"]["seccomp"] = std::move(seccomp);
  if (!apparmor.empty()) (*spec)["process"]["apparmorProfile"] = apparmor;
  if (!selinux.process.empty()) (*spec)["process"]["selinuxLabel"] = selinux.process;
  if (!selinux.mount.empty()) (*spec)["linux"]["mountLabel"] = selinux.mount;
  return absl::OkStatus();
}

absl::StatusOr<std::string> WorkingDir(const std::string& config_dir, const json& image) {
  if (!config_dir.empty()) {
    if (config_dir[0] != '/') {
      return InvalidValue("working_dir", config_dir, "must be an absolute path");
    }
    return config_dir;
  }
  ASSIGN_OR_RETURN(std::string image_dir, StringField(image, "WorkingDir"));
  if (!image_dir.empty()) {
    if (image_dir[0] != '/') {
      return InvalidValue("image config WorkingDir", image_dir, "must be an absolute path");
    }
    return image_dir;
  }
  return std::string("/");
}

json Root(const SpecInputs& in, bool readonly) {
  return {{"path", in.spec_root_path.empty() ? in.rootfs_path : in.spec_root_path},
          {"readonly", readonly}};
}

json RlimitsJson(const SpecInputs& in) {
  json out = json::array();
  for (const Rlimit& r : in.rlimits) {
    out.push_back({{"type", r.type}, {"hard", r.hard}, {"soft", r.soft}});
  }
  return out;
}

std::string HostnameEnv(const runtime::v1::PodSandboxConfig& sandbox, const SpecInputs& in) {
  if (!sandbox.hostname().empty()) return sandbox.hostname();
  if (sandbox.linux().security_context().namespace_options().network() == runtime::v1::NODE) {
    return in.node_hostname;
  }
  return "";
}

}  // namespace

absl::StatusOr<nlohmann::json> BuildLinuxResources(
    const runtime::v1::LinuxContainerResources& resources, const SpecInputs& in) {
  return ContainerResources(resources, in);
}

std::vector<std::string> CapabilitiesOfMask(uint64_t mask) {
  std::vector<std::string> out;
  for (size_t i = 0; i < std::size(kKnownCapabilities) && i < 64; ++i) {
    if ((mask >> i) & 1u) out.emplace_back(kKnownCapabilities[i]);
  }
  return out;
}

std::vector<std::string> HostCapabilities() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (!absl::StartsWith(line, "CapBnd:")) continue;
    uint64_t mask = 0;
    std::string hex(absl::StripAsciiWhitespace(absl::string_view(line).substr(7)));
    if (!absl::SimpleHexAtoi(hex, &mask)) return {};
    return CapabilitiesOfMask(mask);
  }
  return {};
}

const std::vector<std::string>& DefaultCapabilities() {
  static const std::vector<std::string> caps = {
      "CAP_CHOWN",   "CAP_DAC_OVERRIDE", "CAP_FSETID",           "CAP_FOWNER",
      "CAP_MKNOD",   "CAP_NET_RAW",      "CAP_SETGID",           "CAP_SETUID",
      "CAP_SETFCAP", "CAP_SETPCAP",      "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT",
      "CAP_KILL",    "CAP_AUDIT_WRITE"};
  return caps;
}

std::string ImageVolumeDirName(const std::string& container_path) {
  std::string clean = container_path;
  if (absl::StatusOr<std::string> c = CleanContainerPath(container_path, "path"); c.ok()) {
    clean = *c;
  }
  std::string out;
  for (char c : absl::string_view(clean).substr(clean.empty() ? 0 : 1)) {
    if (c == '%') {
      out += "%25";
    } else if (c == '/') {
      out += "%2F";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> ImageVolumesToMount(
    const runtime::v1::ContainerConfig& config, const nlohmann::json& image_config) {
  ASSIGN_OR_RETURN(std::set<std::string> volumes,
                   ImageVolumePaths(ImageConfigObject(image_config)));
  for (int i = 0; i < config.mounts_size(); ++i) {
    absl::StatusOr<std::string> dest =
        CleanContainerPath(config.mounts(i).container_path(), "container_path");
    if (dest.ok()) volumes.erase(*dest);
  }
  return std::vector<std::string>(volumes.begin(), volumes.end());
}

absl::StatusOr<nlohmann::json> BuildSandboxSpec(const runtime::v1::PodSandboxConfig& sandbox,
                                                const nlohmann::json& pause_image_config,
                                                const SpecInputs& in) {
  const json image = ImageConfigObject(pause_image_config);
  const runtime::v1::LinuxSandboxSecurityContext& sc = sandbox.linux().security_context();
  const runtime::v1::NamespaceOption& ns = sc.namespace_options();

  ASSIGN_OR_RETURN(std::vector<std::string> entrypoint, StringArray(image, "Entrypoint"));
  ASSIGN_OR_RETURN(std::vector<std::string> cmd, StringArray(image, "Cmd"));
  std::vector<std::string> args = entrypoint;
  args.insert(args.end(), cmd.begin(), cmd.end());
  if (args.empty()) {
    return absl::InvalidArgumentError(
        "no command specified: the pause image config has no Entrypoint or Cmd");
  }

  ASSIGN_OR_RETURN(UserDatabase db, UserDatabase::Load(in.rootfs_path));
  UserRequest ureq;
  if (sc.has_run_as_user()) ureq.run_as_user = sc.run_as_user().value();
  if (sc.has_run_as_group()) ureq.run_as_group = sc.run_as_group().value();
  ASSIGN_OR_RETURN(ureq.image_user, StringField(image, "User"));
  ureq.supplemental_groups.assign(sc.supplemental_groups().begin(), sc.supplemental_groups().end());
  ureq.strict_supplemental_groups = sc.supplemental_groups_policy() == runtime::v1::Strict;
  ASSIGN_OR_RETURN(ResolvedUser user, ResolveUser(ureq, db));

  Environment env;
  env.Set(kDefaultPath);
  ASSIGN_OR_RETURN(std::vector<std::string> image_env, StringArray(image, "Env"));
  for (std::string& e : image_env) env.Set(std::move(e));
  ASSIGN_OR_RETURN(std::string cwd, WorkingDir("", image));

  json process = {
      {"terminal", false},
      {"user", UserJson(user)},
      {"args", args},
      {"env", env.entries()},
      {"cwd", cwd},
      {"capabilities", DefaultCapabilitiesJson(in)},
      {"noNewPrivileges", true},
      {"oomScoreAdj", ClampOomScoreAdj(kSandboxOomScoreAdj, in)},
  };
  if (!in.rlimits.empty()) process["rlimits"] = RlimitsJson(in);

  std::vector<MountEntry> mounts;
  AddDefaultMounts(&mounts, /*privileged=*/false, ns.ipc() == runtime::v1::NODE, in, {});

  ASSIGN_OR_RETURN(json namespaces, SandboxNamespaces(ns, in));
  ASSIGN_OR_RETURN(json sysctls, Sysctls(sandbox, /*net_new=*/true, /*ipc_new=*/true));

  json resources = {{"devices", DefaultDeviceRules()}, {"cpu", {{"shares", kSandboxCpuShares}}}};
  json linux_section = {
      {"namespaces", namespaces},
      {"resources", resources},
      {"maskedPaths", DefaultMaskedPaths()},
      {"readonlyPaths", DefaultReadonlyPaths()},
  };
  if (!sysctls.empty()) linux_section["sysctl"] = sysctls;
  if (!in.cgroups_path.empty()) linux_section["cgroupsPath"] = in.cgroups_path;

  json annotations = json::object();
  for (const auto& [key, value] : sandbox.annotations()) annotations[key] = value;
  annotations[absl::StrCat(kAnnotationPrefix, "container-type")] = "sandbox";
  AddSandboxAnnotations(sandbox, in, &annotations);
  annotations[absl::StrCat(kAnnotationPrefix, "sandbox-log-directory")] = sandbox.log_directory();
  // The pod's resources, for runtimes that size a sandbox (VMs), under containerd's names.
  // The pod cgroup itself is the kubelet's (cgroup_parent).
  if (sandbox.linux().has_resources()) {
    const runtime::v1::LinuxContainerResources& r = sandbox.linux().resources();
    for (const auto& [key, value] :
         {std::pair<const char*, int64_t>{"sandbox-cpu-period", r.cpu_period()},
          {"sandbox-cpu-quota", r.cpu_quota()},
          {"sandbox-cpu-shares", r.cpu_shares()},
          {"sandbox-memory", r.memory_limit_in_bytes()}}) {
      annotations[absl::StrCat(kAnnotationPrefix, key)] = std::to_string(value);
    }
  }
  if (!in.image_name.empty()) {
    annotations[absl::StrCat(kAnnotationPrefix, "image-name")] = in.image_name;
  }

  json spec = {
      {"ociVersion", kOciVersion}, {"process", process},
      {"root", Root(in, false)},   {"mounts", SortedMounts(std::move(mounts))},
      {"linux", linux_section},    {"annotations", annotations},
  };
  if (ns.network() != runtime::v1::NODE && !sandbox.hostname().empty()) {
    spec["hostname"] = sandbox.hostname();
  }
  RETURN_IF_ERROR(ApplySecurityProfiles(SecurityRequestOf(sc), in, &spec));
  return spec;
}

absl::StatusOr<nlohmann::json> BuildContainerSpec(const runtime::v1::PodSandboxConfig& sandbox,
                                                  const runtime::v1::ContainerConfig& config,
                                                  const nlohmann::json& image_config,
                                                  const SpecInputs& in) {
  const json image = ImageConfigObject(image_config);
  const runtime::v1::LinuxContainerSecurityContext& sc = config.linux().security_context();
  const runtime::v1::NamespaceOption& ns = sc.namespace_options();
  const std::string scf = "linux.security_context";

  if (sc.privileged() && !sandbox.linux().security_context().privileged()) {
    return Invalid(scf + ".privileged",
                   "the pod sandbox was not created privileged (its "
                   "linux.security_context.privileged is false), so it cannot hold a "
                   "privileged container");
  }

  ASSIGN_OR_RETURN(json args, MergeArgs(config, image));

  // User and groups.
  ASSIGN_OR_RETURN(UserDatabase db, UserDatabase::Load(in.rootfs_path));
  UserRequest ureq;
  if (sc.has_run_as_user()) ureq.run_as_user = sc.run_as_user().value();
  if (sc.has_run_as_group()) ureq.run_as_group = sc.run_as_group().value();
  ureq.run_as_username = sc.run_as_username();
  ASSIGN_OR_RETURN(ureq.image_user, StringField(image, "User"));
  ureq.supplemental_groups.assign(sc.supplemental_groups().begin(), sc.supplemental_groups().end());
  ureq.strict_supplemental_groups = sc.supplemental_groups_policy() == runtime::v1::Strict;
  ureq.field_prefix = scf;
  ASSIGN_OR_RETURN(ResolvedUser user, ResolveUser(ureq, db));

  // Environment: a default PATH, HOSTNAME, the image's, then the config's.
  Environment env;
  env.Set(kDefaultPath);
  if (std::string hostname = HostnameEnv(sandbox, in); !hostname.empty()) {
    env.Set("HOSTNAME=" + hostname);
  }
  ASSIGN_OR_RETURN(std::vector<std::string> image_env, StringArray(image, "Env"));
  for (std::string& e : image_env) env.Set(std::move(e));
  for (int i = 0; i < config.envs_size(); ++i) {
    const runtime::v1::KeyValue& kv = config.envs(i);
    if (kv.key().empty()) return Invalid(absl::StrCat("envs[", i, "].key"), "empty");
    if (kv.key().find('=') != std::string::npos) {
      return InvalidValue(absl::StrCat("envs[", i, "].key"), kv.key(), "must not contain '='");
    }
    env.Set(absl::StrCat(kv.key(), "=", kv.value()));
  }
  if (!env.Has("HOME")) env.Set("HOME=" + (user.home.empty() ? std::string("/") : user.home));

  ASSIGN_OR_RETURN(std::string cwd, WorkingDir(config.working_dir(), image));
  ASSIGN_OR_RETURN(json capabilities, ContainerCapabilities(sc, in));

  int64_t oom = config.linux().has_resources() ? config.linux().resources().oom_score_adj() : 0;
  json process = {
      {"terminal", config.tty()},
      {"user", UserJson(user)},
      {"args", args},
      {"env", env.entries()},
      {"cwd", cwd},
      {"capabilities", capabilities},
      {"noNewPrivileges", sc.no_new_privs()},
      {"oomScoreAdj", ClampOomScoreAdj(oom, in)},
  };
  if (!in.rlimits.empty()) process["rlimits"] = RlimitsJson(in);

  // Mounts: CRI mounts win over the defaults and the pod files at the same destination.
  std::string rootfs_propagation;
  ASSIGN_OR_RETURN(std::vector<MountEntry> cri_mounts, CriMounts(config, in, &rootfs_propagation));
  std::set<std::string> taken;
  for (const MountEntry& m : cri_mounts) taken.insert(m.destination);
  std::vector<MountEntry> mounts;
  AddDefaultMounts(&mounts, sc.privileged(), ns.ipc() == runtime::v1::NODE, in, taken);
  const std::string pod_file_mode = sc.readonly_rootfs() ? "ro" : "rw";
  for (const auto& [dest, source] :
       {std::pair<const char*, const std::string*>{"/etc/hostname", &in.hostname_path},
        {"/etc/hosts", &in.hosts_path},
        {"/etc/resolv.conf", &in.resolv_conf_path}}) {
    if (source->empty() || taken.count(dest) > 0) continue;
    AddMount(&mounts, dest, "bind", *source, {"rbind", "rprivate", pod_file_mode});
  }
  if (!in.image_volumes_dir.empty()) {
    ASSIGN_OR_RETURN(std::vector<std::string> volumes, ImageVolumesToMount(config, image));
    for (const std::string& v : volumes) {
      AddMount(&mounts, v, "bind", absl::StrCat(in.image_volumes_dir, "/", ImageVolumeDirName(v)),
               {"rbind", "rprivate", "rw"});
    }
  }
  for (MountEntry& m : cri_mounts) mounts.push_back(std::move(m));

  // Devices and resources.
  json linux_devices = json::array();
  json device_rules = DefaultDeviceRules();
  RETURN_IF_ERROR(AddDevices(config, &linux_devices, &device_rules));
  if (sc.privileged() && !in.host_dev_dir.empty()) {
    std::set<std::string> requested;
    for (const json& d : linux_devices) requested.insert(d["path"].get<std::string>());
    json host_devices = json::array();
    AddHostDevices(in.host_dev_dir, "/dev", requested, &host_devices);
    for (json& d : linux_devices) host_devices.push_back(std::move(d));
    linux_devices = std::move(host_devices);
  }
  json resources = json::object();
  if (config.linux().has_resources()) {
    ASSIGN_OR_RETURN(resources, ContainerResources(config.linux().resources(), in));
  } else if (in.pids_limit > 0) {
    resources["pids"] = {{"limit", in.pids_limit}};
  }
  // Privileged: every device may be used (and the node's are all in /dev, above).
  resources["devices"] =
      sc.privileged() ? json::array({{{"allow", true}, {"access", "rwm"}}}) : device_rules;

  ASSIGN_OR_RETURN(json namespaces, ContainerNamespaces(ns, in));
  const bool net_new = ns.network() != runtime::v1::NODE && in.net_ns_path.empty();
  const bool ipc_new = ns.ipc() != runtime::v1::NODE && in.ipc_ns_path.empty();
  ASSIGN_OR_RETURN(json sysctls, Sysctls(sandbox, net_new, ipc_new));

  json linux_section = {{"namespaces", namespaces}, {"resources", resources}};
  if (!linux_devices.empty()) linux_section["devices"] = linux_devices;
  if (!sysctls.empty()) linux_section["sysctl"] = sysctls;
  if (!in.cgroups_path.empty()) linux_section["cgroupsPath"] = in.cgroups_path;
  if (!rootfs_propagation.empty()) linux_section["rootfsPropagation"] = rootfs_propagation;
  if (!sc.privileged()) {
    linux_section["maskedPaths"] =
        sc.masked_paths_size() > 0
            ? json(std::vector<std::string>(sc.masked_paths().begin(), sc.masked_paths().end()))
            : json(DefaultMaskedPaths());
    linux_section["readonlyPaths"] =
        sc.readonly_paths_size() > 0
            ? json(std::vector<std::string>(sc.readonly_paths().begin(), sc.readonly_paths().end()))
            : json(DefaultReadonlyPaths());
  }

  json annotations = json::object();
  for (const auto& [key, value] : config.annotations()) annotations[key] = value;
  annotations[absl::StrCat(kAnnotationPrefix, "container-type")] = "container";
  AddSandboxAnnotations(sandbox, in, &annotations);
  annotations[absl::StrCat(kAnnotationPrefix, "container-name")] = config.metadata().name();
  const std::string image_name = !in.image_name.empty() ? in.image_name
                                 : !config.image().user_specified_image().empty()
                                     ? config.image().user_specified_image()
                                     : config.image().image();
  annotations[absl::StrCat(kAnnotationPrefix, "image-name")] = image_name;

  json spec = {
      {"ociVersion", kOciVersion},
      {"process", process},
      {"root", Root(in, sc.readonly_rootfs())},
      {"mounts", SortedMounts(std::move(mounts))},
      {"linux", linux_section},
      {"annotations", annotations},
  };
  // A container that makes its own UTS namespace names it; one that joins the sandbox's
  // finds the name already set.
  if (ns.network() != runtime::v1::NODE && in.uts_ns_path.empty() && !sandbox.hostname().empty()) {
    spec["hostname"] = sandbox.hostname();
  }
  // CDI devices: edits of vendor spec files on top of everything the request asked for.
  RETURN_IF_ERROR(ApplyCdiDevices(config, in.cdi_spec_dirs, &spec));
  RETURN_IF_ERROR(ApplySecurityProfiles(SecurityRequestOf(sc), in, &spec));
  return spec;
}

absl::StatusOr<nlohmann::json> BuildExecProcess(const nlohmann::json& container_spec,
                                                const std::vector<std::string>& cmd, bool tty) {
  if (cmd.empty()) return Invalid("cmd", "empty (nothing to execute)");
  auto it = container_spec.find("process");
  if (!container_spec.is_object() || it == container_spec.end() || !it->is_object()) {
    return absl::InvalidArgumentError("container spec has no process object to exec from");
  }
  json process = *it;
  process["args"] = cmd;
  process["terminal"] = tty;
  process.erase("consoleSize");
  return process;
}

// ---------------------------------------------------------------------------------------
// Stop signal

namespace {

// glibc's SIGRTMIN and SIGRTMAX (the kernel's 32 and 33 are taken by NPTL).
constexpr int kRtMin = 34;
constexpr int kRtMax = 64;

const std::map<std::string, int, std::less<>>& SignalNames() {
  static const std::map<std::string, int, std::less<>> names = {
      {"ABRT", SIGABRT}, {"ALRM", SIGALRM}, {"BUS", SIGBUS},       {"CHLD", SIGCHLD},
      {"CLD", SIGCHLD},  {"CONT", SIGCONT}, {"FPE", SIGFPE},       {"HUP", SIGHUP},
      {"ILL", SIGILL},   {"INT", SIGINT},   {"IO", SIGIO},         {"IOT", SIGIOT},
      {"KILL", SIGKILL}, {"PIPE", SIGPIPE}, {"POLL", SIGPOLL},     {"PROF", SIGPROF},
      {"PWR", SIGPWR},   {"QUIT", SIGQUIT}, {"SEGV", SIGSEGV},     {"STKFLT", SIGSTKFLT},
      {"STOP", SIGSTOP}, {"SYS", SIGSYS},   {"TERM", SIGTERM},     {"TRAP", SIGTRAP},
      {"TSTP", SIGTSTP}, {"TTIN", SIGTTIN}, {"TTOU", SIGTTOU},     {"URG", SIGURG},
      {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"VTALRM", SIGVTALRM}, {"WINCH", SIGWINCH},
      {"XCPU", SIGXCPU}, {"XFSZ", SIGXFSZ}, {"RTMIN", kRtMin},     {"RTMAX", kRtMax}};
  return names;
}

std::optional<int> ParseSignal(absl::string_view text) {
  std::string s = absl::AsciiStrToUpper(absl::StripAsciiWhitespace(text));
  int n = 0;
  if (absl::SimpleAtoi(s, &n)) {
    if (n >= 1 && n <= kRtMax) return n;
    return std::nullopt;
  }
  absl::string_view name = s;
  absl::ConsumePrefix(&name, "SIG");
  for (const auto& [base, sign] :
       {std::pair<absl::string_view, int>{"RTMIN+", 1}, {"RTMAX-", -1}}) {
    if (absl::StartsWith(name, base)) {
      int off = 0;
      if (!absl::SimpleAtoi(name.substr(base.size()), &off) || off < 0) return std::nullopt;
      int sig = (sign > 0 ? kRtMin : kRtMax) + sign * off;
      if (sig < kRtMin || sig > kRtMax) return std::nullopt;
      return sig;
    }
  }
  auto it = SignalNames().find(name);
  if (it == SignalNames().end()) return std::nullopt;
  return it->second;
}

}  // namespace

absl::StatusOr<int> ResolveStopSignal(const runtime::v1::ContainerConfig& config,
                                      const nlohmann::json& image_config) {
  const int v = static_cast<int>(config.stop_signal());
  if (v != 0) {
    // Enum values 1..34 are the classic signals in alphabetical order; 35..65 are
    // SIGRTMIN..SIGRTMAX, i.e. signal number value - 1.
    if (v >= 35 && v <= 65) return v - 1;
    const std::string name = runtime::v1::Signal_Name(config.stop_signal());
    absl::string_view rest = name;
    if (absl::ConsumePrefix(&rest, "SIGNAL_")) {
      if (std::optional<int> sig = ParseSignal(rest)) return *sig;
    }
    return Invalid("stop_signal", absl::StrCat("unknown signal ", v));
  }
  const json image = ImageConfigObject(image_config);
  ASSIGN_OR_RETURN(std::string text, StringField(image, "StopSignal"));
  if (text.empty()) return SIGTERM;
  std::optional<int> sig = ParseSignal(text);
  if (!sig) return InvalidValue("image config StopSignal", text, "not a signal name or number");
  return *sig;
}

}  // namespace berth::cri
