// SPDX-License-Identifier: Apache-2.0
// The per-pod infrastructure RunPodSandbox sets up before the pause container starts, and
// StopPodSandbox/RemovePodSandbox tear down:
//
//   <state_dir>/sandboxes/<id>/hostname     the pod's hostname               (0644)
//   <state_dir>/sandboxes/<id>/hosts        localhost lines + the hostname   (0644)
//   <state_dir>/sandboxes/<id>/resolv.conf  from DNSConfig, else the host's  (0644)
//   <state_dir>/sandboxes/<id>/shm          a tmpfs for /dev/shm (not for host IPC)
//   <netns_dir>/<id>                        the pinned network namespace (not for host network)
//   PodSandboxConfig.log_directory          created 0755 if missing (never removed here)
//
// Every path follows from PodInfraOptions, so a restarted berthd can tear a pod down without
// having persisted PodInfra. Files are written atomically (temporary file + rename). The
// paths feed SpecInputs (oci_spec.h) through ApplyPodInfra.
//
// Request errors are INVALID_ARGUMENT naming the field: dns_config.servers[1] "x": ...
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "cri/v1/api.pb.h"
#include "plugins/cri/oci_spec.h"

namespace berth::cri {

struct PodInfraOptions {
  // The sandbox's id (a plain file name; the CRI plugin's 64-hex id).
  std::string sandbox_id;
  // berthd's CRI state directory: the pod's files go to <state_dir>/sandboxes/<id>.
  std::string state_dir;
  // Where network namespaces are pinned; empty = <state_dir>/netns. Prepared (a shared self
  // bind mount, see netns.cc) on first use.
  std::string netns_dir;
  // The node's hostname; empty = gethostname(2).
  std::string node_hostname;
  // The host files copied for host-network pods (hosts) and an empty DNSConfig (resolv.conf).
  std::string host_hosts_path = "/etc/hosts";
  std::string host_resolv_conf_path = "/etc/resolv.conf";
  // Size of the pod's /dev/shm tmpfs.
  uint64_t shm_size_bytes = 64ull << 20;
};

// What SetUpPodInfra made. Empty paths were not made (host network: no netns; host IPC: no
// shm; no log_directory in the request).
struct PodInfra {
  std::string sandbox_dir;
  std::string hostname;  // written to hostname_path
  std::string hostname_path, hosts_path, resolv_conf_path;
  std::string shm_path;
  std::string net_ns_path;
  std::string log_directory;
};

// Validates the request, then makes the sandbox directory, the pod files, the shm tmpfs and
// the network namespace, and creates the log directory. When a step fails, what the earlier
// steps made is undone before the error is returned (its message says so if undoing failed
// too). ALREADY_EXISTS when the sandbox directory exists.
[[nodiscard]] absl::StatusOr<PodInfra> SetUpPodInfra(const runtime::v1::PodSandboxConfig& config,
                                                     const PodInfraOptions& options);

// StopPodSandbox's part (after CNI DEL, which needs the netns path, and after the containers
// stopped): unmounts the shm tmpfs and removes the netns pin. Idempotent.
[[nodiscard]] absl::Status StopPodInfra(const PodInfraOptions& options);

// RemovePodSandbox's part: StopPodInfra, then removes the sandbox directory. Idempotent. The
// directory is not removed (FAILED_PRECONDITION naming the mount) while anything is still
// mounted at or under it. The log directory is left to the kubelet.
[[nodiscard]] absl::Status TearDownPodInfra(const PodInfraOptions& options);

// Fills hostname_path, hosts_path, resolv_conf_path, shm_path and net_ns_path.
void ApplyPodInfra(const PodInfra& infra, SpecInputs* in);

// --- Pieces, exposed for the CRI service and for tests ---------------------------------------

// The hostname a pod gets: PodSandboxConfig.hostname, else the node's (what containerd does;
// the kubelet always sets it for pod-network pods). INVALID_ARGUMENT naming `hostname` when it
// is not 1-64 bytes of [A-Za-z0-9._-] (the kernel's limit is 64; it goes into /etc/hosts).
[[nodiscard]] absl::StatusOr<std::string> PodHostname(const runtime::v1::PodSandboxConfig& config,
                                                      absl::string_view node_hostname);

// /etc/hosts of a pod with its own network: IPv4 and IPv6 localhost lines, then the hostname
// on each pod IP, or on 127.0.0.1 and ::1 while no IP is known (before CNI ran; call again
// with the IPs and WriteFileAtomic to rewrite it).
[[nodiscard]] std::string RenderHosts(absl::string_view hostname,
                                      const std::vector<std::string>& pod_ips = {});

// Is any field of the DNSConfig set? (No: the host's resolv.conf is copied.)
[[nodiscard]] bool HasDnsConfig(const runtime::v1::DNSConfig& dns);

// Validates a DNSConfig (INVALID_ARGUMENT naming dns_config.<field>[i]).
//  - servers: IPv4 or IPv6 addresses (an IPv6 zone "%eth0" is allowed), at most 32 (glibc
//    reads the first 3; the kubelet enforces 3);
//  - searches: at most 32 names of 1-253 bytes, 2048 bytes in all (the kubelet's limits);
//  - options: at most 32 of 1-256 bytes;
//  - no entry may be empty or hold whitespace, control characters or '#'/';' (a comment
//    would hide the rest of the line, a newline would inject a line).
[[nodiscard]] absl::Status ValidateDnsConfig(const runtime::v1::DNSConfig& dns);

// resolv.conf text of a valid DNSConfig: "search", "nameserver" and "options" lines.
[[nodiscard]] absl::StatusOr<std::string> RenderResolvConf(const runtime::v1::DNSConfig& dns);

// PodSandboxConfig.log_directory: absolute, no ".." segment, not "/" (INVALID_ARGUMENT naming
// `log_directory`). Empty is valid (containers get no log file).
[[nodiscard]] absl::Status ValidateLogDirectory(absl::string_view log_directory);

// ContainerConfig.log_path joined to the sandbox's log directory: relative, no ".." segment,
// naming a file strictly under the directory (INVALID_ARGUMENT naming `log_path`). Returns ""
// when either is empty (no log file), the cleaned joined path otherwise. The check is lexical:
// the log directory belongs to the kubelet, and symlinks in it are its business.
[[nodiscard]] absl::StatusOr<std::string> ValidateContainerLogPath(absl::string_view log_directory,
                                                                   absl::string_view log_path);

// oom_score_adj: the lowest value this process may give its children, and a value clamped to
// [that, 1000]. Without CAP_SYS_RESOURCE (in the initial user namespace: the kernel checks it
// there) a process cannot go below its own oom_score_adj; with it, down to -1000.
[[nodiscard]] int OomScoreAdjMin();
[[nodiscard]] int ClampOomScoreAdj(int requested);
// The pure rule, with the process's values injected.
[[nodiscard]] int ClampOomScoreAdj(int requested, int current, bool has_cap_sys_resource);
// Is CAP_SYS_RESOURCE (bit 24) in the "CapEff:" line of a /proc/<pid>/status text?
[[nodiscard]] bool CapEffHasSysResource(absl::string_view proc_status);

// Writes `content` to `path` through a temporary file in the same directory and rename(2),
// with `mode`. No fsync: pod files do not outlive a reboot (neither do shm or the netns).
[[nodiscard]] absl::Status WriteFileAtomic(const std::string& path, absl::string_view content,
                                           mode_t mode = 0644);

// Mount points at or under `dir` in this process's mount namespace (from
// /proc/self/mountinfo), in mount order. `dir` must exist (it is resolved with realpath).
[[nodiscard]] absl::StatusOr<std::vector<std::string>> MountPointsUnder(const std::string& dir);

}  // namespace berth::cri
