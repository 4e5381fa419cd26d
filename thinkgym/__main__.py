import sys

from thinkgym.cli import main

sys.exit(main())
