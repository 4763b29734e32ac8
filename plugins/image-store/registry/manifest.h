// SPDX-License-Identifier: Apache-2.0
// OCI / Docker schema 2 manifests and indexes: media types, descriptors, parsing and
// validation, platform selection and content digests.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace berth::image {

inline constexpr char kMediaTypeOciIndex[] = "application/vnd.oci.image.index.v1+json";
inline constexpr char kMediaTypeOciManifest[] = "application/vnd.oci.image.manifest.v1+json";
inline constexpr char kMediaTypeOciConfig[] = "application/vnd.oci.image.config.v1+json";
inline constexpr char kMediaTypeDockerManifestList[] =
    "application/vnd.docker.distribution.manifest.list.v2+json";
inline constexpr char kMediaTypeDockerManifest[] =
    "application/vnd.docker.distribution.manifest.v2+json";
inline constexpr char kMediaTypeDockerConfig[] = "application/vnd.docker.container.image.v1+json";
inline constexpr char kMediaTypeDockerSchema1[] =
    "application/vnd.docker.distribution.manifest.v1+json";
inline constexpr char kMediaTypeDockerSchema1Signed[] =
    "application/vnd.docker.distribution.manifest.v1+prettyjws";

// Manifests bigger than this are refused (the limit containerd and the distribution spec
// use for what a registry must accept).
inline constexpr size_t kMaxManifestBytes = 4 << 20;

bool IsIndexMediaType(std::string_view media_type);
bool IsManifestMediaType(std::string_view media_type);

struct Platform {
  std::string os;            // "linux"
  std::string architecture;  // "amd64", "arm64", "arm"
  std::string variant;       // "", "v7", "v8"
  std::string os_version;

  // "linux/arm64/v8", "linux/amd64"
  std::string String() const;
  bool operator==(const Platform&) const = default;
};

// The platform this binary was built for (GOARCH-style names; arm64 has variant v8, 32-bit arm
// the __ARM_ARCH version).
Platform HostPlatform();

// containerd's normalisation: x86_64 -> amd64, aarch64 -> arm64 (variant v8 and "8" -> ""),
// armhf -> arm/v7, armel -> arm/v6, i386 -> 386, amd64 variant v1 -> ""; os lowercased.
Platform NormalizePlatform(Platform p);

struct Descriptor {
  std::string media_type;
  std::string digest;
  int64_t size = 0;
  std::map<std::string, std::string> annotations;
  std::vector<std::string> urls;
  std::optional<Platform> platform;  // index entries only
};

struct ImageManifest {
  std::string media_type;
  Descriptor config;
  std::vector<Descriptor> layers;
  std::map<std::string, std::string> annotations;
};

struct ImageIndex {
  std::string media_type;
  std::vector<Descriptor> manifests;
  std::map<std::string, std::string> annotations;
};

// The media type of manifest bytes: the document's mediaType, else the Content-Type the
// registry sent, else what the structure says (manifests[] -> index, config+layers ->
// manifest). Docker schema 1 is UNIMPLEMENTED; anything else unknown is INVALID_ARGUMENT.
// `what` names the content in errors ("manifest of docker.io/library/busybox:latest").
[[nodiscard]] absl::StatusOr<std::string> DetectManifestMediaType(std::string_view bytes,
                                                                  std::string_view content_type,
                                                                  std::string_view what);

// Parse and validate (schemaVersion 2, descriptors with valid digests and sizes).
[[nodiscard]] absl::StatusOr<ImageManifest> ParseImageManifest(std::string_view bytes,
                                                               std::string_view media_type,
                                                               std::string_view what);
[[nodiscard]] absl::StatusOr<ImageIndex> ParseImageIndex(std::string_view bytes,
                                                         std::string_view media_type,
                                                         std::string_view what);

// Picks the manifest for `want` from an index: same OS and architecture, and the best variant
// the platform can run (the exact one, else the highest lower one: arm/v7 runs v6 and v5,
// amd64/v3 runs v2 and plain amd64; arm64 and arm64/v8 are the same). Ties go to the first
// entry. NOT_FOUND listing the platforms on offer when none fits.
[[nodiscard]] absl::StatusOr<Descriptor> SelectPlatform(const std::vector<Descriptor>& manifests,
                                                        const Platform& want,
                                                        std::string_view what);

// "<algorithm>:<hex>" of data for "sha256" or "sha512".
std::string ComputeDigest(std::string_view algorithm, std::string_view data);
// DATA_LOSS when data does not hash to `digest`.
[[nodiscard]] absl::Status VerifyDigest(std::string_view digest, std::string_view data,
                                        std::string_view what);

// Incremental digest of a stream (sha256 or sha512), for verifying blobs as they arrive.
class DigestVerifier {
 public:
  // INVALID_ARGUMENT/UNIMPLEMENTED for a digest that cannot be verified.
  [[nodiscard]] static absl::StatusOr<DigestVerifier> Create(std::string_view digest);
  DigestVerifier(DigestVerifier&&) noexcept;
  DigestVerifier& operator=(DigestVerifier&&) noexcept;
  ~DigestVerifier();

  void Update(std::string_view chunk);
  // OK when everything fed so far hashes to the digest; DATA_LOSS naming `what` otherwise.
  [[nodiscard]] absl::Status Finish(std::string_view what);
  int64_t bytes() const { return bytes_; }

 private:
  DigestVerifier() = default;
  std::string digest_;
  void* ctx_ = nullptr;  // EVP_MD_CTX
  int64_t bytes_ = 0;
};

}  // namespace berth::image
