// SPDX-License-Identifier: Apache-2.0
// A TCP echo server on 127.0.0.1 for the streaming tests: what the fake port-forward backends
// dial as "the pod". One thread per connection; the destructor shuts every connection down
// and joins.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "berth/unique_fd.hpp"
#include "gtest/gtest.h"

namespace berth::cri::streaming::testing {

class EchoServer {
 public:
  EchoServer() {
    listener_.Reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    EXPECT_EQ(::bind(listener_.get(), reinterpret_cast<sockaddr*>(&a), len), 0);
    EXPECT_EQ(::listen(listener_.get(), 16), 0);
    EXPECT_EQ(::getsockname(listener_.get(), reinterpret_cast<sockaddr*>(&a), &len), 0);
    port_ = ntohs(a.sin_port);
    acceptor_ = std::thread([this] {
      while (!stop_) {
        pollfd p{listener_.get(), POLLIN, 0};
        if (::poll(&p, 1, 50) <= 0) continue;
        const int fd = ::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0) continue;
        accepted_++;
        std::lock_guard<std::mutex> lock(mu_);
        conns_.insert(fd);
        workers_.emplace_back([this, fd] {
          char buffer[8192];
          ssize_t n;
          while ((n = ::read(fd, buffer, sizeof(buffer))) > 0) {
            if (::send(fd, buffer, static_cast<size_t>(n), MSG_NOSIGNAL) != n) break;
          }
          std::lock_guard<std::mutex> l(mu_);
          conns_.erase(fd);
          ::close(fd);
        });
      }
    });
  }
  ~EchoServer() {
    stop_ = true;
    acceptor_.join();
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (int fd : conns_) ::shutdown(fd, SHUT_RDWR);
    }
    for (std::thread& t : workers_) t.join();
  }
  EchoServer(const EchoServer&) = delete;
  EchoServer& operator=(const EchoServer&) = delete;

  int port() const { return port_; }
  // Connections accepted so far / still open.
  int accepted() const { return accepted_; }
  size_t open_connections() {
    std::lock_guard<std::mutex> lock(mu_);
    return conns_.size();
  }

 private:
  sdk::UniqueFd listener_;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> accepted_{0};
  std::thread acceptor_;
  std::mutex mu_;
  std::set<int> conns_;  // open connections, closed by their workers
  std::vector<std::thread> workers_;
};

}  // namespace berth::cri::streaming::testing
