import sys

from dl4cv.parallel.repro import main

sys.exit(main())
