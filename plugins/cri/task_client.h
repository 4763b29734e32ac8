// SPDX-License-Identifier: Apache-2.0
// Typed calls of the shim v2 Task API and the berth.shim.v1 extension through a runtime
// plugin's shim_call (berth/kinds.h), and its control operations. The CRI plugin never talks
// to a shim itself: the runtime plugin owns shims, records tasks and publishes their exits.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "berth/plugin.hpp"

namespace berth::cri {

struct CreateTask {
  std::string id, bundle;
  bool terminal = false;
  std::string stdin_uri, stdout_uri, stderr_uri;
};

// A process started in a running container (shim v2 Task/Exec).
struct ExecTask {
  std::string id, exec_id;
  bool terminal = false;
  std::string stdin_uri, stdout_uri, stderr_uri;
  std::string process_json;  // OCI process
};

// Where to attach to a process's stdio (berth.shim.v1.Shim/Attach, docs/shim.md §5).
struct AttachPoint {
  std::string address;  // unix:///path
  bool terminal = false;
  bool stdin = false;
};

// The metrics a shim answers to Task/Stats: the Any of StatsResponse.stats, as it came
// (io.containerd.cgroups.v1.Metrics or .v2.Metrics; plugins/cri/shim_stats.h reads them).
struct TaskMetrics {
  std::string type_url;
  std::string value;
};

struct ExecSyncResult {
  int32_t exit_code = 0;
  std::string stdout_data, stderr_data;
  bool timed_out = false;
};

// One task known to a runtime plugin (control "tasks").
struct TaskInfo {
  std::string handler, sandbox_id, id, exec_id, status;
  uint32_t pid = 0;
  uint32_t exit_status = 0;
  std::string exited_at, reason;
};

class TaskClient {
 public:
  TaskClient(sdk::Iface<berth_runtime_v1> runtime, std::string handler)
      : runtime_(runtime), handler_(std::move(handler)) {}

  // Starts (or finds) the pod's shim and creates the task; returns its pid.
  [[nodiscard]] absl::StatusOr<uint32_t> Create(const std::string& sandbox_id,
                                                const CreateTask& task);
  // exec_id empty: the container's init process.
  [[nodiscard]] absl::StatusOr<uint32_t> Start(const std::string& sandbox_id,
                                               const std::string& id,
                                               const std::string& exec_id = "");
  [[nodiscard]] absl::Status Exec(const std::string& sandbox_id, const ExecTask& task);
  [[nodiscard]] absl::Status ResizePty(const std::string& sandbox_id, const std::string& id,
                                       const std::string& exec_id, uint32_t width,
                                       uint32_t height);
  [[nodiscard]] absl::Status CloseStdin(const std::string& sandbox_id, const std::string& id,
                                        const std::string& exec_id);
  [[nodiscard]] absl::StatusOr<AttachPoint> Attach(const std::string& sandbox_id,
                                                   const std::string& id,
                                                   const std::string& exec_id);
  [[nodiscard]] absl::Status Kill(const std::string& sandbox_id, const std::string& id, int signal,
                                  bool all, const std::string& exec_id = "");
  // NOT_FOUND when the runtime does not know the task.
  [[nodiscard]] absl::Status Delete(const std::string& sandbox_id, const std::string& id,
                                    const std::string& exec_id = "");
  // resources: OCI LinuxResources JSON.
  [[nodiscard]] absl::Status Update(const std::string& sandbox_id, const std::string& id,
                                    const std::string& resources_json);
  // process: OCI process JSON. timeout_ms 0: none.
  [[nodiscard]] absl::StatusOr<ExecSyncResult> ExecSync(const std::string& sandbox_id,
                                                        const std::string& id,
                                                        const std::string& process_json,
                                                        uint64_t timeout_ms);
  [[nodiscard]] absl::Status ReopenLog(const std::string& sandbox_id, const std::string& id);
  // The container's metrics (Task/Stats), read by the shim. A shim that does not answer
  // within timeout_ms fails the call with DEADLINE_EXCEEDED.
  [[nodiscard]] absl::StatusOr<TaskMetrics> Stats(const std::string& sandbox_id,
                                                  const std::string& id,
                                                  uint64_t timeout_ms = 5000);
  // The pid of the pod's shim (Task/Connect), as berthd sees it.
  [[nodiscard]] absl::StatusOr<uint32_t> ShimPid(const std::string& sandbox_id);
  // Shuts the pod's shim down and forgets the sandbox (no task may run).
  [[nodiscard]] absl::Status RemoveSandbox(const std::string& sandbox_id);

  // Whether the handler's shim is berth-shim, which speaks berth.shim.v1 (CRI log files,
  // attach sockets, ExecSync); other shims get FIFOs (control "handler_info"; a runtime
  // plugin without it is taken for a plain shim v2 runtime).
  [[nodiscard]] absl::StatusOr<bool> UsesBerthShim() const;

  // Every task the runtime plugin knows, of every handler.
  [[nodiscard]] static absl::StatusOr<std::vector<TaskInfo>> Tasks(
      const sdk::Iface<berth_runtime_v1>& runtime);

  const std::string& handler() const { return handler_; }

 private:
  absl::StatusOr<std::string> Call(const std::string& sandbox_id, const char* service,
                                   const char* method, const std::string& request,
                                   uint64_t timeout_ms = 0);

  sdk::Iface<berth_runtime_v1> runtime_;
  std::string handler_;
};

}  // namespace berth::cri
