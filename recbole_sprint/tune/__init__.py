"""recbole_sprint.tune
#####################

Hyperparameter searches over recbole_sprint and RecBole models, with Ray Tune or without Ray::

    python -m recbole_sprint.tune --model=SASRecSPRINT --dataset=ml-100k \
        --params_file=properties/hyper/sprint.hyper --num_samples=16 --max_epochs=50 [--backend=local]

:mod:`~recbole_sprint.tune.hyper` parses RecBole's ``.hyper`` search-space files;
:mod:`~recbole_sprint.tune.common` is the command line and what both backends share;
:mod:`~recbole_sprint.tune.trial` trains and tests one trial; :mod:`~recbole_sprint.tune.local` is the local
backend (trials one after another, no Ray); :mod:`~recbole_sprint.tune.search` is the Ray backend, the only
module that imports Ray. Importing this package does not import Ray, so the rest of recbole_sprint, and
``--backend=local``, work where Ray is not installed.
"""

from recbole_sprint.tune.hyper import HyperFileError, HyperParam, check_names, parse_hyper_file, parse_hyper_line

__all__ = ["HyperFileError", "HyperParam", "check_names", "parse_hyper_file", "parse_hyper_line"]
