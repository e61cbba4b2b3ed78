#include "usnet/mem/arena.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "usnet/util/bytes.hpp"

namespace usnet::mem {
namespace {

const std::size_t kPage = Arena::page_size();

std::vector<RegionSpec> two_regions() { return {{"rings", 100}, {"buffers", 3 * kPage}}; }

Arena make_arena(const std::vector<RegionSpec>& specs) {
  auto a = Arena::create("test", specs);
  EXPECT_TRUE(a) << (a ? "" : a.error().message());
  return std::move(a).value();
}

void fill(std::span<std::byte> s, std::uint8_t seed) {
  for (std::size_t i = 0; i < s.size(); ++i) s[i] = std::byte(static_cast<std::uint8_t>(seed + i * 7));
}

bool holds(std::span<const std::byte> s, std::uint8_t seed) {
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != std::byte(static_cast<std::uint8_t>(seed + i * 7))) return false;
  }
  return true;
}

// Runs `body` in a forked child and returns its wait status. The child never
// returns into GoogleTest: it leaves with _exit.
int run_in_child(const std::function<int()>& body) {
  const pid_t pid = fork();
  if (pid == 0) _exit(body());
  EXPECT_GT(pid, 0);
  int status = 0;
  EXPECT_EQ(waitpid(pid, &status, 0), pid);
  return status;
}

TEST(Arena, CreateLaysOutPageAlignedRegionsWithGuards) {
  Arena a = make_arena(two_regions());
  ASSERT_GE(a.fd(), 0);
  ASSERT_EQ(a.region_count(), 2u);
  EXPECT_EQ(a.region_info(0).name, "rings");
  EXPECT_EQ(a.region_info(0).bytes, kPage);       // 100 rounded up to a page
  EXPECT_EQ(a.region_info(0).offset, 2 * kPage);  // after the header and a guard
  EXPECT_EQ(a.region_info(1).name, "buffers");
  EXPECT_EQ(a.region_info(1).bytes, 3 * kPage);
  EXPECT_EQ(a.region_info(1).offset, 4 * kPage);  // one guard page after region 0
  EXPECT_EQ(a.mapped_bytes(), 8 * kPage);         // ... and one after region 1
  EXPECT_EQ(a.region(0).size(), kPage);
  EXPECT_EQ(a.region("buffers").data(), a.region(1).data());
  EXPECT_TRUE(a.region("nope").empty());
  EXPECT_TRUE(a.region(2).empty());
  EXPECT_EQ(a.region(1).data() - a.region(0).data(), static_cast<std::ptrdiff_t>(2 * kPage));
  // A fresh memfd reads as zeros and every byte of a region is writable.
  for (std::size_t i = 0; i < a.region_count(); ++i) {
    for (std::byte b : a.region(i)) ASSERT_EQ(b, std::byte{0});
    fill(a.region(i), static_cast<std::uint8_t>(i + 1));
  }
  EXPECT_TRUE(holds(a.region(0), 1));
  EXPECT_TRUE(holds(a.region(1), 2));
}

TEST(Arena, FdIsCloseOnExecAndSealedAgainstResizing) {
  Arena a = make_arena(two_regions());
  EXPECT_NE(fcntl(a.fd(), F_GETFD) & FD_CLOEXEC, 0);
  const int seals = fcntl(a.fd(), F_GET_SEALS);
  EXPECT_EQ(seals, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
  EXPECT_NE(ftruncate(a.fd(), static_cast<off_t>(kPage)), 0);
  EXPECT_EQ(errno, EPERM);
}

TEST(Arena, AttachInSameProcessSharesTheMemory) {
  Arena a = make_arena(two_regions());
  fill(a.region(1), 9);
  auto b = Arena::attach(a.fd());
  ASSERT_TRUE(b) << b.error().message();
  EXPECT_NE(b->fd(), a.fd());  // a duplicate: closing one leaves the other
  EXPECT_NE(fcntl(b->fd(), F_GETFD) & FD_CLOEXEC, 0);
  ASSERT_EQ(b->region_count(), 2u);
  for (std::size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(b->region_info(i).name, a.region_info(i).name);
    EXPECT_EQ(b->region_info(i).offset, a.region_info(i).offset);
    EXPECT_EQ(b->region_info(i).bytes, a.region_info(i).bytes);
  }
  EXPECT_EQ(b->mapped_bytes(), a.mapped_bytes());
  EXPECT_NE(b->region(1).data(), a.region(1).data());  // a second mapping ...
  EXPECT_TRUE(holds(b->region("buffers"), 9));         // ... of the same pages
  fill(b->region("rings"), 33);
  EXPECT_TRUE(holds(a.region(0), 33));
}

TEST(Arena, ForkedChildAttachesAndWritesWhatTheParentReads) {
  Arena a = make_arena(two_regions());
  fill(a.region(0), 5);
  const int fd = a.fd();
  const int status = run_in_child([fd] {
    auto b = Arena::attach(fd);
    if (!b) return 10;
    if (b->region_count() != 2) return 11;
    if (!holds(b->region("rings"), 5)) return 12;
    fill(b->region("buffers"), 77);
    return 0;
  });
  ASSERT_TRUE(WIFEXITED(status)) << status;
  ASSERT_EQ(WEXITSTATUS(status), 0);
  EXPECT_TRUE(holds(a.region(1), 77));
}

void send_fd(int sock, int fd) {
  char dummy = 'f';
  iovec iov{&dummy, 1};
  alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(int))> control{};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.data();
  msg.msg_controllen = control.size();
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
  ASSERT_EQ(sendmsg(sock, &msg, 0), 1);
}

int receive_fd(int sock) {
  char dummy = 0;
  iovec iov{&dummy, 1};
  alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(int))> control{};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.data();
  msg.msg_controllen = control.size();
  if (recvmsg(sock, &msg, MSG_CMSG_CLOEXEC) != 1) return -1;
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  if (c == nullptr || c->cmsg_type != SCM_RIGHTS) return -1;
  int fd = -1;
  std::memcpy(&fd, CMSG_DATA(c), sizeof fd);
  return fd;
}

TEST(Arena, AttachesFromAnFdPassedOverAUnixSocket) {
  // The child exists before the arena, so it can only get it over the socket.
  int socks[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, socks), 0);
  const pid_t pid = fork();
  if (pid == 0) {
    close(socks[0]);
    const int fd = receive_fd(socks[1]);
    if (fd < 0) _exit(10);
    auto b = Arena::attach(fd);
    close(fd);
    if (!b) _exit(11);
    if (!holds(b->region("rings"), 21)) _exit(12);
    fill(b->region("buffers"), 99);
    _exit(0);
  }
  ASSERT_GT(pid, 0);
  close(socks[1]);
  Arena a = make_arena(two_regions());
  fill(a.region(0), 21);
  send_fd(socks[0], a.fd());
  close(socks[0]);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << status;
  ASSERT_EQ(WEXITSTATUS(status), 0);
  EXPECT_TRUE(holds(a.region(1), 99));
}

TEST(Arena, MovedArenaKeepsTheMapping) {
  Arena a = make_arena(two_regions());
  fill(a.region(0), 3);
  const int fd = a.fd();
  Arena b(std::move(a));
  EXPECT_EQ(b.fd(), fd);
  EXPECT_TRUE(holds(b.region(0), 3));
  Arena c = make_arena({{"other", 1}});
  c = std::move(b);  // c's old arena is released
  EXPECT_EQ(c.fd(), fd);
  EXPECT_EQ(c.region_count(), 2u);
  EXPECT_TRUE(holds(c.region(0), 3));
}

// --- Guard pages ---------------------------------------------------------

constexpr int kFaultedAtExpectedAddress = 42;
constexpr int kFaultedElsewhere = 43;
constexpr int kNoFault = 44;
void* volatile g_expected_fault = nullptr;

void on_segv(int, siginfo_t* info, void*) {
  // Only async-signal-safe calls here.
  _exit(info->si_addr == g_expected_fault && info->si_code == SEGV_ACCERR ? kFaultedAtExpectedAddress
                                                                          : kFaultedElsewhere);
}

// In a child: install our own SIGSEGV handler (replacing the sanitizer's, so
// the child's fate does not depend on ASAN_OPTIONS), touch `p`, and report
// whether the fault came from exactly that address on a mapped PROT_NONE page.
int touch_in_child(std::byte* p, bool write) {
  return run_in_child([p, write] {
    g_expected_fault = p;
    struct sigaction sa {};
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSEGV, &sa, nullptr) != 0) return 1;
    volatile std::byte* vp = p;
    if (write) {
      *vp = std::byte{1};
    } else {
      [[maybe_unused]] std::byte b = *vp;
    }
    return kNoFault;
  });
}

TEST(Arena, GuardPagesFault) {
  Arena a = make_arena(two_regions());
  for (std::size_t i = 0; i < a.region_count(); ++i) {
    SCOPED_TRACE(i);
    auto r = a.region(i);
    // The first and last byte are accessible...
    int s = touch_in_child(r.data(), true);
    ASSERT_TRUE(WIFEXITED(s));
    EXPECT_EQ(WEXITSTATUS(s), kNoFault);
    s = touch_in_child(r.data() + r.size() - 1, false);
    ASSERT_TRUE(WIFEXITED(s));
    EXPECT_EQ(WEXITSTATUS(s), kNoFault);
    // ... one past either end is not.
    s = touch_in_child(r.data() + r.size(), false);
    ASSERT_TRUE(WIFEXITED(s));
    EXPECT_EQ(WEXITSTATUS(s), kFaultedAtExpectedAddress);
    s = touch_in_child(r.data() - 1, true);
    ASSERT_TRUE(WIFEXITED(s));
    EXPECT_EQ(WEXITSTATUS(s), kFaultedAtExpectedAddress);
  }
}

TEST(Arena, HeaderPageIsNotMapped) {
  Arena a = make_arena(two_regions());
  std::byte* header = a.region(0).data() - a.region_info(0).offset;
  const int s = touch_in_child(header, false);
  ASSERT_TRUE(WIFEXITED(s));
  EXPECT_EQ(WEXITSTATUS(s), kFaultedAtExpectedAddress);
}

TEST(Arena, GuardFaultKillsAChildWithDefaultHandler) {
  // Belt and braces: with the default disposition the process dies by SIGSEGV.
  Arena a = make_arena(two_regions());
  std::byte* past = a.region(1).data() + a.region(1).size();
  const int s = run_in_child([past] {
    struct sigaction sa {};
    sa.sa_handler = SIG_DFL;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, nullptr);
    volatile std::byte* vp = past;
    *vp = std::byte{1};
    return kNoFault;
  });
  ASSERT_TRUE(WIFSIGNALED(s)) << "status " << s;
  EXPECT_EQ(WTERMSIG(s), SIGSEGV);
}

// --- Bad specs -------------------------------------------------------------

TEST(Arena, RejectsBadSpecs) {
  const auto einval = std::make_error_code(std::errc::invalid_argument);
  const std::vector<std::vector<RegionSpec>> bad = {
      {},                                                  // no regions
      {{"", 1}},                                           // empty name
      {{std::string(Arena::kMaxRegionName + 1, 'x'), 1}},  // name too long
      {{std::string("a\0b", 3), 1}},                       // NUL inside a name
      {{"a", 1}, {"a", 1}},                                // duplicate
      {{"a", 0}},                                          // zero size
      {{"a", SIZE_MAX}},                                   // rounding overflows
      {{"a", SIZE_MAX / 2}, {"b", SIZE_MAX / 2}},          // total overflows
      {{"a", std::size_t{1} << 63}},                       // past what a file can hold
  };
  for (std::size_t i = 0; i < bad.size(); ++i) {
    SCOPED_TRACE(i);
    auto a = Arena::create("bad", bad[i]);
    ASSERT_FALSE(a);
    EXPECT_EQ(a.error(), einval);
  }
  std::vector<RegionSpec> too_many;
  for (std::size_t i = 0; i <= Arena::kMaxRegions; ++i) too_many.push_back({"r" + std::to_string(i), 1});
  auto a = Arena::create("bad", too_many);
  ASSERT_FALSE(a);
  EXPECT_EQ(a.error(), einval);
  too_many.pop_back();  // exactly the limit is fine, and so is the longest name
  too_many.back().name = std::string(Arena::kMaxRegionName, 'z');
  auto ok = Arena::create("limit", too_many);
  ASSERT_TRUE(ok) << ok.error().message();
  EXPECT_EQ(ok->region_count(), Arena::kMaxRegions);
  auto back = Arena::attach(ok->fd());
  ASSERT_TRUE(back) << back.error().message();
  EXPECT_EQ(back->region_info(Arena::kMaxRegions - 1).name, std::string(Arena::kMaxRegionName, 'z'));
}

// --- Corrupted headers written by hand ----------------------------------

// The header format as documented in arena.hpp, built independently of the
// implementation so the test pins the format.
struct Entry {
  std::string name;
  std::uint64_t offset;
  std::uint64_t bytes;
};
struct HandHeader {
  std::string magic = "USNARENA";
  std::uint32_t version = 1;
  std::uint32_t count;  // defaults to entries.size()
  std::uint64_t file_size;
  std::uint64_t page_size = kPage;
  std::vector<Entry> entries;
  bool name_unterminated = false;  // fill entry 0's whole name field with 'x'
  std::uint64_t real_size = 0;     // the memfd's size if not 0, else file_size
};

// A memfd of `file_size` bytes holding `h`, sealed like a real arena (unless
// `seal` is false). Returns the fd.
int write_memfd(const HandHeader& h, bool seal = true) {
  const int fd = memfd_create("hand", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  EXPECT_GE(fd, 0);
  const std::uint64_t size = h.real_size != 0 ? h.real_size : h.file_size;
  EXPECT_EQ(ftruncate(fd, static_cast<off_t>(size)), 0);
  std::vector<std::byte> b(32 + 32 * 40);
  std::memcpy(b.data(), h.magic.data(), 8);
  store_be32(b.data() + 8, h.version);
  store_be32(b.data() + 12, h.count);
  store_be64(b.data() + 16, h.file_size);
  store_be64(b.data() + 24, h.page_size);
  for (std::size_t i = 0; i < h.entries.size() && i < 32; ++i) {
    std::byte* e = b.data() + 32 + i * 40;
    std::memcpy(e, h.entries[i].name.data(), std::min<std::size_t>(h.entries[i].name.size(), 24));
    store_be64(e + 24, h.entries[i].offset);
    store_be64(e + 32, h.entries[i].bytes);
  }
  if (h.name_unterminated) std::memset(b.data() + 32, 'x', 24);
  const std::size_t len = std::min<std::size_t>(b.size(), size);
  EXPECT_EQ(pwrite(fd, b.data(), len, 0), static_cast<ssize_t>(len));
  if (seal) {
    EXPECT_EQ(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), 0);
  }
  return fd;
}

// A valid layout: header, guard, "a" (1 page), guard, "b" (2 pages), guard.
HandHeader good_header() {
  HandHeader h;
  h.entries = {{"a", 2 * kPage, kPage}, {"b", 4 * kPage, 2 * kPage}};
  h.count = 2;
  h.file_size = 7 * kPage;
  return h;
}

std::error_code attach_hand(const HandHeader& h, bool seal = true) {
  const int fd = write_memfd(h, seal);
  auto a = Arena::attach(fd);
  close(fd);
  return a ? std::error_code{} : a.error();
}

TEST(Arena, AttachAcceptsAHandWrittenHeader) {
  // Proves the helper writes the documented format, so the rejections below
  // come from the corruption alone.
  const int fd = write_memfd(good_header());
  auto a = Arena::attach(fd);
  close(fd);
  ASSERT_TRUE(a) << a.error().message();
  ASSERT_EQ(a->region_count(), 2u);
  EXPECT_EQ(a->region_info(1).name, "b");
  EXPECT_EQ(a->region(1).size(), 2 * kPage);
  fill(a->region(1), 1);
  EXPECT_TRUE(holds(a->region("b"), 1));

  // Regions need not be in file order, and guard pages may be wider.
  HandHeader h = good_header();
  h.entries = {{"late", 5 * kPage, kPage}, {"early", 2 * kPage, kPage}};
  EXPECT_EQ(attach_hand(h), std::error_code{});
}

TEST(Arena, AttachRejectsCorruptedHeaders) {
  struct Case {
    const char* what;
    std::function<void(HandHeader&)> corrupt;
  };
  const std::vector<Case> cases = {
      {"bad magic", [](HandHeader& h) { h.magic = "USNARENB"; }},
      {"bad version", [](HandHeader& h) { h.version = 2; }},
      {"zero regions", [](HandHeader& h) { h.count = 0; }},
      {"count too large", [](HandHeader& h) { h.count = 33; }},
      {"count huge", [](HandHeader& h) { h.count = 0xffffffff; }},
      {"count past the entries", [](HandHeader& h) { h.count = 3; }},  // entry 2 is all zeros
      {"file larger than said", [](HandHeader& h) { h.real_size = 8 * kPage; }},
      {"file smaller than said", [](HandHeader& h) { h.real_size = 6 * kPage; }},
      {"size said smaller",
       [](HandHeader& h) {
         h.file_size = 6 * kPage;
         h.real_size = 7 * kPage;
       }},
      {"page size differs", [](HandHeader& h) { h.page_size = 2 * kPage; }},
      {"name not terminated", [](HandHeader& h) { h.name_unterminated = true; }},
      {"empty name", [](HandHeader& h) { h.entries[0].name = ""; }},
      {"duplicate names", [](HandHeader& h) { h.entries[1].name = "a"; }},
      {"non-aligned offset", [](HandHeader& h) { h.entries[1].offset += 8; }},
      {"non-aligned size", [](HandHeader& h) { h.entries[1].bytes -= 8; }},
      {"zero size", [](HandHeader& h) { h.entries[0].bytes = 0; }},
      {"region over the header", [](HandHeader& h) { h.entries[0].offset = 0; }},
      {"no guard after the header", [](HandHeader& h) { h.entries[0].offset = kPage; }},
      {"overlapping regions", [](HandHeader& h) { h.entries[1].offset = 2 * kPage; }},
      {"partly overlapping", [](HandHeader& h) { h.entries[0].bytes = 3 * kPage; }},
      {"no guard between regions", [](HandHeader& h) { h.entries[0].bytes = 2 * kPage; }},
      {"region past file end", [](HandHeader& h) { h.entries[1].bytes = 4 * kPage; }},
      {"no guard at file end", [](HandHeader& h) { h.entries[1].bytes = 3 * kPage; }},
      {"offset past file end", [](HandHeader& h) { h.entries[1].offset = 100 * kPage; }},
      {"offset + size overflows",
       [](HandHeader& h) {
         h.entries[1].offset = 4 * kPage;
         h.entries[1].bytes = ~std::uint64_t{0} - kPage + 1;  // page-aligned, wraps around
       }},
      {"huge offset", [](HandHeader& h) { h.entries[1].offset = ~std::uint64_t{0} - kPage + 1; }},
  };
  const auto ebadmsg = std::make_error_code(std::errc::bad_message);
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    HandHeader h = good_header();
    c.corrupt(h);
    EXPECT_EQ(attach_hand(h), ebadmsg);
  }
}

TEST(Arena, AttachRejectsAnUnsealedOrShortFile) {
  const auto ebadmsg = std::make_error_code(std::errc::bad_message);
  EXPECT_EQ(attach_hand(good_header(), /*seal=*/false), ebadmsg);
  HandHeader tiny = good_header();
  tiny.file_size = 100;  // shorter than the header page
  EXPECT_EQ(attach_hand(tiny), ebadmsg);
  const int empty = memfd_create("empty", MFD_CLOEXEC);
  ASSERT_GE(empty, 0);
  auto a = Arena::attach(empty);
  close(empty);
  ASSERT_FALSE(a);
  EXPECT_EQ(a.error(), ebadmsg);
}

TEST(Arena, AttachReportsABadFd) {
  auto a = Arena::attach(-1);
  ASSERT_FALSE(a);
  EXPECT_EQ(a.error(), std::errc::bad_file_descriptor);
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  auto p = Arena::attach(pipe_fds[0]);  // not a file at all
  close(pipe_fds[0]);
  close(pipe_fds[1]);
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error(), std::errc::bad_message);
}

}  // namespace
}  // namespace usnet::mem
