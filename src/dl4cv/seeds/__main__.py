"""`python -m dl4cv.seeds` (`make seeds`): see dl4cv.seeds.queue."""

import sys

from dl4cv.seeds.queue import main

sys.exit(main())
