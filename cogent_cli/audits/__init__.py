"""Audits: find what is wrong between the sources and Klaviyo, with evidence, severity and owners.

Built-in audits live in the top-level `audits/` folder and are loaded exactly like a workspace's own.
"""

from cogent_cli.audits.context import AuditContext, order_number_of
from cogent_cli.audits.loader import AuditLoadError, Registry, load_registry
from cogent_cli.audits.model import SEVERITIES, Audit, Finding, Issue, NoParams, Severity, audit
from cogent_cli.audits.runner import AuditResult, AuditRunner, reached

__all__ = [
    "SEVERITIES",
    "Audit",
    "AuditContext",
    "AuditLoadError",
    "AuditResult",
    "AuditRunner",
    "Finding",
    "Issue",
    "NoParams",
    "Registry",
    "Severity",
    "audit",
    "load_registry",
    "order_number_of",
    "reached",
]
