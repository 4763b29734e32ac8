// SPDX-License-Identifier: Apache-2.0
// A real berthd with `cgroup_driver: systemd`, for a process that runs inside a booted
// systemd's namespaces (booted_systemd.h RunInside: its PID, mount and cgroup namespaces,
// the host's network namespace, so docker-registry on the host's loopback is reachable).
// The runc handler has no systemd_cgroup option: it follows the driver (runc
// --systemd-cgroup). Pods are host-network pods (the namespaces' /proc/sys is read-only,
// which a CNI bridge would need), with the cgroup_parent the test gives (a kubepods slice).
//
// Shared by cri_systemd_test.cc and tests/bench/systemd_pod_bench.cc; no GoogleTest here.
// It reuses the pieces of tests/integration/pod_harness.h (Daemon, images, CRI contexts,
// process and mount listings) but not PodHarness, whose configuration is cgroupfs's.
//
// Cleanup() does not trust berthd: it stops and removes through CRI what berthd still
// lists, stops berthd, kills by PID what still runs from the harness's directory, unmounts
// (in the current mount namespace: systemd's) what is mounted under it, removes the pod
// slices the test made as the kubelet does once a pod is gone (RemovePodSlice), and removes
// the directory.
#pragma once

#include <grpcpp/grpcpp.h>
#include <sys/mount.h>

#include <cerrno>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "plugins/cgroup-systemd/unit_names.h"
#include "tests/integration/pod_harness.h"

namespace berth::cgroup_systemd::testing {

namespace bt = ::berth::testing;
namespace fs = std::filesystem;
namespace v1 = ::runtime::v1;
using std::chrono::milliseconds;
using std::chrono::seconds;

// What the process run inside the booted systemd gets from the one that booted it.
inline constexpr char kInsideRootEnv[] = "BERTH_CRI_SYSTEMD_ROOT";        // directory for berthd
inline constexpr char kInsidePauseEnv[] = "BERTH_CRI_SYSTEMD_PAUSE";      // pause image ref
inline constexpr char kInsideBusyboxEnv[] = "BERTH_CRI_SYSTEMD_BUSYBOX";  // busybox image ref
inline constexpr char kInsideTagEnv[] = "BERTH_CRI_SYSTEMD_TAG";  // in every slice name made

inline constexpr char kSystemctl[] = "/usr/bin/systemctl";

// ---- systemd and cgroups, as seen from inside ---------------------------------------------

// `systemctl show <unit> -p <p>...`: property -> value ("" for an empty one). An empty map when
// systemctl failed (its output in *error).
inline std::map<std::string, std::string> ShowUnit(const std::string& unit,
                                                   const std::vector<std::string>& properties,
                                                   const fs::path& scratch,
                                                   std::string* error = nullptr) {
  std::vector<std::string> argv = {kSystemctl, "show", unit};
  for (const std::string& p : properties) {
    argv.push_back("-p");
    argv.push_back(p);
  }
  auto [code, out] = bt::RunCommand(argv, scratch / "systemctl-show.log");
  std::map<std::string, std::string> props;
  if (code != 0) {
    if (error != nullptr)
      *error = "systemctl show " + unit + " exited " + std::to_string(code) + ": " + out;
    return props;
  }
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);) {
    size_t eq = line.find('=');
    if (eq != std::string::npos) props[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return props;
}

// The units systemd has loaded whose names match `pattern` ("berth-*.scope"), any state.
inline std::vector<std::string> LoadedUnits(const std::string& pattern, const fs::path& scratch) {
  auto [code, out] = bt::RunCommand(
      {kSystemctl, "list-units", "--all", "--no-legend", "--plain", "--full", pattern},
      scratch / "systemctl-list.log");
  std::vector<std::string> units;
  std::istringstream lines(code == 0 ? out : "");
  for (std::string line; std::getline(lines, line);) {
    std::istringstream words(line);
    std::string name;
    if (words >> name) units.push_back(name);
  }
  return units;
}

// /proc/<pid>/cgroup: "<controllers>" (the second field: "memory", "cpu,cpuacct",
// "name=systemd", "" for cgroup2) -> path.
inline std::map<std::string, std::string> ProcCgroups(pid_t pid) {
  std::map<std::string, std::string> out;
  std::istringstream lines(bt::ReadFile("/proc/" + std::to_string(pid) + "/cgroup"));
  for (std::string line; std::getline(lines, line);) {
    size_t a = line.find(':');
    size_t b = a == std::string::npos ? a : line.find(':', a + 1);
    if (b == std::string::npos) continue;
    out[line.substr(a + 1, b - a - 1)] = line.substr(b + 1);
  }
  return out;
}

// The hierarchies (as bt::CgroupHierarchies) where directory `rel` ("/kubepods.slice/...")
// exists, as "<hierarchy name>:<rel>".
inline std::vector<std::string> ExistingCgroupDirs(const std::string& rel) {
  std::vector<std::string> out;
  for (const fs::path& h : bt::CgroupHierarchies()) {
    std::error_code ec;
    if (fs::is_directory(h.string() + rel, ec)) out.push_back(h.filename().string() + ":" + rel);
  }
  return out;
}

// What the kubelet does once a pod is gone, with the systemd driver on cgroup v1: it stops
// the pod's slice (systemd removes the slice's cgroup in the hierarchies it manages and ends
// what still runs there) and removes the slice's directory in the other hierarchies (cpuset,
// freezer, ...: runc made them for the scopes). rmdir(2) only: a directory left below the
// slice's (a scope's) makes that fail. The hierarchies where the slice's directory is still
// there afterwards, as ExistingCgroupDirs.
inline std::vector<std::string> RemovePodSlice(const std::string& slice, const fs::path& scratch) {
  bt::RunCommand({kSystemctl, "stop", slice}, scratch / "systemctl-stop.log");
  absl::StatusOr<std::string> rel = SliceCgroupPath(slice);
  if (!rel.ok() || rel->empty()) return {};
  for (const fs::path& h : bt::CgroupHierarchies()) {
    const std::string dir = h.string() + *rel;
    for (int i = 0; i < 50 && ::rmdir(dir.c_str()) != 0 && errno == EBUSY; ++i) {
      std::this_thread::sleep_for(milliseconds(20));
    }
  }
  return ExistingCgroupDirs(*rel);
}

// The first line of a file, "" when unreadable.
inline std::string FirstLine(const std::string& path) {
  std::string text = bt::ReadFile(path);
  return text.substr(0, text.find('\n'));
}

// ---- the harness ---------------------------------------------------------------------------

class SystemdCriHarness {
 public:
  // `root` (created here) holds everything of this berthd; `driver` is io.berth.cri's
  // cgroup_driver ("systemd", or "cgroupfs" to measure against it in the same namespaces).
  SystemdCriHarness(bt::PodImages images, fs::path root, std::string driver = "systemd")
      : images_(std::move(images)), root_(std::move(root)), driver_(std::move(driver)) {}
  ~SystemdCriHarness() { Cleanup(); }
  SystemdCriHarness(const SystemdCriHarness&) = delete;
  SystemdCriHarness& operator=(const SystemdCriHarness&) = delete;

  const fs::path& root() const { return root_; }
  bt::Daemon& daemon() { return *daemon_; }
  v1::RuntimeService::Stub& rt() { return *runtime_; }
  const std::string& busybox_ref() const { return busybox_ref_; }

  // Writes the configuration, starts berthd, waits for Version and pulls busybox.
  bool Start(std::string* error) {
    std::error_code ec;
    fs::create_directories(root_ / "d", ec);
    fs::create_directories(root_ / "net.d", ec);
    fs::create_directories(root_ / "logs", ec);
    if (ec) {
      *error = "cannot make " + root_.string() + ": " + ec.message();
      return false;
    }
    // CNI is configured (berthd wants a network) but host-network pods never call it.
    bt::WriteFile(root_ / "net.d" / "10-test.conflist", bt::BridgeConflist());
    daemon_ = std::make_unique<bt::Daemon>(root_ / "d");
    std::string level = "info";
    if (const char* l = std::getenv("BERTH_TEST_LOG_LEVEL"); l != nullptr) level = l;
    // BERTH_TEST_PLUGIN_DIR: plugins (and berth-shim beside the runc one) from elsewhere,
    // e.g. a directory of links to the build's with a patched plugin among them.
    std::string plugin_dirs;
    if (const char* d = std::getenv("BERTH_TEST_PLUGIN_DIR"); d != nullptr && *d != '\0') {
      plugin_dirs = std::string("plugin_dirs: [") + d + "]\n";
    }
    // clang-format off
    bt::WriteFile(daemon_->config(),
                  plugin_dirs + "log_level: " + level +
                      "\nplugins:\n"
                      "  io.berth.cri:\n"
                      "    cgroup_driver: " + driver_ + "\n"
                      "    sandbox_image: " + images_.pause + "\n"
                      "  io.berth.image-store: {}\n"
                      "  io.berth.snapshotter.overlay: {}\n"
                      "  io.berth.cni:\n"
                      "    conf_dir: " + (root_ / "net.d").string() + "\n"
                      "  io.berth.cgroup.fs: {}\n"
                      "  io.berth.cgroup.systemd: {}\n"
                      "  io.berth.runtime.runc: {}\n"
                      "runtimes:\n"
                      "  runc:\n"
                      "    plugin: io.berth.runtime.runc\n"
                      "    options:\n"
                      "      binary: runc\n"
                      "      root: " + (root_ / "runc").string() + "\n"
                      "default_runtime: runc\n");
    // clang-format on
    if (!daemon_->Start()) {
      *error = "berthd did not start:\n" + daemon_->Log();
      return false;
    }
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(64 << 20);
    channel_ = grpc::CreateCustomChannel("unix://" + daemon_->socket().string(),
                                         grpc::InsecureChannelCredentials(), args);
    runtime_ = v1::RuntimeService::NewStub(channel_);
    image_ = v1::ImageService::NewStub(channel_);
    const auto deadline = std::chrono::steady_clock::now() + seconds(15);
    for (;;) {
      v1::VersionResponse v;
      grpc::Status s = runtime_->Version(bt::CriContext(seconds(5)).get(), {}, &v);
      if (s.ok()) break;
      if (std::chrono::steady_clock::now() > deadline) {
        *error = "berthd does not answer Version: " + bt::Describe(s) + "\n" + daemon_->Log();
        return false;
      }
      std::this_thread::sleep_for(milliseconds(20));
    }
    v1::PullImageRequest pull;
    pull.mutable_image()->set_image(images_.busybox);
    v1::PullImageResponse pulled;
    grpc::Status s = image_->PullImage(bt::CriContext(seconds(60)).get(), pull, &pulled);
    if (!s.ok()) {
      *error = "PullImage " + images_.busybox + ": " + bt::Describe(s) + "\n" + daemon_->Log();
      return false;
    }
    busybox_ref_ = pulled.image_ref();
    return true;
  }

  // ---- requests as the kubelet builds them ----

  // A host-network pod in `cgroup_parent`; the slice is stopped at Cleanup when it is one.
  v1::PodSandboxConfig NewPod(const std::string& name, const std::string& cgroup_parent) {
    v1::PodSandboxConfig c;
    c.mutable_metadata()->set_name(name);
    c.mutable_metadata()->set_namespace_("berth-test");
    c.mutable_metadata()->set_uid(bt::RandomHex(8) + "-" + bt::RandomHex(4));
    c.set_log_directory((root_ / "logs" / (name + "_" + c.metadata().uid())).string());
    (*c.mutable_labels())["io.kubernetes.pod.name"] = name;
    c.mutable_linux()->set_cgroup_parent(cgroup_parent);
    auto* ns = c.mutable_linux()->mutable_security_context()->mutable_namespace_options();
    ns->set_network(v1::NODE);
    ns->set_pid(v1::CONTAINER);
    ns->set_ipc(v1::POD);
    const std::string slice = cgroup_parent.substr(cgroup_parent.rfind('/') + 1);
    if (slice.size() > 6 && slice.substr(slice.size() - 6) == ".slice") slices_.insert(slice);
    return c;
  }
  // A busybox container running `command`.
  v1::ContainerConfig NewContainer(const v1::PodSandboxConfig& pod, const std::string& name,
                                   std::vector<std::string> command) {
    v1::ContainerConfig c;
    c.mutable_metadata()->set_name(name);
    c.mutable_image()->set_image(images_.busybox);
    for (std::string& a : command) c.add_command(std::move(a));
    (*c.mutable_labels())["io.kubernetes.container.name"] = name;
    std::error_code ec;
    fs::create_directories(fs::path(pod.log_directory()) / name, ec);
    c.set_log_path(name + "/0.log");
    *c.mutable_linux()->mutable_security_context()->mutable_namespace_options() =
        pod.linux().security_context().namespace_options();
    return c;
  }

  // ---- calls ----

  grpc::Status RunPod(const v1::PodSandboxConfig& config, std::string* id) {
    v1::RunPodSandboxRequest req;
    *req.mutable_config() = config;
    v1::RunPodSandboxResponse resp;
    grpc::Status s = runtime_->RunPodSandbox(bt::CriContext(seconds(60)).get(), req, &resp);
    if (id != nullptr) *id = resp.pod_sandbox_id();
    return s;
  }
  grpc::Status StopPod(const std::string& id) {
    v1::StopPodSandboxRequest req;
    req.set_pod_sandbox_id(id);
    v1::StopPodSandboxResponse resp;
    return runtime_->StopPodSandbox(bt::CriContext(seconds(60)).get(), req, &resp);
  }
  grpc::Status RemovePod(const std::string& id) {
    v1::RemovePodSandboxRequest req;
    req.set_pod_sandbox_id(id);
    v1::RemovePodSandboxResponse resp;
    return runtime_->RemovePodSandbox(bt::CriContext(seconds(60)).get(), req, &resp);
  }
  grpc::Status PodStatus(const std::string& id, v1::PodSandboxStatusResponse* out) {
    v1::PodSandboxStatusRequest req;
    req.set_pod_sandbox_id(id);
    req.set_verbose(true);
    return runtime_->PodSandboxStatus(bt::CriContext().get(), req, out);
  }
  grpc::Status CreateContainer(const std::string& pod_id, const v1::PodSandboxConfig& pod,
                               const v1::ContainerConfig& config, std::string* id) {
    v1::CreateContainerRequest req;
    req.set_pod_sandbox_id(pod_id);
    *req.mutable_config() = config;
    *req.mutable_sandbox_config() = pod;
    v1::CreateContainerResponse resp;
    grpc::Status s = runtime_->CreateContainer(bt::CriContext(seconds(60)).get(), req, &resp);
    if (id != nullptr) *id = resp.container_id();
    return s;
  }
  grpc::Status StartContainer(const std::string& id) {
    v1::StartContainerRequest req;
    req.set_container_id(id);
    v1::StartContainerResponse resp;
    return runtime_->StartContainer(bt::CriContext(seconds(60)).get(), req, &resp);
  }
  // Create + Start.
  grpc::Status RunContainer(const std::string& pod_id, const v1::PodSandboxConfig& pod,
                            const v1::ContainerConfig& config, std::string* id) {
    grpc::Status s = CreateContainer(pod_id, pod, config, id);
    return s.ok() ? StartContainer(*id) : s;
  }
  grpc::Status StopContainer(const std::string& id, int64_t timeout = 0) {
    v1::StopContainerRequest req;
    req.set_container_id(id);
    req.set_timeout(timeout);
    v1::StopContainerResponse resp;
    return runtime_->StopContainer(bt::CriContext(seconds(timeout + 60)).get(), req, &resp);
  }
  grpc::Status RemoveContainer(const std::string& id) {
    v1::RemoveContainerRequest req;
    req.set_container_id(id);
    v1::RemoveContainerResponse resp;
    return runtime_->RemoveContainer(bt::CriContext(seconds(60)).get(), req, &resp);
  }
  grpc::Status ContainerStatus(const std::string& id, v1::ContainerStatusResponse* out) {
    v1::ContainerStatusRequest req;
    req.set_container_id(id);
    req.set_verbose(true);
    return runtime_->ContainerStatus(bt::CriContext().get(), req, out);
  }
  grpc::Status UpdateResources(const std::string& id, const v1::LinuxContainerResources& r) {
    v1::UpdateContainerResourcesRequest req;
    req.set_container_id(id);
    *req.mutable_linux() = r;
    v1::UpdateContainerResourcesResponse resp;
    return runtime_->UpdateContainerResources(bt::CriContext(seconds(60)).get(), req, &resp);
  }
  grpc::Status ContainerStats(const std::string& id, v1::ContainerStats* out) {
    v1::ContainerStatsRequest req;
    req.set_container_id(id);
    v1::ContainerStatsResponse resp;
    grpc::Status s = runtime_->ContainerStats(bt::CriContext().get(), req, &resp);
    *out = resp.stats();
    return s;
  }
  grpc::Status PodStats(const std::string& id, v1::PodSandboxStats* out) {
    v1::PodSandboxStatsRequest req;
    req.set_pod_sandbox_id(id);
    v1::PodSandboxStatsResponse resp;
    grpc::Status s = runtime_->PodSandboxStats(bt::CriContext().get(), req, &resp);
    *out = resp.stats();
    return s;
  }
  grpc::Status RuntimeConfig(v1::RuntimeConfigResponse* out) {
    return runtime_->RuntimeConfig(bt::CriContext().get(), {}, out);
  }

  // The pid of a container or pod sandbox (the "pid" of the verbose info), 0 when unknown.
  pid_t ContainerPid(const std::string& id) {
    v1::ContainerStatusResponse st;
    if (!ContainerStatus(id, &st).ok()) return 0;
    return PidOf(st.info());
  }
  pid_t SandboxPid(const std::string& id) {
    v1::PodSandboxStatusResponse st;
    if (!PodStatus(id, &st).ok()) return 0;
    return PidOf(st.info());
  }

  // The last `lines` lines of berthd's log.
  std::string LogTail(size_t lines = 120) const {
    if (!daemon_) return "";
    std::string log = daemon_->Log();
    size_t pos = log.size();
    for (size_t n = 0; n <= lines && pos != std::string::npos && pos > 0; ++n) {
      pos = log.rfind('\n', pos - 1);
    }
    return pos == std::string::npos ? log : log.substr(pos + 1);
  }

  // See the file comment. What had to be done by force, for the test's output; idempotent.
  std::string Cleanup() {
    if (cleaned_) return "";
    cleaned_ = true;
    std::string report;
    if (daemon_ && daemon_->pid() > 0 && runtime_) {
      auto note = [&](const std::string& what, const grpc::Status& s) {
        if (!s.ok()) report += "cleanup: " + what + ": " + bt::Describe(s) + "\n";
        return s.ok() || (s.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED &&
                          s.error_code() != grpc::StatusCode::UNAVAILABLE);
      };
      v1::ListContainersResponse containers;
      bool answering =
          note("ListContainers",
               runtime_->ListContainers(bt::CriContext(seconds(10)).get(), {}, &containers));
      for (const v1::Container& c : containers.containers()) {
        if (!answering) break;
        answering = note("StopContainer " + c.id(), StopContainer(c.id())) &&
                    note("RemoveContainer " + c.id(), RemoveContainer(c.id()));
      }
      v1::ListPodSandboxResponse pods;
      if (answering) {
        answering = note("ListPodSandbox",
                         runtime_->ListPodSandbox(bt::CriContext(seconds(10)).get(), {}, &pods));
      }
      for (const v1::PodSandbox& p : pods.items()) {
        if (!answering) break;
        answering = note("StopPodSandbox " + p.id(), StopPod(p.id())) &&
                    note("RemovePodSandbox " + p.id(), RemovePod(p.id()));
      }
    }
    runtime_.reset();
    image_.reset();
    channel_.reset();
    if (daemon_) daemon_->Stop(SIGTERM);
    for (int round = 0; round < 5; ++round) {
      std::vector<pid_t> pids = bt::ProcessesOf(root_, "");
      if (pids.empty()) break;
      for (pid_t pid : pids) {
        report +=
            "cleanup: killed " + std::to_string(pid) + " " + bt::ProcText(pid, "cmdline") + "\n";
        ::kill(pid, SIGKILL);
      }
      std::this_thread::sleep_for(milliseconds(200));
    }
    for (int round = 0; round < 5; ++round) {
      std::vector<bt::MountEntry> mounts = bt::MountsUnder(root_);
      if (mounts.empty()) break;
      std::reverse(mounts.begin(), mounts.end());
      for (const bt::MountEntry& m : mounts) {
        if (::umount2(m.mount_point.c_str(), MNT_DETACH) == 0) {
          report += "cleanup: unmounted " + m.mount_point + "\n";
        }
      }
    }
    // The kubelet's part: the pod slices go once their pods are gone (systemd stops what is
    // still in them, so this also ends containers berthd lost track of).
    for (const std::string& slice : slices_) {
      for (const std::string& left : RemovePodSlice(slice, root_)) {
        report += "cleanup: cgroup left: " + left + "\n";
      }
    }
    daemon_.reset();
    if (bt::MountsUnder(root_).empty()) {
      std::error_code ec;
      fs::remove_all(root_, ec);
      if (ec) report += "cleanup: removing " + root_.string() + ": " + ec.message() + "\n";
    } else {
      report += "cleanup: " + root_.string() + " kept: still mounted\n";
    }
    return report;
  }

  const std::set<std::string>& slices() const { return slices_; }

 private:
  static pid_t PidOf(const google::protobuf::Map<std::string, std::string>& info) {
    auto it = info.find("info");
    if (it == info.end()) return 0;
    nlohmann::json j = nlohmann::json::parse(it->second, nullptr, false);
    if (!j.is_object() || !j.contains("pid") || !j["pid"].is_number_integer()) return 0;
    return j["pid"].get<pid_t>();
  }

  bt::PodImages images_;
  fs::path root_;
  std::string driver_;
  std::unique_ptr<bt::Daemon> daemon_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::RuntimeService::Stub> runtime_;
  std::unique_ptr<v1::ImageService::Stub> image_;
  std::string busybox_ref_;
  std::set<std::string> slices_;
  bool cleaned_ = false;
};

}  // namespace berth::cgroup_systemd::testing
