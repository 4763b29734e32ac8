// SPDX-License-Identifier: Apache-2.0
// Running plugin binaries: environment, stdin, captured output, deadlines, CNI errors.
#include "plugins/cni/cni_exec.h"

#include <signal.h>

#include <chrono>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "plugins/cni/tests/test_support.h"

namespace berth::cni {
namespace {

using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;
using namespace ::berth::cni::testing;  // NOLINT(build/namespaces)

std::string Message(const absl::Status& s) { return std::string(s.message()); }

// Is `pid` gone (or a zombie nobody reaped yet, which is dead all the same)?
bool Dead(pid_t pid) {
  std::string stat = ReadTextFile("/proc/" + std::to_string(pid) + "/stat");
  if (stat.empty()) return true;
  size_t paren = stat.rfind(')');
  return paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] == 'Z';
}

TEST(RunProcessTest, EnvironmentStdinAndOutput) {
  TempDir dir;
  WriteTextFile(dir / "p", "#!/bin/sh\nenv > " + (dir / "env") + "\ncat\necho oops >&2\nexit 3\n",
                0755);
  auto r = RunProcess(dir / "p", {"A=1", "PATH=/usr/bin:/bin"}, "hello stdin", absl::Seconds(30));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 3);
  EXPECT_EQ(r->term_signal, 0);
  EXPECT_EQ(r->out, "hello stdin");
  EXPECT_EQ(r->err, "oops\n");
  auto env = ReadEnv(dir / "env");
  EXPECT_EQ(env, (std::map<std::string, std::string>{{"A", "1"}, {"PATH", "/usr/bin:/bin"}}));
}

TEST(RunProcessTest, LargeStdoutIsCappedWithoutBlocking) {
  TempDir dir;
  WriteTextFile(dir / "p", "#!/bin/sh\nhead -c 6000000 /dev/zero\nhead -c 200000 /dev/zero >&2\n",
                0755);
  auto r = RunProcess(dir / "p", {"PATH=/usr/bin:/bin"}, "", absl::Seconds(30));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 0);
  EXPECT_TRUE(r->out_truncated);
  EXPECT_EQ(r->out.size(), kMaxStdout);
  EXPECT_EQ(r->err.size(), kMaxStderr);
}

TEST(RunProcessTest, TimeoutKillsTheProcessGroup) {
  TempDir dir;
  // A child in the background (as a plugin's helper would be) and the plugin itself.
  WriteTextFile(dir / "p",
                "#!/bin/sh\nsleep 60 &\necho $! > " + (dir / "child") + "\necho $$ > " +
                    (dir / "self") + "\nwait\n",
                0755);
  auto start = std::chrono::steady_clock::now();
  auto r = RunProcess(dir / "p", {"PATH=/usr/bin:/bin"}, "", absl::Milliseconds(500));
  auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(Message(r.status()), HasSubstr("did not finish within 500ms and was killed"));
  EXPECT_LT(took, std::chrono::seconds(5));
  pid_t self = std::stoi(ReadTextFile(dir / "self"));
  pid_t child = std::stoi(ReadTextFile(dir / "child"));
  EXPECT_TRUE(Dead(self));
  // The kill is asynchronous for a process we do not reap: give it a moment.
  for (int i = 0; i < 100 && !Dead(child); ++i) ::usleep(20000);
  EXPECT_TRUE(Dead(child)) << "the plugin's background child survived";
}

TEST(RunProcessTest, DaemonHoldingStdoutDoesNotBlock) {
  TempDir dir;
  // The plugin exits; a descendant keeps stdout open for a long time.
  WriteTextFile(
      dir / "p",
      "#!/bin/sh\necho result\n(sleep 3; echo late) &\necho $! > " + (dir / "child") + "\nexit 0\n",
      0755);
  auto start = std::chrono::steady_clock::now();
  auto r = RunProcess(dir / "p", {"PATH=/usr/bin:/bin"}, "", absl::Seconds(30));
  auto took = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->out, "result\n");
  EXPECT_LT(took, std::chrono::milliseconds(2500));
  ::kill(std::stoi(ReadTextFile(dir / "child")), SIGKILL);
}

TEST(RunProcessTest, CannotExecute) {
  TempDir dir;
  WriteTextFile(dir / "noexec", "#!/bin/sh\n", 0644);
  auto r = RunProcess(dir / "noexec", {}, "", absl::Seconds(5));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(Message(r.status()), HasSubstr("cannot execute " + (dir / "noexec")));
}

TEST(PluginRunnerTest, EnvironmentOfAttachmentCommands) {
  PluginRunner runner({"/opt/cni/bin", "/usr/lib/cni"}, absl::Minutes(2));
  Invocation inv{"ADD", "sb1", "/run/netns/sb1", "eth0", "IgnoreUnknown=1"};
  EXPECT_THAT(runner.Environment(inv),
              UnorderedElementsAre("CNI_COMMAND=ADD", "CNI_CONTAINERID=sb1",
                                   "CNI_NETNS=/run/netns/sb1", "CNI_IFNAME=eth0",
                                   "CNI_ARGS=IgnoreUnknown=1", "CNI_PATH=/opt/cni/bin:/usr/lib/cni",
                                   "PATH=/usr/sbin:/usr/bin:/sbin:/bin"));
  Invocation gc{"GC", "", "", "", ""};
  EXPECT_THAT(runner.Environment(gc),
              UnorderedElementsAre("CNI_COMMAND=GC", "CNI_PATH=/opt/cni/bin:/usr/lib/cni",
                                   "PATH=/usr/sbin:/usr/bin:/sbin:/bin"));
}

TEST(PluginRunnerTest, RunsThePluginWithItsEnvironmentOnly) {
  TempDir dir;
  ::setenv("BERTH_CNI_TEST_LEAK", "secret", 1);
  WriteTextFile(dir / "bin/echoer", "#!/bin/sh\nenv > " + (dir / "env") + "\ncat\n", 0755);
  PluginRunner runner({dir / "bin"}, absl::Seconds(30));
  auto out = runner.Run("echoer", "net", {"DEL", "sb", "", "eth0", "X=1"}, R"({"a":1})");
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, R"({"a":1})");
  auto env = ReadEnv(dir / "env");
  EXPECT_EQ(env, (std::map<std::string, std::string>{{"CNI_COMMAND", "DEL"},
                                                     {"CNI_CONTAINERID", "sb"},
                                                     {"CNI_NETNS", ""},
                                                     {"CNI_IFNAME", "eth0"},
                                                     {"CNI_ARGS", "X=1"},
                                                     {"CNI_PATH", dir / "bin"},
                                                     {"PATH", "/usr/sbin:/usr/bin:/sbin:/bin"}}));
}

TEST(PluginRunnerTest, CniErrorBecomesTheMessage) {
  TempDir dir;
  WriteTextFile(dir / "bin/bridge",
                "#!/bin/sh\necho '{\"cniVersion\":\"1.0.0\",\"code\":7,\"msg\":\"invalid "
                "config\",\"details\":\"subnet 10.0.0.0/31 too small\"}'\necho 'trace: x' >&2\n"
                "exit 1\n",
                0755);
  PluginRunner runner({dir / "bin"}, absl::Seconds(30));
  auto out = runner.Run("bridge", "mynet", {"ADD", "sb", "/x", "eth0", ""}, "{}");
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(Message(out.status()),
            "plugin \"bridge\" (ADD, network \"mynet\"): invalid config: subnet 10.0.0.0/31 too "
            "small (CNI error code 7); stderr: trace: x");
}

TEST(PluginRunnerTest, TryAgainIsUnavailable) {
  TempDir dir;
  WriteTextFile(dir / "bin/p", "#!/bin/sh\necho '{\"code\":11,\"msg\":\"busy\"}'\nexit 1\n", 0755);
  PluginRunner runner({dir / "bin"}, absl::Seconds(30));
  auto out = runner.Run("p", "n", {"ADD", "sb", "/x", "eth0", ""}, "{}");
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(Message(out.status()), "plugin \"p\" (ADD, network \"n\"): busy (CNI error code 11)");
}

TEST(PluginRunnerTest, ErrorObjectOnStderr) {
  TempDir dir;
  WriteTextFile(dir / "bin/p", "#!/bin/sh\necho '{\"code\":4,\"msg\":\"no netns\"}' >&2\nexit 1\n",
                0755);
  PluginRunner runner({dir / "bin"}, absl::Seconds(30));
  auto out = runner.Run("p", "n", {"ADD", "sb", "/x", "eth0", ""}, "{}");
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(Message(out.status()),
            "plugin \"p\" (ADD, network \"n\"): no netns (CNI error code 4)");
}

TEST(PluginRunnerTest, NoErrorObject) {
  TempDir dir;
  WriteTextFile(dir / "bin/p", "#!/bin/sh\necho 'panic: nil map'\necho 'goroutine 1' >&2\nexit 2\n",
                0755);
  PluginRunner runner({dir / "bin"}, absl::Seconds(30));
  auto out = runner.Run("p", "n", {"DEL", "sb", "", "eth0", ""}, "{}");
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(Message(out.status()),
            "plugin \"p\" (DEL, network \"n\") exited with status 2 without a CNI error object; "
            "stdout: panic: nil map; stderr: goroutine 1");
}

TEST(PluginRunnerTest, MissingBinary) {
  TempDir dir;
  PluginRunner runner({dir / "a", dir / "b"}, absl::Seconds(30));
  auto out = runner.Run("flannel", "n", {"ADD", "sb", "/x", "eth0", ""}, "{}");
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(Message(out.status()),
              HasSubstr("plugin \"flannel\" (ADD, network \"n\"): CNI plugin binary \"flannel\" "
                        "not found in " +
                        (dir / "a") + ":" + (dir / "b")));
}

TEST(PluginRunnerTest, TimeoutNamesThePlugin) {
  TempDir dir;
  WriteTextFile(dir / "bin/slow", "#!/bin/sh\nexec sleep 30\n", 0755);
  PluginRunner runner({dir / "bin"}, absl::Milliseconds(300));
  auto start = std::chrono::steady_clock::now();
  auto out = runner.Run("slow", "n", {"ADD", "sb", "/x", "eth0", ""}, "{}");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(Message(out.status()),
            "plugin \"slow\" (ADD, network \"n\") did not finish within 300ms and was killed "
            "(plugin_timeout of io.berth.cni)");
}

}  // namespace
}  // namespace berth::cni
