"""The balls encoder + decoder alone (fwd + bwd) at batch 16 and 240, oneDNN on and off.

Ran (tidied for ruff only) on the working tree of 13e1ff2, before the encoder/decoder became channels-last
in the package (8123e7f): on later code the base variants are channels-last already. Outputs: outputs.txt.
"""

import statistics
import sys
import time

import torch

from minirims.experiments.video import FrameDecoder, FrameEncoder

torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 1)

torch.manual_seed(0)
enc = FrameEncoder(32, 256, (16, 32, 64))
dec = FrameDecoder(600, 32, (16, 32, 64))


def step(b):
    x = torch.rand(b, 1, 32, 32)
    z = torch.randn(b, 600)
    y = enc(x).sum() + dec(z).sum()
    y.backward()


res = {}
for b in (16, 240):
    for _rnd in range(5):
        for mk in (True, False):
            torch.backends.mkldnn.enabled = mk
            for _ in range(2):
                step(b)
            t = time.perf_counter()
            n = 20 if b == 16 else 3
            for _ in range(n):
                step(b)
            res.setdefault((b, mk), []).append((time.perf_counter() - t) / n * 1e3)
for k, v in res.items():
    print(k, "median ms", round(statistics.median(v), 2), [round(x, 2) for x in v])
