// SPDX-License-Identifier: Apache-2.0
// Container stdio through FIFOs, for runtime handlers whose shim is not berth-shim (Kata,
// containerd-shim-runc-v2, any shim v2): the shim writes the container's output into FIFOs
// berthd made, and berthd writes the CRI log from them (the CRI log writer berth-shim uses,
// plugins/runtime-runc/shim/cri_log.h) and relays them to attach clients.
//
// The FIFOs live in a directory per container (<state>/io.berth.cri/io/<id>/: stdin,
// stdout, stderr) that outlives berthd: after a restart Adopt() opens them again and the copy
// goes on where it stopped (meanwhile the shim blocks once a FIFO's 64 KiB are full, as a
// containerd FIFO would). One thread copies for every container (epoll).
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "berth/unique_fd.hpp"

namespace berth::cri {

class FifoLogs {
 public:
  struct Paths {
    std::string stdin, stdout, stderr;  // absolute FIFO paths; empty when unused
  };

  static absl::StatusOr<std::unique_ptr<FifoLogs>> Create();
  // Stops the copy thread; FIFOs and log files stay (containers outlive berthd).
  ~FifoLogs();
  FifoLogs(const FifoLogs&) = delete;
  FifoLogs& operator=(const FifoLogs&) = delete;

  // Makes the FIFOs of container `id` in `dir` (created, mode 0700) and starts copying their
  // output into the CRI log at `log_path` (empty: the output is read and dropped). With `tty`
  // there is no stderr; with `stdin` a stdin FIFO is made and held open for writing, so the
  // container's stdin stays open until attach clients close it.
  [[nodiscard]] absl::StatusOr<Paths> Add(const std::string& id, const std::string& dir,
                                          const std::string& log_path, bool tty, bool stdin);
  // After a restart: opens the FIFOs found in `dir` again and resumes the copy.
  [[nodiscard]] absl::Status Adopt(const std::string& id, const std::string& dir,
                                   const std::string& log_path);
  // ReopenContainerLog: the kubelet renamed the file away.
  [[nodiscard]] absl::Status Reopen(const std::string& id);
  // Stops copying `id` (what is readable is copied first) and removes its FIFOs and `dir`.
  void Remove(const std::string& id, const std::string& dir);
  bool Has(const std::string& id);

  // Attach: raw output chunks of `id` (stream 1 stdout, 2 stderr) go to `hook` until
  // Unsubscribe; `done` runs once when the output has ended. Both run with the container's
  // copy lock held: they must queue and return, and never call back into FifoLogs. NOT_FOUND
  // when `id` is not copied here.
  using Hook = std::function<void(int stream, std::string_view chunk)>;
  [[nodiscard]] absl::StatusOr<uint64_t> Subscribe(const std::string& id, Hook hook,
                                                   std::function<void()> done);
  void Unsubscribe(const std::string& id, uint64_t subscription);
  // Writes to the container's stdin FIFO (blocking while the container does not read, up to
  // `stop_fd` becoming readable). FAILED_PRECONDITION without stdin.
  [[nodiscard]] absl::Status WriteStdin(const std::string& id, std::string_view data,
                                        int stop_fd);
  // Closes the container's stdin (its reader sees EOF).
  void CloseStdin(const std::string& id);

 private:
  struct Entry;
  FifoLogs() = default;
  void Run();
  absl::Status Watch(const std::shared_ptr<Entry>& e);
  void OnReadable(const std::shared_ptr<Entry>& e, int fd);

  sdk::UniqueFd epoll_, wake_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<Entry>> entries_;  // by container id
  std::map<int, std::weak_ptr<Entry>> by_fd_;             // watched read ends
  uint64_t next_subscription_ = 1;
};

}  // namespace berth::cri
