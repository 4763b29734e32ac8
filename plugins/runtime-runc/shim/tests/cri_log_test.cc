// SPDX-License-Identifier: Apache-2.0
#include "plugins/runtime-runc/shim/cri_log.h"

#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace berth::shim {
namespace {

namespace fs = std::filesystem;
using std::chrono::nanoseconds;
using std::chrono::system_clock;

// Parses Go's RFC3339Nano as written by FormatTimestamp; nanoseconds since the epoch.
std::optional<int64_t> ParseTimestamp(std::string_view ts) {
  if (ts.size() < 20 || ts.back() != 'Z') return std::nullopt;
  struct tm tm {};
  int consumed = 0;
  std::string s(ts);
  if (sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
             &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &consumed) != 6 ||
      consumed != 19) {
    return std::nullopt;
  }
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  int64_t frac = 0;
  std::string_view rest = ts.substr(19, ts.size() - 20);
  if (!rest.empty()) {
    if (rest[0] != '.' || rest.size() < 2 || rest.size() > 10 || rest.back() == '0') {
      return std::nullopt;
    }
    std::string digits(rest.substr(1));
    for (char c : digits) {
      if (c < '0' || c > '9') return std::nullopt;
    }
    digits.append(9 - digits.size(), '0');
    frac = std::stoll(digits);
  }
  return static_cast<int64_t>(timegm(&tm)) * 1'000'000'000 + frac;
}

struct Entry {
  std::string stream;
  char tag = 0;
  std::string message;
  int64_t ns = 0;
};

// Parses a whole CRI log; counts lines that do not parse in *bad.
std::vector<Entry> ParseLog(const std::string& content, size_t* bad) {
  std::vector<Entry> entries;
  *bad = 0;
  size_t pos = 0;
  while (pos < content.size()) {
    size_t nl = content.find('\n', pos);
    if (nl == std::string::npos) {  // unterminated last line: torn write
      ++*bad;
      break;
    }
    std::string_view line(content.data() + pos, nl - pos);
    pos = nl + 1;
    size_t s1 = line.find(' ');
    if (s1 == std::string_view::npos) {
      ++*bad;
      continue;
    }
    std::optional<int64_t> ns = ParseTimestamp(line.substr(0, s1));
    std::string_view rest = line.substr(s1 + 1);
    Entry e;
    if (rest.substr(0, 7) == "stdout " || rest.substr(0, 7) == "stderr ") {
      e.stream = std::string(rest.substr(0, 6));
      rest.remove_prefix(7);
    }
    if (!ns || e.stream.empty() || rest.size() < 2 || (rest[0] != 'F' && rest[0] != 'P') ||
        rest[1] != ' ') {
      ++*bad;
      continue;
    }
    e.ns = *ns;
    e.tag = rest[0];
    e.message = std::string(rest.substr(2));
    entries.push_back(std::move(e));
  }
  return entries;
}

std::string ReadFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class CriLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/berth-crilog-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    log_ = dir_ / "0.log";
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  std::unique_ptr<CriLogWriter> OpenOrDie(size_t max = CriLogWriter::kDefaultMaxLineBytes) {
    absl::StatusOr<std::unique_ptr<CriLogWriter>> w = CriLogWriter::Open(log_, max);
    EXPECT_TRUE(w.ok()) << w.status();
    return w.ok() ? std::move(*w) : nullptr;
  }

  std::vector<Entry> ReadEntries(const fs::path& p) {
    size_t bad = 0;
    std::vector<Entry> e = ParseLog(ReadFile(p), &bad);
    EXPECT_EQ(bad, 0u) << "unparsable lines in " << p;
    return e;
  }
  std::vector<Entry> ReadEntries() { return ReadEntries(log_); }

  fs::path dir_;
  fs::path log_;
};

system_clock::time_point At(int64_t secs, int64_t ns) {
  return system_clock::time_point(
      std::chrono::duration_cast<system_clock::duration>(nanoseconds(secs * 1'000'000'000 + ns)));
}

TEST(FormatTimestampTest, MatchesGoRfc3339Nano) {
  // 2016-10-06T00:17:09Z is 1475713029.
  struct Case {
    int64_t secs;
    int64_t ns;
    const char* want;
  } cases[] = {
      {0, 0, "1970-01-01T00:00:00Z"},
      {1475713029, 0, "2016-10-06T00:17:09Z"},
      {1475713029, 669794202, "2016-10-06T00:17:09.669794202Z"},
      {1475713029, 669794200, "2016-10-06T00:17:09.6697942Z"},
      {1475713029, 500000000, "2016-10-06T00:17:09.5Z"},
      {1475713029, 1, "2016-10-06T00:17:09.000000001Z"},
      {1475713029, 10, "2016-10-06T00:17:09.00000001Z"},
      {1475713029, 999999999, "2016-10-06T00:17:09.999999999Z"},
      {951782400, 120000000, "2000-02-29T00:00:00.12Z"},
      {-1, 500000000, "1969-12-31T23:59:59.5Z"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(FormatTimestamp(At(c.secs, c.ns)), c.want);
    std::optional<int64_t> back = ParseTimestamp(c.want);
    ASSERT_TRUE(back.has_value()) << c.want;
    EXPECT_EQ(*back, c.secs * 1'000'000'000 + c.ns) << c.want;
  }
}

TEST_F(CriLogTest, SimpleLinesBothStreams) {
  auto w = OpenOrDie();
  ASSERT_TRUE(w);
  ASSERT_TRUE(w->Out().Write("hello\nworld\n").ok());
  ASSERT_TRUE(w->Err().Write("oops\n").ok());
  ASSERT_TRUE(w->Out().Write("again\n").ok());
  struct stat st {};
  ASSERT_EQ(stat(log_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777 & ~0640, 0u) << "mode must not exceed 0640";
  w.reset();
  std::vector<Entry> e = ReadEntries();
  ASSERT_EQ(e.size(), 4u);
  EXPECT_EQ(e[0].stream, "stdout");
  EXPECT_EQ(e[0].message, "hello");
  EXPECT_EQ(e[1].message, "world");
  EXPECT_EQ(e[2].stream, "stderr");
  EXPECT_EQ(e[2].message, "oops");
  EXPECT_EQ(e[3].message, "again");
  for (const Entry& x : e) EXPECT_EQ(x.tag, 'F');
  // The exact bytes of one line.
  std::string raw = ReadFile(log_);
  std::string first = raw.substr(0, raw.find('\n') + 1);
  EXPECT_EQ(first.substr(first.find(' ')), " stdout F hello\n");
}

TEST_F(CriLogTest, OpenRejectsBadArguments) {
  EXPECT_FALSE(CriLogWriter::Open(dir_ / "missing" / "0.log").ok());
  EXPECT_EQ(CriLogWriter::Open(log_, 0).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(CriLogTest, OpenAppendsToExistingFile) {
  {
    auto w = OpenOrDie();
    ASSERT_TRUE(w->Out().Write("one\n").ok());
  }
  {
    auto w = OpenOrDie();
    ASSERT_TRUE(w->Out().Write("two\n").ok());
  }
  std::vector<Entry> e = ReadEntries();
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(e[0].message, "one");
  EXPECT_EQ(e[1].message, "two");
}

TEST_F(CriLogTest, LongLineBecomesPartialChunksThenFull) {
  auto w = OpenOrDie();
  std::string line;
  for (int i = 0; line.size() < 40000; ++i) line.push_back(static_cast<char>('a' + i % 26));
  ASSERT_TRUE(w->Out().Write(line + "\n").ok());
  w.reset();
  std::vector<Entry> e = ReadEntries();
  ASSERT_EQ(e.size(), 3u);
  EXPECT_EQ(e[0].tag, 'P');
  EXPECT_EQ(e[0].message.size(), 16384u);
  EXPECT_EQ(e[1].tag, 'P');
  EXPECT_EQ(e[1].message.size(), 16384u);
  EXPECT_EQ(e[2].tag, 'F');
  EXPECT_EQ(e[2].message.size(), 40000u - 2 * 16384u);
  EXPECT_EQ(e[0].message + e[1].message + e[2].message, line);
}

TEST_F(CriLogTest, LongLineAcrossManyWritesMatchesInput) {
  auto w = OpenOrDie(10);
  std::string line(95, 'x');
  for (size_t i = 0; i < line.size(); ++i) line[i] = static_cast<char>('0' + i % 10);
  // Odd-sized chunks so the cut points never line up with the writes.
  for (size_t i = 0; i < line.size(); i += 7) ASSERT_TRUE(w->Out().Write(line.substr(i, 7)).ok());
  ASSERT_TRUE(w->Out().Write("\n").ok());
  w.reset();
  std::vector<Entry> e = ReadEntries();
  ASSERT_EQ(e.size(), 10u);
  std::string joined;
  for (size_t i = 0; i < e.size(); ++i) {
    EXPECT_EQ(e[i].tag, i + 1 == e.size() ? 'F' : 'P');
    EXPECT_EQ(e[i].message.size(), i + 1 == e.size() ? 5u : 10u);
    joined += e[i].message;
  }
  EXPECT_EQ(joined, line);
}

TEST_F(CriLogTest, LineOfExactlyMaxBytesIsOneFullEntry) {
  auto w = OpenOrDie();
  std::string exact(16384, 'm');
  std::string twice(2 * 16384, 'n');
  ASSERT_TRUE(w->Out().Write(exact + "\n").ok());
  ASSERT_TRUE(w->Out().Write(exact + "y\n").ok());
  ASSERT_TRUE(w->Out().Write(twice + "\n").ok());
  w.reset();
  std::vector<Entry> e = ReadEntries();
  ASSERT_EQ(e.size(), 5u);
  EXPECT_EQ(e[0].tag, 'F');
  EXPECT_EQ(e[0].message, exact);
  EXPECT_EQ(e[1].tag, 'P');
  EXPECT_EQ(e[1].message, exact);
  EXPECT_EQ(e[2].tag, 'F');
  EXPECT_EQ(e[2].message, "y");
  // 2*max: P(max) then F(max), never an empty F.
  EXPECT_EQ(e[3].tag, 'P');
  EXPECT_EQ(e[4].tag, 'F');
  EXPECT_EQ(e[3].message + e[4].message, twice);
}

TEST_F(CriLogTest, CarriageReturnsFollowContainerd) {
  auto w = OpenOrDie(4);
  ASSERT_TRUE(w->Out().Write("dos\r\n").ok());  // CRLF terminator dropped
  ASSERT_TRUE(w->Out().Write("a\rb\n").ok());   // lone CR is content
  ASSERT_TRUE(w->Out().Write("spl\r").ok());    // CRLF split across two writes
  ASSERT_TRUE(w->Out().Write("\n").ok());
  ASSERT_TRUE(w->Out().Write("abcd\r\n").ok());  // CR of CRLF does not count to max
  ASSERT_TRUE(w->Out().Write("\r\r\n").ok());    // only the last CR is the terminator
  ASSERT_TRUE(w->Out().Write("\r\n").ok());      // empty CRLF line
  ASSERT_TRUE(w->Out().Write("tail\r").ok());    // CR at end of stream is content
  ASSERT_TRUE(w->Out().Close().ok());
  std::vector<Entry> e = ReadEntries();
  ASSERT_EQ(e.size(), 8u);
  EXPECT_EQ(e[0].message, "dos");
  EXPECT_EQ(e[1].message, "a\rb");
  EXPECT_EQ(e[2].message, "spl");
  EXPECT_EQ(e[3].message, "abcd");
  EXPECT_EQ(e[3].tag, 'F');
  EXPECT_EQ(e[4].message, "\r");
  EXPECT_EQ(e[5].message, "");
  // "tail\r" is 5 bytes with max 4: P "tail" cut when the stream ends, then P "\r".
  EXPECT_EQ(e[6].tag, 'P');
  EXPECT_EQ(e[6].message, "tail");
  EXPECT_EQ(e[7].tag, 'P');
  EXPECT_EQ(e[7].message, "\r");
}

TEST_F(CriLogTest, EmptyLines) {
  auto w = OpenOrDie();
  ASSERT_TRUE(w->Out().Write("\n\nx\n\n").ok());
  w.reset();
  std::vector<Entry> e = ReadEntries();
  ASSERT_EQ(e.size(), 4u);
  EXPECT_EQ(e[0].message, "");
  EXPECT_EQ(e[1].message, "");
  EXPECT_EQ(e[2].message, "x");
  EXPECT_EQ(e[3].message, "");
  for (const Entry& x : e) EXPECT_EQ(x.tag, 'F');
  std::string raw = ReadFile(log_);
  EXPECT_EQ(raw.substr(raw.find(' '), 11), " stdout F \n");
}

TEST_F(CriLogTest, OneByteWrites) {
  auto w = OpenOrDie(8);
  std::string input = "hello\nworld\n0123456789abcdefghij\nend";
  for (char c : input) ASSERT_TRUE(w->Out().Write(std::string_view(&c, 1)).ok());
  ASSERT_TRUE(w->Out().Close().ok());
  std::vector<Entry> e = ReadEntries();
  std::vector<std::pair<char, std::string>> got;
  for (const Entry& x : e) got.emplace_back(x.tag, x.message);
  std::vector<std::pair<char, std::string>> want = {{'F', "hello"},    {'F', "world"},
                                                    {'P', "01234567"}, {'P', "89abcdef"},
                                                    {'F', "ghij"},     {'P', "end"}};
  EXPECT_EQ(got, want);
}

TEST_F(CriLogTest, FinalUnterminatedLineIsOnePartialEntry) {
  auto w = OpenOrDie();
  ASSERT_TRUE(w->Out().Write("done\nHello from init container!").ok());
  ASSERT_TRUE(w->Err().Close().ok());  // nothing buffered: writes nothing
  EXPECT_EQ(ReadEntries().size(), 1u) << "the tail must stay buffered until the end";
  ASSERT_TRUE(w->Out().Close().ok());
  ASSERT_TRUE(w->Out().Close().ok());  // idempotent
  EXPECT_EQ(w->Out().Write("late\n").code(), absl::StatusCode::kFailedPrecondition);
  w.reset();
  std::vector<Entry> e = ReadEntries();
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(e[1].tag, 'P');
  EXPECT_EQ(e[1].message, "Hello from init container!");
}

TEST_F(CriLogTest, FlushWritesTailAsPartialAndKeepsStreamOpen) {
  auto w = OpenOrDie();
  ASSERT_TRUE(w->Out().Write("prompt> ").ok());
  ASSERT_TRUE(w->Out().Flush().ok());
  ASSERT_TRUE(w->Out().Flush().ok());  // nothing buffered any more
  ASSERT_TRUE(w->Out().Write("answer\n").ok());
  w.reset();
  std::vector<Entry> e = ReadEntries();
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(e[0].tag, 'P');
  EXPECT_EQ(e[0].message, "prompt> ");
  EXPECT_EQ(e[1].tag, 'F');
  EXPECT_EQ(e[1].message, "answer");
}

TEST_F(CriLogTest, DestructorWritesBufferedTail) {
  auto w = OpenOrDie();
  ASSERT_TRUE(w->Err().Write("no newline").ok());
  w.reset();
  std::vector<Entry> e = ReadEntries();
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].stream, "stderr");
  EXPECT_EQ(e[0].tag, 'P');
}

TEST_F(CriLogTest, HooksReceiveRawChunks) {
  auto w = OpenOrDie(4);
  std::vector<std::string> got1, got2;
  w->Out().Attach(1, [&](std::string_view c) { got1.emplace_back(c); });
  w->Out().Attach(2, [&](std::string_view c) { got2.emplace_back(c); });
  ASSERT_TRUE(w->Out().Write("abc\r\n").ok());
  ASSERT_TRUE(w->Out().Write("longer than four").ok());
  ASSERT_TRUE(w->Err().Write("err\n").ok());  // other stream: not delivered
  EXPECT_TRUE(w->Out().Detach(2));
  EXPECT_FALSE(w->Out().Detach(2));
  EXPECT_FALSE(w->Err().Detach(1));
  ASSERT_TRUE(w->Out().Write("\n").ok());
  EXPECT_EQ(got1, (std::vector<std::string>{"abc\r\n", "longer than four", "\n"}));
  EXPECT_EQ(got2, (std::vector<std::string>{"abc\r\n", "longer than four"}));
}

// Reassembles the lines of one stream from P/F entries; checks timestamps never go back.
struct StreamCheck {
  std::vector<std::string> lines;
  std::string current;
  int64_t last_ns = 0;
  size_t decreasing = 0;
  void Add(const Entry& e) {
    if (e.ns < last_ns) ++decreasing;
    last_ns = e.ns;
    current += e.message;
    if (e.tag == 'F') {
      lines.push_back(std::move(current));
      current.clear();
    }
  }
};

// Line `seq` of a test stream: "<seq> <len> " then len payload bytes; every 997th line is
// longer than 16 KiB so the splitting path is exercised under load too.
std::string MakeLine(uint64_t seq) {
  size_t len = (seq % 997 == 0) ? 20000 + seq % 5000 : (seq * 7919) % 300;
  char head[32];
  int n = snprintf(head, sizeof(head), "%010llu %05zu ", static_cast<unsigned long long>(seq), len);
  std::string s(head, static_cast<size_t>(n));
  for (size_t i = 0; i < len; ++i) s.push_back(static_cast<char>('A' + (seq + i) % 26));
  return s;
}

bool LineOk(const std::string& line, uint64_t want_seq) { return line == MakeLine(want_seq); }

// Writes lines until `bytes` of input were written, in chunks of irregular sizes (as pipe
// reads deliver them). Returns the number of lines.
uint64_t ProduceLines(CriLogWriter::Stream& s, size_t bytes, std::atomic<bool>* failed) {
  std::string buf;
  size_t written = 0;
  uint64_t seq = 0;
  size_t chunk = 4096;
  while (written < bytes) {
    while (buf.size() < chunk) buf += MakeLine(seq++) + "\n";
    if (!s.Write(std::string_view(buf).substr(0, chunk)).ok()) failed->store(true);
    written += chunk;
    buf.erase(0, chunk);
    chunk = 1000 + (chunk * 31 + 7) % 64000;
  }
  if (!s.Write(buf).ok()) failed->store(true);
  return seq;
}

TEST_F(CriLogTest, HundredMegabytesFromTwoThreads) {
  auto w = OpenOrDie();
  constexpr size_t kPerStream = 50u << 20;
  std::atomic<bool> failed{false};
  uint64_t out_lines = 0, err_lines = 0;
  auto start = std::chrono::steady_clock::now();
  std::thread t1([&] { out_lines = ProduceLines(w->Out(), kPerStream, &failed); });
  std::thread t2([&] { err_lines = ProduceLines(w->Err(), kPerStream, &failed); });
  t1.join();
  t2.join();
  ASSERT_TRUE(w->Out().Close().ok());
  ASSERT_TRUE(w->Err().Close().ok());
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_FALSE(failed.load());
  w.reset();

  size_t input_bytes = 0;
  for (uint64_t i = 0; i < out_lines; ++i) input_bytes += MakeLine(i).size() + 1;
  for (uint64_t i = 0; i < err_lines; ++i) input_bytes += MakeLine(i).size() + 1;
  std::string content = ReadFile(log_);
  std::cout << "[ throughput ] " << input_bytes / 1e6 << " MB of container output ("
            << out_lines + err_lines << " lines) in " << secs << " s = " << input_bytes / 1e6 / secs
            << " MB/s; log file " << content.size() / 1e6 << " MB\n";
  RecordProperty("throughput_mb_per_s", static_cast<int>(input_bytes / 1e6 / secs));

  size_t bad = 0;
  std::vector<Entry> entries = ParseLog(content, &bad);
  content.clear();
  EXPECT_EQ(bad, 0u);
  std::map<std::string, StreamCheck> streams;
  size_t message_bytes = 0, f_entries = 0;
  for (const Entry& e : entries) {
    ASSERT_LE(e.message.size(), 16384u);
    message_bytes += e.message.size();
    f_entries += e.tag == 'F';
    streams[e.stream].Add(e);
  }
  // Every input byte is either message content or a '\n' that became an F entry.
  EXPECT_EQ(message_bytes + f_entries, input_bytes);
  ASSERT_EQ(streams["stdout"].lines.size(), out_lines);
  ASSERT_EQ(streams["stderr"].lines.size(), err_lines);
  for (auto& [name, sc] : streams) {
    EXPECT_EQ(sc.decreasing, 0u) << name;
    EXPECT_TRUE(sc.current.empty()) << name;
    size_t wrong = 0;
    for (uint64_t i = 0; i < sc.lines.size(); ++i) wrong += !LineOk(sc.lines[i], i);
    EXPECT_EQ(wrong, 0u) << name;
  }
}

TEST_F(CriLogTest, ReopenDuringConcurrentWritesLosesAndSplitsNothing) {
  auto w = OpenOrDie();
  constexpr uint64_t kLines = 200000;
  std::atomic<bool> failed{false};
  auto produce = [&](CriLogWriter::Stream& s) {
    for (uint64_t i = 0; i < kLines; ++i) {
      if (!s.Write(MakeLine(i) + "\n").ok()) failed.store(true);
    }
  };
  std::thread t1([&] { produce(w->Out()); });
  std::thread t2([&] { produce(w->Err()); });
  std::vector<fs::path> files;
  for (int r = 1; r <= 3; ++r) {
    std::this_thread::sleep_for(std::chrono::milliseconds(40));
    fs::path rotated = dir_ / ("0.log." + std::to_string(r));
    fs::rename(log_, rotated);
    files.push_back(rotated);
    EXPECT_TRUE(w->Reopen().ok());
  }
  t1.join();
  t2.join();
  w.reset();
  files.push_back(log_);
  EXPECT_FALSE(failed.load());

  std::map<std::string, std::vector<int>> seen;  // how often each line was seen
  seen["stdout"].assign(kLines, 0);
  seen["stderr"].assign(kLines, 0);
  size_t nonempty_files = 0;
  for (const fs::path& f : files) {
    std::string content = ReadFile(f);
    nonempty_files += !content.empty();
    EXPECT_TRUE(content.empty() || content.back() == '\n') << f;
    size_t bad = 0;
    std::vector<Entry> entries = ParseLog(content, &bad);
    EXPECT_EQ(bad, 0u) << f;
    std::map<std::string, StreamCheck> streams;
    for (const Entry& e : entries) streams[e.stream].Add(e);
    for (auto& [name, sc] : streams) {
      // A line split across files would leave P entries at the end of this file.
      EXPECT_TRUE(sc.current.empty()) << name << " line split across files at " << f;
      for (const std::string& line : sc.lines) {
        uint64_t seq = std::stoull(line.substr(0, 10));
        ASSERT_LT(seq, kLines);
        EXPECT_TRUE(LineOk(line, seq));
        ++seen[name][seq];
      }
    }
  }
  EXPECT_GE(nonempty_files, 2u) << "rotation happened after the writers were done";
  for (auto& [name, counts] : seen) {
    size_t wrong = 0;
    for (int c : counts) wrong += c != 1;
    EXPECT_EQ(wrong, 0u) << name << ": lines lost or duplicated";
  }
}

TEST_F(CriLogTest, ReopenFailureKeepsWritingToOldFile) {
  fs::path sub = dir_ / "pod";
  fs::create_directory(sub);
  log_ = sub / "0.log";
  auto w = OpenOrDie();
  ASSERT_TRUE(w->Out().Write("before\n").ok());
  fs::path moved = dir_ / "moved.log";
  fs::rename(log_, moved);
  fs::remove(sub);
  absl::Status s = w->Reopen();
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("0.log"), std::string_view::npos) << s;
  ASSERT_TRUE(w->Out().Write("after\n").ok());
  w.reset();
  std::vector<Entry> e = ReadEntries(moved);
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(e[0].message, "before");
  EXPECT_EQ(e[1].message, "after");
}

TEST_F(CriLogTest, WriteErrorIsReturnedAndStreamKeepsGoing) {
  absl::StatusOr<std::unique_ptr<CriLogWriter>> w = CriLogWriter::Open("/dev/full", 8);
  ASSERT_TRUE(w.ok()) << w.status();
  absl::Status s = (*w)->Out().Write("line\n");
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_NE(s.message().find("/dev/full"), std::string_view::npos) << s;
  // Nothing is buffered after a failed write, so the writer does not grow without bound.
  EXPECT_FALSE((*w)->Out().Write(std::string(100, 'x') + "\n").ok());
  EXPECT_TRUE((*w)->Out().Write("tail").ok());  // buffered only
  EXPECT_FALSE((*w)->Out().Close().ok());
}

TEST_F(CriLogTest, TimestampsNonDecreasingPerStream) {
  auto w = OpenOrDie(16);
  std::thread t1([&] {
    for (int i = 0; i < 20000; ++i) (void)w->Out().Write("stdout line that is long\n");
  });
  std::thread t2([&] {
    for (int i = 0; i < 20000; ++i) (void)w->Err().Write("e\n");
  });
  t1.join();
  t2.join();
  w.reset();
  std::map<std::string, StreamCheck> streams;
  for (const Entry& e : ReadEntries()) streams[e.stream].Add(e);
  ASSERT_EQ(streams["stdout"].lines.size(), 20000u);
  ASSERT_EQ(streams["stderr"].lines.size(), 20000u);
  EXPECT_EQ(streams["stdout"].decreasing, 0u);
  EXPECT_EQ(streams["stderr"].decreasing, 0u);
  int64_t now =
      std::chrono::duration_cast<nanoseconds>(system_clock::now().time_since_epoch()).count();
  EXPECT_LE(streams["stdout"].last_ns, now);
  EXPECT_GT(streams["stdout"].last_ns, now - int64_t{60} * 1'000'000'000);
}

}  // namespace
}  // namespace berth::shim
