// SPDX-License-Identifier: Apache-2.0
#include "plugins/cgroup-systemd/systemd_bus.h"

#include <cerrno>
#include <cstdlib>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/status_macros.h"
#include "plugins/cgroup-fs/absl_view.h"

namespace berth::cgroup_systemd {
namespace {

// How long one method call may take before sd-bus gives up on it.
constexpr uint64_t kCallTimeoutUsec = 15'000'000;
// How often WaitForUnit looks.
constexpr auto kPollInterval = std::chrono::milliseconds(20);

constexpr auto A = cgroupfs::AbslView;

absl::string_view View(const char* s) { return s != nullptr ? absl::string_view(s) : ""; }

bool HasName(const sd_bus_error& e, const char* name) {
  return sd_bus_error_has_name(&e, name) > 0;
}

bool IsNoSuchUnit(int r, const sd_bus_error& e) {
  return r < 0 && HasName(e, "org.freedesktop.systemd1.NoSuchUnit");
}

}  // namespace

void SystemdBus::Unref::operator()(sd_bus* bus) const { sd_bus_flush_close_unref(bus); }

SystemdBus::~SystemdBus() = default;

absl::Status SystemdBus::CallError(int r, const sd_bus_error& error, std::string_view what) {
  if (!sd_bus_error_is_set(&error)) {
    int err = -r;
    if (err == ENOTCONN || err == ECONNRESET || err == EPIPE || err == ESHUTDOWN) {
      return absl::UnavailableError(absl::StrCat(
          A(what), ": the D-Bus connection to systemd was closed (", strerrorname_np(err), ")"));
    }
    return core::ErrnoToStatus(err, what);
  }
  std::string msg = absl::StrCat(A(what), ": ", View(error.message), " (", View(error.name), ")");
  if (HasName(error, "org.freedesktop.systemd1.NoSuchUnit")) return absl::NotFoundError(msg);
  if (HasName(error, "org.freedesktop.systemd1.UnitExists")) {
    return absl::AlreadyExistsError(msg);
  }
  if (HasName(error, "org.freedesktop.DBus.Error.AccessDenied") ||
      HasName(error, "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired")) {
    return absl::PermissionDeniedError(msg);
  }
  if (HasName(error, "org.freedesktop.DBus.Error.InvalidArgs") ||
      HasName(error, "org.freedesktop.DBus.Error.PropertyReadOnly")) {
    return absl::InvalidArgumentError(msg);
  }
  if (HasName(error, "org.freedesktop.DBus.Error.ServiceUnknown") ||
      HasName(error, "org.freedesktop.DBus.Error.NameHasNoOwner") ||
      HasName(error, "org.freedesktop.DBus.Error.NoReply") ||
      HasName(error, "org.freedesktop.DBus.Error.Disconnected")) {
    return absl::UnavailableError(msg);
  }
  if (HasName(error, "org.freedesktop.DBus.Error.Timeout") ||
      HasName(error, "org.freedesktop.DBus.Error.TimedOut")) {
    return absl::DeadlineExceededError(msg);
  }
  return absl::InternalError(msg);
}

absl::StatusOr<SystemdBus> SystemdBus::Connect(std::string_view address, bool system_bus) {
  const char* env = system_bus ? std::getenv("DBUS_SYSTEM_BUS_ADDRESS") : nullptr;
  const std::string where =
      system_bus ? absl::StrCat("the system bus (",
                                env != nullptr ? absl::string_view(env) : A(kSystemBusAddress), ")")
                 : std::string(address);
  sd_bus* raw = nullptr;
  int r = system_bus ? sd_bus_open_system(&raw) : sd_bus_new(&raw);
  std::unique_ptr<sd_bus, Unref> bus(raw);
  if (r < 0) return core::ErrnoToStatus(-r, absl::StrCat("connect to ", where));
  if (!system_bus) {
    std::string addr(address);
    r = sd_bus_set_address(bus.get(), addr.c_str());
    if (r < 0) return core::ErrnoToStatus(-r, absl::StrCat("D-Bus address ", where));
    r = sd_bus_start(bus.get());
    if (r < 0) return core::ErrnoToStatus(-r, absl::StrCat("connect to ", where));
  }
  sd_bus_set_method_call_timeout(bus.get(), kCallTimeoutUsec);
  BusError error;
  char* version = nullptr;
  r = sd_bus_get_property_string(bus.get(), kSystemdService, kSystemdPath, kManagerInterface,
                                 "Version", error.get(), &version);
  if (r < 0) return CallError(r, *error, absl::StrCat("ask systemd its version on ", where));
  std::string v(version);
  std::free(version);
  return SystemdBus(std::move(bus), where, std::move(v));
}

absl::StatusOr<SystemdBus> SystemdBus::Open(std::string_view address) {
  if (!address.empty()) {
    absl::StatusOr<SystemdBus> bus = Connect(address, false);
    if (bus.ok()) return bus;
    return absl::UnavailableError(
        absl::StrCat("cannot reach systemd on D-Bus: ", bus.status().message(),
                     " (bus_address of io.berth.cgroup.systemd)"));
  }
  absl::StatusOr<SystemdBus> system = Connect("", true);
  if (system.ok()) return system;
  absl::StatusOr<SystemdBus> direct = Connect(kPrivateBusAddress, false);
  if (direct.ok()) return direct;
  return absl::UnavailableError(absl::StrCat(
      "cannot reach systemd on D-Bus: ", system.status().message(), "; ", direct.status().message(),
      ". Is systemd the init system here, and does berthd run as root in the host's PID "
      "namespace? (Set bus_address of io.berth.cgroup.systemd to reach another systemd.)"));
}

absl::StatusOr<std::optional<std::string>> SystemdBus::FindUnit(std::string_view unit) {
  std::string name(unit);
  BusError error;
  sd_bus_message* reply_raw = nullptr;
  int r = sd_bus_call_method(bus_.get(), kSystemdService, kSystemdPath, kManagerInterface,
                             "GetUnit", error.get(), &reply_raw, "s", name.c_str());
  BusMessage reply(reply_raw);
  if (IsNoSuchUnit(r, *error)) return std::optional<std::string>();
  if (r < 0) return CallError(r, *error, absl::StrCat("look up systemd unit ", name));
  const char* path = nullptr;
  r = sd_bus_message_read(reply.get(), "o", &path);
  if (r < 0) return core::ErrnoToStatus(-r, absl::StrCat("read GetUnit reply for ", name));
  return std::optional<std::string>(path);
}

absl::StatusOr<std::string> SystemdBus::StringProperty(const std::string& object_path,
                                                       const char* interface,
                                                       const char* property) {
  BusError error;
  char* value = nullptr;
  int r = sd_bus_get_property_string(bus_.get(), kSystemdService, object_path.c_str(), interface,
                                     property, error.get(), &value);
  if (r < 0) {
    return CallError(r, *error, absl::StrCat("read property ", property, " of ", object_path));
  }
  std::string v(value);
  std::free(value);
  return v;
}

absl::StatusOr<UnitState> SystemdBus::GetUnitState(const std::string& object_path,
                                                   std::string_view unit) {
  UnitState state;
  absl::StatusOr<std::string> active = StringProperty(object_path, kUnitInterface, "ActiveState");
  if (!active.ok()) {
    return absl::Status(active.status().code(),
                        absl::StrCat("state of unit ", A(unit), ": ", active.status().message()));
  }
  state.active_state = std::move(*active);
  absl::StatusOr<std::string> sub = StringProperty(object_path, kUnitInterface, "SubState");
  if (sub.ok()) state.sub_state = std::move(*sub);
  return state;
}

absl::StatusOr<std::vector<UnitProcess>> SystemdBus::UnitProcesses(std::string_view unit) {
  std::string name(unit);
  BusError error;
  sd_bus_message* reply_raw = nullptr;
  int r = sd_bus_call_method(bus_.get(), kSystemdService, kSystemdPath, kManagerInterface,
                             "GetUnitProcesses", error.get(), &reply_raw, "s", name.c_str());
  BusMessage reply(reply_raw);
  if (r < 0) return CallError(r, *error, absl::StrCat("list the processes of unit ", name));
  std::vector<UnitProcess> out;
  r = sd_bus_message_enter_container(reply.get(), 'a', "(sus)");
  while (r >= 0) {
    const char* cgroup = nullptr;
    const char* command = nullptr;
    uint32_t pid = 0;
    r = sd_bus_message_read(reply.get(), "(sus)", &cgroup, &pid, &command);
    if (r <= 0) break;
    out.push_back(UnitProcess{cgroup, static_cast<pid_t>(pid), command});
  }
  if (r < 0) {
    return core::ErrnoToStatus(-r, absl::StrCat("read GetUnitProcesses reply for ", name));
  }
  return out;
}

absl::StatusOr<std::string> SystemdBus::StopUnit(std::string_view unit, std::string_view mode) {
  std::string name(unit), m(mode);
  BusError error;
  sd_bus_message* reply_raw = nullptr;
  int r = sd_bus_call_method(bus_.get(), kSystemdService, kSystemdPath, kManagerInterface,
                             "StopUnit", error.get(), &reply_raw, "ss", name.c_str(), m.c_str());
  BusMessage reply(reply_raw);
  if (r < 0) return CallError(r, *error, absl::StrCat("stop systemd unit ", name));
  const char* job = nullptr;
  r = sd_bus_message_read(reply.get(), "o", &job);
  if (r < 0) return core::ErrnoToStatus(-r, absl::StrCat("read StopUnit reply for ", name));
  return std::string(job);
}

absl::Status SystemdBus::ResetFailedUnit(std::string_view unit) {
  std::string name(unit);
  BusError error;
  int r = sd_bus_call_method(bus_.get(), kSystemdService, kSystemdPath, kManagerInterface,
                             "ResetFailedUnit", error.get(), nullptr, "s", name.c_str());
  if (r >= 0 || IsNoSuchUnit(r, *error)) return absl::OkStatus();
  return CallError(r, *error, absl::StrCat("reset failed systemd unit ", name));
}

absl::StatusOr<std::optional<UnitState>> SystemdBus::WaitForUnit(
    std::string_view unit, std::chrono::milliseconds timeout,
    const std::function<bool(const std::optional<UnitState>&)>& done) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    std::optional<UnitState> state;
    ASSIGN_OR_RETURN(std::optional<std::string> path, FindUnit(unit));
    if (path) {
      absl::StatusOr<UnitState> s = GetUnitState(*path, unit);
      // Unloaded between the two calls: the next round sees it gone.
      if (!s.ok() && !absl::IsNotFound(s.status())) return s.status();
      if (s.ok()) state = std::move(*s);
    }
    if ((!path || state) && done(state)) return state;
    if (std::chrono::steady_clock::now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          "systemd unit ", A(unit), " is still ",
          state ? absl::StrCat(state->active_state, " (", state->sub_state, ")") : "loaded",
          " after ", timeout.count(), " ms"));
    }
    std::this_thread::sleep_for(kPollInterval);
  }
}

}  // namespace berth::cgroup_systemd
