"""The sync engine: normalised events -> Klaviyo operations (outbox) -> delivery, exactly once in effect.

mapping     what each normalised event becomes in Klaviyo (metrics, properties, unique_ids)
identity    which Klaviyo profile an event belongs to (external id -> email -> phone)
outbox      the durable queue of operations, its lanes, holds and state transitions
lanes       the outbox's lanes and unsent states, light enough for `cogent status`
engine      one run: lock, enqueue, deliver in waves through the bulk endpoints, record
lock        one run at a time per workspace
exceptions  failures nothing could fix, with owner, payload and last error; replay
schedule    cron-style schedules run by `cogent schedule run-due`
"""
