/* ctorlib.c - see ctorlib.h. CTOR_NAME is early or late. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctorlib.h"

#define CAT2(a, b) a##b
#define CAT(a, b) CAT2(a, b)
#define STR2(a) #a
#define STR(a) STR2(a)

static char *message;
static char *scratch[32];

__attribute__((constructor)) static void ctor(void)
{
    message = malloc(64);
    if (message != NULL)
        snprintf(message, 64, "constructor of libpreload_%s.so", STR(CTOR_NAME));
    for (int i = 0; i < 32; i++)
        scratch[i] = calloc(1, (size_t)(i + 1) * 100);
}

__attribute__((destructor)) static void dtor(void)
{
    for (int i = 0; i < 32; i++)
        free(scratch[i]);
    free(message);
}

__attribute__((visibility("default"))) const char *CAT(CTOR_NAME, _message)(void)
{
    return message;
}

__attribute__((visibility("default"))) char *CAT(CTOR_NAME, _dup)(const char *s)
{
    return strdup(s);
}
