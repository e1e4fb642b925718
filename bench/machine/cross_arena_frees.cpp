// Counts the frees that cross glibc's arenas: blocks freed by a thread other than the one whose
// arena they came from (docs/performance.md, the thirteenth round of the embedded provider's
// figures). Such a free takes the other arena's lock against that thread's own allocations, and
// where it happens all the time the threads sleep on those locks (futex) instead of working.
//
//   LD_PRELOAD=build/release/bench/libqrt_cross_arena_frees.so COMMAND...
//
// writes, when COMMAND exits, to $QRT_CROSS_FREES_OUT (default /tmp/qrt-cross-frees.txt): one
// line per 64th crossing free with its call stack (module+offset, for addr2line), then a line
//   frees N crossing N mallocs N foreign N
// where "foreign" counts allocations served with another arena's block (one that crossed into
// this thread's cache earlier). A thread's own arena is the arena of its first allocation.
//
// It reads glibc's chunk layout (the size word before a block: bit 1 mmapped, bit 2 not the main
// arena; a non-main arena's heap starts on a 64 MiB boundary with its arena pointer first): a
// measuring tool for x86-64 glibc, not part of qrt.
#include <dlfcn.h>
#include <execinfo.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {

using malloc_fn = void* (*)(std::size_t);
using free_fn = void (*)(void*);

malloc_fn real_malloc = nullptr;
free_fn real_free = nullptr;
thread_local std::uintptr_t own_arena = 0;  // 1: the main arena
thread_local bool sampling = false;         // backtrace() allocates: not counted
std::atomic<unsigned long> frees{0}, crossing{0}, mallocs{0}, foreign{0};
std::FILE* out = nullptr;

constexpr std::uintptr_t heap_alignment = 64UL * 1024 * 1024;

std::size_t size_word(void* block) {
  return static_cast<std::size_t*>(block)[-1];
}
bool mmapped(void* block) {
  return (size_word(block) & 2) != 0;
}
std::uintptr_t arena_of(void* block) {
  if ((size_word(block) & 4) == 0) return 1;
  const auto heap = reinterpret_cast<std::uintptr_t>(block) & ~(heap_alignment - 1);
  return *reinterpret_cast<std::uintptr_t*>(heap);
}

void resolve() {
  real_malloc = reinterpret_cast<malloc_fn>(dlsym(RTLD_NEXT, "malloc"));
  real_free = reinterpret_cast<free_fn>(dlsym(RTLD_NEXT, "free"));
}

void sample_stack() {
  sampling = true;
  void* frames[12];
  const int depth = backtrace(frames, 12);
  char line[1024];
  std::size_t used = 0;
  for (int i = 1; i < depth && used < sizeof line; ++i) {
    Dl_info info;
    if (dladdr(frames[i], &info) == 0 || info.dli_fname == nullptr) continue;
    const char* slash = std::strrchr(info.dli_fname, '/');
    const auto offset = reinterpret_cast<std::uintptr_t>(frames[i]) -
                        reinterpret_cast<std::uintptr_t>(info.dli_fbase);
    const int n =
        std::snprintf(line + used, sizeof line - used, " %s+%#lx",
                      slash ? slash + 1 : info.dli_fname, static_cast<unsigned long>(offset));
    if (n > 0) used += static_cast<std::size_t>(n);
  }
  if (out) std::fprintf(out, "%s\n", line);
  sampling = false;
}

__attribute__((constructor)) void start() {
  resolve();
  const char* path = std::getenv("QRT_CROSS_FREES_OUT");
  out = std::fopen(path ? path : "/tmp/qrt-cross-frees.txt", "w");
}

__attribute__((destructor)) void stop() {
  if (!out) return;
  std::fprintf(out, "frees %lu crossing %lu mallocs %lu foreign %lu\n", frees.load(),
               crossing.load(), mallocs.load(), foreign.load());
  std::fclose(out);
  out = nullptr;
}

}  // namespace

extern "C" void* malloc(std::size_t n) noexcept {
  if (!real_malloc) resolve();
  void* block = real_malloc(n);
  if (block && !sampling && !mmapped(block)) {
    const auto arena = arena_of(block);
    if (own_arena == 0) own_arena = arena;
    mallocs.fetch_add(1, std::memory_order_relaxed);
    if (arena != own_arena) foreign.fetch_add(1, std::memory_order_relaxed);
  }
  return block;
}

extern "C" void free(void* block) noexcept {
  if (!real_free) resolve();
  if (block && !sampling && own_arena != 0 && !mmapped(block)) {
    frees.fetch_add(1, std::memory_order_relaxed);
    if (arena_of(block) != own_arena &&
        crossing.fetch_add(1, std::memory_order_relaxed) % 64 == 0) {
      sample_stack();
    }
  }
  real_free(block);
}
