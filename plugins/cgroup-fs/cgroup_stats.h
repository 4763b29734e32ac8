// SPDX-License-Identifier: Apache-2.0
// Statistics of one cgroup, read from its control files (docs/cgroups.md §3 lists each figure
// and its file per cgroup version). Called for every container every few seconds: each file
// is read with open/read into one stack buffer, nothing is listed or walked.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace berth::cgroupfs {

// A figure the kernel does not provide (controller not enabled, file absent, "max") is empty
// and left out of the JSON.
struct CgroupStats {
  int64_t timestamp_ns = 0;  // CLOCK_REALTIME when the reading started
  std::optional<uint64_t> cpu_usage_ns, cpu_user_ns, cpu_system_ns;
  std::optional<uint64_t> memory_usage_bytes, memory_working_set_bytes, memory_rss_bytes;
  std::optional<uint64_t> memory_page_faults, memory_major_page_faults;
  std::optional<uint64_t> memory_limit_bytes, memory_oom_kills;
  std::optional<uint64_t> pids_current, pids_limit;
};

// The JSON of berth_cgroup_driver_v1.stats (berth/kinds.h): {"timestamp_ns", "cpu":
// {"usage_ns", "user_ns", "system_ns"}, "memory": {"usage_bytes", "working_set_bytes",
// "rss_bytes", "page_faults", "major_page_faults", "limit_bytes", "oom_kills"}, "pids":
// {"current", "limit"}}; empty figures, and groups with none, left out.
[[nodiscard]] std::string StatsToJson(const CgroupStats& stats);

// The cgroup at `dir` of a cgroup2 hierarchy ("/sys/fs/cgroup/kubepods/pod1/abc").
// NOT_FOUND when the directory does not exist.
[[nodiscard]] absl::StatusOr<CgroupStats> ReadV2Stats(const std::string& dir);

// The directories of one cgroup in the v1 hierarchies the figures come from; empty when
// that controller is not mounted.
struct V1StatsDirs {
  std::string cpuacct, memory, pids;
};
// NOT_FOUND when the cgroup exists in none of them.
[[nodiscard]] absl::StatusOr<CgroupStats> ReadV1Stats(const V1StatsDirs& dirs);

// The v1 memory controller reports "no limit" as LONG_MAX rounded down to a page
// (9223372036854771712 with 4 KiB pages); anything from 2^62 (4 EiB) up counts as no limit.
inline constexpr uint64_t kV1UnlimitedFloor = uint64_t{1} << 62;

// Parsing helpers, exposed for the tests.
// A decimal figure with surrounding blanks; empty for "max" or anything else.
[[nodiscard]] std::optional<uint64_t> ParseFigure(std::string_view text);
// The value of `key` in a flat-keyed file ("key value" per line); empty when absent.
[[nodiscard]] std::optional<uint64_t> FlatKeyed(std::string_view text, std::string_view key);
// Several keys of a flat-keyed file in one pass; keys not found leave their target alone.
struct FlatKey {
  std::string_view key;
  std::optional<uint64_t>* out;
};
void ParseFlatKeyed(std::string_view text, std::initializer_list<FlatKey> keys);

}  // namespace berth::cgroupfs
