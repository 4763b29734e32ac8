// SPDX-License-Identifier: Apache-2.0
#include "plugins/cri/stream_process.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "nlohmann/json.hpp"

namespace berth::cri {
namespace {

using streaming::StreamedProcess;
using streaming::StreamType;
using streaming::TerminalSize;

constexpr size_t kReadChunk = 32 * 1024;
// After the exit, output that stays open (a background child holds it) is relayed while it
// keeps coming; a pause this long ends the session.
constexpr int kDrainAfterExitMs = 1000;

absl::Status Errno(int err, const std::string& what) {
  return absl::Status(err == ENOENT ? absl::StatusCode::kNotFound : absl::StatusCode::kInternal,
                      absl::StrCat(what, ": ", std::strerror(err)));
}

// Writes all of `data` to a non-blocking fd, waiting for room; gives up when `stop_fd` or
// `exit_fd` (if >= 0) becomes readable.
absl::Status WriteWaiting(int fd, std::string_view data, int stop_fd, int exit_fd,
                          const char* what) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n > 0) {
      data.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN) return Errno(errno, what);
    std::array<pollfd, 3> p = {pollfd{fd, POLLOUT, 0}, pollfd{stop_fd, POLLIN, 0},
                               pollfd{exit_fd, POLLIN, 0}};
    const int count = exit_fd >= 0 ? 3 : 2;
    if (::poll(p.data(), count, -1) < 0 && errno != EINTR) return Errno(errno, what);
    if (p[1].revents != 0) return absl::CancelledError(absl::StrCat(what, ": detached"));
    if (count == 3 && p[2].revents != 0) {
      return absl::FailedPreconditionError(absl::StrCat(what, ": the process exited"));
    }
    if ((p[0].revents & (POLLERR | POLLHUP)) != 0) {
      return absl::FailedPreconditionError(absl::StrCat(what, ": closed"));
    }
  }
  return absl::OkStatus();
}

sdk::UniqueFd NewEventFd() { return sdk::UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)); }

void Signal(int event_fd) {
  const uint64_t one = 1;
  (void)!::write(event_fd, &one, sizeof(one));
}

// ---------------------------------------------------------------------------------------

class ExecProcess final : public StreamedProcess {
 public:
  explicit ExecProcess(ExecStart start) : s_(std::move(start)), detach_(NewEventFd()) {}

  ~ExecProcess() override {
    Detach();
    for (auto* fd : {&stdin_, &stdout_, &stderr_}) fd->Reset();
    RemoveFifos();
    if (started_ && s_.exit->Abandon()) {
      // The process is gone: the session was the last one to care about the exec.
      (void)s_.tasks.Delete(s_.sandbox_id, s_.container_id, s_.exec_id);
      if (s_.forget) s_.forget();
    } else if (!started_ && s_.forget) {
      s_.forget();
    }
    // Otherwise the exit event deletes it (runtime_service.cc).
  }

  absl::Status Start() {
    if (!detach_.valid()) return Errno(errno, "eventfd");
    if (::mkdir(s_.fifo_dir.c_str(), 0700) != 0 && errno != EEXIST) {
      return Errno(errno, "create " + s_.fifo_dir);
    }
    ExecTask task;
    task.id = s_.container_id;
    task.exec_id = s_.exec_id;
    task.terminal = s_.tty;
    task.process_json = s_.process_json;
    if (s_.stdin) {
      // Opened for writing once the shim reads it (OpenStdin): data written into a FIFO
      // nobody has open for reading is lost when our end closes.
      ASSIGN_OR_RETURN(task.stdin_uri, MakeFifo("stdin", -1, nullptr));
      stdin_path_ = task.stdin_uri;
    }
    // Output FIFOs whether asked for or not, as containerd makes them: not every shim takes
    // an empty path for "none" (containerd-shim-runc-v2 does not). Unwanted output is read
    // and dropped.
    ASSIGN_OR_RETURN(task.stdout_uri, MakeFifo("stdout", O_RDONLY, &stdout_));
    if (!s_.tty) {
      ASSIGN_OR_RETURN(task.stderr_uri, MakeFifo("stderr", O_RDONLY, &stderr_));
    }
    task_ = std::move(task);
    return absl::OkStatus();
  }

  // Task/Exec and Task/Start, once, at the first use: a terminal's first size (Resize()
  // before any output is read) goes into the process spec as consoleSize, so the command
  // never sees a 0x0 terminal.
  absl::Status EnsureStarted() {
    std::lock_guard<std::mutex> lock(start_mu_);
    if (started_ || !start_error_.ok()) return start_error_;
    if (s_.tty && initial_size_.has_value()) {
      nlohmann::json process = nlohmann::json::parse(task_.process_json, nullptr, false);
      if (process.is_object()) {
        process["consoleSize"] = {{"height", initial_size_->height},
                                  {"width", initial_size_->width}};
        task_.process_json = process.dump();
      }
    }
    start_error_ = s_.tasks.Exec(s_.sandbox_id, task_);
    if (!start_error_.ok()) return start_error_;
    absl::StatusOr<uint32_t> pid = s_.tasks.Start(s_.sandbox_id, s_.container_id, s_.exec_id);
    if (!pid.ok()) {
      (void)s_.tasks.Delete(s_.sandbox_id, s_.container_id, s_.exec_id);
      start_error_ = pid.status();
      return start_error_;
    }
    started_ = true;
    return absl::OkStatus();
  }

  absl::StatusOr<std::optional<Chunk>> Read() override {
    RETURN_IF_ERROR(EnsureStarted());
    for (;;) {
      if (detached_) return std::nullopt;
      if (!stdout_.valid() && !stderr_.valid()) return std::nullopt;
      std::vector<pollfd> p;
      p.push_back({detach_.get(), POLLIN, 0});
      if (stdout_.valid()) p.push_back({stdout_.get(), POLLIN, 0});
      if (stderr_.valid()) p.push_back({stderr_.get(), POLLIN, 0});
      const bool exited = s_.exit->status().has_value();
      if (!exited) p.push_back({s_.exit->event_fd(), POLLIN, 0});
      const int r = ::poll(p.data(), p.size(), exited ? kDrainAfterExitMs : -1);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) return Errno(errno, "poll the exec's output");
      if (r == 0) return std::nullopt;  // exited, and the output went quiet
      if (p[0].revents != 0) return std::nullopt;
      for (size_t i = 1; i < p.size(); ++i) {
        if (p[i].revents == 0 || p[i].fd == s_.exit->event_fd()) continue;
        const bool is_out = stdout_.valid() && p[i].fd == stdout_.get();
        sdk::UniqueFd& fd = is_out ? stdout_ : stderr_;
        std::string data(kReadChunk, '\0');
        const ssize_t n = ::read(fd.get(), data.data(), data.size());
        if (n > 0) {
          if (!(is_out ? s_.stdout : s_.stderr)) continue;  // not asked for: dropped
          data.resize(static_cast<size_t>(n));
          return Chunk{is_out ? StreamType::kStdout : StreamType::kStderr, std::move(data)};
        }
        if (n == 0 || (errno != EAGAIN && errno != EINTR)) fd.Reset();  // EOF: the shim closed it
      }
    }
  }

  absl::StatusOr<int> Wait() override {
    RETURN_IF_ERROR(EnsureStarted());
    std::optional<int> status = s_.exit->WaitFor([this] { return detached_.load(); });
    if (!status.has_value()) return absl::CancelledError("detached");
    return *status;
  }

  absl::Status WriteStdin(absl::string_view data) override {
    if (!s_.stdin || stdin_closed_) return absl::FailedPreconditionError("stdin is closed");
    RETURN_IF_ERROR(EnsureStarted());
    RETURN_IF_ERROR(OpenStdin());
    return WriteWaiting(stdin_.get(), std::string_view(data.data(), data.size()), detach_.get(), s_.exit->event_fd(), "exec stdin");
  }

  void CloseStdin() override {
    if (!s_.stdin || stdin_closed_) return;
    stdin_closed_ = true;
    if (!EnsureStarted().ok()) return;
    (void)OpenStdin();  // so that the shim's read end sees EOF, not a FIFO nobody writes
    stdin_.Reset();
    if (!s_.exit->status().has_value()) {
      (void)s_.tasks.CloseStdin(s_.sandbox_id, s_.container_id, s_.exec_id);
    }
  }

  void Resize(TerminalSize size) override {
    if (!s_.tty) return;
    {
      std::lock_guard<std::mutex> lock(start_mu_);
      if (!started_) {
        initial_size_ = size;  // applied at the start
        return;
      }
    }
    (void)s_.tasks.ResizePty(s_.sandbox_id, s_.container_id, s_.exec_id, size.width,
                             size.height);
  }

  void Detach() override {
    if (detached_.exchange(true)) return;
    if (detach_.valid()) Signal(detach_.get());
    s_.exit->Notify();
  }

 private:
  // Makes <dir>/<exec id>.<name> and opens our end of it; returns the URI for the shim.
  absl::StatusOr<std::string> MakeFifo(const char* name, int mode, sdk::UniqueFd* fd) {
    std::string path = absl::StrCat(s_.fifo_dir, "/", s_.exec_id, ".", name);
    if (::mkfifo(path.c_str(), 0600) != 0) return Errno(errno, "mkfifo " + path);
    fifos_.push_back(path);
    // Non-blocking: neither end waits for the other. A read end reports no hang-up before a
    // writer has come and gone, so the output is not mistaken for finished before the shim
    // opened it.
    if (fd == nullptr) return path;
    fd->Reset(::open(path.c_str(), mode | O_NONBLOCK | O_CLOEXEC));
    if (!fd->valid()) return Errno(errno, "open " + path);
    return path;  // a plain path: every shim v2 takes it for a FIFO (containerd's: only that)
  }

  // Opens the stdin FIFO for writing once the shim has opened it for reading (berth-shim
  // does at Exec, containerd's shims at Start or a little later). Gives up when the process
  // exits, on Detach() or after 10 s.
  absl::Status OpenStdin() {
    if (stdin_.valid()) return absl::OkStatus();
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    for (;;) {
      stdin_.Reset(::open(stdin_path_.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC));
      if (stdin_.valid()) return absl::OkStatus();
      if (errno != ENXIO) return Errno(errno, "open " + stdin_path_);
      if (detached_ || s_.exit->status().has_value()) {
        return absl::FailedPreconditionError("the process did not open its stdin");
      }
      if (std::chrono::steady_clock::now() > deadline) {
        return absl::DeadlineExceededError("the shim did not open the exec's stdin within 10 s");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }

  void RemoveFifos() {
    for (const std::string& path : fifos_) ::unlink(path.c_str());
    fifos_.clear();
  }

  ExecStart s_;
  sdk::UniqueFd detach_;
  std::atomic<bool> detached_{false};
  std::mutex start_mu_;
  ExecTask task_;
  std::optional<TerminalSize> initial_size_;
  absl::Status start_error_;
  bool started_ = false;  // guarded by start_mu_ (read without it once the session ends)
  bool stdin_closed_ = false;
  sdk::UniqueFd stdin_, stdout_, stderr_;
  std::string stdin_path_;
  std::vector<std::string> fifos_;
};

// ---------------------------------------------------------------------------------------

enum AttachFrame : uint8_t {
  kFrameStdin = 1,
  kFrameStdout = 2,
  kFrameStderr = 3,
  kFrameResize = 4,
  kFrameCloseStdin = 5,
  kFrameExit = 6,
};

class AttachProcess final : public StreamedProcess {
 public:
  explicit AttachProcess(AttachStart start) : s_(std::move(start)), detach_(NewEventFd()) {}

  absl::Status Connect() {
    if (!detach_.valid()) return Errno(errno, "eventfd");
    ASSIGN_OR_RETURN(AttachPoint point, s_.tasks.Attach(s_.sandbox_id, s_.container_id, ""));
    std::string path = point.address;
    if (absl::StartsWith(path, "unix://")) path = path.substr(7);
    sockaddr_un sun{};
    sun.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof(sun.sun_path)) {
      return absl::InternalError("the shim's attach address is unusable: " + point.address);
    }
    std::memcpy(sun.sun_path, path.data(), path.size());
    sock_.Reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!sock_.valid() ||
        ::connect(sock_.get(), reinterpret_cast<sockaddr*>(&sun), sizeof(sun)) != 0) {
      return Errno(errno, "connect to the shim's attach socket " + path);
    }
    process_stdin_ = point.stdin;
    return absl::OkStatus();
  }

  absl::StatusOr<std::optional<Chunk>> Read() override {
    for (;;) {
      if (ended_ || detached_) return std::nullopt;
      // A whole frame in the buffer?
      if (in_.size() >= 5) {
        const auto* h = reinterpret_cast<const unsigned char*>(in_.data());
        const size_t len = (size_t{h[1]} << 24) | (size_t{h[2]} << 16) | (size_t{h[3]} << 8) | h[4];
        if (len > (16u << 20)) return absl::InternalError("attach frame too large");
        if (in_.size() >= 5 + len) {
          const uint8_t type = h[0];
          std::string payload = in_.substr(5, len);
          in_.erase(0, 5 + len);
          if (type == kFrameExit) {
            ended_ = true;
            return std::nullopt;
          }
          if (type == kFrameStdout && s_.stdout) {
            return Chunk{StreamType::kStdout, std::move(payload)};
          }
          if (type == kFrameStderr && s_.stderr) {
            return Chunk{StreamType::kStderr, std::move(payload)};
          }
          continue;
        }
      }
      std::array<pollfd, 2> p = {pollfd{sock_.get(), POLLIN, 0}, pollfd{detach_.get(), POLLIN, 0}};
      if (::poll(p.data(), p.size(), -1) < 0) {
        if (errno == EINTR) continue;
        return Errno(errno, "poll the attach socket");
      }
      if (p[1].revents != 0) return std::nullopt;
      char buffer[kReadChunk];
      const ssize_t n = ::read(sock_.get(), buffer, sizeof(buffer));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        ended_ = true;  // the shim closed it (the container is gone)
        return std::nullopt;
      }
      in_.append(buffer, static_cast<size_t>(n));
    }
  }

  absl::StatusOr<int> Wait() override {
    if (detached_) return absl::CancelledError("detached");
    return 0;
  }

  absl::Status WriteStdin(absl::string_view data) override {
    if (!process_stdin_ || !s_.stdin) return absl::OkStatus();  // the container has no stdin
    while (!data.empty()) {
      const size_t len = std::min<size_t>(data.size(), 64 * 1024);
      RETURN_IF_ERROR(SendFrame(kFrameStdin, std::string_view(data.data(), len)));
      data.remove_prefix(len);
    }
    return absl::OkStatus();
  }

  void CloseStdin() override {
    // Only a stdin_once container loses its stdin with the client's; others keep it open
    // for the next attach.
    if (process_stdin_ && s_.stdin && s_.stdin_once) (void)SendFrame(kFrameCloseStdin, "");
  }

  void Resize(TerminalSize size) override {
    const char payload[4] = {static_cast<char>(size.width >> 8), static_cast<char>(size.width),
                             static_cast<char>(size.height >> 8), static_cast<char>(size.height)};
    (void)SendFrame(kFrameResize, std::string_view(payload, 4));
  }

  void Detach() override {
    if (detached_.exchange(true)) return;
    if (detach_.valid()) Signal(detach_.get());
  }

 private:
  absl::Status SendFrame(uint8_t type, std::string_view payload) {
    std::string frame(5, '\0');
    frame[0] = static_cast<char>(type);
    const uint32_t len = static_cast<uint32_t>(payload.size());
    frame[1] = static_cast<char>(len >> 24);
    frame[2] = static_cast<char>(len >> 16);
    frame[3] = static_cast<char>(len >> 8);
    frame[4] = static_cast<char>(len);
    frame.append(payload);
    std::lock_guard<std::mutex> lock(write_mu_);
    const char* data = frame.data();
    size_t left = frame.size();
    while (left > 0) {
      const ssize_t n = ::send(sock_.get(), data, left, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Errno(errno, "write to the attach socket");
      data += n;
      left -= static_cast<size_t>(n);
    }
    return absl::OkStatus();
  }

  AttachStart s_;
  sdk::UniqueFd detach_;
  sdk::UniqueFd sock_;
  std::mutex write_mu_;
  std::string in_;
  bool process_stdin_ = false;
  bool ended_ = false;
  std::atomic<bool> detached_{false};
};

// ---------------------------------------------------------------------------------------

class FifoAttachProcess final : public StreamedProcess {
 public:
  FifoAttachProcess(AttachStart start, FifoLogs* logs, bool tty)
      : s_(std::move(start)), logs_(logs), tty_(tty), detach_(NewEventFd()) {}
  ~FifoAttachProcess() override {
    Detach();
    if (subscribed_) logs_->Unsubscribe(s_.container_id, subscription_);
  }

  absl::Status Subscribe() {
    if (!detach_.valid()) return Errno(errno, "eventfd");
    ASSIGN_OR_RETURN(subscription_,
                     logs_->Subscribe(
                         s_.container_id,
                         [this](int stream, std::string_view chunk) {
                           if ((stream == 1 && !s_.stdout) || (stream == 2 && !s_.stderr)) return;
                           std::lock_guard<std::mutex> lock(mu_);
                           // Output never waits for an attach client: one too far behind is
                           // dropped, as berth-shim drops it.
                           if (queued_ > (1u << 20)) {
                             overrun_ = true;
                           } else {
                             queued_ += chunk.size();
                             queue_.push_back({stream == 2 ? StreamType::kStderr
                                                           : StreamType::kStdout,
                                               std::string(chunk)});
                           }
                           cv_.notify_all();
                         },
                         [this] {
                           std::lock_guard<std::mutex> lock(mu_);
                           ended_ = true;
                           cv_.notify_all();
                         }));
    subscribed_ = true;
    return absl::OkStatus();
  }

  absl::StatusOr<std::optional<Chunk>> Read() override {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return !queue_.empty() || ended_ || overrun_ || detached_; });
    if (detached_ || overrun_ || queue_.empty()) return std::nullopt;
    Chunk c = std::move(queue_.front());
    queue_.erase(queue_.begin());
    queued_ -= c.data.size();
    return c;
  }

  absl::StatusOr<int> Wait() override {
    if (detached_) return absl::CancelledError("detached");
    return 0;
  }

  absl::Status WriteStdin(absl::string_view data) override {
    if (!s_.stdin) return absl::OkStatus();
    return logs_->WriteStdin(s_.container_id, std::string_view(data.data(), data.size()),
                             detach_.get());
  }

  void CloseStdin() override {
    if (s_.stdin && s_.stdin_once) logs_->CloseStdin(s_.container_id);
  }

  void Resize(TerminalSize size) override {
    if (!tty_) return;
    (void)s_.tasks.ResizePty(s_.sandbox_id, s_.container_id, "", size.width, size.height);
  }

  void Detach() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (detached_) return;
      detached_ = true;
    }
    if (detach_.valid()) Signal(detach_.get());
    cv_.notify_all();
  }

 private:
  AttachStart s_;
  FifoLogs* const logs_;
  const bool tty_;
  sdk::UniqueFd detach_;
  uint64_t subscription_ = 0;
  bool subscribed_ = false;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Chunk> queue_;
  size_t queued_ = 0;
  bool ended_ = false, overrun_ = false, detached_ = false;
};

}  // namespace

// ---------------------------------------------------------------------------------------

ExecExit::ExecExit() : event_(NewEventFd()) {}

bool ExecExit::Set(int exit_status) {
  bool abandoned;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (status_.has_value()) return false;
    status_ = exit_status;
    abandoned = abandoned_;
  }
  if (event_.valid()) Signal(event_.get());
  cv_.notify_all();
  return abandoned;
}

bool ExecExit::Abandon() {
  std::lock_guard<std::mutex> lock(mu_);
  abandoned_ = true;
  return status_.has_value();
}

void ExecExit::Notify() {
  { std::lock_guard<std::mutex> lock(mu_); }  // a waiter is either blocked or sees the flag
  cv_.notify_all();
}

std::optional<int> ExecExit::status() const {
  std::lock_guard<std::mutex> lock(mu_);
  return status_;
}

std::optional<int> ExecExit::WaitFor(const std::function<bool()>& cancelled) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return status_.has_value() || cancelled(); });
  return status_;
}

absl::StatusOr<std::unique_ptr<StreamedProcess>> StartExecProcess(ExecStart start) {
  auto process = std::make_unique<ExecProcess>(std::move(start));
  RETURN_IF_ERROR(process->Start());
  return process;
}

absl::StatusOr<std::unique_ptr<StreamedProcess>> StartAttachProcess(AttachStart start) {
  auto process = std::make_unique<AttachProcess>(std::move(start));
  RETURN_IF_ERROR(process->Connect());
  return process;
}

}  // namespace berth::cri

namespace berth::cri {

absl::StatusOr<std::unique_ptr<StreamedProcess>> StartFifoAttachProcess(AttachStart start,
                                                                         FifoLogs* logs,
                                                                         bool tty) {
  auto process = std::make_unique<FifoAttachProcess>(std::move(start), logs, tty);
  RETURN_IF_ERROR(process->Subscribe());
  return process;
}

}  // namespace berth::cri
