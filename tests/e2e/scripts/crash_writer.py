"""Writer for the crash rounds (tests/e2e/durability.rs).

Appends numbered records with fsync and acknowledges each one in a file
outside the mount only after fsync returned; overwrites random ranges of a
file; shuffles files between two directories; and saves `save.txt`
editor-style (write a temp file, rename over, no fsync). Runs until the
daemon dies under it.
"""
import os
import random
import sys

mnt, ack_path, rnd = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = random.Random(rnd)
log = os.open(f"{mnt}/log-{rnd}", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
ack = open(ack_path, "a")
for d in ("d1", "d2"):
    os.makedirs(f"{mnt}/{d}", exist_ok=True)
big = f"{mnt}/rand.dat"
if not os.path.exists(big):
    with open(big, "wb") as f:
        f.write(b"\0" * (1 << 20))
n = 0
while True:
    os.write(log, f"r{rnd}-{n:06d}\n".encode())
    os.fsync(log)
    ack.write(f"{rnd} {n}\n")
    ack.flush()
    os.fsync(ack.fileno())
    n += 1
    with open(big, "r+b") as f:
        f.seek(rng.randrange(0, 1 << 20))
        f.write(os.urandom(rng.randrange(1, 70000)))
    name = f"f{rng.randrange(20)}"
    src, dst = rng.sample(["d1", "d2"], 2)
    try:
        os.rename(f"{mnt}/{src}/{name}", f"{mnt}/{dst}/{name}")
    except FileNotFoundError:
        with open(f"{mnt}/{src}/{name}", "w") as f:
            f.write(name * 1000)
    data = f"version {rnd}.{n}\n".encode() * 3000
    with open(f"{mnt}/save.tmp", "wb") as f:
        f.write(data)
    os.rename(f"{mnt}/save.tmp", f"{mnt}/save.txt")
