"""
Every value a user types, declared once: each key of the YAML breakout-sb3 checks and each flag of each command,
with its type and range (a pydantic-annotated type, ``callbacks.validation``'s vocabulary), its default and its help
line.

The commands' argparse arguments and help (:mod:`breakout_sb3.flags`), the range checks (:mod:`breakout_sb3.ranges`)
and the defaults the code uses are read from these tables. rl-zoo3's own train flags are defined by rl-zoo3's
parser: only the ranges breakout-sb3 checks on them, and the recipe's defaults, are declared here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field

from breakout_sb3 import ENV_ID
from breakout_sb3.precision import FLOAT32, PRECISIONS
from callbacks.validation import FiniteFloat, NonNegativeInt, PositiveFloat, PositiveInt, Probability


@dataclass(frozen=True)
class Setting:
    """
    One value a user types: a key of the YAML or a flag (or positional argument) of a command.

    :param annotation: its type and allowed range, a pydantic-annotated type; ``bool``: a switch, ``list[T]``: one
        or more values, ``list[list[T]]``: a flag that may be repeated
    :param default: its value when it is not given (None: none, or another's, which the help line names)
    :param help: its help line; ``%(default)s`` (or ``%(default)g``) is replaced by the default, as argparse does
    :param metavar: the name of its value in the help
    :param aliases: its other spellings (``-n``)
    """

    annotation: Any
    default: Any = None
    help: str = ""
    metavar: str | None = None
    aliases: tuple[str, ...] = ()

    def help_line(self) -> str:
        """:return: the help line with the default written in"""
        return self.help % {"default": self.default}


# NatureCNN (CnnPolicy) needs at least 36x36 pixels: 8x8/4, 4x4/2 and 3x3/1 convolutions leave 1x1.
ScreenSize = Annotated[int, Field(ge=36, le=1024)]
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]  # numpy's seeds
EnvCount = Annotated[int, Field(ge=1, le=1024)]
# rl-zoo3 YAMLs often write `n_timesteps: !!float 1e7`
Timesteps = Annotated[float, Field(ge=1, allow_inf_nan=False)]

# --- The YAML: an rl-zoo3 entry (hyperparams/dqn.yml) and `-params` ---------------------------------------------

# Constructor arguments of SB3's DQN whose range breakout-sb3 checks (their types are read from the constructor's
# annotations; None: SB3's default).
DQN_KEYS: dict[str, Setting] = {
    "learning_rate": Setting(PositiveFloat, help="Adam's step size, or 'lin_<number>' (a linear schedule)"),
    "gamma": Setting(Probability, help="the discount factor"),
    "batch_size": Setting(PositiveInt, help="transitions per gradient step"),
    "buffer_size": Setting(PositiveInt, help="transitions the replay buffer holds"),
    "train_freq": Setting(PositiveInt, help="env steps between updates, or [n, 'step' | 'episode']"),
    # SB3: -1 = as many as the env steps of the rollout
    "gradient_steps": Setting(PositiveInt | Literal[-1], help="gradient steps per update (-1: one per env step)"),
    "target_update_interval": Setting(PositiveInt, help="env steps between target network updates"),
    "learning_starts": Setting(NonNegativeInt, help="env steps before the first update"),
    "max_grad_norm": Setting(PositiveFloat, help="the gradients' norm is clipped to this"),
    "tau": Setting(Probability, help="the soft update coefficient of the target network (1: a hard copy)"),
    "exploration_fraction": Setting(Probability, help="the part of training over which epsilon decays"),
    "exploration_initial_eps": Setting(Probability, help="epsilon at the start"),
    "exploration_final_eps": Setting(Probability, help="epsilon at the end of the decay"),
    "stats_window_size": Setting(PositiveInt, help="episodes in SB3's rollout/ep_rew_mean"),
    "n_steps": Setting(PositiveInt, help="n-step returns (SB3's NStepReplayBuffer)"),
}
# FastDQN launches its gradient steps during the rollout's last env step: a fixed number of them.
FAST_DQN_KEYS: dict[str, Setting] = {
    **DQN_KEYS,
    "gradient_steps": Setting(PositiveInt, help="gradient steps per update"),
    # its FrameStackReplayBuffer has no n-step returns (SB3 would only warn and ignore it)
    "n_steps": Setting(Literal[1], help="1: FastDQN's replay buffer has no n-step returns"),
    "overlap_env": Setting(bool, help="step the games while the update runs"),
    "cuda_graph": Setting(bool, help="capture the update in a CUDA graph"),
}
# Keys rl-zoo3's ExperimentManager consumes itself; the others go to the algorithm's constructor.
ZOO_KEYS: dict[str, Setting] = {
    "n_timesteps": Setting(Timesteps, help="agent steps of the run"),
    "n_envs": Setting(EnvCount, 1, help="games stepped together"),
    "frame_stack": Setting(PositiveInt, 1, help="frames stacked into one observation"),
    "env_wrapper": Setting(str | list | dict, help="gymnasium wrappers: an import path, {path: kwargs}, or a list"),
    "vec_env_wrapper": Setting(str | list | dict, help="SB3 VecEnv wrappers, written as env_wrapper"),
    "callback": Setting(str | list | dict, help="SB3 callbacks, written as env_wrapper"),
    "normalize": Setting(bool | str | dict, help="VecNormalize, and its kwargs"),
    "env_kwargs": Setting(dict, help="the env's kwargs"),
    "monitor_kwargs": Setting(dict | str, help="Monitor's kwargs"),
    "noise_type": Setting(str, help="action noise (off-policy continuous actions)"),
    "noise_std": Setting(float, help="the action noise's standard deviation"),
}
# Keys breakout-sb3's ExperimentManager consumes (hyperparams/dqn.yml's fast entry).
BREAKOUT_SB3_KEYS: dict[str, Setting] = {
    "vec_env": Setting(Literal["sb3", "ale"], "sb3", help="sb3: SB3's vector env, ale: ale-py's (the fast one)"),
}
# `env_kwargs`: ale-py's AtariEnv arguments (None: the env id's own).
ENV_KWARGS: dict[str, Setting] = {
    "max_episode_steps": Setting(PositiveInt, help="emulator frames after which a game is cut"),
    # ale-py: fixed, or uniform in [low, high)
    "frameskip": Setting(PositiveInt | tuple[PositiveInt, PositiveInt], help="emulator frames per env step"),
    "repeat_action_probability": Setting(Probability, help="sticky actions: the emulator repeats the last action"),
}
# The kwargs of SB3's AtariWrapper in `env_wrapper`; the defaults are AtariWrapper's.
ATARI_WRAPPER_KWARGS: dict[str, Setting] = {
    "noop_max": Setting(NonNegativeInt, 30, help="up to this many no-op actions after a reset"),
    "frame_skip": Setting(PositiveInt, 4, help="emulator frames per agent step, the last two max-pooled"),
    "screen_size": Setting(ScreenSize, 84, help="observations are screen_size x screen_size grey frames"),
    "terminal_on_life_loss": Setting(bool, True, help="a life lost ends the episode for the agent"),
    "clip_reward": Setting(bool, True, help="rewards clipped to their sign"),
    "action_repeat_probability": Setting(Probability, 0.0, help="sticky actions, applied by the wrapper"),
}

# --- The commands' flags ------------------------------------------------------------------------------------------

# `breakout-sb3 train`'s own flags
TRAIN: dict[str, Setting] = {
    "--fast": Setting(
        bool,
        False,
        "the fast configuration: FastDQN on ale-py's vector env, the YAML's <env>-fast entry (or atari-fast): the "
        "recipe, run fast",
    ),
    "--precision": Setting(
        Literal[PRECISIONS],
        FLOAT32,
        "the update's arithmetic (default %(default)s); bf16: mixed precision, the networks under bf16 autocast, on "
        "CPUs with AVX-512 BF16 or AMX and GPUs with bf16 (docs/fast.md)",
        metavar="P",
    ),
    "--checkpoint-without-replay": Setting(
        bool, False, "checkpoints hold the model and callback state only (resume then refills the replay)"
    ),
    "--keep-checkpoints": Setting(
        PositiveInt, None, "keep the K newest checkpoints (default: the YAML's keep_last, 2 in the recipe)", "K"
    ),
    "--no-progress": Setting(bool, False, "no progress bar (shown by default: steps/s and ETA)"),
}
# rl-zoo3's numeric train flags breakout-sb3 checks, with rl-zoo3's special values (-1: its default, or off); a
# default here is the recipe's, given to rl-zoo3 unless the user gives the flag.
ZOO_TRAIN: dict[str, Setting] = {
    "--n-timesteps": Setting(PositiveInt | Literal[-1], aliases=("-n",)),  # -1: the YAML's n_timesteps
    "--seed": Setting(Seed | Literal[-1], 42),  # tutorial: `seed = 42`; -1: a random seed
    "--num-threads": Setting(PositiveInt | Literal[-1]),
    # -1: no periodic evaluation, as the tutorial; --eval-freq N turns rl-zoo3's on
    "--eval-freq": Setting(PositiveInt | Literal[-1], -1),
    # in episodes; -1: the algorithm's default, -2: none. The recipe's: SB3's log table every 100 episodes (SB3's
    # default is 4, about once a second on a CPU), the CSV's window.
    "--log-interval": Setting(PositiveInt | Literal[-1, -2], 100),
    "--eval-episodes": Setting(PositiveInt),
    "--n-eval-envs": Setting(EnvCount),
    "--save-freq": Setting(PositiveInt | Literal[-1]),  # -1: no step checkpoints
    "--n-trials": Setting(PositiveInt),
    "--max-total-trials": Setting(PositiveInt),
    "--n-jobs": Setting(PositiveInt),
    "--n-startup-trials": Setting(NonNegativeInt),
    "--n-evaluations": Setting(PositiveInt),
    "--verbose": Setting(Annotated[int, Field(ge=0, le=2)]),
}

RUN_FOLDER = Setting(str, help="the run folder (logs/dqn/BreakoutNoFrameskip-v4_<n>)")
RESUME: dict[str, Setting] = {
    "run": RUN_FOLDER,
    "--n-timesteps": Setting(
        PositiveInt, help="further agent steps (default: up to the run's original n_timesteps)", aliases=("-n",)
    ),
    "--refill-steps": Setting(
        NonNegativeInt,
        50_000,
        "transitions collected before training resumes, if the checkpoint has no replay buffer (default: %(default)s)",
    ),
    "--no-progress": Setting(bool, False, "no progress bar"),
}
CHECK: dict[str, Setting] = {
    "run": RUN_FOLDER,
    "--json": Setting(bool, False, "print the report as JSON"),
}


def _play_flags(episodes: Any, default_episodes: int) -> dict[str, Setting]:
    """:return: the flags evaluate and record share; ``episodes``: the range of ``--episodes``"""
    return {
        "model": Setting(str, help="a model zip, or a run folder (its final model is used)"),
        "--episodes": Setting(episodes, default_episodes, "full games to play (default: %(default)s)"),
        "--seed": Setting(Seed, 0, "seed of the env and of exploration (default: %(default)s)"),
        # The DQN papers (Mnih et al. 2015) evaluate with epsilon 0.05: a fully greedy Breakout agent can stall
        # forever once it stops pressing FIRE or loops, and 0.05 makes scores comparable with the published ones.
        "--epsilon": Setting(
            Probability,
            0.05,
            "probability of a random action (default: %(default)s, as the DQN papers evaluate; 0 for greedy)",
        ),
        "--env": Setting(str, None, f"environment id (default: the run's, else {ENV_ID})"),
        "--device": Setting(str, "auto", "torch device (default: %(default)s)"),
    }


EVALUATE: dict[str, Setting] = {
    **_play_flags(PositiveInt, 10),
    "--json": Setting(str, None, "also write the scores and their statistics as JSON", "PATH"),
}
RECORD_MAX_EPISODES = 20  # each frame is kept in memory until the video is written
RECORD: dict[str, Setting] = {
    **_play_flags(Annotated[int, Field(ge=1, le=RECORD_MAX_EPISODES)], 1),
    "--out": Setting(str, "game.mp4", "the mp4 to write (default: %(default)s)"),
}
PLOT: dict[str, Setting] = {
    "runs": Setting(list[str], None, "run folders or training_stats.csv files (several: overlaid)"),
    "--mean": Setting(
        list[list[str]],
        None,
        "runs of one configuration (e.g. seeds) drawn as their mean ± standard error; repeat for more groups",
        "RUN",
    ),
    "--out": Setting(str, "curve.png", "the PNG to write (default: %(default)s)"),
    "--threshold": Setting(FiniteFloat, 40.0, "stop threshold line (default: %(default)g)"),
}
# `breakout-sb3 tune`'s own flags
TUNE: dict[str, Setting] = {
    "--fast": Setting(bool, False, "tune the fast configuration (FastDQN, the YAML's <env>-fast entry)"),
    "--seeds": Setting(
        list[Seed], None, "a seed sweep instead of a search: one trial per seed, of the entry as it is", "S"
    ),
    "--heartbeat-interval": Setting(
        PositiveInt, 20, "a running trial records a heartbeat every S seconds (default %(default)s)", "S"
    ),
    "--grace-period": Setting(
        PositiveInt, 120, "a trial without a heartbeat for S seconds is failed and run again (default %(default)s)", "S"
    ),
    "--max-retry": Setting(
        NonNegativeInt, 3, "times a trial whose worker died is run again (default %(default)s)", "N"
    ),
    # 0: a lost database stops the worker at once
    "--db-wait": Setting(
        NonNegativeInt,
        600,
        "a database server that stops answering is waited for up to S seconds per outage (default %(default)s); past "
        "that the worker stops with exit status 75",
        "S",
    ),
}
# rl-zoo3's flags whose values tune reads itself, with tune's defaults (the numeric ones are checked as ZOO_TRAIN's)
TUNE_ZOO: dict[str, Setting] = {
    "--n-timesteps": dataclasses.replace(ZOO_TRAIN["--n-timesteps"], default=1_000_000),  # agent steps per trial
    "--sampler": Setting(Literal["tpe", "random", "auto"]),
    "--pruner": Setting(Literal["median", "halving", "none"]),
}
