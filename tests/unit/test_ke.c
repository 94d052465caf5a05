/*
 * test_ke.c - per-thread IRQL, spin locks, and raise-on-failure caught by NTPOOL_TRY.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "ntp_test.h"

#define TAG 'eKTT'

START_TEST(irql_raise_and_lower)
{
    ck_assert_uint_eq(KeGetCurrentIrql(), PASSIVE_LEVEL);
    KIRQL old, old2;
    KeRaiseIrql(APC_LEVEL, &old);
    ck_assert_uint_eq(old, PASSIVE_LEVEL);
    ck_assert_uint_eq(KeGetCurrentIrql(), APC_LEVEL);
    KeRaiseIrql(APC_LEVEL, &old2); /* raising to the current level is legal */
    ck_assert_uint_eq(old2, APC_LEVEL);
    KeRaiseIrql(DISPATCH_LEVEL, &old2);
    ck_assert_uint_eq(KeGetCurrentIrql(), DISPATCH_LEVEL);
    KeLowerIrql(old2);
    ck_assert_uint_eq(KeGetCurrentIrql(), APC_LEVEL);
    KeLowerIrql(old);
    ck_assert_uint_eq(KeGetCurrentIrql(), PASSIVE_LEVEL);
    ck_assert_uint_eq(KeRaiseIrqlToDpcLevel(), PASSIVE_LEVEL);
    ck_assert_uint_eq(KeGetCurrentIrql(), DISPATCH_LEVEL);
    KeLowerIrql(PASSIVE_LEVEL);
}
END_TEST

static void *irql_in_thread(void *arg)
{
    (void)arg;
    return (void *)(uintptr_t)KeGetCurrentIrql();
}

START_TEST(irql_is_per_thread)
{
    KIRQL old;
    KeRaiseIrql(DISPATCH_LEVEL, &old);
    pthread_t t;
    void *r;
    pthread_create(&t, NULL, irql_in_thread, NULL);
    pthread_join(t, &r);
    ck_assert_uint_eq((uintptr_t)r, PASSIVE_LEVEL);
    ck_assert_uint_eq(KeGetCurrentIrql(), DISPATCH_LEVEL);
    KeLowerIrql(old);
}
END_TEST

/* At DISPATCH_LEVEL (inside a spin lock) nonpaged pool works, as drivers rely on. */
START_TEST(nonpaged_at_dispatch)
{
    KSPIN_LOCK lock;
    KIRQL old;
    KeInitializeSpinLock(&lock);
    KeAcquireSpinLock(&lock, &old);
    ck_assert_uint_eq(KeGetCurrentIrql(), DISPATCH_LEVEL);
    void *a = ExAllocatePool2(POOL_FLAG_NON_PAGED, 100, TAG);
    void *b = ExAllocatePoolWithTag(NonPagedPoolNx, 70000, TAG);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    ExFreePoolWithTag(a, TAG);
    ExFreePoolWithTag(b, TAG);
    KeReleaseSpinLock(&lock, old);
    ck_assert_uint_eq(KeGetCurrentIrql(), PASSIVE_LEVEL);
    /* Paged pool is fine at APC_LEVEL. */
    KeRaiseIrql(APC_LEVEL, &old);
    void *c = ExAllocatePool2(POOL_FLAG_PAGED, 100, TAG);
    ck_assert_ptr_nonnull(c);
    ExFreePoolWithTag(c, TAG);
    KeLowerIrql(old);
}
END_TEST

static KSPIN_LOCK shared_lock;
static long counter;

static void *spin_worker(void *arg)
{
    (void)arg;
    for (int i = 0; i < 100000; i++) {
        KIRQL old;
        KeAcquireSpinLock(&shared_lock, &old);
        counter++;
        KeReleaseSpinLock(&shared_lock, old);
    }
    return NULL;
}

START_TEST(spin_lock_excludes)
{
    KeInitializeSpinLock(&shared_lock);
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, spin_worker, NULL);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    ck_assert_int_eq(counter, 400000);
}
END_TEST

START_TEST(raise_caught)
{
    volatile int handled = 0;
    NTSTATUS volatile code = 0;
    NTPOOL_TRY {
        ExAllocatePool2(POOL_FLAG_NON_PAGED | POOL_FLAG_RAISE_ON_FAILURE, SIZE_MAX, TAG);
        ck_abort_msg("no raise");
    }
    NTPOOL_EXCEPT(EXCEPTION_EXECUTE_HANDLER) {
        handled = 1;
        code = GetExceptionCode();
    }
    NTPOOL_END_TRY;
    ck_assert_int_eq(handled, 1);
    ck_assert_uint_eq((ULONG)code, (ULONG)STATUS_INSUFFICIENT_RESOURCES);
    /* Invalid parameters raise their own status. */
    EXPECT_RAISE(STATUS_INVALID_PARAMETER, ExAllocatePool2(POOL_FLAG_RAISE_ON_FAILURE, 10, TAG));
    EXPECT_RAISE(STATUS_INSUFFICIENT_RESOURCES,
                 ExAllocatePoolWithTag((POOL_TYPE)(NonPagedPoolNx | POOL_RAISE_IF_ALLOCATION_FAILURE), SIZE_MAX, TAG));
    /* No raise: the try body completes and the handler does not run. */
    volatile int ran = 0;
    NTPOOL_TRY {
        void *p = ExAllocatePool2(POOL_FLAG_NON_PAGED | POOL_FLAG_RAISE_ON_FAILURE, 64, TAG);
        ck_assert_ptr_nonnull(p);
        ExFreePool(p);
    }
    NTPOOL_EXCEPT(EXCEPTION_EXECUTE_HANDLER) {
        ran = 1;
    }
    NTPOOL_END_TRY;
    ck_assert_int_eq(ran, 0);
}
END_TEST

static void deep(int n)
{
    if (n < 0)
        return;
    if (n == 0)
        ExRaiseStatus(STATUS_ACCESS_VIOLATION);
    deep(n - 1);
}

START_TEST(raise_nested_and_search)
{
    volatile int outer = 0, inner = 0;
    NTPOOL_TRY {
        NTPOOL_TRY {
            deep(10);
        }
        /* Not ours: pass it on to the enclosing handler. */
        NTPOOL_EXCEPT(GetExceptionCode() == STATUS_INSUFFICIENT_RESOURCES ? EXCEPTION_EXECUTE_HANDLER
                                                                           : EXCEPTION_CONTINUE_SEARCH) {
            inner = 1;
        }
        NTPOOL_END_TRY;
        ck_abort_msg("execution continued after an exception passed outward");
    }
    NTPOOL_EXCEPT(EXCEPTION_EXECUTE_HANDLER) {
        outer = (int)GetExceptionCode();
    }
    NTPOOL_END_TRY;
    ck_assert_int_eq(inner, 0);
    ck_assert_uint_eq((ULONG)outer, (ULONG)STATUS_ACCESS_VIOLATION);
    /* After a handled exception the frame stack is clean: a new raise goes to a new frame. */
    EXPECT_RAISE(STATUS_NO_MEMORY, ExRaiseStatus(STATUS_NO_MEMORY));
}
END_TEST

START_TEST(continue_execution_is_noncontinuable)
{
    volatile ULONG got = 0;
    NTPOOL_TRY {
        NTPOOL_TRY {
            ExRaiseStatus(STATUS_UNSUCCESSFUL);
        }
        NTPOOL_EXCEPT(EXCEPTION_CONTINUE_EXECUTION) {
            ck_abort_msg("handler ran for CONTINUE_EXECUTION");
        }
        NTPOOL_END_TRY;
    }
    NTPOOL_EXCEPT(EXCEPTION_EXECUTE_HANDLER) {
        got = (ULONG)GetExceptionCode();
    }
    NTPOOL_END_TRY;
    ck_assert_uint_eq(got, (ULONG)STATUS_NONCONTINUABLE_EXCEPTION);
}
END_TEST

START_TEST(node_numbers)
{
    USHORT hi = KeQueryHighestNodeNumber();
    ck_assert_uint_le(KeGetCurrentNodeNumber(), hi);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ke");
    NTP_CASE(s, "irql_raise_lower", irql_raise_and_lower);
    NTP_CASE(s, "irql_per_thread", irql_is_per_thread);
    NTP_CASE(s, "nonpaged_at_dispatch", nonpaged_at_dispatch);
    NTP_CASE(s, "spin_lock", spin_lock_excludes);
    NTP_CASE(s, "raise_caught", raise_caught);
    NTP_CASE(s, "raise_nested", raise_nested_and_search);
    NTP_CASE(s, "noncontinuable", continue_execution_is_noncontinuable);
    NTP_CASE(s, "nodes", node_numbers);
    return ntp_test_main(s);
}
