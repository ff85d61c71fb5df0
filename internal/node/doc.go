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
//   - the membership provider (package internal/membership): every member
//     answers challenges on Host:HealthPort and polls the fixed Peers list
//     of health addresses, admitting only peers that prove the cookie;
//   - the disthash identity lookup (grains are placed by rendezvous hashing
//     and activated by disthash's placement actors);
//   - the cluster started as a member (cluster.StartMember).
//
// # Cookie
//
// Like an Erlang cookie, a shared secret decides who belongs to the cluster:
//
//   - Membership: the provider polls every peer health address with a
//     challenge, GET /_health?nonce=<16 random bytes>, and the peer answers
//     with its member description (id, remoting host and port, health host
//     and port, kinds, base cluster name) and an HMAC-SHA256 over the nonce
//     and every one of those fields, keyed by a key derived from the cookie
//     under a label of its own. A peer is admitted to the topology only
//     when the MAC verifies, the cluster name is ours and the answer names
//     the very address that was polled; it stays only while it keeps
//     answering. So a process without the cookie cannot become a member:
//     not by answering on a free peer slot in the old format, not by
//     replaying a captured answer (the next nonce differs), not by relaying
//     a real member's answers from another port (they name the real
//     member's address). Nothing it claims reaches placement, gossip, the
//     status of a city or anti-entropy, and it is never dialled. Refused
//     answers are logged at most once per address per LogRepeatWindow. The
//     health endpoint binds Host only, not every interface, and serves no
//     cookie fingerprint; the library's internal cluster name
//     (Node.ClusterName) still carries one but is not served.
//   - Transport: every gRPC stream to a member's remote port must present a
//     fresh token (timestamp, random nonce, HMAC of both keyed by the cookie);
//     replays and stale tokens are rejected with codes.Unauthenticated. The
//     server answers with its own HMAC over the client's nonce, which the
//     dialling side verifies before accepting any message (mutual
//     authentication). Unary gRPC calls, which the library does not use and
//     whose handlers panic, are refused. A connection whose stream fails
//     before its handshake completes is closed at once (the library would
//     leave it redialling forever).
//
// The cookie itself is never logged or sent. What it does not do: nothing
// is encrypted, so without TLS anyone who can read loopback traffic sees
// every message, and anyone who can modify it can tamper with messages of
// established streams; the health answers are not secret (anyone who can
// reach a health port learns the member's id, addresses and kinds); a
// holder of the cookie is trusted with anything; and a weak cookie can be
// guessed offline from any health answer or handshake token, since each
// carries an HMAC over known data, so use a long random one. Any local
// process can still deny service (e.g. take a free peer slot's port first,
// or flood a health endpoint), but not join.
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
