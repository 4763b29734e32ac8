// SPDX-License-Identifier: Apache-2.0
// The shim's event loop and its single reaper.
//
// One thread runs EventLoop::Run(): an epoll set with a signalfd for SIGCHLD (the reaper),
// an eventfd for posted tasks, container output pipes, stdin feeds and attach sockets.
// SIGCHLD must be blocked in every thread (BlockSigchld() before any thread is created);
// children are spawned with an empty signal mask and default dispositions.
//
// Reaper: the shim is PR_SET_CHILD_SUBREAPER, so every orphan of the pod ends up as its
// child. On SIGCHLD the loop reaps every exited child (waitpid(-1, WNOHANG)) and hands
// each status to whoever registered for that pid. Exits of pids nobody has registered yet
// are kept (with a sequence number), because a container process may exit before the shim
// has read its pid file. Spawn() and reaping share one lock, so an exit recorded for a pid
// always belongs to the process that had that pid when it was recorded.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "berth/unique_fd.hpp"

namespace berth::shim {

// Blocks SIGCHLD in the calling thread (call in main before any thread exists) and ignores
// SIGPIPE.
void BlockSigchld();

struct SpawnOptions {
  std::vector<std::string> argv;  // argv[0] is an absolute path
  int stdin_fd = -1;              // -1: /dev/null
  int stdout_fd = -1;             // -1: /dev/null
  int stderr_fd = -1;             // -1: /dev/null
  std::string cwd;                // empty: inherit
};

class EventLoop {
 public:
  using FdCallback = std::function<void(uint32_t events)>;
  using ExitCallback = std::function<void(int wait_status)>;

  [[nodiscard]] static absl::StatusOr<std::unique_ptr<EventLoop>> Create();
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Starts the loop thread.
  void Start();
  // Stops and joins the loop thread.
  void Stop();
  bool InLoopThread() const { return std::this_thread::get_id() == thread_.get_id(); }

  // Runs `fn` on the loop thread (soon; in posting order).
  void Post(std::function<void()> fn);
  // Runs `fn` on the loop thread at or after `when`.
  void PostAt(std::chrono::steady_clock::time_point when, std::function<void()> fn);

  // Loop thread only. `fd` must stay open until Unwatch().
  [[nodiscard]] absl::Status Watch(int fd, uint32_t events, FdCallback cb);
  void Modify(int fd, uint32_t events);
  void Unwatch(int fd);

  // --- reaper ---
  // A number that grows with every recorded exit; pass it to OnExit to ignore exits that
  // were recorded before a process could have existed.
  uint64_t ExitSeq();
  [[nodiscard]] absl::StatusOr<pid_t> Spawn(const SpawnOptions& options);
  // Blocks until `pid` (a child from Spawn) has exited; returns its wait status. Not on the
  // loop thread.
  int WaitPid(pid_t pid);
  // Like WaitPid with a timeout; false when it has not exited yet.
  bool WaitPidFor(pid_t pid, std::chrono::milliseconds timeout, int* wait_status);
  // Calls `cb` (on the loop thread, or at once on the caller's thread if the exit was
  // already recorded after `since_seq`) when `pid` exits.
  void OnExit(pid_t pid, uint64_t since_seq, ExitCallback cb);

 private:
  EventLoop() = default;
  void Run();
  void Reap();
  void Wake();

  sdk::UniqueFd epoll_fd_;
  sdk::UniqueFd event_fd_;
  sdk::UniqueFd signal_fd_;
  std::thread thread_;
  bool stop_ = false;  // loop thread only

  std::mutex post_mu_;
  std::vector<std::function<void()>> posted_;  // guarded by post_mu_
  std::multimap<std::chrono::steady_clock::time_point, std::function<void()>>
      timers_;  // guarded by post_mu_

  std::map<int, std::shared_ptr<FdCallback>> watches_;  // loop thread only

  struct Exit {
    int status;
    uint64_t seq;
  };
  std::mutex reap_mu_;
  std::condition_variable reap_cv_;
  uint64_t seq_ = 0;                                             // guarded by reap_mu_
  std::map<pid_t, Exit> exits_;                                  // unclaimed; guarded by reap_mu_
  std::deque<pid_t> exit_order_;                                 // for pruning; guarded by reap_mu_
  std::map<pid_t, std::pair<uint64_t, ExitCallback>> exit_cbs_;  // guarded by reap_mu_
};

}  // namespace berth::shim
