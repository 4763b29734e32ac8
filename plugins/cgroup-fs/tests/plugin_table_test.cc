// SPDX-License-Identifier: Apache-2.0
// The built plugin (.so) through its C entry point and berth_cgroup_driver_v1 table, with a
// minimal host table that serves the configuration, over fake cgroup trees.
#include <dlfcn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "berth/plugin.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/plugin_loader.h"
#include "plugins/cgroup-fs/tests/fake_tree.h"

namespace berth::cgroupfs {
namespace {

using ::berth::testing::ReadFile;
using ::testing::HasSubstr;
using namespace ::berth::cgroupfs::testing;  // NOLINT(build/namespaces)

// The host context: the configuration subtree the plugin reads.
class PluginTableTest : public ::testing::Test {
 protected:
  void SetUp() override {
    plugin_.Load(BERTH_CGROUP_FS_PLUGIN, "io.berth.cgroup.fs", BERTH_KIND_CGROUP_DRIVER);
    desc_ = plugin_.desc();
  }
  // Initialises the plugin with `config`; the code, and the message in *err.
  int32_t Init(const std::string& config, std::string* err) {
    int32_t code = plugin_.Init(config, BERTH_IFACE_CGROUP_DRIVER_V1, err);
    table_ = plugin_.table();
    instance_ = plugin_.instance();
    return code;
  }

  ::berth::testing::LoadedPlugin<berth_cgroup_driver_v1> plugin_;
  ::berth::testing::FakeHostCtx& ctx_ = plugin_.ctx;
  const berth_plugin_descriptor* desc_ = nullptr;
  const berth_cgroup_driver_v1* table_ = nullptr;
  void* instance_ = nullptr;
};

TEST_F(PluginTableTest, V2TreeThroughTheTable) {
  TempDir root("cgfs");
  MakeV2Root(root.path(), "cpu memory pids");
  WriteFile(root.path() / "kubepods/pod1/abc/memory.current", "4096\n");
  WriteFile(root.path() / "kubepods/pod1/abc/pids.max", "20\n");
  std::string err;
  ASSERT_EQ(Init(R"({"root":")" + root.str() + R"("})", &err), BERTH_OK) << err;
  ASSERT_NE(table_, nullptr);
  EXPECT_GE(table_->struct_size, sizeof(berth_cgroup_driver_v1));
  EXPECT_EQ(sdk::View(table_->driver_name(instance_)), "cgroupfs");
  EXPECT_THAT(ctx_.log, HasSubstr("cgroup v2"));

  sdk::StringSink status, status_err;
  ASSERT_EQ(table_->status(instance_, status.get(), status_err.get()), BERTH_OK);
  EXPECT_EQ(status.str(), R"({"ready":true,"reason":"","message":""})");

  sdk::StringSink path, path_err;
  ASSERT_EQ(table_->cgroup_path(instance_, sdk::Str("/kubepods/pod1"), sdk::Str("abc"), path.get(),
                                path_err.get()),
            BERTH_OK)
      << path_err.str();
  EXPECT_EQ(path.str(), "/kubepods/pod1/abc");

  sdk::StringSink bad, bad_err;
  EXPECT_EQ(table_->cgroup_path(instance_, sdk::Str("/kubepods.slice/kubepods-pod1.slice"),
                                sdk::Str("abc"), bad.get(), bad_err.get()),
            BERTH_INVALID_ARGUMENT);
  EXPECT_THAT(bad_err.str(), HasSubstr("probably systemd"));
  EXPECT_EQ(bad.str(), "");

  sdk::StringSink stats, stats_err;
  ASSERT_EQ(table_->stats(instance_, sdk::Str(path.str()), stats.get(), stats_err.get()), BERTH_OK)
      << stats_err.str();
  EXPECT_THAT(stats.str(), HasSubstr(R"("memory":{"usage_bytes":4096},"pids":{"limit":20}})"));

  sdk::StringSink gone, gone_err;
  EXPECT_EQ(table_->stats(instance_, sdk::Str("/kubepods/pod1/gone"), gone.get(), gone_err.get()),
            BERTH_NOT_FOUND);
  EXPECT_THAT(gone_err.str(), HasSubstr("/kubepods/pod1/gone"));

  sdk::StringSink rm_err;
  EXPECT_EQ(table_->remove(instance_, sdk::Str("/kubepods/pod1/never"), rm_err.get()), BERTH_OK)
      << rm_err.str();
}

// enter (ABI 1.2): a pod's shim into <parent>/shim-<id> of every hierarchy; a v1 cpuset
// cgroup first gets cpus and mems from its nearest ancestor that has them.
TEST_F(PluginTableTest, EnterMovesAProcessIntoEveryHierarchy) {
  TempDir root("cgfs");
  MakeV1Root(root.path(), /*hybrid=*/true);
  MakeV1Hierarchy(root.path(), "cpuset");
  WriteFile(root.path() / "cpuset/cpuset.cpus", "0-3\n");
  WriteFile(root.path() / "cpuset/cpuset.mems", "0\n");
  // What the kernel gives every new cgroup (a fake tree has to be told): cgroup.procs, and
  // for cpuset ones empty cpus and mems.
  for (const char* h : {"cpu,cpuacct", "memory", "pids", "systemd", "cpuset", "unified"}) {
    WriteFile(root.path() / h / "kubepods/shim-1/cgroup.procs", "");
  }
  for (const char* dir : {"cpuset/kubepods", "cpuset/kubepods/shim-1"}) {
    WriteFile(root.path() / dir / "cpuset.cpus", "");
    WriteFile(root.path() / dir / "cpuset.mems", "");
  }
  std::string err;
  ASSERT_EQ(Init(R"({"root":")" + root.str() + R"("})", &err), BERTH_OK) << err;
  ASSERT_TRUE(BERTH_HAS_MEMBER(table_, berth_cgroup_driver_v1, enter));
  const std::string pid = std::to_string(::getpid());
  sdk::StringSink enter_err;
  ASSERT_EQ(table_->enter(instance_, sdk::Str("/kubepods/shim-1"), ::getpid(), enter_err.get()),
            BERTH_OK)
      << enter_err.str();
  for (const char* h : {"cpu,cpuacct", "memory", "pids", "systemd", "cpuset", "unified"}) {
    EXPECT_EQ(ReadFile(root.path() / h / "kubepods/shim-1/cgroup.procs"), pid) << h;
  }
  EXPECT_EQ(ReadFile(root.path() / "cpuset/kubepods/cpuset.cpus"), "0-3");
  EXPECT_EQ(ReadFile(root.path() / "cpuset/kubepods/shim-1/cpuset.cpus"), "0-3");
  EXPECT_EQ(ReadFile(root.path() / "cpuset/kubepods/shim-1/cpuset.mems"), "0");

  sdk::StringSink slice_err;
  EXPECT_EQ(table_->enter(instance_, sdk::Str("kubepods-pod1.slice:berth:shim-1"), ::getpid(),
                          slice_err.get()),
            BERTH_INVALID_ARGUMENT);
  EXPECT_THAT(slice_err.str(), HasSubstr("systemd"));
  // A process that is gone: NOT_FOUND, nothing written.
  pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ASSERT_GT(child, 0);
  ::waitpid(child, nullptr, 0);
  sdk::StringSink gone_err;
  EXPECT_EQ(table_->enter(instance_, sdk::Str("/kubepods/shim-2"), child, gone_err.get()),
            BERTH_NOT_FOUND);
  EXPECT_THAT(gone_err.str(), HasSubstr(std::to_string(child)));
  EXPECT_FALSE(fs::exists(root.path() / "memory/kubepods/shim-2"));
}

TEST_F(PluginTableTest, NotReadyWhenControllersAreMissing) {
  TempDir root("cgfs");
  MakeV2Root(root.path(), "cpu io");
  std::string err;
  ASSERT_EQ(Init(R"({"root":")" + root.str() + R"("})", &err), BERTH_OK) << err;
  sdk::StringSink status, status_err;
  ASSERT_EQ(table_->status(instance_, status.get(), status_err.get()), BERTH_OK);
  EXPECT_THAT(status.str(), HasSubstr(R"("ready":false,"reason":"CgroupControllersMissing")"));
  EXPECT_THAT(status.str(), HasSubstr("memory pids"));
}

TEST_F(PluginTableTest, MissingRootIsNotApplicable) {
  std::string err;
  EXPECT_EQ(Init(R"({"root":"/nonexistent/berth-cgroup"})", &err), BERTH_NOT_APPLICABLE);
  EXPECT_THAT(err, HasSubstr("/nonexistent/berth-cgroup"));
}

TEST_F(PluginTableTest, UnknownConfigKeyIsRefused) {
  std::string err;
  EXPECT_EQ(Init(R"({"rooot":"/sys/fs/cgroup"})", &err), BERTH_INVALID_ARGUMENT);
  EXPECT_THAT(err, HasSubstr("unknown key \"rooot\""));
}

}  // namespace
}  // namespace berth::cgroupfs
