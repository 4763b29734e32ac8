// SPDX-License-Identifier: Apache-2.0
#include "plugins/cri/validate.h"

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace berth::cri {
namespace {

bool LabelNameChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
}

}  // namespace

absl::Status ValidateName(const std::string& value, absl::string_view field) {
  if (value.empty()) return absl::InvalidArgumentError(absl::StrCat(field, " is empty"));
  if (value.size() > 253) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " is ", value.size(), " bytes long (at most 253)"));
  }
  for (unsigned char c : value) {
    if (c <= 0x20 || c == 0x7f || c == '/') {
      return absl::InvalidArgumentError(
          absl::StrCat(field, " \"", absl::CEscape(value),
                       "\" holds a character that is not allowed (whitespace, control or '/')"));
    }
  }
  return absl::OkStatus();
}


absl::Status ValidateLabelKey(const std::string& key, absl::string_view field) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " key \"", absl::CEscape(key), "\": ", why));
  };
  std::string name = key;
  size_t slash = key.rfind('/');
  if (slash != std::string::npos) {
    std::string prefix = key.substr(0, slash);
    name = key.substr(slash + 1);
    if (prefix.empty() || prefix.size() > 253) return bad("the prefix must be 1-253 bytes");
    for (char c : prefix) {
      if (!(absl::ascii_islower(static_cast<unsigned char>(c)) ||
            absl::ascii_isdigit(static_cast<unsigned char>(c)) || c == '-' || c == '.')) {
        return bad("the prefix must be a DNS subdomain ([a-z0-9.-])");
      }
    }
  }
  if (name.empty() || name.size() > 63) return bad("the name must be 1-63 bytes");
  if (!absl::ascii_isalnum(static_cast<unsigned char>(name.front())) ||
      !absl::ascii_isalnum(static_cast<unsigned char>(name.back()))) {
    return bad("the name must begin and end with a letter or digit");
  }
  for (char c : name) {
    if (!LabelNameChar(c)) return bad("the name may hold only [A-Za-z0-9._-]");
  }
  return absl::OkStatus();
}

absl::Status ValidateLabels(const google::protobuf::Map<std::string, std::string>& labels,
                            absl::string_view field) {
  for (const auto& [k, v] : labels) {
    RETURN_IF_ERROR(ValidateLabelKey(k, field));
    if (v.size() > 4096) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, "[\"", k, "\"]: value is ", v.size(), " bytes (at most 4096)"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateAnnotations(const google::protobuf::Map<std::string, std::string>& a,
                                 absl::string_view field) {
  size_t total = 0;
  for (const auto& [k, v] : a) {
    if (k.empty() || k.size() > 317) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, " key \"", absl::CEscape(k), "\" must be 1-317 bytes"));
    }
    total += k.size() + v.size();
  }
  if (total > (256u << 10)) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " total ", total, " bytes (at most 256 KiB, as Kubernetes)"));
  }
  return absl::OkStatus();
}

bool MatchLabels(const google::protobuf::Map<std::string, std::string>& selector,
                 const google::protobuf::Map<std::string, std::string>& labels) {
  for (const auto& [k, v] : selector) {
    auto it = labels.find(k);
    if (it == labels.end() || it->second != v) return false;
  }
  return true;
}

}  // namespace berth::cri
