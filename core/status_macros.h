// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cerrno>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define BERTH_CONCAT_INNER_(a, b) a##b
#define BERTH_CONCAT_(a, b) BERTH_CONCAT_INNER_(a, b)

#define RETURN_IF_ERROR(expr)                  \
  do {                                         \
    ::absl::Status berth_status_ = (expr);     \
    if (!berth_status_.ok()) return berth_status_; \
  } while (0)

#define ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                           \
  if (!tmp.ok()) return tmp.status();          \
  lhs = std::move(*tmp)

#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL_(BERTH_CONCAT_(berth_statusor_, __LINE__), lhs, expr)

namespace berth::core {

// The one place an errno becomes a status: "<what>: <strerror> (<ERRNAME>)".
absl::Status ErrnoToStatus(int err, std::string_view what);

}  // namespace berth::core
