"""Number formats a dataset file gives its columns for XLSX, and a column's long form."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationError

# Named number formats a dataset file may give instead of an Excel format code.
NUMBER_FORMATS = {
    "integer": "0",
    "thousands": "#,##0",
    "decimal": "#,##0.00",
    "percent": "0.00%",
    "currency": "#,##0.00 [$€-407]",
    "currency-usd": "[$$-409]#,##0.00",
    "currency-gbp": "[$£-809]#,##0.00",
    "date": "dd.mm.yyyy",
    "datetime": "dd.mm.yyyy hh:mm:ss",
}
FORMATTED_KINDS = frozenset({"integer", "decimal", "date", "timestamp"})


class ColumnSpec(BaseModel):
    """A column's entry in the dataset file in its long form: `{label: ..., format: ...}`."""

    model_config = ConfigDict(extra="forbid")

    label: str | None = None
    format: str | None = Field(
        None,
        min_length=1,
        max_length=255,
        pattern=r"^[^\x00-\x1f]+$",
        description="A name"
        " from NUMBER_FORMATS or an Excel format code: '#,##0.00 [$€-407]', 'dd.mm.yyyy'.",
    )

    @property
    def number_format(self) -> str | None:
        """The Excel format code."""
        return NUMBER_FORMATS.get(self.format, self.format) if self.format else None

    @classmethod
    def parse(cls, name: str, body: dict) -> ColumnSpec:
        """The long form of column `name`; a ValueError naming the key and what to change."""
        try:
            return cls.model_validate(body)
        except ValidationError as exc:
            err = exc.errors()[0]
            key = ".".join(str(p) for p in err["loc"])
            raise ValueError(
                f"column {name!r}, key {key!r}: {err['msg']} (the long form takes label and format)"
            ) from None
