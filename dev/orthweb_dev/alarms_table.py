"""Print the alarms table of docs/operations.md from orthweb.thresholds (default settings)."""

from __future__ import annotations

from orthweb.settings import Settings
from orthweb.thresholds import alarm_specs

_MISSING = {"missing": "keeps its state", "breaching": "counts as failing"}


def table(settings: Settings | None = None) -> str:
    s = settings or Settings()
    specs = alarm_specs(
        name_prefix=s.name_prefix,
        instance_id="INSTANCE",
        db_identifier=f"{s.name_prefix}-db",
        db_instance_class=s.db_instance_class,
        db_storage_gb=s.db_storage_gb,
    )
    rows = ["| Alarm | Watches | Fires when | No data |", "| --- | --- | --- | --- |"]
    rows += [
        f"| `{s.name_prefix}-{a.name}` | {a.watches} | {a.fires_when} | {_MISSING[a.treat_missing_data]} |"
        for a in specs
    ]
    return "\n".join(rows)


def main() -> None:
    print(table())


if __name__ == "__main__":
    main()
