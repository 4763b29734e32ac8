// SPDX-License-Identifier: Apache-2.0
// Finding, parsing and validating CNI configurations; deriving a plugin's request
// configuration.
#include "plugins/cni/cni_config.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "plugins/cni/tests/test_support.h"

namespace berth::cni {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::StartsWith;
using namespace ::berth::cni::testing;  // NOLINT(build/namespaces)

std::string Message(const absl::Status& s) { return std::string(s.message()); }

TEST(CompareVersionsTest, Orders) {
  EXPECT_LT(CompareVersions("0.3.1", "0.4.0"), 0);
  EXPECT_LT(CompareVersions("0.4.0", "1.0.0"), 0);
  EXPECT_EQ(CompareVersions("1.0.0", "1.0.0"), 0);
  EXPECT_EQ(CompareVersions("1.0", "1.0.0"), 0);
  EXPECT_GT(CompareVersions("1.1.0", "1.0.10"), 0);
  EXPECT_GT(CompareVersions("0.10.0", "0.9.0"), 0);
}

TEST(ParseNetworkConfigTest, List) {
  auto c = ParseNetworkConfig(R"({"cniVersion":"1.0.0","name":"net1","disableCheck":true,
      "plugins":[{"type":"bridge","bridge":"cni0"},{"type":"portmap",
      "capabilities":{"portMappings":true}}]})",
                              "/etc/cni/net.d/10.conflist");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->name, "net1");
  EXPECT_EQ(c->cni_version, "1.0.0");
  EXPECT_TRUE(c->disable_check);
  EXPECT_FALSE(c->disable_gc);
  ASSERT_EQ(c->plugins.size(), 2u);
  EXPECT_EQ(c->plugins[0]["bridge"], "cni0");
  EXPECT_EQ(c->source, "/etc/cni/net.d/10.conflist");
}

TEST(ParseNetworkConfigTest, SinglePluginIsWrappedIntoAList) {
  auto c = ParseNetworkConfig(
      R"({"cniVersion":"0.3.1","name":"single","type":"bridge","ipam":{"type":"host-local"}})",
      "x.conf");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->name, "single");
  EXPECT_EQ(c->cni_version, "0.3.1");
  ASSERT_EQ(c->plugins.size(), 1u);
  EXPECT_EQ(c->plugins[0]["type"], "bridge");
  // The stored bytes are the list: parsing them again gives the same configuration.
  json list = json::parse(c->bytes);
  EXPECT_EQ(list["name"], "single");
  EXPECT_EQ(list["cniVersion"], "0.3.1");
  ASSERT_TRUE(list["plugins"].is_array());
  auto again = ParseNetworkConfig(c->bytes, "cache");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->plugins, c->plugins);
}

TEST(ParseNetworkConfigTest, HighestSupportedOfCniVersions) {
  auto c = ParseNetworkConfig(
      R"({"cniVersion":"0.4.0","cniVersions":["0.3.1","1.0.0","2.5.0"],"name":"n",
          "plugins":[{"type":"x"}]})",
      "f");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->cni_version, "1.0.0");
}

TEST(ParseNetworkConfigTest, Errors) {
  struct Case {
    const char* json;
    const char* message;
  };
  const Case cases[] = {
      {"", "the file is empty"},
      {"{\"name\":", "invalid JSON: parse error"},
      {"[1]", "not a JSON object"},
      {R"({"name":"n","cniVersion":"1.0.0"})", "neither a configuration list"},
      {R"({"cniVersion":"1.0.0","plugins":[{"type":"x"}]})", "has no \"name\""},
      {R"({"name":"bad/name","cniVersion":"1.0.0","plugins":[{"type":"x"}]})",
       "network name \"bad/name\" is not valid"},
      {R"({"name":"n","plugins":[{"type":"x"}]})", "has no \"cniVersion\""},
      {R"({"name":"n","cniVersion":"0.2.0","plugins":[{"type":"x"}]})",
       "cniVersion \"0.2.0\" of network \"n\" is too old: berth supports 0.3.0, 0.3.1, 0.4.0, "
       "1.0.0 and 1.1.0"},
      {R"({"name":"n","cniVersion":"2.0.0","plugins":[{"type":"x"}]})",
       "cniVersion \"2.0.0\" of network \"n\" is not supported"},
      {R"({"name":"n","cniVersion":"1.0.0","plugins":[]})",
       "\"plugins\" of network \"n\" is empty"},
      {R"({"name":"n","cniVersion":"1.0.0","plugins":{}})", "\"plugins\" must be a list"},
      {R"({"name":"n","cniVersion":"1.0.0","plugins":[{"type":"x"},{"bridge":"b"}]})",
       "plugin 2 of 2 has no \"type\""},
      {R"({"name":"n","cniVersion":"1.0.0","plugins":[{"type":"../bin/x"}]})",
       "plugin 1 of 1 (\"../bin/x\"): \"type\" must be a plain binary name"},
      {R"({"name":"n","cniVersion":"1.0.0","plugins":[{"type":"x","capabilities":true}]})",
       "\"capabilities\" must be an object"},
      {R"({"name":"n","cniVersion":"1.0.0","disableCheck":"maybe","plugins":[{"type":"x"}]})",
       "\"disableCheck\" must be true or false"},
  };
  for (const Case& c : cases) {
    auto r = ParseNetworkConfig(c.json, "/etc/cni/net.d/99.conflist");
    ASSERT_FALSE(r.ok()) << c.json;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << c.json;
    EXPECT_THAT(Message(r.status()), StartsWith("/etc/cni/net.d/99.conflist: ")) << c.json;
    EXPECT_THAT(Message(r.status()), HasSubstr(c.message)) << c.json;
  }
}

TEST(ParseNetworkConfigTest, DisableFlagsAsStrings) {
  auto c = ParseNetworkConfig(
      R"({"name":"n","cniVersion":"1.1.0","disableCheck":"true","disableGC":"false",
          "plugins":[{"type":"x"}]})",
      "f");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->disable_check);
  EXPECT_FALSE(c->disable_gc);
}

TEST(FindConfigFileTest, FirstByNameAmongConfigurationExtensions) {
  TempDir dir;
  WriteTextFile(dir / "20-b.conflist", "{}");
  WriteTextFile(dir / "10-a.conf", "{}");
  WriteTextFile(dir / "30-c.json", "{}");
  WriteTextFile(dir / "00-readme.txt", "not a configuration");
  std::filesystem::create_directories(dir / "01-dir.conflist");
  auto f = FindConfigFile(dir.path());
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(*f, dir / "10-a.conf");
  std::filesystem::remove(dir / "10-a.conf");
  EXPECT_EQ(*FindConfigFile(dir.path()), dir / "20-b.conflist");
}

TEST(FindConfigFileTest, NoneOrNoDirectory) {
  TempDir dir;
  auto f = FindConfigFile(dir.path());
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(Message(f.status()), HasSubstr("no CNI network configuration in " + dir.path()));
  f = FindConfigFile(dir / "missing");
  ASSERT_FALSE(f.ok());
  EXPECT_THAT(Message(f.status()), HasSubstr("no CNI network configuration in " +
                                             (dir / "missing") + ": the directory does not exist"));
}

TEST(FindPluginBinaryTest, FirstDirectoryWithAnExecutable) {
  TempDir dir;
  WriteTextFile(dir / "a/bridge", "#!/bin/sh\n", 0644);  // not executable
  WriteTextFile(dir / "b/bridge", "#!/bin/sh\n", 0755);
  WriteTextFile(dir / "c/bridge", "#!/bin/sh\n", 0755);
  auto p = FindPluginBinary("bridge", {dir / "a", dir / "b", dir / "c"});
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(*p, dir / "b/bridge");
  auto missing = FindPluginBinary("portmap", {dir / "a", dir / "b"});
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Message(missing.status()),
              HasSubstr("\"portmap\" not found in " + (dir / "a") + ":" + (dir / "b")));
}

TEST(LoadNetworkConfigTest, ChecksPluginAndIpamBinaries) {
  TempDir dir;
  WriteTextFile(dir / "bin/bridge", "#!/bin/sh\n", 0755);
  WriteTextFile(dir / "net.d/10.conflist",
                R"({"cniVersion":"1.0.0","name":"n","plugins":[{"type":"bridge",
                    "ipam":{"type":"host-local"}}]})");
  auto c = LoadNetworkConfig(dir / "net.d", {dir / "bin"});
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(Message(c.status()), HasSubstr(dir / "net.d/10.conflist" +
                                             ": IPAM plugin binary \"host-local\" (of "
                                             "plugin \"bridge\") not found in " +
                                             (dir / "bin")));
  WriteTextFile(dir / "bin/host-local", "#!/bin/sh\n", 0755);
  c = LoadNetworkConfig(dir / "net.d", {dir / "bin"});
  ASSERT_TRUE(c.ok()) << c.status();
  std::filesystem::remove(dir / "bin/bridge");
  c = LoadNetworkConfig(dir / "net.d", {dir / "bin"});
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(Message(c.status()),
              HasSubstr("plugin binary \"bridge\" (plugin 1 of 1) not found in " + (dir / "bin")));
}

TEST(PluginRequestConfigTest, DerivesTheRequest) {
  auto c = ParseNetworkConfig(
      R"({"cniVersion":"1.0.0","name":"net","plugins":[
          {"type":"first","cniVersion":"0.0.1","name":"ignored","keep":{"a":[1,2]},
           "cni.dev/reserved":1},
          {"type":"second","capabilities":{"portMappings":true,"bandwidth":false,"mac":true}}]})",
      "f");
  ASSERT_TRUE(c.ok()) << c.status();
  json caps = {{"portMappings", json::array({{{"hostPort", 80}}})},
               {"bandwidth", {{"ingressRate", 1000}}},
               {"ipRanges", json::array()}};
  json first = PluginRequestConfig(*c, 0, caps, json());
  EXPECT_EQ(first, json::parse(R"({"type":"first","cniVersion":"1.0.0","name":"net",
                                   "keep":{"a":[1,2]}})"));
  json prev = {{"cniVersion", "1.0.0"}, {"ips", json::array()}};
  json second = PluginRequestConfig(*c, 1, caps, prev);
  EXPECT_EQ(second, json::parse(R"({"type":"second","cniVersion":"1.0.0","name":"net",
      "runtimeConfig":{"portMappings":[{"hostPort":80}]},
      "prevResult":{"cniVersion":"1.0.0","ips":[]}})"));
}

TEST(JoinPathsTest, Colons) {
  EXPECT_EQ(JoinPaths({"/a", "/b"}), "/a:/b");
  EXPECT_EQ(JoinPaths({}), "");
}

}  // namespace
}  // namespace berth::cni
