// SPDX-License-Identifier: Apache-2.0
#include "plugins/cni/cni_request.h"

#include <algorithm>
#include <cctype>
#include <string>

#include "core/status_macros.h"

namespace berth::cni {
namespace {

using nlohmann::json;

constexpr size_t kMaxSandboxId = 250;
constexpr uint64_t kMinBandwidth = 1000;                 // 1k: the kubelet's lower bound
constexpr uint64_t kMaxBandwidth = 1000000000000000ULL;  // 1P: its upper bound

absl::Status Invalid(const std::string& what) {
  return absl::InvalidArgumentError("network request: " + what);
}

absl::StatusOr<std::string> StringField(const json& j, const char* key) {
  if (!j.contains(key) || j[key].is_null()) return std::string();
  if (!j[key].is_string()) {
    return Invalid(std::string("\"") + key + "\" must be a string, got " + j[key].dump());
  }
  return j[key].get<std::string>();
}

// A value that goes into CNI_ARGS: no separators, no control characters.
absl::Status CheckArgValue(const char* key, const std::string& value) {
  for (unsigned char c : value) {
    if (c == ';' || c == '=' || c < 0x20 || c == 0x7f) {
      return Invalid(std::string("\"") + key + "\" \"" + value +
                     "\" holds a character CNI_ARGS cannot carry (';', '=' or a control "
                     "character)");
    }
  }
  return absl::OkStatus();
}

// Empty, or an absolute directory without "." or ".." components (nor NUL).
absl::Status CheckConfDir(const std::string& dir) {
  if (dir.empty()) return absl::OkStatus();
  bool ok = dir[0] == '/' && dir.find('\0') == std::string::npos;
  for (size_t i = 0; ok && i < dir.size();) {
    size_t end = dir.find('/', i);
    if (end == std::string::npos) end = dir.size();
    const std::string_view segment = std::string_view(dir).substr(i, end - i);
    ok = segment != "." && segment != "..";
    i = end + 1;
  }
  if (!ok) {
    return Invalid("\"conf_dir\" must be an absolute directory without \".\" or \"..\" "
                   "components, got \"" + dir + "\"");
  }
  return absl::OkStatus();
}

absl::StatusOr<int> PortField(const json& m, const char* key, size_t index, int min) {
  if (!m.contains(key) || m[key].is_null()) {
    if (min == 0) return 0;
    return Invalid("port_mappings[" + std::to_string(index) + "]: \"" + key + "\" is missing");
  }
  const json& v = m[key];
  if (!v.is_number_integer() || v.get<int64_t>() < min || v.get<int64_t>() > 65535) {
    return Invalid("port_mappings[" + std::to_string(index) + "]: \"" + key +
                   "\" must be a port number (" + std::to_string(min) + " to 65535), got " +
                   v.dump());
  }
  return static_cast<int>(v.get<int64_t>());
}

std::string Trim(std::string_view s) {
  size_t b = s.find_first_not_of(" \t");
  if (b == std::string_view::npos) return "";
  size_t e = s.find_last_not_of(" \t");
  return std::string(s.substr(b, e - b + 1));
}

absl::StatusOr<uint64_t> AnnotationBandwidth(const std::string& name, const std::string& value) {
  absl::StatusOr<uint64_t> v = ParseBandwidth(Trim(value));
  if (!v.ok()) {
    return absl::InvalidArgumentError("annotation " + name + ": " +
                                      std::string(v.status().message()));
  }
  return v;
}

}  // namespace

absl::Status ValidateSandboxId(std::string_view id) {
  if (id.empty()) return Invalid("\"sandbox_id\" is empty");
  if (id.size() > kMaxSandboxId) {
    return Invalid("\"sandbox_id\" is " + std::to_string(id.size()) + " bytes long (at most " +
                   std::to_string(kMaxSandboxId) + ")");
  }
  bool ok = std::isalnum(static_cast<unsigned char>(id[0])) != 0;
  for (char c : id) {
    ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-');
  }
  if (!ok) {
    return Invalid("\"sandbox_id\" \"" + std::string(id) +
                   "\" is not a plain name (a letter or digit, then letters, digits, '_', '.' "
                   "or '-')");
  }
  return absl::OkStatus();
}

absl::StatusOr<AttachRequest> ParseAttachRequest(std::string_view request_json) {
  json j = json::parse(request_json, nullptr, false);
  if (!j.is_object()) return Invalid("not a JSON object");
  AttachRequest r;
  ASSIGN_OR_RETURN(r.sandbox_id, StringField(j, "sandbox_id"));
  RETURN_IF_ERROR(ValidateSandboxId(r.sandbox_id));
  ASSIGN_OR_RETURN(r.netns, StringField(j, "netns"));
  ASSIGN_OR_RETURN(r.pod_name, StringField(j, "pod_name"));
  ASSIGN_OR_RETURN(r.pod_namespace, StringField(j, "pod_namespace"));
  ASSIGN_OR_RETURN(r.pod_uid, StringField(j, "pod_uid"));
  ASSIGN_OR_RETURN(r.pod_cidr, StringField(j, "pod_cidr"));
  ASSIGN_OR_RETURN(r.conf_dir, StringField(j, "conf_dir"));
  RETURN_IF_ERROR(CheckConfDir(r.conf_dir));
  RETURN_IF_ERROR(CheckArgValue("pod_name", r.pod_name));
  RETURN_IF_ERROR(CheckArgValue("pod_namespace", r.pod_namespace));
  RETURN_IF_ERROR(CheckArgValue("pod_uid", r.pod_uid));

  if (j.contains("port_mappings") && !j["port_mappings"].is_null()) {
    const json& pms = j["port_mappings"];
    if (!pms.is_array()) return Invalid("\"port_mappings\" must be a list, got " + pms.dump());
    for (size_t i = 0; i < pms.size(); ++i) {
      const json& m = pms[i];
      const std::string where = "port_mappings[" + std::to_string(i) + "]";
      if (!m.is_object()) return Invalid(where + " is not an object");
      PortMapping pm;
      ASSIGN_OR_RETURN(pm.protocol, StringField(m, "protocol"));
      std::transform(pm.protocol.begin(), pm.protocol.end(), pm.protocol.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      if (pm.protocol.empty()) pm.protocol = "tcp";
      if (pm.protocol != "tcp" && pm.protocol != "udp" && pm.protocol != "sctp") {
        return Invalid(where + ": protocol \"" + pm.protocol + "\" is not tcp, udp or sctp");
      }
      ASSIGN_OR_RETURN(pm.container_port, PortField(m, "container_port", i, 1));
      ASSIGN_OR_RETURN(pm.host_port, PortField(m, "host_port", i, 0));
      ASSIGN_OR_RETURN(pm.host_ip, StringField(m, "host_ip"));
      r.port_mappings.push_back(std::move(pm));
    }
  }
  if (j.contains("annotations") && !j["annotations"].is_null()) {
    const json& a = j["annotations"];
    if (!a.is_object()) return Invalid("\"annotations\" must be an object, got " + a.dump());
    for (const auto& [key, value] : a.items()) {
      if (!value.is_string()) {
        return Invalid("annotation \"" + key + "\" must be a string, got " + value.dump());
      }
      r.annotations[key] = value.get<std::string>();
    }
  }
  r.raw = std::move(j);
  return r;
}

std::string CniArgs(const AttachRequest& request) {
  return "IgnoreUnknown=1;K8S_POD_NAMESPACE=" + request.pod_namespace +
         ";K8S_POD_NAME=" + request.pod_name + ";K8S_POD_INFRA_CONTAINER_ID=" + request.sandbox_id +
         ";K8S_POD_UID=" + request.pod_uid;
}

absl::StatusOr<json> CapabilityArgs(const AttachRequest& request) {
  json caps = json::object();
  json mappings = json::array();
  for (const PortMapping& pm : request.port_mappings) {
    if (pm.host_port == 0) continue;
    json m = {{"hostPort", pm.host_port},
              {"containerPort", pm.container_port},
              {"protocol", pm.protocol}};
    if (!pm.host_ip.empty()) m["hostIP"] = pm.host_ip;
    mappings.push_back(std::move(m));
  }
  if (!mappings.empty()) caps["portMappings"] = std::move(mappings);

  json bandwidth = json::object();
  if (auto it = request.annotations.find(kIngressBandwidthAnnotation);
      it != request.annotations.end()) {
    ASSIGN_OR_RETURN(uint64_t rate, AnnotationBandwidth(it->first, it->second));
    bandwidth["ingressRate"] = rate;
    bandwidth["ingressBurst"] = rate;
  }
  if (auto it = request.annotations.find(kEgressBandwidthAnnotation);
      it != request.annotations.end()) {
    ASSIGN_OR_RETURN(uint64_t rate, AnnotationBandwidth(it->first, it->second));
    bandwidth["egressRate"] = rate;
    bandwidth["egressBurst"] = rate;
  }
  if (!bandwidth.empty()) caps["bandwidth"] = std::move(bandwidth);

  if (!request.pod_cidr.empty()) {
    caps["ipRanges"] = json::array({json::array({json{{"subnet", request.pod_cidr}}})});
  }
  if (auto it = request.annotations.find(kIpsAnnotation); it != request.annotations.end()) {
    json ips = json::array();
    std::string_view rest = it->second;
    while (!rest.empty()) {
      size_t comma = rest.find(',');
      std::string ip = Trim(rest.substr(0, comma));
      if (!ip.empty()) ips.push_back(ip);
      rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    }
    if (!ips.empty()) caps["ips"] = std::move(ips);
  }
  if (auto it = request.annotations.find(kMacAnnotation); it != request.annotations.end()) {
    std::string mac = Trim(it->second);
    if (!mac.empty()) caps["mac"] = mac;
  }
  return caps;
}

absl::StatusOr<uint64_t> ParseBandwidth(std::string_view quantity) {
  const std::string q(quantity);
  auto bad = [&q]() {
    return absl::InvalidArgumentError(
        "\"" + q +
        "\" is not a Kubernetes quantity (a number with an optional suffix such as k, M, G, "
        "Ki, Mi, Gi; bits per second, e.g. 10M)");
  };
  std::string_view s = quantity;
  if (!s.empty() && s[0] == '+') s.remove_prefix(1);
  if (!s.empty() && s[0] == '-') {
    return absl::InvalidArgumentError("\"" + q + "\" is negative: a bandwidth must be positive");
  }
  // <digits>[.<digits>] — at most 36 significant digits, which an unsigned __int128 holds.
  unsigned __int128 value = 0;
  int digits = 0, exp10 = 0;
  bool any_digit = false, seen_dot = false;
  while (!s.empty() && (std::isdigit(static_cast<unsigned char>(s[0])) || s[0] == '.')) {
    if (s[0] == '.') {
      if (seen_dot) return bad();
      seen_dot = true;
    } else {
      any_digit = true;
      if (value != 0 || s[0] != '0') {
        if (digits >= 36) return bad();
        value = value * 10 + static_cast<unsigned>(s[0] - '0');
        ++digits;
      }
      if (seen_dot) --exp10;
    }
    s.remove_prefix(1);
  }
  if (!any_digit) return bad();
  int exp2 = 0;
  if (s.size() == 2 && s[1] == 'i') {
    static constexpr std::string_view kBinary = "KMGTPE";
    size_t k = kBinary.find(s[0]);
    if (k == std::string_view::npos) return bad();
    exp2 = 10 * static_cast<int>(k + 1);
  } else if (s.size() == 1) {
    switch (s[0]) {
      case 'n':
        exp10 -= 9;
        break;
      case 'u':
        exp10 -= 6;
        break;
      case 'm':
        exp10 -= 3;
        break;
      case 'k':
        exp10 += 3;
        break;
      case 'M':
        exp10 += 6;
        break;
      case 'G':
        exp10 += 9;
        break;
      case 'T':
        exp10 += 12;
        break;
      case 'P':
        exp10 += 15;
        break;
      case 'E':
        exp10 += 18;
        break;
      default:
        return bad();
    }
  } else if (!s.empty() && (s[0] == 'e' || s[0] == 'E')) {
    s.remove_prefix(1);
    bool negative = false;
    if (!s.empty() && (s[0] == '+' || s[0] == '-')) {
      negative = s[0] == '-';
      s.remove_prefix(1);
    }
    if (s.empty() || s.size() > 4 ||
        !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return bad();
    }
    int e = std::stoi(std::string(s));
    exp10 += negative ? -e : e;
  } else if (!s.empty()) {
    return bad();
  }
  auto too_large = [&q]() {
    return absl::InvalidArgumentError("\"" + q + "\" is unreasonably large (more than 1P bit/s)");
  };
  auto too_small = [&q]() {
    return absl::InvalidArgumentError("\"" + q + "\" is unreasonably small (less than 1k bit/s)");
  };
  // Anything above kMaxBandwidth is refused, so saturating there keeps every step exact.
  const unsigned __int128 limit = static_cast<unsigned __int128>(kMaxBandwidth) * 1000;
  for (int i = 0; i < exp2 && value != 0; ++i) {
    value <<= 1;
    if (value > limit) return too_large();
  }
  for (; exp10 > 0 && value != 0; --exp10) {
    value *= 10;
    if (value > limit) return too_large();
  }
  // ceil(ceil(x / 10) / 10) == ceil(x / 100): divide step by step, rounding up.
  for (; exp10 < 0 && value > 1; ++exp10) value = (value + 9) / 10;
  if (value > kMaxBandwidth) return too_large();
  if (value < kMinBandwidth) return too_small();
  return static_cast<uint64_t>(value);
}

}  // namespace berth::cni
