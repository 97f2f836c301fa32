import sys

from itd_cli.main import main

sys.exit(main())
