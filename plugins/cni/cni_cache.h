// SPDX-License-Identifier: Apache-2.0
// The attachment cache: one JSON file per attached sandbox, <dir>/<sandbox id>.json, with
// everything DEL, CHECK and GC need after a restart or a change of the configuration:
//   {"version": 1, "sandbox_id": str, "ifname": str, "network": str, "config_file": str,
//    "config": str (the configuration list's bytes as used), "request": {...} (as
//    received), "capability_args": {...}, "result": {...} | null}
// It is written (tmp + fsync + rename) before the first ADD, so that a crash in the middle
// of an ADD still leaves what is needed to undo it; "result" is null until the ADD chain
// completed.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace berth::cni {

struct AttachmentRecord {
  std::string sandbox_id;
  std::string ifname;
  std::string network;      // the network's name
  std::string config_file;  // where the configuration was read from, for messages
  std::string config;       // the configuration list's bytes (cni_config.h)
  nlohmann::json request;   // the attach request as received
  nlohmann::json capability_args = nlohmann::json::object();
  nlohmann::json result;  // the final ADD result; null while ADD has not completed
};

// Not synchronized: callers serialize the operations on one sandbox.
class AttachmentCache {
 public:
  // Creates `dir` (0700) if needed and removes temporary files a crash left behind.
  [[nodiscard]] static absl::StatusOr<AttachmentCache> Open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  std::string PathOf(std::string_view sandbox_id) const;

  // The record of `sandbox_id`, or nullopt. DATA_LOSS naming the file when it is corrupt.
  [[nodiscard]] absl::StatusOr<std::optional<AttachmentRecord>> Read(
      std::string_view sandbox_id) const;
  // Writes the record durably.
  [[nodiscard]] absl::Status Write(const AttachmentRecord& record) const;
  // Removes the record durably; OK when there is none.
  [[nodiscard]] absl::Status Remove(std::string_view sandbox_id) const;
  // The sandbox ids that have a record, sorted.
  [[nodiscard]] absl::StatusOr<std::vector<std::string>> List() const;

 private:
  explicit AttachmentCache(std::string dir) : dir_(std::move(dir)) {}
  std::string dir_;
};

}  // namespace berth::cni
