// SPDX-License-Identifier: Apache-2.0
// The few file operations the CNI plugin needs, with errors that name the path.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace berth::cni {

// The whole file; NOT_FOUND when absent, FAILED_PRECONDITION when larger than max_size.
[[nodiscard]] absl::StatusOr<std::string> ReadFile(const std::string& path, size_t max_size);

// Replaces `path` with `data` so that a crash leaves either the old or the new content: a
// temporary file in the same directory, fsync, rename, fsync of the directory.
[[nodiscard]] absl::Status WriteFileDurably(const std::string& path, std::string_view data);

// Unlinks `path` and syncs its directory. A missing file is not an error.
[[nodiscard]] absl::Status RemoveFileDurably(const std::string& path);

// Creates `path` and its missing parents with `mode`; an existing directory is fine.
[[nodiscard]] absl::Status MakeDirs(const std::string& path, mode_t mode);

}  // namespace berth::cni
