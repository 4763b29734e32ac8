// SPDX-License-Identifier: Apache-2.0
// Pods end to end: the real berthd with its CRI plugin, runc and berth-shim, on a private
// root, state, socket, runc root, log directory and cgroup parent, all under one temporary
// directory, driven through its CRI socket with the generated gRPC client the way the kubelet
// drives it. Shared by tests/integration/pods_test.cc and tests/bench/pod_bench.cc, so there
// is no GoogleTest in here.
//
// PodHarness::Cleanup() does not trust berthd (a test may have failed, berthd may have
// crashed): it asks berthd through CRI to stop and remove every container and pod, stops it,
// kills by PID whatever still runs from the temporary directory or in the test's cgroup
// parent (berth-shim, runc, containers; never by name), unmounts (MNT_DETACH, deepest first)
// everything mounted under the directory, removes the cgroup directories, and removes the
// directory only when nothing is mounted under it any more.
#pragma once

#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/mount.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cri/v1/api.grpc.pb.h"
#include "plugins/common/mountinfo.h"
#include "tests/integration/registry_harness.h"
#include "tests/support/shared_host_state.h"

namespace berth::testing {

namespace v1 = ::runtime::v1;
using std::chrono::milliseconds;
using std::chrono::seconds;

// n random lowercase hex digits.
inline std::string RandomHex(size_t n) {
  std::random_device rd;
  std::mt19937_64 rng(
      (static_cast<uint64_t>(rd()) << 32) ^ rd() ^ static_cast<uint64_t>(getpid()) ^
      static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()));
  std::string s;
  for (size_t i = 0; i < n; ++i) s += "0123456789abcdef"[rng() % 16];
  return s;
}

// A client context with a deadline.
inline std::unique_ptr<grpc::ClientContext> CriContext(seconds timeout = seconds(30)) {
  auto c = std::make_unique<grpc::ClientContext>();
  c->set_deadline(std::chrono::system_clock::now() + timeout);
  return c;
}

inline double SecondsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// "code: message" of a gRPC status, for failure messages.
inline std::string Describe(const grpc::Status& s) {
  return s.ok() ? "OK"
                : std::to_string(static_cast<int>(s.error_code())) + ": " + s.error_message();
}

// ---- what a pod leaves on the host ----------------------------------------------------------

using plugins::UnescapeMountinfo;

struct MountEntry {
  std::string mount_point;
  std::string fs_type;
};

// Mounts at or under `dir` in this process's mount namespace, in mount order.
inline std::vector<MountEntry> MountsUnder(const fs::path& dir) {
  std::vector<MountEntry> out;
  const std::string prefix = dir.string();
  std::istringstream in(ReadFile("/proc/self/mountinfo"));
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::vector<std::string> f;
    std::string w;
    while (fields >> w) f.push_back(w);
    if (f.size() < 7) continue;
    std::string mp = UnescapeMountinfo(f[4]);
    if (mp != prefix && mp.rfind(prefix + "/", 0) != 0) continue;
    std::string type;
    for (size_t i = 5; i + 1 < f.size(); ++i) {
      if (f[i] == "-") {
        type = f[i + 1];
        break;
      }
    }
    out.push_back({mp, type});
  }
  return out;
}

// /proc/<pid>/<name> with NULs as spaces; "" when unreadable.
inline std::string ProcText(pid_t pid, const std::string& name) {
  std::string s = ReadFile("/proc/" + std::to_string(pid) + "/" + name);
  std::replace(s.begin(), s.end(), '\0', ' ');
  return s;
}

inline bool IsZombieOrGone(pid_t pid) {
  std::string stat = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  size_t p = stat.rfind(')');
  if (p == std::string::npos || p + 2 >= stat.size()) return true;
  return stat[p + 2] == 'Z' || stat[p + 2] == 'X';
}

// Live processes (not this one, not zombies) whose command line or working directory
// mentions `root`, or that are in a cgroup whose path contains `cgroup_marker` (when not
// empty).
inline std::vector<pid_t> ProcessesOf(const fs::path& root, const std::string& cgroup_marker) {
  std::vector<pid_t> out;
  const std::string r = root.string();
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc", ec)) {
    const std::string name = e.path().filename().string();
    if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) continue;
    pid_t pid = std::stoi(name);
    if (pid == getpid() || IsZombieOrGone(pid)) continue;
    bool ours = ProcText(pid, "cmdline").find(r) != std::string::npos;
    if (!ours) {
      std::error_code lec;
      fs::path cwd = fs::read_symlink(e.path() / "cwd", lec);
      ours = !lec && (cwd.string() == r || cwd.string().rfind(r + "/", 0) == 0);
    }
    if (!ours && !cgroup_marker.empty()) {
      ours = ProcText(pid, "cgroup").find(cgroup_marker) != std::string::npos;
    }
    if (ours) out.push_back(pid);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// The hierarchies under /sys/fs/cgroup (cgroup v1 controllers, name=systemd, unified; or the
// v2 root itself when /sys/fs/cgroup is cgroup2).
inline std::vector<fs::path> CgroupHierarchies() {
  std::vector<fs::path> out;
  std::error_code ec;
  if (fs::exists("/sys/fs/cgroup/cgroup.controllers", ec)) return {"/sys/fs/cgroup"};
  for (const auto& e : fs::directory_iterator("/sys/fs/cgroup", ec)) {
    std::error_code sec;
    if (e.is_directory(sec) && !e.is_symlink(sec)) out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Every cgroup directory at or under `parent` ("/berth-test-xx") in every hierarchy, as
// "<hierarchy>:<path>", sorted.
inline std::vector<std::string> CgroupDirs(const std::string& parent) {
  std::vector<std::string> out;
  for (const fs::path& h : CgroupHierarchies()) {
    fs::path top = h / parent.substr(1);
    std::error_code ec;
    if (!fs::is_directory(top, ec)) continue;
    out.push_back(h.filename().string() + ":" + parent);
    for (auto it = fs::recursive_directory_iterator(top, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
      std::error_code dec;
      if (it->is_directory(dec) && !it->is_symlink(dec)) {
        out.push_back(h.filename().string() + ":" + parent + "/" +
                      fs::relative(it->path(), top).string());
      }
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

// rmdir(2)s the cgroup directories at or under `parent` in every hierarchy, deepest first,
// retrying while they are busy (tasks still exiting). Returns the ones left.
inline std::vector<std::string> RemoveCgroupDirs(const std::string& parent, milliseconds patience) {
  auto deadline = std::chrono::steady_clock::now() + patience;
  for (;;) {
    std::vector<fs::path> dirs;
    for (const fs::path& h : CgroupHierarchies()) {
      fs::path top = h / parent.substr(1);
      std::error_code ec;
      if (!fs::is_directory(top, ec)) continue;
      dirs.push_back(top);
      for (auto it = fs::recursive_directory_iterator(top, ec);
           !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
        std::error_code dec;
        if (it->is_directory(dec) && !it->is_symlink(dec)) dirs.push_back(it->path());
      }
    }
    std::sort(dirs.begin(), dirs.end(), [](const fs::path& a, const fs::path& b) {
      return a.string().size() > b.string().size();
    });
    for (const fs::path& d : dirs) ::rmdir(d.c_str());
    std::vector<std::string> left = CgroupDirs(parent);
    if (left.empty() || std::chrono::steady_clock::now() > deadline) return left;
    std::this_thread::sleep_for(milliseconds(100));
  }
}

// What pods leave on the host: mounts under the temporary root (netns pins among them),
// cgroup directories under the test's parent, processes of the temporary root.
struct Footprint {
  std::vector<std::string> mounts;  // sorted mount points (stacked mounts appear twice)
  size_t netns_pins = 0;            // nsfs mounts among them
  std::vector<std::string> cgroups;
  std::vector<pid_t> processes;
  std::vector<std::string> veths;  // ports of the test's bridge
  std::vector<std::string> ips;    // addresses host-local holds for the test's network
  std::vector<std::string> nat_rules;  // iptables nat rules naming the test's network

  bool operator==(const Footprint& o) const {
    return mounts == o.mounts && netns_pins == o.netns_pins && cgroups == o.cgroups &&
           processes == o.processes && veths == o.veths && ips == o.ips &&
           nat_rules == o.nat_rules;
  }
};

template <typename T>
std::string SetDiff(const std::vector<T>& before, const std::vector<T>& after,
                    const std::function<std::string(const T&)>& show) {
  std::multiset<T> b(before.begin(), before.end()), a(after.begin(), after.end());
  std::string out;
  for (const T& x : a) {
    auto it = b.find(x);
    if (it != b.end()) {
      b.erase(it);
    } else {
      out += "  + " + show(x) + "\n";
    }
  }
  for (const T& x : b) out += "  - " + show(x) + "\n";
  return out;
}

// "+" for what `after` has more than `before`, "-" for what it lacks.
inline std::string FootprintDiff(const Footprint& before, const Footprint& after) {
  std::string out;
  std::string m =
      SetDiff<std::string>(before.mounts, after.mounts, [](const std::string& s) { return s; });
  if (!m.empty()) out += "mounts:\n" + m;
  if (before.netns_pins != after.netns_pins) {
    out += "netns pins: " + std::to_string(before.netns_pins) + " -> " +
           std::to_string(after.netns_pins) + "\n";
  }
  std::string c =
      SetDiff<std::string>(before.cgroups, after.cgroups, [](const std::string& s) { return s; });
  if (!c.empty()) out += "cgroups:\n" + c;
  std::string p = SetDiff<pid_t>(before.processes, after.processes, [](const pid_t& pid) {
    return std::to_string(pid) + " " + ProcText(pid, "cmdline");
  });
  if (!p.empty()) out += "processes:\n" + p;
  auto same = [](const std::string& x) { return x; };
  std::string v = SetDiff<std::string>(before.veths, after.veths, same);
  if (!v.empty()) out += "bridge ports:\n" + v;
  std::string i = SetDiff<std::string>(before.ips, after.ips, same);
  if (!i.empty()) out += "allocated pod IPs:\n" + i;
  std::string r = SetDiff<std::string>(before.nat_rules, after.nat_rules, same);
  if (!r.empty()) out += "iptables nat rules:\n" + r;
  return out;
}

// ---- images -----------------------------------------------------------------------------------

struct PodImages {
  std::string pause;    // busybox whose entrypoint is `sleep 2147483647`
  std::string busybox;  // busybox, `sh` by default
};

// docker-registry on loopback holding the images the pod tests use.
class ImageRegistry {
 public:
  ImageRegistry() : tmp_("registry") {}

  bool Start(std::string* error) {
    registry_ = std::make_unique<Registry>(tmp_.path() / "registry");
    if (!registry_->Start()) {
      *error =
          "docker-registry did not start: " + ReadFile(tmp_.path() / "registry" / "registry.log");
      return false;
    }
    std::string log;
    if (registry_
            ->Push({"--repo", "test/pause", "--tag", "3.10", "--busybox", "--entrypoint",
                    R"(["/bin/sleep","2147483647"])", "--cmd", "[]"},
                   &log)
            .empty()) {
      *error = "pushing the pause image failed: " + log;
      return false;
    }
    if (registry_
            ->Push({"--repo", "test/busybox", "--tag", "1", "--busybox", "--cmd", R"(["sh"])",
                    "--env", "FROM_IMAGE=yes"},
                   &log)
            .empty()) {
      *error = "pushing the busybox image failed: " + log;
      return false;
    }
    images_.pause = registry_->host() + "/test/pause:3.10";
    images_.busybox = registry_->host() + "/test/busybox:1";
    return true;
  }
  const PodImages& images() const { return images_; }
  Registry& registry() { return *registry_; }
  std::string host() const { return registry_->host(); }

 private:
  TempDir tmp_;
  std::unique_ptr<Registry> registry_;
  PodImages images_;
};

// ---- the harness --------------------------------------------------------------------------------

enum class Network { kPod, kHost };

class PodHarness {
 public:
  explicit PodHarness(PodImages images, const std::string& what = "pods")
      : images_(std::move(images)) {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/berth-" +
                       what + "-XXXXXX";
    if (char* made = ::mkdtemp(tmpl.data()); made != nullptr) {
      std::error_code ec;
      root_ = fs::weakly_canonical(made, ec);
      if (ec) root_ = made;
    }
    cgroup_parent_ = "/berth-test-" + RandomHex(12);
    bridge_ = "bt" + RandomHex(6);
    network_ = "berth-test-" + bridge_;
    // A /24 of 10.99.0.0/16 that no route uses yet (other tests may run at the same time).
    for (int i = 0; i < 50; ++i) {
      subnet_ = "10.99." + std::to_string(1 + std::stoi(RandomHex(2), nullptr, 16) % 254) + ".0/24";
      auto [code, out] = RunCommand({"/usr/sbin/ip", "-4", "route", "show", subnet_},
                                    fs::temp_directory_path() / ("route-" + bridge_ + ".log"));
      if (code == 0 && out.find("10.99.") == std::string::npos) break;
    }
    std::error_code ec;
    fs::remove(fs::temp_directory_path() / ("route-" + bridge_ + ".log"), ec);
  }
  // More io.berth.cri settings, as YAML lines indented by four ("    shim_cgroup: none\n");
  // before Start().
  void AddCriOptions(const std::string& yaml_lines) { cri_options_ += yaml_lines; }
  // The pod network of this harness: a bridge of its own with host-local addresses.
  const std::string& bridge() const { return bridge_; }
  const std::string& subnet() const { return subnet_; }
  const std::string& network() const { return network_; }
  // bridge + host-local, then `extra_plugins` (",{...}" entries).
  std::string Conflist(const std::string& extra_plugins =
                           R"(,{"type":"portmap","capabilities":{"portMappings":true}})") const {
    return R"({"cniVersion":"1.0.0","name":")" + network_ + R"(","plugins":[)"
           R"({"type":"bridge","bridge":")" + bridge_ + R"(","isGateway":true,"ipMasq":false,)"
           R"("ipam":{"type":"host-local","ranges":[[{"subnet":")" + subnet_ + R"("}]],)"
           R"("dataDir":")" + (root_ / "ipam").string() + R"("}})" + extra_plugins + "]}";
  }
  ~PodHarness() { Cleanup(); }
  PodHarness(const PodHarness&) = delete;
  PodHarness& operator=(const PodHarness&) = delete;

  const fs::path& root() const { return root_; }
  const std::string& cgroup_parent() const { return cgroup_parent_; }
  fs::path log_root() const { return root_ / "logs"; }
  fs::path daemon_dir() const { return root_ / "d"; }
  const PodImages& images() const { return images_; }
  Daemon& daemon() { return *daemon_; }
  v1::RuntimeService::Stub& rt() { return *runtime_; }
  v1::ImageService::Stub& img() { return *image_; }

  // Writes the configuration, starts berthd and pulls the busybox image.
  bool Start(std::string* error) {
    if (root_.empty()) {
      *error = "mkdtemp failed";
      return false;
    }
    fs::create_directories(daemon_dir());
    fs::create_directories(root_ / "net.d");
    WriteFile(root_ / "net.d" / "10-test.conflist", Conflist());
    fs::create_directories(log_root());
    daemon_ = std::make_unique<Daemon>(daemon_dir());
    // runc through berth-shim (the default), and Debian's containerd-shim-runc-v2 as a
    // handler of the shim v2 kind (what Kata would be on a node with KVM), plus one whose
    // shim does not exist.
    std::string runtimes =
        "runtimes:\n  runc:\n    plugin: io.berth.runtime.runc\n"
        "    options:\n      binary: runc\n      root: " +
        (root_ / "runc-root").string() +
        "\n  shimv2-test:\n    plugin: io.berth.runtime.kata\n"
        "    options:\n      shim: /usr/bin/containerd-shim-runc-v2\n"
        "  shimv2-missing:\n    plugin: io.berth.runtime.kata\n"
        "    options:\n      shim: /nonexistent/containerd-shim-missing-v2\n"
        "  shimv2-crash:\n    plugin: io.berth.runtime.kata\n"
        "    options:\n      shim: " + (root_ / "crashing-shim").string() + "\n"
        "  shimv2-hang:\n    plugin: io.berth.runtime.kata\n"
        "    options:\n      shim: " + (root_ / "hanging-shim").string() + "\n"
        "      start_timeout: 2s\n"
        "default_runtime: runc\n";
    // A shim v2 whose `start` never answers.
    WriteFile(root_ / "hanging-shim", "#!/bin/sh\nexec sleep 600\n");
    fs::permissions(root_ / "hanging-shim", fs::perms::owner_all);
    // A shim v2 that fails its `start` (as Kata does on a node without KVM).
    WriteFile(root_ / "crashing-shim",
              "#!/bin/sh\necho 'cannot start the sandbox: /dev/kvm: no such device' >&2\nexit 1\n");
    fs::permissions(root_ / "crashing-shim", fs::perms::owner_all);
    std::string config =
        BaseConfig(root_ / "net.d", "    sandbox_image: " + images_.pause + "\n" + cri_options_,
                   runtimes);
    config.replace(config.find("  io.berth.runtime.runc: {}\n"), 0,
                   "  io.berth.runtime.kata: {}\n");
    if (const char* level = std::getenv("BERTH_TEST_LOG_LEVEL"); level != nullptr) {
      config.replace(0, config.find('\n'), std::string("log_level: ") + level);
    }
    WriteFile(daemon_->config(), config);
    if (!StartDaemon(error)) return false;
    std::string image_ref;
    grpc::Status s = Pull(images_.busybox, &image_ref);
    if (!s.ok()) {
      *error = "PullImage " + images_.busybox + ": " + Describe(s) + "\n" + daemon_->Log();
      return false;
    }
    busybox_ref_ = image_ref;
    return true;
  }

  // Starts berthd (again, on the same root and state) and connects new stubs.
  bool StartDaemon(std::string* error) {
    if (!daemon_->Start()) {
      *error = "berthd did not start:\n" + daemon_->Log();
      return false;
    }
    Connect();
    // The socket accepts before every plugin answers: wait for Version.
    auto deadline = std::chrono::steady_clock::now() + seconds(15);
    for (;;) {
      v1::VersionResponse v;
      grpc::Status s = runtime_->Version(CriContext(seconds(5)).get(), {}, &v);
      if (s.ok()) return true;
      if (std::chrono::steady_clock::now() > deadline) {
        *error = "berthd does not answer Version: " + Describe(s) + "\n" + daemon_->Log();
        return false;
      }
      std::this_thread::sleep_for(milliseconds(20));
    }
  }
  // Stops berthd with `sig` (SIGKILL: a crash; shims and containers live on).
  std::optional<int> StopDaemon(int sig) {
    runtime_.reset();
    image_.reset();
    channel_.reset();
    return daemon_->Stop(sig);
  }
  void Connect() {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(64 << 20);
    channel_ = grpc::CreateCustomChannel("unix://" + daemon_->socket().string(),
                                         grpc::InsecureChannelCredentials(), args);
    runtime_ = v1::RuntimeService::NewStub(channel_);
    image_ = v1::ImageService::NewStub(channel_);
  }

  // The last `lines` lines of berthd's log.
  std::string LogTail(size_t lines = 150) const {
    if (!daemon_) return "";
    std::string log = daemon_->Log();
    size_t pos = log.size();
    for (size_t n = 0; n <= lines && pos != std::string::npos && pos > 0; ++n) {
      pos = log.rfind('\n', pos - 1);
    }
    return pos == std::string::npos ? log : log.substr(pos + 1);
  }

  // ---- requests as the kubelet builds them ----

  // A pod: metadata (name, namespace "berth-test", a fresh uid, attempt 0), its own log
  // directory, the test's cgroup parent, and the namespace options the kubelet sends by
  // default (network POD or NODE, pid CONTAINER, ipc POD).
  v1::PodSandboxConfig NewPod(const std::string& name, Network net = Network::kPod) {
    v1::PodSandboxConfig c;
    c.mutable_metadata()->set_name(name);
    c.mutable_metadata()->set_namespace_("berth-test");
    c.mutable_metadata()->set_uid(RandomHex(8) + "-" + RandomHex(4) + "-" + RandomHex(4));
    c.mutable_metadata()->set_attempt(0);
    if (net == Network::kPod) c.set_hostname(name);
    c.set_log_directory((log_root() / ("berth-test_" + name + "_" + c.metadata().uid())).string());
    (*c.mutable_labels())["io.kubernetes.pod.name"] = name;
    (*c.mutable_labels())["io.kubernetes.pod.namespace"] = "berth-test";
    c.mutable_linux()->set_cgroup_parent(cgroup_parent_);
    auto* ns = c.mutable_linux()->mutable_security_context()->mutable_namespace_options();
    ns->set_network(net == Network::kHost ? v1::NODE : v1::POD);
    ns->set_pid(v1::CONTAINER);
    ns->set_ipc(v1::POD);
    return c;
  }

  // A busybox container running `command`, logging to <name>/<attempt>.log in the pod's log
  // directory (created here, as the kubelet does), with the pod's namespace options.
  v1::ContainerConfig NewContainer(const v1::PodSandboxConfig& pod, const std::string& name,
                                   std::vector<std::string> command, uint32_t attempt = 0) {
    v1::ContainerConfig c;
    c.mutable_metadata()->set_name(name);
    c.mutable_metadata()->set_attempt(attempt);
    c.mutable_image()->set_image(images_.busybox);
    for (std::string& a : command) c.add_command(std::move(a));
    (*c.mutable_labels())["io.kubernetes.container.name"] = name;
    (*c.mutable_labels())["io.kubernetes.pod.name"] = pod.metadata().name();
    (*c.mutable_annotations())["io.kubernetes.container.restartCount"] = std::to_string(attempt);
    if (!pod.log_directory().empty()) {
      std::error_code ec;
      fs::create_directories(fs::path(pod.log_directory()) / name, ec);
      c.set_log_path(name + "/" + std::to_string(attempt) + ".log");
    }
    *c.mutable_linux()->mutable_security_context()->mutable_namespace_options() =
        pod.linux().security_context().namespace_options();
    return c;
  }

  // ---- calls ----

  grpc::Status Pull(const std::string& ref, std::string* image_ref) {
    v1::PullImageRequest req;
    req.mutable_image()->set_image(ref);
    v1::PullImageResponse resp;
    grpc::Status s = image_->PullImage(CriContext(seconds(60)).get(), req, &resp);
    if (image_ref != nullptr) *image_ref = resp.image_ref();
    return s;
  }
  grpc::Status RunPod(const v1::PodSandboxConfig& config, std::string* id,
                      const std::string& handler = "") {
    v1::RunPodSandboxRequest req;
    *req.mutable_config() = config;
    req.set_runtime_handler(handler);
    v1::RunPodSandboxResponse resp;
    grpc::Status s = runtime_->RunPodSandbox(CriContext(seconds(60)).get(), req, &resp);
    if (id != nullptr) *id = resp.pod_sandbox_id();
    return s;
  }
  grpc::Status StopPod(const std::string& id) {
    v1::StopPodSandboxRequest req;
    req.set_pod_sandbox_id(id);
    v1::StopPodSandboxResponse resp;
    return runtime_->StopPodSandbox(CriContext(seconds(60)).get(), req, &resp);
  }
  grpc::Status RemovePod(const std::string& id) {
    v1::RemovePodSandboxRequest req;
    req.set_pod_sandbox_id(id);
    v1::RemovePodSandboxResponse resp;
    return runtime_->RemovePodSandbox(CriContext(seconds(60)).get(), req, &resp);
  }
  grpc::Status PodStatus(const std::string& id, v1::PodSandboxStatusResponse* out,
                         bool verbose = false) {
    v1::PodSandboxStatusRequest req;
    req.set_pod_sandbox_id(id);
    req.set_verbose(verbose);
    return runtime_->PodSandboxStatus(CriContext().get(), req, out);
  }
  grpc::Status ListPods(const v1::PodSandboxFilter* filter, std::vector<v1::PodSandbox>* out) {
    v1::ListPodSandboxRequest req;
    if (filter != nullptr) *req.mutable_filter() = *filter;
    v1::ListPodSandboxResponse resp;
    grpc::Status s = runtime_->ListPodSandbox(CriContext().get(), req, &resp);
    out->assign(resp.items().begin(), resp.items().end());
    return s;
  }
  grpc::Status CreateContainer(const std::string& pod_id, const v1::PodSandboxConfig& pod,
                               const v1::ContainerConfig& config, std::string* id) {
    v1::CreateContainerRequest req;
    req.set_pod_sandbox_id(pod_id);
    *req.mutable_config() = config;
    *req.mutable_sandbox_config() = pod;
    v1::CreateContainerResponse resp;
    grpc::Status s = runtime_->CreateContainer(CriContext(seconds(60)).get(), req, &resp);
    if (id != nullptr) *id = resp.container_id();
    return s;
  }
  grpc::Status StartContainer(const std::string& id) {
    v1::StartContainerRequest req;
    req.set_container_id(id);
    v1::StartContainerResponse resp;
    return runtime_->StartContainer(CriContext(seconds(60)).get(), req, &resp);
  }
  // Create + Start.
  grpc::Status RunContainer(const std::string& pod_id, const v1::PodSandboxConfig& pod,
                            const v1::ContainerConfig& config, std::string* id) {
    grpc::Status s = CreateContainer(pod_id, pod, config, id);
    return s.ok() ? StartContainer(*id) : s;
  }
  grpc::Status StopContainer(const std::string& id, int64_t timeout) {
    v1::StopContainerRequest req;
    req.set_container_id(id);
    req.set_timeout(timeout);
    v1::StopContainerResponse resp;
    return runtime_->StopContainer(CriContext(seconds(timeout + 60)).get(), req, &resp);
  }
  grpc::Status RemoveContainer(const std::string& id) {
    v1::RemoveContainerRequest req;
    req.set_container_id(id);
    v1::RemoveContainerResponse resp;
    return runtime_->RemoveContainer(CriContext(seconds(60)).get(), req, &resp);
  }
  grpc::Status ContainerStatus(const std::string& id, v1::ContainerStatus* out) {
    v1::ContainerStatusRequest req;
    req.set_container_id(id);
    v1::ContainerStatusResponse resp;
    grpc::Status s = runtime_->ContainerStatus(CriContext().get(), req, &resp);
    if (out != nullptr) *out = resp.status();
    return s;
  }
  grpc::Status ListContainers(const v1::ContainerFilter* filter, std::vector<v1::Container>* out) {
    v1::ListContainersRequest req;
    if (filter != nullptr) *req.mutable_filter() = *filter;
    v1::ListContainersResponse resp;
    grpc::Status s = runtime_->ListContainers(CriContext().get(), req, &resp);
    out->assign(resp.containers().begin(), resp.containers().end());
    return s;
  }
  grpc::Status ExecSync(const std::string& id, std::vector<std::string> cmd, int64_t timeout,
                        v1::ExecSyncResponse* out) {
    v1::ExecSyncRequest req;
    req.set_container_id(id);
    for (std::string& a : cmd) req.add_cmd(std::move(a));
    req.set_timeout(timeout);
    return runtime_->ExecSync(CriContext(seconds(timeout > 0 ? timeout + 60 : 120)).get(), req,
                              out);
  }
  // Polls ContainerStatus until the container is in `state`; false (with the last status in
  // *out) after `timeout`.
  bool WaitForState(const std::string& id, v1::ContainerState state, milliseconds timeout,
                    v1::ContainerStatus* out = nullptr) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    v1::ContainerStatus st;
    for (;;) {
      grpc::Status s = ContainerStatus(id, &st);
      if (s.ok() && st.state() == state) break;
      if (std::chrono::steady_clock::now() > deadline) {
        if (out != nullptr) *out = st;
        return false;
      }
      std::this_thread::sleep_for(milliseconds(50));
    }
    if (out != nullptr) *out = st;
    return true;
  }

  // ---- what is left on the host ----

  Footprint TakeFootprint() const {
    Footprint f;
    for (const MountEntry& m : MountsUnder(root_)) {
      f.mounts.push_back(m.mount_point);
      if (m.fs_type == "nsfs") ++f.netns_pins;
    }
    std::sort(f.mounts.begin(), f.mounts.end());
    f.cgroups = CgroupDirs(cgroup_parent_);
    f.processes = ProcessesOf(root_, cgroup_parent_);
    std::error_code ec;
    for (const auto& e : fs::directory_iterator("/sys/class/net/" + bridge_ + "/brif", ec)) {
      f.veths.push_back(e.path().filename());
    }
    std::sort(f.veths.begin(), f.veths.end());
    for (const auto& e : fs::directory_iterator(root_ / "ipam" / network_, ec)) {
      std::string n = e.path().filename();
      if (n != "lock" && n.rfind("last_reserved_ip", 0) != 0) f.ips.push_back(n);
    }
    std::sort(f.ips.begin(), f.ips.end());
    auto [code, nat] = RunCommand({"/usr/sbin/iptables-save", "-t", "nat"},
                                  root_ / "iptables-save.log");
    std::istringstream lines(code == 0 ? nat : "");
    for (std::string line; std::getline(lines, line);) {
      if (line.find(network_) != std::string::npos) f.nat_rules.push_back(line);
    }
    std::sort(f.nat_rules.begin(), f.nat_rules.end());
    return f;
  }
  // Polls until the footprint equals `expected`; returns the last one.
  Footprint WaitForFootprint(const Footprint& expected, milliseconds timeout) const {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      Footprint f = TakeFootprint();
      if (f == expected || std::chrono::steady_clock::now() > deadline) return f;
      std::this_thread::sleep_for(milliseconds(100));
    }
  }
  // Processes (not zombies) in the cgroup of container `id` (its pids-controller cgroup, else
  // the first hierarchy that has it); nullopt when that cgroup does not exist.
  std::optional<std::vector<pid_t>> CgroupProcs(const std::string& id) const {
    for (const fs::path& h : CgroupHierarchies()) {
      fs::path procs = h / cgroup_parent_.substr(1) / id / "cgroup.procs";
      std::error_code ec;
      if (!fs::exists(procs, ec)) continue;
      std::vector<pid_t> out;
      std::istringstream in(ReadFile(procs));
      pid_t pid;
      while (in >> pid) {
        if (!IsZombieOrGone(pid)) out.push_back(pid);
      }
      return out;
    }
    return std::nullopt;
  }

  // Everything the test started goes away (see the file comment). Returns what had to be
  // done by force, for the test's output; idempotent.
  std::string Cleanup() {
    if (cleaned_ || root_.empty()) return "";
    cleaned_ = true;
    std::string report;
    // 1. Through CRI, as the kubelet would, if berthd still answers.
    if (daemon_ && daemon_->pid() > 0 && runtime_) {
      bool answering = true;
      auto note = [&](const std::string& what, const grpc::Status& s) {
        if (s.ok()) return;
        report += "cleanup: " + what + ": " + Describe(s) + "\n";
        if (s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED ||
            s.error_code() == grpc::StatusCode::UNAVAILABLE) {
          answering = false;
        }
      };
      v1::ListContainersResponse containers;
      grpc::Status s = runtime_->ListContainers(CriContext(seconds(10)).get(), {}, &containers);
      note("ListContainers", s);
      for (const v1::Container& c : containers.containers()) {
        if (!answering) break;
        v1::StopContainerRequest stop;
        stop.set_container_id(c.id());
        v1::StopContainerResponse stop_resp;
        note("StopContainer " + c.id(),
             runtime_->StopContainer(CriContext(seconds(20)).get(), stop, &stop_resp));
        if (!answering) break;
        v1::RemoveContainerRequest rm;
        rm.set_container_id(c.id());
        v1::RemoveContainerResponse rm_resp;
        note("RemoveContainer " + c.id(),
             runtime_->RemoveContainer(CriContext(seconds(20)).get(), rm, &rm_resp));
      }
      v1::ListPodSandboxResponse pods;
      if (answering) {
        note("ListPodSandbox", runtime_->ListPodSandbox(CriContext(seconds(10)).get(), {}, &pods));
      }
      for (const v1::PodSandbox& p : pods.items()) {
        if (!answering) break;
        v1::StopPodSandboxRequest stop;
        stop.set_pod_sandbox_id(p.id());
        v1::StopPodSandboxResponse stop_resp;
        note("StopPodSandbox " + p.id(),
             runtime_->StopPodSandbox(CriContext(seconds(30)).get(), stop, &stop_resp));
        if (!answering) break;
        v1::RemovePodSandboxRequest rm;
        rm.set_pod_sandbox_id(p.id());
        v1::RemovePodSandboxResponse rm_resp;
        note("RemovePodSandbox " + p.id(),
             runtime_->RemovePodSandbox(CriContext(seconds(30)).get(), rm, &rm_resp));
      }
    }
    // 2. berthd.
    runtime_.reset();
    image_.reset();
    channel_.reset();
    if (daemon_) daemon_->Stop(SIGTERM);
    // 3. Whatever still runs from the temporary root or in the test's cgroups, by PID.
    for (int round = 0; round < 5; ++round) {
      std::vector<pid_t> pids = ProcessesOf(root_, cgroup_parent_);
      if (pids.empty()) break;
      for (pid_t pid : pids) {
        report += "cleanup: killed " + std::to_string(pid) + " " + ProcText(pid, "cmdline") + "\n";
        ::kill(pid, SIGKILL);
      }
      auto deadline = std::chrono::steady_clock::now() + seconds(5);
      while (std::chrono::steady_clock::now() < deadline &&
             std::any_of(pids.begin(), pids.end(), [](pid_t p) { return !IsZombieOrGone(p); })) {
        std::this_thread::sleep_for(milliseconds(20));
      }
    }
    // 4. Mounts, deepest (then latest) first.
    for (int round = 0; round < 5; ++round) {
      std::vector<MountEntry> mounts = MountsUnder(root_);
      if (mounts.empty()) break;
      std::reverse(mounts.begin(), mounts.end());
      std::stable_sort(mounts.begin(), mounts.end(), [](const MountEntry& a, const MountEntry& b) {
        return std::count(a.mount_point.begin(), a.mount_point.end(), '/') >
               std::count(b.mount_point.begin(), b.mount_point.end(), '/');
      });
      for (const MountEntry& m : mounts) {
        if (::umount2(m.mount_point.c_str(), MNT_DETACH) == 0) {
          report += "cleanup: unmounted " + m.mount_point + " (" + m.fs_type + ")\n";
        }
      }
    }
    // 5. Cgroups.
    for (const std::string& left : RemoveCgroupDirs(cgroup_parent_, seconds(5))) {
      report += "cleanup: cgroup left: " + left + "\n";
    }
    // 6. The test's bridge (the pods' veths went with their namespaces).
    std::error_code bec;
    if (fs::exists("/sys/class/net/" + bridge_, bec)) {
      RunCommand({"/usr/sbin/ip", "link", "del", bridge_}, root_ / "ip-link-del.log");
    }
    daemon_.reset();
    // 7. The directory, only with nothing mounted under it.
    std::vector<MountEntry> left = MountsUnder(root_);
    if (left.empty()) {
      std::error_code ec;
      fs::remove_all(root_, ec);
      if (ec) report += "cleanup: removing " + root_.string() + ": " + ec.message() + "\n";
    } else {
      report +=
          "cleanup: " + root_.string() + " kept, still mounted: " + left.front().mount_point + "\n";
    }
    return report;
  }

  const std::string& busybox_ref() const { return busybox_ref_; }

 private:
  // Held while berthd may run containerd-shim-runc-v2 (the shimv2-test handler) and the
  // portmap plugin (the default conflist has it).
  ContainerdRunDir run_dir_;
  PortmapChains portmap_chains_;
  PodImages images_;
  fs::path root_;
  std::string cgroup_parent_;
  std::string cri_options_;
  std::string bridge_, network_, subnet_;
  std::unique_ptr<Daemon> daemon_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::RuntimeService::Stub> runtime_;
  std::unique_ptr<v1::ImageService::Stub> image_;
  std::string busybox_ref_;
  bool cleaned_ = false;
};

}  // namespace berth::testing
