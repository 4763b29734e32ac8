// SPDX-License-Identifier: Apache-2.0
//
// The overlayfs snapshotter, loaded as the real plugin file through the real registry and
// host table over a real store: the conformance suite, then what is particular to it (mount
// shapes, relative paths for deep chains, crash recovery, labels, usage), and the SDK's
// mount helpers (berth/mount.hpp).
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <regex>
#include <set>

#include "berth/mount.hpp"
#include "gmock/gmock.h"
#include "nlohmann/json.hpp"
#include "tests/conformance/plugin_under_test.h"
#include "tests/conformance/snapshotter_conformance.h"

namespace berth::conformance {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr const char* kPluginId = "io.berth.snapshotter.overlay";

// The plugin file, loaded as berthd loads it (plugin_under_test.h).
struct OverlayUnderTest {
  static std::unique_ptr<SnapshotterUnderTest> Start(const fs::path& dir, std::string* error) {
    return PluginUnderTest::Start(BERTH_OVERLAY_PLUGIN, kPluginId, dir, error);
  }
};

}  // namespace

INSTANTIATE_TEST_SUITE_P(Overlay, SnapshotterConformance,
                         ::testing::Values(SnapshotterConformanceParam{"overlay",
                                                                       &OverlayUnderTest::Start}),
                         SnapshotterConformanceName);

namespace {

// ---- overlay specifics ----------------------------------------------------------------------

json Parse(const std::string& text) { return json::parse(text, nullptr, false); }

// The one mount of a mounts array (these tests only see single-mount answers).
json OneMount(const Call& c) {
  EXPECT_TRUE(c.ok()) << ::testing::PrintToString(c);
  json j = Parse(c.out);
  EXPECT_TRUE(j.is_array() && j.size() == 1) << c.out;
  return j.is_array() && j.size() == 1 ? j[0] : json::object();
}

std::vector<std::string> Options(const json& m) {
  return m.value("options", std::vector<std::string>());
}

// The option starting with `prefix`, without the prefix; "" when absent.
std::string Option(const json& m, const std::string& prefix) {
  for (const std::string& o : Options(m)) {
    if (o.rfind(prefix, 0) == 0) return o.substr(prefix.size());
  }
  return "";
}

std::vector<std::string> Split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    size_t end = s.find(sep, start);
    out.push_back(s.substr(start, end == std::string::npos ? end : end - start));
    if (end == std::string::npos) return out;
    start = end + 1;
  }
}

class OverlaySnapshotterTest : public SnapshotterTestBase {
 protected:
  void SetUp() override {
    SnapshotterTestBase::SetUp();
    if (HasFatalFailure()) return;
    Start(&OverlayUnderTest::Start);
  }
  fs::path root() const { return dir() / "root" / kPluginId; }
  fs::path snapshots() const { return root() / "snapshots"; }

  // <snapshots>/<id>/fs of a snapshot: read from its mounts (a view for committed ones).
  std::string LayerDir(const std::string& key) {
    Call s = snap().Stat(key);
    EXPECT_TRUE(s.ok()) << ::testing::PrintToString(s);
    bool committed = Parse(s.out).value("kind", "") == "committed";
    const std::string probe = "layer-dir-probe";
    Call c = committed ? snap().View(probe, key) : snap().Mounts(key);
    json m = OneMount(c);
    if (committed) {
      EXPECT_TRUE(snap().Remove(probe).ok());
    }
    std::string path;
    if (m.value("type", "") == "bind") {
      path = m.value("source", "");
    } else {
      path = Option(m, "upperdir=");
      if (committed || path.empty()) path = Split(Option(m, "lowerdir="), ':')[0];
      if (m.contains("chdir")) path = m.value("chdir", "") + "/" + path;
    }
    return path;
  }
  // The numeric id in a layer dir.
  static uint64_t IdOf(const std::string& layer_dir) {
    return std::stoull(fs::path(layer_dir).parent_path().filename().string());
  }
  // Prepare and commit without mounting: files are written into the layer directly.
  void CommitDirect(const std::string& name, const std::string& parent,
                    const std::vector<std::pair<std::string, std::string>>& files = {}) {
    ASSERT_TRUE(snap().Prepare(name + "-active", parent).ok());
    std::string fs_dir = LayerDir(name + "-active");
    for (const auto& [file, content] : files) ASSERT_EQ(WriteFile(fs_dir + "/" + file, content), 0);
    ASSERT_TRUE(snap().Commit(name, name + "-active").ok());
  }
  std::set<std::string> SnapshotDirEntries() {
    std::set<std::string> out;
    for (const auto& e : fs::directory_iterator(snapshots())) out.insert(e.path().filename());
    return out;
  }
};

TEST_F(OverlaySnapshotterTest, RunsAsARealPluginAndIsReady) {
  EXPECT_EQ(snap().Name(), "overlayfs");
  Call s = snap().Status();
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(Parse(s.out).value("ready", false), true) << s.out;
  EXPECT_TRUE(fs::is_directory(snapshots()));
  EXPECT_EQ(fs::status(snapshots()).permissions() & fs::perms::all, fs::perms::owner_all);
  // The overlay probe at start left nothing behind.
  EXPECT_TRUE(SnapshotDirEntries().empty());
}

TEST_F(OverlaySnapshotterTest, ActiveWithoutParentIsAWritableBindOfItsLayer) {
  json m = OneMount(snap().Prepare("a"));
  EXPECT_EQ(m.value("type", ""), "bind");
  std::string source = m.value("source", "");
  EXPECT_TRUE(std::regex_match(source, std::regex(snapshots().string() + "/[0-9]+/fs"))) << source;
  EXPECT_TRUE(fs::is_directory(source));
  EXPECT_EQ(Options(m), (std::vector<std::string>{"rbind", "rw"}));
  EXPECT_FALSE(m.contains("chdir"));
}

TEST_F(OverlaySnapshotterTest, ViewOfOneLayerIsAReadOnlyBindOfThatLayer) {
  ASSERT_NO_FATAL_FAILURE(CommitDirect("base", "", {{"f", "x"}}));
  std::string base_fs = LayerDir("base");
  json m = OneMount(snap().View("v", "base"));
  EXPECT_EQ(m.value("type", ""), "bind");
  EXPECT_EQ(m.value("source", ""), base_fs);
  EXPECT_EQ(Options(m), (std::vector<std::string>{"rbind", "ro"}));
  // A view without a parent binds its own (empty) layer read-only.
  json lonely = OneMount(snap().View("lonely"));
  EXPECT_EQ(lonely.value("type", ""), "bind");
  EXPECT_NE(lonely.value("source", ""), base_fs);
  EXPECT_EQ(Options(lonely), (std::vector<std::string>{"rbind", "ro"}));
}

TEST_F(OverlaySnapshotterTest, ActiveOnParentsIsAnOverlayWithTheNearestLayerFirst) {
  ASSERT_NO_FATAL_FAILURE(CommitDirect("bottom", ""));
  ASSERT_NO_FATAL_FAILURE(CommitDirect("top", "bottom"));
  json m = OneMount(snap().Prepare("a", "top"));
  EXPECT_EQ(m.value("type", ""), "overlay");
  EXPECT_EQ(m.value("source", ""), "overlay");
  EXPECT_FALSE(m.contains("chdir"));
  std::string id = std::to_string(IdOf(LayerDir("a")));
  EXPECT_EQ(Option(m, "upperdir="), snapshots().string() + "/" + id + "/fs");
  EXPECT_EQ(Option(m, "workdir="), snapshots().string() + "/" + id + "/work");
  EXPECT_EQ(Option(m, "lowerdir="), LayerDir("top") + ":" + LayerDir("bottom"));
  EXPECT_TRUE(fs::is_directory(Option(m, "workdir=")));
}

TEST_F(OverlaySnapshotterTest, ViewOfSeveralLayersIsAnOverlayWithoutUpperDir) {
  ASSERT_NO_FATAL_FAILURE(CommitDirect("bottom", ""));
  ASSERT_NO_FATAL_FAILURE(CommitDirect("top", "bottom"));
  json m = OneMount(snap().View("v", "top"));
  EXPECT_EQ(m.value("type", ""), "overlay");
  EXPECT_EQ(Option(m, "upperdir="), "");
  EXPECT_EQ(Option(m, "workdir="), "");
  EXPECT_EQ(Option(m, "lowerdir="), LayerDir("top") + ":" + LayerDir("bottom"));
  // A view has no work directory.
  uint64_t id = 0;
  for (const std::string& e : SnapshotDirEntries()) id = std::max<uint64_t>(id, std::stoull(e));
  EXPECT_FALSE(fs::exists(snapshots() / std::to_string(id) / "work"));
}

TEST_F(OverlaySnapshotterTest, DeepChainsUseRelativePathsFromTheSnapshotsDirectory) {
  std::string parent;
  for (int i = 0; i < 130; ++i) {
    std::string name = "l" + std::to_string(i);
    ASSERT_NO_FATAL_FAILURE(CommitDirect(name, parent));
    parent = name;
    if (i == 2) {  // short chains use absolute paths
      json m = OneMount(snap().Prepare("short", parent));
      EXPECT_FALSE(m.contains("chdir"));
      EXPECT_THAT(Option(m, "lowerdir="), StartsWith(snapshots().string() + "/"));
    }
  }
  for (const Call& c : {snap().Prepare("deep", parent), snap().View("deep-view", parent)}) {
    json m = OneMount(c);
    EXPECT_EQ(m.value("chdir", ""), snapshots().string());
    size_t bytes = 0;
    for (const std::string& o : Options(m)) bytes += o.size() + 1;
    EXPECT_LT(bytes, 4096u) << "mount(2) takes one page of options";
    std::vector<std::string> lowers = Split(Option(m, "lowerdir="), ':');
    ASSERT_EQ(lowers.size(), 130u);
    EXPECT_EQ(snapshots().string() + "/" + lowers.front(), LayerDir("l129"));
    EXPECT_EQ(snapshots().string() + "/" + lowers.back(), LayerDir("l0"));
    for (const std::string& l : lowers) {
      EXPECT_TRUE(std::regex_match(l, std::regex("[0-9]+/fs"))) << l;
      EXPECT_TRUE(fs::is_directory(snapshots() / l)) << l;
    }
    for (const char* key : {"upperdir=", "workdir="}) {
      std::string v = Option(m, key);
      if (!v.empty()) {
        EXPECT_TRUE(std::regex_match(v, std::regex("[0-9]+/(fs|work)"))) << v;
      }
    }
  }
}

TEST_F(OverlaySnapshotterTest, LeftoversOfAnInterruptedPrepareAreRemovedAtStart) {
  ASSERT_NO_FATAL_FAILURE(CommitDirect("kept", "", {{"file", "content"}}));
  std::string kept = LayerDir("kept");
  uint64_t kept_id = IdOf(kept);
  Stop();
  // Before the rename: a tmp- directory. After the rename but before the store commit: a
  // numbered directory the store does not know (its id was not even handed out).
  const fs::path tmp = snapshots() / "tmp-0123456789abcdef-7";
  const fs::path orphan = snapshots() / std::to_string(kept_id + 1);
  const fs::path far = snapshots() / std::to_string(kept_id + 50);
  for (const fs::path& d : {tmp, orphan, far}) {
    ASSERT_EQ(MakeDir(d), 0);
    ASSERT_EQ(MakeDir(d / "fs"), 0);
    ASSERT_EQ(MakeDir(d / "work"), 0);
    ASSERT_EQ(WriteFile(d / "fs" / "leftover", "x"), 0);
  }
  const fs::path unexpected = snapshots() / "not-ours";
  ASSERT_EQ(MakeDir(unexpected), 0);
  Restart();
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_FALSE(Exists(tmp));
  EXPECT_FALSE(Exists(orphan));
  EXPECT_FALSE(Exists(far));
  EXPECT_TRUE(Exists(unexpected)) << "what the plugin does not recognise is left alone";
  EXPECT_EQ(ReadFile(kept + "/file"), "content");
  Call w = snap().Walk();
  ASSERT_TRUE(w.ok());
  ASSERT_EQ(Parse(w.out).size(), 1u) << w.out;
  EXPECT_EQ(Parse(w.out)[0].value("name", ""), "kept");
  // New snapshots get fresh, empty directories and ids past anything seen on disk.
  ASSERT_TRUE(snap().Prepare("new").ok());
  std::string fresh = LayerDir("new");
  EXPECT_GT(IdOf(fresh), kept_id + 50);
  EXPECT_TRUE(fs::is_empty(fresh));
}

TEST_F(OverlaySnapshotterTest, TheDirectoryOfAnInterruptedRemoveIsRemovedAtStart) {
  ASSERT_NO_FATAL_FAILURE(CommitDirect("gone", "", {{"file", "content"}}));
  std::string layer = LayerDir("gone");
  Stop();
  // The remove's store transaction committed; the process died before deleting the layer.
  {
    auto store = core::Store::Open(dir() / "meta.db");
    ASSERT_TRUE(store.ok()) << store.status();
    auto txn = (*store)->Begin(true);
    ASSERT_TRUE(txn.ok());
    ASSERT_TRUE((*txn)->Delete(std::string(kPluginId) + "/snapshots", "gone").ok());
    ASSERT_TRUE((*txn)->Commit().ok());
  }
  ASSERT_TRUE(Exists(layer));
  Restart();
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_FALSE(Exists(fs::path(layer).parent_path()));
  EXPECT_EQ(snap().Stat("gone").code, BERTH_NOT_FOUND);
}

TEST_F(OverlaySnapshotterTest, AnInterruptedCommitLeavesTheActiveSnapshotUsable) {
  // The commit is one store transaction: a crash before it leaves the active snapshot as it
  // was, which can be committed after the restart.
  ASSERT_TRUE(snap().Prepare("a").ok());
  std::string layer = LayerDir("a");
  ASSERT_EQ(WriteFile(layer + "/file", "content"), 0);
  Restart();
  ASSERT_FALSE(HasFatalFailure());
  Call s = snap().Stat("a");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(Parse(s.out).value("kind", ""), "active");
  ASSERT_TRUE(snap().Commit("c", "a").ok());
  EXPECT_EQ(LayerDir("c"), layer);
  EXPECT_EQ(ReadFile(layer + "/file"), "content");
}

TEST_F(OverlaySnapshotterTest, LabelsRoundTrip) {
  json labels = {{"io.berth/plain", "value"},
                 {"quote\"and\\backslash", "new\nline\ttab"},
                 {"unicode \xc3\xa9\xe2\x9c\x93", "\xf0\x9f\x90\xb3"},
                 {"empty", ""},
                 {"long", std::string(4000, 'x')}};
  ASSERT_TRUE(snap().Prepare("a", "", labels.dump()).ok());
  Call s = snap().Stat("a");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(Parse(s.out)["labels"], labels);
  Call w = snap().Walk();
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(Parse(w.out)[0]["labels"], labels);
  // Labels given to commit replace those of the active snapshot.
  json committed = {{"io.berth/layer", "yes"}};
  ASSERT_TRUE(snap().Commit("c", "a", committed.dump()).ok());
  EXPECT_EQ(Parse(snap().Stat("c").out)["labels"], committed);
  Restart();
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_EQ(Parse(snap().Stat("c").out)["labels"], committed);
  // A label over 4096 bytes (key and value) is refused.
  Call big = snap().Prepare("big", "", json({{"k", std::string(4096, 'x')}}).dump());
  EXPECT_EQ(big.code, BERTH_INVALID_ARGUMENT);
  EXPECT_THAT(big.err, HasSubstr("4096"));
}

TEST_F(OverlaySnapshotterTest, UsageCountsBytesAndInodesOfTheLayer) {
  ASSERT_TRUE(snap().Prepare("a").ok());
  const std::string layer = LayerDir("a");
  ASSERT_EQ(WriteFile(layer + "/one", std::string(10000, 'a')), 0);
  ASSERT_EQ(WriteFile(layer + "/two", std::string(5000, 'b')), 0);
  ASSERT_EQ(MakeDir(layer + "/dir"), 0);
  ASSERT_EQ(::link((layer + "/one").c_str(), (layer + "/dir/hardlink").c_str()), 0);
  ASSERT_EQ(::symlink("/usr", (layer + "/symlink").c_str()), 0);  // not followed
  // The overlay work directory is not part of the layer.
  ASSERT_EQ(WriteFile(fs::path(layer).parent_path() / "work" / "scratch", std::string(9000, 'w')),
            0);
  int64_t blocks = 0;
  for (const char* p : {"", "/one", "/two", "/dir", "/symlink"}) {
    struct stat st {};
    ASSERT_EQ(::lstat((layer + p).c_str(), &st), 0);
    blocks += st.st_blocks;
  }
  json expected = {{"size", blocks * 512}, {"inodes", 5}};  // the root, 2 files, dir, symlink
  Call u = snap().Usage("a");
  ASSERT_TRUE(u.ok()) << u;
  EXPECT_EQ(Parse(u.out), expected);
  EXPECT_GE(blocks * 512, 15000);
  // Measured at commit and kept.
  ASSERT_TRUE(snap().Commit("c", "a").ok());
  EXPECT_EQ(Parse(snap().Usage("c").out), expected);
}

TEST_F(OverlaySnapshotterTest, KeysNeverBecomePaths) {
  for (const char* key : {"../../escape", "/etc/passwd", "a/b", "..", "tmp-1", "1"}) {
    ASSERT_TRUE(snap().Prepare(key).ok()) << key;
  }
  for (const std::string& e : SnapshotDirEntries()) {
    EXPECT_TRUE(std::regex_match(e, std::regex("[0-9]+"))) << e;
  }
  EXPECT_FALSE(Exists(root() / "escape"));
  EXPECT_FALSE(Exists(dir() / "escape"));
  // "tmp-1" and "1" are keys like any other: they survive a restart's cleanup.
  Restart();
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_TRUE(snap().Stat("tmp-1").ok());
  EXPECT_TRUE(snap().Stat("1").ok());
  EXPECT_EQ(SnapshotDirEntries().size(), 6u);
}

TEST_F(OverlaySnapshotterTest, RemoveDeletesTheLayerDirectory) {
  ASSERT_NO_FATAL_FAILURE(CommitDirect("c", "", {{"file", "x"}}));
  std::string layer = LayerDir("c");
  ASSERT_TRUE(snap().Remove("c").ok());
  EXPECT_FALSE(Exists(fs::path(layer).parent_path()));
  EXPECT_TRUE(SnapshotDirEntries().empty());
}

TEST_F(OverlaySnapshotterTest, RemoveDoesNotDeleteThroughAMountInsideTheLayer) {
  if (!IsRoot()) GTEST_SKIP() << "mounting needs root";
  ASSERT_TRUE(snap().Prepare("a").ok());
  std::string layer = LayerDir("a");
  ASSERT_EQ(MakeDir(scratch() / "precious"), 0);
  ASSERT_EQ(WriteFile(scratch() / "precious" / "keep", "me"), 0);
  ASSERT_EQ(MakeDir(layer + "/mnt"), 0);
  std::string mounts = json::array({{{"type", "bind"},
                                     {"source", (scratch() / "precious").string()},
                                     {"options", {"rbind"}}}})
                           .dump();
  ASSERT_TRUE(sdk::MountAll(mounts, layer + "/mnt").ok());
  Call r = snap().Remove("a");
  EXPECT_TRUE(r.ok()) << r;  // the snapshot is gone; its directory waits for the next start
  EXPECT_EQ(ReadFile(scratch() / "precious" / "keep"), "me");
  ASSERT_TRUE(sdk::Unmount(layer + "/mnt").ok());
  Restart();
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_FALSE(Exists(layer));
  EXPECT_EQ(ReadFile(scratch() / "precious" / "keep"), "me");
}

// The mount point of the filesystem holding `path`: the longest mount point prefix.
std::string ExpectedMountPoint(const fs::path& path) {
  std::string real = fs::canonical(path).string();
  std::ifstream in("/proc/self/mountinfo");
  std::string line, best = "/";
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, parent, devno, mroot, mountpoint;
    fields >> id >> parent >> devno >> mroot >> mountpoint;
    if ((real == mountpoint || real.rfind(mountpoint + "/", 0) == 0) &&
        mountpoint.size() > best.size()) {
      best = mountpoint;
    }
  }
  return best;
}

TEST_F(OverlaySnapshotterTest, FsUsageCountsTheSnapshotsOnTheirFilesystem) {
  Call before = snap().FsUsage();
  ASSERT_TRUE(before.ok()) << before;
  json b = Parse(before.out);
  EXPECT_EQ(b.value("mountpoint", ""), ExpectedMountPoint(snapshots()));
  ASSERT_TRUE(snap().Prepare("a").ok());
  ASSERT_EQ(WriteFile(LayerDir("a") + "/big", std::string(1 << 20, 'z')), 0);
  Call after = snap().FsUsage();
  ASSERT_TRUE(after.ok());
  json a = Parse(after.out);
  EXPECT_GE(a["used_bytes"].get<int64_t>() - b["used_bytes"].get<int64_t>(), 1 << 20);
  // The snapshot's directory, fs, work and the file.
  EXPECT_EQ(a["inodes_used"].get<int64_t>() - b["inodes_used"].get<int64_t>(), 4);
}

// ---- berth/mount.hpp ------------------------------------------------------------------------

TEST(MountJson, ParsesTheSnapshotterForm) {
  auto m = sdk::ParseMounts(R"( [ {"type": "overlay", "source": "overlay",
      "options": ["lowerdir=1/fs:2/fs", "upperdir=3/fs", "x=\u00e9\"\\\/"],
      "extra": {"a": [1, -2.5e3, true, false, null, {"b": "c"}]}, "chdir": "/var/snap"},
      {"type": "bind", "source": "/src", "options": []} ] )");
  ASSERT_TRUE(m.ok()) << m.status().message();
  ASSERT_EQ(m->size(), 2u);
  EXPECT_EQ((*m)[0].type, "overlay");
  EXPECT_EQ((*m)[0].source, "overlay");
  EXPECT_EQ((*m)[0].chdir, "/var/snap");
  EXPECT_EQ((*m)[0].options,
            (std::vector<std::string>{"lowerdir=1/fs:2/fs", "upperdir=3/fs", "x=\xc3\xa9\"\\/"}));
  EXPECT_EQ((*m)[1].type, "bind");
  EXPECT_TRUE((*m)[1].options.empty());
  EXPECT_TRUE((*m)[1].chdir.empty());
  auto empty = sdk::ParseMounts("[]");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
}

TEST(MountJson, RefusesMalformedInput) {
  for (const char* bad : {"", "{}", "[", "[{]", "[{\"type\":1}]", "[{\"source\":\"x\"}]",
                          "[{\"type\":\"bind\",\"chdir\":\"relative\"}]", "[] x",
                          "[{\"type\":\"a\\u0000b\"}]", "[{\"type\":\"bind\",\"options\":[1]}]",
                          "[{\"type\":\"bind\"},]", "[{\"type\":\"bind\" \"source\":\"x\"}]"}) {
    auto m = sdk::ParseMounts(bad);
    EXPECT_FALSE(m.ok()) << bad;
    EXPECT_EQ(m.status().code(), BERTH_INVALID_ARGUMENT) << bad;
  }
}

class SdkMountTest : public SnapshotterTestBase {};

TEST_F(SdkMountTest, ChdirMountResolvesRelativePathsAndKeepsTheWorkingDirectory) {
  if (!IsRoot()) GTEST_SKIP() << "mounting needs root";
  const fs::path base = scratch() / "layers";
  for (const char* d : {"", "/l1", "/l2", "/up", "/work", "/target"}) {
    ASSERT_EQ(MakeDir(base.string() + d), 0);
  }
  ASSERT_EQ(WriteFile(base / "l1" / "a", "from l1"), 0);
  ASSERT_EQ(WriteFile(base / "l2" / "b", "from l2"), 0);
  std::string cwd_before = fs::current_path();
  std::string mounts = json::array({{{"type", "overlay"},
                                     {"source", "overlay"},
                                     {"options", {"lowerdir=l1:l2", "upperdir=up", "workdir=work"}},
                                     {"chdir", base.string()}}})
                           .dump();
  const std::string target = (base / "target").string();
  sdk::Status s = sdk::MountAll(mounts, target);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(fs::current_path().string(), cwd_before);
  EXPECT_EQ(ReadFile(base / "target" / "a"), "from l1");
  EXPECT_EQ(ReadFile(base / "target" / "b"), "from l2");
  EXPECT_EQ(WriteFile(base / "target" / "c", "new"), 0);
  ASSERT_TRUE(sdk::Unmount(target).ok());
  EXPECT_EQ(ReadFile(base / "up" / "c"), "new");
  EXPECT_TRUE(sdk::Unmount(target).ok()) << "unmounting what is not mounted is fine";
}

TEST_F(SdkMountTest, FailedMountNamesTheTargetAndLeavesNothingMounted) {
  if (!IsRoot()) GTEST_SKIP() << "mounting needs root";
  const std::string target = (scratch() / "target").string();
  ASSERT_EQ(MakeDir(target), 0);
  std::string mounts = json::array({{{"type", "overlay"},
                                     {"source", "overlay"},
                                     {"options", {"lowerdir=/nonexistent/a:/nonexistent/b"}}}})
                           .dump();
  sdk::Status s = sdk::MountAll(mounts, target);
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr(target));
  EXPECT_THAT(s.message(), HasSubstr("lowerdir=/nonexistent/a"));
  EXPECT_EQ(::umount2(target.c_str(), 0), -1) << "nothing is mounted";
}

TEST_F(SdkMountTest, RefusesOptionsTheKernelWouldCutShort) {
  // mount(2) reads one page of options; longer ones would silently lose layers.
  std::string lower = "lowerdir=";
  for (int i = 0; i < 200; ++i) lower += (i ? ":" : "") + (scratch() / std::to_string(i)).string();
  std::string mounts =
      json::array({{{"type", "overlay"}, {"source", "overlay"}, {"options", {lower}}}}).dump();
  sdk::Status s = sdk::MountAll(mounts, (scratch() / "target").string());
  EXPECT_EQ(s.code(), BERTH_INVALID_ARGUMENT) << s.message();
  EXPECT_THAT(s.message(), HasSubstr("chdir"));
}

TEST_F(SdkMountTest, ReadOnlyBindRefusesWrites) {
  if (!IsRoot()) GTEST_SKIP() << "mounting needs root";
  const fs::path src = scratch() / "src", target = scratch() / "target";
  ASSERT_EQ(MakeDir(src), 0);
  ASSERT_EQ(MakeDir(target), 0);
  ASSERT_EQ(WriteFile(src / "f", "x"), 0);
  std::string mounts =
      json::array({{{"type", "bind"}, {"source", src.string()}, {"options", {"rbind", "ro"}}}})
          .dump();
  ASSERT_TRUE(sdk::MountAll(mounts, target.string()).ok());
  EXPECT_EQ(ReadFile(target / "f"), "x");
  EXPECT_EQ(WriteFile(target / "g", "y"), EROFS);
  ASSERT_TRUE(sdk::Unmount(target.string()).ok());
  EXPECT_EQ(WriteFile(src / "g", "y"), 0) << "the source stays writable";
}

}  // namespace
}  // namespace berth::conformance
