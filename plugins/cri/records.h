// SPDX-License-Identifier: Apache-2.0
// What the CRI plugin knows of each pod sandbox and container: kept in memory (List* and
// *Status are served from here) and persisted in the host store (bucket "cri", keys
// "sandbox/<id>" and "container/<id>") before every side effect, so that a restarted berthd
// can complete or roll back whatever was in progress (docs/pods.md).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cri/v1/api.pb.h"
#include "nlohmann/json.hpp"

namespace berth::cri {

// Creating: persisted before any side effect; a crash leaves it to be rolled back.
// Removing: persisted before teardown; a crash leaves it to be completed.
enum class SandboxPhase { kCreating, kReady, kNotReady, kRemoving };
enum class ContainerPhase { kCreating, kCreated, kRunning, kExited, kRemoving };

const char* PhaseName(SandboxPhase p);
const char* PhaseName(ContainerPhase p);

struct SandboxRecord {
  std::string id;
  std::string name;  // <name>_<namespace>_<uid>_<attempt>: unique among sandboxes
  std::string handler;
  runtime::v1::PodSandboxConfig config;
  SandboxPhase phase = SandboxPhase::kCreating;
  int64_t created_at = 0;  // ns since the epoch
  std::string image_ref, image_id;  // the sandbox (pause) image
  std::string cgroups_path;         // the pause container's linux.cgroupsPath
  std::string shim_cgroups_path;    // the cgroup the pod's shim was moved to ("": none)
  // What SetUpPodInfra made (pod_infra.h).
  std::string sandbox_dir, hostname, hostname_path, hosts_path, resolv_conf_path, shm_path,
      net_ns_path, log_directory;
  uint32_t pid = 0;           // the pause process
  bool infra_stopped = false;  // StopPodInfra done (shm unmounted, netns unpinned)
  bool task_created = false;   // Task/Create of the pause container succeeded once
  std::vector<std::string> pod_ips;
  // The pod network: the CNI configuration directory of the sandbox's handler when it has one
  // ("": the network plugin's own), recorded before the attach, and the network's name.
  std::string net_conf_dir, network;
  // The plugin id of the snapshotter of the pod's rootfs layers (its handler's, else the
  // default), recorded when the sandbox is created; "": the default (older records).
  std::string snapshotter;

  nlohmann::json ToJson() const;
  static absl::StatusOr<SandboxRecord> FromJson(const nlohmann::json& j);
};

struct ContainerRecord {
  std::string id;
  std::string sandbox_id;
  std::string name;  // <name>_<attempt>: unique among the containers of one sandbox
  runtime::v1::ContainerConfig config;  // resources updated by UpdateContainerResources
  ContainerPhase phase = ContainerPhase::kCreating;
  std::string image_ref;     // ImageSpec.image as asked
  std::string image_id;      // sha256:<config digest>
  std::string image_name;    // a repo tag or digest reference of that image, for status
  std::string image_digest;  // the repo digest reference (ContainerStatus.image_ref)
  int64_t created_at = 0, started_at = 0, finished_at = 0;
  int32_t exit_code = 0;
  std::string reason, message;
  uint32_t pid = 0;
  std::string log_path;  // absolute; empty: no log file
  std::string cgroups_path;
  int stop_signal = 15;
  bool task_created = false;
  uint32_t uid = 0, gid = 0;  // the process's user from the spec
  std::vector<uint32_t> additional_gids;  // its process.user.additionalGids
  std::string username;

  nlohmann::json ToJson() const;
  static absl::StatusOr<ContainerRecord> FromJson(const nlohmann::json& j);
};

// "<name>_<namespace>_<uid>_<attempt>" of a sandbox.
std::string SandboxName(const runtime::v1::PodSandboxMetadata& m);
// "<name>_<attempt>" of a container within its sandbox.
std::string ContainerName(const runtime::v1::ContainerMetadata& m);

// Nanoseconds since the epoch, now.
int64_t NowNanos();
// RFC 3339 (as the runtime plugin publishes exits) to ns since the epoch; 0 when unparsable.
int64_t ParseTimeNanos(const std::string& rfc3339);

}  // namespace berth::cri
