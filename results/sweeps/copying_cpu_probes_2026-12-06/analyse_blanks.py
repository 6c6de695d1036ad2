"""What a trained copying RIM does during the blanks (the analysis in ../copying_probes.md).

    OMP_NUM_THREADS=1 python analyse_blanks.py CHECKPOINT.pt

For test delays 50, 200 and 400 (300 sequences each, the test seeds of ``copying.evaluate``): accuracy per
copied digit, how often the active set switches during the blanks, and, at T = 400 (100 sequences), the mean
size of each module's step |h_t - h_(t-1)| at a few steps of the wait.
"""

import sys

import torch

from minirims.experiments import copying as cp

torch.set_num_threads(1)
ckpt = torch.load(sys.argv[1], map_location="cpu", weights_only=False)
settings = dict(ckpt["settings"], compile=False)
model = cp.make_model("rim", settings)
model.load_state_dict(ckpt["best_state"])
model.eval()
n = model.core.n_modules
for delay in (50, 200, 400):
    tokens, targets = cp.copying_batch(300, delay, torch.Generator().manual_seed(12345 + delay))
    with torch.no_grad():
        logits, trace = model(tokens, trace=True)
    ok = (logits[:, -10:].argmax(-1) == targets[:, -10:]).float()
    blank = trace.masks[:, 10 : 10 + delay - 1]  # (B, delay - 1, n)
    switched = (blank[:, 1:] != blank[:, :-1]).any(-1)  # (B, delay - 2)
    per_digit = [round(100 * v) for v in ok.mean(0).tolist()]
    print(f"T={delay}: accuracy {100 * ok.mean():.1f}%, per digit {per_digit}")
    print(
        f"  switches of the active set per sequence: {switched.float().sum(1).mean():.2f} in all, "
        f"{switched[:, 30:].float().sum(1).mean():.2f} after the 30th blank"
    )
    share = [round(v, 2) for v in blank.float().mean((0, 1)).tolist()]
    print(f"  share of blank steps each module is active: {share}")
    if delay == 400:
        with torch.no_grad():
            out, _, _ = model.core(model.embed(tokens[:100]))
        h = out.view(100, out.shape[1], n, -1)
        step = (h[:, 1:] - h[:, :-1]).norm(dim=-1).mean(0)  # (L - 1, n)
        for t in (12, 20, 40, 60, 100, 200, 300, 400):
            print(f"  step {t:3d}: mean |h_t - h_(t-1)| per module {[f'{v:.4f}' for v in step[t].tolist()]}")
