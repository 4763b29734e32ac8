// SPDX-License-Identifier: Apache-2.0
// Loads a built plugin (.so) through its C entry point, as berthd does, with a minimal host
// table of the test's own: the configuration subtree, root and state directories, and a log
// kept in memory. For tests of a plugin's C table (configuration checks, the thunks).
#pragma once

#include <dlfcn.h>

#include <string>

#include "berth/plugin.hpp"
#include "gtest/gtest.h"

namespace berth::testing {

struct FakeHostCtx {
  std::string config_json;
  std::string root_dir, state_dir;
  std::string log;
  // get_section("runtimes"); empty: NOT_FOUND, as for every other section.
  std::string runtimes_json;
};

inline FakeHostCtx* HostCtx(berth_host_ctx* ctx) { return reinterpret_cast<FakeHostCtx*>(ctx); }

inline berth_host MakeFakeHost(FakeHostCtx* ctx) {
  berth_host h{};
  h.struct_size = sizeof(h);
  h.abi_major = BERTH_ABI_MAJOR;
  h.abi_minor = BERTH_ABI_MINOR;
  h.ctx = reinterpret_cast<berth_host_ctx*>(ctx);
  h.log = [](berth_host_ctx* c, int32_t, const char* msg, size_t len) {
    HostCtx(c)->log.append(msg, len).append("\n");
  };
  h.log_level = [](berth_host_ctx*) -> int32_t { return BERTH_LOG_DEBUG; };
  h.get_config = [](berth_host_ctx* c, berth_sink* out, berth_sink*) -> int32_t {
    sdk::Write(out, HostCtx(c)->config_json);
    return BERTH_OK;
  };
  h.get_section = [](berth_host_ctx* c, const char* name, berth_sink* out,
                     berth_sink* err) -> int32_t {
    if (std::string(name) == "runtimes" && !HostCtx(c)->runtimes_json.empty()) {
      sdk::Write(out, HostCtx(c)->runtimes_json);
      return BERTH_OK;
    }
    sdk::Write(err, std::string("no section \"") + name + "\" in this test's host");
    return BERTH_NOT_FOUND;
  };
  h.config_where = [](berth_host_ctx*, const char* key, berth_sink* out) {
    sdk::Write(out, std::string("config.yaml:9 (") + key + ")");
  };
  h.root_dir = [](berth_host_ctx* c) -> berth_str { return sdk::Str(HostCtx(c)->root_dir); };
  h.state_dir = [](berth_host_ctx* c) -> berth_str { return sdk::Str(HostCtx(c)->state_dir); };
  return h;
}

// One plugin of kind table type `Table`, loaded from `path`; the instance is shut down at
// the end (plugins are never unloaded, STYLE.md; nor is the library here).
template <typename Table>
class LoadedPlugin {
 public:
  // Loads and checks id and kind (gtest assertions).
  void Load(const char* path, const char* id, const char* kind) {
    lib_ = ::dlopen(path, RTLD_NOW | RTLD_LOCAL);
    ASSERT_NE(lib_, nullptr) << ::dlerror();
    auto entry = reinterpret_cast<berth_plugin_entry_fn>(::dlsym(lib_, "berth_plugin_entry"));
    ASSERT_NE(entry, nullptr);
    desc_ = entry();
    ASSERT_STREQ(desc_->id, id);
    ASSERT_STREQ(desc_->kind, kind);
  }
  ~LoadedPlugin() {
    if (instance_ != nullptr) desc_->shutdown(instance_);
  }
  // Initialises the plugin with `config`; the code, and the message in *err. On success
  // table() is the interface `iface`.
  int32_t Init(const std::string& config, const char* iface, std::string* err) {
    ctx.config_json = config;
    host_ = MakeFakeHost(&ctx);
    sdk::StringSink e;
    int32_t code = desc_->init(&host_, &instance_, e.get());
    *err = e.take();
    if (code == BERTH_OK) {
      table_ = static_cast<const Table*>(desc_->get_interface(instance_, iface));
    }
    return code;
  }
  const berth_plugin_descriptor* desc() const { return desc_; }
  const Table* table() const { return table_; }
  void* instance() const { return instance_; }

  FakeHostCtx ctx;

 private:
  void* lib_ = nullptr;
  const berth_plugin_descriptor* desc_ = nullptr;
  berth_host host_{};
  void* instance_ = nullptr;
  const Table* table_ = nullptr;
};

}  // namespace berth::testing
