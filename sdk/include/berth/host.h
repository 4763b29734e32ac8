/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The host table: everything a plugin may ask of berthd. A plugin never links against
 * berthd symbols; it calls these function pointers (plugins link with --no-undefined).
 *
 * Every function takes the `ctx` of the table it came from; the host knows from it which
 * plugin is calling (for logging, configuration, store buckets and directories).
 */
#ifndef BERTH_HOST_H_
#define BERTH_HOST_H_

#include "berth/abi.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct berth_host_ctx berth_host_ctx; /* opaque, one per plugin */
typedef struct berth_txn berth_txn;           /* opaque store transaction */

/* An interface found through lookup(). */
typedef struct berth_iface_ref {
  uint32_t struct_size;
  const char* plugin_id; /* valid for the life of the daemon */
  const void* table;     /* the interface table; starts with uint32_t struct_size */
  void* instance;        /* pass to the table's functions */
} berth_iface_ref;

typedef struct berth_host {
  uint32_t struct_size;
  uint16_t abi_major;
  uint16_t abi_minor;
  berth_host_ctx* ctx;

  /* Logging into berthd's log, tagged with the plugin id. */
  void (*log)(berth_host_ctx* ctx, int32_t level, const char* msg, size_t len);
  /* The current minimum level (changes on SIGHUP); skip formatting below it. */
  int32_t (*log_level)(berth_host_ctx* ctx);

  /* The plugin's configuration subtree (`plugins: <id>:` in config.yaml) as JSON; "{}"
   * when the file has none. The plugin validates it and reports unknown keys itself. */
  int32_t (*get_config)(berth_host_ctx* ctx, berth_sink* out, berth_sink* err);
  /* A daemon-wide section as JSON: "daemon" (root, state, socket, ...) or "runtimes". */
  int32_t (*get_section)(berth_host_ctx* ctx, const char* name, berth_sink* out,
                         berth_sink* err);
  /* Directories assigned to this plugin (created 0700): <root>/<id> and <state>/<id>.
   * NUL-terminated, valid for the life of the daemon. */
  berth_str (*root_dir)(berth_host_ctx* ctx);
  berth_str (*state_dir)(berth_host_ctx* ctx);

  /* Finds interface `iface` ("berth.runtime.v1") of a started plugin: of `plugin_id`, or
   * of the first started plugin offering it when plugin_id is NULL. NOT_FOUND when none;
   * FAILED_PRECONDITION when the plugin exists but was skipped or failed (err says why). */
  int32_t (*lookup)(berth_host_ctx* ctx, const char* iface, const char* plugin_id,
                    berth_iface_ref* out, berth_sink* err);
  /* Calls cb for every started plugin that offers `iface`, in start order. cb returns 0 to
   * go on, anything else to stop. */
  void (*for_each)(berth_host_ctx* ctx, const char* iface,
                   int (*cb)(void* user, const berth_iface_ref* ref), void* user);
  /* Every plugin the host knows of, as a JSON array of objects with id, kind, version,
   * abi, file, description, state and reason. States: "loaded", "refused" (the file was
   * not accepted), "disabled" (not enabled by the configuration), "enabled" (not started
   * yet), "running", "skipped" (not applicable on this host), "failed", "stopped". */
  void (*list_plugins)(berth_host_ctx* ctx, berth_sink* out);

  /* The metadata store: transactional, crash-safe; buckets are private to the plugin. A
   * read-only transaction sees a consistent snapshot. Every begin is ended by exactly one
   * commit or abort, which frees the transaction. Keys and values are arbitrary bytes. */
  int32_t (*store_begin)(berth_host_ctx* ctx, int writable, berth_txn** txn, berth_sink* err);
  /* NOT_FOUND when the key is absent. */
  int32_t (*store_get)(berth_txn* txn, const char* bucket, berth_str key, berth_sink* value,
                       berth_sink* err);
  int32_t (*store_put)(berth_txn* txn, const char* bucket, berth_str key, berth_str value,
                       berth_sink* err);
  /* Deleting an absent key is not an error. */
  int32_t (*store_delete)(berth_txn* txn, const char* bucket, berth_str key, berth_sink* err);
  /* Calls cb for every key starting with prefix, in byte order; cb returns 0 to go on. */
  int32_t (*store_scan)(berth_txn* txn, const char* bucket, berth_str prefix,
                        int (*cb)(void* user, berth_str key, berth_str value), void* user,
                        berth_sink* err);
  int32_t (*store_commit)(berth_txn* txn, berth_sink* err);
  void (*store_abort)(berth_txn* txn);

  /* Publishes an event (payload is usually JSON) on `topic` ("/containers/create").
   * berthd itself publishes "/berthd/stopping" before it stops any plugin: a plugin doing
   * long work (a pull) should subscribe and end it. */
  int32_t (*publish)(berth_host_ctx* ctx, const char* topic, berth_str payload,
                     berth_sink* err);

  /* since 1.1 */
  /* Calls cb (on the publisher's thread; return quickly) for every event whose topic starts
   * with topic_prefix. Returns an id for unsubscribe, 0 on failure. After unsubscribe
   * returns, cb is not running and never runs again. */
  uint64_t (*subscribe)(berth_host_ctx* ctx, const char* topic_prefix,
                        void (*cb)(void* user, berth_str topic, berth_str payload), void* user);
  void (*unsubscribe)(berth_host_ctx* ctx, uint64_t subscription);
  /* "FILE:LINE" of a key of the plugin's configuration subtree, for error messages:
   * key_path is dotted and relative to the subtree ("cgroup_driver", "limits.max"), or
   * absolute when it starts with '/' ("/runtimes.runc.options"). */
  void (*config_where)(berth_host_ctx* ctx, const char* key_path, berth_sink* out);
} berth_host;

#ifdef __cplusplus
}
#endif

#endif /* BERTH_HOST_H_ */
