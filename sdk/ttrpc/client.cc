// SPDX-License-Identifier: Apache-2.0
#include "berth/ttrpc/client.h"

#include <errno.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <utility>
#include <vector>

#include "berth/ttrpc/frame.h"
#include "io.h"
#include "shim/ttrpc/request.pb.h"

namespace berth::ttrpc {

absl::StatusOr<std::unique_ptr<Client>> Client::Connect(std::string_view address,
                                                        absl::Duration timeout) {
  sockaddr_un sun;
  socklen_t len = 0;
  if (absl::Status s = internal::MakeUnixAddress(address, &sun, &len); !s.ok()) return s;
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    sdk::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd.valid()) return internal::ErrnoToStatus(errno, "ttrpc socket()");
    int rc;
    do {
      rc = ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&sun), len);
    } while (rc < 0 && errno == EINTR);
    if (rc == 0) return FromFd(std::move(fd), std::string(address));
    const int err = errno;
    const bool retry = err == ENOENT || err == ECONNREFUSED || err == EAGAIN;
    if (!retry || absl::Now() >= deadline) {
      absl::Status s =
          internal::ErrnoToStatus(err, absl::StrCat("ttrpc connect to ", std::string(address)));
      if (retry) {
        return absl::DeadlineExceededError(absl::StrCat(s.message(), " (gave up after ",
                                                        absl::FormatDuration(timeout),
                                                        "; is the server running?)"));
      }
      return s;
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
}

absl::StatusOr<std::unique_ptr<Client>> Client::FromFd(sdk::UniqueFd fd, std::string name) {
  if (!fd.valid()) return absl::InvalidArgumentError("ttrpc client: invalid fd");
  std::unique_ptr<Client> c(new Client(std::move(fd), std::move(name)));
  c->reader_ = std::thread([p = c.get()] { p->ReadLoop(); });
  return c;
}

Client::Client(sdk::UniqueFd fd, std::string name) : name_(std::move(name)), fd_(std::move(fd)) {}

Client::~Client() { Close(); }

void Client::Close() {
  std::call_once(close_once_, [this] {
    ::shutdown(fd_.get(), SHUT_RDWR);  // wakes the reader with EOF
    if (reader_.joinable()) reader_.join();
    FailAll(absl::UnavailableError(absl::StrCat("ttrpc client to ", name_, " closed")));
  });
}

bool Client::connected() const {
  std::lock_guard<std::mutex> lock(mu_);
  return closed_.ok();
}

void Client::FailAll(const absl::Status& status) {
  std::vector<Callback> callbacks;
  absl::Status why;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_.ok()) closed_ = status;
    why = closed_;
    for (auto& [id, p] : pending_) {
      p->done = true;
      p->result = closed_;
      if (p->callback) {
        callbacks.push_back(std::move(p->callback));
        p->callback = nullptr;
      } else {
        p->cv.notify_all();
      }
    }
    pending_.clear();
  }
  for (Callback& cb : callbacks) cb(why);  // outside the lock: they may post work
}

void Client::ReadLoop() {
  while (true) {
    FrameHeader skipped;
    absl::StatusOr<Frame> frame = ReadFrame(fd_.get(), &skipped);
    std::uint32_t stream_id;
    absl::StatusOr<std::string> result;
    if (!frame.ok()) {
      if (frame.status().code() != absl::StatusCode::kResourceExhausted) {
        FailAll(absl::UnavailableError(
            absl::StrCat("ttrpc connection to ", name_, " lost: ", frame.status().message())));
        return;
      }
      stream_id = skipped.stream_id;  // oversized response: fail only that call
      result = frame.status();
    } else {
      if (frame->type != kTypeResponse) continue;  // Data frames: streams are unsupported
      stream_id = frame->stream_id;
      ::ttrpc::Response response;
      if (!response.ParseFromString(frame->data)) {
        result = absl::InternalError(
            absl::StrCat("malformed ttrpc Response from ", name_, " on stream ", stream_id));
      } else if (response.has_status() && response.status().code() != 0) {
        result = absl::Status(static_cast<absl::StatusCode>(response.status().code()),
                              response.status().message());
      } else {
        result = std::move(*response.mutable_payload());
      }
    }
    Callback callback;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = pending_.find(stream_id);
      if (it == pending_.end()) continue;  // the caller gave up (deadline)
      std::shared_ptr<Pending> p = std::move(it->second);
      pending_.erase(it);
      p->done = true;
      if (p->callback) {
        callback = std::move(p->callback);
        p->callback = nullptr;
      } else {
        p->result = std::move(result);
        p->cv.notify_all();
      }
    }
    if (callback) callback(std::move(result));  // outside the lock: it may post work
  }
}

absl::Status Client::Send(std::string_view service, std::string_view method, std::string payload,
                          absl::Time deadline, const std::shared_ptr<Pending>& pending,
                          std::uint32_t* stream_id) {
  ::ttrpc::Request request;
  request.set_service(std::string(service));
  request.set_method(std::string(method));
  request.set_payload(std::move(payload));
  const absl::Time now = absl::Now();
  if (deadline != absl::InfiniteFuture()) {
    if (deadline <= now) {
      return absl::DeadlineExceededError(absl::StrCat("ttrpc call ", std::string(service), "/",
                                                      std::string(method),
                                                      ": deadline already passed"));
    }
    request.set_timeout_nano(absl::ToInt64Nanoseconds(deadline - now));
  }
  Frame frame{0, kTypeRequest, 0, {}};
  if (!request.SerializeToString(&frame.data)) {
    return absl::InternalError("serializing a ttrpc Request failed");
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!closed_.ok()) return closed_;
    frame.stream_id = next_stream_id_;
    next_stream_id_ += 2;
    pending_.emplace(frame.stream_id, pending);
  }
  *stream_id = frame.stream_id;
  absl::Status written;
  {
    std::lock_guard<std::mutex> lock(write_mu_);
    written = WriteFrame(fd_.get(), frame);
  }
  if (!written.ok() && !absl::IsResourceExhausted(written)) {  // too large: nothing was sent
    // The peer is gone (EPIPE, ECONNRESET) or a frame went out in part: the connection is
    // unusable from now on, whether or not the reader has seen its end yet.
    absl::Status lost = absl::UnavailableError(
        absl::StrCat("ttrpc connection to ", name_, " lost: ", written.message()));
    FailAll(lost);
    return lost;
  }
  return written;
}

void Client::CallRawAsync(std::string_view service, std::string_view method, std::string payload,
                          Callback done) {
  auto pending = std::make_shared<Pending>();
  pending->callback = std::move(done);
  std::uint32_t id = 0;
  absl::Status sent = Send(service, method, std::move(payload), absl::InfiniteFuture(), pending,
                           &id);
  if (sent.ok()) return;
  Callback callback;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (id != 0) pending_.erase(id);
    // The reader (or FailAll) may have completed it meanwhile: then it already ran.
    if (pending->callback) {
      callback = std::move(pending->callback);
      pending->callback = nullptr;
    }
  }
  if (callback) callback(std::move(sent));
}

absl::StatusOr<std::string> Client::CallRaw(std::string_view service, std::string_view method,
                                            std::string payload, absl::Time deadline) {
  const absl::Time now = absl::Now();
  auto pending = std::make_shared<Pending>();
  std::uint32_t id = 0;
  absl::Status written = Send(service, method, std::move(payload), deadline, pending, &id);
  std::unique_lock<std::mutex> lock(mu_);
  if (!written.ok()) {
    if (id != 0) pending_.erase(id);
    if (pending->done) return pending->result;
    return written;
  }
  if (deadline == absl::InfiniteFuture()) {
    pending->cv.wait(lock, [&] { return pending->done; });
  } else if (!pending->cv.wait_until(lock, absl::ToChronoTime(deadline),
                                     [&] { return pending->done; })) {
    pending_.erase(id);
    return absl::DeadlineExceededError(
        absl::StrCat("ttrpc call ", std::string(service), "/", std::string(method), " to ", name_,
                     " timed out after ", absl::FormatDuration(deadline - now)));
  }
  return std::move(pending->result);
}

}  // namespace berth::ttrpc
