"""Schemathesis hooks for `cargo xtask api-check`.

`POST /v1/plugins/{provider}/versions` takes a WebAssembly component as its raw body
(`application/wasm`). Random bytes are never a component, so every upload would only ever be
refused (422); the uploads are drawn from the real components the build wrote instead, so the
run loads versions (201), reloads them (200), and follows the links to activate and remove them.
`cargo xtask api-check` names the folder in REFUNDRY_API_CHECK_PLUGINS.
"""

import os
from pathlib import Path

from hypothesis import strategies as st

import schemathesis

PLUGINS = Path(os.environ["REFUNDRY_API_CHECK_PLUGINS"])

# MFS Africa's two versions (0.1.0 is loaded at start, 0.2.0 is new) and another provider's
# component (refused under MFS Africa: provider_mismatch).
COMPONENTS = [
    (PLUGINS / name).read_bytes()
    for name in ("mfs-africa.wasm", "mfs-africa-next.wasm", "pagoefectivo.wasm")
]

schemathesis.openapi.media_type("application/wasm", st.sampled_from(COMPONENTS))
