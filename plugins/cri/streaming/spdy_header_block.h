// SPDX-License-Identifier: Apache-2.0
// SPDY/3 name/value header blocks (spdy-3.1.md §2.6.10, kubernetes-streaming.md §5.2): the
// plain layout, and the two zlib contexts of a session that compress it.
//
// Plain layout: a 32-bit pair count, then per pair a 32-bit name length, the name, a 32-bit
// value length and the value; several values of one name are joined with NUL.
//
// Compression: each direction of a session is ONE zlib stream (RFC 1950) primed with the
// SPDY/3 dictionary, living as long as the connection. Every block is the next piece of that
// stream, ended with Z_SYNC_FLUSH, so only the first block of each direction carries the
// zlib header and DICTID (78 xx E3 C6 A7 C2). A HeaderCompressor / HeaderDecompressor pair
// is therefore created once per connection and never reset; every received block must be
// decompressed, even that of a stream being rejected, or the context desynchronises.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

struct z_stream_s;  // zlib.h stays out of this header

namespace berth::cri::spdy {

// Name/value pairs in wire order. Names are lower case. A NUL-joined value arrives as
// several pairs with the same name (as Go's http.Header holds it).
using Headers = std::vector<std::pair<std::string, std::string>>;

// The first value of `name`, compared ASCII case-insensitively (kubernetes-streaming.md
// §5.2: match names case-insensitively).
std::optional<absl::string_view> FindHeader(const Headers& headers, absl::string_view name);

// The 1423-byte SPDY/3 dictionary (spdy3-zlib-dictionary.hex) and its Adler-32, the DICTID
// that a zlib header announcing it carries.
absl::string_view Spdy3Dictionary();
inline constexpr uint32_t kSpdy3DictionaryAdler32 = 0xe3c6a7c2;

// The Go reader's limits (moby/spdystream v0.5 defaults).
struct HeaderBlockLimits {
  size_t max_pairs = 1000;
  size_t max_name_or_value_bytes = 1 << 20;
};

// The plain block of `headers`. Names are lower-cased (the Go writer does the same) and the
// values of a repeated name are NUL-joined into one pair at the name's first position.
// INVALID_ARGUMENT for an empty name, a name or value containing NUL, or a field above
// 2^24-1 bytes.
[[nodiscard]] absl::StatusOr<std::string> EncodeHeaderBlock(const Headers& headers);

// Parses a plain block. Names are lower-cased and NUL-joined values split into pairs.
// INVALID_ARGUMENT for a truncated block, bytes after the last pair, an empty name, a name
// repeated within the block, or a limit exceeded. These are stream errors (the compression
// state is intact): the session answers them with RST_STREAM PROTOCOL_ERROR.
[[nodiscard]] absl::StatusOr<Headers> DecodeHeaderBlock(absl::string_view plain,
                                                        const HeaderBlockLimits& limits = {});

// Headers the Go reader refuses in a block (connection, keep-alive, proxy-connection,
// transfer-encoding; in a SYN_STREAM also host). INVALID_ARGUMENT naming the header.
[[nodiscard]] absl::Status CheckNoHopByHopHeaders(const Headers& headers, bool is_syn_stream);

// The compressing side of one direction. Not thread-safe.
class HeaderCompressor {
 public:
  // `level` 0-9 or -1 (zlib default); Go uses 9, which makes the first empty block exactly
  // as long as Go's. `mem_level` 1-9 trades memory for speed (8 is zlib's default; a
  // compressor holds about 128 KiB + 2^(mem_level+9) bytes).
  [[nodiscard]] static absl::StatusOr<HeaderCompressor> Create(int level = 9, int mem_level = 8);

  HeaderCompressor(HeaderCompressor&&) noexcept;
  HeaderCompressor& operator=(HeaderCompressor&&) noexcept;
  ~HeaderCompressor();

  // Compresses `plain` (a whole plain block) as the next piece of the stream, ended with a
  // sync flush. After an error the compressor is unusable (INTERNAL; the stream is broken).
  [[nodiscard]] absl::StatusOr<std::string> Compress(absl::string_view plain);

  // Plain encode + compress.
  [[nodiscard]] absl::StatusOr<std::string> CompressHeaders(const Headers& headers);

 private:
  struct Deleter {
    void operator()(z_stream_s* stream) const;
  };
  HeaderCompressor() = default;

  std::unique_ptr<z_stream_s, Deleter> stream_;
  absl::Status error_;
};

// The decompressing side of one direction. Not thread-safe.
class HeaderDecompressor {
 public:
  // `max_block_bytes` bounds one decompressed block (a zlib bomb stops there, and the
  // session with it).
  [[nodiscard]] static absl::StatusOr<HeaderDecompressor> Create(size_t max_block_bytes = 4 << 20);

  HeaderDecompressor(HeaderDecompressor&&) noexcept;
  HeaderDecompressor& operator=(HeaderDecompressor&&) noexcept;
  ~HeaderDecompressor();

  // Inflates exactly the bytes of one frame's block; the dictionary is supplied when zlib
  // asks for it (Z_NEED_DICT, on the first block). Errors (INVALID_ARGUMENT for bad peer
  // data, INTERNAL for zlib failures) are session errors: the stream is unusable afterwards.
  [[nodiscard]] absl::StatusOr<std::string> Decompress(absl::string_view block);

  // Decompress + plain decode. A decompression failure is returned as is; a decode failure
  // of an intact block is returned in the inner StatusOr, so that the caller can tell a
  // stream error from a session error.
  [[nodiscard]] absl::StatusOr<absl::StatusOr<Headers>> DecompressHeaders(
      absl::string_view block, const HeaderBlockLimits& limits = {});

 private:
  struct Deleter {
    void operator()(z_stream_s* stream) const;
  };
  HeaderDecompressor() = default;

  std::unique_ptr<z_stream_s, Deleter> stream_;
  size_t max_block_bytes_ = 0;
  absl::Status error_;
};

}  // namespace berth::cri::spdy
