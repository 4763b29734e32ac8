// SPDX-License-Identifier: Apache-2.0
//
// io.example.event-journal: a third-party berth plugin built against the installed SDK only.
//
// It subscribes to every event berthd publishes (topic prefix "/") and appends each one to
// a journal file as one JSON line:
//
//   {"time":"2024-05-01T12:00:00.123Z","topic":"/containers/create","payload":{...}}
//
// and keeps the number of events written in berthd's metadata store, so the count survives
// restarts. At Start() it publishes one event of its own, "/event-journal/started", which
// comes back through its own subscription: the first line of every run proves that the
// whole event path works.
//
// Configuration (config.yaml):
//
//   plugins:
//     io.example.event-journal:
//       path: /var/log/berth/events.jsonl   # absolute; default <plugin state dir>/events.jsonl
//       max_bytes: 10485760                 # rotate past this size; one ".1" file is kept
//
// What a plugin author must know is explained where it matters, in comments marked "ABI:".
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

// The SDK's C++ helpers. Everything in it is header-only and reaches berthd through the
// C tables of the ABI headers; the plugin links against nothing of berth's.
#include "berth/plugin.hpp"

namespace event_journal {
namespace {

namespace sdk = berth::sdk;

constexpr char kPluginId[] = "io.example.event-journal";
constexpr uint64_t kDefaultMaxBytes = uint64_t{10} * 1024 * 1024;
// Lines waiting for the writer thread; beyond this, events are dropped (and counted) rather
// than letting a stuck disk grow berthd's memory without bound.
constexpr size_t kMaxQueuedLines = 65536;
// Store bucket and key of the persistent counter. Buckets are private to the plugin: the
// host prefixes them with the plugin id, so "stats" cannot collide with anyone else's.
constexpr char kStatsBucket[] = "stats";
constexpr char kEventsKey[] = "events";
constexpr char kStartedTopic[] = "/event-journal/started";

std::string ErrnoText(int err) { return std::system_category().message(err); }

// ---- just enough JSON -------------------------------------------------------------------
//
// berthd hands a plugin its configuration subtree as JSON text. The SDK deliberately ships
// no JSON library (use whichever you like); this example stays dependency-free with a small
// validating reader. It is also used to tell whether an event payload is JSON (embedded as
// is) or not (embedded as a string).
class JsonReader {
 public:
  // True when `text` is exactly one JSON value, surrounded by optional whitespace.
  static bool IsValid(std::string_view text) {
    JsonReader r(text);
    if (!r.Value(0)) return false;
    r.Ws();
    return r.i_ == text.size();
  }

  // Splits a JSON object into (decoded key, raw JSON text of the value) pairs.
  static bool Members(std::string_view text,
                      std::vector<std::pair<std::string, std::string_view>>* out) {
    JsonReader r(text);
    r.Ws();
    if (!r.Eat('{')) return false;
    r.Ws();
    if (!r.Eat('}')) {
      for (;;) {
        r.Ws();
        std::string key;
        if (!r.String(&key)) return false;
        r.Ws();
        if (!r.Eat(':')) return false;
        r.Ws();
        size_t start = r.i_;
        if (!r.Value(1)) return false;
        out->emplace_back(std::move(key), text.substr(start, r.i_ - start));
        r.Ws();
        if (r.Eat(',')) continue;
        if (r.Eat('}')) break;
        return false;
      }
    }
    r.Ws();
    return r.i_ == text.size();
  }

  // Decodes `raw`, which must be exactly one JSON string literal.
  static bool DecodeString(std::string_view raw, std::string* out) {
    JsonReader r(raw);
    return r.String(out) && r.i_ == raw.size();
  }

 private:
  static constexpr int kMaxDepth = 64;  // hostile payloads must not exhaust the stack

  explicit JsonReader(std::string_view s) : s_(s) {}

  bool Eat(char c) {
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  bool Digit() const { return i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9'; }
  void Ws() {
    while (i_ < s_.size() &&
           (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) {
      ++i_;
    }
  }
  bool Word(std::string_view w) {
    if (s_.substr(i_, w.size()) != w) return false;
    i_ += w.size();
    return true;
  }

  bool Value(int depth) {
    if (depth > kMaxDepth) return false;
    Ws();
    if (i_ >= s_.size()) return false;
    switch (s_[i_]) {
      case '"':
        return String(nullptr);
      case '{':
      case '[': {
        const bool object = s_[i_++] == '{';
        const char close = object ? '}' : ']';
        Ws();
        if (Eat(close)) return true;
        for (;;) {
          Ws();
          if (object) {
            if (!String(nullptr)) return false;
            Ws();
            if (!Eat(':')) return false;
          }
          if (!Value(depth + 1)) return false;
          Ws();
          if (Eat(',')) continue;
          return Eat(close);
        }
      }
      case 't':
        return Word("true");
      case 'f':
        return Word("false");
      case 'n':
        return Word("null");
      default:
        return Number();
    }
  }

  bool Number() {
    Eat('-');
    if (!Eat('0')) {
      if (!Digit()) return false;
      while (Digit()) ++i_;
    }
    if (Eat('.')) {
      if (!Digit()) return false;
      while (Digit()) ++i_;
    }
    if (Eat('e') || Eat('E')) {
      if (!Eat('+')) Eat('-');
      if (!Digit()) return false;
      while (Digit()) ++i_;
    }
    return true;
  }

  bool Hex4(uint32_t* v) {
    if (i_ + 4 > s_.size()) return false;
    *v = 0;
    for (int k = 0; k < 4; ++k) {
      char c = s_[i_++];
      int d = c >= '0' && c <= '9'   ? c - '0'
              : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                     : -1;
      if (d < 0) return false;
      *v = *v * 16 + static_cast<uint32_t>(d);
    }
    return true;
  }

  static void AppendUtf8(uint32_t cp, std::string* out) {
    if (cp < 0x80) {
      out->push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }

  // A string literal; decoded into *out unless out is null.
  bool String(std::string* out) {
    if (!Eat('"')) return false;
    while (i_ < s_.size()) {
      const char c = s_[i_++];
      if (c == '"') return true;
      if (static_cast<unsigned char>(c) < 0x20) return false;
      if (c != '\\') {
        if (out != nullptr) out->push_back(c);
        continue;
      }
      if (i_ >= s_.size()) return false;
      char e = s_[i_++];
      switch (e) {
        case '"':
        case '\\':
        case '/':
          break;
        case 'b':
          e = '\b';
          break;
        case 'f':
          e = '\f';
          break;
        case 'n':
          e = '\n';
          break;
        case 'r':
          e = '\r';
          break;
        case 't':
          e = '\t';
          break;
        case 'u': {
          uint32_t cp = 0;
          if (!Hex4(&cp)) return false;
          if (cp >= 0xD800 && cp <= 0xDBFF) {  // a surrogate pair
            uint32_t low = 0;
            if (!Word("\\u") || !Hex4(&low) || low < 0xDC00 || low > 0xDFFF) return false;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            return false;
          }
          if (out != nullptr) AppendUtf8(cp, out);
          continue;
        }
        default:
          return false;
      }
      if (out != nullptr) out->push_back(e);
    }
    return false;
  }

  std::string_view s_;
  size_t i_ = 0;
};

// Replaces every byte that is not part of a well-formed UTF-8 sequence with U+FFFD, so that
// each journal line is valid JSON even when a topic or payload is not valid UTF-8.
std::string ToValidUtf8(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  size_t i = 0;
  while (i < in.size()) {
    const auto b = static_cast<unsigned char>(in[i]);
    const size_t len = b < 0x80                   ? 1
                       : (b >= 0xC2 && b <= 0xDF) ? 2
                       : (b >= 0xE0 && b <= 0xEF) ? 3
                       : (b >= 0xF0 && b <= 0xF4) ? 4
                                                  : 0;
    bool ok = len != 0 && i + len <= in.size();
    for (size_t k = 1; ok && k < len; ++k) {
      const auto c = static_cast<unsigned char>(in[i + k]);
      unsigned char lo = 0x80, hi = 0xBF;  // the second byte's range is narrower after some leads
      if (k == 1 && b == 0xE0) lo = 0xA0;  // no overlong 3-byte forms
      if (k == 1 && b == 0xED) hi = 0x9F;  // no UTF-16 surrogates
      if (k == 1 && b == 0xF0) lo = 0x90;  // no overlong 4-byte forms
      if (k == 1 && b == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
      ok = c >= lo && c <= hi;
    }
    if (ok) {
      out.append(in.substr(i, len));
      i += len;
    } else {
      out += "\xEF\xBF\xBD";
      ++i;
    }
  }
  return out;
}

// RFC 3339 in UTC with milliseconds: "2024-05-01T12:00:00.123Z".
std::string Rfc3339Now() {
  struct timespec ts {};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm {};
  ::gmtime_r(&ts.tv_sec, &tm);
  char buf[40];
  size_t n = std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(buf + n, sizeof(buf) - n, ".%03ldZ", ts.tv_nsec / 1000000L);
  return buf;
}

// ---- the plugin --------------------------------------------------------------------------

// The SDK's BERTH_PLUGIN macro (at the end of this file) turns this class into the C
// descriptor. It needs:
//   static sdk::Status Create(sdk::Host, std::unique_ptr<T>*)  -> descriptor.init
//   const void* GetInterface(std::string_view)                -> descriptor.get_interface
//   the destructor                                             -> descriptor.shutdown
// and, for sdk::ServiceTable<T>, Status(), Start() and Stop(). The SDK catches exceptions
// at the boundary (ABI: nothing may throw into berthd) and turns them into INTERNAL errors;
// returning an sdk::Status is still the better way to report a failure.
class EventJournal {
 public:
  // ABI: init. Runs once, in dependency order, before any service starts. Validate the
  // whole configuration here and refuse it with a precise message: berthd prints it and
  // exits, so an operator sees "config.yaml:12: ..." instead of a half-working daemon.
  static sdk::Status Create(sdk::Host host, std::unique_ptr<EventJournal>* out) {
    // ABI: members marked "since 1.N" must be checked before use. This plugin is built for
    // ABI 1.1, so berthd only loads it into a 1.1+ host and the check cannot fail; it is
    // here because it is the pattern for optional members of later minors.
    const berth_host* raw = host.raw();
    if (!BERTH_HAS_MEMBER(raw, berth_host, unsubscribe) ||
        !BERTH_HAS_MEMBER(raw, berth_host, config_where)) {
      return sdk::FailedPrecondition("berthd is too old: event subscriptions need ABI 1.1");
    }

    // The configuration subtree arrives as JSON (converted from YAML by berthd); "{}" when
    // config.yaml lists the plugin with no settings. Unknown keys are the plugin's to refuse.
    auto text = host.Config();
    if (!text.ok()) return text.status();
    std::vector<std::pair<std::string, std::string_view>> members;
    if (!JsonReader::Members(*text, &members)) {
      return sdk::Internal("berthd passed a configuration that is not a JSON object: " + *text);
    }
    std::string path = host.StateDir() + "/events.jsonl";
    uint64_t max_bytes = kDefaultMaxBytes;
    for (const auto& [key, value] : members) {
      // host.ConfigWhere() gives "FILE:LINE" of a key inside this plugin's subtree.
      const std::string where = host.ConfigWhere(key.c_str()) + ": key \"" + key + "\": ";
      if (key == "path") {
        path.clear();
        if (!JsonReader::DecodeString(value, &path)) {
          return sdk::InvalidArgument(where + "expected a string, got " + std::string(value));
        }
        if (path.empty() || path.front() != '/' || path.back() == '/' ||
            path.find('\0') != std::string::npos) {
          return sdk::InvalidArgument(where + "expected an absolute file path, got \"" +
                                      sdk::JsonEscape(path) + "\"");
        }
      } else if (key == "max_bytes") {
        // YAML integers arrive as JSON numbers; "10MiB" would arrive as a string.
        auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), max_bytes);
        if (ec != std::errc() || end != value.data() + value.size() || max_bytes == 0) {
          return sdk::InvalidArgument(where + "expected a positive whole number of bytes, got " +
                                      std::string(value));
        }
      } else {
        return sdk::InvalidArgument(host.ConfigWhere(key.c_str()) + ": unknown key \"" + key +
                                    "\" for plugin " + kPluginId +
                                    " (known keys: path, max_bytes)");
      }
    }

    // The counter from earlier runs. The store is berthd's (SQLite, crash-safe); keys and
    // values are bytes, this plugin stores a decimal number. A read-only transaction is
    // ended by Abort (the sdk::Txn destructor does it).
    uint64_t events = 0;
    {
      auto txn = host.Begin(/*writable=*/false);
      if (!txn.ok()) return txn.status();
      auto value = txn->Get(kStatsBucket, kEventsKey);
      if (!value.ok()) return value.status();
      if (value->has_value()) {
        const std::string& v = **value;
        auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), events);
        if (ec != std::errc() || end != v.data() + v.size()) {
          host.Warn("store value stats/events is not a number (\"" + sdk::JsonEscape(v) +
                    "\"); counting from 0");
          events = 0;
        }
      }
    }

    out->reset(new EventJournal(host, std::move(path), max_bytes, events));
    // A journal that cannot be written does not stop berthd: the CRI runtime matters more
    // than its audit trail. The plugin runs and its status() says what is wrong.
    (*out)->OpenJournal();
    return sdk::Status::Ok();
  }

  // ABI: shutdown. berthd calls stop() on every service before any shutdown, but Stop()
  // must be idempotent anyway: if another plugin fails to start, berthd stops every
  // initialised service, including ones whose start() never ran.
  ~EventJournal() { Stop(); }

  EventJournal(const EventJournal&) = delete;
  EventJournal& operator=(const EventJournal&) = delete;

  // ABI: the table returned must stay valid until shutdown; the SDK's tables are static.
  const void* GetInterface(std::string_view iface) {
    if (iface == BERTH_IFACE_SERVICE_V1) return sdk::ServiceTable<EventJournal>();
    return nullptr;  // an interface this plugin does not offer
  }

  // ABI: status() must be cheap (berthd may call it on every CRI Status). Ready when the
  // journal can be written; otherwise the path and the errno text.
  sdk::Readiness Status() {
    {
      std::lock_guard<std::mutex> lock(error_mu_);
      if (error_ != 0) {
        return sdk::Readiness::NotReady("JournalNotWritable",
                                        path_ + ": " + error_op_ + ": " + ErrnoText(error_));
      }
    }
    if (::access(path_.c_str(), W_OK) == 0) return sdk::Readiness::Ready();
    int err = errno;
    if (err == ENOENT) {  // not created yet (or rotated away): the directory must be writable
      std::string dir = std::filesystem::path(path_).parent_path().string();
      if (::access(dir.c_str(), W_OK | X_OK) == 0) return sdk::Readiness::Ready();
      err = errno;
    }
    return sdk::Readiness::NotReady("JournalNotWritable", path_ + ": " + ErrnoText(err));
  }

  // ABI: start() runs after every plugin's init, in start order; it returns once the
  // service works. A failure here stops berthd, with this message.
  sdk::Status Start() {
    if (started_) return sdk::Status::Ok();
    writer_ = std::thread(&EventJournal::WriterLoop, this);

    // subscribe()'s callback is a C function pointer plus a `void* user`. It runs on the
    // publisher's thread, for events published on any thread, and must return quickly.
    //
    // ABI: unsubscribe() removes the subscription, but a publisher that looked it up just
    // before may still be about to call the callback. So `user` is not `this` (which
    // shutdown deletes) but a small gate that is never freed (a plugin's code is never
    // unloaded either): Stop() closes it, and a late callback finds it closed.
    gate_ = new Gate;
    gate_->journal = this;
    const berth_host* raw = host_.raw();
    subscription_ = raw->subscribe(raw->ctx, "/", &EventJournal::OnEvent, gate_);
    if (subscription_ == 0) return sdk::Internal("berthd refused the event subscription");
    started_ = true;

    host_.Info("journal " + path_ + " (rotates past " + std::to_string(max_bytes_) +
               " bytes): events written so far: " + std::to_string(events_.load()));

    // Our own event: it comes back through the subscription above and becomes this run's
    // first journal line. Payloads are bytes; JSON by convention.
    const std::string payload = "{\"pid\":" + std::to_string(::getpid()) + "}";
    if (sdk::Status s = host_.Publish(kStartedTopic, payload); !s.ok()) {
      host_.Warn("cannot publish " + std::string(kStartedTopic) + ": " + s.message());
    }
    return sdk::Status::Ok();
  }

  // ABI: stop() is called once berthd is shutting down, before any shutdown(). Every line
  // queued before it returns is written.
  void Stop() {
    if (subscription_ != 0) {
      const berth_host* raw = host_.raw();
      raw->unsubscribe(raw->ctx, subscription_);
      subscription_ = 0;
    }
    if (gate_ != nullptr) {
      std::lock_guard<std::mutex> lock(gate_->mu);
      gate_->journal = nullptr;
      gate_ = nullptr;  // deliberately leaked, see Start()
    }
    {
      std::lock_guard<std::mutex> lock(queue_mu_);
      stopping_ = true;
    }
    queue_cv_.notify_all();
    if (writer_.joinable()) writer_.join();
    if (fd_ >= 0) {
      ::fdatasync(fd_);
      ::close(fd_);
      fd_ = -1;
    }
    if (started_) {
      started_ = false;
      host_.Info("stopped: events written so far: " + std::to_string(events_.load()) +
                 (dropped_ > 0 ? ", dropped: " + std::to_string(dropped_.load()) : ""));
    }
  }

 private:
  struct Gate {
    std::mutex mu;
    EventJournal* journal = nullptr;  // null once stopped
  };

  EventJournal(sdk::Host host, std::string path, uint64_t max_bytes, uint64_t events)
      : host_(host), path_(std::move(path)), max_bytes_(max_bytes), events_(events) {}

  // ABI: a C callback. The topic and payload are borrowed for the call only: copy them.
  // Nothing may throw out of it, so the work is wrapped.
  static void OnEvent(void* user, berth_str topic, berth_str payload) noexcept {
    auto* gate = static_cast<Gate*>(user);
    try {
      std::string_view p = sdk::View(payload);
      std::string line = "{\"time\":\"" + Rfc3339Now() + "\",\"topic\":\"" +
                         sdk::JsonEscape(sdk::View(topic)) + "\",\"payload\":";
      if (!p.empty() && JsonReader::IsValid(p)) {
        line += p;  // JSON as published; it must not span lines in a JSON-lines file
        std::erase_if(line, [](char c) { return c == '\n' || c == '\r'; });
      } else {
        line += "\"" + sdk::JsonEscape(p) + "\"";
      }
      line = ToValidUtf8(line) + "}\n";
      std::lock_guard<std::mutex> lock(gate->mu);
      if (gate->journal != nullptr) gate->journal->Enqueue(std::move(line));
    } catch (...) {
      // Out of memory: the event is lost; there is nobody to report it to on this thread.
    }
  }

  // Hands a line to the writer thread, so the publisher never waits for the disk, and so
  // that the store is never entered from inside someone else's callback (berthd allows one
  // write transaction per thread: a publisher holding one would make ours fail).
  void Enqueue(std::string line) {
    {
      std::lock_guard<std::mutex> lock(queue_mu_);
      if (stopping_) return;
      if (queue_.size() >= kMaxQueuedLines) {
        if (dropped_++ == 0) host_.Warn("journal writer is behind; dropping events");
        return;
      }
      queue_.push_back(std::move(line));
    }
    queue_cv_.notify_one();
  }

  // The writer thread: writes queued lines in batches, then records the new count in the
  // store with one transaction per batch.
  void WriterLoop() {
    std::unique_lock<std::mutex> lock(queue_mu_);
    for (;;) {
      queue_cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and everything is written
      std::deque<std::string> batch;
      batch.swap(queue_);
      lock.unlock();
      uint64_t written = 0;
      FollowExternalRotation();
      for (const std::string& line : batch) written += WriteLine(line) ? 1 : 0;
      if (written > 0) SaveCount(events_ += written);
      lock.lock();
    }
  }

  bool OpenJournal() {
    std::error_code ec;
    std::filesystem::create_directories(std::filesystem::path(path_).parent_path(), ec);
    fd_ = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd_ < 0) return Failed("open", errno);
    struct stat st {};
    size_ = ::fstat(fd_, &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
    return true;
  }

  // logrotate or an operator may move or delete the file: then start a new one at path_.
  void FollowExternalRotation() {
    if (fd_ < 0) return;
    struct stat open_st {};
    struct stat path_st {};
    if (::fstat(fd_, &open_st) != 0) return;
    if (::stat(path_.c_str(), &path_st) == 0 && path_st.st_dev == open_st.st_dev &&
        path_st.st_ino == open_st.st_ino) {
      return;
    }
    ::close(fd_);
    fd_ = -1;
    OpenJournal();
  }

  // Keeps exactly one old generation: path.1 is replaced.
  void Rotate() {
    ::fdatasync(fd_);
    ::close(fd_);
    fd_ = -1;
    const std::string old = path_ + ".1";
    if (::rename(path_.c_str(), old.c_str()) != 0) {
      host_.Warn("cannot rotate " + path_ + " to " + old + ": " + ErrnoText(errno));
    }
    if (OpenJournal()) host_.Debug("rotated " + path_ + " to " + old);
  }

  // Flush policy: each line goes to the kernel with one write(2) on an O_APPEND descriptor
  // as soon as the writer thread has it, so a crash of berthd loses nothing that was
  // written; the file is fdatasync()ed at rotation and at stop (a power loss may lose the
  // last lines). A line that cannot be written is lost and not counted.
  bool WriteLine(const std::string& line) {
    if (fd_ < 0 && !OpenJournal()) return false;
    if (size_ > 0 && size_ + line.size() > max_bytes_) {
      Rotate();
      if (fd_ < 0) return false;
    }
    size_t done = 0;
    while (done < line.size()) {
      ssize_t n = ::write(fd_, line.data() + done, line.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Failed("write", errno);
      done += static_cast<size_t>(n);
    }
    size_ += line.size();
    Recovered();
    return true;
  }

  void SaveCount(uint64_t value) {
    auto txn = host_.Begin(/*writable=*/true);
    sdk::Status s =
        txn.ok() ? txn->Put(kStatsBucket, kEventsKey, std::to_string(value)) : txn.status();
    if (s.ok()) s = txn->Commit();  // a write transaction not committed is aborted
    if (!s.ok() && !save_failed_) {
      host_.Warn("cannot save the event count in the store: " + s.message());
    }
    save_failed_ = !s.ok();
  }

  // Records a failure for status(); logs it once, not once per event.
  bool Failed(const char* op, int err) {
    std::lock_guard<std::mutex> lock(error_mu_);
    if (error_ == 0) host_.Error("cannot " + std::string(op) + " " + path_ + ": " + ErrnoText(err));
    error_ = err;
    error_op_ = op;
    return false;
  }
  void Recovered() {
    std::lock_guard<std::mutex> lock(error_mu_);
    if (error_ != 0) host_.Info("journal " + path_ + " is writable again");
    error_ = 0;
  }

  // ABI: the host table (inside sdk::Host) stays valid until shutdown returns.
  sdk::Host host_;
  const std::string path_;
  const uint64_t max_bytes_;

  std::atomic<uint64_t> events_;  // written, this run and earlier ones
  std::atomic<uint64_t> dropped_{0};
  bool started_ = false;
  uint64_t subscription_ = 0;
  Gate* gate_ = nullptr;

  std::mutex queue_mu_;
  std::condition_variable queue_cv_;
  std::deque<std::string> queue_;  // guarded by queue_mu_
  bool stopping_ = false;          // guarded by queue_mu_
  std::thread writer_;

  // Owned by the writer thread once started (by Create before that).
  int fd_ = -1;
  uint64_t size_ = 0;
  bool save_failed_ = false;

  std::mutex error_mu_;
  int error_ = 0;  // errno of the last failed open or write; 0 when the last one worked
  std::string error_op_;
};

}  // namespace
}  // namespace event_journal

// The one exported symbol, berth_plugin_entry(), returning the static descriptor.
//   id        reverse-DNS and unique among the plugins berthd finds;
//   kind      "service": started after every plugin's init, stopped before any shutdown;
//   version   the plugin's own semver (the ABI version is filled in by the macro);
//   default   printed by `berthd --print-default-config` (path's default depends on --state);
//   requires  nothing: kinds ("runtime") or ids that must start first.
BERTH_PLUGIN(event_journal::EventJournal, "io.example.event-journal", BERTH_KIND_SERVICE,
             "1.0.0", "Appends every berthd event to a JSON-lines journal file",
             R"({"max_bytes":10485760})", BERTH_NO_REQUIRES)
