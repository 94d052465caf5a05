/*
 * except.c - structured-exception emulation for raise-on-failure: a per-thread stack of try
 * frames (sigsetjmp buffers in the caller's stack frame). A raise pops the top frame and jumps
 * to it; the frame's filter then decides to handle, or to pass the exception to the next frame.
 * With no frame left the raise is an unhandled kernel-mode exception: bug check 0x1E.
 */
#include "ddi.h"
#include "../verifier/bugcheck.h"

static NTP_TLS ntpool_try_frame_t *try_top;
static NTP_TLS NTSTATUS exc_code;

NTPOOL_API void ntpool_try_enter(ntpool_try_frame_t *f)
{
    f->prev = try_top;
    f->code = STATUS_SUCCESS;
    try_top = f;
}

NTPOOL_API void ntpool_try_leave(ntpool_try_frame_t *f)
{
    try_top = f->prev;
}

NTPOOL_API NTSTATUS ntpool_exception_code(void)
{
    return exc_code;
}

void ntp_raise(NTSTATUS status, const void *where)
{
    ntpool_try_frame_t *f = try_top;
    if (f == NULL) {
        ntp_bc_info_t in = NTP_BC_INFO_NONE;
        in.caller = where;
        ntp_bugcheck(KMODE_EXCEPTION_NOT_HANDLED, (ULONG)status, (uintptr_t)where, 0, 0, &in);
    }
    try_top = f->prev;
    f->code = status;
    exc_code = status;
    longjmp(f->jb, 1);
}

/* Called in the frame's "raised" branch with the filter's verdict. */
NTPOOL_API int ntpool_try_filter(ntpool_try_frame_t *f, int disposition)
{
    exc_code = f->code;
    if (disposition > 0)
        return 1; /* EXCEPTION_EXECUTE_HANDLER */
    if (disposition == 0)
        ntp_raise(f->code, __builtin_return_address(0)); /* EXCEPTION_CONTINUE_SEARCH */
    /* EXCEPTION_CONTINUE_EXECUTION: a raised status cannot be continued. */
    ntp_raise(STATUS_NONCONTINUABLE_EXCEPTION, __builtin_return_address(0));
}

NTPOOL_API void ExRaiseStatus(NTSTATUS status)
{
    ntp_raise(status, __builtin_return_address(0));
}
