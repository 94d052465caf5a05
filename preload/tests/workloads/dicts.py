"""A Python workload that allocates heavily: builds and sorts large dicts and lists in threads,
hands objects from producer threads to consumer threads (frees in another thread), and prints
checksums that do not depend on scheduling or on the allocator.

    python3 dicts.py [SCALE]
"""
import hashlib
import queue
import random
import sys
import threading

SCALE = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
N = int(60000 * SCALE)


def build(seed):
    rnd = random.Random(seed)
    d = {}
    for i in range(N):
        k = "key-%09d-%d" % (rnd.randrange(10**9), i)
        d[k] = [rnd.random() for _ in range(rnd.randrange(1, 9))]
    by_sum = sorted(d.items(), key=lambda kv: (sum(kv[1]), kv[0]))
    words = sorted((k[::-1] for k in d), reverse=True)
    groups = {}
    for k, v in by_sum:
        groups.setdefault(len(v), []).append(k)
    text = " ".join(words[: N // 4])
    counts = {}
    for w in text.split("-"):
        counts[w[:3]] = counts.get(w[:3], 0) + 1
    h = hashlib.sha256()
    for k, v in by_sum[::97]:
        h.update(k.encode())
        h.update(repr(v).encode())
    for w in words[::101]:
        h.update(w.encode())
    h.update(repr(sorted(counts.items())).encode())
    return h.hexdigest()[:16], len(d), sorted((n, len(g)) for n, g in groups.items())


def producer(seed, q):
    rnd = random.Random(seed)
    for _ in range(N // 200):
        batch = {("p%d" % rnd.randrange(10**6)): bytes(rnd.randrange(200, 3000)) for _ in range(40)}
        q.put(batch)
    q.put(None)


def consumer(q, out, i):
    total, keys = 0, 0
    while True:
        batch = q.get()
        if batch is None:
            break
        keys += len(batch)
        total += sum(len(v) for v in batch.values())
    out[i] = (keys, total)


def main():
    results = [None] * 4
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, build(i))) for i in range(4)]
    queues = [queue.Queue(maxsize=64) for _ in range(2)]
    consumed = [None] * 2
    threads += [threading.Thread(target=producer, args=(100 + i, queues[i])) for i in range(2)]
    threads += [threading.Thread(target=consumer, args=(queues[i], consumed, i)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, r in enumerate(results):
        print("build", i, r[0], r[1], r[2])
    for i, c in enumerate(consumed):
        print("queue", i, c)
    big = sorted(range(N * 10), key=lambda x: (x * 7919) % 100003)
    print("sorted", sum(big[::1000]), len(big))


main()
