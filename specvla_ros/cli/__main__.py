"""`python -m specvla_ros.cli VERB ...` (what torchrun's `-m` needs): the same as `specvla VERB ...`."""
import sys

from specvla_ros.cli import main

sys.exit(main())
