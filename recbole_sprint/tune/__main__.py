"""``python -m recbole_sprint.tune --model=... --dataset=... --params_file=... [--key=value ...]``"""

import sys

from recbole_sprint.tune.search import main

if __name__ == "__main__":
    sys.exit(main())
