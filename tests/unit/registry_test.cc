// SPDX-License-Identifier: Apache-2.0
// The plugin registry against real plugin files (tests/unit/plugins/fake_plugin.c built
// in several variants): ABI checks, ordering, cycles, missing dependencies, lifecycle.
#include "core/registry.h"

#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "core/host.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace berth::core {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

fs::path Fake(const std::string& name) { return fs::path(FAKE_PLUGIN_DIR) / (name + ".so"); }

std::string Str(absl::string_view s) { return std::string(s); }

class RegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/berth-registry-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    trace_ = dir_ / "trace";
    setenv("BERTH_FAKE_TRACE", trace_.c_str(), 1);
  }
  void TearDown() override {
    unsetenv("BERTH_FAKE_TRACE");
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string Trace() {
    std::ifstream f(trace_);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
  }
  // Starts `order` with real host tables over a real store.
  absl::Status StartAll(Registry& r, const std::vector<Plugin*>& order) {
    auto store = Store::Open(dir_ / "meta.db");
    if (!store.ok()) return store.status();
    store_ = std::move(*store);
    services_.config.root = dir_;
    services_.config.state = dir_;
    services_.store = store_.get();
    services_.events = &events_;
    services_.registry = &r;
    return r.Start(
        order, [this](Plugin* p) { return MakeHostContext(p, &services_); }, &HostTableOf);
  }
  static std::function<std::string(std::string_view)> Where() {
    return [](std::string_view id) { return "config.yaml:7 (" + std::string(id) + ")"; };
  }

  fs::path dir_, trace_;
  std::unique_ptr<Store> store_;
  EventBus events_;
  HostServices services_;
};

TEST_F(RegistryTest, LoadsCurrentPlugin) {
  Registry r;
  ASSERT_TRUE(r.LoadFile(Fake("fake_a")).ok());
  Plugin* p = r.Find("test.a");
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->kind, "runtime");
  EXPECT_EQ(p->version, "1.2.3");
  EXPECT_EQ(p->abi_major, BERTH_ABI_MAJOR);
  EXPECT_EQ(p->abi_minor, BERTH_ABI_MINOR);
  EXPECT_EQ(p->description, "a fake plugin for tests");
  EXPECT_EQ(p->default_config_json, "{\"answer\":42}");
  // Loading runs no plugin code beyond the entry function.
  EXPECT_EQ(Trace(), "");
}

TEST_F(RegistryTest, LoadsPluginBuiltAgainstOlderMinorWithZeroedNewFields) {
  Registry r;
  absl::Status s = r.LoadFile(Fake("fake_old"));
  ASSERT_TRUE(s.ok()) << s;
  Plugin* p = r.Find("test.old");
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->abi_minor, 0);
  EXPECT_EQ(p->description, "");  // a 1.1 member the 1.0 plugin does not have
  EXPECT_EQ(p->default_config_json, "{}");
  EXPECT_EQ(p->desc.description, nullptr);
}

TEST_F(RegistryTest, RefusesOtherMajorNamingFileAndBothVersions) {
  Registry r;
  absl::Status s = r.LoadFile(Fake("fake_major2"));
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(Str(s.message()), HasSubstr(Fake("fake_major2").string()));
  EXPECT_THAT(Str(s.message()), HasSubstr("ABI 2." + std::to_string(BERTH_ABI_MINOR)));
  EXPECT_THAT(Str(s.message()),
              HasSubstr("ABI " + std::to_string(BERTH_ABI_MAJOR) + "." +
                        std::to_string(BERTH_ABI_MINOR)));
  EXPECT_EQ(r.Find("test.major"), nullptr);
  EXPECT_EQ(r.plugins().back()->state, PluginState::kRefused);
}

TEST_F(RegistryTest, RefusesNewerMinorNamingPluginAndBothVersions) {
  Registry r;
  absl::Status s = r.LoadFile(Fake("fake_newer"));
  ASSERT_FALSE(s.ok());
  std::string m = Str(s.message());
  EXPECT_THAT(m, HasSubstr("test.newer"));
  EXPECT_THAT(m, HasSubstr(Fake("fake_newer").string()));
  EXPECT_THAT(m, HasSubstr("ABI 1." + std::to_string(BERTH_ABI_MINOR + 1)));
  EXPECT_THAT(m, HasSubstr("newer than this berthd's ABI 1." + std::to_string(BERTH_ABI_MINOR)));
}

TEST_F(RegistryTest, RefusesFileWithoutEntrySymbol) {
  Registry r;
  absl::Status s = r.LoadFile(Fake("fake_noentry"));
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(Str(s.message()), HasSubstr("no berth_plugin_entry symbol"));
}

TEST_F(RegistryTest, RefusesFileThatIsNotALibrary) {
  fs::path junk = dir_ / "junk.so";
  std::ofstream(junk) << "not an ELF file";
  Registry r;
  absl::Status s = r.LoadFile(junk);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(Str(s.message()), HasSubstr("cannot be loaded"));
  EXPECT_THAT(Str(s.message()), HasSubstr(junk.string()));
}

TEST_F(RegistryTest, RefusesDuplicateIdAndEnablingItIsAnError) {
  Registry r;
  ASSERT_TRUE(r.LoadFile(Fake("fake_a")).ok());
  absl::Status s = r.LoadFile(Fake("fake_dup"));
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(Str(s.message()), HasSubstr("duplicate plugin id test.a"));
  EXPECT_THAT(Str(s.message()), HasSubstr(Fake("fake_a").string()));
  EXPECT_THAT(Str(s.message()), HasSubstr(Fake("fake_dup").string()));
  auto order = r.Resolve({"test.a"}, Where());
  ASSERT_FALSE(order.ok());
  EXPECT_THAT(Str(order.status().message()), HasSubstr("config.yaml:7"));
}

TEST_F(RegistryTest, DiscoverReadsADirectoryAndKeepsGoingPastBadFiles) {
  Registry r;
  r.Discover({FAKE_PLUGIN_DIR, dir_ / "does-not-exist"});
  EXPECT_NE(r.Find("test.a"), nullptr);
  EXPECT_NE(r.Find("test.old"), nullptr);
  EXPECT_EQ(r.Find("test.major"), nullptr);
  int refused = 0;
  for (const auto& p : r.plugins()) refused += p->state == PluginState::kRefused;
  EXPECT_GE(refused, 4);  // major2, newer, noentry, dup
}

TEST_F(RegistryTest, OrdersByKindAndIdRequirements) {
  Registry r;
  // Load in reverse dependency order: the order must come from requirements.
  for (const char* f : {"fake_c", "fake_b", "fake_a", "fake_old"}) {
    ASSERT_TRUE(r.LoadFile(Fake(f)).ok()) << f;
  }
  auto order = r.Resolve({"test.a", "test.b", "test.c"}, Where());
  ASSERT_TRUE(order.ok()) << order.status();
  std::vector<std::string> ids;
  for (Plugin* p : *order) ids.push_back(p->id);
  EXPECT_EQ(ids, (std::vector<std::string>{"test.a", "test.b", "test.c"}));
  EXPECT_EQ(r.Find("test.old")->state, PluginState::kDisabled);
}

TEST_F(RegistryTest, RefusesCycleNamingIt) {
  Registry r;
  ASSERT_TRUE(r.LoadFile(Fake("fake_cycle1")).ok());
  ASSERT_TRUE(r.LoadFile(Fake("fake_cycle2")).ok());
  auto order = r.Resolve({"test.cycle1", "test.cycle2"}, Where());
  ASSERT_FALSE(order.ok());
  EXPECT_THAT(Str(order.status().message()),
              HasSubstr("cycle: test.cycle1 -> test.cycle2 -> test.cycle1"));
}

TEST_F(RegistryTest, RefusesMissingDependencies) {
  Registry r;
  ASSERT_TRUE(r.LoadFile(Fake("fake_missing")).ok());
  ASSERT_TRUE(r.LoadFile(Fake("fake_c")).ok());
  auto order = r.Resolve({"test.missing"}, Where());
  ASSERT_FALSE(order.ok());
  EXPECT_THAT(Str(order.status().message()),
              HasSubstr("test.missing requires a plugin of kind \"snapshotter\""));
  order = r.Resolve({"test.c"}, Where());
  ASSERT_FALSE(order.ok());
  EXPECT_THAT(Str(order.status().message()), HasSubstr("requires plugin test.b"));
}

TEST_F(RegistryTest, RefusesUnknownIdWithWhere) {
  Registry r;
  ASSERT_TRUE(r.LoadFile(Fake("fake_a")).ok());
  auto order = r.Resolve({"test.nope"}, Where());
  ASSERT_FALSE(order.ok());
  EXPECT_EQ(order.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Str(order.status().message()), HasSubstr("config.yaml:7"));
  EXPECT_THAT(Str(order.status().message()), HasSubstr("unknown plugin id \"test.nope\""));
  EXPECT_THAT(Str(order.status().message()), HasSubstr("known: test.a"));
}

TEST_F(RegistryTest, RefusedPluginThatIsEnabledIsAnError) {
  Registry r;
  ASSERT_FALSE(r.LoadFile(Fake("fake_newer")).ok());
  auto order = r.Resolve({"test.newer"}, Where());
  ASSERT_FALSE(order.ok());
  EXPECT_THAT(Str(order.status().message()), HasSubstr("was refused"));
  EXPECT_THAT(Str(order.status().message()), HasSubstr("newer than"));
}

TEST_F(RegistryTest, StartsInOrderAndStopsInReverse) {
  Registry r;
  for (const char* f : {"fake_c", "fake_b", "fake_a"}) ASSERT_TRUE(r.LoadFile(Fake(f)).ok());
  auto order = r.Resolve({"test.a", "test.b", "test.c"}, Where());
  ASSERT_TRUE(order.ok());
  ASSERT_TRUE(StartAll(r, *order).ok());
  for (const char* id : {"test.a", "test.b", "test.c"}) {
    EXPECT_EQ(r.Find(id)->state, PluginState::kRunning) << id;
  }
  // Each plugin got its own directories.
  EXPECT_TRUE(fs::is_directory(dir_ / "test.b"));
  r.Stop();
  EXPECT_EQ(Trace(),
            "init test.a\ninit test.b\ninit test.c\n"
            "shutdown test.c\nshutdown test.b\nshutdown test.a\n");
  EXPECT_EQ(r.Find("test.a")->state, PluginState::kStopped);
}

TEST_F(RegistryTest, NotApplicableIsSkippedButFailsWhatNeedsIt) {
  Registry r;
  ASSERT_TRUE(r.LoadFile(Fake("fake_na")).ok());
  ASSERT_TRUE(r.LoadFile(Fake("fake_a")).ok());
  auto order = r.Resolve({"test.na", "test.a"}, Where());
  ASSERT_TRUE(order.ok());
  ASSERT_TRUE(StartAll(r, *order).ok());
  EXPECT_EQ(r.Find("test.na")->state, PluginState::kSkipped);
  EXPECT_THAT(r.Find("test.na")->reason, HasSubstr("not applicable on this host"));
  EXPECT_EQ(r.Find("test.a")->state, PluginState::kRunning);
  r.Stop();

  Registry r2;
  ASSERT_TRUE(r2.LoadFile(Fake("fake_na")).ok());
  ASSERT_TRUE(r2.LoadFile(Fake("fake_needs_na")).ok());
  order = r2.Resolve({"test.na", "test.needsna"}, Where());
  ASSERT_TRUE(order.ok());
  absl::Status s = StartAll(r2, *order);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(Str(s.message()), HasSubstr("test.needsna cannot start"));
  EXPECT_THAT(Str(s.message()), HasSubstr("test.na skipped"));
}

TEST_F(RegistryTest, InitFailureStopsWhatStartedAndNamesThePlugin) {
  Registry r;
  ASSERT_TRUE(r.LoadFile(Fake("fake_a")).ok());
  ASSERT_TRUE(r.LoadFile(Fake("fake_fail")).ok());
  auto order = r.Resolve({"test.a", "test.fail"}, Where());
  ASSERT_TRUE(order.ok());
  absl::Status s = StartAll(r, *order);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(Str(s.message()), HasSubstr("plugin test.fail"));
  EXPECT_THAT(Str(s.message()), HasSubstr("fake refuses on purpose"));
  EXPECT_EQ(r.Find("test.fail")->state, PluginState::kFailed);
  EXPECT_EQ(r.Find("test.a")->state, PluginState::kStopped);
  EXPECT_THAT(Trace(), HasSubstr("shutdown test.a"));
}

TEST_F(RegistryTest, ListsEveryPluginAsJson) {
  Registry r;
  ASSERT_TRUE(r.LoadFile(Fake("fake_a")).ok());
  ASSERT_FALSE(r.LoadFile(Fake("fake_major2")).ok());
  std::string j = r.ToJson();
  EXPECT_THAT(j, HasSubstr("\"id\":\"test.a\""));
  EXPECT_THAT(j, HasSubstr("\"state\":\"refused\""));
  EXPECT_THAT(j, HasSubstr("\"abi\":\"2." + std::to_string(BERTH_ABI_MINOR) + "\""));
}

}  // namespace
}  // namespace berth::core
