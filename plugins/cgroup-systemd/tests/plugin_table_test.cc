// SPDX-License-Identifier: Apache-2.0
// The built plugin through its C table with no systemd to talk to: configuration, the
// not-applicable skip, readiness when systemd cannot be reached, cgroups paths, and
// statistics and removal over fake cgroup trees (the same JSON as the cgroupfs driver).
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "plugins/cgroup-fs/tests/fake_tree.h"
#include "plugins/cgroup-systemd/tests/plugin_host.h"

namespace berth::cgroup_systemd {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using namespace ::berth::cgroupfs::testing;  // NOLINT(build/namespaces)
using testing::CallResult;
using testing::LoadedPlugin;

constexpr char kPod[] = "kubepods-besteffort-pod0d8e_41f2.slice";
constexpr char kScopeRel[] =
    "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0d8e_41f2.slice/"
    "berth-abc.scope";

class SystemdPluginTest : public ::testing::Test {
 protected:
  // A configuration that makes the plugin applicable (system_dir exists) with a bus that
  // leads nowhere and the cgroup tree `root`.
  std::string Config(const std::string& root, const std::string& extra = "") {
    return R"({"system_dir":")" + tmp_.str() + R"(","bus_address":"unix:path=)" +
           tmp_.File("no-such-socket") + R"(","cgroup_root":")" + root + "\"" + extra + "}";
  }

  TempDir tmp_{"cgsd"};
  LoadedPlugin plugin_;
};

TEST_F(SystemdPluginTest, DescriptorAndDefaults) {
  CallResult init = plugin_.Init(R"({"system_dir":")" + tmp_.File("absent") + "\"}");
  ASSERT_NE(plugin_.descriptor(), nullptr);
  EXPECT_STREQ(plugin_.descriptor()->id, "io.berth.cgroup.systemd");
  EXPECT_STREQ(plugin_.descriptor()->kind, BERTH_KIND_CGROUP_DRIVER);
  EXPECT_THAT(plugin_.descriptor()->default_config_json,
              AllOf(HasSubstr(R"("system_dir":"/run/systemd/system")"),
                    HasSubstr(R"("bus_address":"")"), HasSubstr(R"("scope_prefix":"berth")")));
}

TEST_F(SystemdPluginTest, NotApplicableWithoutSystemdAsInit) {
  CallResult init = plugin_.Init(R"({"system_dir":")" + tmp_.File("absent") + "\"}");
  EXPECT_EQ(init.code, BERTH_NOT_APPLICABLE);
  EXPECT_THAT(init.err, AllOf(HasSubstr("systemd is not the init system here"),
                              HasSubstr(tmp_.File("absent")), HasSubstr("cgroupfs")));
}

TEST_F(SystemdPluginTest, RefusesUnknownKeysAndBadValues) {
  CallResult unknown = plugin_.Init(R"({"slice":"x"})");
  EXPECT_EQ(unknown.code, BERTH_INVALID_ARGUMENT);
  EXPECT_THAT(unknown.err, AllOf(HasSubstr("unknown key \"slice\""), HasSubstr("bus_address"),
                                 HasSubstr("scope_prefix")));
  LoadedPlugin p2;
  CallResult prefix = p2.Init(Config(tmp_.str(), R"(,"scope_prefix":"a:b")"));
  EXPECT_EQ(prefix.code, BERTH_INVALID_ARGUMENT);
  EXPECT_THAT(prefix.err,
              AllOf(HasSubstr("config.yaml:9 (scope_prefix)"), HasSubstr("scope_prefix \"a:b\"")));
  LoadedPlugin p3;
  CallResult timeout = p3.Init(Config(tmp_.str(), R"(,"stop_timeout":"soon")"));
  EXPECT_EQ(timeout.code, BERTH_INVALID_ARGUMENT);
  EXPECT_THAT(timeout.err, HasSubstr("stop_timeout \"soon\" is not a duration"));
}

TEST_F(SystemdPluginTest, NotReadyWhenSystemdCannotBeReached) {
  TempDir root("cgsd-root");
  MakeV1Root(root.path(), /*hybrid=*/true);
  ASSERT_EQ(plugin_.Init(Config(root.str())).code, BERTH_OK);
  EXPECT_THAT(plugin_.log(),
              AllOf(HasSubstr("systemd cgroup driver: cgroup v1"), HasSubstr("no-such-socket")));
  EXPECT_EQ(plugin_.DriverName(), "systemd");
  CallResult status = plugin_.Status();
  ASSERT_EQ(status.code, BERTH_OK) << status.err;
  EXPECT_THAT(status.out,
              AllOf(HasSubstr(R"("ready":false)"), HasSubstr(R"("reason":"SystemdUnreachable")"),
                    HasSubstr("cannot reach systemd on D-Bus"),
                    HasSubstr(tmp_.File("no-such-socket")), HasSubstr("bus_address")));
}

// With no bus_address both default addresses are tried, and both named when they fail.
TEST_F(SystemdPluginTest, DefaultAddressesOnAHostWithoutSystemd) {
  std::error_code ec;
  if (fs::exists("/run/systemd/private", ec) || fs::exists("/run/dbus/system_bus_socket", ec) ||
      std::getenv("DBUS_SYSTEM_BUS_ADDRESS") != nullptr) {
    GTEST_SKIP() << "this host has a system bus or a systemd private socket";
  }
  TempDir root("cgsd-root");
  MakeV1Root(root.path(), /*hybrid=*/false);
  ASSERT_EQ(
      plugin_.Init(R"({"system_dir":")" + tmp_.str() + R"(","cgroup_root":")" + root.str() + "\"}")
          .code,
      BERTH_OK);
  CallResult status = plugin_.Status();
  EXPECT_THAT(status.out, AllOf(HasSubstr(R"("reason":"SystemdUnreachable")"),
                                HasSubstr("the system bus (unix:path=/run/dbus/system_bus_socket)"),
                                HasSubstr("unix:path=/run/systemd/private"),
                                HasSubstr("Is systemd the init system here")))
      << status.out;
}

TEST_F(SystemdPluginTest, CgroupPathsThroughTheTable) {
  ASSERT_EQ(plugin_.Init(Config(tmp_.str(), R"(,"scope_prefix":"cri")")).code, BERTH_OK);
  CallResult path = plugin_.CgroupPath(kPod, "abc");
  ASSERT_EQ(path.code, BERTH_OK) << path.err;
  EXPECT_EQ(path.out, std::string(kPod) + ":cri:abc");
  EXPECT_EQ(plugin_.CgroupPath("", "abc").out, "system.slice:cri:abc");

  CallResult cgroupfs = plugin_.CgroupPath("/kubepods/burstable/pod1", "abc");
  EXPECT_EQ(cgroupfs.code, BERTH_INVALID_ARGUMENT);
  EXPECT_EQ(cgroupfs.out, "");
  EXPECT_THAT(cgroupfs.err,
              AllOf(HasSubstr("the kubelet and berth disagree on the cgroup "
                              "driver"),
                    HasSubstr("cgroupDriver: systemd"), HasSubstr("cgroup_driver: cgroupfs")));
  EXPECT_EQ(plugin_.CgroupPath(kPod, "a/b").code, BERTH_INVALID_ARGUMENT);
}

TEST_F(SystemdPluginTest, StatsOfAV2ScopeInTheCgroupfsDriversJson) {
  TempDir root("cgsd-v2");
  MakeV2Root(root.path(), "cpu memory pids");
  const auto dir = root.path() / kScopeRel;
  WriteFile(dir / "memory.current", "4096\n");
  WriteFile(dir / "memory.max", "max\n");
  WriteFile(dir / "pids.max", "20\n");
  WriteFile(dir / "cpu.stat", "usage_usec 7\nuser_usec 5\nsystem_usec 2\n");
  ASSERT_EQ(plugin_.Init(Config(root.str())).code, BERTH_OK);
  CallResult stats = plugin_.Stats(std::string(kPod) + ":berth:abc");
  ASSERT_EQ(stats.code, BERTH_OK) << stats.err;
  EXPECT_THAT(stats.out,
              MatchesRegex(R"(\{"timestamp_ns":[0-9]+,)"
                           R"("cpu":\{"usage_ns":7000,"user_ns":5000,"system_ns":2000\},)"
                           R"("memory":\{"usage_bytes":4096\},"pids":\{"limit":20\}\})"));
}

TEST_F(SystemdPluginTest, StatsOfAV1Scope) {
  TempDir root("cgsd-v1");
  MakeV1Root(root.path(), /*hybrid=*/true);
  WriteFile(root.path() / "memory" / kScopeRel / "memory.usage_in_bytes", "8192\n");
  WriteFile(root.path() / "memory" / kScopeRel / "memory.limit_in_bytes", "9223372036854771712\n");
  WriteFile(root.path() / "cpu,cpuacct" / kScopeRel / "cpuacct.usage", "123\n");
  WriteFile(root.path() / "pids" / kScopeRel / "pids.current", "2\n");
  ASSERT_EQ(plugin_.Init(Config(root.str())).code, BERTH_OK);
  CallResult stats = plugin_.Stats(std::string(kPod) + ":berth:abc");
  ASSERT_EQ(stats.code, BERTH_OK) << stats.err;
  EXPECT_THAT(stats.out, HasSubstr(R"("cpu":{"usage_ns":123},"memory":{"usage_bytes":8192},)"
                                   R"("pids":{"current":2}})"));
}

// A pod's figures: the CRI asks with the kubelet's cgroup_parent, the pod's slice (its name
// or its expanded path); they are those of the slice's cgroup.
TEST_F(SystemdPluginTest, StatsOfAPodSlice) {
  TempDir root("cgsd-v1");
  MakeV1Root(root.path(), /*hybrid=*/true);
  const std::string slice_rel =
      "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0d8e_41f2.slice";
  WriteFile(root.path() / "memory" / slice_rel / "memory.usage_in_bytes", "16384\n");
  WriteFile(root.path() / "cpu,cpuacct" / slice_rel / "cpuacct.usage", "456\n");
  WriteFile(root.path() / "pids" / slice_rel / "pids.current", "3\n");
  ASSERT_EQ(plugin_.Init(Config(root.str())).code, BERTH_OK);
  for (const std::string& parent : {std::string(kPod), "/" + slice_rel}) {
    CallResult stats = plugin_.Stats(parent);
    ASSERT_EQ(stats.code, BERTH_OK) << parent << ": " << stats.err;
    EXPECT_THAT(stats.out, HasSubstr(R"("cpu":{"usage_ns":456},"memory":{"usage_bytes":16384},)"
                                     R"("pids":{"current":3}})"));
  }
  CallResult gone = plugin_.Stats("kubepods-burstable-podgone.slice");
  EXPECT_EQ(gone.code, BERTH_NOT_FOUND);
  EXPECT_THAT(gone.err, AllOf(HasSubstr("systemd slice kubepods-burstable-podgone.slice"),
                              HasSubstr("has no cgroup")));
  EXPECT_EQ(plugin_.Stats("kubepods--x.slice").code, BERTH_INVALID_ARGUMENT);
  EXPECT_EQ(plugin_.Stats("").code, BERTH_INVALID_ARGUMENT);
}

TEST_F(SystemdPluginTest, StatsOfAMissingScopeIsNotFound) {
  TempDir root("cgsd-v1");
  MakeV1Root(root.path(), /*hybrid=*/false);
  ASSERT_EQ(plugin_.Init(Config(root.str())).code, BERTH_OK);
  CallResult stats = plugin_.Stats(std::string(kPod) + ":berth:gone");
  EXPECT_EQ(stats.code, BERTH_NOT_FOUND);
  EXPECT_THAT(stats.err, AllOf(HasSubstr("systemd scope berth-gone.scope"),
                               HasSubstr("has no cgroup"), HasSubstr("berth-gone.scope")));
  CallResult bad = plugin_.Stats("/kubepods/pod1/abc");
  EXPECT_EQ(bad.code, BERTH_INVALID_ARGUMENT);
  EXPECT_THAT(bad.err, HasSubstr("cgroupfs path"));
}

// Without systemd there is nothing to stop: OK when no cgroup is left, UNAVAILABLE (naming
// the directory) when one is.
TEST_F(SystemdPluginTest, RemoveWithoutSystemd) {
  TempDir root("cgsd-v2");
  MakeV2Root(root.path(), "cpu memory pids");
  WriteFile(root.path() / kScopeRel / "cgroup.procs", "");
  ASSERT_EQ(plugin_.Init(Config(root.str())).code, BERTH_OK);
  CallResult gone = plugin_.Remove(std::string(kPod) + ":berth:gone");
  EXPECT_EQ(gone.code, BERTH_OK) << gone.err;
  CallResult left = plugin_.Remove(std::string(kPod) + ":berth:abc");
  EXPECT_EQ(left.code, BERTH_UNAVAILABLE);
  EXPECT_THAT(left.err, AllOf(HasSubstr("remove systemd scope berth-abc.scope"),
                              HasSubstr(std::string(kScopeRel) + " still exists"),
                              HasSubstr("cannot reach systemd")));
  EXPECT_EQ(plugin_.Remove("nope").code, BERTH_INVALID_ARGUMENT);
}

}  // namespace
}  // namespace berth::cgroup_systemd
