"""``python -m forecast`` runs the command line."""

from forecast.cli import main

main()
