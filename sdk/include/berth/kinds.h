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

/* ---- image_store: pulls, stores and lists images ---- */
#define BERTH_IFACE_IMAGE_STORE_V1 "berth.image_store.v1"
typedef struct berth_image_store_v1 {
  uint32_t struct_size;
  int32_t (*status)(void* instance, berth_sink* out, berth_sink* err);
} berth_image_store_v1;

/* ---- snapshotter: layered filesystems for images and containers ---- */
#define BERTH_IFACE_SNAPSHOTTER_V1 "berth.snapshotter.v1"
typedef struct berth_snapshotter_v1 {
  uint32_t struct_size;
  int32_t (*status)(void* instance, berth_sink* out, berth_sink* err);
  /* The snapshotter's name as configured by users ("overlayfs"). */
  berth_str (*name)(void* instance);
} berth_snapshotter_v1;

/* ---- network: pod network set-up (CNI) ---- */
#define BERTH_IFACE_NETWORK_V1 "berth.network.v1"
typedef struct berth_network_v1 {
  uint32_t struct_size;
  /* ready=false with reason "NetworkPluginNotReady" when no usable network config exists. */
  int32_t (*status)(void* instance, berth_sink* out, berth_sink* err);
} berth_network_v1;

/* ---- cgroup_driver: cgroup paths, resources and stats ---- */
#define BERTH_IFACE_CGROUP_DRIVER_V1 "berth.cgroup_driver.v1"
typedef struct berth_cgroup_driver_v1 {
  uint32_t struct_size;
  int32_t (*status)(void* instance, berth_sink* out, berth_sink* err);
  /* The kubelet's name for this driver: "cgroupfs" or "systemd". */
  berth_str (*driver_name)(void* instance);
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
} berth_runtime_v1;

#ifdef __cplusplus
}
#endif

#endif /* BERTH_KINDS_H_ */
