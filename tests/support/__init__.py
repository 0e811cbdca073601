"""Helpers shared by the tests; fixtures stay in the conftest.py files that use them.

Import them as ``from support.waiting import wait_until`` (pytest puts tests/ on sys.path).

* `waiting`: wait on a condition with a deadline (`wait_until`, `wait_for` in a TUI app),
  hold one for a while (`stays`), run a coroutine with a deadline (`run_async`).
* `processes`: the process table's word (`pid_alive`), pid files, open TCP ports.
* `commands`: the `harmony` command run as a subprocess.
* `nats_servers`: real nats-server processes (the conftest fixtures' bodies).
* `big_mesh`: a thousand sites' summaries on a secure server (no agents), stand-in sites.
* `containers`: a Docker engine and a NATS image/container without a registry.
* `meshes`: LocalMeshes of real agents: timings, snapshots, logs, the failover `Watcher`.
* `workloads`: workload configs the mesh tests run (the example workload, `sleep`).
* `wire_attacks` / `fuzzing`: a mesh to attack over the wire; hostile frames and the
  reason an agent must refuse each under.
* `actors`: real Pykka actors with an AgentContext but no mesh, on a fake clock.
* `drivers`: driver event recorder, a hooks runbook, containment checks, a tiny agent.
* `histories`: synthetic journals, records and scans for the simulator's checkers.
* `strategy_site`, `lease_store`, `lease_world`, `sba_world`: pure strategies driven like
  the actor layer would, alone or in a simulated world.
"""
