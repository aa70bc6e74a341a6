"""The API's JSON parser: what haao.text refuses is a 400 naming the field, never a 500 or a
row that breaks every reader later."""

from __future__ import annotations

from collections.abc import Mapping
from typing import IO, Any

from rest_framework import exceptions, parsers

from haao import text


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, refusing text that is not valid Unicode and nesting without end."""

    def parse(self, stream: IO[Any], media_type: str | None = None,
              parser_context: Mapping[str, Any] | None = None) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise exceptions.ParseError(
                f"JSON parse error - nested too deeply: at most {text.MAX_JSON_DEPTH} levels."
            ) from None
        try:
            text.check_data(data)
        except text.TextInvalid as error:
            if error.path:
                raise exceptions.ValidationError({error.path: [error.message]}) from None
            raise exceptions.ValidationError([error.message]) from None
        return data
