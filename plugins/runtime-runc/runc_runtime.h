// SPDX-License-Identifier: Apache-2.0
// The io.berth.runtime.runc plugin (docs/shim.md §6): runtime handlers for runc-compatible
// binaries, each pod served by one shim v2 process (berth-shim by default, any shim v2
// binary with the `shim` option) that it starts, follows, restores after a restart and
// cleans up after when it dies.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "berth/plugin.hpp"
#include "berth/ttrpc/shim.h"
#include "plugins/common/runtime_handlers.h"
#include "plugins/runtime-runc/handler_options.h"
#include "plugins/runtime-runc/runtime_probe.h"
#include "plugins/runtime-runc/task_records.h"

namespace berth::runc {

inline constexpr char kPluginId[] = "io.berth.runtime.runc";
inline constexpr char kShimV2PluginId[] = "io.berth.runtime.kata";

// What the plugin's handlers run: runc-compatible OCI runtimes under a shim (berth-shim by
// default), or shim v2 runtimes whose shim is the whole runtime (Kata, gVisor, runwasi...:
// the io.berth.runtime.kata plugin, docs/runtime-classes.md).
enum class HandlerKind { kRunc, kShimV2 };
inline constexpr char kShimNamespace[] = "berth";
inline constexpr char kShimExtService[] = "berth.shim.v1.Shim";

// The shim next to the plugin's own .so: <dir of this .so>/berth-shim.
std::string DefaultShimPath();

class RuncRuntime {
 public:
  static sdk::Status Create(sdk::Host host, std::unique_ptr<RuncRuntime>* out) {
    return Create(host, HandlerKind::kRunc, out);
  }
  static sdk::Status Create(sdk::Host host, HandlerKind kind, std::unique_ptr<RuncRuntime>* out);
  // Leaves every shim running (containers outlive berthd); stops following them.
  ~RuncRuntime();
  RuncRuntime(const RuncRuntime&) = delete;
  RuncRuntime& operator=(const RuncRuntime&) = delete;

  const void* GetInterface(std::string_view iface);
  sdk::Readiness Status();
  sdk::Status AddHandler(std::string_view name, std::string_view options_json);
  sdk::Readiness HandlerStatus(std::string_view name);
  sdk::Status ShimCall(std::string_view handler, std::string_view sandbox_id,
                       std::string_view service, std::string_view method, std::string_view request,
                       uint64_t timeout_ms, std::string* response);
  sdk::Status Control(std::string_view op, std::string_view request_json, std::string* out);

 private:
  // One pod's shim. `op_mu` serialises starting, losing and removing it.
  struct Sandbox {
    SandboxRecord record;
    std::mutex op_mu;
    std::shared_ptr<ttrpc::TaskClient> client;  // guarded by mu_; null: no live shim
    std::unique_ptr<ttrpc::ShimLog> log;        // guarded by op_mu
    bool removing = false;                      // guarded by mu_
    bool dead = false;  // guarded by mu_; its shim was lost (tasks reported ShimDied)
    std::atomic<bool> no_info{false};  // the shim has no berth.shim.v1.Shim/Info
  };

  RuncRuntime(sdk::Host host, HandlerKind kind);
  // control("handler_info"): what a handler runs and speaks.
  absl::Status HandlerInfo(std::string_view request_json, std::string* out);

  absl::Status DoCreate(std::string_view handler, const std::string& sandbox_id,
                        std::string_view request, absl::Time deadline, std::string* response);
  absl::Status DoCall(const std::string& sandbox_id, std::string_view handler,
                      std::string_view service, std::string_view method, std::string_view request,
                      absl::Time deadline, std::string* response);
  // Answers for a task of a sandbox whose shim is gone, from what is recorded.
  absl::Status CallWithoutShim(const std::shared_ptr<Sandbox>& sandbox, std::string_view method,
                               std::string_view request, std::string* response);
  absl::Status RemoveSandbox(const std::string& sandbox_id);
  std::string TasksJson();

  // Starts the sandbox's shim in `bundle` for container `id`; sandbox->op_mu held.
  absl::Status StartShimLocked(const std::shared_ptr<Sandbox>& sandbox, const std::string& bundle,
                               const std::string& id, absl::Time deadline);
  ttrpc::ShimCommand ShimCommandFor(const SandboxRecord& sandbox, const std::string& bundle,
                                    const std::string& id) const;
  std::unique_ptr<ttrpc::ShimLog> OpenShimLog(const std::string& sandbox_id,
                                              const std::string& bundle);

  // Follows a task with Wait on its own thread until it exits or the shim is lost.
  void Follow(std::shared_ptr<Sandbox> sandbox, std::shared_ptr<ttrpc::TaskClient> client,
              TaskRecord task);
  // Records an exit (once per task) and publishes it, or adds it to `publish_later` (for
  // callers holding a sandbox's op_mu: subscribers may call back into the plugin).
  void RecordExit(const std::shared_ptr<Sandbox>& sandbox, ttrpc::TaskClient* client,
                  const TaskRecord& task, uint32_t exit_status, const std::string& exited_at,
                  std::string reason, std::vector<TaskRecord>* publish_later = nullptr);
  // Exits to publish once the locks are released, when it goes out of scope.
  struct PendingEvents {
    explicit PendingEvents(RuncRuntime* r) : runtime(r) {}
    ~PendingEvents() {
      for (const TaskRecord& t : list) runtime->Publish(t);
    }
    RuncRuntime* runtime;
    std::vector<TaskRecord> list;
  };
  // The shim of `sandbox` is unreachable: run its `delete` per container and report every
  // task that had not exited with reason ShimDied. `client` is the connection that dropped
  // (null at restore): nothing happens if the sandbox has moved on to another.
  void HandleShimLost(const std::shared_ptr<Sandbox>& sandbox,
                      const std::shared_ptr<ttrpc::TaskClient>& client);
  // Removes a dead shim's leftover socket file at `address` when nothing serves it.
  void RemoveDeadShimSocket(const std::string& address);
  void HandleShimLostLocked(const std::shared_ptr<Sandbox>& sandbox,
                            const std::shared_ptr<ttrpc::TaskClient>& client,
                            std::vector<TaskRecord>* publish_later);
  // Live restore: reconnects to every recorded shim and reconciles its tasks.
  void Restore();

  absl::Status PutTask(const TaskRecord& task);
  absl::Status PutSandbox(const SandboxRecord& sandbox);
  absl::Status ForgetTasks(const std::string& sandbox_id, const std::string& id,
                           const std::string& exec_id, bool with_execs);
  absl::Status ForgetSandbox(const std::string& sandbox_id);
  std::shared_ptr<Sandbox> FindSandbox(const std::string& sandbox_id);
  std::vector<TaskRecord> TasksOf(const std::string& sandbox_id);
  void Publish(const TaskRecord& task);

  void StartThread(std::function<void()> fn);
  // What the runtime binary is and whether it can run containers on this host's cgroups
  // (docs/shim.md §7); probed once per handler and binary, then cached.
  RuntimeReadiness ProbeRuntime(const HandlerOptions& opts, const std::string& binary,
                                const std::string& shim);

  sdk::Host host_;
  const HandlerKind kind_;
  const char* const plugin_id_;
  std::string state_dir_;       // <state>/<plugin id>
  std::string events_address_;  // -address given to shims (never listened on)
  std::string default_shim_;
  plugins::HandlerTable handlers_;
  std::unique_ptr<ttrpc::Server> events_;  // acknowledges what shims publish

  std::mutex mu_;
  std::map<std::string, HandlerOptions> options_;              // guarded by mu_
  std::map<std::string, std::shared_ptr<Sandbox>> sandboxes_;  // guarded by mu_
  std::map<std::string, TaskRecord> tasks_;                    // TaskKey; guarded by mu_

  struct Probe {
    std::string binary, shim;
    RuntimeReadiness verdict;
  };
  mutable std::mutex probe_mu_;
  std::map<std::string, Probe> probes_;    // by handler; guarded by probe_mu_
  std::map<std::string, std::vector<std::string>> shim_env_;  // by handler; guarded by probe_mu_
  std::optional<CgroupHost> cgroup_host_;  // guarded by probe_mu_

  std::atomic<bool> stopping_{false};
  std::mutex threads_mu_;
  std::condition_variable threads_cv_;
  int threads_ = 0;  // guarded by threads_mu_
};

}  // namespace berth::runc
