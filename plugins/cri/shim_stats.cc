// SPDX-License-Identifier: Apache-2.0
#include "plugins/cri/shim_stats.h"

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "shim/cgroups/v1/metrics.pb.h"
#include "shim/cgroups/v2/metrics.pb.h"

namespace berth::cri {
namespace {

using nlohmann::json;

constexpr absl::string_view kV1 = "io.containerd.cgroups.v1.Metrics";
constexpr absl::string_view kV2 = "io.containerd.cgroups.v2.Metrics";

// A memory or pids limit at or above this is the kernel's "no limit" (v1 writes LONG_MAX
// rounded down to a page; containerd's v2 reader turns "max" into UINT64_MAX).
constexpr uint64_t kUnlimited = uint64_t{1} << 62;

bool IsLimit(uint64_t v) { return v != 0 && v < kUnlimited; }

uint64_t WorkingSet(uint64_t usage, uint64_t inactive_file) {
  return usage > inactive_file ? usage - inactive_file : 0;
}

// rss, page faults and major page faults into `memory`, by the rule of shim_stats.h.
void Faults(uint64_t rss, uint64_t faults, uint64_t major, json* memory) {
  if (rss != 0) (*memory)["rss_bytes"] = rss;
  if (faults != 0) {
    (*memory)["page_faults"] = faults;
    (*memory)["major_page_faults"] = major;
  }
}

json V1(const io::containerd::cgroups::v1::Metrics& m, int64_t ts) {
  json st = {{"timestamp_ns", ts}};
  if (m.has_cpu() && m.cpu().has_usage()) {
    const auto& u = m.cpu().usage();  // nanoseconds already
    st["cpu"] = {{"usage_ns", u.total()}, {"user_ns", u.user()}, {"system_ns", u.kernel()}};
  }
  json memory = json::object();
  if (m.has_memory()) {
    // The total_* keys: the cgroup and its descendants, as the cgroup driver reads them.
    const auto& mem = m.memory();
    if (mem.has_usage()) {
      memory["usage_bytes"] = mem.usage().usage();
      memory["working_set_bytes"] = WorkingSet(mem.usage().usage(), mem.total_inactive_file());
      if (IsLimit(mem.usage().limit())) memory["limit_bytes"] = mem.usage().limit();
    }
    Faults(mem.total_rss(), mem.total_pg_fault(), mem.total_pg_maj_fault(), &memory);
  }
  if (m.has_memory_oom_control()) memory["oom_kills"] = m.memory_oom_control().oom_kill();
  if (!memory.empty()) st["memory"] = std::move(memory);
  if (m.has_pids()) {
    st["pids"] = {{"current", m.pids().current()}};
    if (IsLimit(m.pids().limit())) st["pids"]["limit"] = m.pids().limit();
  }
  return st;
}

// A PSIStats as the driver's "psi" object (totals µs → ns); null when it has neither line.
json Psi(const io::containerd::cgroups::v2::PSIStats& p) {
  json out = json::object();
  auto line = [](const io::containerd::cgroups::v2::PSIData& d) {
    return json{{"total_ns", d.total() * 1000},
                {"avg10", d.avg10()},
                {"avg60", d.avg60()},
                {"avg300", d.avg300()}};
  };
  if (p.has_some()) out["some"] = line(p.some());
  if (p.has_full()) out["full"] = line(p.full());
  return out.empty() ? json() : out;
}

json V2(const io::containerd::cgroups::v2::Metrics& m, int64_t ts) {
  json st = {{"timestamp_ns", ts}};
  if (m.has_cpu()) {
    const auto& c = m.cpu();  // microseconds
    json cpu = {{"usage_ns", c.usage_usec() * 1000},
                {"user_ns", c.user_usec() * 1000},
                {"system_ns", c.system_usec() * 1000}};
    if (c.has_psi()) {
      if (json psi = Psi(c.psi()); !psi.is_null()) cpu["psi"] = std::move(psi);
    }
    st["cpu"] = std::move(cpu);
  }
  json memory = json::object();
  if (m.has_memory()) {
    const auto& mem = m.memory();
    memory["usage_bytes"] = mem.usage();
    memory["working_set_bytes"] = WorkingSet(mem.usage(), mem.inactive_file());
    if (IsLimit(mem.usage_limit())) memory["limit_bytes"] = mem.usage_limit();
    Faults(mem.anon(), mem.pgfault(), mem.pgmajfault(), &memory);
    if (mem.has_psi()) {
      if (json psi = Psi(mem.psi()); !psi.is_null()) memory["psi"] = std::move(psi);
    }
  }
  if (m.has_memory_events()) memory["oom_kills"] = m.memory_events().oom_kill();
  if (!memory.empty()) st["memory"] = std::move(memory);
  if (m.has_io() && m.io().has_psi()) {
    if (json psi = Psi(m.io().psi()); !psi.is_null()) st["io"] = {{"psi", std::move(psi)}};
  }
  if (m.has_pids()) {
    st["pids"] = {{"current", m.pids().current()}};
    if (IsLimit(m.pids().limit())) st["pids"]["limit"] = m.pids().limit();
  }
  return st;
}

template <typename Message>
absl::StatusOr<Message> Parse(absl::string_view value, absl::string_view name) {
  Message m;
  if (!m.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
    return absl::InvalidArgumentError(
        absl::StrCat("the shim's metrics do not parse as ", name, " (", value.size(), " bytes)"));
  }
  return m;
}

}  // namespace

absl::StatusOr<json> ShimMetricsToStats(absl::string_view type_url, absl::string_view value,
                                        int64_t timestamp_ns) {
  absl::string_view name = type_url;
  if (size_t slash = name.rfind('/'); slash != absl::string_view::npos) {
    name.remove_prefix(slash + 1);
  }
  if (name == kV1) {
    absl::StatusOr<io::containerd::cgroups::v1::Metrics> m =
        Parse<io::containerd::cgroups::v1::Metrics>(value, kV1);
    if (!m.ok()) return m.status();
    return V1(*m, timestamp_ns);
  }
  if (name == kV2) {
    absl::StatusOr<io::containerd::cgroups::v2::Metrics> m =
        Parse<io::containerd::cgroups::v2::Metrics>(value, kV2);
    if (!m.ok()) return m.status();
    return V2(*m, timestamp_ns);
  }
  return absl::UnimplementedError(absl::StrCat("the shim's metrics are of type \"", type_url,
                                               "\"; berthd reads ", kV1, " and ", kV2));
}

}  // namespace berth::cri
