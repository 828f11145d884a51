"""recbole_sprint.tune
#####################

Hyperparameter searches with Ray Tune over recbole_sprint and RecBole models::

    python -m recbole_sprint.tune --model=SASRecSPRINT --dataset=ml-100k \
        --params_file=properties/hyper/sprint.hyper --num_samples=16 --max_epochs=50

:mod:`~recbole_sprint.tune.hyper` parses RecBole's ``.hyper`` search-space files (no Ray needed);
:mod:`~recbole_sprint.tune.search` is the Ray driver and trial (imports Ray). Importing this package does not
import Ray, so the rest of recbole_sprint works where Ray is not installed.
"""

from recbole_sprint.tune.hyper import HyperFileError, HyperParam, check_names, parse_hyper_file, parse_hyper_line

__all__ = ["HyperFileError", "HyperParam", "check_names", "parse_hyper_file", "parse_hyper_line"]
