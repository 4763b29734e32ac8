// SPDX-License-Identifier: Apache-2.0
#include "plugins/cri/task_client.h"

#include "absl/strings/str_cat.h"
#include "shim/berth/v1/shim.pb.h"
#include "core/status_macros.h"
#include "nlohmann/json.hpp"
#include "shim/task/v2/shim.pb.h"

namespace berth::cri {
namespace {

constexpr char kTask[] = "containerd.task.v2.Task";
constexpr char kShim[] = "berth.shim.v1.Shim";

absl::Status Code(int32_t code, std::string message) {
  return absl::Status(static_cast<absl::StatusCode>(code), message);
}

template <typename Message>
absl::StatusOr<Message> Parse(const std::string& bytes, const char* what) {
  Message m;
  if (!m.ParseFromString(bytes)) {
    return absl::InternalError(absl::StrCat("cannot parse the shim's ", what, " response"));
  }
  return m;
}

}  // namespace

absl::StatusOr<std::string> TaskClient::Call(const std::string& sandbox_id, const char* service,
                                             const char* method, const std::string& request,
                                             uint64_t timeout_ms) {
  sdk::StringSink out, err;
  int32_t code = runtime_.table->shim_call(runtime_.instance, sdk::Str(handler_),
                                           sdk::Str(sandbox_id), sdk::Str(service),
                                           sdk::Str(method), sdk::Str(request), timeout_ms,
                                           out.get(), err.get());
  if (code != BERTH_OK) return Code(code, err.take());
  return out.take();
}

absl::StatusOr<uint32_t> TaskClient::Create(const std::string& sandbox_id, const CreateTask& t) {
  containerd::task::v2::CreateTaskRequest req;
  req.set_id(t.id);
  req.set_bundle(t.bundle);
  req.set_terminal(t.terminal);
  req.set_stdin(t.stdin_uri);
  req.set_stdout(t.stdout_uri);
  req.set_stderr(t.stderr_uri);
  ASSIGN_OR_RETURN(std::string bytes, Call(sandbox_id, kTask, "Create", req.SerializeAsString()));
  ASSIGN_OR_RETURN(auto resp, Parse<containerd::task::v2::CreateTaskResponse>(bytes, "Create"));
  return resp.pid();
}

absl::StatusOr<uint32_t> TaskClient::Start(const std::string& sandbox_id, const std::string& id,
                                           const std::string& exec_id) {
  containerd::task::v2::StartRequest req;
  req.set_id(id);
  req.set_exec_id(exec_id);
  ASSIGN_OR_RETURN(std::string bytes, Call(sandbox_id, kTask, "Start", req.SerializeAsString()));
  ASSIGN_OR_RETURN(auto resp, Parse<containerd::task::v2::StartResponse>(bytes, "Start"));
  return resp.pid();
}

absl::Status TaskClient::Kill(const std::string& sandbox_id, const std::string& id, int signal,
                              bool all, const std::string& exec_id) {
  containerd::task::v2::KillRequest req;
  req.set_id(id);
  req.set_exec_id(exec_id);
  req.set_signal(static_cast<uint32_t>(signal));
  req.set_all(all);
  return Call(sandbox_id, kTask, "Kill", req.SerializeAsString()).status();
}

absl::Status TaskClient::Delete(const std::string& sandbox_id, const std::string& id,
                                const std::string& exec_id) {
  containerd::task::v2::DeleteRequest req;
  req.set_id(id);
  req.set_exec_id(exec_id);
  return Call(sandbox_id, kTask, "Delete", req.SerializeAsString()).status();
}

absl::Status TaskClient::Exec(const std::string& sandbox_id, const ExecTask& t) {
  containerd::task::v2::ExecProcessRequest req;
  req.set_id(t.id);
  req.set_exec_id(t.exec_id);
  req.set_terminal(t.terminal);
  req.set_stdin(t.stdin_uri);
  req.set_stdout(t.stdout_uri);
  req.set_stderr(t.stderr_uri);
  req.mutable_spec()->set_type_url("types.containerd.io/opencontainers/runtime-spec/1/Process");
  req.mutable_spec()->set_value(t.process_json);
  return Call(sandbox_id, kTask, "Exec", req.SerializeAsString()).status();
}

absl::Status TaskClient::ResizePty(const std::string& sandbox_id, const std::string& id,
                                   const std::string& exec_id, uint32_t width, uint32_t height) {
  containerd::task::v2::ResizePtyRequest req;
  req.set_id(id);
  req.set_exec_id(exec_id);
  req.set_width(width);
  req.set_height(height);
  return Call(sandbox_id, kTask, "ResizePty", req.SerializeAsString()).status();
}

absl::Status TaskClient::CloseStdin(const std::string& sandbox_id, const std::string& id,
                                    const std::string& exec_id) {
  containerd::task::v2::CloseIORequest req;
  req.set_id(id);
  req.set_exec_id(exec_id);
  req.set_stdin(true);
  return Call(sandbox_id, kTask, "CloseIO", req.SerializeAsString()).status();
}

absl::StatusOr<AttachPoint> TaskClient::Attach(const std::string& sandbox_id,
                                               const std::string& id,
                                               const std::string& exec_id) {
  berth::shim::v1::AttachRequest req;
  req.set_id(id);
  req.set_exec_id(exec_id);
  ASSIGN_OR_RETURN(std::string bytes, Call(sandbox_id, kShim, "Attach", req.SerializeAsString()));
  ASSIGN_OR_RETURN(auto resp, Parse<berth::shim::v1::AttachResponse>(bytes, "Attach"));
  AttachPoint point;
  point.address = resp.address();
  point.terminal = resp.terminal();
  point.stdin = resp.stdin();
  return point;
}

absl::Status TaskClient::Update(const std::string& sandbox_id, const std::string& id,
                                const std::string& resources_json) {
  containerd::task::v2::UpdateTaskRequest req;
  req.set_id(id);
  req.mutable_resources()->set_type_url("opencontainers/runtime-spec/1/LinuxResources");
  req.mutable_resources()->set_value(resources_json);
  return Call(sandbox_id, kTask, "Update", req.SerializeAsString()).status();
}

absl::StatusOr<ExecSyncResult> TaskClient::ExecSync(const std::string& sandbox_id,
                                                    const std::string& id,
                                                    const std::string& process_json,
                                                    uint64_t timeout_ms) {
  berth::shim::v1::ExecSyncRequest req;
  req.set_id(id);
  req.mutable_spec()->set_type_url("types.containerd.io/opencontainers/runtime-spec/1/Process");
  req.mutable_spec()->set_value(process_json);
  req.set_timeout_ms(timeout_ms);
  req.set_max_output_bytes(16u << 20);  // the kubelet's gRPC message limit
  // The shim enforces the exec's deadline; the call's own deadline leaves it room to answer.
  uint64_t call_timeout = timeout_ms == 0 ? 24ull * 3600 * 1000 : timeout_ms + 30000;
  ASSIGN_OR_RETURN(std::string bytes,
                   Call(sandbox_id, kShim, "ExecSync", req.SerializeAsString(), call_timeout));
  ASSIGN_OR_RETURN(auto resp, Parse<berth::shim::v1::ExecSyncResponse>(bytes, "ExecSync"));
  ExecSyncResult r;
  r.exit_code = resp.exit_code();
  r.stdout_data = resp.stdout();
  r.stderr_data = resp.stderr();
  r.timed_out = resp.timed_out();
  return r;
}

absl::Status TaskClient::ReopenLog(const std::string& sandbox_id, const std::string& id) {
  berth::shim::v1::ReopenLogRequest req;
  req.set_id(id);
  return Call(sandbox_id, kShim, "ReopenLog", req.SerializeAsString()).status();
}

absl::StatusOr<TaskMetrics> TaskClient::Stats(const std::string& sandbox_id,
                                              const std::string& id, uint64_t timeout_ms) {
  containerd::task::v2::StatsRequest req;
  req.set_id(id);
  ASSIGN_OR_RETURN(std::string bytes,
                   Call(sandbox_id, kTask, "Stats", req.SerializeAsString(), timeout_ms));
  ASSIGN_OR_RETURN(auto resp, Parse<containerd::task::v2::StatsResponse>(bytes, "Stats"));
  if (!resp.has_stats() || resp.stats().type_url().empty()) {
    return absl::NotFoundError(absl::StrCat("the shim has no metrics for container ", id,
                                            " (Task/Stats answered an empty Any)"));
  }
  return TaskMetrics{resp.stats().type_url(), resp.stats().value()};
}

absl::StatusOr<uint32_t> TaskClient::ShimPid(const std::string& sandbox_id) {
  containerd::task::v2::ConnectRequest req;
  req.set_id(sandbox_id);
  ASSIGN_OR_RETURN(std::string out, Call(sandbox_id, kTask, "Connect", req.SerializeAsString()));
  ASSIGN_OR_RETURN(auto resp, Parse<containerd::task::v2::ConnectResponse>(out, "Connect"));
  if (resp.shim_pid() == 0) return absl::InternalError("the shim did not give its pid (Connect)");
  return resp.shim_pid();
}

absl::Status TaskClient::RemoveSandbox(const std::string& sandbox_id) {
  sdk::StringSink out, err;
  std::string request = nlohmann::json{{"sandbox_id", sandbox_id}}.dump();
  int32_t code = runtime_.table->control(runtime_.instance, sdk::Str("remove_sandbox"),
                                         sdk::Str(request), out.get(), err.get());
  if (code != BERTH_OK) return Code(code, err.take());
  return absl::OkStatus();
}

absl::StatusOr<bool> TaskClient::UsesBerthShim() const {
  sdk::StringSink out, err;
  const std::string request = nlohmann::json{{"handler", handler_}}.dump();
  int32_t code = runtime_.table->control(runtime_.instance, sdk::Str("handler_info"),
                                         sdk::Str(request), out.get(), err.get());
  if (code == BERTH_UNIMPLEMENTED) return false;
  if (code != BERTH_OK) return Code(code, err.take());
  nlohmann::json j = nlohmann::json::parse(out.str(), nullptr, false);
  return j.is_object() && j.value("berth_shim", false);
}

absl::StatusOr<std::vector<TaskInfo>> TaskClient::Tasks(
    const sdk::Iface<berth_runtime_v1>& runtime) {
  sdk::StringSink out, err;
  int32_t code = runtime.table->control(runtime.instance, sdk::Str("tasks"), sdk::Str("{}"),
                                        out.get(), err.get());
  if (code != BERTH_OK) return Code(code, err.take());
  nlohmann::json j = nlohmann::json::parse(out.str(), nullptr, false);
  if (!j.is_object() || !j["tasks"].is_array()) {
    return absl::InternalError("runtime plugin " + runtime.plugin_id +
                               ": control(\"tasks\") returned no task list");
  }
  std::vector<TaskInfo> tasks;
  for (const auto& t : j["tasks"]) {
    TaskInfo info;
    info.handler = t.value("handler", "");
    info.sandbox_id = t.value("sandbox_id", "");
    info.id = t.value("id", "");
    info.exec_id = t.value("exec_id", "");
    info.status = t.value("status", "");
    info.pid = t.value("pid", 0u);
    info.exit_status = t.value("exit_status", 0u);
    info.exited_at = t.value("exited_at", "");
    info.reason = t.value("reason", "");
    tasks.push_back(std::move(info));
  }
  return tasks;
}

}  // namespace berth::cri
