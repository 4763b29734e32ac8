// SPDX-License-Identifier: Apache-2.0
#include "plugins/image-store/registry/manifest.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cctype>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"
#include "plugins/image-store/registry/reference.h"

namespace berth::image {
namespace {

using json = nlohmann::json;

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), ::tolower);
  return s;
}

// "application/json; charset=utf-8" -> "application/json"
std::string BareMediaType(std::string_view content_type) {
  std::string_view t = content_type.substr(0, content_type.find(';'));
  while (!t.empty() && std::isspace(static_cast<unsigned char>(t.back()))) t.remove_suffix(1);
  while (!t.empty() && std::isspace(static_cast<unsigned char>(t.front()))) t.remove_prefix(1);
  return Lower(std::string(t));
}

bool IsSchema1(std::string_view media_type) {
  return media_type == kMediaTypeDockerSchema1 || media_type == kMediaTypeDockerSchema1Signed;
}

absl::Status Schema1Error(std::string_view what) {
  return absl::UnimplementedError(
      absl::StrCat(std::string(what),
                   " is a Docker image manifest schema 1, which berth does not support "
                   "(deprecated since 2017): push the image again with a current Docker or "
                   "any OCI tool to get a schema 2 or OCI manifest"));
}

absl::StatusOr<json> ParseJson(std::string_view bytes, std::string_view what) {
  json doc = json::parse(bytes.begin(), bytes.end(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) {
    // Parse again with exceptions for the position of the error.
    std::string detail;
    try {
      json again = json::parse(bytes.begin(), bytes.end());
    } catch (const json::exception& e) {
      detail = e.what();
    }
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(what), " is not valid JSON (", bytes.size(), " bytes): ", detail));
  }
  if (!doc.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(std::string(what), " is not a JSON object"));
  }
  return doc;
}

absl::Status Invalid(std::string_view what, std::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat(std::string(what), " is invalid: ", std::string(why)));
}

absl::StatusOr<std::map<std::string, std::string>> ParseAnnotations(const json& j,
                                                                    std::string_view what,
                                                                    std::string_view field) {
  std::map<std::string, std::string> out;
  if (!j.contains("annotations") || j["annotations"].is_null()) return out;
  const json& a = j["annotations"];
  if (!a.is_object())
    return Invalid(what, absl::StrCat(std::string(field), ".annotations is not an object"));
  for (auto it = a.begin(); it != a.end(); ++it) {
    if (!it.value().is_string()) {
      return Invalid(what, absl::StrCat(std::string(field), ".annotations[\"", it.key(),
                                        "\"] is not a string"));
    }
    out[it.key()] = it.value().get<std::string>();
  }
  return out;
}

absl::StatusOr<Descriptor> ParseDescriptor(const json& j, std::string_view what,
                                           std::string_view field) {
  std::string f(field);
  if (!j.is_object()) return Invalid(what, f + " is not a descriptor object");
  Descriptor d;
  if (j.contains("mediaType")) {
    if (!j["mediaType"].is_string()) return Invalid(what, f + ".mediaType is not a string");
    d.media_type = j["mediaType"].get<std::string>();
  }
  if (!j.contains("digest") || !j["digest"].is_string()) {
    return Invalid(what, f + " has no digest");
  }
  d.digest = j["digest"].get<std::string>();
  if (absl::Status s = ValidateDigest(d.digest); !s.ok()) {
    return Invalid(what, absl::StrCat(f, ": ", std::string(s.message())));
  }
  if (!j.contains("size") || !j["size"].is_number_integer() || j["size"].get<int64_t>() < 0) {
    return Invalid(what, f + " has no valid size (a non-negative integer)");
  }
  d.size = j["size"].get<int64_t>();
  auto annotations = ParseAnnotations(j, what, field);
  if (!annotations.ok()) return annotations.status();
  d.annotations = std::move(*annotations);
  if (j.contains("urls") && j["urls"].is_array()) {
    for (const json& u : j["urls"]) {
      if (u.is_string()) d.urls.push_back(u.get<std::string>());
    }
  }
  if (j.contains("platform") && !j["platform"].is_null()) {
    const json& p = j["platform"];
    if (!p.is_object() || !p.contains("os") || !p["os"].is_string() ||
        !p.contains("architecture") || !p["architecture"].is_string()) {
      return Invalid(what, f + ".platform needs string \"os\" and \"architecture\"");
    }
    Platform plat;
    plat.os = p["os"].get<std::string>();
    plat.architecture = p["architecture"].get<std::string>();
    if (p.contains("variant") && p["variant"].is_string()) {
      plat.variant = p["variant"].get<std::string>();
    }
    if (p.contains("os.version") && p["os.version"].is_string()) {
      plat.os_version = p["os.version"].get<std::string>();
    }
    d.platform = plat;
  }
  return d;
}

absl::Status CheckSchemaVersion(const json& doc, std::string_view what) {
  if (!doc.contains("schemaVersion") || !doc["schemaVersion"].is_number_integer()) {
    return Invalid(what, "schemaVersion is missing");
  }
  int v = doc["schemaVersion"].get<int>();
  if (v == 1) return Schema1Error(what);
  if (v != 2) return Invalid(what, absl::StrCat("schemaVersion is ", v, ", want 2"));
  return absl::OkStatus();
}

// A variant as a comparable number for the architectures whose variants are ordered levels;
// nullopt for the others (their variants must match exactly).
std::optional<int> VariantRank(const std::string& arch, const std::string& variant) {
  auto parse = [](std::string_view v, int dflt) -> std::optional<int> {
    if (v.empty()) return dflt;
    if (v.front() == 'v') v.remove_prefix(1);
    int major = 0, minor = 0;
    size_t i = 0;
    if (i >= v.size() || !std::isdigit(static_cast<unsigned char>(v[i]))) return std::nullopt;
    while (i < v.size() && std::isdigit(static_cast<unsigned char>(v[i])))
      major = major * 10 + (v[i++] - '0');
    if (i < v.size() && v[i] == '.') {
      ++i;
      while (i < v.size() && std::isdigit(static_cast<unsigned char>(v[i])))
        minor = minor * 10 + (v[i++] - '0');
    }
    if (i != v.size()) return std::nullopt;
    return major * 100 + minor;
  };
  if (arch == "amd64") return parse(variant, 100);
  if (arch == "arm64") return parse(variant, 800);
  if (arch == "arm") return parse(variant, 700);
  return std::nullopt;
}

}  // namespace

bool IsIndexMediaType(std::string_view t) {
  return t == kMediaTypeOciIndex || t == kMediaTypeDockerManifestList;
}

bool IsManifestMediaType(std::string_view t) {
  return t == kMediaTypeOciManifest || t == kMediaTypeDockerManifest;
}

std::string Platform::String() const {
  std::string s = absl::StrCat(os, "/", architecture);
  if (!variant.empty()) absl::StrAppend(&s, "/", variant);
  return s;
}

Platform NormalizePlatform(Platform p) {
  p.os = Lower(p.os);
  p.architecture = Lower(p.architecture);
  p.variant = Lower(p.variant);
  const std::string& a = p.architecture;
  if (a == "x86_64" || a == "x86-64" || a == "amd64") {
    p.architecture = "amd64";
    if (p.variant == "v1") p.variant = "";
  } else if (a == "i386" || a == "i486" || a == "i586" || a == "i686") {
    p.architecture = "386";
    p.variant = "";
  } else if (a == "aarch64" || a == "arm64") {
    p.architecture = "arm64";
    if (p.variant == "8" || p.variant == "v8" || p.variant == "v8.0") p.variant = "";
  } else if (a == "armhf") {
    p.architecture = "arm";
    p.variant = "v7";
  } else if (a == "armel") {
    p.architecture = "arm";
    p.variant = "v6";
  } else if (a == "arm" || a.rfind("armv", 0) == 0) {
    if (a.size() > 4 && a.rfind("armv", 0) == 0) p.variant = "v" + a.substr(4, 1);
    p.architecture = "arm";
    if (p.variant.empty()) p.variant = "v7";
    if (p.variant.size() == 1 && std::isdigit(static_cast<unsigned char>(p.variant[0]))) {
      p.variant = "v" + p.variant;
    }
  }
  return p;
}

Platform HostPlatform() {
  Platform p;
  p.os = "linux";
#if defined(__x86_64__)
  p.architecture = "amd64";
#elif defined(__aarch64__)
  p.architecture = "arm64";
  p.variant = "v8";
#elif defined(__arm__)
  p.architecture = "arm";
#if defined(__ARM_ARCH)
  p.variant = absl::StrCat("v", __ARM_ARCH);
#else
  p.variant = "v7";
#endif
#elif defined(__i386__)
  p.architecture = "386";
#elif defined(__powerpc64__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  p.architecture = "ppc64le";
#elif defined(__s390x__)
  p.architecture = "s390x";
#elif defined(__riscv) && __riscv_xlen == 64
  p.architecture = "riscv64";
#elif defined(__loongarch64)
  p.architecture = "loong64";
#else
  p.architecture = "unknown";
#endif
  return p;
}

absl::StatusOr<std::string> DetectManifestMediaType(std::string_view bytes,
                                                    std::string_view content_type,
                                                    std::string_view what) {
  std::string ct = BareMediaType(content_type);
  if (IsSchema1(ct)) return Schema1Error(what);
  auto doc = ParseJson(bytes, what);
  if (!doc.ok()) return doc.status();
  if (doc->contains("schemaVersion") && (*doc)["schemaVersion"] == 1) return Schema1Error(what);
  if (doc->contains("mediaType") && (*doc)["mediaType"].is_string()) {
    std::string mt = (*doc)["mediaType"].get<std::string>();
    if (IsSchema1(mt)) return Schema1Error(what);
    if (IsIndexMediaType(mt) || IsManifestMediaType(mt)) return mt;
    return absl::UnimplementedError(absl::StrCat(
        std::string(what), " has media type \"", mt,
        "\", which is neither an image manifest nor an index (berth pulls OCI and Docker "
        "schema 2 images)"));
  }
  if (IsIndexMediaType(ct) || IsManifestMediaType(ct)) return ct;
  if (doc->contains("manifests")) return std::string(kMediaTypeOciIndex);
  if (doc->contains("config") && doc->contains("layers")) return std::string(kMediaTypeOciManifest);
  return absl::InvalidArgumentError(
      absl::StrCat(std::string(what),
                   " is neither an image manifest nor an index (no mediaType, Content-Type \"", ct,
                   "\", neither \"manifests\" nor \"config\" and \"layers\")"));
}

absl::StatusOr<ImageManifest> ParseImageManifest(std::string_view bytes,
                                                 std::string_view media_type,
                                                 std::string_view what) {
  auto doc = ParseJson(bytes, what);
  if (!doc.ok()) return doc.status();
  if (absl::Status s = CheckSchemaVersion(*doc, what); !s.ok()) return s;
  ImageManifest m;
  m.media_type = std::string(media_type);
  if (!doc->contains("config")) return Invalid(what, "it has no config descriptor");
  auto config = ParseDescriptor((*doc)["config"], what, "config");
  if (!config.ok()) return config.status();
  m.config = std::move(*config);
  if (!doc->contains("layers") || !(*doc)["layers"].is_array()) {
    return Invalid(what, "\"layers\" is missing or not an array");
  }
  size_t i = 0;
  for (const json& l : (*doc)["layers"]) {
    auto layer = ParseDescriptor(l, what, absl::StrCat("layers[", i++, "]"));
    if (!layer.ok()) return layer.status();
    m.layers.push_back(std::move(*layer));
  }
  auto annotations = ParseAnnotations(*doc, what, "manifest");
  if (!annotations.ok()) return annotations.status();
  m.annotations = std::move(*annotations);
  return m;
}

absl::StatusOr<ImageIndex> ParseImageIndex(std::string_view bytes, std::string_view media_type,
                                           std::string_view what) {
  auto doc = ParseJson(bytes, what);
  if (!doc.ok()) return doc.status();
  if (absl::Status s = CheckSchemaVersion(*doc, what); !s.ok()) return s;
  ImageIndex idx;
  idx.media_type = std::string(media_type);
  if (!doc->contains("manifests") || !(*doc)["manifests"].is_array()) {
    return Invalid(what, "\"manifests\" is missing or not an array");
  }
  size_t i = 0;
  for (const json& m : (*doc)["manifests"]) {
    auto d = ParseDescriptor(m, what, absl::StrCat("manifests[", i++, "]"));
    if (!d.ok()) return d.status();
    idx.manifests.push_back(std::move(*d));
  }
  auto annotations = ParseAnnotations(*doc, what, "index");
  if (!annotations.ok()) return annotations.status();
  idx.annotations = std::move(*annotations);
  return idx;
}

absl::StatusOr<Descriptor> SelectPlatform(const std::vector<Descriptor>& manifests,
                                          const Platform& want_in, std::string_view what) {
  Platform want = NormalizePlatform(want_in);
  std::optional<int> want_rank = VariantRank(want.architecture, want.variant);
  const Descriptor* best = nullptr;
  int best_rank = -1;
  const Descriptor* no_platform = nullptr;
  std::vector<std::string> offered;
  for (const Descriptor& d : manifests) {
    bool usable_type =
        d.media_type.empty() || IsManifestMediaType(d.media_type) || IsIndexMediaType(d.media_type);
    if (!usable_type) continue;
    if (!d.platform.has_value()) {
      if (no_platform == nullptr) no_platform = &d;
      continue;
    }
    Platform p = NormalizePlatform(*d.platform);
    offered.push_back(p.String());
    if (p.os != want.os || p.architecture != want.architecture) continue;
    int rank;
    if (want_rank.has_value()) {
      std::optional<int> r = VariantRank(p.architecture, p.variant);
      if (!r.has_value() || *r > *want_rank) continue;
      rank = *r;
    } else {
      if (p.variant != want.variant) continue;
      rank = 0;
    }
    if (rank > best_rank) {
      best = &d;
      best_rank = rank;
    }
  }
  if (best != nullptr) return *best;
  if (no_platform != nullptr) return *no_platform;
  return absl::NotFoundError(absl::StrCat(
      "no image for platform ", want.String(), " in ", std::string(what), " (it offers ",
      offered.empty() ? std::string("no platforms") : absl::StrJoin(offered, ", "), ")"));
}

std::string ComputeDigest(std::string_view algorithm, std::string_view data) {
  const EVP_MD* md = algorithm == "sha512" ? EVP_sha512() : EVP_sha256();
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), out, &len, md, nullptr);
  static const char kHex[] = "0123456789abcdef";
  std::string s = absl::StrCat(std::string(algorithm), ":");
  for (unsigned int i = 0; i < len; ++i) {
    s += kHex[out[i] >> 4];
    s += kHex[out[i] & 0xf];
  }
  return s;
}

absl::Status VerifyDigest(std::string_view digest, std::string_view data, std::string_view what) {
  if (absl::Status s = ValidateDigest(digest); !s.ok()) return s;
  std::string algo(digest.substr(0, digest.find(':')));
  std::string got = ComputeDigest(algo, data);
  if (got != digest) {
    return absl::DataLossError(absl::StrCat(std::string(what), ": content digest is ", got,
                                            ", expected ", std::string(digest), " (", data.size(),
                                            " bytes); the registry served corrupt or different "
                                            "content"));
  }
  return absl::OkStatus();
}

absl::StatusOr<DigestVerifier> DigestVerifier::Create(std::string_view digest) {
  if (absl::Status s = ValidateDigest(digest); !s.ok()) return s;
  DigestVerifier v;
  v.digest_ = std::string(digest);
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  const EVP_MD* md = digest.rfind("sha512:", 0) == 0 ? EVP_sha512() : EVP_sha256();
  if (ctx == nullptr || EVP_DigestInit_ex(ctx, md, nullptr) != 1) {
    EVP_MD_CTX_free(ctx);
    return absl::InternalError("cannot initialise an OpenSSL digest context");
  }
  v.ctx_ = ctx;
  return v;
}

DigestVerifier::DigestVerifier(DigestVerifier&& o) noexcept
    : digest_(std::move(o.digest_)), ctx_(o.ctx_), bytes_(o.bytes_) {
  o.ctx_ = nullptr;
}

DigestVerifier& DigestVerifier::operator=(DigestVerifier&& o) noexcept {
  if (this != &o) {
    EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(ctx_));
    digest_ = std::move(o.digest_);
    ctx_ = o.ctx_;
    bytes_ = o.bytes_;
    o.ctx_ = nullptr;
  }
  return *this;
}

DigestVerifier::~DigestVerifier() { EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(ctx_)); }

void DigestVerifier::Update(std::string_view chunk) {
  EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(ctx_), chunk.data(), chunk.size());
  bytes_ += static_cast<int64_t>(chunk.size());
}

absl::Status DigestVerifier::Finish(std::string_view what) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(static_cast<EVP_MD_CTX*>(ctx_), out, &len);
  static const char kHex[] = "0123456789abcdef";
  std::string got = digest_.substr(0, digest_.find(':') + 1);
  for (unsigned int i = 0; i < len; ++i) {
    got += kHex[out[i] >> 4];
    got += kHex[out[i] & 0xf];
  }
  if (got != digest_) {
    return absl::DataLossError(absl::StrCat(std::string(what), ": content digest is ", got,
                                            ", expected ", digest_, " (", bytes_,
                                            " bytes); the registry served corrupt or different "
                                            "content"));
  }
  return absl::OkStatus();
}

}  // namespace berth::image
