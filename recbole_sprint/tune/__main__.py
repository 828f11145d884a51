"""``python -m recbole_sprint.tune --model=... --dataset=... --params_file=... [--backend=local] [--key=value ...]``"""

import sys

from recbole_sprint.tune.common import main

if __name__ == "__main__":
    sys.exit(main())
