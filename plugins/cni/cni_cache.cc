// SPDX-License-Identifier: Apache-2.0
#include "plugins/cni/cni_cache.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <system_error>

#include "core/status_macros.h"
#include "plugins/cni/cni_request.h"
#include "plugins/cni/file_util.h"

namespace berth::cni {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr int kRecordVersion = 1;
constexpr size_t kMaxRecordBytes = 16 << 20;
constexpr char kSuffix[] = ".json";

absl::Status Corrupt(const std::string& path, const std::string& why) {
  return absl::DataLossError(
      "CNI attachment record " + path + " is corrupt (" + why +
      "): the attachment cannot be undone automatically; clean up the pod's network by hand "
      "(veth, IP allocation, iptables rules) and delete the file");
}

}  // namespace

absl::StatusOr<AttachmentCache> AttachmentCache::Open(const std::string& dir) {
  RETURN_IF_ERROR(MakeDirs(dir, 0700));
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.path().filename().string().starts_with(".tmp-")) {
      ::unlink(e.path().c_str());
    }
  }
  return AttachmentCache(dir);
}

std::string AttachmentCache::PathOf(std::string_view sandbox_id) const {
  return dir_ + "/" + std::string(sandbox_id) + kSuffix;
}

absl::StatusOr<std::optional<AttachmentRecord>> AttachmentCache::Read(
    std::string_view sandbox_id) const {
  const std::string path = PathOf(sandbox_id);
  absl::StatusOr<std::string> text = ReadFile(path, kMaxRecordBytes);
  if (absl::IsNotFound(text.status())) return std::optional<AttachmentRecord>();
  if (!text.ok()) return text.status();
  json j = json::parse(*text, nullptr, false);
  if (!j.is_object()) return Corrupt(path, "not a JSON object");
  if (!j.contains("version") || j["version"] != kRecordVersion) {
    return Corrupt(path, "unknown record version " + j.value("version", json()).dump());
  }
  AttachmentRecord r;
  for (auto [key, field] :
       {std::pair{"sandbox_id", &r.sandbox_id}, std::pair{"ifname", &r.ifname},
        std::pair{"network", &r.network}, std::pair{"config_file", &r.config_file},
        std::pair{"config", &r.config}}) {
    if (!j.contains(key) || !j[key].is_string()) {
      return Corrupt(path, std::string("\"") + key + "\" is missing");
    }
    *field = j[key].get<std::string>();
  }
  if (r.sandbox_id != sandbox_id) {
    return Corrupt(path, "it is the record of sandbox \"" + r.sandbox_id + "\"");
  }
  r.request = j.value("request", json::object());
  r.capability_args = j.value("capability_args", json::object());
  r.result = j.value("result", json());
  if (!r.request.is_object() || !r.capability_args.is_object() ||
      !(r.result.is_null() || r.result.is_object())) {
    return Corrupt(path, "\"request\", \"capability_args\" or \"result\" has the wrong type");
  }
  return std::optional<AttachmentRecord>(std::move(r));
}

absl::Status AttachmentCache::Write(const AttachmentRecord& record) const {
  json j = {{"version", kRecordVersion},
            {"sandbox_id", record.sandbox_id},
            {"ifname", record.ifname},
            {"network", record.network},
            {"config_file", record.config_file},
            {"config", record.config},
            {"request", record.request},
            {"capability_args", record.capability_args},
            {"result", record.result}};
  absl::Status s = WriteFileDurably(PathOf(record.sandbox_id), j.dump());
  if (!s.ok()) {
    return absl::Status(s.code(), "cannot write the CNI attachment record of sandbox " +
                                      record.sandbox_id + ": " + std::string(s.message()));
  }
  return absl::OkStatus();
}

absl::Status AttachmentCache::Remove(std::string_view sandbox_id) const {
  return RemoveFileDurably(PathOf(sandbox_id));
}

absl::StatusOr<std::vector<std::string>> AttachmentCache::List() const {
  std::vector<std::string> ids;
  std::error_code ec;
  fs::directory_iterator it(dir_, ec);
  for (; !ec && it != fs::directory_iterator(); it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (!name.ends_with(kSuffix)) continue;
    name.resize(name.size() - std::string_view(kSuffix).size());
    if (!ValidateSandboxId(name).ok()) continue;  // not ours (".tmp-*", stray files)
    ids.push_back(std::move(name));
  }
  if (ec) {
    return absl::InternalError("cannot list the CNI attachment records in " + dir_ + ": " +
                               ec.message());
  }
  std::sort(ids.begin(), ids.end());
  return ids;
}

}  // namespace berth::cni
