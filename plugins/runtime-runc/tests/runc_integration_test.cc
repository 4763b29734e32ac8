// SPDX-License-Identifier: Apache-2.0
// The real berth-runtime-runc.so, loaded as berthd loads it, runs busybox containers with
// runc through a real shim: Debian's containerd-shim-runc-v2 and berth-shim (when built).
// Covers create/start/exit events, exec, live restore (a running task is re-adopted, one
// that exited meanwhile is reported) and a killed shim (reason ShimDied). Root only.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "plugins/common/plugin_util.h"
#include "plugins/runtime-runc/tests/plugin_harness.h"
#include "shim/runc/options.pb.h"
#include "shim/task/v2/shim.pb.h"
#include "tests/support/bundle.h"
#include "tests/support/shared_host_state.h"

namespace berth::runc {
namespace {

namespace fs = std::filesystem;
namespace task = ::containerd::task::v2;
using ::berth::runc::testing::kTask;
using ::berth::runc::testing::PluginHarness;
using ::testing::HasSubstr;

constexpr char kContainerdShim[] = "/usr/bin/containerd-shim-runc-v2";
constexpr char kHandler[] = "runc-it";
constexpr char kSandboxAnnotation[] = "io.kubernetes.cri.sandbox-id";

std::string BerthShimPath() { return std::string(BERTH_PLUGIN_OUTPUT_DIR) + "/berth-shim"; }

std::string Cmdline(pid_t pid) {
  std::string c = berth::testing::ReadFile(absl::StrCat("/proc/", pid, "/cmdline"));
  for (char& ch : c) {
    if (ch == '\0') ch = ' ';
  }
  return c;
}

bool Alive(pid_t pid) {
  if (::kill(pid, 0) != 0) return false;
  // A zombie is dead for our purposes.
  std::string stat = berth::testing::ReadFile(absl::StrCat("/proc/", pid, "/stat"));
  size_t p = stat.rfind(')');
  return p == std::string::npos || p + 2 >= stat.size() || stat[p + 2] != 'Z';
}

bool WaitGone(pid_t pid, absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  while (Alive(pid) && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(20));
  return !Alive(pid);
}

// Where runc keeps container state for the handler's `root`: containerd-shim-runc-v2 adds
// the namespace ("berth"); berth-shim may use it as is.
std::vector<std::string> RuncRoots(const std::string& root) { return {root, root + "/berth"}; }

bool RuncKnows(const std::string& runtime, const std::string& root, const std::string& id) {
  for (const std::string& r : RuncRoots(root)) {
    std::string cmd = absl::StrCat(runtime, " --root ", r, " state ", id, " >/dev/null 2>&1");
    if (std::system(cmd.c_str()) == 0) return true;
  }
  return false;
}

// Everything a test started, undone even when it fails: shims (only those whose command
// line names one of our containers), runc containers in the private root, and
// /run/containerd's empty directories when no other test uses them (shared_host_state.h).
class Cleanup {
 public:
  Cleanup(std::string runtime, std::string runc_root)
      : runtime_(std::move(runtime)), runc_root_(std::move(runc_root)) {}
  ~Cleanup() {
    for (pid_t pid : shim_pids_) {
      if (Alive(pid) && OwnsShim(pid)) {
        ::kill(pid, SIGKILL);
        WaitGone(pid, absl::Seconds(5));
      }
    }
    for (const std::string& id : ids_) {
      for (const std::string& root : RuncRoots(runc_root_)) {
        std::string cmd =
            absl::StrCat(runtime_, " --root ", root, " delete --force ", id, " >/dev/null 2>&1");
        int rc = std::system(cmd.c_str());
        (void)rc;
      }
    }
    // Container processes we created that survived that (their cgroup names the id).
    for (const auto& [pid, id] : task_pids_) {
      std::string cg = berth::testing::ReadFile(absl::StrCat("/proc/", pid, "/cgroup"));
      if (Alive(pid) && cg.find(id) != std::string::npos) {
        ::kill(pid, SIGKILL);
        WaitGone(pid, absl::Seconds(5));
      }
    }
  }
  void AddContainer(const std::string& id) { ids_.push_back(id); }
  void AddTaskPid(pid_t pid, const std::string& id) {
    if (pid > 1) task_pids_.emplace_back(pid, id);
  }
  void AddShim(pid_t pid) {
    if (pid > 1) shim_pids_.insert(pid);
  }
  // Ours: its command line names one of our containers, or its environment names our
  // private shim state directory (berth-shim daemons may not keep their start flags).
  bool OwnsShim(pid_t pid) const {
    std::string c = Cmdline(pid);
    for (const std::string& id : ids_) {
      if (c.find(id) != std::string::npos) return true;
    }
    std::string env = berth::testing::ReadFile(absl::StrCat("/proc/", pid, "/environ"));
    return !shim_state_dir_.empty() &&
           env.find("BERTH_SHIM_STATE_DIR=" + shim_state_dir_) != std::string::npos;
  }
  void SetShimStateDir(std::string dir) { shim_state_dir_ = std::move(dir); }

 private:
  berth::testing::ContainerdRunDir run_dir_;  // released after the destructor's body
  std::string runtime_;
  std::string runc_root_;
  std::string shim_state_dir_;
  std::vector<std::string> ids_;
  std::set<pid_t> shim_pids_;
  std::vector<std::pair<pid_t, std::string>> task_pids_;
};

struct ShimKind {
  std::string name;
  std::string path;
  std::string runtime = "runc";  // the handler's `binary`
};
void PrintTo(const ShimKind& k, std::ostream* os) { *os << k.name << " (" << k.path << ")"; }

class RuncIntegrationTest : public ::testing::TestWithParam<ShimKind> {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (runc, mounts, /run/containerd/s)";
    if (plugins::FindExecutable(GetParam().runtime).empty()) {
      GTEST_SKIP() << GetParam().runtime << " not installed";
    }
    shim_ = GetParam().path;
    if (::access(shim_.c_str(), X_OK) != 0) {
      GTEST_SKIP() << shim_ << " is not built or installed yet (" << GetParam().name
                   << " tests need it)";
    }
    harness_ = std::make_unique<PluginHarness>();
    ASSERT_FALSE(harness_->path().empty());
    runc_root_ = harness_->File("runc-root");
    cleanup_ = std::make_unique<Cleanup>(GetParam().runtime, runc_root_);
    cleanup_->SetShimStateDir(harness_->state_dir() + "/shim");
    absl::Status s = harness_->Start();
    ASSERT_TRUE(s.ok()) << s;
    ASSERT_TRUE(AddHandler().ok());
    if (GetParam().runtime == "crun") ProbeCrun();
  }
  // crun refuses hybrid cgroup hosts unless the shim works around it (docs/shim.md §7).
  void ProbeCrun() {
    berth::testing::Bundle* b = NewBundle("crun-probe", {"true"}, "sb-crun-probe");
    ASSERT_TRUE(b->ok()) << b->error();
    auto created = CreateTask("sb-crun-probe", *b);
    if (created.ok()) {
      ASSERT_TRUE(DeleteTask("sb-crun-probe", Id(*b)).ok());
    }
    ASSERT_TRUE(harness_->Control("remove_sandbox", {{"sandbox_id", "sb-crun-probe"}}).ok());
    if (!created.ok() &&
        std::string(created.status().message()).find("hybrid mode not supported") !=
            std::string::npos) {
      GTEST_SKIP() << GetParam().path
                   << " does not apply the crun workaround for hybrid cgroup hosts yet "
                      "(docs/shim.md §7): "
                   << created.status();
    }
    ASSERT_TRUE(created.ok()) << created.status();
  }
  void TearDown() override {
    if (harness_) harness_->Stop();
    cleanup_.reset();  // kills what is left, deletes containers
    bundles_.clear();  // then the bundles
    harness_.reset();
  }

  absl::Status AddHandler() {
    return harness_->AddHandler(
        kHandler, {{"shim", shim_}, {"root", runc_root_}, {"binary", GetParam().runtime}});
  }

  // A busybox bundle whose directory name is the container id (containerd-shim-runc-v2's
  // `delete` finds the container by it).
  berth::testing::Bundle* NewBundle(const std::string& what, std::vector<std::string> args,
                                    const std::string& sandbox, int64_t memory_limit = 0) {
    berth::testing::BundleOptions o;
    o.args = std::move(args);
    o.memory_limit_bytes = memory_limit;
    o.annotations[kSandboxAnnotation] = sandbox;
    bundles_.push_back(std::make_unique<berth::testing::Bundle>(what, o));
    berth::testing::Bundle* b = bundles_.back().get();
    if (b->ok()) cleanup_->AddContainer(b->path().filename().string());
    return b;
  }

  static std::string Id(const berth::testing::Bundle& b) { return b.path().filename().string(); }

  absl::StatusOr<task::CreateTaskResponse> CreateTask(const std::string& sandbox,
                                                      const berth::testing::Bundle& b,
                                                      const std::string& stdout_file = "") {
    task::CreateTaskRequest req;
    req.set_id(Id(b));
    req.set_bundle(b.str());
    if (!stdout_file.empty()) {
      req.set_stdout("file://" + stdout_file);
      req.set_stderr("file://" + stdout_file);
    }
    auto r = harness_->Call<task::CreateTaskResponse>(kHandler, sandbox, "Create", req);
    if (r.ok()) {
      RememberShim(sandbox, Id(b));
      cleanup_->AddTaskPid(static_cast<pid_t>(r->pid()), Id(b));
    }
    return r;
  }

  absl::StatusOr<task::StartResponse> StartTask(const std::string& sandbox, const std::string& id,
                                                const std::string& exec_id = "") {
    task::StartRequest req;
    req.set_id(id);
    req.set_exec_id(exec_id);
    return harness_->Call<task::StartResponse>(kHandler, sandbox, "Start", req);
  }

  absl::Status Kill(const std::string& sandbox, const std::string& id, uint32_t sig) {
    task::KillRequest req;
    req.set_id(id);
    req.set_signal(sig);
    return harness_->Call<google::protobuf::Empty>(kHandler, sandbox, "Kill", req).status();
  }

  absl::StatusOr<task::DeleteResponse> DeleteTask(const std::string& sandbox, const std::string& id,
                                                  const std::string& exec_id = "") {
    task::DeleteRequest req;
    req.set_id(id);
    req.set_exec_id(exec_id);
    return harness_->Call<task::DeleteResponse>(kHandler, sandbox, "Delete", req);
  }

  pid_t ShimPid(const std::string& sandbox, const std::string& id) {
    task::ConnectRequest req;
    req.set_id(id);
    auto r = harness_->Call<task::ConnectResponse>(kHandler, sandbox, "Connect", req);
    return r.ok() ? static_cast<pid_t>(r->shim_pid()) : 0;
  }

  void RememberShim(const std::string& sandbox, const std::string& id) {
    cleanup_->AddShim(ShimPid(sandbox, id));
  }

  std::string shim_;
  std::string runc_root_;
  std::unique_ptr<PluginHarness> harness_;
  std::unique_ptr<Cleanup> cleanup_;
  std::vector<std::unique_ptr<berth::testing::Bundle>> bundles_;
};

TEST_P(RuncIntegrationTest, HandlerStatusReadyAndNamesMissingShim) {
  nlohmann::json st = harness_->HandlerStatus(kHandler);
  EXPECT_EQ(st.value("ready", false), true) << st.dump();
  ASSERT_TRUE(harness_->AddHandler("broken", {{"shim", "/nonexistent/shim-v2"}}).ok());
  st = harness_->HandlerStatus("broken");
  EXPECT_EQ(st.value("ready", true), false);
  EXPECT_EQ(st.value("reason", ""), "ShimBinaryNotFound");
  EXPECT_THAT(st.value("message", ""), HasSubstr("/nonexistent/shim-v2"));
}

TEST_P(RuncIntegrationTest, CreateStartExitPublishesExitAndOutput) {
  const std::string sandbox = "sb-exit";
  berth::testing::Bundle* b = NewBundle("exit3", {"sh", "-c", "echo hello; exit 3"}, sandbox);
  ASSERT_TRUE(b->ok()) << b->error();
  const std::string id = Id(*b);
  const std::string out = harness_->File("exit3.out");
  auto created = CreateTask(sandbox, *b, out);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_GT(created->pid(), 0u);
  nlohmann::json entry = harness_->TaskEntry(id);
  ASSERT_TRUE(entry.is_object());
  EXPECT_EQ(entry["status"], "created");
  EXPECT_EQ(entry["handler"], kHandler);
  EXPECT_EQ(entry["sandbox_id"], sandbox);

  auto started = StartTask(sandbox, id);
  ASSERT_TRUE(started.ok()) << started.status();
  nlohmann::json ev = harness_->WaitExit(id);
  ASSERT_TRUE(ev.is_object()) << "no exit event for " << id;
  EXPECT_EQ(ev["exit_status"], 3);
  EXPECT_EQ(ev["reason"], "");
  EXPECT_EQ(ev["handler"], kHandler);
  EXPECT_EQ(ev["sandbox_id"], sandbox);
  EXPECT_EQ(ev["exec_id"], "");
  EXPECT_EQ(ev["pid"], created->pid());
  EXPECT_FALSE(ev.value("exited_at", "").empty());
  EXPECT_EQ(berth::testing::ReadFile(out), "hello\n");
  entry = harness_->TaskEntry(id);
  EXPECT_EQ(entry["status"], "stopped");
  EXPECT_EQ(entry["exit_status"], 3);

  // State through the plugin; then Delete forgets it.
  task::StateRequest sreq;
  sreq.set_id(id);
  auto st = harness_->Call<task::StateResponse>(kHandler, sandbox, "State", sreq);
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(st->status(), containerd::v1::types::STOPPED);
  EXPECT_EQ(st->exit_status(), 3u);
  pid_t shim_pid = ShimPid(sandbox, id);
  auto del = DeleteTask(sandbox, id);
  ASSERT_TRUE(del.ok()) << del.status();
  EXPECT_EQ(del->exit_status(), 3u);
  EXPECT_TRUE(harness_->TaskEntry(id).is_null());
  auto removed = harness_->Control("remove_sandbox", {{"sandbox_id", sandbox}});
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_TRUE(WaitGone(shim_pid, absl::Seconds(10))) << "shim " << shim_pid << " still runs";
  // Idempotent; afterwards the sandbox is unknown.
  EXPECT_TRUE(harness_->Control("remove_sandbox", {{"sandbox_id", sandbox}}).ok());
  auto gone = harness_->CallRaw(kHandler, sandbox, kTask, "State", sreq.SerializeAsString());
  EXPECT_EQ(gone.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(gone.status().message()), HasSubstr(sandbox));
  EXPECT_EQ(harness_->ExitEventCount(id), 1);
}

TEST_P(RuncIntegrationTest, ExecInRunningContainerIsFollowed) {
  const std::string sandbox = "sb-exec";
  berth::testing::Bundle* b = NewBundle("exec", {"sleep", "1000"}, sandbox);
  ASSERT_TRUE(b->ok()) << b->error();
  const std::string id = Id(*b);
  ASSERT_TRUE(CreateTask(sandbox, *b).ok());
  ASSERT_TRUE(StartTask(sandbox, id).ok());

  const std::string out = harness_->File("exec.out");
  task::ExecProcessRequest exec;
  exec.set_id(id);
  exec.set_exec_id("e1");
  exec.set_stdout("file://" + out);
  // containerd-shim-runc-v2 1.6 panics on a file:// stdout with an empty stderr.
  exec.set_stderr("file://" + out);
  exec.mutable_spec()->set_type_url("types.containerd.io/opencontainers/runtime-spec/1/Process");
  exec.mutable_spec()->set_value(
      berth::testing::MakeOciProcess({"sh", "-c", "echo from-exec; exit 7"}).dump());
  auto registered = harness_->Call<google::protobuf::Empty>(kHandler, sandbox, "Exec", exec);
  ASSERT_TRUE(registered.ok()) << registered.status();
  auto started = StartTask(sandbox, id, "e1");
  ASSERT_TRUE(started.ok()) << started.status();
  nlohmann::json ev = harness_->WaitExit(id, "e1");
  ASSERT_TRUE(ev.is_object()) << "no exit event for exec e1";
  EXPECT_EQ(ev["exit_status"], 7);
  EXPECT_EQ(berth::testing::ReadFile(out), "from-exec\n");
  ASSERT_TRUE(DeleteTask(sandbox, id, "e1").ok());
  EXPECT_TRUE(harness_->TaskEntry(id, "e1").is_null());

  ASSERT_TRUE(Kill(sandbox, id, SIGKILL).ok());
  ev = harness_->WaitExit(id);
  ASSERT_TRUE(ev.is_object());
  EXPECT_EQ(ev["exit_status"], 137);
  // A running task blocks remove_sandbox; a deleted one does not.
  ASSERT_TRUE(DeleteTask(sandbox, id).ok());
  EXPECT_TRUE(harness_->Control("remove_sandbox", {{"sandbox_id", sandbox}}).ok());
}

TEST_P(RuncIntegrationTest, RestartReadoptsRunningTaskAndReportsExitedOne) {
  const std::string sandbox = "sb-restart";
  berth::testing::Bundle* a = NewBundle("ra", {"sleep", "1000"}, sandbox);
  berth::testing::Bundle* b = NewBundle("rb", {"sleep", "1000"}, sandbox);
  ASSERT_TRUE(a->ok() && b->ok());
  auto ca = CreateTask(sandbox, *a);
  ASSERT_TRUE(ca.ok()) << ca.status();
  auto cb = CreateTask(sandbox, *b);
  ASSERT_TRUE(cb.ok()) << cb.status();
  ASSERT_TRUE(StartTask(sandbox, Id(*a)).ok());
  ASSERT_TRUE(StartTask(sandbox, Id(*b)).ok());
  pid_t shim_pid = ShimPid(sandbox, Id(*a));
  EXPECT_EQ(shim_pid, ShimPid(sandbox, Id(*b))) << "one shim per sandbox";

  // berthd goes away; container a dies meanwhile (its pid is ours: we created it).
  harness_->Stop();
  const pid_t pid_a = static_cast<pid_t>(ca->pid());
  ASSERT_THAT(Cmdline(pid_a), HasSubstr("sleep"));
  ASSERT_EQ(::kill(pid_a, SIGKILL), 0);
  ASSERT_TRUE(WaitGone(pid_a, absl::Seconds(10)));
  absl::SleepFor(absl::Milliseconds(200));  // let the shim record the exit
  EXPECT_EQ(harness_->ExitEventCount(Id(*a)), 0);

  absl::Status s = harness_->Start();
  ASSERT_TRUE(s.ok()) << s;
  ASSERT_TRUE(AddHandler().ok());
  nlohmann::json ev = harness_->WaitExit(Id(*a), "", absl::Seconds(5));
  ASSERT_TRUE(ev.is_object()) << "the exit of " << Id(*a) << " during the restart was not reported";
  EXPECT_EQ(ev["exit_status"], 137);
  EXPECT_EQ(ev["reason"], "");
  nlohmann::json entry_b = harness_->TaskEntry(Id(*b));
  ASSERT_TRUE(entry_b.is_object());
  EXPECT_EQ(entry_b["status"], "running");
  EXPECT_EQ(entry_b["pid"], cb->pid());

  // b is followed again: its exit arrives through the new instance.
  // (SIGKILL: sleep as pid 1 of its namespace ignores SIGTERM.)
  ASSERT_TRUE(Kill(sandbox, Id(*b), SIGKILL).ok());
  ev = harness_->WaitExit(Id(*b));
  ASSERT_TRUE(ev.is_object()) << "re-adopted task " << Id(*b) << " exit not reported";
  EXPECT_EQ(ev["exit_status"], 128 + SIGKILL);
  ASSERT_TRUE(DeleteTask(sandbox, Id(*a)).ok());
  ASSERT_TRUE(DeleteTask(sandbox, Id(*b)).ok());
  ASSERT_TRUE(harness_->Control("remove_sandbox", {{"sandbox_id", sandbox}}).ok());
  EXPECT_TRUE(WaitGone(shim_pid, absl::Seconds(10)));
}

TEST_P(RuncIntegrationTest, KilledShimReportsShimDied) {
  const std::string sandbox = "sb-shimdied";
  berth::testing::Bundle* b = NewBundle("died", {"sleep", "1000"}, sandbox);
  ASSERT_TRUE(b->ok()) << b->error();
  const std::string id = Id(*b);
  auto created = CreateTask(sandbox, *b);
  ASSERT_TRUE(created.ok()) << created.status();
  ASSERT_TRUE(StartTask(sandbox, id).ok());
  pid_t shim_pid = ShimPid(sandbox, id);
  ASSERT_GT(shim_pid, 1);
  ASSERT_TRUE(RuncKnows(GetParam().runtime, runc_root_, id))
      << "runc state not under the handler's root";
  ASSERT_TRUE(cleanup_->OwnsShim(shim_pid)) << "not our shim: " << Cmdline(shim_pid);
  ASSERT_EQ(::kill(shim_pid, SIGKILL), 0);

  nlohmann::json ev = harness_->WaitExit(id);
  ASSERT_TRUE(ev.is_object()) << "no exit event after the shim was killed";
  EXPECT_EQ(ev["reason"], "ShimDied");
  EXPECT_EQ(ev["exit_status"], 137);
  // The shim's `delete` removed the container.
  EXPECT_TRUE(WaitGone(static_cast<pid_t>(created->pid()), absl::Seconds(10)));
  EXPECT_FALSE(RuncKnows(GetParam().runtime, runc_root_, id)) << "runc still knows " << id;
  // Recorded answers for the dead shim's task; then the sandbox can go.
  auto del = DeleteTask(sandbox, id);
  ASSERT_TRUE(del.ok()) << del.status();
  EXPECT_EQ(del->exit_status(), 137u);
  EXPECT_TRUE(harness_->Control("remove_sandbox", {{"sandbox_id", sandbox}}).ok());
}

TEST_P(RuncIntegrationTest, ShimDiedWhileStoppedIsReportedAtRestart) {
  const std::string sandbox = "sb-deadrestart";
  berth::testing::Bundle* b = NewBundle("deadrestart", {"sleep", "1000"}, sandbox);
  ASSERT_TRUE(b->ok()) << b->error();
  const std::string id = Id(*b);
  ASSERT_TRUE(CreateTask(sandbox, *b).ok());
  ASSERT_TRUE(StartTask(sandbox, id).ok());
  pid_t shim_pid = ShimPid(sandbox, id);
  ASSERT_GT(shim_pid, 1);
  harness_->Stop();
  ASSERT_TRUE(cleanup_->OwnsShim(shim_pid)) << "not our shim: " << Cmdline(shim_pid);
  ASSERT_EQ(::kill(shim_pid, SIGKILL), 0);
  ASSERT_TRUE(WaitGone(shim_pid, absl::Seconds(10)));
  absl::Status s = harness_->Start();
  ASSERT_TRUE(s.ok()) << s;
  nlohmann::json ev = harness_->WaitExit(id, "", absl::Seconds(5));
  ASSERT_TRUE(ev.is_object()) << "dead shim not reported at restart";
  EXPECT_EQ(ev["reason"], "ShimDied");
  nlohmann::json entry = harness_->TaskEntry(id);
  ASSERT_TRUE(entry.is_object());
  EXPECT_EQ(entry["status"], "stopped");
  EXPECT_EQ(entry["reason"], "ShimDied");
  ASSERT_TRUE(AddHandler().ok());
  ASSERT_TRUE(DeleteTask(sandbox, id).ok());
  EXPECT_TRUE(harness_->Control("remove_sandbox", {{"sandbox_id", sandbox}}).ok());
}

TEST_P(RuncIntegrationTest, ConcurrentCreatesInOneSandboxShareOneShim) {
  const std::string sandbox = "sb-concurrent";
  std::vector<berth::testing::Bundle*> bundles;
  for (int i = 0; i < 3; ++i) {
    bundles.push_back(NewBundle(absl::StrCat("cc", i), {"sleep", "1000"}, sandbox));
    ASSERT_TRUE(bundles.back()->ok()) << bundles.back()->error();
  }
  std::vector<absl::Status> results(bundles.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < bundles.size(); ++i) {
    threads.emplace_back([&, i] { results[i] = CreateTask(sandbox, *bundles[i]).status(); });
  }
  for (std::thread& t : threads) t.join();
  for (const absl::Status& r : results) ASSERT_TRUE(r.ok()) << r;
  std::set<pid_t> shims;
  for (auto* b : bundles) shims.insert(ShimPid(sandbox, Id(*b)));
  EXPECT_EQ(shims.size(), 1u) << "one shim per sandbox";
  for (auto* b : bundles) {
    ASSERT_TRUE(DeleteTask(sandbox, Id(*b)).ok());  // created, never started
  }
  EXPECT_TRUE(harness_->Control("remove_sandbox", {{"sandbox_id", sandbox}}).ok());
  EXPECT_TRUE(WaitGone(*shims.begin(), absl::Seconds(10)));
}

TEST_P(RuncIntegrationTest, OomKilledTaskIsReportedWithReason) {
  if (GetParam().path != BerthShimPath()) {
    GTEST_SKIP() << GetParam().name << " has no berth.shim.v1.Shim/Info (no OOM reason)";
  }
  if (!fs::exists("/sys/fs/cgroup/memory/memory.limit_in_bytes") &&
      !fs::exists("/sys/fs/cgroup/cgroup.controllers")) {
    GTEST_SKIP() << "no memory cgroup controller";
  }
  const std::string sandbox = "sb-oom";
  // busybox tail keeps a newline-free stream in memory: 256 MiB against a 32 MiB limit.
  berth::testing::Bundle* b =
      NewBundle("oom", {"sh", "-c", "head -c 268435456 /dev/zero | tail >/dev/null; exit 1"},
                sandbox, 32 << 20);
  ASSERT_TRUE(b->ok()) << b->error();
  const std::string id = Id(*b);
  ASSERT_TRUE(CreateTask(sandbox, *b).ok());
  ASSERT_TRUE(StartTask(sandbox, id).ok());
  nlohmann::json ev = harness_->WaitExit(id, "", absl::Seconds(60));
  ASSERT_TRUE(ev.is_object()) << "no exit event";
  EXPECT_EQ(ev["reason"], "OOMKilled") << ev.dump();
  EXPECT_EQ(harness_->TaskEntry(id)["reason"], "OOMKilled");
  ASSERT_TRUE(DeleteTask(sandbox, id).ok());
  EXPECT_TRUE(harness_->Control("remove_sandbox", {{"sandbox_id", sandbox}}).ok());
}

INSTANTIATE_TEST_SUITE_P(Shims, RuncIntegrationTest,
                         ::testing::Values(ShimKind{"ContainerdShimRuncV2", kContainerdShim},
                                           ShimKind{"BerthShim", BerthShimPath()},
                                           ShimKind{"BerthShimCrun", BerthShimPath(), "crun"}),
                         [](const ::testing::TestParamInfo<ShimKind>& info) {
                           return info.param.name;
                         });

}  // namespace
}  // namespace berth::runc
