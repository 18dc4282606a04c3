"""Methods own their options (issue 23 item 1): typed option blocks, one builder, register_method."""
import dataclasses

import pytest
import yaml

from sparserl.cli import main
from sparserl.config import FIELDS, TrainConfig, resolve
from sparserl.errors import UserError
from sparserl.methods import METHODS, REGISTRY, method_class, register_method
from sparserl.methods.options import BLOCKS, OptionBlock
from sparserl.methods.sparse import RigL
from sparserl.validation import POSITIVE_REAL, option


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_option_is_declared_once_with_help_and_reaches_the_config(name):
    method = method_class(name)
    for f in dataclasses.fields(method.Options):
        assert f.metadata["help"], f.name
        # the config's field is the block's declaration (same default, help, allowed values)
        assert FIELDS[f.name].metadata == f.metadata and FIELDS[f.name].default == f.default
    # each option is declared in exactly one block
    names = [f.name for block in BLOCKS for f in dataclasses.fields(block)]
    assert len(names) == len(set(names))


def test_a_method_reads_only_its_own_blocks():
    rigl = {f.name for f in dataclasses.fields(method_class("rigl").Options)}
    structured = {f.name for f in dataclasses.fields(method_class("structured").Options)}
    assert "topology_delta" in rigl and "reg_lambda" not in rigl
    assert "reg_lambda" in structured and "topology_delta" not in structured
    cfg = resolve(TrainConfig(method="rlx2", steps=5000, topology_delta=123))
    block = cfg.method_block()
    assert isinstance(block, method_class("rlx2").Options)
    assert (block.topology_delta, block.nstep, block.dynamic_buffer) == (123, 3, True)


def test_method_defaults_fill_only_unset_options():
    assert resolve(TrainConfig(method="static", steps=5000)).mask_init == "random"
    assert resolve(TrainConfig(method="rigl", steps=5000)).mask_init == "magnitude"
    assert resolve(TrainConfig(method="rlx2", steps=5000, nstep=2)).nstep == 2
    with pytest.raises(UserError, match="unknown option"):
        method_class("rigl").from_options("caller", reg_lambda=1.0)


@dataclasses.dataclass
class _ScaleOptions(OptionBlock):
    SECTION = "custom"
    growth_scale: float = option(1.0, "a made-up option of a registered method", check=POSITIVE_REAL)


class _ScaledRigL(RigL):
    name = "scaled-rigl"
    summary_line = "rigl with a made-up option (test)"
    OPTION_BLOCKS = (_ScaleOptions, *RigL.OPTION_BLOCKS)


@pytest.fixture
def registered():
    register_method(_ScaledRigL)
    yield _ScaledRigL
    REGISTRY.pop(_ScaledRigL.name)


def test_register_method_runs_through_the_cli_with_its_own_options(registered, tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", "--algo", "dqn", "--env", "CartPole-v1", "--method", "scaled-rigl", "--steps", "300",
               "--eval-every", "0", "--eval-episodes", "1", "--hidden", "16", "16", "--topology-delta", "20",
               "--method-options", "{growth_scale: 2.5}", "--out", str(out), "--no-progress", "--no-tensorboard"])
    assert rc == 0, capsys.readouterr().err
    stored = yaml.safe_load((out / "config.yaml").read_text())
    assert stored["method"] == "scaled-rigl" and stored["method_options"] == {"growth_scale": 2.5}
    cfg = resolve(TrainConfig.from_dict(stored))
    assert cfg.method_block().growth_scale == 2.5 and cfg.method_block().topology_delta == 20
    assert "scaled-rigl" in METHODS
    # a bad value of the new option: one line, exit 2
    rc = main(["train", "--method", "scaled-rigl", "--method-options", "{growth_scale: -1}", "--steps", "300",
               "--out", str(tmp_path / "bad")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and "--growth-scale -1" in err and "> 0" in err


def test_register_method_refuses_what_it_cannot_register():
    with pytest.raises(UserError, match="subclass of sparserl.methods.Method"):
        register_method(dict)

    class Taken(RigL):
        name = "rigl"
    with pytest.raises(UserError, match="taken"):
        register_method(Taken)


def test_method_options_of_a_builtin_method_are_refused(tmp_path, capsys):
    rc = main(["train", "--method", "rigl", "--method-options", "{topology_delta: 5}", "--steps", "300",
               "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "unknown option(s) topology_delta" in err


def test_a_config_yaml_of_the_previous_layout_still_evaluates_exports_and_resumes(tmp_path, capsys):
    """The previous layout had no ``method_options`` key: a run with it removed from its config.yaml
    still evaluates, exports and resumes."""
    out = tmp_path / "old"
    base = ["--algo", "dqn", "--env", "CartPole-v1", "--method", "rigl", "--hidden", "16", "16", "--eval-every",
            "0", "--eval-episodes", "1", "--checkpoint-every", "200", "--topology-delta", "20", "--no-progress",
            "--no-tensorboard"]
    assert main(["train", *base, "--steps", "400", "--out", str(out)]) == 0
    path = out / "config.yaml"
    data = yaml.safe_load(path.read_text())
    data.pop("method_options")
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    capsys.readouterr()
    assert main(["eval", str(out), "--episodes", "1"]) == 0
    assert main(["export", str(out), "--format", "npz", "--out", str(tmp_path / "p.npz")]) == 0
    assert (tmp_path / "p.npz").exists()
    assert main(["train", "--resume", str(out), "--steps", "600"]) == 0
    summary = yaml.safe_load((out / "summary.json").read_text())
    assert summary["steps"] == 600
