"""The merge re-judging fuzz (tests/test_fuzz_merge.py) at 10x CI's examples: what
``benchmarks/fuzz.py --tests tests/test_fuzz_merge.py`` runs, writing
benchmarks/results/fuzz_merge.txt.

Run: .venv/bin/python benchmarks/fuzz_merge.py [--examples N]   (default 5000)
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    from fuzz import main

    main(["--tests", "tests/test_fuzz_merge.py", *sys.argv[1:]])
