import sys

from wheelfix.cli.app import main

sys.exit(main())
