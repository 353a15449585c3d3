"""Blocks of a Markdown page that a script writes: the benchmark scripts put their tables into
docs/benchmark.md between markers, so that rerunning a script refreshes its own block and leaves
the rest of the page as written."""

from __future__ import annotations

import os
import platform
import re
import sys
from datetime import date
from pathlib import Path

import torch

from bigramlab.writers.atomic import write_atomically


def machine() -> str:
    """The machine a measurement ran on: CPU model, cores this process may use, memory, torch."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        found = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), flags=re.M)
        cpu = found.group(1).strip() if found else cpu
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    memory = ""
    if hasattr(os, "sysconf") and "SC_PHYS_PAGES" in os.sysconf_names:
        memory = f", {os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 2**30:.0f} GiB"
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"
    return (
        f"{cpu}, {cores} cores{memory}{gpu}; Python {platform.python_version()}, "
        f"torch {torch.__version__}, torch threads {torch.get_num_threads()}"
    )


def provenance() -> str:
    """The line that heads a script's block: its command as run, the machine and the date."""
    command = " ".join(["python", *sys.argv])
    return f"`{command}` on {machine()}; {date.today().isoformat()}."


def replace_block(page: Path, name: str, text: str) -> None:
    """Put `text` into `page` between `<!-- begin NAME -->` and `<!-- end NAME -->`, replacing what
    was there (the markers are added at the end of the page where it has none)."""
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    block = f"{begin}\n{text.strip()}\n{end}"
    old = page.read_text() if page.is_file() else ""
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), flags=re.S)
    new = (
        pattern.sub(lambda _: block, old) if pattern.search(old) else f"{old.rstrip()}\n\n{block}\n"
    )
    write_atomically(page, lambda tmp: tmp.write_text(new.lstrip("\n")))
