// SPDX-License-Identifier: Apache-2.0
#include "plugins/cri/stats_convert.h"

#include <optional>

namespace berth::cri {
namespace {

using nlohmann::json;

// The member `key` of `obj` when `obj` is an object and the member a non-negative integer.
std::optional<uint64_t> Unsigned(const json& obj, const char* key) {
  if (!obj.is_object()) return std::nullopt;
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_number_unsigned()) return std::nullopt;
  return it->get<uint64_t>();
}

// The member `key` of `obj` when it is a number (integers included: "avg10":1).
std::optional<double> Number(const json& obj, const char* key) {
  if (!obj.is_object()) return std::nullopt;
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_number()) return std::nullopt;
  return it->get<double>();
}

// The member `key` of `obj` when `obj` is an object; a null json otherwise.
const json& Member(const json& obj, const char* key) {
  static const json kNull;
  if (!obj.is_object()) return kNull;
  auto it = obj.find(key);
  return it == obj.end() ? kNull : *it;
}

// One line of a pressure file: needs its total; an absent average counts as 0.
bool FillPsiData(const json& line, runtime::v1::PsiData* out) {
  std::optional<uint64_t> total = Unsigned(line, "total_ns");
  if (!total) return false;
  out->set_total(*total);
  out->set_avg10(Number(line, "avg10").value_or(0));
  out->set_avg60(Number(line, "avg60").value_or(0));
  out->set_avg300(Number(line, "avg300").value_or(0));
  return true;
}

}  // namespace

bool FillPsi(const json& psi, runtime::v1::PsiStats* out) {
  runtime::v1::PsiData some, full;
  bool has_some = FillPsiData(Member(psi, "some"), &some);
  bool has_full = FillPsiData(Member(psi, "full"), &full);
  if (has_some) *out->mutable_some() = some;
  if (has_full) *out->mutable_full() = full;
  return has_some || has_full;
}

void FillCpu(const json& st, int64_t ts, runtime::v1::CpuUsage* cpu) {
  cpu->set_timestamp(ts);
  const json& c = Member(st, "cpu");
  if (std::optional<uint64_t> usage = Unsigned(c, "usage_ns")) {
    cpu->mutable_usage_core_nano_seconds()->set_value(*usage);
  }
  if (runtime::v1::PsiStats psi; FillPsi(Member(c, "psi"), &psi)) *cpu->mutable_psi() = psi;
}

void FillMemory(const json& st, int64_t ts, runtime::v1::MemoryUsage* mem) {
  mem->set_timestamp(ts);
  const json& m = Member(st, "memory");
  std::optional<uint64_t> working_set = Unsigned(m, "working_set_bytes");
  if (working_set) mem->mutable_working_set_bytes()->set_value(*working_set);
  if (auto v = Unsigned(m, "usage_bytes")) mem->mutable_usage_bytes()->set_value(*v);
  if (auto v = Unsigned(m, "rss_bytes")) mem->mutable_rss_bytes()->set_value(*v);
  if (auto v = Unsigned(m, "page_faults")) mem->mutable_page_faults()->set_value(*v);
  if (auto v = Unsigned(m, "major_page_faults")) mem->mutable_major_page_faults()->set_value(*v);
  std::optional<uint64_t> limit = Unsigned(m, "limit_bytes");
  if (limit && working_set) {
    mem->mutable_available_bytes()->set_value(*limit > *working_set ? *limit - *working_set : 0);
  }
  if (runtime::v1::PsiStats psi; FillPsi(Member(m, "psi"), &psi)) *mem->mutable_psi() = psi;
}

// IoUsage carries nothing but its timestamp and psi. With the KubeletPSI feature the kubelet
// turns an absent ContainerStats.io into IO stats stamped "now" with no PSI, and an IoUsage
// without psi into the same stamped with our timestamp: the two say the same, so io is only
// set when there is a figure for it (no IO message on hosts without PSI, as with cgroup v1
// without a cgroup2 mount).
bool FillIo(const json& st, int64_t ts, runtime::v1::IoUsage* io) {
  runtime::v1::PsiStats psi;
  if (!FillPsi(Member(Member(st, "io"), "psi"), &psi)) return false;
  io->set_timestamp(ts);
  *io->mutable_psi() = psi;
  return true;
}

}  // namespace berth::cri
