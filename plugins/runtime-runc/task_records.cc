// SPDX-License-Identifier: Apache-2.0
#include "plugins/runtime-runc/task_records.h"

#include "absl/strings/str_cat.h"

namespace berth::runc {
namespace {

std::string Str(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

uint32_t U32(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_number_unsigned() ? it->get<uint32_t>() : 0;
}

}  // namespace

std::string_view TaskStatusName(TaskStatus s) {
  switch (s) {
    case TaskStatus::kCreated:
      return "created";
    case TaskStatus::kRunning:
      return "running";
    case TaskStatus::kStopped:
      return "stopped";
  }
  return "unknown";
}

std::optional<TaskStatus> ParseTaskStatus(std::string_view s) {
  if (s == "created") return TaskStatus::kCreated;
  if (s == "running") return TaskStatus::kRunning;
  if (s == "stopped") return TaskStatus::kStopped;
  return std::nullopt;
}

nlohmann::json SandboxRecord::ToJson() const {
  return {
      {"id", id}, {"handler", handler}, {"shim", shim}, {"address", address}, {"bundle", bundle}};
}

std::optional<SandboxRecord> SandboxRecord::FromJson(std::string_view text) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (!j.is_object()) return std::nullopt;
  SandboxRecord r{Str(j, "id"), Str(j, "handler"), Str(j, "shim"), Str(j, "address"),
                  Str(j, "bundle")};
  if (r.id.empty() || r.shim.empty()) return std::nullopt;
  return r;
}

nlohmann::json TaskRecord::ToJson(bool with_bundle) const {
  nlohmann::json j = {{"handler", handler},
                      {"sandbox_id", sandbox_id},
                      {"id", id},
                      {"exec_id", exec_id},
                      {"status", std::string(TaskStatusName(status))},
                      {"pid", pid},
                      {"exit_status", exit_status},
                      {"exited_at", exited_at},
                      {"reason", reason}};
  if (with_bundle) j["bundle"] = bundle;
  return j;
}

std::optional<TaskRecord> TaskRecord::FromJson(std::string_view text) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (!j.is_object()) return std::nullopt;
  TaskRecord r;
  r.handler = Str(j, "handler");
  r.sandbox_id = Str(j, "sandbox_id");
  r.id = Str(j, "id");
  r.exec_id = Str(j, "exec_id");
  r.bundle = Str(j, "bundle");
  std::optional<TaskStatus> status = ParseTaskStatus(Str(j, "status"));
  if (r.sandbox_id.empty() || r.id.empty() || !status) return std::nullopt;
  r.status = *status;
  r.pid = U32(j, "pid");
  r.exit_status = U32(j, "exit_status");
  r.exited_at = Str(j, "exited_at");
  r.reason = Str(j, "reason");
  return r;
}

std::string TaskRecord::ExitEvent() const {
  return nlohmann::json({{"handler", handler},
                         {"sandbox_id", sandbox_id},
                         {"id", id},
                         {"exec_id", exec_id},
                         {"pid", pid},
                         {"exit_status", exit_status},
                         {"exited_at", exited_at},
                         {"reason", reason}})
      .dump();
}

std::string SandboxKey(std::string_view sandbox_id) {
  return absl::StrCat("sandbox/", std::string(sandbox_id));
}

std::string TaskPrefix(std::string_view sandbox_id) {
  return absl::StrCat("task/", std::string(sandbox_id), "/");
}

std::string TaskKey(std::string_view sandbox_id, std::string_view id, std::string_view exec_id) {
  return absl::StrCat(TaskPrefix(sandbox_id), std::string(id), "/", std::string(exec_id));
}

std::string FormatRfc3339(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E*SZ", t, absl::UTCTimeZone());
}

std::string FormatTimestamp(const google::protobuf::Timestamp& ts) {
  if (ts.seconds() == 0 && ts.nanos() == 0) return "";
  return FormatRfc3339(absl::FromUnixSeconds(ts.seconds()) + absl::Nanoseconds(ts.nanos()));
}

std::optional<google::protobuf::Timestamp> ParseTimestamp(std::string_view text) {
  absl::Time t;
  std::string err;
  if (!absl::ParseTime("%Y-%m-%dT%H:%M:%E*S%Ez", std::string(text), &t, &err)) {
    return std::nullopt;
  }
  google::protobuf::Timestamp ts;
  const int64_t ns = absl::ToUnixNanos(t);
  ts.set_seconds(ns / 1000000000);
  ts.set_nanos(static_cast<int32_t>(ns % 1000000000));
  return ts;
}

}  // namespace berth::runc
