// SPDX-License-Identifier: Apache-2.0
// Loads the real berth-runtime-runc.so the way berthd does (core::Registry, real host
// tables over a real store in a temporary directory) and drives it through its C table.
// "Restart" destroys the plugin instance and creates a new one on the same store.
#pragma once

#include <condition_variable>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "berth/kinds.h"
#include "berth/plugin.hpp"
#include "core/events.h"
#include "core/host.h"
#include "core/log.h"
#include "core/registry.h"
#include "core/store.h"
#include "nlohmann/json.hpp"
#include "tests/support/test_support.h"

namespace berth::runc::testing {

inline constexpr char kPluginId[] = "io.berth.runtime.runc";
inline constexpr char kTask[] = "containerd.task.v2.Task";

class PluginHarness {
 public:
  PluginHarness() : PluginHarness(std::filesystem::path()) {}
  // With `existing`: works in that directory (kept afterwards) instead of a new temporary
  // one, so that another process -- a berthd that was killed -- can leave its store there.
  explicit PluginHarness(std::filesystem::path existing) {
    if (existing.empty()) {
      temp_.emplace("runc-plugin");
      base_ = temp_->path();
    } else {
      base_ = std::move(existing);
    }
    // BERTH_TEST_DEBUG=1 shows the plugin's debug log (shim log lines included).
    if (std::getenv("BERTH_TEST_DEBUG") != nullptr) core::SetLogLevel(spdlog::level::debug);
    sub_ = events_.Subscribe("/runtime/task-exit", [this](std::string_view, std::string_view p) {
      std::lock_guard<std::mutex> lock(mu_);
      events_seen_.push_back(nlohmann::json::parse(p, nullptr, false));
      cv_.notify_all();
    });
  }
  ~PluginHarness() {
    Stop();
    events_.Unsubscribe(sub_);
  }

  // The directory the harness works in (store, root and state dirs).
  const std::filesystem::path& path() const { return base_; }
  std::string File(const std::string& name) const { return (base_ / name).string(); }
  std::string state_dir() const { return File("state/" + plugin_id_); }

  // Writes a record of the plugin's bucket straight into the store (for restore tests).
  absl::Status PutRecord(const std::string& key, const std::string& value) {
    if (absl::Status s = OpenStore(); !s.ok()) return s;
    auto txn = store_->Begin(true);
    if (!txn.ok()) return txn.status();
    if (absl::Status s = (*txn)->Put(plugin_id_ + "/runtime-runc", key, value);
        !s.ok()) {
      return s;
    }
    return (*txn)->Commit();
  }

  // Loads and initialises the plugin (again, after Stop()): the runc plugin, or another
  // built on its runtime (the shim v2 kind: io.berth.runtime.kata).
  absl::Status Start(const std::string& file = BERTH_RUNC_PLUGIN,
                     const std::string& id = kPluginId) {
    if (registry_) return absl::FailedPreconditionError("already started");
    plugin_id_ = id;
    if (absl::Status s = OpenStore(); !s.ok()) return s;
    registry_ = std::make_unique<core::Registry>();
    services_.registry = registry_.get();
    if (absl::Status s = registry_->LoadFile(file); !s.ok()) return s;
    auto order = registry_->Resolve({plugin_id_}, [](std::string_view) { return "test"; });
    if (!order.ok()) return order.status();
    absl::Status s = registry_->Start(
        *order, [this](core::Plugin* p) { return core::MakeHostContext(p, &services_); },
        &core::HostTableOf);
    if (!s.ok()) {
      registry_.reset();
      return s;
    }
    core::Plugin* p = registry_->Find(plugin_id_);
    table_ = static_cast<const berth_runtime_v1*>(p->Interface(BERTH_IFACE_RUNTIME_V1));
    instance_ = p->instance;
    if (table_ == nullptr) return absl::InternalError("no berth.runtime.v1 table");
    return absl::OkStatus();
  }

  // Shuts the plugin instance down (shims keep running).
  void Stop() {
    if (!registry_) return;
    registry_->Stop();
    registry_.reset();
    table_ = nullptr;
    instance_ = nullptr;
  }

  absl::Status AddHandler(const std::string& name, const nlohmann::json& options) {
    sdk::StringSink err;
    std::string text = options.dump();
    int32_t code = table_->add_handler(instance_, sdk::Str(name), sdk::Str(text), err.get());
    return absl::Status(static_cast<absl::StatusCode>(code), err.str());
  }

  nlohmann::json HandlerStatus(const std::string& name) {
    sdk::StringSink out, err;
    table_->handler_status(instance_, sdk::Str(name), out.get(), err.get());
    return nlohmann::json::parse(out.str(), nullptr, false);
  }

  absl::StatusOr<std::string> CallRaw(const std::string& handler, const std::string& sandbox,
                                      const std::string& service, const std::string& method,
                                      const std::string& request, uint64_t timeout_ms = 0) {
    sdk::StringSink out, err;
    int32_t code =
        table_->shim_call(instance_, sdk::Str(handler), sdk::Str(sandbox), sdk::Str(service),
                          sdk::Str(method), sdk::Str(request), timeout_ms, out.get(), err.get());
    if (code != BERTH_OK) return absl::Status(static_cast<absl::StatusCode>(code), err.str());
    return out.take();
  }

  template <typename Resp, typename Req>
  absl::StatusOr<Resp> Call(const std::string& handler, const std::string& sandbox,
                            const std::string& method, const Req& request,
                            const std::string& service = kTask) {
    auto raw = CallRaw(handler, sandbox, service, method, request.SerializeAsString());
    if (!raw.ok()) return raw.status();
    Resp resp;
    if (!resp.ParseFromString(*raw)) return absl::InternalError("unparseable response");
    return resp;
  }

  absl::StatusOr<nlohmann::json> Control(const std::string& op, const nlohmann::json& req) {
    sdk::StringSink out, err;
    std::string text = req.dump();
    int32_t code = table_->control(instance_, sdk::Str(op), sdk::Str(text), out.get(), err.get());
    if (code != BERTH_OK) return absl::Status(static_cast<absl::StatusCode>(code), err.str());
    return nlohmann::json::parse(out.str(), nullptr, false);
  }

  // The task entry of `id` (init) in control("tasks"), or null.
  nlohmann::json TaskEntry(const std::string& id, const std::string& exec_id = "") {
    auto tasks = Control("tasks", nlohmann::json::object());
    if (!tasks.ok()) return nullptr;
    for (const auto& t : (*tasks)["tasks"]) {
      if (t.value("id", "") == id && t.value("exec_id", "") == exec_id) return t;
    }
    return nullptr;
  }

  // Waits for a /runtime/task-exit event of `id` (init when exec_id is empty).
  nlohmann::json WaitExit(const std::string& id, const std::string& exec_id = "",
                          absl::Duration timeout = absl::Seconds(30)) {
    std::unique_lock<std::mutex> lock(mu_);
    nlohmann::json found;
    cv_.wait_until(lock, absl::ToChronoTime(absl::Now() + timeout), [&] {
      for (const auto& e : events_seen_) {
        if (e.is_object() && e.value("id", "") == id && e.value("exec_id", "") == exec_id) {
          found = e;
          return true;
        }
      }
      return false;
    });
    return found;
  }

  int ExitEventCount(const std::string& id) {
    std::lock_guard<std::mutex> lock(mu_);
    int n = 0;
    for (const auto& e : events_seen_) n += e.is_object() && e.value("id", "") == id;
    return n;
  }

 private:
  absl::Status OpenStore() {
    if (store_) return absl::OkStatus();
    std::filesystem::create_directories(base_ / "root");
    std::filesystem::create_directories(base_ / "state");
    auto store = core::Store::Open(base_ / "meta.db");
    if (!store.ok()) return store.status();
    store_ = std::move(*store);
    services_.config.root = base_ / "root";
    services_.config.state = base_ / "state";
    services_.store = store_.get();
    services_.events = &events_;
    return absl::OkStatus();
  }

  std::optional<berth::testing::TempDir> temp_;  // when the harness made its directory
  std::filesystem::path base_;
  std::string plugin_id_ = kPluginId;
  std::unique_ptr<core::Store> store_;
  core::EventBus events_;
  core::HostServices services_;
  std::unique_ptr<core::Registry> registry_;
  const berth_runtime_v1* table_ = nullptr;
  void* instance_ = nullptr;
  uint64_t sub_ = 0;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<nlohmann::json> events_seen_;
};

}  // namespace berth::runc::testing
