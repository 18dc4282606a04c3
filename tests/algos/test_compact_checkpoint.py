"""Sparse checkpoints are stored compactly (non-zero values + a bit mask) and load back bit for
bit: a highly sparse run's checkpoint.pt is smaller than a dense run's, and loading, eval
and resume see exactly the tensors that were saved."""
import pytest
import torch

from sparserl import checkpoint
from sparserl.errors import UserError
from sparserl.cli import load_agent
from sparserl.trainer import Trainer

from algo_helpers import tiny_config
from test_resume import assert_same


def _sparse_tensor(shape, density, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(shape, generator=g).to(dtype)
    return t * (torch.rand(shape, generator=g) < density)


def test_compact_round_trip_is_bit_exact(tmp_path):
    sparse = _sparse_tensor((64, 48), 0.05)
    sparse[0, :3] = torch.tensor([-0.0, float("nan"), float("inf")])  # sign of zero, NaN, inf survive
    state = {"w": sparse, "half": _sparse_tensor((40, 40), 0.02, torch.bfloat16, seed=1),
             "dense": torch.randn(32, 32), "ints": torch.zeros(300, dtype=torch.int64),
             "small": torch.zeros(3), "nested": [(_sparse_tensor((512,), 0.1, seed=2), 7, "x")]}
    packed = checkpoint.compact(state)
    assert checkpoint.COMPACT_KEY in packed["w"] and checkpoint.COMPACT_KEY in packed["half"]
    assert checkpoint.COMPACT_KEY in packed["nested"][0][0]
    for kept in ("dense", "ints", "small"):  # dense, integer and tiny tensors are stored as they are
        assert packed[kept] is state[kept]
    checkpoint.save(packed, tmp_path / "c.pt")
    loaded = checkpoint.load(tmp_path / "c.pt")
    assert torch.equal(loaded["w"].view(torch.int32), sparse.view(torch.int32))  # bit for bit (-0.0, NaN)
    assert torch.signbit(loaded["w"][0, 0])
    assert_same({k: v for k, v in loaded.items() if k != "w"}, {k: v for k, v in state.items() if k != "w"})


@pytest.fixture(scope="module")
def dense_and_sparse_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("compact")
    runs = {}
    for name, overrides in (("dense", dict(method="dense")),
                            ("sparse", dict(method="static", actor_sparsity=0.98, critic_sparsity=0.98))):
        trainer = Trainer(tiny_config("td3", root / name, steps=150, hidden=[256, 256], **overrides))
        trainer.train()
        runs[name] = (root / name, trainer.agent)
    return runs


def test_sparse_checkpoint_is_smaller_than_dense(dense_and_sparse_runs):
    sizes = {name: (d / "checkpoint.pt").stat().st_size for name, (d, _) in dense_and_sparse_runs.items()}
    resume = {name: (d / "resume.pt").stat().st_size for name, (d, _) in dense_and_sparse_runs.items()}
    assert sizes["sparse"] < sizes["dense"] / 2, sizes
    assert resume["sparse"] < resume["dense"], resume


def test_compact_checkpoint_loads_the_trained_agent_exactly(dense_and_sparse_runs):
    run_dir, agent = dense_and_sparse_runs["sparse"]
    _, loaded, _ = load_agent(run_dir, with_env=False)
    for kind in ("networks", "targets"):
        assert_same(loaded.state_dict()[kind], agent.state_dict()[kind], kind)
    stored = checkpoint.load(run_dir / "resume.pt")["agent"]
    assert_same(stored, agent.state_dict(), "resume.agent")  # optimizer moments included


def test_the_content_hash_covers_the_compact_records(tmp_path):
    """The hash is of what is stored: one flipped bit in a record's values or mask is refused
    before anything is expanded; a record that does not add up in a file without a hash is one
    line, not a traceback."""
    state = {"w": _sparse_tensor((64, 48), 0.05), "step": 3}
    checkpoint.save(checkpoint.compact(state), tmp_path / "c.pt")
    stored = torch.load(tmp_path / "c.pt", weights_only=True)
    assert stored[checkpoint.HASH_KEY] == checkpoint.content_hash(stored)
    for part in ("values", "mask"):
        damaged = {**stored, "w": dict(stored["w"])}
        flat = damaged["w"][part].clone()
        flat.view(torch.uint8)[0] ^= 1
        damaged["w"][part] = flat
        torch.save(damaged, tmp_path / f"{part}.pt")
        with pytest.raises(UserError, match="fails its content check") as info:
            checkpoint.load(tmp_path / f"{part}.pt")
        assert len(str(info.value).splitlines()) == 1
    short = {k: v for k, v in stored.items() if k != checkpoint.HASH_KEY}
    short["w"] = {**stored["w"], "values": stored["w"]["values"][:-1]}
    torch.save(short, tmp_path / "short.pt")
    with pytest.raises(UserError, match="compactly stored tensor in it is malformed") as info:
        checkpoint.load(tmp_path / "short.pt")
    assert len(str(info.value).splitlines()) == 1
