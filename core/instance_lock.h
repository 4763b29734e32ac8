// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <filesystem>
#include <string_view>
#include <vector>

#include "absl/status/status.h"

namespace berth::core {

// Makes sure one berthd owns a root, a state directory and a socket. Each is guarded by
// an flock()ed file holding the owner's pid, so a second berthd can say who holds it; the
// lock dies with its process, so a kill -9 leaves nothing to clean by hand.
class InstanceLock {
 public:
  InstanceLock() = default;
  InstanceLock(const InstanceLock&) = delete;
  InstanceLock& operator=(const InstanceLock&) = delete;
  ~InstanceLock();  // releases the locks

  [[nodiscard]] absl::Status Acquire(const std::filesystem::path& lock_file, std::string_view what);
  // Locks <socket>.lock, then removes a stale socket file; refuses when another process
  // (berthd or not) is listening on it, naming that process.
  [[nodiscard]] absl::Status ClaimSocket(const std::filesystem::path& socket);

 private:
  struct Held {
    std::filesystem::path path;
    int fd;
  };
  std::vector<Held> held_;
};

}  // namespace berth::core
