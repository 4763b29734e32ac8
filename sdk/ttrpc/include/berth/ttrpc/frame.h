// SPDX-License-Identifier: Apache-2.0
// ttrpc message framing (containerd/ttrpc PROTOCOL.md): a 10-byte header -- data length
// (u32 big-endian), stream id (u32 big-endian), message type (u8), flags (u8) -- then at
// most 4 MiB of data. Requests and responses carry ttrpc.Request / ttrpc.Response.
//
// Streams (ttrpc 1.2 Data frames and the remote open/closed request flags) are not
// supported: the containerd shim v2 Task API is unary only. A server refuses a streaming
// request with UNIMPLEMENTED; a client never sends one and ignores Data frames.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace berth::ttrpc {

inline constexpr std::size_t kHeaderSize = 10;
inline constexpr std::uint32_t kMaxDataSize = 4u << 20;  // 4 MiB

inline constexpr std::uint8_t kTypeRequest = 0x01;
inline constexpr std::uint8_t kTypeResponse = 0x02;
inline constexpr std::uint8_t kTypeData = 0x03;

inline constexpr std::uint8_t kFlagRemoteClosed = 0x01;
inline constexpr std::uint8_t kFlagRemoteOpen = 0x02;
inline constexpr std::uint8_t kFlagNoData = 0x04;

struct FrameHeader {
  std::uint32_t length = 0;
  std::uint32_t stream_id = 0;
  std::uint8_t type = 0;
  std::uint8_t flags = 0;
};

struct Frame {
  std::uint32_t stream_id = 0;
  std::uint8_t type = 0;
  std::uint8_t flags = 0;
  std::string data;
};

// Writes the 10 header bytes into `out`.
void EncodeHeader(const FrameHeader& header, std::uint8_t out[kHeaderSize]);

// Header plus data; RESOURCE_EXHAUSTED if the data exceeds kMaxDataSize.
[[nodiscard]] absl::StatusOr<std::string> EncodeFrame(const Frame& frame);

// Parses a header. INVALID_ARGUMENT if fewer than 10 bytes, RESOURCE_EXHAUSTED if the
// declared length exceeds kMaxDataSize (the header is still returned through `header` when
// non-null, so a reader can skip the data and answer the stream).
[[nodiscard]] absl::StatusOr<FrameHeader> DecodeHeader(std::string_view bytes,
                                                       FrameHeader* header = nullptr);

// Parses one whole frame from the front of `bytes`; `consumed` receives its size.
// INVALID_ARGUMENT if truncated, RESOURCE_EXHAUSTED if oversized.
[[nodiscard]] absl::StatusOr<Frame> DecodeFrame(std::string_view bytes,
                                                std::size_t* consumed = nullptr);

// Blocking frame I/O on a stream socket. WriteFrame never raises SIGPIPE.
[[nodiscard]] absl::Status WriteFrame(int fd, const Frame& frame);

// Reads one frame. UNAVAILABLE on EOF or a socket error. An oversized frame has its data
// read and dropped, and is reported as RESOURCE_EXHAUSTED with `*skipped` (if non-null)
// holding its header, so the connection stays usable.
[[nodiscard]] absl::StatusOr<Frame> ReadFrame(int fd, FrameHeader* skipped = nullptr);

}  // namespace berth::ttrpc
