/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The plugin descriptor and the one symbol every plugin exports.
 *
 * A plugin shared object exports exactly one function:
 *
 *     const berth_plugin_descriptor* berth_plugin_entry(void);
 *
 * It must not do any work: it returns a pointer to static data. The host checks the ABI
 * version and the descriptor before it calls any other function of the plugin.
 */
#ifndef BERTH_PLUGIN_H_
#define BERTH_PLUGIN_H_

#include "berth/abi.h"
#include "berth/host.h"

#ifdef __cplusplus
extern "C" {
#endif

#define BERTH_PLUGIN_ENTRY_SYMBOL "berth_plugin_entry"

/* Plugin kinds. A plugin has one kind; it may offer further interfaces. */
#define BERTH_KIND_SERVICE "service"
#define BERTH_KIND_IMAGE_STORE "image_store"
#define BERTH_KIND_SNAPSHOTTER "snapshotter"
#define BERTH_KIND_NETWORK "network"
#define BERTH_KIND_CGROUP_DRIVER "cgroup_driver"
#define BERTH_KIND_RUNTIME "runtime"

typedef struct berth_plugin_descriptor {
  uint32_t struct_size;
  uint16_t abi_major; /* BERTH_ABI_MAJOR the plugin was built against */
  uint16_t abi_minor; /* BERTH_ABI_MINOR the plugin was built against */
  const char* id;      /* reverse-DNS, unique: "io.berth.snapshotter.overlay" */
  const char* kind;    /* one of BERTH_KIND_* (or a third-party kind) */
  const char* version; /* the plugin's own version, semver */
  /* NULL-terminated list of what must start before this plugin: plugin kinds ("runtime":
   * every enabled plugin of that kind, at least one) or plugin ids. May be NULL. */
  const char* const* requires_list;

  /* Creates the instance. Configuration, directories and other plugins are reached through
   * `host`, which stays valid until shutdown returns. Returns BERTH_OK, BERTH_NOT_APPLICABLE
   * (with the reason in err) or an error code (with the message in err). */
  int32_t (*init)(const berth_host* host, void** instance, berth_sink* err);
  /* Returns the interface table named `iface` ("berth.snapshotter.v1"), or NULL. The table
   * is owned by the plugin and stays valid until shutdown. */
  const void* (*get_interface)(void* instance, const char* iface);
  /* Releases the instance. Called in reverse start order. Never fails. */
  void (*shutdown)(void* instance);

  /* since 1.1 */
  const char* description; /* one line for `berthd --list-plugins`; may be NULL */
  /* The plugin's default configuration subtree as a JSON object, printed by
   * `berthd --print-default-config`; NULL means "{}". */
  const char* default_config_json;
} berth_plugin_descriptor;

typedef const berth_plugin_descriptor* (*berth_plugin_entry_fn)(void);

#ifdef __cplusplus
}
#endif

#endif /* BERTH_PLUGIN_H_ */
