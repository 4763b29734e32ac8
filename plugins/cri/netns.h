// SPDX-License-Identifier: Apache-2.0
// Network namespaces of pod sandboxes, pinned by a bind mount on a file so that they outlive
// every process in them (the pause container is started later and joins the pinned namespace
// through SpecInputs::net_ns_path; CNI plugins get the same path).
//
// A namespace is created on a short-lived thread of its own: unshare(CLONE_NEWNET) moves only
// the calling thread, so that thread brings `lo` up, bind-mounts its /proc/self/task/<tid>/ns/net
// onto the pin file and exits without ever going back. No other thread of berthd changes
// namespace, and none can be left behind in a pod's namespace by an early return.
//
// Needs CAP_SYS_ADMIN (unshare, mount). Linux only.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "berth/unique_fd.hpp"

namespace berth::cri {

// Makes `dir` (created if missing, 0711) a mount point with shared
// propagation that pins can be bind-mounted under. Idempotent; Netns::Create calls it.
[[nodiscard]] absl::Status PrepareNetnsPinDir(const std::string& dir);

// Opens a TCP connection to 127.0.0.1:`port` (or [::1] when `ipv6`) from inside the network
// namespace pinned at `netns_path`: a short-lived thread enters the namespace, creates and
// connects the socket (a socket belongs to the namespace it was created in, wherever it is
// used later) and exits without going back. What port forwarding uses. `timeout_ms` bounds
// the connect. UNAVAILABLE when nothing listens there.
[[nodiscard]] absl::StatusOr<sdk::UniqueFd> DialInNetns(const std::string& netns_path,
                                                        int port, bool ipv6 = false,
                                                        int timeout_ms = 10000);

// An owned, pinned network namespace: removed (unmounted and unlinked) on destruction unless
// Release()d. Move-only.
class Netns {
 public:
  // Creates a namespace with `lo` up, pinned at <dir>/<sandbox_id>. ALREADY_EXISTS when that
  // path pins a namespace already; a stale unpinned file there (a crash between the two steps)
  // is replaced. INVALID_ARGUMENT for a sandbox id that is not a plain file name.
  [[nodiscard]] static absl::StatusOr<Netns> Create(const std::string& dir,
                                                    const std::string& sandbox_id);

  // Unmounts (MNT_DETACH, every stacked mount) and unlinks a pin. A path that does not exist
  // is not an error; a pin that cannot be unmounted is never unlinked.
  [[nodiscard]] static absl::Status Remove(const std::string& path);

  // Does `path` hold a bind mount of a namespace (an nsfs file)? False when absent.
  [[nodiscard]] static bool IsPinned(const std::string& path);

  Netns() = default;
  Netns(Netns&& other) noexcept;
  Netns& operator=(Netns&& other) noexcept;
  Netns(const Netns&) = delete;
  Netns& operator=(const Netns&) = delete;
  ~Netns();

  // The pin's path ("" when empty or released).
  const std::string& path() const { return path_; }
  // Gives up ownership: the namespace stays pinned. Returns the path.
  [[nodiscard]] std::string Release();

 private:
  explicit Netns(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

}  // namespace berth::cri
