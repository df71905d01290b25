import sys

from resx.bench.workers import main

sys.exit(main())
