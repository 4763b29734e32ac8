// SPDX-License-Identifier: Apache-2.0
#include "core/host.h"

#include <sys/stat.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "berth/plugin.hpp"
#include "core/log.h"
#include "nlohmann/json.hpp"

struct berth_host_ctx {
  berth::core::Plugin* plugin;
  berth::core::HostServices* services;
  std::string root_dir, state_dir;
  std::shared_ptr<spdlog::logger> logger;
  berth_host table;
};

struct berth_txn {
  std::string plugin_id;
  std::unique_ptr<berth::core::Store::Txn> txn;
};

namespace berth::core {
namespace {

using berth::sdk::Write;

int32_t Fail(berth_sink* err, const absl::Status& s) {
  Write(err, std::string(s.message()));
  return static_cast<int32_t>(s.code());
}

std::string Bucket(const berth_txn* txn, const char* bucket) {
  return absl::StrCat(txn->plugin_id, "/", bucket == nullptr ? "" : bucket);
}

spdlog::level::level_enum ToSpd(int32_t level) {
  switch (level) {
    case BERTH_LOG_TRACE: return spdlog::level::trace;
    case BERTH_LOG_DEBUG: return spdlog::level::debug;
    case BERTH_LOG_INFO: return spdlog::level::info;
    case BERTH_LOG_WARN: return spdlog::level::warn;
    default: return spdlog::level::err;
  }
}

int32_t FromSpd(spdlog::level::level_enum level) {
  switch (level) {
    case spdlog::level::trace: return BERTH_LOG_TRACE;
    case spdlog::level::debug: return BERTH_LOG_DEBUG;
    case spdlog::level::info: return BERTH_LOG_INFO;
    case spdlog::level::warn: return BERTH_LOG_WARN;
    default: return BERTH_LOG_ERROR;
  }
}

void Log(berth_host_ctx* ctx, int32_t level, const char* msg, size_t len) {
  ctx->logger->log(ToSpd(level), "{}", std::string_view(msg, len));
}

int32_t HostLogLevel(berth_host_ctx*) { return FromSpd(CurrentLogLevel()); }

int32_t GetConfig(berth_host_ctx* ctx, berth_sink* out, berth_sink*) {
  std::lock_guard<std::mutex> lock(ctx->services->config_mu);
  auto it = ctx->services->config.plugins.find(ctx->plugin->id);
  Write(out, it == ctx->services->config.plugins.end() ? "{}" : it->second.config.dump());
  return BERTH_OK;
}

int32_t GetSection(berth_host_ctx* ctx, const char* name, berth_sink* out, berth_sink* err) {
  std::lock_guard<std::mutex> lock(ctx->services->config_mu);
  const Config& c = ctx->services->config;
  std::string_view n = name == nullptr ? "" : name;
  nlohmann::json j;
  if (n == "daemon") {
    j = {{"root", c.root.string()},         {"state", c.state.string()},
         {"socket", c.socket.string()},     {"log_level", std::string(LogLevelName(c.log_level))},
         {"config_file", c.file},           {"version", ctx->services->version}};
  } else if (n == "runtimes") {
    nlohmann::json handlers = nlohmann::json::object();
    for (const auto& [hname, entry] : c.runtimes) {
      handlers[hname] = {{"plugin", entry.plugin}, {"options", entry.options}};
      if (!entry.snapshotter.empty()) handlers[hname]["snapshotter"] = entry.snapshotter;
      if (!entry.cni_conf_dir.empty()) handlers[hname]["cni_conf_dir"] = entry.cni_conf_dir;
    }
    j = {{"default_runtime", c.default_runtime}, {"handlers", handlers}};
  } else {
    Write(err, absl::StrCat("unknown configuration section \"", std::string(n),
                            "\" (known: daemon, runtimes)"));
    return BERTH_NOT_FOUND;
  }
  Write(out, j.dump());
  return BERTH_OK;
}

void ConfigWhere(berth_host_ctx* ctx, const char* key_path, berth_sink* out) {
  std::lock_guard<std::mutex> lock(ctx->services->config_mu);
  std::string path = absl::StrCat("plugins.", ctx->plugin->id);
  if (key_path != nullptr && key_path[0] == '/') {
    path = key_path + 1;
  } else if (key_path != nullptr && *key_path != '\0') {
    absl::StrAppend(&path, ".", key_path);
  }
  Write(out, ctx->services->config.Where(path));
}

berth_str RootDir(berth_host_ctx* ctx) { return {ctx->root_dir.c_str(), ctx->root_dir.size()}; }
berth_str StateDir(berth_host_ctx* ctx) {
  return {ctx->state_dir.c_str(), ctx->state_dir.size()};
}

const void* FindIface(Plugin* p, const char* iface) {
  if (p->state != PluginState::kRunning) return nullptr;
  return p->Interface(iface);
}

int32_t Lookup(berth_host_ctx* ctx, const char* iface, const char* plugin_id,
               berth_iface_ref* out, berth_sink* err) {
  if (iface == nullptr || out == nullptr) {
    Write(err, "lookup: iface and out are required");
    return BERTH_INVALID_ARGUMENT;
  }
  // Without an id: the first running plugin in start order; with one: that plugin,
  // whatever its state, so the error can say why it is not usable.
  std::vector<Plugin*> candidates = ctx->services->registry->started();
  if (plugin_id != nullptr) {
    candidates.clear();
    for (const auto& p : ctx->services->registry->plugins()) candidates.push_back(p.get());
  }
  for (Plugin* p : candidates) {
    if (plugin_id != nullptr && p->id != plugin_id) continue;
    if (p->state == PluginState::kRefused && plugin_id == nullptr) continue;
    const void* table = FindIface(p, iface);
    if (table == nullptr) {
      if (plugin_id == nullptr) continue;
      if (p->state != PluginState::kRunning) {
        Write(err, absl::StrCat("plugin ", p->id, " is ", std::string(PluginStateName(p->state)),
                                p->reason.empty() ? "" : ": ", p->reason));
        return BERTH_FAILED_PRECONDITION;
      }
      Write(err, absl::StrCat("plugin ", p->id, " does not offer interface ", iface));
      return BERTH_NOT_FOUND;
    }
    // Callers built against an older SDK pass a smaller ref: fill what they have.
    berth_iface_ref ref{sizeof(berth_iface_ref), p->id.c_str(), table, p->instance};
    uint32_t size = out->struct_size == 0 ? sizeof(ref) : out->struct_size;
    std::memcpy(out, &ref, std::min<size_t>(size, sizeof(ref)));
    out->struct_size = size;
    return BERTH_OK;
  }
  Write(err, plugin_id == nullptr
                 ? absl::StrCat("no running plugin offers interface ", iface)
                 : absl::StrCat("no plugin with id ", plugin_id, " is installed"));
  return BERTH_NOT_FOUND;
}

void ForEach(berth_host_ctx* ctx, const char* iface,
             int (*cb)(void* user, const berth_iface_ref* ref), void* user) {
  for (Plugin* p : ctx->services->registry->started()) {
    const void* table = FindIface(p, iface);
    if (table == nullptr) continue;
    berth_iface_ref ref{sizeof(berth_iface_ref), p->id.c_str(), table, p->instance};
    if (cb(user, &ref) != 0) return;
  }
}

void ListPlugins(berth_host_ctx* ctx, berth_sink* out) {
  Write(out, ctx->services->registry->ToJson());
}

int32_t StoreBegin(berth_host_ctx* ctx, int writable, berth_txn** txn, berth_sink* err) {
  if (ctx->services->store == nullptr) {
    Write(err, "the metadata store is not open");
    return BERTH_FAILED_PRECONDITION;
  }
  auto t = ctx->services->store->Begin(writable != 0);
  if (!t.ok()) return Fail(err, t.status());
  *txn = new berth_txn{ctx->plugin->id, std::move(*t)};
  return BERTH_OK;
}

int32_t StoreGet(berth_txn* txn, const char* bucket, berth_str key, berth_sink* value,
                 berth_sink* err) {
  auto v = txn->txn->Get(Bucket(txn, bucket), sdk::View(key));
  if (!v.ok()) return Fail(err, v.status());
  if (!v->has_value()) return BERTH_NOT_FOUND;
  Write(value, **v);
  return BERTH_OK;
}

int32_t StorePut(berth_txn* txn, const char* bucket, berth_str key, berth_str value,
                 berth_sink* err) {
  absl::Status s = txn->txn->Put(Bucket(txn, bucket), sdk::View(key), sdk::View(value));
  return s.ok() ? BERTH_OK : Fail(err, s);
}

int32_t StoreDelete(berth_txn* txn, const char* bucket, berth_str key, berth_sink* err) {
  absl::Status s = txn->txn->Delete(Bucket(txn, bucket), sdk::View(key));
  return s.ok() ? BERTH_OK : Fail(err, s);
}

int32_t StoreScan(berth_txn* txn, const char* bucket, berth_str prefix,
                  int (*cb)(void* user, berth_str key, berth_str value), void* user,
                  berth_sink* err) {
  absl::Status s = txn->txn->Scan(Bucket(txn, bucket), sdk::View(prefix),
                                  [&](std::string_view k, std::string_view v) {
                                    return cb(user, sdk::Str(k), sdk::Str(v)) == 0;
                                  });
  return s.ok() ? BERTH_OK : Fail(err, s);
}

int32_t StoreCommit(berth_txn* txn, berth_sink* err) {
  std::unique_ptr<berth_txn> owned(txn);
  if (txn == nullptr) {
    Write(err, "store_commit: no transaction");
    return BERTH_INVALID_ARGUMENT;
  }
  absl::Status s = txn->txn->Commit();
  return s.ok() ? BERTH_OK : Fail(err, s);
}

void StoreAbort(berth_txn* txn) {
  std::unique_ptr<berth_txn> owned(txn);
  if (txn != nullptr) txn->txn->Abort();
}

int32_t Publish(berth_host_ctx* ctx, const char* topic, berth_str payload, berth_sink* err) {
  if (topic == nullptr || topic[0] != '/') {
    Write(err, "event topic must start with '/'");
    return BERTH_INVALID_ARGUMENT;
  }
  ctx->services->events->Publish(topic, sdk::View(payload));
  return BERTH_OK;
}

uint64_t Subscribe(berth_host_ctx* ctx, const char* prefix,
                   void (*cb)(void* user, berth_str topic, berth_str payload), void* user) {
  if (cb == nullptr) return 0;
  return ctx->services->events->Subscribe(
      prefix == nullptr ? "" : prefix,
      [cb, user](std::string_view t, std::string_view p) { cb(user, sdk::Str(t), sdk::Str(p)); });
}

void Unsubscribe(berth_host_ctx* ctx, uint64_t id) { ctx->services->events->Unsubscribe(id); }

}  // namespace

std::shared_ptr<void> MakeHostContext(Plugin* plugin, HostServices* services) {
  auto ctx = std::make_shared<berth_host_ctx>();
  ctx->plugin = plugin;
  ctx->services = services;
  Config c = services->CurrentConfig();
  ctx->root_dir = (c.root / plugin->id).string();
  ctx->state_dir = (c.state / plugin->id).string();
  for (const std::string& d : {ctx->root_dir, ctx->state_dir}) {
    if (::mkdir(d.c_str(), 0700) != 0 && errno != EEXIST) {
      spdlog::warn("cannot create plugin directory {}: {}", d, strerror(errno));
    }
  }
  ctx->logger = PluginLogger(plugin->id);
  berth_host& t = ctx->table;
  t.struct_size = sizeof(berth_host);
  t.abi_major = BERTH_ABI_MAJOR;
  t.abi_minor = BERTH_ABI_MINOR;
  t.ctx = ctx.get();
  t.log = &Log;
  t.log_level = &HostLogLevel;
  t.get_config = &GetConfig;
  t.get_section = &GetSection;
  t.root_dir = &RootDir;
  t.state_dir = &StateDir;
  t.lookup = &Lookup;
  t.for_each = &ForEach;
  t.list_plugins = &ListPlugins;
  t.store_begin = &StoreBegin;
  t.store_get = &StoreGet;
  t.store_put = &StorePut;
  t.store_delete = &StoreDelete;
  t.store_scan = &StoreScan;
  t.store_commit = &StoreCommit;
  t.store_abort = &StoreAbort;
  t.publish = &Publish;
  t.subscribe = &Subscribe;
  t.unsubscribe = &Unsubscribe;
  t.config_where = &ConfigWhere;
  return ctx;
}

const berth_host* HostTableOf(const std::shared_ptr<void>& context) {
  return &static_cast<berth_host_ctx*>(context.get())->table;
}

}  // namespace berth::core
