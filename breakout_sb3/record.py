"""Record full games played by a model as an mp4, with SB3's VecVideoRecorder."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from stable_baselines3.common.utils import set_random_seed
from stable_baselines3.common.vec_env import VecVideoRecorder

from breakout_sb3.atari_settings import AtariSettings
from breakout_sb3.devices import check_device
from breakout_sb3.env import check_env_id, make_env, run_hyperparams
from breakout_sb3.errors import BreakoutSB3Error
from breakout_sb3.evaluate import DEFAULT_EVAL_EPSILON
from breakout_sb3.model_files import load_model, resolve_model
from breakout_sb3.outputs import check_output_path

# The Atari 2600 draws 60 frames a second (NTSC); ale-py's metadata says 30.
ATARI_FPS = 60


def record(
    path: str | Path,
    env_id: str,
    out: str | Path = "game.mp4",
    episodes: int = 1,
    seed: int = 0,
    epsilon: float = DEFAULT_EVAL_EPSILON,
    device: str = "auto",
) -> list[float]:
    """
    Play ``episodes`` full games (all lives) with the model at ``path`` and write them, one after the other, to the
    mp4 ``out`` in the emulator's own 210x160 colour frames, one frame per agent step (15 frames per second at frame
    skip 4, i.e. real time).

    :param out: the mp4 to write: checked before a game is played, and replaced in one rename once the video is
        whole (a failure leaves the old file, and no temporary one)
    :return: the raw score of each game
    """
    out = Path(out)
    if out.suffix != ".mp4":
        raise BreakoutSB3Error(f"--out must name an .mp4 file, got {out}")
    check_output_path(out, "--out")
    check_env_id(env_id)
    model_path, run_dir = resolve_model(path, env_id)
    check_device(device, announce=True)
    hyperparams = run_hyperparams(run_dir, env_id)
    set_random_seed(seed)
    env = make_env(env_id, hyperparams, seed=seed, env_kwargs={"render_mode": "rgb_array"})
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".record-") as tmp:
        recorder = VecVideoRecorder(
            env, tmp, record_video_trigger=lambda step: step == 0, video_length=10**9, name_prefix="game"
        )
        # one video frame per agent step: real time
        recorder.frames_per_sec = ATARI_FPS / AtariSettings.of(hyperparams).wrapper_frame_skip
        scores: list[float] = []
        try:
            model = load_model(model_path, recorder, device)
            model.exploration_rate = epsilon
            vec_env = model.get_env()
            obs = vec_env.reset()
            while len(scores) < episodes:
                action, _ = model.predict(obs, deterministic=epsilon == 0.0)
                obs, _, _, infos = vec_env.step(action)
                for info in infos:
                    if "episode" in info:
                        scores.append(float(info["episode"]["r"]))
                        print(f"game {len(scores)}: score {scores[-1]:g}")
        finally:
            recorder.close()  # writes the video
        (video,) = Path(tmp).glob("*.mp4")
        # The temporary folder is beside ``out``: one rename, so ``out`` is the old file or the whole new one.
        with open(video, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(video, out)
    return scores
