// SPDX-License-Identifier: Apache-2.0
#include "berth/ttrpc/server.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "berth/ttrpc/frame.h"
#include "io.h"
#include "shim/ttrpc/request.pb.h"

namespace berth::ttrpc {

struct Server::Connection {
  sdk::UniqueFd fd;
  std::mutex write_mu;
  std::thread reader;
  std::atomic<bool> done{false};  // set when the reader and its workers have finished
  std::mutex workers_mu;
  // One thread per request; finished ones are joined when the next request arrives.
  std::list<std::pair<std::thread, std::shared_ptr<std::atomic<bool>>>> workers;
};

namespace {

void JoinWorkers(std::list<std::pair<std::thread, std::shared_ptr<std::atomic<bool>>>>& workers,
                 bool only_finished) {
  for (auto it = workers.begin(); it != workers.end();) {
    if (only_finished && !it->second->load()) {
      ++it;
      continue;
    }
    it->first.join();
    it = workers.erase(it);
  }
}

}  // namespace

Server::Server() = default;

Server::~Server() { Shutdown(absl::ZeroDuration()); }

void Server::Register(std::string_view service, std::string_view method, Handler handler) {
  handlers_[absl::StrCat(std::string(service), "/", std::string(method))] = std::move(handler);
}

absl::Status Server::Listen(std::string_view address) {
  sockaddr_un sun;
  socklen_t len = 0;
  if (absl::Status s = internal::MakeUnixAddress(address, &sun, &len); !s.ok()) return s;
  sdk::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return internal::ErrnoToStatus(errno, "ttrpc server socket()");
  std::string path;
  if (sun.sun_path[0] != '\0') {
    path = sun.sun_path;
    struct stat st;
    if (::lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) ::unlink(path.c_str());
  }
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&sun), len) != 0) {
    return internal::ErrnoToStatus(errno, absl::StrCat("ttrpc bind to ", std::string(address)));
  }
  if (::listen(fd.get(), 128) != 0) {
    return internal::ErrnoToStatus(errno, absl::StrCat("ttrpc listen on ", std::string(address)));
  }
  unlink_path_ = path;
  return ListenFd(std::move(fd));
}

absl::Status Server::ListenFd(sdk::UniqueFd fd) {
  if (!fd.valid()) return absl::InvalidArgumentError("ttrpc server: invalid listening fd");
  if (listen_fd_.valid()) return absl::FailedPreconditionError("ttrpc server already listening");
  listen_fd_ = std::move(fd);
  return absl::OkStatus();
}

absl::Status Server::Start() {
  if (!listen_fd_.valid()) {
    return absl::FailedPreconditionError("ttrpc server: Start() before Listen()");
  }
  if (started_) return absl::FailedPreconditionError("ttrpc server already started");
  int p[2];
  if (::pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0) {
    return internal::ErrnoToStatus(errno, "ttrpc server pipe2");
  }
  wake_read_.Reset(p[0]);
  wake_write_.Reset(p[1]);
  started_ = true;
  acceptor_ = std::thread([this] { AcceptLoop(); });
  return absl::OkStatus();
}

void Server::AcceptLoop() {
  while (!shutting_down_.load()) {
    pollfd fds[2] = {{listen_fd_.get(), POLLIN, 0}, {wake_read_.get(), POLLIN, 0}};
    int rc = ::poll(fds, 2, -1);
    if (rc < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents != 0 || shutting_down_.load()) return;
    if ((fds[0].revents & POLLIN) == 0) continue;
    int cfd = ::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (cfd < 0) {
      if (errno == EMFILE || errno == ENFILE) absl::SleepFor(absl::Milliseconds(10));
      continue;
    }
    auto conn = std::make_shared<Connection>();
    conn->fd.Reset(cfd);
    std::lock_guard<std::mutex> lock(mu_);
    if (shutting_down_.load()) return;                     // conn closes with its last reference
    for (auto it = conns_.begin(); it != conns_.end();) {  // reap closed connections
      if ((*it)->done.load()) {
        (*it)->reader.join();
        it = conns_.erase(it);
      } else {
        ++it;
      }
    }
    conns_.push_back(conn);
    conn->reader = std::thread([this, conn] { Serve(conn); });
  }
}

namespace {

absl::Status SendResponse(int fd, std::mutex& write_mu, std::uint32_t stream_id,
                          const absl::Status& status, const std::string& payload) {
  ::ttrpc::Response response;
  response.mutable_status()->set_code(static_cast<int>(status.code()));
  if (!status.ok()) response.mutable_status()->set_message(std::string(status.message()));
  response.set_payload(payload);
  Frame frame{stream_id, kTypeResponse, 0, {}};
  response.SerializeToString(&frame.data);
  if (frame.data.size() > kMaxDataSize) {
    // Tell the client rather than leave it waiting for a frame that cannot be sent.
    response.clear_payload();
    response.mutable_status()->set_code(static_cast<int>(absl::StatusCode::kResourceExhausted));
    response.mutable_status()->set_message(
        absl::StrCat("ttrpc response of ", frame.data.size(), " bytes exceeds the 4 MiB maximum"));
    frame.data.clear();
    response.SerializeToString(&frame.data);
  }
  std::lock_guard<std::mutex> lock(write_mu);
  return WriteFrame(fd, frame);
}

}  // namespace

void Server::Serve(std::shared_ptr<Connection> conn) {
  while (true) {
    FrameHeader skipped;
    absl::StatusOr<Frame> frame = ReadFrame(conn->fd.get(), &skipped);
    if (!frame.ok()) {
      if (frame.status().code() == absl::StatusCode::kResourceExhausted &&
          skipped.type == kTypeRequest) {
        (void)SendResponse(conn->fd.get(), conn->write_mu, skipped.stream_id, frame.status(), "");
        continue;
      }
      if (frame.status().code() == absl::StatusCode::kResourceExhausted) continue;
      break;  // EOF or error: connection done
    }
    if (frame->type != kTypeRequest) continue;  // Data frames: streams are unsupported
    if (frame->stream_id % 2 != 1) {
      (void)SendResponse(
          conn->fd.get(), conn->write_mu, frame->stream_id,
          absl::InvalidArgumentError("ttrpc stream id must be odd for client-initiated streams"),
          "");
      continue;
    }
    if ((frame->flags & (kFlagRemoteOpen | kFlagRemoteClosed)) != 0) {
      (void)SendResponse(
          conn->fd.get(), conn->write_mu, frame->stream_id,
          absl::UnimplementedError("ttrpc streaming requests are not supported by this server"),
          "");
      continue;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++in_flight_;
    }
    std::lock_guard<std::mutex> lock(conn->workers_mu);
    JoinWorkers(conn->workers, /*only_finished=*/true);
    auto finished = std::make_shared<std::atomic<bool>>(false);
    conn->workers.emplace_back(std::thread([this, conn, finished, id = frame->stream_id,
                                            data = std::move(frame->data)]() mutable {
                                 Dispatch(conn, id, std::move(data));
                                 finished->store(true);
                               }),
                               finished);
  }
  // Reader done: shut down writes too so nobody blocks on a dead peer.
  ::shutdown(conn->fd.get(), SHUT_RDWR);
  {
    std::lock_guard<std::mutex> lock(conn->workers_mu);
    JoinWorkers(conn->workers, /*only_finished=*/false);
  }
  conn->done.store(true);
}

void Server::Dispatch(std::shared_ptr<Connection> conn, std::uint32_t stream_id, std::string data) {
  ::ttrpc::Request request;
  absl::StatusOr<std::string> result;
  if (!request.ParseFromString(data)) {
    result = absl::InvalidArgumentError("malformed ttrpc Request");
  } else {
    CallContext ctx;
    ctx.service = request.service();
    ctx.method = request.method();
    if (request.timeout_nano() > 0) {
      ctx.deadline = absl::Now() + absl::Nanoseconds(request.timeout_nano());
    }
    for (const auto& kv : request.metadata()) ctx.metadata.emplace_back(kv.key(), kv.value());
    auto it = handlers_.find(absl::StrCat(ctx.service, "/", ctx.method));
    if (it == handlers_.end()) {
      result = absl::UnimplementedError(
          absl::StrCat("method ", ctx.method, " of service ", ctx.service, " not implemented"));
    } else {
      try {
        result = it->second(request.payload(), ctx);
      } catch (const std::exception& e) {
        result = absl::InternalError(
            absl::StrCat("ttrpc handler ", ctx.service, "/", ctx.method, " threw: ", e.what()));
      } catch (...) {
        result = absl::InternalError(
            absl::StrCat("ttrpc handler ", ctx.service, "/", ctx.method, " threw"));
      }
    }
  }
  static const std::string kEmpty;
  (void)SendResponse(conn->fd.get(), conn->write_mu, stream_id, result.status(),
                     result.ok() ? *result : kEmpty);
  std::lock_guard<std::mutex> lock(mu_);
  if (--in_flight_ == 0) idle_cv_.notify_all();
}

void Server::Shutdown(absl::Duration grace) {
  if (shut_down_) return;
  shut_down_ = true;
  shutting_down_.store(true);
  if (wake_write_.valid()) {
    char c = 1;
    (void)!::write(wake_write_.get(), &c, 1);
  }
  if (acceptor_.joinable()) acceptor_.join();
  listen_fd_.Reset();
  if (!unlink_path_.empty()) ::unlink(unlink_path_.c_str());
  std::list<std::shared_ptr<Connection>> conns;
  {
    std::unique_lock<std::mutex> lock(mu_);
    idle_cv_.wait_until(lock, absl::ToChronoTime(absl::Now() + grace),
                        [this] { return in_flight_ == 0; });
    conns.swap(conns_);
  }
  for (auto& c : conns) ::shutdown(c->fd.get(), SHUT_RDWR);
  for (auto& c : conns) {
    if (c->reader.joinable()) c->reader.join();  // the reader joins its workers
  }
}

}  // namespace berth::ttrpc
