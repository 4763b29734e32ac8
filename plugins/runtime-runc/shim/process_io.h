// SPDX-License-Identifier: Apache-2.0
// The stdio of one container process (docs/shim.md §3 and §5).
//
// Output travels container → pipe (or pty master) → shim event loop → sink (CRI log writer,
// file or FIFO) and to every attach client. Nothing on the output path blocks the loop: the
// log writer and files are written directly, a FIFO without a reader is buffered (and its
// source paused when 1 MiB is queued, as a containerd FIFO would block), an attach client
// more than 1 MiB behind is disconnected.
//
// Create() runs on a request thread; everything else runs on the loop thread unless noted.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "berth/unique_fd.hpp"
#include "plugins/runtime-runc/shim/cri_log.h"
#include "plugins/runtime-runc/shim/loop.h"

namespace berth::shim {

struct StdioConfig {
  std::string stdin_uri;
  std::string stdout_uri;
  std::string stderr_uri;
  bool terminal = false;
};

class ProcessIo : public std::enable_shared_from_this<ProcessIo> {
 public:
  // Opens the sinks and creates the pipes (or, with a terminal, the console socket at
  // `console_socket_path`). `name` names the process in errors and logs.
  [[nodiscard]] static absl::StatusOr<std::shared_ptr<ProcessIo>> Create(
      EventLoop* loop, const StdioConfig& config, const std::string& name,
      const std::string& console_socket_path);
  ~ProcessIo();

  // For the runtime invocation (any thread, before Start()).
  int child_stdin() const { return child_in_.get(); }
  int child_stdout() const { return child_out_.get(); }
  int child_stderr() const { return child_err_.get(); }
  const std::string& console_socket_path() const { return console_path_; }
  // After the runtime ran: closes the child ends; with a terminal, receives the console
  // master that the runtime sent over the console socket.
  [[nodiscard]] absl::Status AfterRuntime();
  // Starts copying (posts to the loop).
  void Start();

  // The process exited: `drained` runs on the loop thread once all output reached EOF, or
  // after `grace` (something the process left behind keeps the output open).
  void OnProcessExit(std::chrono::milliseconds grace, std::function<void()> drained);
  // Tells attach clients the exit status and closes them (loop thread).
  void SendExit(uint32_t exit_status);
  // Closes everything (loop thread or any thread via Post); removes the attach socket.
  void Shutdown();

  // Any thread.
  [[nodiscard]] absl::Status ReopenLog();
  void CloseStdin();
  [[nodiscard]] absl::Status Resize(uint32_t width, uint32_t height);
  // Creates (once) the attach socket at `path` and returns its path.
  [[nodiscard]] absl::StatusOr<std::string> Attach(const std::string& path);
  bool has_stdin() const { return has_stdin_; }
  bool terminal() const { return config_.terminal; }
  const StdioConfig& config() const { return config_; }
  std::string log_path() const;

 private:
  struct Sink;
  struct OutPump;
  struct Client;

  ProcessIo(EventLoop* loop, StdioConfig config, std::string name);

  [[nodiscard]] absl::Status OpenOutputs();
  [[nodiscard]] absl::Status OpenStdin();
  void StartLocked();
  void OnOutput(OutPump* pump, uint32_t events);
  void PumpEof(OutPump* pump);
  void Deliver(OutPump* pump, std::string_view chunk);
  void FlushSink(Sink* sink);
  void SetPaused(bool paused);
  void OnStdinSource(uint32_t events);
  void QueueStdin(std::string_view bytes);
  void FlushStdin();
  void RequestStdinClose();
  void OnAttachAccept();
  void OnClient(Client* client, uint32_t events);
  void ClientSend(Client* client, uint8_t type, std::string_view payload);
  void ClientFlush(Client* client);
  void DropClient(Client* client);
  void HandleFrame(uint8_t type, std::string_view payload);
  void MaybeDrained();

  EventLoop* const loop_;
  const StdioConfig config_;
  const std::string name_;
  std::string console_path_;
  sdk::UniqueFd console_listener_;

  // Runtime-side ends, closed by AfterRuntime().
  sdk::UniqueFd child_in_, child_out_, child_err_;

  std::vector<std::unique_ptr<CriLogWriter>> writers_;
  std::vector<std::unique_ptr<Sink>> sinks_;
  std::vector<std::unique_ptr<OutPump>> pumps_;
  sdk::UniqueFd master_;  // terminal

  bool has_stdin_ = false;
  sdk::UniqueFd stdin_dest_;    // pipe write end or dup of the master
  sdk::UniqueFd stdin_source_;  // FIFO read end
  std::string stdin_buf_;
  bool stdin_close_requested_ = false;
  bool stdin_dest_watched_ = false;

  sdk::UniqueFd attach_listener_;
  std::string attach_path_;
  std::vector<std::unique_ptr<Client>> clients_;

  bool started_ = false;
  bool paused_ = false;
  bool exited_ = false;
  bool exit_sent_ = false;
  uint32_t exit_status_ = 0;
  bool shut_down_ = false;
  std::function<void()> drained_;
};

}  // namespace berth::shim
