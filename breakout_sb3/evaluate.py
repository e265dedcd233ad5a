"""Play full games with a trained model and report the game score."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.utils import set_random_seed

from breakout_sb3.devices import check_device
from breakout_sb3.env import check_env_id, make_env, run_hyperparams, sticky_actions
from breakout_sb3.errors import BreakoutSB3Error
from breakout_sb3.model_files import load_model, resolve_model
from breakout_sb3.outputs import check_output_path
from breakout_sb3.settings import EVALUATE
from callbacks.atomic import atomic_write

# The DQN papers' 0.05 (breakout_sb3.settings says why)
DEFAULT_EVAL_EPSILON: float = EVALUATE["--epsilon"].default


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
    # sticky actions: the probability that the emulator repeats the previous action (None: not an ALE game)
    repeat_action_probability: float | None = None

    def summary(self) -> str:
        sticky_actions = self.repeat_action_probability
        sticky = "" if sticky_actions is None else f", sticky actions {sticky_actions:g}"
        return (
            f"{self.model}: {self.episodes} games of {self.env_id}, epsilon {self.epsilon}, seed {self.seed}{sticky}\n"
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
    report: Callable[[EvaluationResult], None] | None = None,
) -> EvaluationResult:
    """
    Play ``episodes`` full games (all lives; the raw score recorded by SB3's ``Monitor``) with the model at
    ``path`` on the env stack it was trained on, choosing a random action with probability ``epsilon``.

    :param json_path: also write the result there as JSON (atomically); checked before a game is played
    :param report: called with the result before the JSON file is written (the CLI prints the summary), so that the
        scores are shown even if writing fails
    """
    if json_path is not None:
        check_output_path(json_path, "--json")
    check_env_id(env_id)
    model_path, run_dir = resolve_model(path, env_id)
    check_device(device, announce=True)
    set_random_seed(seed)
    env = make_env(env_id, run_hyperparams(run_dir, env_id), seed=seed)
    sticky = sticky_actions(env)
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
        repeat_action_probability=sticky,
    )
    if report is not None:
        report(result)
    if json_path is not None:
        _write_json(result, Path(json_path))
    return result


def _write_json(result: EvaluationResult, path: Path) -> None:
    data = (json.dumps(asdict(result), indent=2) + "\n").encode()
    try:
        atomic_write(path, lambda f: f.write(data))
    except OSError as e:
        # The games are played: their scores go into the message rather than being lost with the file.
        scores = ", ".join(f"{s:g}" for s in result.scores)
        raise BreakoutSB3Error(
            f"--json {path}: cannot write ({e.strerror or e}); scores {scores} (mean {result.mean:.2f})"
        ) from None
