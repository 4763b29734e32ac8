// SPDX-License-Identifier: Apache-2.0
#include "plugins/cri/streaming/server.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <map>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "plugins/cri/streaming/k8s_remotecommand.h"
#include "plugins/cri/streaming/spdy.h"
#include "plugins/cri/streaming/upgrade.h"
#include "plugins/cri/streaming/websocket.h"

namespace berth::cri::streaming {
namespace {

constexpr size_t kMaxRequestHead = 16 * 1024;
constexpr absl::Duration kRequestHeadTimeout = absl::Seconds(10);
constexpr char kPortForwardKind[] = "portforward";
constexpr char kExecKind[] = "exec";
constexpr char kAttachKind[] = "attach";

// At most 128 ports per WebSocket port-forward: channel 2i+1 must fit in a byte (§9.4).
constexpr size_t kMaxWebSocketPorts = 128;

}  // namespace

// One upgraded port-forward connection (§7). The connection's thread runs the read loop;
// each stream pair gets a thread that dials the backend and pumps the target's bytes into
// the data stream. Everything touching the SPDY session, and the socket writes (so that the
// frames go out in the session's order), happens under mu_.
class StreamingServer::PortForwardSession {
 public:
  PortForwardSession(int fd, spdy::ServerSession session, runtime::v1::PortForwardRequest req,
                     const StreamingServerOptions& options, const PortForwardBackend& backend,
                     int conn_number)
      : fd_(fd),
        session_(std::move(session)),
        req_(std::move(req)),
        options_(options),
        backend_(backend),
        conn_number_(conn_number) {}

  // Runs until the client leaves, the idle timeout fires or the socket is shut down
  // (Stop()). `initial` holds bytes read past the request head.
  void Run(std::string initial) {
    last_activity_ = absl::Now();
    if (!initial.empty()) OnBytes(initial);
    char buffer[32 * 1024];
    while (!done_) {
      pollfd p{fd_, POLLIN, 0};
      const int r = ::poll(&p, 1, 250);
      if (r < 0 && errno != EINTR) break;
      if (r > 0) {
        const ssize_t n = ::read(fd_, buffer, sizeof(buffer));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;  // EOF, or the socket was shut down
        OnBytes(absl::string_view(buffer, static_cast<size_t>(n)));
      }
      Tick();
      ReapThreads();
    }
    Finish();
  }

 private:
  struct Pair {
    std::string request_id;
    uint16_t port = 0;
    uint32_t error_stream = 0, data_stream = 0;
    absl::Time created;
    bool started = false;      // the dial thread runs
    bool connected = false;    // target is set; writes go straight to it
    bool client_done = false;  // the client half-closed or reset the data stream
    std::string pending;       // client data received before the dial completed
    std::mutex write_mu;       // orders writes to target (read loop vs. dial thread)
    sdk::UniqueFd target;      // closed when the last reference goes
  };
  struct Worker {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> finished;
  };
  // A write to a target to do once mu_ is released.
  struct TargetWrite {
    std::shared_ptr<Pair> pair;
    std::string data;
    bool shutdown_write = false;
  };

  // Writes what the session queued; mu_ must be held.
  void FlushLocked() {
    std::string out = session_.TakeOutput();
    if (out.empty() || broken_) return;
    if (!WriteAll(fd_, out)) {
      broken_ = true;
      ::shutdown(fd_, SHUT_RDWR);  // the read loop ends
      return;
    }
    last_activity_ = absl::Now();
  }

  void OnBytes(absl::string_view bytes) {
    std::vector<TargetWrite> writes;
    {
      std::lock_guard<std::mutex> lock(mu_);
      last_activity_ = absl::Now();
      std::vector<spdy::SessionEvent> events;
      absl::Status fed = session_.Feed(bytes, &events);
      for (spdy::SessionEvent& e : events) HandleEventLocked(e, &writes);
      FlushLocked();
      if (!fed.ok()) done_ = true;  // the GOAWAY is written; close
    }
    DoWrites(writes);
  }

  void DoWrites(std::vector<TargetWrite>& writes) {
    for (TargetWrite& w : writes) {
      std::lock_guard<std::mutex> lock(w.pair->write_mu);
      if (!w.data.empty()) (void)WriteAll(w.pair->target.get(), w.data);
      if (w.shutdown_write) ::shutdown(w.pair->target.get(), SHUT_WR);
    }
  }

  void HandleEventLocked(spdy::SessionEvent& event, std::vector<TargetWrite>* writes) {
    if (auto* open = std::get_if<spdy::StreamOpened>(&event)) {
      OnStreamOpenedLocked(*open);
    } else if (auto* data = std::get_if<spdy::StreamData>(&event)) {
      auto it = by_stream_.find(data->stream_id);
      if (it == by_stream_.end() || it->second->data_stream != data->stream_id) return;
      Pair& pair = *it->second;
      if (pair.connected) {
        writes->push_back({it->second, std::move(data->data), false});
      } else {
        pair.pending += data->data;
      }
    } else if (auto* half = std::get_if<spdy::StreamHalfClosed>(&event)) {
      OnClientDoneLocked(half->stream_id, /*reset=*/false, writes);
    } else if (auto* reset = std::get_if<spdy::StreamReset>(&event)) {
      OnClientDoneLocked(reset->stream_id, /*reset=*/true, writes);
    } else if (std::holds_alternative<spdy::GoAwayReceived>(event)) {
      done_ = true;  // §5.7: the client is leaving
    }
    // PINGs are echoed by the session; SETTINGS and HEADERS mean nothing here.
  }

  void OnStreamOpenedLocked(const spdy::StreamOpened& open) {
    absl::StatusOr<PortForwardStream> stream = ParsePortForwardStream(open.headers, open.stream_id);
    if (!stream.ok()) {
      (void)session_.ResetStream(open.stream_id, spdy::RstStatus::kCancel);
      return;
    }
    if (!session_.SendReply(open.stream_id).ok()) return;
    std::shared_ptr<Pair>& slot = pairs_[stream->request_id];
    if (slot == nullptr) {
      slot = std::make_shared<Pair>();
      slot->request_id = stream->request_id;
      slot->port = stream->port;
      slot->created = absl::Now();
    }
    std::shared_ptr<Pair> pair = slot;
    const bool is_error = stream->type == StreamType::kError;
    uint32_t& assigned = is_error ? pair->error_stream : pair->data_stream;
    if (assigned != 0) {
      // §7.3: a second stream of the same type in a pair.
      const std::string text =
          absl::StrCat("error processing stream for request ", pair->request_id, ": ",
                       is_error ? "error" : "data", " stream already assigned");
      if (pair->error_stream != 0) (void)session_.SendData(pair->error_stream, text);
      (void)session_.ResetStream(open.stream_id, spdy::RstStatus::kCancel);
      return;
    }
    assigned = open.stream_id;
    by_stream_[open.stream_id] = pair;
    if (pair->error_stream != 0 && pair->data_stream != 0 && !pair->started) {
      pair->started = true;
      auto finished = std::make_shared<std::atomic<bool>>(false);
      threads_.push_back({std::thread([this, pair, finished] {
                            Forward(pair);
                            *finished = true;
                          }),
                          finished});
    }
  }

  void OnClientDoneLocked(uint32_t stream_id, bool reset, std::vector<TargetWrite>* writes) {
    auto it = by_stream_.find(stream_id);
    if (it == by_stream_.end()) return;
    std::shared_ptr<Pair> pair = it->second;
    if (pair->data_stream != stream_id) {
      // The client half-closes the error stream right away (§7.2); a reset ends the pair.
      if (reset && pair->connected) ::shutdown(pair->target.get(), SHUT_RDWR);
      return;
    }
    if (pair->client_done) return;
    pair->client_done = true;
    if (!pair->connected) return;  // the dial thread shuts the write side down
    if (reset) {
      // The client is done with this connection in both directions (§7.2 step 6).
      ::shutdown(pair->target.get(), SHUT_RDWR);
    } else {
      writes->push_back({pair, "", /*shutdown_write=*/true});
    }
  }

  // The pair's thread: dial, hand the buffered client data over, then copy target -> data.
  void Forward(const std::shared_ptr<Pair>& pair) {
    absl::StatusOr<sdk::UniqueFd> target = backend_(req_.pod_sandbox_id(), pair->port);
    if (!target.ok()) {
      std::lock_guard<std::mutex> lock(mu_);
      const std::string text =
          PortForwardErrorText(pair->port, req_.pod_sandbox_id(), target.status().message());
      // §7.4: the text on the error stream, then end both streams (FIN on error so that old
      // and new clients alike read the text and EOF, RST on data).
      (void)session_.SendData(pair->error_stream, text, /*fin=*/true);
      (void)session_.ResetStream(pair->data_stream, spdy::RstStatus::kCancel);
      DropLocked(pair);
      FlushLocked();
      return;
    }
    const int fd = target->get();
    {
      std::lock_guard<std::mutex> write_lock(pair->write_mu);
      std::string pending;
      bool client_done = false;
      {
        std::lock_guard<std::mutex> lock(mu_);
        pair->target = *std::move(target);
        if (closing_) {
          ::shutdown(fd, SHUT_RDWR);
        }
        pair->connected = true;
        pending.swap(pair->pending);
        client_done = pair->client_done;
      }
      if (!pending.empty()) (void)WriteAll(fd, pending);
      if (client_done) ::shutdown(fd, SHUT_WR);
    }
    char buffer[32 * 1024];
    for (;;) {
      const ssize_t n = ::read(fd, buffer, sizeof(buffer));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      std::lock_guard<std::mutex> lock(mu_);
      if (!session_.SendData(pair->data_stream, absl::string_view(buffer, static_cast<size_t>(n)))
               .ok()) {
        break;  // the client reset the stream, or the session is over
      }
      FlushLocked();
    }
    // The target closed (or the pair ends): FIN on both streams, nothing on error (§7.4).
    std::lock_guard<std::mutex> lock(mu_);
    if (session_.IsStreamOpen(pair->data_stream)) (void)session_.CloseStream(pair->data_stream);
    if (session_.IsStreamOpen(pair->error_stream)) (void)session_.CloseStream(pair->error_stream);
    DropLocked(pair);
    FlushLocked();
  }

  // Forgets a finished pair; its target socket closes with the last reference. Late frames
  // for its streams find nothing and are ignored.
  void DropLocked(const std::shared_ptr<Pair>& pair) {
    auto it = pairs_.find(pair->request_id);
    if (it != pairs_.end() && it->second == pair) pairs_.erase(it);
    for (uint32_t id : {pair->error_stream, pair->data_stream}) {
      auto s = by_stream_.find(id);
      if (s != by_stream_.end() && s->second == pair) by_stream_.erase(s);
    }
  }

  // Joins the pair threads that are done (a long session serves many requests).
  void ReapThreads() {
    std::vector<Worker> done;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto it = threads_.begin(); it != threads_.end();) {
        if (*it->finished) {
          done.push_back(std::move(*it));
          it = threads_.erase(it);
        } else {
          ++it;
        }
      }
    }
    for (Worker& w : done) w.thread.join();
  }

  // Pair timeouts (§7.3) and the idle timeout (§5.9).
  void Tick() {
    std::lock_guard<std::mutex> lock(mu_);
    const absl::Time now = absl::Now();
    for (auto it = pairs_.begin(); it != pairs_.end();) {
      Pair& pair = *it->second;
      if (pair.started || now - pair.created < options_.stream_creation_timeout) {
        ++it;
        continue;
      }
      if (pair.error_stream != 0) {
        (void)session_.SendData(pair.error_stream,
                                absl::StrCat("(conn=", conn_number_, ", request=", pair.request_id,
                                             ") timed out waiting for streams"),
                                /*fin=*/true);
      }
      if (pair.data_stream != 0) (void)session_.ResetStream(pair.data_stream);
      std::shared_ptr<Pair> dropped = it->second;
      ++it;
      DropLocked(dropped);
    }
    if (now - last_activity_ >= options_.idle_timeout) done_ = true;
    FlushLocked();
  }

  // §7.5: stop the pumps, reset what is left, GOAWAY. The caller closes the socket.
  void Finish() {
    std::vector<Worker> threads;
    {
      std::lock_guard<std::mutex> lock(mu_);
      closing_ = true;
      for (const auto& [id, pair] : by_stream_) {
        if (pair->connected) ::shutdown(pair->target.get(), SHUT_RDWR);
      }
    }
    // The pumps end (their targets are shut down); a dial in progress finishes first.
    for (;;) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        threads.swap(threads_);
        // Pairs connected since the loop above.
        for (const auto& [id, pair] : by_stream_) {
          if (pair->connected) ::shutdown(pair->target.get(), SHUT_RDWR);
        }
      }
      if (threads.empty()) break;
      for (Worker& w : threads) w.thread.join();
      threads.clear();
    }
    std::lock_guard<std::mutex> lock(mu_);
    session_.ResetAllStreams();
    session_.SendGoAway();
    FlushLocked();
  }

  const int fd_;
  spdy::ServerSession session_;
  const runtime::v1::PortForwardRequest req_;
  const StreamingServerOptions& options_;
  const PortForwardBackend& backend_;
  const int conn_number_;

  std::mutex mu_;
  std::map<std::string, std::shared_ptr<Pair>> pairs_;   // incomplete or forwarding
  std::map<uint32_t, std::shared_ptr<Pair>> by_stream_;  // every paired stream
  std::vector<Worker> threads_;
  absl::Time last_activity_;
  bool done_ = false;     // the read loop ends
  bool closing_ = false;  // Finish() has begun
  bool broken_ = false;   // a socket write failed
};

StreamingServer::StreamingServer(StreamingServerOptions options, PortForwardBackend port_forward,
                                 ExecBackend exec, AttachBackend attach)
    : options_(std::move(options)),
      port_forward_(std::move(port_forward)),
      exec_(std::move(exec)),
      attach_(std::move(attach)) {}

StreamingServer::~StreamingServer() { Stop(); }

absl::Status StreamingServer::Start() {
  if (options_.tls_cert_file.empty() != options_.tls_key_file.empty()) {
    return absl::InvalidArgumentError(
        "streaming server: TLS needs both a certificate and a key file");
  }
  if (!options_.tls_cert_file.empty()) {
    absl::StatusOr<std::unique_ptr<TlsServerContext>> tls =
        TlsServerContext::Load(options_.tls_cert_file, options_.tls_key_file);
    if (!tls.ok()) {
      return absl::Status(tls.status().code(),
                          absl::StrCat("streaming server: ", tls.status().message()));
    }
    tls_ = std::move(*tls);
  }
  absl::Status s = http_.Start(options_.address, options_.port, [this](int fd) {
    if (tls_ != nullptr) {
      tls_->Serve(fd, [this](int plain) { HandleConnection(plain); });
    } else {
      HandleConnection(fd);
    }
  });
  if (!s.ok()) {
    return absl::Status(s.code(),
                        absl::StrCat("streaming server (exec, attach and port-forward URLs): ",
                                     s.message()));
  }
  started_ = true;
  return absl::OkStatus();
}

void StreamingServer::Stop() {
  started_ = false;  // no more URLs
  http_.Stop();
}

std::string StreamingServer::BaseUrl() const {
  const std::string& host = options_.address;
  return absl::StrCat(tls_ != nullptr ? "https://" : "http://",
                      host.find(':') != std::string::npos ? "[" + host + "]" : host, ":",
                      http_.port());
}

absl::StatusOr<std::string> StreamingServer::Url(const char* kind, const std::string& payload) {
  if (!started_) {
    return absl::FailedPreconditionError("the streaming server is not running");
  }
  absl::StatusOr<std::string> token = tokens_.Insert(kind, payload);
  if (!token.ok()) return token.status();
  return absl::StrCat(BaseUrl(), "/", kind, "/", *token);
}

absl::StatusOr<std::string> StreamingServer::PortForwardUrl(
    const runtime::v1::PortForwardRequest& req) {
  return Url(kPortForwardKind, req.SerializeAsString());
}

absl::StatusOr<std::string> StreamingServer::ExecUrl(const runtime::v1::ExecRequest& req) {
  if (!exec_) return absl::FailedPreconditionError("this streaming server does not serve exec");
  return Url(kExecKind, req.SerializeAsString());
}

absl::StatusOr<std::string> StreamingServer::AttachUrl(const runtime::v1::AttachRequest& req) {
  if (!attach_) {
    return absl::FailedPreconditionError("this streaming server does not serve attach");
  }
  return Url(kAttachKind, req.SerializeAsString());
}

void StreamingServer::HandleConnection(int fd) {
  static std::atomic<int> connections{0};
  const int conn_number = connections.fetch_add(1);
  std::string rest;
  absl::StatusOr<HttpRequest> req = ReadRequest(fd, kMaxRequestHead, kRequestHeadTimeout, &rest);
  if (!req.ok()) {
    if (req.status().code() == absl::StatusCode::kInvalidArgument) {
      (void)WriteAll(fd, HttpResponse(400, {{"Content-Type", "text/plain; charset=utf-8"}},
                                      std::string(req.status().message()) + "\n"));
    } else if (req.status().code() == absl::StatusCode::kResourceExhausted) {
      (void)WriteAll(fd, HttpResponse(431, {}));
    }
    return;
  }
  const Route route = ParseRoute(req->target);
  if (route.kind.empty()) {
    (void)WriteAll(fd, NotFoundResponse());
    return;
  }
  if (req->method != "GET" && req->method != "POST") {
    (void)WriteAll(fd, MethodNotAllowedResponse());
    return;
  }
  std::optional<std::string> payload = tokens_.Consume(route.kind, route.token);
  if (!payload.has_value()) {
    (void)WriteAll(fd, NotFoundResponse());
    return;
  }
  if (route.kind != kPortForwardKind) {
    RemoteCommandRequest rc;
    rc.attach = route.kind == kAttachKind;
    const bool parsed = rc.attach ? rc.attach_request.ParseFromString(*payload)
                                  : rc.exec.ParseFromString(*payload);
    if (!parsed) {
      (void)WriteAll(fd, NotFoundResponse());
      return;
    }
    if (websocket::IsWebSocketUpgrade(*req)) {
      ServeWebSocketRemoteCommand(fd, *req, std::move(rc), rest);
      return;
    }
    const Upgrade upgrade = CheckSpdyUpgrade(*req, /*port_forward=*/false);
    if (!WriteAll(fd, upgrade.response) || !upgrade.ok) return;
    std::optional<RemoteCommandProtocol> protocol = ParseRemoteCommandProtocol(upgrade.protocol);
    absl::StatusOr<spdy::ServerSession> session = spdy::ServerSession::Create();
    if (!protocol.has_value() || !session.ok()) return;
    RemoteCommandOptions options;
    options.idle_timeout = options_.idle_timeout;
    options.stream_creation_timeout = options_.stream_creation_timeout;
    RunRemoteCommandSession(fd, *std::move(session), *protocol, std::move(rc), options, exec_,
                            attach_, std::move(rest));
    return;
  }
  runtime::v1::PortForwardRequest pf;
  if (!pf.ParseFromString(*payload)) {
    (void)WriteAll(fd, NotFoundResponse());
    return;
  }
  if (websocket::IsWebSocketUpgrade(*req)) {
    ServeWebSocketPortForward(fd, *req, std::move(pf), rest, conn_number);
    return;
  }
  const Upgrade upgrade = CheckSpdyUpgrade(*req, /*port_forward=*/true);
  if (!WriteAll(fd, upgrade.response) || !upgrade.ok) return;
  absl::StatusOr<spdy::ServerSession> session = spdy::ServerSession::Create();
  if (!session.ok()) return;
  PortForwardSession pfs(fd, *std::move(session), std::move(pf), options_, port_forward_,
                         conn_number);
  pfs.Run(std::move(rest));
}

namespace {

WebSocketSessionOptions WebSocketOptions(const StreamingServerOptions& options) {
  WebSocketSessionOptions ws;
  ws.idle_timeout = options.idle_timeout;
  ws.max_message_bytes = options.websocket_max_message_bytes;
  return ws;
}

}  // namespace

void StreamingServer::ServeWebSocketRemoteCommand(int fd, const HttpRequest& req,
                                                  RemoteCommandRequest rc,
                                                  const std::string& rest) {
  const websocket::Handshake handshake =
      websocket::CheckUpgrade(req, websocket::kRemoteCommandProtocols);
  if (!WriteAll(fd, handshake.response) || !handshake.ok) return;
  const WebSocketSessionOptions options = WebSocketOptions(options_);
  RunWebSocketRemoteCommand(fd, websocket::ParseChannelProtocol(handshake.protocol), std::move(rc),
                            options, exec_, attach_, rest);
}

void StreamingServer::ServeWebSocketPortForward(int fd, const HttpRequest& req,
                                                runtime::v1::PortForwardRequest pf,
                                                const std::string& rest, int conn_number) {
  const websocket::Handshake handshake =
      websocket::CheckUpgrade(req, websocket::kPortForwardProtocols);
  if (!handshake.ok) {
    (void)WriteAll(fd, handshake.response);
    return;
  }
  const std::vector<std::pair<std::string, std::string>> text = {
      {"Content-Type", "text/plain; charset=utf-8"}};
  const WebSocketSessionOptions options = WebSocketOptions(options_);
  if (handshake.protocol == websocket::kSpdyTunnelProtocol) {
    // §9.5: the port-forward SPDY session, fed through a socket pair whose other end the
    // tunnel relays to and from WebSocket binary messages.
    int pair[2];
    absl::StatusOr<spdy::ServerSession> session = spdy::ServerSession::Create();
    if (!session.ok() || ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
      (void)WriteAll(
          fd, HttpResponse(500, text, "cannot set up the SPDY session of a WebSocket tunnel\n"));
      return;
    }
    sdk::UniqueFd outer(pair[0]), inner(pair[1]);
    if (!WriteAll(fd, handshake.response)) return;
    std::thread spdy_thread([&] {
      PortForwardSession pfs(inner.get(), *std::move(session), std::move(pf), options_,
                             port_forward_, conn_number);
      pfs.Run("");
      ::shutdown(inner.get(), SHUT_RDWR);  // the tunnel sees the end
    });
    RunWebSocketTunnel(fd, outer.get(), options, rest);
    spdy_thread.join();
    return;
  }
  // §9.4: the ports of the stored request (the kubelet fills it from `?port=`); a client that
  // asked for none names them in the query, as at the kubelet's endpoint.
  std::vector<uint16_t> ports;
  for (int32_t p : pf.port()) {
    if (p < 1 || p > 65535) {
      (void)WriteAll(fd, HttpResponse(400, text, absl::StrCat("invalid port ", p, "\n")));
      return;
    }
    ports.push_back(static_cast<uint16_t>(p));
  }
  if (ports.empty()) {
    absl::StatusOr<std::vector<uint16_t>> query = websocket::PortsFromQuery(req.target);
    if (!query.ok()) {
      (void)WriteAll(fd, HttpResponse(400, text, absl::StrCat(query.status().message(), "\n")));
      return;
    }
    ports = *std::move(query);
  }
  if (ports.size() > kMaxWebSocketPorts) {
    (void)WriteAll(fd, HttpResponse(400, text,
                                    absl::StrCat(ports.size(), " ports asked for; at most ",
                                                 kMaxWebSocketPorts, " per WebSocket\n")));
    return;
  }
  if (!WriteAll(fd, handshake.response)) return;
  const std::string sandbox = pf.pod_sandbox_id();
  const PortDialer dial = [this, &sandbox](uint16_t port) { return port_forward_(sandbox, port); };
  RunWebSocketPortForward(fd, websocket::ParseChannelProtocol(handshake.protocol), ports, sandbox,
                          options, dial, rest);
}

}  // namespace berth::cri::streaming
