// SPDX-License-Identifier: Apache-2.0
// Registry host configuration: containerd's hosts.toml directory format
// (<hosts_dir>/<registry host>/hosts.toml, falling back to <hosts_dir>/_default/hosts.toml),
// turned into the ordered list of endpoints a pull tries. Files are read at every call, so an
// edit takes effect on the next pull without a restart.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace berth::image {

enum Capability : unsigned {
  kCapabilityPull = 1u << 0,     // may serve blobs and manifests by digest
  kCapabilityResolve = 1u << 1,  // trusted to map a tag to a digest
  kCapabilityPush = 1u << 2,
};
inline constexpr unsigned kAllCapabilities = kCapabilityPull | kCapabilityResolve | kCapabilityPush;

// One place to send registry API requests to.
struct Endpoint {
  std::string scheme = "https";  // "https" or "http"
  std::string host;              // "registry-1.docker.io", "127.0.0.1:5000", "[::1]:5000"
  std::string path = "/v2";      // API root without a trailing slash: "/v2", "/us/v2"
  unsigned capabilities = kAllCapabilities;
  bool skip_verify = false;
  std::vector<std::string> ca_files;  // absolute paths; empty: the system CAs
  // Client certificate and key paths; an empty key means the key is in the certificate file.
  std::vector<std::pair<std::string, std::string>> client_certs;
  // Extra request headers (name, value); a name listed with several values repeats.
  std::vector<std::pair<std::string, std::string>> headers;
  std::chrono::milliseconds dial_timeout{0};  // 0: the client's default
  // True for a [host."…"] entry (a mirror), false for the namespace's server. The pull's
  // registry credentials are only ever sent to the server.
  bool mirror = false;
  // The namespace (registry host of the image) to pass as ?ns= when this endpoint is not that
  // registry itself; empty otherwise.
  std::string ns;
  // Where the endpoint was configured ("/etc/berth/certs.d/docker.io/hosts.toml"), or empty
  // for the built-in default.
  std::string source;

  bool Has(Capability c) const { return (capabilities & c) != 0; }
  // "https://registry-1.docker.io/v2"
  std::string BaseUrl() const { return scheme + "://" + host + path; }
};

// True for "localhost", "127.0.0.1" and "[::1]" (with or without a port, and for
// "localhost"-style subdomains): hosts spoken to over plain HTTP unless configured otherwise.
bool IsLocalHost(std::string_view host);

// The endpoint used when nothing is configured for `registry_host`: https://<host>/v2
// (http for local hosts; registry-1.docker.io for docker.io).
Endpoint DefaultEndpoint(std::string_view registry_host);

// Endpoints for pulls from `registry_host` (e.g. "docker.io", "localhost:5000"), in the order
// to try them: the [host] mirrors in file order, then the server (the `server` key, or the
// registry itself). Reads the first existing directory of <hosts_dir>/<host>_<port>_,
// <hosts_dir>/<host:port> and <hosts_dir>/_default: its hosts.toml, or, without one, Docker's
// certificate files (*.crt CAs, *.cert/*.key client pairs) for the server. An empty or missing
// hosts_dir gives the default endpoint. Errors are FAILED_PRECONDITION naming the file and line.
[[nodiscard]] absl::StatusOr<std::vector<Endpoint>> ResolveHosts(std::string_view hosts_dir,
                                                                 std::string_view registry_host);

// Parses the text of one hosts.toml for `registry_host`. `file` names it in errors and is the
// base of relative certificate paths.
[[nodiscard]] absl::StatusOr<std::vector<Endpoint>> ParseHostsToml(std::string_view text,
                                                                   std::string_view file,
                                                                   std::string_view registry_host);

}  // namespace berth::image
