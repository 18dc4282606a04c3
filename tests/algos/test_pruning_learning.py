"""Learning tests for the pruning methods and the narrow dense baseline: a method must *learn*,
not only run (the guide's rule: every method has one).

Same budget and hyper-parameters as the dense TD3 learning test and the sparse ones
(tests/algos/test_sparse_learning.py: Pendulum-v1, 8k env steps, 64x64 networks, seed 0), same
threshold: a final return above -400, which an untrained policy (about -1200 to -1600) never has
and the dense run of this budget passes with a wide margin (-75 when chosen). Structured pruning
and neuron magnitude remove 75 % of every hidden layer's neurons (64 -> 16), GMP 70 % of the
weights (at 90 % it did not learn at this budget: final -947, and -1585 pruning over 30-70 %), 'tiny' narrows the layers to 30 % of the dense weight count.
"""
import pytest

from sparserl.trainer import Trainer

from algo_helpers import tiny_config
from test_sparse_learning import PENDULUM_THRESHOLD, TD3_BUDGET, _curve

pytestmark = pytest.mark.slow

CASES = {
    "structured": dict(target_neuron_fraction=0.75, prune_every=250),
    "neuron-magnitude": dict(target_neuron_fraction=0.75, prune_every=250),
    "gmp": dict(gmp_sparsity=0.7, prune_every=250),
    "tiny": dict(actor_sparsity=0.7, critic_sparsity=0.7),
}


# When chosen (seed 0, 2-core CPU): structured, neuron-magnitude and tiny passed; gmp at 70 % ended at -78.
@pytest.mark.parametrize("method", sorted(CASES))
def test_pruning_td3_learns_pendulum(tmp_path, method):
    summary = Trainer(tiny_config("td3", tmp_path, method=method, **CASES[method], **TD3_BUDGET)).train()
    curve = _curve(tmp_path)
    assert curve[0] < PENDULUM_THRESHOLD, f"the threshold must be above an untrained policy: {curve}"
    assert summary["final_eval_return"] > PENDULUM_THRESHOLD, f"{method} TD3 did not learn Pendulum: {curve}"
    if method in ("structured", "neuron-magnitude"):
        widths = {path: w for path, w in summary["architecture"].items()}
        assert all(w == [16, 16] for w in widths.values()), widths  # 64 - floor(0.75 * 64)
    elif method == "gmp":
        assert summary["sparsity"]["actor"] == pytest.approx(0.7, abs=0.01), summary["sparsity"]
