// Package fakeconsul is an in-process fake of the Consul HTTP API, served by
// an httptest server, for tests that drive the official client
// github.com/hashicorp/consul/api (v1.34.5) against it.
//
// It keeps Consul's semantics where the project depends on them: one
// raft-like index, per-table X-Consul-Index values and blocking queries,
// session TTLs, lock-delay, KV acquire/release, agent service registration
// with HTTP checks that the fake itself runs, and health queries.
//
// # Facts it reproduces
//
// Calibrated from transcripts recorded against a real Consul 1.22.7 dev agent
// (driven by curl and by consul/api v1.34.5); the project does not read those
// transcripts at test time, so the facts live here:
//
// Sessions
//   - PUT /v1/session/create answers {"ID": "<uuid>"}. Defaults: Node is the
//     agent's node, NodeChecks ["serfHealth"], LockDelay 15s, Behavior
//     "release", no TTL. LockDelay may be a duration string ("15s", "300ms";
//     what the Go client sends) or a number of nanoseconds; a number or
//     duration below 1000ns is taken as seconds (15 -> 15s).
//   - A TTL outside [min, 24h] is a 500 with the text
//     "Invalid Session TTL '5000000000', must be between [10s=24h0m0s]"
//     (the TTL in nanoseconds; min is 10s unless configured). "0s" means no
//     TTL. A bad behavior is a 500 "Invalid Behavior setting 'bogus'".
//   - info, list and node answer arrays; info of an unknown session is []
//     (200), never 404. LockDelay comes back in nanoseconds, TTL as the string
//     given.
//   - renew answers a ONE-element array with the session; an unknown session
//     is a 404 "Session id '<id>' not found". A renew is not a raft write: it
//     does not change any index.
//   - destroy answers true, also for a session that does not exist.
//   - A session that is not renewed is invalidated at 2 x TTL (TTL 10s ->
//     removed at 20.0s after create or the last renew).
//   - On invalidation (destroy, TTL expiry, a linked check going critical) the
//     keys the session holds are released (behavior release: Session cleared,
//     value and LockIndex kept, ModifyIndex bumped) or deleted (behavior
//     delete), and each such key gets a lock-delay of the session's LockDelay
//     (capped at 60s).
//
// KV
//   - GET of a missing key is a 404 with an empty body and X-Consul-Index (the
//     KV table index). GET of a key answers a one-element array of {LockIndex,
//     Key, Flags, Value (base64, null when empty), Session (omitted when
//     unlocked), CreateIndex, ModifyIndex}; X-Consul-Index is the key's
//     ModifyIndex.
//   - Blocking reads (?index=N&wait=D) return as soon as the answer's index
//     exceeds N; with no change they return after D plus up to D/16 jitter
//     with the same index (5s -> 5.32s measured). index=0 never blocks; a
//     wait without index never blocks. Default wait 5m, capped at 10m.
//   - PUT ?acquire=SESSION answers true/false. Acquiring a key held by the
//     same session is true and keeps LockIndex; a new holder increments it.
//     Another session gets false. An unknown session is a 500
//     `raft apply failed: invalid session "<id>"`.
//   - After the holder's session is destroyed or invalidated, every acquire
//     answers false for the lock-delay (15.035s measured for 15s). After a
//     voluntary ?release there is no delay. LockDelay 0 means no delay.
//   - PUT ?release=SESSION answers true only for the holder; it writes the
//     request body as the new value (an empty body leaves Value null) and
//     keeps LockIndex.
//   - PUT ?cas=0 is create-only; ?cas=N succeeds only when ModifyIndex is N.
//     DELETE ?cas=N of a missing key answers true.
//
// Health
//   - A registered service's check starts "critical" (Output "") until its
//     first run; the first run happens at a random point within one interval
//     (the real agent staggers it: passing ~1.1s after register with a 2s
//     interval), then every interval. 2xx -> passing, 429 -> warning,
//     anything else or an error -> critical. Output is
//     "HTTP GET <url>: 200 OK Output: <body>" or the client error text.
//   - Only status changes are catalog writes: they bump the index and wake
//     blocking health queries (critical observed ~2s after the backend
//     stopped with a 2s interval).
//   - /v1/health/service/NAME lists {Node, Service, Checks} with the node's
//     "serfHealth" check (always passing) plus the service's checks; ?passing
//     drops entries with any non-passing check (warning included). The
//     catalog lists services regardless of health. Check IDs are
//     "service:<service id>" (":1", ":2", ... appended when there are several).
//   - Deregistering an unknown service ID is a 404 `Unknown service ID "nope".
//     Ensure that the service ID is passed, not the service name.`; a missing
//     name is a 400 "Missing service name".
//
// The Go client (consul/api v1.34.5) Lock: creates a session {"Name":"Consul
// API Lock","TTL":...} (no LockDelay unless LockOptions.LockDelay is set, so
// the 15s default applies), reads the key with ?wait=, acquires with
// ?acquire=&flags=3304740253564472344 (api.LockFlagValue), then monitors the
// key with ?consistent&index=; the lost channel closes as soon as the key's
// Session changes or a read fails. After a lost lock, re-locking takes the
// lock-delay because the client retries every 5s. A contender with
// LockTryOnce gets (nil, nil) after LockWaitTime. Unlock after a loss returns
// nil. Every read must carry X-Consul-LastContact or the client fails to
// parse the query meta.
//
// Taken from Consul's source rather than measured: a plain PUT (no acquire)
// on a held key keeps its Session but not its LockIndex; a write that
// changes nothing keeps the ModifyIndex; re-registering a service keeps the
// status of checks whose ID stays and writes nothing when the registration
// is identical; sessions linked to a check (NodeChecks, ServiceChecks) cannot
// be created while it is critical and are invalidated when it turns critical
// or is removed.
//
// # Deviations kept on purpose
//
//   - One node ("fakeconsul", 127.0.0.1, dc1) that is also the only server
//     and the leader; a session for another node fails; ?dc other than dc1
//     is a 500 "No path to datacenter".
//   - No ACLs, namespaces, partitions, transactions, prepared queries,
//     events, Connect, TTL/script/gRPC/alias checks (rejected with a 400),
//     ?filter expressions (rejected with a 400) or hash-based blocking on
//     agent endpoints. SuccessBeforePassing, FailuresBeforeCritical,
//     DeregisterCriticalServiceAfter and ?replace-existing-checks are ignored
//     (a re-registration always replaces the service's checks).
//   - Check intervals are honoured down to Options.MinCheckInterval (default
//     0) instead of Consul's 1s floor.
//   - KV keys are not checked for allowed characters and values have no size
//     limit; tombstones are never reaped.
//   - Failed raft-level writes (an acquire of a held key, a failed CAS) bump
//     the global index, as in Consul, but no table index.
//   - Responses are compact JSON (a dev agent pretty-prints); /v1/agent/self
//     holds only Config, Member and Meta.
package fakeconsul
