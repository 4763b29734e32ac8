// SPDX-License-Identifier: Apache-2.0
#include "berth/ttrpc/frame.h"

#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "io.h"

namespace berth::ttrpc {
namespace {

void PutU32(std::uint32_t v, std::uint8_t* out) {
  out[0] = static_cast<std::uint8_t>(v >> 24);
  out[1] = static_cast<std::uint8_t>(v >> 16);
  out[2] = static_cast<std::uint8_t>(v >> 8);
  out[3] = static_cast<std::uint8_t>(v);
}

std::uint32_t GetU32(const unsigned char* in) {
  return (std::uint32_t{in[0]} << 24) | (std::uint32_t{in[1]} << 16) | (std::uint32_t{in[2]} << 8) |
         std::uint32_t{in[3]};
}

absl::Status TooLarge(std::uint64_t length, std::uint32_t stream_id) {
  return absl::ResourceExhaustedError(
      absl::StrCat("ttrpc message of ", length, " bytes on stream ", stream_id,
                   " exceeds the maximum message size of ", kMaxDataSize, " bytes (4 MiB)"));
}

}  // namespace

void EncodeHeader(const FrameHeader& header, std::uint8_t out[kHeaderSize]) {
  PutU32(header.length, out);
  PutU32(header.stream_id, out + 4);
  out[8] = header.type;
  out[9] = header.flags;
}

absl::StatusOr<std::string> EncodeFrame(const Frame& frame) {
  if (frame.data.size() > kMaxDataSize) return TooLarge(frame.data.size(), frame.stream_id);
  std::string out(kHeaderSize + frame.data.size(), '\0');
  EncodeHeader(
      {static_cast<std::uint32_t>(frame.data.size()), frame.stream_id, frame.type, frame.flags},
      reinterpret_cast<std::uint8_t*>(out.data()));
  if (!frame.data.empty())
    std::memcpy(out.data() + kHeaderSize, frame.data.data(), frame.data.size());
  return out;
}

absl::StatusOr<FrameHeader> DecodeHeader(std::string_view bytes, FrameHeader* header) {
  if (bytes.size() < kHeaderSize) {
    return absl::InvalidArgumentError(absl::StrCat("truncated ttrpc frame header: ", bytes.size(),
                                                   " of ", kHeaderSize, " bytes"));
  }
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  FrameHeader h{GetU32(p), GetU32(p + 4), p[8], p[9]};
  if (header != nullptr) *header = h;
  if (h.length > kMaxDataSize) return TooLarge(h.length, h.stream_id);
  return h;
}

absl::StatusOr<Frame> DecodeFrame(std::string_view bytes, std::size_t* consumed) {
  absl::StatusOr<FrameHeader> h = DecodeHeader(bytes);
  if (!h.ok()) return h.status();
  if (bytes.size() - kHeaderSize < h->length) {
    return absl::InvalidArgumentError(
        absl::StrCat("truncated ttrpc frame on stream ", h->stream_id, ": header declares ",
                     h->length, " data bytes, only ", bytes.size() - kHeaderSize, " present"));
  }
  if (consumed != nullptr) *consumed = kHeaderSize + h->length;
  return Frame{h->stream_id, h->type, h->flags, std::string(bytes.substr(kHeaderSize, h->length))};
}

absl::Status WriteFrame(int fd, const Frame& frame) {
  absl::StatusOr<std::string> bytes = EncodeFrame(frame);
  if (!bytes.ok()) return bytes.status();
  return internal::WriteAll(fd, *bytes);
}

absl::StatusOr<Frame> ReadFrame(int fd, FrameHeader* skipped) {
  char head[kHeaderSize];
  if (absl::Status s = internal::ReadFull(fd, head, kHeaderSize); !s.ok()) return s;
  FrameHeader h;
  absl::StatusOr<FrameHeader> parsed = DecodeHeader(std::string_view(head, kHeaderSize), &h);
  if (!parsed.ok()) {
    // Drop the oversized data so the next frame starts on a header boundary.
    char sink[16384];
    std::uint64_t left = h.length;
    while (left > 0) {
      std::size_t n = left < sizeof(sink) ? static_cast<std::size_t>(left) : sizeof(sink);
      if (absl::Status s = internal::ReadFull(fd, sink, n); !s.ok()) return s;
      left -= n;
    }
    if (skipped != nullptr) *skipped = h;
    return parsed.status();
  }
  Frame f{h.stream_id, h.type, h.flags, std::string(h.length, '\0')};
  if (h.length > 0) {
    if (absl::Status s = internal::ReadFull(fd, f.data.data(), h.length); !s.ok()) return s;
  }
  return f;
}

}  // namespace berth::ttrpc
