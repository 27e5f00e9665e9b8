"""``python -m lensnet_deploy`` runs the command line."""

from .cli import main

main()
