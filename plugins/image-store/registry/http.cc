// SPDX-License-Identifier: Apache-2.0
#include "plugins/image-store/registry/http.h"

#include <curl/curl.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace berth::image {
namespace {

constexpr size_t kMaxIdleHandles = 16;
constexpr char kUserAgent[] = "berth/0.1";
constexpr const char* kSystemCaBundles[] = {"/etc/ssl/certs/ca-certificates.crt",
                                            "/etc/pki/tls/certs/ca-bundle.crt"};

std::once_flag g_curl_init;

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), ::tolower);
  return s;
}

struct Transfer {
  const HttpRequest* request = nullptr;
  CURL* handle = nullptr;
  HttpResponse response;
  bool got_status_line = false;
  absl::Status sink_error;
  bool aborted_for_size = false;
  // Stall detection: the last time the byte count moved.
  curl_off_t last_bytes = -1;
  std::chrono::steady_clock::time_point last_progress = std::chrono::steady_clock::now();
  bool stalled = false;
  bool cancelled = false;
};

std::atomic<bool> g_cancel_all{false};

// libcurl calls this at least once a second, also while no data flows.
int OnProgress(void* user, curl_off_t, curl_off_t dlnow, curl_off_t, curl_off_t ulnow) {
  auto* t = static_cast<Transfer*>(user);
  if (g_cancel_all.load(std::memory_order_relaxed)) {
    t->cancelled = true;
    return 1;  // aborts with CURLE_ABORTED_BY_CALLBACK
  }
  auto now = std::chrono::steady_clock::now();
  if (dlnow + ulnow != t->last_bytes) {
    t->last_bytes = dlnow + ulnow;
    t->last_progress = now;
    return 0;
  }
  if (now - t->last_progress >= t->request->stall_timeout) {
    t->stalled = true;
    return 1;  // aborts with CURLE_ABORTED_BY_CALLBACK
  }
  return 0;
}

size_t OnHeader(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  std::string_view line(data, size * n);
  if (line.rfind("HTTP/", 0) == 0) {  // a new response (after a 1xx, or the first)
    t->response.headers.clear();
    t->got_status_line = true;
    return size * n;
  }
  size_t colon = line.find(':');
  if (colon == std::string_view::npos) return size * n;
  std::string name = Lower(std::string(line.substr(0, colon)));
  std::string_view value = line.substr(colon + 1);
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == '\r' || value.back() == '\n' || value.back() == ' ')) {
    value.remove_suffix(1);
  }
  t->response.headers.emplace(std::move(name), std::string(value));
  return size * n;
}

size_t OnWrite(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  size_t len = size * n;
  long code = 0;
  curl_easy_getinfo(t->handle, CURLINFO_RESPONSE_CODE, &code);
  bool redirect = code >= 300 && code < 400;
  if (code >= 200 && code < 300 && t->request->sink) {
    absl::Status s = t->request->sink(std::string_view(data, len));
    if (!s.ok()) {
      t->sink_error = std::move(s);
      return 0;  // aborts with CURLE_WRITE_ERROR
    }
    t->response.delivered += static_cast<int64_t>(len);
    return len;
  }
  if (redirect) return len;  // the body of a redirect is of no interest
  if (t->response.body.size() + len > t->request->max_body) {
    t->response.truncated = true;
    t->aborted_for_size = true;
    return 0;
  }
  t->response.body.append(data, len);
  return len;
}

absl::StatusOr<std::string> CaBundle(const std::vector<std::string>& files) {
  std::string bundle;
  for (const char* sys : kSystemCaBundles) {
    std::ifstream in(sys, std::ios::binary);
    if (!in) continue;
    std::stringstream buf;
    buf << in.rdbuf();
    bundle = buf.str();
    break;
  }
  for (const std::string& f : files) {
    std::ifstream in(f, std::ios::binary);
    std::stringstream buf;
    buf << in.rdbuf();
    if (!in) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot read CA certificate file ", f, " (from hosts.toml \"ca\")"));
    }
    absl::StrAppend(&bundle, "\n", buf.str(), "\n");
  }
  return bundle;
}

absl::Status TransportError(CURLcode rc, const char* errbuf, const std::string& url, bool connected,
                            std::chrono::seconds stall) {
  std::string origin = OriginOf(url);
  std::string detail = errbuf[0] != '\0' ? std::string(errbuf) : curl_easy_strerror(rc);
  switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
      return absl::UnavailableError(
          absl::StrCat("cannot resolve the registry host of ", origin, ": ", detail));
    case CURLE_COULDNT_CONNECT:
      return absl::UnavailableError(absl::StrCat("cannot connect to ", origin, ": ", detail));
    case CURLE_OPERATION_TIMEDOUT:
      if (!connected) {
        return absl::UnavailableError(
            absl::StrCat("cannot connect to ", origin, ": ", detail, " (connection timed out)"));
      }
      return absl::DeadlineExceededError(absl::StrCat("transfer from ", origin,
                                                      " stalled: no data for ", stall.count(),
                                                      " s (the progress timeout)"));
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
      return absl::UnavailableError(absl::StrCat(
          "TLS with ", origin, " failed: ", detail,
          " (for a private CA set \"ca\", for plain HTTP use an http:// server or host, in the "
          "registry's hosts.toml)"));
    default:
      return absl::UnavailableError(absl::StrCat("request to ", origin, " failed: ", detail));
  }
}

}  // namespace

std::string HttpResponse::Header(std::string_view name) const {
  auto it = headers.find(std::string(name));
  return it == headers.end() ? "" : it->second;
}

std::vector<std::string> HttpResponse::Headers(std::string_view name) const {
  std::vector<std::string> out;
  auto [b, e] = headers.equal_range(std::string(name));
  for (auto it = b; it != e; ++it) out.push_back(it->second);
  return out;
}

std::string OriginOf(std::string_view url) {
  size_t p = url.find("://");
  if (p == std::string_view::npos) return Lower(std::string(url));
  std::string scheme = Lower(std::string(url.substr(0, p)));
  std::string_view rest = url.substr(p + 3);
  std::string authority = Lower(std::string(rest.substr(0, rest.find_first_of("/?#"))));
  if (size_t at = authority.rfind('@'); at != std::string::npos)
    authority = authority.substr(at + 1);
  size_t bracket = authority.rfind(']');
  size_t colon = authority.rfind(':');
  bool has_port = colon != std::string::npos && (bracket == std::string::npos || colon > bracket);
  if (!has_port) absl::StrAppend(&authority, scheme == "https" ? ":443" : ":80");
  return absl::StrCat(scheme, "://", authority);
}

void CancelAllTransfers() { g_cancel_all.store(true); }

HttpClient::HttpClient() {
  std::call_once(g_curl_init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

HttpClient::~HttpClient() {
  for (void* h : idle_) curl_easy_cleanup(static_cast<CURL*>(h));
}

void* HttpClient::Acquire() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!idle_.empty()) {
      void* h = idle_.back();
      idle_.pop_back();
      return h;
    }
  }
  return curl_easy_init();
}

void HttpClient::Release(void* handle) {
  std::lock_guard<std::mutex> lock(mu_);
  if (idle_.size() < kMaxIdleHandles) {
    idle_.push_back(handle);
  } else {
    curl_easy_cleanup(static_cast<CURL*>(handle));
  }
}

std::string HttpClient::Escape(std::string_view s) {
  char* e = curl_easy_escape(nullptr, s.data(), static_cast<int>(s.size()));
  std::string out = e == nullptr ? "" : e;
  curl_free(e);
  return out;
}

absl::StatusOr<HttpResponse> HttpClient::Do(const HttpRequest& request) {
  std::string ca_bundle;
  if (!request.tls.ca_files.empty()) {
    auto bundle = CaBundle(request.tls.ca_files);
    if (!bundle.ok()) return bundle.status();
    ca_bundle = std::move(*bundle);
  }
  const std::string first_origin = OriginOf(request.url);
  std::string url = request.url;
  std::string method = request.method;
  for (int hop = 0;; ++hop) {
    CURL* h = static_cast<CURL*>(Acquire());
    if (h == nullptr) return absl::ResourceExhaustedError("cannot create a libcurl handle");
    curl_easy_reset(h);
    Transfer t;
    t.request = &request;
    t.handle = h;
    char errbuf[CURL_ERROR_SIZE] = {0};
    curl_slist* headers = nullptr;
    for (const auto& [k, v] : request.headers) {
      headers = curl_slist_append(headers, absl::StrCat(k, ": ", v).c_str());
    }
    if (OriginOf(url) == first_origin) {
      for (const auto& [k, v] : request.origin_headers) {
        headers = curl_slist_append(headers, absl::StrCat(k, ": ", v).c_str());
      }
    }
    headers = curl_slist_append(headers, "Expect:");
    curl_easy_setopt(h, CURLOPT_URL, url.c_str());
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_USERAGENT, kUserAgent);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                     static_cast<long>(request.connect_timeout.count()));
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, OnProgress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, &t);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, OnHeader);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &t);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, OnWrite);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &t);
    if (method == "HEAD") {
      curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else if (method == "POST") {
      curl_easy_setopt(h, CURLOPT_POST, 1L);
      curl_easy_setopt(h, CURLOPT_POSTFIELDS, request.body.c_str());
      curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
                       static_cast<curl_off_t>(request.body.size()));
    } else if (method != "GET") {
      curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method.c_str());
    }
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, request.tls.skip_verify ? 0L : 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, request.tls.skip_verify ? 0L : 2L);
    curl_blob ca_blob{};
    if (!ca_bundle.empty()) {
      ca_blob.data = ca_bundle.data();
      ca_blob.len = ca_bundle.size();
      ca_blob.flags = CURL_BLOB_NOCOPY;
      curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, &ca_blob);
    }
    if (!request.tls.client_cert.empty()) {
      curl_easy_setopt(h, CURLOPT_SSLCERT, request.tls.client_cert.c_str());
      const std::string& key =
          request.tls.client_key.empty() ? request.tls.client_cert : request.tls.client_key;
      curl_easy_setopt(h, CURLOPT_SSLKEY, key.c_str());
    }

    CURLcode rc = curl_easy_perform(h);
    curl_slist_free_all(headers);
    long code = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    char* redirect = nullptr;
    curl_easy_getinfo(h, CURLINFO_REDIRECT_URL, &redirect);
    std::string next = redirect == nullptr ? "" : redirect;
    curl_off_t connect_us = 0;
    curl_easy_getinfo(h, CURLINFO_CONNECT_TIME_T, &connect_us);
    Release(h);

    if (rc == CURLE_WRITE_ERROR && !t.sink_error.ok()) return t.sink_error;
    if (rc == CURLE_WRITE_ERROR && t.aborted_for_size) {
      t.response.status = code;
      t.response.url = url;
      return std::move(t.response);
    }
    if (rc == CURLE_ABORTED_BY_CALLBACK && t.cancelled) {
      return absl::CancelledError(absl::StrCat("transfer from ", OriginOf(url),
                                               " cancelled: berthd is stopping"));
    }
    if (rc == CURLE_ABORTED_BY_CALLBACK && t.stalled) rc = CURLE_OPERATION_TIMEDOUT;
    if (rc != CURLE_OK) {
      return TransportError(rc, errbuf, url, connect_us > 0 || t.got_status_line,
                            request.stall_timeout);
    }
    t.response.status = code;
    t.response.url = url;
    bool is_redirect = code == 301 || code == 302 || code == 303 || code == 307 || code == 308;
    if (!is_redirect || next.empty()) return std::move(t.response);
    if (hop >= request.max_redirects) {
      return absl::UnavailableError(
          absl::StrCat("too many redirects from ", request.url, " (last to ", next, ")"));
    }
    if (code == 303 || ((code == 301 || code == 302) && method == "POST")) method = "GET";
    url = next;
  }
}

}  // namespace berth::image
