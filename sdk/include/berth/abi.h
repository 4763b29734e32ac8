/* SPDX-License-Identifier: Apache-2.0 */
/*
 * berth plugin ABI: basic types shared by every header.
 *
 * Rules (docs/adr/0001-plugin-abi.md):
 *  - A plugin built against ABI MAJOR.MINOR loads into a host of the same MAJOR and a
 *    MINOR greater than or equal to its own.
 *  - Every struct that crosses the boundary starts with `uint32_t struct_size`. Members are
 *    only ever appended (marked "since 1.N"); a reader checks struct_size before it touches
 *    a newer member (BERTH_HAS_MEMBER).
 *  - Errors cross as a google.rpc.Code value plus a message written into a caller-owned
 *    sink. Nothing throws or longjmps across the boundary.
 *  - Whoever allocates frees. Strings passed as arguments are borrowed for the call.
 */
#ifndef BERTH_ABI_H_
#define BERTH_ABI_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BERTH_ABI_MAJOR 1
#define BERTH_ABI_MINOR 2

/* Status codes: the google.rpc.Code values, so that they map 1:1 onto gRPC statuses. */
typedef enum berth_code {
  BERTH_OK = 0,
  BERTH_CANCELLED = 1,
  BERTH_UNKNOWN = 2,
  BERTH_INVALID_ARGUMENT = 3,
  BERTH_DEADLINE_EXCEEDED = 4,
  BERTH_NOT_FOUND = 5,
  BERTH_ALREADY_EXISTS = 6,
  BERTH_PERMISSION_DENIED = 7,
  BERTH_RESOURCE_EXHAUSTED = 8,
  BERTH_FAILED_PRECONDITION = 9,
  BERTH_ABORTED = 10,
  BERTH_OUT_OF_RANGE = 11,
  BERTH_UNIMPLEMENTED = 12,
  BERTH_INTERNAL = 13,
  BERTH_UNAVAILABLE = 14,
  BERTH_DATA_LOSS = 15,
  BERTH_UNAUTHENTICATED = 16,
  /* Returned by a plugin's init only: the plugin cannot work on this host (for example the
   * systemd cgroup driver where systemd is not PID 1). The host skips it and lists it as
   * such; it is not an error unless another plugin or the configuration needs it. */
  BERTH_NOT_APPLICABLE = 1000
} berth_code;

typedef enum berth_log_level {
  BERTH_LOG_TRACE = 0,
  BERTH_LOG_DEBUG = 1,
  BERTH_LOG_INFO = 2,
  BERTH_LOG_WARN = 3,
  BERTH_LOG_ERROR = 4
} berth_log_level;

/* A borrowed byte string; not NUL-terminated unless stated. */
typedef struct berth_str {
  const char* ptr;
  size_t len;
} berth_str;

/*
 * A caller-owned output. The callee calls write() zero or more times; the caller copies
 * the bytes at once. Used for results (JSON, protobuf bytes) and for error messages, so
 * no allocator is shared between host and plugin.
 */
typedef struct berth_sink {
  uint32_t struct_size;
  void* ctx;
  void (*write)(void* ctx, const char* data, size_t len);
} berth_sink;

/* Is member M of *P (a struct with struct_size) present in the version the peer built? */
#define BERTH_HAS_MEMBER(P, TYPE, M) \
  ((P) != NULL && (P)->struct_size >= offsetof(TYPE, M) + sizeof(((TYPE*)0)->M))

#ifdef __cplusplus
}
#endif

#endif /* BERTH_ABI_H_ */
