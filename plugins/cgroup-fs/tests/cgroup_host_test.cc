// SPDX-License-Identifier: Apache-2.0
// The cgroupfs driver on this host's real cgroups (root; v1 and hybrid hosts): a child that
// allocates memory and burns CPU in a cgroup of its own, its statistics, and removal while
// busy and after it exited. Every cgroup and process made here is removed, also on failure.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "plugins/cgroup-fs/cgroup_fs.h"

namespace berth::cgroupfs {
namespace {

using ::testing::HasSubstr;

constexpr char kRoot[] = "/sys/fs/cgroup";
constexpr uint64_t kLimit = 256ull << 20;
constexpr size_t kChildBytes = 32 << 20;

bool WriteText(const std::string& path, const std::string& text) {
  std::ofstream f(path);
  f << text;
  f.flush();
  return static_cast<bool>(f);
}

std::string ReadText(const std::string& path) {
  std::ifstream f(path);
  std::string text;
  std::getline(f, text);
  return text;
}

class HostCgroupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root to create cgroups";
    absl::StatusOr<CgroupFs> fs = CgroupFs::Open(kRoot);
    ASSERT_TRUE(fs.ok()) << fs.status();
    fs_.emplace(std::move(*fs));
    CgroupVersion v = fs_->layout().version;
    if (v != CgroupVersion::kV1 && v != CgroupVersion::kHybrid) {
      GTEST_SKIP() << "this test covers cgroup v1 and hybrid hosts; this one is "
                   << CgroupVersionName(v) << " (v2 is covered by the fake-tree tests)";
    }
    ASSERT_TRUE(fs_->Readiness().ready) << fs_->Readiness().message;
    std::random_device rd;
    parent_ = "/berth-test-" + std::to_string(::getpid()) + "-" + std::to_string(rd() % 100000);
    path_ = parent_ + "/ctr";
    // As the OCI runtime does: the cgroup in every hierarchy.
    for (const std::string& base : fs_->layout().AllHierarchies()) {
      for (const std::string& p : {parent_, path_}) {
        ASSERT_EQ(::mkdir((base + p).c_str(), 0755), 0) << base + p << ": " << strerror(errno);
        made_.push_back(base + p);
        // A new cpuset has no CPUs nor memory nodes, and takes no task until given some.
        if (base == fs_->layout().V1Dir("cpuset")) {
          std::string up = (base + p).substr(0, (base + p).rfind('/'));
          for (const char* f : {"/cpuset.cpus", "/cpuset.mems"}) {
            ASSERT_TRUE(WriteText(base + p + f, ReadText(up + f))) << base + p + f;
          }
        }
      }
    }
    ASSERT_TRUE(WriteText(fs_->layout().V1Dir("memory") + path_ + "/memory.limit_in_bytes",
                          std::to_string(kLimit)));
    ASSERT_TRUE(WriteText(fs_->layout().V1Dir("pids") + path_ + "/pids.max", "64"));
  }

  void TearDown() override {
    KillChild();
    // Deepest first; a cgroup can stay busy for a moment after its last task was reaped.
    for (auto it = made_.rbegin(); it != made_.rend(); ++it) {
      for (int i = 0; i < 50 && ::rmdir(it->c_str()) != 0 && errno == EBUSY; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    }
  }

  // Forks a child that waits until it is in the cgroup, then touches kChildBytes and spins.
  void StartChild() {
    int fds[2];
    ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0) << strerror(errno);
    if (pid == 0) {
      ::close(fds[1]);
      char c;
      if (::read(fds[0], &c, 1) != 1) ::_exit(1);
      void* mem =
          ::mmap(nullptr, kChildBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (mem == MAP_FAILED) ::_exit(2);
      // Volatile stores, which the compiler cannot drop as it could a memset never read.
      volatile char* bytes = static_cast<volatile char*>(mem);
      for (size_t i = 0; i < kChildBytes; i += 4096) bytes[i] = 1;
      volatile uint64_t spin = 0;
      for (;;) spin = spin + 1;  // killed by the test
    }
    child_ = pid;
    ::close(fds[0]);
    for (const std::string& base : fs_->layout().AllHierarchies()) {
      EXPECT_TRUE(WriteText(base + path_ + "/cgroup.procs", std::to_string(pid)))
          << "cannot move pid " << pid << " into " << base + path_;
    }
    ASSERT_EQ(::write(fds[1], "go", 1), 1);
    ::close(fds[1]);
  }

  void KillChild() {
    if (child_ <= 0) return;
    ::kill(child_, SIGKILL);  // our own child, not reaped yet: the pid cannot be reused
    int status;
    while (::waitpid(child_, &status, 0) < 0 && errno == EINTR) {
    }
    child_ = -1;
  }

  std::optional<CgroupFs> fs_;
  std::string parent_, path_;
  std::vector<std::string> made_;
  pid_t child_ = -1;
};

TEST_F(HostCgroupTest, StatsOfABusyChild) {
  StartChild();
  absl::StatusOr<CgroupStats> s;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  do {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    s = fs_->Stats(path_);
    ASSERT_TRUE(s.ok()) << s.status();
  } while ((s->memory_rss_bytes.value_or(0) < kChildBytes / 2 || s->cpu_usage_ns.value_or(0) == 0 ||
            s->cpu_user_ns.value_or(0) == 0) &&
           std::chrono::steady_clock::now() < deadline);
  SCOPED_TRACE(StatsToJson(*s));
  RecordProperty("stats", StatsToJson(*s));
  EXPECT_GT(s->cpu_usage_ns.value_or(0), 0u);
  EXPECT_GT(s->cpu_user_ns.value_or(0), 0u);
  EXPECT_TRUE(s->cpu_system_ns.has_value());
  EXPECT_GE(s->memory_usage_bytes.value_or(0), kChildBytes / 2);
  ASSERT_TRUE(s->memory_working_set_bytes.has_value());
  EXPECT_LE(*s->memory_working_set_bytes, *s->memory_usage_bytes);
  EXPECT_GE(s->memory_rss_bytes.value_or(0), kChildBytes / 2);
  EXPECT_GT(s->memory_page_faults.value_or(0), 0u);
  EXPECT_TRUE(s->memory_major_page_faults.has_value());
  EXPECT_EQ(s->memory_limit_bytes, kLimit);
  EXPECT_EQ(s->memory_oom_kills, 0u);
  EXPECT_GE(s->pids_current.value_or(0), 1u);
  EXPECT_EQ(s->pids_limit, 64u);

  // The pod's cgroup counts its children; without a limit of its own, none is reported.
  absl::StatusOr<CgroupStats> pod = fs_->Stats(parent_);
  ASSERT_TRUE(pod.ok()) << pod.status();
  EXPECT_GE(pod->pids_current.value_or(0), 1u);
  EXPECT_EQ(pod->memory_limit_bytes, std::nullopt);
}

TEST_F(HostCgroupTest, RemoveWhileBusyThenAfterExit) {
  StartChild();
  const pid_t pid = child_;
  absl::Status busy = fs_->Remove(path_);
  EXPECT_EQ(busy.code(), absl::StatusCode::kFailedPrecondition) << busy;
  EXPECT_THAT(busy.message(), HasSubstr("pid " + std::to_string(pid)));
  EXPECT_THAT(busy.message(), HasSubstr(path_));

  KillChild();
  absl::Status removed = fs_->Remove(path_);
  ASSERT_TRUE(removed.ok()) << removed;
  for (const std::string& base : fs_->layout().AllHierarchies()) {
    EXPECT_NE(::access((base + path_).c_str(), F_OK), 0) << base + path_ << " still exists";
    EXPECT_EQ(::access((base + parent_).c_str(), F_OK), 0) << base + parent_ << " was removed";
  }
  EXPECT_TRUE(fs_->Remove(path_).ok());  // absent: OK
  EXPECT_EQ(fs_->Stats(path_).status().code(), absl::StatusCode::kNotFound);

  // The pod's cgroup with its (empty) container cgroups below it, in one call.
  for (const std::string& base : fs_->layout().AllHierarchies()) {
    ASSERT_EQ(::mkdir((base + path_).c_str(), 0755), 0) << strerror(errno);
  }
  ASSERT_TRUE(fs_->Remove(parent_).ok());
  for (const std::string& base : fs_->layout().AllHierarchies()) {
    EXPECT_NE(::access((base + parent_).c_str(), F_OK), 0) << base + parent_ << " still exists";
  }
}

}  // namespace
}  // namespace berth::cgroupfs
