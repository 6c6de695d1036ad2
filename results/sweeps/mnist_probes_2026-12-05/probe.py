"""The MNIST probe behind `../mnist_probes.md` (second round): train one model for N steps, log accuracy.

The `cpu` profile with ``--set key=value`` overrides (values as JSON); a linear warm-up over the profile's
``warmup_steps`` to its ``lr``, then a cosine decay to 0 at ``--total`` (default ``--steps``); Adam with the
profile's gradient clipping. Validation on the first 1,000 validation digits every ``--eval-every`` steps; at
the end 1,000 test digits at 16/19/24. ``--learned-init S`` gives the core a learned initial state (h0, c0),
initialised N(0, S^2). ``--time-only N`` prints the mean time of steps 4..N and stops. Run from the repository
root, e.g. ``OMP_NUM_THREADS=1 python results/sweeps/mnist_probes_2026-12-05/probe.py --model rim-6-4
--steps 1600 --eval-every 400 --set batch_size=32 --out p2.json``.
"""

import argparse
import json
import sys
import time

import torch
import torch.nn.functional as F

from minirims.cell import RIMState
from minirims.experiments import mnist_resolution as mr
from minirims.experiments.train import TrainConfig, batch_indices, learning_rate

p = argparse.ArgumentParser()
p.add_argument("--model", default="rim-6-4")
p.add_argument("--steps", type=int, default=800)
p.add_argument("--total", type=int, default=None, help="schedule length (default steps)")
p.add_argument("--set", nargs="*", default=[])
p.add_argument("--seed", type=int, default=0)
p.add_argument("--eval-every", type=int, default=200)
p.add_argument("--out", default=None)
p.add_argument("--time-only", type=int, default=0)
p.add_argument("--learned-init", type=float, default=None)
a = p.parse_args()
ov = {}
for kv in a.set:
    k, v = kv.split("=")
    ov[k] = json.loads(v)
s = mr.profile_settings("cpu", **ov)
torch.manual_seed(a.seed)
model = mr.make_model(a.model, s)
if a.learned_init is not None:
    core = model.core
    rim = hasattr(core, "cell")
    shape = (core.n_modules, core.d_hidden) if rim else (core.d_hidden,)
    core.h0 = torch.nn.Parameter(a.learned_init * torch.randn(*shape))
    core.c0 = torch.nn.Parameter(a.learned_init * torch.randn(*shape))

    def tiled(b: int) -> tuple[torch.Tensor, torch.Tensor]:
        reps = (b, 1, 1) if rim else (b, 1)
        return core.h0.unsqueeze(0).repeat(*reps), core.c0.unsqueeze(0).repeat(*reps)

    if rim:
        core.initial_state = lambda b, device=None, dtype=None: RIMState(*tiled(b))
    else:
        plain_forward = core.forward
        core.forward = lambda x, state=None, trace=False: plain_forward(
            x, tiled(x.shape[0]) if state is None else state, trace
        )
nparam = sum(p.numel() for p in model.parameters())
xtr, ytr = mr._load_split("train", s["n_train"], 14)
xva, yva = mr._load_split("valid", 1000, 14)
opt = torch.optim.Adam(model.parameters(), lr=s["lr"])
total = a.total or a.steps
schedule = TrainConfig(epochs=1, lr=s["lr"], lr_schedule="cosine", warmup_steps=s["warmup_steps"])
bs = s["batch_size"]
idx: list[torch.Tensor] = []
ep = 0
log = {"model": a.model, "overrides": ov, "params": nparam, "evals": []}
print(a.model, ov, "params", nparam, flush=True)
t0 = tl = time.perf_counter()
losses: list[float] = []
for t in range(a.steps):
    if not idx:
        idx = list(batch_indices(len(ytr), bs, a.seed, ep))
        ep += 1
    i = idx.pop(0)
    for g in opt.param_groups:
        g["lr"] = learning_rate(schedule, t, total)
    logits = model(xtr[i])
    loss = F.cross_entropy(logits, ytr[i])
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), s["grad_clip"])
    opt.step()
    losses.append(loss.item())
    if a.time_only and t + 1 == 3:
        t3 = time.perf_counter()
    if a.time_only and t + 1 == a.time_only:
        dt = (time.perf_counter() - t3) / (a.time_only - 3)
        print(f"TIME {a.model} {ov} {dt * 1000:.0f} ms/step", flush=True)
        sys.exit(0)
    if (t + 1) % a.eval_every == 0 or t + 1 == a.steps:
        va = mr.evaluate_accuracy(model, xva, yva, 500)
        now = time.perf_counter()
        recent = losses[-100:]
        e = {
            "step": t + 1,
            "val": round(100 * va, 1),
            "ce": round(sum(recent) / len(recent), 3),
            "s_per_step": round((now - tl) / a.eval_every, 3),
            "elapsed": round(now - t0),
        }
        tl = now
        log["evals"].append(e)
        print(e, flush=True)
res = {}
for size in (16, 19, 24):
    x, y = mr._load_split("test", 1000, size)
    res[size] = round(100 * mr.evaluate_accuracy(model, x, y, 500), 1)
log["test"] = res
print("TEST", res, flush=True)
if a.out:
    with open(a.out, "w") as f:
        json.dump(log, f, indent=1)
