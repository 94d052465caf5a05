#!/usr/bin/env python3
"""make_seeds.py - write the committed seed corpus of the fuzz targets (tests/reliability/corpus).

The seeds are small programs in each target's input encoding (see the comments at the top of
fuzz_ops.c, fuzz_options.c and fuzz_sysfs.c), one per behaviour: every allocation API, every
misuse class of README's decisions table, IRQL and spin locks, limits and priorities, quota,
OS faults, the helper thread, trims and heap clean-ups. libFuzzer starts from them and keeps what
it finds in a scratch directory; scripts/fuzz.sh --merge folds worthwhile finds back in.

Run after changing an encoding:  python3 tests/reliability/make_seeds.py
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

# ---- fuzz_ops ---------------------------------------------------------------------------------
# config byte 0: nonpaged limit (bits 0-2), paged limit (3-5), thresholds (6-7)
LIMITS = {"auto": 0, "512K": 1, "1M": 2, "2M": 3, "4M": 4, "8M": 5, "32M": 6, "256M": 7}
THRESH = {"80,95": 0, "50,75": 1, "100,100": 2, "10,20": 3}
QUOTA = {"none": 0, "16K": 3, "256K": 4, "1M": 5, "4M": 6, "64M": 7}


def config(np="auto", pg="auto", th="80,95", quota="none"):
    return bytes([LIMITS[np] | LIMITS[pg] << 3 | THRESH[th] << 6, QUOTA[quota]])


def size(n=None, big=None, huge=None, edge=None, absurd=None):
    if n is not None:
        assert n <= 4096
        return bytes([0]) + struct.pack("<H", n)
    if big is not None:
        return bytes([5]) + struct.pack("<H", big - 4065)
    if huge is not None:
        return bytes([6]) + struct.pack("<H", (huge - 65537) // 15)
    if edge is not None:
        return bytes([4]) + struct.pack("<H", edge)
    return bytes([7]) + struct.pack("<H", absurd << 6)  # 0 SIZE_MAX .. 4 2^44


NX, EXEC, PAGED = 0, 1, 2
UNINIT, ALIGNED, RAISE, QUOTAF = 0x04, 0x08, 0x10, 0x20


def tag(i=0, kind="plain"):
    return bytes([{"plain": 0x00, "bit31": 0xC0, "bad": 0xD0, "legacy": 0xE0}[kind] | i])


def pool2(slot, kind=NX, mods=0, sz=b"\x00\x40\x00", t=None, g=0, helper=False):
    return bytes([26 if helper else 0, slot, kind | mods, g]) + sz + (t or tag(slot % 16))


# legacy types by index: 0 NonPagedPool 1 PagedPool 2 NonPagedPoolNx 5 NonPagedPoolCacheAligned
# 6 PagedPoolCacheAligned 8 NonPagedPoolMustSucceed 13 DontUseThisType
API = {"WithTag": 0, "Pool": 1, "Prio": 2, "QuotaTag": 3, "Quota": 4, "Zero": 5, "Uninit": 6,
       "QZero": 7, "QUninit": 8, "PZero": 9, "PUninit": 10}
PRIO = {"Low": 0, "LowOverrun": 1, "Normal": 3, "High": 6, "HighUnderrun": 8}


def legacy(slot, typ=2, mods=0, api="WithTag", prio="Normal", sz=b"\x00\x40\x00", t=None):
    h = API[api] + 0 * 16
    # h % 11 selects the routine, (h >> 4) % 9 the priority: find an h with both
    for cand in range(256):
        if cand % 11 == API[api] and (cand >> 4) % 9 == PRIO[prio]:
            h = cand
            break
    return bytes([6, slot, typ, mods, h]) + sz + (t or tag(slot % 16))


def free(slot, how=0, bit31=False, notag=False, wrong=None, helper=False):
    h = how | (4 if bit31 else 0) | (8 if notag else 0)
    if helper:
        return bytes([27 if wrong is None else 59, slot, h, wrong or 0])
    return bytes([10 if wrong is None else 15, slot, h, wrong or 0])


def double_free(slot, first=0, second_freepool=False, helper=False):
    return bytes([17, slot, (first << 1) | (8 if second_freepool else 0) | (16 if helper else 0)])


def stale_free(slot):
    return bytes([17, slot, 1])


def interior(slot, v):
    return bytes([18, slot]) + struct.pack("<H", v)


def foreign(k, slot=0, v=0):
    return bytes([19, k, slot]) + struct.pack("<H", v)


def irql(what, level=0):
    return bytes([20, what, level])


def fault(n, from_on=False, only=0):
    if n == 0:
        return bytes([22, 0, 0])
    return bytes([22, 32 | only << 5 | (0x80 if from_on else 0), n - 1])


def trim(helper=False):
    return bytes([23, 1 if helper else 0])


CHECK = bytes([24])


def cleanup(helper=False):
    return bytes([25, 1 if helper else 0])


def option(which, value):
    if which == "np":
        return bytes([28, 0 | LIMITS[value] << 2])
    if which == "pg":
        return bytes([28, 1 | LIMITS[value] << 2])
    if which == "th":
        return bytes([28, 2 | THRESH[value] << 2])
    return bytes([28, 3 | QUOTA[value] << 2])


def query(sel, slot=0, v=1):
    return bytes([29, sel, slot]) + struct.pack("<H", v)


def raw_pool2(slot, flags, sz=b"\x00\x40\x00", t=None):
    return bytes([30, slot]) + struct.pack("<Q", flags) + sz + (t or tag(1))


def raw_legacy(slot, typ, sz=b"\x00\x40\x00"):
    return bytes([31, slot, 0, 0, 0]) + sz + tag(2) + struct.pack("<H", typ)


def pool3(slot, kind=NX, raise_=False, params=(), null=False, sz=b"\x00\x40\x00"):
    f = kind | (4 if raise_ else 0) | len(params) << 4 | (0xC0 if null else 0)
    out = bytes([9, slot, f]) + sz + tag(3)
    for a, b in params:
        out += bytes([a, b])
    return out


OPS = {
    "basic": config() + pool2(0, NX, sz=size(100)) + pool2(1, PAGED, sz=size(big=5000)) +
    pool2(2, EXEC, sz=size(huge=70000)) + CHECK + free(0) + free(1, how=1) + free(2, how=2),
    "every_kind_and_shape": config() + b"".join(
        pool2(i, [NX, EXEC, PAGED][i % 3], sz=s) for i, s in enumerate(
            [size(0), size(1), size(16), size(17), size(512), size(513), size(4064), size(4065 - 1),
             size(big=4065), size(big=8192), size(big=65536), size(huge=65537), size(huge=1 << 20)]))
    + CHECK + trim(),
    "cache_aligned_and_uninit": config() + pool2(0, NX, ALIGNED, size(100)) +
    pool2(1, PAGED, ALIGNED | UNINIT, size(3000)) + pool2(2, EXEC, ALIGNED, size(big=5000)) + CHECK,
    "legacy_routines": config() + b"".join(
        legacy(i, typ=[0, 1, 2, 5, 6][i % 5], api=a, sz=size(50 + 300 * i))
        for i, a in enumerate(API)) + CHECK + free(0, how=1) + free(3, notag=True),
    "legacy_modifiers": config() + legacy(0, typ=2, mods=0x01 | 0x02) + legacy(1, typ=1, mods=0x08 | 0x10) +
    legacy(2, typ=0, mods=0x20 | 0x40) + legacy(3, typ=13) + legacy(4, typ=14) + CHECK,
    "double_free_small_anchored": config() + pool2(0, NX, sz=size(48)) + pool2(1, NX, sz=size(48)) +
    double_free(0) + pool2(2, PAGED, sz=size(1000)) + pool2(3, PAGED, sz=size(1000)) + double_free(2),
    "double_free_big_and_huge": config() + pool2(0, NX, sz=size(big=8192)) + pool2(1, NX, sz=size(big=8192)) +
    double_free(0) + pool2(2, PAGED, sz=size(huge=300000)) + pool2(3, PAGED, sz=size(huge=300000)) + double_free(2),
    "double_free_remote": config() + pool2(0, NX, sz=size(64)) + pool2(1, NX, sz=size(64)) +
    double_free(0, helper=True),
    "stale_after_reuse": config() + pool2(0, NX, sz=size(48)) + pool2(1, NX, sz=size(48)) + free(0) +
    pool2(2, NX, sz=size(48), t=tag(5)) + stale_free(0) + stale_free(0),
    "wrong_tag": config() + pool2(0, NX, sz=size(64)) + free(0, wrong=0x05) + free(0, bit31=True) +
    pool2(1, PAGED, sz=size(big=12288)) + free(1, wrong=0x07) + free(1, how=2),
    "interior": config() + pool2(0, NX, sz=size(256)) + interior(0, 16) + interior(0, 1) +
    pool2(1, PAGED, sz=size(big=20000)) + interior(1, 4096) + interior(1, 0x8003) +
    pool2(2, EXEC, sz=size(huge=100000)) + interior(2, 40000),
    "foreign_and_wild": config() + pool2(0, NX, sz=size(48)) + pool2(1, PAGED, sz=size(48)) + b"".join(
        foreign(k, 0, 8 * k + 1) for k in range(9)) + foreign(7, 1, 2) + foreign(8, 1, 0),
    "irql_rules": config() + pool2(0, PAGED, sz=size(100)) + pool2(1, NX, sz=size(100)) +
    irql(0, DISPATCH := 2) + pool2(2, PAGED, sz=size(100)) + pool2(3, NX, sz=size(100)) + free(0) + free(3) +
    irql(0, 15) + pool2(4, NX, sz=size(10)) + free(1) + irql(0, 1) + irql(1, 0x80 | 16) + irql(7) + free(0),
    "spin_locks": config() + irql(3) + pool2(0, NX, sz=size(200)) + pool2(1, PAGED, sz=size(200)) +
    irql(4) + irql(3) + irql(4, 0x80 | 5) + irql(2) + irql(5) + irql(6) + irql(7) + irql(2) + irql(3),
    "bad_tags": config() + pool2(0, NX, t=tag(0, "bad")) + pool2(1, NX, t=tag(1, "bad")) +
    pool2(2, PAGED, t=tag(2, "bad")) + pool2(3, NX, t=tag(3, "bad")) + legacy(4, t=tag(0, "bad")) +
    legacy(5, t=tag(1, "bad")) + pool2(6, NX, t=tag(4, "bit31")) + free(6, bit31=True) +
    legacy(7, api="Pool") + legacy(8, t=tag(1, "legacy")) + CHECK,
    "invalid_pool2_flags": config() + pool2(0, 3, g=1) + pool2(1, 3, g=0) + pool2(2, NX, 0x80, g=0x08) +
    pool2(3, NX, 0x80 | RAISE, g=0x10) + pool2(4, PAGED, 0x80, g=0x00) + pool2(5, NX, 0x40, g=0x02) +
    raw_pool2(6, 0x41 | 1 << 40) + raw_pool2(7, 0x10 | 0x40) + raw_pool2(8, 0x0000000000001140),
    "raw_legacy_types": config() + raw_legacy(0, 0x9D83) + raw_legacy(1, 0x0FFF) + raw_legacy(2, 0x0200) +
    raw_legacy(3, 0x0010 | 0x0400),
    "pool3_params": config() + pool3(0, NX, params=[(0x01, 0), (0x03, 0)]) +
    pool3(1, PAGED, params=[(0x03, 1)]) + pool3(2, PAGED, params=[(0x0B, 1)]) +
    pool3(3, NX, raise_=True, params=[(0x05, 0)]) + pool3(4, NX, params=[(0x81, 0x77)]) +
    pool3(5, EXEC, params=[(0x01, 6), (0x01, 0)]) + pool3(6, NX, null=True) + pool3(7, NX, params=[(0x06, 0)]),
    "low_priority_fails_first": config(np="1M", th="50,75") + b"".join(
        legacy(i, typ=2, api="Prio", prio="Low", sz=size(big=16384)) for i in range(8)) + b"".join(
        legacy(8 + i, typ=2, api="Prio", prio="High", sz=size(big=16384)) for i in range(8)) + CHECK,
    "normal_at_limit_and_raise": config(np="512K", pg="512K") + b"".join(
        pool2(i, [NX, PAGED][i % 2], RAISE if i % 3 == 0 else 0, size(big=40000)) for i in range(16)) +
    legacy(20, typ=2, mods=0x01, sz=size(big=60000)) + legacy(21, typ=8, sz=size(big=60000)),
    "huge_at_limit": config(np="2M", th="100,100") + pool2(0, NX, sz=size(huge=1 << 20)) +
    pool2(1, NX, sz=size(huge=1 << 20)) + pool2(2, EXEC, sz=size(huge=600000)) +
    legacy(3, typ=2, api="Prio", prio="High", sz=size(huge=900000)) + free(0) + pool2(4, EXEC, sz=size(huge=1 << 20)),
    "options_midway": config() + pool2(0, NX, sz=size(big=30000)) + option("np", "512K") +
    legacy(1, typ=2, api="Prio", prio="Low", sz=size(100)) + option("th", "100,100") + pool2(2, NX, sz=size(100)) +
    option("np", "auto") + option("pg", "1M") + option("th", "10,20") + pool2(3, PAGED, sz=size(100)),
    "quota": config(quota="16K") + b"".join(
        legacy(i, typ=2, api="QuotaTag", sz=size(big=6000)) for i in range(4)) +
    legacy(4, typ=2, mods=0x04, api="QuotaTag", sz=size(big=6000)) + pool2(5, NX, QUOTAF, size(big=8000)) +
    pool2(6, NX, QUOTAF | RAISE, size(big=8000)) + free(0) + pool2(7, PAGED, QUOTAF, size(3000)) +
    legacy(8, typ=1, api="QZero", sz=size(1000)) + legacy(9, typ=1, api="Quota", sz=size(1000)) + query(0, 7, 1),
    "absurd_sizes": config() + b"".join(pool2(i, NX, RAISE if i % 2 else 0, size(absurd=i)) for i in range(5)) +
    legacy(5, typ=8, sz=size(absurd=0)) + legacy(6, typ=2, mods=0x01, sz=size(absurd=2)),
    "zero_size": config() + pool2(0, NX, sz=size(0)) + pool2(1, NX, sz=size(0)) + legacy(2, sz=size(0)) + CHECK +
    free(0) + double_free(1),
    "faults_nth": config() + fault(1) + pool2(0, NX, sz=size(100)) + pool2(1, PAGED, sz=size(big=5000)) +
    fault(2) + pool2(2, EXEC, sz=size(huge=200000)) + fault(3, only=2) + pool2(3, PAGED, sz=size(huge=500000)) +
    fault(0) + pool2(4, NX, sz=size(100)) + CHECK,
    "faults_from_on": config() + pool2(0, NX, sz=size(100)) + fault(1, from_on=True) + b"".join(
        pool2(1 + i, [NX, EXEC, PAGED][i % 3], RAISE if i % 2 else 0, size(big=20000 + i)) for i in range(6)) +
    legacy(10, typ=8, sz=size(big=30000)) + trim() + free(0) + fault(0) + pool2(11, NX, sz=size(big=20000)),
    "faults_on_purge": config() + b"".join(pool2(i, PAGED, sz=size(huge=100000)) for i in range(4)) +
    fault(1, from_on=True, only=3) + b"".join(free(i) for i in range(4)) + trim() + fault(0) + CHECK,
    "helper_remote": config() + b"".join(pool2(i, [NX, EXEC, PAGED][i % 3], sz=size(40 + 100 * i), helper=True)
                                         for i in range(6)) +
    b"".join(free(i) for i in range(0, 6, 2)) + cleanup(helper=True) + pool2(10, NX, sz=size(140)) +
    b"".join(free(i, helper=True) for i in range(1, 6, 2)) + trim(helper=True) + CHECK,
    "cleanup_and_adopt": config() + b"".join(pool2(i, NX, sz=size(64)) for i in range(8)) + cleanup() +
    free(0) + free(2) + b"".join(pool2(8 + i, NX, sz=size(64)) for i in range(8)) + CHECK + trim(),
    "query": config() + pool2(0, NX, sz=size(100)) + query(0, 0, 1) + query(0, 0, 2) + free(0) + query(1, 0) +
    query(2, 0, 0) + query(2, 0, 3000) + query(3),
    # special pool
    "special_pool": config() + b"".join(bytes([8, i, k]) + struct.pack("<H", 48 * (i + 1)) + bytes([i]) for i, k in
                                        enumerate([0, 1, 2, 4, 8, 9, 0x10, 0x20, 2 | 8, 0x0A])) +
    CHECK + free(0) + free(1, wrong=0x05) + interior(2, 16) + double_free(3) + stale_free(0) +
    irql(0, 2) + free(4) + free(2) + irql(7) + bytes([8 + 32, 20, 2, 0xA0, 0x0F, 3]) + free(20, helper=True) + CHECK,
    "special_pool_sizes": config() + b"".join(bytes([8, i, 0x80 | (i % 3)]) + b"\0\0" + s + tag(i) for i, s in
                                              enumerate([size(16), size(4064), size(4096), size(big=5000),
                                                         size(huge=100000)])) + CHECK,
    "everything_short": config(np="4M", pg="4M", th="50,75", quota="256K") + pool2(0, NX, sz=size(300)) +
    legacy(1, typ=1, api="Zero", sz=size(big=9000)) + irql(0, 2) + pool2(2, PAGED) + free(1) + irql(7) +
    fault(4) + pool2(3, EXEC, sz=size(huge=80000)) + fault(0) + double_free(0) + stale_free(0) + CHECK,
}

# ---- fuzz_options -----------------------------------------------------------------------------
# records: a selector byte - with the top bit set the name bytes that follow are used as they are,
# otherwise the selector picks an option of the table (ntpool_options_print order) and a spelling;
# then NUL, the value, NUL. Seeds name their options, so they survive changes of the table.


def rec(opt, value, raw_name=b""):
    """A record naming the option by its name (robust to changes of the option table), or by
    selector when opt is an int (index into the table, spelling = index // count % 8)."""
    if isinstance(opt, str):
        return bytes([0x80]) + opt.encode() + b"\0" + value + b"\0"
    return bytes([opt]) + raw_name + b"\0" + value + b"\0"


OPTIONS = {
    "limits": rec("NTPOOL_NONPAGED_LIMIT", b"64M") + rec("NTPOOL_PAGED_LIMIT", b"0x200000") +
    rec("NTPOOL_NONPAGED_LIMIT", b"auto") + rec("NTPOOL_PAGED_LIMIT", b"1G") + rec("NTPOOL_NONPAGED_LIMIT", b"12Q"),
    "limit_suffixes": rec("NTPOOL_NONPAGED_LIMIT", b"4KiB") + rec("NTPOOL_NONPAGED_LIMIT", b"4kb") +
    rec("NTPOOL_PAGED_LIMIT", b"1T") + rec("NTPOOL_NONPAGED_LIMIT", b" 8M ") + rec("NTPOOL_PAGED_LIMIT", b"none"),
    "thresholds": rec("NTPOOL_PRIORITY_THRESHOLDS", b"50,75") + rec("NTPOOL_PRIORITY_THRESHOLDS", b"70,90") +
    rec("NTPOOL_PRIORITY_THRESHOLDS", b"90,80") + rec("NTPOOL_PRIORITY_THRESHOLDS", b"1,100"),
    "quota": rec("NTPOOL_QUOTA_LIMIT", b"16M") + rec("NTPOOL_QUOTA_LIMIT", b"none") + rec("NTPOOL_QUOTA_LIMIT", b"-1"),
    "bugcheck": rec("NTPOOL_BUGCHECK", b"exit:7") + rec("NTPOOL_BUGCHECK", b"trap") +
    rec("NTPOOL_BUGCHECK", b"exit:300") + rec("NTPOOL_BUGCHECK", b"abort"),
    "bools": rec("NTPOOL_TAG_CHECKS", b"yes") + rec("NTPOOL_TAG_CHECKS", b"maybe") + rec("NTPOOL_TAG_CHECKS", b"TRUE") +
    rec("NTPOOL_LOCK_NONPAGED", b"auto") + rec("NTPOOL_LOCK_NONPAGED", b"1"),
    "uints": rec("NTPOOL_PURGE_DELAY", b"0") + rec("NTPOOL_PURGE_DELAY", b"0x10") +
    rec("NTPOOL_PURGE_DELAY", b"18446744073709551615"),
    "verifier": rec("NTPOOL_VERIFIER", b"0x9") + rec("NTPOOL_VERIFIER", b"0x40000") + rec("NTPOOL_VERIFIER", b"bogus"),
    "special_pool": rec("NTPOOL_SPECIAL_POOL", b"Tst*,size=64-128") + rec("NTPOOL_SPECIAL_POOL", b"*") +
    rec("NTPOOL_SPECIAL_POOL", b"underrun") + rec("NTPOOL_SPECIAL_POOL", b"size=9-1"),
    "low_resources": rec("NTPOOL_LOW_RESOURCES", b"p=600,seed=7,tags=Tst*,skip=0") +
    rec("NTPOOL_LOW_RESOURCES", b"p=20000") + rec("NTPOOL_LOW_RESOURCES", b"tags=A*|Bc?d"),
    # spelled variants of whatever options come first in the table
    "spellings": rec(12 * 1 + 0, b"3M") + rec(12 * 2 + 1, b"5M") + rec(12 * 3 + 2, b"40,60") + rec(12 * 4 + 3, b"1M"),
    "raw_names": rec("paged-limit", b"1M") + rec("NTPOOL_NTPOOL_PAGED_LIMIT", b"1") + rec("", b"x") +
    rec("ntpool_tag_checks", b"1") + rec("Priority-Thresholds", b"60,70"),
}

# ---- fuzz_sysfs -------------------------------------------------------------------------------
LRSLOG = (b"00000000deadbeef libdrv.so+0x1234 (DriverEntry+0x34) libntpool.so.1+0x5678\n"
          b"0123456789ABCDEF\n"
          b"not a hash\n"
          b"0000000000000000\tzero reads as one\n"
          b"0123456789abcdef0 seventeen digits\n"
          b"ffffffffffffffff")
SYSFS = {
    "none": bytes([0]),
    "cgroup_v2_max": bytes([1]) + b"max\n",
    "cgroup_v2_value": bytes([1]) + b"1073741824\n",
    "cgroup_v1": bytes([2]) + b"\0" + b"536870912\n",
    "v2_max_v1_value": bytes([3]) + b"max\n\0" + b"268435456\n",
    "nodes_single": bytes([4]) + b"\0\0" + b"0\n",
    "nodes_ranges": bytes([4]) + b"\0\0" + b"0-3,8,10-11\n",
    "all": bytes([7]) + b"2147483648\n\0" + b"1\n\0" + b"0,2\n",
    "max_map_count": bytes([8]) + b"\0\0\0" + b"262144\n",
    "max_map_count_long": bytes([8]) + b"\0\0\0" + b"9" * 25 + b"\n",
    # the systematic low-resources log, read in pieces of 8 and of 1 byte
    "lrslog": bytes([0x10 | 3 << 5]) + b"\0\0\0\0" + LRSLOG,
    "lrslog_bytewise": bytes([0x10]) + b"\0\0\0\0" + LRSLOG,
}


# ---- bugs the fuzzers found (all fixed): their inputs stay in the corpus as regression seeds --------
FOUND = {
    "ops": {
        # four 1 MiB blocks need two segments; freeing all unmaps the second; the second free of
        # its block was 0xC2/0x46 (README: 0x19/0x22) - fixed in 0a25dbb (jumbo ones in 8dd7484)
        "found-huge-double-free-unmapped": config() + b"".join(pool2(i, NX, sz=size(huge=1 << 20)) for i in range(4)) +
        free(0) + free(1) + free(2) + double_free(3),
        # a 100-byte special-pool block: writing its usable size was 0xC1/0x24 at free - 0a25dbb
        "found-special-usable-size": config() + bytes([8, 0, 0, 100, 0, 0]) + free(0),
    },
    "options": {
        "found-tag-checks-cache": rec("NTPOOL_TAG_CHECKS", b"off") + rec("NTPOOL_TAG_CHECKS", b"on"),
        "found-thresholds-blank": rec("NTPOOL_PRIORITY_THRESHOLDS", b" 50,75"),
        "found-long-value": rec("NTPOOL_PURGE_DELAY", b"0" * 300 + b"7"),
        "found-zero-threshold": rec("NTPOOL_NONPAGED_LIMIT", b"64") + rec("NTPOOL_PRIORITY_THRESHOLDS", b"1,1"),
        "found-size-suffix": rec("NTPOOL_NONPAGED_LIMIT", b"4KBi") + rec("NTPOOL_PAGED_LIMIT", b"2MBiB") +
        rec("NTPOOL_PAGED_LIMIT", b"010M"),
    },
    "sysfs": {
        "found-node-count-wrap": bytes([4]) + b"\0\0" + b"4294967295\n",
    },
}
# Open known bugs (tests/reliability/regress/<target>/known-*, label known-bug): none now.
REGRESS = {}


def write(target, seeds, where="corpus"):
    d = os.path.join(HERE, where, target)
    os.makedirs(d, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(d, "seed-" + name if where == "corpus" else name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    write("ops", OPS)
    write("options", OPTIONS)
    write("sysfs", SYSFS)
    for target, seeds in FOUND.items():
        d = os.path.join(HERE, "corpus", target)
        for name, data in seeds.items():
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
    for target, seeds in REGRESS.items():
        d = os.path.join(HERE, "regress", target)
        os.makedirs(d, exist_ok=True)
        for name, data in seeds.items():
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
    print("seeds: ops %d, options %d, sysfs %d" % (len(OPS), len(OPTIONS), len(SYSFS)))
