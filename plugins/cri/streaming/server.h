// SPDX-License-Identifier: Apache-2.0
// The CRI streaming server (kubernetes-streaming.md): the HTTP listener whose URLs the
// Exec, Attach and PortForward RPCs return, and the SPDY sessions behind them (§3-§7).
//
//   StreamingServer server(options, backend);     // backend dials a port in a pod
//   RETURN_IF_ERROR(server.Start());
//   ASSIGN_OR_RETURN(std::string url, server.PortForwardUrl(request));  // in the RPC
//   ...
//   server.Stop();   // ends open sessions (sockets shut down, pumps joined)
//
// Per connection: the request head (16 KiB, 10 s), the route and token (404 for an unknown
// path or an unknown, expired, used or wrong-kind token; 405 for a method other than GET or
// POST), the SPDY upgrade (400/403/101, upgrade.h), then the session: every client stream
// is answered with SYN_REPLY, error and data streams are paired by requestid (30 s), each pair
// gets a connection from the backend and bytes are pumped both ways. On a failed dial the
// error text goes on the error stream (FIN) and the data stream is reset. The session ends
// when the client leaves (GOAWAY or EOF), on the idle timeout or on Stop(): RST for what is
// left, GOAWAY, close.
//
// Exec and attach URLs lead to the sessions of remote_command.h (v1-v4 of the remote
// command protocol).
//
// A WebSocket upgrade (§3.4: Upgrade: websocket, Connection: upgrade) on any of the three
// URLs goes to websocket.h instead: the channel protocols of exec/attach (v5 included) and of
// port-forward (ports from the stored request, else from `?port=`), and SPDY over WebSocket
// for port-forward, which runs the same port-forward session as a plain SPDY upgrade.
//
// Not implemented yet: TLS.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "berth/unique_fd.hpp"
#include "cri/v1/api.pb.h"
#include "plugins/cri/streaming/http.h"
#include "plugins/cri/streaming/remote_command.h"
#include "plugins/cri/streaming/tls.h"
#include "plugins/cri/streaming/token_cache.h"

namespace berth::cri::streaming {

struct StreamingServerOptions {
  std::string address = "127.0.0.1";  // an IP literal
  int port = 0;                       // 0: an ephemeral port
  absl::Duration idle_timeout = absl::Hours(4);
  absl::Duration stream_creation_timeout = absl::Seconds(30);
  // The largest WebSocket message a client may send (x/net/websocket's default); more is
  // answered with Close 1009.
  size_t websocket_max_message_bytes = 32 << 20;
  // TLS: a PEM certificate (chain) and its key; both empty: plain HTTP. With them the URLs
  // are https:// and every connection is TLS (1.2 or later).
  std::string tls_cert_file, tls_key_file;
};

// A connected TCP socket to `port` of the pod sandbox `sandbox_id` (its network namespace,
// or the host's loopback for a host-network pod). The error's message is what the client
// reads on the error stream.
using PortForwardBackend =
    std::function<absl::StatusOr<sdk::UniqueFd>(const std::string& sandbox_id, int port)>;

class StreamingServer {
 public:
  // Without exec/attach backends, Exec/AttachUrl fail with FAILED_PRECONDITION.
  StreamingServer(StreamingServerOptions options, PortForwardBackend port_forward,
                  ExecBackend exec = nullptr, AttachBackend attach = nullptr);
  ~StreamingServer();
  StreamingServer(const StreamingServer&) = delete;
  StreamingServer& operator=(const StreamingServer&) = delete;

  [[nodiscard]] absl::Status Start();
  // Closes the listener, ends every open session promptly and waits for their threads.
  void Stop();

  // Stores the request under a new token: "http://HOST:PORT/portforward/TOKEN" (an IPv6
  // host in brackets). FAILED_PRECONDITION before Start(), RESOURCE_EXHAUSTED when too many
  // tokens are outstanding.
  [[nodiscard]] absl::StatusOr<std::string> PortForwardUrl(
      const runtime::v1::PortForwardRequest& req);
  // The same for "/exec/TOKEN" and "/attach/TOKEN"; the request is stored as given (the
  // caller has validated it and resolved the container ID).
  [[nodiscard]] absl::StatusOr<std::string> ExecUrl(const runtime::v1::ExecRequest& req);
  [[nodiscard]] absl::StatusOr<std::string> AttachUrl(const runtime::v1::AttachRequest& req);

  // The port bound (after Start()).
  int port() const { return http_.port(); }
  // "http://HOST:PORT" (after Start()).
  std::string BaseUrl() const;

 private:
  class PortForwardSession;

  void HandleConnection(int fd);
  std::unique_ptr<TlsServerContext> tls_;
  // The WebSocket variants (§9), after the token was consumed; they write the handshake
  // response and run the session.
  void ServeWebSocketRemoteCommand(int fd, const HttpRequest& req, RemoteCommandRequest rc,
                                   const std::string& rest);
  void ServeWebSocketPortForward(int fd, const HttpRequest& req, runtime::v1::PortForwardRequest pf,
                                 const std::string& rest, int conn_number);

  const StreamingServerOptions options_;
  absl::StatusOr<std::string> Url(const char* kind, const std::string& payload);

  const PortForwardBackend port_forward_;
  const ExecBackend exec_;
  const AttachBackend attach_;
  TokenCache tokens_;
  HttpServer http_;
  std::atomic<bool> started_{false};
};

}  // namespace berth::cri::streaming
