"""README's code blocks, as the tests run them.

Each ```bash block is preceded by `<!-- readme-test: NAME (why) -->`: `skip` blocks say why they are not run
(installing packages, long-running servers, full mode), the others are run by the suite under their NAME.
The one liberty taken: `DAGSTER_HOME=$PWD` becomes the test's temporary instance folder (the repository's own
`storage/dagster/` stays untouched); OHLORA_STORAGE points at a temporary storage root likewise.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
TAG = re.compile(r"<!-- readme-test: ([\w-]+)(?: \(([^\n]*?)\))? -->(?:\n```(\w*)\n(.*?)```)?", re.S)
BLOCK = re.compile(r"^```bash\n", re.M)


@dataclass(frozen=True)
class Block:
    name: str
    why: str
    language: str
    text: str

    @property
    def commands(self) -> list[str]:
        """The block's commands: comment lines dropped, backslash continuations joined."""
        joined = re.sub(r"\\\n\s*", "", self.text)
        return [
            line.split("  #")[0].strip()
            for line in joined.splitlines()
            if line.strip() and not line.strip().startswith("#")
        ]


def blocks(text: str | None = None) -> list[Block]:
    text = README.read_text() if text is None else text
    return [Block(m[1], m[2] or "", m[3] or "", m[4] or "") for m in TAG.finditer(text)]


def bash_block_count(text: str | None = None) -> int:
    return len(BLOCK.findall(README.read_text() if text is None else text))


def block(name: str) -> Block:
    found = [b for b in blocks() if b.name == name]
    assert len(found) == 1, f"README has {len(found)} blocks tagged readme-test: {name}"
    return found[0]


def table_row(first_cell: str) -> list[str]:
    """The backticked names in the second cell of the README table row whose first cell contains `first_cell`."""
    for line in README.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) > 1 and first_cell in cells[0]:
            return re.findall(r"`([\w]+)`", cells[1])
    raise AssertionError(f"README has no table row starting with {first_cell!r}")


def run(command: str, env: dict, cwd: Path = REPO, timeout: int = 900) -> subprocess.CompletedProcess:
    """One README command in bash, as a user types it (with the test's DAGSTER_HOME, see the module doc)."""
    command = command.replace("DAGSTER_HOME=$PWD ", "")
    done = subprocess.run(
        ["bash", "-c", command], cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, (
        f"README command failed ({done.returncode}): {command}\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    )
    return done


if __name__ == "__main__":  # `.ci/run`: the commands of a block, one per line, to run exactly as README says
    import sys

    print("\n".join(block(sys.argv[1]).commands))
