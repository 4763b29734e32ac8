// SPDX-License-Identifier: Apache-2.0
// berthd killed with SIGKILL while its containers run and print, then started again.
//
// The "berthd" is a child process (this test binary re-executed with a filter that selects
// BerthdChild.Run) that loads the real runtime-runc plugin over a store in a shared
// directory, starts two busybox containers through berth-shim and runc -- one printing
// numbered lines into its CRI log, one sleeping -- and waits. The test kills it with
// SIGKILL, checks that both containers keep running and the log keeps growing while no
// berthd exists, lets the printer finish, then loads the plugin again on the same store:
// the printer's exit (status 0, with its time) is reported, the sleeper is re-adopted as
// running, and the log holds every line exactly once, in order.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "plugins/runtime-runc/tests/plugin_harness.h"
#include "shim/task/v2/shim.pb.h"
#include "tests/support/bundle.h"
#include "tests/support/test_support.h"

namespace berth::runc {
namespace {

namespace fs = std::filesystem;
namespace task = ::containerd::task::v2;
using ::berth::runc::testing::PluginHarness;

constexpr char kHandler[] = "runc-kill9";
constexpr char kSandbox[] = "sb-kill9";
constexpr int kLines = 300;
constexpr char kDirEnv[] = "BERTH_KILL9_DIR";

std::string BerthShim() { return std::string(BERTH_PLUGIN_OUTPUT_DIR) + "/berth-shim"; }

bool Alive(pid_t pid) { return pid > 1 && ::kill(pid, 0) == 0; }

bool WaitGone(pid_t pid, absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  while (Alive(pid)) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return true;
}

// Lines of the CRI log whose message is "line-<n>"; the numbers in file order.
std::vector<int> LoggedNumbers(const std::string& path) {
  std::vector<int> numbers;
  std::ifstream f(path);
  std::string line;
  while (std::getline(f, line)) {
    std::vector<std::string> parts = absl::StrSplit(line, absl::MaxSplits(' ', 3));
    int n = 0;
    if (parts.size() == 4 && parts[1] == "stdout" && parts[2] == "F" &&
        absl::StartsWith(parts[3], "line-") && absl::SimpleAtoi(parts[3].substr(5), &n)) {
      numbers.push_back(n);
    }
  }
  return numbers;
}

nlohmann::json HandlerOptions(const fs::path& dir) {
  return {{"shim", BerthShim()}, {"root", (dir / "runc-root").string()}, {"binary", "runc"}};
}

// What the child reports once its containers run.
struct ChildReport {
  pid_t printer = 0, sleeper = 0, shim = 0;
  std::string printer_id, sleeper_id;
};

// ---- the berthd stand-in (runs only when re-executed by the test) -------------------------

TEST(BerthdChild, Run) {
  const char* dir_env = std::getenv(kDirEnv);
  if (dir_env == nullptr) GTEST_SKIP() << "only runs as the child of BerthdKill9Test";
  const fs::path dir(dir_env);
  PluginHarness harness(dir);
  ASSERT_TRUE(harness.Start().ok());
  ASSERT_TRUE(harness.AddHandler(kHandler, HandlerOptions(dir)).ok());

  nlohmann::json report;
  for (const char* what : {"printer", "sleeper"}) {
    berth::testing::BundleOptions o;
    if (std::string(what) == "printer") {
      o.args = {"sh", "-c",
                absl::StrCat("i=0; while [ $i -lt ", kLines,
                             " ]; do i=$((i+1)); echo line-$i; sleep 0.01; done")};
    } else {
      o.args = {"sleep", "100000"};
    }
    o.annotations["io.kubernetes.cri.sandbox-id"] = kSandbox;
    // Kept: the parent test removes the bundles after the containers are gone.
    auto* bundle = new berth::testing::Bundle(what, o);
    ASSERT_TRUE(bundle->ok()) << bundle->error();
    const std::string id = bundle->path().filename().string();
    task::CreateTaskRequest create;
    create.set_id(id);
    create.set_bundle(bundle->str());
    create.set_stdout("crilog://" + (dir / (std::string(what) + ".log")).string());
    create.set_stderr(create.stdout());
    auto created = harness.Call<task::CreateTaskResponse>(kHandler, kSandbox, "Create", create);
    ASSERT_TRUE(created.ok()) << created.status();
    task::StartRequest start;
    start.set_id(id);
    ASSERT_TRUE(harness.Call<task::StartResponse>(kHandler, kSandbox, "Start", start).ok());
    task::ConnectRequest connect;
    connect.set_id(id);
    auto connected = harness.Call<task::ConnectResponse>(kHandler, kSandbox, "Connect", connect);
    ASSERT_TRUE(connected.ok());
    report[what] = {{"pid", created->pid()},
                    {"id", id},
                    {"bundle", bundle->str()},
                    {"shim", connected->shim_pid()}};
  }
  berth::testing::WriteFile((dir / "report.tmp").string(), report.dump());
  fs::rename(dir / "report.tmp", dir / "report.json");
  for (;;) ::pause();  // until the test kills us
}

// ---- the test ------------------------------------------------------------------------------

class BerthdKill9Test : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (runc, berth-shim)";
    if (::access(BerthShim().c_str(), X_OK) != 0) GTEST_SKIP() << BerthShim() << " not built";
    ASSERT_FALSE(dir_.path().empty());
  }
  void TearDown() override {
    if (child_ > 0 && Alive(child_)) {
      ::kill(child_, SIGKILL);
      ::waitpid(child_, nullptr, 0);
    }
    // Everything below was started for this test (pids from the child's report).
    for (pid_t pid : {report_.printer, report_.sleeper, report_.shim}) {
      if (Alive(pid)) {
        ::kill(pid, SIGKILL);
        WaitGone(pid, absl::Seconds(5));
      }
    }
    for (const std::string& id : {report_.printer_id, report_.sleeper_id}) {
      if (id.empty()) continue;
      std::string cmd = absl::StrCat("runc --root ", dir_.File("runc-root"), " delete --force ", id,
                                     " >/dev/null 2>&1");
      int rc = std::system(cmd.c_str());
      (void)rc;
    }
    std::error_code ec;
    for (const std::string& b : bundles_) fs::remove_all(b, ec);
  }

  // Re-executes this binary as the berthd stand-in and waits for its report.
  void StartChild() {
    child_ = ::fork();
    ASSERT_GE(child_, 0);
    if (child_ == 0) {
      ::setenv(kDirEnv, dir_.str().c_str(), 1);
      ::execl("/proc/self/exe", "berthd-child", "--gtest_filter=BerthdChild.Run", nullptr);
      ::_exit(127);
    }
    const std::string report = dir_.File("report.json");
    absl::Time deadline = absl::Now() + absl::Seconds(60);
    while (!fs::exists(report)) {
      int status = 0;
      ASSERT_EQ(::waitpid(child_, &status, WNOHANG), 0) << "the berthd stand-in ended early";
      ASSERT_LT(absl::Now(), deadline) << "the berthd stand-in did not start its containers";
      absl::SleepFor(absl::Milliseconds(20));
    }
    nlohmann::json j = nlohmann::json::parse(berth::testing::ReadFile(report));
    report_.printer = j["printer"]["pid"];
    report_.sleeper = j["sleeper"]["pid"];
    report_.shim = j["printer"]["shim"];
    report_.printer_id = j["printer"]["id"];
    report_.sleeper_id = j["sleeper"]["id"];
    bundles_ = {j["printer"]["bundle"], j["sleeper"]["bundle"]};
  }

  berth::testing::TempDir dir_{"kill9"};
  pid_t child_ = 0;
  ChildReport report_;
  std::vector<std::string> bundles_;
};

TEST_F(BerthdKill9Test, ContainersKeepRunningAndLoggingAndExitsAreReportedAfterRestart) {
  StartChild();
  const std::string log = dir_.File("printer.log");

  ASSERT_EQ(::kill(child_, SIGKILL), 0);
  ASSERT_EQ(::waitpid(child_, nullptr, 0), child_);
  child_ = 0;
  const size_t at_kill = LoggedNumbers(log).size();
  ASSERT_LT(at_kill, static_cast<size_t>(kLines)) << "the printer finished before the kill";
  EXPECT_TRUE(Alive(report_.sleeper)) << "the sleeper died with berthd";
  EXPECT_TRUE(Alive(report_.shim)) << "the shim died with berthd";

  // No berthd now: the printer goes on and its output still reaches the log.
  ASSERT_TRUE(WaitGone(report_.printer, absl::Seconds(60))) << "the printer did not finish";
  std::vector<int> numbers = LoggedNumbers(log);
  EXPECT_GT(numbers.size(), at_kill) << "nothing was logged while berthd was down";

  // berthd starts again on the same store.
  PluginHarness harness(dir_.path());
  ASSERT_TRUE(harness.Start().ok());
  ASSERT_TRUE(harness.AddHandler(kHandler, HandlerOptions(dir_.path())).ok());
  nlohmann::json exit = harness.WaitExit(report_.printer_id, "", absl::Seconds(10));
  ASSERT_TRUE(exit.is_object()) << "the printer's exit while berthd was down was not reported";
  EXPECT_EQ(exit["exit_status"], 0);
  EXPECT_EQ(exit["reason"], "");
  EXPECT_FALSE(exit.value("exited_at", "").empty());
  nlohmann::json sleeper = harness.TaskEntry(report_.sleeper_id);
  ASSERT_TRUE(sleeper.is_object());
  EXPECT_EQ(sleeper["status"], "running");

  // Every line once, in order: none lost across the kill, none doubled.
  numbers = LoggedNumbers(log);
  ASSERT_EQ(numbers.size(), static_cast<size_t>(kLines));
  for (int i = 0; i < kLines; ++i) ASSERT_EQ(numbers[i], i + 1) << "at entry " << i;

  // Tidy up through the plugin: kill, delete, remove the sandbox (the shim exits).
  task::KillRequest kill;
  kill.set_id(report_.sleeper_id);
  kill.set_signal(SIGKILL);
  ASSERT_TRUE(harness.Call<google::protobuf::Empty>(kHandler, kSandbox, "Kill", kill).ok());
  ASSERT_TRUE(harness.WaitExit(report_.sleeper_id).is_object());
  for (const std::string& id : {report_.printer_id, report_.sleeper_id}) {
    task::DeleteRequest del;
    del.set_id(id);
    auto deleted = harness.Call<task::DeleteResponse>(kHandler, kSandbox, "Delete", del);
    EXPECT_TRUE(deleted.ok()) << deleted.status();
  }
  EXPECT_TRUE(harness.Control("remove_sandbox", {{"sandbox_id", kSandbox}}).ok());
  EXPECT_TRUE(WaitGone(report_.shim, absl::Seconds(10))) << "the shim outlived its sandbox";
  harness.Stop();
}

}  // namespace
}  // namespace berth::runc
