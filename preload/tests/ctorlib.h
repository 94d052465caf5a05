/* ctorlib.h - a library that allocates in its constructor and frees in its destructor. Built
 * twice: libpreload_early.so (linked: its constructor runs before main) and
 * libpreload_late.so (dlopen'ed). */
#ifndef PRELOAD_CTORLIB_H
#define PRELOAD_CTORLIB_H
const char *early_message(void);
char *early_dup(const char *s);
const char *late_message(void);
char *late_dup(const char *s);
#endif
