// SPDX-License-Identifier: Apache-2.0
// Internal socket helpers of the ttrpc library.
#pragma once

#include <sys/un.h>

#include <cstddef>
#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace berth::ttrpc::internal {

// Maps an errno to the nearest absl::StatusCode, with `what` and strerror in the message.
[[nodiscard]] absl::Status ErrnoToStatus(int err, std::string_view what);

// Writes everything (MSG_NOSIGNAL), retrying on EINTR and short writes.
[[nodiscard]] absl::Status WriteAll(int fd, std::string_view bytes);

// Reads exactly n bytes; UNAVAILABLE on EOF.
[[nodiscard]] absl::Status ReadFull(int fd, char* out, std::size_t n);

// Fills a sockaddr_un from "path", "unix://path" or "@abstract"; returns its length.
[[nodiscard]] absl::Status MakeUnixAddress(std::string_view address, sockaddr_un* sun,
                                           socklen_t* len);

}  // namespace berth::ttrpc::internal
