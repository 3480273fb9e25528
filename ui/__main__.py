"""``python -m ui``: same as the ``spark-launcher`` executable."""

import sys

from ui.entry import main

if __name__ == "__main__":
    sys.exit(main())
