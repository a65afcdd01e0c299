import sys

from mlops_operator.cli import main

sys.exit(main())
