import sys

from itd_core.cli import main

sys.exit(main())
