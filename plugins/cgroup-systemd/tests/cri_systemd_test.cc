// SPDX-License-Identifier: Apache-2.0
// The systemd cgroup driver end to end through the CRI (root): a real berthd with
// `cgroup_driver: systemd`, runc --systemd-cgroup and berth-shim, inside a systemd booted as
// PID 1 of private namespaces (booted_systemd.h), driven through its CRI socket as the
// kubelet drives it, with kubepods slices as cgroup_parent.
//
// CriSystemdTest (on the host) boots systemd and a docker-registry with the test images once
// per suite, then runs this binary again inside systemd's PID, mount and cgroup namespaces
// (RunInside; the network namespace stays the host's, so the registry on the host's loopback
// is reachable) with --gtest_filter=InsideCriSystemdTest.<the same name>. The inner test
// starts berthd (cri_systemd_harness.h), checks what systemd and the kernel show there, and
// cleans up; the outer one checks its result and that, seen from the host, no cgroup of the
// test's slices nor any berth scope is left. Killing systemd at the end of the suite ends
// whatever might still run inside, and the namespaces' mounts go with them.
#include <signal.h>
#include <sys/types.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "plugins/cgroup-systemd/tests/booted_systemd.h"
#include "plugins/cgroup-systemd/tests/cri_systemd_harness.h"
#include "plugins/cgroup-systemd/unit_names.h"

namespace berth::cgroup_systemd {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using testing::BootedSystemd;
using testing::ExistingCgroupDirs;
using testing::FirstLine;
using ::testing::HasSubstr;
using testing::LoadedUnits;
using testing::ProcCgroups;
using testing::ShowUnit;
using testing::SystemdCriHarness;

#define ASSERT_GRPC_OK(expr)                                           \
  do {                                                                 \
    grpc::Status s_ok_ = (expr);                                       \
    ASSERT_TRUE(s_ok_.ok()) << #expr << " -> " << bt::Describe(s_ok_); \
  } while (0)
#define EXPECT_GRPC_OK(expr)                                           \
  do {                                                                 \
    grpc::Status s_ok_ = (expr);                                       \
    EXPECT_TRUE(s_ok_.ok()) << #expr << " -> " << bt::Describe(s_ok_); \
  } while (0)

namespace bt = ::berth::testing;
namespace v1 = ::runtime::v1;

// Waits until `pred` holds, for at most `timeout`.
template <typename Pred>
bool Eventually(Pred pred, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return true;
}

// ---- on the host -------------------------------------------------------------------------------

constexpr char kDirPrefix[] = "/tmp/berth-sdcri-";

// Directories under `dir` (recursively) whose name contains `tag` or is a berth scope.
void CollectLeftovers(const fs::path& dir, const std::string& tag, std::vector<std::string>* out) {
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
    std::error_code dec;
    if (!e.is_directory(dec) || e.is_symlink(dec)) continue;
    const std::string name = e.path().filename().string();
    if (name.find(tag) != std::string::npos || (name.rfind("berth-", 0) == 0 && name.size() > 6 &&
                                                name.substr(name.size() - 6) == ".scope")) {
      out->push_back(e.path().string());
    }
    CollectLeftovers(e.path(), tag, out);
  }
}

class CriSystemdTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (::geteuid() != 0) {
      skip_ = "needs root to boot systemd in new namespaces and to run berthd";
      return;
    }
    if (::access("/usr/sbin/runc", X_OK) != 0) {
      skip_ = "runc is not installed";
      return;
    }
    absl::StatusOr<std::unique_ptr<BootedSystemd>> sd = BootedSystemd::Boot();
    if (absl::IsFailedPrecondition(sd.status())) {
      skip_ = std::string(sd.status().message());
      return;
    }
    if (!sd.ok()) {
      error_ = "systemd did not boot: " + sd.status().ToString();
      return;
    }
    systemd_ = sd->release();
    registry_ = new bt::ImageRegistry;
    if (!registry_->Start(&error_)) return;
    // Short: berthd's sockets live below it. The pid in its name lets a later run remove it
    // when this process is killed before its TearDownTestSuite.
    RemoveStaleDirs();
    std::string tmpl = absl::StrCat(kDirPrefix, ::getpid(), "-XXXXXX");
    if (::mkdtemp(tmpl.data()) == nullptr) {
      error_ = "mkdtemp failed";
      return;
    }
    dir_ = tmpl;
  }
  static void TearDownTestSuite() {
    // SIGKILL to systemd ends every process of its namespaces, and their mounts with them;
    // only then is the directory berthd used removed.
    delete systemd_;
    systemd_ = nullptr;
    delete registry_;
    registry_ = nullptr;
    std::error_code ec;
    if (!dir_.empty()) fs::remove_all(dir_, ec);
    dir_.clear();
  }

  // The directories of test processes that were killed (their pid no longer runs); their
  // mounts were in their systemd's mount namespace, gone with it.
  static void RemoveStaleDirs() {
    std::error_code ec;
    const std::string prefix = fs::path(kDirPrefix).filename().string();
    for (const fs::directory_entry& e : fs::directory_iterator("/tmp", ec)) {
      const std::string name = e.path().filename().string();
      if (name.rfind(prefix, 0) != 0) continue;
      pid_t owner = std::atoi(name.c_str() + prefix.size());
      if (owner <= 0 || ::kill(owner, 0) == 0 || errno != ESRCH) continue;
      if (!bt::MountsUnder(e.path()).empty()) continue;
      std::error_code rec;
      fs::remove_all(e.path(), rec);
    }
  }

  void SetUp() override {
    if (!skip_.empty()) GTEST_SKIP() << skip_;
    ASSERT_TRUE(error_.empty()) << error_;
    ASSERT_NE(systemd_, nullptr);
  }
  void TearDown() override {
    if (HasFailure() && systemd_ != nullptr) {
      std::string log = systemd_->Log();
      if (log.size() > 4000) log = "..." + log.substr(log.size() - 4000);
      std::cerr << "systemd's log (last lines):\n" << log << "\n";
    }
  }

  // Runs InsideCriSystemdTest.<name> inside the booted systemd, then looks from the host for
  // what the test might have left in the cgroup tree.
  void RunInside(const std::string& name) {
    std::error_code ec;
    const std::string self = fs::read_symlink("/proc/self/exe", ec).string();
    ASSERT_FALSE(ec) << ec.message();
    const std::string tag = bt::RandomHex(8);
    ::setenv(testing::kInsideRootEnv, dir_.c_str(), 1);
    ::setenv(testing::kInsidePauseEnv, registry_->images().pause.c_str(), 1);
    ::setenv(testing::kInsideBusyboxEnv, registry_->images().busybox.c_str(), 1);
    ::setenv(testing::kInsideTagEnv, tag.c_str(), 1);
    absl::StatusOr<testing::CommandResult> r = systemd_->RunInside(
        {self, "--gtest_filter=InsideCriSystemdTest." + name, "--gtest_color=no"}, "/",
        std::chrono::seconds(120));
    for (const char* env : {testing::kInsideRootEnv, testing::kInsidePauseEnv,
                            testing::kInsideBusyboxEnv, testing::kInsideTagEnv}) {
      ::unsetenv(env);
    }
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_TRUE(r->exit_code == 0 && r->output.find("[  PASSED  ] 1 test.") != std::string::npos)
        << "inside the booted systemd (exit code " << r->exit_code << "; -1: killed after "
        << "120 s):\n"
        << r->output;
    // What the inner test measured or observed, for the log.
    std::istringstream lines(r->output);
    for (std::string line; std::getline(lines, line);) {
      if (line.rfind("note: ", 0) == 0) std::cout << line << "\n";
    }
    std::vector<std::string> left;
    for (const fs::directory_entry& h : fs::directory_iterator("/sys/fs/cgroup", ec)) {
      std::error_code dec;
      if (!h.is_directory(dec) || h.is_symlink(dec)) continue;
      CollectLeftovers(h.path() / systemd_->subtree(), tag, &left);
    }
    EXPECT_TRUE(left.empty()) << "left in the host's cgroup tree:\n  "
                              << absl::StrJoin(left, "\n  ");
  }

  static inline BootedSystemd* systemd_ = nullptr;
  static inline bt::ImageRegistry* registry_ = nullptr;
  static inline std::string skip_;
  static inline std::string error_;
  static inline std::string dir_;
};

TEST_F(CriSystemdTest, ScopesInKubepodsSlices) { RunInside("ScopesInKubepodsSlices"); }
TEST_F(CriSystemdTest, ResourcesOnTheUnitsAndInTheCgroupFiles) {
  RunInside("ResourcesOnTheUnitsAndInTheCgroupFiles");
}
TEST_F(CriSystemdTest, CgroupfsParentFailsWithTheAlignmentError) {
  RunInside("CgroupfsParentFailsWithTheAlignmentError");
}

// ---- inside the booted systemd -----------------------------------------------------------------

class InsideCriSystemdTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* root = std::getenv(testing::kInsideRootEnv);
    if (root == nullptr) {
      GTEST_SKIP() << "runs inside a booted systemd's namespaces only, started there by the "
                      "CriSystemdTest of the same name";
    }
    for (const char* env :
         {testing::kInsideTagEnv, testing::kInsidePauseEnv, testing::kInsideBusyboxEnv}) {
      ASSERT_NE(std::getenv(env), nullptr) << env << " is not set";
    }
    tag_ = std::getenv(testing::kInsideTagEnv);
    bt::PodImages images;
    images.pause = std::getenv(testing::kInsidePauseEnv);
    images.busybox = std::getenv(testing::kInsideBusyboxEnv);
    ASSERT_TRUE(fs::is_directory("/run/systemd/system")) << "not inside a booted systemd";
    h_ = std::make_unique<SystemdCriHarness>(images, fs::path(root) / tag_);
    std::string error;
    ASSERT_TRUE(h_->Start(&error)) << error;
    // An earlier test of the same systemd that failed may have left some.
    scopes_before_ = LoadedUnits("berth-*.scope", scratch());
  }
  void TearDown() override {
    if (!h_) return;
    if (HasFailure()) std::cerr << "---- berthd log (last lines) ----\n" << h_->LogTail() << "\n";
    std::string forced = h_->Cleanup();
    if (!forced.empty()) std::cerr << forced;
    h_.reset();
  }

  // "kubepods-<qos>-pod<tag>_<n>.slice" ("kubepods-pod..." for an empty qos: Guaranteed).
  std::string PodSlice(const std::string& qos, const std::string& n) const {
    return "kubepods-" + (qos.empty() ? "" : qos + "-") + "pod" + tag_ + "_" + n + ".slice";
  }
  static std::string Unit(const std::string& id) { return "berth-" + id + ".scope"; }
  static std::string ScopeDir(const std::string& slice, const std::string& id) {
    return SliceCgroupPath(slice).value_or("?") + "/" + Unit(id);
  }
  fs::path scratch() const { return h_->root(); }

  // The scope of sandbox or container `id` in `slice`: loaded, active, delegated, in that
  // slice, with its cgroup where the driver computes it; process `pid` in it in every
  // hierarchy. A pod's pause may be in the slice's devices cgroup instead (docs/cgroup-
  // drivers.md §7: runc sets a scope's device rules only once it runs, and when that scope
  // is the first of the slice to need the devices controller systemd moves every process
  // of the slice into the slice's devices cgroup).
  static pid_t ParentPid(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    for (std::string line; std::getline(in, line);) {
      if (line.rfind("PPid:", 0) == 0) return static_cast<pid_t>(std::stol(line.substr(5)));
    }
    return 0;
  }

  void ExpectInScope(const std::string& slice, const std::string& id, pid_t pid,
                     bool pause = false) {
    SCOPED_TRACE("scope of " + id + " in " + slice);
    const std::string dir = ScopeDir(slice, id);
    std::string error;
    std::map<std::string, std::string> props =
        ShowUnit(Unit(id), {"LoadState", "ActiveState", "Delegate", "Slice", "ControlGroup"},
                 scratch(), &error);
    ASSERT_FALSE(props.empty()) << error;
    EXPECT_EQ(props["LoadState"], "loaded");
    EXPECT_EQ(props["ActiveState"], "active");
    EXPECT_EQ(props["Delegate"], "yes");
    EXPECT_EQ(props["Slice"], slice);
    EXPECT_EQ(props["ControlGroup"], dir);
    ASSERT_GT(pid, 0);
    std::map<std::string, std::string> cgroups = ProcCgroups(pid);
    ASSERT_FALSE(cgroups.empty()) << "no /proc/" << pid << "/cgroup";
    for (const auto& [controllers, path] : cgroups) {
      if (pause && controllers == "devices" && path == SliceCgroupPath(slice).value_or("?")) {
        std::cout << "note: the pause of " << slice << " is in the slice's devices cgroup"
                  << std::endl;
        continue;
      }
      EXPECT_EQ(path, dir) << "pid " << pid << " in hierarchy \"" << controllers << "\"";
    }
    EXPECT_THAT(ExistingCgroupDirs(dir), ::testing::Contains(HasSubstr("memory:")));
  }

  // Nothing of `ids` is left: no unit, no cgroup directory in any hierarchy; and no berth
  // scope that was not there before the test.
  void ExpectNothingLeft(const std::string& slice, const std::vector<std::string>& ids) {
    for (const std::string& id : ids) {
      std::map<std::string, std::string> props = ShowUnit(Unit(id), {"LoadState"}, scratch());
      EXPECT_EQ(props["LoadState"], "not-found") << Unit(id) << " is still loaded";
      EXPECT_THAT(ExistingCgroupDirs(ScopeDir(slice, id)), ::testing::IsEmpty());
    }
    EXPECT_EQ(LoadedUnits("berth-*.scope", scratch()), scopes_before_);
  }

  std::string tag_;
  std::unique_ptr<SystemdCriHarness> h_;
  std::vector<std::string> scopes_before_;
};

// Pods in the slices of the three QoS classes (one given as its expanded path), each with a
// container: the sandbox's and the container's scopes, their processes' cgroups; after
// Stop/Remove no unit and no cgroup is left, and once the kubelet's part is done (the pod
// slices stopped) not even the slices' directories.
TEST_F(InsideCriSystemdTest, ScopesInKubepodsSlices) {
  v1::RuntimeConfigResponse rc;
  ASSERT_GRPC_OK(h_->RuntimeConfig(&rc));
  EXPECT_EQ(rc.linux().cgroup_driver(), v1::CgroupDriver::SYSTEMD);

  struct Pod {
    std::string cgroup_parent;
    std::string slice;
    std::string id;
    std::string container;
  };
  std::vector<Pod> pods = {
      {PodSlice("besteffort", "1"), PodSlice("besteffort", "1"), "", ""},
      {"/kubepods.slice/kubepods-burstable.slice/" + PodSlice("burstable", "2"),
       PodSlice("burstable", "2"), "", ""},
      {PodSlice("", "3"), PodSlice("", "3"), "", ""},
  };
  for (size_t i = 0; i < pods.size(); ++i) {
    Pod& p = pods[i];
    v1::PodSandboxConfig config = h_->NewPod("pod" + std::to_string(i), p.cgroup_parent);
    ASSERT_GRPC_OK(h_->RunPod(config, &p.id));
    ASSERT_GRPC_OK(h_->RunContainer(
        p.id, config, h_->NewContainer(config, "sleep", {"sleep", "1000"}), &p.container));
  }
  EXPECT_EQ(SliceCgroupPath(pods[1].slice).value_or(""),
            "/kubepods.slice/kubepods-burstable.slice/" + pods[1].slice);
  for (const Pod& p : pods) {
    ExpectInScope(p.slice, p.id, h_->SandboxPid(p.id), /*pause=*/true);
    ExpectInScope(p.slice, p.container, h_->ContainerPid(p.container));
    // The pod's shim (the pause's parent) in a scope of its own in the pod's slice.
    ExpectInScope(p.slice, "shim-" + p.id, ParentPid(h_->SandboxPid(p.id)));
  }

  for (const Pod& p : pods) {
    EXPECT_GRPC_OK(h_->StopContainer(p.container));
    EXPECT_GRPC_OK(h_->RemoveContainer(p.container));
    EXPECT_GRPC_OK(h_->StopPod(p.id));
    EXPECT_GRPC_OK(h_->RemovePod(p.id));
  }
  for (const Pod& p : pods) ExpectNothingLeft(p.slice, {p.id, p.container, "shim-" + p.id});

  // The kubelet's part: the pod slices go, which works only when no directory of berth's is
  // left below them in any hierarchy.
  for (const Pod& p : pods) {
    EXPECT_THAT(testing::RemovePodSlice(p.slice, scratch()), ::testing::IsEmpty())
        << "left after removing " << p.slice << " as the kubelet does";
  }
}

// Resources from the CRI become properties of the container's scope unit and, through
// systemd, values in the cgroup files; statistics come from the scope's cgroup;
// UpdateContainerResources changes both, and a daemon-reload (systemd re-applies its units'
// properties) keeps the new values.
TEST_F(InsideCriSystemdTest, ResourcesOnTheUnitsAndInTheCgroupFiles) {
  const std::string slice = PodSlice("burstable", "r");
  v1::PodSandboxConfig pod = h_->NewPod("res", slice);
  std::string pod_id;
  ASSERT_GRPC_OK(h_->RunPod(pod, &pod_id));
  v1::ContainerConfig config = h_->NewContainer(
      pod, "burn",
      {"sh", "-c", "i=0; while [ $i -lt 30000 ]; do i=$((i+1)); done; exec sleep 1000"});
  v1::LinuxContainerResources* r = config.mutable_linux()->mutable_resources();
  r->set_cpu_shares(512);
  r->set_cpu_period(100000);
  r->set_cpu_quota(50000);
  r->set_memory_limit_in_bytes(64 << 20);
  std::string id;
  ASSERT_GRPC_OK(h_->RunContainer(pod_id, pod, config, &id));
  const std::string dir = ScopeDir(slice, id);
  const std::string unit = Unit(id);
  const std::vector<std::string> properties = {
      "Delegate", "CPUShares",     "CPUQuotaPerSecUSec", "MemoryLimit",
      "TasksMax", "CPUAccounting", "MemoryAccounting",   "TasksAccounting"};
  auto file = [&](const std::string& controller, const std::string& name) {
    return FirstLine("/sys/fs/cgroup/" + controller + dir + "/" + name);
  };

  std::map<std::string, std::string> props = ShowUnit(unit, properties, scratch());
  EXPECT_EQ(props["Delegate"], "yes");
  EXPECT_EQ(props["CPUShares"], "512");
  EXPECT_EQ(props["CPUQuotaPerSecUSec"], "500ms");
  EXPECT_EQ(props["MemoryLimit"], std::to_string(64 << 20));
  EXPECT_EQ(file("cpu", "cpu.shares"), "512");
  EXPECT_EQ(file("cpu", "cpu.cfs_period_us"), "100000");
  EXPECT_EQ(file("cpu", "cpu.cfs_quota_us"), "50000");
  EXPECT_EQ(file("memory", "memory.limit_in_bytes"), std::to_string(64 << 20));
  // The CRI has no pids limit per container: the scope has systemd's default TasksMax, and
  // pids.max says the same.
  const std::string pids_max = file("pids", "pids.max");
  EXPECT_EQ(props["TasksMax"] == "infinity" ? "max" : props["TasksMax"], pids_max);
  std::cout << "note: container scope " << unit << ": TasksMax=" << props["TasksMax"]
            << " pids.max=" << pids_max << " CPUAccounting=" << props["CPUAccounting"]
            << " MemoryAccounting=" << props["MemoryAccounting"]
            << " TasksAccounting=" << props["TasksAccounting"] << std::endl;

  // Statistics from the scope's cgroup, once the container has burnt some CPU and memory.
  v1::ContainerStats stats;
  EXPECT_TRUE(Eventually([&] {
    return h_->ContainerStats(id, &stats).ok() &&
           stats.cpu().usage_core_nano_seconds().value() >= 10'000'000;
  })) << "cpu "
      << stats.cpu().usage_core_nano_seconds().value() << " ns";
  EXPECT_GT(stats.memory().working_set_bytes().value(), 0u);
  EXPECT_GT(stats.memory().usage_bytes().value(), 0u);
  EXPECT_EQ(stats.attributes().id(), id);
  std::cout << "note: ContainerStats: cpu " << stats.cpu().usage_core_nano_seconds().value()
            << " ns, working set " << stats.memory().working_set_bytes().value() << " B"
            << std::endl;
  v1::PodSandboxStats pod_stats;
  EXPECT_GRPC_OK(h_->PodStats(pod_id, &pod_stats));
  EXPECT_GE(pod_stats.linux().cpu().usage_core_nano_seconds().value(),
            stats.cpu().usage_core_nano_seconds().value())
      << "the figures of " << slice << " hold the container's";
  EXPECT_GT(pod_stats.linux().memory().working_set_bytes().value(), 0u);
  EXPECT_GE(pod_stats.linux().process().process_count().value(), 2u);
  ASSERT_EQ(pod_stats.linux().containers_size(), 1);
  EXPECT_GT(pod_stats.linux().containers(0).cpu().usage_core_nano_seconds().value(), 0u);

  // UpdateContainerResources: runc update --systemd-cgroup sets the unit's properties and
  // the files.
  v1::LinuxContainerResources updated;
  updated.set_cpu_shares(1024);
  updated.set_cpu_period(100000);
  updated.set_cpu_quota(25000);
  updated.set_memory_limit_in_bytes(128 << 20);
  ASSERT_GRPC_OK(h_->UpdateResources(id, updated));
  props = ShowUnit(unit, properties, scratch());
  EXPECT_EQ(props["CPUShares"], "1024");
  EXPECT_EQ(props["CPUQuotaPerSecUSec"], "250ms");
  EXPECT_EQ(props["MemoryLimit"], std::to_string(128 << 20));
  EXPECT_EQ(props["Delegate"], "yes");
  EXPECT_EQ(file("cpu", "cpu.shares"), "1024");
  EXPECT_EQ(file("cpu", "cpu.cfs_quota_us"), "25000");
  EXPECT_EQ(file("memory", "memory.limit_in_bytes"), std::to_string(128 << 20));
  // systemd writes its units' properties again on daemon-reload: had runc changed the files
  // only, the old limits would come back here.
  auto [code, out] = bt::RunCommand({testing::kSystemctl, "daemon-reload"}, scratch() / "r.log");
  ASSERT_EQ(code, 0) << out;
  EXPECT_EQ(file("cpu", "cpu.shares"), "1024");
  EXPECT_EQ(file("cpu", "cpu.cfs_quota_us"), "25000");
  EXPECT_EQ(file("memory", "memory.limit_in_bytes"), std::to_string(128 << 20));
  EXPECT_EQ(ShowUnit(unit, {"ActiveState"}, scratch())["ActiveState"], "active");

  EXPECT_GRPC_OK(h_->StopContainer(id));
  EXPECT_GRPC_OK(h_->RemoveContainer(id));
  EXPECT_GRPC_OK(h_->StopPod(pod_id));
  EXPECT_GRPC_OK(h_->RemovePod(pod_id));
  ExpectNothingLeft(slice, {pod_id, id});
  EXPECT_THAT(testing::RemovePodSlice(slice, scratch()), ::testing::IsEmpty());
}

// A kubelet still on the cgroupfs driver sends a cgroupfs path: RunPodSandbox fails with the
// alignment error and leaves nothing behind; a malformed slice name is refused, named.
TEST_F(InsideCriSystemdTest, CgroupfsParentFailsWithTheAlignmentError) {
  v1::RuntimeConfigResponse rc;
  ASSERT_GRPC_OK(h_->RuntimeConfig(&rc));
  EXPECT_EQ(rc.linux().cgroup_driver(), v1::CgroupDriver::SYSTEMD);

  std::string id;
  grpc::Status s = h_->RunPod(h_->NewPod("cgroupfs", "/kubepods/pod123"), &id);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << bt::Describe(s);
  EXPECT_THAT(s.error_message(),
              AllOf(HasSubstr("\"/kubepods/pod123\" is a cgroupfs path"),
                    HasSubstr("the kubelet and berth disagree on the cgroup driver"),
                    HasSubstr("berth's is systemd"), HasSubstr("cgroupDriver: systemd"),
                    HasSubstr("cgroup_driver: cgroupfs")));
  const std::string bad = "kubepods--pod" + tag_ + ".slice";
  s = h_->RunPod(h_->NewPod("malformed", bad), &id);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << bt::Describe(s);
  EXPECT_THAT(s.error_message(), HasSubstr(bad));

  v1::ListPodSandboxResponse pods;
  EXPECT_GRPC_OK(h_->rt().ListPodSandbox(bt::CriContext().get(), {}, &pods));
  EXPECT_EQ(pods.items_size(), 0);
  EXPECT_EQ(LoadedUnits("berth-*.scope", scratch()), scopes_before_);
  std::vector<pid_t> running = bt::ProcessesOf(h_->root(), "");
  std::erase(running, h_->daemon().pid());
  EXPECT_THAT(running, ::testing::IsEmpty()) << "processes of the failed pods still run";
}

}  // namespace
}  // namespace berth::cgroup_systemd
