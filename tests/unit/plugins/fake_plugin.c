/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A plugin written in plain C99 against the C ABI only, compiled several times by the test
 * build with different definitions to produce good and bad plugin files:
 *   FAKE_ID, FAKE_KIND            identity
 *   FAKE_REQUIRES                 a braced initializer of requirement strings
 *   FAKE_ABI_MAJOR/MINOR          the ABI the plugin claims
 *   FAKE_ABI_1_0_LAYOUT           descriptor as ABI 1.0 laid it out (no 1.1 members)
 *   FAKE_INIT_CODE                what init returns (BERTH_OK, BERTH_NOT_APPLICABLE, ...)
 *   FAKE_NO_ENTRY                 export no entry symbol at all
 * Every call is recorded in the file named by $BERTH_FAKE_TRACE so tests see the order.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "berth/kinds.h"
#include "berth/plugin.h"

#ifndef FAKE_ABI_MAJOR
#define FAKE_ABI_MAJOR BERTH_ABI_MAJOR
#endif
#ifndef FAKE_ABI_MINOR
#define FAKE_ABI_MINOR BERTH_ABI_MINOR
#endif
#ifndef FAKE_INIT_CODE
#define FAKE_INIT_CODE BERTH_OK
#endif
#ifndef FAKE_KIND
#define FAKE_KIND "runtime"
#endif

static void trace(const char* what) {
  const char* file = getenv("BERTH_FAKE_TRACE");
  if (file == NULL) return;
  FILE* f = fopen(file, "a");
  if (f == NULL) return;
  fprintf(f, "%s %s\n", what, FAKE_ID);
  fclose(f);
}

typedef struct fake {
  const berth_host* host;
  int handlers;
} fake;

static int32_t fake_status(void* instance, berth_sink* out, berth_sink* err) {
  static const char ready[] = "{\"ready\":true,\"reason\":\"\",\"message\":\"\"}";
  (void)instance;
  (void)err;
  out->write(out->ctx, ready, sizeof(ready) - 1);
  return BERTH_OK;
}

static int32_t fake_add_handler(void* instance, berth_str name, berth_str options,
                                berth_sink* err) {
  (void)name;
  (void)options;
  (void)err;
  ((fake*)instance)->handlers++;
  return BERTH_OK;
}

static int32_t fake_handler_status(void* instance, berth_str name, berth_sink* out,
                                   berth_sink* err) {
  (void)name;
  return fake_status(instance, out, err);
}

/* A runtime table from before tasks (shim_call, control): consumers check struct_size. */
static const berth_runtime_v1 kRuntime = {.struct_size = offsetof(berth_runtime_v1, shim_call),
                                          .status = fake_status,
                                          .add_handler = fake_add_handler,
                                          .handler_status = fake_handler_status};

static int32_t fake_init(const berth_host* host, void** instance, berth_sink* err) {
  static const char msg[] = "fake refuses on purpose";
  fake* f;
  trace("init");
  if (FAKE_INIT_CODE != BERTH_OK) {
    err->write(err->ctx, msg, sizeof(msg) - 1);
    return FAKE_INIT_CODE;
  }
  f = (fake*)calloc(1, sizeof(fake));
  f->host = host;
  host->log(host->ctx, BERTH_LOG_INFO, "fake plugin up", 14);
  *instance = f;
  return BERTH_OK;
}

static const void* fake_get_interface(void* instance, const char* iface) {
  (void)instance;
  if (strcmp(iface, BERTH_IFACE_RUNTIME_V1) == 0) return &kRuntime;
  return NULL;
}

static void fake_shutdown(void* instance) {
  trace("shutdown");
  free(instance);
}

#ifndef FAKE_NO_ENTRY

#ifdef FAKE_ABI_1_0_LAYOUT
/* The descriptor exactly as an ABI 1.0 plugin laid it out: no description, no defaults. */
typedef struct descriptor_1_0 {
  uint32_t struct_size;
  uint16_t abi_major;
  uint16_t abi_minor;
  const char* id;
  const char* kind;
  const char* version;
  const char* const* requires_list;
  int32_t (*init)(const berth_host*, void**, berth_sink*);
  const void* (*get_interface)(void*, const char*);
  void (*shutdown)(void*);
} descriptor_1_0;
#endif

#ifdef FAKE_REQUIRES
static const char* const kRequires[] = FAKE_REQUIRES;
#else
static const char* const kRequires[] = {NULL};
#endif

__attribute__((visibility("default"))) const berth_plugin_descriptor* berth_plugin_entry(void) {
#ifdef FAKE_ABI_1_0_LAYOUT
  static const descriptor_1_0 d = {sizeof(descriptor_1_0), FAKE_ABI_MAJOR, FAKE_ABI_MINOR,
                                   FAKE_ID, FAKE_KIND, "1.0.0", kRequires, fake_init,
                                   fake_get_interface, fake_shutdown};
  return (const berth_plugin_descriptor*)&d;
#else
  static const berth_plugin_descriptor d = {sizeof(berth_plugin_descriptor), FAKE_ABI_MAJOR,
                                            FAKE_ABI_MINOR, FAKE_ID, FAKE_KIND, "1.2.3",
                                            kRequires, fake_init, fake_get_interface,
                                            fake_shutdown, "a fake plugin for tests",
                                            "{\"answer\":42}"};
  return &d;
#endif
}
#endif
