"""Play full games with a trained model and report the game score."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.utils import set_random_seed

from breakout_sb3.env import check_env_id, make_env, run_hyperparams
from breakout_sb3.models import load_model, resolve_model
from breakout_sb3.ranges import PLAY_FLAGS, check_flags

# The DQN papers (Mnih et al. 2015) evaluate with epsilon 0.05: a fully greedy Breakout agent can stall forever
# once it stops pressing FIRE or loops, and 0.05 makes scores comparable with the published ones.
DEFAULT_EVAL_EPSILON = 0.05


@dataclass
class EvaluationResult:
    model: str
    env_id: str
    episodes: int
    seed: int
    epsilon: float
    scores: list[float]
    mean: float
    std: float
    min: float
    max: float

    def summary(self) -> str:
        return (
            f"{self.model}: {self.episodes} games of {self.env_id}, epsilon {self.epsilon}, seed {self.seed}\n"
            f"score {self.mean:.2f} ± {self.std:.2f} (min {self.min:g}, max {self.max:g})"
        )


def evaluate(
    path: str | Path,
    env_id: str,
    episodes: int = 10,
    seed: int = 0,
    epsilon: float = DEFAULT_EVAL_EPSILON,
    device: str = "auto",
    json_path: str | Path | None = None,
) -> EvaluationResult:
    """
    Play ``episodes`` full games (all lives; the raw score recorded by SB3's ``Monitor``) with the model at
    ``path`` on the env stack it was trained on, choosing a random action with probability ``epsilon``.
    """
    check_flags({"--episodes": episodes, "--seed": seed, "--epsilon": epsilon}, PLAY_FLAGS, "evaluate")
    check_env_id(env_id)
    model_path, run_dir = resolve_model(path, env_id)
    set_random_seed(seed)
    env = make_env(env_id, run_hyperparams(run_dir, env_id), seed=seed)
    try:
        model = load_model(model_path, env, device)
        model.exploration_rate = epsilon
        scores, _ = evaluate_policy(
            model,
            model.get_env(),
            n_eval_episodes=episodes,
            deterministic=epsilon == 0.0,
            return_episode_rewards=True,
        )
    finally:
        env.close()
    scores = [float(s) for s in scores]
    result = EvaluationResult(
        model=str(model_path),
        env_id=env_id,
        episodes=episodes,
        seed=seed,
        epsilon=epsilon,
        scores=scores,
        mean=float(np.mean(scores)),
        std=float(np.std(scores)),
        min=float(np.min(scores)),
        max=float(np.max(scores)),
    )
    if json_path is not None:
        Path(json_path).write_text(json.dumps(asdict(result), indent=2) + "\n")
    return result
