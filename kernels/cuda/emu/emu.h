// emu.h: run an unchanged CUDA C file on the CPU                         lesson 10
//
// The loader (loader.py) compiles a .cu file with g++ after this header, so the
// CUDA keywords below turn the kernels into ordinary C++ functions, and adds a
// launcher per kernel that plays the part of the GPU:
//
//   for each block of the grid, one after another:
//       poison every __shared__ array (0x7FC00000 words: NaN as a float,
//       2143289344 as an int)
//       run the block's threads:
//         - as plain calls, one thread after another, when the file has no
//           barrier (__syncthreads, __syncwarp, __shfl_*_sync, __ballot_sync ...);
//         - otherwise as fibers, one per thread, each on its own stack: a thread
//           runs until it reaches a barrier and parks there; when every thread
//           of the block has parked at the same __syncthreads() they all go on
//           together (a warp operation waits for the lanes of its mask only).
//       The order the threads are started or resumed in, in every phase between
//       two barriers (and the order of the blocks), is forward, reverse or a
//       seeded shuffle: a kernel that is right in one order only has a race.
//
// What it catches:
//   - a missing __syncthreads(): some order reads a tile before it is written;
//   - shared memory read before anything wrote it: the NaN poison shows up;
//   - a barrier in divergent code, or threads waiting at different barriers:
//     an error naming the .cu file and line;
//   - invalid memory accesses: a crash becomes an error naming block and
//     thread; compiled with sanitize=True (AddressSanitizer + UBSan), out-of-
//     bounds reads and writes of global and shared memory are reported with the
//     .cu file and line (python -m minicnn.kernels.cuda.emu --sanitize -- ...);
//   - kernel arguments of the wrong type (a Python float where the kernel takes
//     float): the loader checks every argument against the kernel's signature.
//
// What it cannot catch (its honest limits):
//   - races between blocks on global memory: blocks run one by one, so a
//     missing atomicAdd between blocks still gives the right answer here;
//   - races between threads of a block through global memory, unless one of
//     the three orders happens to show them;
//   - anything about speed: coalescing, bank conflicts, occupancy, registers.
// Not supported: dynamic shared memory (extern __shared__; size the arrays with
// constants), textures, cooperative groups, half precision.
//
// Atomics are trivially atomic: only one thread runs at a time.
//
// GPU arithmetic (MINICNN_EMU_GPU_MATH=1, or load_module(gpu_math=True)): the
// loader compiles with -ffp-contract=fast -mfma, so a*b+c may become one fused
// multiply-add with a single rounding, as NVRTC does by default (-fmad=true);
// and each launch sets FTZ and DAZ in the SSE control register (MXCSR), so
// subnormal float results and inputs become zero, as with cupy's -ftz=true.
// Without it the emulator rounds every product and keeps subnormals, as IEEE
// arithmetic on the CPU does: tolerances must hold both ways.
#pragma once

#include <math.h>
#include <cmath>
#include <cfloat>
#include <climits>
#include <csetjmp>
#include <csignal>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <utility>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>
#if defined(EMU_GPU_MATH)
#include <xmmintrin.h>
#endif

#if defined(__SANITIZE_ADDRESS__)
#define EMU_ASAN 1
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

// ---- CUDA keywords ---------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)
#define __constant__
#define __managed__
// One copy per kernel, shared by the threads of a block; the loader poisons the
// whole section before each block. "used" stops the compiler from assuming the
// array keeps its zero initial value.
#define __shared__ static __attribute__((section("emushared"), used))

// ---- built-in variables ----------------------------------------------------
struct uint3 { unsigned int x, y, z; };
struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
    constexpr operator uint3() const { return uint3{x, y, z}; }
};
// Plain globals: the launcher sets them before it runs or resumes each thread.
inline uint3 threadIdx;
inline uint3 blockIdx;
inline dim3 blockDim;
inline dim3 gridDim;
constexpr int warpSize = 32;

// ---- vector types ----------------------------------------------------------
struct __align__(8) float2 { float x, y; };
struct float3 { float x, y, z; };
struct __align__(16) float4 { float x, y, z, w; };
struct __align__(8) int2 { int x, y; };
struct int3 { int x, y, z; };
struct __align__(16) int4 { int x, y, z, w; };
struct __align__(16) double2 { double x, y; };
inline float2 make_float2(float x, float y) { return {x, y}; }
inline float3 make_float3(float x, float y, float z) { return {x, y, z}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline int2 make_int2(int x, int y) { return {x, y}; }
inline int3 make_int3(int x, int y, int z) { return {x, y, z}; }
inline int4 make_int4(int x, int y, int z, int w) { return {x, y, z, w}; }
inline uint3 make_uint3(unsigned x, unsigned y, unsigned z) { return {x, y, z}; }

// ---- device maths ----------------------------------------------------------
// CUDA's min/max are overloaded for every arithmetic pair.
template <class A, class B>
inline typename std::common_type<A, B>::type min(A a, B b) {
    typedef typename std::common_type<A, B>::type T;
    return (T)b < (T)a ? (T)b : (T)a;
}
template <class A, class B>
inline typename std::common_type<A, B>::type max(A a, B b) {
    typedef typename std::common_type<A, B>::type T;
    return (T)a < (T)b ? (T)b : (T)a;
}
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __log2f(float x) { return log2f(x); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __tanf(float x) { return tanf(x); }
inline float __powf(float x, float y) { return powf(x, y); }
inline float __fdividef(float x, float y) { return x / y; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return sqrtf(x); }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline int __float_as_int(float x) { int i; memcpy(&i, &x, 4); return i; }
inline unsigned int __float_as_uint(float x) { unsigned int i; memcpy(&i, &x, 4); return i; }
inline float __int_as_float(int i) { float x; memcpy(&x, &i, 4); return x; }
inline float __uint_as_float(unsigned int i) { float x; memcpy(&x, &i, 4); return x; }
inline long long __double_as_longlong(double x) { long long i; memcpy(&i, &x, 8); return i; }
inline double __longlong_as_double(long long i) { double x; memcpy(&x, &i, 8); return x; }
inline int __float2int_rn(float x) { return (int)nearbyintf(x); }
inline int __float2int_rz(float x) { return (int)x; }
inline int __float2int_rd(float x) { return (int)floorf(x); }
inline int __float2int_ru(float x) { return (int)ceilf(x); }
inline int __mul24(int a, int b) { return a * b; }
inline int __popc(unsigned int x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned)x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
template <class T> inline T __ldg(const T* p) { return *p; }
inline void __threadfence() {}
inline void __threadfence_block() {}

// ---- atomics (one thread runs at a time, so a read-modify-write is atomic) --
template <class T> inline T atomicAdd(T* p, T v) { T old = *p; *p = old + v; return old; }
template <class T> inline T atomicSub(T* p, T v) { T old = *p; *p = old - v; return old; }
template <class T> inline T atomicExch(T* p, T v) { T old = *p; *p = v; return old; }
template <class T> inline T atomicMax(T* p, T v) { T old = *p; if (old < v) *p = v; return old; }
template <class T> inline T atomicMin(T* p, T v) { T old = *p; if (v < old) *p = v; return old; }
template <class T> inline T atomicCAS(T* p, T cmp, T v) { T old = *p; if (old == cmp) *p = v; return old; }
template <class T> inline T atomicAnd(T* p, T v) { T old = *p; *p = old & v; return old; }
template <class T> inline T atomicOr(T* p, T v) { T old = *p; *p = old | v; return old; }
template <class T> inline T atomicXor(T* p, T v) { T old = *p; *p = old ^ v; return old; }
inline unsigned int atomicInc(unsigned int* p, unsigned int v) {
    unsigned int old = *p; *p = (old >= v) ? 0 : old + 1; return old;
}

// ---- the runtime -----------------------------------------------------------
extern "C" char __start_emushared[] __attribute__((weak, visibility("hidden")));
extern "C" char __stop_emushared[] __attribute__((weak, visibility("hidden")));

namespace emu_rt {

enum State { RUNNABLE, AT_BARRIER, AT_WARP, DONE, ABORTED };
enum Op { OP_NONE, OP_SYNCWARP, OP_SHFL_IDX, OP_SHFL_UP, OP_SHFL_DOWN, OP_SHFL_XOR,
          OP_BALLOT, OP_ANY, OP_ALL, OP_ACTIVE, OP_BAR, OP_BAR_COUNT, OP_BAR_AND, OP_BAR_OR };
enum Order { FORWARD = 0, REVERSE = 1, SHUFFLE = 2 };

static const char* const OP_NAMES[] = {
    "", "__syncwarp", "__shfl_sync", "__shfl_up_sync", "__shfl_down_sync", "__shfl_xor_sync",
    "__ballot_sync", "__any_sync", "__all_sync", "__activemask", "__syncthreads", "__syncthreads_count",
    "__syncthreads_and", "__syncthreads_or"};

struct Thread {
    jmp_buf at;        // where to resume the fiber of slot i
    bool alive;        // slot i's fiber exists (ready, or parked in a kernel)
    uint3 tid;
    int state;
    int op;            // the barrier or warp operation it is parked at
    const char* file;
    int line;
    unsigned mask;     // warp operations
    int arg, width;
    uint64_t val;      // what the thread brings to the operation
    uint64_t result;   // what it gets back
    void* fake_stack;  // AddressSanitizer bookkeeping
};

#if defined(EMU_ASAN)
static const size_t STACK_SIZE = 1u << 20;
#else
static const size_t STACK_SIZE = 256u << 10;
#endif

struct Runtime {
    Thread* threads = nullptr;
    int capacity = 0;
    char* stacks = nullptr;          // capacity * (page guard + STACK_SIZE)
    size_t page = 4096;
    int* perm = nullptr;
    jmp_buf sched;                   // where a fiber returns to the launcher
    ucontext_t tmpl;                 // what makecontext starts a fiber from
    bool have_tmpl = false;
    void* sched_fake = nullptr;
    int n = 0;                       // threads in the block
    int cur = -1;                    // the thread running now
    bool fibers = false;
    bool in_launch = false;
    bool failed = false;
    int order = FORWARD;
    uint64_t rng = 0;
    const char* kernel = "";
    void (*body)(void**) = nullptr;
    void** args = nullptr;
    sigjmp_buf jmp;
    char err[4096];
    const void* main_bottom = nullptr;
    size_t main_size = 0;
};
inline Runtime R;

inline void vappend(const char* fmt, va_list ap) {
    size_t len = strlen(R.err);
    if (len + 1 < sizeof(R.err)) vsnprintf(R.err + len, sizeof(R.err) - len, fmt, ap);
}
inline void append(const char* fmt, ...) {
    va_list ap; va_start(ap, fmt); vappend(fmt, ap); va_end(ap);
}
inline void begin_error() {
    R.failed = true;
    R.err[0] = 0;
    append("kernel %s, block (%u,%u,%u): ", R.kernel, blockIdx.x, blockIdx.y, blockIdx.z);
}
inline const char* base_name(const char* path) {
    const char* s = strrchr(path, '/');
    return s ? s + 1 : path;
}

// ---- random order ----------------------------------------------------------
inline uint64_t rng_next() {
    uint64_t z = (R.rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
// perm[0..n) = the order to visit 0..n-1 in.
inline void make_order(int* perm, long n) {
    for (long k = 0; k < n; ++k) perm[k] = (int)(R.order == REVERSE ? n - 1 - k : k);
    if (R.order == SHUFFLE)
        for (long k = n - 1; k > 0; --k) {
            long j = (long)(rng_next() % (uint64_t)(k + 1));
            int t = perm[k]; perm[k] = perm[j]; perm[j] = t;
        }
}

// ---- shared memory poison --------------------------------------------------
#if defined(EMU_ASAN)
__attribute__((no_sanitize_address, noinline))
#endif
inline void poison_shared() {
    char* a = __start_emushared;
    char* b = __stop_emushared;
    if (!a || b <= a) return;
    // Word-wise NaN (0x7FC00000) where aligned, 0xFF bytes at the ragged ends.
    // Volatile so the compiler cannot turn it into a (sanitizer-checked) memset:
    // the section also holds AddressSanitizer's red zones between the arrays.
    volatile char* p = a;
    while (p < b && ((uintptr_t)p & 3)) *p++ = (char)0xFF;
    volatile uint32_t* w = (volatile uint32_t*)p;
    volatile uint32_t* we = (volatile uint32_t*)((uintptr_t)b & ~(uintptr_t)3);
    while (w < we) *w++ = 0x7FC00000u;
    for (p = (volatile char*)w; p < b; ++p) *p = (char)0xFF;
}

// ---- fibers ----------------------------------------------------------------
inline char* stack_of(int i) { return R.stacks + (size_t)i * (R.page + STACK_SIZE) + R.page; }

inline bool reserve(int n) {
    if (n <= R.capacity) return true;
    int cap = n < 32 ? 32 : n;
    if (R.stacks) munmap(R.stacks, (size_t)R.capacity * (R.page + STACK_SIZE));
    R.stacks = nullptr;
    free(R.threads);
    free(R.perm);
    R.threads = (Thread*)calloc((size_t)cap, sizeof(Thread));
    R.perm = (int*)malloc(sizeof(int) * (size_t)cap);
    R.capacity = R.threads && R.perm ? cap : 0;
    return R.capacity > 0;
}

// Stacks are reserved once and touched lazily; a guard page under each one
// turns a stack overflow into a reported fault, not silent corruption.
inline bool reserve_stacks() {
    if (R.stacks) return true;
    size_t total = (size_t)R.capacity * (R.page + STACK_SIZE);
    void* m = mmap(nullptr, total, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (m == MAP_FAILED) return false;
    R.stacks = (char*)m;
    for (int i = 0; i < R.capacity; ++i) mprotect(stack_of(i) - R.page, R.page, PROT_NONE);
    return true;
}

// Fibers. Thread i of a block always runs on slot i: its own stack with a fiber
// that runs one CUDA thread after another (one per block). The fiber is made
// once with glibc's makecontext; the switches are _setjmp/_longjmp, which, unlike
// swapcontext, make no system call (about 20 times faster).
//
// From a thread back to the launcher; returns when the launcher resumes it.
inline void park() {
    Thread& t = R.threads[R.cur];
    if (_setjmp(t.at) == 0) {
#if defined(EMU_ASAN)
        __sanitizer_start_switch_fiber(&t.fake_stack, R.main_bottom, R.main_size);
#endif
        _longjmp(R.sched, 1);
    }
#if defined(EMU_ASAN)
    __sanitizer_finish_switch_fiber(R.threads[R.cur].fake_stack, &R.main_bottom, &R.main_size);
#endif
}

inline void fiber_main() {
    volatile int slot = R.cur;
#if defined(EMU_ASAN)
    __sanitizer_finish_switch_fiber(nullptr, &R.main_bottom, &R.main_size);
#endif
#if defined(EMU_GPU_MATH)
    _mm_setcsr(_mm_getcsr() | 0x8040u);  // setcontext loaded the template's MXCSR
#endif
    for (;;) {
        R.body(R.args);                  // one CUDA thread, start to end
        R.threads[slot].state = DONE;
        park();                          // until the launcher starts the next one
    }
}

// From the launcher to thread i: start it, or resume it where it parked.
inline void resume(int i) {
    Thread& t = R.threads[i];
    R.cur = i;
    threadIdx = t.tid;
    if (_setjmp(R.sched) == 0) {
#if defined(EMU_ASAN)
        __sanitizer_start_switch_fiber(&R.sched_fake, stack_of(i), STACK_SIZE);
#endif
        if (t.alive) _longjmp(t.at, 1);
        if (!R.have_tmpl) { getcontext(&R.tmpl); R.have_tmpl = true; }
        static ucontext_t uc;
        memcpy(&uc, &R.tmpl, sizeof uc);
        uc.uc_mcontext.fpregs = &uc.__fpregs_mem;
        uc.uc_stack.ss_sp = stack_of(i);
        uc.uc_stack.ss_size = STACK_SIZE;
        uc.uc_link = nullptr;
        makecontext(&uc, (void (*)())fiber_main, 0);
#if defined(EMU_ASAN)
        __asan_unpoison_memory_region(stack_of(i), STACK_SIZE);  // an abandoned fiber's red zones
#endif
        t.alive = true;
        setcontext(&uc);
    }
#if defined(EMU_ASAN)
    __sanitizer_finish_switch_fiber(R.sched_fake, nullptr, nullptr);
#endif
}

// An error found inside a thread: record it and never come back to this thread.
[[noreturn]] inline void thread_fail(const char* fmt, ...) {
    begin_error();
    append("thread (%u,%u,%u): ", threadIdx.x, threadIdx.y, threadIdx.z);
    va_list ap; va_start(ap, fmt); vappend(fmt, ap); va_end(ap);
    if (R.fibers && R.cur >= 0) {
        R.threads[R.cur].state = ABORTED;
        park();
    }
    siglongjmp(R.jmp, 1);
}

inline int lane_of(int i) { return i & 31; }

// Park thread R.cur at a barrier or warp operation; returns its result.
inline uint64_t arrive(int op, const char* file, int line, uint64_t val,
                       unsigned mask = 0xFFFFFFFFu, int arg = 0, int width = 32) {
    if (!R.in_launch)
        thread_fail("%s() called outside a kernel launch", OP_NAMES[op]);
    if (!R.fibers)
        thread_fail("%s() at %s:%d, but the file was compiled without barriers; "
                    "the loader looks for them in the .cu text (is it hidden in a header?)",
                    OP_NAMES[op], base_name(file), line);
    Thread& t = R.threads[R.cur];
    t.state = (op >= OP_BAR) ? AT_BARRIER : AT_WARP;
    t.op = op; t.file = file; t.line = line; t.val = val;
    t.mask = mask; t.arg = arg; t.width = width;
    if (op < OP_ACTIVE) {
        if (width <= 0 || width > 32 || (width & (width - 1)))
            thread_fail("%s at %s:%d: width %d is not a power of 2 in [1, 32]",
                        OP_NAMES[op], base_name(file), line, width);
        if (!(mask >> lane_of(R.cur) & 1u))
            thread_fail("%s at %s:%d: mask 0x%08x does not include the calling lane %d",
                        OP_NAMES[op], base_name(file), line, mask, lane_of(R.cur));
    }
    park();
    return R.threads[R.cur].result;
}

inline const char* describe(const Thread& t, char* buf, size_t len) {
    if (t.state == DONE) snprintf(buf, len, "exited the kernel");
    else if (t.state == RUNNABLE) snprintf(buf, len, "running");
    else snprintf(buf, len, "waits at %s() at %s:%d", OP_NAMES[t.op], base_name(t.file), t.line);
    return buf;
}

// Complete every warp operation whose participants have all arrived.
inline bool resolve_warps() {
    bool progress = false;
    int n = R.n;
    for (int w0 = 0; w0 < n; w0 += 32) {
        int wn = n - w0 < 32 ? n - w0 : 32;
        unsigned exists = wn == 32 ? 0xFFFFFFFFu : ((1u << wn) - 1u);
        for (int l = 0; l < wn; ++l) {
            Thread& t = R.threads[w0 + l];
            if (t.state != AT_WARP) continue;
            if (t.op == OP_ACTIVE) {
                // Nothing can run any more: the lanes here now are the active ones.
                unsigned here = 0;
                for (int m = 0; m < wn; ++m) {
                    const Thread& u = R.threads[w0 + m];
                    if (u.state == AT_WARP && u.op == OP_ACTIVE && u.line == t.line && u.file == t.file)
                        here |= 1u << m;
                }
                for (int m = 0; m < wn; ++m)
                    if (here >> m & 1u) { R.threads[w0 + m].result = here; R.threads[w0 + m].state = RUNNABLE; }
                progress = true;
                continue;
            }
            unsigned need = t.mask & exists;
            bool ready = true;
            for (int m = 0; m < wn; ++m) {
                if (!(need >> m & 1u)) continue;
                Thread& u = R.threads[w0 + m];
                if (u.state == DONE) {
                    begin_error();
                    append("%s() at %s:%d (lane %d of warp %d) waits for lane %d, "
                           "which exited the kernel without reaching it (a warp operation in "
                           "divergent code: every lane named in the mask must reach it)",
                           OP_NAMES[t.op], base_name(t.file), t.line, l, w0 / 32, m);
                    return false;
                }
                if (u.state != AT_WARP || u.line != t.line || u.file != t.file ||
                    u.op != t.op || u.mask != t.mask) { ready = false; break; }
            }
            if (!ready) continue;
            // Everyone named in the mask is here: do the operation.
            uint64_t ballot = 0; bool any = false, all = true;
            for (int m = 0; m < wn; ++m)
                if (need >> m & 1u) {
                    bool p = R.threads[w0 + m].val != 0;
                    if (p) ballot |= 1ull << m;
                    any = any || p; all = all && p;
                }
            for (int m = 0; m < wn; ++m) {
                if (!(need >> m & 1u)) continue;
                Thread& u = R.threads[w0 + m];
                int w = u.width, base = m & ~(w - 1), src = m;
                switch (u.op) {
                    case OP_SHFL_IDX: src = base + (u.arg & (w - 1)); break;
                    case OP_SHFL_UP: src = (m - base) >= u.arg ? m - u.arg : m; break;
                    case OP_SHFL_DOWN: src = (m - base) + u.arg < w ? m + u.arg : m; break;
                    case OP_SHFL_XOR: src = ((m ^ u.arg) < base + w) ? (m ^ u.arg) : m; break;
                    default: break;
                }
                if (u.op == OP_BALLOT) u.result = ballot;
                else if (u.op == OP_ANY) u.result = any;
                else if (u.op == OP_ALL) u.result = all;
                else if (src >= 0 && src < wn && (need >> src & 1u)) u.result = R.threads[w0 + src].val;
                else u.result = 0x7FC000007FC00000ull;  // an inactive lane: undefined, poisoned
            }
            for (int m = 0; m < wn; ++m)
                if (need >> m & 1u) R.threads[w0 + m].state = RUNNABLE;
            progress = true;
        }
    }
    return progress;
}

// All threads have stopped: release a block barrier, or explain why not.
// Returns false when the block is finished or an error was recorded.
inline bool release_barrier() {
    int n = R.n, done = 0, at_bar = 0, at_warp = 0, first = -1;
    for (int i = 0; i < n; ++i) {
        const Thread& t = R.threads[i];
        if (t.state == DONE) ++done;
        else if (t.state == AT_BARRIER) { ++at_bar; if (first < 0) first = i; }
        else if (t.state == AT_WARP) ++at_warp;
    }
    if (done == n) return false;
    char b1[256], b2[256];
    if (at_warp > 0) {
        int a = -1, b = -1;
        for (int i = 0; i < n && b < 0; ++i)
            if (R.threads[i].state == AT_WARP) {
                if (a < 0) a = i;
                else if (R.threads[i].line != R.threads[a].line || R.threads[i].op != R.threads[a].op) b = i;
            }
        if (b < 0)
            for (int i = 0; i < n; ++i)
                if (i / 32 == a / 32 && i != a && R.threads[i].state != AT_WARP) { b = i; break; }
        if (b < 0) b = (first >= 0) ? first : a;
        begin_error();
        append("deadlock: thread %d %s, but thread %d %s (every lane named in the mask must "
               "reach the same warp operation)",
               a, describe(R.threads[a], b1, sizeof b1), b, describe(R.threads[b], b2, sizeof b2));
        return false;
    }
    const Thread& f = R.threads[first];
    for (int i = 0; i < n; ++i) {
        const Thread& t = R.threads[i];
        if (t.state == AT_BARRIER && (t.line != f.line || t.file != f.file)) {
            begin_error();
            append("threads wait at different barriers: thread %d %s, thread %d %s "
                   "(a __syncthreads() inside divergent code: every thread of the block must "
                   "reach the same one)",
                   first, describe(f, b1, sizeof b1), i, describe(t, b2, sizeof b2));
            return false;
        }
    }
    if (done > 0) {
        int ex = -1;
        for (int i = 0; i < n && ex < 0; ++i) if (R.threads[i].state == DONE) ex = i;
        begin_error();
        append("%s() at %s:%d was reached by %d of %d threads; the other %d (thread %d first) "
               "exited the kernel without reaching it (a barrier inside divergent code: "
               "every thread of the block must reach every __syncthreads())",
               OP_NAMES[f.op], base_name(f.file), f.line, at_bar, n, done, ex);
        return false;
    }
    long count = 0;
    for (int i = 0; i < n; ++i) count += R.threads[i].val != 0;
    for (int i = 0; i < n; ++i) {
        Thread& t = R.threads[i];
        t.result = t.op == OP_BAR_COUNT ? (uint64_t)count
                 : t.op == OP_BAR_AND ? (uint64_t)(count == n)
                 : t.op == OP_BAR_OR ? (uint64_t)(count > 0) : 0;
        t.state = RUNNABLE;
    }
    return true;
}

inline void thread_id(int i, uint3* t) {
    unsigned bx = blockDim.x, by = blockDim.y;
    t->x = (unsigned)i % bx;
    t->y = ((unsigned)i / bx) % by;
    t->z = (unsigned)i / (bx * by);
}

inline void run_block_fibers() {
    int n = R.n;
    for (int i = 0; i < n; ++i) {
        Thread& t = R.threads[i];
        thread_id(i, &t.tid);
        t.state = RUNNABLE;
        t.op = OP_NONE; t.file = ""; t.line = 0;
    }
    for (;;) {
        make_order(R.perm, n);
        for (int k = 0; k < n; ++k) {
            int i = R.perm[k];
            if (R.threads[i].state != RUNNABLE) continue;
            resume(i);
            if (R.failed) return;
        }
        R.cur = -1;
        if (resolve_warps()) continue;
        if (R.failed) return;
        if (!release_barrier()) return;
    }
}

inline void run_block_plain() {
    int n = R.n;
    make_order(R.perm, n);
    void (*body)(void**) = R.body;
    void** args = R.args;
    for (int k = 0; k < n; ++k) {
        thread_id(R.perm[k], &threadIdx);
        body(args);
    }
}

// ---- faults inside a kernel ------------------------------------------------
#if !defined(EMU_ASAN)
inline thread_local char* altstack = nullptr;
inline struct sigaction old_segv, old_bus, old_fpe, old_ill;

inline void on_fault(int sig, siginfo_t* info, void* uctx) {
    if (!R.in_launch) {  // not ours: put the old handler back and let it fault again
        sigaction(SIGSEGV, &old_segv, nullptr); sigaction(SIGBUS, &old_bus, nullptr);
        sigaction(SIGFPE, &old_fpe, nullptr); sigaction(SIGILL, &old_ill, nullptr);
        return;
    }
    begin_error();
    if (R.cur >= 0 || !R.fibers)
        append("thread (%u,%u,%u): ", threadIdx.x, threadIdx.y, threadIdx.z);
    char* addr = (char*)info->si_addr;
    bool guard = false;
    if (sig == SIGSEGV && R.stacks)
        for (int i = 0; i < R.capacity && !guard; ++i)
            guard = addr >= stack_of(i) - R.page && addr < stack_of(i);
#if defined(__x86_64__)
    if (sig == SIGSEGV && R.fibers && R.cur >= 0) {  // the thread's stack pointer left its stack
        char* sp = (char*)((ucontext_t*)uctx)->uc_mcontext.gregs[REG_RSP];
        guard = guard || sp < stack_of(R.cur);
    }
#endif
    if (guard)
        append("stack overflow: a thread used more than its %zu KiB of stack "
               "(large local arrays or deep recursion)", STACK_SIZE >> 10);
    else if (sig == SIGFPE)
        append("arithmetic fault (SIGFPE: integer division by zero?)");
    else
        append("invalid memory access (%s at address %p): an index out of bounds or a bad "
               "pointer; load the module with sanitize=True (see loader.run_sanitized) to get "
               "the .cu line", sig == SIGSEGV ? "SIGSEGV" : sig == SIGBUS ? "SIGBUS" : "SIGILL",
               (void*)addr);
    siglongjmp(R.jmp, 1);
}
#endif

struct FaultGuard {
#if !defined(EMU_ASAN)
    stack_t old_alt;
    FaultGuard() {
        if (!altstack) altstack = (char*)malloc(1 << 16);
        stack_t ss; ss.ss_sp = altstack; ss.ss_size = 1 << 16; ss.ss_flags = 0;
        sigaltstack(&ss, &old_alt);
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_fault;
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGSEGV, &sa, &old_segv); sigaction(SIGBUS, &sa, &old_bus);
        sigaction(SIGFPE, &sa, &old_fpe); sigaction(SIGILL, &sa, &old_ill);
    }
    ~FaultGuard() {
        sigaction(SIGSEGV, &old_segv, nullptr); sigaction(SIGBUS, &old_bus, nullptr);
        sigaction(SIGFPE, &old_fpe, nullptr); sigaction(SIGILL, &old_ill, nullptr);
        sigaltstack(&old_alt, nullptr);
    }
#endif
};

// ---- launch ----------------------------------------------------------------
// Returns 0, or 1 with the message in R.err (read by emu_error()).
inline int launch(const char* kernel, const unsigned* grid, const unsigned* block, void** args,
                  int order, unsigned long long seed, int fibers, void (*body)(void**)) {
    R.err[0] = 0;
    R.failed = false;
    R.kernel = kernel;
    R.order = order;
    R.rng = seed;
    R.fibers = fibers != 0;
    R.body = body;
    R.args = args;
    R.cur = -1;
    gridDim = dim3(grid[0], grid[1], grid[2]);
    blockDim = dim3(block[0], block[1], block[2]);
    blockIdx = uint3{0, 0, 0};
    threadIdx = uint3{0, 0, 0};
    long nt = (long)block[0] * block[1] * block[2];
    unsigned long long nb = (unsigned long long)grid[0] * grid[1] * grid[2];
    if (nt <= 0 || nt > 1024 || nb == 0) {
        begin_error();
        append("bad launch: %ld threads per block (1 to 1024), %llu blocks", nt, nb);
        return 1;
    }
    if (!reserve((int)nt) || (R.fibers && !reserve_stacks())) {
        begin_error();
        append("out of memory for %ld threads", nt);
        return 1;
    }
    R.n = (int)nt;
    int* bperm = nullptr;
    if (order != FORWARD && nb > 1 && nb <= (1ull << 26)) {  // huge grids: blocks in order
        bperm = (int*)malloc(sizeof(int) * nb);
        if (!bperm) { begin_error(); append("out of memory for %llu blocks", nb); return 1; }
        make_order(bperm, (long)nb);
    }
    FaultGuard guard;
#if defined(EMU_GPU_MATH)
    // FTZ (bit 15) flushes subnormal results, DAZ (bit 6) subnormal inputs.
    unsigned int mxcsr = _mm_getcsr();
    _mm_setcsr(mxcsr | 0x8040u);
#endif
    R.in_launch = true;
    if (sigsetjmp(R.jmp, 1) == 0) {
        for (unsigned long long k = 0; k < nb && !R.failed; ++k) {
            unsigned long long b = bperm ? (unsigned long long)bperm[k] : k;
            blockIdx.x = (unsigned)(b % grid[0]);
            blockIdx.y = (unsigned)((b / grid[0]) % grid[1]);
            blockIdx.z = (unsigned)(b / ((unsigned long long)grid[0] * grid[1]));
            poison_shared();
            if (R.fibers) run_block_fibers();
            else run_block_plain();
        }
    }
    R.in_launch = false;
#if defined(EMU_GPU_MATH)
    _mm_setcsr(mxcsr);            // Python's own arithmetic keeps IEEE subnormals
#endif
    R.cur = -1;
    free(bperm);
    if (R.failed)  // fibers left in the middle of a kernel are started afresh next time
        for (int i = 0; i < R.capacity; ++i) R.threads[i].alive = false;
    return R.failed ? 1 : 0;
}

// ---- the calls a kernel makes --------------------------------------------
struct SyncWarpAt {
    const char* file; int line;
    void operator()(unsigned mask = 0xFFFFFFFFu) const { arrive(OP_SYNCWARP, file, line, 0, mask); }
};
template <class T> inline uint64_t to_bits(T v) {
    static_assert(sizeof(T) <= 8, "warp shuffles move at most 8 bytes");
    uint64_t b = 0; memcpy(&b, &v, sizeof(T)); return b;
}
template <class T> inline T from_bits(uint64_t b) { T v; memcpy(&v, &b, sizeof(T)); return v; }
template <class T>
inline T shfl(int op, const char* file, int line, unsigned mask, T var, int arg, int width = 32) {
    return from_bits<T>(arrive(op, file, line, to_bits(var), mask, arg, width));
}

}  // namespace emu_rt

#define __activemask() ((unsigned)emu_rt::arrive(emu_rt::OP_ACTIVE, __FILE__, __LINE__, 0))
#define __syncthreads() emu_rt::arrive(emu_rt::OP_BAR, __FILE__, __LINE__, 0)
#define __syncthreads_count(p) ((int)emu_rt::arrive(emu_rt::OP_BAR_COUNT, __FILE__, __LINE__, (p) != 0))
#define __syncthreads_and(p) ((int)emu_rt::arrive(emu_rt::OP_BAR_AND, __FILE__, __LINE__, (p) != 0))
#define __syncthreads_or(p) ((int)emu_rt::arrive(emu_rt::OP_BAR_OR, __FILE__, __LINE__, (p) != 0))
#define __syncwarp(...) (emu_rt::SyncWarpAt{__FILE__, __LINE__}(__VA_ARGS__))
#define __shfl_sync(...) emu_rt::shfl(emu_rt::OP_SHFL_IDX, __FILE__, __LINE__, __VA_ARGS__)
#define __shfl_up_sync(...) emu_rt::shfl(emu_rt::OP_SHFL_UP, __FILE__, __LINE__, __VA_ARGS__)
#define __shfl_down_sync(...) emu_rt::shfl(emu_rt::OP_SHFL_DOWN, __FILE__, __LINE__, __VA_ARGS__)
#define __shfl_xor_sync(...) emu_rt::shfl(emu_rt::OP_SHFL_XOR, __FILE__, __LINE__, __VA_ARGS__)
#define __ballot_sync(mask, p) ((unsigned)emu_rt::arrive(emu_rt::OP_BALLOT, __FILE__, __LINE__, (p) != 0, (mask)))
#define __any_sync(mask, p) ((int)emu_rt::arrive(emu_rt::OP_ANY, __FILE__, __LINE__, (p) != 0, (mask)))
#define __all_sync(mask, p) ((int)emu_rt::arrive(emu_rt::OP_ALL, __FILE__, __LINE__, (p) != 0, (mask)))

// The launcher the loader generates for each kernel unpacks CUDA-style
// kernelParams (args[i] points at the i-th argument) with the kernel's own
// parameter types.
namespace emu_rt {
template <class... P, std::size_t... I>
inline void unpack(void (*f)(P...), void** a, std::index_sequence<I...>) {
    f(*static_cast<typename std::remove_reference<P>::type*>(a[I])...);
}
template <class... P>
inline void call(void (*f)(P...), void** a) { unpack(f, a, std::index_sequence_for<P...>{}); }
template <class... P>
inline int param_sizes(void (*)(P...), int* out) {
    int sizes[] = {(int)sizeof(P)..., 0};
    for (std::size_t i = 0; i < sizeof...(P); ++i) out[i] = sizes[i];
    return (int)sizeof...(P);
}
}  // namespace emu_rt

#define EMU_EXPORT extern "C" __attribute__((visibility("default")))
