import sys

from seqloom.cli.main import main

sys.exit(main())
