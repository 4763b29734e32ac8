/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Interface tables, one per plugin kind, fetched with get_interface(instance, NAME).
 * Each table starts with struct_size and grows only at its end; a v2 gets a new name so
 * that a plugin may offer both.
 *
 * Common to every kind: status() writes a JSON object
 *     {"ready": bool, "reason": "CamelCase", "message": "human text"}
 * describing whether the plugin can do its work right now (reason and message are empty
 * when ready). It is cheap and may be called often (CRI Status).
 */
#ifndef BERTH_KINDS_H_
#define BERTH_KINDS_H_

#include "berth/abi.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- service: a server started after every plugin is initialised (the CRI service) ---- */
#define BERTH_IFACE_SERVICE_V1 "berth.service.v1"
typedef struct berth_service_v1 {
  uint32_t struct_size;
  int32_t (*status)(void* instance, berth_sink* out, berth_sink* err);
  /* Starts serving; returns once listening. Called in start order after all inits. */
  int32_t (*start)(void* instance, berth_sink* err);
  /* Stops serving; in-flight calls are cancelled. Called before any shutdown. */
  void (*stop)(void* instance);
} berth_service_v1;

/* ---- image_store: pulls, stores and lists images ----
 *
 * Image objects (JSON): {"id": "sha256:<config digest>", "repo_tags": [str],
 *   "repo_digests": [str], "size": bytes, "uid": int|null, "username": str,
 *   "annotations": {str: str}, "pinned": bool, "chain_id": str (top layer snapshot),
 *   "config": <the image config object>, "manifest_digest": str}
 * A reference is a tag ("busybox", "docker.io/library/busybox:1.36"), a digest reference
 * ("name@sha256:..."), an image id ("sha256:<hex>") or an unambiguous id prefix.
 *
 * Snapshotters: an image store that unpacks per runtime handler (runtimes: <handler>:
 * snapshotter) says so in status(), after the common fields:
 *   "snapshotter": str (plugin id of its default snapshotter),
 *   "handler_snapshotters": {"<handler>": "<plugin id>"}
 * The CRI plugin takes both from there, so that pods and images agree.
 */
#define BERTH_IFACE_IMAGE_STORE_V1 "berth.image_store.v1"
typedef struct berth_image_store_v1 {
  uint32_t struct_size;
  int32_t (*status)(void* instance, berth_sink* out, berth_sink* err);
  /* Pulls `ref`. auth_json: {"username","password","auth","identity_token",
   * "registry_token","server_address"} or empty. options_json, or empty:
   *   {"runtime_handler": str (unpack into that handler's snapshotter),
   *    "snapshotter": str (optional; a snapshotter's name or plugin id, which wins),
   *    "unpack_only": bool (optional; `ref` names an image of this store, whose layers are
   *                   unpacked from the content store into the snapshotter, without a
   *                   registry; NOT_FOUND when there is no such image)}
   * progress (may be NULL) receives JSON objects {"ref", "layers_done",
   * "layers_total", "bytes_done", "bytes_total"} while the pull runs, on the pulling
   * thread. Writes the image id. */
  int32_t (*pull)(void* instance, berth_str ref, berth_str auth_json, berth_str options_json,
                  void (*progress)(void* user, berth_str json), void* user, berth_sink* image_id,
                  berth_sink* err);
  /* The image object for `ref`; NOT_FOUND when no image matches. */
  int32_t (*image_status)(void* instance, berth_str ref, berth_sink* image, berth_sink* err);
  /* A JSON array of image objects; filter_ref (may be empty) keeps the images it names. */
  int32_t (*list)(void* instance, berth_str filter_ref, berth_sink* images, berth_sink* err);
  /* Removes the image `ref` names (a tag removes only that tag while others remain); its
   * blobs and snapshots are collected when nothing uses them. NOT_FOUND when absent. */
  int32_t (*remove)(void* instance, berth_str ref, berth_sink* err);
  /* {"image_fs": {"mountpoint", "used_bytes", "inodes_used"}} for CRI ImageFsInfo; optionally
   * "image_filesystems": [ same objects, one per filesystem, image_fs first ]. */
  int32_t (*fs_info)(void* instance, berth_sink* info, berth_sink* err);
} berth_image_store_v1;

/* ---- snapshotter: layered filesystems for images and containers ----
 *
 * containerd's snapshot model. A snapshot is "committed" (immutable, may be a parent),
 * "active" (writable, made by prepare) or "view" (read-only, made by view). Keys and names
 * share one namespace, at most 256 bytes, no NUL. Snapshots being created are invisible
 * until complete, and leftovers of a crash are removed when the plugin starts.
 *
 * Mounts are written as a JSON array of objects in the OCI mount form
 *     [{"type": "overlay", "source": "overlay", "options": ["lowerdir=...", ...]}]
 * or  [{"type": "bind", "source": "/abs/dir", "options": ["rbind", "ro"]}]
 * An object may carry "chdir": "/abs/dir": its relative paths (in options) are relative to
 * that directory, so the caller must mount from a thread whose working directory is there
 * (see berth/mount.hpp); this keeps deep layer chains under the mount data size limit.
 *
 * Info objects: {"name": str, "parent": str, "kind": "committed"|"active"|"view",
 *                "labels": {str: str}, "created": RFC 3339 str}
 */
#define BERTH_IFACE_SNAPSHOTTER_V1 "berth.snapshotter.v1"
typedef struct berth_snapshotter_v1 {
  uint32_t struct_size;
  int32_t (*status)(void* instance, berth_sink* out, berth_sink* err);
  /* The snapshotter's name as configured by users ("overlayfs"). */
  berth_str (*name)(void* instance);
  /* Creates active snapshot `key` on committed `parent` (empty: none) and writes its
   * mounts. labels_json: a JSON object of strings, or empty. ALREADY_EXISTS, NOT_FOUND
   * (parent), FAILED_PRECONDITION (parent not committed), INVALID_ARGUMENT (key: empty,
   * over 256 bytes, NUL or not UTF-8; labels). */
  int32_t (*prepare)(void* instance, berth_str key, berth_str parent, berth_str labels_json,
                     berth_sink* mounts, berth_sink* err);
  /* Like prepare, for a read-only view. */
  int32_t (*view)(void* instance, berth_str key, berth_str parent, berth_str labels_json,
                  berth_sink* mounts, berth_sink* err);
  /* The mounts of an active snapshot or view. */
  int32_t (*mounts)(void* instance, berth_str key, berth_sink* mounts, berth_sink* err);
  /* Turns active snapshot `key` into committed snapshot `name`; `key` is gone after. */
  int32_t (*commit)(void* instance, berth_str name, berth_str key, berth_str labels_json,
                    berth_sink* err);
  /* Removes a snapshot; FAILED_PRECONDITION while it has children. */
  int32_t (*remove)(void* instance, berth_str key, berth_sink* err);
  /* The info object of one snapshot. */
  int32_t (*stat)(void* instance, berth_str key, berth_sink* info, berth_sink* err);
  /* {"size": bytes, "inodes": n} used by the snapshot's own layer. */
  int32_t (*usage)(void* instance, berth_str key, berth_sink* usage, berth_sink* err);
  /* A JSON array of the info objects of every snapshot. */
  int32_t (*walk)(void* instance, berth_sink* infos, berth_sink* err);
  /* The filesystem holding the snapshots: {"mountpoint": str, "used_bytes": n,
   * "inodes_used": n} (what CRI ImageFsInfo reports). */
  int32_t (*fs_usage)(void* instance, berth_sink* usage, berth_sink* err);
} berth_snapshotter_v1;

/* ---- network: pod network set-up (CNI) ----
 *
 * Attachment requests (JSON), as the CRI plugin sends them for a pod sandbox:
 *   {"sandbox_id": str, "netns": str (the pinned network namespace; may be "" or gone for
 *    detach), "pod_name": str, "pod_namespace": str, "pod_uid": str,
 *    "port_mappings": [{"protocol": "tcp"|"udp"|"sctp", "container_port": int,
 *                       "host_port": int, "host_ip": str}],
 *    "annotations": {str: str} (the sandbox's), "pod_cidr": str (from UpdateRuntimeConfig),
 *    "conf_dir": str (optional; the pod's runtime handler's cni_conf_dir: attach with the
 *    network of that configuration directory instead of the plugin's own)}
 * Attachment results (JSON):
 *   {"ips": [str] (pod addresses without prefix length, IPv4 first), "interfaces": [...],
 *    "dns": {"nameservers": [str], "domain": str, "search": [str], "options": [str]},
 *    "network": str (the network's name), "config_file": str (optional; where it was read)}
 * A plugin that honours "conf_dir" learns the directories from the "runtimes" section
 * (get_section) and says so in status(): after the common fields, and without using the
 * key "ready" again (the SDK's QueryStatus reads the first one it finds),
 *   "conf_dirs": {"<dir>": {"network_ready": bool, "reason": str, "message": str}}
 * for its own directory and each handler's. The CRI plugin refuses to start with a handler's
 * cni_conf_dir that the network plugin's status does not list.
 */
#define BERTH_IFACE_NETWORK_V1 "berth.network.v1"
typedef struct berth_network_v1 {
  uint32_t struct_size;
  /* ready=false with reason "NetworkPluginNotReady" when no usable network config exists
   * (its own configuration; the handlers' directories are in "conf_dirs"). */
  int32_t (*status)(void* instance, berth_sink* out, berth_sink* err);
  /* since 1.1: pod networks (docs/networking.md). */
  /* Attaches the pod to the network inside request.netns and writes the result. On failure
   * whatever was attached is detached again before it returns; FAILED_PRECONDITION when no
   * usable network configuration exists. */
  int32_t (*attach)(void* instance, berth_str request_json, berth_sink* result,
                    berth_sink* err);
  /* Detaches the pod, with what attach recorded (a configuration changed or removed since,
   * or a restart, do not matter). Idempotent: OK when nothing is attached. */
  int32_t (*detach)(void* instance, berth_str request_json, berth_sink* err);
  /* Checks that the attachment is as attach left it (CNI CHECK); NOT_FOUND when the pod is
   * not attached. */
  int32_t (*check)(void* instance, berth_str request_json, berth_sink* err);
  /* Detaches every recorded attachment whose sandbox id is not in sandbox_ids_json (a JSON
   * array of strings), then lets the network's plugins collect what they still hold for
   * other pods (CNI GC, for 1.1 configurations). */
  int32_t (*gc)(void* instance, berth_str sandbox_ids_json, berth_sink* err);
} berth_network_v1;

/* ---- cgroup_driver: cgroup paths, resources and stats ---- */
#define BERTH_IFACE_CGROUP_DRIVER_V1 "berth.cgroup_driver.v1"
typedef struct berth_cgroup_driver_v1 {
  uint32_t struct_size;
  int32_t (*status)(void* instance, berth_sink* out, berth_sink* err);
  /* The kubelet's name for this driver: "cgroupfs" or "systemd". */
  berth_str (*driver_name)(void* instance);
  /* since 1.1: cgroups of pods and containers (docs/cgroups.md). */
  /* The OCI linux.cgroupsPath for process group `id` (a sandbox or container id) under the
   * kubelet's `cgroup_parent` (PodSandboxConfig.linux.cgroup_parent, in this driver's
   * syntax; empty: the driver's default parent). INVALID_ARGUMENT naming what is wrong. */
  int32_t (*cgroup_path)(void* instance, berth_str cgroup_parent, berth_str id, berth_sink* out,
                         berth_sink* err);
  /* Statistics of the cgroup at `cgroups_path` (as returned by cgroup_path), JSON:
   * {"timestamp_ns","cpu":{"usage_ns","user_ns","system_ns","psi"},"memory":{"usage_bytes",
   * "working_set_bytes","rss_bytes","page_faults","major_page_faults","limit_bytes",
   * "oom_kills","psi"},"io":{"psi"},"pids":{"current","limit"}}, each "psi" (pressure stall
   * information, where the kernel has it) {"some":{"total_ns","avg10","avg60","avg300"},
   * "full":{...}} with averages in percent; absent figures (and groups left empty) are left
   * out. NOT_FOUND when the cgroup does not exist. */
  int32_t (*stats)(void* instance, berth_str cgroups_path, berth_sink* out, berth_sink* err);
  /* Removes the cgroup (in every hierarchy) when it exists and holds no process; OK when it
   * does not exist; FAILED_PRECONDITION naming a pid when processes remain. */
  int32_t (*remove)(void* instance, berth_str cgroups_path, berth_sink* err);
  /* since 1.2: Moves running process `pid` (of berthd's PID namespace) into the cgroup at
   * `cgroups_path` (as returned by cgroup_path), creating that cgroup: a pod's shim, so that
   * it is accounted to the pod and is not in berthd's own cgroup. cgroupfs: a directory in
   * every hierarchy; systemd: a transient scope with Delegate=yes in the path's slice. A
   * cgroup or scope that exists already (left by a crash) is joined, not duplicated.
   * INVALID_ARGUMENT for a path not in the driver's form, NOT_FOUND when the process is
   * gone, otherwise the kernel's or systemd's reason naming the cgroup or unit. Removed with
   * remove() once the process has exited. */
  int32_t (*enter)(void* instance, berth_str cgroups_path, int64_t pid, berth_sink* err);
} berth_cgroup_driver_v1;

/* ---- runtime: an OCI runtime handler (RuntimeClass handler) ---- */
#define BERTH_IFACE_RUNTIME_V1 "berth.runtime.v1"
typedef struct berth_runtime_v1 {
  uint32_t struct_size;
  int32_t (*status)(void* instance, berth_sink* out, berth_sink* err);
  /* Declares handler `name` (the RuntimeClass handler) with its `options` (JSON object,
   * from `runtimes: <name>: options:`). INVALID_ARGUMENT with a precise message when the
   * options are wrong. Called by the service plugin while it starts. */
  int32_t (*add_handler)(void* instance, berth_str name, berth_str options_json,
                         berth_sink* err);
  /* status() of one handler: is its runtime binary usable? Same JSON as status(). */
  int32_t (*handler_status)(void* instance, berth_str name, berth_sink* out, berth_sink* err);
  /* since 1.1: tasks, through the pod's shim (the shim v2 Task API; see docs/shim.md). */
  /* One ttrpc call on the shim that serves `sandbox_id`. `service` is
   * "containerd.task.v2.Task" or an extension service of the shim ("berth.shim.v1.Shim"),
   * `method` one of its methods, `request` and `response` serialized protobuf messages. A
   * Task/Create starts the sandbox's shim through `handler` (or finds the running one) and
   * records the task; a Task/Delete forgets it; the plugin follows every task it knows and
   * publishes its exit on the host event bus (topic "/runtime/task-exit", JSON). timeout_ms
   * 0: the plugin's default deadline. Errors keep the shim's status code and message. */
  int32_t (*shim_call)(void* instance, berth_str handler, berth_str sandbox_id,
                       berth_str service, berth_str method, berth_str request,
                       uint64_t timeout_ms, berth_sink* response, berth_sink* err);
  /* Plugin-level operations with JSON in and out ("tasks", "remove_sandbox"; docs/shim.md). */
  int32_t (*control)(void* instance, berth_str op, berth_str request_json, berth_sink* out,
                     berth_sink* err);
} berth_runtime_v1;

#ifdef __cplusplus
}
#endif

#endif /* BERTH_KINDS_H_ */
