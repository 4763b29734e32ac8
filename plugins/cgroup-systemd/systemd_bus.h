// SPDX-License-Identifier: Apache-2.0
// One D-Bus connection to systemd (sd-bus) and the org.freedesktop.systemd1.Manager calls the
// systemd cgroup driver makes. A connection belongs to the thread that opened it; the driver
// opens one per operation (docs/cgroup-drivers.md §3).
#pragma once

#include <sys/types.h>
#include <systemd/sd-bus.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace berth::cgroup_systemd {

// The system bus socket (dbus-daemon) and systemd's private socket, which needs no
// dbus-daemon (root only, and only from systemd's PID namespace: systemd drops peers whose
// pid it cannot see).
inline constexpr std::string_view kSystemBusAddress = "unix:path=/run/dbus/system_bus_socket";
inline constexpr std::string_view kPrivateBusAddress = "unix:path=/run/systemd/private";

// sd_bus_error, freed on scope exit.
class BusError {
 public:
  BusError() = default;
  BusError(const BusError&) = delete;
  BusError& operator=(const BusError&) = delete;
  ~BusError() { sd_bus_error_free(&error_); }
  sd_bus_error* get() { return &error_; }
  const sd_bus_error& operator*() const { return error_; }

 private:
  sd_bus_error error_ = SD_BUS_ERROR_NULL;
};

// An sd_bus_message reference, dropped on scope exit.
struct BusMessageUnref {
  void operator()(sd_bus_message* m) const { sd_bus_message_unref(m); }
};
using BusMessage = std::unique_ptr<sd_bus_message, BusMessageUnref>;

// A process of a unit, as GetUnitProcesses reports it (pid in systemd's PID namespace).
struct UnitProcess {
  std::string cgroup;
  pid_t pid = 0;
  std::string command;
};

// Where a unit stands, from its Unit properties.
struct UnitState {
  std::string active_state;  // "active", "deactivating", "inactive", "failed"...
  std::string sub_state;     // "running", "abandoned", "stop-sigterm", "dead"...
};

class SystemdBus {
 public:
  // `address` empty: the system bus (sd_bus_open_system: $DBUS_SYSTEM_BUS_ADDRESS or
  // kSystemBusAddress), then systemd's private socket kPrivateBusAddress. Otherwise a direct
  // (peer-to-peer, no Hello) connection to `address` in D-Bus syntax: "unix:path=...", or
  // "unixexec:path=...,argv1=..." for a bridge. Each candidate is checked by reading
  // systemd's Version. UNAVAILABLE naming every address tried and why it failed.
  [[nodiscard]] static absl::StatusOr<SystemdBus> Open(std::string_view address);

  SystemdBus(SystemdBus&&) noexcept = default;
  SystemdBus& operator=(SystemdBus&&) noexcept = default;
  ~SystemdBus();

  // The address connected to ("system bus" or the D-Bus address).
  const std::string& address() const { return address_; }
  // systemd's version ("252 (252.39-1~deb12u2)").
  const std::string& version() const { return version_; }
  sd_bus* get() const { return bus_.get(); }

  // The unit's object path, or nothing when systemd has no such unit loaded (NoSuchUnit).
  [[nodiscard]] absl::StatusOr<std::optional<std::string>> FindUnit(std::string_view unit);
  // ActiveState and SubState of the unit at `object_path`.
  [[nodiscard]] absl::StatusOr<UnitState> GetUnitState(const std::string& object_path,
                                                       std::string_view unit);
  // A string property of interface `interface` of the object at `object_path`.
  [[nodiscard]] absl::StatusOr<std::string> StringProperty(const std::string& object_path,
                                                           const char* interface,
                                                           const char* property);
  // The unit's processes (GetUnitProcesses), subgroups included.
  [[nodiscard]] absl::StatusOr<std::vector<UnitProcess>> UnitProcesses(std::string_view unit);
  // StopUnit(unit, mode); the job's object path. NOT_FOUND when no such unit is loaded.
  [[nodiscard]] absl::StatusOr<std::string> StopUnit(std::string_view unit,
                                                     std::string_view mode = "replace");
  // ResetFailedUnit(unit): forgets a failed unit's failure so that it is unloaded. OK when
  // no such unit is loaded.
  [[nodiscard]] absl::Status ResetFailedUnit(std::string_view unit);

  // Polls the unit (every few ms) until `done(state)` or the unit is unloaded (state
  // nullopt, passed to `done` too), for at most `timeout`. The last state seen; DEADLINE_
  // EXCEEDED when the time ran out, with that state in the message.
  [[nodiscard]] absl::StatusOr<std::optional<UnitState>> WaitForUnit(
      std::string_view unit, std::chrono::milliseconds timeout,
      const std::function<bool(const std::optional<UnitState>&)>& done);

  // The status of a failed sd-bus call `what` (r < 0, `error` possibly set). NoSuchUnit and
  // ENOENT -> NOT_FOUND, UnitExists -> ALREADY_EXISTS, AccessDenied -> PERMISSION_DENIED,
  // InvalidArgs -> INVALID_ARGUMENT, a lost connection -> UNAVAILABLE; the D-Bus error name
  // and message in the text.
  [[nodiscard]] static absl::Status CallError(int r, const sd_bus_error& error,
                                              std::string_view what);

 private:
  struct Unref {
    void operator()(sd_bus* bus) const;
  };
  SystemdBus(std::unique_ptr<sd_bus, Unref> bus, std::string address, std::string version)
      : bus_(std::move(bus)), address_(std::move(address)), version_(std::move(version)) {}
  // Connects to one candidate and reads Version.
  [[nodiscard]] static absl::StatusOr<SystemdBus> Connect(std::string_view address,
                                                          bool system_bus);

  std::unique_ptr<sd_bus, Unref> bus_;
  std::string address_;
  std::string version_;
};

// The object, interface and member names of systemd's manager.
inline constexpr char kSystemdService[] = "org.freedesktop.systemd1";
inline constexpr char kSystemdPath[] = "/org/freedesktop/systemd1";
inline constexpr char kManagerInterface[] = "org.freedesktop.systemd1.Manager";
inline constexpr char kUnitInterface[] = "org.freedesktop.systemd1.Unit";
inline constexpr char kScopeInterface[] = "org.freedesktop.systemd1.Scope";

}  // namespace berth::cgroup_systemd
