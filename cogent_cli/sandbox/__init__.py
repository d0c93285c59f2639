"""A local stand-in for Klaviyo (and, mounted beside it, the source systems' pull APIs).

with run_sandbox(tmp_path, rate_scale=10, faults="5xx=0.05,seed=7") as sandbox:
    client = KlaviyoClient("any-key", base_url=sandbox.base_url)
    ...
    sandbox.db["events"].count
"""

from cogent_cli.sandbox.app import build_app
from cogent_cli.sandbox.faults import FaultSpec, FaultSpecError, parse_faults
from cogent_cli.sandbox.server import Sandbox, run_sandbox, serve

__all__ = ["FaultSpec", "FaultSpecError", "Sandbox", "build_app", "parse_faults", "run_sandbox", "serve"]
