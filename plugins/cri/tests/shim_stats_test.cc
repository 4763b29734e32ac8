// SPDX-License-Identifier: Apache-2.0
// A shim's Task/Stats metrics (io.containerd.cgroups.v1.Metrics and .v2.Metrics, built here
// by hand and serialized as a shim would send them) into the cgroup driver's statistics JSON,
// and on through stats_convert into CRI figures: units, working set, limits that mean "none",
// fields left out, type URLs, and bytes that are not metrics.
#include "plugins/cri/shim_stats.h"

#include <limits>

#include "gtest/gtest.h"
#include "plugins/cri/stats_convert.h"
#include "shim/cgroups/v1/metrics.pb.h"
#include "shim/cgroups/v2/metrics.pb.h"

namespace berth::cri {
namespace {

using nlohmann::json;
namespace cg1 = io::containerd::cgroups::v1;
namespace cg2 = io::containerd::cgroups::v2;

constexpr int64_t kTs = 1764278400000000000;
constexpr char kV1Url[] = "io.containerd.cgroups.v1.Metrics";
constexpr char kV2Url[] = "io.containerd.cgroups.v2.Metrics";

// What containerd-shim-runc-v2 reads from a busy container's cgroup v1 directories.
cg1::Metrics V1Sample() {
  cg1::Metrics m;
  m.mutable_pids()->set_current(3);
  m.mutable_pids()->set_limit(64);
  cg1::CPUUsage* cpu = m.mutable_cpu()->mutable_usage();
  cpu->set_total(123456000);
  cpu->set_user(100000000);
  cpu->set_kernel(23456000);
  cg1::MemoryStat* mem = m.mutable_memory();
  mem->mutable_usage()->set_usage(104857600);
  mem->mutable_usage()->set_limit(268435456);
  mem->set_total_inactive_file(20971520);
  mem->set_total_rss(52428800);
  mem->set_total_pg_fault(1000);
  mem->set_total_pg_maj_fault(7);
  m.mutable_memory_oom_control()->set_oom_kill(1);
  return m;
}

json Convert(const char* url, const std::string& bytes) {
  absl::StatusOr<json> st = ShimMetricsToStats(url, bytes, kTs);
  EXPECT_TRUE(st.ok()) << st.status();
  return st.ok() ? *st : json();
}

TEST(ShimStatsTest, V1FiguresAreTheCgroupDriversJson) {
  const json st = Convert(kV1Url, V1Sample().SerializeAsString());
  const json want = json::parse(R"({"timestamp_ns":1764278400000000000,
    "cpu":{"usage_ns":123456000,"user_ns":100000000,"system_ns":23456000},
    "memory":{"usage_bytes":104857600,"working_set_bytes":83886080,"rss_bytes":52428800,
              "page_faults":1000,"major_page_faults":7,"limit_bytes":268435456,"oom_kills":1},
    "pids":{"current":3,"limit":64}})");
  EXPECT_EQ(st, want) << st.dump();
}

TEST(ShimStatsTest, V1IntoCriFigures) {
  const json st = Convert(kV1Url, V1Sample().SerializeAsString());
  runtime::v1::CpuUsage cpu;
  FillCpu(st, kTs, &cpu);
  EXPECT_EQ(cpu.usage_core_nano_seconds().value(), 123456000u);
  runtime::v1::MemoryUsage mem;
  FillMemory(st, kTs, &mem);
  EXPECT_EQ(mem.working_set_bytes().value(), 104857600u - 20971520u);
  EXPECT_EQ(mem.usage_bytes().value(), 104857600u);
  EXPECT_EQ(mem.rss_bytes().value(), 52428800u);
  EXPECT_EQ(mem.page_faults().value(), 1000u);
  EXPECT_EQ(mem.major_page_faults().value(), 7u);
  EXPECT_EQ(mem.available_bytes().value(), 268435456u - (104857600u - 20971520u));
  runtime::v1::IoUsage io;
  EXPECT_FALSE(FillIo(st, kTs, &io));  // v1 metrics carry no pressure figures
}

TEST(ShimStatsTest, V1UnlimitedMemoryAndPidsHaveNoLimit) {
  cg1::Metrics m = V1Sample();
  m.mutable_memory()->mutable_usage()->set_limit(9223372036854771712u);  // LONG_MAX, paged
  m.mutable_pids()->set_limit(0);                                        // "max"
  const json st = Convert(kV1Url, m.SerializeAsString());
  EXPECT_FALSE(st["memory"].contains("limit_bytes")) << st.dump();
  EXPECT_FALSE(st["pids"].contains("limit")) << st.dump();
  runtime::v1::MemoryUsage mem;
  FillMemory(st, kTs, &mem);
  EXPECT_FALSE(mem.has_available_bytes());
}

TEST(ShimStatsTest, WorkingSetIsClampedAtZero) {
  cg1::Metrics m = V1Sample();
  m.mutable_memory()->set_total_inactive_file(200000000);  // more than the usage
  EXPECT_EQ(Convert(kV1Url, m.SerializeAsString())["memory"]["working_set_bytes"], 0u);

  cg2::Metrics m2;
  m2.mutable_memory()->set_usage(4096);
  m2.mutable_memory()->set_inactive_file(8192);
  EXPECT_EQ(Convert(kV2Url, m2.SerializeAsString())["memory"]["working_set_bytes"], 0u);
}

// A shim that fills only some figures (gVisor's fills usage and cache): zeros it did not
// fill are not reported as measurements.
TEST(ShimStatsTest, ZeroRssAndFaultsAreLeftOut) {
  cg1::Metrics m;
  m.mutable_memory()->mutable_usage()->set_usage(4096);
  m.mutable_cpu()->mutable_usage()->set_total(5);
  const json st = Convert(kV1Url, m.SerializeAsString());
  EXPECT_EQ(st["memory"], json::parse(R"({"usage_bytes":4096,"working_set_bytes":4096})"))
      << st.dump();
  EXPECT_FALSE(st.contains("pids"));
  runtime::v1::MemoryUsage mem;
  FillMemory(st, kTs, &mem);
  EXPECT_FALSE(mem.has_rss_bytes());
  EXPECT_FALSE(mem.has_page_faults());
  EXPECT_FALSE(mem.has_major_page_faults());
}

TEST(ShimStatsTest, EmptyMetricsGiveOnlyTheTimestamp) {
  const json st = Convert(kV2Url, "");
  EXPECT_EQ(st, json::parse(R"({"timestamp_ns":1764278400000000000})"));
  runtime::v1::CpuUsage cpu;
  FillCpu(st, kTs, &cpu);
  EXPECT_FALSE(cpu.has_usage_core_nano_seconds());
}

TEST(ShimStatsTest, V2MicrosecondsBecomeNanosecondsAndPressureIsKept) {
  cg2::Metrics m;
  m.mutable_pids()->set_current(2);
  m.mutable_pids()->set_limit(std::numeric_limits<uint64_t>::max());  // "max"
  cg2::CPUStat* cpu = m.mutable_cpu();
  cpu->set_usage_usec(123456);
  cpu->set_user_usec(100000);
  cpu->set_system_usec(23456);
  cg2::PSIData* some = cpu->mutable_psi()->mutable_some();
  some->set_total(4523440894);
  some->set_avg10(0.08);
  some->set_avg60(8.54);
  some->set_avg300(12.81);
  cg2::MemoryStat* mem = m.mutable_memory();
  mem->set_usage(104857600);
  mem->set_usage_limit(std::numeric_limits<uint64_t>::max());  // memory.max "max"
  mem->set_inactive_file(20971520);
  mem->set_file(30000000);
  mem->set_anon(52428800);
  mem->set_pgfault(1000);
  mem->set_pgmajfault(0);
  mem->mutable_psi()->mutable_full()->set_total(1500);
  m.mutable_memory_events()->set_oom_kill(2);
  m.mutable_io()->mutable_psi()->mutable_some()->set_avg10(99.99);
  const json st = Convert(kV2Url, m.SerializeAsString());
  const json want = json::parse(R"({"timestamp_ns":1764278400000000000,
    "cpu":{"usage_ns":123456000,"user_ns":100000000,"system_ns":23456000,
           "psi":{"some":{"total_ns":4523440894000,"avg10":0.08,"avg60":8.54,"avg300":12.81}}},
    "memory":{"usage_bytes":104857600,"working_set_bytes":83886080,"rss_bytes":52428800,
              "page_faults":1000,"major_page_faults":0,"oom_kills":2,
              "psi":{"full":{"total_ns":1500000,"avg10":0.0,"avg60":0.0,"avg300":0.0}}},
    "io":{"psi":{"some":{"total_ns":0,"avg10":99.99,"avg60":0.0,"avg300":0.0}}},
    "pids":{"current":2}})");
  EXPECT_EQ(st, want) << st.dump();

  runtime::v1::CpuUsage c;
  FillCpu(st, kTs, &c);
  EXPECT_EQ(c.usage_core_nano_seconds().value(), 123456000u);
  EXPECT_EQ(c.psi().some().total(), 4523440894000u);
  EXPECT_FALSE(c.psi().has_full());
  runtime::v1::MemoryUsage mu;
  FillMemory(st, kTs, &mu);
  EXPECT_EQ(mu.working_set_bytes().value(), 83886080u);
  EXPECT_FALSE(mu.has_available_bytes());
  runtime::v1::IoUsage io;
  ASSERT_TRUE(FillIo(st, kTs, &io));
  EXPECT_DOUBLE_EQ(io.psi().some().avg10(), 99.99);
}

// containerd's typeurl names a message without a prefix; an Any built by protobuf's own
// helpers has "type.googleapis.com/". Both are the same message.
TEST(ShimStatsTest, TypeUrlPrefixIsIgnored) {
  const std::string bytes = V1Sample().SerializeAsString();
  absl::StatusOr<json> st =
      ShimMetricsToStats("type.googleapis.com/io.containerd.cgroups.v1.Metrics", bytes, kTs);
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ((*st)["cpu"]["usage_ns"], 123456000u);
}

// The fields proto/shim/cgroups/ leaves out (blkio, hugetlb, network…) are skipped.
TEST(ShimStatsTest, FieldsNotDeclaredAreSkipped) {
  std::string bytes = V1Sample().SerializeAsString();
  bytes += std::string("\x2a\x04\x0a\x02\x08\x01", 6);  // blkio = 5 {io_service_bytes {..}}
  bytes += std::string("\x0a\x02\x08\x07", 4);          // hugetlb = 1 {usage: 7}
  EXPECT_EQ(Convert(kV1Url, bytes)["memory"]["usage_bytes"], 104857600u);
}

TEST(ShimStatsTest, AnotherMessageIsUnimplementedNamingIt) {
  absl::StatusOr<json> st = ShimMetricsToStats("io.containerd.cgroups.v3.Metrics", "", kTs);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_NE(st.status().message().find("io.containerd.cgroups.v3.Metrics"), std::string::npos)
      << st.status();
  EXPECT_NE(st.status().message().find(kV1Url), std::string::npos) << st.status();
}

TEST(ShimStatsTest, BytesThatDoNotParseAreInvalid) {
  absl::StatusOr<json> st = ShimMetricsToStats(kV2Url, std::string("\xff\xff\xff", 3), kTs);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace berth::cri
