// SPDX-License-Identifier: Apache-2.0
#include "plugins/runtime-runc/runc_runtime.h"

#include <dlfcn.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/status_macros.h"
#include "plugins/common/plugin_util.h"
#include "plugins/common/status_convert.h"
#include "shim/berth/v1/shim.pb.h"

namespace berth::runc {
namespace {

namespace fs = std::filesystem;
namespace task = ::containerd::task::v2;

constexpr absl::Duration kDefaultCallTimeout = absl::Minutes(2);
constexpr absl::Duration kShimCommandTimeout = absl::Seconds(30);
constexpr absl::Duration kConnectTimeout = absl::Seconds(10);
constexpr absl::Duration kRestoreConnectTimeout = absl::Seconds(1);
constexpr uint32_t kKilledStatus = 128 + 9;  // SIGKILL

using plugins::FromSdk;
using plugins::ToSdk;

std::string TaskName(const TaskRecord& t) {
  return t.exec_id.empty() ? absl::StrCat("task ", t.id)
                           : absl::StrCat("exec ", t.exec_id, " of task ", t.id);
}

template <typename Message>
absl::Status ParseRequest(std::string_view bytes, std::string_view method,
                          std::string_view sandbox_id, Message* out) {
  if (!out->ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return absl::InvalidArgumentError(
        absl::StrCat("malformed ", std::string(ttrpc::kTaskService), "/", std::string(method),
                     " request for sandbox ", std::string(sandbox_id), " (", bytes.size(),
                     " bytes are not a ", out->GetTypeName(), ")"));
  }
  return absl::OkStatus();
}

std::string TrueBinary() {
  std::string t = plugins::FindExecutable("true");
  return t.empty() ? "/bin/true" : t;
}

}  // namespace

std::string DefaultShimPath() {
  Dl_info info{};
  if (::dladdr(reinterpret_cast<void*>(&DefaultShimPath), &info) == 0 ||
      info.dli_fname == nullptr) {
    return "berth-shim";
  }
  std::error_code ec;
  fs::path so = fs::absolute(info.dli_fname, ec);
  if (ec) return "berth-shim";
  return (so.parent_path() / "berth-shim").string();
}

RuncRuntime::RuncRuntime(sdk::Host host, HandlerKind kind)
    : host_(host), kind_(kind), plugin_id_(kind == HandlerKind::kRunc ? kPluginId : kShimV2PluginId) {}

sdk::Status RuncRuntime::Create(sdk::Host host, HandlerKind kind,
                                std::unique_ptr<RuncRuntime>* out) {
  std::unique_ptr<RuncRuntime> r(new RuncRuntime(host, kind));
  auto config = plugins::LoadConfig(host, r->plugin_id_, {});
  if (!config.ok()) return config.status();
  r->state_dir_ = host.StateDir();
  r->events_address_ = r->state_dir_ + "/events.sock";
  r->default_shim_ = kind == HandlerKind::kRunc ? DefaultShimPath() : "containerd-shim-kata-v2";
  const std::string shim_state = r->state_dir_ + "/shim";
  if (::mkdir(shim_state.c_str(), 0700) != 0 && errno != EEXIST) {
    return ToSdk(core::ErrnoToStatus(
        errno, absl::StrCat("cannot create the shim state directory ", shim_state)));
  }
  // Shims publish task events to TTRPC_ADDRESS and retry for a long time without a listener;
  // the plugin follows tasks with Wait, so the events are only acknowledged.
  auto events = ttrpc::ServeShimEvents(r->events_address_ + ".ttrpc", nullptr);
  if (events.ok()) {
    r->events_ = std::move(*events);
  } else {
    host.Warn(absl::StrCat(
        "cannot listen for shim events at ", r->events_address_,
        ".ttrpc (shims will retry publishing and exit slowly): ", events.status().message()));
  }
  r->Restore();
  *out = std::move(r);
  return sdk::Status::Ok();
}

RuncRuntime::~RuncRuntime() {
  stopping_ = true;
  std::vector<std::shared_ptr<Sandbox>> sandboxes;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [id, sb] : sandboxes_) sandboxes.push_back(sb);
  }
  // Closing the connections ends every follower's Wait; the shims keep running.
  for (auto& sb : sandboxes) {
    std::shared_ptr<ttrpc::TaskClient> client;
    {
      std::lock_guard<std::mutex> lock(mu_);
      client = sb->client;
    }
    if (client) client->Close();
  }
  {
    std::unique_lock<std::mutex> lock(threads_mu_);
    threads_cv_.wait(lock, [this] { return threads_ == 0; });
  }
  for (auto& sb : sandboxes) {
    std::lock_guard<std::mutex> op(sb->op_mu);
    sb->log.reset();
  }
  if (events_) events_->Shutdown(absl::Seconds(1));
}

const void* RuncRuntime::GetInterface(std::string_view iface) {
  if (iface == BERTH_IFACE_RUNTIME_V1) return sdk::RuntimeTable<RuncRuntime>();
  return nullptr;
}

sdk::Readiness RuncRuntime::Status() { return sdk::Readiness::Ready(); }

sdk::Status RuncRuntime::AddHandler(std::string_view name, std::string_view options_json) {
  absl::StatusOr<HandlerOptions> opts =
      kind_ == HandlerKind::kRunc ? ParseHandlerOptions(name, options_json, default_shim_)
                                  : ParseShimV2HandlerOptions(name, options_json, default_shim_);
  if (!opts.ok()) return ToSdk(opts.status());
  sdk::Status s =
      kind_ == HandlerKind::kRunc
          ? handlers_.Add(name, options_json, "binary", "runc", {"root", "systemd_cgroup", "shim"})
          : handlers_.Add(name, options_json, "shim", default_shim_,
                          {"config_path", "start_timeout"});
  if (!s.ok()) return s;
  {
    std::lock_guard<std::mutex> lock(probe_mu_);
    std::vector<std::string>& env = shim_env_[opts->name];
    env.clear();
    // Kata reads its configuration file from the environment of its shim, too.
    if (!opts->config_path.empty()) env.push_back("KATA_CONF_FILE=" + opts->config_path);
  }
  std::lock_guard<std::mutex> lock(mu_);
  options_[opts->name] = *opts;
  return sdk::Status::Ok();
}

sdk::Readiness RuncRuntime::HandlerStatus(std::string_view name) {
  HandlerOptions opts;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = options_.find(std::string(name));
    if (it == options_.end()) {
      return sdk::Readiness::NotReady(
          "UnknownRuntimeHandler",
          absl::StrCat("no runtime handler named \"", std::string(name), "\" is declared"));
    }
    opts = it->second;
  }
  if (opts.shim_only) {
    absl::StatusOr<std::string> shim = ResolveExecutable("shim binary", opts.shim, name);
    if (!shim.ok()) {
      return sdk::Readiness::NotReady("ShimBinaryNotFound", std::string(shim.status().message()));
    }
    std::error_code ec;
    if (!opts.config_path.empty() && !fs::is_regular_file(opts.config_path, ec)) {
      return sdk::Readiness::NotReady(
          "RuntimeConfigNotFound", absl::StrCat("config_path \"", opts.config_path,
                                                "\" of runtime handler \"", opts.name,
                                                "\" is not a file"));
    }
    return sdk::Readiness::Ready();
  }
  absl::StatusOr<std::string> binary = ResolveExecutable("runtime binary", opts.binary, name);
  if (!binary.ok()) {
    return sdk::Readiness::NotReady("RuntimeBinaryNotFound",
                                    std::string(binary.status().message()));
  }
  absl::StatusOr<std::string> shim = ResolveExecutable("shim binary", opts.shim, name);
  if (!shim.ok()) {
    return sdk::Readiness::NotReady("ShimBinaryNotFound", std::string(shim.status().message()));
  }
  RuntimeReadiness verdict = ProbeRuntime(opts, *binary, *shim);
  if (verdict.readiness == Readiness::kNotReady) {
    return sdk::Readiness::NotReady(
        verdict.reason,
        absl::StrCat("runtime handler \"", opts.name, "\" (", *binary, "): ", verdict.message));
  }
  return sdk::Readiness::Ready();
}

RuntimeReadiness RuncRuntime::ProbeRuntime(const HandlerOptions& opts, const std::string& binary,
                                           const std::string& shim) {
  std::lock_guard<std::mutex> lock(probe_mu_);
  auto it = probes_.find(opts.name);
  if (it != probes_.end() && it->second.binary == binary && it->second.shim == shim) {
    return it->second.verdict;
  }
  Probe probe{binary, shim, RuntimeReadiness{}};
  absl::StatusOr<RuntimeIdentity> id = IdentifyRuntime(binary);
  if (!id.ok()) {
    host_.Warn(absl::StrCat("runtime handler \"", opts.name, "\": cannot tell which runtime ",
                            binary, " is (", id.status().message(),
                            "); assuming it works on this host"));
  } else {
    if (!cgroup_host_) {
      absl::StatusOr<CgroupHost> host = ProbeCgroupHost();
      if (host.ok()) {
        cgroup_host_ = std::move(*host);
      } else {
        host_.Warn(absl::StrCat("cannot probe the cgroup layout: ", host.status().message()));
      }
    }
    if (cgroup_host_) {
      // Only berth-shim knows how to run crun on a hybrid host.
      const bool berth_shim = fs::path(shim).filename() == "berth-shim";
      probe.verdict = EvaluateRuntimeReadiness(*id, *cgroup_host_, berth_shim);
      if (probe.verdict.readiness == Readiness::kReadyWithWorkaround) {
        host_.Info(absl::StrCat("runtime handler \"", opts.name, "\" (", binary,
                                "): ", probe.verdict.message, " [", probe.verdict.reason, "]"));
      }
    }
  }
  probes_[opts.name] = probe;
  return probe.verdict;
}

sdk::Status RuncRuntime::ShimCall(std::string_view handler, std::string_view sandbox_id,
                                  std::string_view service, std::string_view method,
                                  std::string_view request, uint64_t timeout_ms,
                                  std::string* response) {
  if (stopping_) {
    return sdk::Status(BERTH_UNAVAILABLE, absl::StrCat("runtime plugin ", plugin_id_, " is stopping"));
  }
  if (sandbox_id.empty()) {
    return sdk::InvalidArgument(absl::StrCat("shim_call ", std::string(service), "/",
                                             std::string(method), ": sandbox_id is empty"));
  }
  if (service.empty() || method.empty()) {
    return sdk::InvalidArgument("shim_call: service and method are required");
  }
  const absl::Time deadline =
      absl::Now() + (timeout_ms == 0 ? kDefaultCallTimeout
                                     : absl::Milliseconds(static_cast<int64_t>(timeout_ms)));
  const std::string sid(sandbox_id);
  if (service == ttrpc::kTaskService && method == "Create") {
    return ToSdk(DoCreate(handler, sid, request, deadline, response));
  }
  return ToSdk(DoCall(sid, handler, service, method, request, deadline, response));
}

sdk::Status RuncRuntime::Control(std::string_view op, std::string_view request_json,
                                 std::string* out) {
  if (op == "tasks") {
    *out = TasksJson();
    return sdk::Status::Ok();
  }
  if (op == "remove_sandbox") {
    nlohmann::json j = nlohmann::json::parse(request_json, nullptr, false);
    if (!j.is_object() || !j.contains("sandbox_id") || !j["sandbox_id"].is_string() ||
        j["sandbox_id"].get<std::string>().empty()) {
      return sdk::InvalidArgument(
          absl::StrCat("control remove_sandbox: expected {\"sandbox_id\": \"<id>\"}, got ",
                       std::string(request_json)));
    }
    absl::Status s = RemoveSandbox(j["sandbox_id"].get<std::string>());
    if (s.ok()) *out = "{}";
    return ToSdk(s);
  }
  if (op == "handler_info") return ToSdk(HandlerInfo(request_json, out));
  return sdk::Unimplemented(absl::StrCat("runtime plugin ", plugin_id_,
                                         " has no control operation \"", std::string(op),
                                         "\" (known: tasks, remove_sandbox, handler_info)"));
}

absl::Status RuncRuntime::HandlerInfo(std::string_view request_json, std::string* out) {
  nlohmann::json j = nlohmann::json::parse(request_json, nullptr, false);
  if (!j.is_object() || !j.contains("handler") || !j["handler"].is_string()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "control handler_info: expected {\"handler\": \"<name>\"}, got ", std::string(request_json)));
  }
  const std::string name = j["handler"].get<std::string>();
  HandlerOptions opts;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = options_.find(name);
    if (it == options_.end()) {
      return absl::NotFoundError(absl::StrCat("no runtime handler named \"", name, "\""));
    }
    opts = it->second;
  }
  // berth-shim speaks berth.shim.v1 (CRI logs, attach sockets, ExecSync); any other shim is
  // driven through the plain shim v2 Task API with FIFOs.
  absl::StatusOr<std::string> shim = ResolveExecutable("shim binary", opts.shim, name);
  const std::string shim_path = shim.ok() ? *shim : opts.shim;
  const bool berth_shim = fs::path(shim_path).filename() == "berth-shim";
  nlohmann::json info = {{"handler", name},
                         {"plugin", plugin_id_},
                         {"shim", shim_path},
                         {"berth_shim", berth_shim},
                         {"kind", opts.shim_only ? "shim-v2" : "runc"}};
  if (!opts.shim_only) info["runtime"] = opts.binary;
  if (!opts.config_path.empty()) info["config_path"] = opts.config_path;
  *out = info.dump();
  return absl::OkStatus();
}

// ---- Create ---------------------------------------------------------------------------------

absl::Status RuncRuntime::DoCreate(std::string_view handler, const std::string& sandbox_id,
                                   std::string_view request, absl::Time deadline,
                                   std::string* response) {
  task::CreateTaskRequest req;
  if (absl::Status s = ParseRequest(request, "Create", sandbox_id, &req); !s.ok()) return s;
  if (req.id().empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("Task/Create in sandbox ", sandbox_id, ": the container id is empty"));
  }
  if (req.id().find('/') != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Task/Create in sandbox ", sandbox_id, ": container id \"", req.id(), "\" contains '/'"));
  }
  std::error_code ec;
  if (req.bundle().empty() || req.bundle().front() != '/' || !fs::is_directory(req.bundle(), ec)) {
    return absl::InvalidArgumentError(
        absl::StrCat("Task/Create of container ", req.id(), " in sandbox ", sandbox_id,
                     ": bundle \"", req.bundle(), "\" is not an absolute path to a directory"));
  }
  HandlerOptions opts;
  std::shared_ptr<Sandbox> sb;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = options_.find(std::string(handler));
    if (it == options_.end()) {
      std::vector<std::string> names;
      for (const auto& [name, o] : options_) names.push_back(name);
      return absl::NotFoundError(absl::StrCat(
          "unknown runtime handler \"", std::string(handler), "\" for container ", req.id(),
          " (declared: ", names.empty() ? "none" : absl::StrJoin(names, ", "), ")"));
    }
    opts = it->second;
  }
  absl::StatusOr<std::string> shim = ResolveExecutable("shim binary", opts.shim, opts.name);
  if (!shim.ok()) return absl::FailedPreconditionError(shim.status().message());
  if (opts.shim_only) {
    InjectRuntimeOptions(opts, &req);
  } else {
    absl::StatusOr<std::string> runtime =
        ResolveExecutable("runtime binary", opts.binary, opts.name);
    if (!runtime.ok()) return absl::FailedPreconditionError(runtime.status().message());
    InjectRuncOptions(opts, *runtime, &req);
    // Cached after the first call. It refuses a runtime that cannot run on this host, and the
    // shim gets the verdict on crun and hybrid cgroups (ShimCommandFor).
    RuntimeReadiness verdict = ProbeRuntime(opts, *runtime, *shim);
    if (verdict.readiness == Readiness::kNotReady) {
      return absl::FailedPreconditionError(absl::StrCat(
          "runtime handler \"", opts.name, "\" (", *runtime, "): ", verdict.message));
    }
  }

  PendingEvents events(this);  // published after op_mu is released
  std::unique_lock<std::mutex> op;
  std::shared_ptr<ttrpc::TaskClient> client;
  // The sandbox may be dropped (failed start, remove_sandbox) while this call waits for its
  // op_mu: then start over with the current one.
  for (bool current = false; !current;) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      std::shared_ptr<Sandbox>& slot = sandboxes_[sandbox_id];
      if (!slot) {
        slot = std::make_shared<Sandbox>();
        slot->record.id = sandbox_id;
        slot->record.handler = opts.name;
        slot->record.shim = *shim;
      } else if (slot->record.handler != opts.name) {
        return absl::InvalidArgumentError(absl::StrCat(
            "sandbox ", sandbox_id, " runs with runtime handler \"", slot->record.handler,
            "\"; container ", req.id(), " cannot use handler \"", opts.name, "\" in it"));
      }
      sb = slot;
    }
    op = std::unique_lock<std::mutex>(sb->op_mu);
    std::lock_guard<std::mutex> lock(mu_);
    auto it = sandboxes_.find(sandbox_id);
    current = it != sandboxes_.end() && it->second == sb;
    if (!current) {
      op.unlock();
      continue;
    }
    if (sb->removing) {
      return absl::FailedPreconditionError(
          absl::StrCat("sandbox ", sandbox_id, " is being removed"));
    }
    if (tasks_.count(TaskKey(sandbox_id, req.id(), "")) != 0) {
      return absl::AlreadyExistsError(
          absl::StrCat("container ", req.id(), " already has a task in sandbox ", sandbox_id));
    }
    client = sb->client;
  }
  if (client && !client->connected()) {
    HandleShimLostLocked(sb, client, &events.list);
    client.reset();
  }
  bool started = false;
  if (!client && opts.shim_only && req.id() != sandbox_id) {
    // A pod whose shim died has lost its sandbox (for Kata: the VM) with it; a new shim
    // cannot bring the pod back.
    for (const TaskRecord& t : TasksOf(sandbox_id)) {
      if (t.id == sandbox_id && t.exec_id.empty() && t.status == TaskStatus::kStopped) {
        return absl::FailedPreconditionError(absl::StrCat(
            "runtime handler \"", opts.name, "\": the sandbox of pod ", sandbox_id,
            " is gone (its shim ", sb->record.shim, " exited",
            t.reason.empty() ? "" : ": " + t.reason,
            "); container ", req.id(), " cannot be created in it: the pod must be recreated"));
      }
    }
  }
  if (!client && opts.shim_only && req.id() != sandbox_id && TasksOf(sandbox_id).empty()) {
    // Kata and its kind build the pod (the VM) from the sandbox task: it comes first.
    {
      std::lock_guard<std::mutex> lock(mu_);
      sandboxes_.erase(sandbox_id);
    }
    return absl::FailedPreconditionError(absl::StrCat(
        "runtime handler \"", opts.name, "\": container ", req.id(), " cannot be created before ",
        "the sandbox task of pod ", sandbox_id, " (create the task with the sandbox's id first)"));
  }
  if (!client) {
    sb->record.shim = *shim;
    absl::Status s = StartShimLocked(sb, req.bundle(), req.id(), deadline);
    if (!s.ok()) {
      if (TasksOf(sandbox_id).empty()) {
        std::lock_guard<std::mutex> lock(mu_);
        sandboxes_.erase(sandbox_id);
      }
      return s;
    }
    started = true;
    std::lock_guard<std::mutex> lock(mu_);
    client = sb->client;
  }
  absl::StatusOr<task::CreateTaskResponse> created = client->Create(req, deadline);
  if (!created.ok()) {
    if (created.status().code() == absl::StatusCode::kUnavailable && !client->connected()) {
      HandleShimLostLocked(sb, client, &events.list);
    } else if (started && TasksOf(sandbox_id).empty()) {
      // A shim started for nothing: stop it so that a retry starts afresh.
      task::ShutdownRequest down;
      down.set_id(req.id());
      down.set_now(true);
      (void)client->Shutdown(down, absl::Now() + absl::Seconds(5));
      {
        std::lock_guard<std::mutex> lock(mu_);
        sb->client.reset();
        sandboxes_.erase(sandbox_id);
      }
      client->Close();
      sb->log.reset();
      (void)ForgetSandbox(sandbox_id);
    }
    return created.status();
  }
  TaskRecord t;
  t.handler = opts.name;
  t.sandbox_id = sandbox_id;
  t.id = req.id();
  t.bundle = req.bundle();
  t.status = TaskStatus::kCreated;
  t.pid = created->pid();
  {
    std::lock_guard<std::mutex> lock(mu_);
    tasks_[TaskKey(sandbox_id, t.id, "")] = t;
  }
  if (absl::Status s = PutTask(t); !s.ok()) {
    // Unrecorded, the task could not be restored or cleaned up after a restart: undo it.
    task::DeleteRequest del;
    del.set_id(t.id);
    (void)client->Delete(del, absl::Now() + absl::Seconds(10));
    {
      std::lock_guard<std::mutex> lock(mu_);
      tasks_.erase(TaskKey(sandbox_id, t.id, ""));
    }
    return absl::Status(s.code(), absl::StrCat("recording task ", t.id, " of sandbox ", sandbox_id,
                                               " failed (task deleted): ", s.message()));
  }
  host_.Debug(absl::StrCat("created task ", t.id, " (pid ", t.pid, ") in sandbox ", sandbox_id,
                           " with handler ", t.handler));
  Follow(sb, client, t);
  *response = created->SerializeAsString();
  return absl::OkStatus();
}

ttrpc::ShimCommand RuncRuntime::ShimCommandFor(const SandboxRecord& sandbox,
                                               const std::string& bundle,
                                               const std::string& id) const {
  ttrpc::ShimCommand c;
  c.binary = sandbox.shim;
  c.bundle = bundle;
  c.id = id;
  c.ns = kShimNamespace;
  c.address = events_address_;
  c.publish_binary = TrueBinary();
  c.extra_env = {absl::StrCat("BERTH_SHIM_STATE_DIR=", state_dir_, "/shim")};
  {
    // Our verdict on crun and the host's cgroups, so that berth-shim need not probe again.
    std::lock_guard<std::mutex> lock(probe_mu_);
    auto it = probes_.find(sandbox.handler);
    if (it != probes_.end()) {
      const bool hide = it->second.verdict.readiness == Readiness::kReadyWithWorkaround;
      c.extra_env.push_back(absl::StrCat("BERTH_SHIM_HIDE_CGROUP2=", hide ? "1" : "0"));
    }
    auto env = shim_env_.find(sandbox.handler);
    if (env != shim_env_.end()) {
      c.extra_env.insert(c.extra_env.end(), env->second.begin(), env->second.end());
    }
  }
  c.timeout = kShimCommandTimeout;
  // The shim logs at debug level when berthd does (its log reaches ours at debug level).
  c.debug = host_.raw()->log_level(host_.raw()->ctx) <= BERTH_LOG_DEBUG;
  return c;
}

std::unique_ptr<ttrpc::ShimLog> RuncRuntime::OpenShimLog(const std::string& sandbox_id,
                                                         const std::string& bundle) {
  std::error_code ec;
  if (bundle.empty() || !fs::is_directory(bundle, ec)) return nullptr;
  sdk::Host host = host_;
  auto log = ttrpc::ShimLog::Open(bundle, [host, sandbox_id](std::string_view line) {
    host.Debug(absl::StrCat("shim of sandbox ", sandbox_id, ": ", std::string(line)));
  });
  if (!log.ok()) {
    host_.Warn(absl::StrCat("sandbox ", sandbox_id,
                            ": cannot read the shim's log FIFO: ", log.status().message()));
    return nullptr;
  }
  return std::move(*log);
}

absl::Status RuncRuntime::StartShimLocked(const std::shared_ptr<Sandbox>& sb,
                                          const std::string& bundle, const std::string& id,
                                          absl::Time deadline) {
  const std::string& sandbox_id = sb->record.id;
  // containerd shims open <bundle>/log for writing when they start and block until it has a
  // reader: open it first.
  sb->log = OpenShimLog(sandbox_id, bundle);
  ttrpc::ShimCommand cmd = ShimCommandFor(sb->record, bundle, id);
  absl::Duration limit = kShimCommandTimeout;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = options_.find(sb->record.handler);
    if (it != options_.end() && it->second.start_timeout_seconds > 0) {
      limit = absl::Seconds(it->second.start_timeout_seconds);
    }
  }
  cmd.timeout = std::max(absl::Seconds(1), std::min(limit, deadline - absl::Now()));
  absl::StatusOr<std::string> address = ttrpc::StartShim(cmd);
  if (!address.ok()) {
    sb->log.reset();
    return absl::Status(address.status().code(),
                        absl::StrCat("starting the shim of sandbox ", sandbox_id, ": ",
                                     address.status().message()));
  }
  absl::StatusOr<std::unique_ptr<ttrpc::TaskClient>> client =
      ttrpc::TaskClient::Connect(*address, kConnectTimeout);
  if (!client.ok()) {
    sb->log.reset();
    return absl::UnavailableError(
        absl::StrCat("the shim ", sb->record.shim, " of sandbox ", sandbox_id, " started at ",
                     *address, " but cannot be reached: ", client.status().message()));
  }
  sb->record.address = *address;
  sb->record.bundle = bundle;
  if (absl::Status s = PutSandbox(sb->record); !s.ok()) {
    task::ShutdownRequest down;
    down.set_id(id);
    down.set_now(true);
    (void)(*client)->Shutdown(down, absl::Now() + absl::Seconds(5));
    sb->log.reset();
    return absl::Status(s.code(), absl::StrCat("recording the shim of sandbox ", sandbox_id,
                                               " failed (shim stopped): ", s.message()));
  }
  host_.Info(absl::StrCat("started shim ", sb->record.shim, " for sandbox ", sandbox_id, " at ",
                          *address));
  std::lock_guard<std::mutex> lock(mu_);
  sb->client = std::shared_ptr<ttrpc::TaskClient>(std::move(*client));
  sb->dead = false;
  return absl::OkStatus();
}

// ---- other calls ----------------------------------------------------------------------------

absl::Status RuncRuntime::DoCall(const std::string& sandbox_id, std::string_view handler,
                                 std::string_view service, std::string_view method,
                                 std::string_view request, absl::Time deadline,
                                 std::string* response) {
  std::shared_ptr<Sandbox> sb = FindSandbox(sandbox_id);
  if (!sb) {
    return absl::NotFoundError(absl::StrCat(
        "no shim serves sandbox ", sandbox_id, ": no task was created in it (",
        std::string(service), "/", std::string(method), " needs a Task/Create first)"));
  }
  if (!handler.empty() && handler != sb->record.handler) {
    return absl::InvalidArgumentError(
        absl::StrCat("sandbox ", sandbox_id, " runs with runtime handler \"", sb->record.handler,
                     "\", not \"", std::string(handler), "\""));
  }
  std::shared_ptr<ttrpc::TaskClient> client;
  bool dead = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    client = sb->client;
    dead = sb->dead;
  }
  const bool is_task = service == ttrpc::kTaskService;
  if (!client && !dead) {
    return absl::UnavailableError(absl::StrCat("the shim of sandbox ", sandbox_id,
                                               " is being started by a Task/Create; retry"));
  }
  if (!client) {
    if (is_task) return CallWithoutShim(sb, method, request, response);
    return absl::UnavailableError(absl::StrCat("the shim of sandbox ", sandbox_id, " is gone"));
  }
  task::StartRequest start;
  task::DeleteRequest del;
  if (is_task && method == "Start") {
    if (absl::Status s = ParseRequest(request, method, sandbox_id, &start); !s.ok()) return s;
  }
  if (is_task && method == "Delete") {
    if (absl::Status s = ParseRequest(request, method, sandbox_id, &del); !s.ok()) return s;
  }
  absl::StatusOr<std::string> r =
      client->client().CallRaw(service, method, std::string(request), deadline);
  if (!r.ok()) {
    if (r.status().code() == absl::StatusCode::kUnavailable && !client->connected() && !stopping_) {
      HandleShimLost(sb, client);
    }
    return r.status();
  }
  if (is_task && method == "Start") {
    task::StartResponse started;
    (void)started.ParseFromString(*r);
    if (start.exec_id().empty()) {
      TaskRecord t;
      bool known = false;
      {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = tasks_.find(TaskKey(sandbox_id, start.id(), ""));
        if (it != tasks_.end() && it->second.status != TaskStatus::kStopped) {
          it->second.status = TaskStatus::kRunning;
          if (started.pid() != 0) it->second.pid = started.pid();
          t = it->second;
          known = true;
        }
      }
      if (known) {
        if (absl::Status s = PutTask(t); !s.ok()) {
          host_.Warn(absl::StrCat("recording that task ", t.id, " runs: ", s.message()));
        }
      }
    } else {
      TaskRecord t;
      t.handler = sb->record.handler;
      t.sandbox_id = sandbox_id;
      t.id = start.id();
      t.exec_id = start.exec_id();
      t.status = TaskStatus::kRunning;
      t.pid = started.pid();
      {
        std::lock_guard<std::mutex> lock(mu_);
        tasks_[TaskKey(sandbox_id, t.id, t.exec_id)] = t;
      }
      if (absl::Status s = PutTask(t); !s.ok()) {
        host_.Warn(absl::StrCat("recording ", TaskName(t), ": ", s.message()));
      }
      Follow(sb, client, t);
    }
  }
  if (is_task && method == "Delete") {
    if (absl::Status s = ForgetTasks(sandbox_id, del.id(), del.exec_id(), del.exec_id().empty());
        !s.ok()) {
      host_.Warn(absl::StrCat("forgetting task ", del.id(), " of sandbox ", sandbox_id, ": ",
                              s.message()));
    }
  }
  *response = std::move(*r);
  return absl::OkStatus();
}

absl::Status RuncRuntime::CallWithoutShim(const std::shared_ptr<Sandbox>& sb,
                                          std::string_view method, std::string_view request,
                                          std::string* response) {
  const std::string& sandbox_id = sb->record.id;
  const std::string gone =
      absl::StrCat("the shim of sandbox ", sandbox_id,
                   " is gone (its tasks were reported exited with reason ShimDied)");
  auto find = [&](const std::string& id, const std::string& exec_id) -> std::optional<TaskRecord> {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = tasks_.find(TaskKey(sandbox_id, id, exec_id));
    if (it == tasks_.end()) return std::nullopt;
    return it->second;
  };
  auto not_found = [&](const std::string& id, const std::string& exec_id) {
    return absl::NotFoundError(
        absl::StrCat(exec_id.empty() ? "task " : "exec " + exec_id + " of task ", id,
                     " not found in sandbox ", sandbox_id, "; ", gone));
  };
  if (method == "State") {
    task::StateRequest req;
    if (absl::Status s = ParseRequest(request, method, sandbox_id, &req); !s.ok()) return s;
    std::optional<TaskRecord> t = find(req.id(), req.exec_id());
    if (!t) return not_found(req.id(), req.exec_id());
    task::StateResponse resp;
    resp.set_id(t->id);
    resp.set_exec_id(t->exec_id);
    resp.set_bundle(t->bundle);
    resp.set_pid(t->pid);
    resp.set_status(t->status == TaskStatus::kStopped ? containerd::v1::types::STOPPED
                                                      : containerd::v1::types::UNKNOWN);
    resp.set_exit_status(t->exit_status);
    if (auto ts = ParseTimestamp(t->exited_at)) *resp.mutable_exited_at() = *ts;
    *response = resp.SerializeAsString();
    return absl::OkStatus();
  }
  if (method == "Wait" || method == "Delete") {
    task::DeleteRequest req;  // Wait and Delete requests have the same fields
    if (absl::Status s = ParseRequest(request, method, sandbox_id, &req); !s.ok()) return s;
    std::optional<TaskRecord> t = find(req.id(), req.exec_id());
    if (!t) return not_found(req.id(), req.exec_id());
    if (t->status != TaskStatus::kStopped) return absl::UnavailableError(gone);
    std::optional<google::protobuf::Timestamp> ts = ParseTimestamp(t->exited_at);
    if (method == "Wait") {
      task::WaitResponse resp;
      resp.set_exit_status(t->exit_status);
      if (ts) *resp.mutable_exited_at() = *ts;
      *response = resp.SerializeAsString();
      return absl::OkStatus();
    }
    task::DeleteResponse resp;
    resp.set_pid(t->pid);
    resp.set_exit_status(t->exit_status);
    if (ts) *resp.mutable_exited_at() = *ts;
    if (absl::Status s = ForgetTasks(sandbox_id, req.id(), req.exec_id(), req.exec_id().empty());
        !s.ok()) {
      return s;
    }
    *response = resp.SerializeAsString();
    return absl::OkStatus();
  }
  if (method == "Shutdown") {
    *response = google::protobuf::Empty().SerializeAsString();
    return absl::OkStatus();
  }
  if (method == "Kill") {
    task::KillRequest req;
    if (absl::Status s = ParseRequest(request, method, sandbox_id, &req); !s.ok()) return s;
    if (!find(req.id(), req.exec_id())) return not_found(req.id(), req.exec_id());
    return absl::NotFoundError(absl::StrCat("process already finished: ", gone));
  }
  return absl::UnavailableError(absl::StrCat(gone, "; Task/", std::string(method),
                                             " needs a live shim (a Task/Create starts one)"));
}

// ---- following tasks ------------------------------------------------------------------------

void RuncRuntime::StartThread(std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> lock(threads_mu_);
    ++threads_;
  }
  std::thread([this, fn = std::move(fn)] {
    fn();
    std::lock_guard<std::mutex> lock(threads_mu_);
    --threads_;
    threads_cv_.notify_all();
  }).detach();
}

void RuncRuntime::Follow(std::shared_ptr<Sandbox> sb, std::shared_ptr<ttrpc::TaskClient> client,
                         TaskRecord t) {
  // An asynchronous Wait: no thread waits while the task runs; its answer (or the loss of the
  // connection) starts a short-lived one for the work, which may call the shim again.
  task::WaitRequest req;
  req.set_id(t.id);
  req.set_exec_id(t.exec_id);
  ttrpc::Client& conn = client->client();
  conn.CallRawAsync(
      ttrpc::kTaskService, "Wait", req.SerializeAsString(),
      [this, sb = std::move(sb), client = std::move(client),
       t = std::move(t)](absl::StatusOr<std::string> raw) mutable {
        if (stopping_) return;
        StartThread([this, sb = std::move(sb), client = std::move(client), t = std::move(t),
                     raw = std::move(raw)]() mutable {
          if (stopping_) return;
          task::WaitResponse r;
          if (raw.ok() && !r.ParseFromString(*raw)) {
            raw = absl::InternalError("malformed Task/Wait response");
          }
          if (raw.ok()) {
            std::string at = FormatTimestamp(r.exited_at());
            RecordExit(sb, client.get(), t, r.exit_status(),
                       at.empty() ? FormatRfc3339(absl::Now()) : at, "");
            return;
          }
          if (raw.status().code() == absl::StatusCode::kUnavailable && !client->connected()) {
            HandleShimLost(sb, client);
            return;
          }
          if (raw.status().code() == absl::StatusCode::kNotFound) return;  // deleted meanwhile
          host_.Warn(absl::StrCat("waiting for ", TaskName(t), " of sandbox ", t.sandbox_id,
                                  " failed: ", raw.status().message(),
                                  "; its exit will be found at the next restart"));
        });
      });
}

void RuncRuntime::RecordExit(const std::shared_ptr<Sandbox>& sb, ttrpc::TaskClient* client,
                             const TaskRecord& t, uint32_t exit_status,
                             const std::string& exited_at, std::string reason,
                             std::vector<TaskRecord>* publish_later) {
  if (reason.empty() && client != nullptr && !sb->no_info) {
    berth::shim::v1::InfoRequest req;
    req.set_id(t.id);
    req.set_exec_id(t.exec_id);
    auto info = client->client().Call<berth::shim::v1::InfoRequest, berth::shim::v1::InfoResponse>(
        kShimExtService, "Info", req, absl::Now() + absl::Seconds(5));
    if (info.ok()) {
      if (info->oom_killed()) reason = kReasonOom;
    } else if (info.status().code() == absl::StatusCode::kUnimplemented) {
      sb->no_info = true;  // a shim without the berth extension service
    } else {
      host_.Debug(absl::StrCat("Info for ", TaskName(t), ": ", info.status().message()));
    }
  }
  TaskRecord rec;
  bool known = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = tasks_.find(TaskKey(t.sandbox_id, t.id, t.exec_id));
    if (it != tasks_.end()) {
      if (it->second.status == TaskStatus::kStopped) return;  // reported already
      it->second.status = TaskStatus::kStopped;
      it->second.exit_status = exit_status;
      it->second.exited_at = exited_at;
      it->second.reason = reason;
      rec = it->second;
      known = true;
      if (absl::Status s = PutTask(rec); !s.ok()) {
        host_.Warn(absl::StrCat("recording the exit of ", TaskName(rec), ": ", s.message()));
      }
    }
  }
  if (!known) {  // deleted meanwhile: still an exit to report
    rec = t;
    rec.status = TaskStatus::kStopped;
    rec.exit_status = exit_status;
    rec.exited_at = exited_at;
    rec.reason = reason;
  }
  if (publish_later != nullptr) {
    publish_later->push_back(std::move(rec));
  } else {
    Publish(rec);
  }
}

void RuncRuntime::Publish(const TaskRecord& t) {
  host_.Info(absl::StrCat(TaskName(t), " of sandbox ", t.sandbox_id, " exited with status ",
                          t.exit_status, t.reason.empty() ? "" : " (" + t.reason + ")"));
  sdk::Status s = host_.Publish(kExitTopic, t.ExitEvent());
  if (!s.ok()) host_.Warn(absl::StrCat("publishing the exit of ", TaskName(t), ": ", s.message()));
}

void RuncRuntime::HandleShimLost(const std::shared_ptr<Sandbox>& sb,
                                 const std::shared_ptr<ttrpc::TaskClient>& client) {
  PendingEvents events(this);
  std::lock_guard<std::mutex> op(sb->op_mu);
  HandleShimLostLocked(sb, client, &events.list);
}

void RuncRuntime::HandleShimLostLocked(const std::shared_ptr<Sandbox>& sb,
                                       const std::shared_ptr<ttrpc::TaskClient>& client,
                                       std::vector<TaskRecord>* publish_later) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (sb->client != client || sb->removing) return;  // handled, replaced or removed
    sb->client.reset();
    sb->dead = true;
  }
  if (client) client->Close();
  sb->log.reset();
  std::vector<TaskRecord> lost;
  for (TaskRecord& t : TasksOf(sb->record.id)) {
    if (t.status != TaskStatus::kStopped) lost.push_back(std::move(t));
  }
  host_.Error(absl::StrCat("the shim ", sb->record.shim, " of sandbox ", sb->record.id, " (",
                           sb->record.address, ") is gone; ", lost.size(),
                           " task(s) not yet exited are cleaned up and reported exited "
                           "with reason ShimDied"));
  for (const TaskRecord& t : lost) {
    uint32_t status = kKilledStatus;
    std::string at = FormatRfc3339(absl::Now());
    if (t.exec_id.empty() && !t.bundle.empty()) {
      absl::StatusOr<task::DeleteResponse> del =
          ttrpc::DeleteShim(ShimCommandFor(sb->record, t.bundle, t.id));
      if (del.ok()) {
        status = del->exit_status();
        std::string recorded = FormatTimestamp(del->exited_at());
        if (!recorded.empty()) at = recorded;
      } else {
        host_.Warn(absl::StrCat("cleaning up container ", t.id, " of sandbox ", sb->record.id,
                                " after its shim died: ", del.status().message()));
      }
    }
    RecordExit(sb, nullptr, t, status, at, kReasonShimDied, publish_later);
  }
  RemoveDeadShimSocket(sb->record.address);
}

void RuncRuntime::RemoveDeadShimSocket(const std::string& address) {
  // A shim killed with SIGKILL leaves its socket file behind (containerd-shim-runc-v2 puts
  // it under /run/containerd/s); remove it once nothing answers on it.
  std::string path = address;
  if (absl::StartsWith(path, "unix://")) path = path.substr(7);
  struct stat st {};
  if (path.empty() || path[0] != '/' || ::lstat(path.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) {
    return;
  }
  if (ttrpc::Client::Connect(path, absl::ZeroDuration()).ok()) return;  // someone serves it
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    host_.Warn(
        absl::StrCat("cannot remove the socket ", path, " of a dead shim: ", std::strerror(errno)));
  }
}

// ---- restore --------------------------------------------------------------------------------

void RuncRuntime::Restore() {
  std::vector<SandboxRecord> sandboxes;
  std::vector<TaskRecord> tasks;
  {
    auto txn = host_.Begin(false);
    if (!txn.ok()) {
      host_.Error(absl::StrCat("cannot read recorded shims: ", txn.status().message()));
      return;
    }
    sdk::Status s = txn->Scan(kBucket, "sandbox/", [&](std::string_view k, std::string_view v) {
      if (auto r = SandboxRecord::FromJson(v)) {
        sandboxes.push_back(std::move(*r));
      } else {
        host_.Warn(absl::StrCat("ignoring unreadable record ", std::string(k)));
      }
      return true;
    });
    if (s.ok()) {
      s = txn->Scan(kBucket, "task/", [&](std::string_view k, std::string_view v) {
        if (auto r = TaskRecord::FromJson(v)) {
          tasks.push_back(std::move(*r));
        } else {
          host_.Warn(absl::StrCat("ignoring unreadable record ", std::string(k)));
        }
        return true;
      });
    }
    if (!s.ok()) {
      host_.Error(absl::StrCat("cannot read recorded shims: ", s.message()));
      return;
    }
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const SandboxRecord& r : sandboxes) {
      auto sb = std::make_shared<Sandbox>();
      sb->record = r;
      sandboxes_[r.id] = sb;
    }
    for (const TaskRecord& t : tasks) {
      if (sandboxes_.count(t.sandbox_id) == 0) {
        host_.Warn(absl::StrCat("forgetting ", TaskName(t), ": its sandbox ", t.sandbox_id,
                                " has no recorded shim"));
        continue;
      }
      tasks_[TaskKey(t.sandbox_id, t.id, t.exec_id)] = t;
    }
  }
  for (const SandboxRecord& r : sandboxes) {
    std::shared_ptr<Sandbox> sb = FindSandbox(r.id);
    // A shim that is gone usually took its socket file with it: no need to retry then.
    std::string path = r.address;
    if (path.rfind("unix://", 0) == 0) path = path.substr(7);
    std::error_code ec;
    if (!path.empty() && path.front() == '/' && !fs::exists(path, ec)) {
      host_.Warn(absl::StrCat("the shim of sandbox ", r.id, " is gone: its socket ", path,
                              " does not exist"));
      HandleShimLost(sb, nullptr);
      continue;
    }
    absl::StatusOr<std::unique_ptr<ttrpc::TaskClient>> connected =
        ttrpc::TaskClient::Connect(r.address, kRestoreConnectTimeout);
    if (!connected.ok()) {
      host_.Warn(absl::StrCat("cannot reconnect to the shim of sandbox ", r.id, " at ", r.address,
                              ": ", connected.status().message()));
      HandleShimLost(sb, nullptr);
      continue;
    }
    std::shared_ptr<ttrpc::TaskClient> client(std::move(*connected));
    {
      std::lock_guard<std::mutex> op(sb->op_mu);
      sb->log = OpenShimLog(r.id, r.bundle);
      std::lock_guard<std::mutex> lock(mu_);
      sb->client = client;
    }
    int followed = 0, exited = 0;
    for (const TaskRecord& t : TasksOf(r.id)) {
      if (t.status == TaskStatus::kStopped) continue;
      task::StateRequest req;
      req.set_id(t.id);
      req.set_exec_id(t.exec_id);
      absl::StatusOr<task::StateResponse> st = client->State(req, absl::Now() + absl::Seconds(10));
      if (st.ok() && st->status() == containerd::v1::types::STOPPED) {
        std::string at = FormatTimestamp(st->exited_at());
        RecordExit(sb, client.get(), t, st->exit_status(),
                   at.empty() ? FormatRfc3339(absl::Now()) : at, "");
        ++exited;
        continue;
      }
      if (!st.ok() && st.status().code() == absl::StatusCode::kUnavailable &&
          !client->connected()) {
        HandleShimLost(sb, client);
        break;
      }
      if (!st.ok() && st.status().code() == absl::StatusCode::kNotFound) {
        host_.Warn(absl::StrCat("the shim of sandbox ", r.id, " no longer knows ", TaskName(t),
                                ": reporting it exited"));
        RecordExit(sb, nullptr, t, kKilledStatus, FormatRfc3339(absl::Now()), kReasonShimDied);
        ++exited;
        continue;
      }
      if (st.ok()) {
        TaskRecord updated;
        {
          std::lock_guard<std::mutex> lock(mu_);
          TaskRecord& rec = tasks_[TaskKey(t.sandbox_id, t.id, t.exec_id)];
          if (st->status() == containerd::v1::types::RUNNING) rec.status = TaskStatus::kRunning;
          if (st->pid() != 0) rec.pid = st->pid();
          updated = rec;
        }
        (void)PutTask(updated);
      } else {
        host_.Warn(absl::StrCat("State of ", TaskName(t), " in sandbox ", r.id, ": ",
                                st.status().message(), "; following it anyway"));
      }
      Follow(sb, client, t);
      ++followed;
    }
    host_.Info(absl::StrCat("reconnected to the shim of sandbox ", r.id, " at ", r.address,
                            ": following ", followed, " task(s), ", exited,
                            " exited while berthd was down"));
  }
}

// ---- remove_sandbox and tasks ---------------------------------------------------------------

absl::Status RuncRuntime::RemoveSandbox(const std::string& sandbox_id) {
  std::shared_ptr<Sandbox> sb = FindSandbox(sandbox_id);
  if (!sb) return ForgetSandbox(sandbox_id);  // idempotent
  std::lock_guard<std::mutex> op(sb->op_mu);
  std::vector<TaskRecord> tasks = TasksOf(sandbox_id);
  std::vector<std::string> running;
  for (const TaskRecord& t : tasks) {
    if (t.status == TaskStatus::kRunning) {
      running.push_back(t.exec_id.empty() ? t.id : absl::StrCat(t.id, " (exec ", t.exec_id, ")"));
    }
  }
  if (!running.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "sandbox ", sandbox_id, " still has running tasks: ", absl::StrJoin(running, ", "),
        "; kill and delete them first"));
  }
  std::shared_ptr<ttrpc::TaskClient> client;
  {
    std::lock_guard<std::mutex> lock(mu_);
    client = sb->client;
  }
  if (client && client->connected()) {
    // Execs first, then their containers.
    std::stable_sort(tasks.begin(), tasks.end(), [](const TaskRecord& a, const TaskRecord& b) {
      return !a.exec_id.empty() && b.exec_id.empty();
    });
    for (const TaskRecord& t : tasks) {
      task::DeleteRequest del;
      del.set_id(t.id);
      del.set_exec_id(t.exec_id);
      auto r = client->Delete(del, absl::Now() + absl::Seconds(30));
      if (!r.ok() && r.status().code() != absl::StatusCode::kNotFound) {
        return absl::Status(r.status().code(),
                            absl::StrCat("removing sandbox ", sandbox_id, ": deleting ",
                                         TaskName(t), " failed: ", r.status().message()));
      }
    }
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    sb->removing = true;
  }
  if (client && client->connected()) {
    task::ShutdownRequest down;
    down.set_id(sandbox_id);
    down.set_now(true);
    auto r = client->Shutdown(down, absl::Now() + absl::Seconds(10));
    // The shim may exit before its answer is flushed.
    if (!r.ok() && r.status().code() != absl::StatusCode::kUnavailable) {
      host_.Warn(absl::StrCat("shutting down the shim of sandbox ", sandbox_id, ": ",
                              r.status().message()));
    }
  }
  if (client) client->Close();
  sb->log.reset();
  {
    std::lock_guard<std::mutex> lock(mu_);
    sb->client.reset();
    sandboxes_.erase(sandbox_id);
    for (auto it = tasks_.lower_bound(TaskPrefix(sandbox_id));
         it != tasks_.end() && it->first.rfind(TaskPrefix(sandbox_id), 0) == 0;) {
      it = tasks_.erase(it);
    }
  }
  host_.Info(absl::StrCat("removed sandbox ", sandbox_id));
  return ForgetSandbox(sandbox_id);
}

std::string RuncRuntime::TasksJson() {
  nlohmann::json tasks = nlohmann::json::array();
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [key, t] : tasks_) tasks.push_back(t.ToJson(false));
  return nlohmann::json({{"tasks", tasks}}).dump();
}

// ---- records --------------------------------------------------------------------------------

std::shared_ptr<RuncRuntime::Sandbox> RuncRuntime::FindSandbox(const std::string& sandbox_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = sandboxes_.find(sandbox_id);
  return it == sandboxes_.end() ? nullptr : it->second;
}

std::vector<TaskRecord> RuncRuntime::TasksOf(const std::string& sandbox_id) {
  std::vector<TaskRecord> out;
  const std::string prefix = TaskPrefix(sandbox_id);
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = tasks_.lower_bound(prefix); it != tasks_.end() && it->first.rfind(prefix, 0) == 0;
       ++it) {
    out.push_back(it->second);
  }
  return out;
}

absl::Status RuncRuntime::PutTask(const TaskRecord& t) {
  auto txn = host_.Begin(true);
  if (!txn.ok()) return FromSdk(txn.status());
  sdk::Status s = txn->Put(kBucket, TaskKey(t.sandbox_id, t.id, t.exec_id), t.ToJson(true).dump());
  if (!s.ok()) return FromSdk(s);
  return FromSdk(txn->Commit());
}

absl::Status RuncRuntime::PutSandbox(const SandboxRecord& r) {
  auto txn = host_.Begin(true);
  if (!txn.ok()) return FromSdk(txn.status());
  sdk::Status s = txn->Put(kBucket, SandboxKey(r.id), r.ToJson().dump());
  if (!s.ok()) return FromSdk(s);
  return FromSdk(txn->Commit());
}

absl::Status RuncRuntime::ForgetTasks(const std::string& sandbox_id, const std::string& id,
                                      const std::string& exec_id, bool with_execs) {
  std::vector<std::string> keys;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const std::string prefix =
        with_execs ? TaskKey(sandbox_id, id, "") : TaskKey(sandbox_id, id, exec_id);
    for (auto it = tasks_.lower_bound(prefix);
         it != tasks_.end() &&
         (with_execs ? it->first.rfind(prefix, 0) == 0 : it->first == prefix);) {
      keys.push_back(it->first);
      it = tasks_.erase(it);
    }
  }
  auto txn = host_.Begin(true);
  if (!txn.ok()) return FromSdk(txn.status());
  for (const std::string& k : keys) {
    if (sdk::Status s = txn->Delete(kBucket, k); !s.ok()) return FromSdk(s);
  }
  if (!with_execs && keys.empty()) {
    // Not in memory (never followed): make sure the store has nothing either.
    if (sdk::Status s = txn->Delete(kBucket, TaskKey(sandbox_id, id, exec_id)); !s.ok()) {
      return FromSdk(s);
    }
  }
  return FromSdk(txn->Commit());
}

absl::Status RuncRuntime::ForgetSandbox(const std::string& sandbox_id) {
  auto txn = host_.Begin(true);
  if (!txn.ok()) return FromSdk(txn.status());
  std::vector<std::string> keys;
  sdk::Status s =
      txn->Scan(kBucket, TaskPrefix(sandbox_id), [&](std::string_view k, std::string_view) {
        keys.emplace_back(k);
        return true;
      });
  if (!s.ok()) return FromSdk(s);
  for (const std::string& k : keys) {
    if (s = txn->Delete(kBucket, k); !s.ok()) return FromSdk(s);
  }
  if (s = txn->Delete(kBucket, SandboxKey(sandbox_id)); !s.ok()) return FromSdk(s);
  return FromSdk(txn->Commit());
}

}  // namespace berth::runc
