// SPDX-License-Identifier: Apache-2.0
// RegistryClient against Debian's real docker-registry (images pushed by
// tests/tools/oci_image.py): schema 2 and OCI images, indexes, tags and digests, basic auth,
// mirrors from a hosts.toml directory, errors. What no real registry does (oversized or broken
// manifests, stalls) is served by the loopback TestHttpServer in fake_registry_test.cc.
#include "plugins/image-store/registry/client.h"

#include <openssl/evp.h>
#include <openssl/pem.h>

#include <thread>

#include "absl/strings/escaping.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "plugins/image-store/registry/tests/test_support.h"

namespace berth::image {
namespace {

using testing::CannedResponse;
using testing::DockerRegistry;
using ::testing::HasSubstr;
using testing::ReadFile;
using testing::SeenRequest;
using testing::TempDir;
using testing::TestHttpServer;
using testing::WriteFile;
namespace fs = std::filesystem;

Reference Ref(const std::string& text) {
  auto r = ParseReference(text);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *r : Reference{};
}

RegistryClient::Options Opts(std::string hosts_dir = "", std::string arch = "amd64",
                             std::string variant = "") {
  RegistryClient::Options o;
  o.hosts_dir = std::move(hosts_dir);
  o.platform_os = "linux";
  o.platform_arch = std::move(arch);
  o.platform_variant = std::move(variant);
  o.progress_timeout = std::chrono::seconds(10);
  o.connect_timeout = std::chrono::milliseconds(2000);
  return o;
}

// Fetches a blob into memory (tests only; the client never buffers a blob itself).
absl::StatusOr<std::string> Fetch(RegistryClient& c, const Reference& ref, const Descriptor& d,
                                  const Credentials& creds = {}, int64_t* last_done = nullptr,
                                  int64_t* last_total = nullptr) {
  std::string out;
  absl::Status s = c.FetchBlobVerified(
      ref, d, creds,
      [&](std::string_view chunk) {
        out.append(chunk.data(), chunk.size());
        return absl::OkStatus();
      },
      [&](int64_t done, int64_t total) {
        if (last_done != nullptr) *last_done = done;
        if (last_total != nullptr) *last_total = total;
      });
  if (!s.ok()) return s;
  return out;
}

// One registry holding every image of the suite, pushed once.
class RegistryClientTest : public ::testing::Test {
 protected:
  struct Images {
    std::string single, multi, amd64, arm64, armv7, index, list_amd64, list_arm64, list;
  };

  static void SetUpTestSuite() {
    tmp_ = new TempDir();
    registry_ = new DockerRegistry(tmp_->path() / "registry");
    if (!registry_->Start()) return;
    fs::path l = tmp_->path() / "layers";
    WriteFile(l / "a" / "etc" / "a.txt", "layer a\n");
    WriteFile(l / "b" / "etc" / "b.txt", std::string(200000, 'b'));
    WriteFile(l / "spec.json",
              R"([{"path":"etc/c","type":"file","content":"c"},
                  {"path":"etc/a.txt","type":"whiteout"},
                  {"path":"etc/l","type":"symlink","target":"c"}])");
    for (const char* arch : {"amd64", "arm64", "arm"}) {
      WriteFile(l / arch / "arch", std::string(arch) + "\n");
    }
    std::string out;
    images_.single = registry_->Push({"--repo", "test/single", "--tag", "v1", "--busybox",
                                      "--format", "docker", "--platform", "linux/amd64"},
                                     &out);
    images_.multi = registry_->Push(
        {"--repo", "test/multi", "--tag", "v1", "--layer", (l / "a").string(), "--layer",
         (l / "b").string(), "--layer-spec", (l / "spec.json").string(), "--compression",
         "gzip,zstd,none", "--format", "oci", "--annotation", "org.example.k=v"},
        &out);
    images_.amd64 = registry_->Push({"--repo", "test/multiarch", "--layer", (l / "amd64").string(),
                                     "--platform", "linux/amd64"});
    images_.arm64 = registry_->Push({"--repo", "test/multiarch", "--layer", (l / "arm64").string(),
                                     "--platform", "linux/arm64/v8"});
    images_.armv7 = registry_->Push({"--repo", "test/multiarch", "--layer", (l / "arm").string(),
                                     "--platform", "linux/arm/v7"});
    images_.index = registry_->Tool(
        "push-index", {"--repo", "test/multiarch", "--tag", "v1", "--manifest", images_.arm64,
                       "--manifest", images_.armv7, "--manifest", images_.amd64});
    images_.list_arm64 = registry_->Push({"--repo", "test/list", "--layer", (l / "arm64").string(),
                                          "--format", "docker", "--platform", "linux/arm64/v8"});
    images_.list_amd64 = registry_->Push({"--repo", "test/list", "--layer", (l / "amd64").string(),
                                          "--format", "docker", "--platform", "linux/amd64"});
    // Declared without a variant in the list: an arm64/v8 host must still match it.
    images_.list = registry_->Tool(
        "push-index", {"--repo", "test/list", "--tag", "v1", "--format", "docker", "--manifest",
                       images_.list_amd64, "--manifest", images_.list_arm64 + "=linux/arm64"});
    push_log_ = out;
  }

  static void TearDownTestSuite() {
    delete registry_;
    delete tmp_;
    registry_ = nullptr;
    tmp_ = nullptr;
  }

  void SetUp() override {
    ASSERT_TRUE(registry_ != nullptr && registry_->error().empty()) << registry_->error();
    for (const std::string* d :
         {&images_.single, &images_.multi, &images_.amd64, &images_.arm64, &images_.armv7,
          &images_.index, &images_.list_amd64, &images_.list_arm64, &images_.list}) {
      ASSERT_FALSE(d->empty()) << "pushing the test images failed:\n"
                               << ReadFile(tmp_->path() / "registry" / "tool.log") << push_log_;
    }
  }

  std::string R(const std::string& tail) const { return registry_->host() + "/" + tail; }

  static TempDir* tmp_;
  static DockerRegistry* registry_;
  static Images images_;
  static std::string push_log_;
};

TempDir* RegistryClientTest::tmp_ = nullptr;
DockerRegistry* RegistryClientTest::registry_ = nullptr;
RegistryClientTest::Images RegistryClientTest::images_;
std::string RegistryClientTest::push_log_;

TEST_F(RegistryClientTest, DockerSchema2ByTag) {
  RegistryClient client(Opts());
  Reference ref = Ref(R("test/single:v1"));
  auto r = client.Resolve(ref, {});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->manifest_digest, images_.single);
  EXPECT_EQ(r->media_type, kMediaTypeDockerManifest);
  EXPECT_EQ(ComputeDigest("sha256", r->manifest), images_.single);
  EXPECT_TRUE(r->index_digest.empty());
  EXPECT_TRUE(r->index.empty());
  EXPECT_EQ(r->host, registry_->host());
  EXPECT_EQ(r->config.media_type, kMediaTypeDockerConfig);
  ASSERT_EQ(r->layers.size(), 1u);
  EXPECT_EQ(r->layers[0].media_type, "application/vnd.docker.image.rootfs.diff.tar.gzip");

  auto config = Fetch(client, ref, r->config);
  ASSERT_TRUE(config.ok()) << config.status();
  nlohmann::json cfg = nlohmann::json::parse(*config);
  EXPECT_EQ(cfg["architecture"], "amd64");
  EXPECT_EQ(cfg["rootfs"]["diff_ids"].size(), 1u);

  int64_t done = 0, total = 0;
  auto layer = Fetch(client, ref, r->layers[0], {}, &done, &total);
  ASSERT_TRUE(layer.ok()) << layer.status();
  EXPECT_EQ(static_cast<int64_t>(layer->size()), r->layers[0].size);
  EXPECT_GT(r->layers[0].size, 100000);  // busybox
  EXPECT_EQ(done, r->layers[0].size);
  EXPECT_EQ(total, r->layers[0].size);
  EXPECT_EQ(ComputeDigest("sha256", *layer), r->layers[0].digest);
}

TEST_F(RegistryClientTest, OciMultiLayerByDigest) {
  RegistryClient client(Opts());
  Reference ref = Ref(R("test/multi@" + images_.multi));
  auto r = client.Resolve(ref, {});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->manifest_digest, images_.multi);
  EXPECT_EQ(r->media_type, kMediaTypeOciManifest);
  EXPECT_EQ(r->config.media_type, kMediaTypeOciConfig);
  EXPECT_EQ(r->annotations.at("org.example.k"), "v");
  ASSERT_EQ(r->layers.size(), 3u);
  EXPECT_EQ(r->layers[0].media_type, "application/vnd.oci.image.layer.v1.tar+gzip");
  EXPECT_EQ(r->layers[1].media_type, "application/vnd.oci.image.layer.v1.tar+zstd");
  EXPECT_EQ(r->layers[2].media_type, "application/vnd.oci.image.layer.v1.tar");
  for (const Descriptor& d : r->layers) {
    auto blob = Fetch(client, ref, d);
    ASSERT_TRUE(blob.ok()) << blob.status();
    EXPECT_EQ(static_cast<int64_t>(blob->size()), d.size);
  }
  // Tag and digest together: the digest wins (and is verified).
  auto both = client.Resolve(Ref(R("test/multi:v1@" + images_.multi)), {});
  ASSERT_TRUE(both.ok()) << both.status();
  EXPECT_EQ(both->manifest_digest, images_.multi);
}

TEST_F(RegistryClientTest, MultiArchIndexPicksThePlatform) {
  Reference ref = Ref(R("test/multiarch:v1"));
  struct Case {
    std::string arch, variant, want;
  };
  for (const Case& c : {Case{"amd64", "", images_.amd64}, Case{"arm64", "v8", images_.arm64},
                        Case{"arm64", "", images_.arm64}, Case{"arm", "v7", images_.armv7},
                        Case{"arm", "v8", images_.armv7}}) {
    RegistryClient client(Opts("", c.arch, c.variant));
    auto r = client.Resolve(ref, {});
    ASSERT_TRUE(r.ok()) << c.arch << "/" << c.variant << ": " << r.status();
    EXPECT_EQ(r->manifest_digest, c.want) << c.arch << "/" << c.variant;
    EXPECT_EQ(r->index_digest, images_.index);
    EXPECT_EQ(r->index_media_type, kMediaTypeOciIndex);
    EXPECT_EQ(ComputeDigest("sha256", r->index), images_.index);
    EXPECT_EQ(ComputeDigest("sha256", r->manifest), c.want);
    auto config = Fetch(client, ref, r->config);
    ASSERT_TRUE(config.ok()) << config.status();
    EXPECT_EQ(nlohmann::json::parse(*config)["architecture"], c.arch == "arm64" ? "arm64" : c.arch);
  }
  RegistryClient old_arm(Opts("", "arm", "v6"));
  auto none = old_arm.Resolve(ref, {});
  EXPECT_EQ(none.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(none.status().message()),
              HasSubstr("no image for platform linux/arm/v6"));
  EXPECT_THAT(std::string(none.status().message()),
              HasSubstr("linux/arm64, linux/arm/v7, linux/amd64"));
  // By the index digest.
  RegistryClient client(Opts());
  auto by_digest = client.Resolve(Ref(R("test/multiarch@" + images_.index)), {});
  ASSERT_TRUE(by_digest.ok()) << by_digest.status();
  EXPECT_EQ(by_digest->manifest_digest, images_.amd64);
}

TEST_F(RegistryClientTest, DockerManifestListWithVariants) {
  Reference ref = Ref(R("test/list:v1"));
  RegistryClient arm64(Opts("", "arm64", "v8"));
  auto r = arm64.Resolve(ref, {});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->index_media_type, kMediaTypeDockerManifestList);
  EXPECT_EQ(r->media_type, kMediaTypeDockerManifest);
  EXPECT_EQ(r->manifest_digest, images_.list_arm64);
  EXPECT_EQ(r->platform.architecture, "arm64");
  RegistryClient amd64(Opts("", "amd64", ""));
  auto a = amd64.Resolve(ref, {});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->manifest_digest, images_.list_amd64);
  RegistryClient amd64v3(Opts("", "amd64", "v3"));
  auto v3 = amd64v3.Resolve(ref, {});
  ASSERT_TRUE(v3.ok()) << v3.status();
  EXPECT_EQ(v3->manifest_digest, images_.list_amd64);
}

TEST_F(RegistryClientTest, UnknownTagRepositoryAndDigestAreNotFound) {
  RegistryClient client(Opts());
  auto tag = client.Resolve(Ref(R("test/single:nope")), {});
  EXPECT_EQ(tag.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(tag.status().message()), HasSubstr(R("test/single:nope") + " not found"));
  auto repo = client.Resolve(Ref(R("test/absent:v1")), {});
  EXPECT_EQ(repo.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(repo.status().message()), HasSubstr(R("test/absent:v1")));
  auto digest = client.Resolve(Ref(R("test/single@sha256:" + std::string(64, '0'))), {});
  EXPECT_EQ(digest.status().code(), absl::StatusCode::kNotFound);

  Descriptor missing{"application/octet-stream", "sha256:" + std::string(64, '1'), 10, {}, {}, {}};
  absl::Status blob = client.FetchBlob(
      Ref(R("test/single:v1")), missing, {}, [](std::string_view) { return absl::OkStatus(); },
      nullptr);
  EXPECT_EQ(blob.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(blob.message()), HasSubstr("blob sha256:111"));
}

TEST_F(RegistryClientTest, RegistryDownIsUnavailable) {
  int port = testing::FreeLoopbackPort();
  RegistryClient client(Opts());
  auto r = client.Resolve(Ref("127.0.0.1:" + std::to_string(port) + "/test/x:v1"), {});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("cannot connect to http://127.0.0.1:" + std::to_string(port)));
}

TEST_F(RegistryClientTest, SinkErrorsStopTheTransfer) {
  RegistryClient client(Opts());
  Reference ref = Ref(R("test/single:v1"));
  auto r = client.Resolve(ref, {});
  ASSERT_TRUE(r.ok()) << r.status();
  int calls = 0;
  absl::Status s = client.FetchBlob(
      ref, r->layers[0], {},
      [&](std::string_view) {
        ++calls;
        return absl::ResourceExhaustedError("disk full");
      },
      nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(s.message(), "disk full");
  EXPECT_EQ(calls, 1);
  // A descriptor that lies about the size is caught.
  Descriptor small = r->layers[0];
  small.size = 1000;
  absl::Status too_long = client.FetchBlob(
      ref, small, {}, [](std::string_view) { return absl::OkStatus(); }, nullptr);
  EXPECT_EQ(too_long.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(too_long.message()), HasSubstr("longer than the 1000 bytes"));
}

TEST_F(RegistryClientTest, ConcurrentPulls) {
  RegistryClient client(Opts());
  std::vector<std::thread> threads;
  threads.reserve(6);
  std::atomic<int> ok{0};
  for (int i = 0; i < 6; ++i) {
    threads.emplace_back([&, i] {
      Reference ref = Ref(R(i % 2 == 0 ? "test/single:v1" : "test/multi:v1"));
      auto r = client.Resolve(ref, {});
      if (!r.ok()) return;
      for (const Descriptor& d : r->layers) {
        if (!Fetch(client, ref, d).ok()) return;
      }
      ++ok;
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(ok.load(), 6);
}

// --- basic auth ---------------------------------------------------------------------------

class BasicAuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    registry_ = std::make_unique<DockerRegistry>(tmp_.path() / "registry");
    DockerRegistry::Options options;
    options.htpasswd_user = "alice";
    options.htpasswd_password = "s3cret";
    ASSERT_TRUE(registry_->Start(options)) << registry_->error();
    WriteFile(tmp_.path() / "l" / "f", "private\n");
    std::string out;
    digest_ = registry_->Push(
        {"--repo", "private/app", "--tag", "v1", "--layer", (tmp_.path() / "l").string(),
         "--username", "alice", "--password", "s3cret"},
        &out);
    ASSERT_FALSE(digest_.empty()) << out;
  }

  TempDir tmp_;
  std::unique_ptr<DockerRegistry> registry_;
  std::string digest_;
};

TEST_F(BasicAuthTest, UsernamePasswordAndAuthField) {
  RegistryClient client(Opts());
  Reference ref = Ref(registry_->host() + "/private/app:v1");
  Credentials creds;
  creds.username = "alice";
  creds.password = "s3cret";
  auto r = client.Resolve(ref, creds);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->manifest_digest, digest_);
  auto blob = Fetch(client, ref, r->layers[0], creds);
  ASSERT_TRUE(blob.ok()) << blob.status();

  Credentials auth;
  auth.auth = absl::Base64Escape("alice:s3cret");
  RegistryClient fresh(Opts());
  auto r2 = fresh.Resolve(ref, auth);
  ASSERT_TRUE(r2.ok()) << r2.status();
  EXPECT_EQ(r2->manifest_digest, digest_);
}

TEST_F(BasicAuthTest, WrongOrMissingCredentials) {
  RegistryClient client(Opts());
  Reference ref = Ref(registry_->host() + "/private/app:v1");
  Credentials wrong;
  wrong.username = "alice";
  wrong.password = "guess";
  auto r = client.Resolve(ref, wrong);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("registry " + registry_->host() + " refused user \"alice\""));
  auto anon = client.Resolve(ref, {});
  EXPECT_EQ(anon.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(std::string(anon.status().message()),
              HasSubstr("registry " + registry_->host() + " requires authentication"));
  // A good pull after a bad one with other credentials is not confused by any cache.
  Credentials good;
  good.username = "alice";
  good.password = "s3cret";
  EXPECT_TRUE(client.Resolve(ref, good).ok());
  EXPECT_EQ(client.Resolve(ref, wrong).status().code(), absl::StatusCode::kPermissionDenied);
}

// --- mirrors ------------------------------------------------------------------------------

class MirrorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    upstream_ = std::make_unique<DockerRegistry>(tmp_.path() / "upstream");
    mirror_ = std::make_unique<DockerRegistry>(tmp_.path() / "mirror");
    ASSERT_TRUE(upstream_->Start()) << upstream_->error();
    ASSERT_TRUE(mirror_->Start()) << mirror_->error();
    WriteFile(tmp_.path() / "l" / "up", "upstream\n");
    WriteFile(tmp_.path() / "m" / "mirror", "mirror\n");
    std::string out;
    up_digest_ = upstream_->Push(
        {"--repo", "test/app", "--tag", "v1", "--layer", (tmp_.path() / "l").string()}, &out);
    ASSERT_FALSE(up_digest_.empty()) << out;
    // Only the mirror has test/mirrored.
    mirror_digest_ = mirror_->Push(
        {"--repo", "test/mirrored", "--tag", "v1", "--layer", (tmp_.path() / "m").string()}, &out);
    ASSERT_FALSE(mirror_digest_.empty()) << out;
    hosts_ = tmp_.path() / "certs.d";
  }

  void HostsToml(const std::string& text) {
    WriteFile(hosts_ / upstream_->host() / "hosts.toml", text);
  }

  TempDir tmp_;
  std::unique_ptr<DockerRegistry> upstream_, mirror_;
  std::string up_digest_, mirror_digest_;
  fs::path hosts_;
};

TEST_F(MirrorTest, DownMirrorFallsThroughToUpstream) {
  std::string dead = "127.0.0.1:" + std::to_string(testing::FreeLoopbackPort());
  HostsToml("[host.\"http://" + dead + "\"]\n  capabilities = [\"pull\", \"resolve\"]\n");
  RegistryClient client(Opts(hosts_.string()));
  Reference ref = Ref(upstream_->host() + "/test/app:v1");
  auto r = client.Resolve(ref, {});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->manifest_digest, up_digest_);
  EXPECT_EQ(r->host, upstream_->host());
  auto blob = Fetch(client, ref, r->layers[0]);
  ASSERT_TRUE(blob.ok()) << blob.status();

  // Missing everywhere: NOT_FOUND (the upstream's answer), naming every host tried.
  auto missing = client.Resolve(Ref(upstream_->host() + "/test/app:nope"), {});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  std::string msg(missing.status().message());
  EXPECT_THAT(msg, HasSubstr("hosts tried in order: " + dead + ": cannot connect"));
  EXPECT_THAT(msg, HasSubstr(upstream_->host() + ": "));
}

TEST_F(MirrorTest, WorkingMirrorIsUsedWithNs) {
  HostsToml("server = \"http://" + upstream_->host() + "\"\n[host.\"http://" + mirror_->host() +
            "\"]\n  capabilities = [\"pull\", \"resolve\"]\n");
  RegistryClient client(Opts(hosts_.string()));
  Reference ref = Ref(upstream_->host() + "/test/mirrored:v1");
  auto r = client.Resolve(ref, {});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->manifest_digest, mirror_digest_);
  EXPECT_EQ(r->host, mirror_->host());
  auto blob = Fetch(client, ref, r->layers[0]);
  ASSERT_TRUE(blob.ok()) << blob.status();
  EXPECT_EQ(*blob, *Fetch(client, ref, r->layers[0]));
  std::string log = ReadFile(mirror_->log());
  EXPECT_THAT(log, HasSubstr("/v2/test/mirrored/manifests/v1?ns=127.0.0.1%3A" +
                             std::to_string(upstream_->port())));
  EXPECT_THAT(log, HasSubstr("/v2/test/mirrored/blobs/" + r->layers[0].digest));
  // The upstream was never asked.
  EXPECT_THAT(ReadFile(upstream_->log()), ::testing::Not(HasSubstr("test/mirrored")));

  // A mirror without the image (404) falls through to the upstream.
  auto up = client.Resolve(Ref(upstream_->host() + "/test/app:v1"), {});
  ASSERT_TRUE(up.ok()) << up.status();
  EXPECT_EQ(up->host, upstream_->host());
}

TEST_F(MirrorTest, PullOnlyMirrorIsNotTrustedWithTags) {
  HostsToml("[host.\"http://" + mirror_->host() + "\"]\n  capabilities = [\"pull\"]\n");
  RegistryClient client(Opts(hosts_.string()));
  auto by_tag = client.Resolve(Ref(upstream_->host() + "/test/mirrored:v1"), {});
  EXPECT_EQ(by_tag.status().code(), absl::StatusCode::kNotFound);
  auto by_digest = client.Resolve(Ref(upstream_->host() + "/test/mirrored@" + mirror_digest_), {});
  ASSERT_TRUE(by_digest.ok()) << by_digest.status();
  EXPECT_EQ(by_digest->host, mirror_->host());
}

TEST_F(MirrorTest, DefaultServerAndEditsWithoutRestart) {
  // _default with a server: every registry is served by the mirror alone.
  WriteFile(hosts_ / "_default" / "hosts.toml", "server = \"http://" + mirror_->host() + "\"\n");
  RegistryClient client(Opts(hosts_.string()));
  auto r = client.Resolve(Ref("registry.invalid/test/mirrored:v1"), {});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->manifest_digest, mirror_digest_);
  EXPECT_THAT(ReadFile(mirror_->log()), HasSubstr("ns=registry.invalid"));

  // Broken configuration: the error names the file and line; fixing it needs no restart.
  HostsToml("\n[host.\"http://" + mirror_->host() + "\"]\n  capabilities = [\"pull\", 7]\n");
  auto broken = client.Resolve(Ref(upstream_->host() + "/test/app:v1"), {});
  EXPECT_EQ(broken.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(broken.status().message()),
              HasSubstr((hosts_ / upstream_->host() / "hosts.toml").string() + ":3:"));
  HostsToml("[host.\"http://" + mirror_->host() + "\"]\n");
  EXPECT_TRUE(client.Resolve(Ref(upstream_->host() + "/test/app:v1"), {}).ok());

  // No host may resolve: a clear configuration error.
  HostsToml("capabilities = [\"pull\"]\n");
  auto none = client.Resolve(Ref(upstream_->host() + "/test/app:v1"), {});
  EXPECT_EQ(none.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(none.status().message()), HasSubstr("may resolve tags"));
}

TEST_F(MirrorTest, EverythingDownIsUnavailableNamingEveryHost) {
  std::string dead = "127.0.0.1:" + std::to_string(testing::FreeLoopbackPort());
  HostsToml("[host.\"http://" + dead + "\"]\n");
  upstream_->Stop();
  RegistryClient client(Opts(hosts_.string()));
  auto r = client.Resolve(Ref(upstream_->host() + "/test/app:v1"), {});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr(dead + ": cannot connect"));
  EXPECT_THAT(std::string(r.status().message()), HasSubstr(upstream_->host() + ": cannot connect"));
}

// --- bearer tokens with the real registry ---------------------------------------------------

// docker-registry with `auth: token`: a loopback token service issues RS256 JWTs (x5c header,
// a self-signed certificate the registry trusts as its rootcertbundle) for user bob.
class TokenAuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::path dir = tmp_.path();
    auto [code, out] = testing::RunCommand(
        {"/usr/bin/openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
         (dir / "key.pem").string(), "-out", (dir / "cert.pem").string(), "-days", "2", "-subj",
         "/CN=berth-test-token-issuer"},
        dir / "openssl.log");
    ASSERT_EQ(code, 0) << "openssl (apt-get install openssl): " << out;
    std::string pem = ReadFile(dir / "cert.pem");
    for (const char* marker : {"-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"}) {
      pem.erase(pem.find(marker), std::string(marker).size());
    }
    for (char c : pem) {
      if (c != '\n' && c != '\r') cert_der_b64_ += c;
    }
    FILE* f = fopen((dir / "key.pem").c_str(), "r");
    ASSERT_NE(f, nullptr);
    key_ = PEM_read_PrivateKey(f, nullptr, nullptr, nullptr);
    fclose(f);
    ASSERT_NE(key_, nullptr);

    tokens_ = std::make_unique<TestHttpServer>([this](const SeenRequest& r) { return Issue(r); });
    registry_ = std::make_unique<DockerRegistry>(dir / "registry");
    DockerRegistry::Options options;
    options.token_realm = "http://" + tokens_->host() + "/token";
    options.token_service = "berth-test";
    options.token_issuer = "berth-test-issuer";
    options.token_rootcert = (dir / "cert.pem").string();
    ASSERT_TRUE(registry_->Start(options)) << registry_->error();
    WriteFile(dir / "l" / "f", "token-protected\n");
    digest_ = registry_->Push({"--repo", "test/x", "--tag", "v1", "--layer", (dir / "l").string(),
                               "--username", "bob", "--password", "pw"},
                              &out);
    ASSERT_FALSE(digest_.empty()) << out << ReadFile(registry_->log());
  }
  void TearDown() override {
    registry_.reset();
    tokens_.reset();
    EVP_PKEY_free(key_);
  }

  static std::string B64Url(std::string_view s) {
    std::string out;
    absl::WebSafeBase64Escape(std::string(s), &out);
    return out;
  }

  std::string Jwt(const std::string& subject, const nlohmann::json& access) {
    nlohmann::json header = {{"typ", "JWT"}, {"alg", "RS256"}, {"x5c", {cert_der_b64_}}};
    int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
    nlohmann::json claims = {{"iss", "berth-test-issuer"},
                             {"sub", subject},
                             {"aud", "berth-test"},
                             {"exp", now + 300},
                             {"nbf", now - 10},
                             {"iat", now - 10},
                             {"jti", std::to_string(++issued_)},
                             {"access", access}};
    std::string input = B64Url(header.dump()) + "." + B64Url(claims.dump());
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    size_t len = 0;
    EVP_DigestSignInit(ctx, nullptr, EVP_sha256(), nullptr, key_);
    EVP_DigestSign(ctx, nullptr, &len, reinterpret_cast<const unsigned char*>(input.data()),
                   input.size());
    std::string sig(len, '\0');
    EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &len,
                   reinterpret_cast<const unsigned char*>(input.data()), input.size());
    EVP_MD_CTX_free(ctx);
    sig.resize(len);
    return input + "." + B64Url(sig);
  }

  // GET /token?service=…&scope=repository:<name>:<actions>: bob/pw gets what he asks for,
  // anonymous callers nothing, anyone else a 401.
  CannedResponse Issue(const SeenRequest& r) {
    std::string auth = r.Header("authorization");
    std::string subject;
    if (auth == "Basic " + absl::Base64Escape("bob:pw")) {
      subject = "bob";
    } else if (!auth.empty()) {
      return {401, {}, R"({"details":"incorrect username or password"})", {}};
    }
    nlohmann::json access = nlohmann::json::array();
    size_t p = r.target.find("scope=");
    if (!subject.empty() && p != std::string::npos) {
      std::string scope = r.target.substr(p + 6, r.target.find('&', p) - p - 6);
      std::string decoded;
      for (size_t i = 0; i < scope.size(); ++i) {
        if (scope[i] == '%' && i + 2 < scope.size()) {
          decoded += static_cast<char>(std::stoi(scope.substr(i + 1, 2), nullptr, 16));
          i += 2;
        } else {
          decoded += scope[i] == '+' ? ' ' : scope[i];
        }
      }
      size_t a = decoded.find(':'), b = decoded.rfind(':');
      nlohmann::json actions = nlohmann::json::array();
      std::string list = decoded.substr(b + 1);
      for (size_t s = 0, e; s <= list.size(); s = e + 1) {
        e = list.find(',', s);
        if (e == std::string::npos) e = list.size();
        actions.push_back(list.substr(s, e - s));
      }
      access.push_back({{"type", decoded.substr(0, a)},
                        {"name", decoded.substr(a + 1, b - a - 1)},
                        {"actions", actions}});
    }
    return {
        200, {}, nlohmann::json{{"token", Jwt(subject, access)}, {"expires_in", 300}}.dump(), {}};
  }

  TempDir tmp_;
  EVP_PKEY* key_ = nullptr;
  std::string cert_der_b64_;
  std::atomic<int> issued_{0};
  std::unique_ptr<TestHttpServer> tokens_;
  std::unique_ptr<DockerRegistry> registry_;
  std::string digest_;
};

TEST_F(TokenAuthTest, BearerTokenFlowAgainstDockerRegistry) {
  RegistryClient client(Opts());
  Reference ref = Ref(registry_->host() + "/test/x:v1");
  Credentials creds;
  creds.username = "bob";
  creds.password = "pw";
  size_t before = tokens_->requests().size();
  auto r = client.Resolve(ref, creds);
  ASSERT_TRUE(r.ok()) << r.status() << "\n" << ReadFile(registry_->log());
  EXPECT_EQ(r->manifest_digest, digest_);
  auto blob = Fetch(client, ref, r->layers[0], creds);
  ASSERT_TRUE(blob.ok()) << blob.status();
  auto config = Fetch(client, ref, r->config, creds);
  ASSERT_TRUE(config.ok()) << config.status();
  // One token for the manifest and both blobs.
  auto seen = tokens_->requests();
  ASSERT_EQ(seen.size(), before + 1);
  EXPECT_THAT(seen.back().target, HasSubstr("service=berth-test"));
  EXPECT_THAT(seen.back().target, HasSubstr("scope=repository%3Atest%2Fx%3Apull"));

  // Anonymous: the token service issues a token without access, the registry refuses it.
  RegistryClient anon(Opts());
  auto denied = anon.Resolve(ref, {});
  EXPECT_EQ(denied.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(std::string(denied.status().message()), HasSubstr(registry_->host()));
  // Wrong password: the token service refuses.
  Credentials wrong = creds;
  wrong.password = "nope";
  auto refused = anon.Resolve(ref, wrong);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("refused user \"bob\""));
}

}  // namespace
}  // namespace berth::image
