"""ale-py's C++ multi-threaded ``AtariVectorEnv`` behind SB3's ``VecEnv`` interface, as a drop-in for the stack
``Monitor`` + ``AtariWrapper`` + ``VecFrameStack(4)`` (+ ``VecTransposeImage``) over ``*NoFrameskip-v4``.

What the C++ side does (ale-py 0.12.1, ``src/ale/vector/preprocessed_env.cpp``), and how it is used here:

- frame skip with max-pooling of the last two frames, grayscale (ALE's palette, equal to ``cv2.COLOR_RGB2GRAY``),
  ``cv2.resize(..., INTER_AREA)`` to 84x84 and a frame stack that is zeroed at a game reset: used as is, the
  observations are the same as SB3's, pixel for pixel, on the same emulator state, in Breakout. (The C++ side
  max-pools grayscale frames, SB3's ``MaxAndSkipEnv`` RGB ones: the same where objects move over black, as in
  Breakout; in other games a few pixels at moving edges differ, e.g. 16 of 7,056 per frame on average in Pong.)
- ``episodic_life=True`` would restart the whole GAME on a life loss, so it stays off: life losses are found here
  from ``info["lives"]``, and the frames of the previous life are masked out of the stack, as ``VecFrameStack``
  zeroes its stack after every done.
- ``use_fire_reset`` presses FIRE for one frame after a game reset only, and one env cannot take a step without
  the others, so SB3's unseen NOOP, FIRE, RIGHT steps after a life loss (FIRE, RIGHT after a game reset) cannot be
  reproduced. Instead FIRE is added to the agent's first action of every life (NOOP -> FIRE, RIGHT -> RIGHTFIRE,
  ...; the full action space has these). In Breakout FIRE only serves the ball, so this changes nothing else.
- reset no-ops are single frames, ``U{0..noop_max-1}`` of them: ``noop_max + 1`` is passed on.
- the game step limit is counted here in agent steps (the C++ one cuts the last step short, breaking before the
  frame it would max-pool), and a game cut by it is reset with a partial reset.

So what remains different from SB3's stack: a life (and a game) starts 12 (8) emulator frames earlier, before the
ball is served, and the agent's first action of it serves the ball; its first stacked frame is the frame that ended
the previous life. There are ``U{0..noop_max}`` reset no-ops, not ``U{1..noop_max}``. The step limit counts agent
steps, while SB3's ``TimeLimit`` counts emulator frames, including the no-ops and the unseen steps. A game's length
``info["episode"]["l"]`` counts emulator frames, as ``Monitor`` under ``AtariWrapper`` does, but only those of the
agent's steps (agent steps x ``frame_skip``): ``Monitor`` also counts the reset no-ops and the unseen steps.

Any ALE game works (``game="pong"``, ``"ms_pacman"``, ...); the FIRE handling applies to games whose minimal action
set has FIRE, as ``AtariWrapper`` adds its ``FireResetEnv`` only for those.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import ale_py
import gymnasium as gym
import numpy as np
from ale_py import roms
from ale_py.vector_env import AtariVectorEnv
from gymnasium import spaces
from stable_baselines3.common.atari_wrappers import AtariWrapper
from stable_baselines3.common.monitor import Monitor, ResultsWriter
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvObs, VecEnvStepReturn

from breakout_sb3.monitor_clock import header_t_start

# The C++ env's own frame limit, set so high that it never ends a game: ours counts agent steps instead.
_NO_FRAME_LIMIT = 1_000_000_000


def _with_fire(action: ale_py.Action) -> ale_py.Action:
    """:return: ``action`` with the fire button pressed too (NOOP -> FIRE, RIGHT -> RIGHTFIRE, ...)"""
    if "FIRE" in action.name:
        return action
    if action == ale_py.Action.NOOP:
        return ale_py.Action.FIRE
    return ale_py.Action.__members__[action.name + "FIRE"]


class AleVecEnv(VecEnv):
    """
    ``n_envs`` Atari games stepped in C++ threads by ale-py's ``AtariVectorEnv``, with the semantics that SB3's DQN
    learner sees from ``Monitor`` + ``AtariWrapper`` + ``VecFrameStack(4)``:

    - observations ``(n_envs, 4, 84, 84)`` uint8, channel-first (so SB3 adds no ``VecTransposeImage``), newest frame
      last, zero-padded after every done;
    - a done on every life loss, at game over and when the game reaches ``max_episode_steps`` agent steps
      (``info["TimeLimit.truncated"]`` then True); rewards clipped to their sign;
    - ``info["terminal_observation"]`` on every done, ``info["lives"]`` always;
    - ``info["episode"] = {"r": raw game score, "l": emulator frames of the game, "t": seconds since creation}`` at
      the step that ends a whole game (all lives), as ``Monitor`` writes it ("l" is agent steps x ``frame_skip``);
      with ``monitor_file``, the same row in a file of SB3's ``Monitor`` format (``load_results`` reads it).

    :param game: ROM name in snake case, e.g. ``"breakout"``
    :param n_envs: Number of games
    :param seed: Seed of the first reset (game ``i`` gets ``seed + i``); None: unseeded
    :param noop_max: Up to this many no-op frames after a game reset (0: none)
    :param frame_skip: Emulator frames per agent step; the last two are max-pooled
    :param max_episode_steps: Agent steps after which a game is cut (None: no limit)
    :param repeat_action_probability: Sticky actions: the probability that the emulator repeats the previous action
        instead of the agent's, at each frame (ale-py's ``AtariEnv`` argument: 0 in ``*NoFrameskip-v4``, 0.25 in
        ``ALE/*-v5``); the C++ env draws it per frame, as ``AtariEnv`` does under ``AtariWrapper``
    :param env_id: the gymnasium id written in the Monitor file's header (None: the game's ``*NoFrameskip-v4``)
    :param num_threads: C++ worker threads (None: ``min(n_envs, CPU count - 1)``, at least 1: the learner's own
        thread needs a core of its own)
    :param monitor_file: where to record every finished game, as SB3's ``Monitor`` does (its ``filename``:
        ``".monitor.csv"`` is appended unless the name ends with ``"monitor.csv"``); None: no file
    :param monitor_append: append to an existing ``monitor_file`` instead of overwriting it (no second header)
    """

    def __init__(
        self,
        game: str = "breakout",
        n_envs: int = 16,
        seed: int | None = 0,
        noop_max: int = 30,
        frame_skip: int = 4,
        max_episode_steps: int | None = 10_000,
        repeat_action_probability: float = 0.0,
        env_id: str | None = None,
        num_threads: int | None = None,
        monitor_file: str | None = None,
        monitor_append: bool = False,
    ) -> None:
        self.game = game
        self.noop_max = noop_max
        self.frame_skip = frame_skip
        self.max_episode_steps = max_episode_steps
        self.repeat_action_probability = repeat_action_probability
        self._env_id = env_id
        self.render_mode = None
        self.venv = AtariVectorEnv(
            game,
            n_envs,
            num_threads=num_threads or min(n_envs, max(1, (os.cpu_count() or 1) - 1)),
            max_num_frames_per_episode=_NO_FRAME_LIMIT,
            repeat_action_probability=repeat_action_probability,
            full_action_space=True,
            autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
            img_height=84,
            img_width=84,
            grayscale=True,
            stack_num=4,
            frameskip=frame_skip,
            maxpool=True,
            noop_max=noop_max + 1 if noop_max > 0 else 0,
            episodic_life=False,
            life_loss_info=False,
            reward_clipping=False,
            use_fire_reset=False,
        )

        ale = ale_py.ALEInterface()
        ale.setLoggerMode(ale_py.LoggerMode.Error)
        ale.loadROM(roms.get_rom_path(game))
        self.minimal_actions = list(ale.getMinimalActionSet())
        full_actions = list(self.venv.ale.get_action_set())
        self._action_ids = np.array([full_actions.index(a) for a in self.minimal_actions], dtype=np.int32)
        self._fire_action_ids = np.array(
            [full_actions.index(_with_fire(a)) for a in self.minimal_actions], dtype=np.int32
        )
        # As AtariWrapper adds FireResetEnv only for games with FIRE in the action set.
        self.fire_reset = ale_py.Action.FIRE in self.minimal_actions

        observation_space = spaces.Box(low=0, high=255, shape=(4, 84, 84), dtype=np.uint8)
        super().__init__(n_envs, observation_space, spaces.Discrete(len(self.minimal_actions)))

        self._lives = np.zeros(n_envs, dtype=np.int32)
        self._stack_frames = np.ones(n_envs, dtype=np.int64)  # frames of the current life in the stack
        # Row k: 1 for the stacked frames of a life that has k frames in the stack (the last k), 0 for older ones
        self._keep_frames = (np.arange(4)[None, :] >= 4 - np.arange(4)[:, None]).astype(np.uint8)
        self._fire_next = np.zeros(n_envs, dtype=bool)
        self._game_steps = np.zeros(n_envs, dtype=np.int64)
        self._game_score = np.zeros(n_envs, dtype=np.int32)  # ALE's rewards are int32
        self._waiting = False
        self.t_start = time.time()
        self.results_writer: ResultsWriter | None = None
        if monitor_file is not None:
            path = monitor_file if monitor_file.endswith(Monitor.EXT) else f"{monitor_file}.{Monitor.EXT}"
            # A header only in a new file: SB3's ResultsWriter writes none when appending
            append = monitor_append and os.path.isfile(path) and os.path.getsize(path) > 0
            if append:  # the file's clock continues, so that load_results reads one monotone run
                self.t_start = header_t_start(path) or self.t_start
            header = {"t_start": self.t_start, "env_id": self.env_id}
            self.results_writer = ResultsWriter(path, header=header, override_existing=not append)
        if seed is not None:
            self.seed(seed)

    @property
    def env_id(self) -> str:
        """:return: the gymnasium id of the game's raw env, e.g. ``"BreakoutNoFrameskip-v4"``"""
        if self._env_id is not None:
            return self._env_id
        return "".join(part.capitalize() for part in self.game.split("_")) + "NoFrameskip-v4"

    def get_action_meanings(self) -> list[str]:
        """:return: the names of the actions, as ``AtariEnv.get_action_meanings()``"""
        return [a.name for a in self.minimal_actions]

    def reset(self) -> VecEnvObs:
        if self._waiting:
            self.venv.recv()
            self._waiting = False
        if all(s is None for s in self._seeds):
            seed = None
        else:
            # -1: keep that game's seed; the C++ side takes 32-bit ints
            seed = np.array([-1 if s is None else s % 2**31 for s in self._seeds], dtype=np.int32)
        obs, info = self.venv.reset(seed=seed)
        self._lives[:] = info["lives"]
        self._stack_frames[:] = 1
        self._fire_next[:] = self.fire_reset
        self._game_steps[:] = 0
        self._game_score[:] = 0
        self.reset_infos = [{"lives": int(lives)} for lives in self._lives]
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        actions = np.asarray(actions, dtype=np.int64).reshape(self.num_envs)
        action_ids = np.where(self._fire_next, self._fire_action_ids[actions], self._action_ids[actions])
        self.venv.send(action_ids)
        self._fire_next[:] = False
        self._waiting = True

    def step_wait(self) -> VecEnvStepReturn:
        obs, raw_rewards, terminated, truncated, info = self.venv.recv()
        self._waiting = False
        lives = info["lives"]
        self._game_score += raw_rewards
        self._game_steps += 1
        self._stack_frames += 1

        game_over = terminated | truncated  # the C++ side has reset these games already
        life_lost = ~game_over & (lives > 0) & (lives < self._lives)
        if self.max_episode_steps is None:
            time_limit = np.zeros(self.num_envs, dtype=bool)
        else:
            time_limit = ~game_over & (self._game_steps >= self.max_episode_steps)
        dones = game_over | life_lost | time_limit

        final_obs = info.get("final_obs")  # only there when a game is over
        # Only the envs whose life began less than 4 steps ago have frames of the previous life in their stack
        young = np.flatnonzero(self._stack_frames < 4)
        if len(young):
            # Per young env, 1 for the frames of its current life, 0 for the older ones
            keep = self._keep_frames[self._stack_frames[young]][:, :, None, None]
            obs[young] *= keep
            if final_obs is not None:
                final_obs[young] *= keep

        # Python work per env only where something happened: the common info dict is built in one pass
        infos: list[dict[str, Any]] = [{"lives": n, "TimeLimit.truncated": False} for n in lives.tolist()]
        for i in np.flatnonzero(dones).tolist():
            info_i = infos[i]
            info_i["TimeLimit.truncated"] = bool(time_limit[i] and not life_lost[i])
            info_i["terminal_observation"] = final_obs[i].copy() if game_over[i] else obs[i].copy()
            if game_over[i] or time_limit[i]:
                episode = {
                    "r": float(self._game_score[i]),
                    "l": int(self._game_steps[i]) * self.frame_skip,
                    "t": round(time.time() - self.t_start, 6),
                }
                info_i["episode"] = episode
                if self.results_writer is not None:
                    self.results_writer.write_row(episode)
                self._game_score[i] = 0
                self._game_steps[i] = 0
            if life_lost[i]:
                # The new life goes on from the frame that lost the last one: that frame alone in a zeroed stack.
                obs[i, :-1] = 0
        if time_limit.any():
            reset_obs, reset_info = self.venv.reset(options={"reset_mask": time_limit})
            obs[time_limit] = reset_obs[time_limit]
            lives = np.where(time_limit, reset_info["lives"], lives)
            for i in np.flatnonzero(time_limit):
                infos[i]["lives"] = int(lives[i])

        self._lives[:] = lives
        self._stack_frames[dones] = 1
        self._fire_next[dones] = self.fire_reset
        return obs, np.sign(raw_rewards).astype(np.float32), dones, infos

    def close(self) -> None:
        if self._waiting:
            self.venv.recv()
            self._waiting = False
        self.venv.close()
        if self.results_writer is not None:
            self.results_writer.close()
            self.results_writer = None

    def _indices(self, indices: VecEnvIndices) -> Sequence[int]:
        if indices is None:
            return range(self.num_envs)
        if isinstance(indices, int):
            return [indices]
        return list(indices)

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """:return: this object's attribute ``attr_name``, once per env (all envs share one configuration)"""
        return [getattr(self, attr_name) for _ in self._indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        """Sets this object's attribute ``attr_name`` (all envs share one configuration)."""
        setattr(self, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices: VecEnvIndices = None, **method_kwargs) -> list[Any]:
        """:return: the result of this object's method ``method_name``, once per env"""
        return [getattr(self, method_name)(*method_args, **method_kwargs) for _ in self._indices(indices)]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        """:return: True for ``Monitor`` and ``AtariWrapper``, whose semantics this env reproduces"""
        return [issubclass(wrapper_class, (Monitor, AtariWrapper)) for _ in self._indices(indices)]
