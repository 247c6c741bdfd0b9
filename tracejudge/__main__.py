import sys

from tracejudge.cli import main

sys.exit(main())
