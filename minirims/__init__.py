"""minirims: Recurrent Independent Mechanisms (Goyal et al., ICLR 2021) built from scratch in PyTorch.

The package has three rooms; dependencies point one way (``course`` and ``experiments`` use the core, the core
uses neither):

- ``minirims/`` itself: the from-scratch core, in the order the course notebooks build it.

  - :mod:`minirims.attention` (01): multi-head key-value attention.
  - :mod:`minirims.group` (02): one weight block per module, all modules in one batched op.
  - :mod:`minirims.competition` (03): input attention with a null slot, top-k activation.
  - :mod:`minirims.communication` (04): active modules read from all modules.
  - :mod:`minirims.cell` (05): the RIM cell (one time step).
  - :mod:`minirims.model` (05): the RIM sequence layer and the LSTM baseline.
  - :mod:`minirims.naive`: the cell as a loop over modules, the oracle both paths of the RIM are tested on.
  - :mod:`minirims.fast` (05): the RIM's time loop fused for speed; the same function, the default path.

- :mod:`minirims.course`: the exercise checks (one module per notebook), the figures, the grader.
- :mod:`minirims.experiments`: data (MNIST, bouncing balls), the training loop, the experiments' own models
  and one module per experiment (``python -m minirims <experiment>``).
"""

from minirims.attention import MultiHeadAttention, merge_heads, scaled_dot_product_attention, split_heads
from minirims.cell import RIMCell, RIMState, StepInfo
from minirims.communication import CommunicationAttention
from minirims.competition import CompetitionOutput, InputAttention, null_attention, topk_mask
from minirims.group import GroupGRUCell, GroupLinear, GroupLSTMCell
from minirims.model import RIM, LSTMBaseline, Trace

__version__ = "0.1.0"

__all__ = [
    "MultiHeadAttention",
    "merge_heads",
    "scaled_dot_product_attention",
    "split_heads",
    "GroupLinear",
    "GroupLSTMCell",
    "GroupGRUCell",
    "InputAttention",
    "CompetitionOutput",
    "null_attention",
    "topk_mask",
    "CommunicationAttention",
    "RIMCell",
    "RIMState",
    "StepInfo",
    "RIM",
    "LSTMBaseline",
    "Trace",
]
