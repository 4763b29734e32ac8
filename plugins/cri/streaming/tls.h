// SPDX-License-Identifier: Apache-2.0
// TLS for the streaming server (OpenSSL): a connection is decrypted by a relay thread and
// the plain end of a socketpair is handed to the usual connection handler, so that the
// HTTP, SPDY and WebSocket code stays on plain sockets.
//
//   ASSIGN_OR_RETURN(auto tls, TlsServerContext::Load(cert_file, key_file));
//   tls->Serve(tcp_fd, [&](int plain_fd) { HandleConnection(plain_fd); });
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

typedef struct ssl_st SSL;
typedef struct ssl_ctx_st SSL_CTX;

namespace berth::cri::streaming {

class TlsServerContext {
 public:
  // A PEM certificate (chain) and its private key. INVALID_ARGUMENT naming the file and
  // OpenSSL's reason when either cannot be used, or when they do not match.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<TlsServerContext>> Load(
      const std::string& cert_file, const std::string& key_file);
  ~TlsServerContext();
  TlsServerContext(const TlsServerContext&) = delete;
  TlsServerContext& operator=(const TlsServerContext&) = delete;

  // Handshakes on `fd` (within `handshake_timeout`), then runs `handle` on the plain side
  // while a relay thread copies between the two. Returns when `handle` has returned and the
  // relay has flushed and ended. A failed handshake returns at once (`handle` not run).
  // Shutting `fd` down from another thread (the server stopping) ends the relay, and the
  // handler then sees EOF.
  void Serve(int fd, const std::function<void(int plain_fd)>& handle,
             absl::Duration handshake_timeout = absl::Seconds(10));

 private:
  explicit TlsServerContext(SSL_CTX* ctx) : ctx_(ctx) {}
  SSL_CTX* ctx_;
};

// Copies between an established TLS connection (`ssl` on the non-blocking socket
// `tls_fd`) and the plain socket `plain_fd` until both directions have ended or either side
// fails. Bounded buffers in each direction: a side that does not read slows the other
// down instead of blocking the relay. Used by the server above and by tests as a client.
void RelayTls(SSL* ssl, int tls_fd, int plain_fd);

}  // namespace berth::cri::streaming
