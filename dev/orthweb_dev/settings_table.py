"""Print the README settings table from the Settings dataclass (the single source of truth)."""

from __future__ import annotations

from orthweb.settings import Settings


def main() -> None:
    print("| Setting | Default | Meaning |")
    print("| --- | --- | --- |")
    for name, default, meaning in Settings.describe():
        print(f"| `{name}` | `{default}` | {meaning} |")


if __name__ == "__main__":
    main()
