// SPDX-License-Identifier: Apache-2.0
#include "plugins/cri/streaming/remote_command.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "berth/unique_fd.hpp"
#include "plugins/cri/streaming/http.h"

namespace berth::cri::streaming {
namespace {

// How long the closing sequence waits for the client's last frames before close() (§6.7 5).
constexpr absl::Duration kLingerAfterClose = absl::Milliseconds(500);
// How long a terminal session waits for the client's first size before starting anyway.
constexpr absl::Duration kFirstSizeWait = absl::Seconds(1);

class Session {
 public:
  Session(int fd, spdy::ServerSession session, RemoteCommandProtocol protocol,
          RemoteCommandRequest request, const RemoteCommandOptions& options,
          const ExecBackend& exec, const AttachBackend& attach)
      : fd_(fd),
        session_(std::move(session)),
        protocol_(protocol),
        req_(std::move(request)),
        options_(options),
        exec_(exec),
        attach_(attach) {
    expected_ = ExpectedRemoteCommandStreams(protocol_, req_.stdin(), req_.stdout(),
                                             req_.stderr() && !req_.tty(), req_.tty());
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) == 0) {
      wake_read_.Reset(fds[0]);
      wake_write_.Reset(fds[1]);
    }
  }

  void Run(std::string initial) {
    created_ = last_activity_ = absl::Now();
    if (!initial.empty()) OnBytes(initial);
    char buffer[32 * 1024];
    while (!done_) {
      pollfd p[2] = {{fd_, POLLIN, 0}, {wake_read_.get(), POLLIN, 0}};
      const int r = ::poll(p, 2, 250);
      if (r < 0 && errno != EINTR) break;
      if (r > 0 && (p[0].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
        const ssize_t n = ::read(fd_, buffer, sizeof(buffer));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;  // EOF, or the socket was shut down
        OnBytes(absl::string_view(buffer, static_cast<size_t>(n)));
      }
      Tick();
    }
    Finish();
  }

 private:
  // Work decided under mu_ and done after it is released (it may block).
  struct Actions {
    bool start = false;
    std::string stdin_data;
    bool close_stdin = false;
    std::vector<TerminalSize> resizes;
  };

  void FlushLocked() {
    std::string out = session_.TakeOutput();
    if (out.empty() || broken_) return;
    if (!WriteAll(fd_, out)) {
      broken_ = true;
      ::shutdown(fd_, SHUT_RDWR);
      return;
    }
    last_activity_ = absl::Now();
  }

  void Wake() {
    char c = 1;
    (void)!::write(wake_write_.get(), &c, 1);
  }

  void OnBytes(absl::string_view bytes) {
    Actions actions;
    {
      std::lock_guard<std::mutex> lock(mu_);
      last_activity_ = absl::Now();
      std::vector<spdy::SessionEvent> events;
      absl::Status fed = session_.Feed(bytes, &events);
      for (spdy::SessionEvent& e : events) HandleEventLocked(e, &actions);
      FlushLocked();
      if (!fed.ok()) {
        client_gone_ = true;  // the GOAWAY is written; close
        done_ = true;
      }
    }
    Perform(actions);
  }

  void HandleEventLocked(spdy::SessionEvent& event, Actions* actions) {
    if (auto* open = std::get_if<spdy::StreamOpened>(&event)) {
      OnStreamOpenedLocked(*open, actions);
    } else if (auto* data = std::get_if<spdy::StreamData>(&event)) {
      if (data->stream_id == 0) return;
      if (data->stream_id == stdin_stream_ && !stdin_done_) {
        if (started_) {
          actions->stdin_data += data->data;
        } else {
          pending_stdin_ += data->data;
        }
      } else if (data->stream_id == resize_stream_ && !resize_failed_) {
        resize_.Append(data->data);
        DecodeResizesLocked(actions);
      }
    } else if (auto* half = std::get_if<spdy::StreamHalfClosed>(&event)) {
      OnClientClosedLocked(half->stream_id, actions);
    } else if (auto* reset = std::get_if<spdy::StreamReset>(&event)) {
      OnClientClosedLocked(reset->stream_id, actions);
    } else if (std::holds_alternative<spdy::GoAwayReceived>(event)) {
      client_gone_ = true;  // §5.7
      done_ = true;
    }
  }

  void DecodeResizesLocked(Actions* actions) {
    for (;;) {
      absl::StatusOr<std::optional<TerminalSize>> size = resize_.Next();
      if (!size.ok()) {
        resize_failed_ = true;  // §6.5: stop processing resizes
        return;
      }
      if (!size->has_value()) return;
      if (started_) {
        actions->resizes.push_back(**size);
      } else {
        pending_size_ = **size;
        if (awaiting_size_) {
          awaiting_size_ = false;
          started_ = true;
          actions->start = true;
        }
      }
    }
  }

  void OnStreamOpenedLocked(const spdy::StreamOpened& open, Actions* actions) {
    const std::optional<StreamType> type = GetStreamType(open.headers);
    uint32_t* slot = nullptr;
    bool counts = false;
    if (type.has_value()) {
      switch (*type) {
        case StreamType::kError:
          slot = &error_stream_;
          counts = true;
          break;
        case StreamType::kStdin:
          slot = &stdin_stream_;
          counts = req_.stdin();
          break;
        case StreamType::kStdout:
          slot = &stdout_stream_;
          counts = req_.stdout();
          break;
        case StreamType::kStderr:
          slot = &stderr_stream_;
          counts = req_.stderr() && !req_.tty();
          break;
        case StreamType::kResize:
          slot = &resize_stream_;
          counts = req_.tty() && protocol_ >= RemoteCommandProtocol::kV3;
          break;
        case StreamType::kData:
          break;  // a port-forward stream: accepted, never used (§6.2)
      }
    }
    if (slot != nullptr && *slot != 0) {
      // The same stream type twice: the first one stays, the second is refused.
      (void)session_.ResetStream(open.stream_id, spdy::RstStatus::kCancel);
      return;
    }
    if (!session_.SendReply(open.stream_id).ok()) return;
    if (slot == nullptr) return;  // unknown types are accepted but not counted
    *slot = open.stream_id;
    // A stream that was not asked for is accepted, never written to and reset at the end.
    if (!counts) {
      if (*type == StreamType::kStdout) unrequested_stdout_ = true;
      if (*type == StreamType::kStderr) unrequested_stderr_ = true;
      if (*type == StreamType::kStdin) stdin_done_ = true;
      return;
    }
    if (++counted_ == expected_ && !started_ && !ending_) {
      if (resize_stream_ != 0 && req_.tty() && !pending_size_.has_value() && !resize_failed_) {
        // kubectl sends the terminal's size right after its streams: a command that reads
        // its size at once (a shell, top) should see it, so wait for it a moment.
        awaiting_size_ = true;
        awaiting_size_until_ = absl::Now() + kFirstSizeWait;
        return;
      }
      started_ = true;
      actions->start = true;
    }
  }

  void OnClientClosedLocked(uint32_t stream_id, Actions* actions) {
    if (stream_id == stdin_stream_ && stdin_stream_ != 0 && !stdin_done_) {
      stdin_done_ = true;
      if (!started_) {
        stdin_ended_before_start_ = true;  // applied at start, after the pending data
        return;
      }
      if (req_.tty()) {
        // §6.4: with a tty, the end of the client's input ends the output relay; the
        // process runs on and its exit status still comes.
        StopOutputLocked();
      } else {
        actions->close_stdin = true;
      }
    } else if (stream_id == resize_stream_) {
      resize_failed_ = true;
      if (awaiting_size_) {
        awaiting_size_ = false;
        started_ = true;
        actions->start = true;
      }
    }
  }

  void StopOutputLocked() {
    if (output_stopped_) return;
    output_stopped_ = true;
    for (uint32_t id : {stdout_stream_, stderr_stream_}) {
      if (id != 0 && session_.IsStreamOpen(id)) (void)session_.CloseStream(id);
    }
    FlushLocked();
  }

  void Perform(Actions& actions) {
    if (actions.start) StartProcess();
    if (process_ == nullptr) return;
    for (const TerminalSize& size : actions.resizes) process_->Resize(size);
    if (!actions.stdin_data.empty()) {
      if (!process_->WriteStdin(actions.stdin_data).ok()) {
        std::lock_guard<std::mutex> lock(mu_);
        stdin_done_ = true;  // the process's stdin is gone: drop the rest
      }
    }
    if (actions.close_stdin) process_->CloseStdin();
  }

  // On the read loop, once every expected stream is there.
  void StartProcess() {
    absl::StatusOr<std::unique_ptr<StreamedProcess>> process =
        req_.attach ? attach_(req_.attach_request) : exec_(req_.exec);
    if (!process.ok()) {
      const std::string text =
          absl::StrCat(req_.attach ? "error attaching to container: "
                                   : "error executing command in container: ",
                       process.status().message());
      std::lock_guard<std::mutex> lock(mu_);
      EndLocked(ExecStatus::InternalError(text));
      return;
    }
    process_ = *std::move(process);
    std::string pending;
    bool stdin_done = false, tty_stop = false;
    std::optional<TerminalSize> size;
    {
      std::lock_guard<std::mutex> lock(mu_);
      pending.swap(pending_stdin_);
      // Only an end that came before the start: a later one is in the caller's actions,
      // after the data that preceded it.
      stdin_done = stdin_ended_before_start_ && req_.stdin();
      tty_stop = stdin_done && req_.tty();
      size = pending_size_;
      if (tty_stop) StopOutputLocked();
    }
    if (size.has_value()) process_->Resize(*size);
    if (!pending.empty()) (void)process_->WriteStdin(pending);
    if (stdin_done && !tty_stop) process_->CloseStdin();
    output_thread_ = std::thread([this] { RelayOutput(); });
  }

  // The output thread: output to the client, then the exit status and the closing sequence.
  void RelayOutput() {
    absl::Status failure;
    for (;;) {
      absl::StatusOr<std::optional<StreamedProcess::Chunk>> chunk = process_->Read();
      if (!chunk.ok()) {
        failure = chunk.status();
        break;
      }
      if (!chunk->has_value()) break;
      std::lock_guard<std::mutex> lock(mu_);
      if (client_gone_) break;
      const uint32_t id =
          (*chunk)->stream == StreamType::kStderr ? stderr_stream_ : stdout_stream_;
      const bool unrequested =
          (*chunk)->stream == StreamType::kStderr ? unrequested_stderr_ : unrequested_stdout_;
      if (id == 0 || unrequested || output_stopped_) continue;
      if (session_.SendData(id, (*chunk)->data).ok()) FlushLocked();
    }
    ExecStatus status;
    if (!failure.ok()) {
      status = ExecStatus::InternalError(absl::StrCat(
          req_.attach ? "error attaching to container: " : "error executing command in container: ",
          failure.message()));
    } else {
      absl::StatusOr<int> exit = process_->Wait();
      if (!exit.ok()) {
        if (exit.status().code() == absl::StatusCode::kCancelled) {
          Wake();
          return;  // detached: the client is gone or the server stops; no status (§6.7)
        }
        status = ExecStatus::InternalError(absl::StrCat(
            req_.attach ? "error attaching to container: "
                        : "error executing command in container: ",
            exit.status().message()));
      } else if (*exit != 0 && !req_.attach) {
        const int code = std::clamp(*exit, 1, 255);
        std::vector<std::string> cmd(req_.exec.cmd().begin(), req_.exec.cmd().end());
        status = ExecStatus::NonZeroExit(code, ExecExitErrorText(cmd, code));
      }
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!client_gone_) EndLocked(status);
    }
    Wake();
  }

  // §6.7: FIN on stdout and stderr, the status on error, RST for the rest, GOAWAY.
  void EndLocked(const ExecStatus& status) {
    if (ending_) return;
    ending_ = true;
    // Unrequested output streams are left to the reset below, like the other unused ones.
    if (stdout_stream_ != 0 && !unrequested_stdout_ && session_.IsStreamOpen(stdout_stream_)) {
      (void)session_.CloseStream(stdout_stream_);
    }
    if (stderr_stream_ != 0 && !unrequested_stderr_ && session_.IsStreamOpen(stderr_stream_)) {
      (void)session_.CloseStream(stderr_stream_);
    }
    absl::StatusOr<std::string> payload =
        ErrorStreamPayload(status, protocol_, options_.status_flavor);
    if (payload.ok() && !payload->empty() && error_stream_ != 0) {
      (void)session_.SendData(error_stream_, *payload);
    }
    session_.ResetAllStreams();
    session_.SendGoAway();
    FlushLocked();
    done_ = true;
  }

  // Stream creation (§6.2) and idle (§5.9) timeouts.
  void Tick() {
    Actions actions;
    {
      std::lock_guard<std::mutex> lock(mu_);
      TickLocked(&actions);
    }
    Perform(actions);
  }

  void TickLocked(Actions* actions) {
    const absl::Time now = absl::Now();
    if (awaiting_size_ && now >= awaiting_size_until_) {
      awaiting_size_ = false;  // no size came: start without one
      started_ = true;
      actions->start = true;
    }
    if (!started_ && !awaiting_size_ && !ending_ &&
        now - created_ >= options_.stream_creation_timeout) {
      // "timed out waiting for client to create streams": GOAWAY and close (§6.2).
      ending_ = true;
      session_.ResetAllStreams();
      session_.SendGoAway();
      FlushLocked();
      done_ = true;
    }
    if (now - last_activity_ >= options_.idle_timeout) done_ = true;
  }

  void Finish() {
    bool ended;
    {
      std::lock_guard<std::mutex> lock(mu_);
      ended = ending_;
      if (!ended) client_gone_ = true;
    }
    if (process_ != nullptr && !ended) {
      process_->CloseStdin();
      process_->Detach();
    }
    if (output_thread_.joinable()) output_thread_.join();
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!ending_) {
        ending_ = true;
        session_.ResetAllStreams();
        session_.SendGoAway();
        FlushLocked();
      }
    }
    process_.reset();
    // §6.7 step 5: half-close, then read what the client still sends for a moment, so that
    // close() does not turn unread input into a TCP RST that destroys the last frames.
    if (broken_) return;
    ::shutdown(fd_, SHUT_WR);
    const absl::Time deadline = absl::Now() + kLingerAfterClose;
    char buffer[4096];
    while (absl::Now() < deadline) {
      pollfd p{fd_, POLLIN, 0};
      const int left = static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
      if (::poll(&p, 1, std::max(left, 1)) <= 0) break;
      if (::read(fd_, buffer, sizeof(buffer)) <= 0) break;
    }
  }

  const int fd_;
  spdy::ServerSession session_;
  const RemoteCommandProtocol protocol_;
  const RemoteCommandRequest req_;
  const RemoteCommandOptions& options_;
  const ExecBackend& exec_;
  const AttachBackend& attach_;
  sdk::UniqueFd wake_read_, wake_write_;

  std::mutex mu_;
  int expected_ = 0;
  int counted_ = 0;
  uint32_t error_stream_ = 0, stdin_stream_ = 0, stdout_stream_ = 0, stderr_stream_ = 0,
           resize_stream_ = 0;
  bool unrequested_stdout_ = false, unrequested_stderr_ = false;
  std::string pending_stdin_;
  std::optional<TerminalSize> pending_size_;
  ResizeDecoder resize_;
  bool resize_failed_ = false;
  bool awaiting_size_ = false;  // every stream is there; waiting for the first size
  absl::Time awaiting_size_until_;
  bool stdin_done_ = false;
  bool stdin_ended_before_start_ = false;
  bool started_ = false;
  bool output_stopped_ = false;
  bool ending_ = false;       // the closing sequence was sent
  bool client_gone_ = false;  // GOAWAY, EOF or a session error: write no status
  std::atomic<bool> done_{false};
  bool broken_ = false;
  absl::Time created_, last_activity_;

  std::unique_ptr<StreamedProcess> process_;
  std::thread output_thread_;
};

}  // namespace

void RunRemoteCommandSession(int fd, spdy::ServerSession session, RemoteCommandProtocol protocol,
                             RemoteCommandRequest request, const RemoteCommandOptions& options,
                             const ExecBackend& exec, const AttachBackend& attach,
                             std::string initial) {
  Session s(fd, std::move(session), protocol, std::move(request), options, exec, attach);
  s.Run(std::move(initial));
}

}  // namespace berth::cri::streaming
