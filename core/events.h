// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace berth::core {

// In-process publish/subscribe by topic prefix. Callbacks run on the publisher's thread.
// Unsubscribe waits for a call of that subscription in flight on another thread, so after
// it returns the callback never runs again (it may be called from the callback itself).
class EventBus {
 public:
  using Callback = std::function<void(std::string_view topic, std::string_view payload)>;
  uint64_t Subscribe(std::string prefix, Callback cb);
  void Unsubscribe(uint64_t id);
  void Publish(std::string_view topic, std::string_view payload);

 private:
  struct Sub {
    uint64_t id;
    std::string prefix;
    Callback cb;
    std::recursive_mutex call_mu;  // held while cb runs
    bool active = true;
  };
  std::mutex mu_;
  uint64_t next_id_ = 1;
  std::vector<std::shared_ptr<Sub>> subs_;
};

}  // namespace berth::core
