"""Balls training step at encoder/decoder channels 16-32-64, 8-16-32, 12-24-48, each NCHW and channels-last.

Ran (tidied for ruff only) on the working tree of 13e1ff2, before the encoder/decoder became channels-last
in the package (8123e7f): on later code the base variants are channels-last already. Outputs: outputs.txt.
"""

import statistics
import sys
import time
import types

import torch

from minirims.experiments import bouncing_balls as bb
from minirims.experiments.video import rollout_loss

torch.set_num_threads(int(sys.argv[1]))

CL = torch.channels_last


def enc_fwd(self, frames):
    return self.fc(self.convs(frames.contiguous(memory_format=CL)))


def dec_fwd(self, z):
    x = self.fc(z).view(-1, self.top, self.side, self.side).contiguous(memory_format=CL)
    return self.deconvs(x).contiguous()


def build(name, ch, cl):
    s = bb.get_settings("cpu", channels=ch)
    torch.manual_seed(0)
    m = bb.build_model(name, s)
    if cl:
        m.encoder.convs.to(memory_format=CL)
        m.decoder.deconvs.to(memory_format=CL)
        m.encoder.forward = types.MethodType(enc_fwd, m.encoder)
        m.decoder.forward = types.MethodType(dec_fwd, m.decoder)
    return m, torch.optim.Adam(m.parameters(), 2e-3), sum(p.numel() for p in m.parameters())


g = torch.Generator().manual_seed(0)
frames = (torch.rand(16, 30, 1, 32, 32, generator=g) < 0.08).float()


def step(m, opt, _):
    loss, _ = rollout_loss(m, frames, 15)
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
    opt.step()


variants = {}
for n in sys.argv[2].split(","):
    for ch in [(16, 32, 64), (8, 16, 32), (12, 24, 48)]:
        for cl in (False, True):
            variants[(n, ch, cl)] = build(n, ch, cl)
for v in variants.values():
    step(*v)
    step(*v)
times = {k: [] for k in variants}
for _r in range(int(sys.argv[3])):
    for k, v in variants.items():
        t = time.perf_counter()
        step(*v)
        times[k].append(time.perf_counter() - t)
for k in times:
    base = statistics.median(times[(k[0], (16, 32, 64), False)])
    med = statistics.median(times[k])
    print(k, variants[k][2], f"{med * 1e3:.0f} ms  {med / base:.3f}x", flush=True)
