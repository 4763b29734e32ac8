// SPDX-License-Identifier: Apache-2.0
// A cgroup driver's statistics JSON into CRI CpuUsage, MemoryUsage and IoUsage: every figure,
// pressure stall information, figures left unset when absent, and JSON that is not what the
// drivers write (a third-party driver's) taken without an exception.
#include "plugins/cri/stats_convert.h"

#include "gtest/gtest.h"

namespace berth::cri {
namespace {

using nlohmann::json;

constexpr int64_t kTs = 1764278400000000000;

// The JSON of docs/cgroups.md §3, as the cgroupfs and systemd drivers write it.
const char kStats[] = R"({"timestamp_ns":1764278400000000000,
  "cpu":{"usage_ns":123456000,"user_ns":100000000,"system_ns":23456000,
         "psi":{"some":{"total_ns":4523440894000,"avg10":0.08,"avg60":8.54,"avg300":12.81},
                "full":{"total_ns":0,"avg10":0,"avg60":0,"avg300":0}}},
  "memory":{"usage_bytes":104857600,"working_set_bytes":83886080,"rss_bytes":52428800,
            "page_faults":1000,"major_page_faults":7,"limit_bytes":268435456,"oom_kills":1,
            "psi":{"some":{"total_ns":2000000,"avg10":1.5,"avg60":0.25,"avg300":0.05},
                   "full":{"total_ns":1500000,"avg10":1,"avg60":0.2,"avg300":0.04}}},
  "io":{"psi":{"some":{"total_ns":7000,"avg10":99.99,"avg60":50,"avg300":10}}},
  "pids":{"current":3,"limit":64}})";

void ExpectPsiData(const runtime::v1::PsiData& d, uint64_t total, double avg10, double avg60,
                   double avg300) {
  EXPECT_EQ(d.total(), total);
  EXPECT_DOUBLE_EQ(d.avg10(), avg10);
  EXPECT_DOUBLE_EQ(d.avg60(), avg60);
  EXPECT_DOUBLE_EQ(d.avg300(), avg300);
}

TEST(StatsConvertTest, Cpu) {
  runtime::v1::CpuUsage cpu;
  FillCpu(json::parse(kStats), kTs, &cpu);
  EXPECT_EQ(cpu.timestamp(), kTs);
  ASSERT_TRUE(cpu.has_usage_core_nano_seconds());
  EXPECT_EQ(cpu.usage_core_nano_seconds().value(), 123456000u);
  EXPECT_FALSE(cpu.has_usage_nano_cores());  // derived by the caller from two readings
  ASSERT_TRUE(cpu.has_psi());
  ASSERT_TRUE(cpu.psi().has_some());
  ExpectPsiData(cpu.psi().some(), 4523440894000u, 0.08, 8.54, 12.81);
  ASSERT_TRUE(cpu.psi().has_full());  // a line of zeros is reported, not dropped
  ExpectPsiData(cpu.psi().full(), 0, 0, 0, 0);
}

TEST(StatsConvertTest, Memory) {
  runtime::v1::MemoryUsage mem;
  FillMemory(json::parse(kStats), kTs, &mem);
  EXPECT_EQ(mem.timestamp(), kTs);
  EXPECT_EQ(mem.working_set_bytes().value(), 83886080u);
  EXPECT_EQ(mem.usage_bytes().value(), 104857600u);
  EXPECT_EQ(mem.rss_bytes().value(), 52428800u);
  EXPECT_EQ(mem.page_faults().value(), 1000u);
  EXPECT_EQ(mem.major_page_faults().value(), 7u);
  EXPECT_EQ(mem.available_bytes().value(), 268435456u - 83886080u);
  ASSERT_TRUE(mem.has_psi());
  ExpectPsiData(mem.psi().some(), 2000000, 1.5, 0.25, 0.05);
  ExpectPsiData(mem.psi().full(), 1500000, 1, 0.2, 0.04);
}

TEST(StatsConvertTest, Io) {
  runtime::v1::IoUsage io;
  ASSERT_TRUE(FillIo(json::parse(kStats), kTs, &io));
  EXPECT_EQ(io.timestamp(), kTs);
  ASSERT_TRUE(io.has_psi());
  ExpectPsiData(io.psi().some(), 7000, 99.99, 50, 10);
  EXPECT_FALSE(io.psi().has_full());  // absent line: unset
}

// A host without PSI (or a cgroup v1 host without a cgroup2 mount): no psi anywhere, and no
// IoUsage at all.
TEST(StatsConvertTest, NoPsi) {
  const json st = json::parse(R"({"timestamp_ns":5,"cpu":{"usage_ns":10},
      "memory":{"usage_bytes":20,"working_set_bytes":15}})");
  runtime::v1::CpuUsage cpu;
  FillCpu(st, 5, &cpu);
  EXPECT_EQ(cpu.usage_core_nano_seconds().value(), 10u);
  EXPECT_FALSE(cpu.has_psi());
  runtime::v1::MemoryUsage mem;
  FillMemory(st, 5, &mem);
  EXPECT_EQ(mem.usage_bytes().value(), 20u);
  EXPECT_FALSE(mem.has_available_bytes());  // no limit
  EXPECT_FALSE(mem.has_rss_bytes());
  EXPECT_FALSE(mem.has_psi());
  runtime::v1::IoUsage io;
  io.set_timestamp(42);
  EXPECT_FALSE(FillIo(st, 5, &io));
  EXPECT_EQ(io.timestamp(), 42);  // left alone
  EXPECT_FALSE(FillIo(json::parse(R"({"io":{}})"), 5, &io));
  EXPECT_FALSE(FillIo(json::parse(R"({"io":{"psi":{}}})"), 5, &io));
}

TEST(StatsConvertTest, EmptyGroupsStillCarryTheTimestamp) {
  runtime::v1::CpuUsage cpu;
  FillCpu(json::object(), kTs, &cpu);
  EXPECT_EQ(cpu.timestamp(), kTs);
  EXPECT_FALSE(cpu.has_usage_core_nano_seconds());
  runtime::v1::MemoryUsage mem;
  FillMemory(json::object(), kTs, &mem);
  EXPECT_EQ(mem.timestamp(), kTs);
  EXPECT_FALSE(mem.has_working_set_bytes());
}

// What a driver should not write: wrong types, negative figures, a psi line without its
// total. Each such figure is left unset; nothing throws.
TEST(StatsConvertTest, MalformedFiguresAreLeftOut) {
  for (const char* text : {
           R"({"cpu":"busy","memory":[1,2],"io":7})",
           R"({"cpu":{"usage_ns":-1,"psi":[]},"memory":{"usage_bytes":"20","psi":"high"},)"
           R"("io":{"psi":{"some":{"avg10":1,"avg60":1,"avg300":1}}}})",
           R"({"cpu":{"usage_ns":1.5,"psi":{"some":{"total_ns":-3},"full":null}}})",
           R"([1,2,3])",
           R"(null)",
       }) {
    SCOPED_TRACE(text);
    const json st = json::parse(text);
    runtime::v1::CpuUsage cpu;
    runtime::v1::MemoryUsage mem;
    runtime::v1::IoUsage io;
    FillCpu(st, kTs, &cpu);
    FillMemory(st, kTs, &mem);
    EXPECT_FALSE(FillIo(st, kTs, &io));
    EXPECT_FALSE(cpu.has_usage_core_nano_seconds());
    EXPECT_FALSE(cpu.has_psi());
    EXPECT_FALSE(mem.has_usage_bytes());
    EXPECT_FALSE(mem.has_psi());
    EXPECT_FALSE(io.has_psi());
  }
  // A line with its total and an average of the wrong type: the average counts as 0.
  runtime::v1::PsiStats psi;
  ASSERT_TRUE(
      FillPsi(json::parse(R"({"full":{"total_ns":9,"avg10":"x","avg60":2,"avg300":3}})"), &psi));
  EXPECT_FALSE(psi.has_some());
  ExpectPsiData(psi.full(), 9, 0, 2, 3);
}

TEST(StatsConvertTest, AvailableBytesNeverNegative) {
  runtime::v1::MemoryUsage mem;
  FillMemory(json::parse(R"({"memory":{"working_set_bytes":300,"limit_bytes":200}})"), kTs, &mem);
  ASSERT_TRUE(mem.has_available_bytes());
  EXPECT_EQ(mem.available_bytes().value(), 0u);
}

}  // namespace
}  // namespace berth::cri
