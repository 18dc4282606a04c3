"""The issue-14 structured-pruning options travel from TrainConfig to every pruner, and bad
values are one-line user errors."""
import pytest

from sparserl.config import TrainConfig, resolve
from sparserl.errors import UserError
from sparserl.trainer import Trainer


def test_options_reach_every_pruner(tmp_path):
    cfg = resolve(TrainConfig(algo="td3", env="Pendulum-v1", method="structured", steps=200, learning_starts=100,
                              hidden=[16, 16], batch_size=16, eval_every=0, eval_episodes=1, checkpoint_every=0,
                              progress=False, tensorboard=False, out=str(tmp_path), threshold_scope="global",
                              threshold_rule="cubic", recovery_reg_scale=0.0, prune_end=0.5))
    trainer = Trainer(cfg)
    pruners = [p for plugins in trainer.agent.plugins.values() for plugin in plugins
               for p in plugin.pruners.values()]
    assert len(pruners) == 3  # actor and both critics
    for p in pruners:
        assert (p.schedule.scope, p.schedule.rule, p.schedule.recovery_reg_scale) == ("global", "cubic", 0.0)
    critic = trainer.agent.plugins["critic"][0].pruners
    # 100 critic updates (200 steps - 100 warm-up); recovery after update 50
    assert all(p.schedule.end == 50 and p.schedule.in_recovery(51) for p in critic.values())


@pytest.mark.parametrize("field,value,match", [
    ("threshold_scope", "model", "threshold-scope"),
    ("threshold_rule", "linear", "threshold-rule"),
    ("recovery_reg_scale", -0.5, "recovery-reg-scale"),
])
def test_bad_values_are_user_errors(field, value, match):
    with pytest.raises(UserError, match=match):
        resolve(TrainConfig(algo="dqn", env="CartPole-v1", **{field: value}))
