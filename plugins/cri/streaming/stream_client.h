// SPDX-License-Identifier: Apache-2.0
// The client side of the Kubernetes streaming protocols over SPDY/3.1, as client-go drives
// them (kubernetes-streaming.md §4, §6, §7): what berthctl exec, attach and port-forward use
// with the URLs the CRI Exec, Attach and PortForward RPCs return.
//
//   ExecClient exec(url, {.stdin_fd = 0, .stdout_fd = 1, .stderr_fd = 2});
//   absl::StatusOr<int> code = exec.Run();   // the remote exit code, or why there is none
//
//   ASSIGN_OR_RETURN(auto pf, PortForwardClient::Start(url, {{8080, 80}}));
//   ... pf->ports() ... pf->Stop();
//
// Layers: DialAndUpgrade() (TCP, the HTTP/1.1 upgrade request and the 101), SpdyConnection
// (a ClientSession on a socket, with a reader and a writer thread and a blocking stream API
// like spdystream's), and the protocol clients on top. Plain HTTP only: an https URL (a
// streaming server with TLS) is refused with UNIMPLEMENTED.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "berth/unique_fd.hpp"
#include "plugins/cri/streaming/k8s_remotecommand.h"
#include "plugins/cri/streaming/spdy_client.h"

namespace berth::cri::streaming {

// ---- URL and upgrade (§2.2, §4) ----

// "http://HOST:PORT/PATH": an IP literal (IPv6 in brackets) or a name, a port, a path.
struct StreamUrl {
  std::string host;  // without brackets
  int port = 0;
  std::string path;         // "/exec/TOKEN"
  std::string host_header;  // "HOST:PORT" as written in the URL
};
// INVALID_ARGUMENT for anything else; UNIMPLEMENTED for https.
[[nodiscard]] absl::StatusOr<StreamUrl> ParseStreamUrl(absl::string_view url);

struct UpgradedConnection {
  sdk::UniqueFd fd;
  // The server's X-Stream-Protocol-Version (first value); empty when it sent none.
  std::string protocol;
  // Bytes read past the 101 response (the server should send none before our first frame).
  std::string initial;
};

// Connects to the URL's host and POSTs the SPDY upgrade request client-go sends (§4.1, §10.1):
// Connection: Upgrade, Upgrade: SPDY/3.1, one X-Stream-Protocol-Version line per protocol in
// preference order, Content-Length: 0. Everything within `timeout`.
// A non-101 answer fails with the server's text (its JSON "message" when it sent a Status):
// NOT_FOUND for 404 (unknown, expired or used token), INVALID_ARGUMENT for 400,
// FAILED_PRECONDITION for 403 (no common protocol), UNAVAILABLE for the rest and for
// connection failures.
[[nodiscard]] absl::StatusOr<UpgradedConnection> DialAndUpgrade(
    absl::string_view url, absl::Span<const absl::string_view> protocols, absl::Duration timeout,
    absl::string_view user_agent = "berth-stream-client");

// ---- A SPDY connection driven by threads ----

struct StreamClientOptions {
  // Connecting and upgrading.
  absl::Duration connect_timeout = absl::Seconds(30);
  // How long CreateStream waits for the SYN_REPLY (client-go: 30 s).
  absl::Duration stream_creation_timeout = absl::Seconds(30);
  // PINGs keep the server's idle timer and proxies alive (client-go: every 5 s). Zero: none.
  absl::Duration ping_period = absl::Seconds(5);
  // Write() blocks while this much output waits for the socket (backpressure).
  size_t max_buffered_output = 1 << 20;
  std::string user_agent = "berth-stream-client";
  spdy::SessionOptions session;
};

// A ClientSession on an upgraded socket. A reader thread feeds the session and hands each
// stream's data to its Receiver, in order; a writer thread writes the session's output and
// sends the PINGs. The other methods may be called from any thread.
class SpdyConnection {
 public:
  enum class EndReason {
    kFin,     // the server half-closed the stream: EOF
    kReset,   // the server (or the session, for a protocol error) reset it
    kClosed,  // the connection ended (GOAWAY, EOF, error, or Close()) with the stream open
  };
  // Called on the reader thread only. OnData may block: the connection stops reading until it
  // returns (TCP backpressure, as with the Go client). OnEnd comes once, last.
  class Receiver {
   public:
    virtual ~Receiver() = default;
    virtual void OnData(absl::string_view data) = 0;
    virtual void OnEnd(EndReason reason) = 0;
  };

  [[nodiscard]] static absl::StatusOr<std::unique_ptr<SpdyConnection>> Start(
      UpgradedConnection conn, const StreamClientOptions& options = {});
  ~SpdyConnection();  // Close()
  SpdyConnection(const SpdyConnection&) = delete;
  SpdyConnection& operator=(const SpdyConnection&) = delete;

  // Opens a stream and waits for its SYN_REPLY (as spdystream's CreateStream does); its data
  // goes to `receiver` (registered before the SYN_STREAM leaves). `first_data`, if any, goes
  // out as DATA right behind the SYN_STREAM, in the same write, before the reply (the server
  // knows the stream from its SYN_STREAM on). DEADLINE_EXCEEDED without a reply in time (the
  // stream is reset), ABORTED when the server resets it, UNAVAILABLE when the connection ends.
  [[nodiscard]] absl::StatusOr<uint32_t> CreateStream(const spdy::Headers& headers,
                                                      std::shared_ptr<Receiver> receiver,
                                                      absl::string_view first_data = {});
  // DATA; blocks while too much output is queued. UNAVAILABLE when the connection ended,
  // FAILED_PRECONDITION when the stream is reset or half-closed.
  [[nodiscard]] absl::Status Write(uint32_t stream_id, absl::string_view data);
  // FIN: we send no more on the stream.
  [[nodiscard]] absl::Status CloseWrite(uint32_t stream_id);
  // RST_STREAM CANCEL, if the stream is still open. Its receiver gets nothing more (no OnEnd).
  void Reset(uint32_t stream_id);

  // Ends the session from our side (§5.7): RST_STREAM for the streams still open, GOAWAY,
  // then half-close the socket and wait (briefly) for the server's end; joins the threads.
  // Receivers still open get OnEnd(kClosed). Idempotent.
  void Close();

  // Blocks until the connection has ended (reader done), at most `timeout`; true if it has.
  bool WaitEnded(absl::Duration timeout = absl::InfiniteDuration());
  bool ended() const;
  // Why the connection ended: OK for a GOAWAY or EOF from the server or our Close(), the
  // session or socket error otherwise.
  absl::Status end_status() const;

 private:
  struct StreamEntry {
    std::shared_ptr<Receiver> receiver;
    bool replied = false;
    bool reset = false;
    bool ended = false;    // OnEnd delivered (or about to be)
    bool waiting = false;  // CreateStream waits for the reply: the entry stays
  };

  SpdyConnection(sdk::UniqueFd fd, spdy::ClientSession session, sdk::UniqueFd wake,
                 const StreamClientOptions& options);
  void ReadLoop(const std::string& initial);
  void WriteLoop();
  void EndLocked(absl::Status status);
  // Hands the session's pending output to the writer thread.
  void KickLocked() { cv_.notify_all(); }

  const StreamClientOptions options_;
  sdk::UniqueFd fd_;
  sdk::UniqueFd wake_;  // eventfd, never drained: stops the reader

  std::mutex close_mu_;  // serialises Close()
  bool closed_ = false;

  mutable std::mutex mu_;
  std::condition_variable cv_;  // output queued, replies, space, ends
  spdy::ClientSession session_;
  std::map<uint32_t, StreamEntry> streams_;
  bool ended_ = false;  // the reader is done
  bool closing_ = false;
  bool stop_writer_ = false;
  bool writer_done_ = false;
  bool write_failed_ = false;
  absl::Status end_status_;
  std::thread reader_, writer_;
};

// ---- Exec and attach (§6) ----

// Terminal sizes for the resize stream, as client-go's TerminalSizeQueue: Push() the current
// size first, then one per SIGWINCH. Thread-safe.
class TerminalSizeQueue {
 public:
  void Push(TerminalSize size);
  // No more sizes: Next() returns std::nullopt from now on.
  void Close();
  // Blocks for the next size; std::nullopt once closed. Only the latest size waiting is kept
  // (a burst of resizes sends the last one).
  std::optional<TerminalSize> Next();
  // The size waiting, if any, without blocking.
  std::optional<TerminalSize> TryNext();

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::optional<TerminalSize> pending_;
  bool closed_ = false;
};

// The local ends of a remote command. -1: no such stream. With `tty`, stderr is not used (the
// terminal merges it into stdout, §6.3) and `sizes` (if given) feeds the resize stream (v3+).
struct RemoteCommandIo {
  int stdin_fd = -1;
  int stdout_fd = -1;
  int stderr_fd = -1;
  bool tty = false;
  TerminalSizeQueue* sizes = nullptr;  // closed by Run() when the session ends
};

// One exec or attach session: upgrade offering v4, v3, v2 and channel.k8s.io, then the
// streams client-go opens, in its order (error, stdin, stdout, stderr, resize; each after the
// previous one's reply); local stdin is copied to the stdin stream (FIN at its EOF), stdout
// and stderr to the local fds; Run() returns once stdout, stderr and the error stream have
// ended. Unlike client-go, the size waiting in `sizes` when the resize stream is opened
// travels with its SYN_STREAM: the server starts the process when that last stream arrives,
// and the size then reaches the terminal with it rather than a round trip later.
class RemoteCommandClient {
 public:
  // `what` names the operation in errors: "exec" or "attach".
  RemoteCommandClient(std::string what, std::string url, RemoteCommandIo io,
                      StreamClientOptions options = {});
  virtual ~RemoteCommandClient();

  // The exit code: 0 for success (v4 "Success", or nothing on the error stream), N for v4
  // NonZeroExitCode. Errors: the server's failure text (INTERNAL for v4 InternalError,
  // UNKNOWN for other failures and for v1-v3 text), INTERNAL "error stream protocol error"
  // for a status client-go would not decode, UNAVAILABLE when the connection ended without a
  // status, CANCELLED after Cancel(), and the upgrade's errors (DialAndUpgrade). Call once.
  [[nodiscard]] absl::StatusOr<int> Run();

  // From another thread (e.g. on a signal): ends the session (RST, GOAWAY) and makes Run()
  // return CANCELLED. The remote process is not killed (as with kubectl).
  void Cancel();

  // The protocol the server chose (after the upgrade).
  RemoteCommandProtocol protocol() const { return protocol_; }

 private:
  absl::StatusOr<int> RunSession();

  const std::string what_;
  const std::string url_;
  const RemoteCommandIo io_;
  const StreamClientOptions options_;
  RemoteCommandProtocol protocol_ = RemoteCommandProtocol::kV4;

  std::mutex mu_;
  bool cancelled_ = false;
  SpdyConnection* connection_ = nullptr;  // while Run() has one
};

// berthctl exec: runs the command the CRI ExecRequest described.
class ExecClient : public RemoteCommandClient {
 public:
  ExecClient(std::string url, RemoteCommandIo io, StreamClientOptions options = {})
      : RemoteCommandClient("exec", std::move(url), io, std::move(options)) {}
};

// berthctl attach: relays the container's main process; Run() returns 0 when the attachment
// ends normally (the container exited or closed its output).
class AttachClient : public RemoteCommandClient {
 public:
  AttachClient(std::string url, RemoteCommandIo io, StreamClientOptions options = {})
      : RemoteCommandClient("attach", std::move(url), io, std::move(options)) {}
};

// Decodes the error stream's payload as client-go does (§6.6): the exit code, or the error.
[[nodiscard]] absl::StatusOr<int> DecodeRemoteCommandStatus(absl::string_view payload,
                                                            RemoteCommandProtocol protocol);

// ---- Port forward (§7) ----

struct PortForwardSpec {
  int local_port = 0;  // 0: any free port (ports() tells which)
  int remote_port = 0;
  bool operator==(const PortForwardSpec&) const = default;
};

struct PortForwardCallbacks {
  // A local connection was accepted for this port pair.
  std::function<void(const PortForwardSpec&)> on_connection;
  // A forwarded connection failed, e.g. "an error occurred forwarding 8080 -> 80: error
  // forwarding port 80 to pod ..., uid : dial tcp ...: connection refused". The forwarder
  // goes on with the next connection.
  std::function<void(const absl::Status&)> on_error;
};

// Listens on 127.0.0.1 for every port pair, then holds one SPDY connection to the streaming
// server (protocol portforward.k8s.io). Each accepted connection gets client-go's stream
// pair (§7.2): an error stream (port, requestid; half-closed at once) and a data stream;
// bytes are copied both ways; the local connection's EOF half-closes the data stream; the
// remote end closes the local connection; the data stream is then reset and anything on the
// error stream is reported.
class PortForwardClient {
 public:
  // Binds the local ports first (a busy port fails here, with nothing else done), then dials
  // and upgrades. Ports 1-65535 (local 0 allowed).
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<PortForwardClient>> Start(
      const std::string& url, std::vector<PortForwardSpec> ports,
      PortForwardCallbacks callbacks = {}, const StreamClientOptions& options = {});
  ~PortForwardClient();  // Stop()
  PortForwardClient(const PortForwardClient&) = delete;
  PortForwardClient& operator=(const PortForwardClient&) = delete;

  // The local ports actually bound, in the order given.
  const std::vector<PortForwardSpec>& ports() const { return ports_; }

  // Blocks until Stop() (OK) or until the SPDY connection ends (UNAVAILABLE: the server
  // closed it, e.g. on its idle timeout or when berthd stopped).
  [[nodiscard]] absl::Status Wait();
  // Stops listening, ends the forwarded connections and the session. Idempotent; may be
  // called from any thread (also while Wait() blocks).
  void Stop();

 private:
  struct Forward;

  PortForwardClient(std::vector<PortForwardSpec> ports, std::vector<sdk::UniqueFd> listeners,
                    PortForwardCallbacks callbacks, sdk::UniqueFd wake);
  void AcceptLoop();
  void HandleConnection(std::shared_ptr<Forward> forward);
  void ReapLocked();

  std::vector<PortForwardSpec> ports_;
  std::vector<sdk::UniqueFd> listeners_;
  const PortForwardCallbacks callbacks_;
  sdk::UniqueFd wake_;  // eventfd: stops the accept loop
  std::unique_ptr<SpdyConnection> connection_;

  std::mutex mu_;
  std::condition_variable cv_;
  bool stopped_ = false;
  int next_request_id_ = 0;
  std::vector<std::shared_ptr<Forward>> forwards_;
  std::thread acceptor_;
};

}  // namespace berth::cri::streaming
