// SPDX-License-Identifier: Apache-2.0
#include "tests/conformance/snapshotter_conformance.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <fstream>
#include <map>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "berth/mount.hpp"
#include "berth/plugin.hpp"
#include "nlohmann/json.hpp"

namespace berth::conformance {

namespace fs = std::filesystem;
using nlohmann::json;

// ---- calls ----------------------------------------------------------------------------------

std::ostream& operator<<(std::ostream& os, const Call& call) {
  return os << "{code " << call.code << ", out " << call.out << ", err \"" << call.err << "\"}";
}

namespace {

template <typename Fn>
Call Invoke(Fn&& fn) {
  sdk::StringSink out, err;
  Call c;
  c.code = fn(out.get(), err.get());
  c.out = out.take();
  c.err = err.take();
  return c;
}

}  // namespace

Call SnapshotterClient::Status() const {
  return Invoke([&](berth_sink* o, berth_sink* e) { return t_->status(inst_, o, e); });
}
std::string SnapshotterClient::Name() const { return std::string(sdk::View(t_->name(inst_))); }
Call SnapshotterClient::Prepare(std::string_view key, std::string_view parent,
                                std::string_view labels_json) const {
  return Invoke([&](berth_sink* o, berth_sink* e) {
    return t_->prepare(inst_, sdk::Str(key), sdk::Str(parent), sdk::Str(labels_json), o, e);
  });
}
Call SnapshotterClient::View(std::string_view key, std::string_view parent,
                             std::string_view labels_json) const {
  return Invoke([&](berth_sink* o, berth_sink* e) {
    return t_->view(inst_, sdk::Str(key), sdk::Str(parent), sdk::Str(labels_json), o, e);
  });
}
Call SnapshotterClient::Mounts(std::string_view key) const {
  return Invoke(
      [&](berth_sink* o, berth_sink* e) { return t_->mounts(inst_, sdk::Str(key), o, e); });
}
Call SnapshotterClient::Commit(std::string_view name, std::string_view key,
                               std::string_view labels_json) const {
  return Invoke([&](berth_sink*, berth_sink* e) {
    return t_->commit(inst_, sdk::Str(name), sdk::Str(key), sdk::Str(labels_json), e);
  });
}
Call SnapshotterClient::Remove(std::string_view key) const {
  return Invoke([&](berth_sink*, berth_sink* e) { return t_->remove(inst_, sdk::Str(key), e); });
}
Call SnapshotterClient::Stat(std::string_view key) const {
  return Invoke([&](berth_sink* o, berth_sink* e) { return t_->stat(inst_, sdk::Str(key), o, e); });
}
Call SnapshotterClient::Usage(std::string_view key) const {
  return Invoke(
      [&](berth_sink* o, berth_sink* e) { return t_->usage(inst_, sdk::Str(key), o, e); });
}
Call SnapshotterClient::Walk() const {
  return Invoke([&](berth_sink* o, berth_sink* e) { return t_->walk(inst_, o, e); });
}
Call SnapshotterClient::FsUsage() const {
  return Invoke([&](berth_sink* o, berth_sink* e) { return t_->fs_usage(inst_, o, e); });
}

void PrintTo(const SnapshotterConformanceParam& param, std::ostream* os) { *os << param.name; }

std::string SnapshotterConformanceName(
    const ::testing::TestParamInfo<SnapshotterConformanceParam>& info) {
  return info.param.name;
}

// ---- the test base --------------------------------------------------------------------------

namespace {

// Mount points at or below `dir`, deepest first.
std::vector<std::string> MountsBelow(const fs::path& dir) {
  std::vector<std::string> out;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  const std::string prefix = dir.string();
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, parent, devno, root, mountpoint;
    fields >> id >> parent >> devno >> root >> mountpoint;
    std::string decoded;
    for (size_t i = 0; i < mountpoint.size(); ++i) {
      if (mountpoint[i] == '\\' && i + 3 < mountpoint.size()) {
        decoded.push_back(static_cast<char>(std::stoi(mountpoint.substr(i + 1, 3), nullptr, 8)));
        i += 3;
      } else {
        decoded.push_back(mountpoint[i]);
      }
    }
    if (decoded == prefix || decoded.rfind(prefix + "/", 0) == 0) out.push_back(decoded);
  }
  std::sort(out.begin(), out.end(),
            [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  return out;
}

}  // namespace

void SnapshotterTestBase::SetUp() {
  char tmpl[] = "/tmp/berth-conformance-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr) << strerror(errno);
  scratch_ = tmpl;
  impl_dir_ = scratch_ / "impl";
  ASSERT_EQ(MakeDir(impl_dir_), 0);
  ASSERT_EQ(MakeDir(scratch_ / "mnt"), 0);
}

void SnapshotterTestBase::TearDown() {
  for (auto it = mounted_.rbegin(); it != mounted_.rend(); ++it) {
    sdk::Status s = sdk::Unmount(*it);
    if (!s.ok()) {
      ADD_FAILURE() << s.message();
      (void)sdk::Unmount(*it, MNT_DETACH);
    }
  }
  mounted_.clear();
  Stop();
  if (scratch_.empty()) return;
  // Whatever is still mounted below the scratch directory (left by a failed unmount, or by
  // the implementation itself) is detached before anything is deleted.
  for (int round = 0; round < 8; ++round) {
    std::vector<std::string> left = MountsBelow(scratch_);
    if (left.empty()) break;
    for (const std::string& m : left) {
      ADD_FAILURE() << "still mounted after the test: " << m;
      ::umount2(m.c_str(), MNT_DETACH);
    }
  }
  if (!MountsBelow(scratch_).empty()) {
    ADD_FAILURE() << "cannot unmount everything below " << scratch_ << "; not removing it";
    return;
  }
  std::error_code ec;
  fs::remove_all(scratch_, ec);
  if (ec) ADD_FAILURE() << "remove " << scratch_ << ": " << ec.message();
}

void SnapshotterTestBase::Start(const SnapshotterFactory& factory) {
  factory_ = factory;
  std::string error;
  sut_ = factory_(impl_dir_, &error);
  ASSERT_NE(sut_, nullptr) << "the snapshotter did not start: " << error;
  ASSERT_NE(sut_->table(), nullptr);
  ASSERT_GE(sut_->table()->struct_size, sizeof(berth_snapshotter_v1))
      << "the table lacks members of berth.snapshotter.v1";
  client_ = std::make_unique<SnapshotterClient>(sut_->table(), sut_->instance());
}

void SnapshotterTestBase::Stop() {
  client_.reset();
  sut_.reset();
}

void SnapshotterTestBase::Restart() {
  Stop();
  Start(factory_);
}

bool SnapshotterTestBase::IsRoot() { return ::geteuid() == 0; }

std::string SnapshotterTestBase::Mount(const std::string& mounts_json) {
  fs::path target = scratch_ / "mnt" / std::to_string(next_mount_++);
  if (MakeDir(target) != 0) {
    ADD_FAILURE() << "cannot create " << target;
    return "";
  }
  sdk::Status s = sdk::MountAll(mounts_json, target.string());
  if (!s.ok()) {
    ADD_FAILURE() << s.message() << "\nmounts: " << mounts_json;
    return "";
  }
  mounted_.push_back(target.string());
  return target.string();
}

void SnapshotterTestBase::Unmount(const std::string& target) {
  sdk::Status s = sdk::Unmount(target);
  EXPECT_TRUE(s.ok()) << s.message();
  if (s.ok()) mounted_.erase(std::remove(mounted_.begin(), mounted_.end(), target), mounted_.end());
}

int SnapshotterTestBase::WriteFile(const fs::path& p, std::string_view content) {
  int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return errno;
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0) {
      int err = errno;
      ::close(fd);
      return err;
    }
    done += static_cast<size_t>(n);
  }
  return ::close(fd) == 0 ? 0 : errno;
}

int SnapshotterTestBase::MakeDir(const fs::path& p) {
  return ::mkdir(p.c_str(), 0755) == 0 || errno == EEXIST ? 0 : errno;
}

std::string SnapshotterTestBase::ReadFile(const fs::path& p) {
  int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "<errno " + std::to_string(errno) + ">";
  std::string out;
  char buf[65536];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
  ::close(fd);
  return out;
}

bool SnapshotterTestBase::Exists(const fs::path& p) {
  struct stat st {};
  return ::lstat(p.c_str(), &st) == 0;
}

void SnapshotterTestBase::CommitLayer(
    const std::string& name, const std::string& parent,
    const std::vector<std::pair<std::string, std::string>>& files) {
  const std::string key = name + "-active";
  Call p = snap().Prepare(key, parent);
  ASSERT_TRUE(p.ok()) << p;
  std::string m = Mount(p.out);
  ASSERT_FALSE(m.empty());
  for (const auto& [file, content] : files) {
    fs::path path = fs::path(m) / file;
    std::error_code ec;
    fs::create_directories(path.parent_path(), ec);
    ASSERT_EQ(WriteFile(path, content), 0) << path;
  }
  Unmount(m);
  Call c = snap().Commit(name, key);
  ASSERT_TRUE(c.ok()) << c;
}

void SnapshotterConformance::SetUp() {
  SnapshotterTestBase::SetUp();
  if (HasFatalFailure()) return;
  Start(GetParam().factory);
}

GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(SnapshotterConformance);

// ---- helpers for the tests ------------------------------------------------------------------

namespace {

json Parse(const std::string& text) { return json::parse(text, nullptr, false); }

// A mounts array: at least one object, each with a string "type" and, if present, a string
// "source", a string array "options" and an absolute "chdir".
void ExpectMountsJson(const std::string& text) {
  json j = Parse(text);
  ASSERT_TRUE(j.is_array()) << text;
  ASSERT_FALSE(j.empty()) << text;
  for (const json& m : j) {
    ASSERT_TRUE(m.is_object()) << text;
    ASSERT_TRUE(m.contains("type") && m["type"].is_string()) << text;
    if (m.contains("source")) {
      EXPECT_TRUE(m["source"].is_string()) << text;
    }
    if (m.contains("options")) {
      ASSERT_TRUE(m["options"].is_array()) << text;
      for (const json& o : m["options"]) EXPECT_TRUE(o.is_string()) << text;
    }
    if (m.contains("chdir")) {
      ASSERT_TRUE(m["chdir"].is_string()) << text;
      EXPECT_EQ(m["chdir"].get<std::string>().substr(0, 1), "/") << text;
    }
  }
  sdk::Result<std::vector<sdk::MountSpec>> parsed = sdk::ParseMounts(text);
  EXPECT_TRUE(parsed.ok()) << parsed.status().message();
}

bool IsRfc3339(const std::string& s) {
  static const std::regex kRe(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d))");
  return std::regex_match(s, kRe);
}

// Stat(key) succeeds with an info object of this name, parent and kind.
json ExpectInfo(const SnapshotterClient& snap, const std::string& key, const std::string& parent,
                const std::string& kind) {
  Call s = snap.Stat(key);
  EXPECT_TRUE(s.ok()) << key << ": " << ::testing::PrintToString(s);
  json j = Parse(s.out);
  EXPECT_TRUE(j.is_object()) << s.out;
  if (!j.is_object()) return json::object();
  EXPECT_EQ(j.value("name", "<missing>"), key) << s.out;
  EXPECT_EQ(j.value("parent", "<missing>"), parent) << s.out;
  EXPECT_EQ(j.value("kind", "<missing>"), kind) << s.out;
  EXPECT_TRUE(j.contains("labels") && j["labels"].is_object()) << s.out;
  EXPECT_TRUE(IsRfc3339(j.value("created", ""))) << s.out;
  return j;
}

// Name -> info of every snapshot walk lists.
std::map<std::string, json> WalkMap(const SnapshotterClient& snap) {
  Call w = snap.Walk();
  EXPECT_TRUE(w.ok()) << ::testing::PrintToString(w);
  json j = Parse(w.out);
  EXPECT_TRUE(j.is_array()) << w.out;
  std::map<std::string, json> out;
  if (!j.is_array()) return out;
  for (const json& info : j) {
    std::string name = info.value("name", "");
    EXPECT_EQ(out.count(name), 0u) << "walk lists " << name << " twice";
    out[name] = info;
  }
  return out;
}

std::pair<int64_t, int64_t> UsageOf(const SnapshotterClient& snap, const std::string& key) {
  Call u = snap.Usage(key);
  EXPECT_TRUE(u.ok()) << ::testing::PrintToString(u);
  json j = Parse(u.out);
  EXPECT_TRUE(j.is_object() && j.contains("size") && j["size"].is_number_integer() &&
              j.contains("inodes") && j["inodes"].is_number_integer())
      << u.out;
  if (!j.is_object() || !j["size"].is_number_integer() || !j["inodes"].is_number_integer()) {
    return {-1, -1};
  }
  return {j["size"].get<int64_t>(), j["inodes"].get<int64_t>()};
}

std::string RandomBytes(size_t n) {
  std::mt19937_64 rng(n * 7919 + 17);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

std::string Layer(int i) {
  char buf[32];
  snprintf(buf, sizeof(buf), "layer-%03d", i);
  return buf;
}

#define REQUIRE_ROOT()                                                                     \
  do {                                                                                     \
    if (!IsRoot()) GTEST_SKIP() << "mounting needs root (CAP_SYS_ADMIN); CI runs as root"; \
  } while (0)

}  // namespace

// ---- metadata semantics ---------------------------------------------------------------------

TEST_P(SnapshotterConformance, StatusIsReadyAndNameIsSet) {
  Call s = snap().Status();
  ASSERT_TRUE(s.ok()) << s;
  json j = Parse(s.out);
  ASSERT_TRUE(j.is_object()) << s.out;
  EXPECT_EQ(j.value("ready", false), true) << s.out;
  EXPECT_TRUE(j.contains("reason") && j.contains("message")) << s.out;
  EXPECT_FALSE(snap().Name().empty());
}

TEST_P(SnapshotterConformance, PrepareCreatesAnActiveSnapshot) {
  Call p = snap().Prepare("a", "", R"({"x":"y"})");
  ASSERT_TRUE(p.ok()) << p;
  ExpectMountsJson(p.out);
  json info = ExpectInfo(snap(), "a", "", "active");
  EXPECT_EQ(info["labels"], json({{"x", "y"}}));
  Call m = snap().Mounts("a");
  ASSERT_TRUE(m.ok()) << m;
  EXPECT_EQ(Parse(m.out), Parse(p.out)) << "mounts() differs from what prepare returned";
}

TEST_P(SnapshotterConformance, PrepareOfAnExistingKeyIsAlreadyExists) {
  ASSERT_TRUE(snap().Prepare("a", "", R"({"n":"1"})").ok());
  EXPECT_EQ(snap().Prepare("a", "", R"({"n":"2"})").code, BERTH_ALREADY_EXISTS);
  EXPECT_EQ(snap().View("a").code, BERTH_ALREADY_EXISTS);
  EXPECT_EQ(ExpectInfo(snap(), "a", "", "active")["labels"], json({{"n", "1"}}));
  ASSERT_TRUE(snap().Commit("c", "a").ok());
  EXPECT_EQ(snap().Prepare("c").code, BERTH_ALREADY_EXISTS);
  ASSERT_TRUE(snap().View("v", "c").ok());
  EXPECT_EQ(snap().Prepare("v", "c").code, BERTH_ALREADY_EXISTS);
  EXPECT_EQ(snap().View("v", "c").code, BERTH_ALREADY_EXISTS);
}

TEST_P(SnapshotterConformance, MissingParentIsNotFoundAndCreatesNothing) {
  Call p = snap().Prepare("b", "missing");
  EXPECT_EQ(p.code, BERTH_NOT_FOUND) << p;
  EXPECT_FALSE(p.err.empty());
  EXPECT_EQ(snap().View("v", "missing").code, BERTH_NOT_FOUND);
  EXPECT_EQ(snap().Stat("b").code, BERTH_NOT_FOUND);
  EXPECT_EQ(snap().Stat("v").code, BERTH_NOT_FOUND);
  EXPECT_TRUE(WalkMap(snap()).empty());
}

TEST_P(SnapshotterConformance, ParentMustBeCommittedElseFailedPrecondition) {
  ASSERT_TRUE(snap().Prepare("active").ok());
  EXPECT_EQ(snap().Prepare("b", "active").code, BERTH_FAILED_PRECONDITION);
  EXPECT_EQ(snap().View("c", "active").code, BERTH_FAILED_PRECONDITION);
  ASSERT_TRUE(snap().Commit("base", "active").ok());
  ASSERT_TRUE(snap().View("view", "base").ok());
  EXPECT_EQ(snap().Prepare("d", "view").code, BERTH_FAILED_PRECONDITION);
  EXPECT_EQ(snap().View("e", "view").code, BERTH_FAILED_PRECONDITION);
  std::map<std::string, json> all = WalkMap(snap());
  EXPECT_EQ(all.size(), 2u);
  EXPECT_EQ(all.count("base"), 1u);
  EXPECT_EQ(all.count("view"), 1u);
}

TEST_P(SnapshotterConformance, InvalidKeysAreInvalidArgument) {
  ASSERT_TRUE(snap().Prepare("ok").ok());
  ASSERT_TRUE(snap().Prepare("ok2").ok());
  ASSERT_TRUE(snap().Commit("base", "ok2").ok());
  const std::vector<std::string> bad = {"", std::string(257, 'k'), std::string("a\0b", 3),
                                        std::string(1, '\0')};
  for (const std::string& key : bad) {
    SCOPED_TRACE("key of " + std::to_string(key.size()) + " bytes");
    EXPECT_EQ(snap().Prepare(key).code, BERTH_INVALID_ARGUMENT);
    EXPECT_EQ(snap().Prepare(key, "base").code, BERTH_INVALID_ARGUMENT);
    EXPECT_EQ(snap().View(key, "base").code, BERTH_INVALID_ARGUMENT);
    EXPECT_EQ(snap().Mounts(key).code, BERTH_INVALID_ARGUMENT);
    EXPECT_EQ(snap().Commit(key, "ok").code, BERTH_INVALID_ARGUMENT);
    EXPECT_EQ(snap().Commit("fine", key).code, BERTH_INVALID_ARGUMENT);
    EXPECT_EQ(snap().Remove(key).code, BERTH_INVALID_ARGUMENT);
    EXPECT_EQ(snap().Stat(key).code, BERTH_INVALID_ARGUMENT);
    EXPECT_EQ(snap().Usage(key).code, BERTH_INVALID_ARGUMENT);
    if (!key.empty()) {  // an empty parent means "no parent"
      EXPECT_EQ(snap().Prepare("child", key).code, BERTH_INVALID_ARGUMENT);
      EXPECT_EQ(snap().View("child", key).code, BERTH_INVALID_ARGUMENT);
    }
  }
  // Nothing was created or changed by the refused calls.
  std::map<std::string, json> all = WalkMap(snap());
  EXPECT_EQ(all.size(), 2u);
  ExpectInfo(snap(), "ok", "", "active");
}

TEST_P(SnapshotterConformance, KeysAreOpaqueStrings) {
  const std::vector<std::string> keys = {std::string(256, 'k'),
                                         "../../../../etc",
                                         "/absolute/path",
                                         "a/b/c",
                                         ".",
                                         "..",
                                         "sha256:0123456789abcdef0123456789abcdef",
                                         "with space",
                                         "\xc3\xbcn\xc3\xaf\x63\xc3\xb8\x64\xc3\xa9 \xe2\x9c\x93",
                                         "tab\tnewline\n",
                                         "quote\"back\\slash",
                                         "comma,colon:equals="};
  for (const std::string& key : keys) {
    Call p = snap().Prepare(key);
    EXPECT_TRUE(p.ok()) << ::testing::PrintToString(key) << " " << p;
  }
  std::map<std::string, json> all = WalkMap(snap());
  EXPECT_EQ(all.size(), keys.size());
  for (const std::string& key : keys) {
    SCOPED_TRACE(::testing::PrintToString(key));
    EXPECT_EQ(all.count(key), 1u);
    ExpectInfo(snap(), key, "", "active");
  }
  ASSERT_TRUE(snap().Commit("a/b/c/committed", "a/b/c").ok());
  ASSERT_TRUE(snap().Prepare("../child", "a/b/c/committed").ok());
  ExpectInfo(snap(), "../child", "a/b/c/committed", "active");
  for (const std::string& key : keys) {
    if (key == "a/b/c") continue;
    EXPECT_TRUE(snap().Remove(key).ok()) << ::testing::PrintToString(key);
  }
}

TEST_P(SnapshotterConformance, InvalidLabelsAreInvalidArgument) {
  const std::vector<std::string> bad = {
      "not json", "[]", "\"s\"", "{\"a\":1}", "{\"a\":{\"b\":\"c\"}}", "{\"a\":null}", "{\"a\":"};
  ASSERT_TRUE(snap().Prepare("active").ok());
  for (const std::string& labels : bad) {
    SCOPED_TRACE(labels);
    EXPECT_EQ(snap().Prepare("p", "", labels).code, BERTH_INVALID_ARGUMENT);
    EXPECT_EQ(snap().View("v", "", labels).code, BERTH_INVALID_ARGUMENT);
    EXPECT_EQ(snap().Commit("c", "active", labels).code, BERTH_INVALID_ARGUMENT);
  }
  EXPECT_EQ(WalkMap(snap()).size(), 1u);
  ExpectInfo(snap(), "active", "", "active");
  // Empty means no labels.
  ASSERT_TRUE(snap().Prepare("empty", "", "").ok());
  EXPECT_EQ(ExpectInfo(snap(), "empty", "", "active")["labels"], json::object());
  ASSERT_TRUE(snap().Prepare("braces", "", "{}").ok());
  EXPECT_EQ(ExpectInfo(snap(), "braces", "", "active")["labels"], json::object());
}

TEST_P(SnapshotterConformance, CommitTurnsAnActiveSnapshotIntoACommittedOne) {
  ASSERT_TRUE(snap().Prepare("a", "", R"({"l":"active"})").ok());
  Call c = snap().Commit("c", "a", R"({"l":"committed"})");
  ASSERT_TRUE(c.ok()) << c;
  EXPECT_EQ(snap().Stat("a").code, BERTH_NOT_FOUND);
  json info = ExpectInfo(snap(), "c", "", "committed");
  EXPECT_EQ(info["labels"], json({{"l", "committed"}}));
  ASSERT_TRUE(snap().Prepare("b", "c").ok());
  ExpectInfo(snap(), "b", "c", "active");
  ASSERT_TRUE(snap().Commit("d", "b").ok());
  ExpectInfo(snap(), "d", "c", "committed");
  EXPECT_EQ(snap().Stat("b").code, BERTH_NOT_FOUND);
  // The key is free again.
  EXPECT_TRUE(snap().Prepare("a").ok());
}

TEST_P(SnapshotterConformance, CommitToAnExistingNameIsAlreadyExists) {
  ASSERT_TRUE(snap().Prepare("a").ok());
  ASSERT_TRUE(snap().Prepare("b").ok());
  ASSERT_TRUE(snap().Commit("c", "a").ok());
  EXPECT_EQ(snap().Commit("c", "b").code, BERTH_ALREADY_EXISTS);
  EXPECT_EQ(snap().Commit("b", "b").code, BERTH_ALREADY_EXISTS);
  ExpectInfo(snap(), "b", "", "active");
  ExpectInfo(snap(), "c", "", "committed");
}

TEST_P(SnapshotterConformance, CommitOfAMissingKeyIsNotFound) {
  EXPECT_EQ(snap().Commit("c", "missing").code, BERTH_NOT_FOUND);
  EXPECT_EQ(snap().Stat("c").code, BERTH_NOT_FOUND);
}

TEST_P(SnapshotterConformance, CommitOfAViewOrCommittedIsFailedPrecondition) {
  ASSERT_TRUE(snap().Prepare("a").ok());
  ASSERT_TRUE(snap().Commit("base", "a").ok());
  ASSERT_TRUE(snap().View("v", "base").ok());
  ASSERT_TRUE(snap().View("lonely").ok());
  EXPECT_EQ(snap().Commit("c1", "v").code, BERTH_FAILED_PRECONDITION);
  EXPECT_EQ(snap().Commit("c2", "lonely").code, BERTH_FAILED_PRECONDITION);
  EXPECT_EQ(snap().Commit("c3", "base").code, BERTH_FAILED_PRECONDITION);
  ExpectInfo(snap(), "v", "base", "view");
  ExpectInfo(snap(), "lonely", "", "view");
  ExpectInfo(snap(), "base", "", "committed");
  EXPECT_EQ(WalkMap(snap()).size(), 3u);
}

TEST_P(SnapshotterConformance, ViewCreatesAViewSnapshot) {
  ASSERT_TRUE(snap().Prepare("a").ok());
  ASSERT_TRUE(snap().Commit("base", "a").ok());
  Call v = snap().View("v", "base", R"({"k":"v"})");
  ASSERT_TRUE(v.ok()) << v;
  ExpectMountsJson(v.out);
  EXPECT_EQ(ExpectInfo(snap(), "v", "base", "view")["labels"], json({{"k", "v"}}));
  Call m = snap().Mounts("v");
  ASSERT_TRUE(m.ok()) << m;
  EXPECT_EQ(Parse(m.out), Parse(v.out));
  Call lonely = snap().View("lonely");
  ASSERT_TRUE(lonely.ok()) << lonely;
  ExpectMountsJson(lonely.out);
  ExpectInfo(snap(), "lonely", "", "view");
}

TEST_P(SnapshotterConformance, MountsOfACommittedSnapshotIsFailedPrecondition) {
  ASSERT_TRUE(snap().Prepare("a").ok());
  ASSERT_TRUE(snap().Commit("c", "a").ok());
  EXPECT_EQ(snap().Mounts("c").code, BERTH_FAILED_PRECONDITION);
  EXPECT_EQ(snap().Mounts("missing").code, BERTH_NOT_FOUND);
}

TEST_P(SnapshotterConformance, RemoveDeletesEveryKind) {
  ASSERT_TRUE(snap().Prepare("a").ok());
  ASSERT_TRUE(snap().Prepare("b").ok());
  ASSERT_TRUE(snap().Commit("c", "b").ok());
  ASSERT_TRUE(snap().View("v", "c").ok());
  for (const char* key : {"a", "v", "c"}) {
    Call r = snap().Remove(key);
    EXPECT_TRUE(r.ok()) << key << " " << ::testing::PrintToString(r);
    EXPECT_EQ(snap().Stat(key).code, BERTH_NOT_FOUND) << key;
    EXPECT_EQ(snap().Remove(key).code, BERTH_NOT_FOUND) << key;
  }
  EXPECT_TRUE(WalkMap(snap()).empty());
  EXPECT_TRUE(snap().Prepare("c").ok()) << "a removed key can be used again";
}

TEST_P(SnapshotterConformance, RemoveOfAParentIsFailedPrecondition) {
  ASSERT_TRUE(snap().Prepare("a").ok());
  ASSERT_TRUE(snap().Commit("base", "a").ok());
  ASSERT_TRUE(snap().Prepare("child", "base").ok());
  Call r = snap().Remove("base");
  EXPECT_EQ(r.code, BERTH_FAILED_PRECONDITION) << r;
  ExpectInfo(snap(), "base", "", "committed");
  ASSERT_TRUE(snap().Commit("mid", "child").ok());
  EXPECT_EQ(snap().Remove("base").code, BERTH_FAILED_PRECONDITION);
  ASSERT_TRUE(snap().View("view", "mid").ok());
  EXPECT_EQ(snap().Remove("mid").code, BERTH_FAILED_PRECONDITION);
  EXPECT_TRUE(snap().Remove("view").ok());
  EXPECT_TRUE(snap().Remove("mid").ok());
  EXPECT_TRUE(snap().Remove("base").ok());
  EXPECT_TRUE(WalkMap(snap()).empty());
}

TEST_P(SnapshotterConformance, WalkListsEverySnapshot) {
  EXPECT_TRUE(WalkMap(snap()).empty());
  ASSERT_TRUE(snap().Prepare("x").ok());
  ASSERT_TRUE(snap().Commit("c", "x", R"({"a":"b"})").ok());
  ASSERT_TRUE(snap().Prepare("a", "c").ok());
  ASSERT_TRUE(snap().View("v", "c").ok());
  std::map<std::string, json> all = WalkMap(snap());
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all["c"].value("kind", ""), "committed");
  EXPECT_EQ(all["c"]["labels"], json({{"a", "b"}}));
  EXPECT_EQ(all["a"].value("kind", ""), "active");
  EXPECT_EQ(all["a"].value("parent", ""), "c");
  EXPECT_EQ(all["v"].value("kind", ""), "view");
  EXPECT_EQ(all["v"].value("parent", ""), "c");
  for (const auto& [name, info] : all) {
    Call s = snap().Stat(name);
    ASSERT_TRUE(s.ok());
    EXPECT_EQ(Parse(s.out), info) << "walk and stat disagree on " << name;
  }
  ASSERT_TRUE(snap().Remove("a").ok());
  EXPECT_EQ(WalkMap(snap()).size(), 2u);
}

TEST_P(SnapshotterConformance, UsageReportsSizeAndInodes) {
  EXPECT_EQ(snap().Usage("missing").code, BERTH_NOT_FOUND);
  ASSERT_TRUE(snap().Prepare("a").ok());
  auto [size, inodes] = UsageOf(snap(), "a");
  EXPECT_GE(size, 0);
  EXPECT_GE(inodes, 0);
  ASSERT_TRUE(snap().Commit("c", "a").ok());
  ASSERT_TRUE(snap().View("v", "c").ok());
  EXPECT_GE(UsageOf(snap(), "c").first, 0);
  EXPECT_GE(UsageOf(snap(), "v").first, 0);
}

TEST_P(SnapshotterConformance, FsUsageReportsTheFilesystem) {
  ASSERT_TRUE(snap().Prepare("a").ok());
  Call u = snap().FsUsage();
  ASSERT_TRUE(u.ok()) << u;
  json j = Parse(u.out);
  ASSERT_TRUE(j.is_object()) << u.out;
  ASSERT_TRUE(j.contains("mountpoint") && j["mountpoint"].is_string()) << u.out;
  std::string mp = j["mountpoint"].get<std::string>();
  EXPECT_EQ(mp.substr(0, 1), "/") << u.out;
  EXPECT_TRUE(fs::is_directory(mp)) << u.out;
  ASSERT_TRUE(j.contains("used_bytes") && j["used_bytes"].is_number_integer()) << u.out;
  ASSERT_TRUE(j.contains("inodes_used") && j["inodes_used"].is_number_integer()) << u.out;
  EXPECT_GE(j["used_bytes"].get<int64_t>(), 0);
  EXPECT_GE(j["inodes_used"].get<int64_t>(), 0);
}

TEST_P(SnapshotterConformance, SnapshotsSurviveARestart) {
  ASSERT_TRUE(snap().Prepare("x").ok());
  ASSERT_TRUE(snap().Commit("c", "x", R"({"keep":"me"})").ok());
  Call a = snap().Prepare("a", "c");
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(snap().View("v", "c").ok());
  std::map<std::string, json> before = WalkMap(snap());
  Restart();
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_EQ(WalkMap(snap()), before);
  Call m = snap().Mounts("a");
  ASSERT_TRUE(m.ok()) << m;
  EXPECT_EQ(Parse(m.out), Parse(a.out));
  EXPECT_EQ(snap().Prepare("a").code, BERTH_ALREADY_EXISTS);
  EXPECT_EQ(snap().Remove("c").code, BERTH_FAILED_PRECONDITION);
  EXPECT_TRUE(snap().Commit("a-committed", "a").ok());
}

TEST_P(SnapshotterConformance, ConcurrentPreparesOfOneKeyCreateOne) {
  constexpr int kThreads = 8;
  std::atomic<int> ok{0}, exists{0}, other{0};
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&] {
      Call p = snap().Prepare("same");
      if (p.ok())
        ++ok;
      else if (p.code == BERTH_ALREADY_EXISTS)
        ++exists;
      else
        ++other;
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(ok.load(), 1);
  EXPECT_EQ(exists.load(), kThreads - 1);
  EXPECT_EQ(other.load(), 0);
  EXPECT_EQ(WalkMap(snap()).size(), 1u);
}

TEST_P(SnapshotterConformance, ConcurrentOperationsOnDistinctKeysAllSucceed) {
  ASSERT_TRUE(snap().Prepare("x").ok());
  ASSERT_TRUE(snap().Commit("base", "x").ok());
  constexpr int kThreads = 4, kEach = 6;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        std::string key = "k-" + std::to_string(t) + "-" + std::to_string(i);
        if (!snap().Prepare(key, "base").ok()) ++failures;
        if (!snap().Commit("c-" + key, key).ok()) ++failures;
        if (!snap().View("v-" + key, "c-" + key).ok()) ++failures;
        if (!snap().Remove("v-" + key).ok()) ++failures;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(WalkMap(snap()).size(), 1u + kThreads * kEach);
  EXPECT_EQ(snap().Remove("base").code, BERTH_FAILED_PRECONDITION);
}

// ---- real mounts (root) ---------------------------------------------------------------------

TEST_P(SnapshotterConformance, FilesWrittenThroughAnActiveMountAreCommitted) {
  REQUIRE_ROOT();
  Call p = snap().Prepare("base-active");
  ASSERT_TRUE(p.ok()) << p;
  std::string m = Mount(p.out);
  ASSERT_FALSE(m.empty());
  ASSERT_EQ(WriteFile(m + "/a", "alpha"), 0);
  ASSERT_EQ(MakeDir(m + "/dir"), 0);
  ASSERT_EQ(WriteFile(m + "/dir/b", "beta"), 0);
  ASSERT_EQ(::symlink("a", (m + "/link").c_str()), 0) << strerror(errno);
  Unmount(m);
  ASSERT_TRUE(snap().Commit("base", "base-active").ok());

  Call v = snap().View("base-view", "base");
  ASSERT_TRUE(v.ok()) << v;
  std::string vm = Mount(v.out);
  ASSERT_FALSE(vm.empty());
  EXPECT_EQ(ReadFile(vm + "/a"), "alpha");
  EXPECT_EQ(ReadFile(vm + "/dir/b"), "beta");
  EXPECT_EQ(fs::read_symlink(vm + "/link").string(), "a");
  Unmount(vm);
}

TEST_P(SnapshotterConformance, ChildSeesParentFilesAndItsDeletionsLeaveTheParentUnchanged) {
  REQUIRE_ROOT();
  ASSERT_NO_FATAL_FAILURE(
      CommitLayer("base", "", {{"a", "alpha"}, {"dir/b", "beta"}, {"dir/c", "gamma"}}));
  Call p = snap().Prepare("child", "base");
  ASSERT_TRUE(p.ok()) << p;
  std::string m = Mount(p.out);
  ASSERT_FALSE(m.empty());
  EXPECT_EQ(ReadFile(m + "/a"), "alpha");
  EXPECT_EQ(ReadFile(m + "/dir/b"), "beta");
  ASSERT_EQ(::unlink((m + "/a").c_str()), 0) << strerror(errno);      // a whiteout
  ASSERT_EQ(::unlink((m + "/dir/c").c_str()), 0) << strerror(errno);  // one in a subdirectory
  ASSERT_EQ(WriteFile(m + "/dir/b", "changed"), 0);                   // a copy-up
  ASSERT_EQ(WriteFile(m + "/d", "delta"), 0);
  Unmount(m);

  // Mounted again, the child still has its changes.
  Call again = snap().Mounts("child");
  ASSERT_TRUE(again.ok()) << again;
  m = Mount(again.out);
  ASSERT_FALSE(m.empty());
  EXPECT_FALSE(Exists(m + "/a"));
  EXPECT_FALSE(Exists(m + "/dir/c"));
  EXPECT_EQ(ReadFile(m + "/dir/b"), "changed");
  EXPECT_EQ(ReadFile(m + "/d"), "delta");
  Unmount(m);
  ASSERT_TRUE(snap().Commit("child-c", "child").ok());

  // The parent is unchanged...
  Call pv = snap().View("base-view", "base");
  ASSERT_TRUE(pv.ok()) << pv;
  std::string bm = Mount(pv.out);
  ASSERT_FALSE(bm.empty());
  EXPECT_EQ(ReadFile(bm + "/a"), "alpha");
  EXPECT_EQ(ReadFile(bm + "/dir/b"), "beta");
  EXPECT_EQ(ReadFile(bm + "/dir/c"), "gamma");
  EXPECT_FALSE(Exists(bm + "/d"));
  // ...and the committed child shows the deletions.
  Call cv = snap().View("child-view", "child-c");
  ASSERT_TRUE(cv.ok()) << cv;
  std::string cm = Mount(cv.out);
  ASSERT_FALSE(cm.empty());
  EXPECT_FALSE(Exists(cm + "/a"));
  EXPECT_FALSE(Exists(cm + "/dir/c"));
  EXPECT_EQ(ReadFile(cm + "/dir/b"), "changed");
  EXPECT_EQ(ReadFile(cm + "/d"), "delta");
  Unmount(cm);
  Unmount(bm);
}

TEST_P(SnapshotterConformance, ViewsAreReadOnly) {
  REQUIRE_ROOT();
  ASSERT_NO_FATAL_FAILURE(CommitLayer("bottom", "", {{"f", "1"}}));
  ASSERT_NO_FATAL_FAILURE(CommitLayer("top", "bottom", {{"g", "2"}}));
  struct Case {
    std::string key, parent;
  };
  for (const Case& c :
       {Case{"one-layer", "bottom"}, Case{"two-layers", "top"}, Case{"no-parent", ""}}) {
    SCOPED_TRACE(c.key);
    Call v = snap().View(c.key, c.parent);
    ASSERT_TRUE(v.ok()) << v;
    std::string m = Mount(v.out);
    ASSERT_FALSE(m.empty());
    EXPECT_EQ(WriteFile(m + "/new", "x"), EROFS);
    EXPECT_EQ(MakeDir(m + "/newdir"), EROFS);
    if (!c.parent.empty()) {
      EXPECT_EQ(ReadFile(m + "/f"), "1");
      EXPECT_EQ(WriteFile(m + "/f", "x"), EROFS);
      EXPECT_EQ(::unlink((m + "/f").c_str()) == 0 ? 0 : errno, EROFS);
      EXPECT_EQ(ReadFile(m + "/f"), "1");
    }
    Unmount(m);
  }
}

TEST_P(SnapshotterConformance, ChainOf130LayersMountsAllFiles) {
  REQUIRE_ROOT();
  constexpr int kLayers = 130;
  std::string parent;
  for (int i = 0; i < kLayers; ++i) {
    ASSERT_NO_FATAL_FAILURE(CommitLayer(Layer(i), parent, {{Layer(i), std::to_string(i)}}))
        << "layer " << i;
    parent = Layer(i);
  }
  Call v = snap().View("deep-view", parent);
  ASSERT_TRUE(v.ok()) << v;
  std::string m = Mount(v.out);
  ASSERT_FALSE(m.empty());
  int seen = 0;
  for (int i = 0; i < kLayers; ++i) seen += ReadFile(m + "/" + Layer(i)) == std::to_string(i);
  EXPECT_EQ(seen, kLayers);
  Unmount(m);

  Call p = snap().Prepare("deep-active", parent);
  ASSERT_TRUE(p.ok()) << p;
  std::string am = Mount(p.out);
  ASSERT_FALSE(am.empty());
  EXPECT_EQ(ReadFile(am + "/" + Layer(0)), "0");
  EXPECT_EQ(ReadFile(am + "/" + Layer(kLayers - 1)), std::to_string(kLayers - 1));
  EXPECT_EQ(WriteFile(am + "/on-top", "x"), 0);
  Unmount(am);
}

TEST_P(SnapshotterConformance, UsageCountsWhatWasWritten) {
  REQUIRE_ROOT();
  Call p = snap().Prepare("u");
  ASSERT_TRUE(p.ok()) << p;
  auto [size0, inodes0] = UsageOf(snap(), "u");
  Call f0 = snap().FsUsage();
  ASSERT_TRUE(f0.ok()) << f0;
  std::string m = Mount(p.out);
  ASSERT_FALSE(m.empty());
  constexpr size_t kBytes = size_t{256} * 1024;
  ASSERT_EQ(WriteFile(m + "/one", RandomBytes(kBytes)), 0);
  ASSERT_EQ(WriteFile(m + "/two", RandomBytes(kBytes + 1)), 0);
  ASSERT_EQ(MakeDir(m + "/dir"), 0);
  ASSERT_EQ(WriteFile(m + "/dir/three", RandomBytes(kBytes + 2)), 0);
  Unmount(m);
  ::sync();
  auto [size1, inodes1] = UsageOf(snap(), "u");
  EXPECT_EQ(inodes1 - inodes0, 4);
  EXPECT_GE(size1 - size0, static_cast<int64_t>(3 * kBytes));
  Call f1 = snap().FsUsage();
  ASSERT_TRUE(f1.ok()) << f1;
  EXPECT_GE(Parse(f1.out)["used_bytes"].get<int64_t>() - Parse(f0.out)["used_bytes"].get<int64_t>(),
            static_cast<int64_t>(3 * kBytes));
  EXPECT_GE(
      Parse(f1.out)["inodes_used"].get<int64_t>() - Parse(f0.out)["inodes_used"].get<int64_t>(), 4);
  ASSERT_TRUE(snap().Commit("u-c", "u").ok());
  auto [size2, inodes2] = UsageOf(snap(), "u-c");
  EXPECT_EQ(size2, size1);
  EXPECT_EQ(inodes2, inodes1);
}

}  // namespace berth::conformance
