/* bootmain.c - after a start-up that allocated from the bootstrap arena (bootlib.c), glibc
 * grows its fork-handler list again (realloc and free of a bootstrap block) and runs them all
 * in a fork. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static int calls;

static void count(void)
{
    calls++;
}

int main(void)
{
    for (int i = 0; i < 200; i++)
        if (pthread_atfork(count, NULL, NULL) != 0)
            return 1;
    pid_t pid = fork();
    if (pid == 0)
        _exit(calls == 200 ? 0 : 1);
    int st;
    if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        return 1;
    void *p = malloc(100);
    free(p);
    printf("fork handlers run: %d\n", calls);
    return calls == 200 ? 0 : 1;
}
