// Package node starts and stops a Proto.Actor cluster member of the
// Superhero Cluster the safe way, and sends requests to cluster grains with a
// caller-side deadline.
//
// Both the city main (one node per city, hosting one city kind) and the
// dispatch main (the web server, hosting at most its inbox kind) use it:
//
//	cfg := node.DefaultConfig("gotham")
//	cfg.Port, cfg.HealthPort = 8101, 6331
//	cfg.Peers = []string{"127.0.0.1:6330", "127.0.0.1:6331", "127.0.0.1:6332", "127.0.0.1:6333"}
//	n, err := node.Start(ctx, cfg, logger, cluster.NewKind(messages.CityKind("gotham"), props))
//	if err != nil { ... }
//	defer n.Stop()
//	reply, err := node.RequestAs[*messages.State](ctx, n, "gotham", messages.CityKind("gotham"), &messages.GetState{}, 2*time.Second)
//
// What Start wires together (protoactor-go v0.0.0-20240822202345):
//
//   - an actor system whose own logging goes to the caller's slog.Logger, with
//     node=<name> on every line, a minimum level for library lines, and
//     repeated library warnings/errors (e.g. "peer health check failed" on
//     every poll while a city is down) logged once per window;
//   - remoting (gRPC) on Host:Port, guarded by the shared cookie (see below);
//   - the automanaged cluster provider: every member serves /_health on
//     HealthPort and polls the fixed Peers list of health addresses;
//   - the disthash identity lookup (grains are placed by rendezvous hashing
//     and activated by disthash's placement actors);
//   - the cluster started as a member (cluster.StartMember).
//
// # Cookie
//
// Like an Erlang cookie, a shared secret decides who belongs to the cluster:
//
//   - Membership: the automanaged provider only accepts peers whose health
//     answer carries the same cluster name. The effective cluster name is
//     ClusterName + "-" + a 64-bit HMAC-SHA256 fingerprint of the cookie, so a
//     member with another cookie is silently ignored (and ignores us).
//   - Transport: every gRPC stream to a member's remote port must present a
//     fresh token (timestamp, random nonce, HMAC of both keyed by the cookie);
//     replays and stale tokens are rejected with codes.Unauthenticated. The
//     server answers with its own HMAC over the client's nonce, which the
//     dialling side verifies before accepting any message (mutual
//     authentication). Unary gRPC calls, which the library does not use and
//     whose handlers panic, are refused.
//
// The cookie itself is never logged or sent. It does not encrypt traffic and
// does not protect against an attacker who can read or modify loopback
// traffic (no TLS), nor against a weak cookie being brute-forced offline from
// the public cluster-name fingerprint; the /_health endpoint (served by the
// library on all interfaces) stays unauthenticated and readable.
//
// # Requests
//
// Node.Request (and RequestAs, Send) resolve the grain themselves (rendezvous
// over the current topology, then an activation request to disthash's
// placement actor on the owner) instead of calling cluster.Request, because
// the library's path has a fixed 5 s activation lookup that ignores
// cluster.WithTimeout, can block the caller during reconnects, and reads
// disthash's rendezvous without synchronisation. Every library call runs
// under the caller's deadline; a request returns at the deadline at the
// latest. Lookups, and sends that were certainly not delivered (dead letter),
// are retried with backoff until the deadline; a request that timed out is
// never re-sent, so non-idempotent messages are not duplicated by this
// package.
package node
