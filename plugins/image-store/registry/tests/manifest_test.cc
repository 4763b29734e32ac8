// SPDX-License-Identifier: Apache-2.0
#include "plugins/image-store/registry/manifest.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace berth::image {
namespace {

using ::testing::HasSubstr;

std::string Digest(char c) { return "sha256:" + std::string(64, c); }

Descriptor Entry(char c, std::string os, std::string arch, std::string variant = "") {
  Descriptor d;
  d.media_type = kMediaTypeOciManifest;
  d.digest = Digest(c);
  d.size = 100;
  d.platform = Platform{std::move(os), std::move(arch), std::move(variant), ""};
  return d;
}

std::string Pick(const std::vector<Descriptor>& ms, const Platform& want) {
  auto d = SelectPlatform(ms, want, "the index of x");
  return d.ok() ? d->digest : std::string(d.status().message());
}

TEST(PlatformTest, Normalize) {
  EXPECT_EQ(NormalizePlatform({"Linux", "x86_64", "", ""}).String(), "linux/amd64");
  EXPECT_EQ(NormalizePlatform({"linux", "amd64", "v1", ""}).String(), "linux/amd64");
  EXPECT_EQ(NormalizePlatform({"linux", "aarch64", "", ""}).String(), "linux/arm64");
  EXPECT_EQ(NormalizePlatform({"linux", "arm64", "v8", ""}).String(), "linux/arm64");
  EXPECT_EQ(NormalizePlatform({"linux", "arm64", "8", ""}).String(), "linux/arm64");
  EXPECT_EQ(NormalizePlatform({"linux", "arm", "", ""}).String(), "linux/arm/v7");
  EXPECT_EQ(NormalizePlatform({"linux", "armhf", "", ""}).String(), "linux/arm/v7");
  EXPECT_EQ(NormalizePlatform({"linux", "armel", "", ""}).String(), "linux/arm/v6");
  EXPECT_EQ(NormalizePlatform({"linux", "arm", "6", ""}).String(), "linux/arm/v6");
  EXPECT_EQ(NormalizePlatform({"linux", "i686", "", ""}).String(), "linux/386");
  EXPECT_EQ(HostPlatform().os, "linux");
  EXPECT_FALSE(HostPlatform().architecture.empty());
}

TEST(PlatformTest, SelectsOsAndArchitecture) {
  std::vector<Descriptor> ms = {Entry('1', "linux", "arm64", "v8"), Entry('2', "linux", "amd64"),
                                Entry('3', "windows", "amd64"), Entry('4', "linux", "s390x")};
  EXPECT_EQ(Pick(ms, {"linux", "amd64", "", ""}), Digest('2'));
  EXPECT_EQ(Pick(ms, {"windows", "amd64", "", ""}), Digest('3'));
  EXPECT_EQ(Pick(ms, {"linux", "s390x", "", ""}), Digest('4'));
  std::string none = Pick(ms, {"linux", "riscv64", "", ""});
  EXPECT_THAT(none, HasSubstr("no image for platform linux/riscv64 in the index of x"));
  EXPECT_THAT(none, HasSubstr("linux/arm64, linux/amd64, windows/amd64, linux/s390x"));
}

TEST(PlatformTest, Arm64VariantV8IsPlainArm64) {
  std::vector<Descriptor> with_v8 = {Entry('1', "linux", "amd64"),
                                     Entry('2', "linux", "arm64", "v8")};
  std::vector<Descriptor> without = {Entry('1', "linux", "amd64"), Entry('2', "linux", "arm64")};
  for (const auto& want : {Platform{"linux", "arm64", "v8", ""}, Platform{"linux", "arm64", "", ""},
                           Platform{"linux", "aarch64", "", ""}}) {
    EXPECT_EQ(Pick(with_v8, want), Digest('2')) << want.String();
    EXPECT_EQ(Pick(without, want), Digest('2')) << want.String();
  }
  // An arm64/v9 host runs v8 images, preferring a v9 one.
  std::vector<Descriptor> both = {Entry('1', "linux", "arm64", "v8"),
                                  Entry('2', "linux", "arm64", "v9")};
  EXPECT_EQ(Pick(both, {"linux", "arm64", "v9", ""}), Digest('2'));
  EXPECT_EQ(Pick(both, {"linux", "arm64", "v8", ""}), Digest('1'));
}

TEST(PlatformTest, ArmVariantsFallBackToOlderOnes) {
  std::vector<Descriptor> ms = {Entry('5', "linux", "arm", "v5"), Entry('6', "linux", "arm", "v6"),
                                Entry('7', "linux", "arm", "v7")};
  EXPECT_EQ(Pick(ms, {"linux", "arm", "v7", ""}), Digest('7'));
  EXPECT_EQ(Pick(ms, {"linux", "arm", "v6", ""}), Digest('6'));
  EXPECT_EQ(Pick(ms, {"linux", "arm", "", ""}), Digest('7'));  // arm means arm/v7
  std::vector<Descriptor> only6 = {Entry('6', "linux", "arm", "v6")};
  EXPECT_EQ(Pick(only6, {"linux", "arm", "v7", ""}), Digest('6'));
  std::vector<Descriptor> only7 = {Entry('7', "linux", "arm", "v7")};
  EXPECT_THAT(Pick(only7, {"linux", "arm", "v6", ""}),
              HasSubstr("no image for platform linux/arm/v6"));
}

TEST(PlatformTest, Amd64Levels) {
  std::vector<Descriptor> ms = {Entry('3', "linux", "amd64", "v3"), Entry('1', "linux", "amd64"),
                                Entry('2', "linux", "amd64", "v2")};
  EXPECT_EQ(Pick(ms, {"linux", "amd64", "", ""}), Digest('1'));  // plain amd64 only
  EXPECT_EQ(Pick(ms, {"linux", "amd64", "v2", ""}), Digest('2'));
  EXPECT_EQ(Pick(ms, {"linux", "amd64", "v4", ""}), Digest('3'));
  std::vector<Descriptor> v3_only = {Entry('3', "linux", "amd64", "v3")};
  EXPECT_THAT(Pick(v3_only, {"linux", "amd64", "", ""}), HasSubstr("linux/amd64/v3"));
}

TEST(PlatformTest, SkipsNonImagesAndFallsBackToEntriesWithoutPlatform) {
  Descriptor attestation = Entry('a', "unknown", "unknown");
  Descriptor artifact = Entry('b', "linux", "amd64");
  artifact.media_type = "application/vnd.example.sbom";
  Descriptor bare = Entry('c', "", "");
  bare.platform.reset();
  EXPECT_EQ(Pick({attestation, artifact, bare}, {"linux", "amd64", "", ""}), Digest('c'));
  EXPECT_EQ(Pick({bare, Entry('d', "linux", "amd64")}, {"linux", "amd64", "", ""}), Digest('d'));
}

TEST(ManifestTest, DetectsMediaTypes) {
  auto oci = DetectManifestMediaType(
      R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]})",
      "application/json", "m");
  ASSERT_TRUE(oci.ok());
  EXPECT_EQ(*oci, kMediaTypeOciIndex);
  auto by_header = DetectManifestMediaType(R"({"schemaVersion":2,"config":{},"layers":[]})",
                                           std::string(kMediaTypeDockerManifest) + "; x=y", "m");
  ASSERT_TRUE(by_header.ok());
  EXPECT_EQ(*by_header, kMediaTypeDockerManifest);
  auto by_shape = DetectManifestMediaType(R"({"schemaVersion":2,"manifests":[]})", "", "m");
  ASSERT_TRUE(by_shape.ok());
  EXPECT_EQ(*by_shape, kMediaTypeOciIndex);

  auto schema1 = DetectManifestMediaType(R"({"schemaVersion":1,"name":"x","fsLayers":[]})",
                                         kMediaTypeDockerSchema1Signed, "the manifest of x");
  EXPECT_EQ(schema1.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(std::string(schema1.status().message()),
              HasSubstr("the manifest of x is a Docker image manifest schema 1"));
  auto schema1_body = DetectManifestMediaType(R"({"schemaVersion":1})", "", "m");
  EXPECT_EQ(schema1_body.status().code(), absl::StatusCode::kUnimplemented);

  auto broken = DetectManifestMediaType("{\"schemaVersion\": 2,", "", "the manifest of x");
  EXPECT_EQ(broken.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(broken.status().message()),
              HasSubstr("the manifest of x is not valid JSON"));
  auto artifact = DetectManifestMediaType(
      R"({"schemaVersion":2,"mediaType":"application/vnd.cncf.helm.chart"})", "", "m");
  EXPECT_EQ(artifact.status().code(), absl::StatusCode::kUnimplemented);
  auto unknown = DetectManifestMediaType(R"({"hello":1})", "text/plain", "m");
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ManifestTest, ParsesAndValidates) {
  nlohmann::json m = {
      {"schemaVersion", 2},
      {"mediaType", kMediaTypeOciManifest},
      {"config", {{"mediaType", kMediaTypeOciConfig}, {"digest", Digest('c')}, {"size", 10}}},
      {"layers",
       {{{"mediaType", "application/vnd.oci.image.layer.v1.tar+gzip"},
         {"digest", Digest('1')},
         {"size", 20},
         {"annotations", {{"k", "v"}}}}}},
      {"annotations", {{"org.opencontainers.image.ref.name", "v1"}}}};
  auto parsed = ParseImageManifest(m.dump(), kMediaTypeOciManifest, "m");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->config.digest, Digest('c'));
  ASSERT_EQ(parsed->layers.size(), 1u);
  EXPECT_EQ(parsed->layers[0].size, 20);
  EXPECT_EQ(parsed->layers[0].annotations.at("k"), "v");
  EXPECT_EQ(parsed->annotations.at("org.opencontainers.image.ref.name"), "v1");

  auto bad = m;
  bad["layers"][0]["digest"] = "sha256:nothex";
  auto e1 = ParseImageManifest(bad.dump(), kMediaTypeOciManifest, "the manifest of x");
  EXPECT_EQ(e1.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(e1.status().message()),
              HasSubstr("the manifest of x is invalid: layers[0]"));
  bad = m;
  bad["config"]["size"] = -1;
  EXPECT_THAT(std::string(ParseImageManifest(bad.dump(), "", "m").status().message()),
              HasSubstr("config has no valid size"));
  bad = m;
  bad.erase("config");
  EXPECT_THAT(std::string(ParseImageManifest(bad.dump(), "", "m").status().message()),
              HasSubstr("no config"));
  bad = m;
  bad["schemaVersion"] = 3;
  EXPECT_THAT(std::string(ParseImageManifest(bad.dump(), "", "m").status().message()),
              HasSubstr("schemaVersion is 3"));

  nlohmann::json idx = {
      {"schemaVersion", 2},
      {"manifests",
       {{{"mediaType", kMediaTypeOciManifest},
         {"digest", Digest('1')},
         {"size", 5},
         {"platform", {{"os", "linux"}, {"architecture", "arm64"}, {"variant", "v8"}}}}}}};
  auto index = ParseImageIndex(idx.dump(), kMediaTypeOciIndex, "i");
  ASSERT_TRUE(index.ok()) << index.status();
  ASSERT_EQ(index->manifests.size(), 1u);
  EXPECT_EQ(index->manifests[0].platform->String(), "linux/arm64/v8");
  idx["manifests"][0]["platform"] = {{"os", "linux"}};
  EXPECT_THAT(std::string(ParseImageIndex(idx.dump(), "", "i").status().message()),
              HasSubstr("manifests[0].platform needs"));
}

TEST(DigestTest, ComputesAndVerifies) {
  EXPECT_EQ(ComputeDigest("sha256", "abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(ComputeDigest("sha512", "").substr(0, 20), "sha512:cf83e1357eefb");
  EXPECT_TRUE(VerifyDigest(ComputeDigest("sha256", "abc"), "abc", "x").ok());
  absl::Status bad = VerifyDigest(ComputeDigest("sha256", "abc"), "abd", "blob x");
  EXPECT_EQ(bad.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(bad.message()), HasSubstr("blob x: content digest is sha256:"));

  auto v = DigestVerifier::Create(ComputeDigest("sha512", "hello world"));
  ASSERT_TRUE(v.ok());
  v->Update("hello ");
  v->Update("world");
  EXPECT_TRUE(v->Finish("x").ok());
  EXPECT_EQ(v->bytes(), 11);
  auto w = DigestVerifier::Create(ComputeDigest("sha256", "hello world"));
  ASSERT_TRUE(w.ok());
  w->Update("hello");
  EXPECT_EQ(w->Finish("x").code(), absl::StatusCode::kDataLoss);
  EXPECT_FALSE(DigestVerifier::Create("md5:abc").ok());
}

}  // namespace
}  // namespace berth::image
