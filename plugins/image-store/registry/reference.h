// SPDX-License-Identifier: Apache-2.0
// Image references ("busybox", "quay.io/org/app:v1", "localhost:5000/x@sha256:…") parsed
// and normalised the way Docker and containerd do.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace berth::image {

inline constexpr char kDockerHubDomain[] = "docker.io";
// The host that actually serves docker.io's registry API.
inline constexpr char kDockerHubRegistryHost[] = "registry-1.docker.io";
inline constexpr char kDefaultTag[] = "latest";

struct Reference {
  std::string domain;      // "docker.io", "quay.io", "localhost:5000", "[::1]:5000"
  std::string repository;  // "library/busybox"; never starts with the domain
  std::string tag;         // "latest" when neither tag nor digest was given; may be empty
  std::string digest;      // "sha256:<64 hex>" or empty

  // domain/repository: "docker.io/library/busybox".
  std::string Name() const;
  // Canonical form: "docker.io/library/busybox:latest", "quay.io/a/b@sha256:…" or
  // "quay.io/a/b:v1@sha256:…" when both were given.
  std::string String() const;
  // The tag or, when a digest was given, the digest: what goes after /manifests/.
  std::string ManifestReference() const { return digest.empty() ? tag : digest; }

  bool operator==(const Reference&) const = default;
};

// Parses and normalises a reference: Docker Hub names get the "docker.io" domain and, with a
// single path component, the "library/" prefix; "index.docker.io" becomes "docker.io"; a
// reference with neither tag nor digest gets the tag "latest". Errors are INVALID_ARGUMENT
// and name the reference and what is wrong with it.
[[nodiscard]] absl::StatusOr<Reference> ParseReference(std::string_view text);

// Checks "<algorithm>:<hex>": sha256 with 64 and sha512 with 128 lowercase hex digits.
// INVALID_ARGUMENT otherwise (UNIMPLEMENTED for a well-formed digest of another algorithm).
[[nodiscard]] absl::Status ValidateDigest(std::string_view digest);

}  // namespace berth::image
