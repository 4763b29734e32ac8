// SPDX-License-Identifier: Apache-2.0
#include "plugins/cri/streaming/stream_client.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "core/status_macros.h"
#include "nlohmann/json.hpp"

namespace berth::cri::streaming {
namespace {

using core::ErrnoToStatus;

constexpr size_t kMaxResponseHead = size_t{16} * 1024;
constexpr size_t kMaxResponseBody = size_t{64} * 1024;
constexpr size_t kMaxErrorPayload = 1 << 20;
constexpr size_t kCopyChunk = size_t{32} * 1024;  // as Kubernetes copies
// How long Close() waits for the server to answer our GOAWAY by closing, and for the writer
// to get the last frames out.
constexpr absl::Duration kCloseLinger = absl::Seconds(1);
constexpr absl::Duration kWriterDrain = absl::Seconds(5);

int RemainingMs(absl::Time deadline) {
  const absl::Duration left = deadline - absl::Now();
  if (left <= absl::ZeroDuration()) return 0;
  return static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(left) + 1, 1 << 30));
}

absl::StatusOr<sdk::UniqueFd> NewEventFd() {
  const int fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd < 0) return ErrnoToStatus(errno, "eventfd");
  return sdk::UniqueFd(fd);
}

// An eventfd that is never drained stays readable: a broadcast "stop" for every poll on it.
void Signal(int eventfd) {
  const uint64_t one = 1;
  (void)!::write(eventfd, &one, sizeof(one));
}

// Writes all of `data` to a socket, waiting for room up to `deadline` (infinite: blocks).
absl::Status SendAll(int fd, absl::string_view data, absl::Time deadline, int stop_fd = -1) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      data.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
      return ErrnoToStatus(errno, "send");
    }
    pollfd p[2] = {{fd, POLLOUT, 0}, {stop_fd, POLLIN, 0}};
    const int timeout = deadline == absl::InfiniteFuture() ? -1 : RemainingMs(deadline);
    const int r = ::poll(p, stop_fd >= 0 ? 2 : 1, timeout);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return ErrnoToStatus(errno, "poll");
    if (r == 0) return absl::DeadlineExceededError("send: timed out");
    if (stop_fd >= 0 && p[1].revents != 0) return absl::CancelledError("send: stopped");
  }
  return absl::OkStatus();
}

// Writes all of `data` to a local fd (a terminal, pipe or file), blocking as the fd does.
// 0, or the errno of the failure.
int WriteFully(int fd, absl::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n > 0) {
      data.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd p{fd, POLLOUT, 0};
      (void)::poll(&p, 1, -1);
      continue;
    }
    return n < 0 ? errno : EIO;
  }
  return 0;
}

bool ContainsIgnoreCase(absl::string_view text, absl::string_view part) {
  return absl::StrContains(absl::AsciiStrToLower(text), absl::AsciiStrToLower(part));
}

// The first value of a JSON object's field, matched as Go's decoder does (exact first, then
// ASCII case-insensitively); nullptr when absent.
const nlohmann::json* Field(const nlohmann::json& object, absl::string_view name) {
  if (!object.is_object()) return nullptr;
  auto exact = object.find(std::string(name));
  if (exact != object.end()) return &*exact;
  for (auto it = object.begin(); it != object.end(); ++it) {
    if (absl::EqualsIgnoreCase(it.key(), name)) return &it.value();
  }
  return nullptr;
}

std::string StringField(const nlohmann::json& object, absl::string_view name) {
  const nlohmann::json* f = Field(object, name);
  return f != nullptr && f->is_string() ? f->get<std::string>() : std::string();
}

// What a non-101 answer says: the "message" (or "error") of a JSON body, else the text.
std::string ResponseText(absl::string_view body) {
  nlohmann::json j = nlohmann::json::parse(body.begin(), body.end(), nullptr, false);
  if (j.is_object()) {
    for (absl::string_view key : {"message", "error"}) {
      std::string text = StringField(j, key);
      if (!text.empty()) return text;
    }
  }
  return std::string(absl::StripAsciiWhitespace(body));
}

struct ResponseHead {
  int code = 0;
  std::string reason;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string Header(absl::string_view name) const {
    for (const auto& [n, v] : headers) {
      if (absl::EqualsIgnoreCase(n, name)) return v;
    }
    return "";
  }
};

absl::StatusOr<ResponseHead> ParseResponseHead(absl::string_view head) {
  std::vector<absl::string_view> lines = absl::StrSplit(head, "\r\n");
  if (lines.empty()) return absl::InvalidArgumentError("empty HTTP response");
  std::vector<absl::string_view> status = absl::StrSplit(lines[0], absl::MaxSplits(' ', 2));
  ResponseHead out;
  if (status.size() < 2 || !absl::StartsWith(status[0], "HTTP/1.") ||
      !absl::SimpleAtoi(status[1], &out.code)) {
    return absl::InvalidArgumentError(
        absl::StrCat("not an HTTP/1.1 response: \"", absl::CHexEscape(lines[0]), "\""));
  }
  if (status.size() == 3) out.reason = std::string(status[2]);
  for (size_t i = 1; i < lines.size(); ++i) {
    if (lines[i].empty()) continue;
    const size_t colon = lines[i].find(':');
    if (colon == absl::string_view::npos) continue;
    out.headers.emplace_back(std::string(absl::StripAsciiWhitespace(lines[i].substr(0, colon))),
                             std::string(absl::StripAsciiWhitespace(lines[i].substr(colon + 1))));
  }
  return out;
}

absl::Status HttpError(int code, absl::string_view text) {
  switch (code) {
    case 400:
      return absl::InvalidArgumentError(text);
    case 403:
      return absl::FailedPreconditionError(text);
    case 404:
      return absl::NotFoundError(text);
    default:
      return absl::UnavailableError(text);
  }
}

absl::StatusOr<sdk::UniqueFd> Dial(const StreamUrl& u, absl::Time deadline) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const int rc = ::getaddrinfo(u.host.c_str(), std::to_string(u.port).c_str(), &hints, &found);
  if (rc != 0) {
    return absl::UnavailableError(absl::StrCat("cannot resolve the streaming server's host \"",
                                               u.host, "\": ", ::gai_strerror(rc)));
  }
  absl::Cleanup free_found = [found] { ::freeaddrinfo(found); };
  absl::Status last = absl::UnavailableError("no address");
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    sdk::UniqueFd fd(::socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd.valid()) {
      last = ErrnoToStatus(errno, "socket");
      continue;
    }
    int err = 0;
    if (::connect(fd.get(), a->ai_addr, a->ai_addrlen) != 0) {
      err = errno;
      if (err == EINPROGRESS) {
        pollfd p{fd.get(), POLLOUT, 0};
        int r;
        do {
          r = ::poll(&p, 1, RemainingMs(deadline));
        } while (r < 0 && errno == EINTR);
        if (r == 0) {
          err = ETIMEDOUT;
        } else {
          socklen_t len = sizeof(err);
          if (::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
        }
      }
    }
    if (err != 0) {
      last = ErrnoToStatus(err, "connect");
      continue;
    }
    // Back to blocking (the reader polls anyway); small frames go out at once.
    const int flags = ::fcntl(fd.get(), F_GETFL);
    if (flags >= 0) (void)::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK);
    const int one = 1;
    (void)::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
  }
  return absl::UnavailableError(absl::StrCat("cannot connect to the streaming server at ",
                                             u.host_header, ": ", last.message(),
                                             " (is berthd running, and the URL fresh?)"));
}

// ---- receivers ----

// Counts the streams Run() waits for.
class EndTracker {
 public:
  void Add() {
    std::lock_guard<std::mutex> lock(mu_);
    ++pending_;
  }
  void Done() {
    std::lock_guard<std::mutex> lock(mu_);
    --pending_;
    cv_.notify_all();
  }
  void Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return pending_ <= 0; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int pending_ = 0;
};

// Keeps what a stream carries (the error stream), up to a limit.
class BufferReceiver : public SpdyConnection::Receiver {
 public:
  explicit BufferReceiver(std::shared_ptr<EndTracker> tracker = nullptr)
      : tracker_(std::move(tracker)) {
    if (tracker_) tracker_->Add();
  }
  void OnData(absl::string_view data) override {
    std::lock_guard<std::mutex> lock(mu_);
    const size_t room = kMaxErrorPayload - std::min(kMaxErrorPayload, data_.size());
    absl::StrAppend(&data_, data.substr(0, room));
  }
  void OnEnd(SpdyConnection::EndReason reason) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      ended_ = true;
      reason_ = reason;
      cv_.notify_all();
    }
    if (tracker_) tracker_->Done();
  }
  // Waits for the end; the data and why it ended.
  std::pair<std::string, SpdyConnection::EndReason> Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return ended_; });
    return {data_, reason_};
  }

 private:
  std::shared_ptr<EndTracker> tracker_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::string data_;
  bool ended_ = false;
  SpdyConnection::EndReason reason_ = SpdyConnection::EndReason::kClosed;
};

// Copies a stream to a local fd (stdout, stderr). A reader that went away (EPIPE) makes the
// rest of the output vanish quietly, as it would for any Unix filter; other write errors are
// kept for Run() to report.
class FdReceiver : public SpdyConnection::Receiver {
 public:
  FdReceiver(int fd, std::shared_ptr<EndTracker> tracker) : fd_(fd), tracker_(std::move(tracker)) {
    tracker_->Add();
  }
  void OnData(absl::string_view data) override {
    if (broken_) return;
    const int err = WriteFully(fd_, data);
    if (err == 0) return;
    broken_ = true;
    if (err != EPIPE) {
      std::lock_guard<std::mutex> lock(mu_);
      error_ = ErrnoToStatus(err, absl::StrCat("write to fd ", fd_));
    }
  }
  void OnEnd(SpdyConnection::EndReason) override { tracker_->Done(); }
  absl::Status error() {
    std::lock_guard<std::mutex> lock(mu_);
    return error_;
  }

 private:
  const int fd_;
  std::shared_ptr<EndTracker> tracker_;
  bool broken_ = false;  // reader thread only
  std::mutex mu_;
  absl::Status error_;
};

// A stream we only write on (stdin, resize).
class SendOnlyReceiver : public SpdyConnection::Receiver {
 public:
  void OnData(absl::string_view) override {}
  void OnEnd(SpdyConnection::EndReason) override {}
};

}  // namespace

// ---- URL and upgrade ----

absl::StatusOr<StreamUrl> ParseStreamUrl(absl::string_view url) {
  absl::string_view rest = url;
  if (absl::StartsWithIgnoreCase(rest, "https://")) {
    return absl::UnimplementedError(absl::StrCat(
        "streaming URL ", url,
        " uses TLS, which this client does not speak; serve streaming over plain HTTP on "
        "127.0.0.1 (the default)"));
  }
  if (!absl::ConsumePrefix(&rest, "http://")) {
    return absl::InvalidArgumentError(
        absl::StrCat("streaming URL \"", url, "\" is not an http:// URL"));
  }
  StreamUrl out;
  const size_t slash = rest.find('/');
  absl::string_view hostport = rest.substr(0, slash);
  out.path = slash == absl::string_view::npos ? "/" : std::string(rest.substr(slash));
  out.host_header = std::string(hostport);
  absl::string_view port;
  if (absl::ConsumePrefix(&hostport, "[")) {
    const size_t close = hostport.find(']');
    if (close == absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("streaming URL \"", url, "\": unterminated [IPv6] host"));
    }
    out.host = std::string(hostport.substr(0, close));
    absl::string_view after = hostport.substr(close + 1);
    if (!after.empty() && !absl::ConsumePrefix(&after, ":")) {
      return absl::InvalidArgumentError(
          absl::StrCat("streaming URL \"", url, "\": junk after the [IPv6] host"));
    }
    port = after;
  } else {
    const size_t colon = hostport.rfind(':');
    out.host = std::string(hostport.substr(0, colon));
    if (colon != absl::string_view::npos) port = hostport.substr(colon + 1);
  }
  if (out.host.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("streaming URL \"", url, "\" has no host"));
  }
  out.port = 80;
  if (!port.empty() && (!absl::SimpleAtoi(port, &out.port) || out.port < 1 || out.port > 65535)) {
    return absl::InvalidArgumentError(
        absl::StrCat("streaming URL \"", url, "\": bad port \"", port, "\""));
  }
  return out;
}

absl::StatusOr<UpgradedConnection> DialAndUpgrade(absl::string_view url,
                                                  absl::Span<const absl::string_view> protocols,
                                                  absl::Duration timeout,
                                                  absl::string_view user_agent) {
  const absl::Time deadline = absl::Now() + timeout;
  ASSIGN_OR_RETURN(StreamUrl u, ParseStreamUrl(url));
  ASSIGN_OR_RETURN(sdk::UniqueFd fd, Dial(u, deadline));
  std::string request = absl::StrCat("POST ", u.path, " HTTP/1.1\r\nHost: ", u.host_header,
                                     "\r\nUser-Agent: ", user_agent,
                                     "\r\nContent-Length: 0\r\nConnection: Upgrade\r\n"
                                     "Upgrade: SPDY/3.1\r\n");
  for (absl::string_view p : protocols) {
    absl::StrAppend(&request, "X-Stream-Protocol-Version: ", p, "\r\n");
  }
  request += "\r\n";
  if (absl::Status s = SendAll(fd.get(), request, deadline); !s.ok()) {
    return absl::UnavailableError(
        absl::StrCat("sending the upgrade request to ", url, ": ", s.message()));
  }

  // The response head; what follows it is SPDY (or, for an error, the body).
  std::string buffer;
  size_t head_end = std::string::npos;
  bool eof = false;
  auto read_more = [&](absl::Time until) -> absl::Status {
    pollfd p{fd.get(), POLLIN, 0};
    int r;
    do {
      r = ::poll(&p, 1, RemainingMs(until));
    } while (r < 0 && errno == EINTR);
    if (r == 0) {
      return absl::DeadlineExceededError(absl::StrCat("no answer to the upgrade request from ", url,
                                                      " within ", absl::FormatDuration(timeout)));
    }
    char chunk[4096];
    ssize_t n;
    do {
      n = ::recv(fd.get(), chunk, sizeof(chunk), 0);
    } while (n < 0 && errno == EINTR);
    if (n < 0) return ErrnoToStatus(errno, absl::StrCat("reading the answer of ", url));
    if (n == 0) eof = true;
    buffer.append(chunk, static_cast<size_t>(n));
    return absl::OkStatus();
  };
  while ((head_end = buffer.find("\r\n\r\n")) == std::string::npos) {
    if (eof) {
      return absl::UnavailableError(
          absl::StrCat("the streaming server closed the connection without answering the "
                       "upgrade request to ",
                       url));
    }
    if (buffer.size() > kMaxResponseHead) {
      return absl::UnavailableError(
          absl::StrCat("the answer of ", url, " has a head over 16 KiB: not a streaming server?"));
    }
    if (absl::Status s = read_more(deadline); !s.ok()) return absl::UnavailableError(s.message());
  }
  absl::StatusOr<ResponseHead> head = ParseResponseHead(buffer.substr(0, head_end));
  if (!head.ok()) {
    return absl::UnavailableError(
        absl::StrCat("bad answer from ", url, ": ", head.status().message()));
  }
  std::string rest = buffer.substr(head_end + 4);
  if (head->code != 101) {
    // The body: Content-Length bytes, or (without one) what arrives within a second.
    size_t length = kMaxResponseBody;
    absl::Time body_deadline = std::min(deadline, absl::Now() + absl::Seconds(1));
    if (std::string cl = head->Header("Content-Length"); !cl.empty()) {
      if (!absl::SimpleAtoi(cl, &length)) length = 0;
      length = std::min(length, kMaxResponseBody);
      body_deadline = deadline;
    }
    buffer = rest;
    while (buffer.size() < length && !eof && read_more(body_deadline).ok()) {
    }
    std::string text = ResponseText(absl::string_view(buffer).substr(0, length));
    return HttpError(
        head->code, absl::StrCat("unable to upgrade the connection to ", url, ": ", head->code, " ",
                                 head->reason, text.empty() ? "" : ": ", text));
  }
  if (!ContainsIgnoreCase(head->Header("Connection"), "upgrade") ||
      !ContainsIgnoreCase(head->Header("Upgrade"), "spdy/3.1")) {
    return absl::UnavailableError(absl::StrCat("the answer of ", url,
                                               " is a 101 without the SPDY/3.1 upgrade headers "
                                               "(Connection: \"",
                                               head->Header("Connection"), "\", Upgrade: \"",
                                               head->Header("Upgrade"), "\")"));
  }
  UpgradedConnection out;
  out.fd = std::move(fd);
  std::string protocol = head->Header(kProtocolVersionHeader);
  out.protocol = std::string(absl::StripAsciiWhitespace(protocol.substr(0, protocol.find(','))));
  out.initial = std::move(rest);
  return out;
}

// ---- SpdyConnection ----

absl::StatusOr<std::unique_ptr<SpdyConnection>> SpdyConnection::Start(
    UpgradedConnection conn, const StreamClientOptions& options) {
  ASSIGN_OR_RETURN(spdy::ClientSession session, spdy::ClientSession::Create(options.session));
  ASSIGN_OR_RETURN(sdk::UniqueFd wake, NewEventFd());
  std::unique_ptr<SpdyConnection> c(
      new SpdyConnection(std::move(conn.fd), std::move(session), std::move(wake), options));
  c->writer_ = std::thread([raw = c.get()] { raw->WriteLoop(); });
  c->reader_ = std::thread(
      [raw = c.get(), initial = std::move(conn.initial)]() mutable { raw->ReadLoop(initial); });
  return c;
}

SpdyConnection::SpdyConnection(sdk::UniqueFd fd, spdy::ClientSession session, sdk::UniqueFd wake,
                               const StreamClientOptions& options)
    : options_(options), fd_(std::move(fd)), wake_(std::move(wake)), session_(std::move(session)) {}

SpdyConnection::~SpdyConnection() { Close(); }

void SpdyConnection::ReadLoop(const std::string& initial) {
  struct Delivery {
    std::shared_ptr<Receiver> receiver;
    bool is_data = false;
    std::string data;
    EndReason reason = EndReason::kClosed;
  };
  // Feeds bytes; false once the connection is over (GOAWAY or a session error).
  auto process = [this](absl::string_view bytes) {
    std::vector<spdy::ClientEvent> events;
    std::vector<Delivery> deliveries;
    bool go_on = true;
    {
      std::lock_guard<std::mutex> lock(mu_);
      const absl::Status fed = session_.Feed(bytes, &events);
      auto end = [&](uint32_t id, EndReason reason) {
        auto it = streams_.find(id);
        if (it == streams_.end() || it->second.ended) return;
        it->second.ended = true;
        if (reason == EndReason::kReset) it->second.reset = true;
        deliveries.push_back({std::move(it->second.receiver), false, {}, reason});
        if (!it->second.waiting) streams_.erase(it);
      };
      for (spdy::ClientEvent& event : events) {
        if (auto* reply = std::get_if<spdy::StreamReplied>(&event)) {
          auto it = streams_.find(reply->stream_id);
          if (it != streams_.end()) it->second.replied = true;
        } else if (auto* data = std::get_if<spdy::StreamData>(&event)) {
          auto it = streams_.find(data->stream_id);
          if (it != streams_.end() && !it->second.ended && it->second.receiver != nullptr) {
            deliveries.push_back({it->second.receiver, true, std::move(data->data), {}});
          }
        } else if (auto* half = std::get_if<spdy::StreamHalfClosed>(&event)) {
          end(half->stream_id, EndReason::kFin);
        } else if (auto* reset = std::get_if<spdy::StreamReset>(&event)) {
          end(reset->stream_id, EndReason::kReset);
        } else if (std::holds_alternative<spdy::GoAwayReceived>(event)) {
          // The Go client stops reading at a GOAWAY (§5.7); so do we.
          go_on = false;
        }
      }
      if (!fed.ok()) {
        end_status_ = absl::UnavailableError(
            absl::StrCat("SPDY protocol error from the streaming server: ", fed.message()));
        go_on = false;
      }
      cv_.notify_all();  // replies, and output for the writer (PING echoes, RSTs)
    }
    for (Delivery& d : deliveries) {
      if (d.receiver == nullptr) continue;
      if (d.is_data) {
        d.receiver->OnData(d.data);
      } else {
        d.receiver->OnEnd(d.reason);
      }
    }
    return go_on;
  };

  bool go_on = initial.empty() || process(initial);
  std::vector<char> buffer(size_t{64} * 1024);
  while (go_on) {
    pollfd p[2] = {{fd_.get(), POLLIN, 0}, {wake_.get(), POLLIN, 0}};
    const int r = ::poll(p, 2, -1);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      std::lock_guard<std::mutex> lock(mu_);
      if (end_status_.ok()) end_status_ = ErrnoToStatus(errno, "poll on the streaming connection");
      break;
    }
    if (p[1].revents != 0) break;  // Close(): stop reading
    const ssize_t n = ::recv(fd_.get(), buffer.data(), buffer.size(), 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) {
      std::lock_guard<std::mutex> lock(mu_);
      if (end_status_.ok() && !closing_) {
        end_status_ = ErrnoToStatus(errno, "reading from the streaming server");
      }
      break;
    }
    if (n == 0) break;  // EOF: the server closed the connection
    go_on = process(absl::string_view(buffer.data(), static_cast<size_t>(n)));
  }

  // Every stream still open ends with the connection.
  std::vector<std::shared_ptr<Receiver>> open;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ended_ = true;
    for (auto it = streams_.begin(); it != streams_.end();) {
      if (!it->second.ended) {
        it->second.ended = true;
        if (it->second.receiver != nullptr) open.push_back(std::move(it->second.receiver));
      }
      if (!it->second.waiting) {
        it = streams_.erase(it);
      } else {
        ++it;
      }
    }
    cv_.notify_all();
  }
  for (const std::shared_ptr<Receiver>& r : open) r->OnEnd(EndReason::kClosed);
}

void SpdyConnection::WriteLoop() {
  const bool pings = options_.ping_period > absl::ZeroDuration();
  absl::Time next_ping = pings ? absl::Now() + options_.ping_period : absl::InfiniteFuture();
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    auto ready = [&] {
      return session_.pending_output_bytes() > 0 || stop_writer_ || absl::Now() >= next_ping;
    };
    if (pings) {
      cv_.wait_until(lock, absl::ToChronoTime(next_ping), ready);
    } else {
      cv_.wait(lock, ready);
    }
    if (pings && absl::Now() >= next_ping) {
      if (!ended_ && !closing_ && !write_failed_ && !session_.goaway_sent()) {
        (void)session_.SendPing();
      }
      next_ping = absl::Now() + options_.ping_period;
    }
    std::string out = session_.TakeOutput();
    if (out.empty() || write_failed_) {
      if (stop_writer_) break;
      continue;
    }
    lock.unlock();
    const absl::Status sent = SendAll(fd_.get(), out, absl::InfiniteFuture());
    lock.lock();
    if (!sent.ok()) {
      write_failed_ = true;
      if (end_status_.ok() && !closing_) {
        end_status_ = absl::UnavailableError(
            absl::StrCat("writing to the streaming server: ", sent.message()));
      }
      ::shutdown(fd_.get(), SHUT_RDWR);  // the reader ends too
    }
    cv_.notify_all();  // room for Write()
  }
  writer_done_ = true;
  cv_.notify_all();
}

absl::StatusOr<uint32_t> SpdyConnection::CreateStream(const spdy::Headers& headers,
                                                      std::shared_ptr<Receiver> receiver,
                                                      absl::string_view first_data) {
  std::unique_lock<std::mutex> lock(mu_);
  if (ended_ || closing_ || write_failed_) {
    return absl::UnavailableError("cannot open a stream: the streaming connection has ended");
  }
  ASSIGN_OR_RETURN(const uint32_t id, session_.OpenStream(headers));
  if (!first_data.empty()) RETURN_IF_ERROR(session_.SendData(id, first_data));
  StreamEntry& entry = streams_[id];
  entry.receiver = std::move(receiver);
  entry.waiting = true;
  KickLocked();
  const auto deadline = absl::ToChronoTime(absl::Now() + options_.stream_creation_timeout);
  cv_.wait_until(lock, deadline, [&] {
    auto it = streams_.find(id);
    return ended_ || it == streams_.end() || it->second.replied || it->second.reset ||
           it->second.ended;
  });
  auto it = streams_.find(id);
  const bool replied = it != streams_.end() && it->second.replied;
  const bool reset = it != streams_.end() && it->second.reset;
  const bool finished = it == streams_.end() || it->second.ended;
  if (it != streams_.end()) {
    it->second.waiting = false;
    if (it->second.ended) streams_.erase(it);
  }
  auto describe = [&] {
    std::vector<std::string> parts;
    for (const auto& [name, value] : headers) parts.push_back(absl::StrCat(name, "=", value));
    return absl::StrCat("stream ", id, " (", absl::StrJoin(parts, ", "), ")");
  };
  if (replied) return id;
  if (reset) {
    return absl::AbortedError(absl::StrCat("the streaming server refused ", describe(),
                                           " (RST_STREAM before SYN_REPLY)"));
  }
  if (finished || ended_) {
    return absl::UnavailableError(
        absl::StrCat("the streaming connection ended while opening ", describe()));
  }
  // No reply in time: give the stream up (client-go fails the same way).
  (void)session_.ResetStream(id);
  streams_.erase(id);
  KickLocked();
  return absl::DeadlineExceededError(absl::StrCat(
      "no SYN_REPLY for ", describe(), " within ",
      absl::FormatDuration(options_.stream_creation_timeout), " (is the streaming server stuck?)"));
}

absl::Status SpdyConnection::Write(uint32_t stream_id, absl::string_view data) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] {
    return ended_ || closing_ || write_failed_ ||
           session_.pending_output_bytes() < options_.max_buffered_output;
  });
  if (ended_ || closing_ || write_failed_) {
    return absl::UnavailableError(
        absl::StrCat("cannot write on stream ", stream_id, ": the streaming connection has ended"));
  }
  RETURN_IF_ERROR(session_.SendData(stream_id, data));
  KickLocked();
  return absl::OkStatus();
}

absl::Status SpdyConnection::CloseWrite(uint32_t stream_id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (ended_ || closing_ || write_failed_) {
    return absl::UnavailableError(
        absl::StrCat("cannot close stream ", stream_id, ": the streaming connection has ended"));
  }
  RETURN_IF_ERROR(session_.CloseStream(stream_id));
  KickLocked();
  return absl::OkStatus();
}

void SpdyConnection::Reset(uint32_t stream_id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!closing_ && !write_failed_) (void)session_.ResetStream(stream_id);
  auto it = streams_.find(stream_id);
  if (it != streams_.end() && !it->second.waiting) streams_.erase(it);
  KickLocked();
}

void SpdyConnection::Close() {
  std::lock_guard<std::mutex> close_lock(close_mu_);
  if (closed_) return;
  closed_ = true;
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (!write_failed_ && !session_.failed()) {
      // As the Go client ends a session (§5.7); also after the server's GOAWAY (trace §10.4).
      session_.ResetAllStreams();
      session_.SendGoAway();
    }
    closing_ = true;
    stop_writer_ = true;
    cv_.notify_all();
    if (!cv_.wait_for(lock, absl::ToChronoNanoseconds(kWriterDrain),
                      [&] { return writer_done_; })) {
      ::shutdown(fd_.get(), SHUT_RDWR);  // the server does not read: give up on the last frames
    }
  }
  writer_.join();
  // The server answers our GOAWAY by closing the connection: wait for that (briefly), so that
  // our close() does not reset what it still sends.
  ::shutdown(fd_.get(), SHUT_WR);
  if (!WaitEnded(kCloseLinger)) Signal(wake_.get());
  reader_.join();
}

bool SpdyConnection::WaitEnded(absl::Duration timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  if (timeout == absl::InfiniteDuration()) {
    cv_.wait(lock, [&] { return ended_; });
    return true;
  }
  return cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout), [&] { return ended_; });
}

bool SpdyConnection::ended() const {
  std::lock_guard<std::mutex> lock(mu_);
  return ended_;
}

absl::Status SpdyConnection::end_status() const {
  std::lock_guard<std::mutex> lock(mu_);
  return end_status_;
}

// ---- Exec and attach ----

void TerminalSizeQueue::Push(TerminalSize size) {
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_) return;
  pending_ = size;
  cv_.notify_all();
}

void TerminalSizeQueue::Close() {
  std::lock_guard<std::mutex> lock(mu_);
  closed_ = true;
  cv_.notify_all();
}

std::optional<TerminalSize> TerminalSizeQueue::TryNext() {
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_) return std::nullopt;
  std::optional<TerminalSize> out = pending_;
  pending_.reset();
  return out;
}

std::optional<TerminalSize> TerminalSizeQueue::Next() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return closed_ || pending_.has_value(); });
  if (closed_) return std::nullopt;
  std::optional<TerminalSize> out = pending_;
  pending_.reset();
  return out;
}

absl::StatusOr<int> DecodeRemoteCommandStatus(absl::string_view payload,
                                              RemoteCommandProtocol protocol) {
  if (payload.empty()) return 0;
  if (protocol < RemoteCommandProtocol::kV4) {
    return absl::UnknownError(absl::StrCat("error executing remote command: ", payload));
  }
  const nlohmann::json status = nlohmann::json::parse(payload.begin(), payload.end(), nullptr,
                                                      /*allow_exceptions=*/false);
  if (!status.is_object()) {
    return absl::InternalError(absl::StrCat("error stream protocol error: not a JSON Status: \"",
                                            absl::CHexEscape(payload.substr(0, 200)), "\""));
  }
  const std::string state = StringField(status, "status");
  if (state == "Success") return 0;
  if (state != "Failure") {
    return absl::InternalError("error stream protocol error: unknown error");
  }
  const std::string reason = StringField(status, "reason");
  if (reason == "NonZeroExitCode") {
    const nlohmann::json* details = Field(status, "details");
    if (details == nullptr || !details->is_object()) {
      return absl::InternalError("error stream protocol error: details must be set");
    }
    const nlohmann::json* causes = Field(*details, "causes");
    if (causes != nullptr && causes->is_array()) {
      for (const nlohmann::json& cause : *causes) {
        if (StringField(cause, "reason") != "ExitCode") continue;
        const std::string text = StringField(cause, "message");
        int code = 0;
        // Go's strconv.ParseUint(text, 10, 8): decimal digits only, at most 255.
        if (text.empty() || text.size() > 5 ||
            !std::all_of(text.begin(), text.end(), absl::ascii_isdigit) ||
            !absl::SimpleAtoi(text, &code) || code > 255) {
          return absl::InternalError(
              absl::StrCat("error stream protocol error: invalid exit code value \"", text, "\""));
        }
        return code;
      }
    }
    return absl::InternalError("error stream protocol error: no ExitCode cause given");
  }
  std::string message = StringField(status, "message");
  if (message.empty())
    message = absl::StrCat("the remote command failed (reason \"", reason, "\")");
  if (reason == "InternalError") return absl::InternalError(message);
  return absl::UnknownError(message);
}

RemoteCommandClient::RemoteCommandClient(std::string what, std::string url, RemoteCommandIo io,
                                         StreamClientOptions options)
    : what_(std::move(what)), url_(std::move(url)), io_(io), options_(std::move(options)) {}

RemoteCommandClient::~RemoteCommandClient() = default;

void RemoteCommandClient::Cancel() {
  std::lock_guard<std::mutex> lock(mu_);
  cancelled_ = true;
  if (connection_ != nullptr) connection_->Close();
}

absl::StatusOr<int> RemoteCommandClient::Run() {
  absl::StatusOr<int> result = RunSession();
  if (io_.sizes != nullptr) io_.sizes->Close();
  std::lock_guard<std::mutex> lock(mu_);
  if (!result.ok() && cancelled_) return absl::CancelledError(absl::StrCat(what_, " cancelled"));
  return result;
}

absl::StatusOr<int> RemoteCommandClient::RunSession() {
  static constexpr absl::string_view kProtocols[] = {kStreamProtocolV4, kStreamProtocolV3,
                                                     kStreamProtocolV2, kStreamProtocolV1};
  ASSIGN_OR_RETURN(UpgradedConnection upgraded,
                   DialAndUpgrade(url_, kProtocols, options_.connect_timeout, options_.user_agent));
  if (upgraded.protocol.empty()) {
    protocol_ = RemoteCommandProtocol::kV1;  // client-go's fallback (§4.3)
  } else if (std::optional<RemoteCommandProtocol> p = ParseRemoteCommandProtocol(upgraded.protocol);
             p.has_value()) {
    protocol_ = *p;
  } else {
    return absl::UnavailableError(absl::StrCat("the streaming server chose protocol \"",
                                               upgraded.protocol, "\", which ", what_,
                                               " did not offer"));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<SpdyConnection> conn,
                   SpdyConnection::Start(std::move(upgraded), options_));
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (cancelled_) return absl::CancelledError(absl::StrCat(what_, " cancelled"));
    connection_ = conn.get();
  }
  ASSIGN_OR_RETURN(sdk::UniqueFd stop, NewEventFd());
  std::thread stdin_copier, resizer;
  absl::Cleanup end = [&] {
    Signal(stop.get());
    if (io_.sizes != nullptr) io_.sizes->Close();
    {
      std::lock_guard<std::mutex> lock(mu_);
      connection_ = nullptr;
    }
    conn->Close();
    if (stdin_copier.joinable()) stdin_copier.join();
    if (resizer.joinable()) resizer.join();
  };

  // The streams, in client-go's order, each after the previous one's reply (§6.1).
  auto tracker = std::make_shared<EndTracker>();
  auto error = std::make_shared<BufferReceiver>(tracker);
  auto stream = [&](StreamType type, std::shared_ptr<SpdyConnection::Receiver> receiver,
                    absl::string_view first_data = {}) {
    return conn->CreateStream({{std::string(kStreamTypeHeader), std::string(StreamTypeName(type))}},
                              std::move(receiver), first_data);
  };
  // client-go's json.Encoder output (§6.5).
  auto size_line = [](TerminalSize size) {
    return absl::StrCat("{\"Width\":", size.width, ",\"Height\":", size.height, "}\n");
  };
  ASSIGN_OR_RETURN(const uint32_t error_id, stream(StreamType::kError, error));
  (void)error_id;
  uint32_t stdin_id = 0, resize_id = 0;
  std::shared_ptr<FdReceiver> out, err;
  if (io_.stdin_fd >= 0) {
    ASSIGN_OR_RETURN(stdin_id, stream(StreamType::kStdin, std::make_shared<SendOnlyReceiver>()));
  }
  if (io_.stdout_fd >= 0) {
    out = std::make_shared<FdReceiver>(io_.stdout_fd, tracker);
    RETURN_IF_ERROR(stream(StreamType::kStdout, out).status());
  }
  if (io_.stderr_fd >= 0 && !io_.tty) {
    err = std::make_shared<FdReceiver>(io_.stderr_fd, tracker);
    RETURN_IF_ERROR(stream(StreamType::kStderr, err).status());
  }
  // The server waits for a resize stream whenever there is a terminal (v3+), sizes or not.
  if (io_.tty && protocol_ >= RemoteCommandProtocol::kV3) {
    std::optional<TerminalSize> initial;
    if (io_.sizes != nullptr) initial = io_.sizes->TryNext();
    ASSIGN_OR_RETURN(resize_id, stream(StreamType::kResize, std::make_shared<SendOnlyReceiver>(),
                                       initial.has_value() ? size_line(*initial) : ""));
  }

  if (stdin_id != 0) {
    stdin_copier = std::thread([&, stdin_id] {
      std::vector<char> buffer(kCopyChunk);
      for (;;) {
        pollfd p[2] = {{io_.stdin_fd, POLLIN, 0}, {stop.get(), POLLIN, 0}};
        const int r = ::poll(p, 2, -1);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 || p[1].revents != 0) return;
        const ssize_t n = ::read(io_.stdin_fd, buffer.data(), buffer.size());
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (n <= 0) {
          // EOF (or an unreadable stdin): the process gets EOF too (§6.4).
          (void)conn->CloseWrite(stdin_id);
          return;
        }
        if (!conn->Write(stdin_id, absl::string_view(buffer.data(), static_cast<size_t>(n))).ok()) {
          return;
        }
      }
    });
  }
  if (resize_id != 0 && io_.sizes != nullptr) {
    resizer = std::thread([&, resize_id] {
      while (std::optional<TerminalSize> size = io_.sizes->Next()) {
        if (!conn->Write(resize_id, size_line(*size)).ok()) return;
      }
    });
  }

  // client-go returns once stdout and stderr are done and the error stream has ended.
  tracker->Wait();
  auto [payload, reason] = error->Wait();
  std::move(end).Invoke();

  for (const std::shared_ptr<FdReceiver>& local : {out, err}) {
    if (local != nullptr && !local->error().ok()) {
      return absl::Status(local->error().code(), absl::StrCat("copying the output of ", what_, ": ",
                                                              local->error().message()));
    }
  }
  if (payload.empty() && reason == SpdyConnection::EndReason::kClosed) {
    const absl::Status why = conn->end_status();
    return absl::UnavailableError(
        absl::StrCat("the connection to the streaming server ended before the ", what_,
                     "'s status arrived", why.ok() ? "" : ": ", why.message()));
  }
  // A v4 server writes a status on success too (§6.6). client-go takes its absence for
  // success; it is a server that gave up (e.g. waiting for streams), and the command may not
  // have run at all.
  if (payload.empty() && protocol_ >= RemoteCommandProtocol::kV4) {
    return absl::UnavailableError(
        absl::StrCat("the streaming server ended the ", what_,
                     " session without an exit status (did it time out waiting for the streams?)"));
  }
  return DecodeRemoteCommandStatus(payload, protocol_);
}

// ---- Port forward ----

struct PortForwardClient::Forward {
  PortForwardSpec spec;
  int request_id = 0;
  // The accepted local connection (non-blocking). Read by the connection's thread; written
  // by the SPDY reader under conn_mu, which the connection's thread takes to close it.
  std::mutex conn_mu;
  sdk::UniqueFd conn;
  sdk::UniqueFd remote_done;  // eventfd: the data stream ended
  std::thread thread;
  std::atomic<bool> done{false};
};

namespace {

// The data stream's bytes into the local connection. Blocks (bounded by `stop`) while the
// local side does not read.
template <typename Forward>
class LocalConnReceiver : public SpdyConnection::Receiver {
 public:
  LocalConnReceiver(std::shared_ptr<Forward> forward, int stop)
      : forward_(std::move(forward)), stop_(stop) {}
  void OnData(absl::string_view data) override {
    std::lock_guard<std::mutex> lock(forward_->conn_mu);
    if (broken_ || !forward_->conn.valid()) return;
    if (!SendAll(forward_->conn.get(), data, absl::InfiniteFuture(), stop_).ok()) broken_ = true;
  }
  void OnEnd(SpdyConnection::EndReason) override { Signal(forward_->remote_done.get()); }

 private:
  std::shared_ptr<Forward> forward_;
  const int stop_;
  bool broken_ = false;
};

}  // namespace

absl::StatusOr<std::unique_ptr<PortForwardClient>> PortForwardClient::Start(
    const std::string& url, std::vector<PortForwardSpec> ports, PortForwardCallbacks callbacks,
    const StreamClientOptions& options) {
  if (ports.empty()) return absl::InvalidArgumentError("port-forward needs at least one port");
  std::vector<sdk::UniqueFd> listeners;
  for (PortForwardSpec& p : ports) {
    if (p.remote_port < 1 || p.remote_port > 65535 || p.local_port < 0 || p.local_port > 65535) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad port pair ", p.local_port, ":", p.remote_port, " (ports are 1-65535)"));
    }
    sdk::UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd.valid()) return ErrnoToStatus(errno, "socket");
    const int one = 1;
    (void)::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(p.local_port));
    socklen_t len = sizeof(a);
    if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), len) != 0 ||
        ::listen(fd.get(), 128) != 0) {
      return ErrnoToStatus(errno, absl::StrCat("cannot listen on 127.0.0.1:", p.local_port));
    }
    if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      return ErrnoToStatus(errno, "getsockname");
    }
    p.local_port = ntohs(a.sin_port);
    listeners.push_back(std::move(fd));
  }
  ASSIGN_OR_RETURN(sdk::UniqueFd wake, NewEventFd());
  static constexpr absl::string_view kProtocols[] = {kPortForwardProtocolV1};
  ASSIGN_OR_RETURN(UpgradedConnection upgraded,
                   DialAndUpgrade(url, kProtocols, options.connect_timeout, options.user_agent));
  if (upgraded.protocol != kPortForwardProtocolV1) {
    return absl::FailedPreconditionError(
        absl::StrCat("unable to negotiate protocol: the streaming server answered \"",
                     upgraded.protocol, "\" instead of ", kPortForwardProtocolV1));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<SpdyConnection> conn,
                   SpdyConnection::Start(std::move(upgraded), options));
  std::unique_ptr<PortForwardClient> client(new PortForwardClient(
      std::move(ports), std::move(listeners), std::move(callbacks), std::move(wake)));
  client->connection_ = std::move(conn);
  client->acceptor_ = std::thread([raw = client.get()] { raw->AcceptLoop(); });
  return client;
}

PortForwardClient::PortForwardClient(std::vector<PortForwardSpec> ports,
                                     std::vector<sdk::UniqueFd> listeners,
                                     PortForwardCallbacks callbacks, sdk::UniqueFd wake)
    : ports_(std::move(ports)),
      listeners_(std::move(listeners)),
      callbacks_(std::move(callbacks)),
      wake_(std::move(wake)) {}

PortForwardClient::~PortForwardClient() { Stop(); }

void PortForwardClient::AcceptLoop() {
  std::vector<pollfd> polls;
  for (const sdk::UniqueFd& l : listeners_) polls.push_back({l.get(), POLLIN, 0});
  polls.push_back({wake_.get(), POLLIN, 0});
  for (;;) {
    const int r = ::poll(polls.data(), polls.size(), 1000);
    if (r < 0 && errno != EINTR) return;
    if (polls.back().revents != 0) return;  // Stop()
    {
      std::lock_guard<std::mutex> lock(mu_);
      ReapLocked();
    }
    if (r <= 0) continue;
    for (size_t i = 0; i + 1 < polls.size(); ++i) {
      if (polls[i].revents == 0) continue;
      sdk::UniqueFd conn(::accept4(polls[i].fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
      if (!conn.valid()) continue;
      absl::StatusOr<sdk::UniqueFd> remote_done = NewEventFd();
      if (!remote_done.ok()) continue;
      auto forward = std::make_shared<Forward>();
      forward->spec = ports_[i];
      forward->conn = std::move(conn);
      forward->remote_done = *std::move(remote_done);
      std::lock_guard<std::mutex> lock(mu_);
      if (stopped_) return;
      forward->request_id = next_request_id_++;
      forward->thread = std::thread([this, forward] { HandleConnection(forward); });
      forwards_.push_back(std::move(forward));
    }
  }
}

void PortForwardClient::ReapLocked() {
  for (auto it = forwards_.begin(); it != forwards_.end();) {
    if ((*it)->done) {
      (*it)->thread.join();
      it = forwards_.erase(it);
    } else {
      ++it;
    }
  }
}

// client-go's handleConnection (§7.2).
void PortForwardClient::HandleConnection(std::shared_ptr<Forward> forward) {
  const PortForwardSpec spec = forward->spec;
  absl::Cleanup finish = [&] {
    // The shutdown wakes a send blocked on the connection; then it can be closed safely.
    ::shutdown(forward->conn.get(), SHUT_RDWR);
    {
      std::lock_guard<std::mutex> lock(forward->conn_mu);
      forward->conn.Reset();
    }
    forward->done = true;
  };
  auto report = [&](const absl::Status& status) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopped_) return;  // errors of our own shutdown are no news
    }
    if (callbacks_.on_error) callbacks_.on_error(status);
  };
  if (callbacks_.on_connection) callbacks_.on_connection(spec);
  spdy::Headers headers = {{std::string(kStreamTypeHeader), "error"},
                           {std::string(kPortHeader), std::to_string(spec.remote_port)},
                           {std::string(kRequestIdHeader), std::to_string(forward->request_id)}};
  auto error = std::make_shared<BufferReceiver>();
  absl::StatusOr<uint32_t> error_id = connection_->CreateStream(headers, error);
  if (!error_id.ok()) {
    report(absl::Status(error_id.status().code(),
                        absl::StrCat("error creating error stream for port ", spec.local_port,
                                     " -> ", spec.remote_port, ": ", error_id.status().message())));
    return;
  }
  // We never write on the error stream.
  (void)connection_->CloseWrite(*error_id);
  headers[0].second = "data";
  absl::StatusOr<uint32_t> data_id = connection_->CreateStream(
      headers, std::make_shared<LocalConnReceiver<Forward>>(forward, wake_.get()));
  if (!data_id.ok()) {
    connection_->Reset(*error_id);
    report(absl::Status(data_id.status().code(),
                        absl::StrCat("error creating forwarding stream for port ", spec.local_port,
                                     " -> ", spec.remote_port, ": ", data_id.status().message())));
    return;
  }

  // Local -> remote until the remote side is done (or we stop); the local EOF half-closes
  // the data stream and we keep waiting for the remote side.
  bool local_open = true;
  std::vector<char> buffer(kCopyChunk);
  for (;;) {
    pollfd p[3] = {{forward->remote_done.get(), POLLIN, 0},
                   {wake_.get(), POLLIN, 0},
                   {local_open ? forward->conn.get() : -1, POLLIN, 0}};
    const int r = ::poll(p, 3, -1);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 || p[0].revents != 0 || p[1].revents != 0) break;
    if (p[2].revents == 0) continue;
    const ssize_t n = ::recv(forward->conn.get(), buffer.data(), buffer.size(), 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) {
      local_open = false;
      if (!connection_->CloseWrite(*data_id).ok()) break;
      continue;
    }
    if (!connection_->Write(*data_id, absl::string_view(buffer.data(), static_cast<size_t>(n)))
             .ok()) {
      break;
    }
  }
  // The error stream always ends: with the server's FIN/RST, or with the connection.
  auto [message, reason] = error->Wait();
  (void)reason;
  connection_->Reset(*data_id);
  connection_->Reset(*error_id);
  if (!message.empty()) {
    report(absl::UnknownError(absl::StrCat("an error occurred forwarding ", spec.local_port, " -> ",
                                           spec.remote_port, ": ", message)));
  }
}

absl::Status PortForwardClient::Wait() {
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopped_) return absl::OkStatus();
    }
    if (connection_->WaitEnded(absl::Milliseconds(200))) break;
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (stopped_) return absl::OkStatus();
  const absl::Status why = connection_->end_status();
  return absl::UnavailableError(absl::StrCat("the streaming server ended the port-forward session",
                                             why.ok() ? "" : ": ", why.message()));
}

void PortForwardClient::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopped_) return;
    stopped_ = true;
  }
  Signal(wake_.get());
  if (acceptor_.joinable()) acceptor_.join();
  if (connection_ != nullptr) connection_->Close();
  std::vector<std::shared_ptr<Forward>> forwards;
  {
    std::lock_guard<std::mutex> lock(mu_);
    forwards.swap(forwards_);
  }
  for (const std::shared_ptr<Forward>& f : forwards) {
    if (f->thread.joinable()) f->thread.join();
  }
  listeners_.clear();
}

}  // namespace berth::cri::streaming
