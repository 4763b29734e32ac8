// SPDX-License-Identifier: Apache-2.0
// A ttrpc client over one unix socket connection. Thread-safe: many threads may call at
// once; requests are multiplexed on odd stream ids and a reader thread hands each response
// to its caller. Deadlines are sent as Request.timeout_nano and enforced locally. When the
// connection drops, every pending and later call fails with UNAVAILABLE.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "berth/unique_fd.hpp"

namespace berth::ttrpc {

class Client {
 public:
  // Connects to "path", "unix://path" or "@abstract", retrying while the socket does not
  // exist yet or refuses connections, until `timeout` has passed.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Client>> Connect(std::string_view address,
                                                                       absl::Duration timeout);
  // Wraps an already connected stream socket.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Client>> FromFd(sdk::UniqueFd fd,
                                                                      std::string name);

  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;
  ~Client();  // Close()

  // One unary call with a serialized payload; returns the serialized response payload or
  // the server's status (code and message). absl::InfiniteFuture() means no deadline.
  [[nodiscard]] absl::StatusOr<std::string> CallRaw(std::string_view service,
                                                    std::string_view method, std::string payload,
                                                    absl::Time deadline);

  // Sends a call with no deadline and returns at once. `done` runs exactly once with the
  // response payload or the error: on the connection's reader thread (or on the caller's
  // when sending fails). It must return quickly and never call this client synchronously —
  // hand the work to another thread. What a follower of long calls (Task/Wait) uses instead
  // of a thread per call.
  using Callback = std::function<void(absl::StatusOr<std::string>)>;
  void CallRawAsync(std::string_view service, std::string_view method, std::string payload,
                    Callback done);

  // Typed helper for protobuf (lite) messages.
  template <typename Req, typename Resp>
  [[nodiscard]] absl::StatusOr<Resp> Call(std::string_view service, std::string_view method,
                                          const Req& request, absl::Time deadline) {
    std::string payload;
    if (!request.SerializeToString(&payload)) {
      return absl::InvalidArgumentError(absl::StrCat("serializing the request of ",
                                                     std::string(service), "/", std::string(method),
                                                     " failed"));
    }
    absl::StatusOr<std::string> raw = CallRaw(service, method, std::move(payload), deadline);
    if (!raw.ok()) return raw.status();
    Resp response;
    if (!response.ParseFromString(*raw)) {
      return absl::InternalError(absl::StrCat("malformed response payload from ",
                                              std::string(service), "/", std::string(method), " (",
                                              raw->size(), " bytes)"));
    }
    return response;
  }

  // Closes the connection, fails pending calls with UNAVAILABLE, joins the reader.
  void Close();
  // False once the connection has dropped or been closed.
  [[nodiscard]] bool connected() const;

 private:
  struct Pending {
    bool done = false;
    absl::StatusOr<std::string> result;
    std::condition_variable cv;
    Callback callback;  // asynchronous calls
  };
  // Sends the request frame of a registered pending call (stream id in *stream_id).
  absl::Status Send(std::string_view service, std::string_view method, std::string payload,
                    absl::Time deadline, const std::shared_ptr<Pending>& pending,
                    std::uint32_t* stream_id);

  Client(sdk::UniqueFd fd, std::string name);
  void ReadLoop();
  void FailAll(const absl::Status& status);

  const std::string name_;
  sdk::UniqueFd fd_;
  std::mutex write_mu_;  // one frame at a time on the socket
  mutable std::mutex mu_;
  std::uint32_t next_stream_id_ = 1;                           // guarded by mu_
  std::map<std::uint32_t, std::shared_ptr<Pending>> pending_;  // guarded by mu_
  absl::Status closed_;  // guarded by mu_; non-OK once the connection is gone
  std::once_flag close_once_;
  std::thread reader_;
};

}  // namespace berth::ttrpc
