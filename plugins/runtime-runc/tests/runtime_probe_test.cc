// SPDX-License-Identifier: Apache-2.0
#include "plugins/runtime-runc/runtime_probe.h"

#include <elf.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_support.h"

namespace berth::runc {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using ::testing::HasSubstr;

// ---- Fixtures ------------------------------------------------------------------------------

// `runc --version` and `crun --version` of Debian 12.
constexpr char kRuncVersion[] =
    "runc version 1.1.5+ds1\n"
    "commit: 1.1.5+ds1-1+deb12u1\n"
    "spec: 1.0.2-dev\n"
    "go: go1.19.8\n"
    "libseccomp: 2.5.4\n";
constexpr char kCrunVersion[] =
    "crun version 1.8.1\n"
    "commit: f8a096be060b22ccd3d5f3ebe44108517fbf6c30\n"
    "rundir: /run/crun\n"
    "spec: 1.0.0\n"
    "+SYSTEMD +SELINUX +APPARMOR +CAP +SECCOMP +EBPF +YAJL\n";

// The Firecracker test VM this was written on: v1 controllers plus cgroup2 at .../unified.
constexpr char kHybridMountinfo[] =
    "22 27 0:21 / /proc rw,relatime - proc proc rw\n"
    "23 27 0:22 / /sys rw,relatime - sysfs sysfs rw\n"
    "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard\n"
    "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
    "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
    "33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct\n"
    "34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset\n"
    "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
    "36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices\n"
    "37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer\n"
    "38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio\n"
    "39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n"
    "40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n"
    "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";

// A systemd host in "legacy" mode (shared propagation, combined controllers, no unified).
constexpr char kV1Mountinfo[] =
    "24 29 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw\n"
    "29 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
    "31 24 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755\n"
    "33 31 0:28 / /sys/fs/cgroup/systemd rw,nosuid shared:11 - cgroup cgroup "
    "rw,xattr,release_agent=/lib/systemd/systemd-cgroups-agent,name=systemd\n"
    "36 31 0:31 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:15 - cgroup cgroup "
    "rw,cpu,cpuacct\n"
    "37 31 0:32 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid shared:16 - cgroup cgroup "
    "rw,net_cls,net_prio\n"
    "38 31 0:33 / /sys/fs/cgroup/memory rw,nosuid shared:17 - cgroup cgroup rw,memory\n";

// A systemd host in "unified" mode.
constexpr char kV2Mountinfo[] =
    "24 29 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw\n"
    "29 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
    "30 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 "
    "rw,nsdelegate,memory_recursiveprot\n";

CgroupHost HybridHost(std::vector<std::string> unified_controllers) {
  CgroupHost host;
  host.root = kCgroupRoot;
  host.layout = CgroupLayout::kHybrid;
  host.unified_controllers = std::move(unified_controllers);
  host.mounts.layout = CgroupLayout::kHybrid;
  host.mounts.root_fstype = "tmpfs";
  host.mounts.unified_cgroup2_mounts = 1;
  host.mounts.v1_controllers = {"memory", "name=systemd"};
  return host;
}

RuntimeIdentity Crun() { return *ParseRuntimeVersion(kCrunVersion); }
RuntimeIdentity Runc() { return *ParseRuntimeVersion(kRuncVersion); }

std::string ReadProcMountinfo() { return testing::ReadFile("/proc/self/mountinfo"); }

// The mount point of the first cgroup2 mount in this process's mount table, if any.
std::optional<std::string> FindCgroup2Mount() {
  std::istringstream lines(ReadProcMountinfo());
  std::string line;
  while (std::getline(lines, line)) {
    if (line.find(" - cgroup2 ") == std::string::npos) continue;
    std::istringstream fields(line);
    std::string id, parent, dev, root, mount_point;
    fields >> id >> parent >> dev >> root >> mount_point;
    if (mount_point.find('\\') == std::string::npos) return mount_point;
  }
  return std::nullopt;
}

bool StatfsIs(const std::string& path, long magic) {
  struct statfs st {};
  return ::statfs(path.c_str(), &st) == 0 && static_cast<long>(st.f_type) == magic;
}

// The host as crun would see it, when it is the case this probe is about.
bool HostIsHybridWithControllers() {
  absl::StatusOr<CgroupHost> host = ProbeCgroupHost();
  return host.ok() && host->layout == CgroupLayout::kHybrid && !host->unified_controllers.empty();
}

// A directory on a tmpfs (/dev/shm), removed on destruction; path() empty when unavailable.
class TmpfsDir {
 public:
  TmpfsDir() {
    if (!StatfsIs("/dev/shm", TMPFS_MAGIC)) return;
    char tmpl[] = "/dev/shm/berth-probe-XXXXXX";
    if (::mkdtemp(tmpl) != nullptr) path_ = tmpl;
  }
  ~TmpfsDir() {
    std::error_code ec;
    if (!path_.empty()) fs::remove_all(path_, ec);
  }
  TmpfsDir(const TmpfsDir&) = delete;
  TmpfsDir& operator=(const TmpfsDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Runs `body` in a forked child; returns its exit code (-1 if it did not exit normally).
template <typename F>
int InChild(F body) {
  pid_t pid = ::fork();
  if (pid == 0) ::_exit(body());
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// ---- ParseRuntimeVersion -------------------------------------------------------------------

TEST(ParseRuntimeVersionTest, Runc) {
  absl::StatusOr<RuntimeIdentity> id = ParseRuntimeVersion(kRuncVersion);
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(id->kind, RuntimeKind::kRunc);
  EXPECT_EQ(id->name, "runc");
  EXPECT_EQ(id->version, "1.1.5+ds1");
  EXPECT_EQ(id->spec_version, "1.0.2-dev");
}

TEST(ParseRuntimeVersionTest, Crun) {
  absl::StatusOr<RuntimeIdentity> id = ParseRuntimeVersion(kCrunVersion);
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(id->kind, RuntimeKind::kCrun);
  EXPECT_EQ(id->name, "crun");
  EXPECT_EQ(id->version, "1.8.1");
  EXPECT_EQ(id->spec_version, "1.0.0");
}

TEST(ParseRuntimeVersionTest, OtherRuntimeLeadingBlankLinesAndColon) {
  absl::StatusOr<RuntimeIdentity> id =
      ParseRuntimeVersion("\n  \r\nyouki version: 0.3.0\r\ncommit: abc\r\n");
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(id->kind, RuntimeKind::kOther);
  EXPECT_EQ(id->name, "youki");
  EXPECT_EQ(id->version, "0.3.0");
  EXPECT_EQ(id->spec_version, "");
}

TEST(ParseRuntimeVersionTest, RejectsGarbageAndEmpty) {
  EXPECT_EQ(ParseRuntimeVersion("").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseRuntimeVersion("\n\n").status().code(), absl::StatusCode::kInvalidArgument);
  absl::StatusOr<RuntimeIdentity> id = ParseRuntimeVersion("Usage: foo [options]\n");
  EXPECT_EQ(id.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(id.status().message()), HasSubstr("Usage: foo"));
  EXPECT_FALSE(ParseRuntimeVersion("runc version\n").ok());
}

// ---- IdentifyRuntime with fake binaries ----------------------------------------------------

class IdentifyRuntimeTest : public ::testing::Test {
 protected:
  std::string Script(const std::string& name, const std::string& body) {
    std::string path = (fs::path(dir_.path()) / name).string();
    testing::WriteFile(path, "#!/bin/sh\n" + body);
    ::chmod(path.c_str(), 0755);
    return path;
  }
  testing::TempDir dir_{"runtime-probe"};
};

TEST_F(IdentifyRuntimeTest, FakeCrun) {
  ASSERT_FALSE(dir_.path().empty());
  std::string bin = Script("crun", std::string("[ \"$1\" = --version ] || exit 3\nprintf '") +
                                       "crun version 9.9\\nspec: 1.2.0\\n'\n");
  absl::StatusOr<RuntimeIdentity> id = IdentifyRuntime(bin);
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(id->kind, RuntimeKind::kCrun);
  EXPECT_EQ(id->version, "9.9");
  EXPECT_EQ(id->spec_version, "1.2.0");
}

TEST_F(IdentifyRuntimeTest, NonZeroExitCarriesStderr) {
  ASSERT_FALSE(dir_.path().empty());
  std::string bin = Script("broken", "echo 'flag provided but not defined' >&2\nexit 2\n");
  absl::StatusOr<RuntimeIdentity> id = IdentifyRuntime(bin);
  EXPECT_EQ(id.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(id.status().message()), HasSubstr("flag provided but not defined"));
}

TEST_F(IdentifyRuntimeTest, UnrecognizedOutput) {
  ASSERT_FALSE(dir_.path().empty());
  std::string bin = Script("odd", "echo hello\n");
  absl::StatusOr<RuntimeIdentity> id = IdentifyRuntime(bin);
  EXPECT_EQ(id.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(id.status().message()), HasSubstr(bin));
}

TEST_F(IdentifyRuntimeTest, Timeout) {
  ASSERT_FALSE(dir_.path().empty());
  std::string bin = Script("hang", "exec sleep 30\n");
  auto start = std::chrono::steady_clock::now();
  absl::StatusOr<RuntimeIdentity> id = IdentifyRuntime(bin, milliseconds(300));
  EXPECT_EQ(id.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

TEST_F(IdentifyRuntimeTest, MissingBinary) {
  absl::StatusOr<RuntimeIdentity> id = IdentifyRuntime("/nonexistent/berth/crun");
  EXPECT_EQ(id.status().code(), absl::StatusCode::kNotFound);
}

TEST(IdentifyRuntimeHostTest, InstalledRuntimes) {
  int found = 0;
  for (const char* name : {"runc", "crun"}) {
    for (const char* dir : {"/usr/sbin/", "/usr/bin/", "/usr/local/sbin/", "/usr/local/bin/"}) {
      std::string path = std::string(dir) + name;
      if (::access(path.c_str(), X_OK) != 0) continue;
      absl::StatusOr<RuntimeIdentity> id = IdentifyRuntime(path);
      ASSERT_TRUE(id.ok()) << path << ": " << id.status();
      EXPECT_EQ(id->name, name);
      EXPECT_EQ(id->kind, std::string(name) == "runc" ? RuntimeKind::kRunc : RuntimeKind::kCrun);
      EXPECT_FALSE(id->version.empty());
      ++found;
      break;
    }
  }
  if (found == 0) GTEST_SKIP() << "neither runc nor crun is installed";
}

// ---- ParseCgroupMountinfo ------------------------------------------------------------------

TEST(ParseCgroupMountinfoTest, Hybrid) {
  absl::StatusOr<CgroupMountView> v = ParseCgroupMountinfo(kHybridMountinfo, "/sys/fs/cgroup");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->layout, CgroupLayout::kHybrid);
  EXPECT_EQ(v->root_fstype, "tmpfs");
  EXPECT_EQ(v->unified_cgroup2_mounts, 1);
  EXPECT_EQ(v->v1_controllers,
            (std::vector<std::string>{"blkio", "cpu", "cpuacct", "cpuset", "devices", "freezer",
                                      "memory", "name=systemd", "pids"}));
  // A trailing slash on the root is ignored.
  EXPECT_EQ(ParseCgroupMountinfo(kHybridMountinfo, "/sys/fs/cgroup/")->layout,
            CgroupLayout::kHybrid);
}

TEST(ParseCgroupMountinfoTest, V1WithOptionalFieldsAndCombinedControllers) {
  absl::StatusOr<CgroupMountView> v = ParseCgroupMountinfo(kV1Mountinfo, "/sys/fs/cgroup");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->layout, CgroupLayout::kV1);
  EXPECT_EQ(v->unified_cgroup2_mounts, 0);
  EXPECT_EQ(v->v1_controllers, (std::vector<std::string>{"cpu", "cpuacct", "memory", "name=systemd",
                                                         "net_cls", "net_prio"}));
}

TEST(ParseCgroupMountinfoTest, V2) {
  absl::StatusOr<CgroupMountView> v = ParseCgroupMountinfo(kV2Mountinfo, "/sys/fs/cgroup");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->layout, CgroupLayout::kV2);
  EXPECT_EQ(v->root_fstype, "cgroup2");
  EXPECT_TRUE(v->v1_controllers.empty());
}

TEST(ParseCgroupMountinfoTest, TmpfsOverUnifiedIsV1) {
  std::string text =
      std::string(kHybridMountinfo) + "90 41 0:50 / /sys/fs/cgroup/unified rw - tmpfs tmpfs rw\n";
  absl::StatusOr<CgroupMountView> v = ParseCgroupMountinfo(text, "/sys/fs/cgroup");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->layout, CgroupLayout::kV1);
  EXPECT_EQ(v->unified_cgroup2_mounts, 0);
}

TEST(ParseCgroupMountinfoTest, StackedCgroup2AtUnified) {
  std::string text = std::string(kHybridMountinfo) +
                     "91 41 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
  absl::StatusOr<CgroupMountView> v = ParseCgroupMountinfo(text, "/sys/fs/cgroup");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->layout, CgroupLayout::kHybrid);
  EXPECT_EQ(v->unified_cgroup2_mounts, 2);
}

TEST(ParseCgroupMountinfoTest, RootMountedOverHidesOldChildren) {
  std::string text =
      std::string(kHybridMountinfo) + "95 31 0:60 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n";
  absl::StatusOr<CgroupMountView> v = ParseCgroupMountinfo(text, "/sys/fs/cgroup");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->root_fstype, "tmpfs");
  EXPECT_EQ(v->layout, CgroupLayout::kUnknown);
  EXPECT_TRUE(v->v1_controllers.empty());
}

TEST(ParseCgroupMountinfoTest, UnifiedUnmountedIsV1) {
  std::string text(kHybridMountinfo);
  text.erase(text.find("41 31 0:38"));
  absl::StatusOr<CgroupMountView> v = ParseCgroupMountinfo(text, "/sys/fs/cgroup");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->layout, CgroupLayout::kV1);
}

TEST(ParseCgroupMountinfoTest, EscapedMountPoints) {
  constexpr char kText[] =
      "10 1 0:1 / / rw - ext4 /dev/vda rw\n"
      "11 10 0:2 / /srv/my\\040cgroups rw - tmpfs tmpfs rw\n"
      "12 11 0:3 / /srv/my\\040cgroups/memory rw - cgroup cgroup rw,memory\n"
      "13 11 0:4 / /srv/my\\040cgroups/unified rw - cgroup2 cgroup2 rw\n";
  absl::StatusOr<CgroupMountView> v = ParseCgroupMountinfo(kText, "/srv/my cgroups");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->layout, CgroupLayout::kHybrid);
  EXPECT_EQ(v->v1_controllers, std::vector<std::string>{"memory"});
}

TEST(ParseCgroupMountinfoTest, NotMountedOrOtherFs) {
  EXPECT_EQ(ParseCgroupMountinfo(kHybridMountinfo, "/elsewhere")->layout, CgroupLayout::kUnknown);
  EXPECT_EQ(ParseCgroupMountinfo(kHybridMountinfo, "/elsewhere")->root_fstype, "");
  absl::StatusOr<CgroupMountView> sys = ParseCgroupMountinfo(kHybridMountinfo, "/sys");
  ASSERT_TRUE(sys.ok());
  EXPECT_EQ(sys->layout, CgroupLayout::kUnknown);
  EXPECT_EQ(sys->root_fstype, "sysfs");
  EXPECT_EQ(ParseCgroupMountinfo("", "/sys/fs/cgroup")->layout, CgroupLayout::kUnknown);
}

TEST(ParseCgroupMountinfoTest, Malformed) {
  absl::StatusOr<CgroupMountView> v =
      ParseCgroupMountinfo("22 27 0:21 / /proc rw,relatime - proc proc rw\nbogus line\n", "/");
  EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(v.status().message()), HasSubstr("line 2"));
  // No " - " separator.
  EXPECT_FALSE(ParseCgroupMountinfo("1 2 0:1 / /x rw tmpfs tmpfs rw\n", "/x").ok());
  EXPECT_FALSE(ParseCgroupMountinfo(kHybridMountinfo, "relative/path").ok());
}

TEST(ParseCgroupControllersTest, Words) {
  EXPECT_EQ(ParseCgroupControllers("hugetlb\n"), std::vector<std::string>{"hugetlb"});
  EXPECT_EQ(ParseCgroupControllers("cpuset cpu io memory pids\n"),
            (std::vector<std::string>{"cpuset", "cpu", "io", "memory", "pids"}));
  EXPECT_TRUE(ParseCgroupControllers("\n").empty());
  EXPECT_TRUE(ParseCgroupControllers("").empty());
}

// ---- EvaluateRuntimeReadiness --------------------------------------------------------------

TEST(EvaluateRuntimeReadinessTest, CrunOnHybridWithControllersUsesWorkaround) {
  RuntimeReadiness r = EvaluateRuntimeReadiness(Crun(), HybridHost({"hugetlb"}));
  EXPECT_EQ(r.readiness, Readiness::kReadyWithWorkaround);
  EXPECT_EQ(r.reason, kReasonCrunHybridWorkaround);
  EXPECT_THAT(r.message, HasSubstr("crun 1.8.1"));
  EXPECT_THAT(r.message, HasSubstr("cgroups in hybrid mode not supported, drop all controllers "
                                   "from cgroupv2"));
  EXPECT_THAT(r.message, HasSubstr("hugetlb"));
  EXPECT_THAT(r.message, HasSubstr("Use runc"));
}

TEST(EvaluateRuntimeReadinessTest, CrunOnHybridNotReadyWithoutWorkaround) {
  RuntimeReadiness r =
      EvaluateRuntimeReadiness(Crun(), HybridHost({"hugetlb"}), /*allow_crun_workaround=*/false);
  EXPECT_EQ(r.readiness, Readiness::kNotReady);
  EXPECT_EQ(r.reason, kReasonCrunHybridUnsupported);
  EXPECT_THAT(r.message, HasSubstr("\"cgroups in hybrid mode not supported, drop all "
                                   "controllers from cgroupv2\""));
  EXPECT_THAT(r.message, HasSubstr("disabled"));
  EXPECT_THAT(r.message,
              HasSubstr("Use runc here, or a host with cgroup v2 only or cgroup v1 only"));
}

TEST(EvaluateRuntimeReadinessTest, CrunOnHybridNotReadyWhenWorkaroundDoesNotApply) {
  CgroupHost not_mounted = HybridHost({"hugetlb"});
  not_mounted.mounts.root_fstype = "";  // e.g. a fake tree: statfs says hybrid, no mounts
  RuntimeReadiness r = EvaluateRuntimeReadiness(Crun(), not_mounted);
  EXPECT_EQ(r.readiness, Readiness::kNotReady);
  EXPECT_EQ(r.reason, kReasonCrunHybridUnsupported);
  EXPECT_THAT(r.message, HasSubstr("not a tmpfs mount point"));

  CgroupHost stacked = HybridHost({"hugetlb"});
  stacked.mounts.unified_cgroup2_mounts = 2;
  EXPECT_FALSE(CrunHybridWorkaroundApplicable(stacked));
  r = EvaluateRuntimeReadiness(Crun(), stacked);
  EXPECT_EQ(r.readiness, Readiness::kNotReady);
  EXPECT_THAT(r.message, HasSubstr("2 cgroup2 mounts"));
}

TEST(EvaluateRuntimeReadinessTest, ReadyCases) {
  // crun accepts hybrid when the cgroup2 hierarchy holds no controller.
  EXPECT_EQ(EvaluateRuntimeReadiness(Crun(), HybridHost({})).readiness, Readiness::kReady);
  // runc works on hybrid hosts.
  RuntimeReadiness runc = EvaluateRuntimeReadiness(Runc(), HybridHost({"hugetlb"}));
  EXPECT_EQ(runc.readiness, Readiness::kReady);
  EXPECT_EQ(runc.reason, "");
  // Other layouts.
  for (CgroupLayout layout : {CgroupLayout::kV1, CgroupLayout::kV2, CgroupLayout::kUnknown}) {
    CgroupHost host = HybridHost({"hugetlb"});
    host.layout = layout;
    EXPECT_EQ(EvaluateRuntimeReadiness(Crun(), host).readiness, Readiness::kReady)
        << CgroupLayoutName(layout);
  }
  RuntimeIdentity other;
  other.name = "youki";
  EXPECT_EQ(EvaluateRuntimeReadiness(other, HybridHost({"hugetlb"})).readiness, Readiness::kReady);
}

TEST(EvaluateRuntimeReadinessTest, Names) {
  EXPECT_EQ(ReadinessName(Readiness::kReady), "ready");
  EXPECT_EQ(ReadinessName(Readiness::kReadyWithWorkaround), "ready-with-workaround");
  EXPECT_EQ(ReadinessName(Readiness::kNotReady), "not-ready");
  EXPECT_EQ(CgroupLayoutName(CgroupLayout::kHybrid), "hybrid");
}

// ---- ProbeCgroupHost on fake trees (statfs follows symlinks) -------------------------------

TEST(ProbeCgroupHostFakeTreeTest, TmpfsWithPlainUnifiedDirIsV1) {
  TmpfsDir root;
  if (root.path().empty()) GTEST_SKIP() << "/dev/shm is not a tmpfs";
  fs::create_directory(fs::path(root.path()) / "unified");
  absl::StatusOr<CgroupHost> host = ProbeCgroupHost(root.path(), kHybridMountinfo);
  ASSERT_TRUE(host.ok()) << host.status();
  EXPECT_EQ(host->layout, CgroupLayout::kV1);
  EXPECT_TRUE(host->unified_controllers.empty());
  // The same without a unified entry at all.
  fs::remove(fs::path(root.path()) / "unified");
  EXPECT_EQ(ProbeCgroupHost(root.path(), "")->layout, CgroupLayout::kV1);
}

TEST(ProbeCgroupHostFakeTreeTest, TmpfsWithCgroup2UnifiedIsHybrid) {
  TmpfsDir root;
  if (root.path().empty()) GTEST_SKIP() << "/dev/shm is not a tmpfs";
  std::optional<std::string> cgroup2 = FindCgroup2Mount();
  if (!cgroup2) GTEST_SKIP() << "no cgroup2 mount on this host";
  fs::create_directory_symlink(*cgroup2, fs::path(root.path()) / "unified");
  absl::StatusOr<CgroupHost> host = ProbeCgroupHost(root.path(), ReadProcMountinfo());
  ASSERT_TRUE(host.ok()) << host.status();
  EXPECT_EQ(host->layout, CgroupLayout::kHybrid);
  EXPECT_EQ(host->unified_controllers,
            ParseCgroupControllers(testing::ReadFile(*cgroup2 + "/cgroup.controllers")));
  // Not a mount point, so the workaround cannot be applied; crun is not ready if the real
  // cgroup2 holds controllers.
  EXPECT_EQ(host->mounts.root_fstype, "");
  EXPECT_FALSE(CrunHybridWorkaroundApplicable(*host));
  if (!host->unified_controllers.empty()) {
    RuntimeReadiness r = EvaluateRuntimeReadiness(Crun(), *host);
    EXPECT_EQ(r.readiness, Readiness::kNotReady);
    EXPECT_EQ(r.reason, kReasonCrunHybridUnsupported);
  }
}

TEST(ProbeCgroupHostFakeTreeTest, SymlinkToCgroup2IsV2) {
  testing::TempDir dir("runtime-probe");
  std::optional<std::string> cgroup2 = FindCgroup2Mount();
  if (!cgroup2) GTEST_SKIP() << "no cgroup2 mount on this host";
  std::string root = (fs::path(dir.path()) / "cgroup").string();
  fs::create_directory_symlink(*cgroup2, root);
  absl::StatusOr<CgroupHost> host = ProbeCgroupHost(root, "");
  ASSERT_TRUE(host.ok()) << host.status();
  EXPECT_EQ(host->layout, CgroupLayout::kV2);
}

TEST(ProbeCgroupHostFakeTreeTest, OtherFilesystemIsUnknownAndMissingIsNotFound) {
  testing::TempDir dir("runtime-probe");
  ASSERT_FALSE(dir.path().empty());
  if (StatfsIs(dir.path(), TMPFS_MAGIC) || StatfsIs(dir.path(), CGROUP2_SUPER_MAGIC)) {
    GTEST_SKIP() << "the temp dir is on a tmpfs";
  }
  EXPECT_EQ(ProbeCgroupHost(dir.path(), "")->layout, CgroupLayout::kUnknown);
  EXPECT_EQ(ProbeCgroupHost(dir.File("missing"), "").status().code(), absl::StatusCode::kNotFound);
}

// ---- The real host -------------------------------------------------------------------------

TEST(ProbeCgroupHostRealTest, StatfsAndMountinfoAgree) {
  absl::StatusOr<CgroupHost> host = ProbeCgroupHost();
  ASSERT_TRUE(host.ok()) << host.status();
  std::cout << "host cgroups: " << CgroupLayoutName(host->layout) << ", cgroup2 controllers at "
            << kCgroupRoot << "/unified: " << host->unified_controllers.size() << "\n";
  if (host->layout == CgroupLayout::kUnknown) GTEST_SKIP() << "no cgroups mounted";
  EXPECT_EQ(host->mounts.layout, host->layout);
  RuntimeReadiness crun = EvaluateRuntimeReadiness(Crun(), *host);
  std::cout << "crun verdict: " << ReadinessName(crun.readiness) << " " << crun.reason << "\n"
            << crun.message << "\n";
  if (host->layout == CgroupLayout::kHybrid && !host->unified_controllers.empty()) {
    EXPECT_EQ(crun.readiness, Readiness::kReadyWithWorkaround);
  } else {
    EXPECT_EQ(crun.readiness, Readiness::kReady);
  }
  EXPECT_EQ(EvaluateRuntimeReadiness(Runc(), *host).readiness, Readiness::kReady);
}

// ---- The workaround on the real host -------------------------------------------------------

class WorkaroundTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (CAP_SYS_ADMIN)";
    absl::StatusOr<CgroupHost> host = ProbeCgroupHost();
    if (!host.ok() || !CrunHybridWorkaroundApplicable(*host)) {
      GTEST_SKIP() << "the host is not a hybrid cgroup host";
    }
  }
  const std::string root_ = kCgroupRoot;
  const std::string unified_ = std::string(kCgroupRoot) + "/" + kUnifiedDir;
};

TEST_F(WorkaroundTest, ChildSeesV1HostKeepsHybrid) {
  const char* root = root_.c_str();
  const char* unified = unified_.c_str();
  int code = InChild([&] {
    if (ApplyCrunHybridWorkaroundInChild(root, unified) != 0) return 10;
    if (!StatfsIs(root, TMPFS_MAGIC)) return 11;
    if (StatfsIs(unified, CGROUP2_SUPER_MAGIC)) return 12;
    if (!StatfsIs(std::string(root) + "/memory", CGROUP_SUPER_MAGIC)) return 13;
    absl::StatusOr<CgroupHost> seen = ProbeCgroupHost();
    if (!seen.ok() || seen->layout != CgroupLayout::kV1 || seen->mounts.layout != seen->layout) {
      return 14;
    }
    return 0;
  });
  EXPECT_EQ(code, 0);
  EXPECT_TRUE(StatfsIs(unified_, CGROUP2_SUPER_MAGIC));
  EXPECT_EQ(ProbeCgroupHost()->layout, CgroupLayout::kHybrid);
}

// On systemd hosts /sys/fs/cgroup is a shared mount. A child namespace stands in for such a
// host (its mounts are made rshared); the workaround in a grandchild must not unmount the
// stand-in's cgroup2, while a plain umount without the rslave step does (which shows the test
// can see propagation).
TEST_F(WorkaroundTest, DoesNotPropagateToASharedHost) {
  const char* root = root_.c_str();
  const char* unified = unified_.c_str();
  auto in_shared_host = [&](bool use_workaround) {
    return InChild([&] {
      if (::unshare(CLONE_NEWNS) != 0) return 20;
      if (::mount(nullptr, root, nullptr, MS_REC | MS_SHARED, nullptr) != 0) return 21;
      int grandchild = InChild([&] {
        if (use_workaround) return ApplyCrunHybridWorkaroundInChild(root, unified) == 0 ? 0 : 30;
        if (::unshare(CLONE_NEWNS) != 0) return 31;
        return ::umount2(unified, MNT_DETACH) == 0 ? 0 : 32;
      });
      if (grandchild != 0) return grandchild;
      return StatfsIs(unified, CGROUP2_SUPER_MAGIC) ? 0 : 1;  // 1: the stand-in lost it
    });
  };
  EXPECT_EQ(in_shared_host(/*use_workaround=*/true), 0);
  EXPECT_EQ(in_shared_host(/*use_workaround=*/false), 1);
  EXPECT_TRUE(StatfsIs(unified_, CGROUP2_SUPER_MAGIC));
}

// ---- End to end with crun (root, hybrid host, crun and a static busybox) -------------------

bool IsStaticElf(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  Elf64_Ehdr eh{};
  bool ok = ::pread(fd, &eh, sizeof eh, 0) == static_cast<ssize_t>(sizeof eh) &&
            std::memcmp(eh.e_ident, ELFMAG, SELFMAG) == 0 && eh.e_ident[EI_CLASS] == ELFCLASS64;
  for (int i = 0; ok && i < eh.e_phnum; ++i) {
    Elf64_Phdr ph{};
    if (::pread(fd, &ph, sizeof ph, eh.e_phoff + i * eh.e_phentsize) != sizeof ph) ok = false;
    if (ph.p_type == PT_INTERP) ok = false;
  }
  ::close(fd);
  return ok;
}

struct RunResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};

// fork, optionally apply the workaround, exec argv; collects stdout+stderr.
RunResult RunCommand(const std::vector<std::string>& argv, const std::string& cwd,
                     bool workaround) {
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const std::string root = kCgroupRoot;
  const std::string unified = root + "/" + kUnifiedDir;
  int fds[2];
  RunResult r;
  if (::pipe2(fds, O_CLOEXEC) != 0) return r;
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(fds[1], 1);
    ::dup2(fds[1], 2);
    if (::chdir(cwd.c_str()) != 0) ::_exit(125);
    if (workaround && ApplyCrunHybridWorkaroundInChild(root.c_str(), unified.c_str()) != 0) {
      ::_exit(126);
    }
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  ::close(fds[1]);
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fds[0], buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR)) {
    if (n > 0) r.output.append(buf, static_cast<size_t>(n));
  }
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

TEST(CrunEndToEndTest, RunsOnHybridHostOnlyWithWorkaround) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root";
  if (!HostIsHybridWithControllers()) GTEST_SKIP() << "not a hybrid host with v2 controllers";
  std::string crun;
  for (const char* p : {"/usr/bin/crun", "/usr/local/bin/crun"}) {
    if (::access(p, X_OK) == 0) crun = p;
  }
  if (crun.empty()) GTEST_SKIP() << "crun is not installed";
  absl::StatusOr<RuntimeIdentity> id = IdentifyRuntime(crun);
  ASSERT_TRUE(id.ok()) << id.status();
  if (!IsStaticElf("/bin/busybox")) GTEST_SKIP() << "no static /bin/busybox (busybox-static)";
  if (!StatfsIs("/sys/fs/cgroup/memory", CGROUP_SUPER_MAGIC)) GTEST_SKIP() << "no v1 memory";

  testing::TempDir dir("crun-e2e");
  ASSERT_FALSE(dir.path().empty());
  fs::path bundle = fs::path(dir.path()) / "bundle";
  for (const char* d : {"rootfs/bin", "rootfs/proc", "rootfs/sys", "rootfs/dev", "state"}) {
    fs::create_directories(bundle / d);
  }
  fs::copy_file("/bin/busybox", bundle / "rootfs/bin/busybox");
  fs::create_symlink("busybox", bundle / "rootfs/bin/sh");
  const std::string cgroup = "/berth-probe-e2e-" + std::to_string(::getpid());
  testing::WriteFile(bundle / "config.json", R"({
  "ociVersion": "1.0.0",
  "process": {"terminal": false, "user": {"uid": 0, "gid": 0}, "cwd": "/",
    "args": ["sh", "-c", "cat /proc/self/cgroup; cat /sys/fs/cgroup/memory/memory.limit_in_bytes"],
    "env": ["PATH=/bin"]},
  "root": {"path": "rootfs"},
  "mounts": [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs",
     "options": ["nosuid", "noexec", "nodev", "ro"]},
    {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
     "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
  ],
  "linux": {
    "cgroupsPath": ")" + cgroup + R"(",
    "resources": {"memory": {"limit": 33554432}},
    "namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "ipc"}, {"type": "uts"}]
  }
})");
  const std::string state = (bundle / "state").string();
  const std::string ctr = "berth-probe-e2e-" + std::to_string(::getpid());
  std::vector<std::string> run = {crun, "--root", state, "run", ctr};

  RunResult plain = RunCommand(run, bundle.string(), /*workaround=*/false);
  EXPECT_NE(plain.exit_code, 0) << plain.output;
  EXPECT_THAT(plain.output,
              HasSubstr("cgroups in hybrid mode not supported, drop all controllers from "
                        "cgroupv2"));

  RunResult wrapped = RunCommand(run, bundle.string(), /*workaround=*/true);
  EXPECT_EQ(wrapped.exit_code, 0) << wrapped.output;
  EXPECT_THAT(wrapped.output, HasSubstr(":memory:" + cgroup + "\n"));
  EXPECT_THAT(wrapped.output, HasSubstr("33554432"));
  // `crun run` deleted the container and its cgroups.
  EXPECT_FALSE(fs::exists("/sys/fs/cgroup/memory" + cgroup));
  EXPECT_FALSE(fs::exists(fs::path(state) / ctr));
  (void)RunCommand({crun, "--root", state, "delete", "-f", ctr}, bundle.string(), true);
}

}  // namespace
}  // namespace berth::runc
