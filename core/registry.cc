// SPDX-License-Identifier: Apache-2.0
#include "core/registry.h"

#define BOOST_DLL_USE_STD_FS
#include <algorithm>
#include <boost/dll/shared_library.hpp>
#include <cstring>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "berth/kinds.h"
#include "core/config.h"
#include "berth/plugin.hpp"
#include "nlohmann/json.hpp"
#include "spdlog/spdlog.h"

namespace berth::core {
namespace {

namespace fs = std::filesystem;

// Libraries of initialised plugins stay loaded for the life of the process: a plugin may
// have started threads or registered callbacks that outlive its shutdown().
std::vector<std::shared_ptr<boost::dll::shared_library>>& KeptLibraries() {
  static auto* kept = new std::vector<std::shared_ptr<boost::dll::shared_library>>();
  return *kept;
}

std::string Safe(const char* s) { return s == nullptr ? std::string() : std::string(s); }

// A requirement naming a plugin id has a dot; one naming a kind has none.
bool IsIdRequirement(std::string_view r) { return r.find('.') != std::string_view::npos; }

}  // namespace

std::string_view PluginStateName(PluginState state) {
  switch (state) {
    case PluginState::kLoaded: return "loaded";
    case PluginState::kRefused: return "refused";
    case PluginState::kDisabled: return "disabled";
    case PluginState::kEnabled: return "enabled";
    case PluginState::kRunning: return "running";
    case PluginState::kSkipped: return "skipped";
    case PluginState::kFailed: return "failed";
    case PluginState::kStopped: return "stopped";
  }
  return "unknown";
}

const void* Plugin::Interface(const char* name) const {
  if (instance == nullptr || desc.get_interface == nullptr) return nullptr;
  return desc.get_interface(instance, name);
}

Registry::Registry() = default;

Registry::~Registry() { Stop(); }

void Registry::Discover(const std::vector<fs::path>& dirs) {
  std::set<fs::path> seen;
  for (const fs::path& dir : dirs) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) {
      spdlog::debug("plugin directory {} does not exist; skipped", dir.string());
      continue;
    }
    std::vector<fs::path> files;
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
      if (entry.path().extension() == ".so" && entry.is_regular_file(ec)) {
        files.push_back(entry.path());
      }
    }
    if (ec) spdlog::warn("cannot list plugin directory {}: {}", dir.string(), ec.message());
    std::sort(files.begin(), files.end());
    for (const fs::path& f : files) {
      fs::path canonical = fs::weakly_canonical(f, ec);
      if (!seen.insert(ec ? f : canonical).second) continue;  // same file via two dirs
      absl::Status s = LoadFile(f);
      if (!s.ok()) spdlog::debug("{}", std::string(s.message()));
    }
  }
}

absl::Status Registry::LoadFile(const fs::path& file) {
  auto record = std::make_unique<Plugin>();
  record->file = file;
  Plugin* p = record.get();
  plugins_.push_back(std::move(record));
  auto refuse = [p](std::string why) {
    p->state = PluginState::kRefused;
    p->reason = std::move(why);
    return absl::FailedPreconditionError(p->reason);
  };

  auto lib = std::make_shared<boost::dll::shared_library>();
  try {
    lib->load(file, boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local);
  } catch (const std::exception& e) {
    return refuse(absl::StrCat("plugin file ", file.string(), ": cannot be loaded: ", e.what()));
  }
  if (!lib->has(BERTH_PLUGIN_ENTRY_SYMBOL)) {
    return refuse(absl::StrCat("plugin file ", file.string(), ": no ", BERTH_PLUGIN_ENTRY_SYMBOL,
                               " symbol; not a berth plugin (define it with BERTH_PLUGIN)"));
  }
  berth_plugin_entry_fn entry = nullptr;
  try {
    entry = lib->get<const berth_plugin_descriptor*()>(BERTH_PLUGIN_ENTRY_SYMBOL);
  } catch (const std::exception& e) {
    return refuse(absl::StrCat("plugin file ", file.string(), ": ", e.what()));
  }
  const berth_plugin_descriptor* d = entry();
  constexpr size_t kMinSize = offsetof(berth_plugin_descriptor, description);  // ABI 1.0
  if (d == nullptr) {
    return refuse(absl::StrCat("plugin file ", file.string(), ": ", BERTH_PLUGIN_ENTRY_SYMBOL,
                               " returned no descriptor"));
  }
  // struct_size, abi_major and abi_minor sit at the same offsets in every ABI version.
  p->abi_major = d->abi_major;
  p->abi_minor = d->abi_minor;
  std::string host_abi = absl::StrCat(BERTH_ABI_MAJOR, ".", BERTH_ABI_MINOR);
  std::string plugin_abi = absl::StrCat(d->abi_major, ".", d->abi_minor);
  if (d->abi_major != BERTH_ABI_MAJOR) {
    // Fields past the version are not trusted: another major may lay them out otherwise.
    return refuse(absl::StrCat("plugin file ", file.string(), ": built for plugin ABI ",
                               plugin_abi, ", but this berthd speaks ABI ", host_abi,
                               " (major versions must match): rebuild the plugin against the "
                               "berth SDK ",
                               BERTH_ABI_MAJOR, ".x"));
  }
  if (d->struct_size < kMinSize) {
    return refuse(absl::StrCat("plugin file ", file.string(), ": descriptor is ", d->struct_size,
                               " bytes, smaller than ABI 1.0's ", kMinSize, "; corrupt plugin"));
  }
  std::memcpy(&p->desc, d, std::min<size_t>(d->struct_size, sizeof(p->desc)));
  p->desc.struct_size = sizeof(p->desc);
  p->id = Safe(p->desc.id);
  p->kind = Safe(p->desc.kind);
  p->version = Safe(p->desc.version);
  p->description = Safe(p->desc.description);
  p->default_config_json = p->desc.default_config_json ? p->desc.default_config_json : "{}";
  std::string who = absl::StrCat("plugin ", p->id.empty() ? "<no id>" : p->id, " (",
                                 file.string(), ")");
  if (d->abi_minor > BERTH_ABI_MINOR) {
    return refuse(absl::StrCat(who, ": built for plugin ABI ", plugin_abi,
                               ", newer than this berthd's ABI ", host_abi,
                               ": upgrade berthd or rebuild the plugin against an older SDK"));
  }
  if (!IsValidPluginId(p->id)) {
    return refuse(absl::StrCat(who, ": invalid plugin id \"", p->id,
                               "\" (want reverse-DNS such as io.example.hello)"));
  }
  if (p->kind.empty() || p->version.empty()) {
    return refuse(absl::StrCat(who, ": descriptor has an empty kind or version"));
  }
  if (p->desc.init == nullptr || p->desc.get_interface == nullptr ||
      p->desc.shutdown == nullptr) {
    return refuse(absl::StrCat(who, ": descriptor lacks init, get_interface or shutdown"));
  }
  for (const char* const* r = p->desc.requires_list; r != nullptr && *r != nullptr; ++r) {
    p->requires_list.emplace_back(*r);
  }
  if (auto j = nlohmann::json::parse(p->default_config_json, nullptr, false);
      j.is_discarded() || !j.is_object()) {
    return refuse(absl::StrCat(who, ": default configuration is not a JSON object"));
  }
  for (const auto& other : plugins_) {
    if (other.get() != p && other->state != PluginState::kRefused && other->id == p->id) {
      return refuse(absl::StrCat(who, ": duplicate plugin id ", p->id, ": version ", p->version,
                                 " here, version ", other->version, " already loaded from ",
                                 other->file.string()));
    }
  }
  p->lib = std::move(lib);
  p->state = PluginState::kLoaded;
  return absl::OkStatus();
}

Plugin* Registry::Find(std::string_view id) const {
  for (const auto& p : plugins_) {
    if (p->state != PluginState::kRefused && p->id == id) return p.get();
  }
  return nullptr;
}

absl::StatusOr<std::vector<Plugin*>> Registry::Resolve(
    const std::set<std::string>& enabled,
    const std::function<std::string(std::string_view)>& where) {
  for (const std::string& id : enabled) {
    if (Find(id) != nullptr) continue;
    std::vector<std::string> refusals;
    for (const auto& p : plugins_) {
      if (p->state == PluginState::kRefused && p->id == id) refusals.push_back(p->reason);
    }
    if (!refusals.empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat(where(id), ": plugin ", id, " is enabled but was refused: ",
                       absl::StrJoin(refusals, "; ")));
    }
    std::vector<std::string> known;
    for (const auto& p : plugins_) {
      if (p->state != PluginState::kRefused) known.push_back(p->id);
    }
    return absl::NotFoundError(absl::StrCat(
        where(id), ": unknown plugin id \"", id, "\": no plugin file provides it (known: ",
        known.empty() ? std::string("none") : absl::StrJoin(known, ", "), ")"));
  }
  // An enabled id also provided by a refused duplicate is ambiguous: refuse to guess.
  for (const auto& p : plugins_) {
    if (p->state == PluginState::kRefused && enabled.count(p->id) != 0 && Find(p->id)) {
      return absl::FailedPreconditionError(absl::StrCat(where(p->id), ": ", p->reason));
    }
  }

  std::vector<Plugin*> nodes;
  for (const auto& p : plugins_) {
    if (p->state == PluginState::kRefused) continue;
    if (enabled.count(p->id) != 0) {
      p->state = PluginState::kEnabled;
      nodes.push_back(p.get());
    } else {
      p->state = PluginState::kDisabled;
    }
  }
  // Edges: plugin -> what must start before it.
  std::map<Plugin*, std::vector<Plugin*>> deps;
  for (Plugin* p : nodes) {
    for (const std::string& r : p->requires_list) {
      std::vector<Plugin*> providers;
      for (Plugin* q : nodes) {
        if (q != p && (IsIdRequirement(r) ? q->id == r : q->kind == r)) providers.push_back(q);
      }
      if (providers.empty()) {
        std::vector<std::string> installed;
        for (const auto& q : plugins_) {
          if (q->state != PluginState::kRefused && (IsIdRequirement(r) ? q->id == r : q->kind == r)) {
            installed.push_back(q->id);
          }
        }
        return absl::FailedPreconditionError(absl::StrCat(
            where(p->id), ": plugin ", p->id, " requires ",
            IsIdRequirement(r) ? "plugin " : "a plugin of kind \"", r,
            IsIdRequirement(r) ? "" : "\"", ", and no enabled plugin provides it",
            installed.empty() ? std::string()
                              : absl::StrCat(" (installed but not enabled: ",
                                             absl::StrJoin(installed, ", "),
                                             "; add it under plugins:)")));
      }
      deps[p].insert(deps[p].end(), providers.begin(), providers.end());
    }
  }
  // Depth-first topological sort; a grey node met again closes a cycle.
  enum Mark { kWhite, kGrey, kBlack };
  std::map<Plugin*, Mark> mark;
  std::vector<Plugin*> order, stack;
  std::function<absl::Status(Plugin*)> visit = [&](Plugin* p) -> absl::Status {
    if (mark[p] == kBlack) return absl::OkStatus();
    if (mark[p] == kGrey) {
      std::vector<std::string> cycle;
      auto it = std::find(stack.begin(), stack.end(), p);
      for (; it != stack.end(); ++it) cycle.push_back((*it)->id);
      cycle.push_back(p->id);
      return absl::FailedPreconditionError(
          absl::StrCat("plugin dependency cycle: ", absl::StrJoin(cycle, " -> ")));
    }
    mark[p] = kGrey;
    stack.push_back(p);
    for (Plugin* d : deps[p]) {
      absl::Status s = visit(d);
      if (!s.ok()) return s;
    }
    stack.pop_back();
    mark[p] = kBlack;
    order.push_back(p);
    return absl::OkStatus();
  };
  for (Plugin* p : nodes) {
    absl::Status s = visit(p);
    if (!s.ok()) return s;
  }
  return order;
}

absl::Status Registry::Start(const std::vector<Plugin*>& order, const HostFactory& make_host,
                             const HostTable& table_of, bool start_services) {
  auto fail = [this](Plugin* p, std::string why) {
    p->state = PluginState::kFailed;
    p->reason = why;
    Stop();
    return absl::FailedPreconditionError(why);
  };
  for (Plugin* p : order) {
    // Every requirement needs at least one provider that is running now.
    for (const std::string& r : p->requires_list) {
      bool satisfied = false;
      std::vector<std::string> why_not;
      for (Plugin* q : order) {
        if (q == p || !(IsIdRequirement(r) ? q->id == r : q->kind == r)) continue;
        if (q->state == PluginState::kRunning) {
          satisfied = true;
        } else {
          why_not.push_back(absl::StrCat(q->id, " ", std::string(PluginStateName(q->state)),
                                         q->reason.empty() ? "" : ": ", q->reason));
        }
      }
      if (!satisfied) {
        return fail(p, absl::StrCat("plugin ", p->id, " cannot start: it requires ", r,
                                    ", and no provider is running (", absl::StrJoin(why_not, "; "),
                                    ")"));
      }
    }
    std::shared_ptr<void> ctx = make_host(p);
    berth::sdk::StringSink err;
    void* instance = nullptr;
    int32_t code = p->desc.init(table_of(ctx), &instance, err.get());
    if (code == BERTH_NOT_APPLICABLE) {
      p->state = PluginState::kSkipped;
      p->reason = absl::StrCat("not applicable on this host: ", err.str());
      spdlog::info("plugin {} skipped: {}", p->id, p->reason);
      KeptLibraries().push_back(p->lib);
      continue;
    }
    if (code != BERTH_OK) {
      KeptLibraries().push_back(p->lib);
      return fail(p, absl::StrCat("plugin ", p->id, " (", p->file.string(),
                                  ") failed to initialise: ", err.str(), " [code ", code, "]"));
    }
    if (instance == nullptr) {
      KeptLibraries().push_back(p->lib);
      return fail(p, absl::StrCat("plugin ", p->id, " returned no instance from init"));
    }
    p->instance = instance;
    p->host_context = std::move(ctx);
    p->state = PluginState::kRunning;
    KeptLibraries().push_back(p->lib);
    started_.push_back(p);
    spdlog::debug("plugin {} {} initialised", p->id, p->version);
  }
  for (Plugin* p : start_services ? started_ : std::vector<Plugin*>()) {
    auto* svc = static_cast<const berth_service_v1*>(p->Interface(BERTH_IFACE_SERVICE_V1));
    if (svc == nullptr || !BERTH_HAS_MEMBER(svc, berth_service_v1, start)) continue;
    berth::sdk::StringSink err;
    int32_t code = svc->start(p->instance, err.get());
    if (code != BERTH_OK) {
      return fail(p, absl::StrCat("service plugin ", p->id, " failed to start: ", err.str()));
    }
  }
  return absl::OkStatus();
}

void Registry::Stop() {
  for (auto it = started_.rbegin(); it != started_.rend(); ++it) {
    auto* svc = static_cast<const berth_service_v1*>((*it)->Interface(BERTH_IFACE_SERVICE_V1));
    if (svc != nullptr && BERTH_HAS_MEMBER(svc, berth_service_v1, stop)) svc->stop((*it)->instance);
  }
  for (auto it = started_.rbegin(); it != started_.rend(); ++it) {
    Plugin* p = *it;
    spdlog::debug("stopping plugin {}", p->id);
    p->desc.shutdown(p->instance);
    p->instance = nullptr;
    p->state = PluginState::kStopped;
  }
  started_.clear();
}

std::string Registry::ToJson() const {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& p : plugins_) {
    out.push_back({{"id", p->id},
                   {"kind", p->kind},
                   {"version", p->version},
                   {"abi", absl::StrCat(p->abi_major, ".", p->abi_minor)},
                   {"file", p->file.string()},
                   {"state", std::string(PluginStateName(p->state))},
                   {"reason", p->reason},
                   {"description", p->description}});
  }
  return out.dump();
}

}  // namespace berth::core
