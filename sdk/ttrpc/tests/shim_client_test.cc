// SPDX-License-Identifier: Apache-2.0
// The shim v2 client pieces without a real shim: start output parsing, the `start` and
// `delete` commands against fake shims (shell scripts), the log FIFO and the event sink.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mutex>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "berth/ttrpc/client.h"
#include "berth/ttrpc/server.h"
#include "berth/ttrpc/shim.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_support.h"

namespace berth::ttrpc {
namespace {

using berth::testing::ReadFile;
using berth::testing::TempDir;
using berth::testing::WriteFile;
using ::testing::HasSubstr;

std::string Msg(const absl::Status& s) { return std::string(s.message()); }

TEST(ParseShimStartOutputTest, PlainAddress) {
  auto a = ParseShimStartOutput("unix:///run/x.sock\n");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(*a, "unix:///run/x.sock");
}

TEST(ParseShimStartOutputTest, JsonForm) {
  auto a = ParseShimStartOutput(
      R"({"version": 2, "address": "unix:///run/s/abc", "protocol": "ttrpc"})");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(*a, "unix:///run/s/abc");
}

TEST(ParseShimStartOutputTest, RefusesGrpcEmptyAndJunk) {
  auto grpc = ParseShimStartOutput(R"({"version":2,"address":"unix:///g","protocol":"grpc"})");
  EXPECT_EQ(grpc.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(grpc.status()), HasSubstr("only ttrpc"));
  EXPECT_EQ(ParseShimStartOutput("  \n").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseShimStartOutput("some warning\nunix:///x").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseShimStartOutput(R"({"version":2})").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseShimStartOutput(R"({"address":"unix:///x")").status().code(),
            absl::StatusCode::kInvalidArgument);
}

class FakeShimTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty());
    bundle_ = dir_.File("bundle");
    std::filesystem::create_directories(bundle_);
  }
  // Writes an executable shell script and returns its path.
  std::string Script(const std::string& name, const std::string& body) {
    std::string path = dir_.File(name);
    WriteFile(path, "#!/bin/sh\n" + body);
    ::chmod(path.c_str(), 0755);
    return path;
  }
  ShimCommand Command(const std::string& binary) {
    ShimCommand c;
    c.binary = binary;
    c.bundle = bundle_;
    c.id = "c1";
    c.ns = "berth";
    c.address = dir_.File("events.sock");
    c.extra_env = {"BERTH_SHIM_STATE_DIR=/tmp/state-x"};
    c.timeout = absl::Seconds(10);
    return c;
  }

  TempDir dir_{"shim-client"};
  std::string bundle_;
};

TEST_F(FakeShimTest, StartPassesFlagsEnvCwdAndEmptyStdin) {
  const std::string record = dir_.File("record");
  std::string shim = Script(
      "shim",
      absl::StrCat("{ echo \"args=$*\"; echo \"cwd=$(pwd)\"; echo \"ttrpc=$TTRPC_ADDRESS\";\n"
                   "  echo \"state=$BERTH_SHIM_STATE_DIR\"; echo \"stdin=$(cat)\"; } > ",
                   record, "\n", "echo unix:///run/fake.sock\n"));
  auto address = StartShim(Command(shim));
  ASSERT_TRUE(address.ok()) << address.status();
  EXPECT_EQ(*address, "unix:///run/fake.sock");
  std::vector<std::string> lines = absl::StrSplit(ReadFile(record), '\n');
  ASSERT_GE(lines.size(), 5u);
  EXPECT_EQ(lines[0], absl::StrCat("args=-namespace berth -address ", dir_.File("events.sock"),
                                   " -publish-binary /bin/true -id c1 start"));
  EXPECT_EQ(lines[1], "cwd=" + bundle_);
  EXPECT_EQ(lines[2], "ttrpc=" + dir_.File("events.sock") + ".ttrpc");
  EXPECT_EQ(lines[3], "state=/tmp/state-x");
  EXPECT_EQ(lines[4], "stdin=");
}

TEST_F(FakeShimTest, StartFailureCarriesStatusAndStderr) {
  std::string shim = Script("shim", "echo 'runc not found: boom' >&2\nexit 3\n");
  auto address = StartShim(Command(shim));
  ASSERT_FALSE(address.ok());
  EXPECT_THAT(Msg(address.status()), HasSubstr("exited with status 3"));
  EXPECT_THAT(Msg(address.status()), HasSubstr("runc not found: boom"));
  EXPECT_THAT(Msg(address.status()), HasSubstr(shim));
  EXPECT_THAT(Msg(address.status()), HasSubstr("c1"));
}

TEST_F(FakeShimTest, StartReturnsWhileADaemonKeepsThePipesOpen) {
  const std::string pid_file = dir_.File("daemon.pid");
  // The "daemon" inherits stdout and stderr and outlives the start command.
  std::string shim = Script(
      "shim", absl::StrCat("sleep 30 &\necho $! > ", pid_file, "\necho unix:///run/d.sock\n"));
  absl::Time t0 = absl::Now();
  auto address = StartShim(Command(shim));
  absl::Duration took = absl::Now() - t0;
  std::string pid_text = ReadFile(pid_file);
  pid_t daemon = pid_text.empty() ? 0 : static_cast<pid_t>(std::stol(pid_text));
  if (daemon > 1) ::kill(daemon, SIGKILL);  // the sleep our script started
  ASSERT_TRUE(address.ok()) << address.status();
  EXPECT_EQ(*address, "unix:///run/d.sock");
  EXPECT_LT(took, absl::Seconds(5));
}

TEST_F(FakeShimTest, StartTimesOutAndKillsTheCommand) {
  const std::string pid_file = dir_.File("self.pid");
  std::string shim = Script("shim", absl::StrCat("echo $$ > ", pid_file, "\nexec sleep 30\n"));
  ShimCommand c = Command(shim);
  c.timeout = absl::Milliseconds(300);
  auto address = StartShim(c);
  EXPECT_EQ(address.status().code(), absl::StatusCode::kDeadlineExceeded) << address.status();
  EXPECT_THAT(Msg(address.status()), HasSubstr("killed"));
  pid_t pid = static_cast<pid_t>(std::stol(ReadFile(pid_file)));
  EXPECT_NE(::kill(pid, 0), 0) << "the timed-out command still runs";
}

TEST_F(FakeShimTest, MissingBinaryIsFailedPreconditionNamingIt) {
  auto address = StartShim(Command(dir_.File("no-such-shim")));
  EXPECT_EQ(address.status().code(), absl::StatusCode::kFailedPrecondition) << address.status();
  EXPECT_THAT(Msg(address.status()), HasSubstr(dir_.File("no-such-shim")));
  ShimCommand relative = Command("containerd-shim-runc-v2");
  EXPECT_EQ(StartShim(relative).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(FakeShimTest, DeleteParsesTheDeleteResponse) {
  const std::string record = dir_.File("record");
  // DeleteResponse{pid: 42, exit_status: 137}: 08 2a 10 89 01.
  std::string shim = Script(
      "shim", absl::StrCat("echo \"$*\" > ", record, "\n", "printf '\\010\\052\\020\\211\\001'\n"));
  auto r = DeleteShim(Command(shim));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->pid(), 42u);
  EXPECT_EQ(r->exit_status(), 137u);
  EXPECT_THAT(ReadFile(record), HasSubstr("-id c1 -bundle " + bundle_ + " delete"));
}

TEST_F(FakeShimTest, DeleteFailureCarriesStderr) {
  std::string shim = Script("shim", "echo 'container not found' >&2\nexit 1\n");
  auto r = DeleteShim(Command(shim));
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(Msg(r.status()), HasSubstr("container not found"));
  EXPECT_THAT(Msg(r.status()), HasSubstr("delete"));
}

TEST_F(FakeShimTest, ShimLogDeliversLines) {
  std::mutex mu;
  std::vector<std::string> lines;
  auto log = ShimLog::Open(bundle_, [&](std::string_view l) {
    std::lock_guard<std::mutex> lock(mu);
    lines.emplace_back(l);
  });
  ASSERT_TRUE(log.ok()) << log.status();
  struct stat st {};
  ASSERT_EQ(::stat((bundle_ + "/log").c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode));
  int w = ::open((bundle_ + "/log").c_str(), O_WRONLY | O_CLOEXEC);
  ASSERT_GE(w, 0);
  std::string text = "first\nsecond\npartial";
  ASSERT_EQ(::write(w, text.data(), text.size()), static_cast<ssize_t>(text.size()));
  ::close(w);
  absl::Time until = absl::Now() + absl::Seconds(5);
  while (absl::Now() < until) {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (lines.size() >= 3) break;
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  log->reset();
  EXPECT_EQ(lines, (std::vector<std::string>{"first", "second", "partial"}));
}

TEST_F(FakeShimTest, ShimLogRefusesANonFifo) {
  WriteFile(bundle_ + "/log", "a regular file");
  auto log = ShimLog::Open(bundle_, nullptr);
  EXPECT_EQ(log.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(Msg(log.status()), HasSubstr("not a FIFO"));
}

TEST_F(FakeShimTest, EventSinkAcknowledgesForward) {
  int calls = 0;
  std::mutex mu;
  auto sink = ServeShimEvents(dir_.File("ev.sock.ttrpc"), [&](const std::string& req) {
    std::lock_guard<std::mutex> lock(mu);
    calls += req == "payload";
  });
  ASSERT_TRUE(sink.ok()) << sink.status();
  auto client = Client::Connect(dir_.File("ev.sock.ttrpc"), absl::Seconds(2));
  ASSERT_TRUE(client.ok()) << client.status();
  auto r =
      (*client)->CallRaw(kShimEventsService, "Forward", "payload", absl::Now() + absl::Seconds(5));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, "");
  (*client)->Close();
  (*sink)->Shutdown(absl::Seconds(1));
  EXPECT_EQ(calls, 1);
}

// Every TaskClient method reaches containerd.task.v2.Task/<Method> with its request, and
// errors keep the server's code and message.
TEST(TaskClientTest, CallsEachMethodByName) {
  TempDir dir("task-client");
  Server server;
  std::mutex mu;
  std::vector<std::string> seen;
  for (const char* m : {"Create", "Start", "State", "Kill", "Delete", "Wait", "Pids", "Exec",
                        "ResizePty", "CloseIO", "Update", "Stats", "Connect", "Shutdown"}) {
    server.Register(
        kTaskService, m,
        [&, m](const std::string& payload, const CallContext&) -> absl::StatusOr<std::string> {
          std::lock_guard<std::mutex> lock(mu);
          seen.push_back(m);
          if (std::string(m) == "Kill") return absl::NotFoundError("no such task");
          if (std::string(m) == "Create") {
            containerd::task::v2::CreateTaskRequest req;
            req.ParseFromString(payload);
            containerd::task::v2::CreateTaskResponse resp;
            resp.set_pid(req.id() == "c1" ? 77 : 0);
            return resp.SerializeAsString();
          }
          return std::string();
        });
  }
  ASSERT_TRUE(server.Listen(dir.File("t.sock")).ok());
  ASSERT_TRUE(server.Start().ok());
  auto client = TaskClient::Connect("unix://" + dir.File("t.sock"), absl::Seconds(2));
  ASSERT_TRUE(client.ok()) << client.status();
  TaskClient& c = **client;
  const absl::Time d = absl::Now() + absl::Seconds(10);
  namespace t = containerd::task::v2;
  t::CreateTaskRequest create;
  create.set_id("c1");
  auto created = c.Create(create, d);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->pid(), 77u);
  EXPECT_TRUE(c.Start(t::StartRequest(), d).ok());
  EXPECT_TRUE(c.State(t::StateRequest(), d).ok());
  auto killed = c.Kill(t::KillRequest(), d);
  EXPECT_EQ(killed.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Msg(killed.status()), "no such task");
  EXPECT_TRUE(c.Delete(t::DeleteRequest(), d).ok());
  EXPECT_TRUE(c.Wait(t::WaitRequest(), d).ok());
  EXPECT_TRUE(c.Pids(t::PidsRequest(), d).ok());
  EXPECT_TRUE(c.Exec(t::ExecProcessRequest(), d).ok());
  EXPECT_TRUE(c.ResizePty(t::ResizePtyRequest(), d).ok());
  EXPECT_TRUE(c.CloseIO(t::CloseIORequest(), d).ok());
  EXPECT_TRUE(c.Update(t::UpdateTaskRequest(), d).ok());
  EXPECT_TRUE(c.Stats(t::StatsRequest(), d).ok());
  EXPECT_TRUE(c.ConnectTask(t::ConnectRequest(), d).ok());
  EXPECT_TRUE(c.Shutdown(t::ShutdownRequest(), d).ok());
  EXPECT_EQ(seen, (std::vector<std::string>{"Create", "Start", "State", "Kill", "Delete", "Wait",
                                            "Pids", "Exec", "ResizePty", "CloseIO", "Update",
                                            "Stats", "Connect", "Shutdown"}));
  EXPECT_TRUE(c.connected());
  server.Shutdown(absl::ZeroDuration());
  auto after = c.State(t::StateRequest(), absl::Now() + absl::Seconds(5));
  EXPECT_EQ(after.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_FALSE(c.connected());
}

TEST(RunCommandTest, CapturesOutputAndExitStatus) {
  auto r =
      RunCommand({"/bin/sh", "-c", "echo out; echo err >&2; exit 4"}, "/", {}, absl::Seconds(10));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_status, 4);
  EXPECT_EQ(r->out, "out\n");
  EXPECT_EQ(r->err, "err\n");
  auto sig = RunCommand({"/bin/sh", "-c", "kill -9 $$"}, "/", {}, absl::Seconds(10));
  ASSERT_TRUE(sig.ok()) << sig.status();
  EXPECT_EQ(sig->exit_status, 128 + 9);
  auto env = RunCommand({"/bin/sh", "-c", "echo $BERTH_X"}, "/", {"BERTH_X=1", "BERTH_X=2"},
                        absl::Seconds(10));
  ASSERT_TRUE(env.ok());
  EXPECT_EQ(env->out, "2\n");
  auto cwd = RunCommand({"/bin/true"}, "/nonexistent-dir", {}, absl::Seconds(10));
  EXPECT_EQ(cwd.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(Msg(cwd.status()), HasSubstr("/nonexistent-dir"));
}

TEST(RunCommandTest, CallersDescriptorsDoNotLeak) {
  int fd = ::open("/dev/null", O_RDONLY);  // deliberately without O_CLOEXEC
  ASSERT_GE(fd, 0);
  int high = ::fcntl(fd, F_DUPFD, 57);
  ::close(fd);
  ASSERT_GE(high, 57);
  auto r =
      RunCommand({"/bin/sh", "-c",
                  absl::StrCat("test -e /proc/self/fd/", high, " && echo leaked || echo clean")},
                 "/", {}, absl::Seconds(10));
  ::close(high);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->out, "clean\n");
}

}  // namespace
}  // namespace berth::ttrpc
