// SPDX-License-Identifier: Apache-2.0
#include "io.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "absl/strings/str_cat.h"

namespace berth::ttrpc::internal {

absl::Status ErrnoToStatus(int err, std::string_view what) {
  std::string msg = absl::StrCat(std::string(what), ": ", strerror(err));
  switch (err) {
    case ENOENT:
      return absl::NotFoundError(msg);
    case EEXIST:
      return absl::AlreadyExistsError(msg);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(msg);
    case EINVAL:
    case ENAMETOOLONG:
      return absl::InvalidArgumentError(msg);
    case ETIMEDOUT:
      return absl::DeadlineExceededError(msg);
    case ECONNREFUSED:
    case ECONNRESET:
    case EPIPE:
    case ENOTCONN:
    case EAGAIN:
      return absl::UnavailableError(msg);
    case ENOMEM:
    case EMFILE:
    case ENFILE:
    case ENOSPC:
      return absl::ResourceExhaustedError(msg);
    default:
      return absl::InternalError(msg);
  }
}

absl::Status WriteAll(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoToStatus(errno, "ttrpc write");
    }
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return absl::OkStatus();
}

absl::Status ReadFull(int fd, char* out, std::size_t n) {
  std::size_t got = 0;
  while (got < n) {
    ssize_t r = ::read(fd, out + got, n - got);
    if (r < 0) {
      if (errno == EINTR) continue;
      absl::Status s = ErrnoToStatus(errno, "ttrpc read");
      return absl::UnavailableError(s.message());
    }
    if (r == 0) {
      return absl::UnavailableError(got == 0 ? "ttrpc connection closed by peer"
                                             : "ttrpc connection closed by peer mid-frame");
    }
    got += static_cast<std::size_t>(r);
  }
  return absl::OkStatus();
}

absl::Status MakeUnixAddress(std::string_view address, sockaddr_un* sun, socklen_t* len) {
  if (address.substr(0, 7) == "unix://") address.remove_prefix(7);
  std::memset(sun, 0, sizeof(*sun));
  sun->sun_family = AF_UNIX;
  if (address.empty()) return absl::InvalidArgumentError("empty unix socket address");
  if (address.size() >= sizeof(sun->sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "unix socket path ", std::string(address), " is ", address.size(), " bytes; the limit is ",
        sizeof(sun->sun_path) - 1, " (use a shorter directory)"));
  }
  std::memcpy(sun->sun_path, address.data(), address.size());
  if (address[0] == '@') sun->sun_path[0] = '\0';  // Linux abstract namespace
  *len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + address.size() +
                                (address[0] == '@' ? 0 : 1));
  return absl::OkStatus();
}

}  // namespace berth::ttrpc::internal
