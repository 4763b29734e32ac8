// SPDX-License-Identifier: Apache-2.0
// The HTTP/1.1 part of the streaming server: a listener on a thread of its own, one thread
// per connection, and just what the streaming protocols need of HTTP — the request head
// (line and headers, no body beyond Content-Length: 0), plain responses, and handing the
// socket over after an upgrade.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "berth/unique_fd.hpp"

namespace berth::cri::streaming {

struct HttpRequest {
  std::string method, target, version;
  std::vector<std::pair<std::string, std::string>> headers;  // names as sent

  // The first value of a header (case-insensitive name); "" when absent.
  [[nodiscard]] std::string Header(std::string_view name) const;
  // Every value of a header line by line, in order.
  [[nodiscard]] std::vector<std::string> Headers(std::string_view name) const;
};

// Reads a request head (at most `limit` bytes, within `timeout`) from a blocking socket.
// Bytes read past the head (a client that did not wait for the 101) land in *rest.
// INVALID_ARGUMENT for a malformed head, RESOURCE_EXHAUSTED when too long,
// DEADLINE_EXCEEDED, or UNAVAILABLE when the peer closed.
[[nodiscard]] absl::StatusOr<HttpRequest> ReadRequest(int fd, size_t limit,
                                                      absl::Duration timeout, std::string* rest);

// "HTTP/1.1 <code> <reason>\r\n" + headers + Content-Length (when `body` is not empty or
// code >= 200 and no Connection: Upgrade) + "\r\n" + body.
[[nodiscard]] std::string HttpResponse(int code,
                                       const std::vector<std::pair<std::string, std::string>>& headers,
                                       const std::string& body = "");

// Writes all of `data`; false when the peer is gone.
bool WriteAll(int fd, std::string_view data);

// Accepts connections on `address:port` (port 0: any free one) and runs `handle` for each on
// a thread of its own; the server closes the socket when `handle` returns. Stop() closes the
// listener, shuts the open connections down (their reads return) and waits for every
// handler to return.
class HttpServer {
 public:
  using Handler = std::function<void(int conn)>;
  HttpServer() = default;
  ~HttpServer() { Stop(); }
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  [[nodiscard]] absl::Status Start(const std::string& address, int port, Handler handle);
  void Stop();
  // The port actually bound.
  int port() const { return port_; }
  const std::string& address() const { return address_; }

 private:
  void AcceptLoop();

  Handler handle_;
  sdk::UniqueFd listener_;
  std::string address_;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread acceptor_;
  std::mutex mu_;
  std::condition_variable done_;
  std::set<int> open_;  // connection fds, for Stop
  int running_ = 0;     // handlers running
};

}  // namespace berth::cri::streaming
