// SPDX-License-Identifier: Apache-2.0
// The metrics a shim v2 answers to Task/Stats (io.containerd.cgroups.v1.Metrics or
// io.containerd.cgroups.v2.Metrics, proto/shim/cgroups/) as the statistics JSON of a cgroup
// driver (berth_cgroup_driver_v1.stats in berth/kinds.h, docs/cgroups.md §3), so that the
// CRI figures come out of FillCpu/FillMemory/FillIo (stats_convert.h) the same whichever
// way they were read. Used for runtimes whose containers have no cgroup on the host (Kata:
// they run in a VM; the shim asks the guest).
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace berth::cri {

// `type_url` and `value` are the Any's; a type URL may carry a prefix up to its last '/'
// ("type.googleapis.com/io.containerd.cgroups.v1.Metrics"). `timestamp_ns` is when the
// figures were asked for (the Any carries no time). UNIMPLEMENTED for any other message,
// INVALID_ARGUMENT for bytes that do not parse.
//
// proto3 cannot tell a figure the shim did not fill from a 0, so: cpu, memory and pids are
// there when their message is; rss_bytes and page_faults are left out when 0 (a running
// container always has some anonymous memory and has faulted), major_page_faults with them;
// a limit of 0 or ≥ 2⁶² (the kernel's "unlimited") is left out.
[[nodiscard]] absl::StatusOr<nlohmann::json> ShimMetricsToStats(absl::string_view type_url,
                                                                absl::string_view value,
                                                                int64_t timestamp_ns);

}  // namespace berth::cri
