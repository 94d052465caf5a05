/*
 * options.h - every NTPOOL_* option, in one table.
 *
 * The table drives parsing, ntpool_option_set/get, the --help text and README's option table
 * (a test checks README against ntpool_options_print). Values are read from the environment
 * once, at the library's first use; ntpool_option_set changes them later and the library
 * re-applies what depends on them.
 */
#ifndef NTPOOL_OPTIONS_H
#define NTPOOL_OPTIONS_H

#include "base.h"

typedef enum ntp_opt_type {
    NTP_OPT_SIZE,     /* bytes with optional K/M/G/T (binary); "auto"/"none" = 0 */
    NTP_OPT_UINT,     /* decimal or 0x hex */
    NTP_OPT_BOOL,     /* 1/0, yes/no, on/off, true/false */
    NTP_OPT_TRISTATE, /* auto (-1), 0, 1 */
    NTP_OPT_STRING,   /* checked by a per-option validator */
} ntp_opt_type_t;

/*  X(id, variable, type, default, example, meaning) */
#define NTPOOL_OPTION_TABLE(X)                                                                      \
    X(NONPAGED_LIMIT, "NTPOOL_NONPAGED_LIMIT", NTP_OPT_SIZE, "auto", "64M",                         \
      "Nonpaged pool size limit in bytes (K/M/G suffixes). `auto`: 3/4 of RAM, or of the cgroup "   \
      "memory limit if lower.")                                                                     \
    X(PAGED_LIMIT, "NTPOOL_PAGED_LIMIT", NTP_OPT_SIZE, "auto", "256M",                              \
      "Paged pool size limit in bytes. `auto`: RAM, or the cgroup memory limit if lower.")          \
    X(PRIORITY_THRESHOLDS, "NTPOOL_PRIORITY_THRESHOLDS", NTP_OPT_STRING, "80,95", "70,90",          \
      "Percent of a pool's limit at which LowPoolPriority, then NormalPoolPriority requests "       \
      "(and every legacy and ExAllocatePool2 request) fail; HighPoolPriority fails only at the "    \
      "limit.")                                                                                     \
    X(QUOTA_LIMIT, "NTPOOL_QUOTA_LIMIT", NTP_OPT_SIZE, "none", "16M",                               \
      "Pool quota of the process for ExAllocatePoolWithQuotaTag and POOL_FLAG_USE_QUOTA; beyond "  \
      "it they fail with STATUS_QUOTA_EXCEEDED. `none`: unlimited.")                                \
    X(VERIFIER, "NTPOOL_VERIFIER", NTP_OPT_UINT, "0", "0x9",                                        \
      "Driver Verifier options, numbered as `verifier /flags` numbers them: 0x1 special pool, 0x2 " \
      "IRQL checking, 0x4 low-resources simulation, 0x8 pool tracking, 0x40000 systematic "         \
      "low-resources simulation, 0x2000000 code integrity checks. Any flag also turns on the "        \
      "automatic checks (0xC4 codes).")        \
    X(SPECIAL_POOL, "NTPOOL_SPECIAL_POOL", NTP_OPT_STRING, "", "Tst*,size=64-128",                  \
      "Which allocations special pool takes, even without NTPOOL_VERIFIER: tag patterns with `*` "  \
      "and `?`, `*` for all, `size=A-B`; `underrun` puts blocks at the page start.")               \
    X(LOW_RESOURCES, "NTPOOL_LOW_RESOURCES", NTP_OPT_STRING, "", "p=600,seed=7,tags=Tst*,skip=0",   \
      "Low-resources simulation (Verifier flags 0x4, 0x40000): probability `p` in 1/10000 "         \
      "(default 600), `seed`, `tags` patterns (repeatable), `skip` first allocations, `log` file "  \
      "of the call stacks systematic mode has failed.")                                             \
    X(TRACK_STACK, "NTPOOL_TRACK_STACK", NTP_OPT_UINT, "0", "4",                                     \
      "Pool tracking: frames of call stack (0-8) recorded above each allocation's caller and "      \
      "shown in leak reports.")                                                                     \
    X(LEAK_REPORT, "NTPOOL_LEAK_REPORT", NTP_OPT_BOOL, "1", "0",                                    \
      "Pool tracking: at exit, write the blocks still allocated to stderr.")                        \
    X(BUGCHECK, "NTPOOL_BUGCHECK", NTP_OPT_STRING, "abort", "exit:66",                              \
      "What happens after a bug-check report: `abort` (SIGABRT), `exit:N` (_exit(N)), `trap` "      \
      "(a breakpoint trap, for debuggers).")                                                        \
    X(BUGCHECK_LOG, "NTPOOL_BUGCHECK_LOG", NTP_OPT_STRING, "", "/tmp/bc.log",                       \
      "Also append every bug-check report to this file.")                                           \
    X(TAG_CHECKS, "NTPOOL_TAG_CHECKS", NTP_OPT_BOOL, "1", "0",                                      \
      "Bug check 0xC2/0x9C for the tag `BIG ` and 0xC2/0x9D for a tag with no letter or digit.")    \
    X(PURGE_DELAY, "NTPOOL_PURGE_DELAY", NTP_OPT_UINT, "100", "0",                                  \
      "Milliseconds that free pages, and empty spans a thread keeps for reuse, stay resident "      \
      "unused before they go back.")                                                                \
    X(PURGE_THREAD, "NTPOOL_PURGE_THREAD", NTP_OPT_BOOL, "0", "1",                                  \
      "A thread of the library's own (`ntpool-purge`) gives back what stayed unused for the "      \
      "purge delay, while there is any, even when the program's threads are all idle. `0`: that "   \
      "happens only when one of them allocates or frees again.")                                    \
    X(LOCK_NONPAGED, "NTPOOL_LOCK_NONPAGED", NTP_OPT_TRISTATE, "0", "auto",                         \
      "Lock nonpaged pool in memory (mlock2 MLOCK_ONFAULT): `1`, `auto` (when the process may "     \
      "lock memory), `0`. Locked pages go back to the OS only a whole segment at a time.")        \
    X(PRELOAD_TAG, "NTPOOL_PRELOAD_TAG", NTP_OPT_STRING, "Mllc", "per-site",                        \
      "Malloc shim: the tag of every block, 1 to 4 characters (padded with spaces) with a letter "  \
      "or digit; `per-site`: a tag per call site.")                                                 \
    X(PRELOAD_STATS, "NTPOOL_PRELOAD_STATS", NTP_OPT_STRING, "0", "tags",                           \
      "Malloc shim: at exit, `1` writes one line of totals (allocations, frees, live, tags, peak "   \
      "committed), `tags` also one line per tag with its call site.")                               \
    X(PRELOAD_STATS_FILE, "NTPOOL_PRELOAD_STATS_FILE", NTP_OPT_STRING, "", "/tmp/pool.txt",         \
      "Malloc shim: append the exit statistics to this file instead of stderr.")                    \
    X(PRELOAD_SITES, "NTPOOL_PRELOAD_SITES", NTP_OPT_STRING, "", "/tmp/sites.txt",                  \
      "Malloc shim: at exit, append the map from per-site tags to call sites to this file, in "     \
      "pooltag.txt form.")

typedef enum ntp_opt_id {
#define NTP_OPT_ENUM(id, var, type, def, ex, help) NTP_OPT_##id,
    NTPOOL_OPTION_TABLE(NTP_OPT_ENUM)
#undef NTP_OPT_ENUM
        NTP_OPT_COUNT
} ntp_opt_id_t;

/* Read the environment once (idempotent, thread-safe). */
void ntp_options_load(void);
/* Current value: integers for SIZE/UINT/BOOL/TRISTATE (0 = auto/none for SIZE). */
int64_t ntp_opt_int(ntp_opt_id_t id);
/* Current text of a STRING option (points to static storage; stable until the next set). */
const char *ntp_opt_str(ntp_opt_id_t id);
/* NTPOOL_PRELOAD_TAG's value: 0 and *per_site = 1 for "per-site", 0 and the tag (memory order,
 * padded with spaces) for 1 to 4 printable characters with a letter or digit, not "BIG";
 * EINVAL otherwise. */
int ntp_parse_preload_tag(const char *s, uint32_t *tag, int *per_site);
/* NTPOOL_PRIORITY_THRESHOLDS: "LOW,NORMAL", digits only, 1 <= LOW <= NORMAL <= 100. */
int ntp_parse_thresholds(const char *s, unsigned *low, unsigned *normal);
/* Parse "<digits>[KMGT]" etc. Returns 0 on success. */
int ntp_parse_size(const char *s, uint64_t *out);
/* Fork handlers for the option lock: 0 prepare, 1 parent, 2 child. */
void ntp_options_atfork(int phase);
/* Called after ntpool_option_set changed something (installed by the library init). */
extern void (*ntp_options_changed)(ntp_opt_id_t id);

#endif
