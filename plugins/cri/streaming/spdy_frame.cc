// SPDX-License-Identifier: Apache-2.0
#include "plugins/cri/streaming/spdy_frame.h"

#include <algorithm>
#include <type_traits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/status_macros.h"

namespace berth::cri::spdy {
namespace {

constexpr uint32_t kControlBit = 0x80000000u;

void PutU32(uint32_t v, std::string* out) {
  const char bytes[4] = {static_cast<char>(v >> 24), static_cast<char>(v >> 16),
                         static_cast<char>(v >> 8), static_cast<char>(v)};
  out->append(bytes, 4);
}

uint32_t GetU32(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return (uint32_t{u[0]} << 24) | (uint32_t{u[1]} << 16) | (uint32_t{u[2]} << 8) | uint32_t{u[3]};
}

// The 8-byte common header of a control frame.
void PutControlHeader(ControlType type, uint8_t flags, uint32_t length, std::string* out) {
  PutU32(kControlBit | (uint32_t{kSpdyVersion} << 16) | static_cast<uint16_t>(type), out);
  PutU32((uint32_t{flags} << 24) | length, out);
}

absl::Status CheckStreamId(uint32_t id, absl::string_view frame, bool zero_allowed) {
  if (id == 0 && !zero_allowed) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot encode SPDY ", frame, ": stream ID 0 is not a valid stream"));
  }
  if (id > kMaxStreamId) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot encode SPDY ", frame, ": stream ID ", id, " does not fit in 31 bits"));
  }
  return absl::OkStatus();
}

absl::Status CheckPayload(size_t length, absl::string_view frame) {
  if (length > kMaxFramePayload) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot encode SPDY ", frame, ": payload of ", length,
                     " bytes exceeds the 24-bit length limit of ", kMaxFramePayload,
                     " bytes (split DATA into several frames)"));
  }
  return absl::OkStatus();
}

absl::Status Encode(const DataFrame& f, std::string* out) {
  RETURN_IF_ERROR(CheckStreamId(f.stream_id, "DATA", false));
  RETURN_IF_ERROR(CheckPayload(f.data.size(), "DATA"));
  PutU32(f.stream_id, out);
  PutU32((uint32_t{f.flags} << 24) | static_cast<uint32_t>(f.data.size()), out);
  out->append(f.data);
  return absl::OkStatus();
}

absl::Status Encode(const SynStreamFrame& f, std::string* out) {
  RETURN_IF_ERROR(CheckStreamId(f.stream_id, "SYN_STREAM", false));
  RETURN_IF_ERROR(CheckStreamId(f.associated_stream_id, "SYN_STREAM", true));
  if (f.priority > 7) {
    return absl::InvalidArgumentError(absl::StrCat("cannot encode SPDY SYN_STREAM: priority ",
                                                   f.priority, " is out of range (0-7)"));
  }
  const size_t length = 10 + f.header_block.size();
  RETURN_IF_ERROR(CheckPayload(length, "SYN_STREAM"));
  PutControlHeader(ControlType::kSynStream, f.flags, static_cast<uint32_t>(length), out);
  PutU32(f.stream_id, out);
  PutU32(f.associated_stream_id, out);
  out->push_back(static_cast<char>(f.priority << 5));
  out->push_back(static_cast<char>(f.slot));
  out->append(f.header_block);
  return absl::OkStatus();
}

absl::Status EncodeStreamBlock(ControlType type, absl::string_view name, uint32_t stream_id,
                               uint8_t flags, const std::string& block, std::string* out) {
  RETURN_IF_ERROR(CheckStreamId(stream_id, name, false));
  const size_t length = 4 + block.size();
  RETURN_IF_ERROR(CheckPayload(length, name));
  PutControlHeader(type, flags, static_cast<uint32_t>(length), out);
  PutU32(stream_id, out);
  out->append(block);
  return absl::OkStatus();
}

absl::Status Encode(const SynReplyFrame& f, std::string* out) {
  return EncodeStreamBlock(ControlType::kSynReply, "SYN_REPLY", f.stream_id, f.flags,
                           f.header_block, out);
}

absl::Status Encode(const HeadersFrame& f, std::string* out) {
  return EncodeStreamBlock(ControlType::kHeaders, "HEADERS", f.stream_id, f.flags, f.header_block,
                           out);
}

absl::Status Encode(const RstStreamFrame& f, std::string* out) {
  RETURN_IF_ERROR(CheckStreamId(f.stream_id, "RST_STREAM", false));
  if (f.status == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot encode SPDY RST_STREAM for stream ", f.stream_id,
                     ": status 0 is not a valid status code (the Go peer treats it as fatal)"));
  }
  PutControlHeader(ControlType::kRstStream, f.flags, 8, out);
  PutU32(f.stream_id, out);
  PutU32(f.status, out);
  return absl::OkStatus();
}

absl::Status Encode(const SettingsFrame& f, std::string* out) {
  const size_t length = 4 + 8 * f.entries.size();
  RETURN_IF_ERROR(CheckPayload(length, "SETTINGS"));
  for (const SettingsEntry& e : f.entries) {
    if (e.id > 0xffffff) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot encode SPDY SETTINGS: ID ", e.id, " does not fit in 24 bits"));
    }
  }
  PutControlHeader(ControlType::kSettings, f.flags, static_cast<uint32_t>(length), out);
  PutU32(static_cast<uint32_t>(f.entries.size()), out);
  for (const SettingsEntry& e : f.entries) {
    PutU32((uint32_t{e.flags} << 24) | e.id, out);
    PutU32(e.value, out);
  }
  return absl::OkStatus();
}

absl::Status Encode(const PingFrame& f, std::string* out) {
  if (f.id == 0) {
    return absl::InvalidArgumentError(
        "cannot encode SPDY PING: ID 0 is invalid (the Go peer treats it as fatal)");
  }
  PutControlHeader(ControlType::kPing, 0, 4, out);
  PutU32(f.id, out);
  return absl::OkStatus();
}

absl::Status Encode(const GoAwayFrame& f, std::string* out) {
  RETURN_IF_ERROR(CheckStreamId(f.last_good_stream_id, "GOAWAY", true));
  PutControlHeader(ControlType::kGoAway, 0, 8, out);
  PutU32(f.last_good_stream_id, out);
  PutU32(f.status, out);
  return absl::OkStatus();
}

absl::Status Encode(const WindowUpdateFrame& f, std::string* out) {
  RETURN_IF_ERROR(CheckStreamId(f.stream_id, "WINDOW_UPDATE", true));
  if (f.delta > kMaxStreamId) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot encode SPDY WINDOW_UPDATE: delta ", f.delta, " exceeds 2^31-1"));
  }
  PutControlHeader(ControlType::kWindowUpdate, 0, 8, out);
  PutU32(f.stream_id, out);
  PutU32(f.delta, out);
  return absl::OkStatus();
}

absl::string_view ControlTypeName(uint16_t type) {
  switch (type) {
    case 1:
      return "SYN_STREAM";
    case 2:
      return "SYN_REPLY";
    case 3:
      return "RST_STREAM";
    case 4:
      return "SETTINGS";
    case 5:
      return "NOOP (SPDY/2)";
    case 6:
      return "PING";
    case 7:
      return "GOAWAY";
    case 8:
      return "HEADERS";
    case 9:
      return "WINDOW_UPDATE";
    case 10:
      return "CREDENTIAL";
    default:
      return "unknown";
  }
}

absl::Status Malformed(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("malformed SPDY frame from the peer: ", what));
}

// Decodes one complete control frame whose payload is `p` (length already checked against
// the limit).
absl::StatusOr<Frame> DecodeControl(uint16_t version, uint16_t type, uint8_t flags,
                                    absl::string_view p) {
  const absl::string_view name = ControlTypeName(type);
  if (version != kSpdyVersion) {
    return Malformed(absl::StrFormat(
        "control frame type %d (%s) has SPDY version %d; only version 3 is spoken here "
        "(is the peer really a SPDY/3.1 client?)",
        type, name, version));
  }
  const auto length_error = [&](absl::string_view expected) {
    return Malformed(absl::StrCat(name, " has length ", p.size(), ", expected ", expected));
  };
  switch (type) {
    case static_cast<uint16_t>(ControlType::kSynStream): {
      if (p.size() < 10) return length_error("at least 10");
      SynStreamFrame f;
      f.flags = flags;
      f.stream_id = GetU32(p.data()) & kMaxStreamId;
      f.associated_stream_id = GetU32(p.data() + 4) & kMaxStreamId;
      f.priority = static_cast<uint8_t>(static_cast<unsigned char>(p[8]) >> 5);
      f.slot = static_cast<uint8_t>(p[9]);
      f.header_block = std::string(p.substr(10));
      if (f.stream_id == 0) return Malformed("SYN_STREAM with stream ID 0");
      return f;
    }
    case static_cast<uint16_t>(ControlType::kSynReply):
    case static_cast<uint16_t>(ControlType::kHeaders): {
      if (p.size() < 4) return length_error("at least 4");
      const uint32_t id = GetU32(p.data()) & kMaxStreamId;
      if (id == 0) return Malformed(absl::StrCat(name, " with stream ID 0"));
      if (type == static_cast<uint16_t>(ControlType::kSynReply)) {
        return SynReplyFrame{id, flags, std::string(p.substr(4))};
      }
      return HeadersFrame{id, flags, std::string(p.substr(4))};
    }
    case static_cast<uint16_t>(ControlType::kRstStream): {
      if (p.size() != 8) return length_error("8");
      RstStreamFrame f;
      f.stream_id = GetU32(p.data()) & kMaxStreamId;
      f.status = GetU32(p.data() + 4);
      f.flags = flags;
      if (f.status == 0) {
        return Malformed(absl::StrCat("RST_STREAM for stream ", f.stream_id,
                                      " with status 0, which is not a valid status code"));
      }
      if (f.stream_id == 0) return Malformed("RST_STREAM with stream ID 0");
      return f;
    }
    case static_cast<uint16_t>(ControlType::kSettings): {
      if (p.size() < 4) return length_error("at least 4");
      const uint32_t count = GetU32(p.data());
      if (count > (p.size() - 4) / 8 || p.size() != 4 + 8 * size_t{count}) {
        return length_error(absl::StrCat("4 + 8 * ", count, " for ", count, " entries"));
      }
      SettingsFrame f;
      f.flags = flags;
      f.entries.reserve(count);
      for (uint32_t i = 0; i < count; ++i) {
        const char* e = p.data() + 4 + 8 * size_t{i};
        const uint32_t word = GetU32(e);
        f.entries.push_back(
            SettingsEntry{static_cast<uint8_t>(word >> 24), word & 0xffffff, GetU32(e + 4)});
      }
      return f;
    }
    case static_cast<uint16_t>(ControlType::kPing): {
      if (p.size() != 4) return length_error("4");
      PingFrame f{GetU32(p.data())};
      if (f.id == 0) return Malformed("PING with ID 0");
      if (flags != 0) {
        return Malformed(absl::StrFormat("PING %u with flags 0x%02x (must be 0)", f.id, flags));
      }
      return f;
    }
    case static_cast<uint16_t>(ControlType::kGoAway): {
      if (flags != 0) return Malformed(absl::StrFormat("GOAWAY with flags 0x%02x", flags));
      if (p.size() != 8) return length_error("8");
      return GoAwayFrame{GetU32(p.data()) & kMaxStreamId, GetU32(p.data() + 4)};
    }
    case static_cast<uint16_t>(ControlType::kWindowUpdate): {
      if (flags != 0) {
        return Malformed(absl::StrFormat("WINDOW_UPDATE with flags 0x%02x", flags));
      }
      if (p.size() != 8) return length_error("8");
      return WindowUpdateFrame{GetU32(p.data()) & kMaxStreamId,
                               GetU32(p.data() + 4) & kMaxStreamId};
    }
    default:
      return Malformed(absl::StrFormat(
          "control frame of unknown type %d (%s, flags 0x%02x, %d bytes); the Go peer "
          "treats this as fatal too",
          type, name, flags, p.size()));
  }
}

}  // namespace

std::string RstStatusName(uint32_t status) {
  switch (status) {
    case 1:
      return "PROTOCOL_ERROR";
    case 2:
      return "INVALID_STREAM";
    case 3:
      return "REFUSED_STREAM";
    case 4:
      return "UNSUPPORTED_VERSION";
    case 5:
      return "CANCEL";
    case 6:
      return "INTERNAL_ERROR";
    case 7:
      return "FLOW_CONTROL_ERROR";
    case 8:
      return "STREAM_IN_USE";
    case 9:
      return "STREAM_ALREADY_CLOSED";
    case 11:
      return "FRAME_TOO_LARGE";
    default:
      return absl::StrCat("unknown status ", status);
  }
}

std::string GoAwayStatusName(uint32_t status) {
  switch (status) {
    case 0:
      return "OK";
    case 1:
      return "PROTOCOL_ERROR";
    case 2:
      return "INTERNAL_ERROR";
    default:
      return absl::StrCat("unknown status ", status);
  }
}

std::string DescribeFrame(const Frame& frame) {
  return std::visit(
      [](const auto& f) -> std::string {
        using T = std::decay_t<decltype(f)>;
        if constexpr (std::is_same_v<T, DataFrame>) {
          return absl::StrFormat("DATA stream=%u flags=0x%02x length=%u", f.stream_id, f.flags,
                                 f.data.size());
        } else if constexpr (std::is_same_v<T, SynStreamFrame>) {
          return absl::StrFormat(
              "SYN_STREAM stream=%u associated=%u priority=%u flags=0x%02x block=%u bytes",
              f.stream_id, f.associated_stream_id, f.priority, f.flags, f.header_block.size());
        } else if constexpr (std::is_same_v<T, SynReplyFrame>) {
          return absl::StrFormat("SYN_REPLY stream=%u flags=0x%02x block=%u bytes", f.stream_id,
                                 f.flags, f.header_block.size());
        } else if constexpr (std::is_same_v<T, RstStreamFrame>) {
          return absl::StrFormat("RST_STREAM stream=%u status=%s", f.stream_id,
                                 RstStatusName(f.status));
        } else if constexpr (std::is_same_v<T, SettingsFrame>) {
          return absl::StrFormat("SETTINGS flags=0x%02x entries=%u", f.flags, f.entries.size());
        } else if constexpr (std::is_same_v<T, PingFrame>) {
          return absl::StrFormat("PING id=%u", f.id);
        } else if constexpr (std::is_same_v<T, GoAwayFrame>) {
          return absl::StrFormat("GOAWAY last-good=%u status=%s", f.last_good_stream_id,
                                 GoAwayStatusName(f.status));
        } else if constexpr (std::is_same_v<T, HeadersFrame>) {
          return absl::StrFormat("HEADERS stream=%u flags=0x%02x block=%u bytes", f.stream_id,
                                 f.flags, f.header_block.size());
        } else {
          return absl::StrFormat("WINDOW_UPDATE stream=%u delta=%u", f.stream_id, f.delta);
        }
      },
      frame);
}

absl::Status AppendFrame(const Frame& frame, std::string* out) {
  std::string encoded;
  absl::Status status = std::visit([&](const auto& f) { return Encode(f, &encoded); }, frame);
  if (status.ok()) out->append(encoded);
  return status;
}

absl::StatusOr<std::string> EncodeFrame(const Frame& frame) {
  std::string out;
  absl::Status status = AppendFrame(frame, &out);
  if (!status.ok()) return status;
  return out;
}

FrameParser::FrameParser(uint32_t max_control_payload)
    : max_control_payload_(
          std::clamp(max_control_payload, kMinControlPayloadLimit, kMaxFramePayload)) {}

void FrameParser::Append(absl::string_view bytes) {
  if (!error_.ok()) return;
  // Drop what has been consumed before growing the buffer.
  if (offset_ > 0 && (offset_ == buffer_.size() || offset_ >= size_t{64} * 1024)) {
    buffer_.erase(0, offset_);
    offset_ = 0;
  }
  buffer_.append(bytes.data(), bytes.size());
}

absl::StatusOr<std::optional<Frame>> FrameParser::Next() {
  if (!error_.ok()) return error_;
  const size_t available = buffer_.size() - offset_;
  if (available < kFrameHeaderSize) return std::nullopt;
  const char* h = buffer_.data() + offset_;
  const uint32_t first = GetU32(h);
  const uint32_t second = GetU32(h + 4);
  const uint8_t flags = static_cast<uint8_t>(second >> 24);
  const uint32_t length = second & 0xffffff;
  const bool control = (first & kControlBit) != 0;
  if (control && length > max_control_payload_) {
    error_ = Malformed(absl::StrFormat(
        "%s control frame with a %u-byte payload exceeds the limit of %u bytes",
        ControlTypeName(static_cast<uint16_t>(first & 0xffff)), length, max_control_payload_));
    return error_;
  }
  if (available < kFrameHeaderSize + length) return std::nullopt;
  const absl::string_view payload(h + kFrameHeaderSize, length);
  offset_ += kFrameHeaderSize + length;
  if (!control) {
    const uint32_t stream_id = first & kMaxStreamId;
    if (stream_id == 0) {
      error_ = Malformed(absl::StrCat("DATA frame with stream ID 0 (", length, " bytes)"));
      return error_;
    }
    return std::optional<Frame>(DataFrame{stream_id, flags, std::string(payload)});
  }
  absl::StatusOr<Frame> frame =
      DecodeControl(static_cast<uint16_t>((first >> 16) & 0x7fff),
                    static_cast<uint16_t>(first & 0xffff), flags, payload);
  if (!frame.ok()) {
    error_ = frame.status();
    return error_;
  }
  return std::optional<Frame>(*std::move(frame));
}

}  // namespace berth::cri::spdy
