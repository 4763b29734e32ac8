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

// One line of a pressure stall information file (cpu.pressure, memory.pressure, io.pressure):
// the share of wall time, in percent over the last 10, 60 and 300 seconds, during which some
// (or all: "full") of the cgroup's tasks were stalled on the resource, and the total stall
// time since the cgroup was created.
struct PsiFigures {
  uint64_t total_ns = 0;  // the file's total= is in microseconds
  double avg10 = 0, avg60 = 0, avg300 = 0;
};
// The "some" and "full" lines of one pressure file; a line that is absent (cpu.pressure has
// no "full" before Linux 5.13) or malformed is empty.
struct Psi {
  std::optional<PsiFigures> some, full;
  bool empty() const { return !some && !full; }
};

// A figure the kernel does not provide (controller not enabled, file absent, "max") is empty
// and left out of the JSON.
struct CgroupStats {
  int64_t timestamp_ns = 0;  // CLOCK_REALTIME when the reading started
  std::optional<uint64_t> cpu_usage_ns, cpu_user_ns, cpu_system_ns;
  std::optional<uint64_t> memory_usage_bytes, memory_working_set_bytes, memory_rss_bytes;
  std::optional<uint64_t> memory_page_faults, memory_major_page_faults;
  std::optional<uint64_t> memory_limit_bytes, memory_oom_kills;
  std::optional<uint64_t> pids_current, pids_limit;
  // Pressure stall information, from the cgroup's directory in the cgroup2 hierarchy (the
  // hybrid host's cgroup2 mount for v1 stats); empty where the kernel has no PSI (before
  // 4.20, CONFIG_PSI off, psi=0 at boot, or cgroup.pressure set to 0).
  Psi cpu_psi, memory_psi, io_psi;
};

// The JSON of berth_cgroup_driver_v1.stats (berth/kinds.h): {"timestamp_ns", "cpu":
// {"usage_ns", "user_ns", "system_ns", "psi"}, "memory": {"usage_bytes", "working_set_bytes",
// "rss_bytes", "page_faults", "major_page_faults", "limit_bytes", "oom_kills", "psi"}, "io":
// {"psi"}, "pids": {"current", "limit"}}, each "psi" {"some": {"total_ns", "avg10", "avg60",
// "avg300"}, "full": {...}}; empty figures, and groups with none, left out.
[[nodiscard]] std::string StatsToJson(const CgroupStats& stats);

// The cgroup at `dir` of a cgroup2 hierarchy ("/sys/fs/cgroup/kubepods/pod1/abc"), pressure
// files included. NOT_FOUND when the directory does not exist.
[[nodiscard]] absl::StatusOr<CgroupStats> ReadV2Stats(const std::string& dir);

// The directories of one cgroup in the v1 hierarchies the figures come from; empty when
// that controller is not mounted. `unified`: its directory in the hybrid host's cgroup2
// mount ("/sys/fs/cgroup/unified/kubepods/pod1/abc"), where the pressure files are; empty on
// a v1 host without one.
struct V1StatsDirs {
  std::string cpuacct, memory, pids;
  std::string unified;
};
// NOT_FOUND when the cgroup exists in none of the controller hierarchies (the cgroup2
// directory alone does not count: it only adds the pressure figures, and a missing one just
// leaves them out).
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
// The text of a pressure file: lines "some avg10=0.08 avg60=8.54 avg300=12.81 total=4523440894"
// and "full ..."; a line missing one of the four keys, or with a value that is not a number,
// is left out. Other keys and lines are ignored.
[[nodiscard]] Psi ParsePsi(std::string_view text);

}  // namespace berth::cgroupfs
