"""The deploy service: approved models onto BentoML endpoints, batch jobs, and drift checks.

- ``app``: the composition root (settings, Kafka subscribers, the control API on deploy_port).
- ``deployments`` / ``rollout`` / ``router``: one stable endpoint per pipeline, a small reverse
  proxy process in front of a BentoML server (its workers) per version; a new version is started,
  awaited, switched to, and the old one drained and stopped, without a failed request.
- ``serving``: the BentoML service class and the plain prediction code it and ``batch`` share,
  plus prediction capture and feedback inside the serving workers.
- ``drift``: PSI windows over captured predictions, DriftChecked / DriftDetected /
  RetrainRequested with a persisted cooldown.
- ``processes``: every child is tagged, stopped by pid, and swept after a hard kill.
"""
