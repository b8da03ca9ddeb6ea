import sys

from ohlora_core.cli import main

sys.exit(main())
