from __future__ import annotations

from neurons.cli.main import main

main()
