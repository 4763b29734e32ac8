// SPDX-License-Identifier: Apache-2.0
#include "plugins/cri/cdi.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "core/status_macros.h"

namespace berth::cri {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr size_t kMaxSpecBytes = 4 << 20;
// The spec versions whose fields berth knows; a newer file may carry edits berth would
// silently leave out, so it is refused.
constexpr const char* kKnownVersions[] = {"0.3.0", "0.4.0", "0.5.0", "0.6.0", "0.7.0", "0.8.0"};
constexpr const char* kHookNames[] = {"prestart",       "createRuntime", "createContainer",
                                      "startContainer", "poststart",     "poststop"};

bool IsLetter(char c) { return absl::ascii_isalpha(static_cast<unsigned char>(c)); }
bool IsAlnum(char c) { return absl::ascii_isalnum(static_cast<unsigned char>(c)); }

// The CDI library's rules (parser.go): a vendor is a letter, then letters, digits, '-', '_',
// '.', ending with a letter or digit; a class the same without '.'; a device name starts and
// ends with a letter or digit and may hold '-', '_', '.', ':' in between.
bool ValidVendor(absl::string_view s) {
  if (s.empty() || !IsLetter(s.front()) || !IsAlnum(s.back())) return false;
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return IsAlnum(c) || c == '-' || c == '_' || c == '.'; });
}
bool ValidClass(absl::string_view s) {
  if (s.empty() || !IsLetter(s.front()) || !IsAlnum(s.back())) return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return IsAlnum(c) || c == '-' || c == '_'; });
}
bool ValidDeviceName(absl::string_view s) {
  if (s.empty() || !IsAlnum(s.front()) || !IsAlnum(s.back())) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return IsAlnum(c) || c == '-' || c == '_' || c == '.' || c == ':';
  });
}
bool ValidKind(absl::string_view kind) {
  size_t slash = kind.find('/');
  return slash != absl::string_view::npos && ValidVendor(kind.substr(0, slash)) &&
         ValidClass(kind.substr(slash + 1));
}

std::string ErrnoText(int err) {
  std::string s = std::strerror(err);
  if (!s.empty()) s[0] = absl::ascii_tolower(static_cast<unsigned char>(s[0]));
  return s;
}

absl::Status Bad(absl::string_view path, absl::string_view field, absl::string_view why) {
  return absl::InvalidArgumentError(field.empty() ? absl::StrCat(path, ": ", why)
                                                  : absl::StrCat(path, ": ", field, ": ", why));
}

// ---------------------------------------------------------------------------------------
// Validation of containerEdits. Every check names the JSON path inside the file.

absl::Status CheckString(const json& obj, const char* key, bool required, absl::string_view path,
                         const std::string& field) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) {
    if (required) return Bad(path, absl::StrCat(field, ".", key), "missing");
    return absl::OkStatus();
  }
  if (!it->is_string()) return Bad(path, absl::StrCat(field, ".", key), "not a string");
  if (required && it->get_ref<const std::string&>().empty()) {
    return Bad(path, absl::StrCat(field, ".", key), "empty");
  }
  return absl::OkStatus();
}

absl::Status CheckStringArray(const json& obj, const char* key, absl::string_view path,
                              const std::string& field) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_array()) return Bad(path, absl::StrCat(field, ".", key), "not an array");
  for (size_t i = 0; i < it->size(); ++i) {
    if (!(*it)[i].is_string()) {
      return Bad(path, absl::StrCat(field, ".", key, "[", i, "]"), "not a string");
    }
  }
  return absl::OkStatus();
}

absl::Status CheckUnsigned(const json& obj, const char* key, absl::string_view path,
                           const std::string& field) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_number_unsigned() && !(it->is_number_integer() && it->get<int64_t>() >= 0)) {
    return Bad(path, absl::StrCat(field, ".", key), "not a non-negative integer");
  }
  return absl::OkStatus();
}

// An array of objects under `key` (absent is fine); calls `each` with the element's field.
template <typename F>
absl::Status ForEachObject(const json& obj, const char* key, absl::string_view path,
                           const std::string& field, F each) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_array()) return Bad(path, absl::StrCat(field, ".", key), "not an array");
  for (size_t i = 0; i < it->size(); ++i) {
    const std::string f = absl::StrCat(field, ".", key, "[", i, "]");
    if (!(*it)[i].is_object()) return Bad(path, f, "not an object");
    RETURN_IF_ERROR(each((*it)[i], f));
  }
  return absl::OkStatus();
}

absl::Status CheckEdits(const json& edits, absl::string_view path, const std::string& field) {
  if (edits.is_null()) return absl::OkStatus();
  if (!edits.is_object()) return Bad(path, field, "not an object");
  RETURN_IF_ERROR(CheckStringArray(edits, "env", path, field));
  if (auto it = edits.find("env"); it != edits.end() && it->is_array()) {
    for (size_t i = 0; i < it->size(); ++i) {
      const std::string& e = (*it)[i].get_ref<const std::string&>();
      if (e.find('=') == std::string::npos || e.front() == '=') {
        return Bad(path, absl::StrCat(field, ".env[", i, "]"),
                   absl::StrCat("\"", e, "\" is not KEY=VALUE"));
      }
    }
  }
  RETURN_IF_ERROR(ForEachObject(
      edits, "deviceNodes", path, field, [&](const json& d, const std::string& f) -> absl::Status {
        RETURN_IF_ERROR(CheckString(d, "path", true, path, f));
        if (d["path"].get_ref<const std::string&>().front() != '/') {
          return Bad(path, f + ".path", "must be an absolute path");
        }
        RETURN_IF_ERROR(CheckString(d, "hostPath", false, path, f));
        RETURN_IF_ERROR(CheckString(d, "type", false, path, f));
        RETURN_IF_ERROR(CheckString(d, "permissions", false, path, f));
        for (const char* k : {"major", "minor", "fileMode", "uid", "gid"}) {
          RETURN_IF_ERROR(CheckUnsigned(d, k, path, f));
        }
        const std::string type = d.value("type", "");
        if (!type.empty() && type != "b" && type != "c" && type != "u" && type != "p") {
          return Bad(path, f + ".type", absl::StrCat("\"", type, "\" is not b, c, u or p"));
        }
        const std::string perms = d.value("permissions", "");
        std::string seen;
        for (char c : perms) {
          if ((c != 'r' && c != 'w' && c != 'm') || seen.find(c) != std::string::npos) {
            return Bad(
                path, f + ".permissions",
                absl::StrCat("\"", perms, "\" must be made of r, w and m, each at most once"));
          }
          seen.push_back(c);
        }
        return absl::OkStatus();
      }));
  RETURN_IF_ERROR(ForEachObject(
      edits, "mounts", path, field, [&](const json& m, const std::string& f) -> absl::Status {
        RETURN_IF_ERROR(CheckString(m, "hostPath", true, path, f));
        RETURN_IF_ERROR(CheckString(m, "containerPath", true, path, f));
        if (m["containerPath"].get_ref<const std::string&>().front() != '/') {
          return Bad(path, f + ".containerPath", "must be an absolute path");
        }
        RETURN_IF_ERROR(CheckString(m, "type", false, path, f));
        return CheckStringArray(m, "options", path, f);
      }));
  RETURN_IF_ERROR(ForEachObject(
      edits, "hooks", path, field, [&](const json& h, const std::string& f) -> absl::Status {
        RETURN_IF_ERROR(CheckString(h, "hookName", true, path, f));
        const std::string& name = h["hookName"].get_ref<const std::string&>();
        if (std::find(std::begin(kHookNames), std::end(kHookNames), name) == std::end(kHookNames)) {
          return Bad(path, f + ".hookName",
                     absl::StrCat("unknown hook \"", name,
                                  "\" (known: ", absl::StrJoin(kHookNames, ", "), ")"));
        }
        RETURN_IF_ERROR(CheckString(h, "path", true, path, f));
        RETURN_IF_ERROR(CheckStringArray(h, "args", path, f));
        RETURN_IF_ERROR(CheckStringArray(h, "env", path, f));
        if (auto t = h.find("timeout");
            t != h.end() && !t->is_null() && !(t->is_number_integer() && t->get<int64_t>() > 0)) {
          return Bad(path, f + ".timeout", "not a positive number of seconds");
        }
        return absl::OkStatus();
      }));
  if (auto it = edits.find("additionalGids"); it != edits.end() && !it->is_null()) {
    if (!it->is_array()) return Bad(path, field + ".additionalGids", "not an array");
    for (size_t i = 0; i < it->size(); ++i) {
      const json& g = (*it)[i];
      if (!g.is_number_integer() || g.get<int64_t>() < 0 || g.get<int64_t>() > 0xFFFFFFFFLL) {
        return Bad(path, absl::StrCat(field, ".additionalGids[", i, "]"), "not a gid");
      }
    }
  }
  if (auto it = edits.find("intelRdt"); it != edits.end() && !it->is_null()) {
    if (!it->is_object()) return Bad(path, field + ".intelRdt", "not an object");
    for (const char* k : {"closID", "l3CacheSchema", "memBwSchema"}) {
      RETURN_IF_ERROR(CheckString(*it, k, false, path, field + ".intelRdt"));
    }
  }
  return absl::OkStatus();
}

bool EditsEmpty(const json& edits) {
  if (!edits.is_object()) return true;
  for (const char* k : {"env", "deviceNodes", "mounts", "hooks", "additionalGids"}) {
    auto it = edits.find(k);
    if (it != edits.end() && it->is_array() && !it->empty()) return false;
  }
  auto rdt = edits.find("intelRdt");
  return rdt == edits.end() || rdt->is_null();
}

// ---------------------------------------------------------------------------------------
// Applying edits to an OCI spec.

json& Child(json* obj, const char* key, json empty) {
  if (!obj->is_object()) *obj = json::object();
  json& c = (*obj)[key];
  if (c.is_null()) c = std::move(empty);
  return c;
}

void SetEnv(json* spec, const std::string& entry) {
  json& env = Child(&Child(spec, "process", json::object()), "env", json::array());
  const std::string key = entry.substr(0, entry.find('='));
  for (json& e : env) {
    if (e.is_string() && e.get_ref<const std::string&>().substr(0, key.size() + 1) == key + "=") {
      e = entry;
      return;
    }
  }
  env.push_back(entry);
}

size_t Depth(const std::string& path) {
  size_t n = 0;
  for (absl::string_view c : absl::StrSplit(path, '/', absl::SkipEmpty())) {
    if (c != ".") ++n;
  }
  return n;
}

// One device node edit into linux.devices and linux.resources.devices.
absl::Status ApplyDeviceNode(const json& node, const std::string& origin, json* spec) {
  const std::string path = node["path"].get<std::string>();
  std::string host_path = node.value("hostPath", "");
  if (host_path.empty()) host_path = path;
  std::string type = node.value("type", "");
  int64_t major = node.value("major", int64_t{0}), minor = node.value("minor", int64_t{0});
  if (type.empty() || (major == 0 && type != "p")) {
    struct stat st {};
    if (::stat(host_path.c_str(), &st) != 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          origin, ": host device \"", host_path, "\": ", ErrnoText(errno),
          " (the CDI spec names a device this node does not have; is the driver loaded?)"));
    }
    std::string host_type = S_ISCHR(st.st_mode)    ? "c"
                            : S_ISBLK(st.st_mode)  ? "b"
                            : S_ISFIFO(st.st_mode) ? "p"
                                                   : "";
    if (host_type.empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat(origin, ": host path \"", host_path, "\" is not a device node"));
    }
    if (type.empty()) {
      type = host_type;
    } else if (type != host_type && !(type == "u" && host_type == "c")) {
      return absl::FailedPreconditionError(absl::StrCat(origin, ": device \"", path, "\" has type ",
                                                        type, " in the CDI spec but ", host_path,
                                                        " is of type ", host_type, " on the node"));
    }
    if (major == 0 && type != "p") {
      major = ::major(st.st_rdev);
      minor = ::minor(st.st_rdev);
    }
  }
  json dev = {{"path", path}, {"type", type}};
  if (type != "p") {
    dev["major"] = major;
    dev["minor"] = minor;
  }
  if (node.contains("fileMode") && !node["fileMode"].is_null()) dev["fileMode"] = node["fileMode"];
  // Without an owner in the spec, the device belongs to the container's user (CDI library).
  const json& user = (*spec)["process"]["user"];
  for (const char* k : {"uid", "gid"}) {
    if (node.contains(k) && !node[k].is_null()) {
      dev[k] = node[k];
    } else if (user.is_object() && user.value(k, int64_t{0}) > 0) {
      dev[k] = user[k];
    }
  }
  json& linux_section = Child(spec, "linux", json::object());
  json& devices = Child(&linux_section, "devices", json::array());
  devices.erase(std::remove_if(devices.begin(), devices.end(),
                               [&](const json& d) { return d.value("path", "") == path; }),
                devices.end());
  devices.push_back(std::move(dev));
  if (type == "b" || type == "c" || type == "u") {
    std::string access = node.value("permissions", "");
    if (access.empty()) access = "rwm";
    json& rules =
        Child(&Child(&linux_section, "resources", json::object()), "devices", json::array());
    rules.push_back({{"allow", true},
                     {"type", type == "b" ? "b" : "c"},
                     {"major", major},
                     {"minor", minor},
                     {"access", access}});
  }
  return absl::OkStatus();
}

absl::Status ApplyEdits(const json& edits, const std::string& origin, json* spec) {
  if (!edits.is_object()) return absl::OkStatus();
  if (auto it = edits.find("env"); it != edits.end() && it->is_array()) {
    for (const json& e : *it) SetEnv(spec, e.get<std::string>());
  }
  if (auto it = edits.find("deviceNodes"); it != edits.end() && it->is_array()) {
    for (const json& d : *it) RETURN_IF_ERROR(ApplyDeviceNode(d, origin, spec));
  }
  if (auto it = edits.find("mounts"); it != edits.end() && it->is_array()) {
    json& mounts = Child(spec, "mounts", json::array());
    for (const json& m : *it) {
      const std::string dest = m["containerPath"].get<std::string>();
      mounts.erase(
          std::remove_if(mounts.begin(), mounts.end(),
                         [&](const json& x) { return x.value("destination", "") == dest; }),
          mounts.end());
      json out = {{"destination", dest}, {"source", m["hostPath"]}};
      if (m.contains("type") && m["type"].is_string()) out["type"] = m["type"];
      if (m.contains("options") && m["options"].is_array()) out["options"] = m["options"];
      mounts.push_back(std::move(out));
    }
    // Parents before children, as the rest of the spec is ordered (a stable sort by depth).
    std::vector<json> sorted(mounts.begin(), mounts.end());
    std::stable_sort(sorted.begin(), sorted.end(), [](const json& a, const json& b) {
      return Depth(a.value("destination", "")) < Depth(b.value("destination", ""));
    });
    mounts = json(sorted);
  }
  if (auto it = edits.find("hooks"); it != edits.end() && it->is_array()) {
    json& hooks = Child(spec, "hooks", json::object());
    for (const json& h : *it) {
      json hook = {{"path", h["path"]}};
      for (const char* k : {"args", "env", "timeout"}) {
        if (h.contains(k) && !h[k].is_null()) hook[k] = h[k];
      }
      Child(&hooks, h["hookName"].get<std::string>().c_str(), json::array()).push_back(hook);
    }
  }
  if (auto it = edits.find("additionalGids"); it != edits.end() && it->is_array()) {
    json& user = Child(&Child(spec, "process", json::object()), "user", json::object());
    json& gids = Child(&user, "additionalGids", json::array());
    for (const json& g : *it) {
      if (g.get<int64_t>() == 0) continue;
      if (std::find(gids.begin(), gids.end(), g) == gids.end()) gids.push_back(g);
    }
  }
  if (auto it = edits.find("intelRdt"); it != edits.end() && it->is_object()) {
    json rdt = json::object();
    for (const char* k : {"closID", "l3CacheSchema", "memBwSchema", "enableCMT", "enableMBM"}) {
      if (it->contains(k) && !(*it)[k].is_null()) rdt[k] = (*it)[k];
    }
    Child(spec, "linux", json::object())["intelRdt"] = std::move(rdt);
  }
  return absl::OkStatus();
}

bool IsKnownVersion(const std::string& v) {
  return std::find_if(std::begin(kKnownVersions), std::end(kKnownVersions),
                      [&](const char* k) { return v == k; }) != std::end(kKnownVersions);
}

}  // namespace

const std::vector<std::string>& DefaultCdiSpecDirs() {
  static const std::vector<std::string> dirs = {"/etc/cdi", "/var/run/cdi"};
  return dirs;
}

bool ParseCdiQualifiedName(const std::string& qualified, CdiQualifiedName* out) {
  size_t eq = qualified.find('=');
  if (eq == std::string::npos) return false;
  std::string kind = qualified.substr(0, eq), name = qualified.substr(eq + 1);
  if (!ValidKind(kind) || !ValidDeviceName(name)) return false;
  out->kind = std::move(kind);
  out->name = std::move(name);
  return true;
}

absl::StatusOr<std::vector<CdiDeviceRequest>> CdiDeviceRequests(
    const runtime::v1::ContainerConfig& config) {
  std::vector<CdiDeviceRequest> out;
  std::set<std::string> seen;
  auto add = [&](const std::string& name, const std::string& field) -> absl::Status {
    CdiQualifiedName q;
    if (!ParseCdiQualifiedName(name, &q)) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, " \"", name,
          "\": not a qualified CDI device name (vendor.com/class=name, e.g. nvidia.com/gpu=0)"));
    }
    if (seen.insert(name).second) out.push_back({name, field});
    return absl::OkStatus();
  };
  for (int i = 0; i < config.cdi_devices_size(); ++i) {
    RETURN_IF_ERROR(add(config.cdi_devices(i).name(), absl::StrCat("CDI_devices[", i, "].name")));
  }
  std::map<std::string, std::string> annotations(config.annotations().begin(),
                                                 config.annotations().end());
  for (const auto& [key, value] : annotations) {
    if (!absl::StartsWith(key, kCdiAnnotationPrefix)) continue;
    const std::string field = absl::StrCat("annotations[\"", key, "\"]");
    for (absl::string_view part : absl::StrSplit(value, ',')) {
      RETURN_IF_ERROR(add(std::string(absl::StripAsciiWhitespace(part)), field));
    }
  }
  return out;
}

absl::StatusOr<CdiSpec> ParseCdiSpec(const std::string& text, const std::string& path) {
  json doc;
  try {
    doc = json::parse(text);
  } catch (const json::exception& e) {
    if (absl::EndsWith(path, ".yaml") &&
        !absl::StartsWith(absl::StripLeadingAsciiWhitespace(text), "{")) {
      return Bad(path, "",
                 "YAML CDI specs are read only in JSON syntax; write this spec as JSON (e.g. "
                 "nvidia-ctk cdi generate --format=json)");
    }
    return Bad(path, "", absl::StrCat("not valid JSON: ", e.what()));
  }
  if (!doc.is_object()) return Bad(path, "", "not a JSON object");
  CdiSpec spec;
  spec.path = path;
  RETURN_IF_ERROR(CheckString(doc, "cdiVersion", true, path, "spec"));
  const std::string version = doc["cdiVersion"].get<std::string>();
  if (!IsKnownVersion(version)) {
    return Bad(path, "cdiVersion",
               absl::StrCat("\"", version, "\" is not a CDI version berth knows (",
                            absl::StrJoin(kKnownVersions, ", "), ")"));
  }
  RETURN_IF_ERROR(CheckString(doc, "kind", true, path, "spec"));
  spec.kind = doc["kind"].get<std::string>();
  if (!ValidKind(spec.kind)) {
    return Bad(path, "kind",
               absl::StrCat("\"", spec.kind,
                            "\" is not vendor.com/class (vendor: a letter, then "
                            "letters, digits, '-', '_', '.'; class: a letter, then letters, "
                            "digits, '-', '_')"));
  }
  spec.edits = doc.value("containerEdits", json());
  RETURN_IF_ERROR(CheckEdits(spec.edits, path, "containerEdits"));
  auto devs = doc.find("devices");
  if (devs == doc.end() || !devs->is_array() || devs->empty()) {
    return Bad(path, "devices", "missing or empty (a spec defines at least one device)");
  }
  for (size_t i = 0; i < devs->size(); ++i) {
    const json& d = (*devs)[i];
    const std::string f = absl::StrCat("devices[", i, "]");
    if (!d.is_object()) return Bad(path, f, "not an object");
    RETURN_IF_ERROR(CheckString(d, "name", true, path, f));
    const std::string name = d["name"].get<std::string>();
    if (!ValidDeviceName(name)) {
      return Bad(path, f + ".name",
                 absl::StrCat("\"", name,
                              "\" is not a device name (letters, digits, '-', '_', "
                              "'.', ':', starting and ending with a letter or digit)"));
    }
    json edits = d.value("containerEdits", json());
    RETURN_IF_ERROR(CheckEdits(edits, path, f + ".containerEdits"));
    if (EditsEmpty(edits)) return Bad(path, f + ".containerEdits", "missing or empty");
    if (!spec.devices.emplace(name, std::move(edits)).second) {
      return Bad(path, f + ".name", absl::StrCat("\"", name, "\" is defined twice"));
    }
  }
  return spec;
}

CdiRegistry CdiRegistry::Load(const std::vector<std::string>& dirs) {
  CdiRegistry r;
  r.dirs_ = dirs;
  for (size_t prio = 0; prio < dirs.size(); ++prio) {
    const std::string& dir = dirs[prio];
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) continue;  // an absent directory holds no specs
    std::vector<std::string> files;
    for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator();
         it.increment(ec)) {
      const std::string p = it->path().string();
      if (!absl::EndsWith(p, ".json") && !absl::EndsWith(p, ".yaml")) continue;
      std::error_code fec;
      if (!it->is_regular_file(fec)) continue;
      files.push_back(p);
    }
    if (ec) {
      r.errors_.push_back(absl::StrCat(dir, ": cannot list: ", ec.message()));
      continue;
    }
    std::sort(files.begin(), files.end());
    std::map<std::string, std::string> defined_here;  // device -> file, this directory
    for (const std::string& file : files) {
      std::ifstream in(file, std::ios::binary);
      if (!in) {
        r.errors_.push_back(absl::StrCat(file, ": cannot read: ", ErrnoText(errno)));
        continue;
      }
      std::string text(kMaxSpecBytes + 1, '\0');
      in.read(text.data(), static_cast<std::streamsize>(text.size()));
      text.resize(static_cast<size_t>(in.gcount()));
      if (text.size() > kMaxSpecBytes) {
        r.errors_.push_back(absl::StrCat(file, ": larger than ", kMaxSpecBytes, " bytes"));
        continue;
      }
      absl::StatusOr<CdiSpec> spec = ParseCdiSpec(text, file);
      if (!spec.ok()) {
        r.errors_.emplace_back(spec.status().message());
        continue;
      }
      const size_t index = r.specs_.size();
      for (const auto& [name, unused] : spec->devices) {
        const std::string qualified = absl::StrCat(spec->kind, "=", name);
        Entry entry;
        entry.spec = index;
        if (auto d = defined_here.find(qualified); d != defined_here.end()) {
          entry.conflict = d->second;
        }
        defined_here[qualified] = file;
        r.devices_[qualified] = std::move(entry);  // a later directory wins
      }
      r.specs_.push_back(*std::move(spec));
    }
  }
  return r;
}

absl::Status CdiRegistry::Inject(const std::vector<CdiDeviceRequest>& requests,
                                 json* oci_spec) const {
  std::vector<const Entry*> found;
  for (const CdiDeviceRequest& req : requests) {
    auto it = devices_.find(req.name);
    if (it == devices_.end()) {
      CdiQualifiedName q;
      (void)ParseCdiQualifiedName(req.name, &q);
      std::vector<std::string> of_kind;
      for (const auto& [name, unused] : devices_) {
        if (absl::StartsWith(name, q.kind + "=")) of_kind.push_back(name.substr(q.kind.size() + 1));
      }
      std::string why = absl::StrCat("unknown CDI device: no spec file in ",
                                     absl::StrJoin(dirs_, ", "), " defines it");
      if (!of_kind.empty()) {
        absl::StrAppend(&why, " (", q.kind, " has ", absl::StrJoin(of_kind, ", "), ")");
      }
      if (!errors_.empty()) {
        absl::StrAppend(&why, "; spec files skipped: ", absl::StrJoin(errors_, "; "));
      }
      return absl::InvalidArgumentError(absl::StrCat(req.field, " \"", req.name, "\": ", why));
    }
    if (!it->second.conflict.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          req.field, " \"", req.name, "\": defined by both ", it->second.conflict, " and ",
          specs_[it->second.spec].path, " (one directory, same priority): remove one of them"));
    }
    found.push_back(&it->second);
  }
  std::set<size_t> specs_done;
  for (size_t i = 0; i < requests.size(); ++i) {
    const CdiSpec& spec = specs_[found[i]->spec];
    const std::string origin =
        absl::StrCat(requests[i].field, " \"", requests[i].name, "\" (", spec.path, ")");
    if (specs_done.insert(found[i]->spec).second) {
      RETURN_IF_ERROR(ApplyEdits(spec.edits, origin, oci_spec));
    }
    CdiQualifiedName q;
    (void)ParseCdiQualifiedName(requests[i].name, &q);
    RETURN_IF_ERROR(ApplyEdits(spec.devices.at(q.name), origin, oci_spec));
  }
  return absl::OkStatus();
}

absl::Status ApplyCdiDevices(const runtime::v1::ContainerConfig& config,
                             const std::vector<std::string>& spec_dirs, json* oci_spec) {
  ASSIGN_OR_RETURN(std::vector<CdiDeviceRequest> requests, CdiDeviceRequests(config));
  if (requests.empty()) return absl::OkStatus();
  return CdiRegistry::Load(spec_dirs).Inject(requests, oci_spec);
}

}  // namespace berth::cri
