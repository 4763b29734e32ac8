// SPDX-License-Identifier: Apache-2.0
//
// Header-only C++ helpers over the berth C ABI: results, sinks, a Host wrapper, store
// transactions as RAII objects, interface tables filled from member functions, and the
// BERTH_PLUGIN definition macro. Nothing here crosses the boundary: every call goes
// through the C structs of abi.h, host.h, plugin.h and kinds.h.
#pragma once

#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "berth/abi.h"
#include "berth/host.h"
#include "berth/kinds.h"
#include "berth/plugin.h"

namespace berth::sdk {

// A status as it crosses the ABI: a google.rpc.Code value and a message.
class Status {
 public:
  Status() = default;
  Status(int32_t code, std::string message) : code_(code), message_(std::move(message)) {}
  static Status Ok() { return {}; }
  bool ok() const { return code_ == BERTH_OK; }
  int32_t code() const { return code_; }
  const std::string& message() const { return message_; }

 private:
  int32_t code_ = BERTH_OK;
  std::string message_;
};

inline Status InvalidArgument(std::string m) { return {BERTH_INVALID_ARGUMENT, std::move(m)}; }
inline Status NotFound(std::string m) { return {BERTH_NOT_FOUND, std::move(m)}; }
inline Status FailedPrecondition(std::string m) {
  return {BERTH_FAILED_PRECONDITION, std::move(m)};
}
inline Status Internal(std::string m) { return {BERTH_INTERNAL, std::move(m)}; }
inline Status Unimplemented(std::string m) { return {BERTH_UNIMPLEMENTED, std::move(m)}; }
inline Status NotApplicable(std::string m) { return {BERTH_NOT_APPLICABLE, std::move(m)}; }

// A value or a Status, in the spirit of std::expected (not in GCC 12's library).
template <typename T>
class Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  Result(Status status) : status_(std::move(status)) {}  // NOLINT(google-explicit-constructor)
  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }
  T& value() { return *value_; }
  const T& value() const { return *value_; }
  T& operator*() { return *value_; }
  T* operator->() { return &*value_; }

 private:
  Status status_;
  std::optional<T> value_;
};

// A berth_sink that appends into a std::string it owns.
class StringSink {
 public:
  StringSink() {
    sink_.struct_size = sizeof(sink_);
    sink_.ctx = &data_;
    sink_.write = [](void* ctx, const char* data, size_t len) {
      static_cast<std::string*>(ctx)->append(data, len);
    };
  }
  StringSink(const StringSink&) = delete;
  StringSink& operator=(const StringSink&) = delete;
  berth_sink* get() { return &sink_; }
  const std::string& str() const { return data_; }
  std::string take() { return std::move(data_); }

 private:
  berth_sink sink_{};
  std::string data_;
};

inline void Write(berth_sink* sink, std::string_view data) {
  if (sink != nullptr && sink->write != nullptr) sink->write(sink->ctx, data.data(), data.size());
}

inline berth_str Str(std::string_view s) { return berth_str{s.data(), s.size()}; }
inline std::string_view View(berth_str s) {
  return s.ptr == nullptr ? std::string_view() : std::string_view(s.ptr, s.len);
}

// Escapes a string for use inside a JSON string literal.
inline std::string JsonEscape(std::string_view in) {
  std::string out;
  out.reserve(in.size() + 2);
  for (unsigned char c : in) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          static const char kHex[] = "0123456789abcdef";
          out += "\\u00";
          out += kHex[c >> 4];
          out += kHex[c & 0xf];
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out;
}

// What every kind's status() reports.
struct Readiness {
  bool ready = true;
  std::string reason;   // CamelCase, empty when ready
  std::string message;  // for the operator, empty when ready

  static Readiness Ready() { return {}; }
  static Readiness NotReady(std::string reason, std::string message) {
    return {false, std::move(reason), std::move(message)};
  }
  std::string ToJson() const {
    return std::string("{\"ready\":") + (ready ? "true" : "false") + ",\"reason\":\"" +
           JsonEscape(reason) + "\",\"message\":\"" + JsonEscape(message) + "\"}";
  }
};

// Runs fn, turning a returned Status or any exception into (code, message in err).
template <typename Fn>
int32_t Guard(berth_sink* err, Fn&& fn) noexcept {
  try {
    Status s = fn();
    if (!s.ok()) Write(err, s.message());
    return s.code();
  } catch (const std::bad_alloc&) {
    Write(err, "out of memory");
    return BERTH_RESOURCE_EXHAUSTED;
  } catch (const std::exception& e) {
    Write(err, std::string("plugin threw an exception: ") + e.what());
    return BERTH_INTERNAL;
  } catch (...) {
    Write(err, "plugin threw an unknown exception");
    return BERTH_INTERNAL;
  }
}

// A reference to another plugin's interface table.
template <typename Table>
struct Iface {
  std::string plugin_id;
  const Table* table = nullptr;
  void* instance = nullptr;
};

// A store transaction; aborted on destruction unless committed.
class Txn {
 public:
  Txn(const berth_host* host, berth_txn* txn) : host_(host), txn_(txn) {}
  Txn(Txn&& o) noexcept : host_(o.host_), txn_(std::exchange(o.txn_, nullptr)) {}
  Txn(const Txn&) = delete;
  Txn& operator=(const Txn&) = delete;
  ~Txn() { Abort(); }

  // Returns std::nullopt (in an ok Result) when the key is absent.
  Result<std::optional<std::string>> Get(const char* bucket, std::string_view key) {
    StringSink value, err;
    int32_t code = host_->store_get(txn_, bucket, Str(key), value.get(), err.get());
    if (code == BERTH_NOT_FOUND) return std::optional<std::string>();
    if (code != BERTH_OK) return Status(code, err.take());
    return std::optional<std::string>(value.take());
  }
  Status Put(const char* bucket, std::string_view key, std::string_view value) {
    StringSink err;
    int32_t code = host_->store_put(txn_, bucket, Str(key), Str(value), err.get());
    return {code, err.take()};
  }
  Status Delete(const char* bucket, std::string_view key) {
    StringSink err;
    int32_t code = host_->store_delete(txn_, bucket, Str(key), err.get());
    return {code, err.take()};
  }
  // fn returns false to stop.
  Status Scan(const char* bucket, std::string_view prefix,
              const std::function<bool(std::string_view, std::string_view)>& fn) {
    StringSink err;
    auto cb = [](void* user, berth_str k, berth_str v) -> int {
      auto* f = static_cast<const std::function<bool(std::string_view, std::string_view)>*>(user);
      return (*f)(View(k), View(v)) ? 0 : 1;
    };
    int32_t code = host_->store_scan(txn_, bucket, Str(prefix), cb,
                                     const_cast<void*>(static_cast<const void*>(&fn)), err.get());
    return {code, err.take()};
  }
  Status Commit() {
    StringSink err;
    int32_t code = host_->store_commit(std::exchange(txn_, nullptr), err.get());
    return {code, err.take()};
  }
  void Abort() {
    if (txn_ != nullptr) host_->store_abort(std::exchange(txn_, nullptr));
  }

 private:
  const berth_host* host_;
  berth_txn* txn_;
};

// The host table, with C++ types.
class Host {
 public:
  explicit Host(const berth_host* host) : host_(host) {}
  const berth_host* raw() const { return host_; }

  void Log(berth_log_level level, std::string_view msg) const {
    if (host_->log_level(host_->ctx) <= level) host_->log(host_->ctx, level, msg.data(), msg.size());
  }
  void Debug(std::string_view m) const { Log(BERTH_LOG_DEBUG, m); }
  void Info(std::string_view m) const { Log(BERTH_LOG_INFO, m); }
  void Warn(std::string_view m) const { Log(BERTH_LOG_WARN, m); }
  void Error(std::string_view m) const { Log(BERTH_LOG_ERROR, m); }

  // The plugin's configuration subtree, JSON text.
  Result<std::string> Config() const {
    StringSink out, err;
    int32_t code = host_->get_config(host_->ctx, out.get(), err.get());
    if (code != BERTH_OK) return Status(code, err.take());
    return out.take();
  }
  Result<std::string> Section(const char* name) const {
    StringSink out, err;
    int32_t code = host_->get_section(host_->ctx, name, out.get(), err.get());
    if (code != BERTH_OK) return Status(code, err.take());
    return out.take();
  }
  // "FILE:LINE" of key_path inside this plugin's subtree.
  std::string ConfigWhere(const char* key_path) const {
    StringSink out;
    host_->config_where(host_->ctx, key_path, out.get());
    return out.take();
  }
  std::string RootDir() const { return std::string(View(host_->root_dir(host_->ctx))); }
  std::string StateDir() const { return std::string(View(host_->state_dir(host_->ctx))); }

  template <typename Table>
  Result<Iface<Table>> Lookup(const char* iface, const char* plugin_id = nullptr) const {
    berth_iface_ref ref{};
    ref.struct_size = sizeof(ref);
    StringSink err;
    int32_t code = host_->lookup(host_->ctx, iface, plugin_id, &ref, err.get());
    if (code != BERTH_OK) return Status(code, err.take());
    return Iface<Table>{ref.plugin_id, static_cast<const Table*>(ref.table), ref.instance};
  }
  template <typename Table>
  std::vector<Iface<Table>> All(const char* iface) const {
    std::vector<Iface<Table>> out;
    host_->for_each(
        host_->ctx, iface,
        [](void* user, const berth_iface_ref* ref) -> int {
          static_cast<std::vector<Iface<Table>>*>(user)->push_back(
              Iface<Table>{ref->plugin_id, static_cast<const Table*>(ref->table), ref->instance});
          return 0;
        },
        &out);
    return out;
  }
  std::string ListPlugins() const {
    StringSink out;
    host_->list_plugins(host_->ctx, out.get());
    return out.take();
  }

  Result<Txn> Begin(bool writable) const {
    berth_txn* txn = nullptr;
    StringSink err;
    int32_t code = host_->store_begin(host_->ctx, writable ? 1 : 0, &txn, err.get());
    if (code != BERTH_OK) return Status(code, err.take());
    return Txn(host_, txn);
  }

  Status Publish(const char* topic, std::string_view payload) const {
    StringSink err;
    int32_t code = host_->publish(host_->ctx, topic, Str(payload), err.get());
    return {code, err.take()};
  }

 private:
  const berth_host* host_;
};

// Calls a status() entry of any kind's table and parses the common JSON shape loosely.
template <typename Table>
Readiness QueryStatus(const Iface<Table>& iface) {
  StringSink out, err;
  int32_t code = iface.table->status(iface.instance, out.get(), err.get());
  if (code != BERTH_OK) {
    return Readiness::NotReady("StatusFailed", iface.plugin_id + ": " + err.str());
  }
  Readiness r;
  const std::string& j = out.str();
  r.ready = j.find("\"ready\":true") != std::string::npos;
  auto field = [&j](std::string_view key) {
    std::string pat = "\"" + std::string(key) + "\":\"";
    size_t p = j.find(pat);
    if (p == std::string::npos) return std::string();
    std::string v;
    for (size_t i = p + pat.size(); i < j.size() && j[i] != '"'; ++i) {
      if (j[i] == '\\' && i + 1 < j.size()) {
        ++i;
        v += j[i] == 'n' ? '\n' : j[i];
      } else {
        v += j[i];
      }
    }
    return v;
  };
  r.reason = field("reason");
  r.message = field("message");
  return r;
}

// ---- interface tables filled from member functions --------------------------------------
//
// A plugin class T provides, for each kind it implements, the members named below; the
// tables are static, one per T, and forward to them with exceptions caught.

// status() of every table: T::Status().ToJson(), or T::StatusJson() when T has it (a plugin
// whose status carries more than the common fields, which must come first:
// {"ready","reason","message",...} — QueryStatus reads only those).
template <typename T>
int32_t StatusThunk(void* inst, berth_sink* out, berth_sink* err) {
  return Guard(err, [&] {
    if constexpr (requires(T* t) { std::string(t->StatusJson()); }) {
      Write(out, static_cast<T*>(inst)->StatusJson());
    } else {
      Write(out, static_cast<T*>(inst)->Status().ToJson());
    }
    return Status::Ok();
  });
}

// T: Readiness Status(); Status Start(); void Stop();
template <typename T>
const berth_service_v1* ServiceTable() {
  static const berth_service_v1 table = {
      sizeof(berth_service_v1),
      &StatusThunk<T>,
      [](void* inst, berth_sink* err) {
        return Guard(err, [&] { return static_cast<T*>(inst)->Start(); });
      },
      [](void* inst) {
        try {
          static_cast<T*>(inst)->Stop();
        } catch (...) {
        }
      },
  };
  return &table;
}

// T: Readiness Status();
//    Result<std::string> Pull(std::string_view ref, std::string_view auth_json,
//                             std::string_view options_json,
//                             const std::function<void(std::string_view)>& progress);
//    Result<std::string> ImageStatus(std::string_view ref);
//    Result<std::string> List(std::string_view filter_ref);
//    Status Remove(std::string_view ref);
//    Result<std::string> FsInfo();
template <typename T>
const berth_image_store_v1* ImageStoreTable() {
  static const berth_image_store_v1 table = [] {
    berth_image_store_v1 t{};
    t.struct_size = sizeof(t);
    t.status = &StatusThunk<T>;
    t.pull = [](void* inst, berth_str ref, berth_str auth, berth_str options,
                void (*progress)(void*, berth_str), void* user, berth_sink* id, berth_sink* err) {
      return Guard(err, [&] {
        std::function<void(std::string_view)> report = [&](std::string_view json) {
          if (progress != nullptr) progress(user, Str(json));
        };
        Result<std::string> r =
            static_cast<T*>(inst)->Pull(View(ref), View(auth), View(options), report);
        if (!r.ok()) return r.status();
        Write(id, *r);
        return Status::Ok();
      });
    };
    t.image_status = [](void* inst, berth_str ref, berth_sink* out, berth_sink* err) {
      return Guard(err, [&] {
        Result<std::string> r = static_cast<T*>(inst)->ImageStatus(View(ref));
        if (!r.ok()) return r.status();
        Write(out, *r);
        return Status::Ok();
      });
    };
    t.list = [](void* inst, berth_str filter, berth_sink* out, berth_sink* err) {
      return Guard(err, [&] {
        Result<std::string> r = static_cast<T*>(inst)->List(View(filter));
        if (!r.ok()) return r.status();
        Write(out, *r);
        return Status::Ok();
      });
    };
    t.remove = [](void* inst, berth_str ref, berth_sink* err) {
      return Guard(err, [&] { return static_cast<T*>(inst)->Remove(View(ref)); });
    };
    t.fs_info = [](void* inst, berth_sink* out, berth_sink* err) {
      return Guard(err, [&] {
        Result<std::string> r = static_cast<T*>(inst)->FsInfo();
        if (!r.ok()) return r.status();
        Write(out, *r);
        return Status::Ok();
      });
    };
    return t;
  }();
  return &table;
}

// T: Readiness Status(); std::string_view Name() const (static storage); and, each returning
//    the JSON its table entry writes (berth/kinds.h),
//    Result<std::string> Prepare(std::string_view key, std::string_view parent,
//                                std::string_view labels_json);       // mounts
//    Result<std::string> View(std::string_view key, std::string_view parent,
//                             std::string_view labels_json);          // mounts
//    Result<std::string> Mounts(std::string_view key);                // mounts
//    Status Commit(std::string_view name, std::string_view key, std::string_view labels_json);
//    Status Remove(std::string_view key);
//    Result<std::string> Stat(std::string_view key);                  // info object
//    Result<std::string> Usage(std::string_view key);                 // {"size", "inodes"}
//    Result<std::string> Walk();                                      // array of info objects
//    Result<std::string> FsUsage();  // {"mountpoint", "used_bytes", "inodes_used"}
template <typename T>
const berth_snapshotter_v1* SnapshotterTable() {
  static const berth_snapshotter_v1 table = [] {
    // Writes a Result<std::string> into `out`, or returns its status. Static, so the
    // captureless entries below can use it.
    static constexpr auto emit = [](Result<std::string> r, berth_sink* out) {
      if (!r.ok()) return r.status();
      Write(out, *r);
      return Status::Ok();
    };
    berth_snapshotter_v1 t{};
    t.struct_size = sizeof(t);
    t.status = &StatusThunk<T>;
    t.name = [](void* inst) { return Str(static_cast<T*>(inst)->Name()); };
    t.prepare = [](void* inst, berth_str key, berth_str parent, berth_str labels,
                   berth_sink* mounts, berth_sink* err) {
      return Guard(err, [&] {
        return emit(static_cast<T*>(inst)->Prepare(View(key), View(parent), View(labels)), mounts);
      });
    };
    t.view = [](void* inst, berth_str key, berth_str parent, berth_str labels, berth_sink* mounts,
                berth_sink* err) {
      return Guard(err, [&] {
        return emit(static_cast<T*>(inst)->View(View(key), View(parent), View(labels)), mounts);
      });
    };
    t.mounts = [](void* inst, berth_str key, berth_sink* mounts, berth_sink* err) {
      return Guard(err, [&] { return emit(static_cast<T*>(inst)->Mounts(View(key)), mounts); });
    };
    t.commit = [](void* inst, berth_str name, berth_str key, berth_str labels, berth_sink* err) {
      return Guard(
          err, [&] { return static_cast<T*>(inst)->Commit(View(name), View(key), View(labels)); });
    };
    t.remove = [](void* inst, berth_str key, berth_sink* err) {
      return Guard(err, [&] { return static_cast<T*>(inst)->Remove(View(key)); });
    };
    t.stat = [](void* inst, berth_str key, berth_sink* info, berth_sink* err) {
      return Guard(err, [&] { return emit(static_cast<T*>(inst)->Stat(View(key)), info); });
    };
    t.usage = [](void* inst, berth_str key, berth_sink* usage, berth_sink* err) {
      return Guard(err, [&] { return emit(static_cast<T*>(inst)->Usage(View(key)), usage); });
    };
    t.walk = [](void* inst, berth_sink* infos, berth_sink* err) {
      return Guard(err, [&] { return emit(static_cast<T*>(inst)->Walk(), infos); });
    };
    t.fs_usage = [](void* inst, berth_sink* usage, berth_sink* err) {
      return Guard(err, [&] { return emit(static_cast<T*>(inst)->FsUsage(), usage); });
    };
    return t;
  }();
  return &table;
}

// T: Readiness Status();
//    Result<std::string> Attach(std::string_view request_json);  // the result JSON
//    Status Detach(std::string_view request_json);
//    Status Check(std::string_view request_json);
//    Status Gc(std::string_view sandbox_ids_json);
template <typename T>
const berth_network_v1* NetworkTable() {
  static const berth_network_v1 table = {
      sizeof(berth_network_v1), &StatusThunk<T>,
      [](void* inst, berth_str req, berth_sink* out, berth_sink* err) {
        return Guard(err, [&] {
          Result<std::string> r = static_cast<T*>(inst)->Attach(View(req));
          if (!r.ok()) return r.status();
          Write(out, *r);
          return Status::Ok();
        });
      },
      [](void* inst, berth_str req, berth_sink* err) {
        return Guard(err, [&] { return static_cast<T*>(inst)->Detach(View(req)); });
      },
      [](void* inst, berth_str req, berth_sink* err) {
        return Guard(err, [&] { return static_cast<T*>(inst)->Check(View(req)); });
      },
      [](void* inst, berth_str ids, berth_sink* err) {
        return Guard(err, [&] { return static_cast<T*>(inst)->Gc(View(ids)); });
      }};
  return &table;
}

// T: Readiness Status(); std::string_view DriverName() const (static storage);
//    Result<std::string> CgroupPath(std::string_view parent, std::string_view id);
//    Result<std::string> Stats(std::string_view cgroups_path);
//    Status Remove(std::string_view cgroups_path);
//    optional (since 1.2): Status Enter(std::string_view cgroups_path, int64_t pid); without
//    it `enter` answers UNIMPLEMENTED.
template <typename T>
const berth_cgroup_driver_v1* CgroupDriverTable() {
  static const berth_cgroup_driver_v1 table = {
      sizeof(berth_cgroup_driver_v1), &StatusThunk<T>,
      [](void* inst) { return Str(static_cast<T*>(inst)->DriverName()); },
      [](void* inst, berth_str parent, berth_str id, berth_sink* out, berth_sink* err) {
        return Guard(err, [&] {
          Result<std::string> path = static_cast<T*>(inst)->CgroupPath(View(parent), View(id));
          if (!path.ok()) return path.status();
          Write(out, *path);
          return Status::Ok();
        });
      },
      [](void* inst, berth_str path, berth_sink* out, berth_sink* err) {
        return Guard(err, [&] {
          Result<std::string> stats = static_cast<T*>(inst)->Stats(View(path));
          if (!stats.ok()) return stats.status();
          Write(out, *stats);
          return Status::Ok();
        });
      },
      [](void* inst, berth_str path, berth_sink* err) {
        return Guard(err, [&] { return static_cast<T*>(inst)->Remove(View(path)); });
      },
      [](void* inst, berth_str path, int64_t pid, berth_sink* err) {
        return Guard(err, [&] {
          if constexpr (requires(T* t) { t->Enter(std::string_view(), int64_t{0}); }) {
            return static_cast<T*>(inst)->Enter(View(path), pid);
          } else {
            (void)inst;
            (void)path;
            (void)pid;
            return Status(BERTH_UNIMPLEMENTED, "this cgroup driver cannot move processes");
          }
        });
      }};
  return &table;
}

// T: Readiness Status(); Status AddHandler(std::string_view name, std::string_view json);
//    Readiness HandlerStatus(std::string_view name);
//    Status ShimCall(std::string_view handler, std::string_view sandbox_id,
//                    std::string_view service, std::string_view method,
//                    std::string_view request, uint64_t timeout_ms, std::string* response);
//    Status Control(std::string_view op, std::string_view request_json, std::string* out);
template <typename T>
const berth_runtime_v1* RuntimeTable() {
  static const berth_runtime_v1 table = {
      sizeof(berth_runtime_v1),
      &StatusThunk<T>,
      [](void* inst, berth_str name, berth_str options, berth_sink* err) {
        return Guard(err, [&] { return static_cast<T*>(inst)->AddHandler(View(name), View(options)); });
      },
      [](void* inst, berth_str name, berth_sink* out, berth_sink* err) {
        return Guard(err, [&] {
          Write(out, static_cast<T*>(inst)->HandlerStatus(View(name)).ToJson());
          return Status::Ok();
        });
      },
      [](void* inst, berth_str handler, berth_str sandbox_id, berth_str service,
         berth_str method, berth_str request, uint64_t timeout_ms, berth_sink* response,
         berth_sink* err) {
        return Guard(err, [&] {
          std::string out;
          Status s = static_cast<T*>(inst)->ShimCall(View(handler), View(sandbox_id),
                                                     View(service), View(method),
                                                     View(request), timeout_ms, &out);
          if (s.ok()) Write(response, out);
          return s;
        });
      },
      [](void* inst, berth_str op, berth_str request_json, berth_sink* out, berth_sink* err) {
        return Guard(err, [&] {
          std::string result;
          Status s = static_cast<T*>(inst)->Control(View(op), View(request_json), &result);
          if (s.ok()) Write(out, result);
          return s;
        });
      },
  };
  return &table;
}

// ---- the plugin definition ---------------------------------------------------------------

// T: static Status Create(Host host, std::unique_ptr<T>* out);
//    const void* GetInterface(std::string_view iface);
//    destructor: the shutdown.
template <typename T>
struct PluginThunks {
  static int32_t Init(const berth_host* host, void** instance, berth_sink* err) noexcept {
    return Guard(err, [&] {
      std::unique_ptr<T> p;
      Status s = T::Create(Host(host), &p);
      if (s.ok()) {
        if (!p) return Internal("plugin Create returned no instance");
        *instance = p.release();
      }
      return s;
    });
  }
  static const void* GetInterface(void* instance, const char* iface) noexcept {
    try {
      return static_cast<T*>(instance)->GetInterface(iface);
    } catch (...) {
      return nullptr;
    }
  }
  static void Shutdown(void* instance) noexcept {
    try {
      delete static_cast<T*>(instance);
    } catch (...) {
    }
  }
};

}  // namespace berth::sdk

#define BERTH_PLUGIN_EXPORT extern "C" __attribute__((visibility("default")))

// Defines the plugin's entry symbol. REQUIRES is a braced list of kinds or ids, e.g.
// BERTH_REQUIRES("runtime", "network") or BERTH_NO_REQUIRES.
#define BERTH_REQUIRES(...) \
  { __VA_ARGS__, nullptr }
#define BERTH_NO_REQUIRES \
  { nullptr }

#define BERTH_PLUGIN(CLASS, ID, KIND, VERSION, DESCRIPTION, DEFAULT_CONFIG_JSON, REQUIRES) \
  BERTH_PLUGIN_EXPORT const berth_plugin_descriptor* berth_plugin_entry(void) {            \
    static const char* const kRequires[] = REQUIRES;                                        \
    static const berth_plugin_descriptor kDescriptor = {                                    \
        sizeof(berth_plugin_descriptor),                                                    \
        BERTH_ABI_MAJOR,                                                                    \
        BERTH_ABI_MINOR,                                                                    \
        ID,                                                                                 \
        KIND,                                                                               \
        VERSION,                                                                            \
        kRequires,                                                                          \
        &::berth::sdk::PluginThunks<CLASS>::Init,                                           \
        &::berth::sdk::PluginThunks<CLASS>::GetInterface,                                   \
        &::berth::sdk::PluginThunks<CLASS>::Shutdown,                                       \
        DESCRIPTION,                                                                        \
        DEFAULT_CONFIG_JSON,                                                                \
    };                                                                                      \
    return &kDescriptor;                                                                    \
  }
