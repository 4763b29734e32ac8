// SPDX-License-Identifier: Apache-2.0
#include "core/events.h"

#include <algorithm>

namespace berth::core {

uint64_t EventBus::Subscribe(std::string prefix, Callback cb) {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t id = next_id_++;
  subs_.push_back(Sub{id, std::move(prefix), std::move(cb)});
  return id;
}

void EventBus::Unsubscribe(uint64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  std::erase_if(subs_, [id](const Sub& s) { return s.id == id; });
}

void EventBus::Publish(std::string_view topic, std::string_view payload) {
  std::vector<Callback> targets;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const Sub& s : subs_) {
      if (topic.substr(0, s.prefix.size()) == s.prefix) targets.push_back(s.cb);
    }
  }
  for (const Callback& cb : targets) cb(topic, payload);
}

}  // namespace berth::core
