// SPDX-License-Identifier: Apache-2.0
#include "plugins/runtime-runc/shim/service.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "core/status_macros.h"
#include "plugins/runtime-runc/shim/cgroup_stats.h"
#include "plugins/runtime-runc/shim/exec_sync.h"
#include "plugins/runtime-runc/shim/util.h"
#include "shim/runc/options.pb.h"

namespace berth::shim {

namespace task = containerd::task::v2;
namespace types = containerd::v1::types;
using google::protobuf::Empty;

namespace {

constexpr const char* kTaskService = "containerd.task.v2.Task";
constexpr const char* kShimService = "berth.shim.v1.Shim";
// How long output may stay open after a process exited before the exit is reported anyway.
constexpr std::chrono::milliseconds kDrainGrace{2000};

int PidfdOpen(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

uint32_t ExitStatusOf(int wait_status) {
  if (WIFEXITED(wait_status)) return static_cast<uint32_t>(WEXITSTATUS(wait_status));
  if (WIFSIGNALED(wait_status)) return 128u + static_cast<uint32_t>(WTERMSIG(wait_status));
  return 255;
}

void ToTimestamp(std::chrono::system_clock::time_point t, google::protobuf::Timestamp* out) {
  const int64_t ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  out->set_seconds(ns / 1'000'000'000);
  out->set_nanos(static_cast<int32_t>(ns % 1'000'000'000));
}

std::string ProcessName(const std::string& id, const std::string& exec_id) {
  return exec_id.empty() ? absl::StrCat("container ", id)
                         : absl::StrCat("exec ", exec_id, " of container ", id);
}

absl::StatusOr<pid_t> ReadPidFile(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadWholeFile(path));
  int pid = 0;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(text), &pid) || pid <= 0) {
    return absl::InternalError(absl::StrCat("pid file ", path, " holds no pid: '", text, "'"));
  }
  return pid;
}

// Mounts the snapshotter's mounts on <bundle>/rootfs.
absl::Status MountRootfs(const google::protobuf::RepeatedPtrField<containerd::types::Mount>& mounts,
                         const std::string& target) {
  static const std::map<std::string, std::pair<unsigned long, bool>> kFlags = {
      {"ro", {MS_RDONLY, true}},       {"rw", {MS_RDONLY, false}},
      {"bind", {MS_BIND, true}},       {"rbind", {MS_BIND | MS_REC, true}},
      {"nosuid", {MS_NOSUID, true}},   {"nodev", {MS_NODEV, true}},
      {"noexec", {MS_NOEXEC, true}},   {"relatime", {MS_RELATIME, true}},
      {"noatime", {MS_NOATIME, true}}, {"strictatime", {MS_STRICTATIME, true}},
      {"sync", {MS_SYNCHRONOUS, true}}};
  for (const containerd::types::Mount& m : mounts) {
    unsigned long flags = 0;
    std::vector<std::string> data;
    for (const std::string& opt : m.options()) {
      auto it = kFlags.find(opt);
      if (it == kFlags.end()) {
        data.push_back(opt);
      } else if (it->second.second) {
        flags |= it->second.first;
      } else {
        flags &= ~it->second.first;
      }
    }
    const std::string joined = absl::StrJoin(data, ",");
    const bool bind = (flags & MS_BIND) != 0;
    if (::mount(m.source().c_str(), target.c_str(), bind ? nullptr : m.type().c_str(),
                bind ? (flags & ~static_cast<unsigned long>(MS_RDONLY)) : flags,
                joined.empty() ? nullptr : joined.c_str()) != 0) {
      return core::ErrnoToStatus(
          errno, absl::StrCat("mount ", m.type(), " ", m.source(), " on ", target, " (options ",
                              absl::StrJoin(m.options(), ","), ")"));
    }
    if (bind && (flags & MS_RDONLY) != 0) {
      ::mount(nullptr, target.c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr);
    }
  }
  return absl::OkStatus();
}

absl::Status UnmountRootfs(const std::string& target) {
  for (int i = 0; i < 16; ++i) {  // stacked mounts
    if (::umount2(target.c_str(), 0) != 0) {
      if (errno == EINVAL || errno == ENOENT) return absl::OkStatus();  // not mounted
      if (errno == EBUSY && ::umount2(target.c_str(), MNT_DETACH) == 0) continue;
      return core::ErrnoToStatus(errno, absl::StrCat("unmount ", target));
    }
  }
  return absl::OkStatus();
}

// Registers a typed handler.
template <typename Req, typename Resp>
void Handle(ttrpc::Server* server, const char* service, const char* method,
            std::function<absl::StatusOr<Resp>(const Req&, const ttrpc::CallContext&)> fn) {
  server->Register(service, method,
                   [fn = std::move(fn), service, method](
                       const std::string& payload,
                       const ttrpc::CallContext& ctx) -> absl::StatusOr<std::string> {
                     Req req;
                     if (!req.ParseFromString(payload)) {
                       return absl::InvalidArgumentError(
                           absl::StrCat("malformed ", service, "/", method, " request"));
                     }
                     absl::StatusOr<Resp> resp = fn(req, ctx);
                     if (!resp.ok()) {
                       LogLine(absl::StrCat(method, ": ", resp.status().ToString()));
                       return resp.status();
                     }
                     return resp->SerializeAsString();
                   });
}

}  // namespace

struct ShimService::Process {
  std::string id;
  std::string exec_id;
  std::string name;
  StdioConfig stdio;
  std::string spec_json;  // exec processes
  std::shared_ptr<ProcessIo> io;
  pid_t pid = 0;
  sdk::UniqueFd pidfd;
  types::Status status = types::CREATED;
  bool starting = false;
  bool exited = false;   // the exit is recorded and may be reported
  bool deleted = false;  // removed before it exited (never started)
  uint32_t exit_status = 0;
  std::chrono::system_clock::time_point exited_at;
  bool oom_killed = false;
  uint64_t oom_baseline = 0;
};

struct ShimService::Container {
  std::string id;
  std::string bundle;
  RuntimeConfig runtime;
  bool rootfs_mounted = false;
  CgroupPaths cgroups;
  ProcessRef init;
  std::map<std::string, ProcessRef> execs;
  bool deleting = false;
};

std::string ExitRecordJson(const ExitRecord& r) {
  nlohmann::json j = {{"pid", r.pid},
                      {"exit_status", r.exit_status},
                      {"exited_at", FormatRfc3339Nano(r.exited_at)},
                      {"oom_killed", r.oom_killed}};
  return j.dump() + "\n";
}

absl::StatusOr<ExitRecord> ReadExitRecord(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadWholeFile(path));
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (!j.is_object()) {
    return absl::DataLossError(absl::StrCat("exit record ", path, " is not a JSON object"));
  }
  ExitRecord r;
  r.pid = j.value("pid", 0u);
  r.exit_status = j.value("exit_status", 0u);
  r.oom_killed = j.value("oom_killed", false);
  ASSIGN_OR_RETURN(r.exited_at, ParseRfc3339Nano(j.value("exited_at", std::string())));
  return r;
}

absl::StatusOr<TaskRecord> ReadTaskRecord(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadWholeFile(path));
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (!j.is_object()) {
    return absl::DataLossError(absl::StrCat("task record ", path, " is not a JSON object"));
  }
  TaskRecord r;
  r.bundle = j.value("bundle", std::string());
  r.runtime.binary = j.value("binary", std::string("runc"));
  r.runtime.root = j.value("root", std::string());
  r.runtime.systemd_cgroup = j.value("systemd_cgroup", false);
  r.rootfs_mounted = j.value("rootfs_mounted", false);
  return r;
}

ShimService::ShimService(EventLoop* loop, std::string dir, std::string self_exe)
    : loop_(loop), dir_(std::move(dir)), self_exe_(std::move(self_exe)) {}

ShimService::~ShimService() = default;

std::string ShimService::TempPath(const std::string& what) {
  std::lock_guard<std::mutex> lock(mu_);
  return absl::StrCat(dir_, "/", what, "-", ++counter_);
}

void ShimService::Register(ttrpc::Server* s) {
  Handle<task::CreateTaskRequest, task::CreateTaskResponse>(
      s, kTaskService, "Create", [this](const auto& r, const auto&) { return Create(r); });
  Handle<task::StartRequest, task::StartResponse>(
      s, kTaskService, "Start", [this](const auto& r, const auto&) { return Start(r); });
  Handle<task::StateRequest, task::StateResponse>(
      s, kTaskService, "State", [this](const auto& r, const auto&) { return State(r); });
  Handle<task::KillRequest, Empty>(s, kTaskService, "Kill",
                                   [this](const auto& r, const auto&) { return Kill(r); });
  Handle<task::DeleteRequest, task::DeleteResponse>(
      s, kTaskService, "Delete", [this](const auto& r, const auto&) { return Delete(r); });
  Handle<task::WaitRequest, task::WaitResponse>(
      s, kTaskService, "Wait",
      [this](const auto& r, const ttrpc::CallContext& ctx) { return Wait(r, ctx.deadline); });
  Handle<task::PidsRequest, task::PidsResponse>(
      s, kTaskService, "Pids", [this](const auto& r, const auto&) { return Pids(r); });
  Handle<task::ExecProcessRequest, Empty>(s, kTaskService, "Exec",
                                          [this](const auto& r, const auto&) { return Exec(r); });
  Handle<task::ResizePtyRequest, Empty>(
      s, kTaskService, "ResizePty", [this](const auto& r, const auto&) { return ResizePty(r); });
  Handle<task::CloseIORequest, Empty>(s, kTaskService, "CloseIO",
                                      [this](const auto& r, const auto&) { return CloseIO(r); });
  Handle<task::UpdateTaskRequest, Empty>(s, kTaskService, "Update",
                                         [this](const auto& r, const auto&) { return Update(r); });
  Handle<task::PauseRequest, Empty>(s, kTaskService, "Pause", [this](const auto& r, const auto&) {
    return PauseResume(r.id(), true);
  });
  Handle<task::ResumeRequest, Empty>(s, kTaskService, "Resume", [this](const auto& r, const auto&) {
    return PauseResume(r.id(), false);
  });
  Handle<task::StatsRequest, task::StatsResponse>(
      s, kTaskService, "Stats", [this](const auto& r, const auto&) { return Stats(r); });
  Handle<task::ConnectRequest, task::ConnectResponse>(
      s, kTaskService, "Connect", [this](const auto& r, const auto&) { return Connect(r); });
  Handle<task::ShutdownRequest, Empty>(s, kTaskService, "Shutdown",
                                       [this](const auto& r, const auto&) { return Shutdown(r); });
  Handle<berth::shim::v1::ReopenLogRequest, Empty>(
      s, kShimService, "ReopenLog", [this](const auto& r, const auto&) { return ReopenLog(r); });
  Handle<berth::shim::v1::ExecSyncRequest, berth::shim::v1::ExecSyncResponse>(
      s, kShimService, "ExecSync", [this](const auto& r, const auto&) { return ExecSync(r); });
  Handle<berth::shim::v1::AttachRequest, berth::shim::v1::AttachResponse>(
      s, kShimService, "Attach", [this](const auto& r, const auto&) { return Attach(r); });
  Handle<berth::shim::v1::InfoRequest, berth::shim::v1::InfoResponse>(
      s, kShimService, "Info", [this](const auto& r, const auto&) { return Info(r); });
}

bool ShimService::WaitForShutdown() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [this] { return shutdown_; });
  return containers_.empty();
}

absl::StatusOr<ShimService::ContainerRef> ShimService::FindContainer(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = containers_.find(id);
  if (it == containers_.end() || it->second->init == nullptr) {
    return absl::NotFoundError(absl::StrCat("container ", id, " not found in this shim"));
  }
  return it->second;
}

absl::StatusOr<std::pair<ShimService::ContainerRef, ShimService::ProcessRef>>
ShimService::FindProcess(const std::string& id, const std::string& exec_id) {
  ASSIGN_OR_RETURN(ContainerRef c, FindContainer(id));
  if (exec_id.empty()) return std::make_pair(c, c->init);
  std::lock_guard<std::mutex> lock(mu_);
  auto it = c->execs.find(exec_id);
  if (it == c->execs.end()) {
    return absl::NotFoundError(absl::StrCat("exec ", exec_id, " of container ", id, " not found"));
  }
  return std::make_pair(c, it->second);
}

uint64_t ShimService::ReadOomCount(const Container& c) { return ReadOomKillCount(c.cgroups); }

void ShimService::WatchExit(const ContainerRef& c, const ProcessRef& p, uint64_t since_seq) {
  loop_->OnExit(p->pid, since_seq, [this, c, p](int wait_status) {
    const uint32_t status = ExitStatusOf(wait_status);
    const auto at = std::chrono::system_clock::now();
    loop_->Post([this, c, p, status, at] {
      p->io->OnProcessExit(kDrainGrace, [this, c, p, status, at] { Finalize(c, p, status, at); });
    });
  });
}

void ShimService::Finalize(const ContainerRef& c, const ProcessRef& p, uint32_t exit_status,
                           std::chrono::system_clock::time_point exited_at) {
  ExitRecord record;
  record.pid = static_cast<uint32_t>(p->pid);
  record.exit_status = exit_status;
  record.exited_at = exited_at;
  record.oom_killed = ReadOomCount(*c) > p->oom_baseline;
  const std::string file =
      absl::StrCat(dir_, "/exits/", p->id, p->exec_id.empty() ? "" : ".", p->exec_id);
  bool forgotten;  // deleted meanwhile: nobody will ask for this exit
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = containers_.find(c->id);
    forgotten = p->deleted || it == containers_.end() || it->second != c;
  }
  absl::Status written =
      forgotten ? absl::OkStatus() : WriteFileDurably(file, ExitRecordJson(record));
  if (!written.ok()) {
    LogLine(absl::StrCat("durable exit record of ", p->name, ": ", written.message()));
  }
  LogLine(absl::StrCat(p->name, " (pid ", p->pid, ") exited with status ", exit_status,
                       record.oom_killed ? " (OOM killed)" : ""));
  {
    std::lock_guard<std::mutex> lock(mu_);
    p->exited = true;
    p->exit_status = exit_status;
    p->exited_at = exited_at;
    p->oom_killed = record.oom_killed;
    p->status = types::STOPPED;
    p->pidfd.Reset();
  }
  cv_.notify_all();
  p->io->SendExit(exit_status);
}

absl::StatusOr<task::CreateTaskResponse> ShimService::Create(const task::CreateTaskRequest& req) {
  // The id names files in the shim's directory: no '/', no "." or "..".
  if (req.id().empty() || req.id().find('/') != std::string::npos || req.id() == "." ||
      req.id() == ".." || req.id().size() > 127) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid container id '", req.id(), "': 1 to 127 bytes, no '/', not . or .."));
  }
  if (req.bundle().empty() || req.bundle()[0] != '/') {
    return absl::InvalidArgumentError(absl::StrCat(
        "bundle of container ", req.id(), " must be an absolute path, got '", req.bundle(), "'"));
  }
  auto c = std::make_shared<Container>();
  c->id = req.id();
  c->bundle = req.bundle();
  c->runtime.log_dir = dir_;
  if (req.has_options() && !req.options().value().empty()) {
    containerd::runc::v1::Options options;
    if (!options.ParseFromString(req.options().value())) {
      return absl::InvalidArgumentError(absl::StrCat("options of container ", req.id(), " (",
                                                     req.options().type_url(),
                                                     ") are not containerd.runc.v1.Options"));
    }
    if (!options.binary_name().empty()) c->runtime.binary = options.binary_name();
    c->runtime.root = options.root();
    c->runtime.systemd_cgroup = options.systemd_cgroup();
  }
  ASSIGN_OR_RETURN(std::string binary, ResolveBinary(c->runtime.binary));
  (void)binary;
  RETURN_IF_ERROR(DecideCgroup2Hiding(loop_, &c->runtime));
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (containers_.count(req.id()) > 0) {
      return absl::AlreadyExistsError(absl::StrCat("container ", req.id(), " already exists"));
    }
    containers_[req.id()] = c;  // reserved; init is null until created
  }
  auto unreserve = [&] {
    std::lock_guard<std::mutex> lock(mu_);
    containers_.erase(req.id());
  };

  const std::string rootfs = req.bundle() + "/rootfs";
  if (req.rootfs_size() > 0) {
    absl::Status mounted = MountRootfs(req.rootfs(), rootfs);
    if (!mounted.ok()) {
      (void)UnmountRootfs(rootfs);
      unreserve();
      return absl::Status(mounted.code(),
                          absl::StrCat("rootfs of container ", req.id(), ": ", mounted.message()));
    }
    c->rootfs_mounted = true;
  }
  auto fail = [&](absl::Status s) {
    if (c->rootfs_mounted) (void)UnmountRootfs(rootfs);
    unreserve();
    return s;
  };

  auto p = std::make_shared<Process>();
  p->id = req.id();
  p->name = ProcessName(req.id(), "");
  p->stdio = {req.stdin(), req.stdout(), req.stderr(), req.terminal()};
  absl::StatusOr<std::shared_ptr<ProcessIo>> io =
      ProcessIo::Create(loop_, p->stdio, p->name, TempPath("console") + ".sock");
  if (!io.ok()) return fail(io.status());
  p->io = *io;

  const std::string pid_file = TempPath("pid");
  std::vector<std::string> args = {"create", "--bundle", req.bundle(), "--pid-file", pid_file};
  if (req.terminal()) {
    args.push_back("--console-socket");
    args.push_back(p->io->console_socket_path());
  }
  args.push_back(req.id());
  const uint64_t seq = loop_->ExitSeq();
  absl::StatusOr<std::string> ran = RunRuntime(
      loop_, c->runtime, args, {p->io->child_stdin(), p->io->child_stdout(), p->io->child_stderr()},
      absl::StrCat("create of container ", req.id()));
  absl::Status after = p->io->AfterRuntime();
  if (!ran.ok()) {
    ::unlink(pid_file.c_str());
    return fail(ran.status());
  }
  absl::StatusOr<pid_t> pid = ReadPidFile(pid_file);
  ::unlink(pid_file.c_str());
  if (!after.ok() || !pid.ok()) {
    RuntimeIo none;
    (void)RunRuntime(loop_, c->runtime, {"delete", "--force", req.id()}, none,
                     absl::StrCat("cleanup delete of container ", req.id()));
    return fail(!after.ok() ? after : pid.status());
  }
  p->pid = *pid;
  p->pidfd.Reset(PidfdOpen(p->pid));
  c->cgroups = FindCgroups(p->pid, c->bundle);
  p->oom_baseline = ReadOomKillCount(c->cgroups);

  nlohmann::json record = {{"bundle", c->bundle},
                           {"binary", c->runtime.binary},
                           {"root", c->runtime.root},
                           {"systemd_cgroup", c->runtime.systemd_cgroup},
                           {"rootfs_mounted", c->rootfs_mounted}};
  absl::Status rec =
      WriteFileDurably(absl::StrCat(dir_, "/tasks/", req.id(), ".json"), record.dump());
  if (!rec.ok()) LogLine(absl::StrCat("task record of ", req.id(), ": ", rec.message()));

  p->io->Start();
  {
    std::lock_guard<std::mutex> lock(mu_);
    c->init = p;
  }
  WatchExit(c, p, seq);
  LogLine(absl::StrCat("created ", p->name, " pid ", p->pid, " bundle ", c->bundle));
  task::CreateTaskResponse resp;
  resp.set_pid(static_cast<uint32_t>(p->pid));
  return resp;
}

absl::StatusOr<task::StartResponse> ShimService::Start(const task::StartRequest& req) {
  ASSIGN_OR_RETURN(auto found, FindProcess(req.id(), req.exec_id()));
  const ContainerRef c = found.first;
  const ProcessRef p = found.second;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (p->status != types::CREATED || p->starting) {
      return absl::FailedPreconditionError(
          absl::StrCat(p->name, " cannot be started: it is ",
                       p->starting ? "being started" : types::Status_Name(p->status)));
    }
    p->starting = true;
  }
  absl::Status started;
  if (req.exec_id().empty()) {
    started = RunRuntime(loop_, c->runtime, {"start", req.id()}, RuntimeIo{},
                         absl::StrCat("start of container ", req.id()))
                  .status();
  } else {
    started = StartExec(c, p);
  }
  std::unique_lock<std::mutex> lock(mu_);
  p->starting = false;
  if (!started.ok()) {
    if (!req.exec_id().empty() && !p->exited) {
      // A failed exec never runs: it is stopped (255) and can only be deleted.
      p->exited = true;
      p->status = types::STOPPED;
      p->exit_status = 255;
      p->exited_at = std::chrono::system_clock::now();
      lock.unlock();
      cv_.notify_all();
    }
    return started;
  }
  if (!p->exited) p->status = types::RUNNING;
  task::StartResponse resp;
  resp.set_pid(static_cast<uint32_t>(p->pid));
  return resp;
}

absl::Status ShimService::StartExec(const ContainerRef& c, const ProcessRef& p) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (c->init->exited || c->init->status != types::RUNNING) {
      return absl::FailedPreconditionError(absl::StrCat(
          "cannot start ", p->name, ": the container is ", types::Status_Name(c->init->status)));
    }
  }
  const std::string spec_file = TempPath("exec") + ".json";
  RETURN_IF_ERROR(WriteFileDurably(spec_file, p->spec_json));
  const std::string pid_file = TempPath("pid");
  std::vector<std::string> args = {"exec",    "--detach",   "--process",
                                   spec_file, "--pid-file", pid_file};
  if (p->stdio.terminal) {
    args.push_back("--console-socket");
    args.push_back(p->io->console_socket_path());
  }
  args.push_back(c->id);
  const uint64_t seq = loop_->ExitSeq();
  absl::StatusOr<std::string> ran = RunRuntime(
      loop_, c->runtime, args, {p->io->child_stdin(), p->io->child_stdout(), p->io->child_stderr()},
      absl::StrCat("exec of ", p->name));
  absl::Status after = p->io->AfterRuntime();
  ::unlink(spec_file.c_str());
  if (!ran.ok()) {
    ::unlink(pid_file.c_str());
    return ran.status();
  }
  RETURN_IF_ERROR(after);
  absl::StatusOr<pid_t> pid = ReadPidFile(pid_file);
  ::unlink(pid_file.c_str());
  RETURN_IF_ERROR(pid.status());
  {
    std::lock_guard<std::mutex> lock(mu_);
    p->pid = *pid;
  }
  p->pidfd.Reset(PidfdOpen(p->pid));
  p->oom_baseline = ReadOomCount(*c);
  p->io->Start();
  WatchExit(c, p, seq);
  return absl::OkStatus();
}

absl::StatusOr<task::StateResponse> ShimService::State(const task::StateRequest& req) {
  ASSIGN_OR_RETURN(auto found, FindProcess(req.id(), req.exec_id()));
  const ContainerRef c = found.first;
  const ProcessRef p = found.second;
  std::lock_guard<std::mutex> lock(mu_);
  task::StateResponse resp;
  resp.set_id(req.id());
  resp.set_exec_id(req.exec_id());
  resp.set_bundle(c->bundle);
  resp.set_pid(static_cast<uint32_t>(p->pid));
  resp.set_status(p->exited ? types::STOPPED : p->status);
  resp.set_stdin(p->stdio.stdin_uri);
  resp.set_stdout(p->stdio.stdout_uri);
  resp.set_stderr(p->stdio.stderr_uri);
  resp.set_terminal(p->stdio.terminal);
  if (p->exited) {
    resp.set_exit_status(p->exit_status);
    ToTimestamp(p->exited_at, resp.mutable_exited_at());
  }
  return resp;
}

absl::StatusOr<Empty> ShimService::Kill(const task::KillRequest& req) {
  ASSIGN_OR_RETURN(auto found, FindProcess(req.id(), req.exec_id()));
  const ContainerRef c = found.first;
  const ProcessRef p = found.second;
  const int sig = req.signal() == 0 ? SIGKILL : static_cast<int>(req.signal());
  if (req.exec_id().empty()) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (p->exited && !req.all()) {
        return absl::NotFoundError(absl::StrCat(p->name, ": process already finished"));
      }
    }
    std::vector<std::string> args = {"kill"};
    if (req.all()) args.push_back("--all");
    args.push_back(req.id());
    args.push_back(std::to_string(sig));
    absl::StatusOr<std::string> ran = RunRuntime(loop_, c->runtime, args, RuntimeIo{},
                                                 absl::StrCat("kill of container ", req.id()));
    if (!ran.ok()) {
      std::lock_guard<std::mutex> lock(mu_);
      if (p->exited) return Empty();  // raced with the exit
      return ran.status();
    }
    return Empty();
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (p->exited) return absl::NotFoundError(absl::StrCat(p->name, ": process already finished"));
  if (p->pid == 0) {
    return absl::FailedPreconditionError(absl::StrCat(p->name, " has not been started"));
  }
  // The pidfd pins the process: a recycled pid can never be signalled by mistake.
  int rc = p->pidfd.valid()
               ? static_cast<int>(::syscall(SYS_pidfd_send_signal, p->pidfd.get(), sig, nullptr, 0))
               : ::kill(p->pid, sig);
  if (rc != 0 && errno != ESRCH) {
    return core::ErrnoToStatus(errno, absl::StrCat("signal ", sig, " to ", p->name));
  }
  return Empty();
}

void ShimService::RemoveContainerFiles(const std::string& id) {
  ::unlink(absl::StrCat(dir_, "/exits/", id).c_str());
  ::unlink(absl::StrCat(dir_, "/tasks/", id, ".json").c_str());
}

absl::StatusOr<task::DeleteResponse> ShimService::Delete(const task::DeleteRequest& req) {
  ASSIGN_OR_RETURN(auto found, FindProcess(req.id(), req.exec_id()));
  const ContainerRef c = found.first;
  const ProcessRef p = found.second;
  task::DeleteResponse resp;
  if (!req.exec_id().empty()) {
    std::unique_lock<std::mutex> lock(mu_);
    if (p->status == types::RUNNING && !p->exited) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot delete ", p->name, ": it is still running (kill it first)"));
    }
    if (p->starting) {
      return absl::FailedPreconditionError(absl::StrCat(p->name, " is being started"));
    }
    c->execs.erase(req.exec_id());
    p->deleted = true;
    lock.unlock();
    cv_.notify_all();
    if (p->io) p->io->Shutdown();
    ::unlink(absl::StrCat(dir_, "/exits/", p->id, ".", p->exec_id).c_str());
    resp.set_pid(static_cast<uint32_t>(p->pid));
    resp.set_exit_status(p->exit_status);
    if (p->exited) ToTimestamp(p->exited_at, resp.mutable_exited_at());
    return resp;
  }
  bool created_only;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (c->deleting) {
      return absl::FailedPreconditionError(absl::StrCat(p->name, " is already being deleted"));
    }
    if ((p->status == types::RUNNING || p->status == types::PAUSED) && !p->exited) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot delete ", p->name, ": it is still running (kill it first)"));
    }
    if (p->starting) {
      return absl::FailedPreconditionError(absl::StrCat(p->name, " is being started"));
    }
    c->deleting = true;
    created_only = !p->exited;
  }
  std::vector<std::string> args = {"delete"};
  if (created_only) args.push_back("--force");
  args.push_back(req.id());
  absl::StatusOr<std::string> ran = RunRuntime(loop_, c->runtime, args, RuntimeIo{},
                                               absl::StrCat("delete of container ", req.id()));
  if (!ran.ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    c->deleting = false;
    return ran.status();
  }
  {
    // A created container's init dies with the delete; wait briefly for its exit record.
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::seconds(5), [&] { return p->exited; });
    if (!p->exited) {
      p->exited = true;
      p->exit_status = 128 + SIGKILL;
      p->exited_at = std::chrono::system_clock::now();
      p->status = types::STOPPED;
    }
  }
  std::map<std::string, ProcessRef> execs;
  {
    std::lock_guard<std::mutex> lock(mu_);
    execs.swap(c->execs);
    for (auto& [exec_id, e] : execs) e->deleted = true;
  }
  for (auto& [exec_id, e] : execs) {
    if (e->io) e->io->Shutdown();
    ::unlink(absl::StrCat(dir_, "/exits/", c->id, ".", exec_id).c_str());
  }
  p->io->Shutdown();
  absl::Status unmounted =
      c->rootfs_mounted ? UnmountRootfs(c->bundle + "/rootfs") : absl::OkStatus();
  RemoveContainerFiles(c->id);
  {
    std::lock_guard<std::mutex> lock(mu_);
    containers_.erase(c->id);
  }
  cv_.notify_all();
  if (!unmounted.ok()) {
    LogLine(absl::StrCat("delete of container ", c->id, ": ", unmounted.message()));
  }
  resp.set_pid(static_cast<uint32_t>(p->pid));
  resp.set_exit_status(p->exit_status);
  ToTimestamp(p->exited_at, resp.mutable_exited_at());
  return resp;
}

absl::StatusOr<task::WaitResponse> ShimService::Wait(const task::WaitRequest& req,
                                                     absl::Time deadline) {
  ASSIGN_OR_RETURN(auto found, FindProcess(req.id(), req.exec_id()));
  auto& p = found.second;
  std::unique_lock<std::mutex> lock(mu_);
  auto done = [&] { return p->exited || p->deleted || shutdown_; };
  if (deadline == absl::InfiniteFuture()) {
    cv_.wait(lock, done);
  } else if (!cv_.wait_until(lock, absl::ToChronoTime(deadline), done)) {
    return absl::DeadlineExceededError(absl::StrCat("wait for ", p->name, ": deadline exceeded"));
  }
  if (!p->exited && p->deleted) {
    return absl::NotFoundError(absl::StrCat(p->name, " was deleted before it exited"));
  }
  if (!p->exited) return absl::UnavailableError("the shim is shutting down");
  task::WaitResponse resp;
  resp.set_exit_status(p->exit_status);
  ToTimestamp(p->exited_at, resp.mutable_exited_at());
  return resp;
}

absl::StatusOr<task::PidsResponse> ShimService::Pids(const task::PidsRequest& req) {
  ASSIGN_OR_RETURN(ContainerRef c, FindContainer(req.id()));
  ASSIGN_OR_RETURN(std::string out,
                   RunRuntime(loop_, c->runtime, {"ps", "--format", "json", req.id()}, RuntimeIo{},
                              absl::StrCat("ps of container ", req.id())));
  nlohmann::json pids = nlohmann::json::parse(out, nullptr, false);
  if (!pids.is_array()) {
    return absl::InternalError(
        absl::StrCat("ps of container ", req.id(), ": the runtime printed no JSON array: ", out));
  }
  std::map<pid_t, std::string> exec_ids;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [id, e] : c->execs) {
      if (e->pid > 0) exec_ids[e->pid] = id;
    }
  }
  task::PidsResponse resp;
  for (const auto& v : pids) {
    if (!v.is_number_integer()) continue;
    types::ProcessInfo* info = resp.add_processes();
    const pid_t pid = v.get<pid_t>();
    info->set_pid(static_cast<uint32_t>(pid));
    auto it = exec_ids.find(pid);
    if (it != exec_ids.end()) {
      // containerd.runc.v1.ProcessDetails{exec_id = 1}, encoded by hand.
      std::string details;
      details.push_back(0x0a);
      details.push_back(static_cast<char>(it->second.size()));
      details += it->second;
      info->mutable_info()->set_type_url("containerd.runc.v1.ProcessDetails");
      info->mutable_info()->set_value(details);
    }
  }
  return resp;
}

absl::StatusOr<Empty> ShimService::Exec(const task::ExecProcessRequest& req) {
  ASSIGN_OR_RETURN(ContainerRef c, FindContainer(req.id()));
  if (req.exec_id().empty() || req.exec_id().find('/') != std::string::npos ||
      req.exec_id() == "." || req.exec_id() == "..") {
    return absl::InvalidArgumentError(absl::StrCat("invalid exec id '", req.exec_id(), "'"));
  }
  if (req.exec_id().size() > 127) {
    return absl::InvalidArgumentError("exec id longer than 127 bytes");
  }
  nlohmann::json spec = nlohmann::json::parse(req.spec().value(), nullptr, false);
  if (!spec.is_object() || !spec.contains("args")) {
    return absl::InvalidArgumentError(absl::StrCat("spec of exec ", req.exec_id(),
                                                   " is not an OCI process JSON object with args"));
  }
  auto check = [&]() -> absl::Status {
    if (c->init->exited || c->init->status != types::RUNNING || c->deleting) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot exec in container ", req.id(), ": it is ",
                       types::Status_Name(c->init->exited ? types::STOPPED : c->init->status)));
    }
    if (c->execs.count(req.exec_id()) > 0) {
      return absl::AlreadyExistsError(
          absl::StrCat("exec ", req.exec_id(), " of container ", req.id(), " already exists"));
    }
    return absl::OkStatus();
  };
  {
    std::lock_guard<std::mutex> lock(mu_);
    RETURN_IF_ERROR(check());
  }
  auto p = std::make_shared<Process>();
  p->id = req.id();
  p->exec_id = req.exec_id();
  p->name = ProcessName(req.id(), req.exec_id());
  p->stdio = {req.stdin(), req.stdout(), req.stderr(), req.terminal()};
  spec["terminal"] = req.terminal();
  p->spec_json = spec.dump();
  // The stdio exists from Exec on, so that a client can attach before Start.
  ASSIGN_OR_RETURN(p->io,
                   ProcessIo::Create(loop_, p->stdio, p->name, TempPath("console") + ".sock"));
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(check());
  c->execs[req.exec_id()] = p;
  return Empty();
}

absl::StatusOr<Empty> ShimService::ResizePty(const task::ResizePtyRequest& req) {
  ASSIGN_OR_RETURN(auto found, FindProcess(req.id(), req.exec_id()));
  auto& p = found.second;
  if (!p->io) return absl::FailedPreconditionError(absl::StrCat(p->name, " is not started"));
  RETURN_IF_ERROR(p->io->Resize(req.width(), req.height()));
  return Empty();
}

absl::StatusOr<Empty> ShimService::CloseIO(const task::CloseIORequest& req) {
  ASSIGN_OR_RETURN(auto found, FindProcess(req.id(), req.exec_id()));
  auto& p = found.second;
  if (req.stdin() && p->io) p->io->CloseStdin();
  return Empty();
}

absl::StatusOr<Empty> ShimService::Update(const task::UpdateTaskRequest& req) {
  ASSIGN_OR_RETURN(ContainerRef c, FindContainer(req.id()));
  const std::string file = TempPath("resources") + ".json";
  RETURN_IF_ERROR(WriteFileDurably(file, req.resources().value()));
  absl::StatusOr<std::string> ran =
      RunRuntime(loop_, c->runtime, {"update", "--resources", file, req.id()}, RuntimeIo{},
                 absl::StrCat("update of container ", req.id()));
  ::unlink(file.c_str());
  RETURN_IF_ERROR(ran.status());
  return Empty();
}

absl::StatusOr<Empty> ShimService::PauseResume(const std::string& id, bool pause) {
  ASSIGN_OR_RETURN(ContainerRef c, FindContainer(id));
  RETURN_IF_ERROR(RunRuntime(loop_, c->runtime, {pause ? "pause" : "resume", id}, RuntimeIo{},
                             absl::StrCat(pause ? "pause" : "resume", " of container ", id))
                      .status());
  std::lock_guard<std::mutex> lock(mu_);
  if (!c->init->exited) c->init->status = pause ? types::PAUSED : types::RUNNING;
  return Empty();
}

absl::StatusOr<task::StatsResponse> ShimService::Stats(const task::StatsRequest& req) {
  ASSIGN_OR_RETURN(ContainerRef c, FindContainer(req.id()));
  task::StatsResponse resp;
  ASSIGN_OR_RETURN(*resp.mutable_stats(), ReadCgroupMetrics(c->cgroups, req.id()));
  return resp;
}

absl::StatusOr<task::ConnectResponse> ShimService::Connect(const task::ConnectRequest& req) {
  task::ConnectResponse resp;
  resp.set_shim_pid(static_cast<uint32_t>(::getpid()));
  resp.set_version("berth-shim 1");
  if (!req.id().empty()) {
    absl::StatusOr<ContainerRef> c = FindContainer(req.id());
    if (c.ok()) resp.set_task_pid(static_cast<uint32_t>((*c)->init->pid));
  }
  return resp;
}

absl::StatusOr<Empty> ShimService::Shutdown(const task::ShutdownRequest& req) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!req.now() && !containers_.empty()) return Empty();  // tasks left: keep running
  shutdown_ = true;
  cv_.notify_all();
  return Empty();
}

absl::StatusOr<Empty> ShimService::ReopenLog(const berth::shim::v1::ReopenLogRequest& req) {
  ASSIGN_OR_RETURN(ContainerRef c, FindContainer(req.id()));
  RETURN_IF_ERROR(c->init->io->ReopenLog());
  return Empty();
}

absl::StatusOr<berth::shim::v1::ExecSyncResponse> ShimService::ExecSync(
    const berth::shim::v1::ExecSyncRequest& req) {
  ASSIGN_OR_RETURN(ContainerRef c, FindContainer(req.id()));
  nlohmann::json spec = nlohmann::json::parse(req.spec().value(), nullptr, false);
  if (!spec.is_object() || !spec.contains("args")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ExecSync in container ", req.id(), ": spec is not an OCI process JSON object with args"));
  }
  spec["terminal"] = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (c->init->exited || c->init->status != types::RUNNING) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot ExecSync in container ", req.id(), ": it is ",
                       types::Status_Name(c->init->exited ? types::STOPPED : c->init->status)));
    }
  }
  const std::string base = TempPath("execsync");
  const std::string spec_file = base + ".json";
  const std::string stdin_file = base + ".stdin";
  const std::string log_file = base + ".log";
  RETURN_IF_ERROR(WriteFileDurably(spec_file, spec.dump()));
  if (!req.stdin().empty()) RETURN_IF_ERROR(WriteFileDurably(stdin_file, req.stdin()));
  auto cleanup = [&] {
    ::unlink(spec_file.c_str());
    ::unlink(stdin_file.c_str());
    ::unlink(log_file.c_str());
    ::unlink((base + ".pid").c_str());
  };
  absl::StatusOr<std::vector<std::string>> runtime = RuntimeArgv(c->runtime, log_file);
  if (!runtime.ok()) {
    cleanup();
    return runtime.status();
  }
  // exec-sync (ExecSync: deadline, capture) → exec-wait (subreaper, waits for the process)
  // → runtime exec --detach. A foreground `runc exec` copies the output through its own
  // pipes and only exits when they reach EOF, so a background child holding them would
  // keep it alive past the drain grace; detached, the process inherits the capture pipes
  // and exec-wait exits with the process.
  const std::string pid_file = base + ".pid";
  std::vector<std::string> argv = {self_exe_,
                                   "exec-sync",
                                   std::to_string(req.timeout_ms()),
                                   std::to_string(req.max_output_bytes()),
                                   req.stdin().empty() ? "-" : stdin_file,
                                   "--",
                                   self_exe_,
                                   "exec-wait",
                                   pid_file,
                                   "--"};
  argv.insert(argv.end(), runtime->begin(), runtime->end());
  for (const char* a : {"exec", "--detach", "--pid-file"}) argv.push_back(a);
  argv.push_back(pid_file);
  argv.push_back("--process");
  argv.push_back(spec_file);
  argv.push_back(req.id());

  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    cleanup();
    return core::ErrnoToStatus(errno, "ExecSync result pipe");
  }
  sdk::UniqueFd read_end(fds[0]), write_end(fds[1]);
  SpawnOptions spawn;
  spawn.argv = argv;
  spawn.stdout_fd = write_end.get();
  spawn.stderr_fd = STDERR_FILENO;
  absl::StatusOr<pid_t> pid = loop_->Spawn(spawn);
  write_end.Reset();
  if (!pid.ok()) {
    cleanup();
    return pid.status();
  }
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(read_end.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  const int status = loop_->WaitPid(*pid);
  berth::shim::v1::ExecSyncResponse resp;
  const bool parsed = resp.ParseFromString(out);
  if (parsed && (resp.timed_out() || resp.drain_cut_short())) {
    // The runtime starts the process in a session of its own, out of reach of the helper's
    // process-group kill: kill its group here. Something of the group was running a moment
    // ago, so the group id is still in use and cannot name anything else.
    absl::StatusOr<pid_t> leader = ReadPidFile(pid_file);
    if (leader.ok() && *leader > 1 && ::kill(-*leader, SIGKILL) == 0) {
      LogLine(absl::StrCat("ExecSync in container ", req.id(), ": killed process group ", *leader,
                           resp.timed_out() ? " (deadline)" : " (output held open)"));
    }
  }
  cleanup();
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || !parsed) {
    return absl::InternalError(absl::StrCat("ExecSync in container ", req.id(),
                                            ": the exec-sync helper failed (wait status ", status,
                                            "); see shim.log"));
  }
  return resp;
}

absl::StatusOr<berth::shim::v1::AttachResponse> ShimService::Attach(
    const berth::shim::v1::AttachRequest& req) {
  ASSIGN_OR_RETURN(auto found, FindProcess(req.id(), req.exec_id()));
  auto& p = found.second;
  if (!p->io) return absl::FailedPreconditionError(absl::StrCat(p->name, " is not started"));
  ASSIGN_OR_RETURN(std::string path, p->io->Attach(TempPath("attach") + ".sock"));
  berth::shim::v1::AttachResponse resp;
  resp.set_address(absl::StrCat("unix://", path));
  resp.set_terminal(p->stdio.terminal);
  resp.set_stdin(p->io->has_stdin());
  return resp;
}

absl::StatusOr<berth::shim::v1::InfoResponse> ShimService::Info(
    const berth::shim::v1::InfoRequest& req) {
  ASSIGN_OR_RETURN(auto found, FindProcess(req.id(), req.exec_id()));
  auto& p = found.second;
  std::lock_guard<std::mutex> lock(mu_);
  berth::shim::v1::InfoResponse resp;
  resp.set_pid(static_cast<uint32_t>(p->pid));
  resp.set_exited(p->exited);
  if (p->exited) {
    resp.set_exit_status(p->exit_status);
    ToTimestamp(p->exited_at, resp.mutable_exited_at());
    resp.set_oom_killed(p->oom_killed);
  }
  if (p->io) resp.set_log_path(p->io->log_path());
  return resp;
}

absl::StatusOr<task::DeleteResponse> DeleteDeadShimTask(const std::string& shim_dir,
                                                        const std::string& id,
                                                        const std::string& bundle) {
  TaskRecord record;
  absl::StatusOr<TaskRecord> read = ReadTaskRecord(absl::StrCat(shim_dir, "/tasks/", id, ".json"));
  if (read.ok()) {
    record = *read;
  } else {
    record.bundle = bundle;
    record.rootfs_mounted = true;  // unmounting an unmounted rootfs is harmless
  }
  record.runtime.log_dir = shim_dir;
  // Run the runtime directly: there is no event loop (and no reaper) in this process.
  absl::StatusOr<std::vector<std::string>> argv =
      RuntimeArgv(record.runtime, absl::StrCat(shim_dir, "/delete-", ::getpid(), ".log"));
  if (argv.ok()) {
    argv->push_back("delete");
    argv->push_back("--force");
    argv->push_back(id);
    ExecSyncOptions options;
    options.argv = *argv;
    options.timeout = std::chrono::seconds(30);
    absl::StatusOr<ExecSyncResult> ran = shim::ExecSync(options);
    if (!ran.ok() || ran->exit_code != 0) {
      LogLine(absl::StrCat("delete: runtime delete --force of ", id,
                           " failed: ", ran.ok() ? ran->stderr_data : ran.status().ToString()));
    }
    ::unlink(absl::StrCat(shim_dir, "/delete-", ::getpid(), ".log").c_str());
  } else {
    LogLine(absl::StrCat("delete: ", argv.status().message()));
  }
  const std::string b = bundle.empty() ? record.bundle : bundle;
  if (!b.empty()) {
    absl::Status s = UnmountRootfs(b + "/rootfs");
    if (!s.ok()) LogLine(absl::StrCat("delete: ", s.message()));
  }
  task::DeleteResponse resp;
  absl::StatusOr<ExitRecord> exit = ReadExitRecord(absl::StrCat(shim_dir, "/exits/", id));
  if (exit.ok()) {
    resp.set_pid(exit->pid);
    resp.set_exit_status(exit->exit_status);
    ToTimestamp(exit->exited_at, resp.mutable_exited_at());
  } else {
    resp.set_exit_status(128 + SIGKILL);
    ToTimestamp(std::chrono::system_clock::now(), resp.mutable_exited_at());
  }
  return resp;
}

int ExecWaitMain(int argc, char** argv) {
  // berth-shim exec-wait <pid file> -- <runtime exec --detach --pid-file <pid file> ...>
  if (argc < 5 || std::string(argv[3]) != "--") {
    LogLine("exec-wait: usage: exec-wait <pid file> -- <argv...>");
    return 2;
  }
  // The detached process is reparented to us when the runtime exits.
  if (::prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
    LogLine(absl::StrCat("exec-wait: prctl(PR_SET_CHILD_SUBREAPER): ", strerror(errno)));
    return 2;
  }
  const std::string pid_file = argv[2];
  pid_t runtime = ::fork();
  if (runtime < 0) return 2;
  if (runtime == 0) {
    ::execv(argv[4], argv + 4);
    fprintf(stderr, "exec-wait: exec %s: %s\n", argv[4], strerror(errno));
    _exit(127);
  }
  std::map<pid_t, int> exits;
  auto wait_for = [&](pid_t want) -> int {
    for (;;) {
      auto it = exits.find(want);
      if (it != exits.end()) return it->second;
      int status = 0;
      pid_t pid = ::waitpid(-1, &status, 0);
      if (pid < 0 && errno == EINTR) continue;
      if (pid < 0) return -1;
      exits[pid] = status;
    }
  };
  const int runtime_status = wait_for(runtime);
  if (!WIFEXITED(runtime_status) || WEXITSTATUS(runtime_status) != 0) {
    // The runtime's own error went to our stderr, which the caller captures.
    return WIFEXITED(runtime_status) ? WEXITSTATUS(runtime_status) : 255;
  }
  absl::StatusOr<pid_t> pid = ReadPidFile(pid_file);
  if (!pid.ok()) {
    fprintf(stderr, "exec-wait: %s\n", std::string(pid.status().message()).c_str());
    return 255;
  }
  const int status = wait_for(*pid);
  if (status < 0) return 255;
  return static_cast<int>(ExitStatusOf(status));
}

int ExecSyncHelperMain(int argc, char** argv) {
  // berth-shim exec-sync <timeout_ms> <max_output_bytes> <stdin file|-> -- <argv...>
  if (argc < 7 || std::string(argv[5]) != "--") {
    LogLine("exec-sync: usage: exec-sync <timeout_ms> <max_output> <stdin|-> -- <argv...>");
    return 2;
  }
  ExecSyncOptions options;
  uint64_t timeout_ms = 0, max_output = 0;
  (void)absl::SimpleAtoi(argv[2], &timeout_ms);
  (void)absl::SimpleAtoi(argv[3], &max_output);
  options.timeout = std::chrono::milliseconds(timeout_ms);
  if (max_output > 0) options.max_output_bytes = max_output;
  if (std::string(argv[4]) != "-") {
    absl::StatusOr<std::string> in = ReadWholeFile(argv[4]);
    if (!in.ok()) {
      LogLine(absl::StrCat("exec-sync: ", in.status().message()));
      return 1;
    }
    options.stdin_data = *in;
  }
  for (int i = 6; i < argc; ++i) options.argv.push_back(argv[i]);
  absl::StatusOr<ExecSyncResult> result = shim::ExecSync(options);
  if (!result.ok()) {
    LogLine(absl::StrCat("exec-sync: ", result.status().ToString()));
    return 1;
  }
  berth::shim::v1::ExecSyncResponse resp;
  resp.set_exit_code(result->exit_code);
  resp.set_stdout(std::move(result->stdout_data));
  resp.set_stderr(std::move(result->stderr_data));
  resp.set_timed_out(result->timed_out);
  resp.set_stdout_truncated(result->stdout_truncated);
  resp.set_stderr_truncated(result->stderr_truncated);
  resp.set_drain_cut_short(result->drain_cut_short);
  std::string out = resp.SerializeAsString();
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::write(STDOUT_FILENO, out.data() + done, out.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return 1;
    done += static_cast<size_t>(n);
  }
  return 0;
}

}  // namespace berth::shim
