// SPDX-License-Identifier: Apache-2.0
// Pressure stall information in the statistics: the parser of cpu.pressure, memory.pressure
// and io.pressure, where the files are read (the cgroup2 directory on v2, the hybrid host's
// cgroup2 mount for v1 statistics), what happens when they are absent or malformed, and the
// JSON.
#include <cstdint>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "plugins/cgroup-fs/cgroup_fs.h"
#include "plugins/cgroup-fs/cgroup_stats.h"
#include "plugins/cgroup-fs/tests/fake_tree.h"

namespace berth::cgroupfs {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using namespace ::berth::cgroupfs::testing;  // NOLINT(build/namespaces)

constexpr char kCpuPressure[] =
    "some avg10=0.08 avg60=8.54 avg300=12.81 total=4523440894\n"
    "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
constexpr char kMemoryPressure[] =
    "some avg10=1.50 avg60=0.25 avg300=0.05 total=2000\n"
    "full avg10=1.00 avg60=0.20 avg300=0.04 total=1500\n";
constexpr char kIoPressure[] =
    "some avg10=99.99 avg60=50.00 avg300=10.00 total=7\n"
    "full avg10=100.00 avg60=40.00 avg300=9.50 total=5\n";

void ExpectFigures(const std::optional<PsiFigures>& f, uint64_t total_ns, double avg10,
                   double avg60, double avg300) {
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->total_ns, total_ns);
  EXPECT_DOUBLE_EQ(f->avg10, avg10);
  EXPECT_DOUBLE_EQ(f->avg60, avg60);
  EXPECT_DOUBLE_EQ(f->avg300, avg300);
}

CgroupFs OpenOrDie(const TempDir& dir) {
  absl::StatusOr<CgroupFs> fs = CgroupFs::Open(dir.str());
  EXPECT_TRUE(fs.ok()) << fs.status();
  return fs.ok() ? std::move(*fs) : CgroupFs(Layout{});
}

void WritePressure(const fs::path& dir) {
  WriteFile(dir / "cpu.pressure", kCpuPressure);
  WriteFile(dir / "memory.pressure", kMemoryPressure);
  WriteFile(dir / "io.pressure", kIoPressure);
}

// ---- parser ------------------------------------------------------------------------------

TEST(PsiParseTest, SomeAndFullWithTotalInNanoseconds) {
  Psi psi = ParsePsi(kCpuPressure);
  ExpectFigures(psi.some, 4523440894000u, 0.08, 8.54, 12.81);
  ExpectFigures(psi.full, 0, 0, 0, 0);  // a line of zeros is a figure, not an absent one
}

// cpu.pressure had no "full" line before Linux 5.13; the last line may lack its newline.
TEST(PsiParseTest, AbsentLineStaysAbsent) {
  Psi psi = ParsePsi("some avg10=0.00 avg60=0.00 avg300=0.00 total=12");
  ExpectFigures(psi.some, 12000u, 0, 0, 0);
  EXPECT_FALSE(psi.full.has_value());
  EXPECT_TRUE(ParsePsi("").empty());
  EXPECT_TRUE(ParsePsi("\n\n").empty());
}

TEST(PsiParseTest, MalformedLinesAreLeftOut) {
  const std::string good_full = "full avg10=1.00 avg60=2.00 avg300=3.00 total=4\n";
  for (const char* some : {
           "some avg10=0.08 avg60=8.54 avg300=12.81\n",              // no total
           "some avg10=0.08 avg300=12.81 total=1\n",                 // no avg60
           "some avg10=x avg60=8.54 avg300=12.81 total=1\n",         // not a number
           "some avg10=0.08 avg60=8.54 avg300=12.81 total=-1\n",     // negative total
           "some avg10=-0.5 avg60=8.54 avg300=12.81 total=1\n",      // negative share
           "some avg10=nan avg60=8.54 avg300=12.81 total=1\n",       // not finite
           "some avg10=100.5 avg60=8.54 avg300=12.81 total=1\n",     // over 100 %
           "some avg10=0.08 avg60=8.54 avg300=12.81 total=12abc\n",  // trailing junk
           "some avg10= avg60=8.54 avg300=12.81 total=1\n",          // empty value
           "some\n",                                                 // nothing at all
           "some avg10 avg60 avg300 total\n",                        // no values
       }) {
    Psi psi = ParsePsi(std::string(some) + good_full);
    EXPECT_FALSE(psi.some.has_value()) << some;
    ExpectFigures(psi.full, 4000, 1, 2, 3);
  }
  // Keys in another order, unknown keys and lines, and doubled blanks are fine.
  Psi psi = ParsePsi(
      "other avg10=1 avg60=1 avg300=1 total=1\n"
      "some  total=5 avg300=0.3 future=7 avg60=0.2 avg10=0.1\n");
  ExpectFigures(psi.some, 5000, 0.1, 0.2, 0.3);
  EXPECT_FALSE(psi.full.has_value());
}

TEST(PsiParseTest, HugeTotalSaturates) {
  Psi psi = ParsePsi("some avg10=0 avg60=0 avg300=0 total=18446744073709551615\n");
  ExpectFigures(psi.some, UINT64_MAX, 0, 0, 0);
}

// ---- JSON --------------------------------------------------------------------------------

TEST(PsiJsonTest, InCpuMemoryAndIoGroups) {
  CgroupStats s;
  s.timestamp_ns = 5;
  s.cpu_usage_ns = 10;
  s.cpu_psi.some =
      PsiFigures{.total_ns = 4523440894000, .avg10 = 0.08, .avg60 = 8.54, .avg300 = 12.81};
  s.memory_psi.full = PsiFigures{.total_ns = 1500000, .avg10 = 1, .avg60 = 0.2, .avg300 = 0};
  s.io_psi.some = PsiFigures{.total_ns = 7000, .avg10 = 99.99, .avg60 = 50, .avg300 = 10};
  s.io_psi.full = PsiFigures{.total_ns = 5000, .avg10 = 100, .avg60 = 40, .avg300 = 9.5};
  EXPECT_EQ(StatsToJson(s),
            R"({"timestamp_ns":5,)"
            R"("cpu":{"usage_ns":10,"psi":{"some":{"total_ns":4523440894000,"avg10":0.08,)"
            R"("avg60":8.54,"avg300":12.81}}},)"
            R"("memory":{"psi":{"full":{"total_ns":1500000,"avg10":1,"avg60":0.2,"avg300":0}}},)"
            R"("io":{"psi":{"some":{"total_ns":7000,"avg10":99.99,"avg60":50,"avg300":10},)"
            R"("full":{"total_ns":5000,"avg10":100,"avg60":40,"avg300":9.5}}}})");
}

TEST(PsiJsonTest, NoPsiNoIoGroup) {
  CgroupStats s;
  s.timestamp_ns = 5;
  s.cpu_usage_ns = 10;
  EXPECT_EQ(StatsToJson(s), R"({"timestamp_ns":5,"cpu":{"usage_ns":10}})");
}

// ---- where the files are read ------------------------------------------------------------

TEST(PsiStatsTest, V2FromTheCgroupDirectory) {
  TempDir root("cgpsi");
  MakeV2Root(root.path(), "cpu memory pids");
  const fs::path dir = root.path() / "kubepods/pod1/abc";
  WriteFile(dir / "cpu.stat", "usage_usec 3\n");
  WritePressure(dir);
  absl::StatusOr<CgroupStats> s = OpenOrDie(root).Stats("/kubepods/pod1/abc");
  ASSERT_TRUE(s.ok()) << s.status();
  ExpectFigures(s->cpu_psi.some, 4523440894000u, 0.08, 8.54, 12.81);
  ExpectFigures(s->cpu_psi.full, 0, 0, 0, 0);
  ExpectFigures(s->memory_psi.some, 2000000, 1.5, 0.25, 0.05);
  ExpectFigures(s->memory_psi.full, 1500000, 1, 0.2, 0.04);
  ExpectFigures(s->io_psi.some, 7000, 99.99, 50, 10);
  ExpectFigures(s->io_psi.full, 5000, 100, 40, 9.5);
  const std::string json = StatsToJson(*s);
  EXPECT_THAT(json,
              HasSubstr(R"("cpu":{"usage_ns":3000,"psi":{"some":{"total_ns":4523440894000,)"));
  EXPECT_THAT(json, HasSubstr(R"("io":{"psi":{"some":{"total_ns":7000,"avg10":99.99,)"));
}

// No PSI in the kernel (or psi=0, or cgroup.pressure 0 on recent kernels): no files, no
// figures, no error; a file with a line the parser refuses loses that line only.
TEST(PsiStatsTest, V2WithoutPressureFilesOrWithABadLine) {
  TempDir root("cgpsi");
  MakeV2Root(root.path(), "cpu memory pids");
  const fs::path dir = root.path() / "berth/abc";
  WriteFile(dir / "cpu.stat", "usage_usec 3\n");
  CgroupFs cgfs = OpenOrDie(root);
  absl::StatusOr<CgroupStats> s = cgfs.Stats("/berth/abc");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_TRUE(s->cpu_psi.empty());
  EXPECT_TRUE(s->memory_psi.empty());
  EXPECT_TRUE(s->io_psi.empty());
  EXPECT_THAT(StatsToJson(*s), AllOf(Not(HasSubstr("psi")), Not(HasSubstr("\"io\""))));

  WriteFile(dir / "cpu.pressure", "some avg10=0.08 avg60=8.54 avg300=12.81 total=\n");
  WriteFile(dir / "io.pressure", "some garbage\nfull avg10=1 avg60=2 avg300=3 total=4\n");
  s = cgfs.Stats("/berth/abc");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_TRUE(s->cpu_psi.empty());
  EXPECT_FALSE(s->io_psi.some.has_value());
  ExpectFigures(s->io_psi.full, 4000, 1, 2, 3);
  EXPECT_THAT(StatsToJson(*s), HasSubstr(R"("cpu":{"usage_ns":3000},"io":{"psi":{"full":{)"
                                         R"("total_ns":4000,"avg10":1,"avg60":2,"avg300":3}}}})"));
}

constexpr char kPath[] = "/kubepods/pod1/abc";

void MakeV1Figures(const fs::path& root) {
  WriteFile(root / "cpu,cpuacct/kubepods/pod1/abc/cpuacct.usage", "25\n");
  WriteFile(root / "memory/kubepods/pod1/abc/memory.usage_in_bytes", "4096\n");
  WriteFile(root / "pids/kubepods/pod1/abc/pids.current", "1\n");
}

// On a hybrid host the kernel accounts pressure in the cgroup2 mount only, where runc
// creates the container's cgroup too.
TEST(PsiStatsTest, HybridFromTheUnifiedMount) {
  TempDir root("cgpsi");
  MakeV1Root(root.path(), /*hybrid=*/true);
  MakeV1Figures(root.path());
  WritePressure(root.path() / "unified/kubepods/pod1/abc");
  // The v1 directories hold no pressure files; one put there must not be read.
  WriteFile(root.path() / "cpu,cpuacct/kubepods/pod1/abc/cpu.pressure",
            "some avg10=50 avg60=50 avg300=50 total=1\n");
  absl::StatusOr<CgroupStats> s = OpenOrDie(root).Stats(kPath);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->cpu_usage_ns, 25u);
  ExpectFigures(s->cpu_psi.some, 4523440894000u, 0.08, 8.54, 12.81);
  ExpectFigures(s->memory_psi.full, 1500000, 1, 0.2, 0.04);
  ExpectFigures(s->io_psi.some, 7000, 99.99, 50, 10);
  EXPECT_THAT(StatsToJson(*s), AllOf(HasSubstr(R"("cpu":{"usage_ns":25,"psi":{)"),
                                     HasSubstr(R"("memory":{"usage_bytes":4096,"psi":{)"),
                                     HasSubstr(R"("io":{"psi":{"some":{"total_ns":7000,)")));
}

// A hybrid host whose runtime did not create the cgroup in the cgroup2 mount, and a v1 host
// without one: the v1 figures, no pressure, no error.
TEST(PsiStatsTest, HybridWithoutTheUnifiedDirectoryAndPureV1) {
  for (bool hybrid : {true, false}) {
    SCOPED_TRACE(hybrid ? "hybrid" : "v1");
    TempDir root("cgpsi");
    MakeV1Root(root.path(), hybrid);
    MakeV1Figures(root.path());
    absl::StatusOr<CgroupStats> s = OpenOrDie(root).Stats(kPath);
    ASSERT_TRUE(s.ok()) << s.status();
    EXPECT_EQ(s->cpu_usage_ns, 25u);
    EXPECT_TRUE(s->cpu_psi.empty());
    EXPECT_TRUE(s->memory_psi.empty());
    EXPECT_TRUE(s->io_psi.empty());
  }
}

// The cgroup2 directory alone does not make the cgroup exist for v1 statistics.
TEST(PsiStatsTest, HybridWithOnlyTheUnifiedDirectoryIsNotFound) {
  TempDir root("cgpsi");
  MakeV1Root(root.path(), /*hybrid=*/true);
  WritePressure(root.path() / "unified/kubepods/pod1/abc");
  absl::StatusOr<CgroupStats> s = OpenOrDie(root).Stats(kPath);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kNotFound) << s.status();
}

// ReadV1Stats directly, as the systemd driver calls it.
TEST(PsiStatsTest, ReadV1StatsWithAUnifiedDirectory) {
  TempDir root("cgpsi");
  MakeV1Figures(root.path());
  WritePressure(root.path() / "unified/kubepods/pod1/abc");
  V1StatsDirs dirs;
  dirs.memory = (root.path() / "memory/kubepods/pod1/abc").string();
  dirs.unified = (root.path() / "unified/kubepods/pod1/abc").string();
  absl::StatusOr<CgroupStats> s = ReadV1Stats(dirs);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->memory_usage_bytes, 4096u);
  ExpectFigures(s->memory_psi.some, 2000000, 1.5, 0.25, 0.05);
  dirs.unified = (root.path() / "unified/gone").string();
  s = ReadV1Stats(dirs);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_TRUE(s->memory_psi.empty());
}

}  // namespace
}  // namespace berth::cgroupfs
