// SPDX-License-Identifier: Apache-2.0
//
// The native snapshotter (plugins/snapshotter-native), loaded as the real plugin file: the
// conformance suite, then what is particular to it: bind mounts of full copies, and copies
// that keep everything a layer holds (owners, modes, xattrs, times, hard links, symlinks,
// devices) while staying independent of their parent.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <regex>

#include "gmock/gmock.h"
#include "nlohmann/json.hpp"
#include "tests/conformance/plugin_under_test.h"
#include "tests/conformance/snapshotter_conformance.h"

namespace berth::conformance {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kPluginId = "io.berth.snapshotter.native";

struct NativeUnderTest {
  static std::unique_ptr<SnapshotterUnderTest> Start(const fs::path& dir, std::string* error) {
    return PluginUnderTest::Start(BERTH_NATIVE_PLUGIN, kPluginId, dir, error);
  }
};

}  // namespace

INSTANTIATE_TEST_SUITE_P(Native, SnapshotterConformance,
                         ::testing::Values(SnapshotterConformanceParam{"native",
                                                                       &NativeUnderTest::Start}),
                         SnapshotterConformanceName);

namespace {

json OneMount(const Call& c) {
  EXPECT_TRUE(c.ok()) << ::testing::PrintToString(c);
  json j = json::parse(c.out, nullptr, false);
  EXPECT_TRUE(j.is_array() && j.size() == 1) << c.out;
  return j.is_array() && j.size() == 1 ? j[0] : json::object();
}

class NativeSnapshotterTest : public SnapshotterTestBase {
 protected:
  void SetUp() override {
    SnapshotterTestBase::SetUp();
    if (HasFatalFailure()) return;
    Start(&NativeUnderTest::Start);
  }
  fs::path snapshots() const { return dir() / "root" / kPluginId / "snapshots"; }
  static struct stat Lstat(const std::string& p) {
    struct stat st {};
    EXPECT_EQ(::lstat(p.c_str(), &st), 0) << p << ": " << strerror(errno);
    return st;
  }
  static std::string Xattr(const std::string& p, const char* name) {
    char buf[256];
    ssize_t n = ::lgetxattr(p.c_str(), name, buf, sizeof(buf));
    return n < 0 ? "<" + std::string(strerror(errno)) + ">" : std::string(buf, n);
  }
};

TEST_F(NativeSnapshotterTest, EverySnapshotIsABindMountOfItsOwnDirectory) {
  EXPECT_EQ(snap().Name(), "native");
  Call s = snap().Status();
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(json::parse(s.out).value("ready", false), true) << s.out;
  json base = OneMount(snap().Prepare("base-active"));
  ASSERT_TRUE(snap().Commit("base", "base-active").ok());
  for (auto [kind, m] : {std::pair{"active", OneMount(snap().Prepare("child", "base"))},
                         std::pair{"view", OneMount(snap().View("view", "base"))}}) {
    SCOPED_TRACE(kind);
    EXPECT_EQ(m.value("type", ""), "bind");
    const std::string source = m.value("source", "");
    EXPECT_TRUE(std::regex_match(source, std::regex(snapshots().string() + "/[0-9]+/fs")))
        << source;
    EXPECT_NE(source, base.value("source", ""));  // a copy, not the parent's directory
    EXPECT_EQ(m.value("options", std::vector<std::string>()),
              (std::vector<std::string>{"rbind", std::string(kind) == "view" ? "ro" : "rw"}));
    EXPECT_FALSE(fs::exists(fs::path(source).parent_path() / "work"));
  }
}

TEST_F(NativeSnapshotterTest, ACopyKeepsWhatTheLayerHoldsAndIsIndependent) {
  if (!IsRoot()) GTEST_SKIP() << "owners, devices and trusted xattrs need root";
  // The layer is written straight into the active snapshot's directory (its bind source).
  const std::string src = OneMount(snap().Prepare("base-active")).value("source", "");
  ASSERT_EQ(MakeDir(src + "/dir"), 0);
  ASSERT_EQ(WriteFile(src + "/dir/tool", "#!/bin/sh\n"), 0);
  ASSERT_EQ(::chown((src + "/dir/tool").c_str(), 1234, 5678), 0);
  ASSERT_EQ(::chmod((src + "/dir/tool").c_str(), 04755), 0);
  ASSERT_EQ(::lsetxattr((src + "/dir/tool").c_str(), "security.capability",
                        "\x01\x00\x00\x02\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
                        "\x00\x00",
                        20, 0),
            0)
      << strerror(errno);
  ASSERT_EQ(::lsetxattr((src + "/dir").c_str(), "trusted.note", "t", 1, 0), 0) << strerror(errno);
  ASSERT_EQ(::chmod((src + "/dir").c_str(), 0711), 0);
  ASSERT_EQ(WriteFile(src + "/a", "shared"), 0);
  ASSERT_EQ(::link((src + "/a").c_str(), (src + "/dir/a-link").c_str()), 0);
  ASSERT_EQ(::symlink("/nowhere/at/all", (src + "/dangling").c_str()), 0);
  ASSERT_EQ(::mknod((src + "/null").c_str(), S_IFCHR | 0666, makedev(1, 3)), 0);
  ASSERT_EQ(::mkfifo((src + "/fifo").c_str(), 0600), 0);
  const timespec old[2] = {{1000000000, 0}, {1000000000, 5}};
  ASSERT_EQ(::utimensat(AT_FDCWD, (src + "/a").c_str(), old, AT_SYMLINK_NOFOLLOW), 0);
  ASSERT_TRUE(snap().Commit("base", "base-active").ok());

  const std::string dst = OneMount(snap().Prepare("child", "base")).value("source", "");
  struct stat tool = Lstat(dst + "/dir/tool");
  EXPECT_EQ(tool.st_uid, 1234u);
  EXPECT_EQ(tool.st_gid, 5678u);
  EXPECT_EQ(tool.st_mode & 07777, 04755u);  // setuid survives the chown
  EXPECT_EQ(Xattr(dst + "/dir/tool", "security.capability").size(), 20u);
  EXPECT_EQ(Xattr(dst + "/dir", "trusted.note"), "t");
  EXPECT_EQ(Lstat(dst + "/dir").st_mode & 07777, 0711u);
  struct stat a = Lstat(dst + "/a"), link = Lstat(dst + "/dir/a-link");
  EXPECT_EQ(a.st_ino, link.st_ino);  // still one file with two names
  EXPECT_EQ(a.st_nlink, 2u);
  EXPECT_NE(a.st_ino, Lstat(src + "/a").st_ino);  // but not the parent's
  EXPECT_EQ(a.st_mtim.tv_sec, 1000000000);
  EXPECT_EQ(a.st_mtim.tv_nsec, 5);
  EXPECT_EQ(fs::read_symlink(dst + "/dangling").string(), "/nowhere/at/all");
  struct stat null = Lstat(dst + "/null");
  EXPECT_TRUE(S_ISCHR(null.st_mode));
  EXPECT_EQ(null.st_rdev, makedev(1, 3));
  EXPECT_TRUE(S_ISFIFO(Lstat(dst + "/fifo").st_mode));

  // Changes in the child stay there.
  ASSERT_EQ(WriteFile(dst + "/a", "changed"), 0);
  ASSERT_EQ(::unlink((dst + "/dir/tool").c_str()), 0);
  EXPECT_EQ(ReadFile(src + "/a"), "shared");
  EXPECT_TRUE(Exists(src + "/dir/tool"));
}

}  // namespace
}  // namespace berth::conformance
