// SPDX-License-Identifier: Apache-2.0
// A ttrpc server on a unix socket. Handlers are registered per "service/method" before
// Start(); each request runs on its own thread, so one connection may carry many
// concurrent calls. An unknown service or method is answered with UNIMPLEMENTED, as the Go
// ttrpc server does. Streaming requests (ttrpc 1.2) are refused with UNIMPLEMENTED.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "berth/unique_fd.hpp"

namespace berth::ttrpc {

struct CallContext {
  std::string service;
  std::string method;
  absl::Time deadline = absl::InfiniteFuture();  // from Request.timeout_nano
  std::vector<std::pair<std::string, std::string>> metadata;
};

// Serialized request payload in, serialized response payload or an error status out.
using Handler = std::function<absl::StatusOr<std::string>(const std::string& payload,
                                                          const CallContext& context)>;

class Server {
 public:
  Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;
  ~Server();  // Shutdown(absl::ZeroDuration())

  // Registers a handler; replaces an earlier one for the same service/method. Call before
  // Start().
  void Register(std::string_view service, std::string_view method, Handler handler);

  // Binds and listens on a path ("path", "unix://path" or "@abstract"). An existing socket
  // file at the path is replaced; the file is removed again by Shutdown().
  [[nodiscard]] absl::Status Listen(std::string_view address);
  // Uses an inherited listening socket (for example a shim's socket passed by its parent).
  [[nodiscard]] absl::Status ListenFd(sdk::UniqueFd fd);
  // Starts the accept thread.
  [[nodiscard]] absl::Status Start();

  // Stops accepting, waits up to `grace` for in-flight requests, then closes every
  // connection and joins all threads, which waits for running handlers to return (they
  // are not cancelled; they can watch CallContext::deadline). Idempotent; call from one
  // thread at a time.
  void Shutdown(absl::Duration grace);

 private:
  struct Connection;

  void AcceptLoop();
  void Serve(std::shared_ptr<Connection> conn);
  void Dispatch(std::shared_ptr<Connection> conn, std::uint32_t stream_id, std::string data);

  std::map<std::string, Handler> handlers_;  // "service/method"
  sdk::UniqueFd listen_fd_;
  sdk::UniqueFd wake_read_;
  sdk::UniqueFd wake_write_;
  std::string unlink_path_;
  std::thread acceptor_;
  std::atomic<bool> shutting_down_{false};
  bool started_ = false;
  bool shut_down_ = false;

  std::mutex mu_;
  std::condition_variable idle_cv_;
  int in_flight_ = 0;                             // guarded by mu_
  std::list<std::shared_ptr<Connection>> conns_;  // guarded by mu_
};

}  // namespace berth::ttrpc
