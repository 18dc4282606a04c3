"""Helpers for the algorithm tests: tiny, CPU-cheap run configurations."""
from sparserl.config import TrainConfig, resolve

# Per algorithm: an env of the right action type and a budget small enough for a unit test.
TINY = {
    "dqn": dict(env="CartPole-v1", learning_starts=100, train_freq=1, target_update_every=50),
    "td3": dict(env="Pendulum-v1", learning_starts=100),
    "sac": dict(env="Pendulum-v1", learning_starts=100),
}


def tiny_config(algo: str, out, **overrides) -> TrainConfig:
    """A resolved config: 64x64 networks, batch 32, no progress bar / TensorBoard, 1 thread."""
    kw = dict(algo=algo, steps=300, seed=0, out=str(out), eval_every=0, eval_episodes=1,
              checkpoint_every=0, progress=False, tensorboard=False, hidden=[64, 64], batch_size=32,
              torch_threads=1, **TINY[algo])
    kw.update(overrides)
    return resolve(TrainConfig(**kw))


