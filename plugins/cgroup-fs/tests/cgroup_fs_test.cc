// SPDX-License-Identifier: Apache-2.0
// The cgroupfs driver over fake cgroup trees: layout detection, path validation, v2 and v1
// statistics with exact figures, readiness, removal.
#include "plugins/cgroup-fs/cgroup_fs.h"

#include <unistd.h>

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "plugins/cgroup-fs/cgroup_path.h"
#include "plugins/cgroup-fs/tests/fake_tree.h"

namespace berth::cgroupfs {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using namespace ::berth::cgroupfs::testing;  // NOLINT(build/namespaces)

CgroupFs OpenOrDie(const TempDir& dir) {
  absl::StatusOr<CgroupFs> fs = CgroupFs::Open(dir.str());
  EXPECT_TRUE(fs.ok()) << fs.status();
  return fs.ok() ? std::move(*fs) : CgroupFs(Layout{});
}

// ---- layout ------------------------------------------------------------------------------

TEST(LayoutTest, DetectsV2) {
  TempDir root("cgfs");
  MakeV2Root(root.path(), "cpuset cpu io memory hugetlb pids rdma misc");
  absl::StatusOr<Layout> l = DetectLayout(root.str());
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ(l->version, CgroupVersion::kV2);
  EXPECT_EQ(l->unified, root.str());
  EXPECT_THAT(l->AllHierarchies(), ElementsAre(root.str()));
  EXPECT_THAT(l->Describe(), HasSubstr("cgroup v2"));
}

TEST(LayoutTest, DetectsV1WithCoMountedControllers) {
  TempDir root("cgfs");
  MakeV1Root(root.path(), /*hybrid=*/false);
  absl::StatusOr<Layout> l = DetectLayout(root.str() + "/");
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ(l->version, CgroupVersion::kV1);
  EXPECT_EQ(l->root, root.str());
  const std::string cpu = (root.path() / "cpu,cpuacct").string();
  EXPECT_EQ(l->V1Dir("cpu"), cpu);
  EXPECT_EQ(l->V1Dir("cpuacct"), cpu);
  EXPECT_EQ(l->V1Dir("memory"), root.str() + "/memory");
  EXPECT_EQ(l->V1Dir("blkio"), "");
  // One entry per hierarchy, links resolved; the named systemd one included.
  EXPECT_THAT(l->v1_hierarchies, ElementsAre(cpu, root.str() + "/memory", root.str() + "/pids",
                                             root.str() + "/systemd"));
  EXPECT_TRUE(l->unified.empty());
}

TEST(LayoutTest, DetectsHybrid) {
  TempDir root("cgfs");
  MakeV1Root(root.path(), /*hybrid=*/true);
  absl::StatusOr<Layout> l = DetectLayout(root.str());
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ(l->version, CgroupVersion::kHybrid);
  EXPECT_EQ(l->unified, root.str() + "/unified");
  EXPECT_EQ(l->AllHierarchies().size(), 5u);
  EXPECT_THAT(l->Describe(), HasSubstr("hybrid"));
}

TEST(LayoutTest, NothingRecognisable) {
  TempDir root("cgfs");
  WriteFile(root.path() / "stray" / "file", "x");
  absl::StatusOr<Layout> l = DetectLayout(root.str());
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ(l->version, CgroupVersion::kNone);
  CgroupFs fs(*l);
  sdk::Readiness r = fs.Readiness();
  EXPECT_FALSE(r.ready);
  EXPECT_EQ(r.reason, "CgroupHierarchyMissing");
  EXPECT_EQ(fs.Stats("/a").status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(fs.Remove("/a").code(), absl::StatusCode::kFailedPrecondition);
}

TEST(LayoutTest, UnreadableRootIsAnError) {
  EXPECT_EQ(DetectLayout("/nonexistent/berth-cgroup-root").status().code(),
            absl::StatusCode::kNotFound);
}

// ---- readiness ---------------------------------------------------------------------------

TEST(ReadinessTest, V2NeedsCpuMemoryPids) {
  TempDir root("cgfs");
  MakeV2Root(root.path(), "cpuset cpu io memory pids");
  EXPECT_TRUE(OpenOrDie(root).Readiness().ready);
  MakeV2Root(root.path(), "cpuset cpu io hugetlb");
  sdk::Readiness r = OpenOrDie(root).Readiness();
  EXPECT_FALSE(r.ready);
  EXPECT_EQ(r.reason, "CgroupControllersMissing");
  EXPECT_THAT(r.message, HasSubstr("cgroup.controllers: memory pids"));
}

TEST(ReadinessTest, V1NeedsCpuCpuacctMemoryPids) {
  TempDir root("cgfs");
  MakeV1Root(root.path(), /*hybrid=*/true);
  EXPECT_TRUE(OpenOrDie(root).Readiness().ready);
  TempDir partial("cgfs");
  MakeV1Hierarchy(partial.path(), "cpu");
  MakeV1Hierarchy(partial.path(), "memory");
  sdk::Readiness r = OpenOrDie(partial).Readiness();
  EXPECT_FALSE(r.ready);
  EXPECT_EQ(r.reason, "CgroupControllersMissing");
  EXPECT_THAT(r.message, HasSubstr(": cpuacct pids"));
}

// ---- cgroup paths ------------------------------------------------------------------------

struct PathCase {
  std::string parent, id;
  std::string want;  // the path, or a piece of the INVALID_ARGUMENT message
  bool ok;
};

class CgroupPathTest : public ::testing::TestWithParam<PathCase> {};

TEST_P(CgroupPathTest, Table) {
  const PathCase& c = GetParam();
  absl::StatusOr<std::string> path = ContainerCgroupPath(c.parent, c.id);
  if (c.ok) {
    ASSERT_TRUE(path.ok()) << path.status();
    EXPECT_EQ(*path, c.want);
  } else {
    ASSERT_FALSE(path.ok()) << "got " << *path;
    EXPECT_EQ(path.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(path.status().message(), HasSubstr(c.want));
  }
}

const std::string kLong(256, 'a');

INSTANTIATE_TEST_SUITE_P(
    Paths, CgroupPathTest,
    ::testing::Values(PathCase{"/kubepods/burstable/pod6b1d", "abc123",
                               "/kubepods/burstable/pod6b1d/abc123", true},
                      PathCase{"/kubepods/pod6b1d", "abc", "/kubepods/pod6b1d/abc", true},
                      PathCase{"/kubepods/besteffort/pod6b1d", "a_b.c-d",
                               "/kubepods/besteffort/pod6b1d/a_b.c-d", true},
                      PathCase{"", "abc", "/berth/abc", true}, PathCase{"/", "abc", "/abc", true},
                      PathCase{"kubepods/pod1", "abc", "must be absolute", false},
                      PathCase{"/kubepods/../etc", "abc", "\"..\" segments", false},
                      PathCase{"/kubepods/./pod1", "abc", "\".\" segments", false},
                      PathCase{"/kubepods//pod1", "abc", "empty path segment", false},
                      PathCase{"/kubepods/pod1/", "abc", "empty path segment", false},
                      PathCase{"/kube\npods", "abc", "control characters", false},
                      PathCase{"/kubepods/" + kLong, "abc", "256 bytes long", false},
                      PathCase{
                          "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice",
                          "abc", "the kubelet's cgroup driver is probably systemd", false},
                      PathCase{"kubepods-besteffort-pod1.slice", "abc", "systemd syntax", false},
                      PathCase{"system.slice:cri-containerd:abc", "abc", "systemd syntax", false},
                      PathCase{"/kubepods/pod1", "", "empty sandbox or container id", false},
                      PathCase{"/kubepods/pod1", "a/b", "only letters, digits", false},
                      PathCase{"/kubepods/pod1", "a b", "only letters, digits", false},
                      PathCase{"/kubepods/pod1", "..", "cannot name a cgroup directory", false},
                      PathCase{"/kubepods/pod1", kLong, "cannot name a cgroup directory", false}));

// ---- parsing -----------------------------------------------------------------------------

TEST(ParseTest, Figures) {
  EXPECT_EQ(ParseFigure("42\n"), 42u);
  EXPECT_EQ(ParseFigure(" 42 \n"), 42u);
  EXPECT_EQ(ParseFigure("18446744073709551615\n"), UINT64_MAX);
  EXPECT_EQ(ParseFigure("max\n"), std::nullopt);
  EXPECT_EQ(ParseFigure(""), std::nullopt);
  EXPECT_EQ(ParseFigure("12a"), std::nullopt);
  EXPECT_EQ(ParseFigure("-1"), std::nullopt);
}

TEST(ParseTest, FlatKeyedMatchesWholeKeys) {
  const char* text = "anon_thp 5\ninactive_anon 6\nanon 7\nworkingset_refault_anon 8\nlast 9";
  EXPECT_EQ(FlatKeyed(text, "anon"), 7u);
  EXPECT_EQ(FlatKeyed(text, "last"), 9u);
  EXPECT_EQ(FlatKeyed(text, "inactive_file"), std::nullopt);
}

TEST(StatsJsonTest, LeavesOutAbsentFiguresAndEmptyGroups) {
  CgroupStats s;
  s.timestamp_ns = 5;
  EXPECT_EQ(StatsToJson(s), R"({"timestamp_ns":5})");
  s.memory_usage_bytes = 10;
  s.pids_limit = 3;
  EXPECT_EQ(StatsToJson(s), R"({"timestamp_ns":5,"memory":{"usage_bytes":10},"pids":{"limit":3}})");
}

// ---- v2 statistics -----------------------------------------------------------------------

constexpr char kV2CpuStat[] =
    "usage_usec 123456\nuser_usec 100000\nsystem_usec 23456\nnr_periods 0\nnr_throttled 0\n"
    "throttled_usec 0\nnr_bursts 0\nburst_usec 0\n";
constexpr char kV2MemoryStat[] =
    "anon 52428800\nfile 41943040\nkernel 1048576\nkernel_stack 16384\nsock 0\nshmem 0\n"
    "file_mapped 0\nanon_thp 2097152\ninactive_anon 4096\nactive_anon 52424704\n"
    "inactive_file 20971520\nactive_file 20971520\nunevictable 0\n"
    "workingset_refault_anon 0\nworkingset_refault_file 11\npgscan 0\npgsteal 0\n"
    "pgfault 1000\npgmajfault 7\npgrefill 0\nthp_fault_alloc 1\n";

void MakeV2Cgroup(const fs::path& dir) {
  WriteFile(dir / "cgroup.procs", "");
  WriteFile(dir / "cpu.stat", kV2CpuStat);
  WriteFile(dir / "memory.current", "104857600\n");
  WriteFile(dir / "memory.stat", kV2MemoryStat);
  WriteFile(dir / "memory.max", "268435456\n");
  WriteFile(dir / "memory.events", "low 0\nhigh 0\nmax 3\noom 2\noom_kill 1\noom_group_kill 0\n");
  WriteFile(dir / "pids.current", "3\n");
  WriteFile(dir / "pids.max", "max\n");
}

TEST(V2StatsTest, ExactFigures) {
  TempDir root("cgfs");
  MakeV2Root(root.path(), "cpu memory pids");
  MakeV2Cgroup(root.path() / "kubepods/burstable/pod1/abc");
  CgroupFs fs = OpenOrDie(root);
  absl::StatusOr<CgroupStats> s = fs.Stats("/kubepods/burstable/pod1/abc");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_GT(s->timestamp_ns, 1'600'000'000'000'000'000);
  EXPECT_EQ(s->cpu_usage_ns, 123456000u);
  EXPECT_EQ(s->cpu_user_ns, 100000000u);
  EXPECT_EQ(s->cpu_system_ns, 23456000u);
  EXPECT_EQ(s->memory_usage_bytes, 104857600u);
  EXPECT_EQ(s->memory_working_set_bytes, 104857600u - 20971520u);
  EXPECT_EQ(s->memory_rss_bytes, 52428800u);
  EXPECT_EQ(s->memory_page_faults, 1000u);
  EXPECT_EQ(s->memory_major_page_faults, 7u);
  EXPECT_EQ(s->memory_limit_bytes, 268435456u);
  EXPECT_EQ(s->memory_oom_kills, 1u);
  EXPECT_EQ(s->pids_current, 3u);
  EXPECT_EQ(s->pids_limit, std::nullopt);  // "max"
  EXPECT_EQ(StatsToJson(*s),
            "{\"timestamp_ns\":" + std::to_string(s->timestamp_ns) +
                ",\"cpu\":{\"usage_ns\":123456000,\"user_ns\":100000000,\"system_ns\":23456000},"
                "\"memory\":{\"usage_bytes\":104857600,\"working_set_bytes\":83886080,"
                "\"rss_bytes\":52428800,\"page_faults\":1000,\"major_page_faults\":7,"
                "\"limit_bytes\":268435456,\"oom_kills\":1},\"pids\":{\"current\":3}}");
}

TEST(V2StatsTest, UnlimitedMemoryAndControllersNotEnabled) {
  TempDir root("cgfs");
  MakeV2Root(root.path(), "cpu memory pids");
  fs::path dir = root.path() / "berth/abc";
  WriteFile(dir / "cpu.stat", kV2CpuStat);  // cpu.stat is there even without the controller
  CgroupFs fs = OpenOrDie(root);
  absl::StatusOr<CgroupStats> s = fs.Stats("/berth/abc");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(StatsToJson(*s),
            "{\"timestamp_ns\":" + std::to_string(s->timestamp_ns) +
                ",\"cpu\":{\"usage_ns\":123456000,\"user_ns\":100000000,\"system_ns\":23456000}}");
  MakeV2Cgroup(dir);
  WriteFile(dir / "memory.max", "max\n");
  WriteFile(dir / "memory.stat", "inactive_file 209715200\n");  // more than usage
  s = fs.Stats("/berth/abc");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->memory_limit_bytes, std::nullopt);
  EXPECT_EQ(s->memory_working_set_bytes, 0u);
  EXPECT_EQ(s->memory_rss_bytes, std::nullopt);
}

TEST(V2StatsTest, NotFoundNamesThePath) {
  TempDir root("cgfs");
  MakeV2Root(root.path(), "cpu memory pids");
  CgroupFs fs = OpenOrDie(root);
  absl::StatusOr<CgroupStats> s = fs.Stats("/kubepods/pod1/gone");
  EXPECT_EQ(s.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(s.status().message(), HasSubstr("cgroup /kubepods/pod1/gone does not exist"));
  EXPECT_THAT(s.status().message(), HasSubstr(root.str() + "/kubepods/pod1/gone"));
  EXPECT_EQ(fs.Stats("/kubepods/../../etc").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(fs.Stats("relative").status().code(), absl::StatusCode::kInvalidArgument);
}

// ---- v1 statistics -----------------------------------------------------------------------

constexpr char kV1MemoryStat[] =
    "cache 4096\nrss 8192\nrss_huge 0\npgfault 3\npgmajfault 1\ninactive_file 1\n"
    "hierarchical_memory_limit 536870912\ntotal_cache 20971520\ntotal_rss 31457280\n"
    "total_rss_huge 0\ntotal_pgfault 4242\ntotal_pgmajfault 12\ntotal_inactive_anon 0\n"
    "total_active_anon 31457280\ntotal_inactive_file 10485760\ntotal_active_file 10485760\n";

void MakeV1Cgroup(const fs::path& root, const std::string& path, const std::string& limit) {
  fs::path cpu = root / "cpu,cpuacct" / path.substr(1);
  WriteFile(cpu / "cpuacct.usage", "2500000000\n");
  WriteFile(cpu / "cpuacct.stat", "user 150\nsystem 50\n");
  fs::path mem = root / "memory" / path.substr(1);
  WriteFile(mem / "memory.usage_in_bytes", "52428800\n");
  WriteFile(mem / "memory.stat", kV1MemoryStat);
  WriteFile(mem / "memory.limit_in_bytes", limit + "\n");
  WriteFile(mem / "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n");
  fs::path pids = root / "pids" / path.substr(1);
  WriteFile(pids / "pids.current", "4\n");
  WriteFile(pids / "pids.max", "1024\n");
}

TEST(V1StatsTest, ExactFigures) {
  TempDir root("cgfs");
  MakeV1Root(root.path(), /*hybrid=*/true);
  MakeV1Cgroup(root.path(), "/kubepods/pod1/abc", "536870912");
  CgroupFs fs = OpenOrDie(root);
  absl::StatusOr<CgroupStats> s = fs.Stats("/kubepods/pod1/abc");
  ASSERT_TRUE(s.ok()) << s.status();
  const uint64_t tick_ns = 1'000'000'000 / static_cast<uint64_t>(::sysconf(_SC_CLK_TCK));
  EXPECT_EQ(s->cpu_usage_ns, 2500000000u);
  EXPECT_EQ(s->cpu_user_ns, 150 * tick_ns);
  EXPECT_EQ(s->cpu_system_ns, 50 * tick_ns);
  EXPECT_EQ(s->memory_usage_bytes, 52428800u);
  EXPECT_EQ(s->memory_working_set_bytes, 52428800u - 10485760u);
  EXPECT_EQ(s->memory_rss_bytes, 31457280u);
  EXPECT_EQ(s->memory_page_faults, 4242u);
  EXPECT_EQ(s->memory_major_page_faults, 12u);
  EXPECT_EQ(s->memory_limit_bytes, 536870912u);
  EXPECT_EQ(s->memory_oom_kills, 2u);
  EXPECT_EQ(s->pids_current, 4u);
  EXPECT_EQ(s->pids_limit, 1024u);
}

TEST(V1StatsTest, UnlimitedMemoryIsLeftOut) {
  TempDir root("cgfs");
  MakeV1Root(root.path(), /*hybrid=*/false);
  MakeV1Cgroup(root.path(), "/berth/abc", "9223372036854771712");
  absl::StatusOr<CgroupStats> s = OpenOrDie(root).Stats("/berth/abc");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->memory_limit_bytes, std::nullopt);
  EXPECT_THAT(StatsToJson(*s), ::testing::Not(HasSubstr("limit_bytes")));
}

TEST(V1StatsTest, PartialHierarchiesAndNotFound) {
  TempDir root("cgfs");
  MakeV1Root(root.path(), /*hybrid=*/false);
  WriteFile(root.path() / "memory/berth/abc/memory.usage_in_bytes", "100\n");
  CgroupFs fs = OpenOrDie(root);
  absl::StatusOr<CgroupStats> s = fs.Stats("/berth/abc");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(StatsToJson(*s), "{\"timestamp_ns\":" + std::to_string(s->timestamp_ns) +
                                 ",\"memory\":{\"usage_bytes\":100}}");
  s = fs.Stats("/berth/gone");
  EXPECT_EQ(s.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(s.status().message(), HasSubstr("cgroup /berth/gone does not exist"));
  EXPECT_THAT(s.status().message(), HasSubstr(root.str() + "/memory/berth/gone"));
}

// ---- removal (fake trees: directories only, as rmdir on tmpfs needs them empty) ----------

TEST(RemoveTest, AbsentIsOk) {
  TempDir root("cgfs");
  MakeV2Root(root.path(), "cpu memory pids");
  EXPECT_TRUE(OpenOrDie(root).Remove("/kubepods/pod1/never").ok());
}

TEST(RemoveTest, V2RemovesChildrenFirst) {
  TempDir root("cgfs");
  MakeV2Root(root.path(), "cpu memory pids");
  fs::create_directories(root.path() / "kubepods/pod1/abc/child/grandchild");
  fs::create_directories(root.path() / "kubepods/pod1/abc/other");
  fs::create_directories(root.path() / "kubepods/pod1/keep");
  CgroupFs fs = OpenOrDie(root);
  absl::Status s = fs.Remove("/kubepods/pod1/abc");
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_FALSE(fs::exists(root.path() / "kubepods/pod1/abc"));
  EXPECT_TRUE(fs::exists(root.path() / "kubepods/pod1/keep"));
}

TEST(RemoveTest, V1HybridRemovesFromEveryHierarchy) {
  TempDir root("cgfs");
  MakeV1Root(root.path(), /*hybrid=*/true);
  for (const char* h : {"cpu,cpuacct", "memory", "pids", "systemd", "unified"}) {
    fs::create_directories(root.path() / h / "kubepods/pod1/abc");
  }
  fs::create_directories(root.path() / "memory/kubepods/pod1/abc/child");
  CgroupFs fs = OpenOrDie(root);
  absl::Status s = fs.Remove("/kubepods/pod1/abc");
  ASSERT_TRUE(s.ok()) << s;
  for (const char* h : {"cpu,cpuacct", "memory", "pids", "systemd", "unified"}) {
    EXPECT_FALSE(fs::exists(root.path() / h / "kubepods/pod1/abc")) << h;
    EXPECT_TRUE(fs::exists(root.path() / h / "kubepods/pod1")) << h;
  }
}

TEST(RemoveTest, RefusesRootAndBadPaths) {
  TempDir root("cgfs");
  MakeV2Root(root.path(), "cpu memory pids");
  CgroupFs fs = OpenOrDie(root);
  EXPECT_EQ(fs.Remove("/").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(fs.Remove("/a/../..").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(fs.Remove("").code(), absl::StatusCode::kInvalidArgument);
}

TEST(RemoveTest, NotACgroupFilesystem) {
  TempDir root("cgfs");
  MakeV2Root(root.path(), "cpu memory pids");
  WriteFile(root.path() / "berth/abc/cgroup.procs", "");
  absl::Status s = OpenOrDie(root).Remove("/berth/abc");
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("not on a cgroup filesystem"));
}

}  // namespace
}  // namespace berth::cgroupfs
