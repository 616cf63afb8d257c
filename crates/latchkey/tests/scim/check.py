"""Runs the SCIM conformance checker `scim2-tester` against a Latchkey server.

    python check.py BASE_URL SECRET

Prints one JSON object per check (`title`, `status`, `reason`) and exits 0; the Rust test
(`tests/api/scim.rs`) decides what passes. Driven through `scim2-client`'s synchronous httpx
engine, as a provisioning tool would be.
"""

import json
import sys
import uuid

import httpx2 as httpx
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import check_server


class FreshEmails(list):
    """A list of examples whose every item, read, is a new email address."""

    def __len__(self) -> int:
        return 1_000_000

    def __getitem__(self, index):
        return f"{uuid.uuid4()}@checker.example"


def main() -> None:
    base, secret = sys.argv[1], sys.argv[2]
    http = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {secret}"})
    client = SyncSCIMClient(http)
    client.discover()
    # Latchkey's userName is the email (docs/IDENTITY.md): the checker fills it from the
    # field's examples when it has some (`random.choice`), so it gets email addresses, as
    # identity providers send; a fresh one each time (a fixed list repeats one sooner or later).
    emails = FreshEmails()
    for model in client.provider.models:
        field = getattr(model, "model_fields", {}).get("user_name")
        if field is not None:
            field.examples = emails
    for result in check_server(client):
        print(
            json.dumps(
                {
                    "title": result.title,
                    "status": result.status.name,
                    "reason": str(result.reason or ""),
                    "resource_type": getattr(result, "resource_type", None),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
