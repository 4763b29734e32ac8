// SPDX-License-Identifier: Apache-2.0
// Pressure stall information in the systemd driver's statistics, over fake cgroup trees: on
// v2 from the scope's (or slice's) directory, on a hybrid host from its directory in the
// cgroup2 mount, as the cgroupfs driver reads them.
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "plugins/cgroup-fs/tests/fake_tree.h"
#include "plugins/cgroup-systemd/tests/plugin_host.h"

namespace berth::cgroup_systemd {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;
using namespace ::berth::cgroupfs::testing;  // NOLINT(build/namespaces)
using testing::CallResult;
using testing::LoadedPlugin;

constexpr char kPod[] = "kubepods-besteffort-pod0d8e_41f2.slice";
constexpr char kSliceRel[] =
    "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0d8e_41f2.slice";
constexpr char kScopeRel[] =
    "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0d8e_41f2.slice/"
    "berth-abc.scope";

void WritePressure(const fs::path& dir) {
  WriteFile(dir / "cpu.pressure",
            "some avg10=0.08 avg60=8.54 avg300=12.81 total=4523440894\n"
            "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n");
  WriteFile(dir / "memory.pressure",
            "some avg10=1.50 avg60=0.25 avg300=0.05 total=2000\n"
            "full avg10=1.00 avg60=0.20 avg300=0.04 total=1500\n");
  WriteFile(dir / "io.pressure", "some avg10=0.00 avg60=0.00 avg300=0.00 total=7\n");
}

const auto kPsiJson =
    AllOf(HasSubstr(R"("psi":{"some":{"total_ns":4523440894000,"avg10":0.08,"avg60":8.54,)"
                    R"("avg300":12.81},"full":{"total_ns":0,"avg10":0,"avg60":0,"avg300":0}}},)"),
          HasSubstr(R"("psi":{"some":{"total_ns":2000000,"avg10":1.5,"avg60":0.25,"avg300":0.05},)"
                    R"("full":{"total_ns":1500000,"avg10":1,"avg60":0.2,"avg300":0.04}}})"),
          HasSubstr(R"("io":{"psi":{"some":{"total_ns":7000,"avg10":0,"avg60":0,"avg300":0}}})"));

class SystemdPsiTest : public ::testing::Test {
 protected:
  std::string Config(const std::string& root) {
    return R"({"system_dir":")" + tmp_.str() + R"(","bus_address":"unix:path=)" +
           tmp_.File("no-such-socket") + R"(","cgroup_root":")" + root + "\"}";
  }

  TempDir tmp_{"cgsd-psi"};
  LoadedPlugin plugin_;
};

TEST_F(SystemdPsiTest, V2ScopeAndSlice) {
  TempDir root("cgsd-v2");
  MakeV2Root(root.path(), "cpu memory pids");
  WriteFile(root.path() / kScopeRel / "cpu.stat", "usage_usec 7\n");
  WritePressure(root.path() / kScopeRel);
  WriteFile(root.path() / kSliceRel / "memory.current", "4096\n");
  WritePressure(root.path() / kSliceRel);
  ASSERT_EQ(plugin_.Init(Config(root.str())).code, BERTH_OK);
  for (const std::string& path : {std::string(kPod) + ":berth:abc", std::string(kPod)}) {
    CallResult stats = plugin_.Stats(path);
    ASSERT_EQ(stats.code, BERTH_OK) << path << ": " << stats.err;
    EXPECT_THAT(stats.out, kPsiJson) << path;
  }
}

TEST_F(SystemdPsiTest, HybridScopeFromTheUnifiedMount) {
  TempDir root("cgsd-hybrid");
  MakeV1Root(root.path(), /*hybrid=*/true);
  WriteFile(root.path() / "cpu,cpuacct" / kScopeRel / "cpuacct.usage", "123\n");
  WriteFile(root.path() / "memory" / kScopeRel / "memory.usage_in_bytes", "8192\n");
  ASSERT_EQ(plugin_.Init(Config(root.str())).code, BERTH_OK);
  const std::string path = std::string(kPod) + ":berth:abc";
  CallResult stats = plugin_.Stats(path);  // no cgroup2 directory yet: no pressure
  ASSERT_EQ(stats.code, BERTH_OK) << stats.err;
  EXPECT_THAT(stats.out, AllOf(HasSubstr(R"("cpu":{"usage_ns":123})"), Not(HasSubstr("psi"))));
  WritePressure(root.path() / "unified" / kScopeRel);
  stats = plugin_.Stats(path);
  ASSERT_EQ(stats.code, BERTH_OK) << stats.err;
  EXPECT_THAT(stats.out, AllOf(HasSubstr(R"("cpu":{"usage_ns":123,"psi":{)"),
                               HasSubstr(R"("memory":{"usage_bytes":8192,"psi":{)"), kPsiJson));
}

}  // namespace
}  // namespace berth::cgroup_systemd
