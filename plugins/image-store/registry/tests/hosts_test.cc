// SPDX-License-Identifier: Apache-2.0
#include "plugins/image-store/registry/hosts.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "plugins/image-store/registry/tests/test_support.h"

namespace berth::image {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;
namespace fs = std::filesystem;
using testing::TempDir;
using testing::WriteFile;

TEST(HostsTest, LocalHosts) {
  EXPECT_TRUE(IsLocalHost("localhost"));
  EXPECT_TRUE(IsLocalHost("localhost:5000"));
  EXPECT_TRUE(IsLocalHost("127.0.0.1"));
  EXPECT_TRUE(IsLocalHost("127.0.0.1:5000"));
  EXPECT_TRUE(IsLocalHost("127.1.2.3:80"));
  EXPECT_TRUE(IsLocalHost("[::1]"));
  EXPECT_TRUE(IsLocalHost("[::1]:5000"));
  EXPECT_FALSE(IsLocalHost("registry.example.com"));
  EXPECT_FALSE(IsLocalHost("10.0.0.1:5000"));
  EXPECT_FALSE(IsLocalHost("localhost.example.com"));
}

TEST(HostsTest, DefaultsWithoutConfiguration) {
  for (const std::string& dir : {std::string(), std::string("/nonexistent/certs.d")}) {
    auto e = ResolveHosts(dir, "docker.io");
    ASSERT_TRUE(e.ok()) << e.status();
    ASSERT_EQ(e->size(), 1u);
    EXPECT_EQ((*e)[0].BaseUrl(), "https://registry-1.docker.io/v2");
    EXPECT_FALSE((*e)[0].mirror);
    EXPECT_EQ((*e)[0].capabilities, kAllCapabilities);
    EXPECT_TRUE((*e)[0].ns.empty());
  }
  auto local = ResolveHosts("", "localhost:5000");
  ASSERT_TRUE(local.ok());
  EXPECT_EQ((*local)[0].BaseUrl(), "http://localhost:5000/v2");
  auto v6 = ResolveHosts("", "[::1]:5000");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ((*v6)[0].BaseUrl(), "http://[::1]:5000/v2");
  auto quay = ResolveHosts("", "quay.io");
  ASSERT_TRUE(quay.ok());
  EXPECT_EQ((*quay)[0].BaseUrl(), "https://quay.io/v2");
}

TEST(HostsTest, FullFile) {
  constexpr char kToml[] = R"(server = "https://registry-1.docker.io"
capabilities = ["pull", "resolve"]
ca = "root.pem"
[header]
  x-root = "r"

[host."https://mirror-b.example/us"]
  capabilities = ["pull"]
  skip_verify = true
  ca = ["/etc/a.pem", "b.pem"]
  client = [["c.cert", "c.key"], ["d.pem", ""]]
  dial_timeout = "1.5s"
  [host."https://mirror-b.example/us".header]
    x-custom = ["one", "two"]
    x-other = "three"

[host."http://mirror-a.example:5000"]
  capabilities = ["pull", "resolve", "push"]
  override_path = false

[host."https://raw.example/v2/upstream"]
  override_path = true
  client = "single.pem"
)";
  auto e = ParseHostsToml(kToml, "/etc/berth/certs.d/docker.io/hosts.toml", "docker.io");
  ASSERT_TRUE(e.ok()) << e.status();
  ASSERT_EQ(e->size(), 4u);
  // Mirrors in file order (not key order), the server last.
  const Endpoint& b = (*e)[0];
  EXPECT_EQ(b.BaseUrl(), "https://mirror-b.example/us/v2");
  EXPECT_TRUE(b.mirror);
  EXPECT_EQ(b.ns, "docker.io");
  EXPECT_EQ(b.capabilities, kCapabilityPull);
  EXPECT_TRUE(b.skip_verify);
  EXPECT_THAT(b.ca_files, ElementsAre("/etc/a.pem", "/etc/berth/certs.d/docker.io/b.pem"));
  EXPECT_THAT(b.client_certs, ElementsAre(Pair("/etc/berth/certs.d/docker.io/c.cert",
                                               "/etc/berth/certs.d/docker.io/c.key"),
                                          Pair("/etc/berth/certs.d/docker.io/d.pem", "")));
  EXPECT_THAT(b.headers, ElementsAre(Pair("x-custom", "one"), Pair("x-custom", "two"),
                                     Pair("x-other", "three")));
  EXPECT_EQ(b.dial_timeout, std::chrono::milliseconds(1500));
  EXPECT_EQ(b.source, "/etc/berth/certs.d/docker.io/hosts.toml");

  const Endpoint& a = (*e)[1];
  EXPECT_EQ(a.BaseUrl(), "http://mirror-a.example:5000/v2");
  EXPECT_EQ(a.capabilities, kAllCapabilities);
  EXPECT_FALSE(a.skip_verify);

  const Endpoint& raw = (*e)[2];
  EXPECT_EQ(raw.BaseUrl(), "https://raw.example/v2/upstream");
  EXPECT_EQ(raw.capabilities, kAllCapabilities);  // the default
  EXPECT_THAT(raw.client_certs, ElementsAre(Pair("/etc/berth/certs.d/docker.io/single.pem", "")));

  const Endpoint& server = (*e)[3];
  EXPECT_EQ(server.BaseUrl(), "https://registry-1.docker.io/v2");
  EXPECT_FALSE(server.mirror);
  EXPECT_TRUE(server.ns.empty());
  EXPECT_EQ(server.capabilities, kCapabilityPull | kCapabilityResolve);
  EXPECT_THAT(server.ca_files, ElementsAre("/etc/berth/certs.d/docker.io/root.pem"));
  EXPECT_THAT(server.headers, ElementsAre(Pair("x-root", "r")));
}

TEST(HostsTest, ServerReplacesTheUpstream) {
  auto e = ParseHostsToml("server = \"https://registry.example.com/prefix\"\n", "/d/hosts.toml",
                          "quay.io");
  ASSERT_TRUE(e.ok()) << e.status();
  ASSERT_EQ(e->size(), 1u);
  EXPECT_EQ((*e)[0].BaseUrl(), "https://registry.example.com/prefix/v2");
  EXPECT_EQ((*e)[0].ns, "quay.io");
  EXPECT_FALSE((*e)[0].mirror);

  auto docker = ParseHostsToml("server = \"https://docker.io\"\n", "/d/hosts.toml", "docker.io");
  ASSERT_TRUE(docker.ok());
  EXPECT_EQ((*docker)[0].BaseUrl(), "https://registry-1.docker.io/v2");

  auto plain =
      ParseHostsToml("server = \"http://10.0.0.1:5000\"\n", "/d/hosts.toml", "10.0.0.1:5000");
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ((*plain)[0].BaseUrl(), "http://10.0.0.1:5000/v2");
  EXPECT_TRUE((*plain)[0].ns.empty());

  // No scheme: https, except for local hosts.
  auto bare = ParseHostsToml("[host.\"localhost:6000\"]\n[host.\"mirror.example\"]\n",
                             "/d/hosts.toml", "docker.io");
  ASSERT_TRUE(bare.ok()) << bare.status();
  EXPECT_EQ((*bare)[0].BaseUrl(), "http://localhost:6000/v2");
  EXPECT_EQ((*bare)[1].BaseUrl(), "https://mirror.example/v2");
  EXPECT_EQ((*bare)[2].BaseUrl(), "https://registry-1.docker.io/v2");
}

struct BadToml {
  std::string toml;
  std::string message;
};

class HostsErrorTest : public ::testing::TestWithParam<BadToml> {};

TEST_P(HostsErrorTest, NamesTheFileAndLine) {
  auto e = ParseHostsToml(GetParam().toml, "/c/x.io/hosts.toml", "x.io");
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(e.status().message()), HasSubstr(GetParam().message));
}

INSTANTIATE_TEST_SUITE_P(
    Table, HostsErrorTest,
    ::testing::Values(
        BadToml{"server = \"https://a\"\nserver = ", "/c/x.io/hosts.toml:2: not valid TOML"},
        BadToml{"\n\n[host.\"https://m\"]\ncapabilities = [\"pul\"]\n",
                "/c/x.io/hosts.toml:4: unknown capability \"pul\""},
        BadToml{"capabilities = \"pull\"\n", "hosts.toml:1: \"capabilities\" must be an array"},
        BadToml{"skip_verify = \"yes\"\n", "hosts.toml:1: \"skip_verify\" must be true or false"},
        BadToml{"server = 5\n", "hosts.toml:1: \"server\" must be a string"},
        BadToml{"server = \"ftp://x\"\n", "hosts.toml:1: \"ftp://x\": scheme must be http"},
        BadToml{"ca = [1]\n", "hosts.toml:1: \"ca\" entries must be strings"},
        BadToml{"client = [[\"a\", \"b\", \"c\"]]\n", "hosts.toml:1: \"client\" entries"},
        BadToml{"dial_timeout = \"soon\"\n", "hosts.toml:1: \"dial_timeout\" must be a duration"},
        BadToml{"\nskip_verfy = true\n", "hosts.toml:2: unknown key \"skip_verfy\""},
        BadToml{"host = 1\n", "hosts.toml:1: \"host\" must be a table"},
        BadToml{"[host.\"https://m\"]\nserver = \"https://x\"\n",
                "hosts.toml:2: \"server\" belongs at the top level"},
        BadToml{"[host.\"https://m\"]\n[host.\"https://m\".host.\"https://n\"]\n",
                "mirrors do not nest"},
        BadToml{"[header]\nx = 1\n", "hosts.toml:2: \"x\" must be a string or an array"}));

TEST(HostsTest, LookupOrderAndDefault) {
  TempDir tmp;
  const fs::path& dir = tmp.path();
  WriteFile(dir / "_default" / "hosts.toml", "[host.\"http://default-mirror:1\"]\n");
  WriteFile(dir / "reg.example:5000" / "hosts.toml", "[host.\"http://colon-mirror:1\"]\n");
  WriteFile(dir / "other.example_5000_" / "hosts.toml", "[host.\"http://underscore:1\"]\n");
  WriteFile(dir / "other.example:5000" / "hosts.toml", "[host.\"http://shadowed:1\"]\n");

  auto colon = ResolveHosts(dir.string(), "reg.example:5000");
  ASSERT_TRUE(colon.ok()) << colon.status();
  EXPECT_EQ((*colon)[0].host, "colon-mirror:1");
  EXPECT_EQ((*colon)[1].BaseUrl(), "https://reg.example:5000/v2");

  auto underscore = ResolveHosts(dir.string(), "other.example:5000");
  ASSERT_TRUE(underscore.ok());
  EXPECT_EQ((*underscore)[0].host, "underscore:1");

  auto fallback = ResolveHosts(dir.string(), "quay.io");
  ASSERT_TRUE(fallback.ok());
  ASSERT_EQ(fallback->size(), 2u);
  EXPECT_EQ((*fallback)[0].host, "default-mirror:1");
  EXPECT_EQ((*fallback)[0].ns, "quay.io");
  EXPECT_EQ((*fallback)[1].BaseUrl(), "https://quay.io/v2");
}

TEST(HostsTest, ReadAtEveryCall) {
  TempDir tmp;
  auto before = ResolveHosts(tmp.path().string(), "reg.example");
  ASSERT_TRUE(before.ok());
  EXPECT_EQ(before->size(), 1u);
  WriteFile(tmp.path() / "reg.example" / "hosts.toml", "[host.\"https://m.example\"]\n");
  auto after = ResolveHosts(tmp.path().string(), "reg.example");
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->size(), 2u);
  WriteFile(tmp.path() / "reg.example" / "hosts.toml", "[host.\"https://m.example\"\n");
  auto broken = ResolveHosts(tmp.path().string(), "reg.example");
  ASSERT_FALSE(broken.ok());
  EXPECT_THAT(std::string(broken.status().message()),
              HasSubstr((tmp.path() / "reg.example" / "hosts.toml").string() + ":1:"));
}

TEST(HostsTest, DockerCertificateDirectory) {
  TempDir tmp;
  fs::path d = tmp.path() / "reg.example";
  WriteFile(d / "ca.crt", "x");
  WriteFile(d / "client.cert", "x");
  WriteFile(d / "client.key", "x");
  WriteFile(d / "lonely.cert", "x");
  auto e = ResolveHosts(tmp.path().string(), "reg.example");
  ASSERT_TRUE(e.ok()) << e.status();
  ASSERT_EQ(e->size(), 1u);
  EXPECT_EQ((*e)[0].BaseUrl(), "https://reg.example/v2");
  EXPECT_THAT((*e)[0].ca_files, ElementsAre((d / "ca.crt").string()));
  EXPECT_THAT((*e)[0].client_certs,
              ElementsAre(Pair((d / "client.cert").string(), (d / "client.key").string())));
}

}  // namespace
}  // namespace berth::image
