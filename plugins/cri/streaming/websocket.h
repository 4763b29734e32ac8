// SPDX-License-Identifier: Apache-2.0
// WebSocket in the streaming server (kubernetes-streaming.md §9): the RFC 6455 handshake and
// framing, the Kubernetes channel protocols on top of it, and the sessions that serve an
// upgraded connection.
//
//   exec/attach  "", channel.k8s.io, base64.channel.k8s.io, v4.channel.k8s.io,
//                v4.base64.channel.k8s.io, v5.channel.k8s.io (with the CLOSE signal, §9.3);
//                channels 0 stdin, 1 stdout, 2 stderr, 3 status, 4 resize (§9.2).
//   portforward  "", v4.channel.k8s.io, v4.base64.channel.k8s.io: per port a data channel 2i
//                and an error channel 2i+1, each opened by the port in 2 little-endian bytes
//                (§9.4); SPDY/3.1+portforward.k8s.io: the SPDY session of §7 carried in
//                binary messages (§9.5).
//
// Framing limits: client frames must be masked (1002 otherwise), no extensions (RSV bits set:
// 1002), control frames unfragmented and at most 125 bytes (1002), a data message (all its
// fragments) at most `max_message_bytes` (1009), text messages valid UTF-8 (1007). The
// server never masks, answers every Ping with a Pong and echoes the client's Close.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "berth/unique_fd.hpp"
#include "plugins/cri/streaming/http.h"
#include "plugins/cri/streaming/k8s_remotecommand.h"
#include "plugins/cri/streaming/remote_command.h"

namespace berth::cri::websocket {

// ---- Framing (RFC 6455 §5) ----

enum class Opcode : uint8_t {
  kContinuation = 0x0,
  kText = 0x1,
  kBinary = 0x2,
  kClose = 0x8,
  kPing = 0x9,
  kPong = 0xA,
};

// Close status codes (RFC 6455 §7.4.1) that the server sends.
inline constexpr uint16_t kCloseNormal = 1000;
inline constexpr uint16_t kCloseGoingAway = 1001;
inline constexpr uint16_t kCloseProtocolError = 1002;
inline constexpr uint16_t kCloseInvalidPayload = 1007;
inline constexpr uint16_t kCloseTooBig = 1009;
inline constexpr uint16_t kCloseInternalError = 1011;

// x/net/websocket's DefaultMaxPayloadBytes, which upstream's server uses.
inline constexpr size_t kDefaultMaxMessageBytes = 32 << 20;

// One frame: `payload` masked with `mask_key` when given (clients), else unmasked (servers).
std::string EncodeFrame(Opcode opcode, absl::string_view payload, bool fin = true,
                        std::optional<uint32_t> mask_key = std::nullopt);
// A Close frame's payload: the code (network order) and a reason cut to fit in 125 bytes.
std::string ClosePayload(uint16_t code, absl::string_view reason = "");

struct CloseInfo {
  std::optional<uint16_t> code;  // none: an empty Close (RFC 6455 1005, "no status")
  std::string reason;
};
// INVALID_ARGUMENT (close 1002) for a 1-byte payload or a code no peer may send;
// (close 1007) for a reason that is not UTF-8: see CloseCodeFor.
[[nodiscard]] absl::StatusOr<CloseInfo> ParseClosePayload(absl::string_view payload);

// A complete message: a data message (text or binary, its fragments joined) or a control
// frame (close, ping, pong).
struct Message {
  Opcode opcode = Opcode::kBinary;
  std::string payload;
};

// The close code that answers a framing error: 1009 for RESOURCE_EXHAUSTED, 1007 for
// DATA_LOSS (bad UTF-8), else 1002.
uint16_t CloseCodeFor(const absl::Status& error);

// Incremental frame parser for one direction of a connection. Append() what arrives, then
// call Next() until it returns std::nullopt. An error is final (the connection must be
// closed with CloseCodeFor(error)); a frame whose header announces too much data fails as
// soon as the header is in, before its payload is buffered.
class MessageReader {
 public:
  // `masked`: frames must be masked (a server reading a client) or must not be (a client).
  explicit MessageReader(size_t max_message_bytes = kDefaultMaxMessageBytes, bool masked = true)
      : max_message_(max_message_bytes), masked_(masked) {}

  void Append(absl::string_view bytes);
  [[nodiscard]] absl::StatusOr<std::optional<Message>> Next();
  // Bytes held (an incomplete frame).
  size_t buffered() const { return buffer_.size() - pos_; }

 private:
  absl::Status Fail(absl::Status error);

  const size_t max_message_;
  const bool masked_;
  std::string buffer_;
  size_t pos_ = 0;  // start of the next frame in buffer_
  bool in_message_ = false;
  Opcode message_opcode_ = Opcode::kBinary;
  std::string message_;
  absl::Status error_;
};

// Strict UTF-8 (no overlong forms, surrogates or code points past U+10FFFF).
bool IsValidUtf8(absl::string_view text);

// ---- Handshake (RFC 6455 §4.2, kubernetes-streaming.md §9.1) ----

// base64(SHA-1(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")).
[[nodiscard]] absl::StatusOr<std::string> AcceptKey(absl::string_view key);

// `Upgrade: websocket` (case-insensitive) and `upgrade` among the Connection tokens (§3.4).
bool IsWebSocketUpgrade(const streaming::HttpRequest& req);

inline constexpr absl::string_view kProtocolNone = "";
inline constexpr absl::string_view kChannelProtocol = "channel.k8s.io";
inline constexpr absl::string_view kBase64ChannelProtocol = "base64.channel.k8s.io";
inline constexpr absl::string_view kV4ChannelProtocol = "v4.channel.k8s.io";
inline constexpr absl::string_view kV4Base64ChannelProtocol = "v4.base64.channel.k8s.io";
inline constexpr absl::string_view kV5ChannelProtocol = "v5.channel.k8s.io";
inline constexpr absl::string_view kSpdyTunnelProtocol = "SPDY/3.1+portforward.k8s.io";

// What the server accepts (the client's order decides among them). v2./v3. names are not
// WebSocket protocols upstream (§9.2).
inline constexpr absl::string_view kRemoteCommandProtocols[] = {
    kV5ChannelProtocol, kV4ChannelProtocol,     kV4Base64ChannelProtocol,
    kChannelProtocol,   kBase64ChannelProtocol, kProtocolNone};
inline constexpr absl::string_view kPortForwardProtocols[] = {
    kSpdyTunnelProtocol, kV4ChannelProtocol, kV4Base64ChannelProtocol, kProtocolNone};

// The decision on an upgrade request, as x/net/websocket and upstream's handshake hook make
// it: 405 "bad method" unless GET; 400 without the upgrade headers or a key (16 bytes in
// base64); 400 with `Sec-WebSocket-Version: 13` unless version 13; 403 (empty body) when no
// protocol of the client's first Sec-WebSocket-Protocol line is supported (no header: "");
// else the 101 with Sec-WebSocket-Accept and, unless "", Sec-WebSocket-Protocol.
struct Handshake {
  bool ok = false;
  std::string protocol;  // the chosen sub-protocol when ok
  std::string response;  // the complete HTTP response to write
};
[[nodiscard]] Handshake CheckUpgrade(const streaming::HttpRequest& req,
                                     absl::Span<const absl::string_view> server_protocols);

// ---- Channel protocols (§9.2-§9.4) ----

struct ChannelProtocol {
  bool base64 = false;        // text frames: '0'+channel, then base64 of the data
  bool stream_close = false;  // v5: a message FF <channel> half-closes that channel
  // How the exit status is written on channel 3: kV4 (JSON, always) or kV1 (text on failure).
  streaming::RemoteCommandProtocol status = streaming::RemoteCommandProtocol::kV1;
};
// The channel protocol of a negotiated name (not for kSpdyTunnelProtocol).
ChannelProtocol ParseChannelProtocol(absl::string_view name);

// One message for `channel`: a binary frame (channel byte + data) or a text frame (digit +
// base64), unmasked as a server sends it.
std::string EncodeChannelMessage(const ChannelProtocol& protocol, uint8_t channel,
                                 absl::string_view data);
struct ChannelMessage {
  uint8_t channel = 0;
  std::string data;
};
// A non-empty client message. INVALID_ARGUMENT when base64 data does not decode (upstream
// drops such a message).
[[nodiscard]] absl::StatusOr<ChannelMessage> DecodeChannelMessage(const ChannelProtocol& protocol,
                                                                  absl::string_view payload);

// The ports of a WebSocket port-forward from `?port=` (repeatable, comma-separated, 1-65535),
// with upstream's messages for a missing, empty or bad value (INVALID_ARGUMENT, a 400).
[[nodiscard]] absl::StatusOr<std::vector<uint16_t>> PortsFromQuery(const std::string& target);

}  // namespace berth::cri::websocket

namespace berth::cri::streaming {

struct WebSocketSessionOptions {
  absl::Duration idle_timeout = absl::Hours(4);  // no message read or written: Close 1001
  size_t max_message_bytes = websocket::kDefaultMaxMessageBytes;
  StatusFlavor status_flavor = StatusFlavor::kMetav1;
};

// The sessions below run on the calling thread after the 101 has been written, until the
// connection ends; `initial` holds bytes read past the request head. A socket shut down by
// someone else (the server stopping) ends them promptly. The caller closes `fd` afterwards.

// Exec or attach (§9.2, §9.3): the connected signal (an empty message on the lowest
// writable channel), the process started at once (every channel exists from the start),
// stdin and resizes relayed to it, its output to channels 1 and 2, then the status on channel
// 3 and Close 1000. A client that leaves (Close, EOF, a framing error) detaches the process
// and gets no status. v5 CLOSE of stdin is the end of input: CloseStdin() without a tty;
// with one, the output relay stops as with SPDY (§6.4).
void RunWebSocketRemoteCommand(int fd, const websocket::ChannelProtocol& protocol,
                               RemoteCommandRequest request, const WebSocketSessionOptions& options,
                               const ExecBackend& exec, const AttachBackend& attach,
                               const std::string& initial);

// Dials `port` for a port-forward; the error's message goes on the error channel.
using PortDialer = std::function<absl::StatusOr<sdk::UniqueFd>(uint16_t port)>;

// Legacy port-forward (§9.4): one connection per port, dialled at once, bytes pumped both
// ways; a failed dial or a broken connection is reported as upstream's text on the port's
// error channel. Once every port's connection has ended, Close 1000.
void RunWebSocketPortForward(int fd, const websocket::ChannelProtocol& protocol,
                             const std::vector<uint16_t>& ports, const std::string& sandbox_id,
                             const WebSocketSessionOptions& options, const PortDialer& dial,
                             const std::string& initial);

// SPDY over WebSocket (§9.5): the payload of every data message from the client goes to
// `inner`, everything read from `inner` goes back in binary messages. Ends when either side
// does; `inner` is shut down when the WebSocket ends, and Close 1000 is sent when `inner`
// ends.
void RunWebSocketTunnel(int fd, int inner, const WebSocketSessionOptions& options,
                        const std::string& initial);

}  // namespace berth::cri::streaming
