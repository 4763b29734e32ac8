// SPDX-License-Identifier: Apache-2.0
#include "plugins/image-store/image_store.h"

#include <unistd.h>

#include <algorithm>
#include <random>
#include <semaphore>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "plugins/common/plugin_util.h"
#include "plugins/common/status_convert.h"
#include "plugins/image-store/content/unpack.h"
#include "plugins/image-store/registry/http.h"

namespace berth::image {
namespace {

namespace fs = std::filesystem;

constexpr char kImages[] = "images";  // id -> image record (JSON)
constexpr char kRefs[] = "refs";      // canonical tag or digest reference -> id
constexpr size_t kMaxConfigBytes = 8 << 20;
constexpr char kExtractPrefix[] = "extract-";

using plugins::ToSdk;
using plugins::FromSdk;

// The key a reference is recorded under: "domain/repo@digest" or "domain/repo:tag".
std::string RefKey(const Reference& r) {
  std::string name = absl::StrCat(r.domain, "/", r.repository);
  return r.digest.empty() ? absl::StrCat(name, ":", r.tag) : absl::StrCat(name, "@", r.digest);
}

bool IsHex(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
  });
}

std::string RandomSuffix() {
  static thread_local std::mt19937_64 rng(std::random_device{}());
  return std::to_string(rng());
}

// Where a layer is written: the upper directory of the snapshot's mounts, or the bound
// directory (which, with a parent, holds a copy of the lower layers: the native form).
struct WritableTarget {
  fs::path dir;
  bool native = false;  // a bind mount: whiteouts are applied, not recorded
};
absl::StatusOr<WritableTarget> WritableDir(const std::string& mounts_json) {
  nlohmann::json m = nlohmann::json::parse(mounts_json, nullptr, false);
  if (!m.is_array() || m.empty() || !m[0].is_object()) {
    return absl::InternalError("snapshotter returned unreadable mounts: " + mounts_json);
  }
  const nlohmann::json& mount = m[0];
  std::string type = mount.value("type", "");
  fs::path base = mount.value("chdir", "");
  if (type == "bind") return WritableTarget{fs::path(mount.value("source", "")), true};
  if (type == "overlay") {
    for (const auto& o : mount.value("options", nlohmann::json::array())) {
      std::string opt = o.get<std::string>();
      if (opt.rfind("upperdir=", 0) == 0) {
        fs::path p = opt.substr(9);
        return WritableTarget{p.is_absolute() ? p : base / p, false};
      }
    }
    return absl::InternalError("overlay mount of an active snapshot has no upperdir");
  }
  return absl::UnimplementedError("cannot unpack into a mount of type " + type);
}

}  // namespace

ImageStore::~ImageStore() {
  if (stopping_subscription_ != 0) {
    host_.raw()->unsubscribe(host_.raw()->ctx, stopping_subscription_);
  }
}

sdk::Status ImageStore::Create(sdk::Host host, std::unique_ptr<ImageStore>* out) {
  auto config = plugins::LoadConfig(
      host, "io.berth.image-store",
      {"registry_config_path", "max_concurrent_downloads", "pull_progress_timeout",
       "snapshotter"});
  if (!config.ok()) return config.status();
  std::unique_ptr<ImageStore> s(new ImageStore(host));
  auto hosts_dir = plugins::StringOption(host, *config, "registry_config_path",
                                         "/etc/berth/certs.d");
  if (!hosts_dir.ok()) return hosts_dir.status();
  s->hosts_dir_ = *hosts_dir;
  if (config->contains("max_concurrent_downloads")) {
    const auto& v = (*config)["max_concurrent_downloads"];
    if (!v.is_number_integer() || v.get<int>() < 1 || v.get<int>() > 64) {
      return sdk::InvalidArgument(host.ConfigWhere("max_concurrent_downloads") +
                                  ": key \"max_concurrent_downloads\": expected an integer "
                                  "from 1 to 64, got " + v.dump());
    }
    s->max_downloads_ = v.get<int>();
  }
  auto timeout = plugins::StringOption(host, *config, "pull_progress_timeout", "1m");
  if (!timeout.ok()) return timeout.status();
  auto seconds = plugins::ParseDuration(*timeout);
  if (!seconds.ok() || *seconds <= 0) {
    return sdk::InvalidArgument(host.ConfigWhere("pull_progress_timeout") +
                                ": key \"pull_progress_timeout\": expected a duration such as "
                                "30s, 1m or 1h30m, got \"" + *timeout + "\"");
  }
  s->progress_timeout_ = std::chrono::seconds(*seconds);
  auto snap_id = plugins::StringOption(host, *config, "snapshotter", "");
  if (!snap_id.ok()) return snap_id.status();
  // The default: the configured one; else overlay when it runs (whatever order the
  // snapshotters started in); else the first running one.
  auto snap = host.Lookup<berth_snapshotter_v1>(
      BERTH_IFACE_SNAPSHOTTER_V1,
      snap_id->empty() ? "io.berth.snapshotter.overlay" : snap_id->c_str());
  if (!snap.ok() && snap_id->empty()) {
    snap = host.Lookup<berth_snapshotter_v1>(BERTH_IFACE_SNAPSHOTTER_V1, nullptr);
  }
  if (!snap.ok()) {
    return sdk::FailedPrecondition(host.ConfigWhere("snapshotter") +
                                   ": no snapshotter for the image store: " +
                                   snap.status().message());
  }
  s->snapshotter_ = *snap;
  s->snapshotters_.push_back(*snap);
  for (const auto& other : host.All<berth_snapshotter_v1>(BERTH_IFACE_SNAPSHOTTER_V1)) {
    if (other.plugin_id != snap->plugin_id) s->snapshotters_.push_back(other);
  }
  for (const Snapshotter& t : s->snapshotters_) {
    if (!BERTH_HAS_MEMBER(t.table, berth_snapshotter_v1, fs_usage)) {
      return sdk::FailedPrecondition("snapshotter " + t.plugin_id +
                                     " is too old: it lacks the snapshot functions of "
                                     "berth.snapshotter.v1");
    }
  }
  // The runtime handlers' own snapshotters (runtimes: <handler>: snapshotter).
  if (auto runtimes = host.Section("runtimes"); runtimes.ok()) {
    nlohmann::json rj = nlohmann::json::parse(*runtimes, nullptr, false);
    nlohmann::json handlers = nlohmann::json::object();
    if (rj.is_object() && rj.contains("handlers") && rj["handlers"].is_object()) {
      handlers = rj["handlers"];
    }
    for (const auto& [name, entry] : handlers.items()) {
      if (!entry.is_object() || !entry.contains("snapshotter")) continue;
      const std::string wanted = entry.value("snapshotter", "");
      std::optional<Snapshotter> found = s->FindSnapshotter(wanted);
      if (!found) {
        std::string running;
        for (const Snapshotter& t : s->snapshotters_) {
          running += (running.empty() ? "" : ", ") +
                     std::string(sdk::View(t.table->name(t.instance))) + " (" + t.plugin_id + ")";
        }
        return sdk::FailedPrecondition(
            host.ConfigWhere(("/runtimes." + name + ".snapshotter").c_str()) +
            ": key \"runtimes." + name + ".snapshotter\": runtime handler \"" + name +
            "\" names snapshotter \"" + wanted + "\", which is not running (running: " +
            running + "); name one of those, or enable its plugin under plugins:");
      }
      s->handlers_[name] = *found;
    }
  }
  auto content = ContentStore::Open(fs::path(host.RootDir()) / "content");
  if (!content.ok()) return ToSdk(content.status());
  s->content_ = std::move(*content);
  s->CollectGarbage();  // also removes what a crash left half-unpacked
  // When berthd stops, pulls in flight end at once instead of holding the daemon up.
  if (BERTH_HAS_MEMBER(host.raw(), berth_host, subscribe)) {
    s->stopping_subscription_ = host.raw()->subscribe(
        host.raw()->ctx, "/berthd/stopping",
        [](void* user, berth_str, berth_str) {
          static_cast<ImageStore*>(user)->stopping_ = true;
          CancelAllTransfers();
        },
        s.get());
  }
  *out = std::move(s);
  return sdk::Status::Ok();
}

const void* ImageStore::GetInterface(std::string_view iface) {
  // StatusJson() names the snapshotters (the SDK's table calls it).
  if (iface == BERTH_IFACE_IMAGE_STORE_V1) return sdk::ImageStoreTable<ImageStore>();
  return nullptr;
}

std::string ImageStore::StatusJson() {
  std::string out = Status().ToJson();
  out.pop_back();  // the closing brace
  nlohmann::json handlers = nlohmann::json::object();
  for (const auto& [name, t] : handlers_) handlers[name] = t.plugin_id;
  return out + ",\"snapshotter\":" + nlohmann::json(snapshotter_.plugin_id).dump() +
         ",\"handler_snapshotters\":" + handlers.dump() + "}";
}

std::optional<ImageStore::Snapshotter> ImageStore::FindSnapshotter(std::string_view name) const {
  for (const Snapshotter& t : snapshotters_) {
    if (t.plugin_id == name || sdk::View(t.table->name(t.instance)) == name) return t;
  }
  return std::nullopt;
}

absl::StatusOr<ImageStore::Snapshotter> ImageStore::TargetOf(
    const nlohmann::json& options) const {
  if (options.contains("snapshotter") && options["snapshotter"].is_string() &&
      !options["snapshotter"].get<std::string>().empty()) {
    const std::string wanted = options["snapshotter"].get<std::string>();
    if (std::optional<Snapshotter> t = FindSnapshotter(wanted)) return *t;
    return absl::InvalidArgumentError("no running snapshotter is called \"" + wanted + "\"");
  }
  if (options.contains("runtime_handler") && options["runtime_handler"].is_string()) {
    auto it = handlers_.find(options["runtime_handler"].get<std::string>());
    if (it != handlers_.end()) return it->second;
  }
  return snapshotter_;
}

sdk::Readiness ImageStore::Status() {
  std::string root = host_.RootDir();
  if (::access(root.c_str(), W_OK) != 0) {
    return sdk::Readiness::NotReady("ImageStoreNotWritable",
                                    "image store directory " + root + " is not writable");
  }
  return sdk::Readiness::Ready();
}

sdk::Result<std::string> ImageStore::Pull(std::string_view ref_text, std::string_view auth_json,
                                          std::string_view options_json,
                                          const std::function<void(std::string_view)>& progress) {
  nlohmann::json options = nlohmann::json::object();
  if (!options_json.empty()) {
    options = nlohmann::json::parse(options_json, nullptr, false);
    if (!options.is_object()) {
      return sdk::InvalidArgument("pull options are not a JSON object: " +
                                  std::string(options_json.substr(0, 200)));
    }
  }
  absl::StatusOr<Snapshotter> target = TargetOf(options);
  if (!target.ok()) return ToSdk(target.status());
  if (options.value("unpack_only", false)) {
    // An image of this store, into another snapshotter: no registry involved.
    std::shared_lock<std::shared_mutex> gc_guard(gc_mu_);
    auto img = Find(ref_text);
    if (!img.ok()) return ToSdk(img.status());
    if (absl::Status s = UnpackFromContent(*img, *target); !s.ok()) return ToSdk(s);
    return img->value("id", "");
  }
  auto ref = ParseReference(ref_text);
  if (!ref.ok()) return ToSdk(ref.status());
  Credentials creds;
  if (!auth_json.empty()) {
    nlohmann::json a = nlohmann::json::parse(auth_json, nullptr, false);
    if (a.is_object()) {
      creds.username = a.value("username", "");
      creds.password = a.value("password", "");
      creds.auth = a.value("auth", "");
      creds.identity_token = a.value("identity_token", "");
      creds.registry_token = a.value("registry_token", "");
    }
  }
  // Concurrent pulls of the same reference with the same credentials share one pull.
  std::string key = RefKey(*ref) + "\n" + ComputeDigest("sha256", auth_json) + "\n" +
                    target->plugin_id;
  std::shared_future<absl::StatusOr<std::string>> shared;
  std::promise<absl::StatusOr<std::string>> mine;
  bool leader = false;
  {
    std::lock_guard<std::mutex> lock(inflight_mu_);
    auto it = pulls_inflight_.find(key);
    if (it != pulls_inflight_.end()) {
      shared = it->second;
    } else {
      shared = mine.get_future().share();
      pulls_inflight_[key] = shared;
      leader = true;
    }
  }
  if (leader) {
    absl::StatusOr<std::string> result = DoPull(*ref, creds, progress, *target);
    mine.set_value(result);
    {
      std::lock_guard<std::mutex> lock(inflight_mu_);
      pulls_inflight_.erase(key);
    }
    // What a failed pull fetched or unpacked is referenced by no image: give the space back
    // now (a disk-full pull must not leave the disk full).
    if (!result.ok()) CollectGarbage(/*only_if_idle=*/true);
  }
  const absl::StatusOr<std::string>& r = shared.get();
  if (!r.ok()) return ToSdk(r.status());
  return *r;
}

absl::Status ImageStore::FetchOnce(const Reference& ref, const Descriptor& desc,
                                   const Credentials& creds,
                                   const std::function<void(int64_t)>& on_bytes) {
  if (content_->Has(desc.digest)) {
    on_bytes(desc.size);
    return absl::OkStatus();
  }
  std::shared_future<absl::Status> shared;
  std::promise<absl::Status> mine;
  bool leader = false;
  {
    std::lock_guard<std::mutex> lock(inflight_mu_);
    auto it = blobs_inflight_.find(desc.digest);
    if (it != blobs_inflight_.end()) {
      shared = it->second;
    } else {
      shared = mine.get_future().share();
      blobs_inflight_[desc.digest] = shared;
      leader = true;
    }
  }
  if (!leader) {
    absl::Status s = shared.get();
    if (s.ok()) on_bytes(desc.size);
    return s;
  }
  absl::Status result = [&]() -> absl::Status {
    auto writer = content_->Writer(desc.digest, desc.size);
    if (!writer.ok()) return writer.status();
    int64_t reported = 0;
    absl::Status s = client_->FetchBlob(
        ref, desc, creds,
        [&](std::string_view chunk) { return (*writer)->Write(chunk); },
        [&](int64_t done, int64_t) {
          on_bytes(done - reported);
          reported = done;
        });
    if (!s.ok()) return s;
    return (*writer)->Commit();
  }();
  mine.set_value(result);
  std::lock_guard<std::mutex> lock(inflight_mu_);
  blobs_inflight_.erase(desc.digest);
  return result;
}

absl::Status ImageStore::ApplyLayer(const Snapshotter& target, const Descriptor& layer,
                                    const std::string& diff_id, const std::string& chain_id,
                                    const std::string& parent) {
  const berth_snapshotter_v1* t = target.table;
  void* inst = target.instance;
  {
    sdk::StringSink info, err;
    if (t->stat(inst, sdk::Str(chain_id), info.get(), err.get()) == BERTH_OK) {
      return absl::OkStatus();  // another image or pull already unpacked it
    }
  }
  std::string key = absl::StrCat(kExtractPrefix, RandomSuffix(), "-", chain_id);
  std::string labels = R"({"io.berth.unpack":"true"})";
  sdk::StringSink mounts, err;
  int32_t code = t->prepare(inst, sdk::Str(key), sdk::Str(parent), sdk::Str(labels),
                            mounts.get(), err.get());
  if (code != BERTH_OK) {
    return absl::Status(static_cast<absl::StatusCode>(code),
                        absl::StrCat("prepare snapshot for layer ", layer.digest, ": ", err.str()));
  }
  auto remove = [&] {
    sdk::StringSink e;
    t->remove(inst, sdk::Str(key), e.get());
  };
  auto dir = WritableDir(mounts.str());
  if (!dir.ok()) {
    remove();
    return dir.status();
  }
  UnpackOptions options;
  options.media_type = layer.media_type;
  options.layer_name = layer.digest;
  options.apply_whiteouts = dir->native;
  options.warn = [this, &layer](std::string_view w) {
    host_.Warn(absl::StrCat("layer ", layer.digest, ": ", std::string(w)));
  };
  auto unpacked = UnpackLayer(content_->BlobPath(layer.digest), dir->dir, options);
  if (!unpacked.ok()) {
    remove();
    return absl::Status(unpacked.status().code(),
                        absl::StrCat("unpack layer ", layer.digest, ": ",
                                     std::string(unpacked.status().message())));
  }
  if (unpacked->diff_id != diff_id) {
    remove();
    return absl::DataLossError(absl::StrCat("layer ", layer.digest, " unpacks to ",
                                            unpacked->diff_id, " but the image config says ",
                                            diff_id));
  }
  sdk::StringSink cerr;
  code = t->commit(inst, sdk::Str(chain_id), sdk::Str(key), sdk::Str(labels), cerr.get());
  if (code == BERTH_ALREADY_EXISTS) {
    remove();  // a concurrent pull committed the same layer first
    return absl::OkStatus();
  }
  if (code != BERTH_OK) {
    remove();
    return absl::Status(static_cast<absl::StatusCode>(code),
                        absl::StrCat("commit snapshot ", chain_id, ": ", cerr.str()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ImageStore::DoPull(
    const Reference& ref, const Credentials& creds,
    const std::function<void(std::string_view)>& progress, const Snapshotter& target) {
  std::shared_lock<std::shared_mutex> gc_guard(gc_mu_);
  // The registry client (libcurl, and OpenSSL behind it) starts at the first pull: a node
  // that pulls nothing does not pay for TLS in memory.
  std::call_once(client_once_, [this] {
    RegistryClient::Options opts;
    opts.hosts_dir = hosts_dir_;
    opts.progress_timeout = progress_timeout_;
    client_ = std::make_unique<RegistryClient>(opts);
  });
  auto resolved = client_->Resolve(ref, creds);
  if (!resolved.ok()) return resolved.status();
  // The manifest (and index) are content too: verify and keep them.
  auto keep = [this](const std::string& digest, const std::string& bytes) -> absl::Status {
    if (digest.empty() || bytes.empty() || content_->Has(digest)) return absl::OkStatus();
    auto w = content_->Writer(digest, static_cast<int64_t>(bytes.size()));
    if (!w.ok()) return w.status();
    if (absl::Status s = (*w)->Write(bytes); !s.ok()) return s;
    return (*w)->Commit();
  };
  if (absl::Status s = keep(resolved->manifest_digest, resolved->manifest); !s.ok()) return s;
  if (absl::Status s = keep(resolved->index_digest, resolved->index); !s.ok()) return s;

  const std::vector<Descriptor>& layers = resolved->layers;
  int64_t total = 0;
  for (const Descriptor& l : layers) total += l.size;
  std::atomic<int64_t> done{0};
  std::atomic<int> layers_done{0};
  std::mutex report_mu;
  auto last_report = std::chrono::steady_clock::now() - std::chrono::seconds(1);
  auto report = [&](bool force) {
    std::lock_guard<std::mutex> lock(report_mu);
    auto now = std::chrono::steady_clock::now();
    if (!progress || (!force && now - last_report < std::chrono::milliseconds(100))) return;
    last_report = now;
    nlohmann::json j = {{"ref", RefKey(ref)},
                        {"layers_done", layers_done.load()},
                        {"layers_total", static_cast<int>(layers.size())},
                        {"bytes_done", done.load()},
                        {"bytes_total", total}};
    progress(j.dump());
  };
  report(true);

  if (absl::Status s = FetchOnce(ref, resolved->config, creds, [](int64_t) {}); !s.ok()) {
    return s;
  }
  auto config_text = content_->ReadAll(resolved->config.digest, kMaxConfigBytes);
  if (!config_text.ok()) return config_text.status();
  nlohmann::json config = nlohmann::json::parse(*config_text, nullptr, false);
  if (!config.is_object() || !config.contains("rootfs") ||
      !config["rootfs"].value("diff_ids", nlohmann::json()).is_array()) {
    return absl::InvalidArgumentError(absl::StrCat("image config ", resolved->config.digest,
                                                   " of ", RefKey(ref),
                                                   " is not a valid OCI image config"));
  }
  std::vector<std::string> diff_ids;
  for (const auto& d : config["rootfs"]["diff_ids"]) {
    if (!d.is_string()) return absl::InvalidArgumentError("image config has a bad diff_id");
    diff_ids.push_back(d.get<std::string>());
  }
  if (diff_ids.size() != layers.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "image ", RefKey(ref), ": manifest has ", layers.size(), " layers but the config has ",
        diff_ids.size(), " diff_ids"));
  }
  // Chain IDs name the snapshots: chain(0) = diff(0), chain(n) = sha256(chain(n-1) " " diff(n)).
  std::vector<std::string> chain;
  for (size_t i = 0; i < diff_ids.size(); ++i) {
    chain.push_back(i == 0 ? diff_ids[0]
                           : ComputeDigest("sha256", chain[i - 1] + " " + diff_ids[i]));
  }

  // Downloads run in parallel (max_concurrent_downloads); layers are applied in order as
  // soon as each one and its parent are there.
  std::counting_semaphore<64> slots(max_downloads_);
  std::vector<std::shared_future<absl::Status>> downloads;
  std::vector<std::thread> threads;
  for (size_t i = 0; i < layers.size(); ++i) {
    auto p = std::make_shared<std::promise<absl::Status>>();
    downloads.push_back(p->get_future().share());
    sdk::StringSink info, err;
    if (target.table->stat(target.instance, sdk::Str(chain[i]), info.get(), err.get()) ==
        BERTH_OK) {
      done += layers[i].size;  // already unpacked by an earlier pull
      p->set_value(absl::OkStatus());
      continue;
    }
    threads.emplace_back([&, i, p] {
      slots.acquire();
      absl::Status s = FetchOnce(ref, layers[i], creds, [&](int64_t n) {
        done += n;
        report(false);
      });
      slots.release();
      p->set_value(s);
    });
  }
  absl::Status failure;
  for (size_t i = 0; i < layers.size() && failure.ok(); ++i) {
    failure = downloads[i].get();
    if (!failure.ok()) break;
    if (stopping_) {
      failure = absl::CancelledError("pull cancelled: berthd is stopping");
      break;
    }
    failure =
        ApplyLayer(target, layers[i], diff_ids[i], chain[i], i == 0 ? "" : chain[i - 1]);
    ++layers_done;
    report(true);
  }
  for (std::thread& t : threads) t.join();
  if (!failure.ok()) return failure;

  // The image record: id = config digest; one record however many names it has.
  std::string id = resolved->config.digest;
  std::string top = resolved->index_digest.empty() ? resolved->manifest_digest
                                                   : resolved->index_digest;
  std::string name = absl::StrCat(ref.domain, "/", ref.repository);
  std::lock_guard<std::mutex> lock(meta_mu_);
  auto txn = host_.Begin(true);
  if (!txn.ok()) return FromSdk(txn.status());
  auto existing = txn->Get(kImages, id);
  if (!existing.ok()) return FromSdk(existing.status());
  nlohmann::json rec = existing->has_value()
                           ? nlohmann::json::parse(**existing, nullptr, false)
                           : nlohmann::json::object();
  if (!rec.is_object()) rec = nlohmann::json::object();
  auto add_unique = [](nlohmann::json& arr, const std::string& v) {
    if (!arr.is_array()) arr = nlohmann::json::array();
    for (const auto& e : arr) {
      if (e == v) return;
    }
    arr.push_back(v);
  };
  rec["id"] = id;
  if (!ref.tag.empty() && ref.digest.empty()) {
    std::string tag = absl::StrCat(name, ":", ref.tag);
    // The tag moves: take it from the image that had it.
    auto old = txn->Get(kRefs, tag);
    if (old.ok() && old->has_value() && **old != id) {
      auto old_rec = txn->Get(kImages, **old);
      if (old_rec.ok() && old_rec->has_value()) {
        nlohmann::json o = nlohmann::json::parse(**old_rec, nullptr, false);
        if (o.is_object() && o.contains("repo_tags")) {
          auto& tags = o["repo_tags"];
          tags.erase(std::remove(tags.begin(), tags.end(), tag), tags.end());
          if (sdk::Status s = txn->Put(kImages, **old, o.dump()); !s.ok()) return FromSdk(s);
        }
      }
    }
    add_unique(rec["repo_tags"], tag);
    if (sdk::Status s = txn->Put(kRefs, tag, id); !s.ok()) return FromSdk(s);
  }
  if (!rec.contains("repo_tags")) rec["repo_tags"] = nlohmann::json::array();
  std::string digest_ref = absl::StrCat(name, "@", top);
  add_unique(rec["repo_digests"], digest_ref);
  if (sdk::Status s = txn->Put(kRefs, digest_ref, id); !s.ok()) return FromSdk(s);
  int64_t size = static_cast<int64_t>(resolved->manifest.size()) + resolved->config.size;
  for (const Descriptor& l : layers) size += l.size;
  rec["size"] = size;
  std::string user = config.contains("config") && config["config"].is_object()
                         ? config["config"].value("User", "")
                         : "";
  std::string uname = user.substr(0, user.find(':'));
  rec["uid"] = nullptr;
  rec["username"] = "";
  if (!uname.empty() && std::all_of(uname.begin(), uname.end(), ::isdigit)) {
    rec["uid"] = std::stoll(uname);
  } else if (!uname.empty()) {
    rec["username"] = uname;
  }
  rec["annotations"] = resolved->annotations;
  if (!rec.contains("pinned")) rec["pinned"] = false;
  rec["chain_id"] = chain.empty() ? "" : chain.back();
  rec["chain"] = chain;
  rec["config"] = config;
  rec["manifest_digest"] = resolved->manifest_digest;
  nlohmann::json blobs = {resolved->manifest_digest, resolved->config.digest};
  if (!resolved->index_digest.empty()) blobs.push_back(resolved->index_digest);
  for (const Descriptor& l : layers) blobs.push_back(l.digest);
  rec["blobs"] = blobs;
  if (sdk::Status s = txn->Put(kImages, id, rec.dump()); !s.ok()) return FromSdk(s);
  if (sdk::Status s = txn->Commit(); !s.ok()) return FromSdk(s);
  host_.Info(absl::StrCat("pulled ", RefKey(ref), " as ", id, " (", layers.size(), " layers, ",
                          size, " bytes)",
                          target.plugin_id == snapshotter_.plugin_id
                              ? ""
                              : absl::StrCat(", unpacked into ", target.plugin_id)));
  return id;
}

absl::Status ImageStore::UnpackFromContent(const nlohmann::json& rec, const Snapshotter& target) {
  const std::string id = rec.value("id", "");
  const std::string manifest_digest = rec.value("manifest_digest", "");
  const nlohmann::json chain = rec.value("chain", nlohmann::json::array());
  nlohmann::json diff_ids = nlohmann::json::array();
  if (rec.contains("config") && rec["config"].is_object() && rec["config"].contains("rootfs")) {
    diff_ids = rec["config"]["rootfs"].value("diff_ids", nlohmann::json::array());
  }
  const std::string what = absl::StrCat("image ", id, " into snapshotter ", target.plugin_id);
  // Nothing to do when its top layer is there already.
  if (chain.empty()) return absl::OkStatus();
  {
    sdk::StringSink info, err;
    if (target.table->stat(target.instance, sdk::Str(chain.back().get<std::string>()), info.get(),
                           err.get()) == BERTH_OK) {
      return absl::OkStatus();
    }
  }
  auto manifest_text = content_->ReadAll(manifest_digest, kMaxConfigBytes);
  if (!manifest_text.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "unpack ", what, ": its manifest ", manifest_digest, " is not in the content store (",
        manifest_text.status().message(), "); pull the image again"));
  }
  const std::string manifest_what = "manifest " + manifest_digest;
  auto media_type = DetectManifestMediaType(*manifest_text, "", manifest_what);
  if (!media_type.ok()) return media_type.status();
  auto manifest = ParseImageManifest(*manifest_text, *media_type, manifest_what);
  if (!manifest.ok()) return manifest.status();
  if (manifest->layers.size() != chain.size() || diff_ids.size() != chain.size()) {
    return absl::DataLossError(absl::StrCat("unpack ", what, ": the image record has ",
                                            chain.size(), " layers, its manifest ",
                                            manifest->layers.size(), ", its config ",
                                            diff_ids.size()));
  }
  for (size_t i = 0; i < chain.size(); ++i) {
    const Descriptor& layer = manifest->layers[i];
    if (!content_->Has(layer.digest)) {
      return absl::FailedPreconditionError(absl::StrCat("unpack ", what, ": layer ",
                                                        layer.digest,
                                                        " is not in the content store; pull "
                                                        "the image again"));
    }
    absl::Status applied =
        ApplyLayer(target, layer, diff_ids[i].get<std::string>(), chain[i].get<std::string>(),
                   i == 0 ? "" : chain[i - 1].get<std::string>());
    if (!applied.ok()) return applied;
  }
  host_.Info(absl::StrCat("unpacked ", what, " (", chain.size(), " layers)"));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<nlohmann::json>> ImageStore::AllImages() {
  auto txn = host_.Begin(false);
  if (!txn.ok()) return FromSdk(txn.status());
  std::vector<nlohmann::json> out;
  sdk::Status s = txn->Scan(kImages, "", [&](std::string_view, std::string_view v) {
    nlohmann::json j = nlohmann::json::parse(v, nullptr, false);
    if (j.is_object()) out.push_back(std::move(j));
    return true;
  });
  if (!s.ok()) return FromSdk(s);
  return out;
}

absl::StatusOr<nlohmann::json> ImageStore::Find(std::string_view ref_text) {
  std::string ref(ref_text);
  auto txn = host_.Begin(false);
  if (!txn.ok()) return FromSdk(txn.status());
  auto load = [&](const std::string& id) -> absl::StatusOr<nlohmann::json> {
    auto v = txn->Get(kImages, id);
    if (!v.ok()) return FromSdk(v.status());
    if (!v->has_value()) return absl::NotFoundError("no image " + ref);
    return nlohmann::json::parse(**v, nullptr, false);
  };
  // A name first (as docker does: an image called "cafe" is not an id prefix), then an
  // image id, full or an unambiguous prefix of at least 3 hex digits, "sha256:" optional.
  bool full_id = ref.rfind("sha256:", 0) == 0;
  auto parsed = full_id ? absl::StatusOr<Reference>(absl::InvalidArgumentError(""))
                        : ParseReference(ref);
  if (parsed.ok()) {
    auto named = txn->Get(kRefs, RefKey(*parsed));
    if (!named.ok()) return FromSdk(named.status());
    if (named->has_value()) return load(**named);
  }
  std::string hex = full_id ? ref.substr(7) : ref;
  if (IsHex(hex) && (full_id || hex.size() >= 3)) {
    std::vector<std::string> ids;
    sdk::Status s = txn->Scan(kImages, "sha256:" + hex, [&](std::string_view k, std::string_view) {
      ids.emplace_back(k);
      return ids.size() < 2;
    });
    if (!s.ok()) return FromSdk(s);
    if (ids.size() == 1) return load(ids[0]);
    if (ids.size() > 1) {
      return absl::FailedPreconditionError("image id prefix " + ref + " is ambiguous");
    }
  }
  if (!parsed.ok() && !full_id) return parsed.status();
  if (full_id) return absl::NotFoundError("no image " + ref);
  return absl::NotFoundError("no image " + RefKey(*parsed));
}

sdk::Result<std::string> ImageStore::ImageStatus(std::string_view ref) {
  auto img = Find(ref);
  if (!img.ok()) return ToSdk(img.status());
  return img->dump();
}

sdk::Result<std::string> ImageStore::List(std::string_view filter_ref) {
  nlohmann::json out = nlohmann::json::array();
  if (!filter_ref.empty()) {
    auto img = Find(filter_ref);
    if (!img.ok()) return ToSdk(img.status());
    out.push_back(*img);
    return out.dump();
  }
  auto all = AllImages();
  if (!all.ok()) return ToSdk(all.status());
  for (auto& j : *all) out.push_back(std::move(j));
  return out.dump();
}

sdk::Status ImageStore::Remove(std::string_view ref_text) {
  std::string ref(ref_text);
  {
    std::lock_guard<std::mutex> lock(meta_mu_);
    auto img = Find(ref);
    if (!img.ok()) return ToSdk(img.status());
    std::string id = (*img)["id"];
    auto txn = host_.Begin(true);
    if (!txn.ok()) return txn.status();
    // A tag removes that tag only, unless it was the last name of the image.
    auto parsed = ParseReference(ref);
    nlohmann::json& tags = (*img)["repo_tags"];
    std::string tag = parsed.ok() && parsed->digest.empty() ? RefKey(*parsed) : "";
    bool by_tag = !tag.empty() && tags.is_array() &&
                  std::find(tags.begin(), tags.end(), tag) != tags.end();
    if (by_tag && tags.size() > 1) {
      tags.erase(std::remove(tags.begin(), tags.end(), tag), tags.end());
      if (sdk::Status s = txn->Delete(kRefs, tag); !s.ok()) return s;
      if (sdk::Status s = txn->Put(kImages, id, img->dump()); !s.ok()) return s;
      return txn->Commit();
    }
    for (const char* field : {"repo_tags", "repo_digests"}) {
      for (const auto& name : img->value(field, nlohmann::json::array())) {
        if (sdk::Status s = txn->Delete(kRefs, name.get<std::string>()); !s.ok()) return s;
      }
    }
    if (sdk::Status s = txn->Delete(kImages, id); !s.ok()) return s;
    if (sdk::Status s = txn->Commit(); !s.ok()) return s;
    host_.Info("removed image " + id);
  }
  CollectGarbage();
  return sdk::Status::Ok();
}

void ImageStore::CollectGarbage(bool only_if_idle) {
  std::unique_lock<std::shared_mutex> gc_guard(gc_mu_, std::defer_lock);
  if (only_if_idle) {
    if (!gc_guard.try_lock()) return;  // a pull is running; a later collection frees it
  } else {
    gc_guard.lock();
  }
  auto images = AllImages();
  if (!images.ok()) {
    host_.Warn("garbage collection skipped: " + std::string(images.status().message()));
    return;
  }
  std::set<std::string> blobs, chains;
  for (const auto& img : *images) {
    for (const auto& b : img.value("blobs", nlohmann::json::array())) blobs.insert(b);
    for (const auto& c : img.value("chain", nlohmann::json::array())) chains.insert(c);
  }
  int removed_blobs = 0, removed_snapshots = 0;
  std::vector<std::string> unused;
  absl::Status walked = content_->Walk([&](const std::string& digest, int64_t) {
    if (blobs.count(digest) == 0) unused.push_back(digest);
  });
  if (!walked.ok()) host_.Warn("content walk: " + std::string(walked.message()));
  for (const std::string& d : unused) {
    if (content_->Delete(d).ok()) ++removed_blobs;
  }
  // Committed snapshots no image uses, children first (remove refuses a parent), and
  // unpack snapshots a crash left behind, in every snapshotter. Other active snapshots
  // belong to containers.
  for (const Snapshotter& snapshotter : snapshotters_) {
    for (int round = 0; round < 256; ++round) {
      sdk::StringSink infos, err;
      if (snapshotter.table->walk(snapshotter.instance, infos.get(), err.get()) != BERTH_OK) {
        host_.Warn("snapshot walk of " + snapshotter.plugin_id + ": " + err.str());
        break;
      }
      nlohmann::json all = nlohmann::json::parse(infos.str(), nullptr, false);
      if (!all.is_array()) break;
      int progress = 0;
      for (const auto& info : all) {
        std::string name = info.value("name", "");
        std::string kind = info.value("kind", "");
        bool stale_unpack = name.rfind(kExtractPrefix, 0) == 0;
        bool unused_layer = kind == "committed" && chains.count(name) == 0;
        if (!stale_unpack && !unused_layer) continue;
        sdk::StringSink rerr;
        if (snapshotter.table->remove(snapshotter.instance, sdk::Str(name), rerr.get()) ==
            BERTH_OK) {
          ++progress;
          ++removed_snapshots;
        }
      }
      if (progress == 0) break;
    }
  }
  if (removed_blobs + removed_snapshots > 0) {
    host_.Info(absl::StrCat("garbage collection removed ", removed_blobs, " blobs and ",
                            removed_snapshots, " snapshots"));
  }
}

// Every running snapshotter's usage (a runtime handler may unpack into its own), one entry
// per filesystem: those on the default's filesystem are added to its entry, with the content
// store, so the kubelet's image GC — which reads the first entry — sees all of it.
sdk::Result<std::string> ImageStore::FsInfo() {
  struct Usage {
    std::string mountpoint;
    uint64_t bytes = 0, inodes = 0;
  };
  std::vector<Usage> filesystems;  // the default snapshotter's first
  for (const Snapshotter& t : snapshotters_) {
    sdk::StringSink usage, err;
    int32_t code = t.table->fs_usage(t.instance, usage.get(), err.get());
    if (code != BERTH_OK) {
      return sdk::Status(code, absl::StrCat("snapshotter ", t.plugin_id, " usage: ", err.str()));
    }
    nlohmann::json u = nlohmann::json::parse(usage.str(), nullptr, false);
    if (!u.is_object()) {
      return sdk::Internal(absl::StrCat("snapshotter ", t.plugin_id, " returned unreadable usage"));
    }
    const std::string mountpoint = u.value("mountpoint", host_.RootDir());
    auto same = std::find_if(filesystems.begin(), filesystems.end(),
                             [&](const Usage& f) { return f.mountpoint == mountpoint; });
    if (same == filesystems.end()) same = filesystems.insert(filesystems.end(), {mountpoint});
    same->bytes += u.value("used_bytes", uint64_t{0});
    same->inodes += u.value("inodes_used", uint64_t{0});
  }
  if (filesystems.empty()) return sdk::Internal("no snapshotter");
  absl::Status walked = content_->Walk([&](const std::string&, int64_t size) {
    filesystems.front().bytes += static_cast<uint64_t>(size);
    ++filesystems.front().inodes;
  });
  if (!walked.ok()) return ToSdk(walked);
  nlohmann::json list = nlohmann::json::array();
  for (const Usage& f : filesystems) {
    list.push_back(
        {{"mountpoint", f.mountpoint}, {"used_bytes", f.bytes}, {"inodes_used", f.inodes}});
  }
  return nlohmann::json({{"image_fs", list.front()}, {"image_filesystems", list}}).dump();
}

}  // namespace berth::image
