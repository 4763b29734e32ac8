// SPDX-License-Identifier: Apache-2.0
// One HTTP exchange over libcurl, with redirects followed by hand so that credentials never
// reach another origin, bounded buffering, streaming of 2xx bodies, and transport failures
// mapped to absl codes. Internal to the registry client.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace berth::image {

struct TlsOptions {
  bool skip_verify = false;
  std::vector<std::string> ca_files;  // empty: system CAs
  std::string client_cert, client_key;
};

struct HttpRequest {
  std::string method = "GET";
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;  // sent to every hop
  // Sent only to the origin (scheme, host, port) of `url`: Authorization and configured
  // registry headers; a redirect to another origin drops them.
  std::vector<std::pair<std::string, std::string>> origin_headers;
  std::string body;  // for POST
  TlsOptions tls;
  std::chrono::milliseconds connect_timeout{30000};
  // The transfer fails (DEADLINE_EXCEEDED) when no byte arrives for this long.
  std::chrono::seconds stall_timeout{60};
  // Buffered bodies (no sink, or a non-2xx answer) longer than this stop the transfer;
  // HttpResponse::truncated says so.
  size_t max_body = 1 << 20;
  int max_redirects = 10;
  // When set, a 2xx body goes here chunk by chunk instead of into HttpResponse::body. An error
  // it returns aborts the transfer and is returned as is.
  std::function<absl::Status(std::string_view)> sink;
};

struct HttpResponse {
  long status = 0;
  std::multimap<std::string, std::string> headers;  // final response; names lowercased
  std::string body;
  bool truncated = false;  // body exceeded max_body
  std::string url;         // after redirects
  int64_t delivered = 0;   // bytes given to the sink

  // The first value of a header (name lowercase), or "".
  std::string Header(std::string_view name) const;
  std::vector<std::string> Headers(std::string_view name) const;
};

// "scheme://host[:port]" of an absolute URL, lowercased, default ports made explicit.
std::string OriginOf(std::string_view url);

// Pools libcurl easy handles (each keeps its connections alive) for concurrent transfers.
// Aborts every transfer in flight and every later one with CANCELLED (for daemon shutdown:
// a pull must not hold berthd up until its stall timeout).
void CancelAllTransfers();

class HttpClient {
 public:
  HttpClient();
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Transport failures: UNAVAILABLE (connection refused, DNS, TLS, connection reset) or
  // DEADLINE_EXCEEDED (stalled); the message names the host. Any HTTP status is returned as
  // a response.
  [[nodiscard]] absl::StatusOr<HttpResponse> Do(const HttpRequest& request);

  // Percent-encodes a query parameter value.
  static std::string Escape(std::string_view s);

 private:
  void* Acquire();
  void Release(void* handle);

  std::mutex mu_;
  std::vector<void*> idle_;
};

}  // namespace berth::image
