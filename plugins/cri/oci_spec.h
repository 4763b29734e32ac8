// SPDX-License-Identifier: Apache-2.0
// The OCI runtime spec (config.json) of pod sandboxes and containers, built from the
// kubelet's CRI requests, the image config and what the CRI plugin prepared (namespace
// paths, pod files, cgroup path). Deterministic for a given node: the only system calls read
// the rootfs's /etc/passwd and /etc/group, stat(2) mount and device sources, read the mount
// table (propagation sources), the node's /dev (privileged containers) and CDI spec files
// (only when a container asks for a CDI device); SpecInputs names each of them, for tests.
//
// Every rejection of the request is INVALID_ARGUMENT naming the field, e.g.
//   mounts[2].host_path "/nope": no such file or directory
// What this node cannot do is FAILED_PRECONDITION naming the field and why (user namespaces,
// a propagation source that is not on a shared or slave mount, a CDI device node missing on
// the node). Features berth does not implement yet (image volume mounts, id-mapped mounts,
// recursive read-only mounts on a runtime without "rro") are UNIMPLEMENTED.
//
// Security profiles (the HOOK(security-profiles) step in oci_spec.cc, seccomp_profile.h,
// lsm.h): linux.seccomp from SecurityProfile seccomp (or seccomp_profile_path),
// process.apparmorProfile and process.selinuxLabel / linux.mountLabel when the node has the
// LSM. They read the node (Localhost profile files, /sys for the LSMs) through
// SpecInputs::security. Privileged sandboxes and containers get none of them.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cri/v1/api.pb.h"
#include "plugins/cri/cdi.h"
#include "plugins/cri/lsm.h"

namespace berth::cri {

struct Rlimit {
  std::string type;  // "RLIMIT_NOFILE"
  uint64_t hard = 0;
  uint64_t soft = 0;
};

// What the CRI plugin resolved before the spec is built.
struct SpecInputs {
  std::string sandbox_id, container_id;
  // Host path of the mounted rootfs: /etc/passwd and /etc/group are read from it.
  std::string rootfs_path;
  // root.path of the spec; empty = rootfs_path (absolute). A bundle-relative "rootfs" is
  // what runc and crun expect when the shim mounts the rootfs inside the bundle.
  std::string spec_root_path;
  // linux.cgroupsPath from the cgroup driver; empty leaves it out.
  std::string cgroups_path;
  // Namespaces to join. Sandbox: a non-empty path is joined (a pinned netns), empty creates
  // one. Container: the sandbox's namespaces; empty creates a new one. pid_ns_path is the
  // sandbox's pid namespace for pid mode POD, or the target container's for TARGET (then
  // required); it is ignored for CONTAINER. Mode NODE leaves the namespace out (the host's).
  std::string net_ns_path, ipc_ns_path, uts_ns_path, pid_ns_path;
  // A private cgroup namespace (what runtimes do on cgroup v2 hosts).
  bool cgroup_namespace = false;
  // Files/dirs prepared for the pod; empty = not mounted. Containers only, except shm_path,
  // which the sandbox mounts too (a tmpfs at /dev/shm otherwise).
  std::string hostname_path, hosts_path, resolv_conf_path, shm_path;
  // The node's hostname: HOSTNAME of host-network pods whose config has no hostname.
  std::string node_hostname;
  // The lowest oom_score_adj berthd may set (-1000 with CAP_SYS_RESOURCE, else its own
  // value, typically 0): container and sandbox values are clamped to [min, 1000].
  int oom_score_adj_min = -1000;
  // berthd's capability bounding set ("CAP_CHOWN", ...). Privileged containers and "ALL"
  // get exactly these; defaults are limited to them. Empty = every capability known here.
  std::vector<std::string> host_capabilities;
  // The image reference shown in io.kubernetes.cri.image-name; empty = the config's image.
  std::string image_name;
  // Where image config Volumes not covered by a CRI mount are bound from: each one gets
  // <image_volumes_dir>/<ImageVolumeDirName(path)>, which the plugin must create (and fill
  // from the image) before starting the container. Empty = image Volumes are not mounted
  // (they stay plain directories of the writable rootfs).
  std::string image_volumes_dir;
  // Mount.image (image volumes): for mounts[i] with an image, the host directory prepared
  // from that image (a view of its layers; image_sub_path not yet applied), bound read-only.
  // A mount with an image and no entry here is refused (FAILED_PRECONDITION).
  std::map<int, std::string> image_mount_sources;
  // process.rlimits; empty = inherited from the runtime (berthd's limits).
  std::vector<Rlimit> rlimits;
  // linux.resources.pids.limit of containers; 0 = not set (the kubelet limits the pod).
  int64_t pids_limit = 0;
  // The runtime knows the "rro" mount option (`runc features` lists it): without it a
  // Mount.recursive_read_only request is UNIMPLEMENTED rather than silently not recursive.
  bool runtime_supports_rro = false;
  // What security profiles read from the node (LSM support, Localhost seccomp files);
  // default-constructed = the real host.
  SecurityEnv security;
  // The mount table that BIDIRECTIONAL and HOST_TO_CONTAINER mount sources are checked
  // against (they must be on a shared, or shared or slave, mount to propagate at all).
  std::string mountinfo_path = "/proc/self/mountinfo";
  // Where privileged containers get the node's device nodes from (all of them, as with
  // containerd and Docker), and the node's path of them.
  std::string host_dev_dir = "/dev";
  // Where CDI spec files are looked up for ContainerConfig.CDI_devices and the cdi.k8s.io/*
  // annotations, in increasing priority (cdi.h). Read only when a container asks for a device.
  std::vector<std::string> cdi_spec_dirs = DefaultCdiSpecDirs();
};

// The pause container of a pod: args from the pause image, namespaces created per the
// sandbox's NamespaceOption (or joined when a path is given), hostname, sysctls,
// oom_score_adj -998 (clamped), cpu shares 2, cgroupsPath.
[[nodiscard]] absl::StatusOr<nlohmann::json> BuildSandboxSpec(
    const runtime::v1::PodSandboxConfig& sandbox, const nlohmann::json& pause_image_config,
    const SpecInputs& in);

// A container of the pod. `image_config` is the OCI image config document (with its
// "config" object) or that object alone.
[[nodiscard]] absl::StatusOr<nlohmann::json> BuildContainerSpec(
    const runtime::v1::PodSandboxConfig& sandbox, const runtime::v1::ContainerConfig& config,
    const nlohmann::json& image_config, const SpecInputs& in);

// The process object of an exec into the container whose spec is `container_spec`: its
// process with `cmd` as args and `tty` as terminal.
[[nodiscard]] absl::StatusOr<nlohmann::json> BuildExecProcess(const nlohmann::json& container_spec,
                                                              const std::vector<std::string>& cmd,
                                                              bool tty);

// The signal that stops the container: ContainerConfig.stop_signal, else the image's
// StopSignal ("SIGTERM", "TERM", "15", "SIGRTMIN+3"), else SIGTERM.
[[nodiscard]] absl::StatusOr<int> ResolveStopSignal(const runtime::v1::ContainerConfig& config,
                                                    const nlohmann::json& image_config);

// The directory name under SpecInputs::image_volumes_dir for an image Volume path: the
// cleaned path with "%" and "/" percent-escaped ("/var/lib/x" -> "var%2Flib%2Fx").
[[nodiscard]] std::string ImageVolumeDirName(const std::string& container_path);

// The image Volumes BuildContainerSpec binds from image_volumes_dir (cleaned paths, sorted),
// i.e. those no CRI mount covers: the directories the plugin has to prepare.
[[nodiscard]] absl::StatusOr<std::vector<std::string>> ImageVolumesToMount(
    const runtime::v1::ContainerConfig& config, const nlohmann::json& image_config);

// linux.resources (without devices) for ContainerConfig.linux.resources, as the spec and
// UpdateContainerResources use it; INVALID_ARGUMENT naming linux.resources.<field>.
[[nodiscard]] absl::StatusOr<nlohmann::json> BuildLinuxResources(
    const runtime::v1::LinuxContainerResources& resources, const SpecInputs& in);

// The capabilities of a "CapBnd:" hex mask (from /proc/<pid>/status), kernel order; bits
// without a known name are left out.
[[nodiscard]] std::vector<std::string> CapabilitiesOfMask(uint64_t mask);
// berthd's own bounding set (SpecInputs::host_capabilities); empty when unreadable.
[[nodiscard]] std::vector<std::string> HostCapabilities();

// The default capability set of containers, "CAP_"-prefixed.
[[nodiscard]] const std::vector<std::string>& DefaultCapabilities();

}  // namespace berth::cri
