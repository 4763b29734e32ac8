// SPDX-License-Identifier: Apache-2.0
// The streaming server's tokens: each Exec, Attach or PortForward RPC stores its request
// under a new token that its URL carries. Tokens are 8 characters of unpadded base64url (6
// random bytes from getrandom(2)), valid for a minute, used once: the first lookup removes
// the token whatever it finds, also when the kind does not match. At most `max` tokens are
// outstanding (RESOURCE_EXHAUSTED beyond, as the upstream library).
#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace berth::cri::streaming {

class TokenCache {
 public:
  using Clock = std::function<absl::Time()>;
  explicit TokenCache(size_t max = 1000, absl::Duration ttl = absl::Minutes(1),
                      Clock clock = [] { return absl::Now(); });

  // Stores `payload` (a serialized request) of `kind` ("exec", "attach", "portforward").
  [[nodiscard]] absl::StatusOr<std::string> Insert(const std::string& kind, std::string payload);
  // The payload of a live token of `kind`; nullopt when the token is unknown, expired, used,
  // or of another kind. The token is gone afterwards in every case.
  [[nodiscard]] std::optional<std::string> Consume(const std::string& kind,
                                                   const std::string& token);
  size_t size() const;

 private:
  struct Entry {
    std::string kind, payload;
    absl::Time expires;
  };
  void DropExpired(absl::Time now);

  const size_t max_;
  const absl::Duration ttl_;
  const Clock clock_;
  mutable std::mutex mu_;
  std::map<std::string, Entry> entries_;
};

// 8 characters of unpadded base64url from 6 random bytes.
[[nodiscard]] std::string NewToken();

}  // namespace berth::cri::streaming
