"""A/B: balls training step, base vs channels_last (+ compile for the RIM), interleaved, one process.

Ran (tidied for ruff only) on the working tree of 13e1ff2, before the encoder/decoder became channels-last
in the package (8123e7f): on later code the base variants are channels-last already. Outputs: outputs.txt.
"""

import json
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


def build(name, cl, comp):
    s = bb.get_settings("cpu", compile=comp)
    torch.manual_seed(0)
    m = bb.build_model(name, s)
    if cl:
        m.encoder.convs.to(memory_format=CL)
        m.decoder.deconvs.to(memory_format=CL)
        m.encoder.forward = types.MethodType(enc_fwd, m.encoder)
        m.decoder.forward = types.MethodType(dec_fwd, m.decoder)
    opt = torch.optim.Adam(m.parameters(), 2e-3)
    return m, opt


g = torch.Generator().manual_seed(0)
frames = (torch.rand(16, 30, 1, 32, 32, generator=g) < 0.08).float()


def step(m, opt):
    loss, _ = rollout_loss(m, frames, 15)
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
    opt.step()


names = sys.argv[2].split(",")
variants = {}
for n in names:
    variants[(n, "base")] = build(n, False, False)
    variants[(n, "cl")] = build(n, True, False)
    if n.startswith("rim"):
        variants[(n, "compile")] = build(n, False, True)
        variants[(n, "cl+compile")] = build(n, True, True)
for k, v in variants.items():
    t = time.perf_counter()
    step(*v)
    step(*v)
    print(k, "warm", round(time.perf_counter() - t, 1), flush=True)
times = {k: [] for k in variants}
for _r in range(int(sys.argv[3])):
    for k, v in variants.items():
        t = time.perf_counter()
        step(*v)
        times[k].append(time.perf_counter() - t)
out = {}
for n in names:
    b = statistics.median(times[(n, "base")])
    for k in times:
        if k[0] == n:
            med = statistics.median(times[k])
            out[f"{k[0]} {k[1]}"] = med
            print(k, f"{med * 1e3:.0f} ms  {med / b:.3f}x base", flush=True)
print(json.dumps(out))
