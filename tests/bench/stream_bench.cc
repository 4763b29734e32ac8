// SPDX-License-Identifier: Apache-2.0
// Streaming benchmark (issue 8): exec and port-forward through the CRI Exec/PortForward URLs of
// a real berthd, over SPDY/3.1 as client-go speaks it, into a busybox pod run by runc through
// berth-shim (pod network, images from a local docker-registry; tests/integration/pod_harness.h):
//  1. exec round trip: `true` with stdout and stderr (kubectl exec without -i), from the Exec
//     RPC to the v4 status on the error stream, N runs: median and p90;
//  2. exec throughput: 100 MiB of zeros through stdout (`dd bs=32k`), and 100 MiB through
//     stdin -> `cat` -> stdout, R runs each;
//  3. port-forward throughput: 100 MiB from busybox httpd in the pod through one forwarded
//     connection, R runs;
//  4. C forwarded connections at once over one session, 10 MiB each, to four httpd ports:
//     total wall time, per-connection throughput.
// The client opens streams one at a time, waiting for each SYN_REPLY, as client-go does. It is
// lean (counts bytes, keeps no data) and reuses berth's frame codec and header compressor;
// conformance of the server is tested elsewhere (pods_stream_test, spdy_test).
//
//   berth_bench_stream [--runs N=50] [--repeat R=5] [--connections C=20]
#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "berth/unique_fd.hpp"
#include "cri/v1/api.grpc.pb.h"
#include "plugins/cri/streaming/spdy_frame.h"
#include "plugins/cri/streaming/spdy_header_block.h"
#include "tests/bench/bench_util.h"
#include "tests/integration/pod_harness.h"

namespace berth::bench {
namespace {

using namespace berth::testing;  // NOLINT(build/namespaces)
namespace spdy = berth::cri::spdy;
using Clock = std::chrono::steady_clock;

constexpr size_t kMiB = 1024 * 1024;
constexpr size_t kBig = 100 * kMiB;
constexpr size_t kSmall = 10 * kMiB;
// busybox httpd listens with a backlog of 9: 20 connections dialled at once to one of them
// overflow its accept queue, and the dropped SYNs cost a 1 s retransmission (seen as
// ListenOverflows in the pod). So there are kHttpServers of them, on consecutive ports, and
// concurrent connections are spread over them.
constexpr int kHttpPort = 8080;
constexpr int kHttpServers = 4;
constexpr size_t kChunk = 32 * 1024;  // client-go copies stdin in 32 KiB writes

double MsSince(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}
double Ms(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double, std::milli>(to - from).count();
}
double MiBps(size_t bytes, double ms) { return ms > 0 ? bytes / double(kMiB) / (ms / 1000) : 0; }
double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * v.size()))];
}

// The client end of one SPDY session on a streaming URL.
class Session {
 public:
  struct Stream {
    bool replied = false, fin = false, reset = false;
    size_t bytes = 0;
    std::string head;  // the first 4 KiB received
    Clock::time_point first_byte, end;
  };

  // TCP connect to the URL (http://IPv4:PORT/PATH) and the SPDY upgrade with `protocol`;
  // empty on success, otherwise what failed.
  std::string Start(const std::string& url, const std::string& protocol) {
    const std::string scheme = "http://";
    const size_t slash = url.find('/', scheme.size());
    const size_t colon = url.rfind(':', slash);
    int port = 0;
    if (url.rfind(scheme, 0) != 0 || slash == std::string::npos || colon == std::string::npos ||
        !absl::SimpleAtoi(url.substr(colon + 1, slash - colon - 1), &port)) {
      return "unexpected streaming URL " + url;
    }
    const std::string host = url.substr(scheme.size(), colon - scheme.size());
    fd_.Reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    if (::inet_pton(AF_INET, host.c_str(), &a.sin_addr) != 1 ||
        ::connect(fd_.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
      return "cannot connect to " + url;
    }
    const int one = 1;
    (void)::setsockopt(fd_.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    out_ = absl::StrCat("POST ", url.substr(slash), " HTTP/1.1\r\nHost: ", host, ":", port,
                        "\r\nUser-Agent: berth-bench\r\nContent-Length: 0\r\n"
                        "Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: ",
                        protocol, "\r\n\r\n");
    if (!Flush(/*block=*/true)) return "cannot send the upgrade request";
    // Byte by byte: what follows the head is SPDY.
    std::string head;
    char c;
    while (head.find("\r\n\r\n") == std::string::npos) {
      if (!Wait(POLLIN, 10000) || ::read(fd_.get(), &c, 1) != 1) return "no upgrade response";
      head.push_back(c);
    }
    if (head.rfind("HTTP/1.1 101", 0) != 0) return "upgrade refused: " + head;
    absl::StatusOr<spdy::HeaderCompressor> compressor = spdy::HeaderCompressor::Create();
    if (!compressor.ok()) return compressor.status().ToString();
    compressor_.emplace(*std::move(compressor));
    return "";
  }

  // Opens a stream and waits for its SYN_REPLY (as client-go's CreateStream does); its ID,
  // 0 on failure.
  uint32_t Open(const spdy::Headers& headers) {
    const uint32_t id = next_id_;
    next_id_ += 2;
    absl::StatusOr<std::string> block = compressor_->CompressHeaders(headers);
    if (!block.ok()) return 0;
    spdy::SynStreamFrame syn;
    syn.stream_id = id;
    syn.header_block = *std::move(block);
    if (!spdy::AppendFrame(syn, &out_).ok()) return 0;
    const bool answered = Pump([&] { return streams_[id].replied || streams_[id].reset; });
    return answered && streams_[id].replied ? id : 0;
  }
  void Send(uint32_t id, absl::string_view data, bool fin = false) {
    (void)spdy::AppendFrame(
        spdy::DataFrame{id, fin ? spdy::kFlagFin : uint8_t{0}, std::string(data)}, &out_);
  }
  void GoAway() { (void)spdy::AppendFrame(spdy::GoAwayFrame{0, 0}, &out_); }

  // Called whenever less than 1 MiB waits to be written (a stdin source); it may not replace
  // itself.
  void SetRefill(std::function<void()> refill) { refill_ = std::move(refill); }

  // Writes what is queued and reads frames until done() holds; false on EOF, a parse error
  // or after `timeout`.
  template <typename Pred>
  bool Pump(Pred done, std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
    const auto deadline = Clock::now() + timeout;
    while (!done()) {
      if (refill_ && out_.size() - written_ < kMiB) refill_();
      if (eof_) return false;
      const int left = static_cast<int>(
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
      if (left <= 0) return false;
      pollfd p{fd_.get(), static_cast<short>(POLLIN | (written_ < out_.size() ? POLLOUT : 0)), 0};
      if (::poll(&p, 1, left) <= 0) continue;
      if ((p.revents & POLLOUT) && !Flush(/*block=*/false)) return false;
      if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
        const ssize_t n = ::recv(fd_.get(), buffer_.data(), buffer_.size(), MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
          eof_ = true;
          continue;
        }
        if (n > 0 && !Dispatch(absl::string_view(buffer_.data(), static_cast<size_t>(n)))) {
          return false;
        }
      }
    }
    return Flush(/*block=*/true);
  }

  Stream& stream(uint32_t id) { return streams_[id]; }
  bool goaway() const { return goaway_; }
  bool eof() const { return eof_; }

 private:
  bool Dispatch(absl::string_view bytes) {
    parser_.Append(bytes);
    for (;;) {
      absl::StatusOr<std::optional<spdy::Frame>> next = parser_.Next();
      if (!next.ok()) {
        std::fprintf(stderr, "berth_bench_stream: bad frame from the server: %s\n",
                     next.status().ToString().c_str());
        return false;
      }
      if (!next->has_value()) return true;
      spdy::Frame& f = **next;
      if (auto* d = std::get_if<spdy::DataFrame>(&f)) {
        Stream& s = streams_[d->stream_id];
        if (!d->data.empty()) {
          if (s.bytes == 0) s.first_byte = Clock::now();
          s.bytes += d->data.size();
          if (s.head.size() < 4096) s.head += d->data.substr(0, 4096 - s.head.size());
        }
        if (d->flags & spdy::kFlagFin) {
          s.fin = true;
          s.end = Clock::now();
        }
      } else if (auto* r = std::get_if<spdy::SynReplyFrame>(&f)) {
        streams_[r->stream_id].replied = true;
      } else if (auto* rst = std::get_if<spdy::RstStreamFrame>(&f)) {
        Stream& s = streams_[rst->stream_id];
        s.reset = true;
        s.end = Clock::now();
      } else if (auto* ping = std::get_if<spdy::PingFrame>(&f)) {
        (void)spdy::AppendFrame(*ping, &out_);
      } else if (std::holds_alternative<spdy::GoAwayFrame>(f)) {
        goaway_ = true;
      }
    }
  }

  // Writes the queue; with `block`, all of it.
  bool Flush(bool block) {
    while (written_ < out_.size()) {
      const ssize_t n = ::send(fd_.get(), out_.data() + written_, out_.size() - written_,
                               MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        written_ += static_cast<size_t>(n);
      } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        if (!block) break;
        // The server may be waiting for us to read: keep reading while blocked on writing.
        pollfd p{fd_.get(), POLLIN | POLLOUT, 0};
        if (::poll(&p, 1, 10000) <= 0) return false;
        if (p.revents & POLLIN) {
          const ssize_t r = ::recv(fd_.get(), buffer_.data(), buffer_.size(), MSG_DONTWAIT);
          if (r == 0) eof_ = true;
          if (r > 0 && !Dispatch(absl::string_view(buffer_.data(), static_cast<size_t>(r)))) {
            return false;
          }
          if (eof_) return false;
        }
      } else {
        return false;
      }
    }
    if (written_ == out_.size()) {
      out_.clear();
      written_ = 0;
    } else if (written_ >= kMiB) {
      out_.erase(0, written_);
      written_ = 0;
    }
    return true;
  }

  bool Wait(short events, int timeout_ms) {
    pollfd p{fd_.get(), events, 0};
    return ::poll(&p, 1, timeout_ms) > 0;
  }

  sdk::UniqueFd fd_;
  std::optional<spdy::HeaderCompressor> compressor_;
  spdy::FrameParser parser_;
  std::vector<char> buffer_ = std::vector<char>(256 * 1024);
  std::string out_;
  size_t written_ = 0;
  uint32_t next_id_ = 1;
  std::map<uint32_t, Stream> streams_;
  std::function<void()> refill_;
  bool goaway_ = false, eof_ = false;
};

class Bench {
 public:
  explicit Bench(PodHarness& h) : h_(h) {}

  // A pod on the pod network with one busybox container serving /www over HTTP on 8080 and
  // the next ports (files `big`, 100 MiB, and `small`, 10 MiB, written before httpd starts);
  // returns once httpd answers through a port-forward, so that nothing else runs in the pod
  // afterwards.
  std::string Setup() {
    pod_ = h_.NewPod("stream-bench");
    grpc::Status s = h_.RunPod(pod_, &pod_id_);
    if (!s.ok()) return "RunPodSandbox: " + Describe(s);
    std::string script = absl::StrCat("mkdir -p /www && dd if=/dev/zero of=/www/big bs=", kChunk,
                                      " count=", kBig / kChunk,
                                      " 2>/dev/null && dd if=/dev/zero of=/www/small bs=", kChunk,
                                      " count=", kSmall / kChunk, " 2>/dev/null && ");
    // The others in the background first, then the one WaitForHttpd() asks in the foreground.
    for (int i = 1; i < kHttpServers; ++i) {
      absl::StrAppend(&script, "httpd -p ", kHttpPort + i, " -h /www && ");
    }
    absl::StrAppend(&script, "exec httpd -f -p ", kHttpPort, " -h /www");
    s = h_.RunContainer(pod_id_, pod_, h_.NewContainer(pod_, "web", {"sh", "-c", script}),
                        &container_id_);
    if (!s.ok()) return "starting the web container: " + Describe(s);
    if (!h_.WaitForState(container_id_, v1::CONTAINER_RUNNING, seconds(20))) {
      return "the web container does not run";
    }
    std::string error;
    return WaitForHttpd(&error) ? "" : error;
  }

  // Exec of `cmd` with the streams kubectl opens; in *error what failed.
  struct Exec {
    Session session;
    uint32_t error = 0, in = 0, out = 0, err = 0;
  };
  bool StartExec(Exec& e, const std::vector<std::string>& cmd, bool in, std::string* error) {
    v1::ExecRequest req;
    req.set_container_id(container_id_);
    for (const std::string& a : cmd) req.add_cmd(a);
    req.set_stdin(in);
    req.set_stdout(true);
    req.set_stderr(true);
    v1::ExecResponse resp;
    grpc::Status s = h_.rt().Exec(CriContext().get(), req, &resp);
    if (!s.ok()) {
      *error = "Exec: " + Describe(s);
      return false;
    }
    *error = e.session.Start(resp.url(), "v4.channel.k8s.io");
    if (!error->empty()) return false;
    e.error = e.session.Open({{"streamtype", "error"}});
    if (in) e.in = e.session.Open({{"streamtype", "stdin"}});
    e.out = e.session.Open({{"streamtype", "stdout"}});
    e.err = e.session.Open({{"streamtype", "stderr"}});
    if (e.error == 0 || (in && e.in == 0) || e.out == 0 || e.err == 0) {
      *error = "the exec streams were not accepted";
      return false;
    }
    return true;
  }
  // Waits for the v4 status and the end of the session; checks it is Success.
  bool FinishExec(Exec& e, std::string* error) {
    Session::Stream& status = e.session.stream(e.error);
    if (!e.session.Pump([&] { return status.reset || status.fin; }) ||
        !absl::StrContains(status.head, "\"status\":\"Success\"")) {
      *error = "no Success status on the error stream: " + status.head;
      return false;
    }
    (void)e.session.Pump([&] { return e.session.goaway(); }, std::chrono::seconds(5));
    return true;
  }

  // 1. Round trip of `true`, ms.
  bool ExecTrue(double* ms, std::string* error) {
    const auto t0 = Clock::now();
    Exec e;
    if (!StartExec(e, {"true"}, false, error)) return false;
    Session::Stream& status = e.session.stream(e.error);
    if (!e.session.Pump([&] { return status.reset || status.fin; })) {
      *error = "no status on the error stream";
      return false;
    }
    *ms = Ms(t0, status.end);
    return FinishExec(e, error);
  }

  // 2a. 100 MiB of zeros written to stdout in 32 KiB blocks by dd: ms from the Exec RPC, and
  // from the first byte, to the end of stdout. (Not busybox `head -c`: it copies through
  // getc/putchar in 4 KiB writes and alone costs ~0.4 s of CPU per 100 MiB, which on a small
  // machine measures head rather than the stream.)
  bool ExecStdout(double* ms, double* ms_from_first, std::string* error) {
    const auto t0 = Clock::now();
    Exec e;
    if (!StartExec(e,
                   {"dd", "if=/dev/zero", "bs=" + std::to_string(kChunk),
                    "count=" + std::to_string(kBig / kChunk)},
                   false, error)) {
      return false;
    }
    Session::Stream& out = e.session.stream(e.out);
    if (!e.session.Pump([&] { return out.fin || out.reset; })) {
      *error = "stdout did not end";
      return false;
    }
    if (out.bytes != kBig) {
      *error = absl::StrCat("stdout carried ", out.bytes, " bytes, not ", kBig);
      return false;
    }
    *ms = Ms(t0, out.end);
    *ms_from_first = Ms(out.first_byte, out.end);
    return FinishExec(e, error);
  }

  // 2b. 100 MiB written to stdin of `cat`, read back from stdout: ms from the first stdin
  // byte to the end of stdout, and in *returned the bytes that came back. A short count is
  // not fatal (the caller reports it): the figures are still worth having.
  bool ExecCat(double* ms, size_t* returned, std::string* error) {
    Exec e;
    if (!StartExec(e, {"cat"}, true, error)) return false;
    const std::string chunk(kChunk, '\0');
    size_t queued = 0;
    Session& session = e.session;
    const uint32_t in = e.in;
    bool fin_sent = false;
    session.SetRefill([&] {
      for (int i = 0; i < 32 && queued < kBig; ++i, queued += kChunk) session.Send(in, chunk);
      if (queued >= kBig && !fin_sent) {
        session.Send(in, "", /*fin=*/true);
        fin_sent = true;
      }
    });
    const auto t0 = Clock::now();
    Session::Stream& out = session.stream(e.out);
    if (!session.Pump([&] { return out.fin || out.reset; })) {
      *error = absl::StrCat("stdout of cat did not end (", out.bytes, " bytes so far)");
      return false;
    }
    *returned = out.bytes;
    *ms = Ms(t0, out.end);
    session.SetRefill(nullptr);
    return FinishExec(e, error);
  }

  // A port-forward session to the pod.
  bool StartForward(Session& session, std::string* error) {
    v1::PortForwardRequest req;
    req.set_pod_sandbox_id(pod_id_);
    v1::PortForwardResponse resp;
    grpc::Status s = h_.rt().PortForward(CriContext().get(), req, &resp);
    if (!s.ok()) {
      *error = "PortForward: " + Describe(s);
      return false;
    }
    *error = session.Start(resp.url(), "portforward.k8s.io");
    return error->empty();
  }
  // One forwarded connection as client-go makes it (error stream, half-closed at once, then
  // the data stream), carrying GET /path; the data stream's ID, 0 on failure.
  uint32_t Forward(Session& session, int request_id, const std::string& path,
                   int http_port = kHttpPort) {
    const std::string port = std::to_string(http_port), rid = std::to_string(request_id);
    const uint32_t error =
        session.Open({{"port", port}, {"requestid", rid}, {"streamtype", "error"}});
    if (error == 0) return 0;
    session.Send(error, "", /*fin=*/true);
    const uint32_t data =
        session.Open({{"streamtype", "data"}, {"port", port}, {"requestid", rid}});
    if (data == 0) return 0;
    session.Send(data, "GET /" + path + " HTTP/1.0\r\n\r\n");
    return data;
  }
  // True when the data stream carried a whole HTTP response with `body` bytes.
  static bool WholeResponse(const Session::Stream& s, size_t body) {
    const size_t head_end = s.head.find("\r\n\r\n");
    return absl::StartsWith(s.head, "HTTP/1.") && absl::StrContains(s.head, " 200 ") &&
           head_end != std::string::npos && s.bytes == head_end + 4 + body;
  }

  // Waits until httpd answers through a port-forward (it starts after writing 110 MiB).
  bool WaitForHttpd(std::string* error) {
    const auto deadline = Clock::now() + std::chrono::seconds(60);
    for (int request = 0; Clock::now() < deadline; ++request) {
      Session session;
      if (!StartForward(session, error)) return false;
      const uint32_t data = Forward(session, 0, "");
      if (data == 0) {
        *error = "the port-forward streams were not accepted";
        return false;
      }
      Session::Stream& d = session.stream(data);
      Session::Stream& e = session.stream(data - 2);
      (void)session.Pump([&] { return (d.fin || d.reset) && (e.fin || e.reset); },
                         std::chrono::seconds(10));
      if (e.head.empty() && absl::StartsWith(d.head, "HTTP/1.")) return true;
      *error = "httpd in the pod does not answer: " + e.head;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    return false;
  }

  // 3. 100 MiB through one forwarded connection: ms from the request to the end of the data.
  bool ForwardOne(double* ms, std::string* error) {
    Session session;
    if (!StartForward(session, error)) return false;
    const auto t0 = Clock::now();
    const uint32_t data = Forward(session, 0, "big");
    Session::Stream& d = session.stream(data);
    if (data == 0 || !session.Pump([&] { return d.fin || d.reset; })) {
      *error = "the forwarded connection did not end";
      return false;
    }
    if (!WholeResponse(d, kBig)) {
      *error = absl::StrCat("the forwarded connection carried ", d.bytes,
                            " bytes: ", d.head.substr(0, 200), session.stream(data - 2).head);
      return false;
    }
    *ms = Ms(t0, d.end);
    session.GoAway();
    (void)session.Pump([] { return true; });
    return true;
  }

  // 4. `n` connections at once over one session, 10 MiB each, spread over the httpd ports:
  // wall ms, and ms per connection.
  bool ForwardMany(int n, double* wall_ms, std::vector<double>* each_ms, std::string* error) {
    Session session;
    if (!StartForward(session, error)) return false;
    const auto t0 = Clock::now();
    std::vector<uint32_t> ids;
    std::vector<Clock::time_point> starts;
    for (int i = 0; i < n; ++i) {
      starts.push_back(Clock::now());
      ids.push_back(Forward(session, i, "small", kHttpPort + i % kHttpServers));
      if (ids.back() == 0) {
        *error = absl::StrCat("connection ", i, ": the streams were not accepted");
        return false;
      }
    }
    const bool ended = session.Pump([&] {
      for (uint32_t id : ids) {
        if (!session.stream(id).fin && !session.stream(id).reset) return false;
      }
      return true;
    });
    *wall_ms = MsSince(t0);
    if (!ended) {
      *error = "not every forwarded connection ended";
      return false;
    }
    each_ms->clear();
    for (int i = 0; i < n; ++i) {
      const Session::Stream& d = session.stream(ids[i]);
      if (!WholeResponse(d, kSmall)) {
        *error = absl::StrCat("connection ", i, " carried ", d.bytes, " bytes");
        return false;
      }
      each_ms->push_back(Ms(starts[i], d.end));
    }
    session.GoAway();
    (void)session.Pump([] { return true; });
    return true;
  }

  grpc::Status Teardown() {
    grpc::Status s = h_.StopPod(pod_id_);
    return s.ok() ? h_.RemovePod(pod_id_) : s;
  }

 private:
  PodHarness& h_;
  v1::PodSandboxConfig pod_;
  std::string pod_id_, container_id_;
};

int Fail(PodHarness& h, const std::string& what) {
  std::fprintf(stderr, "berth_bench_stream: %s\n---- berthd log (last lines) ----\n%s\n",
               what.c_str(), h.LogTail(60).c_str());
  std::string forced = h.Cleanup();
  if (!forced.empty()) std::fprintf(stderr, "%s", forced.c_str());
  return 1;
}

void PrintRate(const char* what, const std::vector<double>& ms, size_t bytes) {
  std::vector<double> rates;
  for (double m : ms) rates.push_back(MiBps(bytes, m));
  const Stats r = Summarize(rates);
  std::printf("  %-44s median %8.1f MiB/s (min %.1f, max %.1f)\n", what, r.median, r.min, r.max);
}

int Main(int argc, char** argv) {
  int runs = 50, repeat = 5, connections = 20;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    int v = std::max(1, std::atoi(argv[i + 1]));
    if (a == "--runs") runs = v;
    if (a == "--repeat") repeat = v;
    if (a == "--connections") connections = v;
  }
  if (geteuid() != 0) {
    std::fprintf(stderr, "berth_bench_stream: run as root (berthd, runc and CNI need it)\n");
    return 1;
  }
  ImageRegistry registry;
  std::string error;
  if (!registry.Start(&error)) {
    std::fprintf(stderr, "berth_bench_stream: %s\n", error.c_str());
    return 1;
  }
  PodHarness h(registry.images(), "bench-stream");
  if (!h.Start(&error)) {
    std::fprintf(stderr, "berth_bench_stream: %s\n", error.c_str());
    h.Cleanup();
    return 1;
  }
  Bench b(h);
  if (error = b.Setup(); !error.empty()) return Fail(h, error);

  // 1. Exec round trip (one warm-up run first).
  double ms = 0, from_first = 0;
  if (!b.ExecTrue(&ms, &error)) return Fail(h, "warm-up exec: " + error);
  std::vector<double> true_ms;
  for (int r = 0; r < runs; ++r) {
    if (!b.ExecTrue(&ms, &error)) return Fail(h, "exec " + std::to_string(r) + ": " + error);
    true_ms.push_back(ms);
  }
  const Stats t = Summarize(true_ms);
  std::printf("streaming through CRI (SPDY/3.1, busybox pod on the pod network, runc)\n");
  std::printf("exec `true` (v4, stdout+stderr), Exec RPC to status, %d runs:\n", runs);
  std::printf("  %-44s median %8.2f ms  p90 %8.2f ms  (min %.2f, max %.2f)\n", "round trip",
              t.median, Percentile(true_ms, 0.9), t.min, t.max);

  // 2. Exec throughput.
  std::vector<double> out_ms, out_first_ms, cat_ms;
  std::vector<std::string> short_cat;
  for (int r = 0; r < repeat; ++r) {
    if (!b.ExecStdout(&ms, &from_first, &error)) return Fail(h, "exec dd: " + error);
    out_ms.push_back(ms);
    out_first_ms.push_back(from_first);
    size_t returned = 0;
    if (!b.ExecCat(&ms, &returned, &error)) return Fail(h, "exec cat: " + error);
    cat_ms.push_back(ms);
    if (returned != kBig) short_cat.push_back(absl::StrCat(kBig - returned));
  }
  std::printf("exec throughput, 100 MiB, %d runs:\n", repeat);
  PrintRate("stdout of dd bs=32k (from the Exec RPC)", out_ms, kBig);
  PrintRate("stdout of dd bs=32k (from the first byte)", out_first_ms, kBig);
  PrintRate("stdin -> cat -> stdout", cat_ms, kBig);
  if (!short_cat.empty()) {
    std::printf(
        "  WARNING: cat returned less than it was sent in %zu of %d runs (bytes lost: %s):"
        " the end of stdin did not reach the process\n",
        short_cat.size(), repeat, absl::StrJoin(short_cat, ", ").c_str());
  }

  // 3 and 4. Port-forward.
  std::vector<double> pf_ms;
  for (int r = 0; r < repeat; ++r) {
    if (!b.ForwardOne(&ms, &error)) return Fail(h, "port-forward: " + error);
    pf_ms.push_back(ms);
  }
  std::printf("port-forward to busybox httpd in the pod, %d runs:\n", repeat);
  PrintRate("one connection, 100 MiB", pf_ms, kBig);
  std::vector<double> walls, each, all_each;
  for (int r = 0; r < repeat; ++r) {
    double wall = 0;
    if (!b.ForwardMany(connections, &wall, &each, &error)) {
      return Fail(h, "concurrent port-forward: " + error);
    }
    walls.push_back(wall);
    all_each.insert(all_each.end(), each.begin(), each.end());
  }
  const Stats w = Summarize(walls);
  std::printf("%d connections at once over one session (%d ports), 10 MiB each, %d runs:\n",
              connections, kHttpServers, repeat);
  std::printf("  %-44s median %8.1f ms (min %.1f, max %.1f)\n", "total wall time", w.median, w.min,
              w.max);
  std::vector<double> aggregate;
  for (double m : walls) aggregate.push_back(MiBps(kSmall * connections, m));
  std::printf("  %-44s median %8.1f MiB/s\n", "aggregate", Summarize(aggregate).median);
  PrintRate("per connection", all_each, kSmall);

  if (grpc::Status s = b.Teardown(); !s.ok()) return Fail(h, "removing the pod: " + Describe(s));
  std::string forced = h.Cleanup();
  if (!forced.empty()) std::fprintf(stderr, "cleanup had to use force:\n%s", forced.c_str());
  return 0;
}

}  // namespace
}  // namespace berth::bench

int main(int argc, char** argv) { return berth::bench::Main(argc, argv); }
