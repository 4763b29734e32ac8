// SPDX-License-Identifier: Apache-2.0
#include "plugins/cri/pod_infra.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <functional>
#include <string_view>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "berth/mount.hpp"
#include "berth/unique_fd.hpp"
#include "core/status_macros.h"
#include "plugins/common/mountinfo.h"
#include "plugins/cri/netns.h"

namespace berth::cri {
namespace {

namespace fs = std::filesystem;

constexpr size_t kMaxHostnameLen = 64;  // the kernel's __NEW_UTS_LEN
constexpr int kMaxDnsServers = 32;
constexpr int kMaxDnsSearches = 32;
constexpr size_t kMaxDnsSearchLen = 253;
constexpr size_t kMaxDnsSearchChars = 2048;
constexpr int kMaxDnsOptions = 32;
constexpr size_t kMaxDnsOptionLen = 256;
constexpr size_t kMaxHostFileBytes = 1 << 20;
constexpr mode_t kDirMode = 0711;  // traversable by the runtime, not listable

// The SDK's ErrnoToStatus (the one plugins share) as an absl::Status: the codes are the same
// google.rpc values.
absl::Status Errno(int err, absl::string_view what) {
  sdk::Status s = sdk::ErrnoToStatus(err, std::string_view(what.data(), what.size()));
  return absl::Status(static_cast<absl::StatusCode>(s.code()), s.message());
}

absl::Status FromSdk(const sdk::Status& s) {
  return absl::Status(static_cast<absl::StatusCode>(s.code()), s.message());
}

std::string Quote(absl::string_view s) { return absl::StrCat("\"", absl::CHexEscape(s), "\""); }

// Undo steps of a multi-step setup, run in reverse unless dismissed.
class Rollback {
 public:
  Rollback() = default;
  Rollback(const Rollback&) = delete;
  Rollback& operator=(const Rollback&) = delete;
  ~Rollback() {
    if (!dismissed_) (void)Run();
  }

  void Add(std::function<absl::Status()> undo) { steps_.push_back(std::move(undo)); }
  void Dismiss() { dismissed_ = true; }

  // Undoes everything and returns `cause`, with what could not be undone appended.
  absl::Status Fail(const absl::Status& cause) {
    std::string failures = Run();
    dismissed_ = true;
    if (failures.empty()) return cause;
    return absl::Status(
        cause.code(), absl::StrCat(cause.message(), "; undoing the setup failed too: ", failures));
  }

 private:
  std::string Run() {
    std::vector<std::string> failures;
    for (auto it = steps_.rbegin(); it != steps_.rend(); ++it) {
      absl::Status s = (*it)();
      if (!s.ok()) failures.push_back(std::string(s.message()));
    }
    steps_.clear();
    return absl::StrJoin(failures, "; ");
  }

  std::vector<std::function<absl::Status()>> steps_;
  bool dismissed_ = false;
};

absl::StatusOr<std::string> ReadSmallFile(const std::string& path, absl::string_view what) {
  sdk::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Errno(errno, absl::StrCat("open ", what, " ", path));
  std::string out;
  char buf[8192];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Errno(errno, absl::StrCat("read ", what, " ", path));
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > kMaxHostFileBytes) {
      return absl::FailedPreconditionError(
          absl::StrCat(what, " ", path, " is larger than ", kMaxHostFileBytes, " bytes"));
    }
  }
  return out;
}

absl::Status ValidateSandboxId(const std::string& id) {
  if (id.empty() || id == "." || id == ".." || id.size() > 255 ||
      id.find_first_of("/\0", 0, 2) != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("sandbox id ", Quote(id), " is not a plain file name (1-255 bytes, no '/')"));
  }
  return absl::OkStatus();
}

absl::Status ValidateHostnameValue(absl::string_view name, absl::string_view field) {
  if (name.empty() || name.size() > kMaxHostnameLen) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, " ", Quote(name), ": must be 1-", kMaxHostnameLen, " bytes, it has ", name.size()));
  }
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == '_';
    if (!ok) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, " ", Quote(name), ": character ", Quote(absl::string_view(&c, 1)),
                       " is not allowed (letters, digits, '.', '-', '_')"));
    }
  }
  return absl::OkStatus();
}

// One whitespace-separated token of resolv.conf.
absl::Status ValidateDnsToken(absl::string_view field, int index, absl::string_view value,
                              size_t max_len) {
  std::string name = absl::StrCat("dns_config.", field, "[", index, "] ", Quote(value));
  if (value.empty()) return absl::InvalidArgumentError(absl::StrCat(name, ": is empty"));
  if (value.size() > max_len) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": is ", value.size(), " bytes long, at most ", max_len, " allowed"));
  }
  for (char c : value) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f || c == '#' || c == ';') {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": contains ", Quote(absl::string_view(&c, 1)),
                       " (whitespace, control characters, '#' and ';' would break resolv.conf)"));
    }
  }
  return absl::OkStatus();
}

bool IsIpAddress(absl::string_view s) {
  std::string str(s);
  unsigned char buf[sizeof(in6_addr)];
  if (::inet_pton(AF_INET, str.c_str(), buf) == 1) return true;
  std::string addr = str;
  if (size_t pct = str.find('%'); pct != std::string::npos) {  // fe80::1%eth0
    std::string zone = str.substr(pct + 1);
    if (zone.empty() || zone.size() >= IFNAMSIZ) return false;
    addr = str.substr(0, pct);
  }
  return ::inet_pton(AF_INET6, addr.c_str(), buf) == 1;
}

// The non-empty, non-"." segments of a slash-separated path.
std::vector<absl::string_view> Segments(absl::string_view path) {
  std::vector<absl::string_view> out;
  for (absl::string_view seg : absl::StrSplit(path, '/', absl::SkipEmpty())) {
    if (seg != ".") out.push_back(seg);
  }
  return out;
}

bool HasDotDot(absl::string_view path) {
  for (absl::string_view seg : absl::StrSplit(path, '/')) {
    if (seg == "..") return true;
  }
  return false;
}

absl::Status MakeDir(const std::string& path, mode_t mode, absl::string_view what) {
  if (::mkdir(path.c_str(), mode) != 0) {
    return Errno(errno, absl::StrCat("create ", what, " ", path));
  }
  ::chmod(path.c_str(), mode);  // mkdir's mode went through the umask
  return absl::OkStatus();
}

absl::Status MakeDirs(const std::string& path, mode_t mode, absl::string_view what) {
  std::string partial;
  for (absl::string_view seg : Segments(path)) {
    absl::StrAppend(&partial, "/", seg);
    if (::mkdir(partial.c_str(), mode) == 0) {
      ::chmod(partial.c_str(), mode);
      continue;
    }
    int err = errno;
    struct stat st {};
    if (err == EEXIST && ::stat(partial.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) continue;
    return Errno(err == EEXIST ? ENOTDIR : err, absl::StrCat("create ", what, " ", partial));
  }
  return absl::OkStatus();
}

std::string SandboxDir(const PodInfraOptions& o) {
  return absl::StrCat(o.state_dir, "/sandboxes/", o.sandbox_id);
}
std::string ShmPath(const PodInfraOptions& o) { return SandboxDir(o) + "/shm"; }
std::string NetnsDir(const PodInfraOptions& o) {
  return o.netns_dir.empty() ? o.state_dir + "/netns" : o.netns_dir;
}
std::string NetnsPath(const PodInfraOptions& o) { return NetnsDir(o) + "/" + o.sandbox_id; }

absl::Status ValidateOptions(const PodInfraOptions& o) {
  RETURN_IF_ERROR(ValidateSandboxId(o.sandbox_id));
  auto check = [](const std::string& path, absl::string_view name) {
    if (path.empty() || path[0] != '/' || HasDotDot(path) || Segments(path).empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat(name, " ", Quote(path), " is not an absolute path below /"));
    }
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(check(o.state_dir, "CRI state directory"));
  if (!o.netns_dir.empty()) RETURN_IF_ERROR(check(o.netns_dir, "network namespace directory"));
  return absl::OkStatus();
}

absl::Status UnmountShm(const std::string& shm) {
  sdk::Status s = sdk::Unmount(shm, MNT_DETACH);
  if (!s.ok()) return FromSdk(s);
  return absl::OkStatus();
}

// Removes the sandbox directory, refusing while anything is mounted at or under it.
absl::Status RemoveSandboxDir(const std::string& dir) {
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return Errno(errno, "stat the sandbox directory " + dir);
  }
  ASSIGN_OR_RETURN(std::vector<std::string> mounts, MountPointsUnder(dir));
  if (!mounts.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("sandbox directory ", dir, " is not removed: still mounted there: ",
                     absl::StrJoin(mounts, ", "), " (unmount them, then retry RemovePodSandbox)"));
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
  if (ec) return Errno(ec.value(), "remove the sandbox directory " + dir);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> PodHostname(const runtime::v1::PodSandboxConfig& config,
                                        absl::string_view node_hostname) {
  if (!config.hostname().empty()) {
    RETURN_IF_ERROR(ValidateHostnameValue(config.hostname(), "hostname"));
    return config.hostname();
  }
  std::string node(node_hostname);
  if (node.empty()) {
    char buf[HOST_NAME_MAX + 1] = {};
    if (::gethostname(buf, sizeof(buf) - 1) != 0) {
      return Errno(errno, "gethostname for a pod without hostname");
    }
    node = buf;
  }
  RETURN_IF_ERROR(
      ValidateHostnameValue(node, "node hostname (used as PodSandboxConfig.hostname is empty)"));
  return node;
}

std::string RenderHosts(absl::string_view hostname, const std::vector<std::string>& pod_ips) {
  std::string out =
      "127.0.0.1\tlocalhost\n"
      "::1\tlocalhost ip6-localhost ip6-loopback\n"
      "fe00::0\tip6-localnet\n"
      "fe00::0\tip6-mcastprefix\n"
      "fe00::1\tip6-allnodes\n"
      "fe00::2\tip6-allrouters\n";
  if (hostname.empty()) return out;
  if (pod_ips.empty()) {
    absl::StrAppend(&out, "127.0.0.1\t", hostname, "\n::1\t", hostname, "\n");
  }
  for (const std::string& ip : pod_ips) absl::StrAppend(&out, ip, "\t", hostname, "\n");
  return out;
}

bool HasDnsConfig(const runtime::v1::DNSConfig& dns) {
  return dns.servers_size() > 0 || dns.searches_size() > 0 || dns.options_size() > 0;
}

absl::Status ValidateDnsConfig(const runtime::v1::DNSConfig& dns) {
  if (dns.servers_size() > kMaxDnsServers) {
    return absl::InvalidArgumentError(absl::StrCat("dns_config.servers: ", dns.servers_size(),
                                                   " servers, at most ", kMaxDnsServers,
                                                   " allowed (the resolver uses the first 3)"));
  }
  for (int i = 0; i < dns.servers_size(); ++i) {
    const std::string& s = dns.servers(i);
    RETURN_IF_ERROR(ValidateDnsToken("servers", i, s, INET6_ADDRSTRLEN + IFNAMSIZ));
    if (!IsIpAddress(s)) {
      return absl::InvalidArgumentError(
          absl::StrCat("dns_config.servers[", i, "] ", Quote(s), ": not an IPv4 or IPv6 address"));
    }
  }
  if (dns.searches_size() > kMaxDnsSearches) {
    return absl::InvalidArgumentError(absl::StrCat("dns_config.searches: ", dns.searches_size(),
                                                   " search domains, at most ", kMaxDnsSearches,
                                                   " allowed"));
  }
  size_t search_chars = 0;
  for (int i = 0; i < dns.searches_size(); ++i) {
    RETURN_IF_ERROR(ValidateDnsToken("searches", i, dns.searches(i), kMaxDnsSearchLen));
    search_chars += dns.searches(i).size() + (i > 0 ? 1 : 0);
  }
  if (search_chars > kMaxDnsSearchChars) {
    return absl::InvalidArgumentError(absl::StrCat("dns_config.searches: ", search_chars,
                                                   " bytes in all, at most ", kMaxDnsSearchChars,
                                                   " allowed"));
  }
  if (dns.options_size() > kMaxDnsOptions) {
    return absl::InvalidArgumentError(absl::StrCat("dns_config.options: ", dns.options_size(),
                                                   " options, at most ", kMaxDnsOptions,
                                                   " allowed"));
  }
  for (int i = 0; i < dns.options_size(); ++i) {
    RETURN_IF_ERROR(ValidateDnsToken("options", i, dns.options(i), kMaxDnsOptionLen));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> RenderResolvConf(const runtime::v1::DNSConfig& dns) {
  RETURN_IF_ERROR(ValidateDnsConfig(dns));
  std::string out;
  if (dns.searches_size() > 0)
    absl::StrAppend(&out, "search ", absl::StrJoin(dns.searches(), " "), "\n");
  for (const std::string& s : dns.servers()) absl::StrAppend(&out, "nameserver ", s, "\n");
  if (dns.options_size() > 0)
    absl::StrAppend(&out, "options ", absl::StrJoin(dns.options(), " "), "\n");
  return out;
}

absl::Status ValidateLogDirectory(absl::string_view dir) {
  if (dir.empty()) return absl::OkStatus();
  auto bad = [dir](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("log_directory ", Quote(dir), ": ", why));
  };
  if (dir[0] != '/') return bad("not an absolute path");
  if (dir.find_first_of(absl::string_view("\0\n", 2)) != absl::string_view::npos) {
    return bad("contains a NUL or newline");
  }
  if (HasDotDot(dir)) return bad("contains a \"..\" segment");
  if (Segments(dir).empty()) return bad("is the root directory");
  return absl::OkStatus();
}

absl::StatusOr<std::string> ValidateContainerLogPath(absl::string_view log_directory,
                                                     absl::string_view log_path) {
  if (log_path.empty()) return std::string();
  auto bad = [log_path](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("log_path ", Quote(log_path), ": ", why));
  };
  if (log_path[0] == '/') return bad("is absolute; it must be relative to the log_directory");
  if (log_path.find_first_of(absl::string_view("\0\n", 2)) != absl::string_view::npos) {
    return bad("contains a NUL or newline");
  }
  if (HasDotDot(log_path)) return bad("contains a \"..\" segment");
  std::vector<absl::string_view> segs = Segments(log_path);
  if (segs.empty()) return bad("names the log directory itself, not a file in it");
  if (log_path.back() == '/') return bad("names a directory, not a file");
  if (log_directory.empty()) return std::string();
  RETURN_IF_ERROR(ValidateLogDirectory(log_directory));
  return absl::StrCat("/", absl::StrJoin(Segments(log_directory), "/"), "/",
                      absl::StrJoin(segs, "/"));
}

bool CapEffHasSysResource(absl::string_view proc_status) {
  constexpr int kCapSysResource = 24;
  for (absl::string_view line : absl::StrSplit(proc_status, '\n')) {
    if (!absl::ConsumePrefix(&line, "CapEff:")) continue;
    uint64_t caps = 0;
    if (!absl::SimpleHexAtoi(absl::StripAsciiWhitespace(line), &caps)) return false;
    return (caps >> kCapSysResource) & 1;
  }
  return false;
}

int ClampOomScoreAdj(int requested, int current, bool has_cap_sys_resource) {
  int lowest = has_cap_sys_resource ? -1000 : std::clamp(current, -1000, 1000);
  return std::clamp(requested, lowest, 1000);
}

int OomScoreAdjMin() {
  int current = 0;  // when unreadable: the kernel's default
  if (absl::StatusOr<std::string> text = ReadSmallFile("/proc/self/oom_score_adj", "own");
      text.ok()) {
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &current)) current = 0;
  }
  bool cap = false;
  if (absl::StatusOr<std::string> status = ReadSmallFile("/proc/self/status", "own"); status.ok()) {
    cap = CapEffHasSysResource(*status);
  }
  // The kernel checks CAP_SYS_RESOURCE in the initial user namespace: a capability held in a
  // child user namespace (rootless) does not count.
  if (cap) {
    absl::StatusOr<std::string> map = ReadSmallFile("/proc/self/uid_map", "own");
    if (map.ok()) {
      std::vector<absl::string_view> f = absl::StrSplit(
          absl::StripAsciiWhitespace(*map), absl::ByAnyChar(" \t\n"), absl::SkipEmpty());
      cap = f.size() == 3 && f[0] == "0" && f[1] == "0" && f[2] == "4294967295";
    }
  }
  return ClampOomScoreAdj(-1000, current, cap);
}

int ClampOomScoreAdj(int requested) { return std::clamp(requested, OomScoreAdjMin(), 1000); }

absl::Status WriteFileAtomic(const std::string& path, absl::string_view content, mode_t mode) {
  std::string tmp = path + ".tmp-XXXXXX";
  sdk::UniqueFd fd(::mkostemp(tmp.data(), O_CLOEXEC));
  if (!fd.valid()) return Errno(errno, "create a temporary file for " + path);
  auto fail = [&tmp](int err, absl::string_view what) {
    absl::Status s = Errno(err, what);
    ::unlink(tmp.c_str());
    return s;
  };
  for (size_t done = 0; done < content.size();) {
    ssize_t n = ::write(fd.get(), content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(errno, "write " + tmp);
    done += static_cast<size_t>(n);
  }
  if (::fchmod(fd.get(), mode) != 0) return fail(errno, "chmod " + tmp);
  if (::close(fd.Release()) != 0) return fail(errno, "close " + tmp);
  if (::rename(tmp.c_str(), path.c_str()) != 0) return fail(errno, "rename " + tmp + " to " + path);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> MountPointsUnder(const std::string& dir) {
  char* resolved = ::realpath(dir.c_str(), nullptr);
  if (resolved == nullptr) return Errno(errno, "resolve " + dir);
  std::string root = resolved;
  ::free(resolved);
  ASSIGN_OR_RETURN(std::string info, ReadSmallFile("/proc/self/mountinfo", "mount table"));
  std::vector<std::string> out;
  for (absl::string_view line : absl::StrSplit(info, '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> f = absl::StrSplit(line, ' ');
    if (f.size() < 5) continue;
    std::string mp = plugins::UnescapeMountinfo(std::string_view(f[4].data(), f[4].size()));
    if (mp == root || root == "/" || absl::StartsWith(mp, root + "/")) out.push_back(mp);
  }
  return out;
}

absl::StatusOr<PodInfra> SetUpPodInfra(const runtime::v1::PodSandboxConfig& config,
                                       const PodInfraOptions& options) {
  // Everything that can be refused is checked before anything is made.
  RETURN_IF_ERROR(ValidateOptions(options));
  const runtime::v1::NamespaceOption& ns = config.linux().security_context().namespace_options();
  const bool host_network = ns.network() == runtime::v1::NODE;
  const bool host_ipc = ns.ipc() == runtime::v1::NODE;
  ASSIGN_OR_RETURN(std::string hostname, PodHostname(config, options.node_hostname));
  RETURN_IF_ERROR(ValidateLogDirectory(config.log_directory()));
  if (!host_ipc && options.shm_size_bytes == 0) {
    return absl::FailedPreconditionError("pod shm size is 0 bytes");
  }

  std::string hosts;
  if (host_network) {
    absl::StatusOr<std::string> host =
        ReadSmallFile(options.host_hosts_path, "the node's hosts file");
    // A node without /etc/hosts: the pod gets the generated one rather than none.
    if (!host.ok() && !absl::IsNotFound(host.status())) return host.status();
    hosts = host.ok() ? *std::move(host) : RenderHosts(hostname);
  } else {
    hosts = RenderHosts(hostname);
  }
  std::string resolv;
  if (HasDnsConfig(config.dns_config())) {
    ASSIGN_OR_RETURN(resolv, RenderResolvConf(config.dns_config()));
  } else {
    absl::StatusOr<std::string> host =
        ReadSmallFile(options.host_resolv_conf_path, "the node's resolv.conf");
    // A node without resolv.conf: the pod gets the resolver's defaults, like the node.
    if (!host.ok() && !absl::IsNotFound(host.status())) return host.status();
    if (host.ok()) resolv = *std::move(host);
  }

  PodInfra infra;
  infra.hostname = hostname;
  infra.sandbox_dir = SandboxDir(options);
  Rollback rollback;
  const std::string sandboxes = options.state_dir + "/sandboxes";
  if (absl::Status s = MakeDirs(sandboxes, kDirMode, "the sandboxes directory"); !s.ok()) {
    return s;
  }
  if (::mkdir(infra.sandbox_dir.c_str(), kDirMode) != 0) {
    if (errno == EEXIST) {
      return absl::AlreadyExistsError(absl::StrCat(
          "sandbox directory ", infra.sandbox_dir, " already exists: sandbox ", options.sandbox_id,
          " was set up before and not removed (RemovePodSandbox it)"));
    }
    return Errno(errno, "create the sandbox directory " + infra.sandbox_dir);
  }
  ::chmod(infra.sandbox_dir.c_str(), kDirMode);
  rollback.Add([dir = infra.sandbox_dir] { return RemoveSandboxDir(dir); });

  infra.hostname_path = infra.sandbox_dir + "/hostname";
  infra.hosts_path = infra.sandbox_dir + "/hosts";
  infra.resolv_conf_path = infra.sandbox_dir + "/resolv.conf";
  for (const auto& [path, content] :
       {std::pair{&infra.hostname_path, hostname + "\n"}, std::pair{&infra.hosts_path, hosts},
        std::pair{&infra.resolv_conf_path, resolv}}) {
    if (absl::Status s = WriteFileAtomic(*path, content); !s.ok()) return rollback.Fail(s);
  }

  if (!host_ipc) {
    infra.shm_path = ShmPath(options);
    if (absl::Status s = MakeDir(infra.shm_path, 0755, "the pod's shm mount point"); !s.ok()) {
      return rollback.Fail(s);
    }
    const std::string data = absl::StrCat("mode=1777,size=", options.shm_size_bytes);
    if (::mount("shm", infra.shm_path.c_str(), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                data.c_str()) != 0) {
      return rollback.Fail(
          Errno(errno, absl::StrCat("mount the pod's shm tmpfs (", data, ") on ", infra.shm_path)));
    }
    rollback.Add([shm = infra.shm_path] { return UnmountShm(shm); });
  }

  if (!host_network) {
    absl::StatusOr<Netns> netns = Netns::Create(NetnsDir(options), options.sandbox_id);
    if (!netns.ok()) return rollback.Fail(netns.status());
    infra.net_ns_path = netns->Release();
    rollback.Add([path = infra.net_ns_path] { return Netns::Remove(path); });
  }

  if (!config.log_directory().empty()) {
    infra.log_directory = config.log_directory();
    struct stat st {};
    bool existed = ::stat(infra.log_directory.c_str(), &st) == 0;
    if (existed && !S_ISDIR(st.st_mode)) {
      return rollback.Fail(absl::FailedPreconditionError(absl::StrCat(
          "log_directory ", Quote(infra.log_directory), " exists and is not a directory")));
    }
    if (!existed) {
      if (absl::Status s = MakeDirs(infra.log_directory, 0755, "the pod log directory"); !s.ok()) {
        return rollback.Fail(s);
      }
      // Only the last component is undone, and only while empty: its parents may be shared.
      rollback.Add([dir = infra.log_directory] {
        if (::rmdir(dir.c_str()) != 0 && errno != ENOENT && errno != ENOTEMPTY) {
          return Errno(errno, "remove the pod log directory " + dir);
        }
        return absl::OkStatus();
      });
    }
  }
  rollback.Dismiss();
  return infra;
}

absl::Status StopPodInfra(const PodInfraOptions& options) {
  RETURN_IF_ERROR(ValidateOptions(options));
  absl::Status shm = UnmountShm(ShmPath(options));
  absl::Status netns = Netns::Remove(NetnsPath(options));
  if (!shm.ok() && !netns.ok()) {
    return absl::Status(shm.code(), absl::StrCat(shm.message(), "; ", netns.message()));
  }
  return shm.ok() ? netns : shm;
}

absl::Status TearDownPodInfra(const PodInfraOptions& options) {
  RETURN_IF_ERROR(StopPodInfra(options));
  return RemoveSandboxDir(SandboxDir(options));
}

void ApplyPodInfra(const PodInfra& infra, SpecInputs* in) {
  in->hostname_path = infra.hostname_path;
  in->hosts_path = infra.hosts_path;
  in->resolv_conf_path = infra.resolv_conf_path;
  in->shm_path = infra.shm_path;
  in->net_ns_path = infra.net_ns_path;
}

}  // namespace berth::cri
