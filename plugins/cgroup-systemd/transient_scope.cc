// SPDX-License-Identifier: Apache-2.0
#include "plugins/cgroup-systemd/transient_scope.h"

#include <charconv>
#include <memory>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "core/status_macros.h"
#include "plugins/cgroup-fs/absl_view.h"
#include "plugins/cgroup-systemd/unit_names.h"

namespace berth::cgroup_systemd {
namespace {

// systemd's bounds for CPUWeight and IOWeight.
constexpr uint64_t kWeightMin = 1;
constexpr uint64_t kWeightMax = 10000;
// The highest CPU or memory node index a list may name.
constexpr uint64_t kIndexMax = 8191;
constexpr auto kPollInterval = std::chrono::milliseconds(20);

constexpr auto A = cgroupfs::AbslView;

// Turns a failed sd_bus_message_append* (a bug or out of memory) into a status.
absl::Status AppendError(int r, std::string_view what) {
  return core::ErrnoToStatus(-r, absl::StrCat("build D-Bus message: ", A(what)));
}

absl::Status CheckWeight(std::string_view unit, const char* property, uint64_t v) {
  if (v >= kWeightMin && v <= kWeightMax) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("unit ", A(unit), ": ", property, " ", v,
                                                 " is out of range (", kWeightMin, " to ",
                                                 kWeightMax, ", 100 being the default)"));
}

absl::Status CheckPositive(std::string_view unit, const char* property, uint64_t v,
                           std::string_view why) {
  if (v > 0) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("unit ", A(unit), ": ", property, " 0 ", A(why),
                                                 " (UINT64_MAX means no limit)"));
}

// Appends ("name", variant of `type`) to an open a(sv).
template <typename T>
absl::Status AppendProperty(sd_bus_message* m, const char* name, const char* type, T value) {
  int r = sd_bus_message_append(m, "(sv)", name, type, value);
  if (r < 0) return AppendError(r, name);
  return absl::OkStatus();
}

absl::Status AppendMask(sd_bus_message* m, const char* name, const std::vector<uint8_t>& mask) {
  int r = sd_bus_message_open_container(m, 'r', "sv");
  if (r >= 0) r = sd_bus_message_append(m, "s", name);
  if (r >= 0) r = sd_bus_message_open_container(m, 'v', "ay");
  if (r >= 0) r = sd_bus_message_append_array(m, 'y', mask.data(), mask.size());
  if (r >= 0) r = sd_bus_message_close_container(m);
  if (r >= 0) r = sd_bus_message_close_container(m);
  if (r < 0) return AppendError(r, name);
  return absl::OkStatus();
}

// Validates `res` and appends its set fields to an open a(sv).
absl::Status AppendResources(sd_bus_message* m, std::string_view unit, const UnitResources& res) {
  if (res.cpu_weight) {
    RETURN_IF_ERROR(CheckWeight(unit, "CPUWeight", *res.cpu_weight));
    RETURN_IF_ERROR(AppendProperty(m, "CPUWeight", "t", *res.cpu_weight));
  }
  if (res.cpu_quota_per_sec_usec) {
    RETURN_IF_ERROR(CheckPositive(unit, "CPUQuotaPerSecUSec", *res.cpu_quota_per_sec_usec,
                                  "would allow no CPU time at all"));
    RETURN_IF_ERROR(AppendProperty(m, "CPUQuotaPerSecUSec", "t", *res.cpu_quota_per_sec_usec));
  }
  if (res.memory_max) {
    RETURN_IF_ERROR(
        CheckPositive(unit, "MemoryMax", *res.memory_max, "would leave no memory at all"));
    RETURN_IF_ERROR(AppendProperty(m, "MemoryMax", "t", *res.memory_max));
  }
  if (res.tasks_max) {
    RETURN_IF_ERROR(
        CheckPositive(unit, "TasksMax", *res.tasks_max, "would allow no process at all"));
    RETURN_IF_ERROR(AppendProperty(m, "TasksMax", "t", *res.tasks_max));
  }
  if (res.allowed_cpus) {
    ASSIGN_OR_RETURN(
        std::vector<uint8_t> mask,
        ParseIndexList(*res.allowed_cpus, absl::StrCat("AllowedCPUs of unit ", A(unit))));
    RETURN_IF_ERROR(AppendMask(m, "AllowedCPUs", mask));
  }
  if (res.allowed_memory_nodes) {
    ASSIGN_OR_RETURN(std::vector<uint8_t> mask,
                     ParseIndexList(*res.allowed_memory_nodes,
                                    absl::StrCat("AllowedMemoryNodes of unit ", A(unit))));
    RETURN_IF_ERROR(AppendMask(m, "AllowedMemoryNodes", mask));
  }
  if (res.io_weight) {
    RETURN_IF_ERROR(CheckWeight(unit, "IOWeight", *res.io_weight));
    RETURN_IF_ERROR(AppendProperty(m, "IOWeight", "t", *res.io_weight));
  }
  return absl::OkStatus();
}

absl::Status ValidateScopeName(std::string_view unit_in) {
  const absl::string_view unit = A(unit_in);
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("\"", unit, "\" cannot name a scope: ", why));
  };
  if (!absl::EndsWith(unit, ".scope") || unit.size() == 6) {
    return bad("it must be a name ending in .scope");
  }
  if (unit.size() >= kUnitNameMax) return bad("it is too long");
  for (char c : unit) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-' || c == '\\' || c == ':';
    if (!ok) return bad("only letters, digits, ':', '_', '.', '-' and '\\' are allowed");
  }
  return absl::OkStatus();
}

// Is the job at `job_path` still queued or running?
bool JobPending(SystemdBus& bus, const std::string& job_path) {
  absl::StatusOr<std::string> state =
      bus.StringProperty(job_path, "org.freedesktop.systemd1.Job", "State");
  return state.ok();
}

}  // namespace

absl::StatusOr<std::vector<uint8_t>> ParseIndexList(std::string_view list_in,
                                                    std::string_view what_in) {
  const absl::string_view list = A(list_in), what = A(what_in);
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " \"", list, "\" is not a list like \"0-3,6\": ", why));
  };
  auto number = [](absl::string_view text, uint64_t* out) {
    text = absl::StripAsciiWhitespace(text);
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *out);
    return !text.empty() && ec == std::errc() && end == text.data() + text.size();
  };
  std::vector<uint8_t> mask;
  if (absl::StripAsciiWhitespace(list).empty()) return mask;
  for (absl::string_view item : absl::StrSplit(list, ',')) {
    std::pair<absl::string_view, absl::string_view> range =
        absl::StrSplit(item, absl::MaxSplits('-', 1));
    uint64_t first = 0, last = 0;
    if (!number(range.first, &first)) return bad(absl::StrCat("bad item \"", item, "\""));
    last = first;
    if (item.find('-') != absl::string_view::npos && !number(range.second, &last)) {
      return bad(absl::StrCat("bad range \"", item, "\""));
    }
    if (last < first) return bad(absl::StrCat("range \"", item, "\" is reversed"));
    if (last > kIndexMax) return bad(absl::StrCat("index ", last, " is above ", kIndexMax));
    if (mask.size() < last / 8 + 1) mask.resize(last / 8 + 1, 0);
    for (uint64_t i = first; i <= last; ++i) mask[i / 8] |= static_cast<uint8_t>(1u << (i % 8));
  }
  return mask;
}

absl::Status StartScope(SystemdBus& bus, std::string_view slice, std::string_view unit_name,
                        pid_t pid, const ScopeProperties& properties) {
  RETURN_IF_ERROR(ValidateScopeName(unit_name));
  RETURN_IF_ERROR(ValidateSliceName(slice, "slice"));
  if (pid <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("scope ", A(unit_name), ": pid ", pid, " is not a process id"));
  }
  const std::string unit(unit_name), slice_name(slice);
  const std::string description =
      properties.description.empty() ? absl::StrCat("berth scope ", unit) : properties.description;
  sd_bus_message* raw = nullptr;
  int r = sd_bus_message_new_method_call(bus.get(), &raw, kSystemdService, kSystemdPath,
                                         kManagerInterface, "StartTransientUnit");
  BusMessage m(raw);
  if (r < 0) return AppendError(r, "StartTransientUnit");
  r = sd_bus_message_append(m.get(), "ss", unit.c_str(), "fail");
  if (r >= 0) r = sd_bus_message_open_container(m.get(), 'a', "(sv)");
  if (r < 0) return AppendError(r, "StartTransientUnit");
  RETURN_IF_ERROR(AppendProperty(m.get(), "Description", "s", description.c_str()));
  RETURN_IF_ERROR(AppendProperty(m.get(), "Slice", "s", slice_name.c_str()));
  RETURN_IF_ERROR(AppendProperty(m.get(), "Delegate", "b", 1));
  RETURN_IF_ERROR(AppendProperty(m.get(), "CollectMode", "s", "inactive-or-failed"));
  r = sd_bus_message_append(m.get(), "(sv)", "PIDs", "au", 1, static_cast<uint32_t>(pid));
  if (r < 0) return AppendError(r, "PIDs");
  RETURN_IF_ERROR(AppendResources(m.get(), unit, properties.resources));
  r = sd_bus_message_close_container(m.get());
  if (r >= 0) r = sd_bus_message_append(m.get(), "a(sa(sv))", 0);
  if (r < 0) return AppendError(r, "StartTransientUnit");

  BusError error;
  sd_bus_message* reply_raw = nullptr;
  r = sd_bus_call(bus.get(), m.get(), 0, error.get(), &reply_raw);
  BusMessage reply(reply_raw);
  if (r < 0) {
    absl::Status s = SystemdBus::CallError(
        r, *error, absl::StrCat("start scope ", unit, " in ", slice_name, " for pid ", pid));
    if (sd_bus_error_has_name(error.get(), "org.freedesktop.DBus.Error.UnixProcessIdUnknown") > 0) {
      return absl::NotFoundError(
          absl::StrCat(s.message(), " (systemd cannot see pid ", pid, " in its PID namespace)"));
    }
    return s;
  }
  const char* job_raw = nullptr;
  r = sd_bus_message_read(reply.get(), "o", &job_raw);
  if (r < 0) return AppendError(r, "read StartTransientUnit reply");
  const std::string job(job_raw);

  const auto deadline = std::chrono::steady_clock::now() + properties.start_timeout;
  for (;;) {
    // Whether the job is pending is read before the unit's state: a job that finishes between
    // the two reads then shows its outcome in the state instead of looking like a failure.
    const bool pending = JobPending(bus, job);
    ASSIGN_OR_RETURN(std::optional<std::string> path, bus.FindUnit(unit));
    if (!path) {
      return absl::FailedPreconditionError(
          absl::StrCat("scope ", unit, " in ", slice_name, " for pid ", pid,
                       " failed to start and was unloaded (did pid ", pid,
                       " exit? systemd's journal has the reason)"));
    }
    ASSIGN_OR_RETURN(UnitState state, bus.GetUnitState(*path, unit));
    if (state.active_state == "active") return absl::OkStatus();
    if (state.active_state == "failed" || (!pending && state.active_state != "activating")) {
      absl::StatusOr<std::string> result = bus.StringProperty(*path, kScopeInterface, "Result");
      return absl::FailedPreconditionError(absl::StrCat(
          "scope ", unit, " in ", slice_name, " for pid ", pid, " did not start: it is ",
          state.active_state, " (", state.sub_state, "), result ",
          result.ok() ? *result : std::string("unknown"), "; systemd's journal has the reason"));
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("scope ", unit, " in ", slice_name, " for pid ", pid, " is still ",
                       state.active_state, " after ", properties.start_timeout.count(),
                       " ms (its start job ", job, " is pending); systemd may be busy"));
    }
    std::this_thread::sleep_for(kPollInterval);
  }
}

absl::Status AttachToUnit(SystemdBus& bus, std::string_view unit_name, pid_t pid) {
  RETURN_IF_ERROR(ValidateScopeName(unit_name));
  const std::string unit(unit_name);
  BusError error;
  int r = sd_bus_call_method(bus.get(), kSystemdService, kSystemdPath, kManagerInterface,
                             "AttachProcessesToUnit", error.get(), nullptr, "ssau",
                             unit.c_str(), "", 1, static_cast<uint32_t>(pid));
  if (r < 0) {
    absl::Status s =
        SystemdBus::CallError(r, *error, absl::StrCat("move pid ", pid, " into unit ", unit));
    if (sd_bus_error_has_name(error.get(), "org.freedesktop.DBus.Error.UnixProcessIdUnknown") > 0) {
      return absl::NotFoundError(
          absl::StrCat(s.message(), " (systemd cannot see pid ", pid, " in its PID namespace)"));
    }
    return s;
  }
  return absl::OkStatus();
}

absl::Status SetUnitResources(SystemdBus& bus, std::string_view unit_name,
                              const UnitResources& resources) {
  const std::string unit(unit_name);
  sd_bus_message* raw = nullptr;
  int r = sd_bus_message_new_method_call(bus.get(), &raw, kSystemdService, kSystemdPath,
                                         kManagerInterface, "SetUnitProperties");
  BusMessage m(raw);
  if (r < 0) return AppendError(r, "SetUnitProperties");
  r = sd_bus_message_append(m.get(), "sb", unit.c_str(), 1);
  if (r >= 0) r = sd_bus_message_open_container(m.get(), 'a', "(sv)");
  if (r < 0) return AppendError(r, "SetUnitProperties");
  RETURN_IF_ERROR(AppendResources(m.get(), unit, resources));
  r = sd_bus_message_close_container(m.get());
  if (r < 0) return AppendError(r, "SetUnitProperties");
  BusError error;
  r = sd_bus_call(bus.get(), m.get(), 0, error.get(), nullptr);
  if (r < 0) {
    return SystemdBus::CallError(r, *error, absl::StrCat("set resources of unit ", unit));
  }
  return absl::OkStatus();
}

}  // namespace berth::cgroup_systemd
