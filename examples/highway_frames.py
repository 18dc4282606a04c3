"""Drive highway-env with a trained sparserl agent (or at random): collision rate and a PNG strip.

    python examples/highway_frames.py --run runs/highway/dqn/highway-fast-v0/structured/seed0 \
        --episodes 20 --frames 6 --out road.png
    python examples/highway_frames.py --exported policy.npz --episodes 20   # numpy only, no torch

``--episodes N`` plays N evaluation episodes (greedy policy, no rendering) and prints the mean
return and the collision rate: the fraction of episodes that end with ``info["crashed"]``,
highway-env's flag for the ego vehicle hitting another one.  Then one more episode is rendered
(``render_mode="rgb_array"``) and ``--frames`` snapshots, one every ``--every`` steps, are saved
side by side as one PNG.  ``--exported`` drives with a policy written by ``sparserl export
--format npz`` (run by ``sparserl.runtime`` with numpy alone: the form that would ship to a
car's computer).  Without ``--run`` or ``--exported`` the actions are random (a baseline, and a
way to look at the road before training).  Works headless: highway-env's ``offscreen_rendering``
draws on a pygame surface without opening a window (do not set SDL_VIDEODRIVER=dummy: with it
highway-env skips drawing and the frames come out black).
"""
from __future__ import annotations

import argparse
import os

os.environ.setdefault("SDL_AUDIODRIVER", "dummy")  # pygame.init() would look for a sound card

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def make_policy(run_dir: str | None, env, exported: str | None = None):
    """Greedy action of an exported policy, of the run's checkpointed agent, or a random action."""
    if exported is not None:
        from sparserl.runtime import Policy  # numpy only: what an embedded deployment would run

        policy = Policy.load(exported)
        return lambda obs: int(np.asarray(policy.act(obs)).reshape(-1)[0])
    if run_dir is None:
        return lambda obs: env.action_space.sample()
    from sparserl.cli import load_agent

    _, agent, _ = load_agent(run_dir)
    return lambda obs: int(np.asarray(agent.act(obs)).reshape(-1)[0])


def play(env, policy, seed: int, frame_every: int = 0, max_frames: int = 0):
    """One episode: (return, crashed, frames) with a frame every ``frame_every`` steps."""
    obs, _ = env.reset(seed=seed)
    total, crashed, frames, t, done = 0.0, False, [], 0, False
    while not done:
        if max_frames and t % frame_every == 0 and len(frames) < max_frames:
            frames.append((t, env.render()))
        obs, reward, terminated, truncated, info = env.step(policy(obs))
        total += float(reward)
        crashed = crashed or bool(info.get("crashed", False))
        done = terminated or truncated
        t += 1
    if max_frames and len(frames) < max_frames:
        frames.append((t, env.render()))  # the last picture: where the episode ended
    return total, crashed, frames


def save_strip(frames, path: str, title: str) -> None:
    fig, axes = plt.subplots(len(frames), 1, figsize=(8, 1.6 * len(frames)), squeeze=False)
    for ax, (t, image) in zip(axes[:, 0], frames):
        ax.imshow(image)
        ax.set_title(f"step {t}", fontsize=8, loc="left")
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    policy_source = p.add_mutually_exclusive_group()  # default: random actions
    policy_source.add_argument("--run", help="sparserl run directory (holds checkpoint.pt)")
    policy_source.add_argument("--exported", help="a policy.npz from `sparserl export` (driven by numpy alone)")
    p.add_argument("--env", default="highway-fast-v0")
    p.add_argument("--episodes", type=int, default=10, help="evaluation episodes for the collision rate")
    p.add_argument("--frames", type=int, default=6, help="snapshots in the PNG (0: no PNG)")
    p.add_argument("--every", type=int, default=3, help="env steps between snapshots")
    p.add_argument("--seed", type=int, default=1000, help="first episode seed (evaluation seeds)")
    p.add_argument("--out", default="highway_frames.png")
    args = p.parse_args(argv)
    if args.episodes < 0 or args.frames < 0 or args.every < 1:
        p.error("--episodes and --frames must be >= 0 and --every >= 1")

    from sparserl.envs import make_env  # registers highway-env's ids on first use

    env = make_env(args.env)
    policy = make_policy(args.run, env, args.exported)
    results = [play(env, policy, args.seed + i)[:2] for i in range(args.episodes)]
    who = args.exported or args.run or "random actions"
    if results:
        returns, crashes = np.array([r for r, _ in results]), np.array([c for _, c in results])
        print(f"{who}: return {returns.mean():.2f} +- {returns.std():.2f}, "
              f"collision rate {crashes.mean():.2f} ({int(crashes.sum())}/{len(crashes)} episodes)")
    if args.frames:
        # through make_env, so the observation is flattened exactly as the agent saw it in training
        shown = make_env(args.env, kwargs={"render_mode": "rgb_array", "config": {"offscreen_rendering": True}})
        ret, crashed, frames = play(shown, policy, args.seed + args.episodes, args.every, args.frames)
        save_strip(frames, args.out, f"{args.env} - {who} - return {ret:.1f}" + (" - crashed" if crashed else ""))
        print(f"wrote {args.out} ({len(frames)} frames)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
