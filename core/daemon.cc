// SPDX-License-Identifier: Apache-2.0
#include "core/daemon.h"

#include <signal.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "core/host.h"
#include "core/instance_lock.h"
#include "core/log.h"
#include "core/status_macros.h"
#include "nlohmann/json.hpp"

#ifndef BERTH_VERSION
#define BERTH_VERSION "0.0.0"
#endif
#ifndef BERTH_INSTALL_PLUGIN_DIR
#define BERTH_INSTALL_PLUGIN_DIR "/usr/local/lib/berth/plugins"
#endif
#ifndef BERTH_DEFAULT_PLUGINS
#define BERTH_DEFAULT_PLUGINS ""
#endif

namespace berth::core {
namespace {

namespace fs = std::filesystem;

constexpr char kUsage[] = R"(usage: berthd [options]

berth: a Kubernetes CRI v1 container runtime.

options:
  --config FILE            configuration file (default /etc/berth/config.yaml when it
                           exists, else the built-in defaults)
  --root DIR               persistent state (default /var/lib/berth)
  --state DIR              runtime state (default /run/berth)
  --socket PATH            CRI socket (default /run/berth/berth.sock)
  --log-level LEVEL        trace, debug, info, warn or error (default info)
  --plugin-dir DIR         look for plugins in DIR too (repeatable)
  --print-default-config   print the built-in configuration and exit
  --check-config           validate the configuration and plugins, then exit
  --list-plugins           list the plugins found and their state, then exit
  --version                print the version and exit
  -h, --help               this text

signals: SIGTERM/SIGINT stop, SIGHUP reloads the configuration (log level live).
)";

struct Flags {
  std::string config_file;
  std::optional<std::string> root, state, socket, log_level;
  std::vector<fs::path> plugin_dirs;
  bool print_default = false, check = false, list = false, version = false, help = false;
};

absl::StatusOr<Flags> ParseFlags(int argc, char** argv) {
  Flags f;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    std::string value;
    auto take = [&](std::string_view name) -> absl::StatusOr<std::string> {
      if (a.size() > name.size() && a.substr(0, name.size()) == name && a[name.size()] == '=') {
        return std::string(a.substr(name.size() + 1));
      }
      if (i + 1 >= argc) return absl::InvalidArgumentError(absl::StrCat(std::string(name), " needs a value"));
      return std::string(argv[++i]);
    };
    auto is = [&](std::string_view name) {
      return a == name || (a.size() > name.size() && a.substr(0, name.size() + 1) ==
                                                         std::string(name) + "=");
    };
    if (is("--config")) {
      ASSIGN_OR_RETURN(f.config_file, take("--config"));
    } else if (is("--root")) {
      ASSIGN_OR_RETURN(f.root, take("--root"));
    } else if (is("--state")) {
      ASSIGN_OR_RETURN(f.state, take("--state"));
    } else if (is("--socket")) {
      ASSIGN_OR_RETURN(f.socket, take("--socket"));
    } else if (is("--log-level")) {
      ASSIGN_OR_RETURN(f.log_level, take("--log-level"));
    } else if (is("--plugin-dir")) {
      ASSIGN_OR_RETURN(std::string d, take("--plugin-dir"));
      f.plugin_dirs.emplace_back(d);
    } else if (a == "--print-default-config") {
      f.print_default = true;
    } else if (a == "--check-config") {
      f.check = true;
    } else if (a == "--list-plugins") {
      f.list = true;
    } else if (a == "--version") {
      f.version = true;
    } else if (a == "-h" || a == "--help") {
      f.help = true;
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown option \"", std::string(a), "\" (see --help)"));
    }
  }
  return f;
}

absl::Status CheckPath(std::string_view flag, const std::string& v) {
  if (v.empty() || v[0] != '/') {
    return absl::InvalidArgumentError(absl::StrCat(std::string(flag), ": expected an absolute path, got \"",
                                                   v, "\""));
  }
  return absl::OkStatus();
}

// The plugin directories: the configured ones; else the build tree's (berthd run from
// <build>/bin) or the installed one. Never both, so one plugin is not found twice.
std::vector<fs::path> PluginDirs(const Config& config, const std::vector<fs::path>& extra) {
  std::vector<fs::path> dirs = config.plugin_dirs;
  if (dirs.empty()) {
    std::error_code ec;
    fs::path exe = fs::read_symlink("/proc/self/exe", ec);
    fs::path build_dir = exe.parent_path().parent_path() / "plugins";
    if (!ec && fs::exists(exe.parent_path().parent_path() / "CMakeCache.txt", ec) &&
        fs::is_directory(build_dir, ec)) {
      dirs.push_back(build_dir);
    } else {
      dirs.emplace_back(BERTH_INSTALL_PLUGIN_DIR);
    }
  }
  dirs.insert(dirs.end(), extra.begin(), extra.end());
  return dirs;
}

// Fills what the file left out (plugins, runtimes) from the built-in default set and the
// plugins' own default configurations, then checks references between sections.
absl::Status CompleteConfig(Config& config, const Registry& registry) {
  if (!config.plugins_given) {
    std::vector<std::string> ids = absl::StrSplit(BERTH_DEFAULT_PLUGINS, ',', absl::SkipEmpty());
    for (const std::string& id : ids) {
      Plugin* p = registry.Find(id);
      if (p == nullptr) {
        spdlog::debug("default plugin {} is not installed; not enabled", id);
        continue;
      }
      PluginSection s;
      s.id = id;
      s.config = nlohmann::json::parse(p->default_config_json);
      config.plugins[s.id] = std::move(s);
    }
    config.plugins_given = true;
  }
  if (!config.runtimes_given && config.plugins.count("io.berth.runtime.runc") != 0) {
    for (const char* name : {"runc", "crun"}) {
      RuntimeEntry e;
      e.name = name;
      e.plugin = "io.berth.runtime.runc";
      e.options = {{"binary", name}};
      config.runtimes[name] = std::move(e);
    }
    if (config.default_runtime.empty()) config.default_runtime = "runc";
    config.runtimes_given = true;
  }
  for (const auto& [name, entry] : config.runtimes) {
    Plugin* p = registry.Find(entry.plugin);
    std::string where = config.Where(absl::StrCat("runtimes.", name, ".plugin"));
    if (p == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": key \"runtimes.", name, ".plugin\": runtime handler \"", name,
          "\" names plugin \"", entry.plugin, "\", which is not installed"));
    }
    if (p->kind != BERTH_KIND_RUNTIME) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": key \"runtimes.", name, ".plugin\": runtime handler \"", name,
          "\" names plugin \"", entry.plugin, "\", which is a ", p->kind,
          " plugin, not a runtime"));
    }
    // A snapshotter named by plugin id is enabled like the runtime plugin; one named by its
    // name ("native") must be enabled already, which the image store checks when it starts.
    if (!IsValidPluginId(entry.snapshotter)) continue;
    const std::string swhere = config.Where(absl::StrCat("runtimes.", name, ".snapshotter"));
    Plugin* sp = registry.Find(entry.snapshotter);
    if (sp == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          swhere, ": key \"runtimes.", name, ".snapshotter\": runtime handler \"", name,
          "\" names snapshotter plugin \"", entry.snapshotter, "\", which is not installed"));
    }
    if (sp->kind != BERTH_KIND_SNAPSHOTTER) {
      return absl::InvalidArgumentError(absl::StrCat(
          swhere, ": key \"runtimes.", name, ".snapshotter\": runtime handler \"", name,
          "\" names plugin \"", entry.snapshotter, "\", which is a ", sp->kind,
          " plugin, not a snapshotter"));
    }
  }
  return absl::OkStatus();
}

std::set<std::string> EnabledPlugins(const Config& config) {
  std::set<std::string> enabled;
  for (const auto& [id, section] : config.plugins) enabled.insert(id);
  for (const auto& [name, entry] : config.runtimes) {
    enabled.insert(entry.plugin);
    if (IsValidPluginId(entry.snapshotter)) enabled.insert(entry.snapshotter);
  }
  return enabled;
}

void PrintPluginTable(const Registry& registry) {
  std::printf("%-30s %-14s %-9s %-5s %-10s %s\n", "ID", "KIND", "VERSION", "ABI", "STATE",
              "FILE / REASON");
  for (const auto& p : registry.plugins()) {
    std::string detail = p->file.string();
    if (!p->reason.empty()) detail += " — " + p->reason;
    std::printf("%-30s %-14s %-9s %-5s %-10s %s\n", p->id.empty() ? "-" : p->id.c_str(),
                p->kind.empty() ? "-" : p->kind.c_str(),
                p->version.empty() ? "-" : p->version.c_str(),
                absl::StrCat(p->abi_major, ".", p->abi_minor).c_str(),
                std::string(PluginStateName(p->state)).c_str(), detail.c_str());
  }
}

absl::Status MakeDir(const fs::path& dir, mode_t mode) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat("cannot create ", dir.string(), ": ",
                                                          ec.message()));
  if (::chmod(dir.c_str(), mode) != 0) return ErrnoToStatus(errno, "chmod " + dir.string());
  return absl::OkStatus();
}

// What the host tables reach: the configuration, the store, the event bus, the registry.
void WireServices(HostServices& services, const Config& config, Store* store, EventBus* events,
                  Registry* registry) {
  services.config = config;
  services.store = store;
  services.events = events;
  services.registry = registry;
  services.version = BERTH_VERSION;
}

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "berthd: %s\n", std::string(s.message()).c_str());
  return 1;
}

}  // namespace

int DaemonMain(int argc, char** argv) {
  auto t0 = std::chrono::steady_clock::now();
  InitLogging();
  auto flags = ParseFlags(argc, argv);
  if (!flags.ok()) return Fail(flags.status());
  if (flags->help) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (flags->version) {
    std::printf("berthd %s (plugin ABI %d.%d)\n", BERTH_VERSION, BERTH_ABI_MAJOR,
                BERTH_ABI_MINOR);
    return 0;
  }

  // Configuration: file (given, or the default path when it exists), then flags.
  Config config;
  std::string file = flags->config_file;
  if (file.empty() && !flags->print_default && fs::exists(kDefaultConfigFile)) {
    file = std::string(kDefaultConfigFile);
  }
  if (!file.empty()) {
    auto loaded = LoadConfigFile(file);
    if (!loaded.ok()) return Fail(loaded.status());
    config = std::move(*loaded);
  } else {
    config.file = "<built-in>";
  }
  for (auto [flag, value, target] :
       {std::tuple{"--root", &flags->root, &config.root},
        std::tuple{"--state", &flags->state, &config.state},
        std::tuple{"--socket", &flags->socket, &config.socket}}) {
    if (!value->has_value()) continue;
    if (absl::Status s = CheckPath(flag, **value); !s.ok()) return Fail(s);
    *target = **value;
  }
  if (config.socket.string().size() >= 108) {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("socket path ", config.socket.string(), " is longer than 107 bytes")));
  }
  if (flags->log_level) {
    auto level = ParseLogLevel(*flags->log_level);
    if (!level.ok()) return Fail(absl::InvalidArgumentError(
        absl::StrCat("--log-level: ", level.status().message())));
    config.log_level = *level;
  }
  SetLogLevel(static_cast<spdlog::level::level_enum>(static_cast<int>(config.log_level)));

  Registry registry;
  std::vector<fs::path> dirs = PluginDirs(config, flags->plugin_dirs);
  registry.Discover(dirs);
  if (absl::Status s = CompleteConfig(config, registry); !s.ok()) return Fail(s);

  if (flags->print_default) {
    std::fputs(config.ToYaml().c_str(), stdout);
    return 0;
  }
  auto order = registry.Resolve(EnabledPlugins(config), [&config](std::string_view id) {
    std::string key = absl::StrCat("plugins.", std::string(id));
    return absl::StrCat(config.Where(key), ": key \"", key, "\"");
  });
  if (flags->list) {
    PrintPluginTable(registry);
    if (!order.ok()) std::fprintf(stderr, "berthd: %s\n", std::string(order.status().message()).c_str());
    return order.ok() ? 0 : 1;
  }
  if (!order.ok()) return Fail(order.status());
  if (flags->check) {
    // Initialise every enabled plugin (without serving) against throwaway directories, so
    // that the plugins' own settings are validated too; then shut them down.
    char tmpl[] = "/tmp/berth-check-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) return Fail(ErrnoToStatus(errno, "mkdtemp"));
    fs::path scratch = tmpl;
    absl::Status checked = [&]() -> absl::Status {
      ASSIGN_OR_RETURN(std::unique_ptr<Store> store, Store::Open(scratch / "metadata.db"));
      EventBus events;
      HostServices services;
      Config scratch_config = config;
      scratch_config.root = scratch / "root";
      scratch_config.state = scratch / "state";
      for (const fs::path& d : {scratch_config.root, scratch_config.state}) {
        RETURN_IF_ERROR(MakeDir(d, 0700));
      }
      WireServices(services, scratch_config, store.get(), &events, &registry);
      absl::Status s = registry.Start(
          *order, [&services](Plugin* p) { return MakeHostContext(p, &services); },
          &HostTableOf, /*start_services=*/false);
      registry.Stop();
      return s;
    }();
    std::error_code ec;
    fs::remove_all(scratch, ec);
    if (!checked.ok()) return Fail(checked);
    std::printf("configuration %s is valid: %zu plugins enabled (%s)\n", config.file.c_str(),
                order->size(), absl::StrJoin(*order, ", ", [](std::string* out, Plugin* p) {
                  out->append(p->id);
                }).c_str());
    return 0;
  }

  if (::geteuid() != 0) {
    return Fail(absl::PermissionDeniedError(
        "must run as root: berthd manages namespaces, mounts, cgroups and the CRI socket "
        "(try sudo, or the packaged systemd unit)"));
  }
  ::umask(022);
  for (const fs::path& d : {config.root, config.state}) {
    if (absl::Status s = MakeDir(d, 0711); !s.ok()) return Fail(s);
  }
  if (absl::Status s = MakeDir(config.socket.parent_path(), 0711); !s.ok()) return Fail(s);
  InstanceLock lock;
  if (absl::Status s = lock.Acquire(config.root / "berthd.lock", "root " + config.root.string());
      !s.ok()) {
    return Fail(s);
  }
  if (absl::Status s =
          lock.Acquire(config.state / "berthd.lock", "state " + config.state.string());
      !s.ok()) {
    return Fail(s);
  }
  if (absl::Status s = lock.ClaimSocket(config.socket); !s.ok()) return Fail(s);

  auto store = Store::Open(config.root / "metadata.db");
  if (!store.ok()) return Fail(store.status());
  EventBus events;
  HostServices services;
  WireServices(services, config, store->get(), &events, &registry);

  // Every thread started from here on (plugins, gRPC) inherits this mask, so the signals
  // reach only the sigwait below.
  sigset_t sigs;
  sigemptyset(&sigs);
  for (int s : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&sigs, s);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  absl::Status started = registry.Start(
      *order, [&services](Plugin* p) { return MakeHostContext(p, &services); }, &HostTableOf);
  if (!started.ok()) {
    ::unlink(config.socket.c_str());
    return Fail(started);
  }
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                std::chrono::steady_clock::now() - t0).count();
  spdlog::info("berthd {} ready in {} ms: CRI on {}, root {}, state {}, config {}, {} plugins",
               BERTH_VERSION, ms, config.socket.string(), config.root.string(),
               config.state.string(), config.file, order->size());
  sd_notify(0, "READY=1");

  for (;;) {
    int sig = 0;
    if (sigwait(&sigs, &sig) != 0) continue;
    if (sig == SIGHUP) {
      sd_notify(0, "RELOADING=1");
      if (config.file == "<built-in>") {
        spdlog::info("SIGHUP: no configuration file to re-read (built-in defaults)");
      } else {
        auto fresh = LoadConfigFile(config.file);
        if (!fresh.ok()) {
          spdlog::error("SIGHUP: configuration not reloaded, keeping the running one: {}",
                        std::string(fresh.status().message()));
        } else {
          LogLevel level = flags->log_level ? config.log_level : fresh->log_level;
          SetLogLevel(static_cast<spdlog::level::level_enum>(static_cast<int>(level)));
          {
            std::lock_guard<std::mutex> l(services.config_mu);
            services.config.log_level = level;
          }
          std::vector<std::string> need_restart;
          if (!flags->root && fresh->root != config.root) need_restart.push_back("root");
          if (!flags->state && fresh->state != config.state) need_restart.push_back("state");
          if (!flags->socket && fresh->socket != config.socket) need_restart.push_back("socket");
          if (fresh->plugins_given && fresh->plugins.size() != config.plugins.size()) {
            need_restart.push_back("plugins");
          }
          Config runtimes_now, runtimes_then;
          runtimes_now.runtimes = fresh->runtimes;
          runtimes_then.runtimes = config.runtimes;
          if (fresh->runtimes_given && !SameSettings(runtimes_now, runtimes_then)) {
            need_restart.push_back("runtimes");
          }
          spdlog::info("SIGHUP: configuration {} re-read; log level now {}{}", config.file,
                       LogLevelName(level),
                       need_restart.empty()
                           ? std::string()
                           : absl::StrCat("; changes to ", absl::StrJoin(need_restart, ", "),
                                          " take effect at the next restart"));
        }
      }
      sd_notify(0, "READY=1");
      continue;
    }
    spdlog::info("received {}, stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    sd_notify(0, "STOPPING=1");
    break;
  }
  // Tell plugins first, so long work (a pull) can end before the services are stopped.
  events.Publish("/berthd/stopping", "{}");
  registry.Stop();
  ::unlink(config.socket.c_str());
  spdlog::info("berthd stopped");
  return 0;
}

}  // namespace berth::core
