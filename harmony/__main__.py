import sys

from harmony.cli import main

sys.exit(main())
