// SPDX-License-Identifier: Apache-2.0
#include "core/status_macros.h"

#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"

namespace berth::core {

absl::Status ErrnoToStatus(int err, std::string_view what) {
  const char* name = strerrorname_np(err);
  std::string msg = absl::StrCat(std::string(what), ": ", strerror(err), " (", name ? name : "?", ")");
  switch (err) {
    case ENOENT: return absl::NotFoundError(msg);
    case EEXIST: return absl::AlreadyExistsError(msg);
    case EACCES:
    case EPERM: return absl::PermissionDeniedError(msg);
    case EINVAL:
    case ENAMETOOLONG: return absl::InvalidArgumentError(msg);
    case ENOSPC:
    case ENOMEM:
    case EMFILE:
    case ENFILE:
    case EDQUOT: return absl::ResourceExhaustedError(msg);
    case EAGAIN:
    case EBUSY:
    case ECONNREFUSED: return absl::UnavailableError(msg);
    case ETIMEDOUT: return absl::DeadlineExceededError(msg);
    case ENOSYS:
    case EOPNOTSUPP: return absl::UnimplementedError(msg);
    default: return absl::InternalError(msg);
  }
}

}  // namespace berth::core
