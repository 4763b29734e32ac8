// SPDX-License-Identifier: Apache-2.0
// Applies an OCI layer (tar, tar+gzip, tar+zstd) to a directory, in overlayfs form: whiteouts
// become 0/0 character devices, opaque directories get trusted.overlay.opaque=y (or, with
// apply_whiteouts, in native form: what they hide is removed). The security
// model (nothing is ever written outside the target directory, symlinks are never followed)
// is described in docs/unpack.md.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace berth::image {

enum class Compression { kNone, kGzip, kZstd };
std::string_view CompressionName(Compression c);

struct UnpackOptions {
  // The descriptor's media type; a hint only (the compression is detected from the bytes).
  // A mismatch is reported through `warn`; an encrypted layer (+encrypted) is refused.
  std::string media_type{};
  // Names the layer in errors and warnings, e.g. its digest. Default: the blob path, or
  // "layer stream".
  std::string layer_name{};
  // chown entries to the tar's numeric uid/gid (uname/gname are ignored, as the OCI spec
  // says). Needs CAP_CHOWN; turn off to unpack as an unprivileged user (everything is then
  // owned by the caller, and setuid/setgid bits are dropped).
  bool preserve_ownership = true;
  // The native form, for a target directory that holds a full copy of the lower layers (the
  // native snapshotter) rather than an overlay upper directory: a whiteout removes what it
  // names, an opaque directory loses everything below it that this layer does not write. No
  // 0/0 character devices, no trusted.overlay.* xattrs (so no CAP_SYS_ADMIN needed).
  bool apply_whiteouts = false;
  // Receives non-fatal findings (an xattr the filesystem refused, a media type that does not
  // match the content, a socket entry skipped). May be empty.
  std::function<void(std::string_view)> warn{};
};

struct UnpackResult {
  std::string diff_id{};  // "sha256:<hex>" of the uncompressed tar stream
  int64_t bytes = 0;      // length of the uncompressed tar stream
  int64_t compressed_bytes = 0;
  int64_t entries = 0;      // tar entries applied, whiteouts included
  int64_t whiteouts = 0;    // .wh. entries (0/0 character devices, or removals)
  int64_t opaque_dirs = 0;  // .wh..wh..opq entries (trusted.overlay.opaque, or removals)
  int64_t skipped_xattrs = 0;
  Compression compression = Compression::kNone;
};

// Returns the next chunk of the (compressed) layer; an empty view at the end. The view must
// stay valid until the next call. An error aborts the unpack with that error.
using ChunkReader = std::function<absl::StatusOr<std::string_view>()>;

// Unpacks the layer blob at `blob` into `target_dir`, which must exist (an overlay upperdir
// or a plain directory; entries already there are replaced as the OCI spec says).
//
// Errors name the layer: INVALID_ARGUMENT for an entry that would escape target_dir (".."
// components, symlinks in its path, hard links leaving the layer's tree) or is malformed;
// DATA_LOSS for a truncated or corrupt archive; UNIMPLEMENTED for a compression OCI does
// not define; RESOURCE_EXHAUSTED when the disk is full. On any error the content of
// target_dir is unspecified (partly applied): the caller must discard the whole directory.
[[nodiscard]] absl::StatusOr<UnpackResult> UnpackLayer(const std::filesystem::path& blob,
                                                       const std::filesystem::path& target_dir,
                                                       const UnpackOptions& options);

// Same, reading the compressed layer from `read_chunk` (e.g. straight from the network).
// The caller verifies the compressed digest itself; diff_id is computed here as above.
[[nodiscard]] absl::StatusOr<UnpackResult> UnpackLayer(const ChunkReader& read_chunk,
                                                       const std::filesystem::path& target_dir,
                                                       const UnpackOptions& options);

}  // namespace berth::image
