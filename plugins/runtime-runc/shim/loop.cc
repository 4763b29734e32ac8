// SPDX-License-Identifier: Apache-2.0
#include "plugins/runtime-runc/shim/loop.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/status_macros.h"

extern char** environ;

namespace berth::shim {
namespace {

// Unclaimed exits kept at most (orphans nobody waits for are dropped oldest first).
constexpr size_t kMaxUnclaimedExits = 4096;

}  // namespace

void BlockSigchld() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

absl::StatusOr<std::unique_ptr<EventLoop>> EventLoop::Create() {
  std::unique_ptr<EventLoop> loop(new EventLoop());
  loop->epoll_fd_.Reset(::epoll_create1(EPOLL_CLOEXEC));
  if (!loop->epoll_fd_.valid()) return core::ErrnoToStatus(errno, "epoll_create1");
  loop->event_fd_.Reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!loop->event_fd_.valid()) return core::ErrnoToStatus(errno, "eventfd");
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  loop->signal_fd_.Reset(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!loop->signal_fd_.valid()) return core::ErrnoToStatus(errno, "signalfd(SIGCHLD)");
  for (int fd : {loop->event_fd_.get(), loop->signal_fd_.get()}) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    if (::epoll_ctl(loop->epoll_fd_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
      return core::ErrnoToStatus(errno, "epoll_ctl ADD");
    }
  }
  return loop;
}

EventLoop::~EventLoop() { Stop(); }

void EventLoop::Start() {
  thread_ = std::thread([this] { Run(); });
}

void EventLoop::Stop() {
  if (!thread_.joinable()) return;
  Post([this] { stop_ = true; });
  thread_.join();
}

void EventLoop::Wake() {
  uint64_t one = 1;
  ssize_t ignored = ::write(event_fd_.get(), &one, sizeof(one));
  (void)ignored;
}

void EventLoop::Post(std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> lock(post_mu_);
    posted_.push_back(std::move(fn));
  }
  Wake();
}

void EventLoop::PostAt(std::chrono::steady_clock::time_point when, std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> lock(post_mu_);
    timers_.emplace(when, std::move(fn));
  }
  Wake();
}

absl::Status EventLoop::Watch(int fd, uint32_t events, FdCallback cb) {
  epoll_event ev{};
  ev.events = events;
  ev.data.fd = fd;
  if (::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
    return core::ErrnoToStatus(errno, absl::StrCat("epoll_ctl ADD fd ", fd));
  }
  watches_[fd] = std::make_shared<FdCallback>(std::move(cb));
  return absl::OkStatus();
}

void EventLoop::Modify(int fd, uint32_t events) {
  epoll_event ev{};
  ev.events = events;
  ev.data.fd = fd;
  ::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_MOD, fd, &ev);
}

void EventLoop::Unwatch(int fd) {
  if (watches_.erase(fd) > 0) ::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_DEL, fd, nullptr);
}

void EventLoop::Run() {
  epoll_event events[32];
  while (!stop_) {
    int timeout_ms = -1;
    {
      std::lock_guard<std::mutex> lock(post_mu_);
      if (!timers_.empty()) {
        auto wait = timers_.begin()->first - std::chrono::steady_clock::now();
        const int64_t ms = std::chrono::duration_cast<std::chrono::milliseconds>(wait).count();
        timeout_ms = static_cast<int>(std::clamp<int64_t>(ms + 1, 0, int64_t{3600} * 1000));
      }
    }
    int n = ::epoll_wait(epoll_fd_.get(), events, 32, timeout_ms);
    if (n < 0 && errno != EINTR) break;
    for (int i = 0; i < n; ++i) {
      const int fd = events[i].data.fd;
      if (fd == event_fd_.get()) {
        uint64_t v;
        ssize_t ignored = ::read(fd, &v, sizeof(v));
        (void)ignored;
        continue;
      }
      if (fd == signal_fd_.get()) {
        signalfd_siginfo si;
        while (::read(fd, &si, sizeof(si)) > 0) {
        }
        Reap();
        continue;
      }
      auto it = watches_.find(fd);
      if (it == watches_.end()) continue;
      std::shared_ptr<FdCallback> cb = it->second;  // the callback may Unwatch itself
      (*cb)(events[i].events);
    }
    std::vector<std::function<void()>> run;
    {
      std::lock_guard<std::mutex> lock(post_mu_);
      run.swap(posted_);
      const auto now = std::chrono::steady_clock::now();
      while (!timers_.empty() && timers_.begin()->first <= now) {
        run.push_back(std::move(timers_.begin()->second));
        timers_.erase(timers_.begin());
      }
    }
    for (auto& fn : run) fn();
  }
}

uint64_t EventLoop::ExitSeq() {
  std::lock_guard<std::mutex> lock(reap_mu_);
  return seq_;
}

void EventLoop::Reap() {
  std::vector<std::pair<ExitCallback, int>> calls;
  {
    std::lock_guard<std::mutex> lock(reap_mu_);
    for (;;) {
      int status = 0;
      pid_t pid = ::waitpid(-1, &status, WNOHANG);
      if (pid <= 0) break;
      ++seq_;
      auto cb = exit_cbs_.find(pid);
      if (cb != exit_cbs_.end()) {
        calls.emplace_back(std::move(cb->second.second), status);
        exit_cbs_.erase(cb);
        continue;
      }
      exits_[pid] = Exit{status, seq_};
      exit_order_.push_back(pid);
      while (exit_order_.size() > kMaxUnclaimedExits) {
        exits_.erase(exit_order_.front());
        exit_order_.pop_front();
      }
    }
  }
  reap_cv_.notify_all();
  for (auto& [cb, status] : calls) cb(status);
}

absl::StatusOr<pid_t> EventLoop::Spawn(const SpawnOptions& options) {
  if (options.argv.empty()) return absl::InvalidArgumentError("spawn: empty argv");
  std::vector<char*> argv;
  for (const std::string& a : options.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  const int fds[3] = {options.stdin_fd, options.stdout_fd, options.stderr_fd};
  for (int target = 0; target < 3; ++target) {
    if (fds[target] >= 0) {
      posix_spawn_file_actions_adddup2(&fa, fds[target], target);
    } else {
      posix_spawn_file_actions_addopen(&fa, target, "/dev/null", target == 0 ? O_RDONLY : O_WRONLY,
                                       0);
    }
  }
  if (!options.cwd.empty()) posix_spawn_file_actions_addchdir_np(&fa, options.cwd.c_str());
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t empty, all;
  sigemptyset(&empty);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &empty);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

  pid_t pid = -1;
  int rc;
  {
    std::lock_guard<std::mutex> lock(reap_mu_);
    rc = ::posix_spawn(&pid, argv[0], &fa, &attr, argv.data(), environ);
    if (rc == 0) exits_.erase(pid);  // a stale exit of an earlier process with this pid
  }
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    return core::ErrnoToStatus(rc, absl::StrCat("spawn ", options.argv[0]));
  }
  return pid;
}

int EventLoop::WaitPid(pid_t pid) {
  std::unique_lock<std::mutex> lock(reap_mu_);
  reap_cv_.wait(lock, [&] { return exits_.count(pid) > 0; });
  int status = exits_[pid].status;
  exits_.erase(pid);
  return status;
}

bool EventLoop::WaitPidFor(pid_t pid, std::chrono::milliseconds timeout, int* wait_status) {
  std::unique_lock<std::mutex> lock(reap_mu_);
  if (!reap_cv_.wait_for(lock, timeout, [&] { return exits_.count(pid) > 0; })) return false;
  *wait_status = exits_[pid].status;
  exits_.erase(pid);
  return true;
}

void EventLoop::OnExit(pid_t pid, uint64_t since_seq, ExitCallback cb) {
  std::unique_lock<std::mutex> lock(reap_mu_);
  auto it = exits_.find(pid);
  if (it != exits_.end()) {
    if (it->second.seq > since_seq) {
      int status = it->second.status;
      exits_.erase(it);
      lock.unlock();
      cb(status);
      return;
    }
    exits_.erase(it);  // an earlier process with the same pid
  }
  exit_cbs_[pid] = {since_seq, std::move(cb)};
}

}  // namespace berth::shim
