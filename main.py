#!/usr/bin/env python
"""Synthesize the Orthweb stack: `python main.py` or `npx cdktf synth` write cdktf.out/."""

from __future__ import annotations

import sys
from pathlib import Path

from orthweb.app import main

if __name__ == "__main__":
    sys.exit(main(Path(__file__).resolve().parent))
