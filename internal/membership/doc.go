// Package membership is a Proto.Actor cluster provider whose members prove
// the cluster cookie before anyone admits them.
//
// Like the library's automanaged provider, every member serves an HTTP
// health endpoint and polls a fixed list of peer health addresses; unlike
// it, every poll is a challenge:
//
//	GET /_health?nonce=<16 random bytes, hex>
//
//	{"v":1, "nonce":"<the same>",
//	 "member":{"id":..., "host":..., "port":..., "health_host":...,
//	           "health_port":..., "kinds":[...], "cluster":"superhero"},
//	 "mac":"<hex HMAC-SHA256>"}
//
// The MAC covers a label, the nonce and every member field (each
// length-prefixed), keyed by DeriveKey(cookie), an HMAC of the cookie under
// a label of its own. The poller admits the member only when the answer
// echoes its nonce, the MAC verifies, the cluster is its own and the
// answer's health address is the address it polled. So a server that does
// not hold the cookie cannot be admitted: it cannot compute the MAC for a
// fresh nonce, a captured answer does not verify for the next nonce, and a
// relay that forwards a real member's answer from another address names the
// real member's address, not its own. Only then is the member passed to the
// cluster (MemberList.UpdateClusterTopology); the topology of a round is
// this member plus the peers that proved themselves in that round, so a
// member that stops answering leaves at the next round.
//
// What it does not do: the answer is not secret (anyone who can reach the
// endpoint learns the member's id, addresses and kinds), nothing is
// encrypted, and a holder of the cookie can claim anything. The endpoint
// reveals nothing derived from the cookie except MACs over fresh nonces and
// the member's own fields. Rejections are logged at most once per address
// per window, with the reason and never with key material.
package membership
