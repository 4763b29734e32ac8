// SPDX-License-Identifier: Apache-2.0
// Test helpers for the SPDY tests: hex decoding of the captured traces, and a minimal SPDY
// client that shares only the frame encoder/parser with the library. Its header compression
// runs on zlib directly (its own deflate and inflate contexts, not HeaderCompressor /
// HeaderDecompressor), so that what the session emits is checked independently.
#pragma once

#include <gtest/gtest.h>
#include <zlib.h>

#include <cctype>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "plugins/cri/streaming/spdy_frame.h"
#include "plugins/cri/streaming/spdy_header_block.h"

namespace berth::cri::spdy::testing {

// "80030001 0000 |29" -> bytes; everything but hex digits is ignored.
inline std::string Unhex(absl::string_view hex) {
  std::string digits;
  for (char c : hex) {
    if (std::isxdigit(static_cast<unsigned char>(c))) digits.push_back(c);
  }
  EXPECT_EQ(digits.size() % 2, 0u) << hex;
  std::string out;
  for (size_t i = 0; i + 1 < digits.size(); i += 2) {
    out.push_back(static_cast<char>(std::stoi(digits.substr(i, 2), nullptr, 16)));
  }
  return out;
}

inline std::string Hex(absl::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 0xf]);
  }
  return out;
}

// One direction's deflate context, on zlib directly.
class RawDeflater {
 public:
  // zlib_stream: a fresh RFC 1950 stream primed with the SPDY dictionary, as a new peer
  // starts one. Otherwise a raw deflate continuation of a stream whose previous blocks
  // decompressed to `history` (so that it can follow blocks another compressor produced,
  // e.g. Go's first block in a trace): the window is primed with dictionary + history.
  explicit RawDeflater(int level = 6, bool zlib_stream = true, absl::string_view history = {})
      : stream_(new z_stream{}) {
    const int rc = deflateInit2(stream_.get(), level, Z_DEFLATED, zlib_stream ? 15 : -15, 8,
                                Z_DEFAULT_STRATEGY);
    EXPECT_EQ(rc, Z_OK);
    std::string dictionary(Spdy3Dictionary());
    dictionary.append(history.data(), history.size());
    EXPECT_EQ(deflateSetDictionary(stream_.get(), reinterpret_cast<const Bytef*>(dictionary.data()),
                                   static_cast<uInt>(dictionary.size())),
              Z_OK);
  }
  RawDeflater(RawDeflater&&) = default;
  ~RawDeflater() {
    if (stream_ != nullptr) deflateEnd(stream_.get());
  }

  std::string Compress(absl::string_view plain) {
    stream_->next_in = reinterpret_cast<Bytef*>(const_cast<char*>(plain.data()));
    stream_->avail_in = static_cast<uInt>(plain.size());
    std::string out;
    char buffer[1024];
    do {
      stream_->next_out = reinterpret_cast<Bytef*>(buffer);
      stream_->avail_out = sizeof(buffer);
      const int rc = deflate(stream_.get(), Z_SYNC_FLUSH);
      EXPECT_TRUE(rc == Z_OK || rc == Z_BUF_ERROR) << rc;
      out.append(buffer, sizeof(buffer) - stream_->avail_out);
    } while (stream_->avail_out == 0);
    EXPECT_EQ(stream_->avail_in, 0u);
    return out;
  }

 private:
  std::unique_ptr<z_stream> stream_;
};

// One direction's inflate context, on zlib directly.
class RawInflater {
 public:
  RawInflater() : stream_(new z_stream{}) { EXPECT_EQ(inflateInit(stream_.get()), Z_OK); }
  RawInflater(RawInflater&&) = default;
  ~RawInflater() {
    if (stream_ != nullptr) inflateEnd(stream_.get());
  }

  // Inflates one block; sets *ok to false on any zlib error.
  std::string Inflate(absl::string_view block, bool* ok) {
    *ok = true;
    stream_->next_in = reinterpret_cast<Bytef*>(const_cast<char*>(block.data()));
    stream_->avail_in = static_cast<uInt>(block.size());
    std::string out;
    char buffer[1024];
    for (;;) {
      stream_->next_out = reinterpret_cast<Bytef*>(buffer);
      stream_->avail_out = sizeof(buffer);
      int rc = inflate(stream_.get(), Z_SYNC_FLUSH);
      if (rc == Z_NEED_DICT) {
        const absl::string_view dictionary = Spdy3Dictionary();
        rc = inflateSetDictionary(stream_.get(), reinterpret_cast<const Bytef*>(dictionary.data()),
                                  static_cast<uInt>(dictionary.size()));
        if (rc != Z_OK) break;
        continue;
      }
      out.append(buffer, sizeof(buffer) - stream_->avail_out);
      if (rc == Z_BUF_ERROR && stream_->avail_in == 0) return out;
      if (rc != Z_OK) break;
      if (stream_->avail_in == 0 && stream_->avail_out != 0) return out;
    }
    *ok = false;
    return out;
  }

 private:
  std::unique_ptr<z_stream> stream_;
};

// The plain block of `pairs` written by hand (not with EncodeHeaderBlock).
inline std::string PlainBlock(const std::vector<std::pair<std::string, std::string>>& pairs) {
  auto u32 = [](uint32_t v) {
    return std::string{static_cast<char>(v >> 24), static_cast<char>(v >> 16),
                       static_cast<char>(v >> 8), static_cast<char>(v)};
  };
  std::string out = u32(static_cast<uint32_t>(pairs.size()));
  for (const auto& [name, value] : pairs) {
    out += u32(static_cast<uint32_t>(name.size())) + name;
    out += u32(static_cast<uint32_t>(value.size())) + value;
  }
  return out;
}

inline std::string Encoded(const Frame& frame) {
  absl::StatusOr<std::string> bytes = EncodeFrame(frame);
  EXPECT_TRUE(bytes.ok()) << bytes.status();
  return bytes.ok() ? *bytes : std::string();
}

// The client end of a session.
class TestClient {
 public:
  explicit TestClient(RawDeflater deflater = RawDeflater()) : deflater_(std::move(deflater)) {}

  std::string SynStream(uint32_t id,
                        const std::vector<std::pair<std::string, std::string>>& headers,
                        uint8_t flags = 0) {
    SynStreamFrame frame;
    frame.stream_id = id;
    frame.flags = flags;
    frame.header_block = deflater_.Compress(PlainBlock(headers));
    return Encoded(frame);
  }
  std::string Headers(uint32_t id, const std::vector<std::pair<std::string, std::string>>& h,
                      uint8_t flags = 0) {
    return Encoded(HeadersFrame{id, flags, deflater_.Compress(PlainBlock(h))});
  }
  std::string Data(uint32_t id, absl::string_view data, uint8_t flags = 0) {
    return Encoded(DataFrame{id, flags, std::string(data)});
  }
  std::string Fin(uint32_t id) { return Data(id, "", kFlagFin); }
  std::string Rst(uint32_t id, RstStatus status = RstStatus::kCancel) {
    return Encoded(RstStreamFrame{id, static_cast<uint32_t>(status)});
  }
  std::string Ping(uint32_t id) { return Encoded(PingFrame{id}); }
  std::string GoAway(uint32_t last, uint32_t status = 0) {
    return Encoded(GoAwayFrame{last, status});
  }

  // Parses what the server wrote; SYN_REPLY/HEADERS blocks are inflated with the client's
  // own context and their plain bytes kept in plain_blocks().
  std::vector<Frame> Read(absl::string_view server_bytes) {
    parser_.Append(server_bytes);
    std::vector<Frame> frames;
    for (;;) {
      absl::StatusOr<std::optional<Frame>> next = parser_.Next();
      EXPECT_TRUE(next.ok()) << next.status();
      if (!next.ok() || !next->has_value()) break;
      if (auto* reply = std::get_if<SynReplyFrame>(&**next)) {
        bool ok = false;
        plain_blocks_.push_back(inflater_.Inflate(reply->header_block, &ok));
        EXPECT_TRUE(ok) << "SYN_REPLY block " << Hex(reply->header_block);
      }
      frames.push_back(**std::move(next));
    }
    return frames;
  }
  const std::vector<std::string>& plain_blocks() const { return plain_blocks_; }

 private:
  RawDeflater deflater_;
  RawInflater inflater_;
  FrameParser parser_;
  std::vector<std::string> plain_blocks_;
};

}  // namespace berth::cri::spdy::testing
