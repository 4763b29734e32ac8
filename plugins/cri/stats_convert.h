// SPDX-License-Identifier: Apache-2.0
// The figures of a cgroup driver's statistics JSON (berth_cgroup_driver_v1.stats in
// berth/kinds.h, docs/cgroups.md §3) as the CRI's CpuUsage, MemoryUsage and IoUsage, pressure
// stall information included. A figure that is absent from the JSON, or not a number there,
// is left unset, never zero: the kubelet tells "not reported" from 0.
#pragma once

#include <cstdint>

#include "cri/v1/api.pb.h"
#include "nlohmann/json.hpp"

namespace berth::cri {

// "cpu": usage_core_nano_seconds from usage_ns, psi; the timestamp always (`ts`, when the
// driver read the figures). usage_nano_cores needs two readings: the caller derives it.
void FillCpu(const nlohmann::json& stats, int64_t ts, runtime::v1::CpuUsage* cpu);

// "memory": working set, usage, RSS, page faults, available bytes (limit − working set, when
// there is a limit), psi; the timestamp always.
void FillMemory(const nlohmann::json& stats, int64_t ts, runtime::v1::MemoryUsage* mem);

// "io": psi. False, and `io` left alone, when the JSON has no IO figure: the caller then
// leaves ContainerStats.io / LinuxPodSandboxStats.io unset (see stats_convert.cc for why).
[[nodiscard]] bool FillIo(const nlohmann::json& stats, int64_t ts, runtime::v1::IoUsage* io);

// A "psi" object ({"some":{"total_ns","avg10","avg60","avg300"},"full":{...}}) into `out`:
// Some and Full each set only when their line is there. False, and `out` left alone, when
// neither is.
[[nodiscard]] bool FillPsi(const nlohmann::json& psi, runtime::v1::PsiStats* out);

}  // namespace berth::cri
