// cxx.cpp - the C++ allocation operators under libntpool-preload.so, one case per CTest test.
//   preload_cxx CASE      (run with LD_PRELOAD=libntpool-preload.so)
#include <dlfcn.h>
#include <malloc.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <new>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#define CHECK(c)                                                                     \
    do {                                                                             \
        if (!(c)) {                                                                  \
            std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c); \
            std::exit(1);                                                            \
        }                                                                            \
    } while (0)

static bool aligned(const void *p, size_t a) { return (reinterpret_cast<uintptr_t>(p) & (a - 1)) == 0; }

// Sizes the compiler cannot see, so no new-expression is folded away or rejected at compile time.
static volatile size_t huge_size = size_t(1) << 50;
static volatile size_t small_size = 20;

static bool from_shim(void *fn)
{
    Dl_info di;
    return dladdr(fn, &di) != 0 && std::strstr(di.dli_fname, "libntpool-preload") != nullptr;
}

static void case_operators()
{
    // The operators the program calls are the shim's.
    CHECK(from_shim(dlsym(RTLD_DEFAULT, "_Znwm")));
    CHECK(from_shim(dlsym(RTLD_DEFAULT, "_ZdlPv")));
    CHECK(from_shim(dlsym(RTLD_DEFAULT, "_ZnwmSt11align_val_t")));
    char *a = new char[small_size];
    CHECK(malloc_usable_size(a) == 32); // the pool's class, not glibc's 24
    delete[] a;
    int *i = new int(7);
    CHECK(*i == 7);
    delete i;
    int *n = new (std::nothrow) int[100];
    CHECK(n != nullptr);
    delete[] n;
    struct alignas(256) Wide {
        char c[300];
    };
    Wide *w = new Wide;
    CHECK(aligned(w, 256));
    delete w;
    Wide *wa = new Wide[5];
    CHECK(aligned(wa, 256));
    delete[] wa;
    struct alignas(1 << 17) Huge {
        char c[100];
    };
    Huge *h = new (std::nothrow) Huge;
    CHECK(h != nullptr && aligned(h, 1 << 17));
    delete h;
    // Sized deletes.
    std::allocator<double> al;
    double *d = al.allocate(1000);
    al.deallocate(d, 1000);
    void *raw = ::operator new(100, std::align_val_t(64));
    CHECK(aligned(raw, 64));
    ::operator delete(raw, 100, std::align_val_t(64));
}

static void case_containers()
{
    // A C++ workload with real churn, over several threads.
    auto work = [](int seed) {
        std::map<std::string, std::vector<int>> m;
        std::unordered_map<int, std::string> u;
        uint32_t x = uint32_t(seed) * 2654435761u + 1;
        for (int i = 0; i < 40000; i++) {
            x = x * 1664525u + 1013904223u;
            std::string k = "k" + std::to_string(x % 5000);
            m[k].push_back(int(x >> 8));
            u[int(x % 7000)] = k + k;
            if (i % 7 == 0)
                m.erase(k);
        }
        long sum = 0;
        for (auto &kv : m) {
            std::sort(kv.second.begin(), kv.second.end());
            sum += long(kv.second.size()) + kv.first.size();
        }
        return sum + long(u.size());
    };
    long expect[4];
    for (int t = 0; t < 4; t++)
        expect[t] = work(t);
    long got[4];
    std::vector<std::thread> th;
    for (int t = 0; t < 4; t++)
        th.emplace_back([&, t] { got[t] = work(t); });
    for (auto &t : th)
        t.join();
    for (int t = 0; t < 4; t++)
        CHECK(got[t] == expect[t]);
}

static void case_bad_alloc()
{
    bool thrown = false;
    try {
        char *p = new char[huge_size];
        p[0] = 1;
        delete[] p;
    } catch (const std::bad_alloc &) {
        thrown = true;
    }
    CHECK(thrown);
    thrown = false;
    try {
        void *p = ::operator new(huge_size);
        ::operator delete(p);
    } catch (const std::bad_alloc &) {
        thrown = true;
    }
    CHECK(thrown);
    thrown = false;
    try {
        void *p = ::operator new(huge_size, std::align_val_t(4096));
        ::operator delete(p, std::align_val_t(4096));
    } catch (const std::bad_alloc &) {
        thrown = true;
    }
    CHECK(thrown);
    CHECK(new (std::nothrow) char[huge_size] == nullptr);
    CHECK(::operator new(huge_size, std::nothrow) == nullptr);
    CHECK(::operator new(huge_size, std::align_val_t(128), std::nothrow) == nullptr);
}

static int handler_calls;
static void handler_gives_up()
{
    // First call: nothing to free, try again; second call: give up the handler, so new throws.
    if (++handler_calls >= 2)
        std::set_new_handler(nullptr);
}
static void handler_throws()
{
    handler_calls++;
    throw std::bad_alloc();
}

static void case_new_handler()
{
    std::set_new_handler(handler_gives_up);
    bool thrown = false;
    try {
        void *p = ::operator new(huge_size);
        ::operator delete(p);
    } catch (const std::bad_alloc &) {
        thrown = true;
    }
    CHECK(thrown && handler_calls == 2);
    // A nothrow new whose handler throws returns nullptr.
    handler_calls = 0;
    std::set_new_handler(handler_throws);
    CHECK(::operator new(huge_size, std::nothrow) == nullptr);
    CHECK(handler_calls == 1);
    handler_calls = 0;
    CHECK(::operator new[](huge_size, std::align_val_t(256), std::nothrow) == nullptr);
    CHECK(handler_calls == 1);
    std::set_new_handler(nullptr);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s CASE\n", argv[0]);
        return 2;
    }
    struct {
        const char *name;
        void (*fn)();
    } cases[] = {{"operators", case_operators},
                 {"containers", case_containers},
                 {"bad_alloc", case_bad_alloc},
                 {"new_handler", case_new_handler}};
    for (auto &c : cases)
        if (std::strcmp(argv[1], c.name) == 0) {
            c.fn();
            std::printf("%s: ok\n", c.name);
            return 0;
        }
    std::fprintf(stderr, "unknown case %s\n", argv[1]);
    return 2;
}
