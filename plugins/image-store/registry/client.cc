// SPDX-License-Identifier: Apache-2.0
#include "plugins/image-store/registry/client.h"

#include <algorithm>
#include <cctype>
#include <mutex>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/status_macros.h"
#include "nlohmann/json.hpp"
#include "plugins/image-store/registry/http.h"

namespace berth::image {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr char kManifestAccept[] =
    "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json, "
    "application/vnd.docker.distribution.manifest.v2+json, */*";
constexpr size_t kMaxErrorBody = 64 << 10;
constexpr size_t kMaxTokenResponse = 1 << 20;
constexpr int kMaxIndexDepth = 4;
constexpr size_t kMaxAuthCacheEntries = 1024;
constexpr std::chrono::seconds kDefaultTokenLifetime{60};
constexpr std::chrono::seconds kBasicAuthLifetime{3600};

// One parsed WWW-Authenticate challenge.
struct Challenge {
  std::string scheme;  // lowercase: "bearer", "basic"
  std::map<std::string, std::string> params;
};

bool IsTokenChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) ||
         std::string_view("!#$%&'*+-.^_`|~/").find(c) != std::string_view::npos;
}

// RFC 7235 challenges: `Bearer realm="…",service="…", Basic realm="…"`.
std::vector<Challenge> ParseChallenges(const std::vector<std::string>& values) {
  std::vector<Challenge> out;
  for (const std::string& v : values) {
    size_t i = 0;
    auto skip = [&](std::string_view chars) {
      while (i < v.size() && chars.find(v[i]) != std::string_view::npos) ++i;
    };
    auto token = [&]() {
      size_t start = i;
      while (i < v.size() && IsTokenChar(v[i])) ++i;
      return v.substr(start, i - start);
    };
    while (i < v.size()) {
      skip(" \t,");
      std::string scheme = token();
      if (scheme.empty()) {
        ++i;
        continue;
      }
      Challenge c;
      c.scheme = scheme;
      std::transform(c.scheme.begin(), c.scheme.end(), c.scheme.begin(), ::tolower);
      while (i < v.size()) {
        skip(" \t");
        size_t param_start = i;
        std::string key = token();
        skip(" \t");
        if (key.empty() || i >= v.size() || v[i] != '=') {
          i = param_start;  // a new challenge (or junk) starts here
          break;
        }
        ++i;
        skip(" \t");
        std::string value;
        if (i < v.size() && v[i] == '"') {
          ++i;
          while (i < v.size() && v[i] != '"') {
            if (v[i] == '\\' && i + 1 < v.size()) ++i;
            value += v[i++];
          }
          ++i;
        } else {
          value = token();
        }
        std::transform(key.begin(), key.end(), key.begin(), ::tolower);
        c.params[key] = value;
        skip(" \t");
        if (i < v.size() && v[i] == ',') {
          ++i;
          continue;
        }
        break;
      }
      out.push_back(std::move(c));
    }
  }
  return out;
}

// "CODE: message" from a distribution error body, else a short printable excerpt.
std::string ErrorDetail(const HttpResponse& r) {
  json doc = json::parse(r.body, nullptr, false);
  if (doc.is_object() && doc.contains("errors") && doc["errors"].is_array()) {
    std::vector<std::string> parts;
    for (const json& e : doc["errors"]) {
      if (!e.is_object()) continue;
      std::string code = e.value("code", "");
      std::string message =
          e.contains("message") && e["message"].is_string() ? e["message"].get<std::string>() : "";
      parts.push_back(code.empty() ? message : absl::StrCat(code, ": ", message));
    }
    if (!parts.empty()) return absl::StrJoin(parts, "; ");
  }
  std::string excerpt;
  for (char c : r.body.substr(0, 200))
    excerpt += std::isprint(static_cast<unsigned char>(c)) ? c : ' ';
  return excerpt;
}

bool HasRegistryErrorCode(const HttpResponse& r, std::string_view code) {
  json doc = json::parse(r.body, nullptr, false);
  if (!doc.is_object() || !doc.contains("errors") || !doc["errors"].is_array()) return false;
  for (const json& e : doc["errors"]) {
    if (e.is_object() && e.value("code", "") == code) return true;
  }
  return false;
}

std::string BasicAuthHeader(const Credentials& c) {
  if (!c.username.empty()) {
    return "Basic " + absl::Base64Escape(absl::StrCat(c.username, ":", c.password));
  }
  return "Basic " + c.auth;
}

bool HasBasic(const Credentials& c) { return !c.username.empty() || !c.auth.empty(); }

std::string WhoOf(const Credentials& c) {
  if (!c.username.empty()) return absl::StrCat("user \"", c.username, "\"");
  if (!c.auth.empty()) {
    std::string decoded;
    if (absl::Base64Unescape(c.auth, &decoded)) {
      return absl::StrCat("user \"", decoded.substr(0, decoded.find(':')), "\"");
    }
    return "the given auth";
  }
  if (!c.identity_token.empty()) return "the identity token";
  if (!c.registry_token.empty()) return "the registry token";
  return "anonymous access";
}

// Identifies credentials in cache keys without keeping them readable there.
std::string CredentialsKey(const Credentials& c) {
  if (c.empty()) return "anonymous";
  return ComputeDigest("sha256", absl::StrCat(c.username, "\n", c.password, "\n", c.auth, "\n",
                                              c.identity_token, "\n", c.registry_token));
}

// One endpoint's failure, for the combined error.
struct Attempt {
  std::string host;
  absl::Status status;
};

// The last host's error (the upstream's, the most authoritative), naming what was being
// fetched and, with mirrors, every host tried in order.
absl::Status Combine(const std::vector<Attempt>& attempts, const std::string& what,
                     const std::string& name) {
  const absl::Status& last = attempts.back().status;
  std::string message(last.message());
  if (message.find(name) == std::string::npos) message = absl::StrCat(what, ": ", message);
  if (attempts.size() == 1) return absl::Status(last.code(), message);
  std::vector<std::string> tried;
  tried.reserve(attempts.size());
  for (const Attempt& a : attempts) {
    tried.push_back(absl::StrCat(a.host, ": ", std::string(a.status.message())));
  }
  return absl::Status(
      last.code(),
      absl::StrCat(message, " (hosts tried in order: ", absl::StrJoin(tried, "; "), ")"));
}

}  // namespace

class RegistryClient::Impl {
 public:
  explicit Impl(const Options& options) : options_(options) {}

  // Sends a request to an endpoint, answering one authentication challenge (bearer token or
  // basic) and caching what worked per (host, scope, credentials).
  absl::StatusOr<HttpResponse> Send(const Endpoint& ep, const Reference& ref,
                                    const Credentials& pull_creds, HttpRequest req) {
    static const Credentials kAnonymous;
    const Credentials& creds = ep.mirror ? kAnonymous : pull_creds;
    const std::string scope = absl::StrCat("repository:", ref.repository, ":pull");
    const std::string key = absl::StrCat(ep.host, "|", scope, "|", CredentialsKey(creds));
    ApplyEndpoint(ep, &req);
    std::string auth;
    bool cached = false;
    if (!creds.registry_token.empty()) {
      auth = "Bearer " + creds.registry_token;
    } else if (auto hit = CachedAuth(key); hit.has_value()) {
      auth = *hit;
      cached = true;
    }
    for (int attempt = 0;; ++attempt) {
      HttpRequest r = req;
      if (!auth.empty()) r.origin_headers.emplace_back("Authorization", auth);
      ASSIGN_OR_RETURN(HttpResponse resp, http_.Do(r));
      if (resp.status != 401 || attempt > 0 || !creds.registry_token.empty()) return resp;
      if (cached) DropAuth(key);
      std::vector<Challenge> challenges = ParseChallenges(resp.Headers("www-authenticate"));
      const Challenge* bearer = nullptr;
      const Challenge* basic = nullptr;
      for (const Challenge& c : challenges) {
        if (c.scheme == "bearer" && bearer == nullptr) bearer = &c;
        if (c.scheme == "basic" && basic == nullptr) basic = &c;
      }
      if (bearer != nullptr) {
        std::chrono::seconds lifetime{0};
        ASSIGN_OR_RETURN(std::string token, FetchToken(ep, *bearer, creds, scope, &lifetime));
        auth = "Bearer " + token;
        StoreAuth(key, auth, lifetime);
      } else if (basic != nullptr && HasBasic(creds)) {
        auth = BasicAuthHeader(creds);
        StoreAuth(key, auth, kBasicAuthLifetime);
      } else {
        return resp;  // nothing to answer the challenge with
      }
    }
  }

  // The status for an HTTP failure answer.
  static absl::Status HttpError(const HttpResponse& r, const Endpoint& ep, const Reference& ref,
                                const Credentials& pull_creds, std::string_view what) {
    const Credentials& creds = ep.mirror ? Credentials{} : pull_creds;
    std::string detail = ErrorDetail(r);
    std::string suffix = detail.empty() ? "" : absl::StrCat(" (", detail, ")");
    std::string w(what);
    switch (r.status) {
      case 404:
        if (HasRegistryErrorCode(r, "NAME_UNKNOWN")) {
          return absl::NotFoundError(absl::StrCat(w, " not found: registry ", ep.host,
                                                  " has no repository ", ref.repository, suffix));
        }
        return absl::NotFoundError(absl::StrCat(w, " not found at registry ", ep.host, suffix));
      case 401:
        if (creds.empty()) {
          return absl::UnauthenticatedError(
              absl::StrCat("registry ", ep.host, " requires authentication for ", w,
                           " and no credentials were given",
                           ep.mirror ? " (mirrors get none; configure a "
                                       "header in hosts.toml)"
                                     : " (or the repository does not exist)",
                           suffix));
        }
        return absl::PermissionDeniedError(
            absl::StrCat("registry ", ep.host, " refused ", WhoOf(creds), " for ", w, suffix));
      case 403:
        return absl::PermissionDeniedError(
            absl::StrCat("registry ", ep.host, " denies ", WhoOf(creds), " access to ", w, suffix));
      case 429:
        return absl::ResourceExhaustedError(
            absl::StrCat("registry ", ep.host, " rate-limits pulls of ", w, suffix));
      default:
        return absl::UnavailableError(
            absl::StrCat("registry ", ep.host, " answered HTTP ", r.status, " for ", w, suffix));
    }
  }

  struct FetchedManifest {
    std::string bytes;
    std::string content_type;
    std::string digest;
    std::string host;
  };

  absl::StatusOr<FetchedManifest> FetchManifest(const std::vector<Endpoint>& endpoints,
                                                const Reference& ref, const std::string& reference,
                                                const std::string& expected_digest, Capability cap,
                                                const Credentials& creds) {
    std::string what = expected_digest.empty() || !ref.digest.empty()
                           ? absl::StrCat("manifest of ", ref.String())
                           : absl::StrCat("manifest ", expected_digest, " of ", ref.String());
    std::vector<Attempt> attempts;
    for (const Endpoint& ep : endpoints) {
      if (!ep.Has(cap)) continue;
      absl::StatusOr<FetchedManifest> got =
          FetchManifestFrom(ep, ref, reference, expected_digest, creds, what);
      if (got.ok()) return got;
      attempts.push_back({ep.host, got.status()});
    }
    if (attempts.empty()) return NoEndpoint(endpoints, ref, cap);
    return Combine(attempts, what, ref.Name());
  }

  absl::StatusOr<FetchedManifest> FetchManifestFrom(const Endpoint& ep, const Reference& ref,
                                                    const std::string& reference,
                                                    const std::string& expected_digest,
                                                    const Credentials& creds,
                                                    const std::string& what) {
    HttpRequest req;
    req.url = Url(ep, ref, "manifests", reference);
    req.headers.emplace_back("Accept", kManifestAccept);
    req.max_body = kMaxManifestBytes;
    ASSIGN_OR_RETURN(HttpResponse resp, Send(ep, ref, creds, req));
    if (resp.status != 200) return HttpError(resp, ep, ref, creds, ref.String());
    std::string length = resp.Header("content-length");
    if (resp.truncated ||
        (!length.empty() && std::strtoull(length.c_str(), nullptr, 10) > kMaxManifestBytes)) {
      return absl::ResourceExhaustedError(
          absl::StrCat(what, " from ", ep.host, " is larger than the ", kMaxManifestBytes >> 20,
                       " MiB manifest limit; refusing it"));
    }
    FetchedManifest out;
    out.bytes = std::move(resp.body);
    out.content_type = resp.Header("content-type");
    out.host = ep.host;
    std::string label = absl::StrCat(what, " from ", ep.host);
    if (!expected_digest.empty()) {
      RETURN_IF_ERROR(VerifyDigest(expected_digest, out.bytes, label));
      out.digest = expected_digest;
    } else {
      out.digest = ComputeDigest("sha256", out.bytes);
    }
    std::string claimed = resp.Header("docker-content-digest");
    if (!claimed.empty() && ValidateDigest(claimed).ok()) {
      std::string algo = claimed.substr(0, claimed.find(':'));
      if (ComputeDigest(algo, out.bytes) != claimed) {
        return absl::DataLossError(absl::StrCat(
            label, ": the registry says its digest is ", claimed, " but the content hashes to ",
            ComputeDigest(algo, out.bytes), "; the registry served corrupt or different content"));
      }
    }
    return out;
  }

  absl::Status FetchBlob(const Reference& ref, const Descriptor& desc, const Credentials& creds,
                         const std::function<absl::Status(std::string_view)>& sink,
                         const std::function<void(int64_t, int64_t)>& progress) {
    RETURN_IF_ERROR(ValidateDigest(desc.digest));
    ASSIGN_OR_RETURN(std::vector<Endpoint> endpoints, ResolveHosts(options_.hosts_dir, ref.domain));
    std::string what = absl::StrCat("blob ", desc.digest, " of ", ref.Name());
    std::vector<Attempt> attempts;
    for (const Endpoint& ep : endpoints) {
      if (!ep.Has(kCapabilityPull)) continue;
      int64_t done = 0;
      bool sink_failed = false;
      HttpRequest req;
      req.url = Url(ep, ref, "blobs", desc.digest);
      req.max_body = kMaxErrorBody;
      req.sink = [&](std::string_view chunk) -> absl::Status {
        if (desc.size >= 0 && done + static_cast<int64_t>(chunk.size()) > desc.size) {
          return absl::DataLossError(absl::StrCat(what, " from ", ep.host, " is longer than the ",
                                                  desc.size, " bytes its descriptor says"));
        }
        if (absl::Status s = sink(chunk); !s.ok()) {
          sink_failed = true;
          return s;
        }
        done += static_cast<int64_t>(chunk.size());
        if (progress) progress(done, desc.size);
        return absl::OkStatus();
      };
      absl::StatusOr<HttpResponse> resp = Send(ep, ref, creds, req);
      absl::Status failure;
      if (!resp.ok()) {
        failure = resp.status();
      } else if (resp->status != 200) {
        failure = HttpError(*resp, ep, ref, creds, what);
      } else if (done != desc.size) {
        failure = absl::DataLossError(absl::StrCat(what, " from ", ep.host, " ended after ", done,
                                                   " of ", desc.size, " bytes"));
      } else {
        return absl::OkStatus();
      }
      // Bytes already in the sink cannot be taken back: only an untouched sink falls through.
      if (sink_failed || done > 0) return failure;
      attempts.push_back({ep.host, failure});
    }
    if (attempts.empty()) return NoEndpoint(endpoints, ref, kCapabilityPull);
    return Combine(attempts, what, ref.Name());
  }

  const Options& options() const { return options_; }

 private:
  std::string Url(const Endpoint& ep, const Reference& ref, std::string_view kind,
                  std::string_view reference) const {
    std::string url = absl::StrCat(ep.BaseUrl(), "/", ref.repository, "/", std::string(kind), "/",
                                   std::string(reference));
    if (!ep.ns.empty()) absl::StrAppend(&url, "?ns=", HttpClient::Escape(ep.ns));
    return url;
  }

  void ApplyEndpoint(const Endpoint& ep, HttpRequest* req) const {
    req->tls.skip_verify = ep.skip_verify;
    req->tls.ca_files = ep.ca_files;
    if (!ep.client_certs.empty()) {
      req->tls.client_cert = ep.client_certs.front().first;
      req->tls.client_key = ep.client_certs.front().second;
    }
    for (const auto& h : ep.headers) req->origin_headers.push_back(h);
    req->connect_timeout = ep.dial_timeout.count() > 0 ? ep.dial_timeout : options_.connect_timeout;
    req->stall_timeout = options_.progress_timeout;
  }

  static absl::Status NoEndpoint(const std::vector<Endpoint>& endpoints, const Reference& ref,
                                 Capability cap) {
    std::string source = endpoints.empty() ? "" : endpoints.back().source;
    return absl::FailedPreconditionError(
        absl::StrCat("no host configured for ", ref.domain, " may ",
                     cap == kCapabilityResolve ? "resolve tags (capability \"resolve\")"
                                               : "pull (capability \"pull\")",
                     ", so ", ref.String(), " cannot be pulled; check the capabilities in ",
                     source.empty() ? "hosts.toml" : source));
  }

  // The bearer token flow of the distribution spec (token authentication, and OAuth2 with a
  // refresh token when an identity token is given).
  absl::StatusOr<std::string> FetchToken(const Endpoint& ep, const Challenge& challenge,
                                         const Credentials& creds, const std::string& scope,
                                         std::chrono::seconds* lifetime) {
    auto it = challenge.params.find("realm");
    if (it == challenge.params.end() || it->second.empty() ||
        (it->second.rfind("https://", 0) != 0 && it->second.rfind("http://", 0) != 0)) {
      return absl::UnavailableError(absl::StrCat(
          "registry ", ep.host, " asked for a bearer token without a usable realm URL"));
    }
    const std::string& realm = it->second;
    std::string service = challenge.params.count("service") ? challenge.params.at("service") : "";
    std::string want_scope = challenge.params.count("scope") ? challenge.params.at("scope") : scope;
    HttpRequest req;
    req.max_body = kMaxTokenResponse;
    req.connect_timeout = ep.dial_timeout.count() > 0 ? ep.dial_timeout : options_.connect_timeout;
    req.stall_timeout = options_.progress_timeout;
    if (OriginOf(realm) == OriginOf(ep.BaseUrl())) {
      req.tls.skip_verify = ep.skip_verify;
      req.tls.ca_files = ep.ca_files;
    }
    if (!creds.identity_token.empty()) {
      req.method = "POST";
      req.url = realm;
      req.headers.emplace_back("Content-Type", "application/x-www-form-urlencoded");
      req.body = absl::StrCat(
          "grant_type=refresh_token&refresh_token=", HttpClient::Escape(creds.identity_token),
          "&service=", HttpClient::Escape(service), "&scope=", HttpClient::Escape(want_scope),
          "&client_id=berth");
    } else {
      req.url = absl::StrCat(realm, realm.find('?') == std::string::npos ? "?" : "&",
                             "service=", HttpClient::Escape(service),
                             "&scope=", HttpClient::Escape(want_scope), "&client_id=berth");
      if (HasBasic(creds)) req.origin_headers.emplace_back("Authorization", BasicAuthHeader(creds));
    }
    ASSIGN_OR_RETURN(HttpResponse resp, http_.Do(req));
    if (resp.status == 401 || resp.status == 403) {
      std::string detail = ErrorDetail(resp);
      if (creds.empty()) {
        return absl::UnauthenticatedError(absl::StrCat("token service ", realm, " of registry ",
                                                       ep.host,
                                                       " requires credentials and none were given",
                                                       detail.empty() ? "" : " (" + detail + ")"));
      }
      return absl::PermissionDeniedError(
          absl::StrCat("token service ", realm, " of registry ", ep.host, " refused ", WhoOf(creds),
                       " (HTTP ", resp.status, detail.empty() ? "" : ": " + detail, ")"));
    }
    if (resp.status != 200) {
      return absl::UnavailableError(absl::StrCat("token service ", realm, " of registry ", ep.host,
                                                 " answered HTTP ", resp.status, " (",
                                                 ErrorDetail(resp), ")"));
    }
    json doc = json::parse(resp.body, nullptr, false);
    std::string token;
    if (doc.is_object()) {
      if (doc.contains("token") && doc["token"].is_string()) {
        token = doc["token"].get<std::string>();
      }
      if (token.empty() && doc.contains("access_token") && doc["access_token"].is_string()) {
        token = doc["access_token"].get<std::string>();
      }
    }
    if (token.empty()) {
      return absl::UnavailableError(absl::StrCat("token service ", realm, " of registry ", ep.host,
                                                 " answered without a token"));
    }
    *lifetime = kDefaultTokenLifetime;
    if (doc.contains("expires_in") && doc["expires_in"].is_number_integer() &&
        doc["expires_in"].get<int64_t>() > 0) {
      *lifetime = std::chrono::seconds(doc["expires_in"].get<int64_t>());
    }
    return token;
  }

  std::optional<std::string> CachedAuth(const std::string& key) {
    std::lock_guard<std::mutex> lock(auth_mu_);
    auto it = auth_cache_.find(key);
    if (it == auth_cache_.end()) return std::nullopt;
    if (Clock::now() >= it->second.expires) {
      auth_cache_.erase(it);
      return std::nullopt;
    }
    return it->second.header;
  }

  void StoreAuth(const std::string& key, const std::string& header, std::chrono::seconds life) {
    // Renew a little early so a token does not expire in flight.
    std::chrono::milliseconds margin = std::min<std::chrono::milliseconds>(
        std::chrono::seconds(10), std::chrono::milliseconds(life) / 4);
    std::lock_guard<std::mutex> lock(auth_mu_);
    auto now = Clock::now();
    if (auth_cache_.size() >= kMaxAuthCacheEntries) {
      for (auto it = auth_cache_.begin(); it != auth_cache_.end();) {
        it = it->second.expires <= now ? auth_cache_.erase(it) : std::next(it);
      }
      if (auth_cache_.size() >= kMaxAuthCacheEntries) auth_cache_.clear();
    }
    auth_cache_[key] = {header, now + life - margin};
  }

  void DropAuth(const std::string& key) {
    std::lock_guard<std::mutex> lock(auth_mu_);
    auth_cache_.erase(key);
  }

  struct AuthEntry {
    std::string header;
    Clock::time_point expires;
  };

  Options options_;
  HttpClient http_;
  std::mutex auth_mu_;
  std::map<std::string, AuthEntry> auth_cache_;
};

RegistryClient::RegistryClient(Options options)
    : options_(std::move(options)), impl_(std::make_unique<Impl>(options_)) {}

RegistryClient::~RegistryClient() = default;

absl::StatusOr<Resolved> RegistryClient::Resolve(const Reference& ref, const Credentials& creds) {
  ASSIGN_OR_RETURN(std::vector<Endpoint> endpoints, ResolveHosts(options_.hosts_dir, ref.domain));
  const std::string name = ref.String();
  ASSIGN_OR_RETURN(
      Impl::FetchedManifest top,
      impl_->FetchManifest(endpoints, ref, ref.ManifestReference(), ref.digest,
                           ref.digest.empty() ? kCapabilityResolve : kCapabilityPull, creds));
  ASSIGN_OR_RETURN(
      std::string media_type,
      DetectManifestMediaType(top.bytes, top.content_type, absl::StrCat("the manifest of ", name)));
  Resolved out;
  Impl::FetchedManifest current = std::move(top);
  for (int depth = 0; IsIndexMediaType(media_type); ++depth) {
    if (depth >= kMaxIndexDepth) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the index of ", name, " nests indexes more than ", kMaxIndexDepth, " deep"));
    }
    std::string what = absl::StrCat("the index ", current.digest, " of ", name);
    ASSIGN_OR_RETURN(ImageIndex index, ParseImageIndex(current.bytes, media_type, what));
    if (depth == 0) {
      out.index_digest = current.digest;
      out.index_media_type = media_type;
      out.index = current.bytes;
    }
    Platform want{options_.platform_os, options_.platform_arch, options_.platform_variant, ""};
    ASSIGN_OR_RETURN(Descriptor chosen, SelectPlatform(index.manifests, want, what));
    if (chosen.platform.has_value()) out.platform = *chosen.platform;
    ASSIGN_OR_RETURN(current, impl_->FetchManifest(endpoints, ref, chosen.digest, chosen.digest,
                                                   kCapabilityPull, creds));
    if (static_cast<int64_t>(current.bytes.size()) != chosen.size) {
      return absl::DataLossError(absl::StrCat("manifest ", chosen.digest, " of ", name, " is ",
                                              current.bytes.size(), " bytes but ", what, " says ",
                                              chosen.size));
    }
    std::string child = absl::StrCat("the manifest ", chosen.digest, " of ", name);
    ASSIGN_OR_RETURN(media_type,
                     DetectManifestMediaType(current.bytes, current.content_type, child));
  }
  ASSIGN_OR_RETURN(ImageManifest manifest,
                   ParseImageManifest(current.bytes, media_type,
                                      absl::StrCat("the manifest ", current.digest, " of ", name)));
  out.manifest_digest = current.digest;
  out.media_type = media_type;
  out.manifest = std::move(current.bytes);
  out.config = std::move(manifest.config);
  out.layers = std::move(manifest.layers);
  out.annotations = std::move(manifest.annotations);
  out.host = current.host;
  return out;
}

absl::Status RegistryClient::FetchBlob(const Reference& ref, const Descriptor& desc,
                                       const Credentials& creds,
                                       const std::function<absl::Status(std::string_view)>& sink,
                                       const std::function<void(int64_t, int64_t)>& progress) {
  return impl_->FetchBlob(ref, desc, creds, sink, progress);
}

absl::Status RegistryClient::FetchBlobVerified(
    const Reference& ref, const Descriptor& desc, const Credentials& creds,
    const std::function<absl::Status(std::string_view)>& sink,
    const std::function<void(int64_t, int64_t)>& progress) {
  ASSIGN_OR_RETURN(DigestVerifier verifier, DigestVerifier::Create(desc.digest));
  RETURN_IF_ERROR(impl_->FetchBlob(
      ref, desc, creds,
      [&](std::string_view chunk) {
        verifier.Update(chunk);
        return sink(chunk);
      },
      progress));
  return verifier.Finish(absl::StrCat("blob ", desc.digest, " of ", ref.Name()));
}

}  // namespace berth::image
