"""Make the repository root importable when pytest runs without an installed package."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import torch  # noqa: E402

# Tiny networks: one thread is fastest and avoids oversubscribing a shared machine.
torch.set_num_threads(1)
