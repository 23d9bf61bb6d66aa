"""The base of every policy section: frozen, and no key it does not know.

Imports: pydantic only.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
