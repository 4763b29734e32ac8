// SPDX-License-Identifier: Apache-2.0
// RegistryClient against small loopback HTTP servers standing in for registries and token
// services: what a real docker-registry will not do on demand (oversized, broken or schema 1
// manifests, wrong digests, stalls, redirects to storage, 5xx) and the bearer token flows
// (basic credentials, anonymous, identity token, registry token, expiry, revocation).
#include <set>
#include <thread>

#include "absl/strings/escaping.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "plugins/image-store/registry/client.h"
#include "plugins/image-store/registry/tests/test_support.h"

namespace berth::image {
namespace {

using testing::CannedResponse;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::SeenRequest;
using testing::TempDir;
using testing::TestHttpServer;
using testing::WriteFile;

// A one-layer OCI image in memory.
struct FakeImage {
  std::string config = R"({"architecture":"amd64","os":"linux","rootfs":{"type":"layers"}})";
  std::string layer;
  std::string manifest;
  std::string digest;

  explicit FakeImage(char fill = 'L') : layer(100000, fill) {
    nlohmann::json m = {{"schemaVersion", 2},
                        {"mediaType", kMediaTypeOciManifest},
                        {"config",
                         {{"mediaType", kMediaTypeOciConfig},
                          {"digest", ComputeDigest("sha256", config)},
                          {"size", config.size()}}},
                        {"layers",
                         {{{"mediaType", "application/vnd.oci.image.layer.v1.tar"},
                           {"digest", ComputeDigest("sha256", layer)},
                           {"size", layer.size()}}}}};
    manifest = m.dump();
    digest = ComputeDigest("sha256", manifest);
  }
  std::string layer_digest() const { return ComputeDigest("sha256", layer); }

  // Serves test/x: the manifest by tag "v1" and digest, and the blobs.
  CannedResponse Serve(const SeenRequest& r) const {
    if (r.path == "/v2/test/x/manifests/v1" || r.path == "/v2/test/x/manifests/" + digest) {
      return {200, {{"Content-Type", kMediaTypeOciManifest}}, manifest, {}};
    }
    if (r.path == "/v2/test/x/blobs/" + ComputeDigest("sha256", config)) {
      return {200, {}, config, {}};
    }
    if (r.path == "/v2/test/x/blobs/" + layer_digest()) return {200, {}, layer, {}};
    return {
        404, {}, R"({"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]})", {}};
  }
};

RegistryClient::Options Opts(std::string hosts_dir = "") {
  RegistryClient::Options o;
  o.hosts_dir = std::move(hosts_dir);
  o.platform_arch = "amd64";
  o.platform_variant = "";
  o.progress_timeout = std::chrono::seconds(10);
  o.connect_timeout = std::chrono::milliseconds(2000);
  return o;
}

Reference Ref(const std::string& text) {
  auto r = ParseReference(text);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *r : Reference{};
}

absl::Status Drain(RegistryClient& c, const Reference& ref, const Descriptor& d,
                   const Credentials& creds = {}, std::string* out = nullptr) {
  return c.FetchBlobVerified(
      ref, d, creds,
      [&](std::string_view chunk) {
        if (out != nullptr) out->append(chunk.data(), chunk.size());
        return absl::OkStatus();
      },
      nullptr);
}

TEST(FakeRegistryTest, ServesAnImage) {
  FakeImage img;
  TestHttpServer server([&](const SeenRequest& r) { return img.Serve(r); });
  RegistryClient client(Opts());
  Reference ref = Ref(server.host() + "/test/x:v1");
  auto r = client.Resolve(ref, {});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->manifest_digest, img.digest);
  std::string layer;
  ASSERT_TRUE(Drain(client, ref, r->layers[0], {}, &layer).ok());
  EXPECT_EQ(layer, img.layer);
  // The Accept header names every manifest type berth understands.
  std::string accept = server.requests()[0].Header("accept");
  EXPECT_THAT(accept, HasSubstr(kMediaTypeOciIndex));
  EXPECT_THAT(accept, HasSubstr(kMediaTypeOciManifest));
  EXPECT_THAT(accept, HasSubstr(kMediaTypeDockerManifestList));
  EXPECT_THAT(accept, HasSubstr(kMediaTypeDockerManifest));
}

TEST(FakeRegistryTest, OversizedManifestIsRefused) {
  std::string big = R"({"schemaVersion":2,"pad":")" + std::string(5 << 20, 'x') + "\"}";
  TestHttpServer server([&](const SeenRequest&) {
    return CannedResponse{200, {{"Content-Type", kMediaTypeOciManifest}}, big, {}};
  });
  RegistryClient client(Opts());
  auto r = client.Resolve(Ref(server.host() + "/test/big:v1"), {});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("larger than the 4 MiB manifest limit"));
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("test/big:v1"));
  // Without a Content-Length (a lying one that is smaller) the body limit still holds.
  TestHttpServer liar([&](const SeenRequest&) {
    return CannedResponse{
        200, {{"Content-Type", kMediaTypeOciManifest}}, big.substr(0, 4 << 20), {}};
  });
  auto exact = client.Resolve(Ref(liar.host() + "/test/big:v1"), {});
  EXPECT_NE(exact.status().code(), absl::StatusCode::kResourceExhausted);  // 4 MiB is allowed
}

TEST(FakeRegistryTest, MalformedAndSchema1ManifestsAreRefused) {
  std::string body;
  std::string type = kMediaTypeOciManifest;
  TestHttpServer server([&](const SeenRequest&) {
    return CannedResponse{200, {{"Content-Type", type}}, body, {}};
  });
  RegistryClient client(Opts());
  Reference ref = Ref(server.host() + "/test/x:v1");

  body = R"({"schemaVersion": 2, "config": )";
  auto broken = client.Resolve(ref, {});
  EXPECT_EQ(broken.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(broken.status().message()),
              HasSubstr("the manifest of " + ref.String() + " is not valid JSON"));

  body = R"({"schemaVersion": 2, "mediaType": ")" + type + R"(", "layers": []})";
  auto no_config = client.Resolve(ref, {});
  EXPECT_EQ(no_config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(no_config.status().message()), HasSubstr("no config descriptor"));

  type = kMediaTypeDockerSchema1Signed;
  body = R"({"schemaVersion": 1, "name": "test/x", "tag": "v1", "fsLayers": []})";
  auto schema1 = client.Resolve(ref, {});
  EXPECT_EQ(schema1.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(std::string(schema1.status().message()), HasSubstr("schema 1"));
}

TEST(FakeRegistryTest, DigestMismatchIsDataLoss) {
  FakeImage img;
  std::string claimed;
  TestHttpServer server([&](const SeenRequest& r) {
    CannedResponse resp = img.Serve(r);
    if (!claimed.empty()) resp.headers.emplace_back("Docker-Content-Digest", claimed);
    if (r.path.find("/blobs/") != std::string::npos &&
        r.path.find(img.layer_digest()) != std::string::npos) {
      resp.body[10] = 'X';  // corrupt, same size
    }
    return resp;
  });
  RegistryClient client(Opts());
  // By digest: the content must hash to it (this server answers any digest with the image).
  std::string other = ComputeDigest("sha256", "other");
  TestHttpServer swapper([&](const SeenRequest&) {
    return CannedResponse{200, {{"Content-Type", kMediaTypeOciManifest}}, img.manifest, {}};
  });
  auto swapped = client.Resolve(Ref(swapper.host() + "/test/x@" + other), {});
  EXPECT_EQ(swapped.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(swapped.status().message()), HasSubstr("expected " + other));

  // By tag: a Docker-Content-Digest that does not match the bytes.
  claimed = other;
  auto lying = client.Resolve(Ref(server.host() + "/test/x:v1"), {});
  EXPECT_EQ(lying.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(lying.status().message()), HasSubstr("the registry says its digest is"));
  claimed = img.digest;
  auto r = client.Resolve(Ref(server.host() + "/test/x:v1"), {});
  ASSERT_TRUE(r.ok()) << r.status();

  // A corrupted blob: FetchBlobVerified says so after the last chunk.
  absl::Status blob = Drain(client, Ref(server.host() + "/test/x:v1"), r->layers[0]);
  EXPECT_EQ(blob.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(blob.message()), HasSubstr("content digest is"));
}

TEST(FakeRegistryTest, ShortBlobIsDataLoss) {
  FakeImage img;
  TestHttpServer server([&](const SeenRequest& r) {
    CannedResponse resp = img.Serve(r);
    if (r.path.find("/blobs/" + img.layer_digest()) != std::string::npos) resp.body.resize(5000);
    return resp;
  });
  RegistryClient client(Opts());
  Reference ref = Ref(server.host() + "/test/x:v1");
  auto r = client.Resolve(ref, {});
  ASSERT_TRUE(r.ok()) << r.status();
  absl::Status s = client.FetchBlob(
      ref, r->layers[0], {}, [](std::string_view) { return absl::OkStatus(); }, nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(s.message()), HasSubstr("ended after 5000 of 100000 bytes"));
}

TEST(FakeRegistryTest, StalledBlobIsDeadlineExceeded) {
  FakeImage img;
  TestHttpServer server([&](const SeenRequest& r) {
    CannedResponse resp = img.Serve(r);
    if (r.path.find("/blobs/" + img.layer_digest()) != std::string::npos) resp.stall_after = 1000;
    return resp;
  });
  RegistryClient::Options o = Opts();
  o.progress_timeout = std::chrono::seconds(1);
  RegistryClient client(o);
  Reference ref = Ref(server.host() + "/test/x:v1");
  auto r = client.Resolve(ref, {});
  ASSERT_TRUE(r.ok()) << r.status();
  int64_t seen = 0;
  auto start = std::chrono::steady_clock::now();
  absl::Status s = client.FetchBlob(
      ref, r->layers[0], {},
      [&](std::string_view c) {
        seen += static_cast<int64_t>(c.size());
        return absl::OkStatus();
      },
      nullptr);
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("stalled"));
  EXPECT_EQ(seen, 1000);
  EXPECT_LT(took, std::chrono::seconds(5));
}

TEST(FakeRegistryTest, RedirectToStorageDropsCredentials) {
  FakeImage img;
  TestHttpServer storage([&](const SeenRequest& r) {
    if (r.path == "/bucket/layer") return CannedResponse{200, {}, img.layer, {}};
    return CannedResponse{404, {}, "", {}};
  });
  TestHttpServer server([&](const SeenRequest& r) {
    if (r.Header("authorization") != "Bearer direct-token") {
      return CannedResponse{401, {{"WWW-Authenticate", "Basic realm=\"x\""}}, "", {}};
    }
    if (r.path == "/v2/test/x/blobs/" + img.layer_digest()) {
      return CannedResponse{
          307,
          {{"Location", "http://localhost:" + std::to_string(storage.port()) + "/bucket/layer"}},
          "",
          {}};
    }
    return img.Serve(r);
  });
  TempDir tmp;
  WriteFile(tmp.path() / "certs.d" / server.host() / "hosts.toml",
            "[header]\n  x-registry-secret = \"s\"\n  x-multi = [\"a\", \"b\"]\n");
  RegistryClient client(Opts((tmp.path() / "certs.d").string()));
  Credentials creds;
  creds.registry_token = "direct-token";
  Reference ref = Ref(server.host() + "/test/x:v1");
  auto r = client.Resolve(ref, creds);
  ASSERT_TRUE(r.ok()) << r.status();
  std::string layer;
  ASSERT_TRUE(Drain(client, ref, r->layers[0], creds, &layer).ok());
  EXPECT_EQ(layer, img.layer);
  ASSERT_EQ(storage.requests().size(), 1u);
  SeenRequest at_storage = storage.requests()[0];
  EXPECT_EQ(at_storage.Header("authorization"), "");
  EXPECT_EQ(at_storage.Header("x-registry-secret"), "");
  SeenRequest at_registry = server.requests().back();
  EXPECT_EQ(at_registry.Header("x-registry-secret"), "s");
  EXPECT_EQ(at_registry.Header("authorization"), "Bearer direct-token");
}

TEST(FakeRegistryTest, FailingMirrorsFallThrough) {
  FakeImage img;
  FakeImage evil('E');
  TestHttpServer broken([&](const SeenRequest&) {
    return CannedResponse{
        503, {}, R"({"errors":[{"code":"UNAVAILABLE","message":"overloaded"}]})", {}};
  });
  // Serves a different manifest under the digest: must not be accepted.
  TestHttpServer liar([&](const SeenRequest& r) {
    if (r.path.find("/manifests/") != std::string::npos) {
      return CannedResponse{200, {{"Content-Type", kMediaTypeOciManifest}}, evil.manifest, {}};
    }
    return CannedResponse{200, {}, evil.layer, {}};
  });
  TestHttpServer upstream([&](const SeenRequest& r) { return img.Serve(r); });
  TempDir tmp;
  WriteFile(tmp.path() / upstream.host() / "hosts.toml", "[host.\"http://" + broken.host() +
                                                             "\"]\n[host.\"http://" + liar.host() +
                                                             "\"]\n  capabilities = [\"pull\"]\n");
  RegistryClient client(Opts(tmp.path().string()));
  Reference ref = Ref(upstream.host() + "/test/x@" + img.digest);
  auto r = client.Resolve(ref, {});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->host, upstream.host());
  EXPECT_EQ(r->manifest_digest, img.digest);
  // A blob from the lying mirror would be caught by the caller's digest check; here the liar
  // answers first with wrong bytes of the right size.
  std::string layer;
  absl::Status s = Drain(client, ref, r->layers[0], {}, &layer);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  // The broken mirror was tried and skipped, the liar's manifest refused.
  EXPECT_FALSE(broken.requests().empty());
  EXPECT_THAT(broken.requests()[0].target, HasSubstr("?ns=127.0.0.1%3A"));
}

// --- bearer tokens ------------------------------------------------------------------------

// A token service and a registry that accepts only the tokens the service issued.
class BearerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tokens_ = std::make_unique<TestHttpServer>([this](const SeenRequest& r) { return Token(r); });
    registry_ = std::make_unique<TestHttpServer>([this](const SeenRequest& r) {
      std::string auth = r.Header("authorization");
      bool valid;
      {
        std::lock_guard<std::mutex> lock(mu_);
        valid = auth.rfind("Bearer ", 0) == 0 && issued_.count(auth.substr(7)) > 0;
      }
      if (!valid) {
        return CannedResponse{
            401,
            {{"WWW-Authenticate",
              "Bearer realm=\"http://" + tokens_->host() +
                  "/token\",service=\"fake-registry\",scope=\"repository:" + "test/x:pull\""}},
            R"({"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]})",
            {}};
      }
      return img_.Serve(r);
    });
  }

  CannedResponse Token(const SeenRequest& r) {
    std::lock_guard<std::mutex> lock(mu_);
    std::string token;
    if (r.method == "POST") {
      if (r.body.find("grant_type=refresh_token") == std::string::npos ||
          r.body.find("refresh_token=id-token-1") == std::string::npos) {
        return {401, {}, R"({"details":"bad refresh token"})", {}};
      }
      token = "refreshed-" + std::to_string(++count_);
      issued_.insert(token);
      return {200,
              {},
              nlohmann::json{{"access_token", token}, {"expires_in", expires_in_.load()}}.dump(),
              {}};
    }
    std::string auth = r.Header("authorization");
    if (auth.empty() && !allow_anonymous_) return {401, {}, "", {}};
    if (!auth.empty() && auth != "Basic " + absl::Base64Escape("bob:pw")) {
      return {401, {}, R"({"details":"incorrect username or password"})", {}};
    }
    token = (auth.empty() ? "anon-" : "tok-") + std::to_string(++count_);
    issued_.insert(token);
    return {
        200, {}, nlohmann::json{{"token", token}, {"expires_in", expires_in_.load()}}.dump(), {}};
  }

  void Revoke() {
    std::lock_guard<std::mutex> lock(mu_);
    issued_.clear();
  }

  Reference ref() const { return Ref(registry_->host() + "/test/x:v1"); }

  FakeImage img_;
  std::mutex mu_;
  std::set<std::string> issued_;
  int count_ = 0;
  std::atomic<int> expires_in_{300};
  std::atomic<bool> allow_anonymous_{false};
  std::unique_ptr<TestHttpServer> tokens_, registry_;
};

TEST_F(BearerTest, BasicCredentialsForATokenThatIsCached) {
  RegistryClient client(Opts());
  Credentials creds;
  creds.username = "bob";
  creds.password = "pw";
  auto r = client.Resolve(ref(), creds);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(Drain(client, ref(), r->layers[0], creds).ok());
  ASSERT_TRUE(client.Resolve(ref(), creds).ok());
  auto seen = tokens_->requests();
  ASSERT_EQ(seen.size(), 1u);  // one token for every request of the scope
  EXPECT_EQ(seen[0].method, "GET");
  EXPECT_THAT(seen[0].target, HasSubstr("service=fake-registry"));
  EXPECT_THAT(seen[0].target, HasSubstr("scope=repository%3Atest%2Fx%3Apull"));
  EXPECT_EQ(seen[0].Header("authorization"), "Basic " + absl::Base64Escape("bob:pw"));
  // The registry never saw the password.
  for (const SeenRequest& q : registry_->requests()) {
    EXPECT_THAT(q.Header("authorization"), Not(HasSubstr("Basic")));
  }
}

TEST_F(BearerTest, AnonymousToken) {
  allow_anonymous_ = true;
  RegistryClient client(Opts());
  auto r = client.Resolve(ref(), {});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(tokens_->requests()[0].Header("authorization"), "");
}

TEST_F(BearerTest, IdentityTokenIsExchangedByPost) {
  RegistryClient client(Opts());
  Credentials creds;
  creds.identity_token = "id-token-1";
  auto r = client.Resolve(ref(), creds);
  ASSERT_TRUE(r.ok()) << r.status();
  auto seen = tokens_->requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].method, "POST");
  EXPECT_THAT(seen[0].body, HasSubstr("service=fake-registry"));
  EXPECT_THAT(seen[0].body, HasSubstr("scope=repository%3Atest%2Fx%3Apull"));
  EXPECT_EQ(seen[0].Header("content-type"), "application/x-www-form-urlencoded");
}

TEST_F(BearerTest, RegistryTokenIsSentAsIs) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    issued_.insert("given");
  }
  RegistryClient client(Opts());
  Credentials creds;
  creds.registry_token = "given";
  ASSERT_TRUE(client.Resolve(ref(), creds).ok());
  EXPECT_TRUE(tokens_->requests().empty());
  creds.registry_token = "stale";
  auto stale = client.Resolve(ref(), creds);
  EXPECT_EQ(stale.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(stale.status().message()), HasSubstr("the registry token"));
}

TEST_F(BearerTest, WrongCredentialsArePermissionDenied) {
  RegistryClient client(Opts());
  Credentials creds;
  creds.username = "bob";
  creds.password = "nope";
  auto r = client.Resolve(ref(), creds);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("of registry " + registry_->host() + " refused user \"bob\""));
  auto anon = client.Resolve(ref(), {});
  EXPECT_EQ(anon.status().code(), absl::StatusCode::kUnauthenticated);
}

TEST_F(BearerTest, ExpiredAndRevokedTokensAreRenewed) {
  expires_in_ = 1;  // cached for 0.75 s
  RegistryClient client(Opts());
  Credentials creds;
  creds.username = "bob";
  creds.password = "pw";
  ASSERT_TRUE(client.Resolve(ref(), creds).ok());
  ASSERT_TRUE(client.Resolve(ref(), creds).ok());
  EXPECT_EQ(tokens_->requests().size(), 1u);
  std::this_thread::sleep_for(std::chrono::milliseconds(900));
  expires_in_ = 300;
  ASSERT_TRUE(client.Resolve(ref(), creds).ok());
  EXPECT_EQ(tokens_->requests().size(), 2u);
  Revoke();  // the cached token is refused: a new one is fetched once
  ASSERT_TRUE(client.Resolve(ref(), creds).ok());
  EXPECT_EQ(tokens_->requests().size(), 3u);
  ASSERT_TRUE(client.Resolve(ref(), creds).ok());
  EXPECT_EQ(tokens_->requests().size(), 3u);
}

TEST_F(BearerTest, TokensAreKeptPerCredentials) {
  allow_anonymous_ = true;
  RegistryClient client(Opts());
  Credentials bob;
  bob.username = "bob";
  bob.password = "pw";
  ASSERT_TRUE(client.Resolve(ref(), bob).ok());
  Credentials eve;
  eve.username = "eve";
  eve.password = "x";
  // Eve does not get Bob's cached token: her own credentials are tried, and refused.
  EXPECT_EQ(client.Resolve(ref(), eve).status().code(), absl::StatusCode::kPermissionDenied);
  ASSERT_TRUE(client.Resolve(ref(), {}).ok());
  EXPECT_EQ(tokens_->requests().size(), 3u);
}

}  // namespace
}  // namespace berth::image
