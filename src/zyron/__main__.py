"""`python -m zyron`: the same as the `zyron` command."""

import sys

from zyron.cli import main

sys.exit(main())
