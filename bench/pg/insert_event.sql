-- pgbench script for `make bench`: one stored event (about 300 bytes: a uuid, a version, a topic
-- and 256 bytes of state, like an encrypted event of plan-service) in a table shaped like
-- the stored_events table of eventsourcing (primary key (originator_id, originator_version), unique
-- notification_id). No BEGIN: each INSERT is its own transaction, so this is INSERT+COMMIT,
-- with the fsync of the server and synchronous_commit as configured. bench/load.py creates the table
-- in a schema of its own and sets search_path to it. No colon anywhere below: pgbench reads
-- :name as a variable, even inside a quoted string.
INSERT INTO stored_events (originator_id, originator_version, topic, state) VALUES (gen_random_uuid(), 1, 'careplan.plan.InformationGiven', '\x6a58244bc7a023e327ed68bd9ea268553b7e9eb173599f75f64a056105eefbe303a9d37262bdc7954de1b7cd76e116fcc71cf53b520f3ad12274d3984c472bed6523452a5c90277bca4e8a910d92caba6c4e5e078d5f14b9da668472f09072e5f8b253aef4f2081c9de5d27e16e0a143b840b684343d5bbad49dc1372e4345efa9c49156e4235a45e6f8643c1978582ebb08eccba80afa0569cc33e7093d1298e9bb3105e3e59e294ceb6a83cda47eeba5be1c17a1c2798257c14a3be8b7aa4ca43055c61338a365fec5dfb4ee366e825fc39881e641f218d335cde53d4e4961a85cad5fd00464279010c8048d28d10d4f00d4e6b6c00a68f8827f3227978ae3');
