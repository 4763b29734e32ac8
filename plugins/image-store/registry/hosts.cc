// SPDX-License-Identifier: Apache-2.0
#include "plugins/image-store/registry/hosts.h"

#include <arpa/inet.h>
#include <toml++/toml.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "plugins/image-store/registry/reference.h"

namespace berth::image {
namespace {

namespace fs = std::filesystem;

constexpr char kHostsFile[] = "hosts.toml";
constexpr char kDefaultDir[] = "_default";

// The host without its port: "[::1]:5000" -> "::1", "localhost:5000" -> "localhost".
std::string_view HostOnly(std::string_view host) {
  if (!host.empty() && host.front() == '[') {
    size_t close = host.find(']');
    return close == std::string_view::npos ? host.substr(1) : host.substr(1, close - 1);
  }
  return host.substr(0, host.find(':'));
}

// "<file>:<line>: <what>" for a problem at a node.
absl::Status ErrorAt(std::string_view file, const toml::source_region& where,
                     std::string_view what) {
  return absl::FailedPreconditionError(
      absl::StrCat(std::string(file), ":", where.begin.line, ": ", std::string(what)));
}

class Parser {
 public:
  Parser(std::string_view file, std::string_view registry_host)
      : file_(file),
        registry_host_(registry_host),
        base_dir_(fs::path(std::string(file)).parent_path()) {}

  absl::StatusOr<std::vector<Endpoint>> Parse(std::string_view text) {
    toml::table root;
    try {
      root = toml::parse(text, std::string(file_));
    } catch (const toml::parse_error& e) {
      return ErrorAt(file_, e.source(),
                     absl::StrCat("not valid TOML: ", std::string(e.description())));
    }
    std::vector<Endpoint> out;
    Endpoint server = DefaultEndpoint(registry_host_);
    server.source = std::string(file_);
    // Root keys configure the server; [host."…"] tables the mirrors, in file order.
    for (auto&& [key, node] : root) {
      std::string_view k = key.str();
      if (k == "host") {
        const toml::table* hosts = node.as_table();
        if (hosts == nullptr) {
          return ErrorAt(file_, node.source(),
                         "\"host\" must be a table of [host.\"https://mirror.example\"] entries");
        }
        // toml++ tables are ordered by key; restore the file order from source positions.
        std::vector<std::pair<const toml::key*, const toml::node*>> entries;
        for (auto&& [hk, hv] : *hosts) entries.emplace_back(&hk, &hv);
        std::stable_sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) {
          const auto& pa = a.first->source().begin;
          const auto& pb = b.first->source().begin;
          return pa.line != pb.line ? pa.line < pb.line : pa.column < pb.column;
        });
        for (const auto& [hk, hv] : entries) {
          const toml::table* t = hv->as_table();
          if (t == nullptr) {
            return ErrorAt(file_, hv->source(),
                           absl::StrCat("host \"", std::string(hk->str()), "\" must be a table"));
          }
          Endpoint m;
          m.mirror = true;
          m.ns = std::string(registry_host_);
          m.source = std::string(file_);
          if (absl::Status s = ParseUrl(hk->str(), hk->source(), &m); !s.ok()) return s;
          bool override_path = false;
          for (auto&& [mk, mv] : *t) {
            if (absl::Status s = ApplyKey(mk, mv, /*root=*/false, &m, &override_path); !s.ok()) {
              return s;
            }
          }
          FinishPath(override_path, &m);
          out.push_back(std::move(m));
        }
        continue;
      }
      if (k == "server") {
        const toml::value<std::string>* v = node.as_string();
        if (v == nullptr) return ErrorAt(file_, node.source(), "\"server\" must be a string URL");
        if (absl::Status s = ParseUrl(v->get(), node.source(), &server); !s.ok()) return s;
        if (server.host == kDockerHubDomain) server.host = kDockerHubRegistryHost;
        server_path_ = server.path;
        server.path.clear();
        continue;
      }
      if (absl::Status s = ApplyKey(key, node, /*root=*/true, &server, &server_override_);
          !s.ok()) {
        return s;
      }
    }
    if (server_path_.has_value()) {
      server.path = *server_path_;
      FinishPath(server_override_, &server);
    }
    if (server.host != DefaultEndpoint(registry_host_).host) {
      server.ns = std::string(registry_host_);
    }
    out.push_back(std::move(server));
    return out;
  }

 private:
  // "https://host[:port][/path]" (the scheme defaults to https, http for local hosts).
  absl::Status ParseUrl(std::string_view url, const toml::source_region& where, Endpoint* e) {
    std::string_view rest = url;
    std::string scheme;
    if (size_t p = rest.find("://"); p != std::string_view::npos) {
      scheme = std::string(rest.substr(0, p));
      std::transform(scheme.begin(), scheme.end(), scheme.begin(), ::tolower);
      rest = rest.substr(p + 3);
      if (scheme != "http" && scheme != "https") {
        return ErrorAt(file_, where,
                       absl::StrCat("\"", std::string(url), "\": scheme must be http or https"));
      }
    }
    size_t slash = rest.find('/');
    std::string host(rest.substr(0, slash));
    if (host.empty() || host.find_first_of(" \t@?#") != std::string::npos) {
      return ErrorAt(file_, where, absl::StrCat("\"", std::string(url), "\" has no valid host"));
    }
    std::transform(host.begin(), host.end(), host.begin(), ::tolower);
    e->host = host;
    e->scheme = scheme.empty() ? (IsLocalHost(host) ? "http" : "https") : scheme;
    std::string path = slash == std::string_view::npos ? "" : std::string(rest.substr(slash));
    while (!path.empty() && path.back() == '/') path.pop_back();
    e->path = path;
    return absl::OkStatus();
  }

  // containerd's rule: the URL path is the API root with override_path, else "<path>/v2".
  static void FinishPath(bool override_path, Endpoint* e) {
    if (e->path.empty()) {
      e->path = "/v2";
    } else if (!override_path) {
      e->path += "/v2";
    }
  }

  std::string Resolve(std::string_view p) const {
    fs::path path{std::string(p)};
    if (path.is_relative()) path = base_dir_ / path;
    return path.lexically_normal().string();
  }

  absl::StatusOr<std::vector<std::string>> StringOrList(const toml::key& key,
                                                        const toml::node& node) {
    std::vector<std::string> out;
    if (const auto* s = node.as_string()) {
      out.push_back(s->get());
      return out;
    }
    if (const toml::array* a = node.as_array()) {
      for (const toml::node& item : *a) {
        const auto* s = item.as_string();
        if (s == nullptr) {
          return ErrorAt(file_, item.source(),
                         absl::StrCat("\"", std::string(key.str()), "\" entries must be strings"));
        }
        out.push_back(s->get());
      }
      return out;
    }
    return ErrorAt(
        file_, node.source(),
        absl::StrCat("\"", std::string(key.str()), "\" must be a string or an array of strings"));
  }

  absl::Status ApplyKey(const toml::key& key, const toml::node& node, bool root, Endpoint* e,
                        bool* override_path) {
    std::string_view k = key.str();
    if (k == "capabilities") {
      const toml::array* a = node.as_array();
      if (a == nullptr) {
        return ErrorAt(file_, node.source(),
                       "\"capabilities\" must be an array such as [\"pull\", \"resolve\"]");
      }
      e->capabilities = 0;
      for (const toml::node& item : *a) {
        const auto* s = item.as_string();
        std::string c = s == nullptr ? "" : s->get();
        std::transform(c.begin(), c.end(), c.begin(), ::tolower);
        if (c == "pull") {
          e->capabilities |= kCapabilityPull;
        } else if (c == "resolve") {
          e->capabilities |= kCapabilityResolve;
        } else if (c == "push") {
          e->capabilities |= kCapabilityPush;
        } else {
          return ErrorAt(file_, item.source(),
                         absl::StrCat("unknown capability ",
                                      s == nullptr ? "(not a string)" : "\"" + s->get() + "\"",
                                      " (known: pull, resolve, push)"));
        }
      }
      return absl::OkStatus();
    }
    if (k == "skip_verify" || k == "override_path") {
      const auto* b = node.as_boolean();
      if (b == nullptr) {
        return ErrorAt(file_, node.source(),
                       absl::StrCat("\"", std::string(k), "\" must be true or false"));
      }
      if (k == "skip_verify") {
        e->skip_verify = b->get();
      } else {
        *override_path = b->get();
      }
      return absl::OkStatus();
    }
    if (k == "ca") {
      auto list = StringOrList(key, node);
      if (!list.ok()) return list.status();
      for (const std::string& p : *list) e->ca_files.push_back(Resolve(p));
      return absl::OkStatus();
    }
    if (k == "client") {
      // "cert", ["cert", …] or [["cert", "key"], …]
      if (const auto* s = node.as_string()) {
        e->client_certs.emplace_back(Resolve(s->get()), "");
        return absl::OkStatus();
      }
      const toml::array* a = node.as_array();
      if (a == nullptr) {
        return ErrorAt(file_, node.source(),
                       "\"client\" must be a path, an array of paths or an array of "
                       "[certificate, key] pairs");
      }
      for (const toml::node& item : *a) {
        if (const auto* s = item.as_string()) {
          e->client_certs.emplace_back(Resolve(s->get()), "");
          continue;
        }
        const toml::array* pair = item.as_array();
        if (pair == nullptr || pair->empty() || pair->size() > 2 ||
            !std::all_of(pair->begin(), pair->end(),
                         [](const toml::node& n) { return n.is_string(); })) {
          return ErrorAt(file_, item.source(),
                         "\"client\" entries must be paths or [certificate, key] pairs");
        }
        std::string cert = Resolve(*(*pair)[0].value<std::string>());
        std::string key_file = pair->size() == 2 ? *(*pair)[1].value<std::string>() : "";
        e->client_certs.emplace_back(cert, key_file.empty() ? "" : Resolve(key_file));
      }
      return absl::OkStatus();
    }
    if (k == "header") {
      const toml::table* t = node.as_table();
      if (t == nullptr) {
        return ErrorAt(file_, node.source(), "\"header\" must be a table of name = value(s)");
      }
      for (auto&& [hk, hv] : *t) {
        std::string name(hk.str());
        if (name.empty() || name.find_first_of(": \t\r\n") != std::string::npos) {
          return ErrorAt(
              file_, hk.source(),
              absl::StrCat("header name \"", name, "\" is not a valid HTTP header name"));
        }
        auto values = StringOrList(hk, hv);
        if (!values.ok()) return values.status();
        for (const std::string& v : *values) {
          if (v.find_first_of("\r\n") != std::string::npos) {
            return ErrorAt(file_, hv.source(),
                           absl::StrCat("header \"", name, "\" value contains a line break"));
          }
          e->headers.emplace_back(name, v);
        }
      }
      return absl::OkStatus();
    }
    if (k == "dial_timeout") {
      const auto* s = node.as_string();
      auto d = s == nullptr ? std::nullopt : ParseDuration(s->get());
      if (!d.has_value()) {
        return ErrorAt(file_, node.source(),
                       "\"dial_timeout\" must be a duration string such as \"1s\" or \"500ms\"");
      }
      e->dial_timeout = *d;
      return absl::OkStatus();
    }
    if (!root && k == "server") {
      return ErrorAt(file_, key.source(), "\"server\" belongs at the top level, not in a [host]");
    }
    if (!root && k == "host") {
      return ErrorAt(file_, key.source(),
                     "a [host] inside a [host] is not supported (mirrors do not nest)");
    }
    return ErrorAt(file_, key.source(),
                   absl::StrCat("unknown key \"", std::string(k),
                                "\" (known: server, capabilities, ca, client, skip_verify, "
                                "header, override_path, dial_timeout, host)"));
  }

  // Go's time.ParseDuration for the units a timeout needs: "1s", "500ms", "1m30s".
  static std::optional<std::chrono::milliseconds> ParseDuration(std::string_view s) {
    if (s.empty()) return std::nullopt;
    double total_ms = 0;
    size_t i = 0;
    while (i < s.size()) {
      size_t start = i;
      while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.')) ++i;
      if (i == start) return std::nullopt;
      double value;
      try {
        value = std::stod(std::string(s.substr(start, i - start)));
      } catch (...) {
        return std::nullopt;
      }
      size_t ustart = i;
      while (i < s.size() && std::isalpha(static_cast<unsigned char>(s[i]))) ++i;
      std::string_view unit = s.substr(ustart, i - ustart);
      double scale;
      if (unit == "ms") {
        scale = 1;
      } else if (unit == "s") {
        scale = 1000;
      } else if (unit == "m") {
        scale = 60000;
      } else if (unit == "h") {
        scale = 3600000;
      } else if (unit == "us" || unit == "µs") {
        scale = 0.001;
      } else if (unit == "ns") {
        scale = 0.000001;
      } else {
        return std::nullopt;
      }
      total_ms += value * scale;
    }
    return std::chrono::milliseconds(static_cast<int64_t>(total_ms));
  }

  std::string_view file_;
  std::string_view registry_host_;
  fs::path base_dir_;
  std::optional<std::string> server_path_;
  bool server_override_ = false;
};

// Docker's certificate directory layout, used when a host directory has no hosts.toml.
Endpoint DockerCertsEndpoint(const fs::path& dir, std::string_view registry_host) {
  Endpoint e = DefaultEndpoint(registry_host);
  e.source = dir.string();
  std::vector<fs::path> files;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  for (const fs::path& f : files) {
    if (f.extension() == ".crt") {
      e.ca_files.push_back(f.string());
    } else if (f.extension() == ".cert") {
      fs::path key = f;
      key.replace_extension(".key");
      if (fs::exists(key, ec)) e.client_certs.emplace_back(f.string(), key.string());
    }
  }
  return e;
}

}  // namespace

bool IsLocalHost(std::string_view host) {
  std::string h(HostOnly(host));
  std::transform(h.begin(), h.end(), h.begin(), ::tolower);
  if (h == "localhost") return true;
  in_addr v4{};
  if (inet_pton(AF_INET, h.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  if (inet_pton(AF_INET6, h.c_str(), &v6) == 1) return IN6_IS_ADDR_LOOPBACK(&v6);
  return false;
}

Endpoint DefaultEndpoint(std::string_view registry_host) {
  Endpoint e;
  e.host = std::string(registry_host);
  std::transform(e.host.begin(), e.host.end(), e.host.begin(), ::tolower);
  if (e.host == kDockerHubDomain) e.host = kDockerHubRegistryHost;
  e.scheme = IsLocalHost(e.host) ? "http" : "https";
  return e;
}

absl::StatusOr<std::vector<Endpoint>> ParseHostsToml(std::string_view text, std::string_view file,
                                                     std::string_view registry_host) {
  Parser parser(file, registry_host);
  return parser.Parse(text);
}

absl::StatusOr<std::vector<Endpoint>> ResolveHosts(std::string_view hosts_dir,
                                                   std::string_view registry_host) {
  if (hosts_dir.empty()) return std::vector<Endpoint>{DefaultEndpoint(registry_host)};
  fs::path root{std::string(hosts_dir)};
  std::vector<fs::path> candidates;
  std::string host(registry_host);
  size_t colon = host.rfind(':');
  size_t bracket = host.rfind(']');
  if (colon != std::string::npos && (bracket == std::string::npos || colon > bracket)) {
    candidates.push_back(root / (host.substr(0, colon) + "_" + host.substr(colon + 1) + "_"));
  }
  candidates.push_back(root / host);
  candidates.push_back(root / kDefaultDir);
  for (const fs::path& dir : candidates) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) continue;
    fs::path file = dir / kHostsFile;
    if (!fs::exists(file, ec)) {
      if (dir.filename() == kDefaultDir) continue;  // _default only matters with a hosts.toml
      return std::vector<Endpoint>{DockerCertsEndpoint(dir, registry_host)};
    }
    std::ifstream in(file, std::ios::binary);
    std::stringstream buf;
    buf << in.rdbuf();
    if (!in) {
      return absl::FailedPreconditionError(absl::StrCat("cannot read registry host configuration ",
                                                        file.string(), ": check its permissions"));
    }
    return ParseHostsToml(buf.str(), file.string(), registry_host);
  }
  return std::vector<Endpoint>{DefaultEndpoint(registry_host)};
}

}  // namespace berth::image
