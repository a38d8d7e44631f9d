"""`python -m seqtrain`."""

from seqtrain.cli import main

main()
