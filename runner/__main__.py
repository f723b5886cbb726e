from __future__ import annotations

from runner.main import main

main()
