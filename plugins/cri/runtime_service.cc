// SPDX-License-Identifier: Apache-2.0
#include "plugins/cri/runtime_service.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/mount.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "berth/mount.hpp"
#include "core/status_macros.h"
#include "plugins/cri/cri_service.h"
#include "plugins/cri/netns.h"
#include "plugins/cri/lsm.h"
#include "plugins/cri/oci_spec.h"
#include "plugins/cri/pod_infra.h"
#include "plugins/cri/shim_stats.h"
#include "plugins/cri/stats_convert.h"
#include "plugins/cri/stream_process.h"
#include "plugins/cri/validate.h"

namespace berth::cri {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

constexpr char kRuntimeName[] = "berth";
constexpr char kCriVersion[] = "0.1.0";
constexpr char kRuntimeApiVersion[] = "v1";
constexpr char kBucket[] = "cri";
constexpr char kExitTopic[] = "/runtime/task-exit";

// Fault injection for the crash-consistency tests: berthd kills itself (SIGKILL, as an
// operator's kill -9 would) when it reaches the step named by BERTH_TEST_CRASH_AT. Read once.
void CrashPoint(const char* name) {
  static const std::string target = [] {
    const char* v = std::getenv("BERTH_TEST_CRASH_AT");
    return std::string(v != nullptr ? v : "");
  }();
  if (!target.empty() && target == name) ::kill(::getpid(), SIGKILL);
}

grpc::Status NotFound(const char* rpc, const char* what, const std::string& id) {
  return grpc::Status(grpc::StatusCode::NOT_FOUND,
                      absl::StrCat(rpc, ": ", what, " \"", id, "\" not found"));
}

// The entry of `map` whose key is `id` or, failing that, the only key `id` begins with.
template <typename Map>
typename Map::const_iterator FindByPrefix(const Map& map, const std::string& id) {
  if (id.empty()) return map.end();
  auto it = map.lower_bound(id);
  if (it == map.end() || !absl::StartsWith(it->first, id)) return map.end();
  if (it->first != id) {
    auto next = std::next(it);
    if (next != map.end() && absl::StartsWith(next->first, id)) return map.end();
  }
  return it;
}

grpc::Status ToGrpc(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

absl::Status FromSdk(const sdk::Status& s) {
  return absl::Status(static_cast<absl::StatusCode>(s.code()), s.message());
}

absl::Status Code(int32_t code, const std::string& message) {
  return absl::Status(static_cast<absl::StatusCode>(code), message);
}

absl::Status Prefix(const absl::Status& s, absl::string_view what) {
  if (s.ok()) return s;
  return absl::Status(s.code(), absl::StrCat(what, ": ", s.message()));
}

runtime::v1::ContainerState CriState(ContainerPhase p) {
  switch (p) {
    case ContainerPhase::kCreated: return runtime::v1::CONTAINER_CREATED;
    case ContainerPhase::kRunning: return runtime::v1::CONTAINER_RUNNING;
    case ContainerPhase::kExited:
    case ContainerPhase::kRemoving: return runtime::v1::CONTAINER_EXITED;
    case ContainerPhase::kCreating: return runtime::v1::CONTAINER_UNKNOWN;
  }
  return runtime::v1::CONTAINER_UNKNOWN;
}

runtime::v1::PodSandboxState CriState(SandboxPhase p) {
  return p == SandboxPhase::kReady ? runtime::v1::SANDBOX_READY : runtime::v1::SANDBOX_NOTREADY;
}

// Rootfs and bundle files of a task are unmounted from the bottom of the stack up.
absl::Status UnmountAll(const std::string& target) {
  for (int i = 0; i < 64; ++i) {
    if (::umount2(target.c_str(), MNT_DETACH) != 0) {
      if (errno == EINVAL || errno == ENOENT) return absl::OkStatus();
      return core::ErrnoToStatus(errno, "unmount " + target);
    }
  }
  return absl::InternalError("more than 64 mounts stacked on " + target);
}

absl::StatusOr<std::string> ReadWhole(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return core::ErrnoToStatus(errno, "read " + path);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

absl::Status WriteDurable(const std::string& path, const std::string& content) {
  return WriteFileAtomic(path, content, 0600);
}

std::string ContainerReason(const std::string& task_reason, uint32_t exit_status) {
  if (task_reason == "OOMKilled") return "OOMKilled";
  return exit_status == 0 ? "Completed" : "Error";
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Set-up

RuntimeServiceImpl::RuntimeServiceImpl(CriPlugin* plugin, sdk::Host host,
                                       RuntimeServiceOptions options)
    : plugin_(plugin), host_(host), options_(std::move(options)) {}

RuntimeServiceImpl::~RuntimeServiceImpl() { Stop(); }

absl::Status RuntimeServiceImpl::Start() {
  // What berthd may hand to containers does not change while it runs: read it once.
  oom_score_adj_min_ = OomScoreAdjMin();
  host_capabilities_ = HostCapabilities();
  std::error_code ec;
  fs::create_directories(options_.state_dir + "/bundles", ec);
  if (ec) return absl::InternalError("create " + options_.state_dir + "/bundles: " + ec.message());
  // FIFOs of exec sessions that ended with the previous berthd.
  fs::remove_all(options_.state_dir + "/exec", ec);
  fs::create_directories(options_.state_dir + "/io", ec);
  if (ec) return absl::InternalError("create " + options_.state_dir + "/io: " + ec.message());
  ASSIGN_OR_RETURN(fifo_logs_, FifoLogs::Create());
  streaming::StreamingServerOptions stream_opts;
  stream_opts.address = options_.stream_address;
  stream_opts.port = options_.stream_port;
  stream_opts.tls_cert_file = options_.stream_tls_cert_file;
  stream_opts.tls_key_file = options_.stream_tls_key_file;
  streaming_ = std::make_unique<streaming::StreamingServer>(
      stream_opts,
      [this](const std::string& sandbox_id, int port) {
        return DialSandboxPort(sandbox_id, port);
      },
      [this](const runtime::v1::ExecRequest& req) { return StartStreamedExec(req); },
      [this](const runtime::v1::AttachRequest& req) { return StartStreamedAttach(req); });
  if (absl::Status s = streaming_->Start(); !s.ok()) {
    if (s.code() == absl::StatusCode::kInvalidArgument) {
      return absl::Status(s.code(), absl::StrCat(s.message(),
                                                 " (check stream_tls_cert_file and "
                                                 "stream_tls_key_file of io.berth.cri)"));
    }
    return absl::Status(s.code(), absl::StrCat(s.message(),
                                               " (check stream_address and stream_port of "
                                               "io.berth.cri: is the port taken?)"));
  }
  // Exits are queued from now on, applied once the records are reconciled.
  if (BERTH_HAS_MEMBER(host_.raw(), berth_host, subscribe)) {
    subscription_ = host_.raw()->subscribe(
        host_.raw()->ctx, kExitTopic,
        [](void* user, berth_str, berth_str payload) {
          static_cast<RuntimeServiceImpl*>(user)->OnTaskExit(std::string(sdk::View(payload)));
        },
        this);
  }
  if (subscription_ == 0) return absl::FailedPreconditionError("cannot follow task exits");
  exit_worker_ = std::thread([this] { ExitWorker(); });
  absl::Status s = Reconcile();
  {
    std::lock_guard<std::mutex> lock(exits_mu_);
    exits_paused_ = false;
  }
  exits_cv_.notify_all();
  return s;
}

void RuntimeServiceImpl::Stop() {
  // First: open port-forward sessions dial into sandboxes through this object.
  if (streaming_ != nullptr) streaming_->Stop();
  if (subscription_ != 0) {
    host_.raw()->unsubscribe(host_.raw()->ctx, subscription_);
    subscription_ = 0;
  }
  {
    std::lock_guard<std::mutex> lock(exits_mu_);
    exits_stop_ = true;
  }
  exits_cv_.notify_all();
  if (exit_worker_.joinable()) exit_worker_.join();
  fifo_logs_.reset();  // the copy stops; FIFOs stay for the next berthd
  std::lock_guard<std::mutex> lock(events_mu_);
  for (auto& sub : subscribers_) {
    std::lock_guard<std::mutex> l(sub->mu);
    sub->closed = true;
    sub->cv.notify_all();
  }
  subscribers_.clear();
}

std::string RuntimeServiceImpl::NewId() {
  unsigned char bytes[32];
  size_t got = 0;
  while (got < sizeof(bytes)) {
    ssize_t n = ::getrandom(bytes + got, sizeof(bytes) - got, 0);
    if (n > 0) got += static_cast<size_t>(n);
  }
  static const char kHex[] = "0123456789abcdef";
  std::string id;
  for (unsigned char b : bytes) {
    id.push_back(kHex[b >> 4]);
    id.push_back(kHex[b & 15]);
  }
  return id;
}

std::string RuntimeServiceImpl::BundleDir(const std::string& id) const {
  return options_.state_dir + "/bundles/" + id;
}

std::string RuntimeServiceImpl::SnapshotKey(const std::string& id) { return "berth-cri/" + id; }

absl::StatusOr<TaskClient> RuntimeServiceImpl::Handler(const std::string& name) {
  auto it = options_.handlers.find(name);
  if (it == options_.handlers.end()) {
    std::string known;
    for (const auto& [n, _] : options_.handlers) known += (known.empty() ? "" : ", ") + n;
    return absl::InvalidArgumentError(absl::StrCat(
        "runtime_handler \"", name, "\" is not configured (configured handlers: ", known,
        "; add it under runtimes: in the berthd configuration)"));
  }
  return TaskClient(it->second, name);
}

absl::StatusOr<bool> RuntimeServiceImpl::UsesBerthShim(const std::string& handler) {
  {
    std::lock_guard<std::mutex> lock(shim_kind_mu_);
    auto it = berth_shim_.find(handler);
    if (it != berth_shim_.end()) return it->second;
  }
  ASSIGN_OR_RETURN(TaskClient tasks, Handler(handler));
  ASSIGN_OR_RETURN(bool berth, tasks.UsesBerthShim());
  std::lock_guard<std::mutex> lock(shim_kind_mu_);
  berth_shim_[handler] = berth;
  return berth;
}

// ---------------------------------------------------------------------------------------
// Records

std::shared_ptr<RuntimeServiceImpl::Sandbox> RuntimeServiceImpl::FindSandbox(
    const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = FindByPrefix(sandboxes_, id);
  if (it == sandboxes_.end() || it->second->rec.phase == SandboxPhase::kCreating) return nullptr;
  return it->second;
}

std::shared_ptr<RuntimeServiceImpl::Container> RuntimeServiceImpl::FindContainer(
    const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = FindByPrefix(containers_, id);
  if (it == containers_.end() || it->second->rec.phase == ContainerPhase::kCreating) {
    return nullptr;
  }
  return it->second;
}

std::pair<ContainerRecord, std::string> RuntimeServiceImpl::Current(
    const std::shared_ptr<Container>& c) {
  std::lock_guard<std::mutex> lock(mu_);
  auto sb = sandboxes_.find(c->rec.sandbox_id);
  return {c->rec, sb != sandboxes_.end() ? sb->second->rec.handler : options_.default_handler};
}

absl::Status RuntimeServiceImpl::SaveSandbox(const std::string& id) {
  return Persist("sandbox/" + id, [&]() -> std::optional<std::string> {
    auto it = sandboxes_.find(id);
    if (it == sandboxes_.end()) return std::nullopt;
    return it->second->rec.ToJson().dump();
  });
}

absl::Status RuntimeServiceImpl::SaveContainer(const std::string& id) {
  return Persist("container/" + id, [&]() -> std::optional<std::string> {
    auto it = containers_.find(id);
    if (it == containers_.end()) return std::nullopt;
    return it->second->rec.ToJson().dump();
  });
}

absl::Status RuntimeServiceImpl::Persist(
    const std::string& key, const std::function<std::optional<std::string>()>& current) {
  std::lock_guard<std::mutex> persist(persist_mu_);
  std::optional<std::string> text;
  {
    std::lock_guard<std::mutex> lock(mu_);
    text = current();
  }
  auto txn = host_.Begin(true);
  if (!txn.ok()) return FromSdk(txn.status());
  sdk::Status s = text ? txn->Put(kBucket, key, *text) : txn->Delete(kBucket, key);
  if (!s.ok() && !(s.code() == BERTH_NOT_FOUND && !text)) return FromSdk(s);
  return Prefix(FromSdk(txn->Commit()), "save " + key);
}

// ---------------------------------------------------------------------------------------
// Images, snapshots, bundles

absl::StatusOr<RuntimeServiceImpl::ImageInfo> RuntimeServiceImpl::ResolveImage(
    const std::string& ref) {
  sdk::StringSink out, err;
  int32_t code = options_.images.table->image_status(options_.images.instance, sdk::Str(ref),
                                                     out.get(), err.get());
  if (code == BERTH_NOT_FOUND) {
    return absl::NotFoundError(absl::StrCat("image \"", ref, "\" is not present on the node (",
                                            err.str(), "): pull it first"));
  }
  if (code != BERTH_OK) return Code(code, absl::StrCat("image \"", ref, "\": ", err.str()));
  json j = json::parse(out.str(), nullptr, false);
  if (!j.is_object()) return absl::InternalError("image store returned an unreadable image");
  ImageInfo info;
  info.id = j.value("id", "");
  info.chain_id = j.value("chain_id", "");
  info.config = j.value("config", json::object());
  auto tags = j.value("repo_tags", std::vector<std::string>{});
  auto digests = j.value("repo_digests", std::vector<std::string>{});
  info.digest_ref = digests.empty() ? info.id : digests.front();
  info.name = ref;
  if (absl::StartsWith(ref, "sha256:") || ref.size() < 64) {
    // An id or id prefix: show a name the user knows when there is one.
    if (absl::StartsWith(ref, "sha256:") || info.id.find(ref) != std::string::npos) {
      info.name = !tags.empty() ? tags.front() : info.digest_ref;
    }
  }
  return info;
}

absl::StatusOr<RuntimeServiceImpl::ImageInfo> RuntimeServiceImpl::EnsureSandboxImage() {
  std::lock_guard<std::mutex> lock(image_mu_);
  absl::StatusOr<ImageInfo> info = ResolveImage(options_.sandbox_image);
  if (info.ok() || info.status().code() != absl::StatusCode::kNotFound) {
    if (info.ok()) sandbox_image_id_ = info->id;
    return info;
  }
  host_.Info("pulling sandbox image " + options_.sandbox_image);
  sdk::StringSink id, err;
  int32_t code = options_.images.table->pull(options_.images.instance,
                                             sdk::Str(options_.sandbox_image), sdk::Str(""),
                                             sdk::Str(""), nullptr, nullptr, id.get(), err.get());
  if (code != BERTH_OK) {
    return Code(code, absl::StrCat("sandbox image ", options_.sandbox_image,
                                   " is not present and cannot be pulled: ", err.str(),
                                   " (set sandbox_image of io.berth.cri to an image this node "
                                   "can reach, or import it)"));
  }
  info = ResolveImage(options_.sandbox_image);
  if (info.ok()) sandbox_image_id_ = info->id;
  return info;
}

std::string RuntimeServiceImpl::SandboxImageId() {
  std::lock_guard<std::mutex> lock(image_mu_);
  return sandbox_image_id_;
}

SpecInputs RuntimeServiceImpl::BaseSpecInputs(const std::string& sandbox_id,
                                              const std::string& id,
                                              const std::string& cgroups_path,
                                              const std::string& image_name) const {
  SpecInputs in;
  in.sandbox_id = sandbox_id;
  in.container_id = id;
  in.rootfs_path = BundleDir(id) + "/rootfs";
  in.spec_root_path = "rootfs";  // the rootfs berthd mounted in the bundle
  in.cgroups_path = cgroups_path;
  in.oom_score_adj_min = oom_score_adj_min_;
  in.host_capabilities = host_capabilities_;
  in.image_name = image_name;
  if (!options_.cdi_spec_dirs.empty()) in.cdi_spec_dirs = options_.cdi_spec_dirs;
  return in;
}

absl::StatusOr<sdk::Iface<berth_snapshotter_v1>> RuntimeServiceImpl::SnapshotterById(
    const std::string& id) const {
  if (id.empty() || id == options_.snapshotter.plugin_id) return options_.snapshotter;
  for (const auto& snap : options_.snapshotters) {
    if (snap.plugin_id == id) return snap;
  }
  return absl::FailedPreconditionError(
      "snapshotter " + id + " of this pod is not running (enable its plugin again)");
}

absl::Status RuntimeServiceImpl::EnsureUnpacked(const sdk::Iface<berth_snapshotter_v1>& snap,
                                                const ImageInfo& image) {
  if (image.chain_id.empty()) return absl::OkStatus();
  sdk::StringSink info, err;
  if (snap.table->stat(snap.instance, sdk::Str(image.chain_id), info.get(), err.get()) ==
      BERTH_OK) {
    return absl::OkStatus();
  }
  const std::string options = json{{"snapshotter", snap.plugin_id}, {"unpack_only", true}}.dump();
  sdk::StringSink id, perr;
  int32_t code = options_.images.table->pull(options_.images.instance, sdk::Str(image.id),
                                             sdk::Str(""), sdk::Str(options), nullptr, nullptr,
                                             id.get(), perr.get());
  if (code != BERTH_OK) {
    return Code(code, absl::StrCat("unpack image ", image.name, " into snapshotter ",
                                   snap.plugin_id, ": ", perr.str()));
  }
  return absl::OkStatus();
}

absl::Status RuntimeServiceImpl::MountRootfs(const std::string& snapshotter,
                                             const std::string& key, const ImageInfo& image,
                                             const std::string& target) {
  ASSIGN_OR_RETURN(sdk::Iface<berth_snapshotter_v1> snap, SnapshotterById(snapshotter));
  RETURN_IF_ERROR(EnsureUnpacked(snap, image));
  const std::string& parent = image.chain_id;
  sdk::StringSink prepared, err;
  json labels = {{"io.berth.cri/owner", "cri"}};
  int32_t code = snap.table->prepare(snap.instance, sdk::Str(key), sdk::Str(parent),
                                     sdk::Str(labels.dump()), prepared.get(), err.get());
  std::string mounts = prepared.str();
  if (code == BERTH_ALREADY_EXISTS) {  // a retried step: reuse it
    sdk::StringSink again, err2;
    code = snap.table->mounts(snap.instance, sdk::Str(key), again.get(), err2.get());
    if (code != BERTH_OK) return Code(code, "snapshot " + key + ": " + err2.str());
    mounts = again.str();
  } else if (code != BERTH_OK) {
    return Code(code, absl::StrCat("writable layer ", key, " on ", parent, ": ", err.str()));
  }
  std::error_code ec;
  fs::create_directories(target, ec);
  if (ec) return absl::InternalError("create " + target + ": " + ec.message());
  sdk::Status s = sdk::MountAll(mounts, target);
  if (!s.ok()) return Prefix(FromSdk(s), "mount the writable layer " + key);
  return absl::OkStatus();
}

namespace {

std::string ImageMountKey(const std::string& id, int index) {
  return absl::StrCat("berth-cri/", id, "/image-mount-", index);
}

}  // namespace

absl::Status RuntimeServiceImpl::PrepareImageMounts(const ContainerRecord& rec,
                                                    const std::string& snapshotter,
                                                    std::map<int, std::string>* sources) {
  const runtime::v1::ContainerConfig& config = rec.config;
  ASSIGN_OR_RETURN(sdk::Iface<berth_snapshotter_v1> snap, SnapshotterById(snapshotter));
  for (int i = 0; i < config.mounts_size(); ++i) {
    const runtime::v1::Mount& m = config.mounts(i);
    if (!m.has_image() || m.image().image().empty()) continue;
    const std::string field = absl::StrCat("mounts[", i, "].image");
    // The kubelet pulls an image volume's image before it creates the container.
    absl::StatusOr<ImageInfo> image = ResolveImage(m.image().image());
    if (!image.ok()) return Prefix(image.status(), field);
    RETURN_IF_ERROR(Prefix(EnsureUnpacked(snap, *image), field));
    const std::string key = ImageMountKey(rec.id, i);
    sdk::StringSink out, err;
    json labels = {{"io.berth.cri/owner", "cri"}};
    int32_t code = snap.table->view(snap.instance, sdk::Str(key), sdk::Str(image->chain_id),
                                    sdk::Str(labels.dump()), out.get(), err.get());
    std::string mounts = out.str();
    if (code == BERTH_ALREADY_EXISTS) {
      sdk::StringSink again, err2;
      code = snap.table->mounts(snap.instance, sdk::Str(key), again.get(), err2.get());
      if (code != BERTH_OK) return Code(code, absl::StrCat(field, ": snapshot ", key, ": ", err2.str()));
      mounts = again.str();
    } else if (code != BERTH_OK) {
      return Code(code, absl::StrCat(field, " \"", m.image().image(), "\": ", err.str()));
    }
    const std::string target = absl::StrCat(BundleDir(rec.id), "/image-mounts/", i);
    std::error_code ec;
    fs::create_directories(target, ec);
    if (ec) return absl::InternalError("create " + target + ": " + ec.message());
    if (absl::StatusOr<std::vector<std::string>> mounted = MountPointsUnder(target);
        !mounted.ok() || mounted->empty()) {
      sdk::Status s = sdk::MountAll(mounts, target);
      if (!s.ok()) return Prefix(FromSdk(s), absl::StrCat(field, ": mount the image"));
    }
    (*sources)[i] = target;
  }
  return absl::OkStatus();
}

absl::Status RuntimeServiceImpl::RemoveImageMounts(const ContainerRecord& rec) {
  std::vector<std::string> errors;
  for (int i = 0; i < rec.config.mounts_size(); ++i) {
    const runtime::v1::Mount& m = rec.config.mounts(i);
    if (!m.has_image() || m.image().image().empty()) continue;
    const std::string target = absl::StrCat(BundleDir(rec.id), "/image-mounts/", i);
    std::error_code ec;
    if (fs::exists(target, ec)) {
      if (absl::Status s = UnmountAll(target); !s.ok()) errors.emplace_back(s.message());
    }
    // The key is unique: whichever snapshotter of the pod holds it removes it.
    for (const auto& snap : options_.snapshotters) {
      sdk::StringSink err;
      int32_t code =
          snap.table->remove(snap.instance, sdk::Str(ImageMountKey(rec.id, i)), err.get());
      if (code != BERTH_OK && code != BERTH_NOT_FOUND) {
        errors.push_back(absl::StrCat("remove the image volume snapshot of mounts[", i,
                                      "]: ", err.str()));
      }
    }
  }
  if (errors.empty()) return absl::OkStatus();
  return absl::InternalError(absl::StrJoin(errors, "; "));
}

absl::Status RuntimeServiceImpl::PlaceShim(SandboxRecord* rec, TaskClient* tasks) {
  if (!options_.shim_in_pod_cgroup ||
      !BERTH_HAS_MEMBER(options_.cgroups.table, berth_cgroup_driver_v1, enter)) {
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(uint32_t shim_pid, tasks->ShimPid(rec->id));
  // "shim-<sandbox id>" beside the pod's containers: berth-shim-<id>.scope under systemd.
  sdk::StringSink path, err;
  int32_t code = options_.cgroups.table->cgroup_path(
      options_.cgroups.instance, sdk::Str(rec->config.linux().cgroup_parent()),
      sdk::Str("shim-" + rec->id), path.get(), err.get());
  if (code != BERTH_OK) return Code(code, "the shim's cgroup: " + err.str());
  {
    std::lock_guard<std::mutex> lock(mu_);
    rec->shim_cgroups_path = path.str();
  }
  RETURN_IF_ERROR(SaveSandbox(rec->id));
  sdk::StringSink enter_err;
  code = options_.cgroups.table->enter(options_.cgroups.instance, sdk::Str(rec->shim_cgroups_path),
                                       shim_pid, enter_err.get());
  if (code != BERTH_OK) {
    return Code(code, absl::StrCat("move the pod's shim (pid ", shim_pid, ", handler ",
                                   rec->handler, ") into cgroup ", rec->shim_cgroups_path, ": ",
                                   enter_err.str(),
                                   " (shim_cgroup: none in io.berth.cri leaves shims in "
                                   "berthd's cgroup)"));
  }
  return absl::OkStatus();
}

absl::Status RuntimeServiceImpl::RemoveShimCgroup(const SandboxRecord& rec) {
  if (rec.shim_cgroups_path.empty()) return absl::OkStatus();
  // The shim was asked to exit; its last moments may still hold the cgroup. It is usually
  // gone within a few ms: poll fast first, then back off.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  auto pause = std::chrono::milliseconds(1);
  for (;;) {
    sdk::StringSink err;
    int32_t code = options_.cgroups.table->remove(
        options_.cgroups.instance, sdk::Str(rec.shim_cgroups_path), err.get());
    if (code == BERTH_OK) return absl::OkStatus();
    if ((code != BERTH_FAILED_PRECONDITION && code != BERTH_UNAVAILABLE) ||
        std::chrono::steady_clock::now() >= deadline) {
      return Code(code, "remove the shim's cgroup " + rec.shim_cgroups_path + ": " + err.str());
    }
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::milliseconds(20));
  }
}

absl::Status RuntimeServiceImpl::RemoveBundleLayerCgroup(const std::string& id,
                                                         const std::string& cgroups_path) {
  std::vector<std::string> errors;
  if (fifo_logs_) fifo_logs_->Remove(id, IoDir(id));
  if (absl::Status s = UnmountAndRemoveBundle(id); !s.ok()) errors.emplace_back(s.message());
  // The key is unique: whichever snapshotter holds the writable layer removes it.
  for (const auto& snap : options_.snapshotters) {
    sdk::StringSink err;
    int32_t code = snap.table->remove(snap.instance, sdk::Str(SnapshotKey(id)), err.get());
    if (code != BERTH_OK && code != BERTH_NOT_FOUND) {
      errors.push_back("remove snapshot: " + err.str());
    }
  }
  if (!cgroups_path.empty()) {
    sdk::StringSink cerr;
    int32_t code = options_.cgroups.table->remove(options_.cgroups.instance,
                                                  sdk::Str(cgroups_path), cerr.get());
    if (code != BERTH_OK) errors.push_back("remove cgroup " + cgroups_path + ": " + cerr.str());
  }
  if (errors.empty()) return absl::OkStatus();
  return absl::InternalError(absl::StrJoin(errors, "; "));
}

absl::Status RuntimeServiceImpl::UnmountAndRemoveBundle(const std::string& id) {
  const std::string bundle = BundleDir(id);
  std::error_code ec;
  if (!fs::exists(bundle, ec)) return absl::OkStatus();
  RETURN_IF_ERROR(UnmountAll(bundle + "/rootfs"));
  // Never delete recursively through something still mounted.
  absl::StatusOr<std::vector<std::string>> mounted = MountPointsUnder(bundle);
  if (mounted.ok() && !mounted->empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("bundle ", bundle, " still has ", mounted->front(), " mounted"));
  }
  fs::remove_all(bundle, ec);
  if (ec) return absl::InternalError("remove " + bundle + ": " + ec.message());
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------
// The pod network

bool RuntimeServiceImpl::NetworkAttachable() const {
  return options_.network.table != nullptr &&
         BERTH_HAS_MEMBER(options_.network.table, berth_network_v1, gc);
}

json RuntimeServiceImpl::NetworkRequest(const SandboxRecord& rec) {
  const runtime::v1::PodSandboxConfig& c = rec.config;
  std::string netns = rec.net_ns_path;
  if (netns.empty()) netns = options_.state_dir + "/netns/" + rec.id;
  std::error_code ec;
  if (!fs::exists(netns, ec)) netns.clear();
  json ports = json::array();
  for (const runtime::v1::PortMapping& pm : c.port_mappings()) {
    const char* proto = pm.protocol() == runtime::v1::UDP    ? "udp"
                        : pm.protocol() == runtime::v1::SCTP ? "sctp"
                                                             : "tcp";
    ports.push_back({{"protocol", proto},
                     {"container_port", pm.container_port()},
                     {"host_port", pm.host_port()},
                     {"host_ip", pm.host_ip()}});
  }
  json annotations = json::object();
  for (const auto& [k, v] : c.annotations()) annotations[k] = v;
  std::string cidr;
  {
    std::lock_guard<std::mutex> lock(mu_);
    cidr = pod_cidr_;
  }
  json request = {{"sandbox_id", rec.id},
                  {"netns", netns},
                  {"pod_name", c.metadata().name()},
                  {"pod_namespace", c.metadata().namespace_()},
                  {"pod_uid", c.metadata().uid()},
                  {"port_mappings", ports},
                  {"annotations", annotations},
                  {"pod_cidr", cidr}};
  // The handler's own configuration directory, as recorded when the sandbox was made.
  if (!rec.net_conf_dir.empty()) request["conf_dir"] = rec.net_conf_dir;
  return request;
}

absl::StatusOr<json> RuntimeServiceImpl::AttachNetwork(const SandboxRecord& rec) {
  for (const runtime::v1::PortMapping& pm : rec.config.port_mappings()) {
    if (pm.container_port() <= 0 || pm.container_port() > 65535 || pm.host_port() < 0 ||
        pm.host_port() > 65535) {
      return absl::InvalidArgumentError(absl::StrCat(
          "config.port_mappings: container_port ", pm.container_port(), " / host_port ",
          pm.host_port(), " out of range (1-65535; host_port 0 = none)"));
    }
  }
  const std::string request = NetworkRequest(rec).dump();
  sdk::StringSink out, err;
  int32_t code = options_.network.table->attach(options_.network.instance, sdk::Str(request),
                                                out.get(), err.get());
  if (code == BERTH_FAILED_PRECONDITION && !rec.net_conf_dir.empty()) {
    return Code(code, "NetworkNotReady: the pod network of runtime handler \"" + rec.handler +
                          "\" (cni_conf_dir " + rec.net_conf_dir + ") is not ready (" +
                          err.str() + "); only its pods with host network can run until it is");
  }
  if (code == BERTH_FAILED_PRECONDITION) {
    return Code(code, "NetworkNotReady: the pod network is not ready (" + err.str() +
                          "); only pods with host network can run until it is");
  }
  if (code != BERTH_OK) return Code(code, "pod network: " + err.str());
  json result = json::parse(out.str(), nullptr, false);
  if (!result.is_object()) return absl::InternalError("the network plugin returned no result");
  host_.Debug(absl::StrCat("sandbox ", rec.id, " attached: ", out.str()));
  return result;
}

absl::Status RuntimeServiceImpl::DetachNetwork(const SandboxRecord& rec) {
  if (rec.config.linux().security_context().namespace_options().network() == runtime::v1::NODE ||
      !NetworkAttachable()) {
    return absl::OkStatus();
  }
  const std::string request = NetworkRequest(rec).dump();
  sdk::StringSink err;
  int32_t code =
      options_.network.table->detach(options_.network.instance, sdk::Str(request), err.get());
  if (code != BERTH_OK) return Code(code, "detach the pod network: " + err.str());
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------
// Runtime-level calls

grpc::Status RuntimeServiceImpl::Version(grpc::ServerContext*, const runtime::v1::VersionRequest*,
                                         runtime::v1::VersionResponse* resp) {
  resp->set_version(kCriVersion);
  resp->set_runtime_name(kRuntimeName);
  resp->set_runtime_version(options_.daemon_version);
  resp->set_runtime_api_version(kRuntimeApiVersion);
  return grpc::Status::OK;
}

grpc::Status RuntimeServiceImpl::Status(grpc::ServerContext*,
                                        const runtime::v1::StatusRequest* req,
                                        runtime::v1::StatusResponse* resp) {
  auto add = [resp](const char* type, const sdk::Readiness& r) {
    runtime::v1::RuntimeCondition* c = resp->mutable_status()->add_conditions();
    c->set_type(type);
    c->set_status(r.ready);
    c->set_reason(r.reason);
    c->set_message(r.message);
  };
  add("RuntimeReady", plugin_->RuntimeReadiness());
  const CriPlugin::NetworkConditions net = plugin_->NetworkReadiness();
  add("NetworkReady", net.network);
  if (net.handler_networks) add("RuntimeHandlerNetworksReady", *net.handler_networks);
  for (const auto& [name, _] : options_.handlers) {
    runtime::v1::RuntimeHandler* rh = resp->add_runtime_handlers();
    rh->set_name(name);
    rh->mutable_features()->set_recursive_read_only_mounts(false);
    rh->mutable_features()->set_user_namespaces(false);
  }
  // SupplementalGroupsPolicy Strict is honoured (the image's /etc/group memberships are left
  // out) and ContainerStatus.user reports the groups: the kubelet may admit Strict pods.
  resp->mutable_features()->set_supplemental_groups_policy(true);
  if (req->verbose()) {
    json info = plugin_->Info();
    const LsmState lsm = LsmSupport();
    info["securityProfiles"] = {{"seccomp", true},
                                {"apparmor", lsm.apparmor},
                                {"apparmorDefaultLoaded", lsm.apparmor_default_loaded},
                                {"selinux", lsm.selinux}};
    for (auto& [key, value] : info.items()) (*resp->mutable_info())[key] = value.dump();
  }
  return grpc::Status::OK;
}

grpc::Status RuntimeServiceImpl::RuntimeConfig(grpc::ServerContext*,
                                               const runtime::v1::RuntimeConfigRequest*,
                                               runtime::v1::RuntimeConfigResponse* resp) {
  resp->mutable_linux()->set_cgroup_driver(plugin_->cgroup_driver() == "systemd"
                                               ? runtime::v1::CgroupDriver::SYSTEMD
                                               : runtime::v1::CgroupDriver::CGROUPFS);
  return grpc::Status::OK;
}

grpc::Status RuntimeServiceImpl::UpdateRuntimeConfig(
    grpc::ServerContext*, const runtime::v1::UpdateRuntimeConfigRequest* req,
    runtime::v1::UpdateRuntimeConfigResponse*) {
  const std::string cidr = req->runtime_config().network_config().pod_cidr();
  for (unsigned char c : cidr) {
    if (!(absl::ascii_isxdigit(c) || c == '.' || c == ':' || c == '/' || c == ',')) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "runtime_config.network_config.pod_cidr \"" + absl::CEscape(cidr) +
                              "\" is not a CIDR list");
    }
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (pod_cidr_ == cidr) return grpc::Status::OK;
    pod_cidr_ = cidr;
  }
  std::lock_guard<std::mutex> persist(persist_mu_);
  auto txn = host_.Begin(true);
  if (!txn.ok()) return ToGrpc(FromSdk(txn.status()));
  sdk::Status s = txn->Put(kBucket, "runtime_config", json{{"pod_cidr", cidr}}.dump());
  if (s.ok()) s = txn->Commit();
  if (!s.ok()) return ToGrpc(FromSdk(s));
  host_.Info("pod CIDR is now \"" + cidr + "\"");
  return grpc::Status::OK;
}

// ---------------------------------------------------------------------------------------
// Pod sandboxes

grpc::Status RuntimeServiceImpl::RunPodSandbox(grpc::ServerContext*,
                                               const runtime::v1::RunPodSandboxRequest* req,
                                               runtime::v1::RunPodSandboxResponse* resp) {
  absl::StatusOr<std::string> id = DoRunPodSandbox(*req);
  if (!id.ok()) return ToGrpc(Prefix(id.status(), "RunPodSandbox"));
  resp->set_pod_sandbox_id(*id);
  return grpc::Status::OK;
}

absl::StatusOr<std::string> RuntimeServiceImpl::DoRunPodSandbox(
    const runtime::v1::RunPodSandboxRequest& req) {
  const runtime::v1::PodSandboxConfig& config = req.config();
  RETURN_IF_ERROR(ValidateName(config.metadata().name(), "config.metadata.name"));
  RETURN_IF_ERROR(ValidateName(config.metadata().namespace_(), "config.metadata.namespace"));
  RETURN_IF_ERROR(ValidateName(config.metadata().uid(), "config.metadata.uid"));
  if (config.metadata().attempt() > 1000000) {
    return absl::InvalidArgumentError("config.metadata.attempt is absurdly large");
  }
  RETURN_IF_ERROR(ValidateLabels(config.labels(), "config.labels"));
  RETURN_IF_ERROR(ValidateAnnotations(config.annotations(), "config.annotations"));
  RETURN_IF_ERROR(ValidateLogDirectory(config.log_directory()));
  const std::string handler =
      req.runtime_handler().empty() ? options_.default_handler : req.runtime_handler();
  ASSIGN_OR_RETURN(TaskClient tasks, Handler(handler));

  auto sb = std::make_shared<Sandbox>();
  sb->rec.id = NewId();
  sb->rec.name = SandboxName(config.metadata());
  sb->rec.handler = handler;
  sb->rec.config = config;
  sb->rec.phase = SandboxPhase::kCreating;
  sb->rec.created_at = NowNanos();
  sb->rec.image_ref = options_.sandbox_image;
  sb->rec.log_directory = config.log_directory();
  if (auto dir = options_.handler_cni_conf_dirs.find(handler);
      dir != options_.handler_cni_conf_dirs.end()) {
    sb->rec.net_conf_dir = dir->second;
  }
  sb->rec.snapshotter = options_.snapshotter.plugin_id;
  if (auto snap = options_.handler_snapshotters.find(handler);
      snap != options_.handler_snapshotters.end()) {
    sb->rec.snapshotter = snap->second;
  }
  std::unique_lock<std::mutex> op(sb->op);
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto held = sandbox_names_.find(sb->rec.name);
    if (held != sandbox_names_.end()) {
      return absl::AlreadyExistsError(absl::StrCat(
          "pod sandbox name \"", sb->rec.name, "\" is reserved by sandbox ", held->second,
          " (remove it first, or use another attempt number)"));
    }
    sandbox_names_[sb->rec.name] = sb->rec.id;
    sandboxes_[sb->rec.id] = sb;
  }
  absl::Status built = SaveSandbox(sb->rec.id);
  CrashPoint("run-sandbox:after-record");
  if (built.ok()) built = BuildSandbox(sb.get(), &tasks);
  if (!built.ok()) {
    // Whatever was made is undone, also when the kubelet gave up waiting.
    SandboxRecord rec;
    {
      std::lock_guard<std::mutex> lock(mu_);
      rec = sb->rec;
    }
    absl::Status undone = TeardownSandbox(rec);
    if (!undone.ok()) {
      // Keep the record: RemovePodSandbox or the next start finishes the job.
      host_.Error(absl::StrCat("sandbox ", rec.id, ": rolling back a failed RunPodSandbox: ",
                               undone.message()));
      {
        std::lock_guard<std::mutex> lock(mu_);
        sb->rec.phase = SandboxPhase::kRemoving;
      }
      (void)SaveSandbox(rec.id);
      return Prefix(built, absl::StrCat("sandbox ", rec.id, " (left to be removed: ",
                                        undone.message(), ")"));
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      sandboxes_.erase(rec.id);
      sandbox_names_.erase(rec.name);
    }
    (void)SaveSandbox(rec.id);
    return built;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    sb->rec.phase = SandboxPhase::kReady;
  }
  RETURN_IF_ERROR(SaveSandbox(sb->rec.id));
  host_.Info(absl::StrCat("sandbox ", sb->rec.id, " (", sb->rec.name, ") is ready, pause pid ",
                          sb->rec.pid));
  Emit(runtime::v1::CONTAINER_CREATED_EVENT, sb->rec.id, sb->rec.id);
  Emit(runtime::v1::CONTAINER_STARTED_EVENT, sb->rec.id, sb->rec.id);
  return sb->rec.id;
}

// Every step records what it made before the next one starts; a failure returns and the
// caller tears down from the record.
absl::Status RuntimeServiceImpl::BuildSandbox(Sandbox* sb, TaskClient* tasks) {
  SandboxRecord& rec = sb->rec;  // only this thread writes it while kCreating
  const runtime::v1::PodSandboxConfig& config = rec.config;
  ASSIGN_OR_RETURN(ImageInfo pause, EnsureSandboxImage());
  {
    std::lock_guard<std::mutex> lock(mu_);
    rec.image_id = pause.id;
  }
  // The pause container's cgroup.
  sdk::StringSink path, err;
  int32_t code = options_.cgroups.table->cgroup_path(
      options_.cgroups.instance, sdk::Str(config.linux().cgroup_parent()), sdk::Str(rec.id),
      path.get(), err.get());
  if (code != BERTH_OK) return Code(code, "config.linux.cgroup_parent: " + err.str());
  {
    std::lock_guard<std::mutex> lock(mu_);
    rec.cgroups_path = path.str();
  }
  RETURN_IF_ERROR(SaveSandbox(rec.id));

  // Pod files, /dev/shm, the network namespace, the log directory.
  PodInfraOptions infra_opts;
  infra_opts.sandbox_id = rec.id;
  infra_opts.state_dir = options_.state_dir;
  ASSIGN_OR_RETURN(PodInfra infra, SetUpPodInfra(config, infra_opts));
  {
    std::lock_guard<std::mutex> lock(mu_);
    rec.sandbox_dir = infra.sandbox_dir;
    rec.hostname = infra.hostname;
    rec.hostname_path = infra.hostname_path;
    rec.hosts_path = infra.hosts_path;
    rec.resolv_conf_path = infra.resolv_conf_path;
    rec.shm_path = infra.shm_path;
    rec.net_ns_path = infra.net_ns_path;
    rec.log_directory = infra.log_directory;
  }
  RETURN_IF_ERROR(SaveSandbox(rec.id));
  CrashPoint("run-sandbox:after-infra");

  // The pod network, in the pinned namespace; then /etc/hosts (and resolv.conf, when the pod
  // asked for no DNS settings of its own) with what the network gave.
  if (!rec.net_ns_path.empty() && NetworkAttachable()) {
    ASSIGN_OR_RETURN(json net, AttachNetwork(rec));
    std::vector<std::string> ips = net.value("ips", std::vector<std::string>{});
    RETURN_IF_ERROR(WriteFileAtomic(rec.hosts_path, RenderHosts(rec.hostname, ips)));
    const json dns = net.value("dns", json::object());
    if (!HasDnsConfig(config.dns_config()) && dns.is_object() &&
        !dns.value("nameservers", std::vector<std::string>{}).empty()) {
      runtime::v1::DNSConfig d;
      for (const std::string& n : dns.value("nameservers", std::vector<std::string>{})) d.add_servers(n);
      for (const std::string& n : dns.value("search", std::vector<std::string>{})) d.add_searches(n);
      for (const std::string& n : dns.value("options", std::vector<std::string>{})) d.add_options(n);
      absl::StatusOr<std::string> text = RenderResolvConf(d);
      if (text.ok()) {
        RETURN_IF_ERROR(WriteFileAtomic(rec.resolv_conf_path, *text));
      } else {
        host_.Warn(absl::StrCat("sandbox ", rec.id, ": the network's DNS settings are not "
                                "usable (", text.status().message(), "); keeping the host's"));
      }
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      rec.pod_ips = ips;
      rec.network = net.value("network", "");
    }
    RETURN_IF_ERROR(SaveSandbox(rec.id));
    CrashPoint("run-sandbox:after-network");
  }

  // The pause container: its rootfs, its spec, its task.
  const std::string bundle = BundleDir(rec.id);
  RETURN_IF_ERROR(MountRootfs(rec.snapshotter, SnapshotKey(rec.id), pause, bundle + "/rootfs"));
  CrashPoint("run-sandbox:after-rootfs");
  SpecInputs in = BaseSpecInputs(rec.id, rec.id, rec.cgroups_path, options_.sandbox_image);
  ApplyPodInfra(infra, &in);
  ASSIGN_OR_RETURN(json spec, BuildSandboxSpec(config, pause.config, in));
  RETURN_IF_ERROR(WriteDurable(bundle + "/config.json", spec.dump()));
  CreateTask task;
  task.id = rec.id;
  task.bundle = bundle;
  ASSIGN_OR_RETURN(uint32_t pid, tasks->Create(rec.id, task));
  CrashPoint("run-sandbox:after-task-create");
  {
    std::lock_guard<std::mutex> lock(mu_);
    rec.task_created = true;
    rec.pid = pid;
  }
  RETURN_IF_ERROR(SaveSandbox(rec.id));
  RETURN_IF_ERROR(PlaceShim(&rec, tasks));
  CrashPoint("run-sandbox:after-shim-cgroup");
  ASSIGN_OR_RETURN(pid, tasks->Start(rec.id, rec.id));
  CrashPoint("run-sandbox:after-task-start");
  {
    std::lock_guard<std::mutex> lock(mu_);
    rec.pid = pid;
  }
  return absl::OkStatus();
}

absl::Status RuntimeServiceImpl::KillAndWait(TaskClient* tasks, const std::string& sandbox_id,
                                             const std::string& id,
                                             const std::shared_ptr<Container>& c) {
  absl::Status killed = tasks->Kill(sandbox_id, id, SIGKILL, /*all=*/true);
  // UNAVAILABLE: the shim's connection broke, as it does when the shim was killed (a kubelet
  // cleaning up a pod's cgroup kills it too); the runtime plugin then reports its tasks
  // exited, which the wait below sees. A shim that is alive but unreachable runs the wait out.
  if (!killed.ok() && killed.code() != absl::StatusCode::kNotFound &&
      killed.code() != absl::StatusCode::kFailedPrecondition &&
      killed.code() != absl::StatusCode::kUnavailable) {
    return Prefix(killed, "kill " + id);
  }
  // The init itself too: `runc kill --all` finds the processes in the container's devices
  // cgroup (cgroup v1), and under the systemd driver the init may not be there. runc starts
  // the scope without its device rules and sets them afterwards; when that scope is the first
  // of its slice to need the devices controller (a pod's pause container), systemd then
  // migrates every process of the slice into the slice's devices cgroup. A best effort:
  // the init may be gone already.
  (void)tasks->Kill(sandbox_id, id, SIGKILL, /*all=*/false);
  // Wait until the runtime reports the task stopped (or gone).
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(options_.kill_wait_seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    if (c) {
      std::unique_lock<std::mutex> lock(mu_);
      if (c->rec.phase == ContainerPhase::kExited || c->rec.phase == ContainerPhase::kRemoving) {
        return absl::OkStatus();
      }
    }
    ASSIGN_OR_RETURN(std::vector<TaskInfo> all,
                     TaskClient::Tasks(options_.handlers.at(tasks->handler())));
    const TaskInfo* task = nullptr;
    for (const TaskInfo& t : all) {
      if (t.sandbox_id == sandbox_id && t.id == id && t.exec_id.empty()) task = &t;
    }
    if (task == nullptr) return absl::OkStatus();
    if (task->status == "stopped") {
      // Its exit event may still be queued (or held back while restarting): apply it now.
      ApplyExit(json{{"sandbox_id", sandbox_id},
                     {"id", id},
                     {"exit_status", task->exit_status},
                     {"exited_at", task->exited_at},
                     {"reason", task->reason}});
      return absl::OkStatus();
    }
    std::unique_lock<std::mutex> lock(mu_);
    exit_cv_.wait_for(lock, std::chrono::milliseconds(50));
  }
  return absl::DeadlineExceededError(absl::StrCat("task ", id, " did not exit ",
                                                  options_.kill_wait_seconds,
                                                  " s after SIGKILL"));
}

absl::Status RuntimeServiceImpl::TeardownSandbox(const SandboxRecord& rec) {
  std::vector<std::string> errors;
  auto note = [&errors](const absl::Status& s) {
    if (!s.ok()) errors.emplace_back(s.message());
  };
  absl::StatusOr<TaskClient> tasks = Handler(rec.handler);
  if (tasks.ok()) {
    absl::Status k = KillAndWait(&*tasks, rec.id, rec.id, nullptr);
    note(k);
    if (k.ok()) {
      absl::Status d = tasks->Delete(rec.id, rec.id);
      if (d.code() != absl::StatusCode::kNotFound) note(Prefix(d, "delete the pause task"));
      absl::Status removed = tasks->RemoveSandbox(rec.id);
      note(Prefix(removed, "stop the pod's shim"));
      if (removed.ok()) note(RemoveShimCgroup(rec));
    }
  } else {
    note(tasks.status());
  }
  note(RemoveBundleLayerCgroup(rec.id, rec.cgroups_path));
  // The network needs the namespace (still pinned) to take its interfaces back.
  note(DetachNetwork(rec));
  PodInfraOptions infra_opts;
  infra_opts.sandbox_id = rec.id;
  infra_opts.state_dir = options_.state_dir;
  note(TearDownPodInfra(infra_opts));
  if (errors.empty()) return absl::OkStatus();
  return absl::InternalError(absl::StrJoin(errors, "; "));
}

grpc::Status RuntimeServiceImpl::StopPodSandbox(grpc::ServerContext*,
                                                const runtime::v1::StopPodSandboxRequest* req,
                                                runtime::v1::StopPodSandboxResponse*) {
  std::shared_ptr<Sandbox> sb = FindSandbox(req->pod_sandbox_id());
  // A sandbox that is gone is stopped.
  if (!sb) return grpc::Status::OK;
  return ToGrpc(Prefix(DoStopPodSandbox(sb), "StopPodSandbox " + req->pod_sandbox_id()));
}

absl::Status RuntimeServiceImpl::DoStopPodSandbox(const std::shared_ptr<Sandbox>& sb) {
  std::lock_guard<std::mutex> op(sb->op);
  SandboxRecord rec;
  std::vector<std::shared_ptr<Container>> members;
  {
    std::lock_guard<std::mutex> lock(mu_);
    rec = sb->rec;
    for (const std::string& cid : sb->containers) {
      auto it = containers_.find(cid);
      if (it != containers_.end()) members.push_back(it->second);
    }
  }
  // Containers first (no grace: the kubelet stopped them already when it could).
  for (const auto& c : members) RETURN_IF_ERROR(DoStopContainer(c, 0));
  ASSIGN_OR_RETURN(TaskClient tasks, Handler(rec.handler));
  RETURN_IF_ERROR(KillAndWait(&tasks, rec.id, rec.id, nullptr));
  if (!rec.infra_stopped) {
    RETURN_IF_ERROR(DetachNetwork(rec));
    PodInfraOptions infra_opts;
    infra_opts.sandbox_id = rec.id;
    infra_opts.state_dir = options_.state_dir;
    RETURN_IF_ERROR(StopPodInfra(infra_opts));
  }
  bool changed = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    changed = sb->rec.phase == SandboxPhase::kReady || !sb->rec.infra_stopped;
    if (sb->rec.phase == SandboxPhase::kReady) sb->rec.phase = SandboxPhase::kNotReady;
    sb->rec.infra_stopped = true;
    sb->rec.pod_ips.clear();  // released: another pod may have them now
  }
  if (changed) {
    RETURN_IF_ERROR(SaveSandbox(rec.id));
    Emit(runtime::v1::CONTAINER_STOPPED_EVENT, rec.id, rec.id);
  }
  return absl::OkStatus();
}

grpc::Status RuntimeServiceImpl::RemovePodSandbox(grpc::ServerContext*,
                                                  const runtime::v1::RemovePodSandboxRequest* req,
                                                  runtime::v1::RemovePodSandboxResponse*) {
  std::shared_ptr<Sandbox> sb = FindSandbox(req->pod_sandbox_id());
  if (!sb) return grpc::Status::OK;
  return ToGrpc(Prefix(DoRemovePodSandbox(sb), "RemovePodSandbox " + req->pod_sandbox_id()));
}

absl::Status RuntimeServiceImpl::DoRemovePodSandbox(const std::shared_ptr<Sandbox>& sb) {
  RETURN_IF_ERROR(DoStopPodSandbox(sb));
  std::lock_guard<std::mutex> op(sb->op);
  std::vector<std::shared_ptr<Container>> members;
  SandboxRecord rec;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (sandboxes_.find(sb->rec.id) == sandboxes_.end()) return absl::OkStatus();  // raced
    for (const std::string& cid : sb->containers) {
      auto it = containers_.find(cid);
      if (it != containers_.end()) members.push_back(it->second);
    }
  }
  for (const auto& c : members) RETURN_IF_ERROR(DoRemoveContainer(c));
  {
    std::lock_guard<std::mutex> lock(mu_);
    sb->rec.phase = SandboxPhase::kRemoving;
    rec = sb->rec;
  }
  RETURN_IF_ERROR(SaveSandbox(rec.id));
  CrashPoint("remove-sandbox:after-mark");
  RETURN_IF_ERROR(TeardownSandbox(rec));
  CrashPoint("remove-sandbox:after-teardown");
  {
    std::lock_guard<std::mutex> lock(mu_);
    sandboxes_.erase(rec.id);
    sandbox_names_.erase(rec.name);
  }
  RETURN_IF_ERROR(SaveSandbox(rec.id));
  host_.Info(absl::StrCat("sandbox ", rec.id, " (", rec.name, ") removed"));
  Emit(runtime::v1::CONTAINER_DELETED_EVENT, rec.id, rec.id);
  return absl::OkStatus();
}

void RuntimeServiceImpl::FillSandbox(const Sandbox& sb, runtime::v1::PodSandbox* out) {
  const SandboxRecord& r = sb.rec;
  out->set_id(r.id);
  *out->mutable_metadata() = r.config.metadata();
  out->set_state(CriState(r.phase));
  out->set_created_at(r.created_at);
  *out->mutable_labels() = r.config.labels();
  *out->mutable_annotations() = r.config.annotations();
  out->set_runtime_handler(r.handler);
}

void RuntimeServiceImpl::FillSandboxStatus(const Sandbox& sb, runtime::v1::PodSandboxStatus* out) {
  const SandboxRecord& r = sb.rec;
  out->set_id(r.id);
  *out->mutable_metadata() = r.config.metadata();
  out->set_state(CriState(r.phase));
  out->set_created_at(r.created_at);
  if (!r.pod_ips.empty()) {
    out->mutable_network()->set_ip(r.pod_ips.front());
    for (size_t i = 1; i < r.pod_ips.size(); ++i) {
      out->mutable_network()->add_additional_ips()->set_ip(r.pod_ips[i]);
    }
  }
  *out->mutable_linux()->mutable_namespaces()->mutable_options() =
      r.config.linux().security_context().namespace_options();
  *out->mutable_labels() = r.config.labels();
  *out->mutable_annotations() = r.config.annotations();
  out->set_runtime_handler(r.handler);
}

grpc::Status RuntimeServiceImpl::PodSandboxStatus(grpc::ServerContext*,
                                                  const runtime::v1::PodSandboxStatusRequest* req,
                                                  runtime::v1::PodSandboxStatusResponse* resp) {
  std::shared_ptr<Sandbox> sb = FindSandbox(req->pod_sandbox_id());
  if (!sb) return NotFound("PodSandboxStatus", "pod sandbox", req->pod_sandbox_id());
  std::lock_guard<std::mutex> lock(mu_);
  FillSandboxStatus(*sb, resp->mutable_status());
  for (const std::string& cid : sb->containers) {
    auto it = containers_.find(cid);
    if (it == containers_.end() || it->second->rec.phase == ContainerPhase::kCreating) continue;
    FillContainerStatus(*it->second, resp->add_containers_statuses());
  }
  resp->set_timestamp(NowNanos());
  if (req->verbose()) {
    const SandboxRecord& r = sb->rec;
    json info = {{"pid", r.pid},
                 {"phase", PhaseName(r.phase)},
                 {"runtimeHandler", r.handler},
                 {"image", r.image_ref},
                 {"imageID", r.image_id},
                 {"cgroupsPath", r.cgroups_path},
                 {"netNamespacePath", r.net_ns_path},
                 {"cniConfDir", r.net_conf_dir},
                 {"network", r.network},
                 {"snapshotter", r.snapshotter},
                 {"sandboxDir", r.sandbox_dir},
                 {"hostname", r.hostname},
                 {"logDirectory", r.log_directory},
                 {"bundle", BundleDir(r.id)},
                 {"snapshotKey", SnapshotKey(r.id)}};
    (*resp->mutable_info())["info"] = info.dump();
  }
  return grpc::Status::OK;
}

grpc::Status RuntimeServiceImpl::ListPodSandbox(grpc::ServerContext*,
                                                const runtime::v1::ListPodSandboxRequest* req,
                                                runtime::v1::ListPodSandboxResponse* resp) {
  const runtime::v1::PodSandboxFilter& f = req->filter();
  std::lock_guard<std::mutex> lock(mu_);
  auto consider = [&](const Sandbox& sb) {
    if (sb.rec.phase == SandboxPhase::kCreating) return;
    if (req->has_filter()) {
      if (f.has_state() && f.state().state() != CriState(sb.rec.phase)) return;
      if (!MatchLabels(f.label_selector(), sb.rec.config.labels())) return;
    }
    FillSandbox(sb, resp->add_items());
  };
  if (req->has_filter() && !f.id().empty()) {
    auto it = FindByPrefix(sandboxes_, f.id());
    if (it != sandboxes_.end()) consider(*it->second);
    return grpc::Status::OK;
  }
  for (const auto& [id, sb] : sandboxes_) consider(*sb);
  return grpc::Status::OK;
}

// ---------------------------------------------------------------------------------------
// Containers

grpc::Status RuntimeServiceImpl::CreateContainer(grpc::ServerContext*,
                                                 const runtime::v1::CreateContainerRequest* req,
                                                 runtime::v1::CreateContainerResponse* resp) {
  absl::StatusOr<std::string> id = DoCreateContainer(*req);
  if (!id.ok()) return ToGrpc(Prefix(id.status(), "CreateContainer"));
  resp->set_container_id(*id);
  return grpc::Status::OK;
}

absl::StatusOr<std::string> RuntimeServiceImpl::DoCreateContainer(
    const runtime::v1::CreateContainerRequest& req) {
  const runtime::v1::ContainerConfig& config = req.config();
  RETURN_IF_ERROR(ValidateName(config.metadata().name(), "config.metadata.name"));
  RETURN_IF_ERROR(ValidateLabels(config.labels(), "config.labels"));
  RETURN_IF_ERROR(ValidateAnnotations(config.annotations(), "config.annotations"));
  if (config.image().image().empty()) {
    return absl::InvalidArgumentError("config.image.image is empty");
  }
  std::shared_ptr<Sandbox> sb = FindSandbox(req.pod_sandbox_id());
  if (!sb) {
    return absl::NotFoundError("pod sandbox \"" + req.pod_sandbox_id() + "\" not found");
  }
  std::lock_guard<std::mutex> sandbox_op(sb->op);
  SandboxRecord sandbox;
  {
    std::lock_guard<std::mutex> lock(mu_);
    sandbox = sb->rec;
  }
  if (sandbox.phase != SandboxPhase::kReady) {
    return absl::FailedPreconditionError(absl::StrCat(
        "pod sandbox ", sandbox.id, " is not ready (", PhaseName(sandbox.phase),
        "): containers are created only in a running sandbox"));
  }
  ASSIGN_OR_RETURN(std::string log_path,
                   ValidateContainerLogPath(sandbox.log_directory, config.log_path()));
  ASSIGN_OR_RETURN(ImageInfo image, ResolveImage(config.image().image()));
  ASSIGN_OR_RETURN(TaskClient tasks, Handler(sandbox.handler));

  auto c = std::make_shared<Container>();
  c->rec.id = NewId();
  c->rec.sandbox_id = sandbox.id;
  c->rec.name = ContainerName(config.metadata());
  c->rec.config = config;
  c->rec.phase = ContainerPhase::kCreating;
  c->rec.created_at = NowNanos();
  c->rec.image_ref = config.image().image();
  c->rec.image_id = image.id;
  c->rec.image_name = image.name;
  c->rec.image_digest = image.digest_ref;
  c->rec.log_path = log_path;
  std::lock_guard<std::mutex> op(c->op);
  const std::string name_key = sandbox.id + "/" + c->rec.name;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto held = container_names_.find(name_key);
    if (held != container_names_.end()) {
      return absl::AlreadyExistsError(absl::StrCat(
          "container name \"", c->rec.name, "\" in sandbox ", sandbox.id,
          " is reserved by container ", held->second,
          " (remove it first, or use another attempt number)"));
    }
    container_names_[name_key] = c->rec.id;
    containers_[c->rec.id] = c;
    sb->containers.insert(c->rec.id);
  }
  absl::Status built = SaveContainer(c->rec.id);
  CrashPoint("create-container:after-record");
  if (built.ok()) built = BuildContainer(sandbox, c.get(), image, &tasks);
  if (!built.ok()) {
    ContainerRecord rec;
    {
      std::lock_guard<std::mutex> lock(mu_);
      rec = c->rec;
    }
    absl::Status undone = TeardownContainer(rec, sandbox.handler);
    if (!undone.ok()) {
      host_.Error(absl::StrCat("container ", rec.id, ": rolling back a failed CreateContainer: ",
                               undone.message()));
      {
        std::lock_guard<std::mutex> lock(mu_);
        c->rec.phase = ContainerPhase::kRemoving;
      }
      (void)SaveContainer(rec.id);
      return Prefix(built, absl::StrCat("container ", rec.id, " (left to be removed: ",
                                        undone.message(), ")"));
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      containers_.erase(rec.id);
      container_names_.erase(name_key);
      sb->containers.erase(rec.id);
    }
    (void)SaveContainer(rec.id);
    return built;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    c->rec.phase = ContainerPhase::kCreated;
  }
  RETURN_IF_ERROR(SaveContainer(c->rec.id));
  Emit(runtime::v1::CONTAINER_CREATED_EVENT, c->rec.id, sandbox.id);
  return c->rec.id;
}

absl::Status RuntimeServiceImpl::BuildContainer(const SandboxRecord& sandbox, Container* c,
                                                const ImageInfo& image, TaskClient* tasks) {
  ContainerRecord& rec = c->rec;
  const runtime::v1::ContainerConfig& config = rec.config;
  ASSIGN_OR_RETURN(int stop_signal, ResolveStopSignal(config, image.config));
  sdk::StringSink path, err;
  int32_t code = options_.cgroups.table->cgroup_path(
      options_.cgroups.instance, sdk::Str(sandbox.config.linux().cgroup_parent()),
      sdk::Str(rec.id), path.get(), err.get());
  if (code != BERTH_OK) return Code(code, "cgroup of the container: " + err.str());
  {
    std::lock_guard<std::mutex> lock(mu_);
    rec.stop_signal = stop_signal;
    rec.cgroups_path = path.str();
  }
  RETURN_IF_ERROR(SaveContainer(rec.id));

  const std::string bundle = BundleDir(rec.id);
  RETURN_IF_ERROR(
      MountRootfs(sandbox.snapshotter, SnapshotKey(rec.id), image, bundle + "/rootfs"));
  CrashPoint("create-container:after-rootfs");
  SpecInputs in = BaseSpecInputs(sandbox.id, rec.id, rec.cgroups_path, image.name);
  in.hostname_path = sandbox.hostname_path;
  in.hosts_path = sandbox.hosts_path;
  in.resolv_conf_path = sandbox.resolv_conf_path;
  in.shm_path = sandbox.shm_path;
  in.net_ns_path = sandbox.net_ns_path;
  const std::string pause_ns = absl::StrCat("/proc/", sandbox.pid, "/ns/");
  in.ipc_ns_path = pause_ns + "ipc";
  in.uts_ns_path = pause_ns + "uts";
  const runtime::v1::NamespaceOption& ns = config.linux().security_context().namespace_options();
  if (ns.pid() == runtime::v1::POD) {
    in.pid_ns_path = pause_ns + "pid";
  } else if (ns.pid() == runtime::v1::TARGET) {
    std::shared_ptr<Container> target = FindContainer(ns.target_id());
    std::lock_guard<std::mutex> lock(mu_);
    if (target && target->rec.sandbox_id == sandbox.id &&
        target->rec.phase == ContainerPhase::kRunning) {
      in.pid_ns_path = absl::StrCat("/proc/", target->rec.pid, "/ns/pid");
    }
  }
  in.image_volumes_dir = bundle + "/volumes";
  ASSIGN_OR_RETURN(std::vector<std::string> volumes, ImageVolumesToMount(config, image.config));
  for (const std::string& v : volumes) {
    std::error_code ec;
    fs::create_directories(in.image_volumes_dir + "/" + ImageVolumeDirName(v), ec);
    if (ec) return absl::InternalError("image volume " + v + ": " + ec.message());
  }
  RETURN_IF_ERROR(PrepareImageMounts(rec, sandbox.snapshotter, &in.image_mount_sources));
  ASSIGN_OR_RETURN(json spec, BuildContainerSpec(sandbox.config, config, image.config, in));
  {
    std::lock_guard<std::mutex> lock(mu_);
    rec.uid = spec["process"]["user"].value("uid", 0u);
    rec.gid = spec["process"]["user"].value("gid", 0u);
    rec.additional_gids =
        spec["process"]["user"].value("additionalGids", std::vector<uint32_t>{});
  }
  RETURN_IF_ERROR(WriteDurable(bundle + "/config.json", spec.dump()));
  CreateTask task;
  task.id = rec.id;
  task.bundle = bundle;
  task.terminal = config.tty();
  ASSIGN_OR_RETURN(bool berth_shim, UsesBerthShim(tasks->handler()));
  if (berth_shim) {
    // berth-shim writes the CRI log itself and serves attach (docs/shim.md §3, §5).
    if (!rec.log_path.empty()) {
      task.stdout_uri = "crilog://" + rec.log_path;
      if (!config.tty()) task.stderr_uri = task.stdout_uri;
    }
    if (config.stdin()) task.stdin_uri = "attach:";
  } else {
    // Another shim v2: FIFOs, and berthd writes the CRI log (fifo_logs.h).
    ASSIGN_OR_RETURN(FifoLogs::Paths fifos, fifo_logs_->Add(rec.id, IoDir(rec.id), rec.log_path,
                                                            config.tty(), config.stdin()));
    task.stdout_uri = fifos.stdout;
    task.stderr_uri = fifos.stderr;
    task.stdin_uri = fifos.stdin;
  }
  ASSIGN_OR_RETURN(uint32_t pid, tasks->Create(sandbox.id, task));
  CrashPoint("create-container:after-task-create");
  {
    std::lock_guard<std::mutex> lock(mu_);
    rec.task_created = true;
    rec.pid = pid;
  }
  return absl::OkStatus();
}

absl::Status RuntimeServiceImpl::TeardownContainer(const ContainerRecord& rec,
                                                   const std::string& handler) {
  std::vector<std::string> errors;
  auto note = [&errors](const absl::Status& s) {
    if (!s.ok()) errors.emplace_back(s.message());
  };
  absl::StatusOr<TaskClient> tasks = Handler(handler);
  if (tasks.ok()) {
    absl::Status k = KillAndWait(&*tasks, rec.sandbox_id, rec.id, nullptr);
    note(k);
    if (k.ok()) {
      absl::Status d = tasks->Delete(rec.sandbox_id, rec.id);
      if (d.code() != absl::StatusCode::kNotFound) note(Prefix(d, "delete the task"));
    }
  } else {
    note(tasks.status());
  }
  note(RemoveImageMounts(rec));
  note(RemoveBundleLayerCgroup(rec.id, rec.cgroups_path));
  if (errors.empty()) return absl::OkStatus();
  return absl::InternalError(absl::StrJoin(errors, "; "));
}

grpc::Status RuntimeServiceImpl::StartContainer(grpc::ServerContext*,
                                                const runtime::v1::StartContainerRequest* req,
                                                runtime::v1::StartContainerResponse*) {
  std::shared_ptr<Container> c = FindContainer(req->container_id());
  if (!c) return NotFound("StartContainer", "container", req->container_id());
  return ToGrpc(Prefix(DoStartContainer(c), "StartContainer " + req->container_id()));
}

absl::Status RuntimeServiceImpl::DoStartContainer(const std::shared_ptr<Container>& c) {
  std::lock_guard<std::mutex> op(c->op);
  ContainerRecord rec;
  std::string handler;
  {
    std::lock_guard<std::mutex> lock(mu_);
    rec = c->rec;
    auto sb = sandboxes_.find(rec.sandbox_id);
    if (sb == sandboxes_.end()) return absl::NotFoundError("its sandbox is gone");
    if (sb->second->rec.phase != SandboxPhase::kReady) {
      return absl::FailedPreconditionError("pod sandbox " + rec.sandbox_id + " is not ready");
    }
    handler = sb->second->rec.handler;
  }
  if (rec.phase != ContainerPhase::kCreated) {
    return absl::FailedPreconditionError(absl::StrCat(
        "container is ", PhaseName(rec.phase), ", not created: only a created container starts"));
  }
  ASSIGN_OR_RETURN(TaskClient tasks, Handler(handler));
  // Taken before the call: a process that exits at once must not finish before it started.
  const int64_t started_at = NowNanos();
  absl::StatusOr<uint32_t> pid = tasks.Start(rec.sandbox_id, rec.id);
  CrashPoint("start-container:after-task-start");
  if (!pid.ok()) {
    // The container cannot run: it is exited with the runtime's error, as the kubelet expects.
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (c->rec.phase == ContainerPhase::kCreated) {
        c->rec.phase = ContainerPhase::kExited;
        c->rec.finished_at = NowNanos();
        c->rec.exit_code = 128;
        c->rec.reason = "StartError";
        c->rec.message = std::string(pid.status().message());
      }
    }
    exit_cv_.notify_all();
    (void)SaveContainer(rec.id);
    return pid.status();
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    c->rec.pid = *pid;
    if (c->rec.phase == ContainerPhase::kCreated) {
      c->rec.phase = ContainerPhase::kRunning;
    }
    if (c->rec.started_at == 0) c->rec.started_at = started_at;
  }
  RETURN_IF_ERROR(SaveContainer(rec.id));
  Emit(runtime::v1::CONTAINER_STARTED_EVENT, rec.id, rec.sandbox_id);
  return absl::OkStatus();
}

grpc::Status RuntimeServiceImpl::StopContainer(grpc::ServerContext*,
                                               const runtime::v1::StopContainerRequest* req,
                                               runtime::v1::StopContainerResponse*) {
  std::shared_ptr<Container> c = FindContainer(req->container_id());
  // A container that is gone is stopped (the kubelet retries stops after removals).
  if (!c) return grpc::Status::OK;
  if (req->timeout() < 0 || req->timeout() > 365ll * 24 * 3600) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "StopContainer: timeout " + std::to_string(req->timeout()) +
                            " s is out of range");
  }
  return ToGrpc(Prefix(DoStopContainer(c, req->timeout()), "StopContainer " + req->container_id()));
}

absl::Status RuntimeServiceImpl::DoStopContainer(const std::shared_ptr<Container>& c,
                                                 int64_t timeout_s) {
  std::lock_guard<std::mutex> op(c->op);
  auto [rec, handler] = Current(c);
  if (rec.phase != ContainerPhase::kRunning) return absl::OkStatus();
  ASSIGN_OR_RETURN(TaskClient tasks, Handler(handler));
  auto exited = [&] {
    return c->rec.phase == ContainerPhase::kExited || c->rec.phase == ContainerPhase::kRemoving;
  };
  if (timeout_s > 0) {
    absl::Status k = tasks.Kill(rec.sandbox_id, rec.id, rec.stop_signal, false);
    if (k.ok()) {
      std::unique_lock<std::mutex> lock(mu_);
      if (exit_cv_.wait_for(lock, std::chrono::seconds(timeout_s), exited)) {
        return absl::OkStatus();
      }
    } else if (k.code() != absl::StatusCode::kNotFound) {
      host_.Warn(absl::StrCat("container ", rec.id, ": stop signal ", rec.stop_signal, ": ",
                              k.message(), "; killing it"));
    }
  }
  RETURN_IF_ERROR(KillAndWait(&tasks, rec.sandbox_id, rec.id, c));
  std::unique_lock<std::mutex> lock(mu_);
  // The exit event follows the runtime's report closely.
  if (!exit_cv_.wait_for(lock, std::chrono::seconds(5), exited)) {
    return absl::DeadlineExceededError("the container was killed but its exit was not reported");
  }
  return absl::OkStatus();
}

grpc::Status RuntimeServiceImpl::RemoveContainer(grpc::ServerContext*,
                                                 const runtime::v1::RemoveContainerRequest* req,
                                                 runtime::v1::RemoveContainerResponse*) {
  std::shared_ptr<Container> c = FindContainer(req->container_id());
  if (!c) return grpc::Status::OK;  // removed already
  return ToGrpc(Prefix(DoRemoveContainer(c), "RemoveContainer " + req->container_id()));
}

absl::Status RuntimeServiceImpl::DoRemoveContainer(const std::shared_ptr<Container>& c) {
  RETURN_IF_ERROR(DoStopContainer(c, 0));
  std::lock_guard<std::mutex> op(c->op);
  ContainerRecord rec;
  std::string handler;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (containers_.find(c->rec.id) == containers_.end()) return absl::OkStatus();  // raced
    c->rec.phase = ContainerPhase::kRemoving;
    rec = c->rec;
    auto sb = sandboxes_.find(rec.sandbox_id);
    if (sb != sandboxes_.end()) handler = sb->second->rec.handler;
  }
  RETURN_IF_ERROR(SaveContainer(rec.id));
  CrashPoint("remove-container:after-mark");
  RETURN_IF_ERROR(TeardownContainer(rec, handler));
  CrashPoint("remove-container:after-teardown");
  {
    std::lock_guard<std::mutex> lock(mu_);
    containers_.erase(rec.id);
    container_names_.erase(rec.sandbox_id + "/" + rec.name);
    auto sb = sandboxes_.find(rec.sandbox_id);
    if (sb != sandboxes_.end()) sb->second->containers.erase(rec.id);
  }
  RETURN_IF_ERROR(SaveContainer(rec.id));
  Emit(runtime::v1::CONTAINER_DELETED_EVENT, rec.id, rec.sandbox_id);
  return absl::OkStatus();
}

void RuntimeServiceImpl::FillContainer(const Container& c, runtime::v1::Container* out) {
  const ContainerRecord& r = c.rec;
  out->set_id(r.id);
  out->set_pod_sandbox_id(r.sandbox_id);
  *out->mutable_metadata() = r.config.metadata();
  out->mutable_image()->set_image(r.image_name);
  out->set_image_ref(r.image_digest);
  out->set_image_id(r.image_id);
  out->set_state(CriState(r.phase));
  out->set_created_at(r.created_at);
  *out->mutable_labels() = r.config.labels();
  *out->mutable_annotations() = r.config.annotations();
}

void RuntimeServiceImpl::FillContainerStatus(const Container& c,
                                             runtime::v1::ContainerStatus* out) {
  const ContainerRecord& r = c.rec;
  out->set_id(r.id);
  *out->mutable_metadata() = r.config.metadata();
  out->set_state(CriState(r.phase));
  out->set_created_at(r.created_at);
  out->set_started_at(r.started_at);
  out->set_finished_at(r.finished_at);
  out->set_exit_code(r.exit_code);
  out->mutable_image()->set_image(r.image_name);
  out->set_image_ref(r.image_digest);
  out->set_image_id(r.image_id);
  out->set_reason(r.reason);
  out->set_message(r.message);
  *out->mutable_labels() = r.config.labels();
  *out->mutable_annotations() = r.config.annotations();
  *out->mutable_mounts() = r.config.mounts();
  out->set_log_path(r.log_path);
  if (r.config.linux().has_resources()) {
    *out->mutable_resources()->mutable_linux() = r.config.linux().resources();
  }
  out->mutable_user()->mutable_linux()->set_uid(r.uid);
  out->mutable_user()->mutable_linux()->set_gid(r.gid);
  for (uint32_t g : r.additional_gids) {
    out->mutable_user()->mutable_linux()->add_supplemental_groups(g);
  }
}

grpc::Status RuntimeServiceImpl::ContainerStatus(grpc::ServerContext*,
                                                 const runtime::v1::ContainerStatusRequest* req,
                                                 runtime::v1::ContainerStatusResponse* resp) {
  std::shared_ptr<Container> c = FindContainer(req->container_id());
  if (!c) return NotFound("ContainerStatus", "container", req->container_id());
  ContainerRecord rec;
  {
    std::lock_guard<std::mutex> lock(mu_);
    FillContainerStatus(*c, resp->mutable_status());
    rec = c->rec;
  }
  if (req->verbose()) {
    json info = {{"pid", rec.pid},
                 {"sandboxID", rec.sandbox_id},
                 {"phase", PhaseName(rec.phase)},
                 {"bundle", BundleDir(rec.id)},
                 {"snapshotKey", SnapshotKey(rec.id)},
                 {"cgroupsPath", rec.cgroups_path},
                 {"stopSignal", rec.stop_signal}};
    absl::StatusOr<std::string> spec = ReadWhole(BundleDir(rec.id) + "/config.json");
    if (spec.ok()) info["runtimeSpec"] = json::parse(*spec, nullptr, false);
    (*resp->mutable_info())["info"] = info.dump();
  }
  return grpc::Status::OK;
}

grpc::Status RuntimeServiceImpl::ListContainers(grpc::ServerContext*,
                                                const runtime::v1::ListContainersRequest* req,
                                                runtime::v1::ListContainersResponse* resp) {
  const runtime::v1::ContainerFilter& f = req->filter();
  std::lock_guard<std::mutex> lock(mu_);
  auto consider = [&](const Container& c) {
    if (c.rec.phase == ContainerPhase::kCreating) return;
    if (req->has_filter()) {
      if (f.has_state() && f.state().state() != CriState(c.rec.phase)) return;
      if (!f.pod_sandbox_id().empty() && !absl::StartsWith(c.rec.sandbox_id, f.pod_sandbox_id())) {
        return;
      }
      if (!MatchLabels(f.label_selector(), c.rec.config.labels())) return;
    }
    FillContainer(c, resp->add_containers());
  };
  if (req->has_filter() && !f.id().empty()) {
    auto it = FindByPrefix(containers_, f.id());
    if (it != containers_.end()) consider(*it->second);
    return grpc::Status::OK;
  }
  if (req->has_filter() && f.pod_sandbox_id().size() == 64) {
    auto sb = sandboxes_.find(f.pod_sandbox_id());
    if (sb == sandboxes_.end()) return grpc::Status::OK;
    for (const std::string& cid : sb->second->containers) {
      auto it = containers_.find(cid);
      if (it != containers_.end()) consider(*it->second);
    }
    return grpc::Status::OK;
  }
  for (const auto& [id, c] : containers_) consider(*c);
  return grpc::Status::OK;
}

grpc::Status RuntimeServiceImpl::UpdateContainerResources(
    grpc::ServerContext*, const runtime::v1::UpdateContainerResourcesRequest* req,
    runtime::v1::UpdateContainerResourcesResponse*) {
  std::shared_ptr<Container> c = FindContainer(req->container_id());
  if (!c) return NotFound("UpdateContainerResources", "container", req->container_id());
  std::lock_guard<std::mutex> op(c->op);
  auto [rec, handler] = Current(c);
  if (rec.phase != ContainerPhase::kCreated && rec.phase != ContainerPhase::kRunning) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        absl::StrCat("UpdateContainerResources: container ", rec.id, " is ",
                                     PhaseName(rec.phase)));
  }
  SpecInputs in;
  absl::StatusOr<json> resources = BuildLinuxResources(req->linux(), in);
  if (!resources.ok()) return ToGrpc(Prefix(resources.status(), "UpdateContainerResources"));
  absl::StatusOr<TaskClient> tasks = Handler(handler);
  if (!tasks.ok()) return ToGrpc(tasks.status());
  absl::Status s = tasks->Update(rec.sandbox_id, rec.id, resources->dump());
  if (!s.ok()) return ToGrpc(Prefix(s, "UpdateContainerResources " + rec.id));
  {
    std::lock_guard<std::mutex> lock(mu_);
    *c->rec.config.mutable_linux()->mutable_resources() = req->linux();
  }
  return ToGrpc(SaveContainer(rec.id));
}

grpc::Status RuntimeServiceImpl::ReopenContainerLog(
    grpc::ServerContext*, const runtime::v1::ReopenContainerLogRequest* req,
    runtime::v1::ReopenContainerLogResponse*) {
  std::shared_ptr<Container> c = FindContainer(req->container_id());
  if (!c) return NotFound("ReopenContainerLog", "container", req->container_id());
  auto [rec, handler] = Current(c);
  if (rec.phase != ContainerPhase::kRunning) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        "ReopenContainerLog: container " + rec.id + " is not running");
  }
  if (rec.log_path.empty()) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        "ReopenContainerLog: container " + rec.id + " has no log file");
  }
  if (fifo_logs_ && fifo_logs_->Has(rec.id)) {
    return ToGrpc(Prefix(fifo_logs_->Reopen(rec.id), "ReopenContainerLog " + rec.id));
  }
  absl::StatusOr<TaskClient> tasks = Handler(handler);
  if (!tasks.ok()) return ToGrpc(tasks.status());
  return ToGrpc(Prefix(tasks->ReopenLog(rec.sandbox_id, rec.id), "ReopenContainerLog " + rec.id));
}

// ---------------------------------------------------------------------------------------
// Streaming

namespace {

// The checks the streaming library makes before a token is issued (kubernetes-streaming.md
// §2.1), in its words.
grpc::Status CheckStdioFlags(const char* rpc, bool tty, bool in, bool out, bool err) {
  if (tty && err) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat(rpc, ": tty and stderr cannot both be true"));
  }
  if (!in && !out && !err) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat(rpc, ": one of stdin, stdout, or stderr must be set"));
  }
  return grpc::Status::OK;
}

}  // namespace

grpc::Status RuntimeServiceImpl::StreamableContainer(const char* rpc, const std::string& id,
                                                 bool tty, bool in, bool out, bool err,
                                                 ContainerRecord* rec) {
  if (id.empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat(rpc, ": container_id is empty"));
  }
  if (grpc::Status s = CheckStdioFlags(rpc, tty, in, out, err); !s.ok()) return s;
  std::shared_ptr<Container> c = FindContainer(id);
  if (!c) return NotFound(rpc, "container", id);
  *rec = Current(c).first;
  if (rec->phase != ContainerPhase::kRunning) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        absl::StrCat(rpc, ": container ", rec->id, " is ",
                                     PhaseName(rec->phase), ", not running"));
  }
  if (streaming_ == nullptr) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        absl::StrCat(rpc, ": the streaming server is not running"));
  }
  return grpc::Status::OK;
}

grpc::Status RuntimeServiceImpl::Exec(grpc::ServerContext*, const runtime::v1::ExecRequest* req,
                                      runtime::v1::ExecResponse* resp) {
  if (!req->container_id().empty() && req->cmd().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "Exec: cmd is empty");
  }
  ContainerRecord rec;
  if (grpc::Status s = StreamableContainer("Exec", req->container_id(), req->tty(), req->stdin(),
                                           req->stdout(), req->stderr(), &rec);
      !s.ok()) {
    return s;
  }
  runtime::v1::ExecRequest stored = *req;
  stored.set_container_id(rec.id);  // the full ID, also when a prefix was given
  absl::StatusOr<std::string> url = streaming_->ExecUrl(stored);
  if (!url.ok()) return ToGrpc(Prefix(url.status(), "Exec in " + rec.id));
  resp->set_url(*url);
  return grpc::Status::OK;
}

grpc::Status RuntimeServiceImpl::Attach(grpc::ServerContext*,
                                        const runtime::v1::AttachRequest* req,
                                        runtime::v1::AttachResponse* resp) {
  ContainerRecord rec;
  if (grpc::Status s = StreamableContainer("Attach", req->container_id(), req->tty(),
                                           req->stdin(), req->stdout(), req->stderr(), &rec);
      !s.ok()) {
    return s;
  }
  if (req->tty() != rec.config.tty()) {
    return grpc::Status(
        grpc::StatusCode::INVALID_ARGUMENT,
        absl::StrCat("Attach: tty is ", req->tty() ? "true" : "false", " but container ", rec.id,
                     " was created with tty ", rec.config.tty() ? "true" : "false",
                     " (attach must match the container's terminal)"));
  }
  runtime::v1::AttachRequest stored = *req;
  stored.set_container_id(rec.id);
  absl::StatusOr<std::string> url = streaming_->AttachUrl(stored);
  if (!url.ok()) return ToGrpc(Prefix(url.status(), "Attach to " + rec.id));
  resp->set_url(*url);
  return grpc::Status::OK;
}

absl::StatusOr<ExecStart> RuntimeServiceImpl::NewExecStart(const ContainerRecord& rec,
                                                           const std::string& handler,
                                                           std::string process_json) {
  ASSIGN_OR_RETURN(TaskClient tasks, Handler(handler));
  ExecStart start(std::move(tasks));
  start.sandbox_id = rec.sandbox_id;
  start.container_id = rec.id;
  start.exec_id = NewId().substr(0, 32);
  start.fifo_dir = options_.state_dir + "/exec";
  start.process_json = std::move(process_json);
  start.exit = std::make_shared<ExecExit>();
  // Registered before the start: the exit may come before the session reads anything.
  const std::string key = rec.id + "/" + start.exec_id;
  {
    std::lock_guard<std::mutex> lock(exec_mu_);
    exec_exits_[key] = start.exit;
  }
  start.forget = [this, key] {
    std::lock_guard<std::mutex> lock(exec_mu_);
    exec_exits_.erase(key);
  };
  return start;
}

absl::StatusOr<std::unique_ptr<streaming::StreamedProcess>> RuntimeServiceImpl::StartStreamedExec(
    const runtime::v1::ExecRequest& req) {
  std::shared_ptr<Container> c = FindContainer(req.container_id());
  if (!c) return absl::NotFoundError("container " + req.container_id() + " does not exist");
  auto [rec, handler] = Current(c);
  if (rec.phase != ContainerPhase::kRunning) {
    return absl::FailedPreconditionError(
        absl::StrCat("container ", rec.id, " is ", PhaseName(rec.phase), ", not running"));
  }
  ASSIGN_OR_RETURN(std::string spec_text, ReadWhole(BundleDir(rec.id) + "/config.json"));
  json spec = json::parse(spec_text, nullptr, false);
  std::vector<std::string> cmd(req.cmd().begin(), req.cmd().end());
  ASSIGN_OR_RETURN(json process, BuildExecProcess(spec, cmd, req.tty()));
  if (req.tty()) {
    // As containerd does for a terminal exec: a TERM unless the container sets one.
    json& env = process["env"];
    if (!env.is_array()) env = json::array();
    bool has_term = false;
    for (const json& e : env) {
      if (e.is_string() && absl::StartsWith(e.get<std::string>(), "TERM=")) has_term = true;
    }
    if (!has_term) env.push_back("TERM=xterm");
  }
  ASSIGN_OR_RETURN(ExecStart start, NewExecStart(rec, handler, process.dump()));
  start.tty = req.tty();
  start.stdin = req.stdin();
  start.stdout = req.stdout();
  start.stderr = req.stderr();
  return StartExecProcess(std::move(start));
}

absl::StatusOr<std::unique_ptr<streaming::StreamedProcess>>
RuntimeServiceImpl::StartStreamedAttach(const runtime::v1::AttachRequest& req) {
  std::shared_ptr<Container> c = FindContainer(req.container_id());
  if (!c) return absl::NotFoundError("container " + req.container_id() + " does not exist");
  auto [rec, handler] = Current(c);
  if (rec.phase != ContainerPhase::kRunning) {
    return absl::FailedPreconditionError(
        absl::StrCat("container ", rec.id, " is ", PhaseName(rec.phase), ", not running"));
  }
  absl::StatusOr<TaskClient> tasks = Handler(handler);
  if (!tasks.ok()) return tasks.status();
  AttachStart start(std::move(*tasks));
  start.sandbox_id = rec.sandbox_id;
  start.container_id = rec.id;
  start.stdin = req.stdin() && rec.config.stdin();
  start.stdout = req.stdout();
  start.stderr = req.stderr();
  start.stdin_once = rec.config.stdin_once();
  if (fifo_logs_ != nullptr && fifo_logs_->Has(rec.id)) {
    return StartFifoAttachProcess(std::move(start), fifo_logs_.get(), rec.config.tty());
  }
  return StartAttachProcess(std::move(start));
}

void RuntimeServiceImpl::ApplyExecExit(const std::string& sandbox_id, const std::string& id,
                                       const std::string& exec_id, uint32_t status) {
  std::shared_ptr<ExecExit> exit;
  {
    std::lock_guard<std::mutex> lock(exec_mu_);
    auto it = exec_exits_.find(id + "/" + exec_id);
    if (it == exec_exits_.end()) return;
    exit = it->second;
  }
  if (!exit->Set(static_cast<int>(status))) return;
  // Its session is gone: nobody else deletes the exec from the shim.
  {
    std::lock_guard<std::mutex> lock(exec_mu_);
    exec_exits_.erase(id + "/" + exec_id);
  }
  std::shared_ptr<Container> c = FindContainer(id);
  if (!c) return;  // removed: the shim deleted its execs with it
  absl::StatusOr<TaskClient> tasks = Handler(Current(c).second);
  if (tasks.ok()) (void)tasks->Delete(sandbox_id, id, exec_id);
}

grpc::Status RuntimeServiceImpl::PortForward(grpc::ServerContext*,
                                             const runtime::v1::PortForwardRequest* req,
                                             runtime::v1::PortForwardResponse* resp) {
  if (req->pod_sandbox_id().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "PortForward: pod_sandbox_id is empty");
  }
  std::shared_ptr<Sandbox> sb = FindSandbox(req->pod_sandbox_id());
  if (!sb) return NotFound("PortForward", "pod sandbox", req->pod_sandbox_id());
  runtime::v1::PortForwardRequest stored = *req;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (sb->rec.phase != SandboxPhase::kReady) {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                          absl::StrCat("PortForward: pod sandbox ", sb->rec.id, " is ",
                                       PhaseName(sb->rec.phase),
                                       ", not ready: only a ready sandbox can forward ports"));
    }
    stored.set_pod_sandbox_id(sb->rec.id);  // the full ID, also when a prefix was given
  }
  if (streaming_ == nullptr) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        "PortForward: the streaming server is not running");
  }
  absl::StatusOr<std::string> url = streaming_->PortForwardUrl(stored);
  if (!url.ok()) return ToGrpc(Prefix(url.status(), "PortForward " + sb->rec.id));
  resp->set_url(*url);
  return grpc::Status::OK;
}

absl::StatusOr<sdk::UniqueFd> RuntimeServiceImpl::DialSandboxPort(const std::string& sandbox_id,
                                                                  int port) {
  std::shared_ptr<Sandbox> sb = FindSandbox(sandbox_id);
  if (!sb) return absl::NotFoundError("pod sandbox " + sandbox_id + " is gone");
  std::string netns;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (sb->rec.phase != SandboxPhase::kReady) {
      return absl::FailedPreconditionError(
          absl::StrCat("pod sandbox ", sandbox_id, " is ", PhaseName(sb->rec.phase)));
    }
    netns = sb->rec.net_ns_path;
  }
  if (!netns.empty()) {
    // containerd tries tcp4 first, then tcp6 (§7.4).
    absl::StatusOr<sdk::UniqueFd> v4 = DialInNetns(netns, port);
    if (v4.ok() || v4.status().code() != absl::StatusCode::kUnavailable) return v4;
    absl::StatusOr<sdk::UniqueFd> v6 = DialInNetns(netns, port, /*ipv6=*/true);
    if (v6.ok()) return v6;
    return v4.status();
  }
  // A host-network pod: its ports are the host's.
  sdk::UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return core::ErrnoToStatus(errno, "socket for port forwarding");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    return absl::UnavailableError(absl::StrCat("dial tcp 127.0.0.1:", port, ": connect: ",
                                               std::strerror(errno)));
  }
  return fd;
}

grpc::Status RuntimeServiceImpl::ExecSync(grpc::ServerContext* ctx,
                                          const runtime::v1::ExecSyncRequest* req,
                                          runtime::v1::ExecSyncResponse* resp) {
  std::shared_ptr<Container> c = FindContainer(req->container_id());
  if (!c) return NotFound("ExecSync", "container", req->container_id());
  if (req->cmd().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "ExecSync: cmd is empty");
  }
  if (req->timeout() < 0) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "ExecSync: timeout is negative");
  }
  auto [rec, handler] = Current(c);
  if (rec.phase != ContainerPhase::kRunning) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        absl::StrCat("ExecSync: container ", rec.id, " is ",
                                     PhaseName(rec.phase), ", not running"));
  }
  absl::StatusOr<std::string> spec_text = ReadWhole(BundleDir(rec.id) + "/config.json");
  if (!spec_text.ok()) return ToGrpc(Prefix(spec_text.status(), "ExecSync"));
  json spec = json::parse(*spec_text, nullptr, false);
  std::vector<std::string> cmd(req->cmd().begin(), req->cmd().end());
  absl::StatusOr<json> process = BuildExecProcess(spec, cmd, false);
  if (!process.ok()) return ToGrpc(Prefix(process.status(), "ExecSync"));
  absl::StatusOr<TaskClient> tasks = Handler(handler);
  if (!tasks.ok()) return ToGrpc(tasks.status());
  uint64_t timeout_ms = static_cast<uint64_t>(req->timeout()) * 1000;
  // The kubelet's own deadline bounds an exec without a timeout.
  auto left = ctx->deadline() - std::chrono::system_clock::now();
  if (ctx->deadline() != std::chrono::system_clock::time_point::max() && left.count() > 0) {
    uint64_t ms = static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(left).count());
    if (timeout_ms == 0 || ms < timeout_ms) timeout_ms = std::max<uint64_t>(ms, 1);
  }
  absl::StatusOr<bool> berth_shim = UsesBerthShim(handler);
  if (!berth_shim.ok()) return ToGrpc(Prefix(berth_shim.status(), "ExecSync in " + rec.id));
  absl::StatusOr<ExecSyncResult> r =
      *berth_shim ? tasks->ExecSync(rec.sandbox_id, rec.id, process->dump(), timeout_ms)
                  : ExecSyncThroughFifos(rec, handler, process->dump(), timeout_ms);
  if (!r.ok()) return ToGrpc(Prefix(r.status(), "ExecSync in " + rec.id));
  if (r->timed_out) {
    // What the kubelet maps to a timed-out probe; the process group is gone already. What it
    // printed goes into the message (bounded), for the operator.
    auto tail = [](const std::string& out) {
      return out.size() <= 1024 ? out : "..." + out.substr(out.size() - 1024);
    };
    return grpc::Status(
        grpc::StatusCode::DEADLINE_EXCEEDED,
        absl::StrCat("ExecSync in ", rec.id, ": the command did not finish within ",
                     req->timeout(), " s and was killed; stdout: \"",
                     absl::CEscape(tail(r->stdout_data)), "\"; stderr: \"",
                     absl::CEscape(tail(r->stderr_data)), "\""));
  }
  resp->set_stdout(r->stdout_data);
  resp->set_stderr(r->stderr_data);
  resp->set_exit_code(r->exit_code);
  return grpc::Status::OK;
}

absl::StatusOr<ExecSyncResult> RuntimeServiceImpl::ExecSyncThroughFifos(
    const ContainerRecord& rec, const std::string& handler, const std::string& process_json,
    uint64_t timeout_ms) {
  constexpr size_t kMaxOutput = 16u << 20;  // per stream, as berth-shim caps it
  ASSIGN_OR_RETURN(ExecStart start, NewExecStart(rec, handler, process_json));
  start.stdout = start.stderr = true;
  TaskClient tasks = start.tasks;
  const std::string exec_id = start.exec_id;
  ASSIGN_OR_RETURN(std::unique_ptr<streaming::StreamedProcess> process,
                   StartExecProcess(std::move(start)));
  // The deadline kills the process; its output then ends and its exit arrives.
  std::mutex mu;
  std::condition_variable cv;
  bool finished = false;
  std::atomic<bool> timed_out{false};
  std::thread watchdog;
  if (timeout_ms > 0) {
    watchdog = std::thread([&] {
      std::unique_lock<std::mutex> lock(mu);
      if (cv.wait_for(lock, std::chrono::milliseconds(timeout_ms), [&] { return finished; })) {
        return;
      }
      timed_out = true;
      lock.unlock();
      (void)tasks.Kill(rec.sandbox_id, rec.id, SIGKILL, /*all=*/false, exec_id);
      // Something the process left behind may hold the output: stop reading after a grace.
      lock.lock();
      if (!cv.wait_for(lock, std::chrono::seconds(2), [&] { return finished; })) {
        process->Detach();
      }
    });
  }
  ExecSyncResult result;
  absl::Status failure;
  for (;;) {
    absl::StatusOr<std::optional<streaming::StreamedProcess::Chunk>> chunk = process->Read();
    if (!chunk.ok()) {
      failure = chunk.status();
      break;
    }
    if (!chunk->has_value()) break;
    std::string& out = (*chunk)->stream == streaming::StreamType::kStderr ? result.stderr_data
                                                                          : result.stdout_data;
    if (out.size() < kMaxOutput) out.append((*chunk)->data, 0, kMaxOutput - out.size());
  }
  absl::StatusOr<int> code = failure.ok() ? process->Wait() : absl::StatusOr<int>(failure);
  {
    std::lock_guard<std::mutex> lock(mu);
    finished = true;
  }
  cv.notify_all();
  if (watchdog.joinable()) watchdog.join();
  process.reset();  // deletes the exec (now or at its exit) and its FIFOs
  if (timed_out) {
    result.timed_out = true;
    return result;
  }
  if (!code.ok()) return code.status();
  result.exit_code = *code;
  return result;
}

// ---------------------------------------------------------------------------------------
// Stats

std::optional<json> RuntimeServiceImpl::CgroupStats(const std::string& cgroups_path,
                                                    const std::string& owner) {
  sdk::StringSink text, err;
  int32_t code = options_.cgroups.table->stats(options_.cgroups.instance, sdk::Str(cgroups_path),
                                               text.get(), err.get());
  if (code != BERTH_OK) {
    if (code != BERTH_NOT_FOUND) host_.Debug(absl::StrCat("stats of ", owner, ": ", err.str()));
    return std::nullopt;
  }
  json st = json::parse(text.str(), nullptr, false);
  if (!st.is_object()) return std::nullopt;
  return st;
}

// For a shim other than berth-shim the shim is asked, as containerd does: with Kata the
// container's processes are in a VM and the host holds no cgroup of theirs. berth-shim runs
// runc on the host, where the cgroup driver reads the same figures without a round trip.
std::optional<json> RuntimeServiceImpl::ContainerStatsJson(const ContainerRecord& rec,
                                                           const std::string& handler,
                                                           StatsRound* round) {
  absl::StatusOr<bool> berth_shim = UsesBerthShim(handler);
  const bool other_shim = berth_shim.ok() && !*berth_shim;
  if (other_shim && round->silent_shims.count(rec.sandbox_id) > 0) {
    host_.Debug(absl::StrCat("stats of container ", rec.id, ": not asking the shim of pod ",
                             rec.sandbox_id, ", which did not answer earlier in this call"));
  } else if (other_shim) {
    const int64_t asked = NowNanos();
    absl::StatusOr<json> st = [&]() -> absl::StatusOr<json> {
      ASSIGN_OR_RETURN(TaskClient tasks, Handler(handler));
      ASSIGN_OR_RETURN(TaskMetrics metrics, tasks.Stats(rec.sandbox_id, rec.id));
      ASSIGN_OR_RETURN(json converted,
                       ShimMetricsToStats(metrics.type_url, metrics.value, asked));
      host_.Debug(absl::StrCat("stats of container ", rec.id, " from its shim (handler ",
                               handler, ", ", metrics.type_url, ")"));
      return converted;
    }();
    if (st.ok()) return *std::move(st);
    if (absl::IsDeadlineExceeded(st.status()) || absl::IsUnavailable(st.status())) {
      round->silent_shims.insert(rec.sandbox_id);
    }
    host_.Debug(absl::StrCat("stats of container ", rec.id, ": the shim of handler ", handler,
                             " did not give them (", st.status().ToString(), "); ",
                             rec.cgroups_path.empty()
                                 ? std::string("the container has no cgroup on the host")
                                 : "reading its cgroup " + rec.cgroups_path + " on the host"));
  }
  if (rec.cgroups_path.empty()) return std::nullopt;
  return CgroupStats(rec.cgroups_path, rec.id);
}

absl::Status RuntimeServiceImpl::FillContainerStats(const std::shared_ptr<Container>& c,
                                                    runtime::v1::ContainerStats* out,
                                                    StatsRound* round) {
  auto [rec, handler] = Current(c);
  out->mutable_attributes()->set_id(rec.id);
  *out->mutable_attributes()->mutable_metadata() = rec.config.metadata();
  *out->mutable_attributes()->mutable_labels() = rec.config.labels();
  *out->mutable_attributes()->mutable_annotations() = rec.config.annotations();
  int64_t now = NowNanos();
  if (rec.phase == ContainerPhase::kRunning) {
    if (std::optional<json> read = ContainerStatsJson(rec, handler, round)) {
      const json& st = *read;
      int64_t ts = st.value("timestamp_ns", now);
      FillCpu(st, ts, out->mutable_cpu());
      FillMemory(st, ts, out->mutable_memory());
      if (runtime::v1::IoUsage io; FillIo(st, ts, &io)) *out->mutable_io() = io;
      if (st.contains("cpu") && st["cpu"].contains("usage_ns")) {
        int64_t usage = st["cpu"].value("usage_ns", int64_t{0});
        std::lock_guard<std::mutex> lock(mu_);
        if (c->last_cpu_ns >= 0 && ts > c->last_cpu_at && usage >= c->last_cpu_ns) {
          double cores = static_cast<double>(usage - c->last_cpu_ns) * 1e9 /
                         static_cast<double>(ts - c->last_cpu_at);
          out->mutable_cpu()->mutable_usage_nano_cores()->set_value(
              static_cast<uint64_t>(cores));
        }
        c->last_cpu_ns = usage;
        c->last_cpu_at = ts;
      }
      // CRI has no pids figure per container; the pod stats carry it.
    }
  }
  runtime::v1::FilesystemUsage* fsu = out->mutable_writable_layer();
  fsu->set_timestamp(now);
  sdk::StringSink usage, uerr;
  const auto holder = std::find_if(
      options_.snapshotters.begin(), options_.snapshotters.end(), [&](const auto& snap) {
        sdk::StringSink info, serr;
        return snap.table->stat(snap.instance, sdk::Str(SnapshotKey(rec.id)), info.get(),
                                serr.get()) == BERTH_OK;
      });
  if (holder != options_.snapshotters.end() &&
      holder->table->usage(holder->instance, sdk::Str(SnapshotKey(rec.id)), usage.get(),
                           uerr.get()) == BERTH_OK) {
    json u = json::parse(usage.str(), nullptr, false);
    if (u.is_object()) {
      fsu->mutable_used_bytes()->set_value(u.value("size", uint64_t{0}));
      fsu->mutable_inodes_used()->set_value(u.value("inodes", uint64_t{0}));
    }
  }
  fsu->mutable_fs_id()->set_mountpoint(host_.RootDir());
  return absl::OkStatus();
}

grpc::Status RuntimeServiceImpl::ContainerStats(grpc::ServerContext*,
                                                const runtime::v1::ContainerStatsRequest* req,
                                                runtime::v1::ContainerStatsResponse* resp) {
  std::shared_ptr<Container> c = FindContainer(req->container_id());
  if (!c) return NotFound("ContainerStats", "container", req->container_id());
  StatsRound round;
  return ToGrpc(FillContainerStats(c, resp->mutable_stats(), &round));
}

grpc::Status RuntimeServiceImpl::ListContainerStats(
    grpc::ServerContext*, const runtime::v1::ListContainerStatsRequest* req,
    runtime::v1::ListContainerStatsResponse* resp) {
  const runtime::v1::ContainerStatsFilter& f = req->filter();
  std::vector<std::shared_ptr<Container>> chosen;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [id, c] : containers_) {
      if (c->rec.phase == ContainerPhase::kCreating) continue;
      if (!f.id().empty() && !absl::StartsWith(id, f.id())) continue;
      if (!f.pod_sandbox_id().empty() && !absl::StartsWith(c->rec.sandbox_id, f.pod_sandbox_id())) {
        continue;
      }
      if (!MatchLabels(f.label_selector(), c->rec.config.labels())) continue;
      chosen.push_back(c);
    }
  }
  StatsRound round;
  for (const auto& c : chosen) {
    absl::Status s = FillContainerStats(c, resp->add_stats(), &round);
    if (!s.ok()) return ToGrpc(s);
  }
  return grpc::Status::OK;
}

absl::Status RuntimeServiceImpl::FillPodStats(const std::shared_ptr<Sandbox>& sb,
                                              runtime::v1::PodSandboxStats* out,
                                              StatsRound* round) {
  SandboxRecord rec;
  std::vector<std::shared_ptr<Container>> members;
  {
    std::lock_guard<std::mutex> lock(mu_);
    rec = sb->rec;
    for (const std::string& cid : sb->containers) {
      auto it = containers_.find(cid);
      if (it != containers_.end() && it->second->rec.phase != ContainerPhase::kCreating) {
        members.push_back(it->second);
      }
    }
  }
  out->mutable_attributes()->set_id(rec.id);
  *out->mutable_attributes()->mutable_metadata() = rec.config.metadata();
  *out->mutable_attributes()->mutable_labels() = rec.config.labels();
  *out->mutable_attributes()->mutable_annotations() = rec.config.annotations();
  runtime::v1::LinuxPodSandboxStats* linux = out->mutable_linux();
  // The pod's cgroup is the kubelet's cgroup_parent (it holds the pause container and every
  // container); without one, the pause container's.
  std::string path = rec.config.linux().cgroup_parent();
  if (path.empty()) path = rec.cgroups_path;
  int64_t now = NowNanos();
  if (rec.phase == SandboxPhase::kReady && !path.empty()) {
    if (std::optional<json> read = CgroupStats(path, rec.id)) {
      const json& st = *read;
      int64_t ts = st.value("timestamp_ns", now);
      FillCpu(st, ts, linux->mutable_cpu());
      FillMemory(st, ts, linux->mutable_memory());
      if (runtime::v1::IoUsage io; FillIo(st, ts, &io)) *linux->mutable_io() = io;
      if (st.contains("pids") && st["pids"].contains("current")) {
        linux->mutable_process()->set_timestamp(ts);
        linux->mutable_process()->mutable_process_count()->set_value(
            st["pids"].value("current", uint64_t{0}));
      }
    }
  }
  for (const auto& c : members) {
    RETURN_IF_ERROR(FillContainerStats(c, linux->add_containers(), round));
  }
  return absl::OkStatus();
}

grpc::Status RuntimeServiceImpl::PodSandboxStats(grpc::ServerContext*,
                                                 const runtime::v1::PodSandboxStatsRequest* req,
                                                 runtime::v1::PodSandboxStatsResponse* resp) {
  std::shared_ptr<Sandbox> sb = FindSandbox(req->pod_sandbox_id());
  if (!sb) return NotFound("PodSandboxStats", "pod sandbox", req->pod_sandbox_id());
  StatsRound round;
  return ToGrpc(FillPodStats(sb, resp->mutable_stats(), &round));
}

grpc::Status RuntimeServiceImpl::ListPodSandboxStats(
    grpc::ServerContext*, const runtime::v1::ListPodSandboxStatsRequest* req,
    runtime::v1::ListPodSandboxStatsResponse* resp) {
  const runtime::v1::PodSandboxStatsFilter& f = req->filter();
  std::vector<std::shared_ptr<Sandbox>> chosen;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [id, sb] : sandboxes_) {
      if (sb->rec.phase == SandboxPhase::kCreating) continue;
      if (!f.id().empty() && !absl::StartsWith(id, f.id())) continue;
      if (!MatchLabels(f.label_selector(), sb->rec.config.labels())) continue;
      chosen.push_back(sb);
    }
  }
  StatsRound round;
  for (const auto& sb : chosen) {
    absl::Status s = FillPodStats(sb, resp->add_stats(), &round);
    if (!s.ok()) return ToGrpc(s);
  }
  return grpc::Status::OK;
}

// ---------------------------------------------------------------------------------------
// Events

void RuntimeServiceImpl::Emit(runtime::v1::ContainerEventType type,
                              const std::string& container_id, const std::string& sandbox_id) {
  std::vector<std::shared_ptr<Subscriber>> subs;
  {
    std::lock_guard<std::mutex> lock(events_mu_);
    if (subscribers_.empty()) return;
    subs = subscribers_;
  }
  runtime::v1::ContainerEventResponse ev;
  ev.set_container_id(container_id);
  ev.set_container_event_type(type);
  ev.set_created_at(NowNanos());
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto sb = sandboxes_.find(sandbox_id);
    if (sb != sandboxes_.end()) {
      FillSandboxStatus(*sb->second, ev.mutable_pod_sandbox_status());
      for (const std::string& cid : sb->second->containers) {
        auto it = containers_.find(cid);
        if (it == containers_.end() || it->second->rec.phase == ContainerPhase::kCreating) continue;
        FillContainerStatus(*it->second, ev.add_containers_statuses());
      }
    } else {
      // A deleted sandbox: its last known identity.
      ev.mutable_pod_sandbox_status()->set_id(sandbox_id);
      ev.mutable_pod_sandbox_status()->set_state(runtime::v1::SANDBOX_NOTREADY);
    }
  }
  for (const auto& sub : subs) {
    std::lock_guard<std::mutex> l(sub->mu);
    // A client that does not read is dropped rather than growing berthd without bound.
    if (sub->queue.size() >= 10000) {
      sub->closed = true;
    } else {
      sub->queue.push_back(ev);
    }
    sub->cv.notify_all();
  }
}

grpc::Status RuntimeServiceImpl::GetContainerEvents(
    grpc::ServerContext* ctx, const runtime::v1::GetEventsRequest*,
    grpc::ServerWriter<runtime::v1::ContainerEventResponse>* writer) {
  auto sub = std::make_shared<Subscriber>();
  {
    std::lock_guard<std::mutex> lock(events_mu_);
    subscribers_.push_back(sub);
  }
  grpc::Status result = grpc::Status::OK;
  while (true) {
    runtime::v1::ContainerEventResponse ev;
    {
      std::unique_lock<std::mutex> l(sub->mu);
      sub->cv.wait_for(l, std::chrono::milliseconds(500),
                       [&] { return sub->closed || !sub->queue.empty(); });
      if (ctx->IsCancelled()) break;
      if (sub->queue.empty()) {
        if (sub->closed) {
          result = grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                "GetContainerEvents: the stream fell behind or berthd is stopping");
          break;
        }
        continue;
      }
      ev = std::move(sub->queue.front());
      sub->queue.pop_front();
    }
    if (!writer->Write(ev)) break;
  }
  std::lock_guard<std::mutex> lock(events_mu_);
  subscribers_.erase(std::remove(subscribers_.begin(), subscribers_.end(), sub),
                     subscribers_.end());
  return result;
}

// ---------------------------------------------------------------------------------------
// Exits

void RuntimeServiceImpl::OnTaskExit(const std::string& payload) {
  {
    std::lock_guard<std::mutex> lock(exits_mu_);
    exits_.push_back(payload);
  }
  exits_cv_.notify_all();
}

void RuntimeServiceImpl::ExitWorker() {
  std::unique_lock<std::mutex> lock(exits_mu_);
  while (true) {
    exits_cv_.wait(lock, [&] { return exits_stop_ || (!exits_paused_ && !exits_.empty()); });
    if (exits_stop_) return;
    std::string payload = std::move(exits_.front());
    exits_.pop_front();
    lock.unlock();
    json ev = json::parse(payload, nullptr, false);
    if (ev.is_object()) ApplyExit(ev);
    lock.lock();
  }
}

void RuntimeServiceImpl::ApplyExit(const json& ev) {
  const std::string id = ev.value("id", "");
  const std::string sandbox_id = ev.value("sandbox_id", "");
  const uint32_t status = ev.value("exit_status", 0u);
  if (const std::string exec_id = ev.value("exec_id", ""); !exec_id.empty()) {
    // Execs of streaming sessions; ExecSync waits for its own.
    ApplyExecExit(sandbox_id, id, exec_id, status);
    return;
  }
  const std::string reason = ev.value("reason", "");
  int64_t at = ParseTimeNanos(ev.value("exited_at", ""));
  if (at == 0) at = NowNanos();
  bool container_changed = false, sandbox_changed = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto c = containers_.find(id);
    if (c != containers_.end() && c->second->rec.sandbox_id == sandbox_id) {
      ContainerRecord& r = c->second->rec;
      if (r.phase == ContainerPhase::kCreated || r.phase == ContainerPhase::kRunning) {
        r.phase = ContainerPhase::kExited;
        r.finished_at = at;
        r.exit_code = static_cast<int32_t>(status);
        r.reason = ContainerReason(reason, status);
        if (reason == "ShimDied") r.message = "the container's shim died; its exit is uncertain";
        container_changed = true;
      }
    } else if (id == sandbox_id) {
      auto sb = sandboxes_.find(id);
      if (sb != sandboxes_.end() && sb->second->rec.phase == SandboxPhase::kReady) {
        sb->second->rec.phase = SandboxPhase::kNotReady;
        sandbox_changed = true;
      }
    }
  }
  exit_cv_.notify_all();
  if (container_changed) {
    absl::Status s = SaveContainer(id);
    if (!s.ok()) host_.Error(absl::StrCat("container ", id, " exited: ", s.message()));
    Emit(runtime::v1::CONTAINER_STOPPED_EVENT, id, sandbox_id);
  }
  if (sandbox_changed) {
    host_.Warn(absl::StrCat("the pause container of sandbox ", id, " exited (status ", status,
                            "): the sandbox is not ready"));
    absl::Status s = SaveSandbox(id);
    if (!s.ok()) host_.Error(absl::StrCat("sandbox ", id, ": ", s.message()));
    Emit(runtime::v1::CONTAINER_STOPPED_EVENT, id, id);
  }
}

// ---------------------------------------------------------------------------------------
// Restart: the records against what the runtime plugins know

absl::Status RuntimeServiceImpl::Reconcile() {
  std::vector<SandboxRecord> sandboxes;
  std::vector<ContainerRecord> containers;
  {
    auto txn = host_.Begin(false);
    if (!txn.ok()) return FromSdk(txn.status());
    std::string bad;
    sdk::Status s = txn->Scan(kBucket, "", [&](std::string_view key, std::string_view value) {
      json j = json::parse(value, nullptr, false);
      const std::string k(key);
      if (absl::StartsWith(k, "sandbox/")) {
        absl::StatusOr<SandboxRecord> r = SandboxRecord::FromJson(j);
        if (r.ok()) sandboxes.push_back(std::move(*r));
        else bad += std::string(key) + ": " + std::string(r.status().message()) + "; ";
      } else if (absl::StartsWith(k, "container/")) {
        absl::StatusOr<ContainerRecord> r = ContainerRecord::FromJson(j);
        if (r.ok()) containers.push_back(std::move(*r));
        else bad += std::string(key) + ": " + std::string(r.status().message()) + "; ";
      } else if (key == "runtime_config" && j.is_object()) {
        pod_cidr_ = j.value("pod_cidr", "");
      }
      return true;
    });
    if (!s.ok()) return FromSdk(s);
    if (!bad.empty()) host_.Error("unreadable CRI records (left in the store): " + bad);
  }
  // Every task of every runtime plugin, keyed by sandbox and id.
  std::map<std::string, TaskInfo> tasks;
  std::set<std::string> plugins_seen;
  for (const auto& [name, rt] : options_.handlers) {
    if (!plugins_seen.insert(rt.plugin_id).second) continue;
    absl::StatusOr<std::vector<TaskInfo>> all = TaskClient::Tasks(rt);
    if (!all.ok()) {
      host_.Warn("tasks of " + rt.plugin_id + ": " + std::string(all.status().message()));
      continue;
    }
    for (TaskInfo& t : *all) {
      if (t.exec_id.empty()) tasks[t.sandbox_id + "/" + t.id] = std::move(t);
    }
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (SandboxRecord& r : sandboxes) {
      auto sb = std::make_shared<Sandbox>();
      sb->rec = std::move(r);
      sandbox_names_[sb->rec.name] = sb->rec.id;
      sandboxes_[sb->rec.id] = sb;
    }
    for (ContainerRecord& r : containers) {
      auto sb = sandboxes_.find(r.sandbox_id);
      if (sb == sandboxes_.end()) {
        host_.Warn("container record " + r.id + " names a sandbox that is gone: removing it");
        r.phase = ContainerPhase::kRemoving;
      } else {
        sb->second->containers.insert(r.id);
      }
      auto c = std::make_shared<Container>();
      c->rec = std::move(r);
      container_names_[c->rec.sandbox_id + "/" + c->rec.name] = c->rec.id;
      containers_[c->rec.id] = c;
    }
  }
  int adopted = 0, exited = 0, repaired = 0;
  // Containers: complete removals and roll back creations; others take the task's state.
  std::vector<std::shared_ptr<Container>> all_containers;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [id, c] : containers_) all_containers.push_back(c);
  }
  for (const auto& c : all_containers) {
    ContainerRecord rec;
    std::string handler;
    {
      std::lock_guard<std::mutex> lock(mu_);
      rec = c->rec;
      auto sb = sandboxes_.find(rec.sandbox_id);
      handler = sb != sandboxes_.end() ? sb->second->rec.handler : options_.default_handler;
    }
    if (rec.phase == ContainerPhase::kCreating || rec.phase == ContainerPhase::kRemoving) {
      absl::Status s = TeardownContainer(rec, handler);
      if (!s.ok()) {
        host_.Error(absl::StrCat("container ", rec.id, ": finishing an interrupted ",
                                 PhaseName(rec.phase), ": ", s.message(),
                                 " (kept; RemoveContainer retries)"));
        std::lock_guard<std::mutex> lock(mu_);
        c->rec.phase = ContainerPhase::kRemoving;
      } else {
        std::lock_guard<std::mutex> lock(mu_);
        containers_.erase(rec.id);
        container_names_.erase(rec.sandbox_id + "/" + rec.name);
        auto sb = sandboxes_.find(rec.sandbox_id);
        if (sb != sandboxes_.end()) sb->second->containers.erase(rec.id);
      }
      (void)SaveContainer(rec.id);
      ++repaired;
      continue;
    }
    // The FIFOs of a container of another shim v2: copy its output again.
    if (std::error_code ec; fs::exists(IoDir(rec.id), ec) && !fifo_logs_->Has(rec.id)) {
      absl::Status adopted_io = fifo_logs_->Adopt(rec.id, IoDir(rec.id), rec.log_path);
      if (!adopted_io.ok()) {
        host_.Warn(absl::StrCat("container ", rec.id, ": its output FIFOs: ", adopted_io.message()));
      }
    }
    if (rec.phase == ContainerPhase::kExited) continue;
    auto t = tasks.find(rec.sandbox_id + "/" + rec.id);
    {
      std::lock_guard<std::mutex> lock(mu_);
      ContainerRecord& r = c->rec;
      if (t == tasks.end()) {
        r.phase = ContainerPhase::kExited;
        r.finished_at = NowNanos();
        r.exit_code = 255;
        r.reason = "Unknown";
        r.message = "the runtime does not know this container any more";
        ++exited;
      } else if (t->second.status == "stopped") {
        r.phase = ContainerPhase::kExited;
        r.finished_at = ParseTimeNanos(t->second.exited_at);
        if (r.finished_at == 0) r.finished_at = NowNanos();
        r.exit_code = static_cast<int32_t>(t->second.exit_status);
        r.reason = ContainerReason(t->second.reason, t->second.exit_status);
        ++exited;
      } else if (t->second.status == "running") {
        r.phase = ContainerPhase::kRunning;
        r.pid = t->second.pid;
        if (r.started_at == 0) r.started_at = NowNanos();
        ++adopted;
      } else {
        r.phase = ContainerPhase::kCreated;
        ++adopted;
      }
    }
    (void)SaveContainer(rec.id);
  }
  // Sandboxes.
  std::vector<std::shared_ptr<Sandbox>> all_sandboxes;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [id, sb] : sandboxes_) all_sandboxes.push_back(sb);
  }
  for (const auto& sb : all_sandboxes) {
    SandboxRecord rec;
    {
      std::lock_guard<std::mutex> lock(mu_);
      rec = sb->rec;
    }
    if (rec.phase == SandboxPhase::kCreating || rec.phase == SandboxPhase::kRemoving) {
      // Its containers first (a creating sandbox has none).
      std::vector<std::shared_ptr<Container>> members;
      {
        std::lock_guard<std::mutex> lock(mu_);
        for (const std::string& cid : sb->containers) {
          auto it = containers_.find(cid);
          if (it != containers_.end()) members.push_back(it->second);
        }
      }
      bool ok = true;
      for (const auto& c : members) ok = DoRemoveContainer(c).ok() && ok;
      absl::Status s = ok ? TeardownSandbox(rec) : absl::InternalError("containers remain");
      if (!s.ok()) {
        host_.Error(absl::StrCat("sandbox ", rec.id, ": finishing an interrupted ",
                                 PhaseName(rec.phase), ": ", s.message(),
                                 " (kept; RemovePodSandbox retries)"));
        std::lock_guard<std::mutex> lock(mu_);
        sb->rec.phase = SandboxPhase::kRemoving;
      } else {
        std::lock_guard<std::mutex> lock(mu_);
        sandboxes_.erase(rec.id);
        sandbox_names_.erase(rec.name);
      }
      (void)SaveSandbox(rec.id);
      ++repaired;
      continue;
    }
    auto t = tasks.find(rec.id + "/" + rec.id);
    bool running = t != tasks.end() && t->second.status == "running";
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (rec.phase == SandboxPhase::kReady && !running) sb->rec.phase = SandboxPhase::kNotReady;
      if (running) sb->rec.pid = t->second.pid;
    }
    (void)SaveSandbox(rec.id);
  }
  // Attachments of sandboxes berth no longer knows (their records were removed before the
  // network let go of them) are released.
  if (NetworkAttachable()) {
    json ids = json::array();
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const auto& [id, sb] : sandboxes_) ids.push_back(id);
    }
    sdk::StringSink err;
    if (options_.network.table->gc(options_.network.instance, sdk::Str(ids.dump()), err.get()) !=
        BERTH_OK) {
      host_.Warn("network garbage collection: " + err.str());
    }
  }
  host_.Info(absl::StrCat("CRI state: ", all_sandboxes.size(), " sandboxes, ",
                          all_containers.size(), " containers; ", adopted,
                          " containers adopted, ", exited, " found exited, ", repaired,
                          " interrupted operations finished"));
  return absl::OkStatus();
}

}  // namespace berth::cri
