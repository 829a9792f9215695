"""The privacy stage: erasure and suppression requests carried out everywhere the pipeline keeps a person.

``requests`` takes requests in (files dropped by ``make erase`` or another tool, or the DAG's param)
and keeps their audit trail; ``subjects`` finds who a customer id is in the lake (their anonymous
ids, emails, IP addresses, user keys) and which days hold them; ``rewrite`` removes their rows from
partitions and their values from text files, atomically; ``erasure`` runs a batch of requests through
every store (raw zone, quarantines, features, outputs, exports, the serving database, MLflow, Data
Docs and logs); ``retention`` deletes raw days past ``privacy.raw_retention_days``; ``status`` is the
audit as ``make erasure-status`` shows it.
"""
