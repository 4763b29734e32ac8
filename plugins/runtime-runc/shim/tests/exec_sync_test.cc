// SPDX-License-Identifier: Apache-2.0
#include "plugins/runtime-runc/shim/exec_sync.h"

#include <dirent.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tests/support/test_support.h"

namespace berth::shim {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

// A /tmp/berth-exec-sync-XXXXXX directory, removed on destruction.
class TempDir : public berth::testing::TempDir {
 public:
  TempDir() : berth::testing::TempDir("exec-sync") {}
};

ExecSyncOptions Sh(const std::string& script, milliseconds timeout = milliseconds(0)) {
  ExecSyncOptions o;
  o.argv = {"/bin/sh", "-c", script};
  o.timeout = timeout;
  return o;
}

pid_t ReadPid(const std::string& file) {
  std::ifstream in(file);
  pid_t pid = -1;
  in >> pid;
  return pid;
}

// State letter from /proc/<pid>/stat, or '\0' when the process does not exist.
char ProcState(pid_t pid, pid_t* ppid = nullptr) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return '\0';
  size_t paren = line.rfind(')');
  if (paren == std::string::npos || paren + 2 >= line.size()) return '\0';
  if (ppid != nullptr) *ppid = std::atoi(line.c_str() + paren + 4);
  return line[paren + 2];
}

// True once `pid` is gone or a zombie (killed, waiting for init to reap it).
bool GoneWithin(pid_t pid, milliseconds limit) {
  auto end = Clock::now() + limit;
  while (true) {
    char s = ProcState(pid);
    if (s == '\0' || s == 'Z') return true;
    if (Clock::now() >= end) return false;
    std::this_thread::sleep_for(milliseconds(20));
  }
}

int CountOpenFds() {
  int n = 0;
  DIR* d = ::opendir("/proc/self/fd");
  if (d == nullptr) return -1;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] != '.') ++n;
  }
  ::closedir(d);
  return n - 1;  // the DIR's own fd
}

std::vector<pid_t> ZombieChildren() {
  std::vector<pid_t> zombies;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    std::string name = entry.path().filename();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    pid_t pid = std::atoi(name.c_str());
    pid_t ppid = 0;
    if (ProcState(pid, &ppid) == 'Z' && ppid == ::getpid()) zombies.push_back(pid);
  }
  return zombies;
}

TEST(ExecSyncTest, ExitCodeZero) {
  auto r = ExecSync(Sh("exit 0"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 0);
  EXPECT_FALSE(r->timed_out);
  EXPECT_FALSE(r->drain_cut_short);
}

TEST(ExecSyncTest, ExitCodeThree) {
  auto r = ExecSync(Sh("exit 3"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 3);
  EXPECT_FALSE(r->timed_out);
}

TEST(ExecSyncTest, SeparatesStdoutAndStderr) {
  auto r = ExecSync(Sh("echo out; echo err >&2; echo out2"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stdout_data, "out\nout2\n");
  EXPECT_EQ(r->stderr_data, "err\n");
  EXPECT_FALSE(r->stdout_truncated);
  EXPECT_FALSE(r->stderr_truncated);
}

TEST(ExecSyncTest, LargeOutputTruncatedAtCapWithoutBlocking) {
  auto r = ExecSync(Sh("head -c 41943040 /dev/zero; echo done >&2", milliseconds(30000)));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 0);
  EXPECT_FALSE(r->timed_out);
  EXPECT_TRUE(r->stdout_truncated);
  EXPECT_EQ(r->stdout_data.size(), size_t{16} << 20);
  EXPECT_EQ(r->stdout_data.find_first_not_of('\0'), std::string::npos);
  EXPECT_EQ(r->stderr_data, "done\n");
  EXPECT_FALSE(r->stderr_truncated);
}

TEST(ExecSyncTest, SmallCapOnStderr) {
  ExecSyncOptions o = Sh("printf 0123456789abcdef >&2; printf xy");
  o.max_output_bytes = 10;
  auto r = ExecSync(o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stderr_data, "0123456789");
  EXPECT_TRUE(r->stderr_truncated);
  EXPECT_EQ(r->stdout_data, "xy");
  EXPECT_FALSE(r->stdout_truncated);
}

TEST(ExecSyncTest, TimeoutKillsTheProcessGroup) {
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  const std::string script =
      "echo $$ > " + dir.File("sh") + "; sleep 30 & echo $! > " + dir.File("bg") + "; wait";
  auto t0 = Clock::now();
  auto r = ExecSync(Sh(script, milliseconds(500)));
  auto elapsed = Clock::now() - t0;
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->timed_out);
  EXPECT_EQ(r->exit_code, -1);
  EXPECT_GE(elapsed, milliseconds(500));
  EXPECT_LT(elapsed, milliseconds(700));

  pid_t sh = ReadPid(dir.File("sh"));
  pid_t bg = ReadPid(dir.File("bg"));
  ASSERT_GT(sh, 0);
  ASSERT_GT(bg, 0);
  EXPECT_EQ(sh, r->pid);
  EXPECT_NE(::kill(sh, 0), 0) << "direct child must be reaped";
  EXPECT_TRUE(GoneWithin(bg, milliseconds(2000))) << "background sleep " << bg << " survived";
}

TEST(ExecSyncTest, SleepTimesOutPromptly) {
  auto t0 = Clock::now();
  auto r = ExecSync(Sh("sleep 30", milliseconds(300)));
  auto elapsed = Clock::now() - t0;
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->timed_out);
  EXPECT_LT(elapsed, milliseconds(500));
  EXPECT_NE(::kill(r->pid, 0), 0);
}

TEST(ExecSyncTest, BackgroundChildHoldingPipesReturnsAfterGrace) {
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  ExecSyncOptions o = Sh("sleep 30 & echo $! > " + dir.File("bg") + "; echo hi");
  o.drain_grace = milliseconds(300);
  auto t0 = Clock::now();
  auto r = ExecSync(o);
  auto elapsed = Clock::now() - t0;
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stdout_data, "hi\n");
  EXPECT_EQ(r->exit_code, 0);
  EXPECT_FALSE(r->timed_out);
  EXPECT_TRUE(r->drain_cut_short);
  EXPECT_GE(elapsed, milliseconds(300));
  EXPECT_LT(elapsed, milliseconds(1500));
  pid_t bg = ReadPid(dir.File("bg"));
  ASSERT_GT(bg, 0);
  EXPECT_TRUE(GoneWithin(bg, milliseconds(2000))) << "background sleep " << bg << " survived";
}

TEST(ExecSyncTest, DefaultGraceIsAboutOneSecond) {
  auto t0 = Clock::now();
  auto r = ExecSync(Sh("sleep 30 & echo hi"));
  auto elapsed = Clock::now() - t0;
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stdout_data, "hi\n");
  EXPECT_TRUE(r->drain_cut_short);
  EXPECT_GE(elapsed, milliseconds(1000));
  EXPECT_LT(elapsed, milliseconds(2500));
}

TEST(ExecSyncTest, TimeoutCoversDrainAfterChildExit) {
  ExecSyncOptions o = Sh("sleep 30 & echo hi", milliseconds(300));
  o.drain_grace = milliseconds(10000);
  auto t0 = Clock::now();
  auto r = ExecSync(o);
  auto elapsed = Clock::now() - t0;
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->timed_out);
  EXPECT_EQ(r->exit_code, 0) << "the direct child exited before the deadline";
  EXPECT_EQ(r->stdout_data, "hi\n");
  EXPECT_LT(elapsed, milliseconds(500));
}

TEST(ExecSyncTest, KilledBySignalIs128PlusSignal) {
  auto r = ExecSync(Sh("kill -9 $$"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 137);
  EXPECT_FALSE(r->timed_out);

  r = ExecSync(Sh("kill -TERM $$"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 128 + SIGTERM);
}

TEST(ExecSyncTest, StdinRoundTripThroughCat) {
  std::string input(5 << 20, '\0');
  uint32_t x = 12345;
  for (char& c : input) {
    x = x * 1103515245 + 12345;
    c = static_cast<char>(x >> 24);
  }
  ExecSyncOptions o;
  o.argv = {"/bin/cat"};
  o.stdin_data = input;
  o.timeout = milliseconds(30000);
  auto r = ExecSync(o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 0);
  EXPECT_FALSE(r->stdout_truncated);
  EXPECT_EQ(r->stdout_data.size(), input.size());
  EXPECT_TRUE(r->stdout_data == input);
}

TEST(ExecSyncTest, UnreadStdinDoesNotBlockOrKillUs) {
  ExecSyncOptions o = Sh("exit 4", milliseconds(10000));
  o.stdin_data = std::string(5 << 20, 'x');
  auto r = ExecSync(o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 4);
  EXPECT_FALSE(r->timed_out);
}

TEST(ExecSyncTest, MissingBinaryIsNotFoundNamingThePath) {
  ExecSyncOptions o;
  o.argv = {"/nonexistent/berth-no-such-binary"};
  auto r = ExecSync(o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(r.status().message().find("/nonexistent/berth-no-such-binary"), absl::string_view::npos)
      << r.status();

  o.argv = {"berth-no-such-binary-on-path"};
  r = ExecSync(o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
}

TEST(ExecSyncTest, EmptyArgvIsInvalid) {
  auto r = ExecSync(ExecSyncOptions{});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ExecSyncTest, PathLookupEnvAndCwd) {
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  ExecSyncOptions o;
  o.argv = {"sh", "-c", "echo \"$FOO\"; pwd"};
  o.env = {"FOO=bar baz", "PATH=/usr/bin:/bin"};
  o.cwd = dir.str();
  auto r = ExecSync(o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stdout_data, "bar baz\n" + dir.str() + "\n");
}

TEST(ExecSyncTest, NoFdLeakOver50Runs) {
  const int before = CountOpenFds();
  ASSERT_GT(before, 0);
  for (int i = 0; i < 50; ++i) {
    switch (i % 4) {
      case 0:
        ASSERT_TRUE(ExecSync(Sh("echo hi; echo err >&2")).ok());
        break;
      case 1: {
        ExecSyncOptions o = Sh("cat");
        o.stdin_data = "some input";
        ASSERT_TRUE(ExecSync(o).ok());
        break;
      }
      case 2: {
        ExecSyncOptions o;
        o.argv = {"/nonexistent/berth-no-such-binary"};
        ASSERT_FALSE(ExecSync(o).ok());
        break;
      }
      case 3:
        ASSERT_TRUE(ExecSync(Sh("sleep 5", milliseconds(20))).ok());
        break;
    }
  }
  EXPECT_EQ(CountOpenFds(), before);
}

TEST(ExecSyncTest, NoZombiesLeft) {
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(ExecSync(Sh("exit 1")).ok());
    ASSERT_TRUE(ExecSync(Sh("kill -9 $$")).ok());
    ASSERT_TRUE(ExecSync(Sh("sleep 5", milliseconds(20))).ok());
  }
  ExecSyncOptions o = Sh("sleep 30 & echo hi");
  o.drain_grace = milliseconds(50);
  ASSERT_TRUE(ExecSync(o).ok());
  EXPECT_TRUE(ZombieChildren().empty());
}

TEST(ExecSyncTest, ChildDoesNotInheritIgnoredSigpipe) {
  struct sigaction ignore = {};
  struct sigaction old = {};
  ignore.sa_handler = SIG_IGN;
  ASSERT_EQ(::sigaction(SIGPIPE, &ignore, &old), 0);
  // `yes` dies of SIGPIPE once `head` exits, unless SIGPIPE is ignored (then it loops on EPIPE
  // errors or exits 1). The pipeline's status is head's; check yes's via a subshell.
  auto r = ExecSync(Sh("(yes; echo $? >&2) | head -c 1 >/dev/null", milliseconds(5000)));
  ::sigaction(SIGPIPE, &old, nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->timed_out);
  EXPECT_EQ(r->stderr_data, "141\n");
}

}  // namespace
}  // namespace berth::shim
