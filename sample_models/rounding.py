"""The one task the sample models know: the sample project's rounding defect
(samples/invoice-calc: round_money() goes through float and rounds 0.125 down), as the Tech
Lead's ticket and as the coder's wrong and right answers. The demo plays them; tests and
benchmarks use the same ones."""

from __future__ import annotations

from typing import Any

ROUNDING_TICKET: dict[str, Any] = {
    "schema_version": "1",
    "title": "Round money half-up with Decimal",
    "objective": "round_money() goes through float and rounds 0.125 down to 0.12. Quantize "
                 "the Decimal to cents with ROUND_HALF_UP instead, so 0.125 becomes 0.13.",
    "code_context": [{"path": "invoice_calc/totals.py", "line_start": 1, "line_end": 21},
                     {"path": "tests/test_totals.py", "line_start": 1, "line_end": 12}],
    "allowed_paths": ["invoice_calc/totals.py"],
    "constraints": ["Do not change the signature of round_money().",
                    "Keep amounts as Decimal; never convert to float."],
    "definition_of_done": [{"name": "unit tests",
                            "command": ["python", "-m", "pytest", "-q", "-p",
                                        "no:cacheprovider"],
                            "expected_exit_code": 0, "timeout_seconds": 120,
                            "output_must_contain": ["passed"]}],
    "dependencies": [],
    "complexity": 1,
}

RIGHT_FIX = """I will quantize the Decimal half-up instead of going through float.

<<<<<<< SEARCH invoice_calc/totals.py
from decimal import Decimal
=======
from decimal import ROUND_HALF_UP, Decimal
>>>>>>> REPLACE

<<<<<<< SEARCH invoice_calc/totals.py
    return Decimal(str(round(float(amount), 2)))
=======
    return amount.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
>>>>>>> REPLACE
"""

# quantize() rounds half-even by default: 0.125 still becomes 0.12, and the test says so.
WRONG_FIX = """Quantizing the Decimal avoids the float conversion.

<<<<<<< SEARCH invoice_calc/totals.py
    return Decimal(str(round(float(amount), 2)))
=======
    return amount.quantize(Decimal("0.01"))
>>>>>>> REPLACE
"""
