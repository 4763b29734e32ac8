// SPDX-License-Identifier: Apache-2.0
#include "plugins/cni/cni_network.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <set>
#include <string>
#include <utility>

#include "core/status_macros.h"

namespace berth::cni {
namespace {

using nlohmann::json;

constexpr char kNotReady[] = "NetworkPluginNotReady";

// The same code, the message prefixed with what was being done.
absl::Status Prefix(const std::string& what, const absl::Status& s) {
  return absl::Status(s.code(), what + ": " + std::string(s.message()));
}

bool PathExists(const std::string& path) {
  struct stat st {};
  return !path.empty() && path[0] == '/' && ::stat(path.c_str(), &st) == 0;
}

// 0.4.0 introduced prevResult for DEL and the CHECK command.
bool HasPrevResultOnDel(const NetworkConfig& config) {
  return CompareVersions(config.cni_version, "0.4.0") >= 0;
}

std::string Type(const NetworkConfig& config, size_t i) {
  return config.plugins[i]["type"].get<std::string>();
}

// A string member of a recorded request, "" when absent or not a string.
std::string StringAt(const json& j, const char* key) {
  if (j.is_object() && j.contains(key) && j[key].is_string()) return j[key].get<std::string>();
  return "";
}

std::string Snippet(std::string_view s) {
  constexpr size_t kMax = 200;
  std::string out(s.substr(0, kMax));
  if (s.size() > kMax) out += "...";
  return out;
}

}  // namespace

// Serializes the operations on one sandbox; entries live while someone uses them.
class Network::SandboxLock {
 public:
  SandboxLock(Network* network, const std::string& sandbox_id)
      : network_(network), sandbox_id_(sandbox_id) {
    {
      std::lock_guard<std::mutex> guard(network_->locks_mu_);
      std::unique_ptr<LockEntry>& entry = network_->locks_[sandbox_id_];
      if (entry == nullptr) entry = std::make_unique<LockEntry>();
      ++entry->users;
      entry_ = entry.get();
    }
    entry_->mu.lock();
  }
  ~SandboxLock() {
    entry_->mu.unlock();
    std::lock_guard<std::mutex> guard(network_->locks_mu_);
    if (--entry_->users == 0) network_->locks_.erase(sandbox_id_);
  }
  SandboxLock(const SandboxLock&) = delete;
  SandboxLock& operator=(const SandboxLock&) = delete;

 private:
  Network* network_;
  std::string sandbox_id_;
  LockEntry* entry_ = nullptr;
};

absl::StatusOr<std::unique_ptr<Network>> Network::Create(NetworkOptions options, LogFn log) {
  if (options.cache_dir.empty() || options.cache_dir[0] != '/') {
    return absl::InvalidArgumentError(
        "CNI network: the cache directory must be an absolute path, "
        "got \"" +
        options.cache_dir + "\"");
  }
  if (options.conf_dir.empty()) {
    return absl::InvalidArgumentError("CNI network: conf_dir is empty");
  }
  if (options.bin_dirs.empty()) {
    return absl::InvalidArgumentError("CNI network: bin_dirs is empty");
  }
  if (options.plugin_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("CNI network: plugin_timeout must be positive");
  }
  ASSIGN_OR_RETURN(AttachmentCache cache, AttachmentCache::Open(options.cache_dir));
  return std::unique_ptr<Network>(
      new Network(std::move(options), std::move(log), std::move(cache)));
}

Network::Network(NetworkOptions options, LogFn log, AttachmentCache cache)
    : options_(std::move(options)),
      log_(std::move(log)),
      cache_(std::move(cache)),
      runner_(options_.bin_dirs, options_.plugin_timeout) {}

void Network::Log(LogLevel level, const std::string& msg) const {
  if (log_) log_(level, msg);
}

std::vector<std::string> Network::ConfDirs() const {
  std::vector<std::string> dirs = {options_.conf_dir};
  for (const std::string& d : options_.extra_conf_dirs) {
    if (std::find(dirs.begin(), dirs.end(), d) == dirs.end()) dirs.push_back(d);
  }
  return dirs;
}

sdk::Readiness Network::Status() { return StatusOf(options_.conf_dir); }

sdk::Readiness Network::StatusOf(const std::string& conf_dir) {
  absl::StatusOr<NetworkConfig> config = LoadNetworkConfig(conf_dir, options_.bin_dirs);
  if (!config.ok()) {
    return sdk::Readiness::NotReady(kNotReady, std::string(config.status().message()));
  }
  if (CompareVersions(config->cni_version, "1.1.0") >= 0) {
    const Invocation inv{"STATUS", "", "", "", ""};
    for (size_t i = 0; i < config->plugins.size(); ++i) {
      json request = PluginRequestConfig(*config, i, json::object(), json());
      absl::StatusOr<std::string> out = RunPlugin(*config, i, inv, request);
      if (!out.ok()) {
        return sdk::Readiness::NotReady(
            kNotReady, config->source + ": " + std::string(out.status().message()));
      }
    }
  }
  return sdk::Readiness::Ready();
}

absl::StatusOr<std::string> Network::RunPlugin(const NetworkConfig& config, size_t index,
                                               const Invocation& inv, const json& request) {
  const std::string type = Type(config, index);
  const absl::Time start = absl::Now();
  absl::StatusOr<std::string> out = runner_.Run(type, config.name, inv, request.dump());
  Log(LogLevel::kDebug,
      "plugin \"" + type + "\" (" + inv.command + ", network \"" + config.name + "\")" +
          (inv.container_id.empty() ? "" : " for sandbox " + inv.container_id) +
          (out.ok() ? " succeeded" : " failed") + " in " +
          absl::FormatDuration(absl::Trunc(absl::Now() - start, absl::Milliseconds(1))));
  return out;
}

absl::StatusOr<json> Network::AddChain(const NetworkConfig& config, const Invocation& inv,
                                       const json& caps, absl::Status* undo_error) {
  *undo_error = absl::OkStatus();
  json prev;
  absl::Status error;
  for (size_t i = 0; i < config.plugins.size(); ++i) {
    const std::string type = Type(config, i);
    json request = PluginRequestConfig(config, i, caps, prev);
    absl::StatusOr<std::string> out = RunPlugin(config, i, inv, request);
    if (!out.ok()) {
      error = out.status();
      break;
    }
    json result = json::parse(*out, nullptr, false);
    if (!result.is_object()) {
      error = absl::InternalError("plugin \"" + type + "\" (ADD, network \"" + config.name +
                                  "\") succeeded but printed no CNI result on stdout (got \"" +
                                  Snippet(*out) + "\")");
      break;
    }
    prev = std::move(result);
  }
  if (error.ok()) return prev;

  Log(LogLevel::kWarning,
      "attach of sandbox " + inv.container_id + " failed (" + std::string(error.message()) +
          "); undoing it: DEL of every plugin of network \"" + config.name + "\" in reverse order");
  Invocation del = inv;
  del.command = "DEL";
  absl::Status undone =
      DelChain(config, del, caps, HasPrevResultOnDel(config) ? prev : json(), true);
  if (!undone.ok()) {
    Log(LogLevel::kError, "attach of sandbox " + inv.container_id +
                              ": undoing the failed attach failed too (" +
                              std::string(undone.message()) +
                              "); its attachment record is kept so that a detach or the next "
                              "GC retries");
  }
  *undo_error = undone;
  return error;
}

absl::Status Network::DelChain(const NetworkConfig& config, const Invocation& inv, const json& caps,
                               const json& prev_result, bool best_effort) {
  absl::Status first;
  for (size_t k = config.plugins.size(); k-- > 0;) {
    json request = PluginRequestConfig(config, k, caps, prev_result);
    absl::StatusOr<std::string> out = RunPlugin(config, k, inv, request);
    if (out.ok()) continue;
    if (!best_effort) return out.status();
    Log(LogLevel::kWarning,
        "sandbox " + inv.container_id + ": " + std::string(out.status().message()));
    if (first.ok()) first = out.status();
  }
  return first;
}

absl::StatusOr<std::string> Network::Attach(std::string_view request_json) {
  ASSIGN_OR_RETURN(AttachRequest request, ParseAttachRequest(request_json));
  const std::string& id = request.sandbox_id;
  const std::string what = "attach of sandbox " + id;
  if (request.netns.empty() || request.netns[0] != '/') {
    return absl::InvalidArgumentError(what +
                                      ": \"netns\" must be the absolute path of the pod's "
                                      "network namespace, got \"" +
                                      request.netns + "\"");
  }
  struct stat st {};
  if (::stat(request.netns.c_str(), &st) != 0) {
    return Prefix(what, core::ErrnoToStatus(errno, "network namespace " + request.netns));
  }
  absl::StatusOr<json> caps = CapabilityArgs(request);
  if (!caps.ok()) return Prefix(what, caps.status());
  const std::string conf_dir = request.conf_dir.empty() ? options_.conf_dir : request.conf_dir;
  if (const std::vector<std::string> dirs = ConfDirs();
      std::find(dirs.begin(), dirs.end(), conf_dir) == dirs.end()) {
    std::string known;
    for (const std::string& d : dirs) known += (known.empty() ? "" : ", ") + d;
    return absl::InvalidArgumentError(
        what + ": \"conf_dir\" " + conf_dir +
        " is not a configuration directory of this network (known: " + known +
        "; a runtime handler's cni_conf_dir becomes one when berthd starts)");
  }
  absl::StatusOr<NetworkConfig> config = LoadNetworkConfig(conf_dir, options_.bin_dirs);
  if (!config.ok()) {
    return absl::FailedPreconditionError(what + ": " + std::string(config.status().message()));
  }

  std::shared_lock<std::shared_mutex> gc(gc_mu_);
  SandboxLock lock(this, id);
  absl::StatusOr<std::optional<AttachmentRecord>> existing = cache_.Read(id);
  if (!existing.ok()) return Prefix(what, existing.status());
  if (existing->has_value()) {
    // An earlier attach that did not finish (a crash) or was never detached.
    Log(LogLevel::kWarning, what + ": an attachment record exists already (" + cache_.PathOf(id) +
                                "); detaching that attachment first");
    std::string old_netns = StringAt((*existing)->request, "netns");
    absl::Status s = DetachLocked(id, PathExists(old_netns) ? old_netns : "");
    if (!s.ok()) return Prefix(what + ": the earlier attachment could not be detached", s);
  }

  AttachmentRecord record;
  record.sandbox_id = id;
  record.ifname = kIfName;
  record.network = config->name;
  record.config_file = config->source;
  record.config = config->bytes;
  record.request = request.raw;
  record.capability_args = *caps;
  if (absl::Status s = cache_.Write(record); !s.ok()) return Prefix(what, s);

  const Invocation inv{"ADD", id, request.netns, kIfName, CniArgs(request)};
  absl::Status undo_error;
  absl::StatusOr<json> result = AddChain(*config, inv, *caps, &undo_error);
  if (!result.ok()) {
    if (!undo_error.ok()) {
      return Prefix(
          what, absl::Status(result.status().code(),
                             std::string(result.status().message()) +
                                 "; undoing the attach failed too (" +
                                 std::string(undo_error.message()) + "): the attachment record " +
                                 cache_.PathOf(id) + " stays, a detach or the next GC retries"));
    }
    if (absl::Status s = cache_.Remove(id); !s.ok()) {
      Log(LogLevel::kError, what + ": " + std::string(s.message()));
    }
    return Prefix(what, result.status());
  }
  record.result = *result;
  if (absl::Status s = cache_.Write(record); !s.ok()) {
    // Without the result on disk the attachment could not be checked: undo it.
    Invocation del = inv;
    del.command = "DEL";
    absl::Status undone =
        DelChain(*config, del, *caps, HasPrevResultOnDel(*config) ? *result : json(), true);
    if (undone.ok()) (void)cache_.Remove(id);
    return Prefix(what, s);
  }
  json out = AttachResult(*result, config->name);
  out["config_file"] = config->source;
  if (out["ips"].empty()) {
    Log(LogLevel::kWarning, what + ": network \"" + config->name +
                                "\" gave the pod no IP address (its result has no \"ips\")");
  }
  Log(LogLevel::kInfo, "attached sandbox " + id + " to network \"" + config->name + "\" (" +
                           config->source + "): ips " + out["ips"].dump());
  return out.dump();
}

absl::Status Network::DetachLocked(const std::string& sandbox_id, const std::string& netns) {
  const std::string what = "detach of sandbox " + sandbox_id;
  absl::StatusOr<std::optional<AttachmentRecord>> record = cache_.Read(sandbox_id);
  if (!record.ok()) return Prefix(what, record.status());
  if (!record->has_value()) {
    Log(LogLevel::kDebug, what + ": no attachment record, nothing to detach");
    return absl::OkStatus();
  }
  const AttachmentRecord& r = **record;
  absl::StatusOr<NetworkConfig> config =
      ParseNetworkConfig(r.config, "configuration recorded in " + cache_.PathOf(sandbox_id) +
                                       " (from " + r.config_file + ")");
  if (!config.ok()) {
    return absl::DataLossError(what + ": " + std::string(config.status().message()));
  }
  std::string args = "IgnoreUnknown=1;K8S_POD_INFRA_CONTAINER_ID=" + sandbox_id;
  if (absl::StatusOr<AttachRequest> request = ParseAttachRequest(r.request.dump()); request.ok()) {
    args = CniArgs(*request);
  }
  const Invocation inv{"DEL", sandbox_id, netns, r.ifname, args};
  absl::Status s = DelChain(*config, inv, r.capability_args,
                            HasPrevResultOnDel(*config) ? r.result : json(), false);
  if (!s.ok()) {
    return Prefix(what,
                  absl::Status(s.code(), std::string(s.message()) + " (the attachment record " +
                                             cache_.PathOf(sandbox_id) +
                                             " stays; the detach can be retried)"));
  }
  if (absl::Status rm = cache_.Remove(sandbox_id); !rm.ok()) return Prefix(what, rm);
  Log(LogLevel::kInfo, "detached sandbox " + sandbox_id + " from network \"" + config->name + "\"" +
                           (netns.empty() ? " (its network namespace is gone)" : ""));
  return absl::OkStatus();
}

absl::Status Network::Detach(std::string_view request_json) {
  ASSIGN_OR_RETURN(AttachRequest request, ParseAttachRequest(request_json));
  // Plugins clean up what lives outside the namespace (IPAM, iptables) when it is gone.
  const std::string netns = PathExists(request.netns) ? request.netns : "";
  std::shared_lock<std::shared_mutex> gc(gc_mu_);
  SandboxLock lock(this, request.sandbox_id);
  return DetachLocked(request.sandbox_id, netns);
}

absl::Status Network::Check(std::string_view request_json) {
  ASSIGN_OR_RETURN(AttachRequest request, ParseAttachRequest(request_json));
  const std::string& id = request.sandbox_id;
  const std::string what = "check of sandbox " + id;
  std::shared_lock<std::shared_mutex> gc(gc_mu_);
  SandboxLock lock(this, id);
  absl::StatusOr<std::optional<AttachmentRecord>> record = cache_.Read(id);
  if (!record.ok()) return Prefix(what, record.status());
  if (!record->has_value()) {
    return absl::NotFoundError(what +
                               ": the sandbox is not attached to a CNI network (no "
                               "attachment record " +
                               cache_.PathOf(id) + ")");
  }
  const AttachmentRecord& r = **record;
  if (r.result.is_null()) {
    return absl::NotFoundError(what + ": its attach did not complete (record " + cache_.PathOf(id) +
                               " has no result)");
  }
  absl::StatusOr<NetworkConfig> config = ParseNetworkConfig(
      r.config, "configuration recorded in " + cache_.PathOf(id) + " (from " + r.config_file + ")");
  if (!config.ok())
    return absl::DataLossError(what + ": " + std::string(config.status().message()));
  if (config->disable_check || !HasPrevResultOnDel(*config)) return absl::OkStatus();
  std::string netns = request.netns;
  if (netns.empty()) netns = StringAt(r.request, "netns");
  std::string args = CniArgs(request);
  if (absl::StatusOr<AttachRequest> recorded = ParseAttachRequest(r.request.dump());
      recorded.ok()) {
    args = CniArgs(*recorded);  // CHECK takes the parameters of the ADD
  }
  const Invocation inv{"CHECK", id, netns, r.ifname, args};
  for (size_t i = 0; i < config->plugins.size(); ++i) {
    json req = PluginRequestConfig(*config, i, r.capability_args, r.result);
    absl::StatusOr<std::string> out = RunPlugin(*config, i, inv, req);
    if (!out.ok()) return Prefix(what, out.status());
  }
  return absl::OkStatus();
}

absl::Status Network::Gc(std::string_view sandbox_ids_json) {
  json ids = json::parse(sandbox_ids_json, nullptr, false);
  bool ok = ids.is_array();
  for (const json& id : ids) ok = ok && id.is_string();
  if (!ok) {
    return absl::InvalidArgumentError("gc: expected a JSON array of sandbox ids, got " +
                                      Snippet(sandbox_ids_json));
  }
  std::set<std::string> keep;
  for (const json& id : ids) keep.insert(id.get<std::string>());

  std::vector<std::string> errors;
  absl::StatusCode first_code = absl::StatusCode::kOk;
  auto fail = [&](const absl::Status& s) {
    if (first_code == absl::StatusCode::kOk) first_code = s.code();
    errors.push_back(std::string(s.message()));
  };

  absl::StatusOr<std::vector<std::string>> recorded = cache_.List();
  if (!recorded.ok()) return Prefix("gc", recorded.status());
  {
    std::shared_lock<std::shared_mutex> gc(gc_mu_);
    for (const std::string& id : *recorded) {
      if (keep.contains(id)) continue;
      SandboxLock lock(this, id);
      absl::StatusOr<std::optional<AttachmentRecord>> record = cache_.Read(id);
      if (!record.ok()) {
        fail(record.status());
        continue;
      }
      if (!record->has_value()) continue;  // detached meanwhile
      std::string netns = StringAt((*record)->request, "netns");
      Log(LogLevel::kInfo, "gc: sandbox " + id + " is gone; detaching it");
      if (absl::Status s = DetachLocked(id, PathExists(netns) ? netns : ""); !s.ok()) fail(s);
    }
  }

  // CNI GC of the current network of each directory, alone (SPEC.md: no ADD or DEL may run
  // meanwhile).
  std::unique_lock<std::shared_mutex> gc(gc_mu_);
  for (const std::string& conf_dir : ConfDirs()) {
    absl::StatusOr<NetworkConfig> config = LoadNetworkConfig(conf_dir, options_.bin_dirs);
    if (!config.ok()) {
      Log(LogLevel::kDebug, "gc: no plugin GC: " + std::string(config.status().message()));
      continue;
    }
    if (CompareVersions(config->cni_version, "1.1.0") < 0 || config->disable_gc) continue;
    // Attachments of a network of the same name in another directory count as valid too:
    // GC may keep too much, never release what a pod uses.
    json valid = json::array();
    absl::StatusOr<std::vector<std::string>> remaining = cache_.List();
    if (!remaining.ok()) return Prefix("gc", remaining.status());
    for (const std::string& id : *remaining) {
      absl::StatusOr<std::optional<AttachmentRecord>> record = cache_.Read(id);
      if (record.ok() && !record->has_value()) continue;
      // A record that cannot be read might be of this network: keep what it may hold.
      if (record.ok() && (*record)->network != config->name) continue;
      valid.push_back({{"containerID", id},
                       {"ifname", record.ok() ? (*record)->ifname : std::string(kIfName)}});
    }
    const Invocation inv{"GC", "", "", "", ""};
    for (size_t i = 0; i < config->plugins.size(); ++i) {
      json request = PluginRequestConfig(*config, i, json::object(), json());
      request["cni.dev/valid-attachments"] = valid;
      absl::StatusOr<std::string> out = RunPlugin(*config, i, inv, request);
      if (!out.ok()) fail(out.status());  // the others still run
    }
  }
  if (errors.empty()) return absl::OkStatus();
  std::string msg = "gc: " + std::to_string(errors.size()) + " error(s): ";
  for (size_t i = 0; i < errors.size(); ++i) msg += (i ? "; " : "") + errors[i];
  return absl::Status(first_code, msg);
}

json ConfDirStatuses(Network& network) {
  json out = json::object();
  for (const std::string& dir : network.ConfDirs()) {
    const sdk::Readiness r = network.StatusOf(dir);
    out[dir] = {{"network_ready", r.ready}, {"reason", r.reason}, {"message", r.message}};
  }
  return out;
}

json AttachResult(const json& cni_result, const std::string& network) {
  json v4 = json::array(), v6 = json::array();
  if (cni_result.contains("ips") && cni_result["ips"].is_array()) {
    for (const json& ip : cni_result["ips"]) {
      if (!ip.is_object() || !ip.contains("address") || !ip["address"].is_string()) continue;
      std::string address = ip["address"].get<std::string>();
      address = address.substr(0, address.find('/'));
      (address.find(':') == std::string::npos ? v4 : v6).push_back(address);
    }
  }
  for (json& a : v6) v4.push_back(std::move(a));
  json interfaces = json::array();
  if (cni_result.contains("interfaces") && cni_result["interfaces"].is_array()) {
    interfaces = cni_result["interfaces"];
  }
  json dns = {{"nameservers", json::array()},
              {"domain", ""},
              {"search", json::array()},
              {"options", json::array()}};
  if (cni_result.contains("dns") && cni_result["dns"].is_object()) {
    const json& d = cni_result["dns"];
    for (const char* key : {"nameservers", "search", "options"}) {
      if (!d.contains(key) || !d[key].is_array()) continue;
      for (const json& e : d[key]) {
        if (e.is_string()) dns[key].push_back(e);
      }
    }
    if (d.contains("domain") && d["domain"].is_string()) dns["domain"] = d["domain"];
  }
  return {{"ips", std::move(v4)},
          {"interfaces", std::move(interfaces)},
          {"dns", std::move(dns)},
          {"network", network}};
}

}  // namespace berth::cni
