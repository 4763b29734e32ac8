// SPDX-License-Identifier: Apache-2.0
#include "plugins/cri/streaming/tls.h"

#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "berth/unique_fd.hpp"

namespace berth::cri::streaming {
namespace {

constexpr size_t kBufferLimit = 256 * 1024;  // per direction
constexpr size_t kChunk = 16 * 1024;         // one TLS record

std::string OpenSslError() {
  std::string out;
  for (unsigned long e = ERR_get_error(); e != 0; e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "unknown OpenSSL error" : out;
}

void SetNonblocking(int fd, bool on) {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0) ::fcntl(fd, F_SETFL, on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK));
}

}  // namespace

absl::StatusOr<std::unique_ptr<TlsServerContext>> TlsServerContext::Load(
    const std::string& cert_file, const std::string& key_file) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == nullptr) return absl::InternalError("TLS context: " + OpenSslError());
  std::unique_ptr<TlsServerContext> out(new TlsServerContext(ctx));
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (SSL_CTX_use_certificate_chain_file(ctx, cert_file.c_str()) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("TLS certificate ", cert_file, ": ", OpenSslError()));
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("TLS key ", key_file, ": ", OpenSslError()));
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("TLS key ", key_file,
                                                   " does not match the certificate ", cert_file,
                                                   ": ", OpenSslError()));
  }
  return out;
}

TlsServerContext::~TlsServerContext() { SSL_CTX_free(ctx_); }

void TlsServerContext::Serve(int fd, const std::function<void(int plain_fd)>& handle,
                             absl::Duration handshake_timeout) {
  SSL* ssl = SSL_new(ctx_);
  if (ssl == nullptr) return;
  std::unique_ptr<SSL, decltype(&SSL_free)> owner(ssl, SSL_free);
  SSL_set_fd(ssl, fd);
  // The handshake, non-blocking with a deadline: a client that never speaks costs nothing.
  SetNonblocking(fd, true);
  const absl::Time deadline = absl::Now() + handshake_timeout;
  for (;;) {
    const int r = SSL_accept(ssl);
    if (r == 1) break;
    const int err = SSL_get_error(ssl, r);
    if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) {
      ERR_clear_error();
      return;
    }
    const int left = static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
    if (left <= 0) return;
    pollfd p{fd, static_cast<short>(err == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT), 0};
    if (::poll(&p, 1, left) <= 0) return;
  }
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) return;
  sdk::UniqueFd relay_end(pair[0]), handler_end(pair[1]);
  std::thread relay([&] { RelayTls(ssl, fd, relay_end.get()); });
  handle(handler_end.get());
  // The handler is done: the relay sees EOF, sends what is left and closes the TLS side.
  ::shutdown(handler_end.get(), SHUT_RDWR);
  relay.join();
}

void RelayTls(SSL* ssl, int tls_fd, int plain_fd) {
  SetNonblocking(tls_fd, true);
  SetNonblocking(plain_fd, true);
  std::string to_plain, to_tls;
  bool tls_eof = false, plain_eof = false, plain_shut = false, tls_shut = false;
  absl::Time shut_at;
  char chunk[kChunk];
  for (;;) {
    bool want_tls_in = false, want_tls_out = false, want_plain_in = false,
         want_plain_out = false;
    bool progress = false;
    // TLS -> plain.
    while (!tls_eof && to_plain.size() < kBufferLimit) {
      const int r = SSL_read(ssl, chunk, sizeof(chunk));
      if (r > 0) {
        to_plain.append(chunk, static_cast<size_t>(r));
        progress = true;
        continue;
      }
      const int err = SSL_get_error(ssl, r);
      if (err == SSL_ERROR_WANT_READ) {
        want_tls_in = true;
      } else if (err == SSL_ERROR_WANT_WRITE) {
        want_tls_out = true;
      } else {
        tls_eof = true;  // close_notify, EOF or an error
        ERR_clear_error();
      }
      break;
    }
    while (!to_plain.empty()) {
      const ssize_t n = ::send(plain_fd, to_plain.data(), to_plain.size(), MSG_NOSIGNAL);
      if (n > 0) {
        to_plain.erase(0, static_cast<size_t>(n));
        progress = true;
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) {
        want_plain_out = true;
      } else {
        to_plain.clear();  // the handler is gone
        plain_eof = true;
      }
      break;
    }
    if (tls_eof && to_plain.empty() && !plain_shut) {
      ::shutdown(plain_fd, SHUT_WR);  // the handler reads EOF
      plain_shut = true;
    }
    // Plain -> TLS.
    while (!plain_eof && to_tls.size() < kBufferLimit) {
      const ssize_t n = ::recv(plain_fd, chunk, sizeof(chunk), 0);
      if (n > 0) {
        to_tls.append(chunk, static_cast<size_t>(n));
        progress = true;
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) {
        want_plain_in = true;
      } else {
        plain_eof = true;
      }
      break;
    }
    while (!to_tls.empty() && !tls_shut) {
      const int r =
          SSL_write(ssl, to_tls.data(), static_cast<int>(std::min(to_tls.size(), kChunk)));
      if (r > 0) {
        to_tls.erase(0, static_cast<size_t>(r));
        progress = true;
        continue;
      }
      const int err = SSL_get_error(ssl, r);
      if (err == SSL_ERROR_WANT_WRITE) {
        want_tls_out = true;
      } else if (err == SSL_ERROR_WANT_READ) {
        want_tls_in = true;
      } else {
        to_tls.clear();  // the peer is gone
        tls_eof = true;
        ERR_clear_error();
      }
      break;
    }
    if (plain_eof && to_tls.empty() && !tls_shut) {
      (void)SSL_shutdown(ssl);  // close_notify; the peer's answer is not awaited
      ERR_clear_error();
      ::shutdown(tls_fd, SHUT_WR);
      tls_shut = true;
      shut_at = absl::Now();
    }
    // After our close, what the client still sends is read (so that close() sends no RST
    // over unread data) for a short while only.
    if (tls_shut && absl::Now() - shut_at > absl::Seconds(2)) return;
    if ((tls_eof && plain_shut) && (plain_eof && tls_shut)) return;
    if (tls_eof && plain_eof) return;
    if (progress) continue;
    std::array<pollfd, 2> p = {pollfd{tls_fd, 0, 0}, pollfd{plain_fd, 0, 0}};
    if (want_tls_in) p[0].events |= POLLIN;
    if (want_tls_out) p[0].events |= POLLOUT;
    if (want_plain_in) p[1].events |= POLLIN;
    if (want_plain_out) p[1].events |= POLLOUT;
    if (::poll(p.data(), p.size(), 1000) < 0 && errno != EINTR) return;
    if ((p[0].revents & (POLLERR | POLLNVAL)) != 0) {
      tls_eof = true;
      ::shutdown(plain_fd, SHUT_RDWR);  // the handler must not wait for a dead client
      return;
    }
  }
}

}  // namespace berth::cri::streaming
