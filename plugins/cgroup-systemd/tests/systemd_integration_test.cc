// SPDX-License-Identifier: Apache-2.0
// The systemd cgroup driver against a real systemd booted as PID 1 of private namespaces
// (booted_systemd.h; root): readiness, StartScope and SetUnitResources on a process of the
// test, statistics and removal through the built plugin, and runc --systemd-cgroup end to
// end. Everything is made inside a cgroup subtree "berthtest<hex>" removed at the end.
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "plugins/cgroup-systemd/cgroup_systemd.h"
#include "plugins/cgroup-systemd/systemd_bus.h"
#include "plugins/cgroup-systemd/tests/booted_systemd.h"
#include "plugins/cgroup-systemd/tests/plugin_host.h"
#include "plugins/cgroup-systemd/transient_scope.h"
#include "tests/support/bundle.h"

namespace berth::cgroup_systemd {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using testing::BootedSystemd;
using testing::CallResult;
using ::testing::HasSubstr;
using testing::LoadedPlugin;
using testing::NsProcess;

constexpr char kSleep[] = "/bin/sleep";
// Set for the run of this binary inside the booted systemd's namespaces.
constexpr char kInsideEnv[] = "BERTH_INSIDE_BOOTED_SYSTEMD";

std::string RandomHex(int bytes) {
  std::random_device rd;
  std::string s;
  for (int i = 0; i < bytes; ++i) absl::StrAppend(&s, absl::Hex(rd() & 0xff, absl::kZeroPad2));
  return s;
}

std::string FirstLine(const std::string& path) {
  std::ifstream f(path);
  std::string line;
  std::getline(f, line);
  return line;
}

bool Alive(pid_t pid) {
  if (::kill(pid, 0) != 0) return false;
  // A zombie waiting for its parent counts as gone.
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  std::getline(f, stat);
  size_t paren = stat.rfind(')');
  return paren == std::string::npos || stat.size() < paren + 3 || stat[paren + 2] != 'Z';
}

// Waits until `pred` holds, for at most `timeout`.
template <typename Pred>
bool Eventually(Pred pred, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

class SystemdIntegrationTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (::geteuid() != 0) {
      skip_ = "needs root to boot systemd in new namespaces";
      return;
    }
    absl::StatusOr<std::unique_ptr<BootedSystemd>> sd = BootedSystemd::Boot();
    if (absl::IsFailedPrecondition(sd.status())) {
      skip_ = std::string(sd.status().message());
      return;
    }
    if (!sd.ok()) {
      boot_error_ = sd.status().ToString();
      return;
    }
    systemd_ = sd->release();
  }
  static void TearDownTestSuite() {
    delete systemd_;
    systemd_ = nullptr;
  }

  void SetUp() override {
    if (!skip_.empty()) GTEST_SKIP() << skip_;
    ASSERT_NE(systemd_, nullptr) << "systemd did not boot: " << boot_error_;
    pod_slice_ = "kubepods-besteffort-pod" + RandomHex(4) + "_" + RandomHex(2) + ".slice";
  }

  void TearDown() override {
    if (HasFailure() && systemd_ != nullptr) {
      std::string log = systemd_->Log();
      if (log.size() > 6000) log = "..." + log.substr(log.size() - 6000);
      std::cerr << "systemd's log (last lines):\n" << log << "\n";
    }
  }

  // The plugin configuration that reaches the booted systemd.
  std::string ConfigJson(const std::string& stop_timeout = "10s") const {
    return nlohmann::json({{"system_dir", systemd_->system_dir()},
                           {"bus_address", systemd_->bus_address()},
                           {"cgroup_root", systemd_->cgroup_root()},
                           {"stop_timeout", stop_timeout}})
        .dump();
  }
  DriverOptions Options() const {
    DriverOptions o;
    o.bus_address = systemd_->bus_address();
    o.cgroup_root = systemd_->cgroup_root();
    return o;
  }

  static BootedSystemd* systemd_;
  static std::string skip_;
  static std::string boot_error_;
  std::string pod_slice_;
};

BootedSystemd* SystemdIntegrationTest::systemd_ = nullptr;
std::string SystemdIntegrationTest::skip_;
std::string SystemdIntegrationTest::boot_error_;

TEST_F(SystemdIntegrationTest, ReadyWithTheBootedSystemd) {
  LoadedPlugin plugin;
  CallResult init = plugin.Init(ConfigJson());
  ASSERT_EQ(init.code, BERTH_OK) << init.err;
  CallResult status = plugin.Status();
  ASSERT_EQ(status.code, BERTH_OK) << status.err;
  EXPECT_EQ(status.out, R"({"ready":true,"reason":"","message":""})");

  absl::StatusOr<SystemdBus> bus = SystemdBus::Open(systemd_->bus_address());
  ASSERT_TRUE(bus.ok()) << bus.status();
  EXPECT_THAT(bus->version(), HasSubstr("25"));
  absl::StatusOr<std::string> virt =
      bus->StringProperty(kSystemdPath, kManagerInterface, "Virtualization");
  ASSERT_TRUE(virt.ok()) << virt.status();
  EXPECT_EQ(*virt, "container-other");
}

TEST_F(SystemdIntegrationTest, CgroupfsParentIsRefusedWithTheAlignmentMessage) {
  LoadedPlugin plugin;
  ASSERT_EQ(plugin.Init(ConfigJson()).code, BERTH_OK);
  CallResult path = plugin.CgroupPath("/kubepods/burstable/pod1", "abc");
  EXPECT_EQ(path.code, BERTH_INVALID_ARGUMENT);
  EXPECT_THAT(path.err,
              AllOf(HasSubstr("/kubepods/burstable/pod1"),
                    HasSubstr("the kubelet and berth disagree on the cgroup driver"),
                    HasSubstr("cgroupDriver: systemd"), HasSubstr("cgroup_driver: cgroupfs")));
}

// A process of the test moved into a scope of its own; its cgroup where the driver computes
// it; resources as systemd writes them to v1 files; statistics; removal, twice.
TEST_F(SystemdIntegrationTest, ScopeLifecycle) {
  LoadedPlugin plugin;
  ASSERT_EQ(plugin.Init(ConfigJson()).code, BERTH_OK);
  const std::string id = RandomHex(16);
  CallResult path = plugin.CgroupPath(pod_slice_, id);
  ASSERT_EQ(path.code, BERTH_OK) << path.err;
  EXPECT_EQ(path.out, pod_slice_ + ":berth:" + id);
  absl::StatusOr<ScopePath> scope = ParseCgroupsPath(path.out);
  ASSERT_TRUE(scope.ok()) << scope.status();
  const std::string unit = scope->Unit();

  // A shell that, once in its scope (v1 charges memory where it is allocated), fills 8 MB
  // and burns some CPU, then waits.
  const std::string go = systemd_->temp_dir() + "/go-" + id;
  ASSERT_EQ(::mkfifo(go.c_str(), 0600), 0);
  absl::StatusOr<NsProcess> sleeper = systemd_->Spawn(
      {"/bin/sh", "-c",
       "read _ < " + go +
           "; a=$(head -c 8000000 /dev/zero | tr '\\000' x); while :; do sleep 1; done"});
  ASSERT_TRUE(sleeper.ok()) << sleeper.status();
  absl::StatusOr<SystemdBus> bus = SystemdBus::Open(systemd_->bus_address());
  ASSERT_TRUE(bus.ok()) << bus.status();
  ScopeProperties props;
  props.description = "berth test scope";
  absl::Status started = StartScope(*bus, pod_slice_, unit, sleeper->ns_pid, props);
  ASSERT_TRUE(started.ok()) << started;

  absl::StatusOr<std::optional<std::string>> object = bus->FindUnit(unit);
  ASSERT_TRUE(object.ok() && object->has_value()) << object.status();
  absl::StatusOr<UnitState> state = bus->GetUnitState(**object, unit);
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(state->active_state, "active");
  absl::StatusOr<std::string> cgroup =
      bus->StringProperty(**object, kScopeInterface, "ControlGroup");
  ASSERT_TRUE(cgroup.ok()) << cgroup.status();
  EXPECT_EQ(*cgroup, scope->CgroupDir());
  EXPECT_EQ(scope->CgroupDir(),
            "/kubepods.slice/kubepods-besteffort.slice/" + pod_slice_ + "/" + unit);
  absl::StatusOr<std::string> delegate_slice =
      bus->StringProperty(**object, kScopeInterface, "Slice");
  EXPECT_EQ(delegate_slice.value_or(""), pod_slice_);

  // Where the driver looks (cgroup_root) is where the kernel has the process.
  absl::StatusOr<CgroupSystemd> driver = CgroupSystemd::Open(Options());
  ASSERT_TRUE(driver.ok()) << driver.status();
  for (const char* controller : {"memory", "cpu", "pids", ""}) {
    std::string dir = driver->ScopeDir(*scope, controller);
    ASSERT_FALSE(dir.empty()) << controller;
    EXPECT_TRUE(fs::is_directory(dir)) << dir;
  }
  // systemd assumes cpu and cpuacct share a hierarchy (it mounts them so on its hosts) and
  // makes the cgroup in the cpu one only; where they are apart, as on this VM, the scope has
  // no cpuacct cgroup and no CPU figures (an OCI runtime makes it; see the runc test).
  const bool cpuacct_apart = driver->layout().V1Dir("cpu") != driver->layout().V1Dir("cpuacct");
  EXPECT_EQ(fs::is_directory(driver->ScopeDir(*scope, "cpuacct")), !cpuacct_apart);
  const std::string host_memory = systemd_->HostCgroupDir("memory", scope->CgroupDir());
  EXPECT_TRUE(fs::is_directory(host_memory)) << host_memory;
  EXPECT_EQ(FirstLine(host_memory + "/cgroup.procs"), std::to_string(sleeper->host_pid));
  std::ofstream(go) << "go\n";
  std::ifstream proc_cgroup("/proc/" + std::to_string(sleeper->host_pid) + "/cgroup");
  std::string cgroups((std::istreambuf_iterator<char>(proc_cgroup)),
                      std::istreambuf_iterator<char>());
  EXPECT_THAT(cgroups, HasSubstr(":memory:/" + systemd_->subtree() + scope->CgroupDir()));

  CallResult stats;
  nlohmann::json j;
  EXPECT_TRUE(Eventually([&] {
    stats = plugin.Stats(path.out);
    if (stats.code != BERTH_OK) return false;
    j = nlohmann::json::parse(stats.out);
    return j["memory"]["usage_bytes"].get<uint64_t>() >= 8'000'000;
  })) << stats.code
      << " " << stats.err << stats.out;
  EXPECT_GT(j["timestamp_ns"].get<int64_t>(), 0);
  // (CPU pressure, from the unified hierarchy, may be there either way.)
  EXPECT_EQ(j.contains("cpu") && j["cpu"].contains("usage_ns"), !cpuacct_apart) << stats.out;
  EXPECT_GT(j["memory"]["working_set_bytes"].get<uint64_t>(), 0u) << stats.out;
  EXPECT_GE(j["pids"]["current"].get<uint64_t>(), 1u) << stats.out;
  EXPECT_FALSE(j["memory"].contains("limit_bytes")) << stats.out;

  UnitResources res;
  res.memory_max = 64ull << 20;
  res.cpu_weight = 200;
  res.tasks_max = 50;
  res.cpu_quota_per_sec_usec = 500'000;
  res.io_weight = 300;
  absl::Status set = SetUnitResources(*bus, unit, res);
  ASSERT_TRUE(set.ok()) << set;
  EXPECT_EQ(FirstLine(host_memory + "/memory.limit_in_bytes"), std::to_string(64ull << 20));
  const std::string host_cpu = systemd_->HostCgroupDir("cpu", scope->CgroupDir());
  EXPECT_EQ(FirstLine(host_cpu + "/cpu.shares"), "2048");  // 200 * 1024 / 100
  EXPECT_EQ(FirstLine(host_cpu + "/cpu.cfs_quota_us"),
            std::to_string(std::stoll(FirstLine(host_cpu + "/cpu.cfs_period_us")) / 2));
  EXPECT_EQ(FirstLine(systemd_->HostCgroupDir("pids", scope->CgroupDir()) + "/pids.max"), "50");
  stats = plugin.Stats(path.out);
  ASSERT_EQ(stats.code, BERTH_OK) << stats.err;
  j = nlohmann::json::parse(stats.out);
  EXPECT_EQ(j["memory"]["limit_bytes"].get<uint64_t>(), 64ull << 20) << stats.out;
  EXPECT_EQ(j["pids"]["limit"].get<uint64_t>(), 50u) << stats.out;

  CallResult removed = plugin.Remove(path.out);
  ASSERT_EQ(removed.code, BERTH_OK) << removed.err;
  absl::StatusOr<std::optional<std::string>> after = bus->FindUnit(unit);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_FALSE(after->has_value()) << "unit still loaded: " << **after;
  for (const char* mount : {"memory", "cpu", "cpuacct", "pids", "systemd", "unified"}) {
    std::string dir = systemd_->HostCgroupDir(mount, scope->CgroupDir());
    EXPECT_FALSE(fs::exists(dir)) << dir;
  }
  EXPECT_TRUE(Eventually([&] { return !Alive(sleeper->host_pid); }))
      << "the scope's process survived its stop";
  CallResult again = plugin.Remove(path.out);
  EXPECT_EQ(again.code, BERTH_OK) << again.err;
  CallResult gone = plugin.Stats(path.out);
  EXPECT_EQ(gone.code, BERTH_NOT_FOUND) << gone.out;
  EXPECT_THAT(gone.err, HasSubstr("has no cgroup"));
}

// A process that ignores SIGTERM outlives the stop timeout: FAILED_PRECONDITION names it;
// once it is gone, removal succeeds and leaves no failed unit behind.
TEST_F(SystemdIntegrationTest, RemoveNamesAProcessThatDoesNotStop) {
  LoadedPlugin plugin;
  ASSERT_EQ(plugin.Init(ConfigJson("1s")).code, BERTH_OK);
  const std::string id = RandomHex(8);
  CallResult path = plugin.CgroupPath(pod_slice_, id);
  ASSERT_EQ(path.code, BERTH_OK) << path.err;
  const std::string unit = "berth-" + id + ".scope";
  absl::StatusOr<NsProcess> stubborn = systemd_->Spawn({kSleep, "1000"}, /*ignore_sigterm=*/true);
  ASSERT_TRUE(stubborn.ok()) << stubborn.status();
  absl::StatusOr<SystemdBus> bus = SystemdBus::Open(systemd_->bus_address());
  ASSERT_TRUE(bus.ok()) << bus.status();
  absl::Status started = StartScope(*bus, pod_slice_, unit, stubborn->ns_pid, {});
  ASSERT_TRUE(started.ok()) << started;

  CallResult removed = plugin.Remove(path.out);
  EXPECT_EQ(removed.code, BERTH_FAILED_PRECONDITION) << removed.err;
  EXPECT_THAT(removed.err,
              AllOf(HasSubstr(unit), HasSubstr("did not stop within 1000 ms"),
                    HasSubstr("pid " + std::to_string(stubborn->ns_pid)), HasSubstr("sleep")));

  ASSERT_EQ(::kill(stubborn->host_pid, SIGKILL), 0);
  ASSERT_TRUE(Eventually([&] { return !Alive(stubborn->host_pid); }));
  CallResult retried = plugin.Remove(path.out);
  EXPECT_EQ(retried.code, BERTH_OK) << retried.err;
  absl::StatusOr<std::optional<std::string>> after = bus->FindUnit(unit);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_FALSE(after->has_value()) << "unit still loaded (failed?): " << **after;
}

TEST_F(SystemdIntegrationTest, StartScopeErrors) {
  absl::StatusOr<SystemdBus> bus = SystemdBus::Open(systemd_->bus_address());
  ASSERT_TRUE(bus.ok()) << bus.status();
  // A pid systemd cannot see.
  absl::Status nopid = StartScope(*bus, pod_slice_, "berth-nopid.scope", 4'000'000, {});
  EXPECT_EQ(nopid.code(), absl::StatusCode::kNotFound) << nopid;
  EXPECT_THAT(nopid.message(), AllOf(HasSubstr("berth-nopid.scope"), HasSubstr("pid 4000000"),
                                     HasSubstr("cannot see pid 4000000")));
  EXPECT_EQ(StartScope(*bus, pod_slice_, "berth-x.service", 1, {}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(StartScope(*bus, "/kubepods", "berth-x.scope", 1, {}).code(),
            absl::StatusCode::kInvalidArgument);

  // The same unit twice.
  absl::StatusOr<NsProcess> p = systemd_->Spawn({kSleep, "1000"});
  ASSERT_TRUE(p.ok()) << p.status();
  const std::string twice = "twice-" + RandomHex(4);
  const std::string unit = "berth-" + twice + ".scope";
  absl::Status first = StartScope(*bus, pod_slice_, unit, p->ns_pid, {});
  ASSERT_TRUE(first.ok()) << first;
  absl::Status again = StartScope(*bus, pod_slice_, unit, p->ns_pid, {});
  EXPECT_EQ(again.code(), absl::StatusCode::kAlreadyExists) << again;

  // Resources out of range are refused before any call; an unknown unit is NOT_FOUND.
  UnitResources bad;
  bad.cpu_weight = 0;
  absl::Status refused = SetUnitResources(*bus, unit, bad);
  EXPECT_EQ(refused.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.message(), HasSubstr("CPUWeight 0 is out of range"));
  UnitResources cpus;
  cpus.allowed_cpus = "0";
  cpus.allowed_memory_nodes = "0";
  EXPECT_TRUE(SetUnitResources(*bus, unit, cpus).ok());
  UnitResources mem;
  mem.memory_max = 1ull << 30;
  absl::Status unknown = SetUnitResources(*bus, "berth-nosuch.scope", mem);
  EXPECT_EQ(unknown.code(), absl::StatusCode::kNotFound) << unknown;
  EXPECT_THAT(unknown.message(), HasSubstr("set resources of unit berth-nosuch.scope"));

  absl::StatusOr<CgroupSystemd> driver = CgroupSystemd::Open(Options());
  ASSERT_TRUE(driver.ok()) << driver.status();
  absl::Status removed = driver->Remove(pod_slice_ + ":berth:" + twice);
  EXPECT_TRUE(removed.ok()) << removed;
}

// The plugin with its default configuration, as on a host where systemd is the init: this
// test binary, run again inside the booted systemd's PID, mount and cgroup namespaces, runs
// InsideBootedSystemdTest there (no bus_address: the system bus is absent, so the private
// socket; system_dir and cgroup_root at their defaults).
TEST_F(SystemdIntegrationTest, DefaultConfigurationInsideTheNamespaces) {
  std::error_code ec;
  const std::string self = fs::read_symlink("/proc/self/exe", ec).string();
  ASSERT_FALSE(ec) << ec.message();
  ::setenv(kInsideEnv, "1", 1);
  absl::StatusOr<testing::CommandResult> r = systemd_->RunInside(
      {self, "--gtest_filter=InsideBootedSystemdTest.*"}, "/", std::chrono::seconds(120));
  ::unsetenv(kInsideEnv);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 0) << r->output;
  EXPECT_THAT(r->output, HasSubstr("[  PASSED  ] 1 test.")) << r->output;
}

TEST(InsideBootedSystemdTest, DefaultConfiguration) {
  if (::getenv(kInsideEnv) == nullptr) {
    GTEST_SKIP() << "runs inside a booted systemd's namespaces only, started there by "
                    "SystemdIntegrationTest.DefaultConfigurationInsideTheNamespaces";
  }
  LoadedPlugin plugin;
  CallResult init = plugin.Init("{}");
  ASSERT_EQ(init.code, BERTH_OK) << init.err;
  EXPECT_THAT(plugin.log(), HasSubstr("the system bus, else /run/systemd/private"));
  CallResult status = plugin.Status();
  EXPECT_EQ(status.out, R"({"ready":true,"reason":"","message":""})") << status.err;

  absl::StatusOr<SystemdBus> bus = SystemdBus::Open("");
  ASSERT_TRUE(bus.ok()) << bus.status();
  EXPECT_EQ(bus->address(), kPrivateBusAddress);
  pid_t child = ::fork();
  if (child == 0) {
    ::execl(kSleep, kSleep, "1000", nullptr);
    ::_exit(127);
  }
  ASSERT_GT(child, 0);
  const std::string id = RandomHex(8);
  CallResult path = plugin.CgroupPath("", id);
  ASSERT_EQ(path.code, BERTH_OK) << path.err;
  EXPECT_EQ(path.out, "system.slice:berth:" + id);
  absl::Status started = StartScope(*bus, "system.slice", "berth-" + id + ".scope", child, {});
  EXPECT_TRUE(started.ok()) << started;
  EXPECT_TRUE(fs::is_directory("/sys/fs/cgroup/memory/system.slice/berth-" + id + ".scope"));
  CallResult stats = plugin.Stats(path.out);
  EXPECT_EQ(stats.code, BERTH_OK) << stats.err;
  EXPECT_THAT(stats.out, HasSubstr(R"("pids":{"current":1)"));
  CallResult removed = plugin.Remove(path.out);
  EXPECT_EQ(removed.code, BERTH_OK) << removed.err;
  int st = 0;
  EXPECT_EQ(::waitpid(child, &st, 0), child);
  EXPECT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM) << st;
  EXPECT_FALSE(fs::exists("/sys/fs/cgroup/memory/system.slice/berth-" + id + ".scope"));
}

// runc --systemd-cgroup, run inside systemd's namespaces, makes the scope through the booted
// systemd from the cgroups path the driver gave; the driver reads its statistics and
// removes it after runc deleted the container.
TEST_F(SystemdIntegrationTest, RuncSystemdCgroupEndToEnd) {
  const std::string runc = "/usr/sbin/runc";
  if (::access(runc.c_str(), X_OK) != 0) GTEST_SKIP() << "runc is not installed";
  LoadedPlugin plugin;
  ASSERT_EQ(plugin.Init(ConfigJson()).code, BERTH_OK);
  const std::string id = "e2e" + RandomHex(6);
  CallResult path = plugin.CgroupPath(pod_slice_, id);
  ASSERT_EQ(path.code, BERTH_OK) << path.err;

  berth::testing::BundleOptions o;
  o.args = {"sh", "-c", "echo started; exec sleep 1000"};
  o.cgroups_path = path.out;
  o.memory_limit_bytes = 96ll << 20;
  berth::testing::Bundle bundle("systemd-e2e", o);
  if (!bundle.ok()) GTEST_SKIP() << bundle.error();
  const std::string root = systemd_->temp_dir() + "/runc-root";
  fs::create_directories(root);
  auto run = [&](std::vector<std::string> args) {
    std::vector<std::string> argv = {runc, "--root", root, "--systemd-cgroup"};
    argv.insert(argv.end(), args.begin(), args.end());
    absl::StatusOr<testing::CommandResult> r =
        systemd_->RunInside(argv, bundle.str(), std::chrono::seconds(60));
    return r.ok() ? *r : testing::CommandResult{-1, std::string(r.status().message())};
  };
  testing::CommandResult created = run({"run", "--detach", "--bundle", bundle.str(), id});
  ASSERT_EQ(created.exit_code, 0) << created.output;

  absl::StatusOr<SystemdBus> bus = SystemdBus::Open(systemd_->bus_address());
  ASSERT_TRUE(bus.ok()) << bus.status();
  const std::string unit = "berth-" + id + ".scope";
  absl::StatusOr<std::optional<std::string>> object = bus->FindUnit(unit);
  ASSERT_TRUE(object.ok() && object->has_value()) << "runc made no unit " << unit;
  absl::StatusOr<ScopePath> scope = ParseCgroupsPath(path.out);
  ASSERT_TRUE(scope.ok());
  EXPECT_EQ(bus->StringProperty(**object, kScopeInterface, "ControlGroup").value_or(""),
            scope->CgroupDir());
  CallResult stats = plugin.Stats(path.out);
  ASSERT_EQ(stats.code, BERTH_OK) << stats.err;
  nlohmann::json j = nlohmann::json::parse(stats.out);
  EXPECT_EQ(j["memory"]["limit_bytes"].get<uint64_t>(), 96ull << 20) << stats.out;
  EXPECT_GE(j["pids"]["current"].get<uint64_t>(), 1u) << stats.out;
  EXPECT_GT(j["cpu"]["usage_ns"].get<uint64_t>(), 0u) << stats.out;

  testing::CommandResult deleted = run({"delete", "--force", id});
  EXPECT_EQ(deleted.exit_code, 0) << deleted.output;
  CallResult removed = plugin.Remove(path.out);
  EXPECT_EQ(removed.code, BERTH_OK) << removed.err;
  for (const char* mount : {"memory", "cpu", "pids", "freezer", "cpuset", "devices"}) {
    std::string dir = systemd_->HostCgroupDir(mount, scope->CgroupDir());
    EXPECT_FALSE(fs::exists(dir)) << dir;
  }
  absl::StatusOr<std::optional<std::string>> after = bus->FindUnit(unit);
  EXPECT_TRUE(after.ok() && !after->has_value());
}

}  // namespace
}  // namespace berth::cgroup_systemd
