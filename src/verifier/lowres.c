/*
 * lowres.c - low-resources simulation: Driver Verifier's flags 0x4 (random) and 0x40000
 * (systematic), spec 10.3 and 10.4.
 *
 * A request is eligible when its tag matches one of the `tags` patterns (none: every tag) and it
 * comes after the first `skip` eligible requests since the simulation was configured (`skip`
 * stands for Windows's DelayMins, counted in allocations so runs are reproducible). An eligible
 * request fails when
 *   1. systematic mode is on and its call stack has never failed before, in this process or in
 *      a run recorded in the log: it fails, and the stack is recorded; otherwise
 *   2. random mode is on and the draw for this request is below p/10000.
 * Systematic mode decides first so that a stack is recorded at its first eligible request
 * whatever the draw: were the draw first, a stack it failed would go unrecorded and fail again,
 * deliberately, later. Random failures come on top. Both filters (tags, skip) apply to both
 * modes. The caller (verifier.c) counts every 1 returned here as an injected failure.
 *
 * Random draws are splitmix64's sequence keyed by the seed: the n-th eligible request gets the
 * n-th output, so a single-threaded sequence of requests fails the same ones on every run.
 *
 * A stack is the return address of the DDI call (the request's caller) and the frames above it,
 * up to LRS_DEPTH, each taken as module basename + offset (dladdr), so its hash does not depend
 * on where ASLR put the modules: a new process finds the stacks it read from the log. Frames
 * below the caller are ntpool's own. Nothing here calls malloc (the library may be malloc):
 * backtrace() is primed at configuration, the set of failed stacks lives in ntp_meta_alloc
 * memory, and the log is read and written with open/read/write.
 *
 * Changing the settings (spec or modes; turning a mode off and on) restarts the simulation: the
 * random sequence and the skip count start again, and systematic mode forgets the stacks it
 * failed, except those in the log, which it reloads.
 */
#include <dlfcn.h>
#include <link.h>
#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "verifier.h"
#include "lrslog.h"
#include "../base/fmt.h"
#include "../heap/internal.h" /* ntp_meta_alloc/free */

#define LRS_DEPTH 16      /* frames of the driver's stack that make its identity */
#define LRS_CAPTURE 64    /* frames captured: ntpool's own, then the driver's */
#define LRS_SET_MIN 512   /* initial slots of the set of failed stacks */
#define LRS_LINE_MAX 2048 /* a log line; longer stack descriptions are cut */
/* Seed 0 means this fixed key, not the time: runs must be reproducible. */
#define LRS_DEFAULT_SEED 0x6E74706F6F6C4C52ull

typedef struct lrs_stack {
    void *pc[LRS_CAPTURE];
    int n;         /* frames captured */
    int first;     /* first frame above the caller */
    uint64_t hash; /* never 0: 0 marks a free slot of the set */
} lrs_stack_t;

/* Everything below is under lrs_lock (the verifier's slow path). */
static pthread_mutex_t lrs_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    ntp_lrs_spec_t spec;
    int random, systematic, configured;
    uint64_t key;      /* the random sequence's seed */
    uint64_t eligible; /* eligible requests since configuration */
    uint64_t *set;     /* hashes of failed stacks: open addressing, linear probing */
    size_t cap, used;
} lrs;
/* Read without the lock: does this request need its stack captured (outside the lock)? */
static _Atomic int lrs_want_stack;
/* Load address of ntpool's own module, to tell its frames from the driver's. */
static void *lrs_self_base;
/* The main program's file, read once (readlink does not allocate). */
static char lrs_exe_name[256];
static pthread_once_t lrs_once = PTHREAD_ONCE_INIT;

/* ---- hashing ------------------------------------------------------------------------------- */

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t fnv_bytes(uint64_t h, const void *p, size_t n)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ c[i]) * 0x100000001B3ull;
    return h;
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* The module holding pc: its name and base; 0 if no module claims it (generated code). glibc
 * names the main program by argv[0], which differs with the way the program was started, so it
 * is named by its file (/proc/self/exe) instead. */
static int module_of(const void *pc, Dl_info *di)
{
    struct link_map *lm = NULL;
    if (pc == NULL || dladdr1(pc, di, (void **)&lm, RTLD_DL_LINKMAP) == 0 || di->dli_fname == NULL)
        return 0;
    if (lm != NULL && lm->l_name[0] == '\0' && lrs_exe_name[0] != '\0')
        di->dli_fname = lrs_exe_name;
    return 1;
}

/* One frame, position-independent: module basename and offset (the raw address if no module
 * claims it). */
static uint64_t hash_frame(uint64_t h, const void *pc)
{
    Dl_info di;
    uintptr_t off = (uintptr_t)pc;
    if (module_of(pc, &di)) {
        const char *name = base_name(di.dli_fname);
        h = fnv_bytes(h, name, strlen(name) + 1);
        off -= (uintptr_t)di.dli_fbase;
    }
    return fnv_bytes(h, &off, sizeof off);
}

static int in_self(const void *pc)
{
    Dl_info di;
    return dladdr(pc, &di) != 0 && di.dli_fbase == lrs_self_base;
}

/* Index of the first frame above the caller. If the caller is not on the stack, skip ntpool's
 * own frames (they lead the stack when ntpool is a shared object; linked statically it shares
 * the driver's module, and then the caller alone - always hashed - tells stacks apart). */
static int first_driver_frame(void *const *pc, int n, const void *caller)
{
    for (int i = 0; i < n; i++)
        if (pc[i] == caller)
            return i + 1;
    int i = 0;
    while (i < n && in_self(pc[i]))
        i++;
    return i;
}

static void capture_stack(const void *caller, lrs_stack_t *st)
{
    st->n = backtrace(st->pc, LRS_CAPTURE);
    st->first = first_driver_frame(st->pc, st->n, caller);
    uint64_t h = hash_frame(0xCBF29CE484222325ull, caller);
    for (int i = st->first; i < st->n && i < st->first + LRS_DEPTH - 1; i++)
        h = hash_frame(h, st->pc[i]);
    h = mix64(h);
    st->hash = h ? h : 1;
}

/* ---- the set of failed stacks (under lrs_lock) ---------------------------------------------- */

static void set_put(uint64_t *set, size_t cap, uint64_t h)
{
    size_t i = (size_t)h & (cap - 1);
    while (set[i] != 0 && set[i] != h)
        i = (i + 1) & (cap - 1);
    set[i] = h;
}

/* Keep the load at most one half. 0 when metadata memory ran out. */
static int set_reserve(void)
{
    if ((lrs.used + 1) * 2 <= lrs.cap)
        return 1;
    size_t cap = lrs.cap ? lrs.cap * 2 : LRS_SET_MIN;
    uint64_t *set = ntp_meta_alloc(cap * sizeof *set); /* zeroed */
    if (set == NULL)
        return 0;
    for (size_t i = 0; i < lrs.cap; i++)
        if (lrs.set[i] != 0)
            set_put(set, cap, lrs.set[i]);
    if (lrs.set != NULL)
        ntp_meta_free(lrs.set, lrs.cap * sizeof *lrs.set);
    lrs.set = set;
    lrs.cap = cap;
    return 1;
}

static int set_has(uint64_t h)
{
    if (lrs.cap == 0)
        return 0;
    for (size_t i = (size_t)h & (lrs.cap - 1); lrs.set[i] != 0; i = (i + 1) & (lrs.cap - 1))
        if (lrs.set[i] == h)
            return 1;
    return 0;
}

/* 1 when h is new and now recorded; 0 when it was there (or cannot be recorded: a stack that
 * could not be remembered must not fail again and again). */
static int set_add(uint64_t h)
{
    if (set_has(h) || !set_reserve())
        return 0;
    set_put(lrs.set, lrs.cap, h);
    lrs.used++;
    return 1;
}

/* ---- the log: one failed stack a line (lrslog.h) -------------------------------------------- */

/* What earlier runs failed. A missing log is an empty one. */
static void log_load(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ntp_lrslog_t lp = NTP_LRSLOG_INIT;
    uint64_t h;
    char buf[4096];
    for (;;) {
        ssize_t k = read(fd, buf, sizeof buf);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        for (ssize_t i = 0; i < k; i++)
            if (ntp_lrslog_char(&lp, buf[i], &h))
                (void)set_add(h);
    }
    if (ntp_lrslog_char(&lp, '\n', &h)) /* a last line without its newline still counts */
        (void)set_add(h);
    close(fd);
}

static void describe_frame(ntp_buf_t *b, const void *pc)
{
    Dl_info di;
    ntp_buf_chr(b, ' ');
    if (!module_of(pc, &di)) {
        ntp_buf_hex(b, (uintptr_t)pc, 0, 0, 1);
        return;
    }
    ntp_buf_str(b, base_name(di.dli_fname));
    ntp_buf_chr(b, '+');
    ntp_buf_hex(b, (uintptr_t)pc - (uintptr_t)di.dli_fbase, 0, 0, 1);
    if (di.dli_sname != NULL) {
        ntp_buf_chr(b, '(');
        ntp_buf_str(b, di.dli_sname);
        ntp_buf_chr(b, '+');
        ntp_buf_hex(b, (uintptr_t)pc - (uintptr_t)di.dli_saddr, 0, 0, 1);
        ntp_buf_chr(b, ')');
    }
}

/* Append the stack's line in one write(2) on an O_APPEND descriptor, so concurrent runs do not
 * interleave lines. The frames after the hash are for people; only the hash is read back. */
static void log_append(const char *path, const void *caller, const lrs_stack_t *st)
{
    char line[LRS_LINE_MAX];
    ntp_buf_t b;
    ntp_buf_init(&b, line, sizeof line - 1); /* room for the newline */
    ntp_buf_hex(&b, st->hash, 16, 0, 0);
    describe_frame(&b, caller);
    for (int i = st->first; i < st->n && i < st->first + LRS_DEPTH - 1; i++)
        describe_frame(&b, st->pc[i]);
    line[b.len++] = '\n';
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    ntp_write_all(fd, line, b.len);
    close(fd);
}

/* ---- configuration ---------------------------------------------------------------------------- */

static void lrs_prepare(void)
{
    pthread_mutex_lock(&lrs_lock);
}

static void lrs_release(void)
{
    pthread_mutex_unlock(&lrs_lock);
}

/* The child's only thread is not the one that locked it: start the lock afresh. */
static void lrs_child(void)
{
    pthread_mutex_init(&lrs_lock, NULL);
}

/* Once, outside lrs_lock: backtrace()'s first call loads libgcc_s and may call malloc, which
 * must not happen inside an allocation. The fork handlers keep a child from inheriting the lock
 * held by a thread that does not exist there. */
static void lrs_init_once(void)
{
    void *pc[2];
    (void)backtrace(pc, 2);
    Dl_info di;
    if (dladdr((void *)(uintptr_t)&ntp_lrs_should_fail, &di) != 0)
        lrs_self_base = di.dli_fbase;
    ssize_t n = readlink("/proc/self/exe", lrs_exe_name, sizeof lrs_exe_name - 1);
    lrs_exe_name[n > 0 ? n : 0] = '\0';
    NTP_ATFORK_ONCE(lrs_prepare, lrs_release, lrs_child);
}

static int same_settings(const ntp_lrs_spec_t *s, int random, int systematic)
{
    const ntp_lrs_spec_t *o = &lrs.spec;
    return lrs.configured && lrs.random == random && lrs.systematic == systematic &&
           o->probability == s->probability && o->seed == s->seed && o->skip == s->skip &&
           o->ntags == s->ntags && memcmp(o->tags, s->tags, sizeof o->tags) == 0 &&
           strcmp(o->log, s->log) == 0;
}

static void restart_locked(const ntp_lrs_spec_t *spec, int random, int systematic)
{
    lrs.spec = *spec;
    lrs.random = random;
    lrs.systematic = systematic;
    lrs.configured = 1;
    lrs.key = spec->seed ? spec->seed : LRS_DEFAULT_SEED;
    lrs.eligible = 0;
    if (lrs.set != NULL)
        memset(lrs.set, 0, lrs.cap * sizeof *lrs.set);
    lrs.used = 0;
    if (systematic && spec->log[0])
        log_load(spec->log);
    ntp_store_rel(&lrs_want_stack, systematic); /* after lrs_self_base is set */
}

void ntp_lrs_configure(const ntp_lrs_spec_t *spec, int random, int systematic)
{
    if (random || systematic)
        pthread_once(&lrs_once, lrs_init_once);
    pthread_mutex_lock(&lrs_lock);
    if (!same_settings(spec, random, systematic))
        restart_locked(spec, random, systematic);
    pthread_mutex_unlock(&lrs_lock);
}

/* ---- the decision ----------------------------------------------------------------------------- */

/* Eligible: the tag matches and the first `skip` eligible requests are past. *n is the
 * request's number in the eligible sequence (under lrs_lock). */
static int eligible_locked(uint32_t tag, uint64_t *n)
{
    if (lrs.spec.ntags > 0) {
        unsigned i = 0;
        while (i < lrs.spec.ntags && !ntp_vf_tag_match(lrs.spec.tags[i], tag))
            i++;
        if (i == lrs.spec.ntags)
            return 0;
    }
    *n = lrs.eligible++;
    return *n >= lrs.spec.skip;
}

/* splitmix64: the n-th output of the sequence keyed by the seed. */
static int random_fails(uint64_t n)
{
    uint64_t x = mix64(lrs.key + (n + 1) * 0x9E3779B97F4A7C15ull);
    return x % 10000 < lrs.spec.probability;
}

int ntp_lrs_should_fail(const ntp_vf_req_t *r)
{
    lrs_stack_t st;
    /* Unwinding and dladdr are the slow part: done before taking the lock. */
    int have_stack = ntp_load_acq(&lrs_want_stack);
    if (have_stack)
        capture_stack(r->caller, &st);
    char log[sizeof lrs.spec.log];
    int fail = 0, record = 0;
    uint64_t n = 0;
    pthread_mutex_lock(&lrs_lock);
    if ((lrs.random || lrs.systematic) && eligible_locked(r->tag, &n)) {
        if (lrs.systematic && have_stack)
            fail = record = set_add(st.hash);
        if (!fail && lrs.random)
            fail = random_fails(n);
    }
    if (record)
        memcpy(log, lrs.spec.log, sizeof log);
    pthread_mutex_unlock(&lrs_lock);
    if (record && log[0])
        log_append(log, r->caller, &st);
    return fail;
}
