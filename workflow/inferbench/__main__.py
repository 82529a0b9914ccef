import sys

from inferbench.cli import main

sys.exit(main())
