/*
 * fuzz_replay.c - main() for a fuzz target built without libFuzzer: runs LLVMFuzzerTestOneInput
 * on every file named on the command line, and on every file in every directory named (sorted,
 * so runs are repeatable). This is how the committed corpus runs in the ordinary gcc build, under
 * valgrind and in the sanitizer builds, where libFuzzer is not available.
 *
 *   fuzz_ops_replay tests/reliability/corpus/ops [more files or directories]
 *   NTP_REPLAY_RANDOM=N  also runs N pseudo-random inputs (seeded by NTP_REPLAY_SEED, default 1);
 *                        NTP_REPLAY_SAVE=file writes each one there before running it
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static unsigned long ran;

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        perror(path);
        return 1;
    }
    static uint8_t buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    /* A copy of exactly n bytes, so a read past the input is a sanitizer report. */
    uint8_t *copy = malloc(n ? n : 1);
    if (copy == NULL)
        return 1;
    memcpy(copy, buf, n);
    LLVMFuzzerTestOneInput(copy, n);
    free(copy);
    ran++;
    return 0;
}

static int cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int run_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        perror(dir);
        return 1;
    }
    size_t cap = 64, n = 0;
    char **names = malloc(cap * sizeof *names);
    struct dirent *e;
    while (names != NULL && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        if (n == cap) {
            char **more = realloc(names, (cap *= 2) * sizeof *names);
            if (more == NULL)
                break;
            names = more;
        }
        size_t len = strlen(dir) + strlen(e->d_name) + 2;
        names[n] = malloc(len);
        if (names[n] != NULL)
            snprintf(names[n++], len, "%s/%s", dir, e->d_name);
    }
    closedir(d);
    if (names == NULL)
        return 1;
    qsort(names, n, sizeof *names, cmp);
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        struct stat sb;
        if (stat(names[i], &sb) == 0 && S_ISREG(sb.st_mode))
            bad |= run_file(names[i]);
        free(names[i]);
    }
    free(names);
    return bad;
}

int main(int argc, char **argv)
{
    LLVMFuzzerInitialize(&argc, &argv);
    int bad = 0;
    for (int i = 1; i < argc; i++) {
        struct stat sb;
        if (stat(argv[i], &sb) != 0) {
            perror(argv[i]);
            bad = 1;
        } else if (S_ISDIR(sb.st_mode)) {
            bad |= run_dir(argv[i]);
        } else {
            bad |= run_file(argv[i]);
        }
    }
    const char *rn = getenv("NTP_REPLAY_RANDOM");
    if (rn != NULL) {
        unsigned long count = strtoul(rn, NULL, 10);
        const char *sd = getenv("NTP_REPLAY_SEED");
        uint64_t s = sd ? strtoull(sd, NULL, 0) : 1;
        static uint8_t in[1024];
        const char *save = getenv("NTP_REPLAY_SAVE");
        for (unsigned long k = 0; k < count; k++) {
            size_t len = 0;
            for (size_t j = 0; j < sizeof in; j++) {
                s = s * 6364136223846793005ull + 1442695040888963407ull;
                in[j] = (uint8_t)(s >> 56);
            }
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            len = (size_t)(s >> 33) % sizeof in;
            uint8_t *copy = malloc(len ? len : 1);
            if (copy == NULL)
                return 1;
            memcpy(copy, in, len);
            if (save != NULL) { /* the input about to run, for when it fails */
                FILE *f = fopen(save, "wb");
                if (f != NULL) {
                    fwrite(copy, 1, len, f);
                    fclose(f);
                }
            }
            LLVMFuzzerTestOneInput(copy, len);
            free(copy);
            ran++;
        }
    }
    fprintf(stderr, "%s: %lu inputs replayed%s\n", argv[0], ran, bad ? " (some could not be read)" : "");
    return bad;
}
