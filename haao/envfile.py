"""`python -m haao.envfile`: create `.env` for a single-machine run, once, with fresh secrets.

An existing `.env` is never changed, so data encrypted under its keys stays readable.
"""

from __future__ import annotations

import secrets
import sys
from pathlib import Path

from cryptography.fernet import Fernet

TEMPLATE = """\
# Created by `make run` for this machine. Keep it secret; see .env.example for every variable.
SECRET_KEY={secret_key}
HAAO_ENCRYPTION_KEYS={encryption_key}
# Plain HTTP on 127.0.0.1: secure cookies and HSTS need HTTPS, which a local run does not have.
HAAO_HTTPS=false
DEBUG=false
"""


def ensure(path: Path) -> bool:
    """Write `path` if it does not exist; True when it was created."""
    if path.exists():
        return False
    content = TEMPLATE.format(secret_key=secrets.token_urlsafe(50),
                              encryption_key=Fernet.generate_key().decode())
    path.touch(mode=0o600)
    path.write_text(content)
    return True


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else ".env")
    if ensure(target):
        print(f"Created {target} with fresh secrets.")
