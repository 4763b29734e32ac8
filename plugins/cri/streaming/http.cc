// SPDX-License-Identifier: Apache-2.0
#include "plugins/cri/streaming/http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace berth::cri::streaming {
namespace {

absl::Status Errno(int err, const std::string& what) {
  return absl::InternalError(absl::StrCat(what, ": ", std::strerror(err)));
}

const char* Reason(int code) {
  switch (code) {
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
  }
  return "Unknown";
}

}  // namespace

std::string HttpRequest::Header(std::string_view name) const {
  for (const auto& [n, v] : headers) {
    if (absl::EqualsIgnoreCase(n, absl::string_view(name.data(), name.size()))) return v;
  }
  return "";
}

std::vector<std::string> HttpRequest::Headers(std::string_view name) const {
  std::vector<std::string> out;
  for (const auto& [n, v] : headers) {
    if (absl::EqualsIgnoreCase(n, absl::string_view(name.data(), name.size()))) out.push_back(v);
  }
  return out;
}

absl::StatusOr<HttpRequest> ReadRequest(int fd, size_t limit, absl::Duration timeout,
                                        std::string* rest) {
  const absl::Time deadline = absl::Now() + timeout;
  std::string buf;
  size_t end = std::string::npos;
  while (end == std::string::npos) {
    if (buf.size() > limit) {
      return absl::ResourceExhaustedError(
          absl::StrCat("request head longer than ", limit, " bytes"));
    }
    absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return absl::DeadlineExceededError("request head timed out");
    pollfd p{fd, POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return Errno(errno, "poll");
    if (r == 0) continue;
    char chunk[4096];
    ssize_t n = ::read(fd, chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return absl::UnavailableError("the client closed the connection");
    buf.append(chunk, static_cast<size_t>(n));
    end = buf.find("\r\n\r\n");
  }
  *rest = buf.substr(end + 4);
  std::vector<std::string> lines = absl::StrSplit(buf.substr(0, end), "\r\n");
  HttpRequest req;
  std::vector<std::string> first = absl::StrSplit(lines[0], ' ');
  if (first.size() != 3 || !absl::StartsWith(first[2], "HTTP/1.")) {
    return absl::InvalidArgumentError("malformed request line");
  }
  req.method = first[0];
  req.target = first[1];
  req.version = first[2];
  for (size_t i = 1; i < lines.size(); ++i) {
    size_t colon = lines[i].find(':');
    if (colon == std::string::npos || colon == 0) {
      return absl::InvalidArgumentError("malformed header line");
    }
    req.headers.emplace_back(lines[i].substr(0, colon),
                             std::string(absl::StripAsciiWhitespace(lines[i].substr(colon + 1))));
  }
  // Streaming requests carry no body; a non-zero length is refused rather than guessed.
  std::string length = req.Header("Content-Length");
  uint64_t len = 0;
  if (!length.empty() && (!absl::SimpleAtoi(length, &len) || len > 0)) {
    return absl::InvalidArgumentError("a streaming request has no body");
  }
  return req;
}

std::string HttpResponse(int code, const std::vector<std::pair<std::string, std::string>>& headers,
                         const std::string& body) {
  std::string out = absl::StrCat("HTTP/1.1 ", code, " ", Reason(code), "\r\n");
  for (const auto& [n, v] : headers) absl::StrAppend(&out, n, ": ", v, "\r\n");
  if (code >= 200) absl::StrAppend(&out, "Content-Length: ", body.size(), "\r\n");
  absl::StrAppend(&out, "\r\n", body);
  return out;
}

bool WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

absl::Status HttpServer::Start(const std::string& address, int port, Handler handle) {
  handle_ = std::move(handle);
  const bool v6 = address.find(':') != std::string::npos;
  listener_.Reset(::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!listener_.valid()) return Errno(errno, "streaming server socket");
  int one = 1;
  ::setsockopt(listener_.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_storage addr{};
  socklen_t len = 0;
  if (v6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&addr);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(static_cast<uint16_t>(port));
    if (::inet_pton(AF_INET6, address.c_str(), &a->sin6_addr) != 1) {
      return absl::InvalidArgumentError("streaming address \"" + address + "\" is not an IP");
    }
    len = sizeof(*a);
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&addr);
    a->sin_family = AF_INET;
    a->sin_port = htons(static_cast<uint16_t>(port));
    if (::inet_pton(AF_INET, address.c_str(), &a->sin_addr) != 1) {
      return absl::InvalidArgumentError("streaming address \"" + address + "\" is not an IP");
    }
    len = sizeof(*a);
  }
  if (::bind(listener_.get(), reinterpret_cast<sockaddr*>(&addr), len) != 0) {
    return Errno(errno, absl::StrCat("bind the streaming server to ", address, ":", port));
  }
  if (::listen(listener_.get(), 128) != 0) return Errno(errno, "listen");
  if (::getsockname(listener_.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return Errno(errno, "getsockname");
  }
  port_ = v6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port)
             : ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
  address_ = address;
  acceptor_ = std::thread([this] { AcceptLoop(); });
  return absl::OkStatus();
}

void HttpServer::AcceptLoop() {
  while (!stopping_) {
    pollfd p{listener_.get(), POLLIN, 0};
    int r = ::poll(&p, 1, 200);
    if (r <= 0) continue;
    int fd = ::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) {
      ::close(fd);
      break;
    }
    open_.insert(fd);
    ++running_;
    std::thread([this, fd] {
      handle_(fd);
      std::lock_guard<std::mutex> l(mu_);
      open_.erase(fd);
      ::close(fd);  // after leaving open_: the number cannot be reused while listed
      --running_;
      done_.notify_all();
    }).detach();
  }
}

void HttpServer::Stop() {
  if (stopping_.exchange(true)) return;
  if (acceptor_.joinable()) acceptor_.join();
  std::unique_lock<std::mutex> lock(mu_);
  for (int fd : open_) ::shutdown(fd, SHUT_RDWR);  // wakes their reads
  done_.wait(lock, [this] { return running_ == 0; });
  listener_.Reset();
}

}  // namespace berth::cri::streaming
