"""Copy standard input to standard output, each line headed by the UTC time of its arrival
(HH:MM:SS.mmm): the raw logs of the GPU benchmarks (gpu_book.sh, gpu_parallel.sh)."""

import sys
import time

for line in sys.stdin:
    now = time.time()
    print(time.strftime("%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}", line, end="")
    sys.stdout.flush()
