// SPDX-License-Identifier: Apache-2.0
// The processes behind exec and attach sessions (streaming/remote_command.h), driven through
// the runtime plugin's shim calls (task_client.h):
//
// - ExecProcess: Task/Exec with FIFOs as stdio — the shim v2 way, which any shim
//   understands and which gives back-pressure (a slow client slows the process down instead
//   of losing output). Resize is Task/ResizePty, the end of input closes the stdin FIFO and
//   calls Task/CloseIO; the exit comes as the runtime plugin's exit event (ExecExit), and
//   the exec is deleted from the shim once both the session and the process are done.
// - AttachProcess: berth.shim.v1.Shim/Attach to the container's process: a unix socket with
//   the shim's attach framing (docs/shim.md §5). Output never waits for an attach client.
// - FifoAttachProcess: the same for other shims, from the FIFO copy of fifo_logs.h.
#pragma once

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "berth/unique_fd.hpp"
#include "plugins/cri/fifo_logs.h"
#include "plugins/cri/streaming/remote_command.h"
#include "plugins/cri/task_client.h"

namespace berth::cri {

// The exit of one exec, shared by its session and the thread that applies exit events.
class ExecExit {
 public:
  ExecExit();
  // The exit event arrived. Returns true when nobody waits any more (the session is gone):
  // the caller deletes the exec from the shim.
  bool Set(int exit_status);
  // The session is gone. Returns true when the exit is known already: the caller deletes
  // the exec now; otherwise Set() will say so.
  bool Abandon();
  std::optional<int> status() const;
  // Readable once the exit is known.
  int event_fd() const { return event_.get(); }
  // Blocks until the exit is known or `cancelled` returns true (checked when notified).
  std::optional<int> WaitFor(const std::function<bool()>& cancelled);
  // Wakes WaitFor() to re-check `cancelled`.
  void Notify();

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::optional<int> status_;
  bool abandoned_ = false;
  sdk::UniqueFd event_;
};

struct ExecStart {
  explicit ExecStart(TaskClient t) : tasks(std::move(t)) {}
  TaskClient tasks;
  std::string sandbox_id, container_id, exec_id;
  std::string fifo_dir;      // where the FIFOs are made (created if missing)
  std::string process_json;  // OCI process
  bool tty = false, stdin = false, stdout = false, stderr = false;
  std::shared_ptr<ExecExit> exit;  // registered for exec_id before the start
  // Called once the exec is deleted from the shim (or never started): forget `exit`.
  std::function<void()> forget;
};

// Creates the FIFOs, Task/Exec, Task/Start. On failure nothing is left behind (the exec is
// deleted, the FIFOs removed, `forget` called).
[[nodiscard]] absl::StatusOr<std::unique_ptr<streaming::StreamedProcess>> StartExecProcess(
    ExecStart start);

struct AttachStart {
  explicit AttachStart(TaskClient t) : tasks(std::move(t)) {}
  TaskClient tasks;
  std::string sandbox_id, container_id;
  bool stdin = false, stdout = false, stderr = false;
  bool stdin_once = false;  // the container's: the client's EOF closes the process's stdin
};

[[nodiscard]] absl::StatusOr<std::unique_ptr<streaming::StreamedProcess>> StartAttachProcess(
    AttachStart start);

// Attach to a container of another shim v2 (its stdio are FIFOs berthd copies, fifo_logs.h):
// output from the copy, stdin into the container's stdin FIFO, resizes via Task/ResizePty.
[[nodiscard]] absl::StatusOr<std::unique_ptr<streaming::StreamedProcess>> StartFifoAttachProcess(
    AttachStart start, FifoLogs* logs, bool tty);

}  // namespace berth::cri
