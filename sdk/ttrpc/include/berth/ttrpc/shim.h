// SPDX-License-Identifier: Apache-2.0
// A client for containerd shim v2 runtimes (specs/shim-v2/runtime-v2.md), usable by any
// runtime plugin: the binary protocol (`start` and `delete` run as commands, the legacy
// CLI-flag form of containerd <= 2.2), the shim's log FIFO, and a typed client of the
// containerd.task.v2.Task ttrpc service.
//
//   ShimCommand cmd{.binary = "/usr/bin/containerd-shim-runc-v2", .bundle = bundle,
//                   .id = id, .ns = "berth", .address = "/run/berth/events.sock"};
//   ASSIGN_OR_RETURN(std::string address, StartShim(cmd));
//   ASSIGN_OR_RETURN(std::unique_ptr<TaskClient> task, TaskClient::Connect(address, 5s));
//   ASSIGN_OR_RETURN(auto created, task->Create(request, absl::Now() + absl::Seconds(30)));
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "berth/ttrpc/client.h"
#include "berth/ttrpc/server.h"
#include "berth/unique_fd.hpp"
#include "google/protobuf/empty.pb.h"
#include "shim/task/v2/shim.pb.h"

namespace berth::ttrpc {

inline constexpr char kTaskService[] = "containerd.task.v2.Task";

// One invocation of a shim binary's `start` or `delete` command.
struct ShimCommand {
  std::string binary;  // absolute path of the shim v2 binary
  std::string bundle;  // the container's bundle: the command's working directory
  std::string id;      // -id: the container id
  std::string ns;      // -namespace
  // -address: the daemon's main socket; shims derive their socket name from it and publish
  // events to `ttrpc_address`. It need not be listened on.
  std::string address;
  std::string publish_binary = "/bin/true";    // -publish-binary
  std::string ttrpc_address;                   // TTRPC_ADDRESS; empty: `address` + ".ttrpc"
  std::vector<std::string> extra_env;          // "NAME=value", added to (and overriding) ours
  bool debug = false;                          // -debug
  absl::Duration timeout = absl::Seconds(30);  // the command is killed after it
};

// Turns what `start` printed into a ttrpc address: a plain address ("unix:///p") or the
// JSON form {"version":2,"address":"unix:///p","protocol":"ttrpc"}. INVALID_ARGUMENT for
// empty output, malformed JSON and protocol other than ttrpc (grpc shims are unsupported).
[[nodiscard]] absl::StatusOr<std::string> ParseShimStartOutput(std::string_view out);

// Runs `<binary> -namespace <ns> -address <address> -publish-binary <bin> -id <id>
// [-debug] start` in the bundle with stdin empty, and returns the address it printed. The
// shim daemon it leaves running is not a child of the caller. On failure the error carries
// the exit status and the command's stderr.
[[nodiscard]] absl::StatusOr<std::string> StartShim(const ShimCommand& command);

// Runs `<binary> ... -bundle <bundle> delete` in the bundle (for a container whose shim is
// gone) and parses the containerd.task.v2.DeleteResponse it prints.
[[nodiscard]] absl::StatusOr<containerd::task::v2::DeleteResponse> DeleteShim(
    const ShimCommand& command);

// The output of a finished command.
struct CommandResult {
  int exit_status = -1;  // exit code, or 128+signal
  std::string out;       // stdout
  std::string err;       // stderr (at most 64 KiB are kept)
};

// Runs argv[0] with argv in `cwd`, environ plus `extra_env`, stdin /dev/null, stdout and
// stderr captured, every signal unblocked and default, and none of the caller's other file
// descriptors (they are marked close-on-exec in the child). Output is read until the
// command exits (daemons it leaves behind keeping the pipes open do not hold it up).
// DEADLINE_EXCEEDED (after killing the command) when it outlives `timeout`.
[[nodiscard]] absl::StatusOr<CommandResult> RunCommand(const std::vector<std::string>& argv,
                                                       const std::string& cwd,
                                                       const std::vector<std::string>& extra_env,
                                                       absl::Duration timeout);

// The `log` FIFO in a bundle, which containerd shims open for writing when their daemon
// starts and write their log to (the open blocks until a reader exists, so open this
// before StartShim). A reader thread hands each line to `on_line` until the shim closes
// its end or this object is destroyed.
class ShimLog {
 public:
  // Creates <bundle>/log as a FIFO when absent and opens its read end.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<ShimLog>> Open(
      const std::string& bundle, std::function<void(std::string_view line)> on_line);
  ShimLog(const ShimLog&) = delete;
  ShimLog& operator=(const ShimLog&) = delete;
  ~ShimLog();

 private:
  ShimLog(sdk::UniqueFd fd, sdk::UniqueFd wake_read, sdk::UniqueFd wake_write,
          std::function<void(std::string_view)> on_line);
  void ReadLoop();

  sdk::UniqueFd fd_, wake_read_, wake_write_;
  std::function<void(std::string_view)> on_line_;
  std::thread reader_;
};

// Serves what containerd shims publish their events to (TTRPC_ADDRESS): the service
// containerd.services.events.ttrpc.v1.Events, method Forward, answered with an empty
// message. `on_forward` (may be empty) gets each serialized ForwardRequest. Without a
// listener, shims retry every event for many seconds and delay their own exit by as much.
inline constexpr char kShimEventsService[] = "containerd.services.events.ttrpc.v1.Events";
[[nodiscard]] absl::StatusOr<std::unique_ptr<Server>> ServeShimEvents(
    std::string_view ttrpc_address, std::function<void(const std::string& request)> on_forward);

// The containerd.task.v2.Task service of one shim. Thread-safe (calls are multiplexed on
// one connection). Errors keep the shim's status code and message; when the connection is
// gone every call fails with UNAVAILABLE.
class TaskClient {
 public:
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<TaskClient>> Connect(std::string_view address,
                                                                           absl::Duration timeout);
  explicit TaskClient(std::unique_ptr<Client> client) : client_(std::move(client)) {}

  // One method of the Task service each; `deadline` absl::InfiniteFuture() waits forever
  // (Wait). Connect is named ConnectTask here, next to the static Connect above.
  [[nodiscard]] absl::StatusOr<containerd::task::v2::CreateTaskResponse> Create(
      const containerd::task::v2::CreateTaskRequest& request, absl::Time deadline) {
    return Invoke<containerd::task::v2::CreateTaskResponse>("Create", request, deadline);
  }
  [[nodiscard]] absl::StatusOr<containerd::task::v2::StartResponse> Start(
      const containerd::task::v2::StartRequest& request, absl::Time deadline) {
    return Invoke<containerd::task::v2::StartResponse>("Start", request, deadline);
  }
  [[nodiscard]] absl::StatusOr<containerd::task::v2::StateResponse> State(
      const containerd::task::v2::StateRequest& request, absl::Time deadline) {
    return Invoke<containerd::task::v2::StateResponse>("State", request, deadline);
  }
  [[nodiscard]] absl::StatusOr<google::protobuf::Empty> Kill(
      const containerd::task::v2::KillRequest& request, absl::Time deadline) {
    return Invoke<google::protobuf::Empty>("Kill", request, deadline);
  }
  [[nodiscard]] absl::StatusOr<containerd::task::v2::DeleteResponse> Delete(
      const containerd::task::v2::DeleteRequest& request, absl::Time deadline) {
    return Invoke<containerd::task::v2::DeleteResponse>("Delete", request, deadline);
  }
  [[nodiscard]] absl::StatusOr<containerd::task::v2::WaitResponse> Wait(
      const containerd::task::v2::WaitRequest& request, absl::Time deadline) {
    return Invoke<containerd::task::v2::WaitResponse>("Wait", request, deadline);
  }
  [[nodiscard]] absl::StatusOr<containerd::task::v2::PidsResponse> Pids(
      const containerd::task::v2::PidsRequest& request, absl::Time deadline) {
    return Invoke<containerd::task::v2::PidsResponse>("Pids", request, deadline);
  }
  [[nodiscard]] absl::StatusOr<google::protobuf::Empty> Exec(
      const containerd::task::v2::ExecProcessRequest& request, absl::Time deadline) {
    return Invoke<google::protobuf::Empty>("Exec", request, deadline);
  }
  [[nodiscard]] absl::StatusOr<google::protobuf::Empty> ResizePty(
      const containerd::task::v2::ResizePtyRequest& request, absl::Time deadline) {
    return Invoke<google::protobuf::Empty>("ResizePty", request, deadline);
  }
  [[nodiscard]] absl::StatusOr<google::protobuf::Empty> CloseIO(
      const containerd::task::v2::CloseIORequest& request, absl::Time deadline) {
    return Invoke<google::protobuf::Empty>("CloseIO", request, deadline);
  }
  [[nodiscard]] absl::StatusOr<google::protobuf::Empty> Update(
      const containerd::task::v2::UpdateTaskRequest& request, absl::Time deadline) {
    return Invoke<google::protobuf::Empty>("Update", request, deadline);
  }
  [[nodiscard]] absl::StatusOr<containerd::task::v2::StatsResponse> Stats(
      const containerd::task::v2::StatsRequest& request, absl::Time deadline) {
    return Invoke<containerd::task::v2::StatsResponse>("Stats", request, deadline);
  }
  [[nodiscard]] absl::StatusOr<containerd::task::v2::ConnectResponse> ConnectTask(
      const containerd::task::v2::ConnectRequest& request, absl::Time deadline) {
    return Invoke<containerd::task::v2::ConnectResponse>("Connect", request, deadline);
  }
  [[nodiscard]] absl::StatusOr<google::protobuf::Empty> Shutdown(
      const containerd::task::v2::ShutdownRequest& request, absl::Time deadline) {
    return Invoke<google::protobuf::Empty>("Shutdown", request, deadline);
  }

  // The underlying connection, for extension services (berth.shim.v1.Shim).
  Client& client() { return *client_; }
  // False once the connection has dropped or been closed.
  [[nodiscard]] bool connected() const { return client_->connected(); }
  // Closes the connection; pending calls fail with UNAVAILABLE.
  void Close() { client_->Close(); }

 private:
  template <typename Resp, typename Req>
  absl::StatusOr<Resp> Invoke(std::string_view method, const Req& request, absl::Time deadline) {
    return client_->Call<Req, Resp>(kTaskService, method, request, deadline);
  }

  std::unique_ptr<Client> client_;
};

}  // namespace berth::ttrpc
