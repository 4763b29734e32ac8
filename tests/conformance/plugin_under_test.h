// SPDX-License-Identifier: Apache-2.0
//
// A snapshotter plugin file loaded as berthd loads it: the real registry and host table over
// a real store (<dir>/meta.db), root and state directories under <dir>, an event bus.
// Destroying it shuts the plugin down. For the conformance suite and each snapshotter's own
// tests.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "core/host.h"
#include "core/registry.h"
#include "core/store.h"
#include "tests/conformance/snapshotter_conformance.h"

namespace berth::conformance {

class PluginUnderTest : public SnapshotterUnderTest {
 public:
  // Loads `file`, starts plugin `id` from it with its state under `dir`.
  static std::unique_ptr<SnapshotterUnderTest> Start(const char* file, const char* id,
                                                     const std::filesystem::path& dir,
                                                     std::string* error) {
    std::unique_ptr<PluginUnderTest> o(new PluginUnderTest());
    std::error_code ec;
    std::filesystem::create_directories(dir / "root", ec);
    std::filesystem::create_directories(dir / "state", ec);
    auto store = core::Store::Open(dir / "meta.db");
    if (!store.ok()) {
      *error = std::string(store.status().message());
      return nullptr;
    }
    o->store_ = std::move(*store);
    o->services_.config.root = dir / "root";
    o->services_.config.state = dir / "state";
    o->services_.store = o->store_.get();
    o->services_.events = &o->events_;
    o->services_.registry = &o->registry_;
    absl::Status s = o->registry_.LoadFile(file);
    if (!s.ok()) {
      *error = std::string(s.message());
      return nullptr;
    }
    auto order = o->registry_.Resolve(
        {id}, [](std::string_view p) { return "test:1 (" + std::string(p) + ")"; });
    if (!order.ok()) {
      *error = std::string(order.status().message());
      return nullptr;
    }
    core::HostServices* services = &o->services_;
    s = o->registry_.Start(
        *order, [services](core::Plugin* p) { return core::MakeHostContext(p, services); },
        &core::HostTableOf);
    if (!s.ok()) {
      *error = std::string(s.message());
      return nullptr;
    }
    o->plugin_ = o->registry_.Find(id);
    if (o->plugin_ == nullptr || o->plugin_->state != core::PluginState::kRunning) {
      *error = "the plugin is not running" +
               (o->plugin_ != nullptr ? ": " + o->plugin_->reason : std::string());
      return nullptr;
    }
    o->table_ =
        static_cast<const berth_snapshotter_v1*>(o->plugin_->Interface(BERTH_IFACE_SNAPSHOTTER_V1));
    if (o->table_ == nullptr) {
      *error = "the plugin offers no " BERTH_IFACE_SNAPSHOTTER_V1;
      return nullptr;
    }
    return o;
  }
  ~PluginUnderTest() override { registry_.Stop(); }
  const berth_snapshotter_v1* table() const override { return table_; }
  void* instance() const override { return plugin_->instance; }

 private:
  PluginUnderTest() = default;
  std::unique_ptr<core::Store> store_;
  core::EventBus events_;
  core::HostServices services_;
  core::Registry registry_;
  core::Plugin* plugin_ = nullptr;
  const berth_snapshotter_v1* table_ = nullptr;
};

}  // namespace berth::conformance
