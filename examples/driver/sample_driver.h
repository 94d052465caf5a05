/*
 * sample_driver.h - what the sample driver allocates and the options it reads, for the driver,
 * its host and the tests that check them.
 *
 * Tags are written as drivers write them: the literal 'SpmS' is stored, shown and matched as
 * "SmpS".
 */
#ifndef NTPOOL_SAMPLE_DRIVER_H
#define NTPOOL_SAMPLE_DRIVER_H

/* DriverEntry: */
#define SAMPLE_TAG_STATE 'SpmS'  /* "SmpS": driver state, ExAllocatePool2, nonpaged */
#define SAMPLE_STATE_BYTES 256
#define SAMPLE_TAG_TABLE 'TpmS'  /* "SmpT": lookup table, ExAllocatePoolWithTag, PagedPool */
#define SAMPLE_TABLE_BYTES 8192
#define SAMPLE_TAG_BUFFER 'BpmS' /* "SmpB": receive buffer, ExAllocatePoolWithTagPriority, NonPagedPoolNx */
#define SAMPLE_BUFFER_BYTES 1000
/* IRP_MJ_CREATE: one per open, freed by IRP_MJ_CLOSE (or at unload). */
#define SAMPLE_TAG_CONTEXT 'CpmS' /* "SmpC": ExAllocatePool2, nonpaged */
#define SAMPLE_CONTEXT_BYTES 64
/* With AllocInUnload: a log record DriverUnload allocates (a bug: 0xC4/0x61). */
#define SAMPLE_TAG_LOG 'LpmS' /* "SmpL": ExAllocatePool2, paged */
#define SAMPLE_LOG_BYTES 128

/* Options: words anywhere in the registry path (a real driver would read registry values), e.g.
 * L"\\Registry\\Machine\\System\\CurrentControlSet\\Services\\ntpool_sample_driver\\Leak". */
#define SAMPLE_WORD_LEAK L"Leak"                  /* DriverUnload forgets the receive buffer */
#define SAMPLE_WORD_LEAK_TABLE L"LeakTable"       /* ... and/or the lookup table */
#define SAMPLE_WORD_FAIL_INIT L"FailInit"         /* DriverEntry fails as if the buffer's allocation had */
#define SAMPLE_WORD_ALLOC_IN_UNLOAD L"AllocInUnload" /* DriverUnload allocates a log record */
#define SAMPLE_WORD_DRAIN L"DrainInUnload"        /* DriverUnload first waits until every open is closed */

#endif
