// SPDX-License-Identifier: Apache-2.0
// CRI v1 RuntimeService: pod sandboxes and containers (docs/pods.md).
//
// State lives in memory (every List* and *Status call is answered from here, without calling
// a shim) and in the host store, written before each side effect. Side effects go through
// the other plugins: the image store (sandbox and container images), the snapshotter
// (writable layers), the cgroup driver (paths and stats) and the runtime handlers (tasks,
// through the pod's shim). Task exits arrive on the host event bus.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "berth/plugin.hpp"
#include "cri/v1/api.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "plugins/cri/oci_spec.h"
#include "plugins/cri/fifo_logs.h"
#include "plugins/cri/records.h"
#include "plugins/cri/stream_process.h"
#include "plugins/cri/streaming/server.h"
#include "plugins/cri/task_client.h"

namespace berth::cri {

class CriPlugin;

struct RuntimeServiceOptions {
  std::string daemon_version;
  std::string sandbox_image;
  std::string state_dir;  // the plugin's state directory (tmpfs: bundles, pod files, netns)
  std::string default_handler;
  std::map<std::string, sdk::Iface<berth_runtime_v1>> handlers;
  sdk::Iface<berth_cgroup_driver_v1> cgroups;
  sdk::Iface<berth_snapshotter_v1> snapshotter;  // the default (the image store's)
  // Every running snapshotter (the default among them): removals try each, a sandbox's
  // recorded snapshotter is found by plugin id.
  std::vector<sdk::Iface<berth_snapshotter_v1>> snapshotters;
  // Runtime handler -> the plugin id of its own snapshotter (runtimes: <h>: snapshotter).
  std::map<std::string, std::string> handler_snapshotters;
  sdk::Iface<berth_image_store_v1> images;
  // The pod network (attach/detach); a table without them leaves pods on loopback only.
  sdk::Iface<berth_network_v1> network;
  // Runtime handler -> its CNI configuration directory (runtimes: <h>: cni_conf_dir), for the
  // handlers that have one; the others use the network plugin's own.
  std::map<std::string, std::string> handler_cni_conf_dirs;
  // How long StopContainer waits for the SIGKILLed processes to be reaped.
  int kill_wait_seconds = 30;
  // The streaming server (exec, attach and port-forward URLs): an IP literal to bind and a port (0: any).
  std::string stream_address = "127.0.0.1";
  int stream_port = 0;
  // TLS (PEM files), both or neither: https:// URLs.
  std::string stream_tls_cert_file, stream_tls_key_file;
  // Where CDI spec files are read, in increasing priority; empty = /etc/cdi, /var/run/cdi.
  std::vector<std::string> cdi_spec_dirs;
  // shim_cgroup "pod": each pod's shim is moved into a cgroup of its own in the pod's
  // cgroup_parent (a scope under systemd); false ("none"): it stays in berthd's cgroup.
  bool shim_in_pod_cgroup = true;
};

class RuntimeServiceImpl final : public runtime::v1::RuntimeService::Service {
 public:
  RuntimeServiceImpl(CriPlugin* plugin, sdk::Host host, RuntimeServiceOptions options);
  ~RuntimeServiceImpl() override;

  // Starts the streaming server, loads the records, reconciles them with the runtime plugins'
  // tasks (completing or rolling back what a crash interrupted) and starts following task
  // exits.
  [[nodiscard]] absl::Status Start();
  // Stops the streaming server (open port-forward sessions end), ends event streams and stops
  // following exits.
  void Stop();

  grpc::Status Version(grpc::ServerContext*, const runtime::v1::VersionRequest*,
                       runtime::v1::VersionResponse*) override;
  grpc::Status Status(grpc::ServerContext*, const runtime::v1::StatusRequest*,
                      runtime::v1::StatusResponse*) override;
  grpc::Status RuntimeConfig(grpc::ServerContext*, const runtime::v1::RuntimeConfigRequest*,
                             runtime::v1::RuntimeConfigResponse*) override;
  grpc::Status UpdateRuntimeConfig(grpc::ServerContext*,
                                   const runtime::v1::UpdateRuntimeConfigRequest*,
                                   runtime::v1::UpdateRuntimeConfigResponse*) override;

  grpc::Status RunPodSandbox(grpc::ServerContext*, const runtime::v1::RunPodSandboxRequest*,
                             runtime::v1::RunPodSandboxResponse*) override;
  grpc::Status StopPodSandbox(grpc::ServerContext*, const runtime::v1::StopPodSandboxRequest*,
                              runtime::v1::StopPodSandboxResponse*) override;
  grpc::Status RemovePodSandbox(grpc::ServerContext*,
                                const runtime::v1::RemovePodSandboxRequest*,
                                runtime::v1::RemovePodSandboxResponse*) override;
  grpc::Status PodSandboxStatus(grpc::ServerContext*,
                                const runtime::v1::PodSandboxStatusRequest*,
                                runtime::v1::PodSandboxStatusResponse*) override;
  grpc::Status ListPodSandbox(grpc::ServerContext*, const runtime::v1::ListPodSandboxRequest*,
                              runtime::v1::ListPodSandboxResponse*) override;

  grpc::Status CreateContainer(grpc::ServerContext*, const runtime::v1::CreateContainerRequest*,
                               runtime::v1::CreateContainerResponse*) override;
  grpc::Status StartContainer(grpc::ServerContext*, const runtime::v1::StartContainerRequest*,
                              runtime::v1::StartContainerResponse*) override;
  grpc::Status StopContainer(grpc::ServerContext*, const runtime::v1::StopContainerRequest*,
                             runtime::v1::StopContainerResponse*) override;
  grpc::Status RemoveContainer(grpc::ServerContext*, const runtime::v1::RemoveContainerRequest*,
                               runtime::v1::RemoveContainerResponse*) override;
  grpc::Status ListContainers(grpc::ServerContext*, const runtime::v1::ListContainersRequest*,
                              runtime::v1::ListContainersResponse*) override;
  grpc::Status ContainerStatus(grpc::ServerContext*, const runtime::v1::ContainerStatusRequest*,
                               runtime::v1::ContainerStatusResponse*) override;
  grpc::Status UpdateContainerResources(grpc::ServerContext*,
                                        const runtime::v1::UpdateContainerResourcesRequest*,
                                        runtime::v1::UpdateContainerResourcesResponse*) override;
  grpc::Status ReopenContainerLog(grpc::ServerContext*,
                                  const runtime::v1::ReopenContainerLogRequest*,
                                  runtime::v1::ReopenContainerLogResponse*) override;
  grpc::Status ExecSync(grpc::ServerContext*, const runtime::v1::ExecSyncRequest*,
                        runtime::v1::ExecSyncResponse*) override;
  // URLs of the streaming server (docs/streaming.md) for a running container / a ready
  // sandbox.
  grpc::Status Exec(grpc::ServerContext*, const runtime::v1::ExecRequest*,
                    runtime::v1::ExecResponse*) override;
  grpc::Status Attach(grpc::ServerContext*, const runtime::v1::AttachRequest*,
                      runtime::v1::AttachResponse*) override;
  grpc::Status PortForward(grpc::ServerContext*, const runtime::v1::PortForwardRequest*,
                           runtime::v1::PortForwardResponse*) override;

  grpc::Status ContainerStats(grpc::ServerContext*, const runtime::v1::ContainerStatsRequest*,
                              runtime::v1::ContainerStatsResponse*) override;
  grpc::Status ListContainerStats(grpc::ServerContext*,
                                  const runtime::v1::ListContainerStatsRequest*,
                                  runtime::v1::ListContainerStatsResponse*) override;
  grpc::Status PodSandboxStats(grpc::ServerContext*, const runtime::v1::PodSandboxStatsRequest*,
                               runtime::v1::PodSandboxStatsResponse*) override;
  grpc::Status ListPodSandboxStats(grpc::ServerContext*,
                                   const runtime::v1::ListPodSandboxStatsRequest*,
                                   runtime::v1::ListPodSandboxStatsResponse*) override;
  grpc::Status GetContainerEvents(
      grpc::ServerContext*, const runtime::v1::GetEventsRequest*,
      grpc::ServerWriter<runtime::v1::ContainerEventResponse>*) override;

  // The sandbox image's id once resolved ("" before): ImageService reports it pinned.
  std::string SandboxImageId();

 private:
  struct Sandbox {
    std::mutex op;  // serialises the operations on this pod (and its container creations)
    SandboxRecord rec;
    std::set<std::string> containers;
  };
  struct Container {
    std::mutex op;
    ContainerRecord rec;
    // The previous CPU reading, for usage_nano_cores.
    int64_t last_cpu_ns = -1, last_cpu_at = 0;
  };
  struct Subscriber {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<runtime::v1::ContainerEventResponse> queue;
    bool closed = false;
  };
  struct ImageInfo {
    std::string id, chain_id, name, digest_ref;
    nlohmann::json config;
  };

  // --- records ---
  std::shared_ptr<Sandbox> FindSandbox(const std::string& id_or_prefix);
  std::shared_ptr<Container> FindContainer(const std::string& id_or_prefix);
  // The record and its sandbox's handler, read together.
  std::pair<ContainerRecord, std::string> Current(const std::shared_ptr<Container>& c);
  // Writes the record as it is now (or deletes it when gone from memory).
  absl::Status SaveSandbox(const std::string& id);
  absl::Status SaveContainer(const std::string& id);
  absl::Status Persist(const std::string& key,
                       const std::function<std::optional<std::string>()>& current);
  std::string NewId();

  // --- operations (absl::Status in, gRPC status at the edge) ---
  absl::StatusOr<std::string> DoRunPodSandbox(const runtime::v1::RunPodSandboxRequest& req);
  absl::Status BuildSandbox(Sandbox* sb, TaskClient* tasks);
  absl::Status DoStopPodSandbox(const std::shared_ptr<Sandbox>& sb);
  absl::Status DoRemovePodSandbox(const std::shared_ptr<Sandbox>& sb);
  absl::StatusOr<std::string> DoCreateContainer(const runtime::v1::CreateContainerRequest& req);
  absl::Status BuildContainer(const SandboxRecord& sandbox, Container* c, const ImageInfo& image,
                              TaskClient* tasks);
  absl::Status DoStartContainer(const std::shared_ptr<Container>& c);
  absl::Status DoStopContainer(const std::shared_ptr<Container>& c, int64_t timeout_s);
  absl::Status DoRemoveContainer(const std::shared_ptr<Container>& c);
  // Undo everything a container or sandbox may have (idempotent): what removal, rollback and
  // crash repair share.
  absl::Status TeardownContainer(const ContainerRecord& rec, const std::string& handler);
  absl::Status TeardownSandbox(const SandboxRecord& rec);
  absl::Status KillAndWait(TaskClient* tasks, const std::string& sandbox_id,
                           const std::string& id, const std::shared_ptr<Container>& c);

  // --- the pod network ---
  bool NetworkAttachable() const;
  nlohmann::json NetworkRequest(const SandboxRecord& rec);
  absl::StatusOr<nlohmann::json> AttachNetwork(const SandboxRecord& rec);
  // Idempotent; nothing to do for host-network pods.
  absl::Status DetachNetwork(const SandboxRecord& rec);

  // --- helpers ---
  absl::StatusOr<TaskClient> Handler(const std::string& name);
  absl::StatusOr<ImageInfo> ResolveImage(const std::string& ref);
  absl::StatusOr<ImageInfo> EnsureSandboxImage();
  std::string BundleDir(const std::string& id) const;
  // What every spec needs: ids, the rootfs in the bundle, cgroup, host limits, image name.
  SpecInputs BaseSpecInputs(const std::string& sandbox_id, const std::string& id,
                            const std::string& cgroups_path, const std::string& image_name) const;
  static std::string SnapshotKey(const std::string& id);
  // The running snapshotter with plugin id `id` ("": the default); FAILED_PRECONDITION when
  // it no longer runs.
  absl::StatusOr<sdk::Iface<berth_snapshotter_v1>> SnapshotterById(const std::string& id) const;
  // The image's layers in `snap`: unpacked there from the image store's content when missing
  // (an image pulled for another handler).
  absl::Status EnsureUnpacked(const sdk::Iface<berth_snapshotter_v1>& snap,
                              const ImageInfo& image);
  // The writable layer `key` on `image`, in snapshotter `snapshotter` (a plugin id, "": the
  // default), mounted on `target`.
  absl::Status MountRootfs(const std::string& snapshotter, const std::string& key,
                           const ImageInfo& image, const std::string& target);
  absl::Status UnmountAndRemoveBundle(const std::string& id);
  // Image volumes (Mount.image): a read-only view of each image, mounted under the bundle
  // (image-mounts/<mount index>); their sources by mount index in *sources.
  absl::Status PrepareImageMounts(const ContainerRecord& rec, const std::string& snapshotter,
                                  std::map<int, std::string>* sources);
  // Unmounts and removes them (idempotent; what a crash left included).
  absl::Status RemoveImageMounts(const ContainerRecord& rec);
  // The pod's shim into its own cgroup under the pod's cgroup_parent (shim_cgroup: pod),
  // recorded before it is made.
  absl::Status PlaceShim(SandboxRecord* rec, TaskClient* tasks);
  // Removes that cgroup once the shim is gone (it may take a moment to exit).
  absl::Status RemoveShimCgroup(const SandboxRecord& rec);
  // The bundle, the writable layer and the cgroup of a container or pause container.
  absl::Status RemoveBundleLayerCgroup(const std::string& id, const std::string& cgroups_path);

  void FillSandbox(const Sandbox& sb, runtime::v1::PodSandbox* out);
  void FillSandboxStatus(const Sandbox& sb, runtime::v1::PodSandboxStatus* out);
  void FillContainer(const Container& c, runtime::v1::Container* out);
  void FillContainerStatus(const Container& c, runtime::v1::ContainerStatus* out);
  // The cgroup driver's statistics of `cgroups_path` (of `owner`, for the log); nullopt when
  // there are none.
  std::optional<nlohmann::json> CgroupStats(const std::string& cgroups_path,
                                            const std::string& owner);
  // What one stats call learnt: the pods whose shim did not answer Task/Stats in time. Their
  // other containers are read from the host at once, so a hung shim costs one timeout per
  // call, not one per container.
  struct StatsRound {
    std::set<std::string> silent_shims;  // sandbox ids
  };
  // A running container's statistics JSON: through its shim's Task/Stats when the handler's
  // shim is not berth-shim, else (or when the shim cannot say) from its cgroup on the host.
  std::optional<nlohmann::json> ContainerStatsJson(const ContainerRecord& rec,
                                                   const std::string& handler, StatsRound* round);
  absl::Status FillContainerStats(const std::shared_ptr<Container>& c,
                                  runtime::v1::ContainerStats* out, StatsRound* round);
  absl::Status FillPodStats(const std::shared_ptr<Sandbox>& sb, runtime::v1::PodSandboxStats* out,
                            StatsRound* round);

  // --- streaming ---
  // A connection to `port` of a ready sandbox: inside its network namespace (127.0.0.1,
  // then ::1), or on the host's loopback for a host-network pod.
  absl::StatusOr<sdk::UniqueFd> DialSandboxPort(const std::string& sandbox_id, int port);
  // The checks Exec and Attach share (kubernetes-streaming.md §2.1): the container ID, the
  // stdio flags, a running container, a running streaming server; the record in *rec.
  grpc::Status StreamableContainer(const char* rpc, const std::string& id, bool tty, bool in,
                                   bool out, bool err, ContainerRecord* rec);
  // An exec of `rec` with its exit registered (ExecExit, forgotten when the exec is deleted).
  absl::StatusOr<ExecStart> NewExecStart(const ContainerRecord& rec, const std::string& handler,
                                         std::string process_json);
  // The processes behind exec and attach URLs (stream_process.h).
  absl::StatusOr<std::unique_ptr<streaming::StreamedProcess>> StartStreamedExec(
      const runtime::v1::ExecRequest& req);
  absl::StatusOr<std::unique_ptr<streaming::StreamedProcess>> StartStreamedAttach(
      const runtime::v1::AttachRequest& req);
  // Whether `handler` runs berth-shim (berth.shim.v1) or another shim v2 binary (FIFOs).
  absl::StatusOr<bool> UsesBerthShim(const std::string& handler);
  // <state>/io/<container id>: the stdio FIFOs of a container of a non-berth-shim handler.
  std::string IoDir(const std::string& id) const { return options_.state_dir + "/io/" + id; }
  // ExecSync through Task/Exec with FIFOs (shims without berth.shim.v1/ExecSync).
  absl::StatusOr<ExecSyncResult> ExecSyncThroughFifos(const ContainerRecord& rec,
                                                      const std::string& handler,
                                                      const std::string& process_json,
                                                      uint64_t timeout_ms);
  // An exec's exit event: wakes its session, or deletes the exec if the session is gone.
  void ApplyExecExit(const std::string& sandbox_id, const std::string& id,
                     const std::string& exec_id, uint32_t status);

  // --- exits and events ---
  void OnTaskExit(const std::string& payload);
  void ExitWorker();
  void ApplyExit(const nlohmann::json& ev);
  void Emit(runtime::v1::ContainerEventType type, const std::string& container_id,
            const std::string& sandbox_id);
  absl::Status Reconcile();

  CriPlugin* plugin_;
  sdk::Host host_;
  RuntimeServiceOptions options_;

  std::mutex mu_;  // the maps and every record's fields
  std::condition_variable exit_cv_;
  std::map<std::string, std::shared_ptr<Sandbox>> sandboxes_;
  std::map<std::string, std::shared_ptr<Container>> containers_;
  std::map<std::string, std::string> sandbox_names_;    // SandboxName -> id
  std::map<std::string, std::string> container_names_;  // sandbox id + "/" + name -> id
  std::string pod_cidr_;
  // Read once at Start: the lowest oom_score_adj berthd may give and its bounding set.
  int oom_score_adj_min_ = 0;
  std::vector<std::string> host_capabilities_;

  std::mutex persist_mu_;  // orders store writes: the last write holds the latest state

  std::mutex image_mu_;  // one sandbox image pull at a time
  std::string sandbox_image_id_;

  std::mutex events_mu_;
  std::vector<std::shared_ptr<Subscriber>> subscribers_;

  std::mutex exits_mu_;
  std::condition_variable exits_cv_;
  std::deque<std::string> exits_;
  bool exits_stop_ = false;
  bool exits_paused_ = true;  // until Reconcile is done
  std::thread exit_worker_;
  uint64_t subscription_ = 0;

  std::unique_ptr<streaming::StreamingServer> streaming_;

  // Containers whose shim is not berth-shim: their stdio FIFOs and CRI logs.
  std::unique_ptr<FifoLogs> fifo_logs_;
  std::mutex shim_kind_mu_;
  std::map<std::string, bool> berth_shim_;  // by handler, once asked

  // Execs of streaming sessions: "<container id>/<exec id>" -> its exit.
  std::mutex exec_mu_;
  std::map<std::string, std::shared_ptr<ExecExit>> exec_exits_;
};

}  // namespace berth::cri
