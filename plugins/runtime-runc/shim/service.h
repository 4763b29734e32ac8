// SPDX-License-Identifier: Apache-2.0
// berth-shim's services: containerd.task.v2.Task and berth.shim.v1.Shim (docs/shim.md §2,
// §4, §5) for the containers of one pod.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "berth/ttrpc/server.h"
#include "berth/unique_fd.hpp"
#include "plugins/runtime-runc/shim/loop.h"
#include "plugins/runtime-runc/shim/process_io.h"
#include "plugins/runtime-runc/shim/runtime.h"
#include "shim/berth/v1/shim.pb.h"
#include "shim/task/v2/shim.pb.h"

namespace berth::shim {

// The durable exit record of docs/shim.md §4.
struct ExitRecord {
  uint32_t pid = 0;
  uint32_t exit_status = 0;
  std::chrono::system_clock::time_point exited_at;
  bool oom_killed = false;
};
std::string ExitRecordJson(const ExitRecord& record);
[[nodiscard]] absl::StatusOr<ExitRecord> ReadExitRecord(const std::string& path);

// What `berth-shim delete` needs to clean up a container after the shim died
// (<shim dir>/tasks/<id>.json, written at Create).
struct TaskRecord {
  std::string bundle;
  RuntimeConfig runtime;
  bool rootfs_mounted = false;
};
[[nodiscard]] absl::StatusOr<TaskRecord> ReadTaskRecord(const std::string& path);

class ShimService {
 public:
  // `dir` is the shim's own directory (<state dir>/<h>).
  ShimService(EventLoop* loop, std::string dir, std::string self_exe);
  ~ShimService();

  void Register(ttrpc::Server* server);
  // Blocks until Shutdown was called with nothing left to run (or with `now`). True when no
  // container is left.
  bool WaitForShutdown();

 private:
  struct Process;
  struct Container;
  using ProcessRef = std::shared_ptr<Process>;
  using ContainerRef = std::shared_ptr<Container>;

  absl::StatusOr<containerd::task::v2::CreateTaskResponse> Create(
      const containerd::task::v2::CreateTaskRequest& req);
  absl::StatusOr<containerd::task::v2::StartResponse> Start(
      const containerd::task::v2::StartRequest& req);
  absl::StatusOr<containerd::task::v2::StateResponse> State(
      const containerd::task::v2::StateRequest& req);
  absl::StatusOr<google::protobuf::Empty> Kill(const containerd::task::v2::KillRequest& req);
  absl::StatusOr<containerd::task::v2::DeleteResponse> Delete(
      const containerd::task::v2::DeleteRequest& req);
  absl::StatusOr<containerd::task::v2::WaitResponse> Wait(
      const containerd::task::v2::WaitRequest& req, absl::Time deadline);
  absl::StatusOr<containerd::task::v2::PidsResponse> Pids(
      const containerd::task::v2::PidsRequest& req);
  absl::StatusOr<google::protobuf::Empty> Exec(const containerd::task::v2::ExecProcessRequest& req);
  absl::StatusOr<google::protobuf::Empty> ResizePty(
      const containerd::task::v2::ResizePtyRequest& req);
  absl::StatusOr<google::protobuf::Empty> CloseIO(const containerd::task::v2::CloseIORequest& req);
  absl::StatusOr<google::protobuf::Empty> Update(
      const containerd::task::v2::UpdateTaskRequest& req);
  absl::StatusOr<google::protobuf::Empty> PauseResume(const std::string& id, bool pause);
  absl::StatusOr<containerd::task::v2::StatsResponse> Stats(
      const containerd::task::v2::StatsRequest& req);
  absl::StatusOr<containerd::task::v2::ConnectResponse> Connect(
      const containerd::task::v2::ConnectRequest& req);
  absl::StatusOr<google::protobuf::Empty> Shutdown(
      const containerd::task::v2::ShutdownRequest& req);

  absl::StatusOr<google::protobuf::Empty> ReopenLog(const berth::shim::v1::ReopenLogRequest& req);
  absl::StatusOr<berth::shim::v1::ExecSyncResponse> ExecSync(
      const berth::shim::v1::ExecSyncRequest& req);
  absl::StatusOr<berth::shim::v1::AttachResponse> Attach(const berth::shim::v1::AttachRequest& req);
  absl::StatusOr<berth::shim::v1::InfoResponse> Info(const berth::shim::v1::InfoRequest& req);

  // Lookups (take mu_).
  absl::StatusOr<ContainerRef> FindContainer(const std::string& id);
  absl::StatusOr<std::pair<ContainerRef, ProcessRef>> FindProcess(const std::string& id,
                                                                  const std::string& exec_id);
  absl::Status StartExec(const ContainerRef& c, const ProcessRef& p);
  // Registers the exit callback of a started process.
  void WatchExit(const ContainerRef& c, const ProcessRef& p, uint64_t since_seq);
  void Finalize(const ContainerRef& c, const ProcessRef& p, uint32_t exit_status,
                std::chrono::system_clock::time_point exited_at);
  uint64_t ReadOomCount(const Container& c);
  std::string TempPath(const std::string& what);
  void RemoveContainerFiles(const std::string& id);

  EventLoop* const loop_;
  const std::string dir_;
  const std::string self_exe_;

  std::mutex mu_;
  std::condition_variable cv_;                      // a process finished; shutdown requested
  std::map<std::string, ContainerRef> containers_;  // guarded by mu_
  bool shutdown_ = false;                           // guarded by mu_
  uint64_t counter_ = 0;                            // guarded by mu_
};

// `berth-shim delete`: cleans up a container whose shim is gone (docs/shim.md §1).
[[nodiscard]] absl::StatusOr<containerd::task::v2::DeleteResponse> DeleteDeadShimTask(
    const std::string& shim_dir, const std::string& id, const std::string& bundle);

// `berth-shim exec-sync`: the ExecSync helper (re-executed by the shim so that its waitpid
// never competes with the shim's reaper). Writes a serialized ExecSyncResponse to stdout.
int ExecSyncHelperMain(int argc, char** argv);
// `berth-shim exec-wait`: runs `runtime exec --detach`, then waits (as a subreaper) for the
// process and exits with its status (128+N when killed by signal N).
int ExecWaitMain(int argc, char** argv);

}  // namespace berth::shim
