"""90%-sparse PPO on CartPole-v1 and SAC on Pendulum-v1 with Stable-Baselines3.

    pip install 'sparserl[sb3]'
    python examples/sb3_sparse.py                 # ~100k + 20k env steps (minutes on a laptop CPU)
    python examples/sb3_sparse.py --scale 0.01    # a quick check that everything runs

The only sparserl line per model is the callback: RigL keeps 10% of every Linear weight
matrix (ERK layer allocation) and moves connections during training; the saved zip is a plain
SB3 model whose masked weights are zeros.
"""
import argparse

from stable_baselines3 import PPO, SAC
from stable_baselines3.common.evaluation import evaluate_policy

from sparserl.integrations.sb3 import SparseTrainingCallback

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--scale", type=float, default=1.0, help="multiply the env-step budgets")
args = parser.parse_args()

ppo = PPO("MlpPolicy", "CartPole-v1", seed=0)
sparse = SparseTrainingCallback("rigl", sparsity=0.9)
ppo.learn(int(100_000 * args.scale), callback=sparse)
ppo.save("ppo_cartpole_rigl90")
print("PPO CartPole-v1:", {n: round(s.sparsity(), 3) for n, s in sparse.sparse.items()},
      "return %.1f +- %.1f" % evaluate_policy(ppo, ppo.get_env(), n_eval_episodes=10))

sac = SAC("MlpPolicy", "Pendulum-v1", learning_rate=1e-3, seed=0)
sparse = SparseTrainingCallback("rigl", sparsity=0.9)
sac.learn(int(20_000 * args.scale), callback=sparse)
sac.save("sac_pendulum_rigl90")
print("SAC Pendulum-v1:", {n: round(s.sparsity(), 3) for n, s in sparse.sparse.items()},
      "return %.1f +- %.1f" % evaluate_policy(sac, sac.get_env(), n_eval_episodes=10))
