// `usnet http-server`: a minimal HTTP/1.1 file server over usnet TCP, so
// real HTTP tools (curl) can be pointed at usnet. GET and HEAD serve regular
// files under --root; PUT and POST read a body of Content-Length bytes and
// answer with its SHA-256 (nothing is stored). Persistent connections, many
// at once, one thread.
//
// `usnet http-get`: fetches one URL over usnet TCP into a file (or counts
// it) and prints its SHA-256.
//
// Deliberately small: no chunked request bodies (411), no ranges, no
// directory listings; request heads are bounded (8 KiB, 431 beyond).
#include <fcntl.h>
#include <fmt/core.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "stack_setup.hpp"

namespace usnet::tool {

namespace {

constexpr std::size_t kMaxHead = 8192;
constexpr std::size_t kChunk = 64 * 1024;

class Sha256 {
 public:
  Sha256() : ctx_(EVP_MD_CTX_new()) { EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr); }
  ~Sha256() { EVP_MD_CTX_free(ctx_); }
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(std::span<const std::byte> b) { EVP_DigestUpdate(ctx_, b.data(), b.size()); }
  std::string hex() {
    std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
    unsigned int n = 0;
    EVP_DigestFinal_ex(ctx_, md.data(), &n);
    std::string out;
    for (unsigned int i = 0; i < n; ++i) out += fmt::format("{:02x}", md[i]);
    return out;
  }

 private:
  EVP_MD_CTX* ctx_;
};

std::span<const std::byte> bytes_of(std::string_view s) {
  return std::as_bytes(std::span(s.data(), s.size()));
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// The value of header `name` (lower case) in a request or response head.
std::optional<std::string> header_value(std::string_view head, std::string_view name) {
  std::size_t pos = head.find("\r\n");
  while (pos != std::string_view::npos && pos + 2 < head.size()) {
    const std::size_t start = pos + 2;
    const std::size_t end = head.find("\r\n", start);
    const std::string_view line = head.substr(start, end == std::string_view::npos ? head.npos : end - start);
    const std::size_t colon = line.find(':');
    if (colon != std::string_view::npos && lower(line.substr(0, colon)) == name) {
      std::string_view v = line.substr(colon + 1);
      while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
      while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
      return std::string(v);
    }
    pos = end;
  }
  return std::nullopt;
}

std::optional<std::uint64_t> parse_u64(std::string_view s) {
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || p != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

// ---------------------------------------------------------------------------
// Server

struct ServerOptions {
  StackOptions stack;
  std::uint16_t port = 80;
  std::string root = ".";
  double duration_s = 0;
  std::uint32_t max_requests = 0;  // stop after this many responses (0: no limit)
  double close_grace_s = 0;        // then wait this long for clients to close first
};

class HttpConnection {
 public:
  HttpConnection(tcp::TcpStream s, const ServerOptions& opt) : stream_(std::move(s)), opt_(&opt) {}
  ~HttpConnection() {
    if (fd_ >= 0) ::close(fd_);
  }
  HttpConnection(const HttpConnection&) = delete;
  HttpConnection& operator=(const HttpConnection&) = delete;

  // Does what can be done now; true if anything moved.
  bool step(link::Nanos now, std::uint64_t& responses) {
    bool moved = false;
    for (int guard = 0; guard < 64; ++guard) {
      bool m = false;
      switch (state_) {
        case State::kHead:
          m = read_head(now, responses);
          break;
        case State::kBody:
          m = read_body(now, responses);
          break;
        case State::kSend:
          m = send_pending(now);
          break;
        case State::kDone:
          return moved;
      }
      if (!m) break;
      moved = true;
    }
    return moved;
  }
  bool done() const {
    if (state_ == State::kDone) return true;
    const auto st = stream_.connection().state();
    return st == tcp::State::kClosed ||
           (stream_.connection().eof() && state_ == State::kHead && head_.empty());
  }
  void close(link::Nanos now) { stream_.close(now); }

 private:
  enum class State { kHead, kBody, kSend, kDone };

  bool read_head(link::Nanos now, std::uint64_t& responses) {
    std::array<std::byte, 4096> buf{};
    bool moved = false;
    while (head_.find("\r\n\r\n") == std::string::npos) {
      if (head_.size() >= kMaxHead) {
        respond(431, "Request Header Fields Too Large", "request head too large\n", now, true);
        ++responses;
        return true;
      }
      auto r = stream_.receive(std::span(buf).first(std::min(buf.size(), kMaxHead + 4 - head_.size())), now);
      if (!r || *r == 0) return moved;
      head_.append(reinterpret_cast<const char*>(buf.data()), *r);
      moved = true;
    }
    const std::size_t end = head_.find("\r\n\r\n") + 4;
    std::string extra = head_.substr(end);  // the start of a body, or of the next request
    const std::string head = head_.substr(0, end);
    head_ = std::move(extra);
    handle_request(head, now, responses);
    return true;
  }

  void handle_request(const std::string& head, link::Nanos now, std::uint64_t& responses) {
    const std::size_t sp1 = head.find(' ');
    const std::size_t sp2 = sp1 == std::string::npos ? sp1 : head.find(' ', sp1 + 1);
    const std::size_t eol = head.find("\r\n");
    if (sp1 == std::string::npos || sp2 == std::string::npos || sp2 > eol) {
      respond(400, "Bad Request", "bad request line\n", now, true);
      ++responses;
      return;
    }
    const std::string method = head.substr(0, sp1);
    const std::string target = head.substr(sp1 + 1, sp2 - sp1 - 1);
    const std::string version = head.substr(sp2 + 1, eol - sp2 - 1);
    close_after_ = version == "HTTP/1.0" || lower(header_value(head, "connection").value_or("")) == "close";
    if (method == "GET" || method == "HEAD") {
      serve_file(target, method == "HEAD", now);
      ++responses;
      return;
    }
    if (method == "PUT" || method == "POST") {
      if (header_value(head, "transfer-encoding")) {
        respond(411, "Length Required", "chunked bodies are not supported: send Content-Length\n", now, true);
        ++responses;
        return;
      }
      const auto len = parse_u64(header_value(head, "content-length").value_or(""));
      if (!len) {
        respond(411, "Length Required", "Content-Length required\n", now, true);
        ++responses;
        return;
      }
      body_left_ = *len;
      body_len_ = *len;
      sha_ = std::make_unique<Sha256>();
      if (lower(header_value(head, "expect").value_or("")) == "100-continue") {
        queue("HTTP/1.1 100 Continue\r\n\r\n");
      }
      // Bytes of the body that came with the head.
      const std::size_t take = static_cast<std::size_t>(std::min<std::uint64_t>(head_.size(), body_left_));
      sha_->update(bytes_of(std::string_view(head_).substr(0, take)));
      body_left_ -= take;
      head_.erase(0, take);
      state_ = State::kBody;
      (void)send_pending(now);
      return;
    }
    respond(405, "Method Not Allowed", "GET, HEAD, PUT and POST only\n", now, false);
    ++responses;
  }

  bool read_body(link::Nanos now, std::uint64_t& responses) {
    if (!out_.empty()) (void)send_pending_bytes(now);
    std::array<std::byte, kChunk> buf{};
    bool moved = false;
    // Zero copy while everything readable is body: the digest reads the
    // bytes in the pool buffers they arrived in. Past the body's end (a
    // pipelined request behind it) the copying receive stops exactly there.
    while (body_left_ > 0 && stream_.connection().readable() <= body_left_) {
      auto b = stream_.receive_buffer(now);
      if (!b || !b->valid()) {
        if (stream_.connection().eof() || !b) state_ = State::kDone;
        return moved;
      }
      sha_->update(b->data());
      body_left_ -= b->size();
      moved = true;
    }
    while (body_left_ > 0) {
      auto r = stream_.receive(
          std::span(buf).first(static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), body_left_))),
          now);
      if (!r || *r == 0) {
        if (stream_.connection().eof() || !r) state_ = State::kDone;
        return moved;
      }
      sha_->update(std::span(buf).first(*r));
      body_left_ -= *r;
      moved = true;
    }
    const std::string body = fmt::format("sha256 {} bytes {}\n", sha_->hex(), body_len_);
    sha_.reset();
    respond(200, "OK", body, now, false);
    ++responses;
    return true;
  }

  void serve_file(const std::string& target, bool head_only, link::Nanos now) {
    std::string path = target.substr(0, target.find('?'));
    if (path.empty() || path[0] != '/' || path.find("..") != std::string::npos ||
        path.find('\0') != std::string::npos) {
      respond(400, "Bad Request", "bad path\n", now, false);
      return;
    }
    const std::string full = opt_->root + path;
    const int fd = ::open(full.c_str(), O_RDONLY | O_CLOEXEC);
    struct stat st {};
    if (fd < 0 || ::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      if (fd >= 0) ::close(fd);
      respond(404, "Not Found", "not found\n", now, false);
      return;
    }
    queue(fmt::format(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n{}\r\n",
        st.st_size, close_after_ ? "Connection: close\r\n" : ""));
    if (head_only) {
      ::close(fd);
    } else {
      fd_ = fd;
      file_left_ = static_cast<std::uint64_t>(st.st_size);
    }
    state_ = State::kSend;
    (void)send_pending(now);
  }

  void respond(int code, std::string_view reason, std::string_view body, link::Nanos now, bool close_after) {
    close_after_ = close_after_ || close_after;
    queue(fmt::format("HTTP/1.1 {} {}\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n{}\r\n{}", code,
                      reason, body.size(), close_after_ ? "Connection: close\r\n" : "", body));
    state_ = State::kSend;
    (void)send_pending(now);
  }

  void queue(std::string_view s) { out_.append(s); }

  bool send_pending_bytes(link::Nanos now) {
    bool moved = false;
    while (out_off_ < out_.size()) {
      auto r = stream_.send(bytes_of(std::string_view(out_).substr(out_off_)), now);
      if (!r || *r == 0) break;
      out_off_ += *r;
      moved = true;
    }
    if (out_off_ == out_.size()) {
      out_.clear();
      out_off_ = 0;
    }
    return moved;
  }

  bool send_pending(link::Nanos now) {
    bool moved = send_pending_bytes(now);
    if (!out_.empty()) return moved;
    // The file is read straight into pool buffers that the stream sends as
    // they are (zero copy in); a buffer the send buffer has no room for yet
    // waits in pending_.
    while (fd_ >= 0 && (file_left_ > 0 || pending_.valid())) {
      if (!pending_.valid()) {
        auto b = stream_.alloc_buffer();
        if (!b) return moved;  // the pool is dry: try again on the next turn
        const ssize_t n =
            ::read(fd_, b->space().data(),
                   static_cast<std::size_t>(std::min<std::uint64_t>(b->capacity(), file_left_)));
        if (n <= 0) {
          state_ = State::kDone;  // the file shrank or failed: the response cannot be completed
          return true;
        }
        b->resize(static_cast<std::size_t>(n));
        file_left_ -= static_cast<std::uint64_t>(n);
        pending_ = std::move(*b);
      }
      auto r = stream_.send_buffer(pending_, now);
      if (!r || *r == 0) return moved;
      moved = true;
    }
    if (fd_ >= 0) {
      ::close(fd_);
      fd_ = -1;
    }
    if (state_ == State::kSend) {
      if (close_after_) {
        (void)stream_.shutdown_write(now);
        state_ = State::kDone;
      } else {
        state_ = State::kHead;
      }
      return true;
    }
    return moved;
  }

  tcp::TcpStream stream_;
  const ServerOptions* opt_;
  State state_ = State::kHead;
  std::string head_;
  std::string out_;
  std::size_t out_off_ = 0;
  bool close_after_ = false;
  int fd_ = -1;
  std::uint64_t file_left_ = 0;
  tcp::TcpBuffer pending_;  // file bytes read, not yet taken by the stream
  std::uint64_t body_left_ = 0, body_len_ = 0;
  std::unique_ptr<Sha256> sha_;
};

int run_server(const ServerOptions& opt) {
  auto stack = ToolStack::open(opt.stack);
  if (!stack) {
    fmt::print(stderr, "usnet http-server: {}\n", stack.error());
    return 2;
  }
  struct stat st {};
  if (::stat(opt.root.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    fmt::print(stderr, "usnet http-server: --root {}: not a directory\n", opt.root);
    return 2;
  }
  install_stop_signals();
  auto listener = (*stack)->tcp().listen({wire::Ipv4Addr{}, opt.port}, 1024);
  if (!listener) {
    fmt::print(stderr, "usnet http-server: port {}: {}\n", opt.port, listener.error().message());
    return 2;
  }
  fmt::print("usnet http-server: serving {} on {}:{} over {}\n", opt.root, opt.stack.addr, opt.port,
             (*stack)->link().info().name);
  std::fflush(stdout);
  const auto end = opt.duration_s > 0 ? ToolStack::now() + std::chrono::duration_cast<link::Nanos>(
                                                               std::chrono::duration<double>(opt.duration_s))
                                      : link::Nanos::max();
  std::vector<std::unique_ptr<HttpConnection>> conns;
  std::uint64_t responses = 0, accepted = 0;
  std::size_t most_at_once = 0;
  // One pass: accept new connections (while serving), move every
  // connection on, close and drop the finished ones. True if anything moved.
  auto pass = [&](bool accepting) {
    (*stack)->poll();
    const auto now = ToolStack::now();
    bool busy = false;
    while (accepting) {
      auto s = listener->accept();
      if (!s) break;
      conns.push_back(std::make_unique<HttpConnection>(std::move(*s), opt));
      ++accepted;
      busy = true;
    }
    most_at_once = std::max(most_at_once, conns.size());
    for (auto& c : conns) busy = c->step(now, responses) || busy;
    std::erase_if(conns, [now](const std::unique_ptr<HttpConnection>& c) {
      if (!c->done()) return false;
      c->close(now);
      return true;
    });
    return busy;
  };
  while (!g_stop.load() && ToolStack::now() < end &&
         (opt.max_requests == 0 || responses < opt.max_requests)) {
    if (!pass(true)) (*stack)->wait(end);
  }
  // Clients that close first leave no TIME-WAIT here: give them the grace
  // asked for (bounded by the duration and Ctrl-C), and the connections
  // already closed here the time to finish their closing handshake (a lost
  // FIN is sent again after a timeout).
  const auto grace_end = std::min(
      end, ToolStack::now() +
               std::chrono::duration_cast<link::Nanos>(std::chrono::duration<double>(opt.close_grace_s)));
  while (!g_stop.load() && (!conns.empty() || (*stack)->tcp().connection_count() > 0) &&
         ToolStack::now() < grace_end) {
    if (!pass(false)) (*stack)->wait(grace_end);
  }
  // Let the last responses and FINs be delivered (bounded: a peer that
  // stops reading cannot hold the server).
  const auto drain_end = ToolStack::now() + std::chrono::seconds(10);
  for (auto& c : conns) c->close(ToolStack::now());
  while (!g_stop.load() && ToolStack::now() < drain_end && (*stack)->tcp().connections_delivering() > 0) {
    (*stack)->run_once(drain_end);
  }
  fmt::print("{} connections accepted, {} responses\n{} connections open at most at once\n{}", accepted,
             responses, most_at_once, (*stack)->format_counters());
  // Every handle goes before the stack does.
  conns.clear();
  *listener = tcp::TcpListener{};
  fmt::print("{} packet buffers in use after shutdown\n", (*stack)->shutdown());
  return 0;
}

// ---------------------------------------------------------------------------
// Client

struct GetOptions {
  StackOptions stack;
  std::string url;
  std::string output;  // empty: discard (only the digest)
  double timeout_s = 60;
};

int run_get(const GetOptions& opt) {
  std::string rest = opt.url;
  if (rest.rfind("http://", 0) == 0) rest = rest.substr(7);
  const std::size_t slash = rest.find('/');
  const std::string hostport = rest.substr(0, slash);
  const std::string path = slash == std::string::npos ? "/" : rest.substr(slash);
  const std::size_t colon = hostport.rfind(':');
  auto addr = wire::Ipv4Addr::parse(hostport.substr(0, colon));
  std::uint16_t port = 80;
  if (colon != std::string::npos) {
    const auto p = parse_u64(std::string_view(hostport).substr(colon + 1));
    if (!p || *p == 0 || *p > 65535) addr.reset();
    port = static_cast<std::uint16_t>(p.value_or(0));
  }
  if (!addr) {
    fmt::print(stderr, "usnet http-get: {}: expected http://ADDR[:PORT]/PATH with an IPv4 address\n",
               opt.url);
    return 2;
  }
  auto stack = ToolStack::open(opt.stack);
  if (!stack) {
    fmt::print(stderr, "usnet http-get: {}\n", stack.error());
    return 2;
  }
  int out_fd = -1;
  if (!opt.output.empty()) {
    out_fd = ::open(opt.output.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out_fd < 0) {
      fmt::print(stderr, "usnet http-get: -o {}: cannot create\n", opt.output);
      return 2;
    }
  }
  install_stop_signals();
  const auto start = ToolStack::now();
  const auto end =
      start + std::chrono::duration_cast<link::Nanos>(std::chrono::duration<double>(opt.timeout_s));
  auto stream = (*stack)->tcp().connect({*addr, port}, start);
  if (!stream) {
    fmt::print(stderr, "usnet http-get: connect {}:{}: {}\n", addr->to_string(), port,
               stream.error().message());
    return 2;
  }
  const std::string request = fmt::format(
      "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: usnet\r\nConnection: close\r\n\r\n", path, hostport);
  std::size_t sent = 0;
  std::string head;
  bool in_body = false;
  std::optional<std::uint64_t> length;
  std::uint64_t got = 0;
  Sha256 sha;
  int status = 0;
  std::array<std::byte, kChunk> buf{};
  bool write_failed = false;
  while (!g_stop.load() && ToolStack::now() < end) {
    (*stack)->poll();
    const auto now = ToolStack::now();
    if (sent < request.size()) {
      auto r = stream->send(bytes_of(std::string_view(request).substr(sent)), now);
      if (r) sent += *r;
    }
    auto r = stream->receive(buf, now);
    if (!r) {
      fmt::print(stderr, "usnet http-get: {}\n", r.error().message());
      break;
    }
    if (*r == 0) {
      if (stream->connection().eof()) break;
      if (stream->connection().state() == tcp::State::kClosed) break;
      (*stack)->wait(end);
      continue;
    }
    std::span<const std::byte> data = std::span(buf).first(*r);
    if (!in_body) {
      head.append(reinterpret_cast<const char*>(data.data()), data.size());
      const std::size_t e = head.find("\r\n\r\n");
      if (e == std::string::npos) {
        if (head.size() > kMaxHead) break;
        continue;
      }
      in_body = true;
      if (head.rfind("HTTP/1.", 0) == 0 && head.size() > 12) status = std::atoi(head.substr(9, 3).c_str());
      length = parse_u64(header_value(head.substr(0, e + 4), "content-length").value_or(""));
      const std::string body_start = head.substr(e + 4);
      data = bytes_of(body_start);
      sha.update(data);
      got += data.size();
      if (out_fd >= 0 && !data.empty() &&
          ::write(out_fd, data.data(), data.size()) != static_cast<ssize_t>(data.size()))
        write_failed = true;
    } else {
      sha.update(data);
      got += data.size();
      if (out_fd >= 0 && ::write(out_fd, data.data(), data.size()) != static_cast<ssize_t>(data.size()))
        write_failed = true;
    }
    if (length && got >= *length) break;
  }
  if (out_fd >= 0) ::close(out_fd);
  const double secs = std::chrono::duration<double>(ToolStack::now() - start).count();
  const bool complete = in_body && (!length || got == *length) && status == 200 && !write_failed;
  fmt::print("status {}, {} bytes in {:.3f} s ({:.1f} Mbit/s), sha256 {}{}\n", status, got, secs,
             secs > 0 ? static_cast<double>(got) * 8 / secs / 1e6 : 0.0, sha.hex(),
             complete ? "" : " (incomplete)");
  stream->close(ToolStack::now());
  const auto drain_end = ToolStack::now() + std::chrono::milliseconds(200);
  while (ToolStack::now() < drain_end) (*stack)->run_once(drain_end);
  fmt::print("{}", (*stack)->format_counters());
  return complete ? 0 : 1;
}

}  // namespace

void add_http(CLI::App& app, std::function<int()>& run) {
  auto server = std::make_shared<ServerOptions>();
  auto* s = app.add_subcommand(
      "http-server",
      "Serve files over HTTP/1.1 on usnet TCP (GET, HEAD; PUT/POST answer the body's SHA-256)");
  add_stack_options(s, server->stack);
  s->add_option("-p,--port", server->port, "TCP port")->check(CLI::Range(1, 65535))->capture_default_str();
  s->add_option("--root", server->root, "Directory whose files are served")->capture_default_str();
  s->add_option("-d,--duration", server->duration_s, "Seconds to run (0: until Ctrl-C)")
      ->check(CLI::Range(0.0, 86400.0));
  s->add_option("--max-requests", server->max_requests, "Stop after this many responses (0: no limit)");
  s->add_option("--close-grace", server->close_grace_s,
                "After the last response, wait up to this many seconds for clients to close first")
      ->check(CLI::Range(0.0, 3600.0));
  s->callback([&run, server] { run = [server] { return run_server(*server); }; });

  auto get = std::make_shared<GetOptions>();
  auto* g = app.add_subcommand("http-get", "Fetch a URL over usnet TCP and print its SHA-256");
  add_stack_options(g, get->stack);
  g->add_option("url", get->url, "http://ADDR[:PORT]/PATH")->required();
  g->add_option("-o,--output", get->output, "Write the body to this file");
  g->add_option("-t,--timeout", get->timeout_s, "Give up after this many seconds")
      ->check(CLI::Range(0.1, 86400.0))
      ->capture_default_str();
  g->callback([&run, get] { run = [get] { return run_get(*get); }; });
}

}  // namespace usnet::tool
