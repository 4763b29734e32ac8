// SPDX-License-Identifier: Apache-2.0
#include "plugins/cri/streaming/token_cache.h"

#include <sys/random.h>

#include "absl/strings/escaping.h"

namespace berth::cri::streaming {

std::string NewToken() {
  unsigned char bytes[6];
  size_t got = 0;
  while (got < sizeof(bytes)) {
    ssize_t n = ::getrandom(bytes + got, sizeof(bytes) - got, 0);
    if (n > 0) got += static_cast<size_t>(n);
  }
  std::string out;
  absl::WebSafeBase64Escape(std::string(reinterpret_cast<char*>(bytes), sizeof(bytes)), &out);
  return out;  // 6 bytes: 8 characters, no padding
}

TokenCache::TokenCache(size_t max, absl::Duration ttl, Clock clock)
    : max_(max), ttl_(ttl), clock_(std::move(clock)) {}

void TokenCache::DropExpired(absl::Time now) {
  for (auto it = entries_.begin(); it != entries_.end();) {
    it = it->second.expires <= now ? entries_.erase(it) : std::next(it);
  }
}

absl::StatusOr<std::string> TokenCache::Insert(const std::string& kind, std::string payload) {
  const absl::Time now = clock_();
  std::lock_guard<std::mutex> lock(mu_);
  DropExpired(now);
  if (entries_.size() >= max_) {
    return absl::ResourceExhaustedError(
        "maximum number of in-flight streaming requests exceeded (" + std::to_string(max_) +
        " tokens are outstanding; they expire after a minute)");
  }
  std::string token;
  do {
    token = NewToken();
  } while (entries_.count(token) != 0);
  entries_[token] = Entry{kind, std::move(payload), now + ttl_};
  return token;
}

std::optional<std::string> TokenCache::Consume(const std::string& kind,
                                               const std::string& token) {
  const absl::Time now = clock_();
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(token);
  if (it == entries_.end()) return std::nullopt;
  Entry e = std::move(it->second);
  entries_.erase(it);
  if (e.expires <= now || e.kind != kind) return std::nullopt;
  return std::move(e.payload);
}

size_t TokenCache::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return entries_.size();
}

}  // namespace berth::cri::streaming
