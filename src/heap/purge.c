/*
 * purge.c - the purge thread: memory goes back while the whole process is quiet.
 *
 * Without it, kept spans and free pages left unused for the purge delay go back when some
 * thread passes a slow path (heap.c kept_reap, segment.c purge_locked): a process that frees
 * what it held and then only waits - a service between requests, an emulator whose guest is
 * idle - keeps them resident. With NTPOOL_PURGE_THREAD on, a thread of the library's own does
 * the same work about every half delay while there is any to do, and sleeps without a timer
 * when there is none: a slow path that leaves work (a span kept, a span's pages released) wakes
 * it. It takes only the locks those slow paths take, and each heap's list lock with a try, so
 * an owner busy in a slow path is never kept waiting by it; it never touches a block, a label
 * or a bin, and allocates nothing.
 *
 * State: `ctl` serialises starting and stopping; `lock` and `cond` are the thread's sleep.
 * ntp_purger_flags (internal.h) is what a slow path's poke reads.
 */
#include <errno.h>
#include <signal.h>
#include <time.h>

#include "internal.h"
#include "../os/os.h"

_Atomic unsigned ntp_purger_flags;

static struct {
    pthread_mutex_t ctl;  /* held across a start or a stop (and its join) */
    pthread_mutex_t lock; /* the thread's sleep, with cond */
    pthread_cond_t cond;  /* on CLOCK_MONOTONIC */
    pthread_t tid;
    int want;             /* on: started again after a fork, by the child's first poke */
    int stop;             /* under lock: the thread is to return */
    int nudged;           /* under lock: make a pass now (the delay changed) */
    _Atomic int running;
    _Atomic uint64_t passes;
} pg = {
    .ctl = PTHREAD_MUTEX_INITIALIZER,
    .lock = PTHREAD_MUTEX_INITIALIZER,
};

/* How long the thread waits between passes while there is work: half the delay, so that what
 * became stale is gone at most about 1.5 delays after it was left, but at least 10 ms. */
static uint64_t tick_ms(void)
{
    uint64_t d = ntp_purge_delay() / 2;
    return d < 10 ? 10 : d;
}

/* Whether a later pass could give something back: kept spans, or purgeable free pages. */
static int work_left(void)
{
    if (ntp_kept_bytes() != 0)
        return 1;
    for (unsigned k = 0; k < NTPOOL_KINDS; k++)
        if (ntp_kind_purgeable(k) != 0)
            return 1;
    return 0;
}

/* One pass: the kept spans unused for the delay, then the free pages unused for it. Returns
 * whether anything is left for a later pass. */
static int purge_pass(void)
{
    int left = ntp_kept_reap_now(ntpool_os_coarse_ms());
    for (unsigned k = 0; k < NTPOOL_KINDS; k++)
        left |= ntp_kind_purge(k, 0) != 0;
    return left;
}

static void *purger_main(void *arg)
{
    (void)arg;
    int left = 1;
    pthread_mutex_lock(&pg.lock);
    while (!pg.stop) {
        if (!left) {
            /* Announce the sleep, then look again: a poke after the look sees the flag. */
            atomic_fetch_or(&ntp_purger_flags, NTP_PURGER_ASLEEP);
            if (!work_left())
                while (!pg.stop && (atomic_load(&ntp_purger_flags) & NTP_PURGER_ASLEEP))
                    pthread_cond_wait(&pg.cond, &pg.lock);
            atomic_fetch_and(&ntp_purger_flags, ~NTP_PURGER_ASLEEP);
        }
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t ns = (uint64_t)ts.tv_nsec + tick_ms() * 1000000u;
        ts.tv_sec += (time_t)(ns / 1000000000u);
        ts.tv_nsec = (long)(ns % 1000000000u);
        while (!pg.stop && !pg.nudged &&
               pthread_cond_timedwait(&pg.cond, &pg.lock, &ts) != ETIMEDOUT)
            ;
        if (pg.stop)
            break;
        pg.nudged = 0;
        pthread_mutex_unlock(&pg.lock);
        left = purge_pass();
        atomic_fetch_add_explicit(&pg.passes, 1, memory_order_relaxed);
        pthread_mutex_lock(&pg.lock);
    }
    pthread_mutex_unlock(&pg.lock);
    return NULL;
}

/* Start the thread; ctl held. Every signal is blocked in it, so that none meant for the
 * program's own threads is delivered to it. */
static int purger_start_locked(void)
{
    atomic_fetch_and(&ntp_purger_flags, ~NTP_PURGER_START);
    if (ntp_load(&pg.running))
        return 0;
    pg.stop = 0;
    pg.nudged = 0;
    pthread_attr_t attr;
    sigset_t all, old;
    pthread_attr_init(&attr);
    (void)pthread_attr_setstacksize(&attr, (size_t)256 << 10);
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int r = pthread_create(&pg.tid, &attr, purger_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (r != 0)
        return r; /* left off until asked again */
    (void)pthread_setname_np(pg.tid, "ntpool-purge");
    ntp_store(&pg.running, 1);
    return 0;
}

static void purger_stop_locked(void)
{
    if (!ntp_load(&pg.running))
        return;
    pthread_mutex_lock(&pg.lock);
    pg.stop = 1;
    pthread_cond_broadcast(&pg.cond);
    pthread_mutex_unlock(&pg.lock);
    pthread_join(pg.tid, NULL);
    ntp_store(&pg.running, 0);
    atomic_fetch_and(&ntp_purger_flags, ~NTP_PURGER_ASLEEP);
}

int ntpool_heap_purger(int on)
{
    ntpool_heap_init();
    pthread_mutex_lock(&pg.ctl);
    int r = 0;
    pg.want = on != 0;
    if (on)
        r = purger_start_locked();
    else {
        atomic_fetch_and(&ntp_purger_flags, ~NTP_PURGER_START);
        purger_stop_locked();
    }
    pthread_mutex_unlock(&pg.ctl);
    return r;
}

void ntpool_heap_purger_request(void)
{
    pthread_mutex_lock(&pg.ctl);
    pg.want = 1;
    if (!ntp_load(&pg.running))
        atomic_fetch_or(&ntp_purger_flags, NTP_PURGER_START);
    pthread_mutex_unlock(&pg.ctl);
}

void ntp_purger_poke_slow(unsigned may)
{
    unsigned f = atomic_load(&ntp_purger_flags) & may;
    /* A try: the thread that is starting it may come back here, from the allocations of
     * pthread_create when the pool is the process's malloc. */
    if ((f & NTP_PURGER_START) && pthread_mutex_trylock(&pg.ctl) == 0) {
        if (pg.want && (atomic_load(&ntp_purger_flags) & NTP_PURGER_START))
            (void)purger_start_locked();
        pthread_mutex_unlock(&pg.ctl);
    }
    if (f & NTP_PURGER_ASLEEP) {
        pthread_mutex_lock(&pg.lock);
        if (atomic_fetch_and(&ntp_purger_flags, ~NTP_PURGER_ASLEEP) & NTP_PURGER_ASLEEP)
            pthread_cond_signal(&pg.cond);
        pthread_mutex_unlock(&pg.lock);
    }
}

void ntp_purger_nudge(void)
{
    pthread_mutex_lock(&pg.lock);
    pg.nudged = 1;
    atomic_fetch_and(&ntp_purger_flags, ~NTP_PURGER_ASLEEP);
    pthread_cond_broadcast(&pg.cond);
    pthread_mutex_unlock(&pg.lock);
}

void ntp_purger_init(void)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&pg.cond, &ca);
    pthread_condattr_destroy(&ca);
}

/* The child of a fork has no purge thread; when it was wanted, the child's first poke starts
 * one of its own. */
void ntp_purger_atfork_child(void)
{
    pthread_mutex_init(&pg.ctl, NULL);
    pthread_mutex_init(&pg.lock, NULL);
    ntp_purger_init();
    pg.stop = 0;
    pg.nudged = 0;
    ntp_store(&pg.running, 0);
    ntp_store(&pg.passes, 0);
    atomic_store(&ntp_purger_flags, pg.want ? NTP_PURGER_START : 0u);
}

void ntp_purger_stats(uint64_t *passes, int *running)
{
    *passes = ntp_load(&pg.passes);
    *running = ntp_load(&pg.running);
}
