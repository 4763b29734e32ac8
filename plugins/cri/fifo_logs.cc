// SPDX-License-Identifier: Apache-2.0
#include "plugins/cri/fifo_logs.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

#include "absl/strings/str_cat.h"
#include "plugins/runtime-runc/shim/cri_log.h"

namespace berth::cri {
namespace fs = std::filesystem;
namespace {

constexpr size_t kChunk = 64 * 1024;
constexpr int kReadsPerEvent = 16;  // fairness between containers

absl::Status Errno(int err, const std::string& what) {
  return absl::Status(err == ENOENT ? absl::StatusCode::kNotFound : absl::StatusCode::kInternal,
                      absl::StrCat(what, ": ", std::strerror(err)));
}

}  // namespace

struct FifoLogs::Entry {
  std::string id, dir;
  std::mutex io_mu;  // the fds and the writer
  std::unique_ptr<shim::CriLogWriter> writer;
  sdk::UniqueFd out, err, in;
  int open_outputs = 0;
  std::map<uint64_t, Hook> hooks;                       // guarded by io_mu
  std::map<uint64_t, std::function<void()>> done_hooks;  // guarded by io_mu
  bool ended = false;                                   // guarded by io_mu
};

absl::StatusOr<std::unique_ptr<FifoLogs>> FifoLogs::Create() {
  std::unique_ptr<FifoLogs> f(new FifoLogs());
  f->epoll_.Reset(::epoll_create1(EPOLL_CLOEXEC));
  f->wake_.Reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!f->epoll_.valid() || !f->wake_.valid()) return Errno(errno, "container log copier");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = f->wake_.get();
  if (::epoll_ctl(f->epoll_.get(), EPOLL_CTL_ADD, f->wake_.get(), &ev) != 0) {
    return Errno(errno, "container log copier");
  }
  f->thread_ = std::thread([p = f.get()] { p->Run(); });
  return f;
}

FifoLogs::~FifoLogs() {
  stop_ = true;
  const uint64_t one = 1;
  (void)!::write(wake_.get(), &one, sizeof(one));
  if (thread_.joinable()) thread_.join();
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [id, e] : entries_) {
    std::lock_guard<std::mutex> io(e->io_mu);
    if (e->writer) {
      (void)e->writer->Out().Flush();
      (void)e->writer->Err().Flush();
    }
  }
}

absl::StatusOr<FifoLogs::Paths> FifoLogs::Add(const std::string& id, const std::string& dir,
                                              const std::string& log_path, bool tty, bool stdin) {
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return Errno(errno, "create " + dir);
  Paths paths;
  auto make = [&](const char* name, std::string* path) -> absl::Status {
    *path = dir + "/" + name;
    if (::mkfifo(path->c_str(), 0600) != 0 && errno != EEXIST) {
      return Errno(errno, "mkfifo " + *path);
    }
    return absl::OkStatus();
  };
  absl::Status s = make("stdout", &paths.stdout);
  if (s.ok() && !tty) s = make("stderr", &paths.stderr);
  if (s.ok() && stdin) s = make("stdin", &paths.stdin);
  if (s.ok()) s = Adopt(id, dir, log_path);
  if (!s.ok()) {
    std::error_code ec;
    fs::remove_all(dir, ec);
    return s;
  }
  return paths;
}

absl::Status FifoLogs::Adopt(const std::string& id, const std::string& dir,
                             const std::string& log_path) {
  auto e = std::make_shared<Entry>();
  e->id = id;
  e->dir = dir;
  if (!log_path.empty()) {
    absl::StatusOr<std::unique_ptr<shim::CriLogWriter>> writer = shim::CriLogWriter::Open(log_path);
    if (!writer.ok()) {
      return absl::Status(writer.status().code(),
                          absl::StrCat("CRI log of container ", id, ": ", writer.status().message()));
    }
    e->writer = std::move(*writer);
  }
  // Non-blocking read ends: no hang-up is reported before a writer has come and gone, so a
  // FIFO the shim has not opened yet does not look finished.
  auto open_fifo = [&](const char* name, int mode, sdk::UniqueFd* fd) -> absl::Status {
    const std::string path = dir + "/" + name;
    if (::access(path.c_str(), F_OK) != 0) return absl::OkStatus();
    fd->Reset(::open(path.c_str(), mode | O_NONBLOCK | O_CLOEXEC));
    if (!fd->valid()) return Errno(errno, "open " + path);
    return absl::OkStatus();
  };
  if (absl::Status s = open_fifo("stdout", O_RDONLY, &e->out); !s.ok()) return s;
  if (absl::Status s = open_fifo("stderr", O_RDONLY, &e->err); !s.ok()) return s;
  // Held open for writing: the container's stdin stays open while nobody is attached.
  if (absl::Status s = open_fifo("stdin", O_RDWR, &e->in); !s.ok()) return s;
  if (!e->out.valid()) {
    return absl::NotFoundError(absl::StrCat("container ", id, " has no stdout FIFO in ", dir));
  }
  return Watch(e);
}

absl::Status FifoLogs::Watch(const std::shared_ptr<Entry>& e) {
  std::lock_guard<std::mutex> lock(mu_);
  if (entries_.count(e->id) != 0) {
    return absl::AlreadyExistsError(absl::StrCat("the output of container ", e->id,
                                                 " is already copied"));
  }
  for (sdk::UniqueFd* fd : {&e->out, &e->err}) {
    if (!fd->valid()) continue;
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd->get();
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd->get(), &ev) != 0) {
      return Errno(errno, "watch the output of container " + e->id);
    }
    by_fd_[fd->get()] = e;
    e->open_outputs++;
  }
  entries_[e->id] = e;
  return absl::OkStatus();
}

void FifoLogs::Run() {
  std::array<epoll_event, 32> events{};
  while (!stop_) {
    const int n = ::epoll_wait(epoll_.get(), events.data(), events.size(), -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return;
    for (int i = 0; i < n; ++i) {
      const int fd = events[i].data.fd;
      if (fd == wake_.get()) continue;
      std::shared_ptr<Entry> e;
      {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = by_fd_.find(fd);
        if (it != by_fd_.end()) e = it->second.lock();
      }
      if (e) OnReadable(e, fd);
    }
  }
}

void FifoLogs::OnReadable(const std::shared_ptr<Entry>& e, int fd) {
  {
    std::lock_guard<std::mutex> io(e->io_mu);
    const bool is_out = e->out.valid() && e->out.get() == fd;
    if (!is_out && !(e->err.valid() && e->err.get() == fd)) return;  // removed meanwhile
    static thread_local std::string buffer(kChunk, '\0');
    for (int i = 0; i < kReadsPerEvent; ++i) {
      const ssize_t r = ::read(fd, buffer.data(), buffer.size());
      if (r < 0 && errno == EINTR) continue;
      if (r < 0 && errno == EAGAIN) break;
      if (r <= 0) {
        // EOF: the shim closed its end (the container's output ended).
        {
          std::lock_guard<std::mutex> lock(mu_);
          by_fd_.erase(fd);
        }
        ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
        if (e->writer) (void)(is_out ? e->writer->Out() : e->writer->Err()).Close();
        (is_out ? e->out : e->err).Reset();
        if (--e->open_outputs == 0 && !e->ended) {
          e->ended = true;
          // Under io_mu: a subscriber that unsubscribes has none running after it returns.
          for (auto& [sub, cb] : e->done_hooks) cb();
        }
        break;
      }
      const std::string_view chunk(buffer.data(), static_cast<size_t>(r));
      for (auto& [sub, hook] : e->hooks) hook(is_out ? 1 : 2, chunk);
      if (e->writer) (void)(is_out ? e->writer->Out() : e->writer->Err()).Write(chunk);
      if (static_cast<size_t>(r) < buffer.size()) break;
    }
  }
}

absl::Status FifoLogs::Reopen(const std::string& id) {
  std::shared_ptr<Entry> e;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = entries_.find(id);
    if (it == entries_.end()) {
      return absl::NotFoundError(absl::StrCat("the output of container ", id, " is not copied"));
    }
    e = it->second;
  }
  std::lock_guard<std::mutex> io(e->io_mu);
  if (!e->writer) return absl::OkStatus();
  return e->writer->Reopen();
}

void FifoLogs::Remove(const std::string& id, const std::string& dir) {
  std::shared_ptr<Entry> e;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = entries_.find(id);
    if (it != entries_.end()) {
      e = it->second;
      entries_.erase(it);
      for (sdk::UniqueFd* fd : {&e->out, &e->err}) {
        if (fd->valid()) by_fd_.erase(fd->get());
      }
    }
  }
  if (e) {
    std::lock_guard<std::mutex> io(e->io_mu);
    for (sdk::UniqueFd* fd : {&e->out, &e->err}) {
      if (!fd->valid()) continue;
      ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd->get(), nullptr);
      // What is still in the FIFO belongs in the log.
      char buffer[kChunk];
      for (;;) {
        const ssize_t r = ::read(fd->get(), buffer, sizeof(buffer));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        if (e->writer) {
          (void)(fd == &e->out ? e->writer->Out() : e->writer->Err())
              .Write(std::string_view(buffer, static_cast<size_t>(r)));
        }
      }
      fd->Reset();
    }
    e->in.Reset();
    e->writer.reset();  // flushes a trailing partial line
    if (!e->ended) {
      e->ended = true;
      for (auto& [sub, cb] : e->done_hooks) cb();
    }
    e->hooks.clear();
    e->done_hooks.clear();
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
}

bool FifoLogs::Has(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  return entries_.count(id) != 0;
}

absl::StatusOr<uint64_t> FifoLogs::Subscribe(const std::string& id, Hook hook,
                                             std::function<void()> done) {
  std::shared_ptr<Entry> e;
  uint64_t sub;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = entries_.find(id);
    if (it == entries_.end()) {
      return absl::NotFoundError(absl::StrCat("the output of container ", id, " is not copied"));
    }
    e = it->second;
    sub = next_subscription_++;
  }
  bool ended;
  {
    std::lock_guard<std::mutex> io(e->io_mu);
    ended = e->ended;
    if (!ended) {
      e->hooks[sub] = std::move(hook);
      e->done_hooks[sub] = done;
    }
  }
  if (ended && done) done();
  return sub;
}

void FifoLogs::Unsubscribe(const std::string& id, uint64_t subscription) {
  std::shared_ptr<Entry> e;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = entries_.find(id);
    if (it == entries_.end()) return;
    e = it->second;
  }
  std::lock_guard<std::mutex> io(e->io_mu);
  e->hooks.erase(subscription);
  e->done_hooks.erase(subscription);
}

absl::Status FifoLogs::WriteStdin(const std::string& id, std::string_view data, int stop_fd) {
  std::shared_ptr<Entry> e;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = entries_.find(id);
    if (it != entries_.end()) e = it->second;
  }
  if (!e) return absl::NotFoundError(absl::StrCat("container ", id, " is gone"));
  int fd;
  {
    std::lock_guard<std::mutex> io(e->io_mu);
    if (!e->in.valid()) {
      return absl::FailedPreconditionError(absl::StrCat("container ", id, " has no open stdin"));
    }
    fd = ::dup(e->in.get());  // CloseStdin may close the entry's own fd meanwhile
  }
  sdk::UniqueFd own(fd);
  if (!own.valid()) return Errno(errno, "stdin of container " + id);
  while (!data.empty()) {
    const ssize_t n = ::write(own.get(), data.data(), data.size());
    if (n > 0) {
      data.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN) return Errno(errno, "stdin of container " + id);
    std::array<pollfd, 2> p = {pollfd{own.get(), POLLOUT, 0}, pollfd{stop_fd, POLLIN, 0}};
    if (::poll(p.data(), p.size(), 1000) < 0 && errno != EINTR) {
      return Errno(errno, "stdin of container " + id);
    }
    if (p[1].revents != 0) return absl::CancelledError("detached");
    if (!Has(id)) return absl::NotFoundError(absl::StrCat("container ", id, " is gone"));
  }
  return absl::OkStatus();
}

void FifoLogs::CloseStdin(const std::string& id) {
  std::shared_ptr<Entry> e;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = entries_.find(id);
    if (it != entries_.end()) e = it->second;
  }
  if (!e) return;
  std::lock_guard<std::mutex> io(e->io_mu);
  e->in.Reset();
}

}  // namespace berth::cri
