// SPDX-License-Identifier: Apache-2.0
// A WebSocket client for tests of the streaming server (kubernetes-streaming.md §9), written
// from RFC 6455 without the server's code: its own handshake (with the Sec-WebSocket-Accept
// check), masked frames, and a reader that joins fragments, answers Pings and Close, and
// sorts data messages by channel in the negotiated encoding (binary, base64, or the raw byte
// stream of SPDY/3.1+portforward.k8s.io). Shared by the unit tests and the end-to-end tests.
//
//   WebSocketClient c;
//   ASSERT_TRUE(c.Connect(url));                          // http://127.0.0.1:PORT/exec/TOKEN
//   ASSERT_THAT(c.Handshake("v5.channel.k8s.io"), StartsWith("HTTP/1.1 101"));
//   c.Send(0, "echo hi\n");                               // stdin
//   c.SendStreamClose(0);                                 // v5: end of stdin
//   c.ReadUntil([&] { return c.closed(); });              // the server's Close
//   c.channel(1).data;  c.channel(3).data;  c.close_code();
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "berth/unique_fd.hpp"

namespace berth::cri::websocket::testing {

inline constexpr char kTunnelProtocol[] = "SPDY/3.1+portforward.k8s.io";

// base64(SHA-1(key + GUID)), computed here independently of the server.
inline std::string ExpectedAccept(absl::string_view key) {
  const std::string input = absl::StrCat(key, "258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(input.data(), input.size(), digest, &len, EVP_sha1(), nullptr) != 1) return "";
  return absl::Base64Escape(absl::string_view(reinterpret_cast<const char*>(digest), len));
}

class WebSocketClient {
 public:
  // Frame opcodes (RFC 6455 §5.2).
  static constexpr uint8_t kText = 0x1, kBinary = 0x2, kClose = 0x8, kPing = 0x9, kPong = 0xA;

  struct Channel {
    std::string data;                   // every message's data, joined
    std::vector<std::string> messages;  // one entry per message (the first holds a port prefix)
  };

  WebSocketClient() : rng_(std::random_device{}()) {
    std::string raw(16, '\0');
    for (char& c : raw) c = static_cast<char>(rng_());
    key_ = absl::Base64Escape(raw);
  }

  // Connects to the URL's host and port ("http://IPv4:PORT/path?query"); false when nothing
  // answers.
  bool Connect(const std::string& url) {
    const std::string scheme = "http://";
    if (url.rfind(scheme, 0) != 0) return false;
    const size_t slash = url.find('/', scheme.size());
    if (slash == std::string::npos) return false;
    const std::string hostport = url.substr(scheme.size(), slash - scheme.size());
    const size_t colon = hostport.rfind(':');
    int port = 0;
    if (colon == std::string::npos || !absl::SimpleAtoi(hostport.substr(colon + 1), &port)) {
      return false;
    }
    host_ = hostport;
    path_ = url.substr(slash);
    fd_.Reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    if (::inet_pton(AF_INET, hostport.substr(0, colon).c_str(), &a.sin_addr) != 1) return false;
    return ::connect(fd_.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
  }

  // The Sec-WebSocket-Key to send (default: 16 random bytes in base64).
  void set_key(std::string key) { key_ = std::move(key); }

  // Sends the upgrade request offering `protocols` (a Sec-WebSocket-Protocol value, "" for
  // none) and reads the response head. Returns its status line ("HTTP/1.1 101 Switching
  // Protocols"), or "" when the connection ended first. `extra` lines end in "\r\n".
  std::string Handshake(const std::string& protocols = "", const std::string& method = "GET",
                        const std::string& extra = "") {
    std::string req = absl::StrCat(method, " ", path_, " HTTP/1.1\r\nHost: ", host_,
                                   "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                   "Sec-WebSocket-Key: ",
                                   key_, "\r\nSec-WebSocket-Version: 13\r\n");
    if (!protocols.empty()) absl::StrAppend(&req, "Sec-WebSocket-Protocol: ", protocols, "\r\n");
    absl::StrAppend(&req, extra, "\r\n");
    if (!WriteRaw(req)) return "";
    head_.clear();
    char c;
    // Byte by byte: frames after the head are the reader's.
    while (head_.find("\r\n\r\n") == std::string::npos) {
      if (!WaitReadable(std::chrono::seconds(10))) break;
      if (::read(fd_.get(), &c, 1) != 1) break;
      head_.push_back(c);
    }
    if (head_.find("\r\n\r\n") == std::string::npos) return "";
    protocol_ = ResponseHeader("Sec-WebSocket-Protocol");
    base64_ = absl::StrContains(protocol_, "base64");
    tunnel_ = protocol_ == kTunnelProtocol;
    // The body of an error response (Content-Length) is read too, for the tests' messages.
    if (!absl::StartsWith(head_, "HTTP/1.1 101")) {
      size_t length = 0;
      if (absl::SimpleAtoi(ResponseHeader("Content-Length"), &length)) {
        while (body_.size() < length && WaitReadable(std::chrono::seconds(5)) &&
               ::read(fd_.get(), &c, 1) == 1) {
          body_.push_back(c);
        }
      }
    }
    return head_.substr(0, head_.find("\r\n"));
  }

  const std::string& response_head() const { return head_; }
  const std::string& response_body() const { return body_; }
  // A header of the response (case-insensitive name); "" when absent.
  std::string ResponseHeader(absl::string_view name) const {
    size_t pos = head_.find("\r\n");
    while (pos != std::string::npos && pos + 2 < head_.size()) {
      const size_t end = head_.find("\r\n", pos + 2);
      const std::string line = head_.substr(pos + 2, end - pos - 2);
      const size_t colon = line.find(':');
      if (colon != std::string::npos && absl::EqualsIgnoreCase(line.substr(0, colon), name)) {
        return std::string(absl::StripAsciiWhitespace(line.substr(colon + 1)));
      }
      pos = end;
    }
    return "";
  }
  // Sec-WebSocket-Accept is right for the key sent.
  bool accept_ok() const { return ResponseHeader("Sec-WebSocket-Accept") == ExpectedAccept(key_); }
  // The negotiated sub-protocol ("" when none).
  const std::string& protocol() const { return protocol_; }

  // One message for `channel` in the negotiated encoding: binary frame with the channel byte,
  // or (base64 protocols) text frame with the channel digit and base64 data.
  bool Send(uint8_t channel, absl::string_view data) {
    if (base64_) {
      return SendFrame(kText, absl::StrCat(std::string(1, static_cast<char>('0' + channel)),
                                           absl::Base64Escape(data)));
    }
    std::string payload(1, static_cast<char>(channel));
    payload.append(data.data(), data.size());
    return SendFrame(kBinary, payload);
  }
  // v5.channel.k8s.io: the CLOSE signal for a channel (FF <channel>); 0 is the end of stdin.
  bool SendStreamClose(uint8_t channel) {
    return SendFrame(kBinary, std::string{static_cast<char>(0xFF), static_cast<char>(channel)});
  }
  // SPDY/3.1+portforward.k8s.io: bytes of the SPDY stream in one binary message.
  bool SendStream(absl::string_view bytes) { return SendFrame(kBinary, bytes); }
  bool Ping(absl::string_view payload = "") { return SendFrame(kPing, payload); }
  // Close with a code (and reason); std::nullopt sends an empty Close.
  bool Close(std::optional<uint16_t> code = 1000, absl::string_view reason = "") {
    close_sent_ = true;
    std::string payload;
    if (code.has_value()) {
      payload = {static_cast<char>(*code >> 8), static_cast<char>(*code & 0xFF)};
      payload.append(reason.data(), reason.size());
    }
    return SendFrame(kClose, payload);
  }

  // One frame as given: `masked` false makes a frame that a server must refuse.
  bool SendFrame(uint8_t opcode, absl::string_view payload, bool fin = true, bool masked = true) {
    return WriteRaw(EncodeFrame(opcode, payload, fin, masked));
  }
  std::string EncodeFrame(uint8_t opcode, absl::string_view payload, bool fin = true,
                          bool masked = true) {
    std::string out;
    out.push_back(static_cast<char>((fin ? 0x80 : 0) | opcode));
    const char m = masked ? static_cast<char>(0x80) : 0;
    if (payload.size() <= 125) {
      out.push_back(static_cast<char>(m | static_cast<char>(payload.size())));
    } else if (payload.size() <= 0xFFFF) {
      out.push_back(static_cast<char>(m | 126));
      out.push_back(static_cast<char>(payload.size() >> 8));
      out.push_back(static_cast<char>(payload.size() & 0xFF));
    } else {
      out.push_back(static_cast<char>(m | 127));
      for (int shift = 56; shift >= 0; shift -= 8) {
        out.push_back(static_cast<char>((uint64_t{payload.size()} >> shift) & 0xFF));
      }
    }
    if (!masked) {
      out.append(payload.data(), payload.size());
      return out;
    }
    char key[4];
    for (char& k : key) k = static_cast<char>(rng_());
    out.append(key, 4);
    for (size_t i = 0; i < payload.size(); ++i) out.push_back(payload[i] ^ key[i % 4]);
    return out;
  }
  bool WriteRaw(absl::string_view bytes) {
    while (!bytes.empty()) {
      const ssize_t n = ::send(fd_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      bytes.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // What arrived so far.
  const Channel& channel(uint8_t n) { return channels_[n]; }
  // Every data message in order: (channel, data); for the tunnel protocol channel is 0.
  const std::vector<std::pair<uint8_t, std::string>>& messages() const { return messages_; }
  // SPDY/3.1+portforward.k8s.io: the server's byte stream, joined.
  const std::string& stream_bytes() const { return stream_; }
  const std::vector<std::string>& pongs() const { return pongs_; }
  // The server's Close: closed() once one arrived; its code (none for an empty Close).
  bool closed() const { return closed_; }
  std::optional<uint16_t> close_code() const { return close_code_; }
  const std::string& close_reason() const { return close_reason_; }
  bool eof() const { return eof_; }
  // A frame from the server broke RFC 6455 (masked, reserved bits, bad control frame).
  const std::string& violation() const { return violation_; }

  // Reads until `done()` holds, the connection ends or `timeout` passes; done()'s value.
  template <typename Pred>
  bool ReadUntil(Pred done, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done()) {
      if (eof_) return done();
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0 || !WaitReadable(left)) return done();
      char buffer[65536];
      const ssize_t n = ::read(fd_.get(), buffer, sizeof(buffer));
      if (n <= 0) {
        eof_ = true;
        continue;
      }
      buffer_.append(buffer, static_cast<size_t>(n));
      ParseFrames();
    }
    return true;
  }

  int fd() const { return fd_.get(); }
  // Closes the TCP connection without a Close frame (a client that vanishes).
  void Drop() { fd_.Reset(); }

 private:
  void ParseFrames() {
    for (;;) {
      if (buffer_.size() < 2) return;
      const auto* b = reinterpret_cast<const uint8_t*>(buffer_.data());
      const bool fin = (b[0] & 0x80) != 0;
      const uint8_t opcode = b[0] & 0x0F;
      if ((b[0] & 0x70) != 0) violation_ = "reserved bits";
      if ((b[1] & 0x80) != 0) violation_ = "masked server frame";
      uint64_t len = b[1] & 0x7F;
      size_t header = 2;
      if (len == 126) {
        if (buffer_.size() < 4) return;
        len = (uint64_t{b[2]} << 8) | b[3];
        header = 4;
      } else if (len == 127) {
        if (buffer_.size() < 10) return;
        len = 0;
        for (int i = 0; i < 8; ++i) len = (len << 8) | b[2 + i];
        header = 10;
      }
      if ((b[1] & 0x80) != 0) header += 4;
      if (buffer_.size() < header + len) return;
      std::string payload = buffer_.substr(header, static_cast<size_t>(len));
      buffer_.erase(0, header + static_cast<size_t>(len));
      if (opcode >= 0x8) {
        if (!fin || len > 125) violation_ = "bad control frame";
        OnControl(opcode, std::move(payload));
        continue;
      }
      if (opcode != 0) fragments_.clear();
      fragments_ += payload;
      if (!fin) continue;
      OnMessage(std::move(fragments_));
      fragments_.clear();
    }
  }

  void OnControl(uint8_t opcode, std::string payload) {
    if (opcode == kPing) {
      (void)SendFrame(kPong, payload);
    } else if (opcode == kPong) {
      pongs_.push_back(std::move(payload));
    } else if (opcode == kClose) {
      closed_ = true;
      if (payload.size() >= 2) {
        close_code_ = static_cast<uint16_t>((static_cast<uint8_t>(payload[0]) << 8) |
                                            static_cast<uint8_t>(payload[1]));
        close_reason_ = payload.substr(2);
      }
      if (!close_sent_) {  // answer with the same code, as RFC 6455 §5.5.1 suggests
        close_sent_ = true;
        (void)SendFrame(kClose, payload.substr(0, 2));
      }
    }
  }

  void OnMessage(std::string payload) {
    if (tunnel_) {
      stream_ += payload;
      messages_.emplace_back(0, std::move(payload));
      return;
    }
    if (payload.empty()) return;
    uint8_t ch = static_cast<uint8_t>(payload[0]);
    std::string data = payload.substr(1);
    if (base64_) {
      ch = static_cast<uint8_t>(ch - '0');
      std::string decoded;
      if (!absl::Base64Unescape(data, &decoded)) violation_ = "bad base64 from the server";
      data = std::move(decoded);
    }
    Channel& c = channels_[ch];
    c.data += data;
    c.messages.push_back(data);
    messages_.emplace_back(ch, std::move(data));
  }

  bool WaitReadable(std::chrono::milliseconds timeout) {
    pollfd p{fd_.get(), POLLIN, 0};
    return ::poll(&p, 1, static_cast<int>(timeout.count())) > 0;
  }

  std::mt19937 rng_;
  std::string key_;
  std::string host_, path_;
  sdk::UniqueFd fd_;
  std::string head_, body_;
  std::string protocol_;
  bool base64_ = false, tunnel_ = false;
  std::string buffer_, fragments_, stream_;
  std::map<uint8_t, Channel> channels_;
  std::vector<std::pair<uint8_t, std::string>> messages_;
  std::vector<std::string> pongs_;
  bool closed_ = false, close_sent_ = false, eof_ = false;
  std::optional<uint16_t> close_code_;
  std::string close_reason_, violation_;
};

}  // namespace berth::cri::websocket::testing
