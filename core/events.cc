// SPDX-License-Identifier: Apache-2.0
#include "core/events.h"

#include <algorithm>

namespace berth::core {

uint64_t EventBus::Subscribe(std::string prefix, Callback cb) {
  auto sub = std::make_shared<Sub>();
  sub->prefix = std::move(prefix);
  sub->cb = std::move(cb);
  std::lock_guard<std::mutex> lock(mu_);
  sub->id = next_id_++;
  subs_.push_back(sub);
  return sub->id;
}

void EventBus::Unsubscribe(uint64_t id) {
  std::shared_ptr<Sub> gone;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = subs_.begin(); it != subs_.end(); ++it) {
      if ((*it)->id == id) {
        gone = *it;
        subs_.erase(it);
        break;
      }
    }
  }
  if (!gone) return;
  std::lock_guard<std::recursive_mutex> wait(gone->call_mu);
  gone->active = false;
}

void EventBus::Publish(std::string_view topic, std::string_view payload) {
  std::vector<std::shared_ptr<Sub>> targets;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& s : subs_) {
      if (topic.substr(0, s->prefix.size()) == s->prefix) targets.push_back(s);
    }
  }
  for (const auto& s : targets) {
    std::lock_guard<std::recursive_mutex> call(s->call_mu);
    if (s->active) s->cb(topic, payload);
  }
}

}  // namespace berth::core
