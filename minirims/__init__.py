"""minirims: Recurrent Independent Mechanisms (Goyal et al., ICLR 2021) built from scratch in PyTorch.

Read the package in this order; it follows the course notebooks:

- :mod:`minirims.attention`: multi-head key-value attention.
- :mod:`minirims.group`: one weight block per module, all modules in one batched op.
- :mod:`minirims.competition`: input attention with a null slot, top-k activation.
- :mod:`minirims.communication`: active modules read from all modules.
- :mod:`minirims.cell`: the RIM cell (one time step).
- :mod:`minirims.model`: the RIM sequence layer and the LSTM baseline.
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
