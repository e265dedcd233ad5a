"""
``breakout-sb3 tune``, one job per module:

- :mod:`~breakout_sb3.tune.command`: the command, its help and flag checks
- :mod:`~breakout_sb3.tune.plan`: the study's name, the entry tuned, the storage and study opened
- :mod:`~breakout_sb3.tune.manager`: the workers' ExperimentManager and its trial
- :mod:`~breakout_sb3.tune.seeds`: the rules of a seed sweep
- :mod:`~breakout_sb3.tune.report`: the report CSV, the best trial's YAML, what is printed at the end
- :mod:`~breakout_sb3.tune.space`: the search space, read from the YAML
- :mod:`~breakout_sb3.tune.storage`: the Optuna storage and study, heartbeats
- :mod:`~breakout_sb3.tune.retry`: a storage that outlives database outages
- :mod:`~breakout_sb3.tune.loop`: the worker's loop over trials
"""

from breakout_sb3.tune.command import TUNE_HELP, TuneOptions, tune
from breakout_sb3.tune.storage import Heartbeat

__all__ = ["TUNE_HELP", "Heartbeat", "TuneOptions", "tune"]
