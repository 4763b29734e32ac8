// SPDX-License-Identifier: Apache-2.0
#include "plugins/cri/streaming/websocket.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace berth::cri::websocket {
namespace {

constexpr char kAcceptGuid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
constexpr size_t kMaxControlPayload = 125;

bool IsControl(Opcode op) { return static_cast<uint8_t>(op) >= 0x8; }

// Codes a peer may put in a Close frame (RFC 6455 §7.4; 1012-1014 registered since).
bool IsSendableCloseCode(uint16_t code) {
  if (code >= 3000 && code <= 4999) return true;
  if (code < 1000 || code > 1014) return false;
  return code != 1004 && code != 1005 && code != 1006;
}

std::string PercentDecode(absl::string_view in) {
  auto hex = [](char c) {
    return absl::ascii_isdigit(c) ? c - '0' : absl::ascii_tolower(c) - 'a' + 10;
  };
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '+') {
      out.push_back(' ');
    } else if (in[i] == '%' && i + 2 < in.size() && absl::ascii_isxdigit(in[i + 1]) &&
               absl::ascii_isxdigit(in[i + 2])) {
      out.push_back(static_cast<char>(hex(in[i + 1]) * 16 + hex(in[i + 2])));
      i += 2;
    } else {
      out.push_back(in[i]);
    }
  }
  return out;
}

}  // namespace

std::string EncodeFrame(Opcode opcode, absl::string_view payload, bool fin,
                        std::optional<uint32_t> mask_key) {
  std::string out;
  out.reserve(payload.size() + 14);
  out.push_back(static_cast<char>((fin ? 0x80 : 0x00) | static_cast<uint8_t>(opcode)));
  const uint8_t mask_bit = mask_key.has_value() ? 0x80 : 0x00;
  const uint64_t len = payload.size();
  if (len <= 125) {
    out.push_back(static_cast<char>(mask_bit | len));
  } else if (len <= 0xFFFF) {
    out.push_back(static_cast<char>(mask_bit | 126));
    out.push_back(static_cast<char>(len >> 8));
    out.push_back(static_cast<char>(len));
  } else {
    out.push_back(static_cast<char>(mask_bit | 127));
    for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<char>(len >> shift));
  }
  if (!mask_key.has_value()) {
    out.append(payload.data(), payload.size());
    return out;
  }
  const uint8_t key[4] = {static_cast<uint8_t>(*mask_key >> 24),
                          static_cast<uint8_t>(*mask_key >> 16),
                          static_cast<uint8_t>(*mask_key >> 8), static_cast<uint8_t>(*mask_key)};
  out.append(reinterpret_cast<const char*>(key), 4);
  for (size_t i = 0; i < payload.size(); ++i) {
    out.push_back(static_cast<char>(static_cast<uint8_t>(payload[i]) ^ key[i % 4]));
  }
  return out;
}

std::string ClosePayload(uint16_t code, absl::string_view reason) {
  std::string out;
  out.push_back(static_cast<char>(code >> 8));
  out.push_back(static_cast<char>(code));
  // Cut at a character boundary (our reasons are ASCII, but be safe with what we are given).
  size_t len = std::min(reason.size(), kMaxControlPayload - 2);
  while (len > 0 && len < reason.size() && (static_cast<uint8_t>(reason[len]) & 0xC0) == 0x80) {
    --len;
  }
  out.append(reason.data(), len);
  return out;
}

absl::StatusOr<CloseInfo> ParseClosePayload(absl::string_view payload) {
  CloseInfo info;
  if (payload.empty()) return info;
  if (payload.size() == 1) {
    return absl::InvalidArgumentError("close frame with a 1-byte payload");
  }
  const uint16_t code = static_cast<uint16_t>((static_cast<uint8_t>(payload[0]) << 8) |
                                              static_cast<uint8_t>(payload[1]));
  if (!IsSendableCloseCode(code)) {
    return absl::InvalidArgumentError(absl::StrCat("close frame with invalid code ", code));
  }
  info.code = code;
  info.reason = std::string(payload.substr(2));
  if (!IsValidUtf8(info.reason)) {
    return absl::DataLossError("close frame reason is not UTF-8");
  }
  return info;
}

uint16_t CloseCodeFor(const absl::Status& error) {
  switch (error.code()) {
    case absl::StatusCode::kResourceExhausted:
      return kCloseTooBig;
    case absl::StatusCode::kDataLoss:
      return kCloseInvalidPayload;
    default:
      return kCloseProtocolError;
  }
}

bool IsValidUtf8(absl::string_view text) {
  const auto* s = reinterpret_cast<const uint8_t*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    const uint8_t c = s[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;  // a continuation byte, an overlong lead (C0, C1) or past F4
    }
    if (i + len > n) return false;
    for (size_t k = 1; k < len; ++k) {
      if ((s[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += len;
  }
  return true;
}

void MessageReader::Append(absl::string_view bytes) {
  if (!error_.ok()) return;
  if (pos_ > 0) {
    buffer_.erase(0, pos_);
    pos_ = 0;
  }
  buffer_.append(bytes.data(), bytes.size());
}

absl::Status MessageReader::Fail(absl::Status error) {
  error_ = std::move(error);
  buffer_.clear();
  message_.clear();
  pos_ = 0;
  return error_;
}

absl::StatusOr<std::optional<Message>> MessageReader::Next() {
  if (!error_.ok()) return error_;
  for (;;) {
    const auto* b = reinterpret_cast<const uint8_t*>(buffer_.data()) + pos_;
    const size_t avail = buffer_.size() - pos_;
    if (avail < 2) return std::nullopt;
    const bool fin = (b[0] & 0x80) != 0;
    const uint8_t op = b[0] & 0x0F;
    const bool masked = (b[1] & 0x80) != 0;
    uint64_t len = b[1] & 0x7F;
    if ((b[0] & 0x70) != 0) {
      return Fail(absl::InvalidArgumentError("reserved bits set (no extension was negotiated)"));
    }
    if (op != 0x0 && op != 0x1 && op != 0x2 && op != 0x8 && op != 0x9 && op != 0xA) {
      return Fail(absl::InvalidArgumentError(absl::StrCat("unknown opcode ", op)));
    }
    const Opcode opcode = static_cast<Opcode>(op);
    if (masked != masked_) {
      return Fail(
          absl::InvalidArgumentError(masked_ ? "unmasked client frame" : "masked server frame"));
    }
    if (IsControl(opcode) && (!fin || len > kMaxControlPayload)) {
      return Fail(absl::InvalidArgumentError("control frame fragmented or longer than 125 bytes"));
    }
    size_t header = 2;
    if (len == 126) {
      if (avail < 4) return std::nullopt;
      len = (uint64_t{b[2]} << 8) | b[3];
      header = 4;
    } else if (len == 127) {
      if (avail < 10) return std::nullopt;
      len = 0;
      for (int k = 0; k < 8; ++k) len = (len << 8) | b[2 + k];
      header = 10;
      if ((len >> 63) != 0) {
        return Fail(absl::InvalidArgumentError("frame length with the most significant bit set"));
      }
    }
    if (!IsControl(opcode)) {
      if (opcode == Opcode::kContinuation && !in_message_) {
        return Fail(absl::InvalidArgumentError("continuation frame without a message"));
      }
      if (opcode != Opcode::kContinuation && in_message_) {
        return Fail(absl::InvalidArgumentError("new message inside a fragmented one"));
      }
      const uint64_t so_far = in_message_ ? message_.size() : 0;
      if (len > max_message_ || so_far + len > max_message_) {
        return Fail(absl::ResourceExhaustedError(absl::StrCat(
            "message of at least ", so_far + len, " bytes, over the limit of ", max_message_)));
      }
    }
    if (masked) header += 4;
    if (avail < header + len) return std::nullopt;
    const uint8_t* key = masked ? b + header - 4 : nullptr;
    std::string payload(reinterpret_cast<const char*>(b + header), static_cast<size_t>(len));
    if (key != nullptr) {
      for (size_t k = 0; k < payload.size(); ++k) {
        payload[k] = static_cast<char>(static_cast<uint8_t>(payload[k]) ^ key[k % 4]);
      }
    }
    pos_ += header + static_cast<size_t>(len);
    if (pos_ == buffer_.size()) {
      buffer_.clear();
      pos_ = 0;
    }

    if (IsControl(opcode)) {
      if (opcode == Opcode::kClose) {
        absl::StatusOr<CloseInfo> close = ParseClosePayload(payload);
        if (!close.ok()) return Fail(close.status());
      }
      return Message{opcode, std::move(payload)};
    }
    if (opcode != Opcode::kContinuation) {
      in_message_ = true;
      message_opcode_ = opcode;
      message_ = std::move(payload);
    } else {
      message_ += payload;
    }
    if (!fin) continue;
    in_message_ = false;
    Message m{message_opcode_, std::move(message_)};
    message_.clear();
    if (m.opcode == Opcode::kText && !IsValidUtf8(m.payload)) {
      return Fail(absl::DataLossError("text message is not UTF-8"));
    }
    return m;
  }
}

absl::StatusOr<std::string> AcceptKey(absl::string_view key) {
  const std::string input = absl::StrCat(key, kAcceptGuid);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_len = 0;
  if (EVP_Digest(input.data(), input.size(), digest, &digest_len, EVP_sha1(), nullptr) != 1 ||
      digest_len != 20) {
    return absl::InternalError(
        "SHA-1 for Sec-WebSocket-Accept failed in libcrypto (is SHA-1 disabled by policy?)");
  }
  return absl::Base64Escape(absl::string_view(reinterpret_cast<const char*>(digest), digest_len));
}

bool IsWebSocketUpgrade(const streaming::HttpRequest& req) {
  if (!absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(req.Header("Upgrade")), "websocket")) {
    return false;
  }
  for (absl::string_view token : absl::StrSplit(req.Header("Connection"), ',')) {
    if (absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(token), "upgrade")) return true;
  }
  return false;
}

Handshake CheckUpgrade(const streaming::HttpRequest& req,
                       absl::Span<const absl::string_view> server_protocols) {
  using streaming::HttpResponse;
  const std::vector<std::pair<std::string, std::string>> text = {
      {"Content-Type", "text/plain; charset=utf-8"}};
  Handshake h;
  if (req.method != "GET") {
    h.response = HttpResponse(405, text, "bad method");
    return h;
  }
  if (!IsWebSocketUpgrade(req)) {
    h.response = HttpResponse(400, text, "not websocket protocol");
    return h;
  }
  const std::string key(absl::StripAsciiWhitespace(req.Header("Sec-WebSocket-Key")));
  std::string raw_key;
  if (key.empty() || !absl::Base64Unescape(key, &raw_key) || raw_key.size() != 16) {
    h.response =
        HttpResponse(400, text, "bad Sec-WebSocket-Key: want the base64 of 16 random bytes");
    return h;
  }
  if (absl::StripAsciiWhitespace(req.Header("Sec-WebSocket-Version")) != "13") {
    std::vector<std::pair<std::string, std::string>> headers = text;
    headers.emplace_back("Sec-WebSocket-Version", "13");
    h.response = HttpResponse(400, headers, "missing or bad WebSocket Version");
    return h;
  }
  // x/net/websocket reads the first header line only, splits it on commas and trims.
  std::vector<std::string> offered;
  const std::vector<std::string> lines = req.Headers("Sec-WebSocket-Protocol");
  const absl::string_view first =
      lines.empty() ? absl::string_view() : absl::StripAsciiWhitespace(lines.front());
  if (first.empty()) {
    offered.emplace_back("");
  } else {
    for (absl::string_view p : absl::StrSplit(first, ',')) {
      offered.emplace_back(absl::StripAsciiWhitespace(p));
    }
  }
  std::optional<std::string> chosen;
  for (const std::string& p : offered) {
    if (std::find(server_protocols.begin(), server_protocols.end(), p) != server_protocols.end()) {
      chosen = p;
      break;
    }
  }
  if (!chosen.has_value()) {
    h.response = HttpResponse(403, {});  // as upstream: no body; kubectl falls back to SPDY
    return h;
  }
  absl::StatusOr<std::string> accept = AcceptKey(key);
  if (!accept.ok()) {
    h.response = HttpResponse(500, text, std::string(accept.status().message()) + "\n");
    return h;
  }
  std::vector<std::pair<std::string, std::string>> headers = {
      {"Upgrade", "websocket"}, {"Connection", "Upgrade"}, {"Sec-WebSocket-Accept", *accept}};
  if (!chosen->empty()) headers.emplace_back("Sec-WebSocket-Protocol", *chosen);
  h.ok = true;
  h.protocol = *chosen;
  h.response = HttpResponse(101, headers);
  return h;
}

ChannelProtocol ParseChannelProtocol(absl::string_view name) {
  ChannelProtocol p;
  p.base64 = name == kBase64ChannelProtocol || name == kV4Base64ChannelProtocol;
  p.stream_close = name == kV5ChannelProtocol;
  p.status =
      (name == kV4ChannelProtocol || name == kV4Base64ChannelProtocol || name == kV5ChannelProtocol)
          ? streaming::RemoteCommandProtocol::kV4
          : streaming::RemoteCommandProtocol::kV1;
  return p;
}

std::string EncodeChannelMessage(const ChannelProtocol& protocol, uint8_t channel,
                                 absl::string_view data) {
  std::string payload;
  if (protocol.base64) {
    payload.push_back(static_cast<char>('0' + channel));
    payload += absl::Base64Escape(data);
    return EncodeFrame(Opcode::kText, payload);
  }
  payload.reserve(data.size() + 1);
  payload.push_back(static_cast<char>(channel));
  payload.append(data.data(), data.size());
  return EncodeFrame(Opcode::kBinary, payload);
}

absl::StatusOr<ChannelMessage> DecodeChannelMessage(const ChannelProtocol& protocol,
                                                    absl::string_view payload) {
  if (payload.empty()) return absl::InvalidArgumentError("empty channel message");
  ChannelMessage m;
  m.channel = static_cast<uint8_t>(payload[0]);
  if (!protocol.base64) {
    m.data = std::string(payload.substr(1));
    return m;
  }
  m.channel = static_cast<uint8_t>(m.channel - '0');
  if (!absl::Base64Unescape(payload.substr(1), &m.data)) {
    return absl::InvalidArgumentError(
        absl::StrCat("channel ", m.channel, " message is not base64"));
  }
  return m;
}

absl::StatusOr<std::vector<uint16_t>> PortsFromQuery(const std::string& target) {
  const size_t q = target.find('?');
  std::vector<std::string> values;
  if (q != std::string::npos) {
    for (absl::string_view item : absl::StrSplit(absl::string_view(target).substr(q + 1), '&')) {
      const size_t eq = item.find('=');
      const std::string name = PercentDecode(item.substr(0, eq));
      if (name != "port") continue;
      values.push_back(eq == absl::string_view::npos ? "" : PercentDecode(item.substr(eq + 1)));
    }
  }
  if (values.empty()) return absl::InvalidArgumentError("query parameter \"port\" is required");
  std::vector<uint16_t> ports;
  for (const std::string& value : values) {
    if (value.empty()) {
      return absl::InvalidArgumentError("query parameter \"port\" cannot be empty");
    }
    for (absl::string_view p : absl::StrSplit(value, ',')) {
      uint32_t port = 0;
      if (!absl::SimpleAtoi(p, &port) || port > 65535) {
        return absl::InvalidArgumentError(
            absl::StrCat("unable to parse \"", value, "\" as a port: want 1-65535"));
      }
      if (port < 1) {
        return absl::InvalidArgumentError(absl::StrCat("port \"", value, "\" must be > 0"));
      }
      ports.push_back(static_cast<uint16_t>(port));
    }
  }
  return ports;
}

}  // namespace berth::cri::websocket

namespace berth::cri::streaming {
namespace {

using websocket::ChannelProtocol;
using websocket::EncodeChannelMessage;
using websocket::EncodeFrame;
using websocket::Message;
using websocket::Opcode;

// How long the end of a session waits for the client's last frames (its Close) before
// close(), so that unread input does not turn into a TCP RST that destroys our last frames.
constexpr absl::Duration kLingerAfterClose = absl::Seconds(1);
constexpr int kPollMs = 250;
// Client input held for a process or a port that has not taken it yet; past this the
// connection is not read until it drains.
constexpr size_t kMaxPendingInput = 1 << 20;

// The server side of an upgraded WebSocket: the frame reader, the writes (one at a time, from
// any thread), Ping/Pong and Close, the idle clock and a wake-up pipe for the read loop.
class Connection {
 public:
  Connection(int fd, const WebSocketSessionOptions& options)
      : fd_(fd), options_(options), reader_(options.max_message_bytes, /*masked=*/true) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) == 0) {
      wake_read_.Reset(fds[0]);
      wake_write_.Reset(fds[1]);
    }
    Touch();
  }

  using DataHandler = std::function<bool(Message&)>;

  // Writes one encoded frame; false once a Close went out or the socket broke.
  bool Send(const std::string& frame) {
    std::lock_guard<std::mutex> lock(write_mu_);
    if (close_sent_ || broken_) return false;
    return WriteLocked(frame);
  }

  // Sends Close (once; nothing is sent after it).
  void Close(uint16_t code, absl::string_view reason = "") {
    std::lock_guard<std::mutex> lock(write_mu_);
    if (close_sent_ || broken_) return;
    close_sent_ = true;
    (void)WriteLocked(EncodeFrame(Opcode::kClose, websocket::ClosePayload(code, reason)));
  }

  void Wake() {
    char c = 1;
    (void)!::write(wake_write_.get(), &c, 1);
  }

  // Handles bytes from the client: control frames here, data messages to `on_data` (which
  // returns false to end the session). False once the client is gone: its Close (answered),
  // a framing error (Close with the matching code) or `on_data` said so.
  bool Feed(absl::string_view bytes, const DataHandler& on_data) {
    Touch();
    reader_.Append(bytes);
    for (;;) {
      absl::StatusOr<std::optional<Message>> m = reader_.Next();
      if (!m.ok()) {
        Close(websocket::CloseCodeFor(m.status()), m.status().message());
        return false;
      }
      if (!m->has_value()) return true;
      Message& msg = **m;
      switch (msg.opcode) {
        case Opcode::kPing:
          (void)Send(EncodeFrame(Opcode::kPong, msg.payload));
          break;
        case Opcode::kPong:
          break;
        case Opcode::kClose: {
          // Echo the client's code (RFC 6455 §5.5.1); an empty Close gets an empty one.
          absl::StatusOr<websocket::CloseInfo> info = websocket::ParseClosePayload(msg.payload);
          std::lock_guard<std::mutex> lock(write_mu_);
          if (!close_sent_ && !broken_) {
            close_sent_ = true;
            (void)WriteLocked(EncodeFrame(Opcode::kClose, info.ok() && info->code.has_value()
                                                              ? websocket::ClosePayload(*info->code)
                                                              : std::string()));
          }
          return false;
        }
        default:
          if (!on_data(msg)) return false;
      }
    }
  }

  // One turn of the read loop: waits up to 250 ms for input (none is read while `paused`)
  // or a Wake(), and feeds what came. False once the client is gone (see Feed; EOF too).
  bool Turn(const DataHandler& on_data, bool paused) {
    pollfd p[2] = {{fd_, static_cast<short>(paused ? 0 : POLLIN), 0},
                   {wake_read_.get(), POLLIN, 0}};
    const int r = ::poll(p, 2, kPollMs);
    if (r < 0 && errno != EINTR) return false;
    if (r <= 0) return true;
    if ((p[1].revents & POLLIN) != 0) {
      char drain[64];
      while (::read(wake_read_.get(), drain, sizeof(drain)) > 0) {
      }
    }
    if ((p[0].revents & (POLLIN | POLLHUP | POLLERR)) == 0) return true;
    char buffer[32 * 1024];
    const ssize_t n = ::read(fd_, buffer, sizeof(buffer));
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) return true;
    if (n <= 0) return false;  // EOF, or the socket was shut down (Stop())
    return Feed(absl::string_view(buffer, static_cast<size_t>(n)), on_data);
  }

  // Close 1001 once nothing was read or written for the idle timeout; true then.
  bool IdleTimedOut() {
    const absl::Time last = absl::FromUnixNanos(last_activity_ns_.load());
    if (absl::Now() - last < options_.idle_timeout) return false;
    Close(websocket::kCloseGoingAway, "idle timeout");
    return true;
  }

  // The end of a session: half-close, then read (and drop) what the client still sends —
  // its Close — for a moment. The caller closes the socket.
  void Linger() {
    {
      std::lock_guard<std::mutex> lock(write_mu_);
      if (broken_) return;
    }
    ::shutdown(fd_, SHUT_WR);
    const absl::Time deadline = absl::Now() + kLingerAfterClose;
    char buffer[4096];
    while (absl::Now() < deadline) {
      pollfd p{fd_, POLLIN, 0};
      const int left = static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
      if (::poll(&p, 1, std::max(left, 1)) <= 0) break;
      if (::read(fd_, buffer, sizeof(buffer)) <= 0) break;
    }
  }

  int fd() const { return fd_; }

 private:
  bool WriteLocked(const std::string& frame) {
    if (!WriteAll(fd_, frame)) {
      broken_ = true;
      ::shutdown(fd_, SHUT_RDWR);  // the read loop ends
      return false;
    }
    Touch();
    return true;
  }
  void Touch() { last_activity_ns_.store(absl::ToUnixNanos(absl::Now())); }

  const int fd_;
  const WebSocketSessionOptions& options_;
  websocket::MessageReader reader_;  // the read loop's only
  sdk::UniqueFd wake_read_, wake_write_;
  std::atomic<int64_t> last_activity_ns_{0};
  std::mutex write_mu_;
  bool close_sent_ = false;
  bool broken_ = false;
};

// Feeds the stdin of a process from a thread of its own, so that a process that does not
// read never blocks the read loop (which keeps answering Pings and noticing the client's
// departure); the read loop stops reading while too much is queued.
class StdinPump {
 public:
  StdinPump(StreamedProcess* process, std::function<void()> on_drained)
      : process_(process), on_drained_(std::move(on_drained)) {
    thread_ = std::thread([this] { Loop(); });
  }
  ~StdinPump() { Join(); }

  void Push(std::string data) {
    std::lock_guard<std::mutex> lock(mu_);
    if (failed_ || eof_ || stop_) return;
    queued_ += data.size();
    queue_.push_back(std::move(data));
    cv_.notify_all();
  }
  // The end of input: CloseStdin() once what is queued is written.
  void Eof() {
    std::lock_guard<std::mutex> lock(mu_);
    eof_ = true;
    cv_.notify_all();
  }
  // Drops what is queued; CloseStdin() (once) when `close_stdin`.
  void Stop(bool close_stdin) {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    close_on_stop_ = close_stdin;
    cv_.notify_all();
  }
  // After Stop() (and the process's Detach(), which ends a write in progress).
  void Join() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
      cv_.notify_all();
    }
    if (thread_.joinable()) thread_.join();
  }
  bool full() {
    std::lock_guard<std::mutex> lock(mu_);
    return queued_ >= kMaxPendingInput;
  }

 private:
  void Loop() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      cv_.wait(lock, [this] { return stop_ || !queue_.empty() || (eof_ && !closed_); });
      if (stop_) break;
      if (queue_.empty()) {  // end of input, everything written
        closed_ = true;
        lock.unlock();
        process_->CloseStdin();
        lock.lock();
        continue;
      }
      std::string data = std::move(queue_.front());
      queue_.pop_front();
      const bool was_full = queued_ >= kMaxPendingInput;
      lock.unlock();
      const bool ok = process_->WriteStdin(data).ok();
      lock.lock();
      queued_ -= data.size();
      if (!ok) {
        failed_ = true;  // the process's stdin is gone: drop the rest
        for (const std::string& d : queue_) queued_ -= d.size();
        queue_.clear();
      }
      if (was_full && queued_ < kMaxPendingInput) on_drained_();
    }
    const bool close = close_on_stop_ && !closed_;
    closed_ = true;
    lock.unlock();
    if (close) process_->CloseStdin();
  }

  StreamedProcess* const process_;
  const std::function<void()> on_drained_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> queue_;
  size_t queued_ = 0;
  bool eof_ = false, stop_ = false, close_on_stop_ = false, closed_ = false, failed_ = false;
  std::thread thread_;
};

// Channels of the remote command protocols (§9.2).
constexpr uint8_t kStdinChannel = 0;
constexpr uint8_t kStdoutChannel = 1;
constexpr uint8_t kStderrChannel = 2;
constexpr uint8_t kErrorChannel = 3;
constexpr uint8_t kResizeChannel = 4;
constexpr uint8_t kStreamCloseSignal = 255;

class RemoteCommandSession {
 public:
  RemoteCommandSession(int fd, const ChannelProtocol& protocol, RemoteCommandRequest request,
                       const WebSocketSessionOptions& options, const ExecBackend& exec,
                       const AttachBackend& attach)
      : conn_(fd, options),
        protocol_(protocol),
        req_(std::move(request)),
        options_(options),
        exec_(exec),
        attach_(attach) {}

  void Run(const std::string& initial) {
    // The connected signal: an empty message on the lowest writable channel.
    const uint8_t first = req_.stdout()      ? kStdoutChannel
                          : StderrWritable() ? kStderrChannel
                                             : kErrorChannel;
    (void)conn_.Send(EncodeChannelMessage(protocol_, first, ""));
    Start();
    const Connection::DataHandler on_data = [this](Message& m) { return OnMessage(m.payload); };
    bool open = initial.empty() || conn_.Feed(initial, on_data);
    while (open && !done_) {
      open = conn_.Turn(on_data, stdin_ != nullptr && stdin_->full()) && !conn_.IdleTimedOut();
    }
    Finish();
  }

 private:
  bool StderrWritable() const { return req_.stderr() && !req_.tty(); }
  std::string ErrorPrefix() const {
    return req_.attach ? "error attaching to container: "
                       : "error executing command in container: ";
  }

  void Start() {
    const bool has_backend = req_.attach ? static_cast<bool>(attach_) : static_cast<bool>(exec_);
    absl::StatusOr<std::unique_ptr<StreamedProcess>> process =
        !has_backend  ? absl::FailedPreconditionError("not supported by this server")
        : req_.attach ? attach_(req_.attach_request)
                      : exec_(req_.exec);
    if (!process.ok()) {
      End(ExecStatus::InternalError(absl::StrCat(ErrorPrefix(), process.status().message())));
      return;
    }
    process_ = *std::move(process);
    if (req_.stdin()) {
      stdin_ = std::make_unique<StdinPump>(process_.get(), [this] { conn_.Wake(); });
    }
    output_thread_ = std::thread([this] { RelayOutput(); });
  }

  // A data message from the client (the read loop). False ends the session.
  bool OnMessage(absl::string_view payload) {
    if (payload.empty() || process_ == nullptr) return true;
    if (protocol_.stream_close && static_cast<uint8_t>(payload[0]) == kStreamCloseSignal) {
      if (payload.size() != 2 || static_cast<uint8_t>(payload[1]) > kResizeChannel) {
        conn_.Close(websocket::kCloseProtocolError,
                    "a CLOSE signal is 2 bytes: 255 and a channel 0-4");
        return false;
      }
      const uint8_t channel = static_cast<uint8_t>(payload[1]);
      if (channel == kStdinChannel) OnStdinEnd();
      if (channel == kResizeChannel) resize_failed_ = true;
      return true;
    }
    absl::StatusOr<websocket::ChannelMessage> m =
        websocket::DecodeChannelMessage(protocol_, payload);
    if (!m.ok()) return true;  // dropped, as upstream does
    if (m->channel == kStdinChannel) {
      if (stdin_ == nullptr || m->data.empty()) return true;
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (stdin_done_) return true;
      }
      stdin_->Push(std::move(m->data));
    } else if (m->channel == kResizeChannel && req_.tty() && !resize_failed_) {
      resize_.Append(m->data);
      for (;;) {
        absl::StatusOr<std::optional<TerminalSize>> size = resize_.Next();
        if (!size.ok()) {
          resize_failed_ = true;  // §6.5: stop processing resizes
          break;
        }
        if (!size->has_value()) break;
        process_->Resize(**size);
      }
    }
    // Other channels are the server's to write, or unknown: ignored.
    return true;
  }

  // v5 CLOSE of stdin (§9.3), handled as SPDY's end of stdin (§6.4).
  void OnStdinEnd() {
    if (stdin_ == nullptr) return;
    std::lock_guard<std::mutex> lock(mu_);
    if (stdin_done_) return;
    stdin_done_ = true;
    if (req_.tty()) {
      output_stopped_ = true;  // the process runs on; its status still comes
    } else {
      stdin_->Eof();
    }
  }

  // The output thread: output to channels 1 and 2, then the status and Close.
  void RelayOutput() {
    absl::Status failure;
    for (;;) {
      absl::StatusOr<std::optional<StreamedProcess::Chunk>> chunk = process_->Read();
      if (!chunk.ok()) {
        failure = chunk.status();
        break;
      }
      if (!chunk->has_value()) break;
      const bool is_stderr = (*chunk)->stream == StreamType::kStderr;
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (client_gone_) break;
        if (output_stopped_) continue;
      }
      if (is_stderr ? !StderrWritable() : !req_.stdout()) continue;
      if ((*chunk)->data.empty()) continue;  // an empty message would read as the signal
      (void)conn_.Send(EncodeChannelMessage(protocol_, is_stderr ? kStderrChannel : kStdoutChannel,
                                            (*chunk)->data));
    }
    ExecStatus status;
    if (!failure.ok()) {
      status = ExecStatus::InternalError(absl::StrCat(ErrorPrefix(), failure.message()));
    } else {
      absl::StatusOr<int> exit = process_->Wait();
      if (!exit.ok() && exit.status().code() == absl::StatusCode::kCancelled) {
        conn_.Wake();
        return;  // detached: the client is gone or the server stops; no status (§6.7)
      }
      if (!exit.ok()) {
        status = ExecStatus::InternalError(absl::StrCat(ErrorPrefix(), exit.status().message()));
      } else if (*exit != 0 && !req_.attach) {
        const int code = std::clamp(*exit, 1, 255);
        std::vector<std::string> cmd(req_.exec.cmd().begin(), req_.exec.cmd().end());
        status = ExecStatus::NonZeroExit(code, ExecExitErrorText(cmd, code));
      }
    }
    End(status);
  }

  // The status on channel 3 (v4/v5: always JSON; v1: text on failure only), then Close 1000.
  void End(const ExecStatus& status) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (client_gone_ || ending_) return;
      ending_ = true;
    }
    absl::StatusOr<std::string> payload =
        ErrorStreamPayload(status, protocol_.status, options_.status_flavor);
    if (payload.ok() && !payload->empty()) {
      (void)conn_.Send(EncodeChannelMessage(protocol_, kErrorChannel, *payload));
    }
    conn_.Close(websocket::kCloseNormal);
    done_ = true;
    conn_.Wake();
  }

  void Finish() {
    bool ended;
    {
      std::lock_guard<std::mutex> lock(mu_);
      ended = ending_;
      if (!ended) client_gone_ = true;
    }
    // A client that left: close the process's stdin, stop the output, no status (§6.7).
    if (stdin_ != nullptr) stdin_->Stop(/*close_stdin=*/!ended);
    if (process_ != nullptr && !ended) process_->Detach();
    if (output_thread_.joinable()) output_thread_.join();
    // A stdin write still waiting for the process ends now (harmless after the exit).
    if (process_ != nullptr) process_->Detach();
    stdin_.reset();
    process_.reset();
    conn_.Linger();
  }

  Connection conn_;
  const ChannelProtocol protocol_;
  const RemoteCommandRequest req_;
  const WebSocketSessionOptions& options_;
  const ExecBackend& exec_;
  const AttachBackend& attach_;

  std::unique_ptr<StreamedProcess> process_;
  std::unique_ptr<StdinPump> stdin_;
  std::thread output_thread_;
  ResizeDecoder resize_;        // the read loop's
  bool resize_failed_ = false;  // the read loop's

  std::mutex mu_;
  bool stdin_done_ = false;
  bool output_stopped_ = false;
  bool ending_ = false;       // the status and Close were sent
  bool client_gone_ = false;  // write no more output and no status
  std::atomic<bool> done_{false};
};

// Writes all of `data` to a socket without blocking the caller forever: gives up when the
// target fails or `watch` (the WebSocket) is shut down.
bool WriteWatching(int fd, absl::string_view data, int watch) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      data.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return false;
    pollfd p[2] = {{fd, POLLOUT, 0}, {watch, 0, 0}};
    if (::poll(p, 2, -1) < 0 && errno != EINTR) return false;
    if ((p[1].revents & (POLLHUP | POLLERR)) != 0) return false;
    if ((p[0].revents & (POLLERR | POLLHUP)) != 0) return false;
  }
  return true;
}

class PortForwardSession {
 public:
  PortForwardSession(int fd, const ChannelProtocol& protocol, const std::vector<uint16_t>& ports,
                     const std::string& sandbox_id, const WebSocketSessionOptions& options,
                     const PortDialer& dial)
      : conn_(fd, options), protocol_(protocol), sandbox_id_(sandbox_id), dial_(dial) {
    for (size_t i = 0; i < ports.size(); ++i) {
      auto p = std::make_unique<Port>();
      p->number = ports[i];
      p->data_channel = static_cast<uint8_t>(2 * i);
      p->error_channel = static_cast<uint8_t>(2 * i + 1);
      ports_.push_back(std::move(p));
    }
  }

  void Run(const std::string& initial) {
    // §9.4: each channel opens with its port, 2 bytes little-endian.
    for (const auto& p : ports_) {
      const char prefix[2] = {static_cast<char>(p->number & 0xFF),
                              static_cast<char>(p->number >> 8)};
      (void)conn_.Send(
          EncodeChannelMessage(protocol_, p->data_channel, absl::string_view(prefix, 2)));
      (void)conn_.Send(
          EncodeChannelMessage(protocol_, p->error_channel, absl::string_view(prefix, 2)));
    }
    for (const auto& p : ports_) {
      Port* port = p.get();
      p->thread = std::thread([this, port] { Forward(*port); });
    }
    const Connection::DataHandler on_data = [this](Message& m) { return OnMessage(m.payload); };
    bool open = initial.empty() || conn_.Feed(initial, on_data);
    while (open && !AllEnded()) {
      open = conn_.Turn(on_data, PendingFull()) && !conn_.IdleTimedOut();
    }
    if (open) conn_.Close(websocket::kCloseNormal);  // every forward has ended
    Finish();
  }

 private:
  struct Port {
    uint16_t number = 0;
    uint8_t data_channel = 0, error_channel = 0;
    std::mutex mu;
    bool connected = false;     // target is set: client data goes straight to it
    bool write_failed = false;  // the target takes no more
    std::string pending;        // client data that came before the dial completed
    std::mutex write_mu;        // orders writes to target (read loop vs. dial thread)
    sdk::UniqueFd target;
    std::atomic<bool> ended{false};
    std::thread thread;
  };

  bool AllEnded() const {
    return std::all_of(ports_.begin(), ports_.end(), [](const auto& p) { return p->ended.load(); });
  }
  bool PendingFull() {
    for (const auto& p : ports_) {
      std::lock_guard<std::mutex> lock(p->mu);
      if (p->pending.size() >= kMaxPendingInput) return true;
    }
    return false;
  }

  bool OnMessage(absl::string_view payload) {
    if (payload.empty()) return true;
    absl::StatusOr<websocket::ChannelMessage> m =
        websocket::DecodeChannelMessage(protocol_, payload);
    if (!m.ok() || m->data.empty()) return true;
    // Only data channels (even numbers) of known ports are read; the rest is ignored.
    if (m->channel % 2 != 0 || m->channel / 2 >= ports_.size()) return true;
    Port& p = *ports_[m->channel / 2];
    if (p.ended) return true;
    {
      std::lock_guard<std::mutex> lock(p.mu);
      if (p.write_failed) return true;
      if (!p.connected) {
        p.pending += m->data;
        return true;
      }
    }
    std::lock_guard<std::mutex> write_lock(p.write_mu);
    if (!WriteWatching(p.target.get(), m->data, conn_.fd())) {
      std::lock_guard<std::mutex> lock(p.mu);
      p.write_failed = true;
    }
    return true;
  }

  // A port's thread: dial, hand over what the client sent meanwhile, then target -> client.
  void Forward(Port& p) {
    absl::StatusOr<sdk::UniqueFd> target = dial_(p.number);
    if (!target.ok()) {
      if (!closing_) {
        (void)conn_.Send(EncodeChannelMessage(
            protocol_, p.error_channel,
            PortForwardErrorText(p.number, sandbox_id_, target.status().message())));
      }
      p.ended = true;
      conn_.Wake();
      return;
    }
    const int fd = target->get();
    {
      std::lock_guard<std::mutex> write_lock(p.write_mu);
      std::string pending;
      {
        std::lock_guard<std::mutex> lock(p.mu);
        p.target = *std::move(target);
        p.connected = true;
        pending.swap(p.pending);
        if (closing_) ::shutdown(fd, SHUT_RDWR);
      }
      conn_.Wake();  // reading may have paused for the pending data
      if (!pending.empty() && !WriteWatching(fd, pending, conn_.fd())) {
        std::lock_guard<std::mutex> lock(p.mu);
        p.write_failed = true;
      }
    }
    char buffer[32 * 1024];
    for (;;) {
      const ssize_t n = ::read(fd, buffer, sizeof(buffer));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && !closing_) {
        (void)conn_.Send(EncodeChannelMessage(
            protocol_, p.error_channel,
            PortForwardErrorText(p.number, sandbox_id_,
                                 absl::StrCat("read from the target: ", std::strerror(errno)))));
      }
      if (n <= 0) break;
      if (!conn_.Send(EncodeChannelMessage(protocol_, p.data_channel,
                                           absl::string_view(buffer, static_cast<size_t>(n))))) {
        break;  // the WebSocket is closing
      }
    }
    p.ended = true;
    conn_.Wake();
  }

  void Finish() {
    closing_ = true;
    for (const auto& p : ports_) {
      std::lock_guard<std::mutex> lock(p->mu);
      if (p->connected) ::shutdown(p->target.get(), SHUT_RDWR);
    }
    // A dial in progress completes first (and sees closing_).
    for (const auto& p : ports_) {
      if (p->thread.joinable()) p->thread.join();
    }
    ports_.clear();  // the targets close
    conn_.Linger();
  }

  Connection conn_;
  const ChannelProtocol protocol_;
  const std::string sandbox_id_;
  const PortDialer& dial_;
  std::vector<std::unique_ptr<Port>> ports_;
  std::atomic<bool> closing_{false};
};

}  // namespace

void RunWebSocketRemoteCommand(int fd, const websocket::ChannelProtocol& protocol,
                               RemoteCommandRequest request, const WebSocketSessionOptions& options,
                               const ExecBackend& exec, const AttachBackend& attach,
                               const std::string& initial) {
  RemoteCommandSession s(fd, protocol, std::move(request), options, exec, attach);
  s.Run(initial);
}

void RunWebSocketPortForward(int fd, const websocket::ChannelProtocol& protocol,
                             const std::vector<uint16_t>& ports, const std::string& sandbox_id,
                             const WebSocketSessionOptions& options, const PortDialer& dial,
                             const std::string& initial) {
  PortForwardSession s(fd, protocol, ports, sandbox_id, options, dial);
  s.Run(initial);
}

void RunWebSocketTunnel(int fd, int inner, const WebSocketSessionOptions& options,
                        const std::string& initial) {
  Connection conn(fd, options);
  std::atomic<bool> inner_done{false};
  // inner -> client, in binary messages; at inner's end, Close 1000.
  std::thread out([&] {
    char buffer[32 * 1024];
    for (;;) {
      const ssize_t n = ::read(inner, buffer, sizeof(buffer));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      if (!conn.Send(
              EncodeFrame(Opcode::kBinary, absl::string_view(buffer, static_cast<size_t>(n))))) {
        break;
      }
    }
    conn.Close(websocket::kCloseNormal);
    // A session blocked writing to inner fails now instead of waiting for us.
    ::shutdown(inner, SHUT_RDWR);
    inner_done = true;
    conn.Wake();
  });
  // client -> inner: message boundaries mean nothing (§9.5).
  const Connection::DataHandler on_data = [&](Message& m) {
    return m.payload.empty() || WriteAll(inner, m.payload);
  };
  bool open = initial.empty() || conn.Feed(initial, on_data);
  while (open && !inner_done) {
    open = conn.Turn(on_data, /*paused=*/false) && !conn.IdleTimedOut();
  }
  ::shutdown(inner, SHUT_RDWR);  // the SPDY session sees EOF and ends
  out.join();
  conn.Linger();
}

}  // namespace berth::cri::streaming
