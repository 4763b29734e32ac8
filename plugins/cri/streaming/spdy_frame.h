// SPDX-License-Identifier: Apache-2.0
// SPDY/3.1 framing (spdy-3.1.md §2.2 and §2.6): the frame types the Kubernetes streaming
// protocols use, their encoder, and an incremental parser that accepts bytes in chunks of
// any size (frames split anywhere, several frames per chunk).
//
// This layer knows nothing about header compression: SYN_STREAM, SYN_REPLY and HEADERS carry
// their name/value block exactly as it is on the wire (compressed). See spdy_header_block.h
// for the block and spdy.h for the session that ties both together.
//
// The parser applies the checks the Go peer (moby/spdystream) applies to what it reads
// (kubernetes-streaming.md §5.1) and a few more that keep a malformed frame from being
// misread; every violation is an error for the whole session, as it is for the Go peer.
// The encoder refuses to produce a frame the Go peer would reject.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace berth::cri::spdy {

inline constexpr uint16_t kSpdyVersion = 3;
inline constexpr size_t kFrameHeaderSize = 8;
// The 24-bit length field: the largest payload of any frame, and the Go peer's default
// limit for control frames.
inline constexpr uint32_t kMaxFramePayload = (1u << 24) - 1;
// The smallest control-frame limit spdy-3.1.md §2.2.1 allows a receiver.
inline constexpr uint32_t kMinControlPayloadLimit = 8192;
inline constexpr uint32_t kMaxStreamId = 0x7fffffff;

// Control frame types (spdy-3.1.md §2.6). 5 (NOOP in SPDY/2) and 10 (CREDENTIAL) are not
// here: the Go peer treats them, and any other unknown type, as fatal.
enum class ControlType : uint16_t {
  kSynStream = 1,
  kSynReply = 2,
  kRstStream = 3,
  kSettings = 4,
  kPing = 6,
  kGoAway = 7,
  kHeaders = 8,
  kWindowUpdate = 9,
};

// Flags.
inline constexpr uint8_t kFlagFin = 0x01;             // DATA, SYN_STREAM, SYN_REPLY, HEADERS
inline constexpr uint8_t kFlagUnidirectional = 0x02;  // SYN_STREAM
inline constexpr uint8_t kFlagSettingsClearSettings = 0x01;

// RST_STREAM status codes (spdy-3.1.md §2.6.3). 0 is not valid.
enum class RstStatus : uint32_t {
  kProtocolError = 1,
  kInvalidStream = 2,
  kRefusedStream = 3,
  kUnsupportedVersion = 4,
  kCancel = 5,
  kInternalError = 6,
  kFlowControlError = 7,
  kStreamInUse = 8,
  kStreamAlreadyClosed = 9,
  kFrameTooLarge = 11,
};

// GOAWAY status codes (spdy-3.1.md §2.6.6).
enum class GoAwayStatus : uint32_t {
  kOk = 0,
  kProtocolError = 1,
  kInternalError = 2,
};

// "CANCEL", "PROTOCOL_ERROR", ... or "unknown status 42".
std::string RstStatusName(uint32_t status);
std::string GoAwayStatusName(uint32_t status);

struct DataFrame {
  uint32_t stream_id = 0;
  uint8_t flags = 0;
  std::string data;
  bool operator==(const DataFrame&) const = default;
};

struct SynStreamFrame {
  uint32_t stream_id = 0;
  uint32_t associated_stream_id = 0;
  uint8_t priority = 0;  // 0 (highest) to 7: the top 3 bits of the priority byte.
  uint8_t slot = 0;
  uint8_t flags = 0;
  std::string header_block;  // compressed name/value block
  bool operator==(const SynStreamFrame&) const = default;
};

struct SynReplyFrame {
  uint32_t stream_id = 0;
  uint8_t flags = 0;
  std::string header_block;  // compressed name/value block
  bool operator==(const SynReplyFrame&) const = default;
};

struct RstStreamFrame {
  uint32_t stream_id = 0;
  uint32_t status = 0;  // a RstStatus value; kept raw so that unknown codes survive a decode
  uint8_t flags = 0;    // must be 0 per the spec; the Go reader does not check
  bool operator==(const RstStreamFrame&) const = default;
};

struct SettingsEntry {
  uint8_t flags = 0;
  uint32_t id = 0;  // 24 bits
  uint32_t value = 0;
  bool operator==(const SettingsEntry&) const = default;
};

struct SettingsFrame {
  uint8_t flags = 0;
  std::vector<SettingsEntry> entries;
  bool operator==(const SettingsFrame&) const = default;
};

struct PingFrame {
  uint32_t id = 0;
  bool operator==(const PingFrame&) const = default;
};

struct GoAwayFrame {
  uint32_t last_good_stream_id = 0;
  uint32_t status = 0;  // a GoAwayStatus value
  bool operator==(const GoAwayFrame&) const = default;
};

struct HeadersFrame {
  uint32_t stream_id = 0;
  uint8_t flags = 0;
  std::string header_block;  // compressed name/value block
  bool operator==(const HeadersFrame&) const = default;
};

struct WindowUpdateFrame {
  uint32_t stream_id = 0;  // 0: the connection window
  uint32_t delta = 0;
  bool operator==(const WindowUpdateFrame&) const = default;
};

using Frame = std::variant<DataFrame, SynStreamFrame, SynReplyFrame, RstStreamFrame, SettingsFrame,
                           PingFrame, GoAwayFrame, HeadersFrame, WindowUpdateFrame>;

// A one-line description for logs, e.g. "SYN_STREAM stream=3 flags=0x00 block=15 bytes"
// (never the payload itself).
std::string DescribeFrame(const Frame& frame);

// Appends the wire form of `frame` to `out`. Fails (INVALID_ARGUMENT, nothing appended) on
// what the spec or the Go peer forbids: stream ID 0 where a stream is required, IDs above
// 2^31-1, priority above 7, RST_STREAM status 0, PING ID 0, payloads above 2^24-1 bytes,
// SETTINGS IDs above 2^24-1, window deltas above 2^31-1.
[[nodiscard]] absl::Status AppendFrame(const Frame& frame, std::string* out);
[[nodiscard]] absl::StatusOr<std::string> EncodeFrame(const Frame& frame);

// Incremental decoder of the peer's byte stream. Append() bytes as they arrive, then call
// Next() until it returns std::nullopt (needs more bytes). An error is final: the stream can
// no longer be framed, and every later Next() returns the same error.
//
// Errors (INVALID_ARGUMENT) are what the Go reader rejects (kubernetes-streaming.md §5.1):
// an unknown control type (anything but 1, 2, 3, 4, 6, 7, 8, 9); RST_STREAM with status 0;
// PING with ID 0 or flags other than 0; GOAWAY and WINDOW_UPDATE with flags other than 0;
// GOAWAY, WINDOW_UPDATE, RST_STREAM, PING or SETTINGS whose length does not match their
// format; a control payload above `max_control_payload`; stream ID 0 in SYN_STREAM,
// SYN_REPLY, RST_STREAM, HEADERS or DATA. Beyond the Go reader: a version other than 3,
// and SYN_STREAM shorter than 10 bytes or SYN_REPLY/HEADERS shorter than 4 (their fixed
// fields would not fit). The limit is checked as soon as a frame's 8-byte header is in, so
// an oversized frame is never buffered.
class FrameParser {
 public:
  // `max_control_payload` is clamped to [kMinControlPayloadLimit, kMaxFramePayload].
  explicit FrameParser(uint32_t max_control_payload = kMaxFramePayload);

  void Append(absl::string_view bytes);
  [[nodiscard]] absl::StatusOr<std::optional<Frame>> Next();

  // Bytes received but not yet returned as frames (a partial frame at the end).
  size_t buffered_bytes() const { return buffer_.size() - offset_; }
  uint32_t max_control_payload() const { return max_control_payload_; }

 private:
  uint32_t max_control_payload_;
  std::string buffer_;
  size_t offset_ = 0;
  absl::Status error_;
};

}  // namespace berth::cri::spdy
