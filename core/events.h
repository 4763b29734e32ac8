// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace berth::core {

// In-process publish/subscribe by topic prefix. Callbacks run on the publisher's thread.
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
  };
  std::mutex mu_;
  uint64_t next_id_ = 1;
  std::vector<Sub> subs_;
};

}  // namespace berth::core
