/*
 * fuzz_ops.c - the op-sequence fuzzer with a shadow model (docs/RELIABILITY.md; plan R6).
 *
 * An input is a small program: two configuration bytes (pool limits, priority thresholds,
 * quota), then operations, each an opcode byte followed by its argument bytes (see do_op).
 * Every operation runs against the library and against a model of what README promises; the
 * first difference stops the process with a report and the last operations (abort(): libFuzzer
 * keeps the input). After every operation:
 *
 *   - every live block still holds its fill byte (blocks up to 4 KiB wholly, larger ones at
 *     their head, tail and a moving window; every block wholly when freed, at "check all" and
 *     at the end of the input), no two live blocks overlap;
 *   - the per-tag counters (ntpool_tag_snapshot, less what they were when the input started)
 *     equal the model's, and so does ntpool_quota_used;
 *   - the thread's IRQL is what the model says, and ntpool_validate finds nothing wrong.
 *
 * At each allocation: alignment (16 bytes; whole pages above 4064 bytes; a cache line when
 * asked), no small block crossing a page, zeroed when it must be, ExQueryPoolBlockSize equal to
 * the size class, the quota flag; NULL (or the raise, or bug check 0x41 for must-succeed types)
 * only with a reason: an OS call failed by the injector during this call, the pool above the
 * level's threshold, or no room below the level's limit for the smallest carve - and never a
 * success where the model says it must fail (Low/Normal at or above their threshold, anything
 * beyond the limit). Every misuse must give exactly the bug check of README's decisions table,
 * with the deterministic parameters; a legal operation must give none.
 *
 * A helper thread allocates and frees on request, so remote frees, abandoned and adopted spans
 * are in play; ntpool_thread_cleanup abandons a heap mid-run. The fault operation arms the OS
 * injector (n-th call, or from the n-th on). Inputs are independent: everything is freed, the
 * options restored and the pools trimmed at the end of each, and then nothing may stay
 * committed.
 *
 * Special pool is one operation (POOL_FLAG_SPECIAL_POOL requests below a page: placement at the
 * page end, usable size, its own free checks 0xC1/0x20, 0x21, 0x31; a fallback to normal pool is
 * told by ntpool_verifier_stats). Not modelled yet: the flag in the other operations' requests
 * (masked out), the options that turn the Verifier, special pool by pattern and low-resources
 * simulation on, and lookaside lists and contiguous memory, which are not in the library yet:
 * each joins as operations with their own expectations when it lands.
 *
 * NTP_FUZZ_STATS=1 prints what the run exercised at exit. (The two bugs this target found are
 * fixed - commits 8dd7484 and 0a25dbb: the double free of a huge or jumbo block whose segment was
 * unmapped, and special-pool usable sizes; their inputs are in the corpus.)
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ntpool/ntpool.h>

#include "os/os.h" /* ntpool_os_fail, ntpool_os_failures: the injector, with its counters */

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NSLOTS 64
#define MAX_OPS 400
#define ID_MASK 0x7FFFFFFFu
#define TAG_BAD0 0x30646142u /* "Bad0" */
#define TAG_NONE 0x656E6F4Eu /* "None" */
#define TAG_BIG 0x20474942u  /* "BIG " */
#define SIZE_LIMIT ((size_t)1 << 44)
#define SMALL_MAX 4064u
#define BIG_MAX 65536u
#define SEG_SIZE ((uintptr_t)4 << 20)

enum { K_NX = 0, K_EXEC = 1, K_PAGED = 2 };
enum { L_LOW = 0, L_NORMAL = 1, L_HIGH = 2 };
static const int kind_pool_type[3] = {NonPagedPoolNx, NonPagedPoolExecute, PagedPool};
static const char *const kind_name[3] = {"NX", "EXEC", "PAGED"};

/* ---- failure reports ------------------------------------------------------------------------ */

#define TRACE_N 48
static char trace_buf[TRACE_N][200];
static unsigned trace_pos;
static unsigned long input_no;

__attribute__((format(printf, 1, 2))) static void trace(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(trace_buf[trace_pos % TRACE_N], sizeof trace_buf[0], fmt, ap);
    va_end(ap);
    trace_pos++;
}

__attribute__((format(printf, 1, 2), noreturn)) static void fail(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n==== ntpool op fuzzer: MODEL VIOLATION (input %lu) ====\n%s\n", input_no, msg);
    fprintf(stderr, "---- last operations (oldest first) ----\n");
    unsigned first = trace_pos > TRACE_N ? trace_pos - TRACE_N : 0;
    for (unsigned i = first; i < trace_pos; i++)
        fprintf(stderr, "  %4u %s\n", i, trace_buf[i % TRACE_N]);
    char rep[4096];
    if (ntpool_bugcheck_last_report(rep, sizeof rep) > 0)
        fprintf(stderr, "---- last bug-check report ----\n%s", rep);
    fflush(stderr);
    abort();
}

/* ---- statistics (NTP_FUZZ_STATS=1) ------------------------------------------------------------ */

static struct {
    unsigned long inputs, ops, allocs, alloc_null, alloc_raise, alloc_0x41, invalid, quota_refused;
    unsigned long frees, remote_frees, bugchecks, faults_injected, cleanups, trims, special;
    unsigned long bc_seen[32];
} st;
static const struct { ULONG code; ULONG_PTR p1; const char *name; } bc_kinds[] = {
    {0xC2, 0x07, "C2/07 double free (small)"}, {0x19, 0x22, "19/22 no big block"},
    {0xC2, 0x08, "C2/08 alloc IRQL"},          {0xC2, 0x09, "C2/09 free IRQL"},
    {0xC2, 0x0A, "C2/0A wrong tag"},           {0xC2, 0x44, "C2/44 nonpaged non-block"},
    {0xC2, 0x46, "C2/46 foreign"},             {0xC2, 0x48, "C2/48 paged non-block"},
    {0xC2, 0x99, "C2/99 interior"},            {0xC2, 0x41286, "C2/41286 interior paged"},
    {0xC2, 0x9C, "C2/9C BIG tag"},             {0xC2, 0x9D, "C2/9D bad tag"},
    {0x09, 0, "09 IRQL transition"},           {0x41, 0, "41 must succeed"},
    {0xC1, 0x20, "C1/20 special: not allocated"}, {0xC1, 0x21, "C1/21 special: inside"},
    {0xC1, 0x31, "C1/31 special: free IRQL"},
};
static int stats_on;

static void note_bc(ULONG code, ULONG_PTR p1, ULONG_PTR p4)
{
    st.bugchecks++;
    ULONG_PTR sel = code == 0xC1 ? p4 : p1; /* 0xC1 says what happened in P4 */
    for (size_t i = 0; i < sizeof bc_kinds / sizeof bc_kinds[0]; i++)
        if (bc_kinds[i].code == code && (code == 0x09 || code == 0x41 || bc_kinds[i].p1 == sel))
            st.bc_seen[i]++;
}

static void print_stats(void)
{
    fprintf(stderr,
            "ntpool op fuzzer: %lu inputs, %lu ops; %lu allocations (%lu NULL, %lu raised, %lu 0x41, "
            "%lu invalid, %lu quota refusals); %lu frees (%lu remote); %lu OS faults injected; "
            "%lu heap cleanups; %lu trims; %lu special-pool blocks; %lu bug checks:\n",
            st.inputs, st.ops, st.allocs, st.alloc_null, st.alloc_raise, st.alloc_0x41, st.invalid,
            st.quota_refused, st.frees, st.remote_frees, st.faults_injected, st.cleanups, st.trims,
            st.special, st.bugchecks);
    for (size_t i = 0; i < sizeof bc_kinds / sizeof bc_kinds[0]; i++)
        fprintf(stderr, "    %-28s %lu\n", bc_kinds[i].name, st.bc_seen[i]);
}

/* ---- the input --------------------------------------------------------------------------------- */

typedef struct rd {
    const uint8_t *d;
    size_t n, i;
} rd_t;

static uint8_t u8(rd_t *r)
{
    return r->i < r->n ? r->d[r->i++] : 0;
}

static uint16_t u16(rd_t *r)
{
    uint16_t a = u8(r);
    return (uint16_t)(a | (u8(r) << 8));
}

static uint32_t u32(rd_t *r)
{
    uint32_t a = u16(r);
    return a | ((uint32_t)u16(r) << 16);
}

static uint64_t u64(rd_t *r)
{
    uint64_t a = u32(r);
    return a | ((uint64_t)u32(r) << 32);
}

/* ---- bug checks caught per thread, raises caught by NTPOOL_TRY ------------------------------------ */

typedef struct bcrec {
    ULONG code;
    ULONG_PTR p[4];
} bcrec_t;

static __thread sigjmp_buf *tl_jb;
static __thread bcrec_t tl_bc;

static void on_bugcheck(void *ctx, ULONG code, ULONG_PTR p1, ULONG_PTR p2, ULONG_PTR p3, ULONG_PTR p4)
{
    (void)ctx;
    tl_bc.code = code;
    tl_bc.p[0] = p1;
    tl_bc.p[1] = p2;
    tl_bc.p[2] = p3;
    tl_bc.p[3] = p4;
    if (tl_jb != NULL)
        siglongjmp(*tl_jb, 1);
    fail("bug check 0x%X (0x%lX, 0x%lX, 0x%lX, 0x%lX) outside any operation", (unsigned)code,
         (unsigned long)p1, (unsigned long)p2, (unsigned long)p3, (unsigned long)p4);
}

enum { OUT_RET = 0, OUT_RAISE = 1, OUT_BC = 2 };
typedef struct outcome {
    int kind;
    NTSTATUS status;
    bcrec_t bc;
    unsigned long osfail; /* OS calls the injector failed during the call */
} outcome_t;

/* Run fn(arg) with bug checks and raises caught. The bug-check jump lands inside the try
 * block, so the try frame is always left through its own bookkeeping. */
static void run_guarded(void (*fn)(void *), void *arg, outcome_t *out)
{
    sigjmp_buf jb;
    outcome_t *volatile o = out;
    unsigned long f0 = ntpool_os_failures();
    o->kind = OUT_RET;
    NTPOOL_TRY {
        tl_jb = &jb;
        if (sigsetjmp(jb, 0) == 0) {
            fn(arg);
        } else {
            o->kind = OUT_BC;
            o->bc = tl_bc;
        }
        tl_jb = NULL;
    } NTPOOL_EXCEPT(EXCEPTION_EXECUTE_HANDLER) {
        tl_jb = NULL;
        o->kind = OUT_RAISE;
        o->status = GetExceptionCode();
    } NTPOOL_END_TRY;
    o->osfail = ntpool_os_failures() - f0;
    st.faults_injected += o->osfail;
    if (o->kind == OUT_BC)
        note_bc(o->bc.code, o->bc.p[0], o->bc.p[3]);
}

/* ---- the helper thread: runs one function at a time, synchronously ---------------------------- */

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t th;
    int started, pending;
    void (*fn)(void *);
    void *arg;
} helper = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static void *helper_main(void *unused)
{
    (void)unused;
    pthread_mutex_lock(&helper.mu);
    for (;;) {
        while (!helper.pending)
            pthread_cond_wait(&helper.cv, &helper.mu);
        void (*fn)(void *) = helper.fn;
        void *arg = helper.arg;
        pthread_mutex_unlock(&helper.mu);
        fn(arg);
        pthread_mutex_lock(&helper.mu);
        helper.pending = 0;
        pthread_cond_broadcast(&helper.cv);
    }
    return NULL;
}

static void on_helper(void (*fn)(void *), void *arg)
{
    pthread_mutex_lock(&helper.mu);
    if (!helper.started) {
        if (pthread_create(&helper.th, NULL, helper_main, NULL) != 0)
            fail("cannot start the helper thread");
        helper.started = 1;
    }
    helper.fn = fn;
    helper.arg = arg;
    helper.pending = 1;
    pthread_cond_broadcast(&helper.cv);
    while (helper.pending)
        pthread_cond_wait(&helper.cv, &helper.mu);
    pthread_mutex_unlock(&helper.mu);
}

typedef struct guarded {
    void (*fn)(void *);
    void *arg;
    outcome_t *out;
} guarded_t;

static void guarded_thunk(void *a)
{
    guarded_t *g = a;
    run_guarded(g->fn, g->arg, g->out);
}

/* Run fn guarded on the main thread, or on the helper. */
static void exec_guarded(int on_help, void (*fn)(void *), void *arg, outcome_t *out)
{
    if (!on_help) {
        run_guarded(fn, arg, out);
        return;
    }
    guarded_t g = {fn, arg, out};
    on_helper(guarded_thunk, &g);
}

/* ---- the model -------------------------------------------------------------------------------------- */

enum { S_EMPTY = 0, S_LIVE, S_FREED };
typedef struct blk {
    unsigned char *p;
    size_t n;     /* requested */
    size_t bsize; /* usable: the size class, or whole pages */
    ULONG tag;    /* as stored (bit 31 clear) */
    uint8_t state, kind, fill, quota;
    uint8_t special; /* served from special pool: its own page, its own free checks */
    size_t filled;   /* bytes filled and checked: the usable size (bsize) */
} blk_t;

static blk_t slot[NSLOTS];
static unsigned fill_seq;

/* Tags: 16 of the fuzzer's own, and the two the legacy routines substitute. */
#define NFT 16
#define NTAG (NFT + 2)
static ULONG tag_list[NTAG];
typedef struct tcount {
    uint64_t a, f;
    int64_t b;
} tcount_t;
static tcount_t tc_model[NTAG][3], tc_base[NTAG][3];
/* Failed quota requests whose path the model could not see (the snapshot that tells was itself
 * refused memory by the injector): each may have counted an allocation and a free, or nothing. */
static unsigned tc_ambiguous[NTAG][3];

static KIRQL m_irql;       /* main thread's IRQL */
static KSPIN_LOCK spin;
static int spin_held;
static uint64_t m_quota_used, m_quota_limit; /* limit UINT64_MAX = none */
static int fault_armed;
static size_t cache_line = 64;


static int tag_index(ULONG id)
{
    for (int i = 0; i < NTAG; i++)
        if (tag_list[i] == id)
            return i;
    return -1;
}

/* Bytes a block counts in its tag's totals: its usable size, in 16-byte granules for a
 * special-pool block (whose usable size is exactly the request). */
static size_t counted_bytes(const blk_t *b);

static void model_count(ULONG tag, unsigned kind, int allocs, int frees, int64_t bytes)
{
    int i = tag_index(tag);
    if (i < 0)
        fail("model: tag 0x%08X is not one of the fuzzer's", (unsigned)tag);
    tc_model[i][kind].a += (uint64_t)allocs;
    tc_model[i][kind].f += (uint64_t)frees;
    tc_model[i][kind].b += bytes;
}

static size_t counted_bytes(const blk_t *b)
{
    return b->special ? (b->bsize + 15) / 16 * 16 : b->bsize;
}

static int has_letter_or_digit(ULONG tag)
{
    for (int i = 0; i < 4; i++) {
        unsigned char c = (unsigned char)(tag >> (8 * i));
        if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
            return 1;
    }
    return 0;
}

/* The usable size README promises: the size class for small blocks (16-byte steps to 512, then
 * 576, 672, 816, 1024, 1360, 2048, 4064), whole pages above. Cache-aligned requests take the
 * smallest class that is a multiple of the line, or a page. */
static size_t model_bsize(size_t n, int aligned)
{
    static const size_t fitted[] = {576, 672, 816, 1024, 1360, 2048, SMALL_MAX};
    size_t sz = n ? n : 1;
    if (sz <= SMALL_MAX) {
        size_t c = (sz + 15) / 16 * 16;
        if (c > 512) {
            size_t i = 0;
            while (fitted[i] < sz)
                i++;
            c = fitted[i];
        }
        if (!aligned)
            return c;
        for (; c <= 512; c += 16)
            if (c % cache_line == 0)
                return c;
        for (size_t i = 0; i < sizeof fitted / sizeof fitted[0]; i++)
            if (fitted[i] >= sz && fitted[i] % cache_line == 0)
                return fitted[i];
        return 4096;
    }
    return (sz + 4095) / 4096 * 4096;
}

/* ---- allocation requests ------------------------------------------------------------------------- */

typedef enum api {
    A_POOL2, A_POOL3, A_WITHTAG, A_POOL, A_PRIO, A_QUOTATAG, A_QUOTA, A_ZERO, A_UNINIT, A_QZERO,
    A_QUNINIT, A_PZERO, A_PUNINIT, A_COUNT
} api_t;
static const char *const api_name[A_COUNT] = {
    "ExAllocatePool2", "ExAllocatePool3", "ExAllocatePoolWithTag", "ExAllocatePool",
    "ExAllocatePoolWithTagPriority", "ExAllocatePoolWithQuotaTag", "ExAllocatePoolWithQuota",
    "ExAllocatePoolZero", "ExAllocatePoolUninitialized", "ExAllocatePoolQuotaZero",
    "ExAllocatePoolQuotaUninitialized", "ExAllocatePoolPriorityZero",
    "ExAllocatePoolPriorityUninitialized"};

typedef struct areq {
    api_t api;
    POOL_FLAGS flags;
    unsigned type;
    ULONG tag;
    size_t n;
    EX_POOL_PRIORITY prio;
    POOL_EXTENDED_PARAMETER par[3];
    ULONG npar;
    int par_null;
    int special; /* POOL_FLAG_SPECIAL_POOL: the special-pool operation */
    void *result;
} areq_t;

typedef struct amodel {
    int valid;
    unsigned kind, level, aligned, zero, raise, must, quota, quota_exceeded;
    int pool_type;
    ULONG stored;
    size_t bsize;
} amodel_t;

static void call_alloc(void *a)
{
    areq_t *q = a;
    POOL_TYPE t = (POOL_TYPE)q->type;
    switch (q->api) {
    case A_POOL2: q->result = ExAllocatePool2(q->flags, q->n, q->tag); break;
    case A_POOL3: q->result = ExAllocatePool3(q->flags, q->n, q->tag, q->par_null ? NULL : q->par, q->npar); break;
    case A_WITHTAG: q->result = ExAllocatePoolWithTag(t, q->n, q->tag); break;
    case A_POOL: q->result = ExAllocatePool(t, q->n); break;
    case A_PRIO: q->result = ExAllocatePoolWithTagPriority(t, q->n, q->tag, q->prio); break;
    case A_QUOTATAG: q->result = ExAllocatePoolWithQuotaTag(t, q->n, q->tag); break;
    case A_QUOTA: q->result = ExAllocatePoolWithQuota(t, q->n); break;
    case A_ZERO: q->result = ExAllocatePoolZero(t, q->n, q->tag); break;
    case A_UNINIT: q->result = ExAllocatePoolUninitialized(t, q->n, q->tag); break;
    case A_QZERO: q->result = ExAllocatePoolQuotaZero(t, q->n, q->tag); break;
    case A_QUNINIT: q->result = ExAllocatePoolQuotaUninitialized(t, q->n, q->tag); break;
    case A_PZERO: q->result = ExAllocatePoolPriorityZero(t, q->n, q->tag, q->prio); break;
    case A_PUNINIT: q->result = ExAllocatePoolPriorityUninitialized(t, q->n, q->tag, q->prio); break;
    default: q->result = NULL; break;
    }
}

static unsigned level_of(ULONG64 prio)
{
    ULONG64 base = prio >> 4;
    return base == 0 ? L_LOW : base == 1 ? L_NORMAL : L_HIGH;
}

static int valid_priority(ULONG64 p)
{
    return p == 0 || p == 8 || p == 9 || p == 16 || p == 24 || p == 25 || p == 32 || p == 40 || p == 41;
}

/* Spec 1.4/1.5/1.7 and README: what a request means. */
static void model_request(const areq_t *q, amodel_t *m)
{
    memset(m, 0, sizeof *m);
    if (q->api == A_POOL2 || q->api == A_POOL3) {
        POOL_FLAGS f = q->flags, k = f & 0x1C0;
        m->raise = (f & POOL_FLAG_RAISE_ON_FAILURE) != 0;
        m->valid = k != 0 && (k & (k - 1)) == 0 && (f & 0xFFFFF800ull) == 0 && (f & 0x10) == 0 &&
                   (q->tag & ID_MASK) != 0;
        m->kind = k == POOL_FLAG_PAGED ? K_PAGED : k == POOL_FLAG_NON_PAGED ? K_NX : K_EXEC;
        m->pool_type = kind_pool_type[m->kind];
        m->level = L_NORMAL;
        m->aligned = (f & POOL_FLAG_CACHE_ALIGNED) != 0;
        m->zero = !(f & POOL_FLAG_UNINITIALIZED);
        m->quota = (f & POOL_FLAG_USE_QUOTA) != 0;
        m->stored = q->tag & ID_MASK;
        if (q->api == A_POOL3 && m->valid) {
            if (q->npar > 0 && q->par_null)
                m->valid = 0;
            int have_prio = 0, have_node = 0;
            for (ULONG i = 0; m->valid && !q->par_null && i < q->npar; i++) {
                const POOL_EXTENDED_PARAMETER *p = &q->par[i];
                int ok = 0;
                if (p->Type == PoolExtendedParameterPriority) {
                    ok = !have_prio && valid_priority((ULONG64)p->Priority);
                    if (ok) {
                        m->level = level_of((ULONG64)p->Priority);
                        have_prio = 1;
                    }
                } else if (p->Type == PoolExtendedParameterNumaNode) {
                    ULONG node = p->PreferredNode & ~(ULONG)MM_ANY_NODE_OK;
                    ok = !have_node && (f & 0x1C0) == POOL_FLAG_NON_PAGED && node <= KeQueryHighestNodeNumber();
                    have_node |= ok;
                }
                if (!ok && !p->Optional)
                    m->valid = 0;
            }
        }
    } else {
        unsigned t = q->type;
        int zero_api = q->api == A_ZERO || q->api == A_QZERO || q->api == A_PZERO;
        int quota_api = q->api == A_QUOTATAG || q->api == A_QUOTA || q->api == A_QZERO || q->api == A_QUNINIT;
        int prio_api = q->api == A_PRIO || q->api == A_PZERO || q->api == A_PUNINIT;
        if (zero_api)
            t |= POOL_ZERO_ALLOCATION;
        ULONG tag = (q->api == A_POOL || q->api == A_QUOTA) ? TAG_NONE : q->tag;
        m->valid = 1;
        m->stored = tag & ID_MASK ? tag & ID_MASK : TAG_BAD0;
        m->kind = (t & 1) ? K_PAGED : (t & NonPagedPoolNx) ? K_NX : K_EXEC;
        m->aligned = (t & 4) != 0;
        m->zero = (t & POOL_ZERO_ALLOCATION) != 0;
        m->must = (t & 2) != 0;
        m->quota = (unsigned)quota_api;
        m->raise = quota_api ? !(t & POOL_QUOTA_FAIL_INSTEAD_OF_RAISE) : (t & POOL_RAISE_IF_ALLOCATION_FAILURE) != 0;
        m->quota_exceeded = 1;
        m->pool_type = (int)t;
        m->level = prio_api ? level_of((ULONG64)q->prio) : L_NORMAL;
    }
    m->bsize = q->n > SIZE_LIMIT ? 0 : model_bsize(q->n, (int)m->aligned);
}

/* ---- checks on blocks ----------------------------------------------------------------------------------- */

static size_t first_diff(const unsigned char *p, size_t n, unsigned char v)
{
    uint64_t w = 0x0101010101010101ull * v;
    size_t i = 0;
    while (i < n && ((uintptr_t)(p + i) & 7))
        if (p[i] != v)
            return i;
        else
            i++;
    for (; i + 8 <= n; i += 8) {
        uint64_t x;
        memcpy(&x, p + i, 8);
        if (x != w)
            break;
    }
    for (; i < n; i++)
        if (p[i] != v)
            return i;
    return n;
}

static void check_range(const blk_t *b, int s, size_t from, size_t len, const char *when)
{
    if (from >= b->filled)
        return;
    if (len > b->filled - from)
        len = b->filled - from;
    size_t d = first_diff(b->p + from, len, b->fill);
    if (d < len)
        fail("%s: slot %d, %s block %p of %zu bytes (usable %zu, tag 0x%08X): byte %zu is 0x%02X, "
             "the block was filled with 0x%02X", when, s, kind_name[b->kind], (void *)b->p, b->n,
             b->bsize, (unsigned)b->tag, from + d, b->p[from + d], b->fill);
}

static void check_block_full(int s, const char *when)
{
    check_range(&slot[s], s, 0, slot[s].filled, when);
}

static unsigned window_rot;

static void check_blocks_cheap(const char *when)
{
    window_rot += 4096 + 64;
    for (int s = 0; s < NSLOTS; s++) {
        const blk_t *b = &slot[s];
        if (b->state != S_LIVE)
            continue;
        if (b->filled <= 4096) {
            check_range(b, s, 0, b->filled, when);
        } else {
            check_range(b, s, 0, 256, when);
            check_range(b, s, b->filled - 256, 256, when);
            check_range(b, s, window_rot % (b->filled - 256), 256, when);
        }
    }
}

static int overlaps(const unsigned char *p, size_t n, int except)
{
    for (int s = 0; s < NSLOTS; s++)
        if (s != except && slot[s].state == S_LIVE && p < slot[s].p + slot[s].bsize && slot[s].p < p + n)
            return s;
    return -1;
}

/* Model blocks live and intact, counters and quota equal, IRQL as expected, heap valid. */
static void check_tags(const char *when)
{
    static ntpool_tag_stat_t snap[1024];
    size_t n = ntpool_tag_snapshot(snap, 1024);
    if (n == 0 && fault_armed)
        return; /* the snapshot's own metadata allocation was refused by the injector */
    if (n > 1024)
        fail("%s: %zu tags in the snapshot; the fuzzer uses %d", when, n, NTAG);
    for (int i = 0; i < NTAG; i++) {
        const ntpool_tag_stat_t *e = NULL;
        for (size_t j = 0; j < n; j++)
            if (snap[j].tag == tag_list[i])
                e = &snap[j];
        for (int k = 0; k < 3; k++) {
            uint64_t a = e ? e->pool[k].allocs : 0, f = e ? e->pool[k].frees : 0;
            int64_t by = e ? e->pool[k].bytes : 0;
            tcount_t *m = &tc_model[i][k];
            const tcount_t *bs = &tc_base[i][k];
            if (tc_ambiguous[i][k] && a - bs->a == f - bs->f + (m->a - m->f) && by - bs->b == m->b &&
                a - bs->a >= m->a && a - bs->a - m->a <= tc_ambiguous[i][k]) {
                uint64_t extra = a - bs->a - m->a; /* quota refusals: an allocation and a free each */
                m->a += extra;
                m->f += extra;
                tc_ambiguous[i][k] = 0;
            }
            if (a - bs->a != m->a || f - bs->f != m->f || by - bs->b != m->b)
                fail("%s: tag 0x%08X %s: counters (this input) allocs %llu frees %llu bytes %lld; the "
                     "model says %llu, %llu, %lld", when, (unsigned)tag_list[i], kind_name[k],
                     (unsigned long long)(a - bs->a), (unsigned long long)(f - bs->f),
                     (long long)(by - bs->b), (unsigned long long)m->a, (unsigned long long)m->f,
                     (long long)m->b);
        }
    }
}

static void take_tag_base(void)
{
    static ntpool_tag_stat_t snap[1024];
    size_t n = ntpool_tag_snapshot(snap, 1024);
    memset(tc_base, 0, sizeof tc_base);
    memset(tc_model, 0, sizeof tc_model);
    memset(tc_ambiguous, 0, sizeof tc_ambiguous);
    for (int i = 0; i < NTAG; i++)
        for (size_t j = 0; j < n && j < 1024; j++)
            if (snap[j].tag == tag_list[i])
                for (int k = 0; k < 3; k++) {
                    tc_base[i][k].a = snap[j].pool[k].allocs;
                    tc_base[i][k].f = snap[j].pool[k].frees;
                    tc_base[i][k].b = snap[j].pool[k].bytes;
                }
}

static void validate_thunk(void *a)
{
    char *why = a;
    if (ntpool_validate(why, 200) == 0)
        why[0] = 0;
}

static void check_validate(int with_helper, const char *when)
{
    char why[200] = "";
    int v = ntpool_validate(why, sizeof why);
    if (v != 0)
        fail("%s: ntpool_validate (main thread) found %d violation(s): %s", when, v, why);
    if (with_helper && helper.started) {
        on_helper(validate_thunk, why);
        if (why[0])
            fail("%s: ntpool_validate (helper thread): %s", when, why);
    }
}

static void check_after_op(const char *when)
{
    check_blocks_cheap(when);
    check_tags(when);
    if (ntpool_quota_used() != m_quota_used)
        fail("%s: ntpool_quota_used %llu, the model says %llu", when,
             (unsigned long long)ntpool_quota_used(), (unsigned long long)m_quota_used);
    if (KeGetCurrentIrql() != m_irql)
        fail("%s: IRQL %u, the model says %u", when, KeGetCurrentIrql(), m_irql);
    check_validate(0, when);
}

/* ---- expected outcomes ---------------------------------------------------------------------------------- */

#define ANY_P ((ULONG_PTR)0xA5A5A5A5DEADBEEFull) /* parameter not checked */
#define NONZERO_P ((ULONG_PTR)0xA5A5A5A5FEEDF00Dull) /* parameter must be nonzero (a caller) */

static void expect_bc(const outcome_t *o, const char *what, ULONG code, ULONG_PTR p1, ULONG_PTR p2,
                      ULONG_PTR p3, ULONG_PTR p4)
{
    const ULONG_PTR want[4] = {p1, p2, p3, p4};
    int ok = o->kind == OUT_BC && o->bc.code == code;
    for (int i = 0; ok && i < 4; i++)
        ok = want[i] == ANY_P || (want[i] == NONZERO_P ? o->bc.p[i] != 0 : o->bc.p[i] == want[i]);
    if (ok)
        return;
    char got[200];
    if (o->kind == OUT_BC)
        snprintf(got, sizeof got, "bug check 0x%X (0x%lX, 0x%lX, 0x%lX, 0x%lX)", (unsigned)o->bc.code,
                 (unsigned long)o->bc.p[0], (unsigned long)o->bc.p[1], (unsigned long)o->bc.p[2],
                 (unsigned long)o->bc.p[3]);
    else if (o->kind == OUT_RAISE)
        snprintf(got, sizeof got, "a raise of 0x%08X", (unsigned)o->status);
    else
        snprintf(got, sizeof got, "no bug check (the call returned)");
    fail("%s: expected bug check 0x%X (0x%lX, 0x%lX, 0x%lX, 0x%lX), got %s "
         "[0xA5A5A5A5DEADBEEF: any value; 0xA5A5A5A5FEEDF00D: nonzero]",
         what, (unsigned)code, (unsigned long)p1, (unsigned long)p2, (unsigned long)p3,
         (unsigned long)p4, got);
}

static void expect_returned(const outcome_t *o, const char *what)
{
    if (o->kind == OUT_RET)
        return;
    if (o->kind == OUT_BC)
        fail("%s: legal operation, but bug check 0x%X (0x%lX, 0x%lX, 0x%lX, 0x%lX)", what,
             (unsigned)o->bc.code, (unsigned long)o->bc.p[0], (unsigned long)o->bc.p[1],
             (unsigned long)o->bc.p[2], (unsigned long)o->bc.p[3]);
    fail("%s: legal operation, but it raised 0x%08X", what, (unsigned)o->status);
}

static int bad_irql(KIRQL irql, int paged_in_pool)
{
    return irql > DISPATCH_LEVEL || (irql > APC_LEVEL && paged_in_pool);
}

/* ---- pool state around an allocation -------------------------------------------------------------------- */

typedef struct pre {
    KIRQL irql;
    uint64_t committed, mark[3];
    uint64_t quota_used;
    uint64_t sp_succeeded; /* ntpool_verifier_stats' special_pool_succeeded before the call */
} pre_t;

static void read_pre(int on_help, unsigned kind, pre_t *p)
{
    ntpool_pool_info_t pi;
    if (ntpool_pool_info(kind == K_PAGED ? 1 : 0, &pi) != 0)
        fail("ntpool_pool_info failed");
    p->irql = on_help ? PASSIVE_LEVEL : m_irql;
    p->committed = pi.committed;
    p->mark[L_LOW] = pi.low_threshold;
    p->mark[L_NORMAL] = pi.normal_threshold;
    p->mark[L_HIGH] = pi.limit;
    p->quota_used = m_quota_used;
    ntpool_verifier_stats_t vs;
    ntpool_verifier_stats(&vs);
    p->sp_succeeded = vs.special_pool_succeeded;
}

/* Allocations counted in the snapshot for (tag, kind) this input. */
static uint64_t snap_allocs(ULONG tag, unsigned kind, int *ok)
{
    static ntpool_tag_stat_t snap[1024];
    size_t n = ntpool_tag_snapshot(snap, 1024);
    int i = tag_index(tag);
    *ok = n > 0 && n <= 1024 && i >= 0;
    for (size_t j = 0; *ok && j < n; j++)
        if (snap[j].tag == tag)
            return snap[j].pool[kind].allocs - tc_base[i][kind].a;
    return 0;
}

/* A new block: where it is, what ExQueryPoolBlockSize says, zeroed, not overlapping. */
static void check_new_block(const areq_t *q, const amodel_t *m, int s, const char *what)
{
    unsigned char *p = q->result;
    uintptr_t a = (uintptr_t)p;
    if (a & 15)
        fail("%s: block %p is not 16-byte aligned", what, (void *)p);
    if (q->n > SMALL_MAX && (a & 4095))
        fail("%s: block %p of %zu bytes is not page aligned", what, (void *)p, q->n);
    if (q->n <= SMALL_MAX && (a & 4095) + m->bsize > 4096)
        fail("%s: block %p of %zu bytes (class %zu) crosses a page", what, (void *)p, q->n, m->bsize);
    if (m->aligned && (a % cache_line) != 0)
        fail("%s: cache-aligned block %p is not aligned to the %zu-byte line", what, (void *)p, cache_line);
    BOOLEAN qf = 2;
    SIZE_T bs = ExQueryPoolBlockSize(p, &qf);
    if (bs != m->bsize)
        fail("%s: ExQueryPoolBlockSize(%p) = %zu for %zu bytes%s; the size class is %zu", what, (void *)p,
             (size_t)bs, q->n, m->aligned ? " (cache aligned)" : "", m->bsize);
    if ((qf != 0) != (m->quota != 0) || qf > 1)
        fail("%s: ExQueryPoolBlockSize says quota %u, the request %s quota", what, (unsigned)qf,
             m->quota ? "charged" : "did not charge");
    if (m->zero) {
        size_t d = first_diff(p, q->n, 0);
        if (d < q->n)
            fail("%s: zeroed block %p of %zu bytes has byte %zu = 0x%02X", what, (void *)p, q->n, d, p[d]);
    }
    int o = overlaps(p, m->bsize, s);
    if (o >= 0)
        fail("%s: new block %p (%zu usable) overlaps slot %d's live block %p (%zu usable)", what,
             (void *)p, m->bsize, o, (void *)slot[o].p, slot[o].bsize);
}

/* Judge an allocation against the model. Returns 1 when a block was recorded in slot s. */
static int judge_alloc(areq_t *q, const amodel_t *m, const outcome_t *o, const pre_t *pre, int s,
                       const char *what)
{
    st.allocs++;
    if (!m->valid) {
        st.invalid++;
        if (m->raise) {
            if (o->kind != OUT_RAISE || o->status != STATUS_INVALID_PARAMETER)
                fail("%s: invalid request: expected a raise of STATUS_INVALID_PARAMETER (kind %d, status "
                     "0x%08X, result %p)", what, o->kind, (unsigned)o->status, q->result);
        } else {
            expect_returned(o, what);
            if (q->result != NULL)
                fail("%s: invalid request returned %p, expected NULL", what, q->result);
        }
        return 0;
    }
    if (bad_irql(pre->irql, m->kind == K_PAGED)) {
        /* A special-pool request: spec 3.2 says 0xC1/0x30 "with special pool"; the library gives
         * that only with the Verifier on, else 0xC2/0x8. Either is accepted here. */
        if (q->special && q->n < 4096 && o->kind == OUT_BC && o->bc.code == SPECIAL_POOL_DETECTED_MEMORY_CORRUPTION)
            expect_bc(o, what, SPECIAL_POOL_DETECTED_MEMORY_CORRUPTION, pre->irql, (ULONG_PTR)m->pool_type, q->n, 0x30);
        else
            expect_bc(o, what, BAD_POOL_CALLER, 0x08, pre->irql, (ULONG_PTR)m->pool_type, q->n);
        return 0;
    }
    if (m->stored == TAG_BIG) {
        expect_bc(o, what, BAD_POOL_CALLER, 0x9C, (ULONG_PTR)m->pool_type, q->n, NONZERO_P);
        return 0;
    }
    if (!has_letter_or_digit(m->stored)) {
        expect_bc(o, what, BAD_POOL_CALLER, 0x9D, m->stored, (ULONG_PTR)m->pool_type, NONZERO_P);
        return 0;
    }
    uint64_t mark = pre->mark[m->level], c0 = pre->committed;
    int absurd = q->n > SIZE_LIMIT;
    uint64_t need = absurd ? 0 : m->bsize <= SMALL_MAX ? 4096 : m->bsize;
    int huge = !absurd && m->bsize > BIG_MAX;
    int must_fail = absurd || (m->level < L_HIGH && c0 >= mark) || (huge && c0 + need > mark);
    int may_fail = must_fail || o->osfail > 0 || c0 + need > mark;
    if (o->kind == OUT_RET && q->result != NULL) {
        ntpool_verifier_stats_t vs;
        ntpool_verifier_stats(&vs);
        int special = q->special && vs.special_pool_succeeded > pre->sp_succeeded;
        if (special) {
            /* README, special pool: a page of its own, the block at its end (overrun placement;
             * the start rounded down to 16, or to the line when cache aligned), usable = the
             * size asked for (1 for 0: every byte after it is checked), counted per tag as
             * 16-byte granules; its pages are not the pool's committed pages. */
            uintptr_t a = (uintptr_t)q->result, end = (a | 4095) + 1;
            size_t bs = q->n ? q->n : 1;
            if (q->n >= 4096)
                fail("%s: a request of %zu bytes (a page or more) was served from special pool", what, q->n);
            size_t line = m->aligned ? cache_line : 16;
            if ((a & (line - 1)) || a + (q->n ? q->n : 1) > end || end - a - (q->n ? q->n : 1) >= line + 16)
                fail("%s: special-pool block %p of %zu bytes is not placed at its page's end", what, q->result, q->n);
            SIZE_T got = ExQueryPoolBlockSize(q->result, NULL);
            if (got != bs)
                fail("%s: special-pool block %p of %zu bytes: ExQueryPoolBlockSize %zu, README: %zu", what, q->result,
                     q->n, (size_t)got, bs);
            bs = got;
            if (m->zero) {
                size_t d = first_diff(q->result, q->n, 0);
                if (d < q->n)
                    fail("%s: zeroed special block %p has byte %zu = 0x%02X", what, q->result, d,
                         ((unsigned char *)q->result)[d]);
            }
            int ov = overlaps(q->result, bs, s);
            if (ov >= 0)
                fail("%s: special block %p overlaps slot %d's block %p", what, q->result, ov, (void *)slot[ov].p);
            if (m->quota)
                m_quota_used += bs;
            blk_t *b = &slot[s];
            b->p = q->result;
            b->n = q->n;
            b->bsize = bs;
            b->tag = m->stored;
            b->kind = (uint8_t)m->kind;
            b->quota = (uint8_t)m->quota;
            b->special = 1;
            b->state = S_LIVE;
            b->fill = (uint8_t)(0x11 + 37 * ++fill_seq);
            b->filled = b->bsize; /* the usable size is usable (README) */
            memset(b->p, b->fill, b->filled);
            model_count(m->stored, m->kind, 1, 0, (int64_t)counted_bytes(b));
            st.special++;
            return 1;
        }
        slot[s].special = 0;
        if (must_fail)
            fail("%s: succeeded, but must fail: %s; committed %llu, %s threshold %llu, limit %llu", what,
                 absurd ? "the size is beyond 2^44" : "no room at this priority", (unsigned long long)c0,
                 m->level == L_LOW ? "Low" : m->level == L_NORMAL ? "Normal" : "High",
                 (unsigned long long)mark, (unsigned long long)pre->mark[L_HIGH]);
        check_new_block(q, m, s, what);
        if (m->quota) {
            if (pre->quota_used + m->bsize > m_quota_limit)
                fail("%s: quota block of %zu bytes granted with %llu of %llu used", what, m->bsize,
                     (unsigned long long)pre->quota_used, (unsigned long long)m_quota_limit);
            m_quota_used += m->bsize;
        }
        blk_t *b = &slot[s];
        b->p = q->result;
        b->n = q->n;
        b->bsize = m->bsize;
        b->tag = m->stored;
        b->kind = (uint8_t)m->kind;
        b->quota = (uint8_t)m->quota;
        b->state = S_LIVE;
        b->fill = (uint8_t)(0x11 + 37 * ++fill_seq);
        b->filled = b->bsize;
        memset(b->p, b->fill, b->bsize);
        model_count(m->stored, m->kind, 1, 0, (int64_t)m->bsize);
        return 1;
    }
    /* A failure. Which one: a quota refusal frees the block it got (counted as an allocation
     * and a free, as Windows counts it); a resource failure counts nothing. */
    int quota_path = 0;
    if (m->quota && !absurd) {
        int ok;
        uint64_t a = snap_allocs(m->stored, m->kind, &ok);
        int i = tag_index(m->stored);
        if (!ok && i >= 0) {
            /* Cannot tell from the counters. The legacy raise says which; otherwise, with no OS
             * failure and no limit in the way, only the quota can have refused. */
            if (o->kind == OUT_RAISE && m->quota_exceeded)
                ok = 1, a = tc_model[i][m->kind].a + (o->status == STATUS_QUOTA_EXCEEDED);
            else if (!may_fail)
                ok = 1, a = tc_model[i][m->kind].a + 1;
            else if (pre->quota_used + m->bsize > m_quota_limit)
                tc_ambiguous[i][m->kind]++;
        }
        if (ok && i >= 0 && a == tc_model[i][m->kind].a + 1) {
            quota_path = 1;
            if (pre->quota_used + m->bsize <= m_quota_limit)
                fail("%s: quota refused with %llu of %llu used, for %zu bytes", what,
                     (unsigned long long)pre->quota_used, (unsigned long long)m_quota_limit, m->bsize);
            model_count(m->stored, m->kind, 1, 1, 0);
            st.quota_refused++;
        }
    }
    if (!quota_path && !may_fail)
        fail("%s: failed with no reason: no OS call failed, committed %llu, %s threshold %llu, limit %llu, "
             "smallest carve %llu bytes (outcome %d, status 0x%08X)", what, (unsigned long long)c0,
             m->level == L_LOW ? "Low" : m->level == L_NORMAL ? "Normal" : "High", (unsigned long long)mark,
             (unsigned long long)pre->mark[L_HIGH], (unsigned long long)need, o->kind, (unsigned)o->status);
    NTSTATUS status = quota_path && m->quota_exceeded ? STATUS_QUOTA_EXCEEDED : STATUS_INSUFFICIENT_RESOURCES;
    if (m->must) {
        expect_bc(o, what, MUST_SUCCEED_POOL_EMPTY, q->n, 0, 0, 0);
        st.alloc_0x41++;
    } else if (m->raise) {
        if (o->kind != OUT_RAISE || o->status != status)
            fail("%s: failed: expected a raise of 0x%08X, got outcome %d (status 0x%08X, result %p)", what,
                 (unsigned)status, o->kind, (unsigned)o->status, q->result);
        st.alloc_raise++;
    } else {
        expect_returned(o, what);
        st.alloc_null++;
    }
    return 0;
}

/* ---- frees ---------------------------------------------------------------------------------------------- */

enum { F_WITHTAG = 0, F_FREEPOOL = 1, F_FREEPOOL2 = 2 };
typedef struct freq {
    void *p;
    int how;
    ULONG tag;
} freq_t;

static void call_free(void *a)
{
    freq_t *f = a;
    if (f->how == F_FREEPOOL)
        ExFreePool(f->p);
    else if (f->how == F_FREEPOOL2)
        ExFreePool2(f->p, f->tag, NULL, 0);
    else
        ExFreePoolWithTag(f->p, f->tag);
}

static const char *how_name(int how)
{
    return how == F_FREEPOOL ? "ExFreePool" : how == F_FREEPOOL2 ? "ExFreePool2" : "ExFreePoolWithTag";
}

/* The live block starting at p, or containing it. */
static int live_at(const void *p)
{
    for (int s = 0; s < NSLOTS; s++)
        if (slot[s].state == S_LIVE && slot[s].p == p)
            return s;
    return -1;
}

static int live_containing(const void *p)
{
    const unsigned char *c = p;
    for (int s = 0; s < NSLOTS; s++)
        if (slot[s].state == S_LIVE && c > slot[s].p && c < slot[s].p + slot[s].bsize)
            return s;
    return -1;
}

static void model_free(int s)
{
    blk_t *b = &slot[s];
    model_count(b->tag, b->kind, 0, 1, -(int64_t)counted_bytes(b));
    if (b->quota)
        m_quota_used -= b->bsize;
    b->state = S_FREED;
    st.frees++;
}

/* Free the live block of slot s with (how, tag) on a thread; judge. Returns 1 when freed. */
static int free_live(int s, int how, ULONG tag, int on_help, const char *what)
{
    blk_t *b = &slot[s];
    check_block_full(s, what);
    freq_t f = {b->p, how, tag};
    outcome_t o;
    KIRQL irql = on_help ? PASSIVE_LEVEL : m_irql;
    exec_guarded(on_help, call_free, &f, &o);
    ULONG expect = how == F_FREEPOOL ? 0 : tag & ID_MASK;
    if (bad_irql(irql, b->kind == K_PAGED)) {
        if (b->special) /* README, special pool: 0xC1 (IRQL, pool type, address, 0x31) */
            expect_bc(&o, what, SPECIAL_POOL_DETECTED_MEMORY_CORRUPTION, irql, (ULONG_PTR)kind_pool_type[b->kind],
                      (ULONG_PTR)b->p, 0x31);
        else
            expect_bc(&o, what, BAD_POOL_CALLER, 0x09, irql, (ULONG_PTR)kind_pool_type[b->kind], (ULONG_PTR)b->p);
        return 0;
    }
    if (expect != 0 && expect != b->tag) {
        expect_bc(&o, what, BAD_POOL_CALLER, 0x0A, (ULONG_PTR)b->p, b->tag, expect);
        check_block_full(s, "after a wrong-tag free (the block must be untouched)");
        if (ExQueryPoolBlockSize(b->p, NULL) != b->bsize)
            fail("%s: after a refused wrong-tag free, the block is no longer live", what);
        return 0;
    }
    expect_returned(&o, what);
    model_free(s);
    if (on_help)
        st.remote_frees++;
    return 1;
}

/* Allowed outcomes of freeing an address that is no live block, when the model cannot say which
 * of the "not a block" reports applies (the span or segment may be gone). Never a silent
 * success. */
static void expect_not_live(const outcome_t *o, const void *p, KIRQL irql, const char *what)
{
    ULONG_PTR a = (ULONG_PTR)p;
    if (o->kind != OUT_BC)
        fail("%s: free of %p, which is no live block, %s", what, p,
             o->kind == OUT_RET ? "returned without a bug check (a silent free)" : "raised");
    ULONG c = o->bc.code;
    const ULONG_PTR *q = o->bc.p;
    int ok = (c == BAD_POOL_CALLER && q[0] == 0x07 && q[3] == a) ||
             (c == BAD_POOL_HEADER && q[0] == 0x22 && q[1] == a && (a & 4095) == 0) ||
             (c == BAD_POOL_CALLER && (q[0] == 0x44 || q[0] == 0x48) && q[1] == a && (a & 4095) != 0) ||
             (c == BAD_POOL_CALLER && q[0] == 0x46 && q[1] == a) ||
             (c == BAD_POOL_CALLER && q[0] == 0x99 && q[1] == a) ||
             (c == BAD_POOL_CALLER && q[0] == 0x41286 && q[1] == a) ||
             (c == BAD_POOL_CALLER && q[0] == 0x09 && irql > APC_LEVEL && q[1] == irql && q[3] == a);
    if (!ok)
        fail("%s: free of %p (no live block) gave bug check 0x%X (0x%lX, 0x%lX, 0x%lX, 0x%lX), which is "
             "none of README's reports for a non-block", what, p, (unsigned)c, (unsigned long)q[0],
             (unsigned long)q[1], (unsigned long)q[2], (unsigned long)q[3]);
}

/* Another live block in the same 64 KiB slice with the same kind and size class: then the span
 * of a block freed just now is still there, and a second free is deterministic. */
static int has_anchor(const blk_t *b, int except)
{
    if (b->bsize > BIG_MAX || b->special)
        return 0;
    for (int s = 0; s < NSLOTS; s++)
        if (s != except && slot[s].state == S_LIVE && !slot[s].special && slot[s].kind == b->kind &&
            slot[s].bsize == b->bsize &&
            ((uintptr_t)slot[s].p >> 16) == ((uintptr_t)b->p >> 16))
            return 1;
    return 0;
}

/* ---- operations ------------------------------------------------------------------------------------------- */

static const ULONG bad_tags[4] = {0, TAG_BIG, 0x2E2E2E2Eu /* "...." */, 0x01020304u};

static ULONG pick_tag(uint8_t t)
{
    unsigned hi = t >> 4;
    if (hi <= 11)
        return tag_list[t & 15];
    if (hi == 12)
        return tag_list[t & 15] | 0x80000000u; /* PROTECTED_POOL: stripped */
    if (hi == 13)
        return bad_tags[t & 3];
    if (hi == 14)
        return (t & 1) ? TAG_BAD0 : TAG_NONE;
    return tag_list[t & 15];
}

static size_t pick_size(rd_t *r)
{
    static const size_t edges[] = {0, 1, 15, 16, 17, 63, 64, 65, 512, 513, 576, 1024, 1025, 2048, 2049,
                                   4063, 4064, 4065, 4096, 4097, 8192, 65535, 65536, 65537, 1u << 20};
    static const size_t absurd[] = {SIZE_MAX, SIZE_MAX - 15, (size_t)1 << 63, SIZE_LIMIT + 1, SIZE_LIMIT};
    uint8_t sel = u8(r);
    uint16_t v = u16(r);
    switch (sel & 7) {
    case 0: case 1: case 2:
        return v % 4097u;
    case 3:
        return v % 257u;
    case 4:
        return edges[v % (sizeof edges / sizeof edges[0])];
    case 5:
        return 4065u + v % (BIG_MAX - SMALL_MAX);
    case 6:
        return 65537u + (size_t)v * 15u; /* up to 1 MiB */
    default:
        return (v & 63) == 0 ? absurd[(v >> 6) % 5] : 16u * (v % 128u);
    }
}

static int slot_for_alloc(uint8_t b)
{
    for (int i = 0; i < NSLOTS; i++) {
        int s = (b + i) % NSLOTS;
        if (slot[s].state != S_LIVE)
            return s;
    }
    return -1;
}

static int live_slot(uint8_t b)
{
    for (int i = 0; i < NSLOTS; i++) {
        int s = (b + i) % NSLOTS;
        if (slot[s].state == S_LIVE)
            return s;
    }
    return -1;
}

static int freed_slot(uint8_t b)
{
    for (int i = 0; i < NSLOTS; i++) {
        int s = (b + i) % NSLOTS;
        if (slot[s].state == S_FREED)
            return s;
    }
    return -1;
}

static void do_alloc(areq_t *q, int s, int on_help)
{
    amodel_t m;
    model_request(q, &m);
    pre_t pre;
    read_pre(on_help, m.kind, &pre);
    char what[200];
    snprintf(what, sizeof what, "%s%s(flags 0x%llX type 0x%X, %zu bytes, tag 0x%08X, prio %d, %u params) "
             "into slot %d at IRQL %u", on_help ? "helper: " : "", api_name[q->api],
             (unsigned long long)q->flags, q->type, q->n, (unsigned)q->tag, (int)q->prio, (unsigned)q->npar,
             s, pre.irql);
    trace("%s", what);
    outcome_t o;
    q->result = NULL;
    exec_guarded(on_help, call_alloc, q, &o);
    if (judge_alloc(q, &m, &o, &pre, s, what))
        trace("   -> %p (usable %zu)", q->result, m.bsize);
    else
        trace("   -> no block (outcome %d, status 0x%08X, bug check 0x%X/0x%lX, %lu OS faults)", o.kind,
              (unsigned)o.status, o.kind == OUT_BC ? (unsigned)o.bc.code : 0u,
              o.kind == OUT_BC ? (unsigned long)o.bc.p[0] : 0ul, o.osfail);
}

static void op_alloc_pool2(rd_t *r, int on_help)
{
    int s = slot_for_alloc(u8(r));
    uint8_t f = u8(r), g = u8(r);
    areq_t q = {0};
    q.api = A_POOL2;
    q.n = pick_size(r);
    q.tag = pick_tag(u8(r));
    static const POOL_FLAGS kinds[4] = {POOL_FLAG_NON_PAGED, POOL_FLAG_NON_PAGED_EXECUTE, POOL_FLAG_PAGED, 0};
    POOL_FLAGS fl = kinds[f & 3];
    if ((f & 3) == 3)
        fl = (g & 1) ? 0 : POOL_FLAG_NON_PAGED | POOL_FLAG_PAGED;
    if (f & 0x04) fl |= POOL_FLAG_UNINITIALIZED;
    if (f & 0x08) fl |= POOL_FLAG_CACHE_ALIGNED;
    if (f & 0x10) fl |= POOL_FLAG_RAISE_ON_FAILURE;
    if (f & 0x20) fl |= POOL_FLAG_USE_QUOTA;
    if (f & 0x40) {
        static const POOL_FLAGS benign[4] = {POOL_FLAG_SESSION, POOL_FLAG_RESERVED2, POOL_FLAG_RESERVED3,
                                             1ull << 40 /* an optional bit nobody knows */};
        fl |= benign[(g >> 1) & 3];
    }
    if (f & 0x80) {
        unsigned k = g >> 3;
        fl |= (k & 1) ? POOL_FLAG_RESERVED1 : (k & 2) ? (0x800ull << (k % 21)) : (1ull << (33 + k % 31));
    }
    q.flags = fl;
    if (s >= 0)
        do_alloc(&q, s, on_help);
}

static const unsigned legacy_types[16] = {
    NonPagedPool, PagedPool, NonPagedPoolNx, NonPagedPoolNx, PagedPool, NonPagedPoolCacheAligned,
    PagedPoolCacheAligned, NonPagedPoolNxCacheAligned, NonPagedPoolMustSucceed, NonPagedPoolCacheAlignedMustS,
    NonPagedPoolSession, PagedPoolSession, NonPagedPoolSessionNx, DontUseThisType, MaxPoolType, NonPagedPoolNx};
static const EX_POOL_PRIORITY prios[9] = {
    LowPoolPriority, LowPoolPrioritySpecialPoolOverrun, LowPoolPrioritySpecialPoolUnderrun, NormalPoolPriority,
    NormalPoolPrioritySpecialPoolOverrun, NormalPoolPrioritySpecialPoolUnderrun, HighPoolPriority,
    HighPoolPrioritySpecialPoolOverrun, HighPoolPrioritySpecialPoolUnderrun};

/* POOL_FLAG_SPECIAL_POOL: special pool takes requests below a page (and may fall back to the
 * normal pool, counted by ntpool_verifier_stats). */
static void op_alloc_special(rd_t *r, int on_help)
{
    int s = slot_for_alloc(u8(r));
    uint8_t f = u8(r);
    areq_t q = {0};
    q.api = A_POOL2;
    q.special = 1;
    uint16_t v = u16(r);
    q.n = (f & 0x80) ? pick_size(r) : v % 4097u;
    q.tag = pick_tag(u8(r));
    static const POOL_FLAGS kinds[4] = {POOL_FLAG_NON_PAGED, POOL_FLAG_NON_PAGED_EXECUTE, POOL_FLAG_PAGED,
                                        POOL_FLAG_NON_PAGED};
    q.flags = POOL_FLAG_SPECIAL_POOL | kinds[f & 3] | ((f & 4) ? POOL_FLAG_UNINITIALIZED : 0) |
              ((f & 8) ? POOL_FLAG_CACHE_ALIGNED : 0) | ((f & 0x10) ? POOL_FLAG_RAISE_ON_FAILURE : 0) |
              ((f & 0x20) ? POOL_FLAG_USE_QUOTA : 0);
    if (s >= 0)
        do_alloc(&q, s, on_help);
}

static void op_alloc_legacy(rd_t *r, int raw)
{
    int s = slot_for_alloc(u8(r));
    uint8_t f = u8(r), g = u8(r), h = u8(r);
    areq_t q = {0};
    q.api = (api_t)(A_WITHTAG + h % (A_COUNT - A_WITHTAG));
    q.n = pick_size(r);
    q.tag = pick_tag(u8(r));
    q.prio = prios[(h >> 4) % 9];
    if (raw) {
        q.type = u16(r);
    } else {
        unsigned t = legacy_types[f & 15];
        if (g & 0x01) t |= POOL_RAISE_IF_ALLOCATION_FAILURE;
        if (g & 0x02) t |= POOL_ZERO_ALLOCATION;
        if (g & 0x04) t |= POOL_QUOTA_FAIL_INSTEAD_OF_RAISE;
        if (g & 0x08) t |= POOL_COLD_ALLOCATION;
        if (g & 0x10) t |= 0x20;
        if (g & 0x20) t |= (g & 0x40) ? 0x40 : 0x80;
        q.type = t;
    }
    if (s >= 0)
        do_alloc(&q, s, 0);
}

static void op_alloc_pool3(rd_t *r)
{
    int s = slot_for_alloc(u8(r));
    uint8_t f = u8(r);
    areq_t q = {0};
    q.api = A_POOL3;
    q.n = pick_size(r);
    q.tag = pick_tag(u8(r));
    static const POOL_FLAGS kinds[4] = {POOL_FLAG_NON_PAGED, POOL_FLAG_NON_PAGED_EXECUTE, POOL_FLAG_PAGED,
                                        POOL_FLAG_NON_PAGED};
    q.flags = kinds[f & 3] | ((f & 4) ? POOL_FLAG_RAISE_ON_FAILURE : 0) | ((f & 8) ? POOL_FLAG_UNINITIALIZED : 0);
    q.npar = (f >> 4) & 3;
    q.par_null = (f >> 6) == 3;
    for (ULONG i = 0; i < q.npar; i++) {
        uint8_t a = u8(r), b = u8(r);
        POOL_EXTENDED_PARAMETER *p = &q.par[i];
        memset(p, 0, sizeof *p);
        static const unsigned types[8] = {1, 1, 1, 3, 3, 2, 0, 4};
        p->Type = types[a & 7];
        p->Optional = (a >> 3) & 1;
        if (p->Type == PoolExtendedParameterPriority)
            p->Priority = (a & 0x80) ? (EX_POOL_PRIORITY)b : prios[b % 9];
        else if (p->Type == PoolExtendedParameterNumaNode)
            p->PreferredNode = (b & 3) | ((a & 0x40) ? MM_ANY_NODE_OK : 0) | ((a & 0x80) ? (ULONG)b << 8 : 0);
        else
            p->Reserved2 = b;
    }
    if (s >= 0)
        do_alloc(&q, s, 0);
}

static void op_alloc_raw_pool2(rd_t *r)
{
    int s = slot_for_alloc(u8(r));
    areq_t q = {0};
    q.api = A_POOL2;
    q.flags = u64(r) & ~POOL_FLAG_SPECIAL_POOL; /* special pool: not in this model yet */
    q.n = pick_size(r);
    q.tag = pick_tag(u8(r));
    if (s >= 0)
        do_alloc(&q, s, 0);
}

static void op_free(rd_t *r, int maybe_wrong, int on_help)
{
    int s = live_slot(u8(r));
    uint8_t h = u8(r), t = u8(r);
    if (s < 0)
        return;
    int how = h % 3;
    ULONG tag = slot[s].tag;
    if ((h >> 2) & 1)
        tag |= 0x80000000u;
    if ((h >> 3) & 1)
        tag = 0; /* no check */
    if (maybe_wrong)
        tag = pick_tag(t);
    char what[160];
    snprintf(what, sizeof what, "%s%s(%p = slot %d, tag 0x%08X) of a %s block with tag 0x%08X at IRQL %u",
             on_help ? "helper: " : "", how_name(how), (void *)slot[s].p, s, (unsigned)tag,
             kind_name[slot[s].kind], (unsigned)slot[s].tag, on_help ? 0 : m_irql);
    trace("%s", what);
    free_live(s, how, tag, on_help, what);
}

/* Free a block twice in a row; or free a stale pointer (a block freed earlier). */
static void op_double_free(rd_t *r)
{
    uint8_t b = u8(r), h = u8(r);
    int on_help = (h >> 4) & 1;
    int s = live_slot(b);
    KIRQL irql = on_help ? PASSIVE_LEVEL : m_irql;
    if (s >= 0 && !(h & 1)) {
        blk_t *k = &slot[s];
        char what[200];
        snprintf(what, sizeof what, "%sdouble free of slot %d (%s block %p, usable %zu, tag 0x%08X) at IRQL %u",
                 on_help ? "helper: " : "", s, kind_name[k->kind], (void *)k->p, k->bsize, (unsigned)k->tag, irql);
        trace("%s", what);
        int anchored = has_anchor(k, s);
        if (!free_live(s, (h >> 1) % 3, k->tag, on_help, what))
            return;
        freq_t f = {k->p, (h >> 3) & 1 ? F_FREEPOOL : F_WITHTAG, k->tag};
        outcome_t o;
        exec_guarded(on_help, call_free, &f, &o);
        if (k->special) {
            /* README, special pool: a freed page waits in quarantine; 0xC1 (address, 0, 0, 0x20) */
            expect_bc(&o, what, SPECIAL_POOL_DETECTED_MEMORY_CORRUPTION, (ULONG_PTR)k->p, 0, 0, 0x20);
        } else if (k->bsize > BIG_MAX) {
            /* README: double free of a big block -> 0x19/0x22 (P2 = address). */
            expect_bc(&o, what, BAD_POOL_HEADER, 0x22, (ULONG_PTR)k->p, 0, 0);
        } else if (anchored && k->bsize > SMALL_MAX) {
            expect_bc(&o, what, BAD_POOL_HEADER, 0x22, (ULONG_PTR)k->p, 0, 0);
        } else if (anchored) {
            expect_bc(&o, what, BAD_POOL_CALLER, 0x07, 0, k->bsize, (ULONG_PTR)k->p);
        } else {
            expect_not_live(&o, k->p, irql, what);
        }
        return;
    }
    s = freed_slot(b);
    if (s < 0)
        return;
    blk_t *k = &slot[s];
    char what[200];
    snprintf(what, sizeof what, "%sfree of stale pointer %p (slot %d, freed, was %s, usable %zu, tag 0x%08X) at IRQL %u",
             on_help ? "helper: " : "", (void *)k->p, s, kind_name[k->kind], k->bsize, (unsigned)k->tag, irql);
    trace("%s", what);
    int l = live_at(k->p);
    if (l >= 0) {
        /* The address was handed out again: this is a free of that block with the old tag. */
        free_live(l, F_WITHTAG, k->tag, on_help, what);
        return;
    }
    freq_t f = {k->p, (h >> 3) & 1 ? F_FREEPOOL : F_WITHTAG, k->tag};
    outcome_t o;
    exec_guarded(on_help, call_free, &f, &o);
    if (k->special) { /* still in quarantine: fewer than 32 768 pages were freed since */
        expect_bc(&o, what, SPECIAL_POOL_DETECTED_MEMORY_CORRUPTION, (ULONG_PTR)k->p, 0, 0, 0x20);
        return;
    }
    int c = live_containing(k->p);
    if (c >= 0 && slot[c].special)
        fail("model: stale normal-pool pointer %p inside live special block %p", (void *)k->p, (void *)slot[c].p);
    if (c >= 0) {
        blk_t *in = &slot[c];
        size_t off = (size_t)((unsigned char *)k->p - in->p);
        if (bad_irql(irql, in->kind == K_PAGED))
            expect_bc(&o, what, BAD_POOL_CALLER, 0x09, irql, (ULONG_PTR)kind_pool_type[in->kind], (ULONG_PTR)k->p);
        else if (in->kind == K_PAGED)
            expect_bc(&o, what, BAD_POOL_CALLER, 0x41286, (ULONG_PTR)k->p, (ULONG_PTR)in->p, off);
        else
            expect_bc(&o, what, BAD_POOL_CALLER, 0x99, (ULONG_PTR)k->p, 0, 0);
        return;
    }
    expect_not_live(&o, k->p, irql, what);
}

static void op_free_interior(rd_t *r)
{
    int s = live_slot(u8(r));
    uint16_t v = u16(r);
    if (s < 0 || slot[s].bsize < 2)
        return;
    blk_t *b = &slot[s];
    size_t off = 1 + v % (b->bsize - 1);
    if (v & 0x8000)
        off = (1 + (v & 0x7FFF) % (b->bsize / 16 > 1 ? b->bsize / 16 - 1 : 1)) * 16 % b->bsize;
    if (off == 0)
        off = 16 % b->bsize ? 16 % b->bsize : 1;
    unsigned char *p = b->p + off;
    char what[200];
    snprintf(what, sizeof what, "free of interior pointer %p = slot %d's %s block %p + %zu (usable %zu) at IRQL %u",
             (void *)p, s, kind_name[b->kind], (void *)b->p, off, b->bsize, m_irql);
    trace("%s", what);
    freq_t f = {p, (v >> 14) & 1 ? F_FREEPOOL : F_WITHTAG, b->tag};
    outcome_t o;
    exec_guarded(0, call_free, &f, &o);
    if (b->special) {
        /* README, special pool: 0x31 for a bad IRQL, then 0xC1 (address, bytes requested, bytes
         * from the address to the page end, 0x21) for an address inside the block */
        uintptr_t end = ((uintptr_t)b->p | 4095) + 1;
        if (bad_irql(m_irql, b->kind == K_PAGED))
            expect_bc(&o, what, SPECIAL_POOL_DETECTED_MEMORY_CORRUPTION, m_irql, (ULONG_PTR)kind_pool_type[b->kind],
                      (ULONG_PTR)p, 0x31);
        else /* README: 0x21 or 0x22, without saying which: either, the rest exact */
            expect_bc(&o, what, SPECIAL_POOL_DETECTED_MEMORY_CORRUPTION, (ULONG_PTR)p, b->n ? b->n : ANY_P,
                      end - (uintptr_t)p,
                      o.kind == OUT_BC && o.bc.code == SPECIAL_POOL_DETECTED_MEMORY_CORRUPTION && o.bc.p[3] == 0x22
                          ? 0x22 : 0x21);
    } else if (bad_irql(m_irql, b->kind == K_PAGED))
        expect_bc(&o, what, BAD_POOL_CALLER, 0x09, m_irql, (ULONG_PTR)kind_pool_type[b->kind], (ULONG_PTR)p);
    else if (b->kind == K_PAGED)
        expect_bc(&o, what, BAD_POOL_CALLER, 0x41286, (ULONG_PTR)p, (ULONG_PTR)b->p, off);
    else
        expect_bc(&o, what, BAD_POOL_CALLER, 0x99, (ULONG_PTR)p, 0, 0);
    if (ExQueryPoolBlockSize(b->p, NULL) != b->bsize)
        fail("%s: the block is no longer live after the refused free", what);
}

static int global_var;
static void *malloc_block;

/* Addresses no pool gave out (0xC2/0x46), and addresses inside a live segment that are no
 * block: its header slice, a page's tail behind the last block of a small class (0x44/0x48, or
 * 0x19/0x22 when page aligned). */
static void op_free_foreign(rd_t *r, const uint8_t *input)
{
    uint8_t k = u8(r), b = u8(r);
    uint16_t v = u16(r);
    int local = 0;
    void *p = NULL;
    int in_pool = 0;
    unsigned kind = 0;
    switch (k % 9) {
    case 0: p = NULL; break;
    case 1: p = &local; break;
    case 2: p = &global_var; break;
    case 3: p = malloc_block; break;
    case 4: p = (void *)(uintptr_t)0x1000; break;
    case 5: p = (void *)(uintptr_t)0xFFFF800000001000ull; break;
    case 6: p = (void *)(uintptr_t)input; break;
    case 7: { /* the header slice of a live block's segment */
        int s = live_slot(b);
        if (s < 0 || slot[s].special)
            return;
        uintptr_t base = (uintptr_t)slot[s].p & ~(SEG_SIZE - 1);
        p = (void *)(base + ((v & 1) ? (uintptr_t)(v >> 1) % 16 * 4096 : 16 + (uintptr_t)(v % 4000u) / 16 * 16));
        in_pool = 1;
        kind = slot[s].kind;
        break;
    }
    default: { /* the tail of a small block's page, behind the class's last block */
        int s = -1;
        for (int i = 0; i < NSLOTS && s < 0; i++) {
            int c = (b + i) % NSLOTS;
            if (slot[c].state == S_LIVE && !slot[c].special && slot[c].bsize <= SMALL_MAX && 4096 % slot[c].bsize >= 16)
                s = c;
        }
        if (s < 0)
            return;
        size_t per = 4096 / slot[s].bsize, tail = 4096 - per * slot[s].bsize;
        uintptr_t page = (uintptr_t)slot[s].p & ~(uintptr_t)4095;
        p = (void *)(page + per * slot[s].bsize + (v % (tail / 16)) * 16);
        in_pool = 1;
        kind = slot[s].kind;
        break;
    }
    }
    if (in_pool && live_containing(p) >= 0)
        fail("model: address %p chosen as no block is inside a live block", p);
    char what[160];
    snprintf(what, sizeof what, "free of %s address %p at IRQL %u", in_pool ? "non-block pool" : "foreign", p, m_irql);
    trace("%s", what);
    freq_t f = {p, (v >> 15) ? F_FREEPOOL : F_WITHTAG, tag_list[b & 15]};
    outcome_t o;
    exec_guarded(0, call_free, &f, &o);
    ULONG_PTR a = (ULONG_PTR)p;
    if (!in_pool) {
        if (m_irql > DISPATCH_LEVEL)
            expect_bc(&o, what, BAD_POOL_CALLER, 0x09, m_irql, 0, a);
        else
            expect_bc(&o, what, BAD_POOL_CALLER, 0x46, a, 0, 0);
    } else if (bad_irql(m_irql, kind == K_PAGED)) {
        expect_bc(&o, what, BAD_POOL_CALLER, 0x09, m_irql, (ULONG_PTR)kind_pool_type[kind], a);
    } else if ((a & 4095) == 0) {
        expect_bc(&o, what, BAD_POOL_HEADER, 0x22, a, 0, 0);
    } else {
        expect_bc(&o, what, BAD_POOL_CALLER, kind == K_PAGED ? 0x48 : 0x44, a, 0, 0);
    }
    if (ExQueryPoolBlockSize(p, NULL) != 0)
        fail("ExQueryPoolBlockSize(%p) is nonzero for an address that is no block", p);
}

/* ---- IRQL -------------------------------------------------------------------------------------------------- */

typedef struct irq_call {
    int what;
    KIRQL level;
    KIRQL result;
} irq_call_t;

static void call_irql(void *a)
{
    irq_call_t *c = a;
    switch (c->what) {
    case 0: KeRaiseIrql(c->level, &c->result); break;
    case 1: KeLowerIrql(c->level); break;
    case 2: c->result = KeRaiseIrqlToDpcLevel(); break;
    case 3: KeAcquireSpinLock(&spin, &c->result); break;
    case 4: KeReleaseSpinLock(&spin, c->level); break;
    case 5: KeAcquireSpinLockAtDpcLevel(&spin); break;
    case 6: KeReleaseSpinLockFromDpcLevel(&spin); break;
    default: break;
    }
}

static KIRQL spin_old; /* what KeAcquireSpinLock returned */

static void irql_call(irq_call_t *c, const char *what)
{
    KIRQL cur = m_irql;
    outcome_t o;
    exec_guarded(0, call_irql, c, &o);
    switch (c->what) {
    case 0: /* KeRaiseIrql: to a lower level, or beyond HIGH_LEVEL, is 0x9 (cur, new, 0) */
        if (c->level < cur || c->level > HIGH_LEVEL) {
            expect_bc(&o, what, IRQL_NOT_GREATER_OR_EQUAL, cur, c->level, 0, 0);
            return;
        }
        expect_returned(&o, what);
        if (c->result != cur)
            fail("%s: returned old IRQL %u, expected %u", what, c->result, cur);
        m_irql = c->level;
        return;
    case 1: /* KeLowerIrql: to a higher level is 0x9 (cur, new, 1) */
        if (c->level > cur) {
            expect_bc(&o, what, IRQL_NOT_GREATER_OR_EQUAL, cur, c->level, 1, 0);
            return;
        }
        expect_returned(&o, what);
        m_irql = c->level;
        return;
    case 2: /* KeRaiseIrqlToDpcLevel, KeAcquireSpinLock: above DISPATCH_LEVEL is 0x9 (cur, 2, 0) */
    case 3:
        if (cur > DISPATCH_LEVEL) {
            expect_bc(&o, what, IRQL_NOT_GREATER_OR_EQUAL, cur, DISPATCH_LEVEL, 0, 0);
            return;
        }
        expect_returned(&o, what);
        if (c->result != cur)
            fail("%s: returned old IRQL %u, expected %u", what, c->result, cur);
        m_irql = DISPATCH_LEVEL;
        if (c->what == 3) {
            spin_held = 1;
            spin_old = cur;
        }
        return;
    case 4: /* KeReleaseSpinLock: the lock is released, then a higher new IRQL is 0x9 (cur, new, 1) */
        spin_held = 0;
        if (c->level > cur) {
            expect_bc(&o, what, IRQL_NOT_GREATER_OR_EQUAL, cur, c->level, 1, 0);
            return;
        }
        expect_returned(&o, what);
        m_irql = c->level;
        return;
    case 5:
        expect_returned(&o, what);
        spin_held = 2;
        return;
    default:
        expect_returned(&o, what);
        spin_held = 0;
        return;
    }
}

static void op_irql(rd_t *r)
{
    static const char *const names[7] = {"KeRaiseIrql", "KeLowerIrql", "KeRaiseIrqlToDpcLevel",
                                         "KeAcquireSpinLock", "KeReleaseSpinLock",
                                         "KeAcquireSpinLockAtDpcLevel", "KeReleaseSpinLockFromDpcLevel"};
    uint8_t w = u8(r), l = u8(r);
    irq_call_t c = {w % 8, (KIRQL)(l % 17), 0};
    char what[120];
    if (c.what == 7) { /* back to PASSIVE_LEVEL the legal way */
        if (spin_held) {
            c.what = spin_held == 1 ? 4 : 6;
            c.level = spin_held == 1 ? spin_old : 0;
            snprintf(what, sizeof what, "%s(%u) at IRQL %u", names[c.what], c.level, m_irql);
            trace("%s", what);
            irql_call(&c, what);
        }
        c.what = 1;
        c.level = PASSIVE_LEVEL;
    } else if (c.what == 3 || c.what == 5) {
        if (spin_held)
            return; /* a second acquire of a held spin lock spins for ever: not a test */
    } else if (c.what == 4 || c.what == 6) {
        if (!spin_held)
            return;
        if (c.what == 4 && !(l & 0x80))
            c.level = spin_held == 1 ? spin_old : m_irql; /* the usual release */
    } else if (c.what == 1 && !(l & 0x80)) {
        c.level = (KIRQL)(m_irql > 0 ? l % (m_irql + 1) : 0); /* mostly legal lowering */
    }
    snprintf(what, sizeof what, "%s(%u) at IRQL %u", names[c.what], c.level, m_irql);
    trace("%s", what);
    irql_call(&c, what);
}

/* ---- the rest ------------------------------------------------------------------------------------------------ */

static void op_fault(rd_t *r)
{
    uint8_t a = u8(r), b = u8(r);
    if (a < 32) {
        ntpool_os_fail(0, 0, 0, NTPOOL_OS_CALL_COUNT);
        fault_armed = 0;
        trace("fault injector disarmed");
        return;
    }
    static const int only[4] = {NTPOOL_OS_CALL_COUNT, NTPOOL_OS_CALL_COUNT, NTPOOL_OS_MAP, NTPOOL_OS_ADVISE};
    unsigned long n = 1 + (unsigned long)(b % 24);
    int from_on = (a >> 7) & 1, which = only[(a >> 5) & 3];
    ntpool_os_fail(n, from_on, ENOMEM, which);
    fault_armed = 1;
    trace("fault injector: OS call %lu%s fails (kind %d)", n, from_on ? " and every later one" : "", which);
}

static void trim_thunk(void *a)
{
    (void)a;
    ntpool_trim();
}

static void cleanup_thunk(void *a)
{
    (void)a;
    ntpool_thread_cleanup();
}

static void op_trim(rd_t *r)
{
    uint8_t h = u8(r);
    ntpool_pool_info_t a0, a1, b0, b1;
    ntpool_pool_info(0, &a0);
    ntpool_pool_info(1, &b0);
    trace("ntpool_trim on the %s thread", (h & 1) ? "helper" : "main");
    if (h & 1)
        on_helper(trim_thunk, NULL);
    else
        ntpool_trim();
    st.trims++;
    ntpool_pool_info(0, &a1);
    ntpool_pool_info(1, &b1);
    if (a1.committed > a0.committed || b1.committed > b0.committed)
        fail("ntpool_trim raised committed memory: nonpaged %llu -> %llu, paged %llu -> %llu",
             (unsigned long long)a0.committed, (unsigned long long)a1.committed,
             (unsigned long long)b0.committed, (unsigned long long)b1.committed);
}

static void op_cleanup(rd_t *r)
{
    uint8_t h = u8(r);
    trace("ntpool_thread_cleanup on the %s thread", (h & 1) ? "helper" : "main");
    if (h & 1)
        on_helper(cleanup_thunk, NULL);
    else
        ntpool_thread_cleanup();
    st.cleanups++;
}

static const char *const limits[8] = {"auto", "512K", "1M", "2M", "4M", "8M", "32M", "256M"};
static const char *const thresholds[4] = {"80,95", "50,75", "100,100", "10,20"};
static const char *const quotas[8] = {"none", "none", "none", "16K", "256K", "1M", "4M", "64M"};
static const uint64_t quota_bytes[8] = {UINT64_MAX, UINT64_MAX, UINT64_MAX, 16u << 10, 256u << 10, 1u << 20,
                                        4u << 20, 64u << 20};

static void set_option(const char *name, const char *value)
{
    if (ntpool_option_set(name, value) != 0)
        fail("ntpool_option_set(%s, %s) refused", name, value);
}

static void op_option(rd_t *r)
{
    uint8_t a = u8(r);
    switch (a & 3) {
    case 0: set_option("NTPOOL_NONPAGED_LIMIT", limits[(a >> 2) & 7]); break;
    case 1: set_option("NTPOOL_PAGED_LIMIT", limits[(a >> 2) & 7]); break;
    case 2: set_option("NTPOOL_PRIORITY_THRESHOLDS", thresholds[(a >> 2) & 3]); break;
    default:
        set_option("NTPOOL_QUOTA_LIMIT", quotas[(a >> 2) & 7]);
        m_quota_limit = quota_bytes[(a >> 2) & 7];
        break;
    }
    trace("option change (selector 0x%02X)", a);
}

/* ExQueryPoolBlockSize of live, interior, stale and foreign addresses; ZwQuerySystemInformation. */
static void op_query(rd_t *r)
{
    uint8_t a = u8(r), b = u8(r);
    uint16_t v = u16(r);
    trace("query (selector 0x%02X)", a);
    if ((a & 3) == 0) {
        int s = live_slot(b);
        if (s >= 0) {
            BOOLEAN q = 2;
            /* A block of one byte (special pool reports the size asked for) has no interior. */
            int interior = !(v % 2) && slot[s].bsize > 1;
            SIZE_T bs = ExQueryPoolBlockSize(slot[s].p + (interior ? 1 + v % (slot[s].bsize - 1) : 0), &q);
            if (!interior && (bs != slot[s].bsize || (q != 0) != (slot[s].quota != 0)))
                fail("ExQueryPoolBlockSize(live %p) = %zu quota %u; model %zu quota %u", (void *)slot[s].p,
                     (size_t)bs, q, slot[s].bsize, slot[s].quota);
            if (interior && (bs != 0 || q != 0))
                fail("ExQueryPoolBlockSize(interior of %p) = %zu quota %u; expected 0", (void *)slot[s].p,
                     (size_t)bs, q);
        }
    } else if ((a & 3) == 1) {
        int s = freed_slot(b);
        if (s >= 0 && live_at(slot[s].p) < 0 && ExQueryPoolBlockSize(slot[s].p, NULL) != 0)
            fail("ExQueryPoolBlockSize(stale %p) is nonzero", (void *)slot[s].p);
    } else {
        /* ZwQuerySystemInformation with a length from the input: never writes past it. */
        ULONG len = (a & 3) == 2 ? v : 0;
        unsigned char *buf = malloc((size_t)len + 64);
        if (buf == NULL)
            return;
        memset(buf, 0xEE, (size_t)len + 64);
        ULONG ret = 0;
        NTSTATUS s = ZwQuerySystemInformation(SystemPoolTagInformation, len ? buf : NULL, len, &ret);
        for (size_t i = len; i < (size_t)len + 64; i++)
            if (buf[i] != 0xEE)
                fail("ZwQuerySystemInformation(length %u) wrote byte %zu", (unsigned)len, i);
        if (s != STATUS_SUCCESS && s != STATUS_INFO_LENGTH_MISMATCH && !(s == STATUS_INSUFFICIENT_RESOURCES && fault_armed))
            fail("ZwQuerySystemInformation(length %u) = 0x%08X", (unsigned)len, (unsigned)s);
        if ((s == STATUS_SUCCESS) != (ret <= len && len > 0))
            fail("ZwQuerySystemInformation(length %u) = 0x%08X with ReturnLength %u", (unsigned)len, (unsigned)s,
                 (unsigned)ret);
        ret = 77;
        if (ZwQuerySystemInformation((SYSTEM_INFORMATION_CLASS)(b | 0x100), buf, len, &ret) != STATUS_INVALID_INFO_CLASS ||
            ret != 0)
            fail("ZwQuerySystemInformation(class 0x%X) did not refuse the class", b | 0x100);
        free(buf);
    }
}

/* Everything, wholly: contents, overlap, sizes, both heaps, the query interface. */
static void op_check_all(void)
{
    trace("check all");
    for (int s = 0; s < NSLOTS; s++)
        if (slot[s].state == S_LIVE) {
            check_block_full(s, "check all");
            if (overlaps(slot[s].p, slot[s].bsize, s) >= 0)
                fail("check all: slot %d overlaps another live block", s);
            BOOLEAN q = 2;
            if (ExQueryPoolBlockSize(slot[s].p, &q) != slot[s].bsize || (q != 0) != (slot[s].quota != 0))
                fail("check all: ExQueryPoolBlockSize(slot %d) disagrees", s);
        }
    check_validate(1, "check all");
    ntpool_pool_info_t pi;
    for (int pool = 0; pool < 2; pool++) {
        ntpool_pool_info(pool, &pi);
        if (pi.low_threshold > pi.normal_threshold || pi.normal_threshold > pi.limit || pi.committed > pi.peak)
            fail("check all: pool %d info inconsistent: low %llu normal %llu limit %llu committed %llu peak %llu",
                 pool, (unsigned long long)pi.low_threshold, (unsigned long long)pi.normal_threshold,
                 (unsigned long long)pi.limit, (unsigned long long)pi.committed, (unsigned long long)pi.peak);
    }
    /* SystemPoolTagInformation agrees with the snapshot for the fuzzer's tags. */
    ULONG need = 0;
    if (ZwQuerySystemInformation(SystemPoolTagInformation, NULL, 0, &need) != STATUS_INFO_LENGTH_MISMATCH)
        return;
    need += 16 * sizeof(SYSTEM_POOLTAG);
    SYSTEM_POOLTAG_INFORMATION *info = malloc(need);
    if (info == NULL)
        return;
    if (ZwQuerySystemInformation(SystemPoolTagInformation, info, need, NULL) == STATUS_SUCCESS) {
        for (ULONG i = 0; i < info->Count; i++) {
            int t = tag_index(info->TagInfo[i].TagUlong);
            if (t < 0)
                continue;
            uint64_t npa = tc_base[t][K_NX].a + tc_model[t][K_NX].a + tc_base[t][K_EXEC].a + tc_model[t][K_EXEC].a;
            uint64_t pa = tc_base[t][K_PAGED].a + tc_model[t][K_PAGED].a;
            if (info->TagInfo[i].NonPagedAllocs != (ULONG)npa || info->TagInfo[i].PagedAllocs != (ULONG)pa)
                fail("check all: SystemPoolTagInformation for tag 0x%08X: nonpaged allocs %u paged %u; model %u %u",
                     (unsigned)tag_list[t], (unsigned)info->TagInfo[i].NonPagedAllocs,
                     (unsigned)info->TagInfo[i].PagedAllocs, (unsigned)npa, (unsigned)pa);
        }
    }
    free(info);
}

/* ---- one input -------------------------------------------------------------------------------------------------- */

static void do_op(rd_t *r, const uint8_t *input)
{
    uint8_t op = u8(r);
    st.ops++;
    switch (op % 32) {
    case 0: case 1: case 2: case 3: case 4: case 5: op_alloc_pool2(r, 0); break;
    case 6: case 7: op_alloc_legacy(r, 0); break;
    case 8: op_alloc_special(r, (op >> 5) & 1); break;
    case 9: op_alloc_pool3(r); break;
    case 10: case 11: case 12: case 13: case 14: op_free(r, 0, 0); break;
    case 15: case 16: op_free(r, 1, 0); break;
    case 17: op_double_free(r); break;
    case 18: op_free_interior(r); break;
    case 19: op_free_foreign(r, input); break;
    case 20: case 21: op_irql(r); break;
    case 22: op_fault(r); break;
    case 23: op_trim(r); break;
    case 24: op_check_all(); break;
    case 25: op_cleanup(r); break;
    case 26: op_alloc_pool2(r, 1); break;
    case 27: op_free(r, (op >> 5) & 1, 1); break;
    case 28: op_option(r); break;
    case 29: op_query(r); break;
    case 30: op_alloc_raw_pool2(r); break;
    default: op_alloc_legacy(r, 1); break;
    }
}

static void begin_input(rd_t *r)
{
    uint8_t c0 = u8(r), c1 = u8(r);
    set_option("NTPOOL_NONPAGED_LIMIT", limits[c0 & 7]);
    set_option("NTPOOL_PAGED_LIMIT", limits[(c0 >> 3) & 7]);
    set_option("NTPOOL_PRIORITY_THRESHOLDS", thresholds[(c0 >> 6) & 3]);
    set_option("NTPOOL_QUOTA_LIMIT", quotas[c1 & 7]);
    m_quota_limit = quota_bytes[c1 & 7];
    memset(slot, 0, sizeof slot);
    m_quota_used = 0;
    take_tag_base();
    trace("---- input %lu: nonpaged %s, paged %s, thresholds %s, quota %s", input_no, limits[c0 & 7],
          limits[(c0 >> 3) & 7], thresholds[(c0 >> 6) & 3], quotas[c1 & 7]);
}

/* Back to PASSIVE_LEVEL, injector off, default options; free everything (checking it), trim
 * both threads; then nothing may be committed and every counter must balance. */
static void end_input(void)
{
    trace("end of input: free everything");
    if (spin_held == 2)
        KeReleaseSpinLockFromDpcLevel(&spin);
    else if (spin_held)
        KeReleaseSpinLock(&spin, m_irql);
    spin_held = 0;
    KeLowerIrql(PASSIVE_LEVEL);
    m_irql = PASSIVE_LEVEL;
    ntpool_os_fail(0, 0, 0, NTPOOL_OS_CALL_COUNT);
    fault_armed = 0;
    set_option("NTPOOL_NONPAGED_LIMIT", "auto");
    set_option("NTPOOL_PAGED_LIMIT", "auto");
    set_option("NTPOOL_PRIORITY_THRESHOLDS", "80,95");
    set_option("NTPOOL_QUOTA_LIMIT", "none");
    m_quota_limit = UINT64_MAX;
    for (int s = 0; s < NSLOTS; s++)
        if (slot[s].state == S_LIVE) {
            char what[80];
            snprintf(what, sizeof what, "final free of slot %d", s);
            free_live(s, F_WITHTAG, slot[s].tag, (s & 1) && helper.started, what);
        }
    check_after_op("after the final frees");
    if (helper.started)
        on_helper(trim_thunk, NULL);
    ntpool_trim();
    for (int pool = 0; pool < 2; pool++) {
        ntpool_pool_info_t pi;
        ntpool_pool_info(pool, &pi);
        if (pi.committed != 0)
            fail("end of input: everything freed and trimmed, but the %s pool has %llu bytes committed",
                 pool ? "paged" : "nonpaged", (unsigned long long)pi.committed);
    }
    if (ntpool_quota_used() != 0)
        fail("end of input: quota used %llu with every block freed", (unsigned long long)ntpool_quota_used());
    check_tags("end of input");
    check_validate(1, "end of input");
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    /* Purge at every release: the OS-call sequence then does not depend on the clock. */
    set_option("NTPOOL_PURGE_DELAY", "0");
    set_option("NTPOOL_TAG_CHECKS", "1");
    ntpool_set_bugcheck_handler(on_bugcheck, NULL);
    long line = sysconf(_SC_LEVEL1_DCACHE_LINESIZE);
    cache_line = (line >= 16 && line <= 4096 && (line & (line - 1)) == 0) ? (size_t)line : 64;
    for (int i = 0; i < NFT; i++)
        tag_list[i] = 'F' | ('z' << 8) | ((ULONG)('A' + i) << 16) | ((ULONG)'0' << 24); /* "FzA0".. */
    tag_list[NFT] = TAG_BAD0;
    tag_list[NFT + 1] = TAG_NONE;
    malloc_block = malloc(64);
    stats_on = getenv("NTP_FUZZ_STATS") != NULL;
    if (stats_on)
        atexit(print_stats);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return 0; /* bounded state: longer inputs add nothing but time */
    rd_t r = {data, size, 0};
    input_no++;
    st.inputs++;
    begin_input(&r);
    for (int n = 0; n < MAX_OPS && r.i < r.n; n++) {
        do_op(&r, data);
        check_after_op("after the operation");
    }
    end_input();
    return 0;
}
