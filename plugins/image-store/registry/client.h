// SPDX-License-Identifier: Apache-2.0
// The OCI distribution client of the image store: resolves a reference to the manifest for
// this platform and streams blobs, over the endpoints hosts.toml configures (mirrors first),
// with anonymous, basic and bearer-token authentication.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "plugins/image-store/registry/hosts.h"
#include "plugins/image-store/registry/manifest.h"
#include "plugins/image-store/registry/reference.h"

namespace berth::image {

// Registry credentials of one pull (the CRI AuthConfig). All empty: anonymous.
struct Credentials {
  std::string username, password;
  std::string auth;            // base64("user:password"), used when username is empty
  std::string identity_token;  // an OAuth2 refresh token for the bearer token service
  std::string registry_token;  // a bearer token sent as is

  bool empty() const {
    return username.empty() && password.empty() && auth.empty() && identity_token.empty() &&
           registry_token.empty();
  }
};

// What a reference resolves to for this platform.
struct Resolved {
  std::string manifest_digest;  // of the platform's image manifest
  std::string media_type;       // of that manifest
  std::string manifest;         // its bytes, verified against manifest_digest
  std::string index_digest;     // when the reference named an index / manifest list
  std::string index_media_type;
  std::string index;  // its bytes, verified against index_digest
  Descriptor config;
  std::vector<Descriptor> layers;
  std::map<std::string, std::string> annotations;  // of the manifest
  Platform platform;  // of the chosen index entry (empty without an index)
  std::string host;   // the endpoint that served the manifest ("127.0.0.1:5000")
};

class RegistryClient {
 public:
  struct Options {
    std::string hosts_dir = "/etc/berth/certs.d";
    // A blob or manifest transfer fails with DEADLINE_EXCEEDED when no byte arrives for this
    // long.
    std::chrono::seconds progress_timeout{60};
    // Connect timeout when hosts.toml gives no dial_timeout.
    std::chrono::milliseconds connect_timeout{30000};
    std::string platform_os = HostPlatform().os;
    std::string platform_arch = HostPlatform().architecture;
    std::string platform_variant = HostPlatform().variant;
  };

  explicit RegistryClient(Options options);
  ~RegistryClient();
  RegistryClient(const RegistryClient&) = delete;
  RegistryClient& operator=(const RegistryClient&) = delete;

  // Fetches the manifest the reference names (by tag: from hosts with the resolve capability;
  // by digest: from hosts with pull) and, for an index, the manifest for this platform. Digests
  // are verified (DATA_LOSS on mismatch). NOT_FOUND names the reference; PERMISSION_DENIED or
  // UNAUTHENTICATED name the registry; UNAVAILABLE names the hosts tried.
  [[nodiscard]] absl::StatusOr<Resolved> Resolve(const Reference& ref, const Credentials& creds);

  // Streams a blob to `sink` chunk by chunk (never buffering it), calling progress(done,
  // total) as bytes arrive. Redirects to storage backends are followed without the
  // Authorization header. A failing mirror falls through to the next host only when nothing
  // reached the sink yet. DATA_LOSS when the size differs from the descriptor's; the digest is
  // the caller's to check (or use FetchBlobVerified).
  [[nodiscard]] absl::Status FetchBlob(
      const Reference& ref, const Descriptor& desc, const Credentials& creds,
      const std::function<absl::Status(std::string_view chunk)>& sink,
      const std::function<void(int64_t done, int64_t total)>& progress);

  // FetchBlob that also verifies the digest while streaming: DATA_LOSS after the last chunk
  // when it does not match (the sink has then seen bad data and must discard it).
  [[nodiscard]] absl::Status FetchBlobVerified(
      const Reference& ref, const Descriptor& desc, const Credentials& creds,
      const std::function<absl::Status(std::string_view chunk)>& sink,
      const std::function<void(int64_t done, int64_t total)>& progress);

  const Options& options() const { return options_; }

 private:
  class Impl;
  Options options_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace berth::image
