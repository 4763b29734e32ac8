// SPDX-License-Identifier: Apache-2.0
// What the runtime-runc plugin remembers about sandboxes (one shim each) and tasks (a
// container's init process or an exec), in memory and in its store bucket, and the JSON
// it publishes and reports (docs/shim.md §6).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/time/time.h"
#include "google/protobuf/timestamp.pb.h"
#include "nlohmann/json.hpp"

namespace berth::runc {

inline constexpr char kBucket[] = "runtime-runc";
inline constexpr char kExitTopic[] = "/runtime/task-exit";
inline constexpr char kReasonOom[] = "OOMKilled";
inline constexpr char kReasonShimDied[] = "ShimDied";

enum class TaskStatus { kCreated, kRunning, kStopped };
std::string_view TaskStatusName(TaskStatus s);
std::optional<TaskStatus> ParseTaskStatus(std::string_view s);

// One pod's shim.
struct SandboxRecord {
  std::string id;
  std::string handler;
  std::string shim;     // absolute path of the shim binary that serves it
  std::string address;  // its ttrpc address
  std::string bundle;   // the bundle its `start` ran in (the shim's log FIFO lives there)

  nlohmann::json ToJson() const;
  static std::optional<SandboxRecord> FromJson(std::string_view text);
};

// A container's init process (exec_id empty) or an exec process.
struct TaskRecord {
  std::string handler;
  std::string sandbox_id;
  std::string id;
  std::string exec_id;
  std::string bundle;  // the container's bundle (init only)
  TaskStatus status = TaskStatus::kCreated;
  uint32_t pid = 0;
  uint32_t exit_status = 0;
  std::string exited_at;  // RFC 3339 with nanoseconds, empty until it exited
  std::string reason;     // "", "OOMKilled", "ShimDied"

  // Store and `tasks` form: {handler, sandbox_id, id, exec_id, status, pid, exit_status,
  // exited_at, reason} plus bundle in the store.
  nlohmann::json ToJson(bool with_bundle) const;
  static std::optional<TaskRecord> FromJson(std::string_view text);
  // The /runtime/task-exit payload.
  std::string ExitEvent() const;
};

// Store keys: "sandbox/<sandbox id>", "task/<sandbox id>/<id>/<exec id>".
std::string SandboxKey(std::string_view sandbox_id);
std::string TaskKey(std::string_view sandbox_id, std::string_view id, std::string_view exec_id);
std::string TaskPrefix(std::string_view sandbox_id);

// RFC 3339 in UTC with nanoseconds, trailing zeros dropped (Go's RFC3339Nano).
std::string FormatRfc3339(absl::Time t);
std::string FormatTimestamp(const google::protobuf::Timestamp& ts);
// Inverse of FormatTime; nullopt when unparseable.
std::optional<google::protobuf::Timestamp> ParseTimestamp(std::string_view text);

}  // namespace berth::runc
