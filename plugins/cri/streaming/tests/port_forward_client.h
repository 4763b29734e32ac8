// SPDX-License-Identifier: Apache-2.0
// A port-forward client for tests, as client-go's portforward package drives the protocol
// (kubernetes-streaming.md §7.2): upgrade with portforward.k8s.io, then per request an error
// stream (half-closed at once) and a data stream carrying port and requestid. Built on the
// independent SPDY test client of spdy_test_util.h. Shared by the unit tests of the streaming
// server and the end-to-end pod tests.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "berth/unique_fd.hpp"
#include "plugins/cri/streaming/tests/spdy_test_util.h"

namespace berth::cri::spdy::testing {

// "http://127.0.0.1:1234/portforward/TOKEN" -> host "127.0.0.1", port 1234, path
// "/portforward/TOKEN". IPv4 hosts only.
struct ParsedUrl {
  std::string host;
  int port = 0;
  std::string path;
};
inline std::optional<ParsedUrl> ParseHttpUrl(const std::string& url) {
  std::string kScheme = "http://";
  if (url.rfind("https://", 0) == 0) kScheme = "https://";
  if (url.rfind(kScheme, 0) != 0) return std::nullopt;
  const size_t slash = url.find('/', kScheme.size());
  if (slash == std::string::npos) return std::nullopt;
  const std::string hostport = url.substr(kScheme.size(), slash - kScheme.size());
  const size_t colon = hostport.rfind(':');
  if (colon == std::string::npos) return std::nullopt;
  ParsedUrl out;
  out.host = hostport.substr(0, colon);
  if (!absl::SimpleAtoi(hostport.substr(colon + 1), &out.port)) return std::nullopt;
  out.path = url.substr(slash);
  return out;
}

class PortForwardClient {
 public:
  // Connects to the URL's host and port; false when nothing answers.
  bool Connect(const std::string& url) {
    std::optional<ParsedUrl> u = ParseHttpUrl(url);
    if (!u.has_value()) return false;
    url_ = *u;
    fd_.Reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(u->port));
    if (::inet_pton(AF_INET, u->host.c_str(), &a.sin_addr) != 1) return false;
    return ::connect(fd_.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
  }

  // Uses an already connected socket (e.g. the plain end of a TLS relay) for `url`.
  bool Adopt(sdk::UniqueFd fd, const std::string& url) {
    std::optional<ParsedUrl> u = ParseHttpUrl(url);
    if (!u.has_value()) return false;
    url_ = *u;
    fd_ = std::move(fd);
    return fd_.valid();
  }

  // Sends the upgrade request and returns the response head (status line and headers).
  // `method` POST as client-go; `protocol` the X-Stream-Protocol-Version offered.
  std::string Upgrade(const std::string& method = "POST",
                      const std::string& protocol = "portforward.k8s.io") {
    std::string req =
        absl::StrCat(method, " ", url_.path, " HTTP/1.1\r\nHost: ", url_.host, ":", url_.port,
                     "\r\nUser-Agent: berth-test\r\nContent-Length: 0\r\n"
                     "Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\n");
    if (!protocol.empty()) absl::StrAppend(&req, "X-Stream-Protocol-Version: ", protocol, "\r\n");
    req += "\r\n";
    if (!Write(req)) return "";
    std::string head;
    char c;
    // Byte by byte: nothing past the head may be consumed (it would be SPDY).
    while (head.find("\r\n\r\n") == std::string::npos) {
      if (!WaitReadable(std::chrono::seconds(10))) return head;
      if (::read(fd_.get(), &c, 1) != 1) return head;
      head.push_back(c);
    }
    return head;
  }

  // Opens the stream pair of one forwarded connection, as client-go does: the error stream
  // (then its FIN), then the data stream. Returns the data stream's ID; the error stream's is
  // that minus 2.
  uint32_t OpenPair(int port, int request_id) {
    const uint32_t error_id = next_id_;
    const uint32_t data_id = next_id_ + 2;
    next_id_ += 4;
    const std::string p = std::to_string(port), r = std::to_string(request_id);
    Write(client_.SynStream(error_id, {{"port", p}, {"requestid", r}, {"streamtype", "error"}}));
    Write(client_.Fin(error_id));
    Write(client_.SynStream(data_id, {{"streamtype", "data"}, {"port", p}, {"requestid", r}}));
    return data_id;
  }

  // Opens one stream of the given streamtype; its ID.
  uint32_t OpenStream(const std::string& type, int port, int request_id) {
    const uint32_t id = next_id_;
    next_id_ += 2;
    Write(client_.SynStream(id, {{"streamtype", type},
                                 {"port", std::to_string(port)},
                                 {"requestid", std::to_string(request_id)}}));
    return id;
  }

  // Opens an exec/attach stream (only a streamtype header, as client-go's remotecommand
  // package does); its ID.
  uint32_t OpenTyped(const std::string& type) {
    const uint32_t id = next_id_;
    next_id_ += 2;
    Write(client_.SynStream(id, {{"streamtype", type}}));
    return id;
  }

  bool Send(uint32_t stream, absl::string_view data) { return Write(client_.Data(stream, data)); }
  bool Fin(uint32_t stream) { return Write(client_.Fin(stream)); }
  bool Rst(uint32_t stream) { return Write(client_.Rst(stream)); }
  bool Ping(uint32_t id) { return Write(client_.Ping(id)); }
  bool GoAway() { return Write(client_.GoAway(0)); }

  // What arrived on a stream so far.
  struct StreamState {
    bool replied = false, fin = false, reset = false;
    std::string data;
  };
  const StreamState& stream(uint32_t id) { return streams_[id]; }
  bool goaway() const { return goaway_; }
  bool eof() const { return eof_; }
  const std::vector<Frame>& frames() const { return frames_; }

  // Reads frames until `done()` holds, the connection ends or `timeout` passes.
  template <typename Pred>
  bool ReadUntil(Pred done, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done()) {
      if (eof_) return false;
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0 || !WaitReadable(left)) return false;
      char buffer[16384];
      const ssize_t n = ::read(fd_.get(), buffer, sizeof(buffer));
      if (n <= 0) {
        eof_ = true;
        continue;
      }
      for (Frame& f : client_.Read(absl::string_view(buffer, static_cast<size_t>(n)))) {
        if (auto* d = std::get_if<DataFrame>(&f)) {
          StreamState& s = streams_[d->stream_id];
          s.data += d->data;
          if (d->flags & kFlagFin) s.fin = true;
        } else if (auto* r = std::get_if<SynReplyFrame>(&f)) {
          streams_[r->stream_id].replied = true;
        } else if (auto* rst = std::get_if<RstStreamFrame>(&f)) {
          streams_[rst->stream_id].reset = true;
        } else if (std::holds_alternative<GoAwayFrame>(f)) {
          goaway_ = true;
        }
        frames_.push_back(std::move(f));
      }
    }
    return true;
  }

  int fd() const { return fd_.get(); }

 private:
  bool Write(absl::string_view bytes) {
    while (!bytes.empty()) {
      const ssize_t n = ::send(fd_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      bytes.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }
  bool WaitReadable(std::chrono::milliseconds timeout) {
    pollfd p{fd_.get(), POLLIN, 0};
    return ::poll(&p, 1, static_cast<int>(timeout.count())) > 0;
  }

  ParsedUrl url_;
  sdk::UniqueFd fd_;
  TestClient client_;
  uint32_t next_id_ = 1;
  std::map<uint32_t, StreamState> streams_;
  std::vector<Frame> frames_;
  bool goaway_ = false, eof_ = false;
};

}  // namespace berth::cri::spdy::testing
