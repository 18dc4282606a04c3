"""``final_eval_episodes``: the evaluation at the last step (the reported final return) may use
more episodes than the ones along the curve (issue 22: a final return over >= 30 episodes)."""
import pytest
import yaml

import sparserl.trainer as trainer_module
from sparserl.trainer import Trainer

from algo_helpers import tiny_config


@pytest.mark.parametrize("final_episodes, expected_last", [(None, 1), (3, 3)])
def test_final_evaluation_uses_its_own_episode_count(tmp_path, monkeypatch, final_episodes, expected_last):
    calls = []
    real = trainer_module.evaluate

    def counting(agent, env, episodes, *rest):
        calls.append(episodes)
        return real(agent, env, episodes, *rest)

    monkeypatch.setattr(trainer_module, "evaluate", counting)
    cfg = tiny_config("dqn", tmp_path, steps=300, eval_every=100, eval_episodes=1,
                      final_eval_episodes=final_episodes)
    summary = Trainer(cfg).train()
    assert calls == [1, 1, expected_last]
    assert summary["final_eval_return"] == summary["final_eval_return"]  # a number, not NaN
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["final_eval_episodes"] == final_episodes
