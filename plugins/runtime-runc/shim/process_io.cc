// SPDX-License-Identifier: Apache-2.0
#include "plugins/runtime-runc/shim/process_io.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <future>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "plugins/runtime-runc/shim/util.h"

namespace berth::shim {
namespace {

constexpr size_t kReadChunk = size_t{64} * 1024;
constexpr int kReadsPerWakeup = 16;     // fairness between the pod's containers
constexpr size_t kMaxQueued = 1 << 20;  // FIFO sink, stdin and attach client backlog

enum FrameType : uint8_t {
  kStdin = 1,
  kStdout = 2,
  kStderr = 3,
  kResize = 4,
  kCloseStdin = 5,
  kExit = 6,
};

// One buffer for all reads of the loop thread.
char* ReadBuffer() {
  static char* buf = new char[kReadChunk];
  return buf;
}

absl::Status SetNonblock(int fd) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
    return core::ErrnoToStatus(errno, "fcntl O_NONBLOCK");
  }
  return absl::OkStatus();
}

struct ParsedUri {
  enum Kind { kNull, kFifo, kFile, kCriLog, kAttach } kind = kNull;
  std::string path;
  size_t max_line = CriLogWriter::kDefaultMaxLineBytes;
};

absl::StatusOr<ParsedUri> ParseUri(const std::string& uri, const char* stream) {
  ParsedUri p;
  if (uri.empty()) return p;
  if (uri == "attach:" || uri == "attach://") {
    p.kind = ParsedUri::kAttach;
    return p;
  }
  std::string rest;
  if (absl::StartsWith(uri, "crilog://")) {
    p.kind = ParsedUri::kCriLog;
    rest = uri.substr(9);
    size_t q = rest.find('?');
    if (q != std::string::npos) {
      std::string query = rest.substr(q + 1);
      rest.resize(q);
      if (absl::StartsWith(query, "max_line=")) {
        if (!absl::SimpleAtoi(query.substr(9), &p.max_line) || p.max_line == 0) {
          return absl::InvalidArgumentError(
              absl::StrCat(stream, " URI ", uri, ": max_line must be a positive integer"));
        }
      }
    }
  } else if (absl::StartsWith(uri, "file://")) {
    p.kind = ParsedUri::kFile;
    rest = uri.substr(7);
  } else if (absl::StartsWith(uri, "fifo://")) {
    p.kind = ParsedUri::kFifo;
    rest = uri.substr(7);
  } else if (absl::StartsWith(uri, "/")) {
    p.kind = ParsedUri::kFifo;
    rest = uri;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat(stream, " URI '", uri,
                     "' is not supported (empty, /path, fifo://, file://, crilog:// or attach:)"));
  }
  if (rest.empty() || rest[0] != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat(stream, " URI '", uri, "' must name an absolute path"));
  }
  p.path = rest;
  return p;
}

}  // namespace

struct ProcessIo::Sink {
  CriLogWriter::Stream* cri = nullptr;
  sdk::UniqueFd fd;  // file or FIFO
  bool fifo = false;
  std::string queued;
  bool watching = false;
  bool source_done = false;  // its pump reached EOF: close the FIFO once `queued` is written
};

struct ProcessIo::OutPump {
  sdk::UniqueFd fd;
  uint8_t frame_type = kStdout;
  Sink* sink = nullptr;  // may be null (discard)
  bool eof = false;
  bool tty = false;
};

struct ProcessIo::Client {
  sdk::UniqueFd fd;
  std::string out;
  std::string in;
  bool watching_out = false;
  bool closing = false;
};

ProcessIo::ProcessIo(EventLoop* loop, StdioConfig config, std::string name)
    : loop_(loop), config_(std::move(config)), name_(std::move(name)) {}

ProcessIo::~ProcessIo() {
  if (!attach_path_.empty()) ::unlink(attach_path_.c_str());
  if (!console_path_.empty()) ::unlink(console_path_.c_str());
}

absl::StatusOr<std::shared_ptr<ProcessIo>> ProcessIo::Create(
    EventLoop* loop, const StdioConfig& config, const std::string& name,
    const std::string& console_socket_path) {
  std::shared_ptr<ProcessIo> io(new ProcessIo(loop, config, name));
  if (config.terminal) {
    io->console_path_ = console_socket_path;
    sockaddr_un sun{};
    sun.sun_family = AF_UNIX;
    if (console_socket_path.size() >= sizeof(sun.sun_path)) {
      return absl::InvalidArgumentError(
          absl::StrCat("console socket path ", console_socket_path, " is too long"));
    }
    std::strncpy(sun.sun_path, console_socket_path.c_str(), sizeof(sun.sun_path) - 1);
    io->console_listener_.Reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!io->console_listener_.valid()) return core::ErrnoToStatus(errno, "console socket()");
    ::unlink(console_socket_path.c_str());
    if (::bind(io->console_listener_.get(), reinterpret_cast<sockaddr*>(&sun), sizeof(sun)) != 0 ||
        ::listen(io->console_listener_.get(), 4) != 0) {
      return core::ErrnoToStatus(
          errno, absl::StrCat("console socket ", console_socket_path, " for ", name));
    }
  }
  RETURN_IF_ERROR(io->OpenOutputs());
  RETURN_IF_ERROR(io->OpenStdin());
  return io;
}

absl::Status ProcessIo::OpenOutputs() {
  struct Want {
    const std::string* uri;
    const char* stream;
    uint8_t frame;
  };
  std::vector<Want> wants = {{&config_.stdout_uri, "stdout", kStdout}};
  if (!config_.terminal) wants.push_back({&config_.stderr_uri, "stderr", kStderr});
  std::map<std::string, CriLogWriter*> by_path;
  for (const Want& w : wants) {
    ASSIGN_OR_RETURN(ParsedUri uri, ParseUri(*w.uri, w.stream));
    auto sink = std::make_unique<Sink>();
    switch (uri.kind) {
      case ParsedUri::kNull:
      case ParsedUri::kAttach:
        break;
      case ParsedUri::kCriLog: {
        CriLogWriter*& writer = by_path[uri.path];
        if (writer == nullptr) {
          absl::StatusOr<std::unique_ptr<CriLogWriter>> opened =
              CriLogWriter::Open(uri.path, uri.max_line);
          if (!opened.ok()) {
            return absl::Status(opened.status().code(), absl::StrCat("CRI log of ", name_, ": ",
                                                                     opened.status().message()));
          }
          writer = opened->get();
          writers_.push_back(std::move(*opened));
        }
        sink->cri = w.frame == kStdout ? &writer->Out() : &writer->Err();
        break;
      }
      case ParsedUri::kFile:
        sink->fd.Reset(::open(uri.path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640));
        if (!sink->fd.valid()) {
          return core::ErrnoToStatus(
              errno, absl::StrCat("open ", w.stream, " file ", uri.path, " of ", name_));
        }
        break;
      case ParsedUri::kFifo:
        // O_RDWR never blocks waiting for a reader; the reader sees EOF when we close.
        sink->fd.Reset(::open(uri.path.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC));
        if (!sink->fd.valid()) {
          return core::ErrnoToStatus(
              errno, absl::StrCat("open ", w.stream, " FIFO ", uri.path, " of ", name_));
        }
        sink->fifo = true;
        break;
    }
    auto pump = std::make_unique<OutPump>();
    pump->frame_type = w.frame;
    pump->sink = sink.get();
    if (!config_.terminal) {
      int fds[2];
      if (::pipe2(fds, O_CLOEXEC) != 0) {
        return core::ErrnoToStatus(errno, absl::StrCat(w.stream, " pipe of ", name_));
      }
      pump->fd.Reset(fds[0]);
      (w.frame == kStdout ? child_out_ : child_err_).Reset(fds[1]);
      ::fcntl(fds[0], F_SETPIPE_SZ, 256 * 1024);
      RETURN_IF_ERROR(SetNonblock(fds[0]));
    } else {
      pump->tty = true;
    }
    sinks_.push_back(std::move(sink));
    pumps_.push_back(std::move(pump));
  }
  return absl::OkStatus();
}

absl::Status ProcessIo::OpenStdin() {
  ASSIGN_OR_RETURN(ParsedUri uri, ParseUri(config_.stdin_uri, "stdin"));
  switch (uri.kind) {
    case ParsedUri::kNull:
      return absl::OkStatus();
    case ParsedUri::kCriLog:
    case ParsedUri::kFile:
      return absl::InvalidArgumentError(absl::StrCat(
          "stdin of ", name_, " must be empty, a FIFO or attach:, not ", config_.stdin_uri));
    case ParsedUri::kFifo:
      // Non-blocking read end: no HUP until a writer has come and gone.
      stdin_source_.Reset(::open(uri.path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
      if (!stdin_source_.valid()) {
        return core::ErrnoToStatus(errno,
                                   absl::StrCat("open stdin FIFO ", uri.path, " of ", name_));
      }
      break;
    case ParsedUri::kAttach:
      break;
  }
  has_stdin_ = true;
  if (!config_.terminal) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) {
      return core::ErrnoToStatus(errno, absl::StrCat("stdin pipe of ", name_));
    }
    child_in_.Reset(fds[0]);
    stdin_dest_.Reset(fds[1]);
    RETURN_IF_ERROR(SetNonblock(fds[1]));
  }
  return absl::OkStatus();
}

absl::Status ProcessIo::AfterRuntime() {
  child_in_.Reset();
  child_out_.Reset();
  child_err_.Reset();
  if (!config_.terminal) return absl::OkStatus();
  sdk::UniqueFd conn(::accept4(console_listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
  console_listener_.Reset();
  ::unlink(console_path_.c_str());
  if (!conn.valid()) {
    return core::ErrnoToStatus(errno, absl::StrCat("the runtime did not connect to console socket ",
                                                   console_path_, " of ", name_));
  }
  char data[256];
  iovec iov{data, sizeof(data)};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  // The runtime has exited; its message is queued on the socket.
  ssize_t n;
  do {
    n = ::recvmsg(conn.get(), &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    return core::ErrnoToStatus(errno, absl::StrCat("receive console of ", name_));
  }
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c), sizeof(fd));
      master_.Reset(fd);
    }
  }
  if (!master_.valid()) {
    return absl::InternalError(
        absl::StrCat("the runtime sent no console fd over ", console_path_, " for ", name_));
  }
  RETURN_IF_ERROR(SetNonblock(master_.get()));
  for (auto& pump : pumps_) {
    if (pump->tty) pump->fd.Reset(::fcntl(master_.get(), F_DUPFD_CLOEXEC, 0));
  }
  if (has_stdin_) stdin_dest_.Reset(::fcntl(master_.get(), F_DUPFD_CLOEXEC, 0));
  return absl::OkStatus();
}

void ProcessIo::Start() {
  auto self = shared_from_this();
  loop_->Post([self] { self->StartLocked(); });
}

void ProcessIo::StartLocked() {
  if (started_ || shut_down_) return;
  started_ = true;
  auto self = shared_from_this();
  for (auto& pump : pumps_) {
    if (!pump->fd.valid()) {
      pump->eof = true;
      continue;
    }
    OutPump* p = pump.get();
    absl::Status s =
        loop_->Watch(p->fd.get(), EPOLLIN, [self, p](uint32_t ev) { self->OnOutput(p, ev); });
    if (!s.ok()) {
      LogLine(absl::StrCat("output of ", name_, ": ", s.message()));
      pump->eof = true;
    }
  }
  if (stdin_source_.valid()) {
    absl::Status s = loop_->Watch(stdin_source_.get(), EPOLLIN,
                                  [self](uint32_t ev) { self->OnStdinSource(ev); });
    if (!s.ok()) LogLine(absl::StrCat("stdin of ", name_, ": ", s.message()));
  }
  MaybeDrained();
}

void ProcessIo::OnOutput(OutPump* pump, uint32_t events) {
  if (pump->eof) return;
  char* buf = ReadBuffer();
  for (int i = 0; i < kReadsPerWakeup; ++i) {
    ssize_t n = ::read(pump->fd.get(), buf, kReadChunk);
    if (n > 0) {
      Deliver(pump, std::string_view(buf, static_cast<size_t>(n)));
      if (paused_) return;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      // A pty master reports HUP while no slave is open (before the process opened it);
      // only a read error or EOF ends the stream.
      return;
    }
    PumpEof(pump);  // 0: EOF; EIO: the pty slave is closed
    return;
  }
  (void)events;
}

void ProcessIo::PumpEof(OutPump* pump) {
  pump->eof = true;
  loop_->Unwatch(pump->fd.get());
  pump->fd.Reset();
  if (pump->sink != nullptr && pump->sink->cri != nullptr) {
    absl::Status s = pump->sink->cri->Close();
    if (!s.ok()) LogLine(absl::StrCat("log of ", name_, ": ", s.message()));
  }
  if (pump->sink != nullptr && pump->sink->fifo) {
    // The FIFO's reader sees EOF after the last byte (an exec's client knows the output is
    // complete without waiting for Delete).
    pump->sink->source_done = true;
    FlushSink(pump->sink);
  }
  MaybeDrained();
}

void ProcessIo::Deliver(OutPump* pump, std::string_view chunk) {
  Sink* sink = pump->sink;
  if (sink != nullptr) {
    if (sink->cri != nullptr) {
      absl::Status s = sink->cri->Write(chunk);
      if (!s.ok()) LogLine(absl::StrCat("log of ", name_, ": ", s.message()));
    } else if (sink->fd.valid()) {
      if (!sink->fifo) {
        size_t done = 0;
        while (done < chunk.size()) {
          ssize_t n = ::write(sink->fd.get(), chunk.data() + done, chunk.size() - done);
          if (n < 0 && errno == EINTR) continue;
          if (n < 0) {
            LogLine(absl::StrCat("output file of ", name_, ": ", strerror(errno)));
            break;
          }
          done += static_cast<size_t>(n);
        }
      } else {
        sink->queued.append(chunk);
        FlushSink(sink);
      }
    }
  }
  for (size_t i = 0; i < clients_.size(); ++i)
    ClientSend(clients_[i].get(), pump->frame_type, chunk);
  // Drop clients that fell behind (ClientSend marks them by closing).
  for (size_t i = 0; i < clients_.size();) {
    if (!clients_[i]->fd.valid()) {
      clients_.erase(clients_.begin() + static_cast<long>(i));
    } else {
      ++i;
    }
  }
}

void ProcessIo::FlushSink(Sink* sink) {
  if (!sink->fd.valid()) return;
  while (!sink->queued.empty()) {
    ssize_t n = ::write(sink->fd.get(), sink->queued.data(), sink->queued.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    if (n < 0) {
      LogLine(absl::StrCat("output FIFO of ", name_, ": ", strerror(errno), "; output dropped"));
      sink->queued.clear();
      break;
    }
    sink->queued.erase(0, static_cast<size_t>(n));
  }
  const bool want_out = !sink->queued.empty();
  if (want_out && !sink->watching) {
    auto self = shared_from_this();
    if (loop_->Watch(sink->fd.get(), EPOLLOUT, [self, sink](uint32_t) { self->FlushSink(sink); })
            .ok()) {
      sink->watching = true;
    }
  } else if (!want_out && sink->watching) {
    loop_->Unwatch(sink->fd.get());
    sink->watching = false;
  }
  if (sink->source_done && sink->queued.empty()) {
    if (sink->watching) loop_->Unwatch(sink->fd.get());
    sink->watching = false;
    sink->fd.Reset();
  }
  size_t queued = 0;
  for (auto& s : sinks_) queued += s->queued.size();
  SetPaused(queued > kMaxQueued);
}

void ProcessIo::SetPaused(bool paused) {
  if (paused == paused_) return;
  paused_ = paused;
  for (auto& pump : pumps_) {
    if (!pump->eof && pump->fd.valid())
      loop_->Modify(pump->fd.get(), paused ? 0u : static_cast<uint32_t>(EPOLLIN));
  }
}

void ProcessIo::OnStdinSource(uint32_t events) {
  (void)events;
  char* buf = ReadBuffer();
  for (int i = 0; i < kReadsPerWakeup && stdin_buf_.size() < kMaxQueued; ++i) {
    ssize_t n = ::read(stdin_source_.get(), buf, kReadChunk);
    if (n > 0) {
      QueueStdin(std::string_view(buf, static_cast<size_t>(n)));
      continue;
    }
    if (n < 0 && (errno == EINTR)) continue;
    if (n < 0 && errno == EAGAIN) return;
    // EOF: every writer of the FIFO has closed it.
    loop_->Unwatch(stdin_source_.get());
    stdin_source_.Reset();
    RequestStdinClose();
    return;
  }
  if (stdin_buf_.size() >= kMaxQueued && stdin_source_.valid()) {
    loop_->Modify(stdin_source_.get(), 0);  // resumed by FlushStdin
  }
}

void ProcessIo::QueueStdin(std::string_view bytes) {
  if (!stdin_dest_.valid() || stdin_close_requested_) return;
  stdin_buf_.append(bytes);
  FlushStdin();
}

void ProcessIo::FlushStdin() {
  while (stdin_dest_.valid() && !stdin_buf_.empty()) {
    ssize_t n = ::write(stdin_dest_.get(), stdin_buf_.data(), stdin_buf_.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    if (n < 0) {  // EPIPE: the process closed its stdin
      stdin_buf_.clear();
      break;
    }
    stdin_buf_.erase(0, static_cast<size_t>(n));
  }
  if (!stdin_dest_.valid()) return;
  if (stdin_buf_.empty() && stdin_close_requested_) {
    if (stdin_dest_watched_) loop_->Unwatch(stdin_dest_.get());
    stdin_dest_watched_ = false;
    if (config_.terminal) {
      // A terminal has no separate stdin to close: send EOF (^D) instead.
      ssize_t ignored = ::write(stdin_dest_.get(), "\x04", 1);
      (void)ignored;
    }
    stdin_dest_.Reset();
    return;
  }
  const bool want = !stdin_buf_.empty();
  if (want && !stdin_dest_watched_) {
    auto self = shared_from_this();
    stdin_dest_watched_ =
        loop_->Watch(stdin_dest_.get(), EPOLLOUT, [self](uint32_t) { self->FlushStdin(); }).ok();
  } else if (!want && stdin_dest_watched_) {
    loop_->Unwatch(stdin_dest_.get());
    stdin_dest_watched_ = false;
  }
  if (stdin_source_.valid() && stdin_buf_.size() < kMaxQueued) {
    loop_->Modify(stdin_source_.get(), EPOLLIN);
  }
}

void ProcessIo::RequestStdinClose() {
  stdin_close_requested_ = true;
  FlushStdin();
}

void ProcessIo::CloseStdin() {
  auto self = shared_from_this();
  loop_->Post([self] {
    if (self->stdin_source_.valid()) {
      // What the client wrote before asking for the close is still in the FIFO: it goes to
      // the process first (the client closes its end before CloseIO).
      char* buf = ReadBuffer();
      for (;;) {
        ssize_t n = ::read(self->stdin_source_.get(), buf, kReadChunk);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        self->QueueStdin(std::string_view(buf, static_cast<size_t>(n)));
      }
      self->loop_->Unwatch(self->stdin_source_.get());
      self->stdin_source_.Reset();
    }
    self->RequestStdinClose();
  });
}

absl::Status ProcessIo::Resize(uint32_t width, uint32_t height) {
  if (!config_.terminal) {
    return absl::FailedPreconditionError(absl::StrCat(name_, " has no terminal to resize"));
  }
  if (!master_.valid()) {
    return absl::FailedPreconditionError(absl::StrCat("the console of ", name_, " is closed"));
  }
  winsize ws{};
  ws.ws_col = static_cast<unsigned short>(width);
  ws.ws_row = static_cast<unsigned short>(height);
  if (::ioctl(master_.get(), TIOCSWINSZ, &ws) != 0) {
    return core::ErrnoToStatus(errno, absl::StrCat("resize console of ", name_));
  }
  return absl::OkStatus();
}

absl::Status ProcessIo::ReopenLog() {
  if (writers_.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat(name_, " has no CRI log (stdout is ",
                     config_.stdout_uri.empty() ? std::string("empty") : config_.stdout_uri, ")"));
  }
  for (auto& w : writers_) RETURN_IF_ERROR(w->Reopen());
  return absl::OkStatus();
}

std::string ProcessIo::log_path() const {
  return writers_.empty() ? std::string() : writers_.front()->path().string();
}

absl::StatusOr<std::string> ProcessIo::Attach(const std::string& path) {
  auto self = shared_from_this();
  auto promise = std::make_shared<std::promise<absl::StatusOr<std::string>>>();
  std::future<absl::StatusOr<std::string>> result = promise->get_future();
  loop_->Post([self, promise, path] {
    if (self->shut_down_) {
      promise->set_value(absl::FailedPreconditionError(
          absl::StrCat(self->name_, " is being deleted; nothing to attach to")));
      return;
    }
    if (self->attach_listener_.valid()) {
      promise->set_value(self->attach_path_);
      return;
    }
    sockaddr_un sun{};
    sun.sun_family = AF_UNIX;
    if (path.size() >= sizeof(sun.sun_path)) {
      promise->set_value(absl::InvalidArgumentError(
          absl::StrCat("attach socket path ", path, " is too long for a unix socket")));
      return;
    }
    std::strncpy(sun.sun_path, path.c_str(), sizeof(sun.sun_path) - 1);
    sdk::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    ::unlink(path.c_str());
    if (!fd.valid() || ::bind(fd.get(), reinterpret_cast<sockaddr*>(&sun), sizeof(sun)) != 0 ||
        ::listen(fd.get(), 16) != 0) {
      promise->set_value(
          core::ErrnoToStatus(errno, absl::StrCat("attach socket ", path, " of ", self->name_)));
      return;
    }
    ::chmod(path.c_str(), 0600);
    absl::Status s =
        self->loop_->Watch(fd.get(), EPOLLIN, [self](uint32_t) { self->OnAttachAccept(); });
    if (!s.ok()) {
      promise->set_value(s);
      return;
    }
    self->attach_listener_ = std::move(fd);
    self->attach_path_ = path;
    promise->set_value(path);
  });
  return result.get();
}

void ProcessIo::OnAttachAccept() {
  for (;;) {
    sdk::UniqueFd fd(
        ::accept4(attach_listener_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!fd.valid()) return;
    auto client = std::make_unique<Client>();
    client->fd = std::move(fd);
    Client* c = client.get();
    auto self = shared_from_this();
    if (!loop_->Watch(c->fd.get(), EPOLLIN, [self, c](uint32_t ev) { self->OnClient(c, ev); })
             .ok()) {
      continue;
    }
    clients_.push_back(std::move(client));
    if (exit_sent_) {
      ClientSend(c, kExit, "");
      c->closing = true;
      ClientFlush(c);
    }
  }
}

void ProcessIo::ClientSend(Client* c, uint8_t type, std::string_view payload) {
  if (!c->fd.valid() || c->closing) return;
  if (c->out.size() + payload.size() > kMaxQueued) {
    LogLine(absl::StrCat("attach client of ", name_, " fell more than 1 MiB behind; dropped"));
    loop_->Unwatch(c->fd.get());
    c->fd.Reset();
    return;
  }
  char header[5];
  header[0] = static_cast<char>(type);
  uint32_t len = htonl(static_cast<uint32_t>(payload.size()));
  if (type == kExit) {
    uint32_t status = htonl(exit_status_);
    len = htonl(4);
    std::memcpy(header + 1, &len, 4);
    c->out.append(header, 5);
    c->out.append(reinterpret_cast<const char*>(&status), 4);
  } else {
    std::memcpy(header + 1, &len, 4);
    c->out.append(header, 5);
    c->out.append(payload);
  }
  ClientFlush(c);
}

void ProcessIo::ClientFlush(Client* c) {
  while (c->fd.valid() && !c->out.empty()) {
    ssize_t n = ::send(c->fd.get(), c->out.data(), c->out.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    if (n < 0) {
      loop_->Unwatch(c->fd.get());
      c->fd.Reset();
      return;
    }
    c->out.erase(0, static_cast<size_t>(n));
  }
  if (!c->fd.valid()) return;
  if (c->out.empty() && c->closing) {
    loop_->Unwatch(c->fd.get());
    c->fd.Reset();
    return;
  }
  const bool want_out = !c->out.empty();
  if (want_out != c->watching_out) {
    c->watching_out = want_out;
    loop_->Modify(c->fd.get(), static_cast<uint32_t>(EPOLLIN) |
                                   (want_out ? static_cast<uint32_t>(EPOLLOUT) : 0u));
  }
}

void ProcessIo::OnClient(Client* c, uint32_t events) {
  if ((events & EPOLLOUT) != 0) ClientFlush(c);
  if (c->fd.valid() && (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) != 0) {
    char* buf = ReadBuffer();
    for (;;) {
      ssize_t n = ::read(c->fd.get(), buf, kReadChunk);
      if (n > 0) {
        c->in.append(buf, static_cast<size_t>(n));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) break;
      // The client went away.
      loop_->Unwatch(c->fd.get());
      c->fd.Reset();
      break;
    }
    size_t off = 0;
    while (c->in.size() - off >= 5) {
      uint32_t len;
      std::memcpy(&len, c->in.data() + off + 1, 4);
      len = ntohl(len);
      if (c->in.size() - off - 5 < len) break;
      HandleFrame(static_cast<uint8_t>(c->in[off]), std::string_view(c->in).substr(off + 5, len));
      off += 5 + len;
    }
    c->in.erase(0, off);
  }
  if (!c->fd.valid()) DropClient(c);
}

void ProcessIo::DropClient(Client* c) {
  for (auto it = clients_.begin(); it != clients_.end(); ++it) {
    if (it->get() == c) {
      if ((*it)->fd.valid()) loop_->Unwatch((*it)->fd.get());
      clients_.erase(it);
      return;
    }
  }
}

void ProcessIo::HandleFrame(uint8_t type, std::string_view payload) {
  switch (type) {
    case kStdin:
      QueueStdin(payload);
      break;
    case kResize:
      if (payload.size() >= 4) {
        const auto* p = reinterpret_cast<const unsigned char*>(payload.data());
        absl::Status s = Resize((p[0] << 8) | p[1], (p[2] << 8) | p[3]);
        if (!s.ok()) LogLine(s.message());
      }
      break;
    case kCloseStdin:
      RequestStdinClose();
      break;
    default:
      break;
  }
}

void ProcessIo::OnProcessExit(std::chrono::milliseconds grace, std::function<void()> drained) {
  exited_ = true;
  drained_ = std::move(drained);
  auto self = shared_from_this();
  loop_->PostAt(std::chrono::steady_clock::now() + grace, [self] {
    if (self->drained_) {
      LogLine(absl::StrCat("output of ", self->name_,
                           " still open after the process exited (a child holds it?); "
                           "reporting the exit, output keeps being copied"));
      auto cb = std::move(self->drained_);
      self->drained_ = nullptr;
      for (auto& pump : self->pumps_) {
        if (!pump->eof && pump->sink != nullptr && pump->sink->cri != nullptr) {
          absl::Status ignored = pump->sink->cri->Flush();
          (void)ignored;
        }
      }
      cb();
    }
  });
  MaybeDrained();
}

void ProcessIo::MaybeDrained() {
  if (!exited_ || !drained_ || !started_) return;
  for (auto& pump : pumps_) {
    if (!pump->eof) return;
  }
  auto cb = std::move(drained_);
  drained_ = nullptr;
  cb();
}

void ProcessIo::SendExit(uint32_t exit_status) {
  exit_status_ = exit_status;
  exit_sent_ = true;
  if (stdin_source_.valid()) {
    loop_->Unwatch(stdin_source_.get());
    stdin_source_.Reset();
  }
  for (auto& c : clients_) {
    ClientSend(c.get(), kExit, "");
    c->closing = true;
    ClientFlush(c.get());
  }
  for (size_t i = 0; i < clients_.size();) {
    if (!clients_[i]->fd.valid()) {
      clients_.erase(clients_.begin() + static_cast<long>(i));
    } else {
      ++i;
    }
  }
}

void ProcessIo::Shutdown() {
  if (!loop_->InLoopThread()) {
    auto self = shared_from_this();
    std::promise<void> done;
    loop_->Post([self, &done] {
      self->Shutdown();
      done.set_value();
    });
    done.get_future().wait();
    return;
  }
  if (shut_down_) return;
  shut_down_ = true;
  drained_ = nullptr;
  for (auto& pump : pumps_) {
    if (pump->fd.valid()) loop_->Unwatch(pump->fd.get());
    pump->fd.Reset();
    pump->eof = true;
  }
  for (auto& sink : sinks_) {
    if (sink->watching) loop_->Unwatch(sink->fd.get());
    sink->fd.Reset();
  }
  for (auto& c : clients_) {
    if (c->fd.valid()) loop_->Unwatch(c->fd.get());
  }
  clients_.clear();
  if (attach_listener_.valid()) loop_->Unwatch(attach_listener_.get());
  attach_listener_.Reset();
  if (stdin_source_.valid()) loop_->Unwatch(stdin_source_.get());
  stdin_source_.Reset();
  if (stdin_dest_watched_) loop_->Unwatch(stdin_dest_.get());
  stdin_dest_.Reset();
  master_.Reset();
  writers_.clear();  // closes both streams (a tail becomes a P entry)
  sinks_.clear();
}

}  // namespace berth::shim
