// SPDX-License-Identifier: Apache-2.0
// Transient scope units: moving a running process (a pod's shim) into a scope of its own in a
// slice, and setting a unit's resource limits, through systemd's D-Bus API
// (docs/cgroup-drivers.md §3). The driver's `enter` (ABI 1.2) uses StartScope and
// AttachToUnit for a pod's shim.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "plugins/cgroup-systemd/systemd_bus.h"

namespace berth::cgroup_systemd {

// systemd's value for "no limit" of the uint64 properties below ("infinity").
inline constexpr uint64_t kInfinity = UINT64_MAX;

// Resource properties of a unit; unset fields are left as they are. systemd applies each on
// cgroup v1 and v2 (v1: CPUWeight as cpu.shares = weight * 1024 / 100, MemoryMax as
// memory.limit_in_bytes, TasksMax as pids.max, CPUQuotaPerSecUSec as cpu.cfs_quota_us,
// IOWeight as blkio.weight); AllowedCPUs and AllowedMemoryNodes only on cgroup v2 (systemd
// does not drive the v1 cpuset controller).
struct UnitResources {
  std::optional<uint64_t> cpu_weight;               // CPUWeight, 1..10000 (100: default)
  std::optional<uint64_t> cpu_quota_per_sec_usec;   // CPUQuotaPerSecUSec, > 0 or kInfinity
  std::optional<uint64_t> memory_max;               // MemoryMax, bytes, or kInfinity
  std::optional<uint64_t> tasks_max;                // TasksMax, > 0 or kInfinity
  std::optional<std::string> allowed_cpus;          // AllowedCPUs, a list: "0-3,6"
  std::optional<std::string> allowed_memory_nodes;  // AllowedMemoryNodes, a list: "0"
  std::optional<uint64_t> io_weight;                // IOWeight, 1..10000 (100: default)
};

struct ScopeProperties {
  std::string description;  // Description; "" -> "berth scope <unit>"
  UnitResources resources;  // applied as the scope starts
  // How long to wait for the start job; past it, DEADLINE_EXCEEDED.
  std::chrono::milliseconds start_timeout{10'000};
};

// Starts transient scope `unit_name` (ending in ".scope") in slice `slice` holding the
// running process `pid` (in systemd's PID namespace), with Delegate=yes (the process may
// manage cgroups below the scope, as an OCI runtime does) and
// CollectMode=inactive-or-failed (the unit is unloaded once it stops, even failed), and
// waits until it is active. INVALID_ARGUMENT for a bad name or property,
// ALREADY_EXISTS when the unit exists, NOT_FOUND when systemd cannot see the process,
// FAILED_PRECONDITION when the scope did not become active (its Result in the message).
[[nodiscard]] absl::Status StartScope(SystemdBus& bus, std::string_view slice,
                                      std::string_view unit_name, pid_t pid,
                                      const ScopeProperties& properties);

// Moves the running process `pid` into loaded unit `unit` (AttachProcessesToUnit, systemd
// 238 or later; subcgroup "": the unit's own cgroup). NOT_FOUND when no such unit is loaded
// or systemd cannot see the process; the D-Bus error otherwise.
[[nodiscard]] absl::Status AttachToUnit(SystemdBus& bus, std::string_view unit, pid_t pid);

// Sets `resources` on loaded unit `unit` at runtime (SetUnitProperties with runtime=true: not
// persisted across a reboot). INVALID_ARGUMENT for a value out of range, NOT_FOUND when no
// such unit is loaded.
[[nodiscard]] absl::Status SetUnitResources(SystemdBus& bus, std::string_view unit,
                                            const UnitResources& resources);

// A CPU or memory node list ("0-3,6", blanks around items allowed) as systemd's D-Bus byte
// mask: bit i%8 of byte i/8 set for each i listed. INVALID_ARGUMENT naming `what` for a
// malformed list, a reversed range or an index above 8191.
[[nodiscard]] absl::StatusOr<std::vector<uint8_t>> ParseIndexList(std::string_view list,
                                                                  std::string_view what);

}  // namespace berth::cgroup_systemd
