// SPDX-License-Identifier: Apache-2.0
// Small helpers of berth-shim: hashing for the socket name, durable file writes, time
// formatting, runtime binary lookup.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace berth::shim {

// Lower-case hex SHA-256 of `data` (FIPS 180-4).
std::string Sha256Hex(std::string_view data);

// The whole file, or an error naming it.
[[nodiscard]] absl::StatusOr<std::string> ReadWholeFile(const std::string& path);

// Writes `data` to `path` durably: `<path>.tmp`, fsync, rename, fsync of the directory.
[[nodiscard]] absl::Status WriteFileDurably(const std::string& path, std::string_view data);

// RFC 3339 with nanoseconds, UTC ("2006-01-02T15:04:05.999999999Z"), and back.
std::string FormatRfc3339Nano(std::chrono::system_clock::time_point t);
[[nodiscard]] absl::StatusOr<std::chrono::system_clock::time_point> ParseRfc3339Nano(
    std::string_view text);

// Resolves a runtime binary (a path, or a name looked up in PATH) to an absolute path.
// FAILED_PRECONDITION naming the path when it does not exist or is not executable.
[[nodiscard]] absl::StatusOr<std::string> ResolveBinary(const std::string& name);

// mkdir -p with mode 0711 for new directories.
[[nodiscard]] absl::Status MakeDirs(const std::string& path);

// One line to the shim's log (stderr, which is shim.log for a daemonized shim).
void LogLine(absl::string_view line);

}  // namespace berth::shim
